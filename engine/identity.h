/*
 * identity.h -- the identity index: which customer an identity's events go
 * to (DESIGN.md section 4, "Identity").
 *
 * An identity is (tenant, kind, id): kind is a platform slug ("app",
 * "mini_program", "wechat", ...) for a platform user, or the kind of a piece
 * of evidence a link carried: "unionid" (WeChat unionid), "phone" (a
 * verified phone, E.164) or "account" (an app login).  An identity nobody
 * has linked resolves to its deterministic id, UUIDv5("customer", tenant,
 * kind, id): the very id tl_adapter_customer_id() mints for a platform
 * user, so a retry never mints a second customer and a miss costs nothing.
 *
 * Two halves, one table (identities, schemas/postgres/003_identities.sql):
 *
 *   writer    a projection of its own on <prefix>.changes (group
 *             "<prefix>-identity", consumer "identity" in projection_offsets;
 *             rows and offsets in one PostgreSQL transaction, seek to the
 *             stored offsets on assignment, as engine/projection.c does).
 *             Every applied event maps its (platform, platform_user_id) to
 *             its customer; an IdentityLinked on survivor A maps the linked
 *             identity and its evidence to A and records that the absorbed
 *             customer now resolves to A; IdentityUnlinked deactivates what
 *             its link set.
 *
 *   resolver  for ingest: lookups go through a bounded LRU cache with a
 *             short TTL (a link is seen within one TTL), and misses are
 *             queried on the libuv thread pool with a thread-local PGconn,
 *             so the HTTP loop never blocks on PostgreSQL.  Misses are
 *             coalesced: at most two queries are out at a time, the misses
 *             that arrive meanwhile queue, and each returning query sends
 *             the whole queue (up to TL_IDENTITY_BATCH_LOOKUPS lookups) as
 *             ONE statement.  One statement per request cost a thread-pool
 *             round trip and a PostgreSQL round trip each and held ingest
 *             to a few thousand requests a second; batches grow with the
 *             load instead, and a quiet gateway waits for no timer.  A miss
 *             for an identity never seen is still asked: a link may name it
 *             (an unionid, a login) before any event of its own did, and
 *             nothing on the loop can tell the two apart.  When PostgreSQL
 *             is unreachable the resolver answers the deterministic ids,
 *             counts identity_degraded_total and logs: ingest keeps
 *             accepting (never a 5xx for this), events of linked customers
 *             land on the absorbed id meanwhile and the fold's link hands
 *             them over as it does for any event there.
 *
 * The cache is touched only on the loop thread, so it has no lock.
 */
#ifndef TL_IDENTITY_H
#define TL_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "change.h"
#include "config.h"
#include "event.h"
#include "kafka.h"
#include "uuid.h"

#define TL_IDENTITY_KEY_MAX 512     /* longest cache key, bytes */
#define TL_IDENTITY_MAX_LOOKUPS 4   /* per tl_identity_resolve call */
#define TL_IDENTITY_BATCH_LOOKUPS 1024  /* most lookups one resolver query asks */

/* ---- keys and deterministic ids ---- */

/* Writes the cache key of (tenant, kind, id): the three joined by NUL
 * bytes, so ("a","bc") and ("ab","c") differ.  Returns its length, or 0
 * when it does not fit cap (such an identity is simply not cached).  Any
 * thread; cannot fail. */
size_t tl_identity_key(tl_str_t tenant, const char *kind, tl_str_t id, char *out, size_t cap);

/* The deterministic customer id of (tenant, kind, id), 36 chars + NUL.  For
 * a platform slug it equals tl_adapter_customer_id().  Any thread; cannot
 * fail. */
void tl_identity_default_id(tl_str_t tenant, const char *kind, tl_str_t id,
                            char out[TL_UUID_STRLEN + 1]);

/* ---- the cache ---- */

typedef struct tl_identity_cache tl_identity_cache_t;

/* A cache of at most capacity (>= 1) entries, each valid ttl_ms after it
 * was put.  NULL on allocation failure.  Any thread; the cache itself is
 * for one thread at a time. */
tl_identity_cache_t *tl_identity_cache_new(size_t capacity, int64_t ttl_ms);

/* NULL ok. */
void tl_identity_cache_free(tl_identity_cache_t *c);

/* Looks key up at time now_ms: 1 on a fresh hit (customer and *found
 * filled; the entry becomes the most recently used), 0 on a miss or an
 * expired entry (which is dropped).  Cannot fail. */
int tl_identity_cache_get(tl_identity_cache_t *c, const char *key, size_t keylen, int64_t now_ms,
                          char customer[TL_UUID_STRLEN + 1], int *found);

/* Stores key -> (customer, found) at now_ms, replacing an older entry for
 * key; when full, the least recently used entry goes.  Keys longer than
 * TL_IDENTITY_KEY_MAX are ignored.  Cannot fail. */
void tl_identity_cache_put(tl_identity_cache_t *c, const char *key, size_t keylen,
                           const char *customer, int found, int64_t now_ms);

/* Entries held (for tests and metrics).  Cannot fail. */
size_t tl_identity_cache_size(const tl_identity_cache_t *c);

/* ---- the resolver ---- */

/* One identity to resolve.  tenant, kind and id are borrowed and must stay
 * valid until the callback; customer_id and found are the answer: the
 * customer the index maps the identity to (found = 1), or its
 * deterministic id (found = 0). */
