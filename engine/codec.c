/*
 * codec.c -- Avro single-object encoding (see codec.h for the framing).
 *
 *   OFFSET  SIZE  FIELD
 *   0       2     marker C3 01
 *   2       8     CRC-64-AVRO fingerprint of the writer schema's canonical
 *                 form, little-endian
 *   10      n     Avro binary datum
 *
 * Writing uses avro-c as it is: the caller fills the codec's generic value
 * (avro_generic_value_new on the reader schema) and avro_value_write
 * serialises it into the output buffer through a memory writer.
 *
 * Reading does not use avro_value_read, for three reasons found in avro-c
 * 1.11.1's sources:
 *   - it trusts lengths: read_string mallocs whatever length the varint
 *     says (a huge length is a huge malloc; -1 writes before the buffer),
 *     and an array count of 2^62 null items loops for ever;
 *   - it mallocs every string and bytes value it reads (read_string, then
 *     give_string_len), which is most of the cost of a decode;
 *   - its schema resolution (avro_resolved_writer_new) cannot apply field
 *     defaults: a reader field missing from the writer makes the resolver
 *     fail with "Reader field ... doesn't appear in writer", and the schema
 *     parser drops "default" altogether.
 * So decoding is driven by a resolution plan (res_t), built once per
 * writer schema when it is registered: one node per (writer type, reader
 * type) pair saying how to read the writer's bytes and where to store them
 * in the reader value -- which reader field a writer field goes to (or that
 * it is skipped), which reader union branch to select, how to promote int
 * to long, which reader enum symbol a writer symbol becomes, and the
 * defaults (the reader schema's JSON, kept from jansson's parse and checked
 * against the field types when the writer is registered) of reader fields
 * the writer lacks.  Records of the reader schema itself
 * use the identity plan, so the common case pays nothing for resolution.
 * The walker checks every varint, length, count, branch and symbol against
 * the bytes actually present before it acts on it, and stores through the
 * avro value API only (set_*, give_string_len, append, add, set_branch),
 * so the values it produces are ordinary avro-c generic values.
 *
 * Decoded strings are copied once, NUL-terminated, into the codec's arena
 * and handed to the value with give_string_len and a wrapped buffer that
 * has no free function: the value borrows the arena until the next read.
 * A string costs one memcpy and no allocation.  The arena never moves
 * during a read: a string takes at least one byte more in the datum (its
 * length prefix) than its copy does in the arena, so an arena as long as
 * the datum is enough, and it is sized before the walk starts.
 *
 * The reader value is reused, never reset between records, because in
 * avro-c resetting is what costs: resetting a generic array frees every
 * element and the string buffers in it, and appending builds them again,
 * which made a record with one attachment cost half as much again as one
 * without.  So a decode overwrites array elements in place and appends
 * only beyond the old count (walk_items), the event encoder overwrites
 * every field instead of resetting, and record field handles are
 * remembered for the record handle they came from (res_fields_t) instead of
 * being asked for on every record.  Steady state then allocates nothing;
 * through the value, bench_codec's 600-byte MessageReceived decodes in
 * 450-550 ns on the 2.1 GHz development VM, about a third of it spent
 * reading the value back into tl_event_t; avro-c itself takes about a
 * quarter (the event layer's direct decoder, below, skips both).
 *
 * Errors: a length or count that runs past the end of the input is
 * TL_ETRUNCATED, not TL_ECORRUPT.  A cut-off record and a damaged length
 * look the same from inside; calling both "truncated" makes every prefix
 * of a good record fail the same way, which is what a reader that got
 * half a message needs to hear.
 *
 * The event layer maps tl_event_t field by field through tables of
 * (schema field name, kind, offset in tl_event_t); the schema field index of
 * every entry is looked up once, when the codec is made, and the schema is
 * checked against event.h at that point, so drift between the two fails at
 * start-up rather than in the middle of a partition.
 *
 * Decoding an event through the avro value costs twice: avro-c's setters
 * on the way in, its getters on the way out, and most of a decode was
 * spent there rather than in reading bytes.  So records written with the
 * reader schema itself -- nearly all of them -- are read by a second,
 * direct decoder (tl_codec_decode_event): the same tables laid out in the
 * schema's field order (direct_t, built with the codec) drive a loop that
 * reads each field with the walker's own primitives (rd_long, rd_len,
 * rd_need, arena_copy) and stores it straight into tl_event_t.  It makes
 * the same checks in the same order as the walker does for that schema,
 * so every input gets the same error and the same message from both;
 * strings land in the same arena, attachments and tags in the same
 * reusable arrays.  Records of any other writer schema need resolution
 * (skipped fields, defaults, promotions, renumbered symbols) and take the
 * general path: walker, then value to tl_event_t.  The two are kept
 * honest by a differential unit test and fuzz target (fuzz_codec_diff),
 * which compare them through tl_codec_decode_event_general.  bench_codec's
 * record decodes about three times as fast directly as through the value.
 *
 * Layers in other modules get the same primitives through the cursor of
 * codec.h (tl_codec_cursor_*): the walker's rd_t under a public name, one
 * exported call per datum, each the walker's check for that type with its
 * message, and two reusable arrays kept in the codec for what a layer
 * decodes into.  change.c reads Change records that way (bench_codec's
 * third line); the call per field costs a few nanoseconds against the
 * hundreds the avro value did.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "canon.h"
#include "codec.h"
#include "error.h"
#include "schemas.h"

/* Limits on what a record may make the walker do (TL_ETOOBIG beyond). */
#define MAX_DEPTH 256                   /* nested records/arrays/maps/unions */
#define MAX_EMPTY_ITEMS 65536           /* items of a type that takes 0 bytes */

/* ---- resolution plan --------------------------------------------------- */

/* What the writer put in the bytes: tells the walker how to read them. */
enum res_op {
    OP_NULL, OP_BOOLEAN, OP_INT, OP_LONG, OP_FLOAT, OP_DOUBLE, OP_BYTES,
    OP_STRING, OP_FIXED, OP_ENUM, OP_ARRAY, OP_MAP, OP_RECORD, OP_UNION,
    OP_BRANCH,      /* reader is a union, writer is not: select, then kid[0] */
};

/* How to store a primitive in the reader value. */
enum res_store {
    ST_SKIP,        /* no reader counterpart: check and discard */
    ST_SAME, ST_LONG, ST_FLOAT, ST_DOUBLE, ST_STRING, ST_BYTES,
};

typedef struct res_default {
    size_t rindex;                  /* reader field */
    avro_schema_t schema;           /* its type */
    json_t *json;                   /* its default, in the codec's reader JSON */
} res_default_t;

/* The handles of a reader record's fields, remembered for the record
 * handle they were taken from.  A generic record's field handle is its own
 * handle plus a fixed offset, so while the record handle is the same the
 * field handles are too, and a decode need not ask for them again.  Not
 * kept for a record reached through a named-type reference (avro-c's link
 * values): there the handle stays while the record behind it is replaced. */
typedef struct res_fields {
    int usable;                     /* 0: always ask */
    const avro_value_iface_t *iface;
    const void *self;               /* record the handles belong to */
    size_t n;
    avro_value_t *v;
} res_fields_t;

typedef struct res res_t;
struct res {
    uint8_t op, store;
    int rbranch;                    /* OP_BRANCH: reader branch to select */
    size_t n;                       /* fields, branches, symbols; fixed size */
    res_t **kid;                    /* record fields, union branches,
                                       array items, map values, branch */
    int *rmap;                      /* record: reader field per writer field;
                                       union: reader branch per writer branch;
                                       enum: reader symbol per writer symbol;
                                       -1 = none */
    size_t ndef;
    res_default_t *def;             /* record: reader fields the writer lacks */
    size_t minsize;                 /* fewest bytes one datum takes */
    avro_schema_t ws, rs;           /* what the node was built for, the
                                       memo key of records: rs as referenced
                                       (a named-type reference stays one) */
    struct res_fields *fields;      /* record with a reader: see walk_record */
    res_t *next;                    /* every node of a plan, for memo and free */
};

typedef struct writer {
    uint64_t fp;
    avro_schema_t schema;
    res_t *root;
    res_t *nodes;
} writer_t;

/* A reader record or enum and the JSON object that defined it. */
typedef struct bind {
    avro_schema_t schema;
    json_t *json;
} bind_t;

/* ---- event layer tables ------------------------------------------------ */

enum fkind {
    F_STR, F_OPT_STR, F_LONG, F_FLOAT, F_PLATFORM, F_SPEAKER, F_EVIDENCE,
    F_ATTACHMENTS, F_STRS0, F_STRS1,
    F_PAYLOAD, F_OPT_INT,           /* the direct decoder's only (dfield_t) */
};

typedef struct fdesc {
    const char *name;               /* field in event.avsc */
    unsigned char kind;
    size_t off;                     /* in tl_event_t */
} fdesc_t;

#define EV(member) offsetof(tl_event_t, member)

static const fdesc_t envelope_fields[] = {
    { "event_id", F_STR, EV(event_id) },
    { "tenant_id", F_STR, EV(tenant_id) },
    { "customer_id", F_STR, EV(customer_id) },
    { "platform", F_PLATFORM, EV(platform) },
    { "platform_user_id", F_STR, EV(platform_user_id) },
    { "idempotency_key", F_STR, EV(idempotency_key) },
    { "occurred_at", F_LONG, EV(occurred_at) },
    { "received_at", F_LONG, EV(received_at) },
    { "trace_id", F_STR, EV(trace_id) },
};

static const fdesc_t message_fields[] = {
    { "text", F_STR, EV(u.message.text) },
    { "attachments", F_ATTACHMENTS, EV(u.message.attachments) },
    { "entry_point", F_OPT_STR, EV(u.message.entry_point) },
    { "device_id", F_OPT_STR, EV(u.message.device_id) },
};
static const fdesc_t reply_fields[] = {
    { "agent_id", F_STR, EV(u.reply.agent_id) },
    { "conversation_id", F_OPT_STR, EV(u.reply.conversation_id) },
    { "text", F_STR, EV(u.reply.text) },
    { "attachments", F_ATTACHMENTS, EV(u.reply.attachments) },
    { "target_platform", F_PLATFORM, EV(u.reply.target_platform) },
};
static const fdesc_t transcript_fields[] = {
    { "call_id", F_STR, EV(u.transcript.call_id) },
    { "start_ms", F_LONG, EV(u.transcript.start_ms) },
    { "end_ms", F_LONG, EV(u.transcript.end_ms) },
    { "speaker", F_SPEAKER, EV(u.transcript.speaker) },
    { "text", F_STR, EV(u.transcript.text) },
    { "confidence", F_FLOAT, EV(u.transcript.confidence) },
    { "caller_number", F_OPT_STR, EV(u.transcript.caller_number) },
};
static const fdesc_t behavior_fields[] = {
    { "page", F_STR, EV(u.behavior.page) },
    { "action", F_STR, EV(u.behavior.action) },
    { "device_id", F_OPT_STR, EV(u.behavior.device_id) },
};
static const fdesc_t field_fields[] = {
    { "field", F_STR, EV(u.field.field) },
    { "value", F_STR, EV(u.field.value) },
};
static const fdesc_t link_fields[] = {
    { "linked_customer_id", F_STR, EV(u.link.linked_customer_id) },
    { "platform", F_PLATFORM, EV(u.link.platform) },
    { "platform_user_id", F_STR, EV(u.link.platform_user_id) },
    { "evidence", F_EVIDENCE, EV(u.link.evidence) },
    { "evidence_value", F_OPT_STR, EV(u.link.evidence_value) },
};
static const fdesc_t unlink_fields[] = {
    { "linked_customer_id", F_STR, EV(u.unlink.linked_customer_id) },
    { "platform", F_PLATFORM, EV(u.unlink.platform) },
    { "platform_user_id", F_STR, EV(u.unlink.platform_user_id) },
    { "reason", F_STR, EV(u.unlink.reason) },
};
static const fdesc_t assign_fields[] = {
    { "conversation_id", F_STR, EV(u.assign.conversation_id) },
    { "agent_id", F_OPT_STR, EV(u.assign.agent_id) },
    { "team_id", F_OPT_STR, EV(u.assign.team_id) },
};
static const fdesc_t tag_fields[] = {
    { "conversation_id", F_STR, EV(u.tag.conversation_id) },
    { "added", F_STRS0, EV(u.tag.added) },
    { "removed", F_STRS1, EV(u.tag.removed) },
};
static const fdesc_t close_fields[] = {
    { "conversation_id", F_STR, EV(u.close.conversation_id) },
    { "reason", F_STR, EV(u.close.reason) },
    { "closed_by", F_OPT_STR, EV(u.close.closed_by) },
};
static const fdesc_t resolve_fields[] = {
    { "conflict_id", F_STR, EV(u.resolve.conflict_id) },
    { "field", F_STR, EV(u.resolve.field) },
    { "chosen_value", F_STR, EV(u.resolve.chosen_value) },
    { "agent_id", F_STR, EV(u.resolve.agent_id) },
};

