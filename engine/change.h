/*
 * change.h -- one record of <prefix>.changes: what the fold did with one
 * event (schemas/change.avsc).
 *
 * The fold worker writes one per event it reads, in the same Kafka
 * transaction as its input offsets; the projection workers read nothing
 * else.  The original event rides along byte for byte, so a projection
 * shows exactly what the connector sent and never reads .events itself.
 */
#ifndef TL_CHANGE_H
#define TL_CHANGE_H

#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "event.h"

typedef struct tl_change {
    tl_str_t event_id;
    tl_str_t tenant_id;
    tl_str_t customer_id;
    int32_t source_partition;
    int64_t source_offset;
    int64_t customer_version;
    tl_str_t conversation_id;       /* TL_STR_NULL: belongs to none */
    int64_t conversation_version;
    int conversation_opened;
    int64_t effective_ts;
    int duplicate;
    tl_str_t event;                 /* single-object encoded tl_event_t */
} tl_change_t;

/* A codec for Change records (reader = schemas/change.avsc).  NULL and *err
 * set on failure.  One per thread. */
tl_codec_t *tl_change_codec_new(int *err);

/* Appends ch, single-object encoded, to out.  Errors from the codec;
 * TL_EINVAL when a field cannot be set (an id over 255 bytes).  The
 * codec's thread. */
int tl_change_encode(tl_codec_t *codec, const tl_change_t *ch, tl_buf_t *out);

/* Decodes a Change; strings point into the codec's storage until its next
 * use.  Errors: the codec's decode errors.  The codec's thread. */
int tl_change_decode(tl_codec_t *codec, const void *data, size_t len, tl_change_t *ch);

#endif
