/*
 * verify.h -- does every derived copy equal a replay of the log?
 *
 * A tl_verify_t is fed every record a replay folds (tl_verify_observe is a
 * tl_replay_cb) and keeps, per customer and per conversation, what the
 * projections must hold: the same aggregation projection.c makes from the
 * .changes records, but computed from the replay.  Then comparators check
 * one derived copy each and record every difference with the first
 * differing field:
 *
 *   .state         per customer: the latest record of the compacted topic
 *                  is byte-identical to the replayed state's encoding;
 *                  when not, the stored state is decoded and compared field
 *                  by field to name the first difference
 *   customers      version, platforms (as a set), first_seen, last_activity
 *   conversations  customer, version, status, item_count, platforms (set),
 *                  opened_at, last_activity
 *   view_<p>       (agent, web, app, mini_program, wechat, douyin, phone)
 *                  exactly the rows the projection writes: the replay
 *                  rebuilds, per event, the Change the fold worker wrote
 *                  (tl_fold_worker_change) and renders it with
 *                  tl_view_render and the profile the projection uses;
 *                  per conversation the rows (every column, bodies as
 *                  JSON with sorted keys) are digested on both sides and,
 *                  when the digests differ, the first differing row and
 *                  column is named ("item E part 1: body.text")
 *   customer_fields  per customer and field: value, is_key, version,
 *                  platform, event_id, as the agent projection writes them
 *                  from the Changes' fold changes
 *   conflicts      per conflict: customer, field, status, candidates,
 *                  chosen value
 *
 * Only the views that serve runs are compared (tl_verify_configure, from
 * --views); the unified tables (customers, conversations, customer_fields,
 * conflicts) are the agent worker's and are compared when agent is one of
 * them.  A verifier never configured compares customers and conversations
 * only.  The identities index is not compared: docs/audit.md says why.
 *
 * The views are recomputed rather than checked for plausibility because
 * the render is pure (view.h): the same Change, event and profile give the
 * same rows byte for byte, so any difference is a lost, repeated or
 * corrupted write.  The price is memory: a configured verifier keeps every
 * rendered row of every view until it compares (about the size of the
 * views' bodies), which is what a verify of the whole log costs.
 *
 * Digests.  Every replayed customer and conversation gets a SHA-256 over a
 * canonical text rendering (tl_verify_render_conversation), and every
 * conversation one per view over its rows; the same rendering of what
 * PostgreSQL holds must give the same digest.  Digests decide agreement;
 * the field comparison only explains a disagreement.
 *
 * Threads: one tl_verify_t belongs to one thread.
 */
#ifndef TL_VERIFY_H
#define TL_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "buf.h"
#include "event.h"
#include "fold.h"
#include "kafka.h"
#include "profile.h"

#define TL_VERIFY_DIGEST_HEX 65     /* 64 hex digits and a NUL */
#define TL_VERIFY_MAX_VIEWS 7

typedef struct tl_verify tl_verify_t;

/* One item of a conversation as a view holds it. */
typedef struct tl_verify_item {
    char event_id[40];
    int64_t effective_ts;
    int32_t partition;
    int64_t offset;
    int part;
} tl_verify_item_t;

/* A conversation's header and items, from the replay or from a source. */
typedef struct tl_verify_conv {
    char tenant[72], id[40], customer[40];
    int64_t version, item_count, opened_at, last_activity;
    int closed;
    char platforms[160];        /* sorted slugs joined by ',' */
    tl_verify_item_t *items;
    size_t nitems, capitems;
} tl_verify_conv_t;

/* One difference. */
typedef struct tl_verify_diff {
    char subject[16];           /* "conversation" or "customer" */
    char id[80];
    char customer[40];          /* "" when unknown */
    char source[24];            /* ".state", "customers", "view_agent", ... */
    char field[160];
    char replay[320];
    char found[320];
} tl_verify_diff_t;

/* An empty verifier.  NULL on allocation failure.  Any thread. */
tl_verify_t *tl_verify_new(void);

/* Frees it.  NULL does nothing. */
void tl_verify_free(tl_verify_t *v);

/* Makes v render and compare the views of profiles[0..n) (n at most
 * TL_VERIFY_MAX_VIEWS, one per platform, borrowed: they must outlive v)
 * and the unified tables when one of them is the agent view.  fold is the
 * fold the replay applies to: tl_verify_observe reads it right after each
 * apply, as the fold worker does, to rebuild the Change's fold changes.
 * Call it before the first observe.  TL_EINVAL (no fold, too many views,
 * a platform twice), TL_ENOMEM.  Owner thread. */