#define FIELDS(a) { a, sizeof(a) / sizeof(a[0]) }
#define MAX_PAYLOAD_FIELDS 8

static const struct { const fdesc_t *f; size_t n; } payload_fields[TL_EV__COUNT] = {
    [TL_EV_MESSAGE_RECEIVED] = FIELDS(message_fields),
    [TL_EV_AGENT_REPLIED] = FIELDS(reply_fields),
    [TL_EV_TRANSCRIPT_SEGMENT] = FIELDS(transcript_fields),
    [TL_EV_BEHAVIOR_TRACKED] = FIELDS(behavior_fields),
    [TL_EV_FIELD_ASSERTED] = FIELDS(field_fields),
    [TL_EV_IDENTITY_LINKED] = FIELDS(link_fields),
    [TL_EV_IDENTITY_UNLINKED] = FIELDS(unlink_fields),
    [TL_EV_CONVERSATION_ASSIGNED] = FIELDS(assign_fields),
    [TL_EV_CONVERSATION_TAGGED] = FIELDS(tag_fields),
    [TL_EV_CONVERSATION_CLOSED] = FIELDS(close_fields),
    [TL_EV_CONFLICT_RESOLVED] = FIELDS(resolve_fields),
};

#define NENVELOPE (sizeof envelope_fields / sizeof envelope_fields[0])

/* Attachment fields, in this order. */
enum { ATT_URL, ATT_MIME, ATT_BYTES, ATT_WIDTH, ATT_HEIGHT, ATT__COUNT };
static const char *const attachment_names[ATT__COUNT] = {
    "url", "mime", "bytes", "width", "height",
};

/* Field handles of one payload record, for the record handle they came
 * from (see res_fields_t for why that is sound). */
typedef struct kind_fields {
    const avro_value_iface_t *iface;
    const void *self;
    avro_value_t v[MAX_PAYLOAD_FIELDS];
} kind_fields_t;

typedef struct event_index {
    size_t envelope[NENVELOPE];
    size_t payload;
    size_t fields[TL_EV__COUNT][MAX_PAYLOAD_FIELDS];
    size_t attachment[ATT__COUNT];
} event_index_t;

/* One field of a record as the direct decoder reads it (see
 * tl_codec_decode_event): what the bytes are and where they go, in
 * tl_event_t or, for an Attachment's fields, in tl_attachment_t. */
typedef struct dfield {
    unsigned char kind;             /* enum fkind */
    size_t off;
    size_t has_off;                 /* F_OPT_INT: its has_ flag */
} dfield_t;

/* The event schema's records in the writer's field order, built from the
 * tables above when the codec is made.  usable is 0 when some record has a
 * field the tables do not describe: the direct decoder cannot read that
 * schema and every decode takes the walker. */
typedef struct direct {
    int usable;
    size_t nenv;
    dfield_t env[NENVELOPE + 1];    /* the envelope and its payload */
    size_t n[TL_EV__COUNT];
    dfield_t kind[TL_EV__COUNT][MAX_PAYLOAD_FIELDS];
    dfield_t att[ATT__COUNT];
    size_t att_min;                 /* fewest bytes one Attachment takes */
} direct_t;

/* ---- the codec --------------------------------------------------------- */

struct tl_codec {
    avro_schema_t schema;           /* reader */
    json_t *json;                   /* reader schema parsed, for defaults */
    bind_t *binds;
    size_t nbinds;
    avro_value_iface_t *iface;
    avro_value_t value;             /* the reusable reader value */
    avro_value_t *fields;           /* handles of value's fields, or NULL */
    writer_t *writers;              /* [0] is the reader schema itself */
    size_t nwriters;
    avro_writer_t out;              /* memory writer, pointed at the output */
    size_t write_hint;              /* bytes the last datum took */
    avro_wrapped_buffer_t give;     /* see give_string; all zero between uses */
    char *arena;                    /* NUL-terminated copies of strings */
    size_t arena_cap, arena_len;
    int borrows;                    /* value may borrow the arena (see read_frame) */
    tl_buf_t scratch;               /* NUL-terminated copy for set_string_len */
    int is_event;
    event_index_t ix;
    kind_fields_t kind_fields[TL_EV__COUNT];
    int kind_fields_usable;         /* payload records are inline, not links */
    direct_t direct;                /* the direct decoder's plan */
    tl_attachment_t *att;           /* decoded attachments */
    size_t att_cap;
    tl_str_t *strs[2];              /* decoded tag arrays */
    size_t strs_cap[2];
    void *slot[TL_CODEC_CURSOR_SLOTS];  /* tl_codec_cursor_grow's arrays */
    size_t slot_cap[TL_CODEC_CURSOR_SLOTS];
    int err;                        /* code that goes with errmsg */
    char errmsg[256];
};

static int set_err(tl_codec_t *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(tl_codec_t *c, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    c->err = err;
    return err;
}

/* Errors that come back from avro-c's value API. */
static __attribute__((cold, noinline)) int avro_err(tl_codec_t *c, int rc, const char *what) {
    return set_err(c, rc == ENOMEM ? TL_ENOMEM : TL_EINVAL, "%s: %s", what, avro_strerror());
}

static avro_schema_t deref(avro_schema_t s) {
    while (s && avro_typeof(s) == AVRO_LINK) s = avro_schema_link_target(s);
    return s;
}

/* ---- binding reader schema objects to their JSON ----------------------- */

static int bind_add(tl_codec_t *c, avro_schema_t s, json_t *j) {
    bind_t *b = realloc(c->binds, (c->nbinds + 1) * sizeof *b);
    if (!b) return TL_ENOMEM;
    c->binds = b;
    c->binds[c->nbinds++] = (bind_t){ s, j };
    return TL_OK;
}

static json_t *bind_find(const tl_codec_t *c, avro_schema_t s) {
    for (size_t i = 0; i < c->nbinds; i++)
        if (c->binds[i].schema == s) return c->binds[i].json;
    return NULL;
}

/* Walks the reader JSON and avro-c's parse of it side by side (avro-c keeps
 * the order of fields and branches) and remembers the JSON object of every
 * record and enum definition, where the defaults are. */
static int bind_walk(tl_codec_t *c, json_t *j, avro_schema_t s) {
    if (!s || avro_typeof(s) == AVRO_LINK || json_is_string(j)) return TL_OK;
    if (json_is_array(j)) {
        if (avro_typeof(s) != AVRO_UNION || json_array_size(j) != avro_schema_union_size(s))
            return TL_OK;
        for (size_t i = 0; i < json_array_size(j); i++) {
            int rc = bind_walk(c, json_array_get(j, i), avro_schema_union_branch(s, i));
            if (rc) return rc;
        }
        return TL_OK;
    }
    if (!json_is_object(j)) return TL_OK;
    json_t *type = json_object_get(j, "type");
    if (json_is_object(type) || json_is_array(type)) return bind_walk(c, type, s);
    int rc = TL_OK;
    switch (avro_typeof(s)) {
    case AVRO_RECORD: {
        json_t *fields = json_object_get(j, "fields");
        if ((rc = bind_add(c, s, j))) return rc;
        for (size_t i = 0; i < avro_schema_record_size(s) && i < json_array_size(fields); i++) {
            json_t *ft = json_object_get(json_array_get(fields, i), "type");
            if ((rc = bind_walk(c, ft, avro_schema_record_field_get_by_index(s, (int)i))))
                return rc;
        }
        return TL_OK;
    }
    case AVRO_ENUM:
        return bind_add(c, s, j);
    case AVRO_ARRAY:
        return bind_walk(c, json_object_get(j, "items"), avro_schema_array_items(s));
    case AVRO_MAP:
        return bind_walk(c, json_object_get(j, "values"), avro_schema_map_values(s));
    default:
        return TL_OK;
    }
}

/* ---- JSON defaults to avro values -------------------------------------- */

/* A JSON string whose code points are all <= 255, as bytes (the
 * specification's encoding of bytes and fixed defaults). */
static int json_latin1(json_t *j, char **out, size_t *n) {
    const unsigned char *s = (const unsigned char *)json_string_value(j);
    size_t len = json_string_length(j), k = 0;
    char *b = malloc(len + 1);
    if (!b) return TL_ENOMEM;
    for (size_t i = 0; i < len; k++) {
        if (s[i] < 0x80) {
            b[k] = (char)s[i++];
        } else if ((s[i] & 0xe0) == 0xc0 && i + 1 < len && s[i] <= 0xc3) {
            b[k] = (char)(((s[i] & 0x1f) << 6) | (s[i + 1] & 0x3f));
            i += 2;
        } else {
            free(b);
            return TL_ESCHEMA;
        }
    }
    *out = b;
    *n = k;
    return TL_OK;
}

static int default_to_value(tl_codec_t *c, json_t *j, avro_schema_t s, avro_value_t *v);

static int default_record(tl_codec_t *c, json_t *j, avro_schema_t s, avro_value_t *v) {
    if (!json_is_object(j)) return TL_ESCHEMA;
    json_t *def = bind_find(c, s);
    json_t *jfields = def ? json_object_get(def, "fields") : NULL;
    for (size_t i = 0; i < avro_schema_record_size(s); i++) {
        const char *name = avro_schema_record_field_name(s, (int)i);
        json_t *fv = json_object_get(j, name);
        if (!fv) fv = json_object_get(json_array_get(jfields, i), "default");
        if (!fv) return TL_ESCHEMA;
        avro_value_t child, *cp = NULL;
        if (v) {
            if (avro_value_get_by_index(v, i, &child, NULL)) return TL_ENOMEM;
            cp = &child;
        }
        int rc = default_to_value(c, fv, avro_schema_record_field_get_by_index(s, (int)i), cp);
        if (rc) return rc;
    }
    return TL_OK;
}

/* Stores the JSON default j of schema s into v, or with v == NULL only
 * checks that it fits.  TL_ESCHEMA when it does not.
 *
 * Defaults are applied from the JSON each time rather than built once as
 * values of their own, because avro-c cannot make a standalone value of a
 * type that refers to named types defined elsewhere in the schema ("Never
 * created a value implementation"); and they are only needed for records
 * from an older writer. */
static int default_to_value(tl_codec_t *c, json_t *j, avro_schema_t s, avro_value_t *v) {
    s = deref(s);
    int rc = 0;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        if (!json_is_null(j)) return TL_ESCHEMA;
        rc = v ? avro_value_set_null(v) : 0;
        break;
    case AVRO_BOOLEAN:
        if (!json_is_boolean(j)) return TL_ESCHEMA;
        rc = v ? avro_value_set_boolean(v, json_is_true(j)) : 0;
        break;
    case AVRO_INT32:
        if (!json_is_integer(j) || json_integer_value(j) < INT32_MIN ||
            json_integer_value(j) > INT32_MAX)
            return TL_ESCHEMA;
        rc = v ? avro_value_set_int(v, (int32_t)json_integer_value(j)) : 0;
        break;
    case AVRO_INT64:
        if (!json_is_integer(j)) return TL_ESCHEMA;
        rc = v ? avro_value_set_long(v, json_integer_value(j)) : 0;
        break;
    case AVRO_FLOAT:
        if (!json_is_number(j)) return TL_ESCHEMA;
        rc = v ? avro_value_set_float(v, (float)json_number_value(j)) : 0;
        break;
    case AVRO_DOUBLE:
        if (!json_is_number(j)) return TL_ESCHEMA;
        rc = v ? avro_value_set_double(v, json_number_value(j)) : 0;
        break;
    case AVRO_STRING:
        if (!json_is_string(j)) return TL_ESCHEMA;
        rc = v ? avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1) : 0;
        break;
    case AVRO_BYTES:
    case AVRO_FIXED: {
        char *b;
        size_t n;
        if (!json_is_string(j)) return TL_ESCHEMA;
        if ((rc = json_latin1(j, &b, &n))) return rc;
        if (avro_typeof(s) == AVRO_FIXED && n != (size_t)avro_schema_fixed_size(s)) {
            free(b);
            return TL_ESCHEMA;
        }
        if (v)
            rc = avro_typeof(s) == AVRO_FIXED ? avro_value_set_fixed(v, b, n)
                                              : avro_value_set_bytes(v, b, n);
        free(b);
        break;
    }
    case AVRO_ENUM: {
        if (!json_is_string(j)) return TL_ESCHEMA;
        int sym = avro_schema_enum_get_by_name(s, json_string_value(j));
        if (sym < 0) return TL_ESCHEMA;
        rc = v ? avro_value_set_enum(v, sym) : 0;
        break;
    }
    case AVRO_ARRAY:
    case AVRO_MAP: {
        int is_array = avro_typeof(s) == AVRO_ARRAY;
        if (is_array ? !json_is_array(j) : !json_is_object(j)) return TL_ESCHEMA;
        if (v && avro_value_reset(v)) return TL_ENOMEM;
        avro_schema_t item = is_array ? avro_schema_array_items(s) : avro_schema_map_values(s);
        void *iter = is_array ? NULL : json_object_iter(j);
        for (size_t i = 0; is_array ? i < json_array_size(j) : iter != NULL; i++) {
            avro_value_t child, *cp = NULL;
            if (v) {
                rc = is_array ? avro_value_append(v, &child, NULL)
                              : avro_value_add(v, json_object_iter_key(iter), &child, NULL, NULL);
                if (rc) return TL_ENOMEM;
                cp = &child;
            }
            json_t *jv = is_array ? json_array_get(j, i) : json_object_iter_value(iter);
            if ((rc = default_to_value(c, jv, item, cp))) return rc;
            if (!is_array) iter = json_object_iter_next(j, iter);
        }
        return TL_OK;
    }
    case AVRO_RECORD:
        return default_record(c, j, s, v);
    case AVRO_UNION: {
        /* A union's default belongs to its first branch. */
        avro_value_t branch, *bp = NULL;
        if (avro_schema_union_size(s) == 0) return TL_ESCHEMA;
        if (v) {
            if (avro_value_set_branch(v, 0, &branch)) return TL_ENOMEM;
            bp = &branch;
        }
        return default_to_value(c, j, avro_schema_union_branch(s, 0), bp);
    }
    default:
        return TL_ESCHEMA;
    }
    return rc ? TL_ENOMEM : TL_OK;
}

