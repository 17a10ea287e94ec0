/*
 * change.c -- Change records (see change.h).  Field indexes follow the
 * field order of schemas/change.avsc, and so does the direct decoder, which
 * reads the fields one after the other; tl_change_codec_new checks the
 * schema against the layout table below (names, types, order), so a
 * change to the schema that this file does not follow fails when the
 * first codec is made, not in the middle of a partition.
 *
 * The direct decoder (tl_change_decode) calls the codec's cursor once per
 * field, in the schema's order, and the cursor makes the walker's checks
 * with the walker's messages; fold entries and candidates go to two arrays
 * the codec keeps from record to record.  Records of other writer schemas
 * go to tl_change_decode_general, the avro value path.
 */
#include <stdlib.h>
#include <string.h>

#include <avro.h>

#include "change.h"
#include "error.h"
#include "schemas.h"

enum {
    F_EVENT_ID, F_TENANT_ID, F_CUSTOMER_ID, F_SOURCE_PARTITION, F_SOURCE_OFFSET,
    F_CUSTOMER_VERSION, F_CONVERSATION_ID, F_CONVERSATION_VERSION, F_CONVERSATION_OPENED,
    F_EFFECTIVE_TS, F_DUPLICATE, F_EVENT, F_IGNORED, F_FOLD_CHANGES
};
/* FoldChange and FoldCandidate fields. */
enum {
    FC_KIND, FC_FIELD, FC_VALUE, FC_CONFLICT_ID, FC_CUSTOMER, FC_PLATFORM, FC_EVENT_ID,
    FC_EFFECTIVE_TS, FC_VERSION, FC_IS_KEY, FC_CANDIDATES
};
enum { CA_VALUE, CA_PLATFORM, CA_EVENT_ID, CA_EFFECTIVE_TS };

/* The layout the encoder's indexes and the direct decoder assume.  type
 * AVRO_UNION stands for ["null", "string"]; an AVRO_ARRAY's items are the
 * record laid out by `items`. */
typedef struct layout {
    const char *name;
    avro_type_t type;
    const struct layout *items;
    size_t nitems;
} layout_t;

#define LAYOUT(a) a, sizeof(a) / sizeof(a[0])

static const layout_t candidate_layout[] = {
    [CA_VALUE] = { "value", AVRO_STRING, NULL, 0 },
    [CA_PLATFORM] = { "platform", AVRO_STRING, NULL, 0 },
    [CA_EVENT_ID] = { "event_id", AVRO_STRING, NULL, 0 },
    [CA_EFFECTIVE_TS] = { "effective_ts", AVRO_INT64, NULL, 0 },
};
static const layout_t fold_layout[] = {
    [FC_KIND] = { "kind", AVRO_STRING, NULL, 0 },
    [FC_FIELD] = { "field", AVRO_UNION, NULL, 0 },
    [FC_VALUE] = { "value", AVRO_UNION, NULL, 0 },
    [FC_CONFLICT_ID] = { "conflict_id", AVRO_UNION, NULL, 0 },
    [FC_CUSTOMER] = { "customer", AVRO_UNION, NULL, 0 },
    [FC_PLATFORM] = { "platform", AVRO_UNION, NULL, 0 },
    [FC_EVENT_ID] = { "event_id", AVRO_UNION, NULL, 0 },
    [FC_EFFECTIVE_TS] = { "effective_ts", AVRO_INT64, NULL, 0 },
    [FC_VERSION] = { "version", AVRO_INT64, NULL, 0 },
    [FC_IS_KEY] = { "is_key", AVRO_BOOLEAN, NULL, 0 },
    [FC_CANDIDATES] = { "candidates", AVRO_ARRAY, LAYOUT(candidate_layout) },
};
static const layout_t change_layout[] = {
    [F_EVENT_ID] = { "event_id", AVRO_STRING, NULL, 0 },
    [F_TENANT_ID] = { "tenant_id", AVRO_STRING, NULL, 0 },
    [F_CUSTOMER_ID] = { "customer_id", AVRO_STRING, NULL, 0 },
    [F_SOURCE_PARTITION] = { "source_partition", AVRO_INT32, NULL, 0 },
    [F_SOURCE_OFFSET] = { "source_offset", AVRO_INT64, NULL, 0 },
    [F_CUSTOMER_VERSION] = { "customer_version", AVRO_INT64, NULL, 0 },
    [F_CONVERSATION_ID] = { "conversation_id", AVRO_UNION, NULL, 0 },
    [F_CONVERSATION_VERSION] = { "conversation_version", AVRO_INT64, NULL, 0 },
    [F_CONVERSATION_OPENED] = { "conversation_opened", AVRO_BOOLEAN, NULL, 0 },
    [F_EFFECTIVE_TS] = { "effective_ts", AVRO_INT64, NULL, 0 },
    [F_DUPLICATE] = { "duplicate", AVRO_BOOLEAN, NULL, 0 },
    [F_EVENT] = { "event", AVRO_BYTES, NULL, 0 },
    [F_IGNORED] = { "ignored", AVRO_UNION, NULL, 0 },
    [F_FOLD_CHANGES] = { "fold_changes", AVRO_ARRAY, LAYOUT(fold_layout) },
};

