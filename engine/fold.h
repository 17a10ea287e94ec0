/*
 * fold.h -- state' = fold(state, event): the one place threadline decides
 * what is true about a customer.
 *
 * The fold is pure and deterministic: it reads only the event, the state
 * and its options (never a clock, never randomness, never an address), so
 * the fold workers, replay and the tests all compute byte-identical state
 * from the same events in the same partition order.  A tl_fold_t holds the
 * states of many customers (those of the partitions a worker owns), keyed
 * by tenant and customer id.  docs/fold.md tells the whole story; the rules
 * in short (DESIGN.md section 4):
 *
 *   - versions: the customer's version counts applied events (duplicates
 *     excluded, ignored events included); the current conversation's
 *     version counts events applied to it; every field value keeps the
 *     customer version, effective timestamp, platform and event id of the
 *     event that asserted it;
 *   - ordering: effective_ts = clamp(occurred_at, received_at - max_skew,
 *     received_at); equal timestamps are ordered by partition order (the
 *     later record is the later write);
 *   - fields: an ordinary field takes the value with the greatest
 *     effective_ts (last writer wins) and keeps the last TL_FOLD_HISTORY
 *     assertions; a key field (opts.key_fields, default order_no, phone,
 *     email) keeps its first non-empty value and a different non-empty
 *     value opens a conflict holding every candidate with its platform and
 *     event, until a ConflictResolved event names the value;
 *   - dedup: the newest TL_FOLD_RECENT_KEYS idempotency keys per customer,
 *     remembered as 64-bit hashes (tl_fold_key_hash); a repeat is reported
 *     as a duplicate and changes nothing;
 *   - conversations: a conversational event after idle_timeout without
 *     activity, or after a close, opens a new conversation whose id is
 *     UUIDv5(tenant, customer, opening event id);
 *   - identity: see "Linking" below.
 *
 * Linking.  A customer's fields live in the partition of that customer, so
 * the fold hands them over with events, which the fold worker produces to
 * <prefix>.events keyed by their customer_id in the same transaction as the
 * Change of the event that caused them (tl_fold_result_t.emit):
 *
 *   1. IdentityLinked{linked_customer_id: B} on the key of the surviving
 *      customer A (as event.avsc documents: B is merged into customer_id):
 *      A records B as linked and emits a link notice to B.
 *   2. The link notice is an IdentityLinked on B's key whose envelope
 *      platform is SYSTEM, linked_customer_id A, platform_user_id A,
 *      idempotency key "system:link:<link event id>".  Folded on B,
 *      it marks B as merged into A and emits one FieldAsserted per field of
 *      B that has a value, to A's key: platform SYSTEM, platform_user_id B,
 *      occurred_at = received_at = the value's effective_ts (so last writer
 *      wins compares the real times), idempotency key
 *      "system:link:<notice event id>:<field>".
 *   3. Folded on A, those FieldAsserted follow the ordinary rules: a newer
 *      ordinary value wins, a different key value opens a conflict.  A
 *      value asserted on platform SYSTEM remembers platform_user_id as the
 *      customer it came through ("via"); one whose via is not a customer
 *      actively linked into A is ignored (TL_FOLD_IGNORE_NOT_LINKED).
 *   4. IdentityUnlinked{linked_customer_id: B} on A's key withdraws every
 *      value that came through B: a field whose current value did reverts to
 *      the value the rules give without the withdrawn ones (or to no value),
 *      conflict candidates from B are dropped (a conflict left with one
 *      value closes), and an unlink notice (IdentityUnlinked on B's key,
 *      platform SYSTEM, linked_customer_id A, idempotency key
 *      "system:unlink:<unlink event id>") clears B's merge mark.  Nothing
 *      is deleted: withdrawn values stay in the history, flagged.
 *
 * B keeps its own profile throughout, and values asserted on B after the
 * link stay on B (connectors should send them to A once they know):
 * forwarding them would let two customers that link each other at the
 * same moment pass values back and forth for ever.
 *
 * So on IdentityLinked and IdentityUnlinked, linked_customer_id is always
 * the other customer, and the envelope platform says which side the event
 * speaks to: SYSTEM for the absorbed customer (the fold's notices), any
 * other platform for the survivor.  Connectors must not produce SYSTEM
 * events.  Emitted events have event ids derived from the event that caused
 * them, so a retried transaction emits the same events again, and their
 * idempotency keys make a second copy a duplicate.  Replay must not produce
 * them: they are in the log already.
 *
 * Bad input never crashes and never fails the partition: an event that
 * breaks a rule or a limit is applied as "ignored" (the customer version
 * counts it, its idempotency key is remembered, nothing else changes) and
 * tl_fold_result_t.ignored says why.
 *
 * Threads: a tl_fold_t and everything it hands out belong to one thread.
 */