/* ---- building a plan --------------------------------------------------- */

typedef struct build {
    tl_codec_t *c;
    writer_t *w;
} build_t;

static res_t *res_new(build_t *b, int op, int store, avro_schema_t ws, avro_schema_t rs) {
    res_t *r = calloc(1, sizeof *r);
    if (!r) {
        set_err(b->c, TL_ENOMEM, "out of memory");
        return NULL;
    }
    r->op = (uint8_t)op;
    r->store = (uint8_t)store;
    r->rbranch = -1;
    r->ws = ws;
    r->rs = rs;
    r->next = b->w->nodes;
    b->w->nodes = r;
    return r;
}

static void res_free_all(res_t *r) {
    while (r) {
        res_t *next = r->next;
        free(r->def);
        if (r->fields) free(r->fields->v);
        free(r->fields);
        free(r->kid);
        free(r->rmap);
        free(r);
        r = next;
    }
}

static int res_kids(build_t *b, res_t *r, size_t n, int with_map) {
    r->n = n;
    r->kid = calloc(n ? n : 1, sizeof *r->kid);
    r->rmap = with_map ? malloc((n ? n : 1) * sizeof *r->rmap) : NULL;
    if (!r->kid || (with_map && !r->rmap)) {
        set_err(b->c, TL_ENOMEM, "out of memory");
        return TL_ENOMEM;
    }
    return TL_OK;
}

static const char *type_label(avro_schema_t s) {
    switch (avro_typeof(s)) {
    case AVRO_RECORD: case AVRO_ENUM: case AVRO_FIXED:
        return avro_schema_name(s);
    default:
        return avro_schema_type_name(s);
    }
}

static res_t *resolve(build_t *b, avro_schema_t ws, avro_schema_t rs);

/* Whether writer type ws can be read as reader type rs without looking
 * inside records: 2 = same type, 1 = by promotion, 0 = not at all. */
static int type_match(avro_schema_t ws, avro_schema_t rs) {
    ws = deref(ws);
    rs = deref(rs);
    avro_type_t wt = avro_typeof(ws), rt = avro_typeof(rs);
    if (wt == rt) {
        if (wt == AVRO_RECORD || wt == AVRO_ENUM || wt == AVRO_FIXED)
            return strcmp(avro_schema_name(ws), avro_schema_name(rs)) == 0 ? 2 : 0;
        return 2;
    }
    switch (wt) {
    case AVRO_INT32: return rt == AVRO_INT64 || rt == AVRO_FLOAT || rt == AVRO_DOUBLE;
    case AVRO_INT64: return rt == AVRO_FLOAT || rt == AVRO_DOUBLE;
    case AVRO_FLOAT: return rt == AVRO_DOUBLE;
    case AVRO_STRING: return rt == AVRO_BYTES;
    case AVRO_BYTES: return rt == AVRO_STRING;
    default: return 0;
    }
}

/* The reader union branch a (non-union) writer type goes to: the first
 * exact match, else the first promotion; -1 if none. */
static int pick_branch(avro_schema_t ws, avro_schema_t runion) {
    for (int want = 2; want >= 1; want--)
        for (size_t i = 0; i < avro_schema_union_size(runion); i++)
            if (type_match(ws, avro_schema_union_branch(runion, i)) == want) return (int)i;
    return -1;
}

static size_t primitive_minsize(avro_type_t t) {
    switch (t) {
    case AVRO_NULL: return 0;
    case AVRO_FLOAT: return 4;
    case AVRO_DOUBLE: return 8;
    default: return 1;
    }
}

static res_t *resolve_record(build_t *b, avro_schema_t ws, avro_schema_t rs, avro_schema_t rkey) {
    tl_codec_t *c = b->c;
    res_t *r = res_new(b, OP_RECORD, rs ? ST_SAME : ST_SKIP, ws, rkey);
    size_t nw = avro_schema_record_size(ws);
    if (!r || res_kids(b, r, nw, 1)) return NULL;
    if (rs) {
        size_t nr = avro_schema_record_size(rs);
        r->fields = calloc(1, sizeof *r->fields);
        if (!r->fields || !(r->fields->v = calloc(nr ? nr : 1, sizeof *r->fields->v))) {
            set_err(c, TL_ENOMEM, "out of memory");
            return NULL;
        }
        r->fields->n = nr;
        r->fields->usable = avro_typeof(rkey) != AVRO_LINK;
    }
    for (size_t i = 0; i < nw; i++) {
        const char *name = avro_schema_record_field_name(ws, (int)i);
        int ri = rs ? avro_schema_record_field_get_index(rs, name) : -1;
        r->rmap[i] = ri;
        r->kid[i] = resolve(b, avro_schema_record_field_get_by_index(ws, (int)i),
                            ri >= 0 ? avro_schema_record_field_get_by_index(rs, ri) : NULL);
        if (!r->kid[i]) {
            size_t n = strlen(c->errmsg);
            if (n + 1 < sizeof c->errmsg && strncmp(c->errmsg, "field ", 6) != 0)
                snprintf(c->errmsg + n, sizeof c->errmsg - n, " (in field %s.%s)",
                         avro_schema_name(ws), name);
            return NULL;
        }
    }
    if (!rs) return r;

    /* Reader fields the writer does not have take their defaults. */
    size_t nr = avro_schema_record_size(rs);
    json_t *jfields = json_object_get(bind_find(c, rs), "fields");
    for (size_t ri = 0; ri < nr; ri++) {
        const char *name = avro_schema_record_field_name(rs, (int)ri);
        if (avro_schema_record_field_get_index(ws, name) >= 0) continue;
        json_t *jdef = json_object_get(json_array_get(jfields, ri), "default");
        if (!jdef) {
            set_err(c, TL_ESCHEMA, "field %s.%s: not in the writer schema and has no default",
                    avro_schema_name(rs), name);
            return NULL;
        }
        avro_schema_t fs = avro_schema_record_field_get_by_index(rs, (int)ri);
        int rc = default_to_value(c, jdef, fs, NULL);
        if (rc) {
            set_err(c, rc, "field %s.%s: default does not match its type",
                    avro_schema_name(rs), name);
            return NULL;
        }
        res_default_t *d = realloc(r->def, (r->ndef + 1) * sizeof *d);
        if (!d) {
            set_err(c, TL_ENOMEM, "out of memory");
            return NULL;
        }
        r->def = d;
        r->def[r->ndef++] = (res_default_t){ ri, fs, jdef };
    }
    return r;
}

static res_t *resolve_enum(build_t *b, avro_schema_t ws, avro_schema_t rs) {
    res_t *r = res_new(b, OP_ENUM, rs ? ST_SAME : ST_SKIP, ws, rs);
    size_t nw = (size_t)avro_schema_enum_number_of_symbols(ws);
    if (!r || res_kids(b, r, nw, 1)) return NULL;
    r->minsize = 1;
    if (!rs) return r;
    json_t *jdef = json_object_get(bind_find(b->c, rs), "default");
    int fallback = json_is_string(jdef) ? avro_schema_enum_get_by_name(rs, json_string_value(jdef)) : -1;
    for (size_t i = 0; i < nw; i++) {
        const char *sym = avro_schema_enum_get(ws, (int)i);
        int ri = avro_schema_enum_get_by_name(rs, sym);
        if (ri < 0) ri = fallback;
        if (ri < 0) {
            set_err(b->c, TL_ESCHEMA, "enum %s: writer symbol %s unknown to the reader, which has no default",
                    avro_schema_name(rs), sym);
            return NULL;
        }
        r->rmap[i] = ri;
    }
    return r;
}

/* Plan for reading writer type ws into reader type rs (NULL: skip). */
static res_t *resolve(build_t *b, avro_schema_t ws, avro_schema_t rs) {
    avro_schema_t rkey = rs;        /* the reference itself, if rs is one */
    ws = deref(ws);
    rs = deref(rs);
    avro_type_t wt = avro_typeof(ws);

    /* Records can be recursive: reuse the node already made for the pair. */
    if (wt == AVRO_RECORD)
        for (res_t *m = b->w->nodes; m; m = m->next)
            if (m->op == OP_RECORD && m->ws == ws && m->rs == rkey) return m;

    if (wt == AVRO_UNION) {
        res_t *r = res_new(b, OP_UNION, rs ? ST_SAME : ST_SKIP, ws, rs);
        size_t n = avro_schema_union_size(ws);
        if (!r || res_kids(b, r, n, 1)) return NULL;
        r->minsize = 1;
        for (size_t i = 0; i < n; i++) {
            avro_schema_t wb = avro_schema_union_branch(ws, i);
            avro_schema_t rb = rs;
            r->rmap[i] = -1;
            if (rs && avro_typeof(rs) == AVRO_UNION) {
                r->rmap[i] = pick_branch(wb, rs);
                if (r->rmap[i] < 0) {
                    set_err(b->c, TL_ESCHEMA, "writer union branch %s has no match in the reader union",
                            type_label(deref(wb)));
                    return NULL;
                }
                rb = avro_schema_union_branch(rs, r->rmap[i]);
            }
            if (!(r->kid[i] = resolve(b, wb, rb))) return NULL;
        }
        return r;
    }

    if (rs && avro_typeof(rs) == AVRO_UNION) {
        int br = pick_branch(ws, rs);
        if (br < 0) {
            set_err(b->c, TL_ESCHEMA, "writer type %s has no match in the reader union",
                    type_label(ws));
            return NULL;
        }
        res_t *r = res_new(b, OP_BRANCH, ST_SAME, ws, rs);
        if (!r || res_kids(b, r, 1, 0)) return NULL;
        r->rbranch = br;
        if (!(r->kid[0] = resolve(b, ws, avro_schema_union_branch(rs, br)))) return NULL;
        r->minsize = r->kid[0]->minsize;
        return r;
    }

    int match = rs ? type_match(ws, rs) : 2;
    if (!match) {
        set_err(b->c, TL_ESCHEMA, "writer type %s cannot be read as %s",
                type_label(ws), type_label(rs));
        return NULL;
    }

    static const uint8_t prim_op[] = {
        [AVRO_STRING] = OP_STRING, [AVRO_BYTES] = OP_BYTES, [AVRO_INT32] = OP_INT,
        [AVRO_INT64] = OP_LONG, [AVRO_FLOAT] = OP_FLOAT, [AVRO_DOUBLE] = OP_DOUBLE,
        [AVRO_BOOLEAN] = OP_BOOLEAN, [AVRO_NULL] = OP_NULL,
    };
    switch (wt) {
    case AVRO_STRING: case AVRO_BYTES: case AVRO_INT32: case AVRO_INT64:
    case AVRO_FLOAT: case AVRO_DOUBLE: case AVRO_BOOLEAN: case AVRO_NULL: {
        int store = ST_SKIP;
        if (rs) {
            switch (avro_typeof(rs)) {
            case AVRO_INT64: store = wt == AVRO_INT64 ? ST_SAME : ST_LONG; break;
            case AVRO_FLOAT: store = wt == AVRO_FLOAT ? ST_SAME : ST_FLOAT; break;
            case AVRO_DOUBLE: store = wt == AVRO_DOUBLE ? ST_SAME : ST_DOUBLE; break;
            case AVRO_STRING: store = wt == AVRO_STRING ? ST_SAME : ST_STRING; break;
            case AVRO_BYTES: store = wt == AVRO_BYTES ? ST_SAME : ST_BYTES; break;
            default: store = ST_SAME; break;
            }
        }
        res_t *r = res_new(b, prim_op[wt], store, ws, rs);
        if (r) r->minsize = primitive_minsize(wt);
        return r;
    }
    case AVRO_FIXED: {
        if (rs && avro_schema_fixed_size(rs) != avro_schema_fixed_size(ws)) {
            set_err(b->c, TL_ESCHEMA, "fixed %s: writer size %" PRId64 ", reader size %" PRId64,
                    avro_schema_name(ws), avro_schema_fixed_size(ws), avro_schema_fixed_size(rs));
            return NULL;
        }
        res_t *r = res_new(b, OP_FIXED, rs ? ST_SAME : ST_SKIP, ws, rs);
        if (r) r->n = r->minsize = (size_t)avro_schema_fixed_size(ws);
        return r;
    }
    case AVRO_ENUM:
        return resolve_enum(b, ws, rs);
    case AVRO_ARRAY:
    case AVRO_MAP: {
        int is_array = wt == AVRO_ARRAY;
        res_t *r = res_new(b, is_array ? OP_ARRAY : OP_MAP, rs ? ST_SAME : ST_SKIP, ws, rs);
        if (!r || res_kids(b, r, 1, 0)) return NULL;
        r->minsize = 1;
        r->kid[0] = is_array
            ? resolve(b, avro_schema_array_items(ws), rs ? avro_schema_array_items(rs) : NULL)
            : resolve(b, avro_schema_map_values(ws), rs ? avro_schema_map_values(rs) : NULL);
        return r->kid[0] ? r : NULL;
    }
    case AVRO_RECORD: {
        res_t *r = resolve_record(b, ws, rs, rkey);
        if (r) {
            r->minsize = 0;
            for (size_t i = 0; i < r->n; i++) r->minsize += r->kid[i]->minsize;
        }
        return r;
    }
    default:
        set_err(b->c, TL_ESCHEMA, "unsupported writer type %s", avro_schema_type_name(ws));
        return NULL;
    }
}

