/*
 * codec.h -- Avro single-object encoding of threadline records.
 *
 * Every record value on the events and changes topics is framed as
 *
 *   OFFSET  SIZE  FIELD
 *   0       2     marker C3 01
 *   2       8     CRC-64-AVRO fingerprint of the writer schema's Parsing
 *                 Canonical Form, little-endian (see canon.h)
 *   10      n     Avro binary encoding of the datum, nothing after it
 *
 * so that any Avro implementation decodes it from the .avsc files alone.
 *
 * A codec is built for one reader schema (the schema the program works
 * with) and knows any number of writer schemas by fingerprint; a record
 * written with an older or newer schema is resolved against the reader
 * schema by the specification's rules (fields matched by name, missing
 * fields take their defaults, numeric promotion, enum symbols by name,
 * union branches by type).
 *
 * Two layers:
 *   - the generic layer (tl_codec_new, tl_codec_value, tl_codec_write,
 *     tl_codec_read) works with avro_value_t for any schema; threadline.Change
 *     is mapped on it;
 *   - the event layer (tl_codec_new_event, tl_codec_encode_event,
 *     tl_codec_decode_event) maps threadline.Event to and from tl_event_t.
 * and, for record layers in other modules, a cursor (tl_codec_cursor_*)
 * that reads a datum of the reader schema field by field with the checks
 * and messages of the generic layer's reader: change.c decodes Change
 * records through it.
 *
 * Threads: a codec belongs to one thread at a time; nothing in it is
 * locked.  Give every worker its own codec (they are cheap to build).
 * Codecs share nothing, so different codecs may be used concurrently.
 *
 * tl_codec_decode_event reads records of the reader schema's own
 * fingerprint straight into tl_event_t, without the avro value, and
 * resolves records of other writer schemas through it; callers cannot
 * tell the two apart (tl_codec_decode_event_general is there for the tests
 * that make sure of it).
 *
 * Memory: a codec owns one reusable value of the reader schema, its
 * decoded strings and arrays; the steady state of encoding or decoding
 * records of one shape allocates nothing.  Anything a decode hands out
 * (the avro_value_t, tl_str_t pointers, attachment and tag arrays) stays
 * valid until the next call on the same codec that takes a non-const
 * tl_codec_t.  Decoded strings borrow the codec's input copy while encoded
 * ones own their buffers, so a codec that alternates between the two
 * reallocates string buffers each time: where both directions are hot,
 * give each its own codec.
 */
#ifndef TL_CODEC_H
#define TL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <avro.h>

#include "buf.h"
#include "event.h"

typedef struct tl_codec tl_codec_t;

/* Bytes before the datum: marker and fingerprint. */
#define TL_CODEC_HEADER_SIZE 10

/* Builds a codec whose reader schema is reader_schema_json (NUL-terminated
 * Avro schema JSON; usually a record).  The reader schema is also the
 * codec's first writer schema, the one tl_codec_write uses.
 *
 * Returns the codec, owned by the caller (tl_codec_free).  On failure
 * returns NULL and, if err is not NULL, sets *err to TL_EJSON (not JSON),
 * TL_ESCHEMA (not a valid schema) or TL_ENOMEM.  Any thread. */
tl_codec_t *tl_codec_new(const char *reader_schema_json, int *err);

/* tl_codec_new for threadline.Event (tl_schema_event), with the event layer
 * enabled.  Same ownership and errors. */
tl_codec_t *tl_codec_new_event(int *err);

/* Frees the codec and everything it handed out.  NULL does nothing. */
void tl_codec_free(tl_codec_t *c);

/* Registers writer_schema_json so that records carrying its fingerprint
 * can be read.  The resolution of writer against reader is worked out
 * here, once: a schema the reader cannot resolve (a reader field missing
 * from the writer without a default, a writer enum symbol unknown to the
 * reader enum without a default symbol, a type that neither matches nor
 * promotes, a default that does not fit its type) is rejected with
 * TL_ESCHEMA and tl_codec_errmsg names the field.  Registering a schema
 * that is already known (same fingerprint) succeeds and does nothing.
 *
 * Errors: TL_EJSON, TL_ESCHEMA, TL_ENOMEM; the codec is unchanged.
 * Owning thread. */