#ifndef TL_FOLD_H
#define TL_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "event.h"
#include "uuid.h"

/* Bounds of one customer's state: with all of them reached a serialised
 * state takes about 520 KB, under Kafka's default 1 MiB message size
 * (fold_largest_state_fits_a_kafka_message). */
#define TL_FOLD_RECENT_KEYS 64      /* idempotency keys remembered */
#define TL_FOLD_MAX_FIELDS 64       /* distinct field names */
#define TL_FOLD_HISTORY 8           /* values kept per field, current included */
#define TL_FOLD_MAX_KEY_FIELDS 16   /* names in opts.key_fields */
#define TL_FOLD_MAX_CANDIDATES 8    /* values in one conflict */
#define TL_FOLD_MAX_LINKS 16        /* link records, active or not */
#define TL_FOLD_MAX_TAGS 32         /* tags on a conversation */
#define TL_FOLD_MAX_CONFLICTS 16    /* open conflicts */
#define TL_FOLD_MAX_NAME 64         /* bytes of a field name or tag */
#define TL_FOLD_MAX_VALUE 512       /* bytes of a field value */
#define TL_FOLD_MAX_ID 128          /* bytes of an id the state keeps: event,
                                       linked customer, agent, team */

typedef struct tl_fold tl_fold_t;

typedef struct tl_fold_opts {
    int64_t max_skew_ms;        /* default 5 min */
    int64_t idle_timeout_ms;    /* default 30 min */
    /* Key fields: NULL means the default set (order_no, phone, email);
     * otherwise nkey_fields names (0 is allowed: no key fields).  Copied
     * by tl_fold_new. */
    const char *const *key_fields;
    size_t nkey_fields;
} tl_fold_opts_t;

/* Why an event was applied without effect: the customer version counts
 * it and its idempotency key is remembered, nothing else changes. */
#define TL_FOLD_IGNORE_MAP(XX)                                                \
    XX(NONE, "applied")                                                       \
    XX(FIELD_NAME, "field name empty or too long")                            \
    XX(VALUE_TOO_LONG, "value longer than TL_FOLD_MAX_VALUE")                 \
    XX(TOO_MANY_FIELDS, "customer has TL_FOLD_MAX_FIELDS fields")             \
    XX(EMPTY_KEY_VALUE, "empty value for a key field")                        \
    XX(TOO_MANY_CANDIDATES, "conflict has TL_FOLD_MAX_CANDIDATES values")     \
    XX(TOO_MANY_CONFLICTS, "customer has TL_FOLD_MAX_CONFLICTS open conflicts") \
    XX(ID_TOO_LONG, "an id to keep is longer than TL_FOLD_MAX_ID")            \
    XX(NOT_LINKED, "value via a customer not linked into this one")           \
    XX(UNKNOWN_CONFLICT, "no open conflict with that id")                     \
    XX(CONFLICT_FIELD, "conflict is on another field")                        \
    XX(EMPTY_CHOICE, "chosen value empty")                                    \
    XX(SELF_LINK, "linked customer missing or the customer itself")           \
    XX(ALREADY_LINKED, "customers already linked")                            \
    XX(MERGED, "customer is merged into another one")                         \
    XX(TOO_MANY_LINKS, "customer has TL_FOLD_MAX_LINKS active links")         \
    XX(UNKNOWN_LINK, "no active link to that customer")                       \
    XX(NOT_CURRENT, "names a conversation that is not the current one")       \
    XX(BAD_TAG, "tag empty or too long, or too many tags")

typedef enum tl_fold_ignore {
#define TL_FOLD_IGNORE_ENUM(name, text) TL_FOLD_IGNORE_##name,
    TL_FOLD_IGNORE_MAP(TL_FOLD_IGNORE_ENUM)
#undef TL_FOLD_IGNORE_ENUM
} tl_fold_ignore_t;

/* What an event did to fields, conflicts and links, for projections:
 *   FIELD_SET           field's current value is now value
 *   FIELD_KEPT          value went into the history only (older than the
 *                       current one, or a key value already there)
 *   FIELD_REVERTED      an unlink withdrew the current value; it is now
 *                       value (ptr NULL: the field has no value)
 *   CONFLICT_OPENED     conflict_id opened on field: current value vs value
 *   CONFLICT_CANDIDATE  value joined the open conflict_id
 *   CONFLICT_RESOLVED   conflict_id closed, value chosen (a FIELD_SET
 *                       comes with it)
 *   CONFLICT_WITHDRAWN  an unlink left conflict_id with one value: closed
 *   LINKED / UNLINKED   customer was merged into this one / no longer is
 *   MERGED / UNMERGED   this customer was merged into customer / no longer
 */
