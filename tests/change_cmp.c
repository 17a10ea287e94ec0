/*
 * change_cmp.c -- see change_cmp.h.
 *
 * Each check returns at the first difference with its name, so that a
 * failing unit test says what differs and the fuzz target simply traps.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "change_cmp.h"
#include "error.h"

/* Same presence and bytes; with terminated, a NUL after both. */
static int str_differs(tl_str_t a, tl_str_t b, int terminated) {
    if ((a.ptr == NULL) != (b.ptr == NULL) || a.len != b.len) return 1;
    if (a.len && memcmp(a.ptr, b.ptr, a.len) != 0) return 1;
    return terminated && a.ptr && (a.ptr[a.len] != 0 || b.ptr[b.len] != 0);
}

#define STR(x, y, name, term) \
    if (str_differs(x, y, term)) return named(out, n, i, j, name)
#define INT(x, y, name) \
    if ((int64_t)(x) != (int64_t)(y)) return named(out, n, i, j, name)

/* name, qualified by fold entry i and candidate j when they are set
 * (SIZE_MAX when not). */
static const char *named(char *out, size_t n, size_t i, size_t j, const char *name) {
    if (i == SIZE_MAX) return name;
    if (j == SIZE_MAX) snprintf(out, n, "fold_changes[%zu].%s", i, name);
    else snprintf(out, n, "fold_changes[%zu].candidates[%zu].%s", i, j, name);
    return out;
}

/* An accessor's two answers: the same, and TL_EINVAL one past the end,
 * 0 before it. */
static const char *results_differ(int ra, int rb, int past_end) {
    if (ra != rb) return "result";
    if (past_end) return ra == TL_EINVAL ? NULL : "result past the end";
    return ra == 0 ? NULL : "result";
}

static const char *candidate_diff(const tl_change_t *a, const tl_change_t *b, size_t i, size_t ncand,
                                  char *out, size_t n) {
    for (size_t j = 0; j <= ncand; j++) {
        tl_change_candidate_t p, q;
        int rp = tl_change_candidate_get(a, i, j, &p), rq = tl_change_candidate_get(b, i, j, &q);
        const char *r = results_differ(rp, rq, j == ncand);
        if (r) return named(out, n, i, j, r);
        if (j == ncand) break;
        STR(p.value, q.value, "value", 1);
        STR(p.platform, q.platform, "platform", 1);
        STR(p.event_id, q.event_id, "event_id", 1);
        INT(p.effective_ts, q.effective_ts, "effective_ts");
    }
    return NULL;
}

static const char *fold_diff(const tl_change_t *a, const tl_change_t *b, char *out, size_t n) {
    size_t j = SIZE_MAX;
    for (size_t i = 0; i <= a->nfold_changes; i++) {
        tl_change_fold_t x, y;
        int rx = tl_change_fold_get(a, i, &x), ry = tl_change_fold_get(b, i, &y);
        const char *r = results_differ(rx, ry, i == a->nfold_changes);
        if (r) return named(out, n, i, j, r);
        if (i == a->nfold_changes) break;
        STR(x.kind, y.kind, "kind", 1);
        STR(x.field, y.field, "field", 1);
        STR(x.value, y.value, "value", 1);
        STR(x.conflict_id, y.conflict_id, "conflict_id", 1);
        STR(x.customer, y.customer, "customer", 1);
        STR(x.platform, y.platform, "platform", 1);
        STR(x.event_id, y.event_id, "event_id", 1);
        INT(x.effective_ts, y.effective_ts, "effective_ts");
        INT(x.version, y.version, "version");
        INT(x.is_key, y.is_key, "is_key");
        if (x.candidates || y.candidates) return named(out, n, i, j, "candidates (borrowed array exposed)");
        INT(x.ncandidates, y.ncandidates, "ncandidates");
        const char *d = candidate_diff(a, b, i, x.ncandidates, out, n);
        if (d) return d;
    }
    return NULL;
}

const char *tl_change_diff(const tl_change_t *a, const tl_change_t *b, char *out, size_t n) {
    size_t i = SIZE_MAX, j = SIZE_MAX;
    STR(a->event_id, b->event_id, "event_id", 1);
    STR(a->tenant_id, b->tenant_id, "tenant_id", 1);
    STR(a->customer_id, b->customer_id, "customer_id", 1);
    INT(a->source_partition, b->source_partition, "source_partition");
    INT(a->source_offset, b->source_offset, "source_offset");
    INT(a->customer_version, b->customer_version, "customer_version");
    STR(a->conversation_id, b->conversation_id, "conversation_id", 1);
    INT(a->conversation_version, b->conversation_version, "conversation_version");
    INT(a->conversation_opened, b->conversation_opened, "conversation_opened");
    INT(a->effective_ts, b->effective_ts, "effective_ts");
    INT(a->duplicate, b->duplicate, "duplicate");
    STR(a->event, b->event, "event", 0);
    STR(a->ignored, b->ignored, "ignored", 1);
    INT(a->nfold_changes, b->nfold_changes, "nfold_changes");
    if (a->fold_changes || b->fold_changes) return "fold_changes (borrowed array exposed)";
    return fold_diff(a, b, out, n);
}
