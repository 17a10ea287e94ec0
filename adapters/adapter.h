/*
 * adapter.h -- what every channel adapter shares.
 *
 * An adapter turns one platform request into one canonical tl_event_t, or
 * into a precise tl_problem_t naming the field that is wrong.  It never
 * touches Kafka or HTTP: the ingest layer (engine/ingest.c) does that, so
 * each adapter is a pure function that its table-driven tests call directly.
 *
 * The helpers here read JSON fields with the same rules for every platform:
 * required vs optional, type, byte limits, and timestamp sanity.  Strings
 * returned point into the json_t tree and live as long as it does.
 */
#ifndef TL_ADAPTER_H
#define TL_ADAPTER_H

#include <stdint.h>

#include <jansson.h>

#include "event.h"
#include "problem.h"

/* Everything an adapter needs beyond the request body.  Strings borrowed. */
typedef struct tl_adapter_ctx {
    int64_t now_ms;             /* gateway clock: becomes received_at */
    const char *event_id;       /* UUIDv7 minted by the gateway */
    const char *trace_id;       /* from traceparent, or the event id */
    int64_t max_body;
} tl_adapter_ctx_t;

/* Scratch space an adapter fills alongside the event: derived strings the
 * event points into (customer id, idempotency key).  Caller-allocated, lives
 * as long as the event. */
typedef struct tl_adapter_out {
    json_t *root;               /* owned: json_decref when done with ev */
    char customer_id[40];
    char idempotency_key[256];
    tl_attachment_t attachments[16];
    tl_str_t strs[32];          /* string arrays (tags) */
    int customer_given;         /* the request named its customer_id itself */
    char linked_customer_id[40];  /* a link's absorbed customer, when derived */
} tl_adapter_out_t;

#define TL_ADAPTER_MAX_ATTACHMENTS 16
#define TL_ADAPTER_MAX_STRS 32

/* Parses a JSON body into out->root.  On error fills pb (400: malformed
 * JSON, invalid UTF-8, not an object) and returns its status. */
int tl_adapter_parse_json(const char *body, size_t len, tl_adapter_out_t *out, tl_problem_t *pb);

/* Reads obj[name] as a string of 1..max bytes (required) into *s.  On error
 * fills pb with 422 naming `name` and returns 422. */
int tl_adapter_req_str(json_t *obj, const char *name, size_t max, tl_str_t *s, tl_problem_t *pb);

/* Like tl_adapter_req_str, but absent or null leaves *s = TL_STR_NULL. */
int tl_adapter_opt_str(json_t *obj, const char *name, size_t max, tl_str_t *s, tl_problem_t *pb);

/* Reads obj[name] as a required string of 1..max bytes that goes into an
 * idempotency key or an identity ("<platform>:<id>"), so it may hold no
 * control characters and no ':'.  On error fills pb with 422 naming `name`
 * and returns 422; *s is then unspecified. */
int tl_adapter_req_key(json_t *obj, const char *name, size_t max, tl_str_t *s, tl_problem_t *pb);

/* Like tl_adapter_req_key, but absent or null leaves *s = TL_STR_NULL; a
 * present value must not be empty (422: "leave it out when <absent_means>"). */
int tl_adapter_opt_key(json_t *obj, const char *name, size_t max, const char *absent_means,
                       tl_str_t *s, tl_problem_t *pb);

/* Checks that s (already read as `name`) holds no control characters and
 * no ':', the rule of tl_adapter_req_key.  0, or 422 in pb naming `name`. */
int tl_adapter_key_part(tl_str_t s, const char *name, tl_problem_t *pb);

/* Reads obj[name] as an integer in [min, max] (required). */
int tl_adapter_req_int(json_t *obj, const char *name, int64_t min, int64_t max, int64_t *v,
                       tl_problem_t *pb);

/* Reads a client timestamp in ms: must be within a year of now. */
int tl_adapter_req_time(json_t *obj, const char *name, int64_t now_ms, int64_t *v, tl_problem_t *pb);

/* Reads obj[name] (optional array) of attachments into out->attachments. */
int tl_adapter_attachments(json_t *obj, const char *name, tl_adapter_out_t *out,
                           tl_attachments_t *atts, tl_problem_t *pb);

/* Reads the content of a customer message from obj into m: "text"
 * (optional, at most text_max bytes; absent becomes ""), "attachments",
 * "entry_point" (at most entry_max bytes) and, when device_max > 0,
 * "device_id" (at most device_max bytes); a message needs text or at least
 * one attachment (422 naming "text").  Strings point into obj.  On error
 * fills pb naming the field and returns its status. */
int tl_adapter_message(json_t *obj, size_t text_max, size_t entry_max, size_t device_max,
                       tl_adapter_out_t *out, tl_message_received_t *m, tl_problem_t *pb);

/* The deterministic customer id of an identity not yet linked to anyone:
 * UUIDv5(tenant, platform, platform_user_id), so a retry never mints a
 * second customer.  Writes 36 chars + NUL.  Cannot fail. */
void tl_adapter_customer_id(tl_str_t tenant, tl_platform_t platform, tl_str_t user, char out[40]);

/* The id of the i-th event of a request that yields several: the gateway's
 * UUIDv7 event_id with its last four hex digits replaced by i (hex), so
 * the ids stay time-ordered, distinct within the request and as random as
 * before across requests.  Writes 36 chars + NUL.  Cannot fail. */
void tl_adapter_sub_id(const char *event_id, unsigned i, char out[40]);

/* Fills the envelope fields common to all adapters: ids, clocks, identity,
 * idempotency key "<platform>:<message id>".  Cannot fail. */
void tl_adapter_envelope(const tl_adapter_ctx_t *ctx, tl_adapter_out_t *out, tl_event_t *ev,
                         tl_str_t tenant, tl_platform_t platform, tl_str_t user,
                         tl_str_t message_id, int64_t occurred_at);

/* Frees what out holds.  Safe on a zeroed or already-closed out. */
void tl_adapter_out_close(tl_adapter_out_t *out);

#endif