/* ---- reading ----------------------------------------------------------- */

/* The walker's position in a datum; the cursor of codec.h is the same
 * thing, handed to layers outside this file. */
typedef tl_codec_cursor_t rd_t;

/* Error paths are kept out of line so that the walker's hot paths stay
 * small: a decode makes a few dozen calls into it. */
#define COLD __attribute__((cold, noinline))

static COLD int rd_err(rd_t *rd, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static COLD int rd_err(rd_t *rd, int err, const char *fmt, ...) {
    tl_codec_t *c = rd->c;
    int n = snprintf(c->errmsg, sizeof c->errmsg, "offset %zu: ", (size_t)(rd->p - rd->base));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg + n, sizeof c->errmsg - (size_t)n, fmt, ap);
    va_end(ap);
    c->err = err;
    return err;
}

static COLD int rd_avro_err(rd_t *rd, int rc, const char *what) {
    return avro_err(rd->c, rc, what);
}

static int rd_long_slow(rd_t *rd, int64_t *out) {
    uint64_t v = 0;
    if (rd->end - rd->p >= 10) {
        /* A whole varint fits: no end check per byte (timestamps take six). */
        const uint8_t *p = rd->p;
        unsigned i = 0;
        uint8_t byte;
        do {
            byte = p[i];
            v |= (uint64_t)(byte & 0x7f) << (7 * i);
        } while ((byte & 0x80) && ++i < 9);
        if (byte & 0x80) {
            if (p[9] > 1) return rd_err(rd, TL_ECORRUPT, "varint longer than 64 bits");
            v |= (uint64_t)p[9] << 63;
            i = 9;
        }
        rd->p = p + i + 1;
        *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
        return TL_OK;
    }
    for (unsigned shift = 0;; shift += 7) {
        if (rd->p == rd->end) return rd_err(rd, TL_ETRUNCATED, "varint runs past the end");
        uint8_t byte = *rd->p++;
        if (shift == 63 && byte > 1)
            return rd_err(rd, TL_ECORRUPT, "varint longer than 64 bits");
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) break;
    }
    *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
    return TL_OK;
}

/* Zigzag varint; most are one byte (small lengths, branches, symbols). */
static inline int rd_long(rd_t *rd, int64_t *out) {
    if (rd->p < rd->end && *rd->p < 0x80) {
        uint64_t v = *rd->p++;
        *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
        return TL_OK;
    }
    return rd_long_slow(rd, out);
}

/* A length or count that must be >= 0. */
static inline int rd_len(rd_t *rd, int64_t *out, const char *what) {
    int rc = rd_long(rd, out);
    if (rc) return rc;
    if (*out < 0) return rd_err(rd, TL_ECORRUPT, "negative %s %" PRId64, what, *out);
    return TL_OK;
}

static inline int rd_need(rd_t *rd, uint64_t n, const char *what) {
    if (n > (uint64_t)(rd->end - rd->p))
        return rd_err(rd, TL_ETRUNCATED, "%s of %" PRIu64 " bytes runs past the end (%zu left)",
                      what, n, (size_t)(rd->end - rd->p));
    return TL_OK;
}

/* Copies n bytes to the arena with a NUL after them.  The arena was sized
 * to the datum before the walk, and every copy is shorter than the bytes it
 * came from, so this never runs out. */
static inline char *arena_copy(tl_codec_t *c, const uint8_t *p, size_t n) {
    assert(c->arena_len + n + 1 <= c->arena_cap);
    char *s = c->arena + c->arena_len;
    memcpy(s, p, n);
    s[n] = 0;
    c->arena_len += n + 1;
    return s;
}

/* dst borrows the arena copy: no allocation, no second copy.
 *
 * The wrapped buffer lives in the codec, and buf and size are written with
 * one 16-byte store: avro-c moves the struct with 16-byte loads and then
 * zeroes it with 16-byte stores, and a load that spans two smaller recent
 * stores cannot be forwarded from them (a stall of a dozen cycles, which
 * measured as an eighth of a decode). */
static inline int give_string(tl_codec_t *c, avro_value_t *dst, const uint8_t *p, size_t n) {
    typedef uint64_t u64x2 __attribute__((vector_size(16)));
    u64x2 head = { (uint64_t)(uintptr_t)arena_copy(c, p, n), n + 1 };
    memcpy(&c->give, &head, sizeof head);
    return avro_value_give_string_len(dst, &c->give);
}

static int walk(rd_t *rd, const res_t *r, avro_value_t *dst);
static inline __attribute__((always_inline)) int walk_leaf(rd_t *rd, const res_t *r,
                                                          avro_value_t *dst);

/* Leaves (everything below OP_ARRAY) are read inline by their parent;
 * only compound types cost a call to walk(). */
#define WALK(rd, r, dst) ((r)->op < OP_ARRAY ? walk_leaf((rd), (r), (dst)) : walk((rd), (r), (dst)))

/* Arrays and maps.  An array keeps the elements it had from the previous
 * record and overwrites them (a walk sets every field of what it reads),
 * appending only beyond them: resetting would free every element and
 * appending would build them again, which is most of the cost of decoding
 * a record with an attachment.  When the new array is shorter than the old
 * one there is no way to drop the surplus through the value API, so the
 * array is reset and its bytes walked a second time.  Maps are reset. */
static __attribute__((noinline)) int walk_items(rd_t *rd, const res_t *r, avro_value_t *dst) {
    const res_t *item = r->kid[0];
    int is_map = r->op == OP_MAP;
    const uint8_t *start = rd->p;
    /* The arena is sized to the datum, which holds for one walk of these
     * bytes: a second walk must take back what the first one copied. */
    size_t arena_mark = rd->c->arena_len;
    size_t have = 0, index = 0, empty_items = 0;
    int rc;
    if (dst) {
        if (is_map || (rc = avro_value_get_size(dst, &have))) have = 0;
        if (have == 0 && (rc = avro_value_reset(dst))) return rd_avro_err(rd, rc, "reset");
    }
again:
    for (;;) {
        int64_t count, size;
        if ((rc = rd_long(rd, &count))) return rc;
        if (count == 0) break;
        if (count < 0) {
            if (count == INT64_MIN) return rd_err(rd, TL_ECORRUPT, "block count out of range");
            count = -count;
            if ((rc = rd_len(rd, &size, "block size"))) return rc;
        }
        /* Each item takes at least minsize bytes (a map key at least one):
         * a count that cannot fit is refused before anything is appended. */
        size_t min = item->minsize + (is_map ? 1 : 0);
        size_t left = (size_t)(rd->end - rd->p);
        if (min > 0 && (uint64_t)count > left / min)
            return rd_err(rd, TL_ETRUNCATED, "%" PRId64 " items cannot fit in %zu bytes",
                          count, left);
        if (min == 0 && (empty_items += (size_t)count) > MAX_EMPTY_ITEMS)
            return rd_err(rd, TL_ETOOBIG, "more than %d items that take no bytes",
                          MAX_EMPTY_ITEMS);
        for (int64_t i = 0; i < count; i++, index++) {
            avro_value_t child, *cp = NULL;
            if (is_map) {
                int64_t klen;
                if ((rc = rd_len(rd, &klen, "map key length"))) return rc;
                if ((rc = rd_need(rd, (uint64_t)klen, "map key"))) return rc;
                if (dst) {
                    const char *key = arena_copy(rd->c, rd->p, (size_t)klen);
                    if ((rc = avro_value_add(dst, key, &child, NULL, NULL)))
                        return rd_avro_err(rd, rc, "map add");
                    cp = &child;
                }
                rd->p += klen;
            } else if (dst) {
                rc = index < have ? avro_value_get_by_index(dst, index, &child, NULL)
                                  : avro_value_append(dst, &child, NULL);
                if (rc) return rd_avro_err(rd, rc, "array append");
                cp = &child;
            }
            if ((rc = WALK(rd, item, cp))) return rc;
        }
    }
    if (index < have) {
        if ((rc = avro_value_reset(dst))) return rd_avro_err(rd, rc, "reset");
        rd->p = start;
        rd->c->arena_len = arena_mark;      /* the reset dropped every borrow past it */
        have = index = empty_items = 0;
        goto again;
    }
    return TL_OK;
}

/* A record.  fields, when not NULL, holds the handles of dst's fields
 * (the codec's root record, see cache_fields), saving a call per field. */
static __attribute__((noinline)) int walk_record(rd_t *rd, const res_t *r, avro_value_t *dst,
                                                 avro_value_t *fields) {
    int rc;
    avro_value_t child;
    if (!dst) {
        for (size_t i = 0; i < r->n; i++)
            if ((rc = WALK(rd, r->kid[i], NULL))) return rc;
        return TL_OK;
    }
    res_fields_t *rf = r->fields;
    if (!fields && rf->usable) {
        if (rf->self != dst->self || rf->iface != dst->iface) {
            rf->self = NULL;
            for (size_t i = 0; i < rf->n; i++)
                if ((rc = avro_value_get_by_index(dst, i, &rf->v[i], NULL)))
                    return rd_avro_err(rd, rc, "record field");
            rf->self = dst->self;
            rf->iface = dst->iface;
        }
        fields = rf->v;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->rmap[i] < 0) {
            rc = WALK(rd, r->kid[i], NULL);
        } else if (fields) {
            rc = WALK(rd, r->kid[i], &fields[r->rmap[i]]);
        } else if ((rc = avro_value_get_by_index(dst, (size_t)r->rmap[i], &child, NULL)) == 0) {
            rc = WALK(rd, r->kid[i], &child);
        } else {
            return rd_avro_err(rd, rc, "record field");
        }
        if (rc) return rc;
    }
    for (size_t i = 0; i < r->ndef; i++) {
        if (fields)
            child = fields[r->def[i].rindex];
        else if ((rc = avro_value_get_by_index(dst, r->def[i].rindex, &child, NULL)))
            return rd_avro_err(rd, rc, "field default");
        if ((rc = default_to_value(rd->c, r->def[i].json, r->def[i].schema, &child)))
            return rd_err(rd, rc, "default of field %zu could not be stored", r->def[i].rindex);
    }
    return TL_OK;
}

static __attribute__((noinline)) int walk_union(rd_t *rd, const res_t *r, avro_value_t *dst) {
    int64_t l;
    int rc;
    avro_value_t branch;
    if (r->op == OP_BRANCH) {
        if ((rc = avro_value_set_branch(dst, r->rbranch, &branch)))
            return rd_avro_err(rd, rc, "union branch");
        return WALK(rd, r->kid[0], &branch);
    }
    if ((rc = rd_long(rd, &l))) return rc;
    if (l < 0 || (uint64_t)l >= r->n)
        return rd_err(rd, TL_ECORRUPT, "union branch %" PRId64 " out of range (%zu branches)", l, r->n);
    if (dst && r->rmap[l] >= 0) {
        if ((rc = avro_value_set_branch(dst, r->rmap[l], &branch)))
            return rd_avro_err(rd, rc, "union branch");
        dst = &branch;
    }
    return WALK(rd, r->kid[l], dst);
}