/* Fewest bytes a FoldChange / FoldCandidate takes, as the codec's walker
 * counts it: every field of either (string, long, boolean, union, array)
 * takes at least one. */
#define FOLD_MIN (sizeof fold_layout / sizeof fold_layout[0])
#define CANDIDATE_MIN (sizeof candidate_layout / sizeof candidate_layout[0])

static avro_schema_t deref(avro_schema_t s) {
    while (s && avro_typeof(s) == AVRO_LINK) s = avro_schema_link_target(s);
    return s;
}

static int layout_matches(avro_schema_t rec, const layout_t *l, size_t n) {
    rec = deref(rec);
    if (!rec || avro_typeof(rec) != AVRO_RECORD || avro_schema_record_size(rec) != n) return 0;
    for (size_t i = 0; i < n; i++) {
        avro_schema_t f = deref(avro_schema_record_field_get_by_index(rec, (int)i));
        if (strcmp(avro_schema_record_field_name(rec, (int)i), l[i].name) != 0 ||
            avro_typeof(f) != l[i].type)
            return 0;
        if (l[i].type == AVRO_UNION &&
            (avro_schema_union_size(f) != 2 ||
             avro_typeof(deref(avro_schema_union_branch(f, 0))) != AVRO_NULL ||
             avro_typeof(deref(avro_schema_union_branch(f, 1))) != AVRO_STRING))
            return 0;
        if (l[i].type == AVRO_ARRAY && !layout_matches(avro_schema_array_items(f), l[i].items, l[i].nitems))
            return 0;
    }
    return 1;
}

tl_codec_t *tl_change_codec_new(int *err) {
    tl_codec_t *c = tl_codec_new(tl_schema_change, err);
    int rc = TL_OK;
    if (!c) return NULL;
    if (!layout_matches(tl_codec_schema(c), LAYOUT(change_layout)))
        rc = TL_ESCHEMA;
    /* Records written before fold_changes existed. */
    else
        rc = tl_codec_add_writer(c, tl_schema_change_v1);
    if (rc) {
        if (err) *err = rc;
        tl_codec_free(c);
        return NULL;
    }
    return c;
}

/* avro-c copies len + 1 bytes and expects the last to be a NUL; a
 * tl_str_t promises no NUL, so copy through a terminated scratch buffer.
 * Ids fit the stack; field values (up to TL_FOLD_MAX_VALUE) may not. */
static int set_str_value(avro_value_t *f, tl_str_t s) {
    char tmp[256], *t = tmp;
    if (s.len >= 1u << 20) return TL_EINVAL;
    if (s.len >= sizeof tmp && !(t = malloc(s.len + 1))) return TL_ENOMEM;
    if (s.len) memcpy(t, s.ptr, s.len);
    t[s.len] = 0;
    int rc = avro_value_set_string_len(f, t, s.len + 1) ? TL_ENOMEM : TL_OK;
    if (t != tmp) free(t);
    return rc;
}

