/*
 * change.c -- Change records (see change.h).  Field indexes follow the
 * field order of schemas/change.avsc; the unit tests round-trip every field,
 * so a reordering there fails loudly here.
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

tl_codec_t *tl_change_codec_new(int *err) {
    tl_codec_t *c = tl_codec_new(tl_schema_change, err);
    /* Records written before fold_changes existed. */
    int rc;
    if (c && (rc = tl_codec_add_writer(c, tl_schema_change_v1))) {
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

int tl_change_decode(tl_codec_t *codec, const void *data, size_t len, tl_change_t *ch) {
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

int tl_change_fold_get(const tl_change_t *ch, size_t i, tl_change_fold_t *out) {
    avro_value_t e, f;
    size_t n = 0;
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