static __attribute__((noinline)) int walk_number(rd_t *rd, const res_t *r, avro_value_t *dst) {
    int rc;
    if (r->op == OP_FLOAT || r->op == OP_DOUBLE) {
        size_t n = r->op == OP_FLOAT ? 4 : 8;
        if ((rc = rd_need(rd, n, r->op == OP_FLOAT ? "float" : "double"))) return rc;
        uint64_t bits = 0;
        for (size_t i = 0; i < n; i++) bits |= (uint64_t)rd->p[i] << (8 * i);
        rd->p += n;
        if (!dst) return TL_OK;
        if (r->op == OP_FLOAT) {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy(&f, &b32, sizeof f);
            rc = r->store == ST_DOUBLE ? avro_value_set_double(dst, f) : avro_value_set_float(dst, f);
        } else {
            double d;
            memcpy(&d, &bits, sizeof d);
            rc = avro_value_set_double(dst, d);
        }
        return rc ? rd_avro_err(rd, rc, "store") : TL_OK;
    }
    if (r->op == OP_BOOLEAN) {
        if (rd->p == rd->end) return rd_err(rd, TL_ETRUNCATED, "boolean runs past the end");
        if (*rd->p > 1) return rd_err(rd, TL_ECORRUPT, "boolean byte %u", *rd->p);
        rc = dst ? avro_value_set_boolean(dst, *rd->p) : 0;
        rd->p++;
        return rc ? rd_avro_err(rd, rc, "store") : TL_OK;
    }
    if (r->op == OP_FIXED) {
        if ((rc = rd_need(rd, r->n, "fixed"))) return rc;
        rc = dst ? avro_value_set_fixed(dst, (void *)rd->p, r->n) : 0;
        rd->p += r->n;
        return rc ? rd_avro_err(rd, rc, "store") : TL_OK;
    }
    /* OP_NULL */
    rc = dst ? avro_value_set_null(dst) : 0;
    return rc ? rd_avro_err(rd, rc, "store") : TL_OK;
}

/* Reads one datum of the leaf type r describes (anything below OP_ARRAY)
 * and stores it in dst, or only checks it when dst is NULL (r->store ==
 * ST_SKIP).  Strings, longs, ints and enums are handled here; the rarer
 * leaves in walk_number. */
static inline __attribute__((always_inline)) int walk_leaf(rd_t *rd, const res_t *r,
                                                          avro_value_t *dst) {
    assert((dst == NULL) == (r->store == ST_SKIP));
    int rc;
    int64_t l;
    switch (r->op) {
    case OP_STRING:
    case OP_BYTES:
        if ((rc = rd_len(rd, &l, r->op == OP_STRING ? "string length" : "bytes length"))) return rc;
        if ((rc = rd_need(rd, (uint64_t)l, r->op == OP_STRING ? "string" : "bytes"))) return rc;
        rc = 0;
        if (dst) {
            int as_string = r->store == ST_STRING || (r->op == OP_STRING && r->store == ST_SAME);
            rc = as_string ? give_string(rd->c, dst, rd->p, (size_t)l)
                           : avro_value_set_bytes(dst, (void *)rd->p, (size_t)l);
        }
        rd->p += l;
        break;
    case OP_INT:
    case OP_LONG:
        if ((rc = rd_long(rd, &l))) return rc;
        if (r->op == OP_INT && (l < INT32_MIN || l > INT32_MAX))
            return rd_err(rd, TL_ECORRUPT, "int out of range: %" PRId64, l);
        if (!dst) return TL_OK;
        switch (r->store) {
        case ST_LONG: rc = avro_value_set_long(dst, l); break;
        case ST_FLOAT: rc = avro_value_set_float(dst, (float)l); break;
        case ST_DOUBLE: rc = avro_value_set_double(dst, (double)l); break;
        default:
            rc = r->op == OP_INT ? avro_value_set_int(dst, (int32_t)l) : avro_value_set_long(dst, l);
        }
        break;
    case OP_ENUM:
        if ((rc = rd_long(rd, &l))) return rc;
        if (l < 0 || (uint64_t)l >= r->n)
            return rd_err(rd, TL_ECORRUPT, "enum index %" PRId64 " out of range (%zu symbols)", l, r->n);
        rc = dst ? avro_value_set_enum(dst, r->rmap[l]) : 0;
        break;
    default:
        return walk_number(rd, r, dst);
    }
    return rc ? rd_avro_err(rd, rc, "store") : TL_OK;
}

/* Reads one datum of the writer type r describes into dst (NULL: check
 * and discard).  Compound types count against MAX_DEPTH. */
static int walk(rd_t *rd, const res_t *r, avro_value_t *dst) {
    if (r->op < OP_ARRAY) return walk_leaf(rd, r, dst);
    if (++rd->depth > MAX_DEPTH) return rd_err(rd, TL_ETOOBIG, "nested too deep");
    int rc = r->op == OP_RECORD ? walk_record(rd, r, dst, NULL)
           : r->op == OP_UNION || r->op == OP_BRANCH ? walk_union(rd, r, dst)
           : walk_items(rd, r, dst);
    rd->depth--;
    return rc;
}

/* The framing of data[0..len): checks the header, finds the writer schema
 * and sizes the arena for the datum, then sets *rd to read the datum and
 * *w to its writer.  Shared by the walker and the event layer's direct
 * decoder, so that both refuse a frame with the same error. */
static int read_frame(tl_codec_t *c, const void *data, size_t len, rd_t *rd, const writer_t **wp) {
    const uint8_t *p = data;
    c->errmsg[0] = 0;
    if (len < TL_CODEC_HEADER_SIZE)
        return set_err(c, TL_ETRUNCATED, "%zu bytes, shorter than the %d-byte header",
                       len, TL_CODEC_HEADER_SIZE);
    if (p[0] != 0xc3 || p[1] != 0x01)
        return set_err(c, TL_EBADMAGIC, "marker %02x %02x, not c3 01", p[0], p[1]);
    uint64_t fp = 0;
    for (int i = 0; i < 8; i++) fp |= (uint64_t)p[2 + i] << (8 * i);

    const writer_t *w = NULL;
    for (size_t i = 0; i < c->nwriters; i++)
        if (c->writers[i].fp == fp) {
            w = &c->writers[i];
            break;
        }
    if (!w) return set_err(c, TL_EUNKNOWNSCHEMA, "fingerprint 0x%016" PRIx64 " not known", fp);

    size_t datum = len - TL_CODEC_HEADER_SIZE;
    if (c->arena_cap < datum + 1) {
        size_t cap = c->arena_cap ? c->arena_cap : 1024;
        while (cap < datum + 1) cap *= 2;
        char *a = malloc(cap);
        if (!a) return set_err(c, TL_ENOMEM, "out of memory");
        /* The value may still borrow the old arena: drop those references
         * before freeing it.  Only a walk (tl_codec_read) lends the arena
         * to the value; when none has since the last reset, the value is
         * left alone.  A reset would throw away the array elements that
         * the event encoder keeps for reuse (it frees each element's
         * strings), so the next encode would allocate them again -- and
         * the direct decoder and the cursor never look at the value. */
        if (c->borrows) {
            avro_value_reset(&c->value);
            c->borrows = 0;
        }
        free(c->arena);
        c->arena = a;
        c->arena_cap = cap;
    }
    c->arena_len = 0;

    *rd = (rd_t){ c, p, p + TL_CODEC_HEADER_SIZE, p + len, 0 };
    *wp = w;
    return TL_OK;
}

int tl_codec_read(tl_codec_t *c, const void *data, size_t len, avro_value_t **out) {
    rd_t rd;
    const writer_t *w;
    int rc = read_frame(c, data, len, &rd, &w);
    if (rc) return rc;
    c->borrows = 1;
    rc = w->root->op == OP_RECORD && c->fields ? walk_record(&rd, w->root, &c->value, c->fields)
                                               : walk(&rd, w->root, &c->value);
    if (rc == TL_OK && rd.p != rd.end)
        rc = rd_err(&rd, TL_ECORRUPT, "%zu bytes after the datum", (size_t)(rd.end - rd.p));
    if (rc) {
        /* Leave no half-filled value behind. */
        avro_value_reset(&c->value);
        c->borrows = 0;
        return rc;
    }
    *out = &c->value;
    return TL_OK;
}

/* ---- writing ----------------------------------------------------------- */

avro_value_t *tl_codec_value(tl_codec_t *c) {
    avro_value_reset(&c->value);
    c->borrows = 0;
    return &c->value;
}

int tl_codec_write(tl_codec_t *c, tl_buf_t *out) {
    size_t need = c->write_hint;
    int rc;
    c->errmsg[0] = 0;
    for (;;) {
        if (tl_buf_reserve(out, TL_CODEC_HEADER_SIZE + need))
            return set_err(c, TL_ENOMEM, "out of memory");
        /* tl_buf keeps one byte for its NUL. */
        size_t room = out->cap - out->len - 1 - TL_CODEC_HEADER_SIZE;
        avro_writer_memory_set_dest(c->out, out->data + out->len + TL_CODEC_HEADER_SIZE,
                                    (int64_t)room);
        rc = avro_value_write(c->out, &c->value);
        if (rc == 0) break;
        if (rc != ENOSPC) return avro_err(c, rc, "cannot encode the value");
        need = room * 2;
    }
    size_t n = (size_t)avro_writer_tell(c->out);
    if (n > c->write_hint) c->write_hint = n;
    unsigned char *h = (unsigned char *)out->data + out->len;
    uint64_t fp = c->writers[0].fp;
    h[0] = 0xc3;
    h[1] = 0x01;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)(fp >> (8 * i));
    out->len += TL_CODEC_HEADER_SIZE + n;
    out->data[out->len] = 0;
    return TL_OK;
}

/* ---- set-up ------------------------------------------------------------ */

/* Builds the plan for writer schema ws (fingerprint fp) into *w. */
static int writer_build(tl_codec_t *c, avro_schema_t ws, uint64_t fp, writer_t *w) {
    *w = (writer_t){ fp, ws, NULL, NULL };
    build_t b = { c, w };
    w->root = resolve(&b, ws, c->schema);
    if (!w->root) {
        res_free_all(w->nodes);
        w->nodes = NULL;
        return c->err == TL_ENOMEM ? TL_ENOMEM : TL_ESCHEMA;
    }
    return TL_OK;
}

/* Handles of the root record's fields, so that the walker and the event
 * layer need not ask avro_value_get_by_index for them on every record.  A
 * generic record keeps its fields inline, so these handles stay valid as
 * long as the value lives; that is checked here, across a reset, rather
 * than assumed, and without it the codec simply asks every time. */
static void cache_fields(tl_codec_t *c) {
    if (avro_typeof(c->schema) != AVRO_RECORD) return;
    size_t n = avro_schema_record_size(c->schema);
    avro_value_t *f = malloc((n ? n : 1) * sizeof *f), again;
    if (!f) return;
    for (size_t i = 0; i < n; i++)
        if (avro_value_get_by_index(&c->value, i, &f[i], NULL)) goto drop;
    avro_value_reset(&c->value);
    for (size_t i = 0; i < n; i++)
        if (avro_value_get_by_index(&c->value, i, &again, NULL) || again.iface != f[i].iface ||
            again.self != f[i].self)
            goto drop;
    c->fields = f;
    return;
drop:
    free(f);
}

/* Parses schema JSON both ways: canonical fingerprint and avro-c schema. */
static int parse_schema(tl_codec_t *c, const char *json, uint64_t *fp, avro_schema_t *schema) {
    int rc = tl_canon_fingerprint(json, fp);
    if (rc) return set_err(c, rc, "schema rejected: %s", tl_strerror(rc));
    if (avro_schema_from_json_length(json, strlen(json), schema))
        return set_err(c, TL_ESCHEMA, "schema rejected by avro-c: %s", avro_strerror());
    return TL_OK;
}

tl_codec_t *tl_codec_new(const char *reader_schema_json, int *err) {
    int rc = TL_ENOMEM;
    uint64_t fp;
    tl_codec_t *c = calloc(1, sizeof *c);
    if (!c) goto fail;
    tl_buf_init(&c->scratch);
    c->write_hint = 256;

    if ((rc = parse_schema(c, reader_schema_json, &fp, &c->schema))) goto fail_codec;
    rc = TL_ENOMEM;
    c->json = json_loads(reader_schema_json, JSON_DECODE_ANY, NULL);
    if (!c->json) goto fail_schema;
    if ((rc = bind_walk(c, c->json, c->schema))) goto fail_json;
    rc = TL_ENOMEM;
    if (!(c->iface = avro_generic_class_from_schema(c->schema))) goto fail_json;
    if (avro_generic_value_new(c->iface, &c->value)) goto fail_iface;
    if (!(c->out = avro_writer_memory(NULL, 0))) goto fail_value;
    if (!(c->writers = malloc(sizeof *c->writers))) goto fail_out;
    avro_schema_incref(c->schema);
    if ((rc = writer_build(c, c->schema, fp, &c->writers[0]))) goto fail_writers;
    c->nwriters = 1;
    cache_fields(c);
    c->errmsg[0] = 0;
    return c;

fail_writers:
    avro_schema_decref(c->schema);
    free(c->writers);
fail_out:
    avro_writer_free(c->out);
fail_value:
    avro_value_decref(&c->value);
fail_iface:
    avro_value_iface_decref(c->iface);
fail_json:
    free(c->binds);
    json_decref(c->json);
fail_schema:
    avro_schema_decref(c->schema);
fail_codec:
    free(c);
fail:
    if (err) *err = rc;
    return NULL;
}