/* An ["null", "string"] union: null when s.ptr is NULL. */
static int set_opt_str(avro_value_t *rec, int idx, tl_str_t s) {
    avro_value_t f, b;
    if (avro_value_get_by_index(rec, (size_t)idx, &f, NULL)) return TL_ENOMEM;
    if (!s.ptr) return avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b) ? TL_EINVAL : TL_OK;
    if (avro_value_set_branch(&f, 1, &b)) return TL_EINVAL;
    return set_str_value(&b, s);
}

static int set_str(avro_value_t *rec, int idx, tl_str_t s) {
    avro_value_t f;
    if (avro_value_get_by_index(rec, (size_t)idx, &f, NULL)) return TL_ENOMEM;
    return set_str_value(&f, s);
}

static int set_long(avro_value_t *rec, int idx, int64_t v) {
    avro_value_t f;
    return avro_value_get_by_index(rec, (size_t)idx, &f, NULL) || avro_value_set_long(&f, v)
               ? TL_ENOMEM : TL_OK;
}

static int set_fold_change(avro_value_t *fc, const tl_change_fold_t *x) {
    avro_value_t f, arr, cv;
    int e = 0;
    e |= set_str(fc, FC_KIND, x->kind);
    e |= set_opt_str(fc, FC_FIELD, x->field);
    e |= set_opt_str(fc, FC_VALUE, x->value);
    e |= set_opt_str(fc, FC_CONFLICT_ID, x->conflict_id);
    e |= set_opt_str(fc, FC_CUSTOMER, x->customer);
    e |= set_opt_str(fc, FC_PLATFORM, x->platform);
    e |= set_opt_str(fc, FC_EVENT_ID, x->event_id);
    e |= set_long(fc, FC_EFFECTIVE_TS, x->effective_ts);
    e |= set_long(fc, FC_VERSION, x->version);
    e |= avro_value_get_by_index(fc, FC_IS_KEY, &f, NULL);
    e |= avro_value_set_boolean(&f, x->is_key);
    e |= avro_value_get_by_index(fc, FC_CANDIDATES, &arr, NULL);
    e |= avro_value_reset(&arr);
    for (size_t j = 0; j < x->ncandidates && !e; j++) {
        const tl_change_candidate_t *c = &x->candidates[j];
        e |= avro_value_append(&arr, &cv, NULL);
        e |= set_str(&cv, CA_VALUE, c->value);
        e |= set_str(&cv, CA_PLATFORM, c->platform);
        e |= set_str(&cv, CA_EVENT_ID, c->event_id);
        e |= set_long(&cv, CA_EFFECTIVE_TS, c->effective_ts);
    }
    return e;
}

int tl_change_encode(tl_codec_t *codec, const tl_change_t *ch, tl_buf_t *out) {
    avro_value_t *v = tl_codec_value(codec), f, b;
    int e = 0;
    e |= set_str(v, F_EVENT_ID, ch->event_id);
    e |= set_str(v, F_TENANT_ID, ch->tenant_id);
    e |= set_str(v, F_CUSTOMER_ID, ch->customer_id);
    e |= avro_value_get_by_index(v, F_SOURCE_PARTITION, &f, NULL);
    e |= avro_value_set_int(&f, ch->source_partition);
    e |= set_long(v, F_SOURCE_OFFSET, ch->source_offset);
    e |= set_long(v, F_CUSTOMER_VERSION, ch->customer_version);
    e |= avro_value_get_by_index(v, F_CONVERSATION_ID, &f, NULL);
    if (ch->conversation_id.ptr && ch->conversation_id.len) {
        e |= avro_value_set_branch(&f, 1, &b);
        e |= set_str_value(&b, ch->conversation_id);
    } else {
        e |= avro_value_set_branch(&f, 0, &b);
        e |= avro_value_set_null(&b);
    }
    e |= set_long(v, F_CONVERSATION_VERSION, ch->conversation_version);
    e |= avro_value_get_by_index(v, F_CONVERSATION_OPENED, &f, NULL);
    e |= avro_value_set_boolean(&f, ch->conversation_opened);
    e |= set_long(v, F_EFFECTIVE_TS, ch->effective_ts);
    e |= avro_value_get_by_index(v, F_DUPLICATE, &f, NULL);
    e |= avro_value_set_boolean(&f, ch->duplicate);
    e |= avro_value_get_by_index(v, F_EVENT, &f, NULL);
    e |= avro_value_set_bytes(&f, (void *)ch->event.ptr, ch->event.len);
    e |= set_opt_str(v, F_IGNORED, ch->ignored);
    e |= avro_value_get_by_index(v, F_FOLD_CHANGES, &f, NULL);
    e |= avro_value_reset(&f);
    for (size_t i = 0; i < ch->nfold_changes && !e; i++) {
        e |= avro_value_append(&f, &b, NULL);
        e |= set_fold_change(&b, &ch->fold_changes[i]);
    }
    /* avro-c setters fail only on a type mismatch (a bug caught by the
     * tests) or allocation; set_str_value on an oversized id. */
    if (e) return TL_EINVAL;
    return tl_codec_write(codec, out);
}

