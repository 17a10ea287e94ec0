/*
 * event_cmp.c -- see event_cmp.h.  Written as a list of field checks that
 * return at the first difference, so the message names the field.
 */
#include <stdio.h>
#include <string.h>

#include "event_cmp.h"

typedef struct cmp {
    int flags;
    char *out;
    size_t n;
} cmp_t;

static const char *str_diff(const cmp_t *c, tl_str_t a, tl_str_t b, const char *what) {
    if ((a.ptr == NULL) != (b.ptr == NULL)) {
        snprintf(c->out, c->n, "%s: absent vs present", what);
        return c->out;
    }
    if (a.len != b.len || (a.len && memcmp(a.ptr, b.ptr, a.len) != 0)) {
        snprintf(c->out, c->n, "%s: \"%.*s\" != \"%.*s\"", what, (int)(a.len > 64 ? 64 : a.len),
                 a.ptr ? a.ptr : "", (int)(b.len > 64 ? 64 : b.len), b.ptr ? b.ptr : "");
        return c->out;
    }
    if ((c->flags & TL_EVCMP_NUL) && a.ptr && (a.ptr[a.len] != 0 || b.ptr[b.len] != 0)) {
        snprintf(c->out, c->n, "%s: not NUL-terminated", what);
        return c->out;
    }
    return NULL;
}

static const char *int_diff(const cmp_t *c, int64_t a, int64_t b, const char *what) {
    if (a == b) return NULL;
    snprintf(c->out, c->n, "%s: %lld != %lld", what, (long long)a, (long long)b);
    return c->out;
}

#define STR(f) if ((d = str_diff(c, a->f, b->f, #f))) return d
#define INT(f) if ((d = int_diff(c, (int64_t)a->f, (int64_t)b->f, #f))) return d

static const char *attachments_diff(const cmp_t *c, const tl_attachments_t *x,
                                    const tl_attachments_t *y) {
    const char *d;
    if ((d = int_diff(c, (int64_t)x->n, (int64_t)y->n, "attachments.n"))) return d;
    for (size_t i = 0; i < x->n; i++) {
        const tl_attachment_t *a = &x->v[i], *b = &y->v[i];
        STR(url);
        STR(mime);
        INT(bytes);
        INT(has_width);
        INT(has_height);
        if (a->has_width || (c->flags & TL_EVCMP_ALL)) INT(width);
        if (a->has_height || (c->flags & TL_EVCMP_ALL)) INT(height);
    }
    return NULL;
}

static const char *strs_diff(const cmp_t *c, const tl_strs_t *x, const tl_strs_t *y, const char *what) {
    const char *d;
    if ((d = int_diff(c, (int64_t)x->n, (int64_t)y->n, what))) return d;
    for (size_t i = 0; i < x->n; i++)
        if ((d = str_diff(c, x->v[i], y->v[i], what))) return d;
    return NULL;
}

const char *tl_event_diff(const tl_event_t *a, const tl_event_t *b, int flags, char *out, size_t n) {
    cmp_t cc = {flags, out, n}, *c = &cc;
    const char *d;
    STR(event_id);
    STR(tenant_id);
    STR(customer_id);
    INT(platform);
    STR(platform_user_id);
    STR(idempotency_key);
    INT(occurred_at);
    INT(received_at);
    STR(trace_id);
    INT(kind);
    switch (a->kind) {
    case TL_EV_MESSAGE_RECEIVED:
        STR(u.message.text);
        if ((d = attachments_diff(c, &a->u.message.attachments, &b->u.message.attachments))) return d;
        STR(u.message.entry_point);
        STR(u.message.device_id);
        break;
    case TL_EV_AGENT_REPLIED:
        STR(u.reply.agent_id);
        STR(u.reply.conversation_id);
        STR(u.reply.text);
        if ((d = attachments_diff(c, &a->u.reply.attachments, &b->u.reply.attachments))) return d;
        INT(u.reply.target_platform);
        break;
    case TL_EV_TRANSCRIPT_SEGMENT:
        STR(u.transcript.call_id);
        INT(u.transcript.start_ms);
        INT(u.transcript.end_ms);
        INT(u.transcript.speaker);
        STR(u.transcript.text);
        if ((flags & TL_EVCMP_BITS)
                ? memcmp(&a->u.transcript.confidence, &b->u.transcript.confidence, sizeof(float)) != 0
                : a->u.transcript.confidence != b->u.transcript.confidence)
            return "u.transcript.confidence";
        STR(u.transcript.caller_number);
        break;
    case TL_EV_BEHAVIOR_TRACKED:
        STR(u.behavior.page);
        STR(u.behavior.action);
        STR(u.behavior.device_id);
        break;
    case TL_EV_FIELD_ASSERTED:
        STR(u.field.field);
        STR(u.field.value);
        break;
    case TL_EV_IDENTITY_LINKED:
        STR(u.link.linked_customer_id);
        INT(u.link.platform);
        STR(u.link.platform_user_id);
        INT(u.link.evidence);
        STR(u.link.evidence_value);
        break;
    case TL_EV_IDENTITY_UNLINKED:
        STR(u.unlink.linked_customer_id);
        INT(u.unlink.platform);
        STR(u.unlink.platform_user_id);
        STR(u.unlink.reason);
        break;
    case TL_EV_CONVERSATION_ASSIGNED:
        STR(u.assign.conversation_id);
        STR(u.assign.agent_id);
        STR(u.assign.team_id);
        break;
    case TL_EV_CONVERSATION_TAGGED:
        STR(u.tag.conversation_id);
        if ((d = strs_diff(c, &a->u.tag.added, &b->u.tag.added, "u.tag.added"))) return d;
        if ((d = strs_diff(c, &a->u.tag.removed, &b->u.tag.removed, "u.tag.removed"))) return d;
        break;
    case TL_EV_CONVERSATION_CLOSED:
        STR(u.close.conversation_id);
        STR(u.close.reason);
        STR(u.close.closed_by);
        break;
    case TL_EV_CONFLICT_RESOLVED:
        STR(u.resolve.conflict_id);
        STR(u.resolve.field);
        STR(u.resolve.chosen_value);
        STR(u.resolve.agent_id);
        break;
    default:
        return "kind: out of range";
    }
    return NULL;
}