int tl_verify_configure(tl_verify_t *v, const tl_fold_t *fold, const tl_profile_t *const *profiles,
                        size_t n);

/* The replay callback (tl_replay_cb, opaque = the verifier): aggregates
 * one folded record.  TL_ENOMEM.  Owner thread. */
int tl_verify_observe(void *v, const tl_event_t *ev, const tl_fold_result_t *res,
                      int32_t partition, int64_t offset);

/* Compares the replayed states in fold with the latest record per key of
 * <prefix>.state (read read_committed, without a group, never committed).
 * Records differences; returns TL_OK, or TL_EKAFKA_DOWN (also when no
 * record arrives for 6 x timeout_ms while some are due) / TL_EKAFKA /
 * TL_ENOMEM with a message in err.  Owner thread. */
int tl_verify_state_topic(tl_verify_t *v, tl_kafka_t *k, tl_fold_t *fold, int timeout_ms,
                          char *err, size_t errlen);

/* Runs every PostgreSQL comparator on pg (read-only: SELECTs in one
 * REPEATABLE READ READ ONLY transaction, so all tables are read at the
 * same moment).  Records differences; returns TL_OK, or TL_EPG_DOWN /
 * TL_EPG / TL_ENOMEM with a message in err.  Owner thread. */
int tl_verify_postgres(tl_verify_t *v, PGconn *pg, char *err, size_t errlen);

/* Writes the replayed model to a new schema of pg, in one transaction:
 * <schema>.customers (tenant_id, customer_id, version, platforms,
 * first_seen, last_activity, state_sha256), <schema>.conversations
 * (tenant_id, conversation_id, customer_id, status, version, item_count,
 * platforms, opened_at, last_activity, digest) and <schema>.items
 * (tenant_id, conversation_id, seq, event_id, effective_ts,
 * source_partition, source_offset), so a replay can be joined with the
 * projection tables by hand.  schema must be a plain lower-case
 * identifier, not public nor pg_*; an existing schema is never touched.
 * Errors: TL_EINVAL (bad name), TL_EEXISTS (schema exists), TL_EPG_DOWN,
 * TL_EPG, TL_ENOMEM, with a message in err; on error nothing is written.
 * Owner thread. */
int tl_verify_write_schema(tl_verify_t *v, tl_fold_t *fold, PGconn *pg, const char *schema, char *err,
                           size_t errlen);

/* Differences recorded so far, in the order found.  Owner thread. */
size_t tl_verify_ndiffs(const tl_verify_t *v);
const tl_verify_diff_t *tl_verify_diff_at(const tl_verify_t *v, size_t i);

/* "conversation X: version: replay 12, conversations 11" into out; for a
 * row of a view or of customer_fields / conflicts, "conversation X:
 * view_wechat: item E part 1: body.text: replay '...', view '...'". */
void tl_verify_diff_text(const tl_verify_diff_t *d, char *out, size_t n);

/* The report: {"ok", "replayed": {customers, conversations}, "checked":
 * {source: rows}, "customers": [{tenant, customer, digest}],
 * "conversations": [{tenant, conversation, customer, digest, views:
 * {view_<p>: digest of its rows}}],
 * "differences": [{subject, id, customer, source, field, replay, found}]}.
 * New reference, NULL on allocation failure.  Owner thread. */
json_t *tl_verify_report(tl_verify_t *v, tl_fold_t *fold);

/* Appends the canonical rendering of c to out: one "name value" line per
 * header field, then one "item event_id effective_ts partition:offset part"
 * line per item in order.  TL_ENOMEM.  Any thread. */
int tl_verify_render_conversation(const tl_verify_conv_t *c, tl_buf_t *out);

/* Lower-case hex SHA-256 of n bytes into hex.  Any thread; TL_ENOMEM if
 * OpenSSL cannot allocate. */
int tl_verify_digest(const void *p, size_t n, char hex[TL_VERIFY_DIGEST_HEX]);

/* Normalises a comma-separated set of platform slugs: sorted, distinct,
 * joined by ','.  Any thread; cannot fail (cut at n - 1 bytes). */
void tl_verify_platform_set(const char *in, char *out, size_t n);

#endif