int tl_codec_add_writer(tl_codec_t *c, const char *writer_schema_json);

/* Fingerprint of the reader schema: the one tl_codec_write puts in the
 * header.  Cannot fail. */
uint64_t tl_codec_fingerprint(const tl_codec_t *c);

/* The codec's reusable value of the reader schema, reset with
 * avro_value_reset (arrays and maps empty, unions keeping their branch),
 * for the caller to fill before tl_codec_write.  Set every field: avro-c's
 * reset leaves a string that held a value in a state avro_value_write
 * refuses (tl_codec_write then fails with TL_EINVAL).  Owned by the codec;
 * valid until the next call on it.  Owning thread; cannot fail. */
avro_value_t *tl_codec_value(tl_codec_t *c);

/* Appends the framed encoding of tl_codec_value(c) to out.
 *
 * Errors: TL_EINVAL when the value is incomplete (a union without a
 * branch, an enum out of range), TL_ENOMEM.  On failure out->len is
 * unchanged (its capacity may have grown).  Owning thread. */
int tl_codec_write(tl_codec_t *c, tl_buf_t *out);

/* Decodes the framed record data[0..len) into the codec's reusable reader
 * value and sets *out to it (valid until the next call on c).  The record
 * is resolved when its writer schema is not the reader schema.
 *
 * Errors, with *out unchanged and tl_codec_errmsg saying where:
 *   TL_ETRUNCATED      shorter than the header, or the input ends before the
 *                      datum does (a length or count that runs past the end
 *                      of the input is reported this way: a corrupt length
 *                      and a cut-off record cannot be told apart)
 *   TL_EBADMAGIC       the first two bytes are not C3 01
 *   TL_EUNKNOWNSCHEMA  the fingerprint is not a registered writer schema
 *   TL_ECORRUPT        malformed varint, int out of range, negative length
 *                      or count, boolean not 0/1, union branch or enum
 *                      index out of range, bytes left after the datum
 *   TL_ETOOBIG         nesting deeper than 256, or more than 65536 items of
 *                      a type that takes no bytes in one array or map
 *   TL_ENOMEM
 * Never reads outside data[0..len) and never allocates in proportion to a
 * length it has not checked against len.  Owning thread. */
int tl_codec_read(tl_codec_t *c, const void *data, size_t len, avro_value_t **out);

/* Encodes ev as threadline.Event and appends the framed record to out.
 * Strings in ev are copied; ev is not kept.
 *
 * Errors: TL_EINVAL (not an event codec; ev->kind, a platform, speaker or
 * evidence value out of range; a required string with ptr == NULL; an
 * attachment array with n > 0 and v == NULL), TL_ENOMEM.  On failure
 * out->len is unchanged.  Owning thread. */
int tl_codec_encode_event(tl_codec_t *c, const tl_event_t *ev, tl_buf_t *out);

/* Decodes a framed threadline.Event into *ev.  Every tl_str_t and array in
 * *ev points into storage owned by the codec, valid until the next call on
 * c.  Errors as tl_codec_read, plus TL_EINVAL when c is not an event codec
 * and TL_ECORRUPT when an enum value has no tl_*_t counterpart.  On failure
 * *ev is unchanged.  Owning thread. */
int tl_codec_decode_event(tl_codec_t *c, const void *data, size_t len, tl_event_t *ev);

/* tl_codec_decode_event by the general path only: the walker into the
 * reader value, then the value into *ev.  tl_codec_decode_event takes it
 * for records of other writer schemas and decodes the reader schema's own
 * records directly; both give the same *ev and the same error for any
 * input.  Exists so that tests and fuzzing can hold the two to that.
 * Same contract as tl_codec_decode_event. */
int tl_codec_decode_event_general(tl_codec_t *c, const void *data, size_t len, tl_event_t *ev);

