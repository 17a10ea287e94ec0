/* fuzz_change_diff.c -- engine/change.c: the direct Change decoder against
 * the general path (the codec's walker into its avro value, then the value
 * into tl_change_t), on framed threadline.Change records.
 *
 * tl_change_decode reads records of the current Change schema straight
 * into tl_change_t and the codec's fold and candidate arrays;
 * tl_change_decode_general is the path it replaced for them, and the one
 * version 1 records still take.  For every input, read as it is and as the
 * datum of a record with a good header, both must return the same error
 * with the same message, or the same Change: every field, every fold entry
 * and candidate through tl_change_fold_get / tl_change_candidate_get, and
 * the same TL_EINVAL one past the end of each.  Anything else traps.  Each
 * path has a codec of its own, kept across inputs as the workers keep
 * theirs, so that reused arrays and arenas are part of what is compared. */
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_str(tl_str_t a, tl_str_t b, int terminated) {
    if ((a.ptr == NULL) != (b.ptr == NULL) || a.len != b.len) __builtin_trap();
    if (a.len && memcmp(a.ptr, b.ptr, a.len) != 0) __builtin_trap();
    /* Both paths NUL-terminate the strings they copy. */
    if (terminated && a.ptr && (a.ptr[a.len] != 0 || b.ptr[b.len] != 0)) __builtin_trap();
}

static void same_int(int64_t a, int64_t b) {
    if (a != b) __builtin_trap();
}

static void same_fold(const tl_change_t *a, const tl_change_t *b, size_t i) {
    tl_change_fold_t x, y;
    int rx = tl_change_fold_get(a, i, &x), ry = tl_change_fold_get(b, i, &y);
    same_int(rx, ry);
    if (i == a->nfold_changes) {
        same_int(rx, TL_EINVAL);
        return;
    }
    same_int(rx, 0);
    same_str(x.kind, y.kind, 1);
    same_str(x.field, y.field, 1);
    same_str(x.value, y.value, 1);
    same_str(x.conflict_id, y.conflict_id, 1);
    same_str(x.customer, y.customer, 1);
    same_str(x.platform, y.platform, 1);
    same_str(x.event_id, y.event_id, 1);
    same_int(x.effective_ts, y.effective_ts);
    same_int(x.version, y.version);
    same_int(x.is_key, y.is_key);
    if (x.candidates || y.candidates) __builtin_trap();
    same_int((int64_t)x.ncandidates, (int64_t)y.ncandidates);
    for (size_t j = 0; j <= x.ncandidates; j++) {
        tl_change_candidate_t p, q;
        int rp = tl_change_candidate_get(a, i, j, &p), rq = tl_change_candidate_get(b, i, j, &q);
        same_int(rp, rq);
        if (j == x.ncandidates) {
            same_int(rp, TL_EINVAL);
            break;
        }
        same_int(rp, 0);
        same_str(p.value, q.value, 1);
        same_str(p.platform, q.platform, 1);
        same_str(p.event_id, q.event_id, 1);
        same_int(p.effective_ts, q.effective_ts);
    }
}

static void same_change(const tl_change_t *a, const tl_change_t *b) {
    same_str(a->event_id, b->event_id, 1);
    same_str(a->tenant_id, b->tenant_id, 1);
    same_str(a->customer_id, b->customer_id, 1);
    same_int(a->source_partition, b->source_partition);
    same_int(a->source_offset, b->source_offset);
    same_int(a->customer_version, b->customer_version);
    same_str(a->conversation_id, b->conversation_id, 1);
    same_int(a->conversation_version, b->conversation_version);
    same_int(a->conversation_opened, b->conversation_opened);
    same_int(a->effective_ts, b->effective_ts);
    same_int(a->duplicate, b->duplicate);
    same_str(a->event, b->event, 0);
    same_str(a->ignored, b->ignored, 1);
    same_int((int64_t)a->nfold_changes, (int64_t)b->nfold_changes);
    if (a->fold_changes || b->fold_changes) __builtin_trap();
    for (size_t i = 0; i <= a->nfold_changes; i++) same_fold(a, b, i);
}

/* Both paths on data[0..size): same error and message, or same Change. */
static void compare(tl_codec_t *direct, tl_codec_t *general, const uint8_t *data, size_t size) {
    tl_change_t d, g;
    int rd = tl_change_decode(direct, data, size, &d);
    int rg = tl_change_decode_general(general, data, size, &g);
    if (rd != rg) __builtin_trap();
    if (strcmp(tl_codec_errmsg(direct), tl_codec_errmsg(general)) != 0) __builtin_trap();
    if (rd == 0) same_change(&d, &g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tl_codec_t *direct, *general;
    if (!direct) {
        direct = fuzz_keep(tl_change_codec_new(NULL));
        general = fuzz_keep(tl_change_codec_new(NULL));
    }
    uint8_t *framed = malloc(TL_CODEC_HEADER_SIZE + size);
    if (!framed) abort();

    compare(direct, general, data, size);
    fuzz_frame(direct, data, size, framed);
    compare(direct, general, framed, TL_CODEC_HEADER_SIZE + size);

    free(framed);
    return 0;
}
