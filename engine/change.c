/*
 * change.c -- Change records (see change.h).  Field indexes follow the
 * field order of schemas/change.avsc; the unit tests round-trip every field,
 * so a reordering there fails loudly here.
 */
#include <string.h>

#include <avro.h>

#include "change.h"
#include "error.h"
#include "schemas.h"

enum {
    F_EVENT_ID, F_TENANT_ID, F_CUSTOMER_ID, F_SOURCE_PARTITION, F_SOURCE_OFFSET,
    F_CUSTOMER_VERSION, F_CONVERSATION_ID, F_CONVERSATION_VERSION, F_CONVERSATION_OPENED,
    F_EFFECTIVE_TS, F_DUPLICATE, F_EVENT
};

tl_codec_t *tl_change_codec_new(int *err) { return tl_codec_new(tl_schema_change, err); }

/* avro-c copies len + 1 bytes and expects the last to be a NUL; a
 * tl_str_t promises no NUL, so copy through a terminated scratch buffer.
 * Change strings are ids (at most ~100 bytes): the stack is enough. */
static int set_str_value(avro_value_t *f, tl_str_t s) {
    char tmp[256];
    if (s.len >= sizeof tmp) return TL_EINVAL;
    if (s.len) memcpy(tmp, s.ptr, s.len);
    tmp[s.len] = 0;
    return avro_value_set_string_len(f, tmp, s.len + 1) ? TL_ENOMEM : TL_OK;
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
    return TL_OK;
}
