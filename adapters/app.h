/*
 * app.h -- the mobile app (iOS/Android SDK) adapter: POST /v1/ingest/app.
 *
 * One request carries what the SDK gathered since its last upload: a chat
 * message, a click-stream batch, or both.
 *
 *   tenant_id    string, required
 *   device_id    string, required: the SDK's install id (the platform user)
 *   account_id   string, optional: the app account, once logged in
 *   message      optional object:
 *     message_id   string, required, no ':' (key "app:<message_id>")
 *     sent_at      integer ms since the epoch (device clock), required
 *     text         string up to 16 KiB; may be empty only with attachments
 *     attachments  optional array of {url, mime, bytes, width?, height?}
 *     entry_point  optional string: the screen the chat began on
 *   events       optional array of 1..TL_APP_MAX_EVENTS click-stream items:
 *     id           string, required, no ':' (key "app:event:<id>")
 *     page         string, required (up to 512 bytes)
 *     action       string, required (up to 256 bytes)
 *     ts           integer ms since the epoch (device clock), required
 * At least one of message and events.  Produces one MessageReceived and/or
 * one BehaviorTracked per click-stream item, all with platform APP,
 * platform_user_id = device_id and device_id in the payload; event ids are
 * tl_adapter_sub_id(gateway id, i): i = 0 for the message, 1 + k for
 * events[k].
 *
 * Identity.  Without an account the events go to the device's customer.
 * With one they go to the account's customer (the identity ("account",
 * account_id)); and when the device's customer is still the device's own
 * (its deterministic id: nobody's account has claimed the device yet) and
 * differs from the account's, tl_app_resolve adds an IdentityLinked
 * (evidence LOGIN, evidence_value account_id) on the account customer's
 * key, absorbing the device's customer, with the deterministic key
 * "app:login:<device_id>:<account_id>" so that it is applied once however
 * often the SDK uploads before the link reaches the index.  A device that
 * already belongs to another account is not linked again: a shared or
 * handed-on phone must not merge two people.
 */
#ifndef TL_APP_H
#define TL_APP_H

#include "adapter.h"

#define TL_APP_MAX_EVENTS 50
#define TL_APP_TEXT_MAX (16 * 1024)
#define TL_APP_ID_MAX 128           /* device_id, account_id, message_id, event id */
#define TL_APP_KEY_MAX (TL_APP_ID_MAX * 2 + 16)
#define TL_APP_LINK_ID 0xffffu      /* tl_adapter_sub_id index of the login link */

/* What a parsed request points into.  Caller-allocated and zeroed before
 * tl_app_parse; lives as long as its events; tl_app_out_close frees it. */
typedef struct tl_app_out {
    tl_adapter_out_t base;          /* body tree; base.customer_id is every event's key */
    tl_str_t tenant, device_id, account_id;
    /* ev[0] is the login link (when tl_app_resolve makes one), ev[1] the
     * message, then the click stream: the events to produce are
     * ev[first .. first + n). */
    tl_event_t ev[TL_APP_MAX_EVENTS + 2];
    int first, n;
    int index[TL_APP_MAX_EVENTS + 2];   /* position in the request: -1 link, 0 message, 1+k */
    char ids[TL_APP_MAX_EVENTS + 2][40];
    char keys[TL_APP_MAX_EVENTS + 2][TL_APP_KEY_MAX];
    char device_customer[40];       /* the link's absorbed customer */
} tl_app_out_t;

/* Parses body into out->ev (strings point into out).  Returns 0, or a
 * status with pb filled:
 *   400  malformed-json, invalid-utf8
 *   422  missing-field / invalid-field / field-too-long / out-of-range /
 *        implausible-time / too-many, naming the field ("events[3].page")
 * The events are keyed on the device's deterministic customer until
 * tl_app_resolve says otherwise.  Whatever the result, call
 * tl_app_out_close(out).  Any thread. */
int tl_app_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len, tl_app_out_t *out,
                 tl_problem_t *pb);

/* Applies what the identity index said: device_customer is the customer
 * (device_id) resolves to, account_customer the one ("account",
 * account_id) resolves to (ignored without an account).  Rekeys every
 * event and adds the login link as described above.  Returns 1 when it
 * added the link, else 0.  Any thread; cannot fail. */
int tl_app_resolve(const tl_adapter_ctx_t *ctx, tl_app_out_t *out, const char *device_customer,
                   const char *account_customer);

/* Frees what out holds.  Safe on a zeroed or already-closed out. */
void tl_app_out_close(tl_app_out_t *out);

#endif
