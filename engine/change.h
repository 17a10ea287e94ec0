/*
 * change.h -- one record of <prefix>.changes: what the fold did with one
 * event (schemas/change.avsc).
 *
 * The fold worker writes one per event it reads, in the same Kafka
 * transaction as its input offsets; the projection workers read nothing
 * else.  The original event rides along byte for byte, so a projection
 * shows exactly what the connector sent and never reads .events itself.
 *
 * Version 2 of the schema adds what the fold did beyond versions and the
 * conversation: `ignored` (why the event changed nothing) and
 * `fold_changes`, one entry per tl_fold_change_t, with the provenance of a
 * field's current value and every candidate of a conflict written out, so
 * that the agent projection maintains customer_fields and the conflict
 * queue from the Change alone.  Version 1 records (schemas/history/
 * change.v1.avsc) still decode: ignored is null, fold_changes empty.
 *
 * Encoding takes plain arrays (fold_changes/nfold_changes); decoding
 * hands out the count, and tl_change_fold_get / tl_change_candidate_get
 * read entries from the codec, so the struct keeps its shape whatever the
 * number of entries and a decode allocates nothing in the steady state.
 *
 * Every projection worker and the identity writer decode every Change, so
 * decoding is the hot path of the read side.  Records of the current schema
 * -- nearly all of them -- are read straight from the bytes into tl_change_t
 * and into arrays the codec keeps (fold entries, candidates), through the
 * codec's cursor, without the avro value; records of older writer schemas
 * need resolution (defaults for the fields version 1 lacks) and take the
 * general path, the codec's walker into its avro value, whose array
 * tl_change_fold_get then reads on demand.  The two give the same
 * tl_change_t and the same error for any input; tl_change_decode_general
 * is there for the tests and the fuzz target that hold them to it.
 */
#ifndef TL_CHANGE_H
#define TL_CHANGE_H

#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "event.h"

/* One value of a conflict. */
typedef struct tl_change_candidate {
    tl_str_t value;
    tl_str_t platform;              /* slug */
    tl_str_t event_id;
    int64_t effective_ts;
} tl_change_candidate_t;

/* One entry of fold_changes (a tl_fold_change_t written out).  Optional
 * strings are TL_STR_NULL when absent. */
typedef struct tl_change_fold {
    tl_str_t kind;                  /* tl_fold_change_slug(): "field_set", ... */
    tl_str_t field, value, conflict_id, customer;
    tl_str_t platform, event_id;    /* field_*: the current value's origin */
    int64_t effective_ts, version;  /* field_*: the current value's */
    int is_key;
    /* encode: the candidates; decode: NULL (use tl_change_candidate_get) */
    const tl_change_candidate_t *candidates;
    size_t ncandidates;
} tl_change_fold_t;

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
    tl_str_t ignored;               /* TL_FOLD_IGNORE_* name; TL_STR_NULL: applied */
    /* encode: the entries; decode: NULL, with nfold_changes set */
    const tl_change_fold_t *fold_changes;
    size_t nfold_changes;
    /* decode only, private: where tl_change_fold_get finds the entries */
    avro_value_t fc_;               /* general path: the value's array */
    const void *dfc_;               /* direct path: the codec's entries */
    const tl_change_candidate_t *dcand_;    /* and their candidates */
} tl_change_t;

/* A codec for Change records (reader = schemas/change.avsc, version 1 known
 * as a writer).  NULL and *err set on failure: TL_ESCHEMA when the schema's
 * fields no longer match what this module reads and writes (drift fails
 * here, at start-up), else the codec's errors.  One per thread. */
tl_codec_t *tl_change_codec_new(int *err);

/* Appends ch, single-object encoded, to out.  Errors from the codec;
 * TL_EINVAL when a field cannot be set (an id over 255 bytes).  The
 * codec's thread. */
int tl_change_encode(tl_codec_t *codec, const tl_change_t *ch, tl_buf_t *out);

/* Decodes a Change; strings (and `event`) point into the codec's storage
 * until its next use.  Errors: the codec's decode errors (tl_codec_read),
 * with tl_codec_errmsg saying where; TL_ESCHEMA never (the codec checked
 * the layout when it was made).  On failure *ch is unchanged.  The codec's
 * thread. */
int tl_change_decode(tl_codec_t *codec, const void *data, size_t len, tl_change_t *ch);

/* tl_change_decode by the general path only (the codec's walker into its
 * avro value, then the value into *ch), which tl_change_decode takes for
 * records of older writer schemas.  Same result and errors for any input;
 * for the tests and fuzzing that make sure of it.  Same contract. */
int tl_change_decode_general(tl_codec_t *codec, const void *data, size_t len, tl_change_t *ch);

/* Entry i (< ch->nfold_changes) of a decoded Change into *out (its
 * candidates field NULL, ncandidates set).  Strings point into the codec's
 * storage, valid as long as ch's.  TL_EINVAL when i is out of range or ch
 * was not decoded.  The codec's thread. */
int tl_change_fold_get(const tl_change_t *ch, size_t i, tl_change_fold_t *out);

/* Candidate j of entry i of a decoded Change.  Same lifetime and errors. */
int tl_change_candidate_get(const tl_change_t *ch, size_t i, size_t j, tl_change_candidate_t *out);

#endif