static tl_str_t get_str(avro_value_t *rec, int idx) {
    avro_value_t f;
    const char *p = NULL;
    size_t n = 0;
    if (avro_value_get_by_index(rec, (size_t)idx, &f, NULL) || avro_value_get_string(&f, &p, &n) ||
        !p || !n)
        return (tl_str_t){"", 0};
    return (tl_str_t){p, n - 1};
}

static tl_str_t get_opt_str(avro_value_t *rec, int idx) {
    avro_value_t f, b;
    int disc = 0;
    const char *p = NULL;
    size_t n = 0;
    if (avro_value_get_by_index(rec, (size_t)idx, &f, NULL) || avro_value_get_discriminant(&f, &disc) ||
        disc != 1 || avro_value_get_current_branch(&f, &b) || avro_value_get_string(&b, &p, &n) || !p || !n)
        return TL_STR_NULL;
    return (tl_str_t){p, n - 1};
}

static int64_t get_long(avro_value_t *rec, int idx) {
    avro_value_t f;
    int64_t v = 0;
    if (avro_value_get_by_index(rec, (size_t)idx, &f, NULL) == 0) avro_value_get_long(&f, &v);
    return v;
}

int tl_change_decode_general(tl_codec_t *codec, const void *data, size_t len, tl_change_t *ch) {
    avro_value_t *v, f, b;
    int rc = tl_codec_read(codec, data, len, &v);
    if (rc) return rc;
    memset(ch, 0, sizeof *ch);
    ch->event_id = get_str(v, F_EVENT_ID);
    ch->tenant_id = get_str(v, F_TENANT_ID);
    ch->customer_id = get_str(v, F_CUSTOMER_ID);
    int32_t part = 0;
    avro_value_get_by_index(v, F_SOURCE_PARTITION, &f, NULL);
    avro_value_get_int(&f, &part);
    ch->source_partition = part;
    ch->source_offset = get_long(v, F_SOURCE_OFFSET);
    ch->customer_version = get_long(v, F_CUSTOMER_VERSION);
    int disc = 0;
    avro_value_get_by_index(v, F_CONVERSATION_ID, &f, NULL);
    avro_value_get_discriminant(&f, &disc);
    if (disc == 1) {
        const char *p = NULL;
        size_t n = 0;
        avro_value_get_current_branch(&f, &b);
        avro_value_get_string(&b, &p, &n);
        ch->conversation_id = (p && n) ? (tl_str_t){p, n - 1} : TL_STR_NULL;
    }
    ch->conversation_version = get_long(v, F_CONVERSATION_VERSION);
    int bv = 0;
    avro_value_get_by_index(v, F_CONVERSATION_OPENED, &f, NULL);
    avro_value_get_boolean(&f, &bv);
    ch->conversation_opened = bv;
    ch->effective_ts = get_long(v, F_EFFECTIVE_TS);
    avro_value_get_by_index(v, F_DUPLICATE, &f, NULL);
    avro_value_get_boolean(&f, &bv);
    ch->duplicate = bv;
    const void *bytes = NULL;
    size_t blen = 0;
    avro_value_get_by_index(v, F_EVENT, &f, NULL);
    avro_value_get_bytes(&f, &bytes, &blen);
    ch->event = (tl_str_t){bytes, blen};
    ch->ignored = get_opt_str(v, F_IGNORED);
    size_t n = 0;
    if (avro_value_get_by_index(v, F_FOLD_CHANGES, &ch->fc_, NULL) == 0 &&
        avro_value_get_size(&ch->fc_, &n) == 0)
        ch->nfold_changes = n;
    return TL_OK;
}