void tl_codec_free(tl_codec_t *c) {
    if (!c) return;
    avro_value_decref(&c->value);
    for (size_t i = 0; i < c->nwriters; i++) {
        res_free_all(c->writers[i].nodes);
        avro_schema_decref(c->writers[i].schema);
    }
    free(c->writers);
    avro_writer_free(c->out);
    avro_value_iface_decref(c->iface);
    free(c->binds);
    json_decref(c->json);
    avro_schema_decref(c->schema);
    free(c->fields);
    free(c->arena);
    tl_buf_close(&c->scratch);
    free(c->att);
    free(c->strs[0]);
    free(c->strs[1]);
    for (int i = 0; i < TL_CODEC_CURSOR_SLOTS; i++) free(c->slot[i]);
    free(c);
}

int tl_codec_add_writer(tl_codec_t *c, const char *writer_schema_json) {
    uint64_t fp;
    avro_schema_t ws;
    c->errmsg[0] = 0;
    int rc = parse_schema(c, writer_schema_json, &fp, &ws);
    if (rc) return rc;
    for (size_t i = 0; i < c->nwriters; i++)
        if (c->writers[i].fp == fp) {
            avro_schema_decref(ws);
            return TL_OK;
        }
    writer_t *ws_arr = realloc(c->writers, (c->nwriters + 1) * sizeof *ws_arr);
    if (!ws_arr) {
        avro_schema_decref(ws);
        return set_err(c, TL_ENOMEM, "out of memory");
    }
    c->writers = ws_arr;
    if ((rc = writer_build(c, ws, fp, &c->writers[c->nwriters]))) {
        avro_schema_decref(ws);
        return rc;
    }
    c->nwriters++;
    return TL_OK;
}

uint64_t tl_codec_fingerprint(const tl_codec_t *c) { return c->writers[0].fp; }

avro_schema_t tl_codec_schema(const tl_codec_t *c) { return c->schema; }

const char *tl_codec_errmsg(const tl_codec_t *c) { return c->errmsg; }

/* ---- event layer: checking the schema against event.h ------------------ */

static int is_opt(avro_schema_t s, avro_type_t t) {
    return avro_typeof(s) == AVRO_UNION && avro_schema_union_size(s) == 2 &&
           avro_typeof(avro_schema_union_branch(s, 0)) == AVRO_NULL &&
           avro_typeof(deref(avro_schema_union_branch(s, 1))) == t;
}

/* Index of field name in record s, checked against the kind event.h
 * expects; -1 when missing or of another type. */
static int event_field(avro_schema_t rec, const char *name, int kind) {
    int i = avro_schema_record_field_get_index(rec, name);
    if (i < 0) return -1;
    avro_schema_t s = deref(avro_schema_record_field_get_by_index(rec, i));
    int ok;
    switch (kind) {
    case F_STR: ok = avro_typeof(s) == AVRO_STRING; break;
    case F_OPT_STR: ok = is_opt(s, AVRO_STRING); break;
    case F_LONG: ok = avro_typeof(s) == AVRO_INT64; break;
    case F_FLOAT: ok = avro_typeof(s) == AVRO_FLOAT; break;
    case F_PLATFORM:
        ok = avro_typeof(s) == AVRO_ENUM && avro_schema_enum_number_of_symbols(s) == TL_PLATFORM__COUNT;
        break;
    case F_SPEAKER:
        ok = avro_typeof(s) == AVRO_ENUM && avro_schema_enum_number_of_symbols(s) == TL_SPEAKER_UNKNOWN + 1;
        break;
    case F_EVIDENCE:
        ok = avro_typeof(s) == AVRO_ENUM && avro_schema_enum_number_of_symbols(s) == TL_EVIDENCE_OTHER + 1;
        break;
    case F_ATTACHMENTS:
        ok = avro_typeof(s) == AVRO_ARRAY &&
             avro_typeof(deref(avro_schema_array_items(s))) == AVRO_RECORD &&
             strcmp(avro_schema_name(deref(avro_schema_array_items(s))), "Attachment") == 0;
        break;
    default: /* F_STRS0, F_STRS1 */
        ok = avro_typeof(s) == AVRO_ARRAY && avro_typeof(deref(avro_schema_array_items(s))) == AVRO_STRING;
    }
    return ok ? i : -1;
}

static int event_index(tl_codec_t *c) {
    event_index_t *ix = &c->ix;
    avro_schema_t ev = c->schema;
    for (size_t i = 0; i < NENVELOPE; i++) {
        int k = event_field(ev, envelope_fields[i].name, envelope_fields[i].kind);
        if (k < 0) return set_err(c, TL_ESCHEMA, "Event.%s does not match event.h", envelope_fields[i].name);
        ix->envelope[i] = (size_t)k;
    }
    int k = avro_schema_record_field_get_index(ev, "payload");
    avro_schema_t payload = k >= 0 ? avro_schema_record_field_get_by_index(ev, k) : NULL;
    if (!payload || avro_typeof(payload) != AVRO_UNION || avro_schema_union_size(payload) != TL_EV__COUNT)
        return set_err(c, TL_ESCHEMA, "Event.payload does not match event.h");
    ix->payload = (size_t)k;
    c->kind_fields_usable = 1;
    for (int kind = 0; kind < TL_EV__COUNT; kind++) {
        if (avro_typeof(avro_schema_union_branch(payload, kind)) == AVRO_LINK)
            c->kind_fields_usable = 0;
        avro_schema_t rec = deref(avro_schema_union_branch(payload, kind));
        if (avro_typeof(rec) != AVRO_RECORD ||
            strcmp(avro_schema_name(rec), tl_event_kind_name((tl_event_kind_t)kind)) != 0)
            return set_err(c, TL_ESCHEMA, "payload branch %d is not %s", kind,
                           tl_event_kind_name((tl_event_kind_t)kind));
        assert(payload_fields[kind].n <= MAX_PAYLOAD_FIELDS);
        for (size_t i = 0; i < payload_fields[kind].n; i++) {
            const fdesc_t *f = &payload_fields[kind].f[i];
            int fi = event_field(rec, f->name, f->kind);
            if (fi < 0)
                return set_err(c, TL_ESCHEMA, "%s.%s does not match event.h", avro_schema_name(rec), f->name);
            ix->fields[kind][i] = (size_t)fi;
            if (f->kind == F_ATTACHMENTS) {
                avro_schema_t att = deref(avro_schema_array_items(
                    deref(avro_schema_record_field_get_by_index(rec, fi))));
                static const int att_kinds[ATT__COUNT] = { F_STR, F_STR, F_LONG, -1, -1 };
                for (int a = 0; a < ATT__COUNT; a++) {
                    int ai = att_kinds[a] >= 0 ? event_field(att, attachment_names[a], att_kinds[a])
                                               : avro_schema_record_field_get_index(att, attachment_names[a]);
                    if (ai < 0 || (att_kinds[a] < 0 &&
                                   !is_opt(avro_schema_record_field_get_by_index(att, ai), AVRO_INT32)))
                        return set_err(c, TL_ESCHEMA, "Attachment.%s does not match event.h",
                                       attachment_names[a]);
                    ix->attachment[a] = (size_t)ai;
                }
            }
        }
    }
    return TL_OK;
}

/* Fills slot i of a record's direct plan with f, once; 0 when the slot
 * is out of range or taken. */
static int direct_put(dfield_t *plan, size_t n, unsigned char *seen, size_t i, dfield_t f) {
    if (i >= n || seen[i]) return 0;
    seen[i] = 1;
    plan[i] = f;
    return 1;
}

/* Lays the tables out in the schema's field order for the direct decoder
 * (c->direct).  Needs event_index's indexes.  A record with a field the
 * tables do not cover leaves the decoder unusable: nothing fails, every
 * decode then takes the walker. */
static void direct_build(tl_codec_t *c) {
    direct_t *d = &c->direct;
    const event_index_t *ix = &c->ix;
    unsigned char seen[NENVELOPE + 1 + MAX_PAYLOAD_FIELDS + ATT__COUNT];
    memset(d, 0, sizeof *d);

    if (avro_schema_record_size(c->schema) != NENVELOPE + 1) return;
    d->nenv = NENVELOPE + 1;
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < NENVELOPE; i++)
        if (!direct_put(d->env, d->nenv, seen, ix->envelope[i],
                        (dfield_t){ envelope_fields[i].kind, envelope_fields[i].off, 0 }))
            return;
    if (!direct_put(d->env, d->nenv, seen, ix->payload, (dfield_t){ F_PAYLOAD, 0, 0 })) return;

    avro_schema_t payload = avro_schema_record_field_get_by_index(c->schema, (int)ix->payload);
    int has_attachments = 0;
    for (int k = 0; k < TL_EV__COUNT; k++) {
        avro_schema_t rec = deref(avro_schema_union_branch(payload, k));
        size_t n = payload_fields[k].n;
        if (avro_schema_record_size(rec) != n) return;
        d->n[k] = n;
        memset(seen, 0, sizeof seen);
        for (size_t i = 0; i < n; i++) {
            const fdesc_t *f = &payload_fields[k].f[i];
            if (!direct_put(d->kind[k], n, seen, ix->fields[k][i], (dfield_t){ f->kind, f->off, 0 }))
                return;
            if (f->kind != F_ATTACHMENTS || has_attachments) continue;
            avro_schema_t att = deref(avro_schema_array_items(
                deref(avro_schema_record_field_get_by_index(rec, (int)ix->fields[k][i]))));
            if (avro_schema_record_size(att) != ATT__COUNT) return;
            static const dfield_t att_fields[ATT__COUNT] = {
                [ATT_URL] = { F_STR, offsetof(tl_attachment_t, url), 0 },
                [ATT_MIME] = { F_STR, offsetof(tl_attachment_t, mime), 0 },
                [ATT_BYTES] = { F_LONG, offsetof(tl_attachment_t, bytes), 0 },
                [ATT_WIDTH] = { F_OPT_INT, offsetof(tl_attachment_t, width),
                                offsetof(tl_attachment_t, has_width) },
                [ATT_HEIGHT] = { F_OPT_INT, offsetof(tl_attachment_t, height),
                                 offsetof(tl_attachment_t, has_height) },
            };
            unsigned char aseen[ATT__COUNT] = { 0 };
            for (int a = 0; a < ATT__COUNT; a++)
                if (!direct_put(d->att, ATT__COUNT, aseen, ix->attachment[a], att_fields[a])) return;
            /* As the walker counts it (resolve): a string, a long and a
             * union take at least a byte each. */
            d->att_min = ATT__COUNT;
            has_attachments = 1;
        }
    }
    d->usable = 1;
}

tl_codec_t *tl_codec_new_event(int *err) {
    tl_codec_t *c = tl_codec_new(tl_schema_event, err);
    if (!c) return NULL;
    int rc = event_index(c);
    if (rc) {
        tl_codec_free(c);
        if (err) *err = rc;
        return NULL;
    }
    c->is_event = 1;
    direct_build(c);
    return c;
}

/* ---- event layer: encoding --------------------------------------------- */

/* Field ix of rec; the root record's come from the cached handles. */
static inline int field_at(tl_codec_t *c, avro_value_t *rec, size_t ix, avro_value_t *out) {
    if (rec == &c->value && c->fields) {
        *out = c->fields[ix];
        return 0;
    }
    return avro_value_get_by_index(rec, ix, out, NULL);
}

/* The handles of the fields of payload record rec (kind k), in table
 * order; NULL on failure. */
static const avro_value_t *kind_fields(tl_codec_t *c, int k, avro_value_t *rec) {
    kind_fields_t *kf = &c->kind_fields[k];
    if (kf->self != rec->self || kf->iface != rec->iface) {
        kf->self = NULL;
        for (size_t i = 0; i < payload_fields[k].n; i++)
            if (avro_value_get_by_index(rec, c->ix.fields[k][i], &kf->v[i], NULL)) return NULL;
        if (c->kind_fields_usable) {
            kf->self = rec->self;
            kf->iface = rec->iface;
        }
    }
    return kf->v;
}

