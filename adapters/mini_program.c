/*
 * mini_program.c -- WeChat mini-program adapter (see mini_program.h).
 *
 * The unionid is what makes a mini-program user and an Official Account
 * follower one person, so it is treated as an identity of its own rather
 * than as a field of the message: the message is keyed on the unionid's
 * customer, and the openid is linked into it.
 */
#include <stdio.h>
#include <string.h>

#include "identity.h"
#include "mini_program.h"
#include "uuid.h"

/* No control characters, and no ':' where the id becomes part of a key. */
int tl_mini_program_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                          tl_mini_program_out_t *out, tl_problem_t *pb) {
    int rc;
    tl_str_t msgid;
    int64_t sent_at;
    memset(out->ev, 0, sizeof out->ev);
    out->first = 1;
    tl_event_t *ev = &out->ev[1];
    tl_message_received_t *m = &ev->u.message;
    if ((rc = tl_adapter_parse_json(body, len, &out->base, pb))) return rc;
    json_t *o = out->base.root;
    if ((rc = tl_adapter_req_str(o, "tenant_id", 64, &out->tenant, pb)) ||
        (rc = tl_adapter_req_key(o, "openid", TL_MINI_PROGRAM_ID_MAX, &out->openid, pb)) ||
        (rc = tl_adapter_opt_key(o, "unionid", TL_MINI_PROGRAM_ID_MAX, "unknown", &out->unionid,
                                 pb)) ||
        (rc = tl_adapter_req_key(o, "message_id", TL_MINI_PROGRAM_ID_MAX, &msgid, pb)) ||
        (rc = tl_adapter_req_time(o, "sent_at", ctx->now_ms, &sent_at, pb)) ||
        (rc = tl_adapter_message(o, TL_MINI_PROGRAM_TEXT_MAX, 512, 128, &out->base, m, pb)))
        return rc;
    ev->kind = TL_EV_MESSAGE_RECEIVED;
    tl_adapter_envelope(ctx, &out->base, ev, out->tenant, TL_PLATFORM_MINI_PROGRAM, out->openid,
                        msgid, sent_at);
    if (out->unionid.ptr)
        tl_identity_default_id(out->tenant, "unionid", out->unionid, out->base.customer_id);
    return 0;
}

int tl_mini_program_resolve(const tl_adapter_ctx_t *ctx, tl_mini_program_out_t *out,
                            const char *openid_customer, const char *unionid_customer) {
    if (!out->unionid.ptr || !unionid_customer) {
        memcpy(out->base.customer_id, openid_customer, TL_UUID_STRLEN + 1);
        return 0;
    }
    memcpy(out->base.customer_id, unionid_customer, TL_UUID_STRLEN + 1);
    if (strcmp(openid_customer, unionid_customer) == 0) return 0;
    memcpy(out->openid_customer, openid_customer, TL_UUID_STRLEN + 1);
    tl_event_t *ev = &out->ev[0];
    memset(ev, 0, sizeof *ev);
    tl_adapter_sub_id(ctx->event_id, TL_MINI_PROGRAM_LINK_ID, out->link_id);
    int n = snprintf(out->link_key, sizeof out->link_key, "mini_program:unionid:%.*s:%.*s",
                     (int)out->openid.len, out->openid.ptr, (int)out->unionid.len, out->unionid.ptr);
    ev->event_id = (tl_str_t){out->link_id, TL_UUID_STRLEN};
    ev->tenant_id = out->tenant;
    ev->customer_id = (tl_str_t){out->base.customer_id, TL_UUID_STRLEN};
    ev->platform = TL_PLATFORM_MINI_PROGRAM;
    ev->platform_user_id = out->openid;
    ev->idempotency_key = (tl_str_t){out->link_key, (size_t)n};
    ev->occurred_at = ev->received_at = ctx->now_ms;
    ev->trace_id = (tl_str_t){ctx->trace_id, strlen(ctx->trace_id)};
    ev->kind = TL_EV_IDENTITY_LINKED;
    ev->u.link.linked_customer_id = (tl_str_t){out->openid_customer, TL_UUID_STRLEN};
    ev->u.link.platform = TL_PLATFORM_MINI_PROGRAM;
    ev->u.link.platform_user_id = out->openid;
    ev->u.link.evidence = TL_EVIDENCE_UNIONID;
    ev->u.link.evidence_value = out->unionid;
    out->first = 0;
    return 1;
}

void tl_mini_program_out_close(tl_mini_program_out_t *out) {
    tl_adapter_out_close(&out->base);
}