/* ---- direct reading ------------------------------------------------------
 *
 * For a record layer outside this module (change.c) that reads records of
 * the reader schema's own fingerprint straight into its structs, as
 * tl_codec_decode_event does for events, and leaves records of other
 * writer schemas to tl_codec_read.  Each call reads one datum of one type
 * at the cursor with exactly the checks tl_codec_read's walker makes for
 * that type, in the same order, with the same error code and the same
 * tl_codec_errmsg (offsets included): a layer that makes the calls in the
 * schema's field order fails on every input as tl_codec_read would, and
 * the walker's bounds hold (nothing is read outside the input, nothing is
 * allocated beyond what the bytes left can hold).
 *
 * Strings and bytes are copied NUL-terminated into the codec's arena, as
 * the walker's are, valid until the next call on the codec that takes a
 * non-const tl_codec_t; so are the arrays of tl_codec_cursor_grow.  On an
 * error the cursor is left where the datum went wrong and should be
 * dropped.  The codec's thread, like every call on it. */

/* Where a direct read is in the datum.  The members are the codec's. */
typedef struct tl_codec_cursor {
    tl_codec_t *c;
    const uint8_t *base;            /* start of the record, for offsets */
    const uint8_t *p, *end;
    int depth;
} tl_codec_cursor_t;

/* Reusable arrays a layer may keep in the codec (tl_codec_cursor_grow). */
#define TL_CODEC_CURSOR_SLOTS 2

/* The reader schema, owned by c (for a layer to check its field layout
 * when it is set up).  Cannot fail. */
avro_schema_t tl_codec_schema(const tl_codec_t *c);

/* Checks the framing of data[0..len) as tl_codec_read does (same errors)
 * and sets *cur at the start of the datum; *own is 1 when the record was
 * written with the reader schema itself, 0 when it needs resolution (the
 * caller then decodes it with tl_codec_read instead).  data must stay put
 * while the cursor is used. */
int tl_codec_cursor_open(tl_codec_t *c, const void *data, size_t len, tl_codec_cursor_t *cur,
                         int *own);

/* A string / an ["null", "string"] union (TL_STR_NULL for null) / bytes. */
int tl_codec_cursor_string(tl_codec_cursor_t *cur, tl_str_t *out);
int tl_codec_cursor_opt_string(tl_codec_cursor_t *cur, tl_str_t *out);
int tl_codec_cursor_bytes(tl_codec_cursor_t *cur, tl_str_t *out);

/* A long / an int (TL_ECORRUPT out of range) / a boolean (0 or 1). */
int tl_codec_cursor_long(tl_codec_cursor_t *cur, int64_t *out);
int tl_codec_cursor_int(tl_codec_cursor_t *cur, int32_t *out);
int tl_codec_cursor_boolean(tl_codec_cursor_t *cur, int *out);

/* The head of the next block of an array: *count items follow, 0 when the
 * array ends.  min (> 0) is the fewest bytes one item takes as the walker
 * counts it (a string, number, boolean, union or array at least one, a
 * record the sum of its fields'); a count that cannot fit in the bytes
 * left is TL_ETRUNCATED before anything is read. */
int tl_codec_cursor_block(tl_codec_cursor_t *cur, size_t min, int64_t *count);

/* Array slot (< TL_CODEC_CURSOR_SLOTS) of the codec with room for n items
 * of size bytes, keeping its contents and capacity from decode to decode;
 * n must have been checked by tl_codec_cursor_block.  NULL on TL_ENOMEM
 * (errmsg set). */
void *tl_codec_cursor_grow(tl_codec_cursor_t *cur, int slot, size_t n, size_t size);

/* TL_ECORRUPT when bytes are left after the datum, as tl_codec_read. */
int tl_codec_cursor_close(tl_codec_cursor_t *cur);

/* What the last failed call on c found wrong, e.g. "fingerprint
 * 0x1234567890abcdef not known" or "offset 37: string length 300 runs past
 * the end (12 bytes left)"; "" when nothing failed yet.  Owned by c, valid
 * until the next call on it.  Cannot fail. */
const char *tl_codec_errmsg(const tl_codec_t *c);

#endif