static int put_string(tl_codec_t *c, avro_value_t *v, tl_str_t s) {
    if (!s.ptr) return TL_EINVAL;
    /* avro-c wants the NUL inside the length; tl_str_t may not have one. */
    tl_buf_reset(&c->scratch);
    if (tl_buf_append(&c->scratch, s.ptr, s.len)) return TL_ENOMEM;
    return avro_value_set_string_len(v, c->scratch.data, s.len + 1) ? TL_ENOMEM : TL_OK;
}

static int put_opt_string(tl_codec_t *c, avro_value_t *v, tl_str_t s) {
    avro_value_t branch;
    if (avro_value_set_branch(v, s.ptr ? 1 : 0, &branch)) return TL_ENOMEM;
    if (!s.ptr) return avro_value_set_null(&branch) ? TL_ENOMEM : TL_OK;
    return put_string(c, &branch, s);
}

static int put_opt_int(avro_value_t *v, int has, int32_t x) {
    avro_value_t branch;
    if (avro_value_set_branch(v, has ? 1 : 0, &branch)) return TL_ENOMEM;
    int rc = has ? avro_value_set_int(&branch, x) : avro_value_set_null(&branch);
    return rc ? TL_ENOMEM : TL_OK;
}

static int put_enum(avro_value_t *v, int x, int count) {
    if (x < 0 || x >= count) return TL_EINVAL;
    return avro_value_set_enum(v, x) ? TL_ENOMEM : TL_OK;
}

/* Element i of array v, which holds `have` elements from the last record:
 * reused when there, appended when not (see walk_items). */
static int put_item(avro_value_t *v, size_t i, size_t have, avro_value_t *item) {
    return i < have ? avro_value_get_by_index(v, i, item, NULL) : avro_value_append(v, item, NULL);
}

/* How many of array v's elements can be reused for n new ones: all if it
 * has no more than n, else none (it is emptied; elements cannot be
 * dropped one by one). */
static int put_reuse(avro_value_t *v, size_t n, size_t *have) {
    if (avro_value_get_size(v, have)) return TL_ENOMEM;
    if (*have > n) {
        *have = 0;
        if (avro_value_reset(v)) return TL_ENOMEM;
    }
    return TL_OK;
}

static int put_attachments(tl_codec_t *c, avro_value_t *v, const tl_attachments_t *a) {
    if (a->n && !a->v) return TL_EINVAL;
    const size_t *ix = c->ix.attachment;
    size_t have;
    if (put_reuse(v, a->n, &have)) return TL_ENOMEM;
    for (size_t i = 0; i < a->n; i++) {
        const tl_attachment_t *at = &a->v[i];
        avro_value_t rec, f;
        int rc = TL_ENOMEM;
        if (put_item(v, i, have, &rec)) return TL_ENOMEM;
        if (avro_value_get_by_index(&rec, ix[ATT_URL], &f, NULL) || (rc = put_string(c, &f, at->url)))
            return rc;
        if (avro_value_get_by_index(&rec, ix[ATT_MIME], &f, NULL) || (rc = put_string(c, &f, at->mime)))
            return rc;
        if (avro_value_get_by_index(&rec, ix[ATT_BYTES], &f, NULL) || avro_value_set_long(&f, at->bytes))
            return TL_ENOMEM;
        if (avro_value_get_by_index(&rec, ix[ATT_WIDTH], &f, NULL) ||
            (rc = put_opt_int(&f, at->has_width, at->width)))
            return rc;
        if (avro_value_get_by_index(&rec, ix[ATT_HEIGHT], &f, NULL) ||
            (rc = put_opt_int(&f, at->has_height, at->height)))
            return rc;
    }
    return TL_OK;
}

static int put_strings(tl_codec_t *c, avro_value_t *v, const tl_strs_t *s) {
    if (s->n && !s->v) return TL_EINVAL;
    size_t have;
    if (put_reuse(v, s->n, &have)) return TL_ENOMEM;
    for (size_t i = 0; i < s->n; i++) {
        avro_value_t item;
        if (put_item(v, i, have, &item)) return TL_ENOMEM;
        int rc = put_string(c, &item, s->v[i]);
        if (rc) return rc;
    }
    return TL_OK;
}

/* Stores the fields of table f (with schema indexes ix) from ev into rec. */
static int put_fields(tl_codec_t *c, avro_value_t *rec, const avro_value_t *handles,
                      const fdesc_t *f, size_t n, const size_t *ix, const tl_event_t *ev) {
    const char *base = (const char *)ev;
    for (size_t i = 0; i < n; i++) {
        const void *field = base + f[i].off;
        avro_value_t v;
        int rc;
        if (handles) v = handles[i];
        else if (field_at(c, rec, ix[i], &v)) return TL_ENOMEM;
        switch (f[i].kind) {
        case F_STR: rc = put_string(c, &v, *(const tl_str_t *)field); break;
        case F_OPT_STR: rc = put_opt_string(c, &v, *(const tl_str_t *)field); break;
        case F_LONG: rc = avro_value_set_long(&v, *(const int64_t *)field) ? TL_ENOMEM : TL_OK; break;
        case F_FLOAT: rc = avro_value_set_float(&v, *(const float *)field) ? TL_ENOMEM : TL_OK; break;
        case F_PLATFORM: rc = put_enum(&v, *(const tl_platform_t *)field, TL_PLATFORM__COUNT); break;
        case F_SPEAKER: rc = put_enum(&v, *(const tl_speaker_t *)field, TL_SPEAKER_UNKNOWN + 1); break;
        case F_EVIDENCE: rc = put_enum(&v, *(const tl_evidence_t *)field, TL_EVIDENCE_OTHER + 1); break;
        case F_ATTACHMENTS: rc = put_attachments(c, &v, field); break;
        default: rc = put_strings(c, &v, field); break;
        }
        if (rc) return set_err(c, rc, "field %s: %s", f[i].name,
                               rc == TL_EINVAL ? "missing or out of range" : "out of memory");
    }
    return TL_OK;
}

int tl_codec_encode_event(tl_codec_t *c, const tl_event_t *ev, tl_buf_t *out) {
    c->errmsg[0] = 0;
    if (!c->is_event) return set_err(c, TL_EINVAL, "not an event codec");
    if ((unsigned)ev->kind >= TL_EV__COUNT)
        return set_err(c, TL_EINVAL, "event kind %d out of range", (int)ev->kind);
    /* No reset: every field of the envelope and of the chosen payload
     * record is overwritten below, and arrays keep their elements for reuse
     * (a reset would free them and every string buffer in them). */
    avro_value_t *root = &c->value, payload, body;
    int rc = put_fields(c, root, NULL, envelope_fields, NENVELOPE, c->ix.envelope, ev);
    if (rc) return rc;
    const avro_value_t *handles;
    if (field_at(c, root, c->ix.payload, &payload) ||
        avro_value_set_branch(&payload, (int)ev->kind, &body) ||
        !(handles = kind_fields(c, ev->kind, &body)))
        return set_err(c, TL_ENOMEM, "payload: %s", avro_strerror());
    rc = put_fields(c, &body, handles, payload_fields[ev->kind].f, payload_fields[ev->kind].n,
                    c->ix.fields[ev->kind], ev);
    if (rc) return rc;
    return tl_codec_write(c, out);
}

/* ---- event layer: decoding --------------------------------------------- */

static int get_string(avro_value_t *v, tl_str_t *out) {
    const char *p;
    size_t size;
    if (avro_value_get_string(v, &p, &size)) return TL_ECORRUPT;
    /* size counts avro-c's NUL; an empty value may report 0. */
    *out = (tl_str_t){ p, size ? size - 1 : 0 };
    return TL_OK;
}

static int get_opt_string(avro_value_t *v, tl_str_t *out) {
    int disc;
    avro_value_t branch;
    if (avro_value_get_discriminant(v, &disc)) return TL_ECORRUPT;
    if (disc == 0) {
        *out = TL_STR_NULL;
        return TL_OK;
    }
    if (avro_value_get_current_branch(v, &branch)) return TL_ECORRUPT;
    return get_string(&branch, out);
}

static int get_opt_int(avro_value_t *v, int *has, int32_t *x) {
    int disc;
    avro_value_t branch;
    if (avro_value_get_discriminant(v, &disc)) return TL_ECORRUPT;
    *has = disc == 1;
    *x = 0;
    if (!*has) return TL_OK;
    if (avro_value_get_current_branch(v, &branch) || avro_value_get_int(&branch, x)) return TL_ECORRUPT;
    return TL_OK;
}

static int get_enum(avro_value_t *v, int *x, int count) {
    if (avro_value_get_enum(v, x) || *x < 0 || *x >= count) return TL_ECORRUPT;
    return TL_OK;
}

static int get_attachments(tl_codec_t *c, avro_value_t *v, tl_attachments_t *out) {
    size_t n;
    if (avro_value_get_size(v, &n)) return TL_ECORRUPT;
    if (n > c->att_cap) {
        size_t cap = c->att_cap ? c->att_cap * 2 : 4;
        while (cap < n) cap *= 2;
        tl_attachment_t *a = realloc(c->att, cap * sizeof *a);
        if (!a) return TL_ENOMEM;
        c->att = a;
        c->att_cap = cap;
    }
    const size_t *ix = c->ix.attachment;
    for (size_t i = 0; i < n; i++) {
        tl_attachment_t *at = &c->att[i];
        avro_value_t rec, f;
        if (avro_value_get_by_index(v, i, &rec, NULL)) return TL_ECORRUPT;
        if (avro_value_get_by_index(&rec, ix[ATT_URL], &f, NULL) || get_string(&f, &at->url))
            return TL_ECORRUPT;
        if (avro_value_get_by_index(&rec, ix[ATT_MIME], &f, NULL) || get_string(&f, &at->mime))
            return TL_ECORRUPT;
        if (avro_value_get_by_index(&rec, ix[ATT_BYTES], &f, NULL) || avro_value_get_long(&f, &at->bytes))
            return TL_ECORRUPT;
        if (avro_value_get_by_index(&rec, ix[ATT_WIDTH], &f, NULL) ||
            get_opt_int(&f, &at->has_width, &at->width))
            return TL_ECORRUPT;
        if (avro_value_get_by_index(&rec, ix[ATT_HEIGHT], &f, NULL) ||
            get_opt_int(&f, &at->has_height, &at->height))
            return TL_ECORRUPT;
    }
    *out = (tl_attachments_t){ c->att, n };
    return TL_OK;
}

static int get_strings(tl_codec_t *c, avro_value_t *v, int slot, tl_strs_t *out) {
    size_t n;
    if (avro_value_get_size(v, &n)) return TL_ECORRUPT;
    if (n > c->strs_cap[slot]) {
        size_t cap = c->strs_cap[slot] ? c->strs_cap[slot] * 2 : 8;
        while (cap < n) cap *= 2;
        tl_str_t *s = realloc(c->strs[slot], cap * sizeof *s);
        if (!s) return TL_ENOMEM;
        c->strs[slot] = s;
        c->strs_cap[slot] = cap;
    }
    for (size_t i = 0; i < n; i++) {
        avro_value_t item;
        if (avro_value_get_by_index(v, i, &item, NULL) || get_string(&item, &c->strs[slot][i]))
            return TL_ECORRUPT;
    }
    *out = (tl_strs_t){ c->strs[slot], n };
    return TL_OK;
}

static int get_fields(tl_codec_t *c, avro_value_t *rec, const avro_value_t *handles,
                      const fdesc_t *f, size_t n, const size_t *ix, tl_event_t *ev) {
    char *base = (char *)ev;
    for (size_t i = 0; i < n; i++) {
        void *field = base + f[i].off;
        avro_value_t v;
        int rc, x = 0;
        if (handles) v = handles[i];
        else if (field_at(c, rec, ix[i], &v)) return TL_ECORRUPT;
        switch (f[i].kind) {
        case F_STR: rc = get_string(&v, field); break;
        case F_OPT_STR: rc = get_opt_string(&v, field); break;
        case F_LONG: rc = avro_value_get_long(&v, field) ? TL_ECORRUPT : TL_OK; break;
        case F_FLOAT: rc = avro_value_get_float(&v, field) ? TL_ECORRUPT : TL_OK; break;
        case F_PLATFORM:
            if (!(rc = get_enum(&v, &x, TL_PLATFORM__COUNT))) *(tl_platform_t *)field = (tl_platform_t)x;
            break;
        case F_SPEAKER:
            if (!(rc = get_enum(&v, &x, TL_SPEAKER_UNKNOWN + 1))) *(tl_speaker_t *)field = (tl_speaker_t)x;
            break;
        case F_EVIDENCE:
            if (!(rc = get_enum(&v, &x, TL_EVIDENCE_OTHER + 1))) *(tl_evidence_t *)field = (tl_evidence_t)x;
            break;
        case F_ATTACHMENTS: rc = get_attachments(c, &v, field); break;
        case F_STRS0: rc = get_strings(c, &v, 0, field); break;
        default: rc = get_strings(c, &v, 1, field); break;
        }
        if (rc) return set_err(c, rc, "field %s: %s", f[i].name,
                               rc == TL_ENOMEM ? "out of memory" : "value out of range");
    }
    return TL_OK;
}

