/* fuzz_codec_diff.c -- engine/codec.c: the direct event decoder against the
 * general path (walker into the avro value, then the value into
 * tl_event_t), on framed threadline.Event records.
 *
 * tl_codec_decode_event reads records of the reader schema straight into
 * tl_event_t; tl_codec_decode_event_general is the path it replaced for
 * them.  For every input, read as it is and as the datum of a record with
 * a good header, both must return the same error with the same message,
 * or the same event, field by field; anything else traps.  Each path has
 * a codec of its own, kept across inputs as the workers keep theirs, so
 * that reused arrays and arenas are part of what is compared. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_str(tl_str_t a, tl_str_t b) {
    if ((a.ptr == NULL) != (b.ptr == NULL) || a.len != b.len) __builtin_trap();
    if (a.len && memcmp(a.ptr, b.ptr, a.len) != 0) __builtin_trap();
    /* Both paths NUL-terminate what they copy. */
    if (a.ptr && (a.ptr[a.len] != 0 || b.ptr[b.len] != 0)) __builtin_trap();
}

static void same_int(int64_t a, int64_t b) {
    if (a != b) __builtin_trap();
}

static void same_attachments(tl_attachments_t a, tl_attachments_t b) {
    same_int((int64_t)a.n, (int64_t)b.n);
    for (size_t i = 0; i < a.n; i++) {
        const tl_attachment_t *x = &a.v[i], *y = &b.v[i];
        same_str(x->url, y->url);
        same_str(x->mime, y->mime);
        same_int(x->bytes, y->bytes);
        same_int(x->has_width, y->has_width);
        same_int(x->has_height, y->has_height);
        same_int(x->width, y->width);
        same_int(x->height, y->height);
    }
}

static void same_strs(tl_strs_t a, tl_strs_t b) {
    same_int((int64_t)a.n, (int64_t)b.n);
    for (size_t i = 0; i < a.n; i++) same_str(a.v[i], b.v[i]);
}

static void same_event(const tl_event_t *a, const tl_event_t *b) {
    same_str(a->event_id, b->event_id);
    same_str(a->tenant_id, b->tenant_id);
    same_str(a->customer_id, b->customer_id);
    same_int(a->platform, b->platform);
    same_str(a->platform_user_id, b->platform_user_id);
    same_str(a->idempotency_key, b->idempotency_key);
    same_int(a->occurred_at, b->occurred_at);
    same_int(a->received_at, b->received_at);
    same_str(a->trace_id, b->trace_id);
    same_int(a->kind, b->kind);
    switch (a->kind) {
    case TL_EV_MESSAGE_RECEIVED:
        same_str(a->u.message.text, b->u.message.text);
        same_attachments(a->u.message.attachments, b->u.message.attachments);
        same_str(a->u.message.entry_point, b->u.message.entry_point);
        same_str(a->u.message.device_id, b->u.message.device_id);
        break;
    case TL_EV_AGENT_REPLIED:
        same_str(a->u.reply.agent_id, b->u.reply.agent_id);
        same_str(a->u.reply.conversation_id, b->u.reply.conversation_id);
        same_str(a->u.reply.text, b->u.reply.text);
        same_attachments(a->u.reply.attachments, b->u.reply.attachments);
        same_int(a->u.reply.target_platform, b->u.reply.target_platform);
        break;
    case TL_EV_TRANSCRIPT_SEGMENT:
        same_str(a->u.transcript.call_id, b->u.transcript.call_id);
        same_int(a->u.transcript.start_ms, b->u.transcript.start_ms);
        same_int(a->u.transcript.end_ms, b->u.transcript.end_ms);
        same_int(a->u.transcript.speaker, b->u.transcript.speaker);
        same_str(a->u.transcript.text, b->u.transcript.text);
        /* Bit for bit: NaN is never == itself. */
        if (memcmp(&a->u.transcript.confidence, &b->u.transcript.confidence, sizeof(float)) != 0)
            __builtin_trap();
        same_str(a->u.transcript.caller_number, b->u.transcript.caller_number);
        break;
    case TL_EV_BEHAVIOR_TRACKED:
        same_str(a->u.behavior.page, b->u.behavior.page);
        same_str(a->u.behavior.action, b->u.behavior.action);
        same_str(a->u.behavior.device_id, b->u.behavior.device_id);
        break;
    case TL_EV_FIELD_ASSERTED:
        same_str(a->u.field.field, b->u.field.field);
        same_str(a->u.field.value, b->u.field.value);
        break;
    case TL_EV_IDENTITY_LINKED:
        same_str(a->u.link.linked_customer_id, b->u.link.linked_customer_id);
        same_int(a->u.link.platform, b->u.link.platform);
        same_str(a->u.link.platform_user_id, b->u.link.platform_user_id);
        same_int(a->u.link.evidence, b->u.link.evidence);
        same_str(a->u.link.evidence_value, b->u.link.evidence_value);
        break;
    case TL_EV_IDENTITY_UNLINKED:
        same_str(a->u.unlink.linked_customer_id, b->u.unlink.linked_customer_id);
        same_int(a->u.unlink.platform, b->u.unlink.platform);
        same_str(a->u.unlink.platform_user_id, b->u.unlink.platform_user_id);
        same_str(a->u.unlink.reason, b->u.unlink.reason);
        break;
    case TL_EV_CONVERSATION_ASSIGNED:
        same_str(a->u.assign.conversation_id, b->u.assign.conversation_id);
        same_str(a->u.assign.agent_id, b->u.assign.agent_id);
        same_str(a->u.assign.team_id, b->u.assign.team_id);
        break;
    case TL_EV_CONVERSATION_TAGGED:
        same_str(a->u.tag.conversation_id, b->u.tag.conversation_id);
        same_strs(a->u.tag.added, b->u.tag.added);
        same_strs(a->u.tag.removed, b->u.tag.removed);
        break;
    case TL_EV_CONVERSATION_CLOSED:
        same_str(a->u.close.conversation_id, b->u.close.conversation_id);
        same_str(a->u.close.reason, b->u.close.reason);
        same_str(a->u.close.closed_by, b->u.close.closed_by);
        break;
    case TL_EV_CONFLICT_RESOLVED:
        same_str(a->u.resolve.conflict_id, b->u.resolve.conflict_id);
        same_str(a->u.resolve.field, b->u.resolve.field);
        same_str(a->u.resolve.chosen_value, b->u.resolve.chosen_value);
        same_str(a->u.resolve.agent_id, b->u.resolve.agent_id);
        break;
    default:
        __builtin_trap();
    }
}

/* Both paths on data[0..size): same error and message, or same event. */
static void compare(tl_codec_t *direct, tl_codec_t *general, const uint8_t *data, size_t size) {
    tl_event_t d, g;
    int rd = tl_codec_decode_event(direct, data, size, &d);
    int rg = tl_codec_decode_event_general(general, data, size, &g);
    if (rd != rg) __builtin_trap();
    if (strcmp(tl_codec_errmsg(direct), tl_codec_errmsg(general)) != 0) __builtin_trap();
    if (rd == 0) {
        same_event(&d, &g);
        fuzz_check_event(&d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tl_codec_t *direct, *general;
    if (!direct) {
        direct = fuzz_keep(tl_codec_new_event(NULL));
        general = fuzz_keep(tl_codec_new_event(NULL));
    }
    uint8_t *framed = malloc(TL_CODEC_HEADER_SIZE + size);
    if (!framed) abort();

    compare(direct, general, data, size);
    fuzz_frame(direct, data, size, framed);
    compare(direct, general, framed, TL_CODEC_HEADER_SIZE + size);

    free(framed);
    return 0;
}