/* ---- direct decoding ---------------------------------------------------- */

/* A fold entry as the direct decoder keeps it: its candidates are
 * cand[first..first + f.ncandidates) of the candidate array. */
typedef struct direct_fold {
    tl_change_fold_t f;
    size_t first;
} direct_fold_t;

enum { SLOT_FOLDS, SLOT_CANDIDATES };

/* One FoldChange at the cursor into *x; its candidates appended to the
 * codec's candidate array *cand (which may move) from *ncand on. */
static int direct_fold(tl_codec_cursor_t *cur, direct_fold_t *x, tl_change_candidate_t **cand,
                       size_t *ncand) {
    tl_change_fold_t *f = &x->f;
    int rc;
    memset(x, 0, sizeof *x);
    if ((rc = tl_codec_cursor_string(cur, &f->kind)) ||
        (rc = tl_codec_cursor_opt_string(cur, &f->field)) ||
        (rc = tl_codec_cursor_opt_string(cur, &f->value)) ||
        (rc = tl_codec_cursor_opt_string(cur, &f->conflict_id)) ||
        (rc = tl_codec_cursor_opt_string(cur, &f->customer)) ||
        (rc = tl_codec_cursor_opt_string(cur, &f->platform)) ||
        (rc = tl_codec_cursor_opt_string(cur, &f->event_id)) ||
        (rc = tl_codec_cursor_long(cur, &f->effective_ts)) ||
        (rc = tl_codec_cursor_long(cur, &f->version)) ||
        (rc = tl_codec_cursor_boolean(cur, &f->is_key)))
        return rc;
    x->first = *ncand;
    for (;;) {
        int64_t count;
        if ((rc = tl_codec_cursor_block(cur, CANDIDATE_MIN, &count))) return rc;
        if (count == 0) break;
        size_t want = *ncand + (size_t)count;
        if (!(*cand = tl_codec_cursor_grow(cur, SLOT_CANDIDATES, want, sizeof **cand)))
            return TL_ENOMEM;
        for (; *ncand < want; (*ncand)++) {
            tl_change_candidate_t *c = &(*cand)[*ncand];
            if ((rc = tl_codec_cursor_string(cur, &c->value)) ||
                (rc = tl_codec_cursor_string(cur, &c->platform)) ||
                (rc = tl_codec_cursor_string(cur, &c->event_id)) ||
                (rc = tl_codec_cursor_long(cur, &c->effective_ts)))
                return rc;
        }
    }
    f->ncandidates = *ncand - x->first;
    return TL_OK;
}