int tl_codec_decode_event_general(tl_codec_t *c, const void *data, size_t len, tl_event_t *ev) {
    if (!c->is_event) return set_err(c, TL_EINVAL, "not an event codec");
    avro_value_t *root, payload, body;
    int rc = tl_codec_read(c, data, len, &root);
    if (rc) return rc;
    tl_event_t tmp;
    memset(&tmp, 0, sizeof tmp);
    if ((rc = get_fields(c, root, NULL, envelope_fields, NENVELOPE, c->ix.envelope, &tmp)))
        return rc;
    int kind;
    const avro_value_t *handles;
    if (field_at(c, root, c->ix.payload, &payload) ||
        avro_value_get_discriminant(&payload, &kind) || kind < 0 || kind >= TL_EV__COUNT ||
        avro_value_get_current_branch(&payload, &body) || !(handles = kind_fields(c, kind, &body)))
        return set_err(c, TL_ECORRUPT, "payload branch out of range");
    tmp.kind = (tl_event_kind_t)kind;
    rc = get_fields(c, &body, handles, payload_fields[kind].f, payload_fields[kind].n,
                    c->ix.fields[kind], &tmp);
    if (rc) return rc;
    *ev = tmp;
    return TL_OK;
}

/* ---- event layer: direct decoding -------------------------------------- */

/* A string copied to the arena (NUL-terminated, as the walker's are). */
static inline int direct_string(rd_t *rd, tl_str_t *out) {
    int64_t l;
    int rc;
    if ((rc = rd_len(rd, &l, "string length"))) return rc;
    if ((rc = rd_need(rd, (uint64_t)l, "string"))) return rc;
    *out = (tl_str_t){ arena_copy(rd->c, rd->p, (size_t)l), (size_t)l };
    rd->p += l;
    return TL_OK;
}

/* A union branch or enum symbol: index < n, as walk_union and walk_leaf
 * check it. */
static inline int direct_index(rd_t *rd, size_t n, int is_enum, int64_t *out) {
    int rc = rd_long(rd, out);
    if (rc) return rc;
    if (*out < 0 || (uint64_t)*out >= n) {
        if (is_enum)
            return rd_err(rd, TL_ECORRUPT, "enum index %" PRId64 " out of range (%zu symbols)", *out, n);
        return rd_err(rd, TL_ECORRUPT, "union branch %" PRId64 " out of range (%zu branches)", *out, n);
    }
    return TL_OK;
}

/* Makes room for n elements of size each in *v (capacity *cap, first
 * capacity first_cap), as get_attachments and get_strings grow theirs.  n
 * has been checked against the bytes left, so this is bounded by them. */
static int direct_grow(rd_t *rd, void **v, size_t *cap, size_t n, size_t size, size_t first_cap) {
    if (n <= *cap) return TL_OK;
    size_t c = *cap ? *cap * 2 : first_cap;
    while (c < n) c *= 2;
    void *p = realloc(*v, c * size);
    if (!p) return rd_err(rd, TL_ENOMEM, "out of memory");
    *v = p;
    *cap = c;
    return TL_OK;
}

static int direct_fields(rd_t *rd, const dfield_t *f, size_t n, char *base);

/* An array of Attachment records (att != 0) or of strings (in strs[slot]),
 * block by block with walk_items' checks, into the codec's arrays: they
 * keep their capacity from record to record. */
static __attribute__((noinline)) int direct_array(rd_t *rd, int att, int slot, void *out) {
    tl_codec_t *c = rd->c;
    size_t min = att ? c->direct.att_min : 1, index = 0;
    int rc;
    for (;;) {
        int64_t count, size;
        if ((rc = rd_long(rd, &count))) return rc;
        if (count == 0) break;
        if (count < 0) {
            if (count == INT64_MIN) return rd_err(rd, TL_ECORRUPT, "block count out of range");
            count = -count;
            if ((rc = rd_len(rd, &size, "block size"))) return rc;
        }
        size_t left = (size_t)(rd->end - rd->p);
        if ((uint64_t)count > left / min)
            return rd_err(rd, TL_ETRUNCATED, "%" PRId64 " items cannot fit in %zu bytes", count, left);
        size_t want = index + (size_t)count;
        if (att) {
            if ((rc = direct_grow(rd, (void **)&c->att, &c->att_cap, want, sizeof *c->att, 4))) return rc;
            for (; index < want; index++)
                if ((rc = direct_fields(rd, c->direct.att, ATT__COUNT, (char *)&c->att[index])))
                    return rc;
        } else {
            if ((rc = direct_grow(rd, (void **)&c->strs[slot], &c->strs_cap[slot], want,
                                  sizeof *c->strs[slot], 8)))
                return rc;
            for (; index < want; index++)
                if ((rc = direct_string(rd, &c->strs[slot][index]))) return rc;
        }
    }
    if (att)
        *(tl_attachments_t *)out = (tl_attachments_t){ c->att, index };
    else
        *(tl_strs_t *)out = (tl_strs_t){ c->strs[slot], index };
    return TL_OK;
}

/* Reads the fields of one record, in the writer's order, into base (a
 * tl_event_t, or a tl_attachment_t for an Attachment's fields). */
static int direct_fields(rd_t *rd, const dfield_t *f, size_t n, char *base) {
    int rc;
    int64_t l;
    for (size_t i = 0; i < n; i++) {
        void *field = base + f[i].off;
        switch (f[i].kind) {
        case F_STR:
            rc = direct_string(rd, field);
            break;
        case F_OPT_STR:
            if ((rc = direct_index(rd, 2, 0, &l))) return rc;
            if (l == 0)
                *(tl_str_t *)field = TL_STR_NULL;
            else
                rc = direct_string(rd, field);
            break;
        case F_OPT_INT:
            if ((rc = direct_index(rd, 2, 0, &l))) return rc;
            *(int *)(base + f[i].has_off) = l == 1;
            *(int32_t *)field = 0;
            if (l == 1) {
                if ((rc = rd_long(rd, &l))) return rc;
                if (l < INT32_MIN || l > INT32_MAX)
                    return rd_err(rd, TL_ECORRUPT, "int out of range: %" PRId64, l);
                *(int32_t *)field = (int32_t)l;
            }
            break;
        case F_LONG:
            rc = rd_long(rd, field);
            break;
        case F_FLOAT: {
            if ((rc = rd_need(rd, 4, "float"))) return rc;
            uint32_t bits = (uint32_t)rd->p[0] | (uint32_t)rd->p[1] << 8 |
                            (uint32_t)rd->p[2] << 16 | (uint32_t)rd->p[3] << 24;
            memcpy(field, &bits, sizeof bits);
            rd->p += 4;
            break;
        }
        case F_PLATFORM:
            if (!(rc = direct_index(rd, TL_PLATFORM__COUNT, 1, &l)))
                *(tl_platform_t *)field = (tl_platform_t)l;
            break;
        case F_SPEAKER:
            if (!(rc = direct_index(rd, TL_SPEAKER_UNKNOWN + 1, 1, &l)))
                *(tl_speaker_t *)field = (tl_speaker_t)l;
            break;
        case F_EVIDENCE:
            if (!(rc = direct_index(rd, TL_EVIDENCE_OTHER + 1, 1, &l)))
                *(tl_evidence_t *)field = (tl_evidence_t)l;
            break;
        case F_ATTACHMENTS: rc = direct_array(rd, 1, 0, field); break;
        case F_STRS0: rc = direct_array(rd, 0, 0, field); break;
        case F_STRS1: rc = direct_array(rd, 0, 1, field); break;
        default: { /* F_PAYLOAD */
            tl_event_t *ev = (tl_event_t *)base;
            if ((rc = direct_index(rd, TL_EV__COUNT, 0, &l))) return rc;
            ev->kind = (tl_event_kind_t)l;
            rc = direct_fields(rd, rd->c->direct.kind[l], rd->c->direct.n[l], base);
        }
        }
        if (rc) return rc;
    }
    return TL_OK;
}

int tl_codec_decode_event(tl_codec_t *c, const void *data, size_t len, tl_event_t *ev) {
    if (!c->is_event) return set_err(c, TL_EINVAL, "not an event codec");
    if (!c->direct.usable) return tl_codec_decode_event_general(c, data, len, ev);
    rd_t rd;
    const writer_t *w;
    int rc = read_frame(c, data, len, &rd, &w);
    if (rc) return rc;
    /* Only the reader schema's own records: another writer's need the
     * walker's resolution (skipped fields, defaults, promotions). */
    if (w != &c->writers[0]) return tl_codec_decode_event_general(c, data, len, ev);
    tl_event_t tmp;
    memset(&tmp, 0, sizeof tmp);
    rc = direct_fields(&rd, c->direct.env, c->direct.nenv, (char *)&tmp);
    if (rc == TL_OK && rd.p != rd.end)
        rc = rd_err(&rd, TL_ECORRUPT, "%zu bytes after the datum", (size_t)(rd.end - rd.p));
    if (rc) return rc;
    *ev = tmp;
    return TL_OK;
}

/* ---- direct reading for other layers (codec.h's cursor) ---------------- */

/* Each of these is the walker's own check for one type of the reader
 * schema, in the walker's order and with its messages: walk_leaf for
 * strings, bytes, ints and longs, walk_number for booleans, walk_union for
 * an optional string, walk_items for an array block. */

int tl_codec_cursor_open(tl_codec_t *c, const void *data, size_t len, tl_codec_cursor_t *cur,
                         int *own) {
    const writer_t *w;
    int rc = read_frame(c, data, len, cur, &w);
    if (rc) return rc;
    *own = w == &c->writers[0];
    return TL_OK;
}

int tl_codec_cursor_string(tl_codec_cursor_t *cur, tl_str_t *out) {
    return direct_string(cur, out);
}

int tl_codec_cursor_opt_string(tl_codec_cursor_t *cur, tl_str_t *out) {
    int64_t l;
    int rc = direct_index(cur, 2, 0, &l);
    if (rc) return rc;
    if (l == 0) {
        *out = TL_STR_NULL;
        return TL_OK;
    }
    return direct_string(cur, out);
}

int tl_codec_cursor_bytes(tl_codec_cursor_t *cur, tl_str_t *out) {
    int64_t l;
    int rc;
    if ((rc = rd_len(cur, &l, "bytes length"))) return rc;
    if ((rc = rd_need(cur, (uint64_t)l, "bytes"))) return rc;
    *out = (tl_str_t){ arena_copy(cur->c, cur->p, (size_t)l), (size_t)l };
    cur->p += l;
    return TL_OK;
}

int tl_codec_cursor_long(tl_codec_cursor_t *cur, int64_t *out) {
    return rd_long(cur, out);
}

int tl_codec_cursor_int(tl_codec_cursor_t *cur, int32_t *out) {
    int64_t l;
    int rc = rd_long(cur, &l);
    if (rc) return rc;
    if (l < INT32_MIN || l > INT32_MAX) return rd_err(cur, TL_ECORRUPT, "int out of range: %" PRId64, l);
    *out = (int32_t)l;
    return TL_OK;
}

int tl_codec_cursor_boolean(tl_codec_cursor_t *cur, int *out) {
    if (cur->p == cur->end) return rd_err(cur, TL_ETRUNCATED, "boolean runs past the end");
    if (*cur->p > 1) return rd_err(cur, TL_ECORRUPT, "boolean byte %u", *cur->p);
    *out = *cur->p++;
    return TL_OK;
}

int tl_codec_cursor_block(tl_codec_cursor_t *cur, size_t min, int64_t *count) {
    int64_t size;
    int rc;
    assert(min > 0);
    if ((rc = rd_long(cur, count))) return rc;
    if (*count == 0) return TL_OK;
    if (*count < 0) {
        if (*count == INT64_MIN) return rd_err(cur, TL_ECORRUPT, "block count out of range");
        *count = -*count;
        if ((rc = rd_len(cur, &size, "block size"))) return rc;
    }
    size_t left = (size_t)(cur->end - cur->p);
    if ((uint64_t)*count > left / min)
        return rd_err(cur, TL_ETRUNCATED, "%" PRId64 " items cannot fit in %zu bytes", *count, left);
    return TL_OK;
}

void *tl_codec_cursor_grow(tl_codec_cursor_t *cur, int slot, size_t n, size_t size) {
    tl_codec_t *c = cur->c;
    assert(slot >= 0 && slot < TL_CODEC_CURSOR_SLOTS);
    if (direct_grow(cur, &c->slot[slot], &c->slot_cap[slot], n ? n : 1, size, 4)) return NULL;
    return c->slot[slot];
}

int tl_codec_cursor_close(tl_codec_cursor_t *cur) {
    if (cur->p != cur->end)
        return rd_err(cur, TL_ECORRUPT, "%zu bytes after the datum", (size_t)(cur->end - cur->p));
    return TL_OK;
}
