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
        (rc = tl_adapter_opt_str(o, "text", TL_WEB_TEXT_MAX, &m->text, pb)) ||
        (rc = tl_adapter_attachments(o, "attachments", out, &m->attachments, pb)) ||
        (rc = tl_adapter_opt_str(o, "entry_point", 256, &m->entry_point, pb)) ||
        (rc = tl_adapter_opt_str(o, "device_id", 128, &m->device_id, pb)))
        return rc;
    if (!m->text.ptr) m->text = TL_STR("");
    if (m->text.len == 0 && m->attachments.n == 0)
        return tl_problem_set(pb, 422, "missing-field", "Missing field", "text",
                              "a message needs \"text\" or at least one attachment");
    ev->kind = TL_EV_MESSAGE_RECEIVED;
    tl_adapter_envelope(ctx, out, ev, tenant, TL_PLATFORM_WEB, visitor, msgid, sent_at);
    return 0;
}
