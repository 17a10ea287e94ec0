/*
 * web.c -- website chat widget adapter (see web.h).
 */
#include <string.h>

#include "web.h"

int tl_web_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                 tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    int rc;
    tl_str_t tenant, visitor, msgid;
    int64_t sent_at;
    memset(ev, 0, sizeof *ev);
    if ((rc = tl_adapter_parse_json(body, len, out, pb))) return rc;
    json_t *o = out->root;
    tl_message_received_t *m = &ev->u.message;
    if ((rc = tl_adapter_req_str(o, "tenant_id", 64, &tenant, pb)) ||
        (rc = tl_adapter_req_str(o, "visitor_id", 128, &visitor, pb)) ||
        (rc = tl_adapter_req_str(o, "message_id", 128, &msgid, pb)) ||
        (rc = tl_adapter_req_time(o, "sent_at", ctx->now_ms, &sent_at, pb)) ||
        (rc = tl_adapter_message(o, TL_WEB_TEXT_MAX, 256, 128, out, m, pb)))
        return rc;
    ev->kind = TL_EV_MESSAGE_RECEIVED;
    tl_adapter_envelope(ctx, out, ev, tenant, TL_PLATFORM_WEB, visitor, msgid, sent_at);
    return 0;
}