typedef struct tl_identity_lookup {
    tl_str_t tenant;
    const char *kind;
    tl_str_t id;
    char customer_id[TL_UUID_STRLEN + 1];
    int found;
} tl_identity_lookup_t;

/* Called on the loop thread when every lookup is answered; degraded = 1
 * when PostgreSQL could not be asked and the answers are the deterministic
 * ids. */
typedef void (*tl_identity_cb)(void *arg, int degraded);

typedef struct tl_identity tl_identity_t;

/* A resolver on loop, reading PostgreSQL at cfg->pg_dsn, with a cache of
 * cfg->identity_cache entries living cfg->identity_ttl_ms.  On success *out
 * is owned by the caller.  Errors: TL_ENOMEM.  Loop thread. */
int tl_identity_new(uv_loop_t *loop, const tl_config_t *cfg, tl_identity_t **out);

/* Frees the resolver; no resolution may be in flight (run the loop until
 * their callbacks came).  NULL ok.  Loop thread. */
void tl_identity_free(tl_identity_t *idx);

/* Resolves the n (1..TL_IDENTITY_MAX_LOOKUPS) lookups in l.  When the cache
 * answers them all, cb runs before this returns; otherwise the misses join
 * the next batch query on the thread pool (at once when fewer than two
 * are out, else when one comes back) and cb runs later on the loop.  Returns 0 (cb
 * will run exactly once), or TL_EINVAL/TL_ENOMEM and cb is never called.
 * l must stay valid until cb.  Loop thread. */
int tl_identity_resolve(tl_identity_t *idx, tl_identity_lookup_t *l, int n, tl_identity_cb cb,
                        void *arg);

/* Resolutions not answered yet, queued or asking (for a clean
 * shutdown).  NULL ok (0).  Loop thread. */
int tl_identity_in_flight(const tl_identity_t *idx);

/* What the resolver is doing, for tests and diagnostics. */
typedef struct tl_identity_stats {
    int batches;                /* queries on the thread pool now (<= 2) */
    int queued_lookups;         /* misses waiting for the next query */
    uint64_t batches_total;     /* queries sent since tl_identity_new */
} tl_identity_stats_t;

/* Fills *out.  Loop thread; cannot fail. */
void tl_identity_stats(const tl_identity_t *idx, tl_identity_stats_t *out);

/* Writes the PostgreSQL text[] literal of the n strings v into out (cap
 * bytes, NUL-terminated, truncated when short) and returns its full
 * length without the NUL, so a first call with out NULL sizes the buffer.
 * Every element is double-quoted with '"' and '\' escaped, so no value
 * can end an element or the array early; a value stops at its first NUL
 * byte (text cannot hold one).  Pure; any thread; cannot fail. */
size_t tl_identity_pg_array(const tl_str_t *v, size_t n, char *out, size_t cap);

/* ---- the writer ---- */

typedef struct tl_identity_writer tl_identity_writer_t;

/* Starts the writer thread.  On success *out is owned by the caller
 * (tl_identity_writer_stop).  Errors: TL_ENOMEM, TL_EKAFKA.  Any thread. */
int tl_identity_writer_start(tl_kafka_t *kafka, const tl_config_t *cfg, tl_identity_writer_t **out);

/* Stops after the current batch, leaves the group, joins, frees.  NULL ok. */
void tl_identity_writer_stop(tl_identity_writer_t *w);

/* One statement the writer runs: which, and its parameters (ptr NULL =
 * SQL NULL). */
typedef enum tl_identity_op_kind {
    TL_IDENTITY_OP_SEEN,            /* the event's own identity seen on its customer */
    TL_IDENTITY_OP_LINK,            /* an identity row set by a link */
    TL_IDENTITY_OP_MERGE,           /* identity_merges: absorbed -> survivor */
    TL_IDENTITY_OP_UNLINK_ROWS,     /* the link's identity rows deactivated */
    TL_IDENTITY_OP_UNLINK_MERGE     /* the merge deactivated */
} tl_identity_op_kind_t;

#define TL_IDENTITY_MAX_OPS 4
#define TL_IDENTITY_MAX_ARGS 8

typedef struct tl_identity_op {
    tl_identity_op_kind_t kind;
    tl_str_t args[TL_IDENTITY_MAX_ARGS];
    int nargs;
} tl_identity_op_t;

/* What the index writer does for one Change ch carrying the decoded event
 * ev: the statements, in order, into ops; returns how many (0 to
 * TL_IDENTITY_MAX_OPS).  A duplicate changes nothing, and neither does an
 * IdentityLinked / IdentityUnlinked the fold ignored (ch->ignored: a self
 * link, customers already linked, a merged customer, too many links, no
 * such link) -- the index follows what the fold did, not what was asked.
 * Pure: the arguments point into ch, ev and static strings.  Any thread;
 * cannot fail. */
size_t tl_identity_ops(const tl_change_t *ch, const tl_event_t *ev, tl_identity_op_t ops[TL_IDENTITY_MAX_OPS]);

/* The identity kind a link's evidence is recorded under ("unionid",
 * "phone", "account"), or NULL for evidence that names no identity (AGENT,
 * OTHER).  Static; cannot fail. */
const char *tl_identity_evidence_kind(tl_evidence_t e);

#endif