int tl_change_decode(tl_codec_t *codec, const void *data, size_t len, tl_change_t *ch) {
    tl_codec_cursor_t cur;
    int own, rc = tl_codec_cursor_open(codec, data, len, &cur, &own);
    if (rc) return rc;
    /* Only the reader schema's own records: version 1's need defaults. */
    if (!own) return tl_change_decode_general(codec, data, len, ch);
    tl_change_t tmp;
    memset(&tmp, 0, sizeof tmp);
    if ((rc = tl_codec_cursor_string(&cur, &tmp.event_id)) ||
        (rc = tl_codec_cursor_string(&cur, &tmp.tenant_id)) ||
        (rc = tl_codec_cursor_string(&cur, &tmp.customer_id)) ||
        (rc = tl_codec_cursor_int(&cur, &tmp.source_partition)) ||
        (rc = tl_codec_cursor_long(&cur, &tmp.source_offset)) ||
        (rc = tl_codec_cursor_long(&cur, &tmp.customer_version)) ||
        (rc = tl_codec_cursor_opt_string(&cur, &tmp.conversation_id)) ||
        (rc = tl_codec_cursor_long(&cur, &tmp.conversation_version)) ||
        (rc = tl_codec_cursor_boolean(&cur, &tmp.conversation_opened)) ||
        (rc = tl_codec_cursor_long(&cur, &tmp.effective_ts)) ||
        (rc = tl_codec_cursor_boolean(&cur, &tmp.duplicate)) ||
        (rc = tl_codec_cursor_bytes(&cur, &tmp.event)) ||
        (rc = tl_codec_cursor_opt_string(&cur, &tmp.ignored)))
        return rc;
    direct_fold_t *folds = NULL;
    tl_change_candidate_t *cand = NULL;
    size_t nfolds = 0, ncand = 0;
    for (;;) {
        int64_t count;
        if ((rc = tl_codec_cursor_block(&cur, FOLD_MIN, &count))) return rc;
        if (count == 0) break;
        size_t want = nfolds + (size_t)count;
        if (!(folds = tl_codec_cursor_grow(&cur, SLOT_FOLDS, want, sizeof *folds))) return TL_ENOMEM;
        for (; nfolds < want; nfolds++)
            if ((rc = direct_fold(&cur, &folds[nfolds], &cand, &ncand))) return rc;
    }
    if ((rc = tl_codec_cursor_close(&cur))) return rc;
    tmp.nfold_changes = nfolds;
    tmp.dfc_ = folds;
    tmp.dcand_ = cand;
    *ch = tmp;
    return TL_OK;
}

int tl_change_fold_get(const tl_change_t *ch, size_t i, tl_change_fold_t *out) {
    avro_value_t e, f;
    size_t n = 0;
    if (i < ch->nfold_changes && ch->dfc_) {
        *out = ((const direct_fold_t *)ch->dfc_)[i].f;
        return TL_OK;
    }
    if (i >= ch->nfold_changes || !ch->fc_.self ||
        avro_value_get_by_index((avro_value_t *)&ch->fc_, i, &e, NULL))
        return TL_EINVAL;
    memset(out, 0, sizeof *out);
    out->kind = get_str(&e, FC_KIND);
    out->field = get_opt_str(&e, FC_FIELD);
    out->value = get_opt_str(&e, FC_VALUE);
    out->conflict_id = get_opt_str(&e, FC_CONFLICT_ID);
    out->customer = get_opt_str(&e, FC_CUSTOMER);
    out->platform = get_opt_str(&e, FC_PLATFORM);
    out->event_id = get_opt_str(&e, FC_EVENT_ID);
    out->effective_ts = get_long(&e, FC_EFFECTIVE_TS);
    out->version = get_long(&e, FC_VERSION);
    int bv = 0;
    if (avro_value_get_by_index(&e, FC_IS_KEY, &f, NULL) == 0) avro_value_get_boolean(&f, &bv);
    out->is_key = bv;
    if (avro_value_get_by_index(&e, FC_CANDIDATES, &f, NULL) == 0 && avro_value_get_size(&f, &n) == 0)
        out->ncandidates = n;
    return TL_OK;
}

int tl_change_candidate_get(const tl_change_t *ch, size_t i, size_t j, tl_change_candidate_t *out) {
    avro_value_t e, arr, c;
    if (i < ch->nfold_changes && ch->dfc_) {
        const direct_fold_t *x = &((const direct_fold_t *)ch->dfc_)[i];
        if (j >= x->f.ncandidates) return TL_EINVAL;
        *out = ch->dcand_[x->first + j];
        return TL_OK;
    }
    if (i >= ch->nfold_changes || !ch->fc_.self ||
        avro_value_get_by_index((avro_value_t *)&ch->fc_, i, &e, NULL) ||
        avro_value_get_by_index(&e, FC_CANDIDATES, &arr, NULL) ||
        avro_value_get_by_index(&arr, j, &c, NULL))
        return TL_EINVAL;
    out->value = get_str(&c, CA_VALUE);
    out->platform = get_str(&c, CA_PLATFORM);
    out->event_id = get_str(&c, CA_EVENT_ID);
    out->effective_ts = get_long(&c, CA_EFFECTIVE_TS);
    return TL_OK;
}