#define TL_FOLD_CHANGE_MAP(XX)                                                \
    XX(FIELD_SET, "field_set")                                                \
    XX(FIELD_KEPT, "field_kept")                                              \
    XX(FIELD_REVERTED, "field_reverted")                                      \
    XX(CONFLICT_OPENED, "conflict_opened")                                    \
    XX(CONFLICT_CANDIDATE, "conflict_candidate")                              \
    XX(CONFLICT_RESOLVED, "conflict_resolved")                                \
    XX(CONFLICT_WITHDRAWN, "conflict_withdrawn")                              \
    XX(LINKED, "linked")                                                      \
    XX(UNLINKED, "unlinked")                                                  \
    XX(MERGED, "merged")                                                      \
    XX(UNMERGED, "unmerged")

typedef enum tl_fold_change_kind {
#define TL_FOLD_CHANGE_ENUM(name, slug) TL_FOLD_##name,
    TL_FOLD_CHANGE_MAP(TL_FOLD_CHANGE_ENUM)
#undef TL_FOLD_CHANGE_ENUM
} tl_fold_change_kind_t;

typedef struct tl_fold_change {
    tl_fold_change_kind_t kind;
    tl_str_t field;             /* FIELD_*, CONFLICT_* */
    tl_str_t value;             /* FIELD_*, CONFLICT_* but WITHDRAWN */
    tl_str_t customer;          /* LINKED, UNLINKED, MERGED, UNMERGED */
    char conflict_id[TL_UUID_STRLEN + 1];   /* CONFLICT_*, else "" */
} tl_fold_change_t;

/* What applying one event did.  Pointers are valid until the next call on
 * the fold that takes a non-const tl_fold_t; strings are NUL-terminated. */
typedef struct tl_fold_result {
    int duplicate;              /* idempotency key seen: nothing changed */
    int64_t effective_ts;
    int64_t customer_version;
    char conversation_id[TL_UUID_STRLEN + 4];   /* "" when the event belongs to none */
    int64_t conversation_version;
    int conversation_opened;    /* this event opened conversation_id */
    tl_fold_ignore_t ignored;   /* NONE, or why the event changed nothing */
    const tl_fold_change_t *changes;
    size_t nchanges;
    /* Events to produce to <prefix>.events, keyed by their customer_id, in
     * this order, in the transaction that records this event. */
    const tl_event_t *emit;
    size_t nemit;
} tl_fold_result_t;

/* One value of a field. */
typedef struct tl_fold_value {
    tl_str_t value;
    int64_t version;            /* customer version that asserted it */
    int64_t effective_ts;
    tl_platform_t platform;
    tl_str_t event_id;
    tl_str_t via;               /* ptr NULL: asserted on this customer */
    int withdrawn;              /* its link was undone */
} tl_fold_value_t;

typedef struct tl_fold_field {
    int key;                    /* a key field */
    int has_current;
    tl_fold_value_t current;
    size_t nvalues;             /* history, oldest first, current included */
    tl_fold_value_t values[TL_FOLD_HISTORY];
} tl_fold_field_t;

typedef struct tl_fold_conflict {
    char id[TL_UUID_STRLEN + 1];
    int64_t opened_version;
    size_t ncandidates;         /* in the order they were asserted */
    tl_fold_value_t candidates[TL_FOLD_MAX_CANDIDATES];
} tl_fold_conflict_t;

typedef struct tl_fold_customer {
    int64_t version;
    int64_t last_event_ts;
    tl_str_t merged_into;       /* ptr NULL: not merged */
    size_t nfields, nconflicts, nlinked;   /* nlinked: active links into it */
    /* current conversation; conversation_id "" when none */
    char conversation_id[TL_UUID_STRLEN + 1];
    int64_t conversation_version;
    int conversation_closed;
    tl_str_t assignee, team;    /* ptr NULL: none */
    uint32_t platforms;         /* bit 1 << tl_platform_t per platform seen */
    size_t ntags;               /* in byte order */
    tl_str_t tags[TL_FOLD_MAX_TAGS];
} tl_fold_customer_t;

/* A fold holding no states.  NULL on allocation failure or invalid opts
 * (more than TL_FOLD_MAX_KEY_FIELDS key fields, a key field name empty or
 * longer than TL_FOLD_MAX_NAME, a negative time).  Any thread; the fold then belongs to the
 * thread that uses it. */
tl_fold_t *tl_fold_new(const tl_fold_opts_t *opts);

/* Frees the fold and every state.  NULL does nothing. */
void tl_fold_free(tl_fold_t *f);

/* The clamped effective timestamp of ev.  Cannot fail. */
int64_t tl_fold_effective_ts(const tl_fold_t *f, const tl_event_t *ev);

/* Applies ev to its customer's state (created on first sight) and describes
 * the outcome in *res.  ev is not kept.  Errors: TL_EINVAL (event lacks
 * tenant or customer id, or a kind, platform or evidence value is out of
 * range: a decoded event never is), TL_ENOMEM; on error nothing changed and
 * *res is unspecified.  Owner thread. */
