/*
 * mini_program.h -- the WeChat mini-program adapter: POST
 * /v1/ingest/mini_program.
 *
 * The mini-program's own server (which holds the session key and so knows
 * the user's openid, and their unionid when the mini-program is bound to
 * the same WeChat Open Platform account as the Official Account) posts one
 * chat message per request:
 *
 *   tenant_id    string, required
 *   openid       string, required: the user's openid in this mini-program
 *   unionid      string, optional: the user's unionid across the tenant's
 *                WeChat apps
 *   message_id   string, required, no ':' (key "mini_program:<message_id>")
 *   sent_at      integer ms since the epoch (phone clock), required
 *   text         string up to 16 KiB; may be empty only with attachments
 *   attachments  optional array of {url, mime, bytes, width?, height?}
 *   entry_point  optional string: the page the chat began on
 *                ("pages/product/detail?sku=1")
 *   device_id    optional string
 * Produces one MessageReceived: platform MINI_PROGRAM, platform_user_id =
 * openid.
 *
 * Identity.  Without a unionid the message goes to the openid's customer.
 * With one it goes to the unionid's customer -- the identity ("unionid",
 * unionid), whose deterministic id every channel that learns the unionid
 * computes alike -- and when the openid's customer differs from it,
 * tl_mini_program_resolve adds an IdentityLinked (evidence UNIONID,
 * evidence_value the unionid) on the unionid customer's key absorbing the
 * openid's, with the key "mini_program:unionid:<openid>:<unionid>" so it
 * is applied once.  The Official Account side joins the same customer when
 * a connector posts the follower's unionid (docs/adapters.md, api).
 */
#ifndef TL_MINI_PROGRAM_H
#define TL_MINI_PROGRAM_H

#include "adapter.h"

#define TL_MINI_PROGRAM_TEXT_MAX (16 * 1024)
#define TL_MINI_PROGRAM_ID_MAX 128
#define TL_MINI_PROGRAM_KEY_MAX (TL_MINI_PROGRAM_ID_MAX * 2 + 32)
#define TL_MINI_PROGRAM_LINK_ID 0xffffu   /* tl_adapter_sub_id index of the link */

/* What a parsed request points into.  Caller-allocated and zeroed before
 * tl_mini_program_parse; lives as long as its events. */
typedef struct tl_mini_program_out {
    tl_adapter_out_t base;          /* body tree; base.customer_id keys both events */
    tl_str_t tenant, openid, unionid;
    /* ev[0] is the unionid link (when tl_mini_program_resolve makes one),
     * ev[1] the message: produce ev[first .. 2). */
    tl_event_t ev[2];
    int first;
    char link_id[40];
    char link_key[TL_MINI_PROGRAM_KEY_MAX];
    char openid_customer[40];       /* the link's absorbed customer */
} tl_mini_program_out_t;

/* Parses body into out->ev[1] (strings point into out).  Returns 0, or a
 * status with pb filled:
 *   400  malformed-json, invalid-utf8
 *   422  missing-field / invalid-field / field-too-long / out-of-range /
 *        implausible-time naming the field
 * The message is keyed on the unionid's deterministic customer when there
 * is a unionid, else on the openid's, until tl_mini_program_resolve says
 * otherwise.  Whatever the result, call tl_mini_program_out_close(out).
 * Any thread. */
int tl_mini_program_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                          tl_mini_program_out_t *out, tl_problem_t *pb);

/* Applies what the identity index said: openid_customer is the customer
 * ("mini_program", openid) resolves to, unionid_customer the one
 * ("unionid", unionid) resolves to (ignored without a unionid).  Rekeys the
 * message and adds the link as described above.  Returns 1 when it added
 * the link, else 0.  Any thread; cannot fail. */
int tl_mini_program_resolve(const tl_adapter_ctx_t *ctx, tl_mini_program_out_t *out,
                            const char *openid_customer, const char *unionid_customer);

/* Frees what out holds.  Safe on a zeroed or already-closed out. */
void tl_mini_program_out_close(tl_mini_program_out_t *out);

#endif