int tl_fold_apply(tl_fold_t *f, const tl_event_t *ev, tl_fold_result_t *res);

/* Appends the customer's state, Avro single-object encoded with codec (made
 * for tl_schema_state), to out.  The same state always encodes to the same
 * bytes.  TL_ENOTFOUND if the fold holds no state for that customer; codec
 * errors, TL_ENOMEM (out->len unchanged).  Owner thread. */
int tl_fold_state_encode(tl_fold_t *f, tl_codec_t *codec, tl_str_t tenant, tl_str_t customer,
                         tl_buf_t *out);

/* Loads a state record read from <prefix>.state, replacing any state held
 * for that customer.  Errors: decode errors from the codec, TL_ECORRUPT (a
 * record that decodes but breaks the state's invariants or bounds),
 * TL_ENOMEM; on error nothing changed.  Owner thread. */
int tl_fold_state_load(tl_fold_t *f, tl_codec_t *codec, const void *data, size_t len);

/* tl_fold_state_load that also says whose state it was: *tenant and
 * *customer (either may be NULL) point into the fold's copy, valid while it
 * holds that state. */
int tl_fold_state_load_ids(tl_fold_t *f, tl_codec_t *codec, const void *data, size_t len,
                           tl_str_t *tenant, tl_str_t *customer);

/* Forgets every state (after an aborted transaction, or a revoked
 * partition set).  Cannot fail. */
void tl_fold_clear(tl_fold_t *f);

/* Number of customers held.  Cannot fail. */
size_t tl_fold_count(const tl_fold_t *f);

/* Forgets one customer's state (its owner has it durable elsewhere and can
 * give it back with tl_fold_state_load).  TL_ENOTFOUND if not held.  Owner
 * thread. */
int tl_fold_evict(tl_fold_t *f, tl_str_t tenant, tl_str_t customer);

/* Read-only views of one customer, for the API, tools and tests.  Strings
 * point into the fold, valid until the next non-const call on it.
 * TL_ENOTFOUND when the customer (or the field, or an open conflict on it)
 * is unknown.  Owner thread. */
int tl_fold_get_customer(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer,
                         tl_fold_customer_t *out);
int tl_fold_get_field(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, tl_str_t field,
                      tl_fold_field_t *out);
int tl_fold_get_conflict(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer,
                         tl_str_t field, tl_fold_conflict_t *out);

/* One identity link of a customer, for audits and exports. */
typedef struct tl_fold_link {
    tl_str_t customer;          /* the other customer */
    int merged_into;            /* 1: this customer was merged into customer;
                                   0: customer was merged into this one */
    int active;                 /* not unlinked since */
    tl_platform_t platform;     /* of the linked identity */
    tl_evidence_t evidence;
    tl_str_t platform_user_id;
    tl_str_t link_event, unlink_event;  /* unlink_event ptr NULL: active */
    int64_t linked_at, unlinked_at;
} tl_fold_link_t;

/* Read-only iteration over the states and a customer's fields, open
 * conflicts and links, by index, for replay tooling (verify, state,
 * audit, export).  They never change the fold.
 *
 * tl_fold_customer_at: *cursor starts at 0; sets *tenant and *customer of
 * the next state held (table order, which is not stable across changes to
 * the fold) and advances *cursor; TL_ENOTFOUND when there are no more.
 * tl_fold_field_at: the i-th field name (byte order) of the customer.
 * tl_fold_conflict_at: the i-th open conflict (order opened) and its
 * field name.  tl_fold_link_at: the i-th link record (order made).
 * Strings point into the fold, valid until its next non-const call.
 * TL_ENOTFOUND when the customer is unknown or i is out of range.  Owner
 * thread. */
int tl_fold_customer_at(const tl_fold_t *f, size_t *cursor, tl_str_t *tenant, tl_str_t *customer);
int tl_fold_field_at(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, size_t i,
                     tl_str_t *name);
int tl_fold_conflict_at(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, size_t i,
                        tl_str_t *field, tl_fold_conflict_t *out);
int tl_fold_link_at(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, size_t i,
                    tl_fold_link_t *out);

/* The 64-bit hash under which an idempotency key is remembered, and
 * serialised in recent_key_hashes: XXH64 with seed 0, as a signed long.
 * Fixed forever (states on disk depend on it).  Any thread; cannot fail. */
int64_t tl_fold_key_hash(tl_str_t key);

/* "field name empty or ..." for a reason; "unknown" out of range. */
const char *tl_fold_ignore_text(tl_fold_ignore_t why);
/* "field_set" for a change kind; "unknown" out of range. */
const char *tl_fold_change_slug(tl_fold_change_kind_t kind);

#endif
