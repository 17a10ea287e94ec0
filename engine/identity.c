/*
 * identity.c -- the identity index: cache, resolver and writer (see
 * identity.h).
 *
 * The cache is a chained hash table threaded on a doubly linked LRU list:
 * lookups, puts and evictions are O(1), and the bound is on entries, so a
 * flood of one-off visitors cannot grow it.  Misses are cached too (found =
 * 0): most identities are never linked, and asking PostgreSQL for every one
 * of them would put the database on the ingest path.
 *
 * What the cache cannot answer is asked in batches: a request's lookups
 * join a queue, at most BATCHES_MAX statements are on the thread pool at
 * a time, and each one coming back sends the queue as the next.  The
 * coalescing needs no timer and no handle: a quiet gateway's miss leaves
 * at once, a busy one's waits at most for one statement in flight, and the
 * batch size follows the arrival rate.  One statement per request had
 * cost a thread-pool hop, a PostgreSQL round trip and a parse and plan
 * each, and capped ingest at a few thousand requests a second.  The
 * statement is the old per-identity one over unnest()ed arrays, with the
 * recursive merge walk keyed by the lookup's ordinal, so its rules (merge
 * chains, verified phones, deterministic ids) did not change; the arrays
 * are text[] literals built by tl_identity_pg_array (pure, unit-tested).
 *
 * The writer is row-at-a-time inside one transaction per batch, with
 * prepared statements that keep the "a seen row never overwrites an active
 * link" rule in one readable WHERE clause.  Nearly every event is a
 * platform user seen again on the customer the index already has, which
 * changes nothing; the writer remembers what it wrote (a cache of its own,
 * the resolver's kind, cleared whenever it cannot be sure: a rolled-back
 * batch, an unlink, a new assignment), so such an event costs no
 * statement.  One upsert per event had been most of PostgreSQL's work for
 * the agent view.  Which statements a Change means is a pure function
 * (tl_identity_ops), so the rule "a link the fold ignored changes nothing"
 * is tested without a database.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "change.h"
#include "codec.h"
#include "error.h"
#include "identity.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"

/* ------------------------------------------------------------ keys */

size_t tl_identity_key(tl_str_t tenant, const char *kind, tl_str_t id, char *out, size_t cap) {
    size_t klen = strlen(kind);
    size_t n = tenant.len + 1 + klen + 1 + id.len;
    if (n > cap || n > TL_IDENTITY_KEY_MAX) return 0;
    memcpy(out, tenant.ptr, tenant.len);
    out[tenant.len] = 0;
    memcpy(out + tenant.len + 1, kind, klen);
    out[tenant.len + 1 + klen] = 0;
    memcpy(out + tenant.len + klen + 2, id.ptr, id.len);
    return n;
}

void tl_identity_default_id(tl_str_t tenant, const char *kind, tl_str_t id,
                            char out[TL_UUID_STRLEN + 1]) {
    const char *parts[] = {"customer", tenant.ptr, kind, id.ptr};
    size_t lens[] = {8, tenant.len, strlen(kind), id.len};
    tl_uuid_v5(parts, lens, 4, out);
}

const char *tl_identity_evidence_kind(tl_evidence_t e) {
    switch (e) {
    case TL_EVIDENCE_UNIONID: return "unionid";
    case TL_EVIDENCE_VERIFIED_PHONE: return "phone";
    case TL_EVIDENCE_LOGIN: return "account";
    default: return NULL;
    }
}

/* ------------------------------------------------------------ cache */

typedef struct node {
    struct node *hnext;             /* bucket chain */
    struct node *prev, *next;       /* LRU list: head = most recent */
    uint64_t hash;
    int64_t at_ms;
    int found;
    char customer[TL_UUID_STRLEN + 1];
    size_t keylen;
    char key[];
} node_t;

struct tl_identity_cache {
    node_t **buckets;
    size_t mask;
    size_t size, capacity;
    int64_t ttl_ms;
    node_t *head, *tail;
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

tl_identity_cache_t *tl_identity_cache_new(size_t capacity, int64_t ttl_ms) {
    if (capacity < 1) capacity = 1;
    tl_identity_cache_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    size_t nb = 16;
    while (nb < capacity * 2) nb <<= 1;
    c->buckets = calloc(nb, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->mask = nb - 1;
    c->capacity = capacity;
    c->ttl_ms = ttl_ms;
    return c;
}

void tl_identity_cache_free(tl_identity_cache_t *c) {
    if (!c) return;
    for (node_t *n = c->head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    free(c->buckets);
    free(c);
}

static void lru_unlink(tl_identity_cache_t *c, node_t *n) {
    if (n->prev) n->prev->next = n->next;
    else c->head = n->next;
    if (n->next) n->next->prev = n->prev;
    else c->tail = n->prev;
    n->prev = n->next = NULL;
}

static void lru_push(tl_identity_cache_t *c, node_t *n) {
    n->prev = NULL;
    n->next = c->head;
    if (c->head) c->head->prev = n;
    c->head = n;
    if (!c->tail) c->tail = n;
}

/* The chain link pointing at the node for key, or at the chain's NULL end. */
static node_t **slot(tl_identity_cache_t *c, const char *key, size_t keylen, uint64_t h) {
    node_t **p = &c->buckets[h & c->mask];
    while (*p && !((*p)->hash == h && (*p)->keylen == keylen && memcmp((*p)->key, key, keylen) == 0))
        p = &(*p)->hnext;
    return p;
}

static void drop(tl_identity_cache_t *c, node_t **p) {
    node_t *n = *p;
    *p = n->hnext;
    lru_unlink(c, n);
    free(n);
    c->size--;
}

int tl_identity_cache_get(tl_identity_cache_t *c, const char *key, size_t keylen, int64_t now_ms,
                          char customer[TL_UUID_STRLEN + 1], int *found) {
    uint64_t h = fnv1a(key, keylen);
    node_t **p = slot(c, key, keylen, h);
    node_t *n = *p;
    if (!n) return 0;
    if (now_ms - n->at_ms >= c->ttl_ms || now_ms < n->at_ms) {
        drop(c, p);
        return 0;
    }
    lru_unlink(c, n);
    lru_push(c, n);
    memcpy(customer, n->customer, TL_UUID_STRLEN + 1);
    *found = n->found;
    return 1;
}

void tl_identity_cache_put(tl_identity_cache_t *c, const char *key, size_t keylen,
                           const char *customer, int found, int64_t now_ms) {
    if (keylen > TL_IDENTITY_KEY_MAX) return;
    uint64_t h = fnv1a(key, keylen);
    node_t **p = slot(c, key, keylen, h);
    node_t *n = *p;
    if (!n) {
        if (c->size >= c->capacity) {
            node_t *old = c->tail;
            node_t **q = slot(c, old->key, old->keylen, old->hash);
            drop(c, q);
            p = slot(c, key, keylen, h);    /* the chain may have changed */
        }
        n = malloc(sizeof *n + keylen);
        if (!n) return;     /* a cache that cannot grow just misses */
        memset(n, 0, sizeof *n);
        n->hash = h;
        n->keylen = keylen;
        memcpy(n->key, key, keylen);
        *p = n;
        c->size++;
    } else {
        lru_unlink(c, n);
    }
    lru_push(c, n);
    n->at_ms = now_ms;
    n->found = found;
    memcpy(n->customer, customer, TL_UUID_STRLEN);
    n->customer[TL_UUID_STRLEN] = 0;
}

size_t tl_identity_cache_size(const tl_identity_cache_t *c) { return c->size; }

/* ------------------------------------------------------------ resolver */

/* At most this many batches ask PostgreSQL at once; every other miss waits
 * in the queue and goes with the next batch.  Two, not one: while one
 * batch's answer crosses the thread pool back to the loop, the next is
 * already being asked. */
#define BATCHES_MAX 2

/* One request's lookups, from tl_identity_resolve to its callback. */
typedef struct resolution {
    struct resolution *next;        /* queue, then its batch */
    tl_identity_lookup_t *l;
    int n;
    int ask[TL_IDENTITY_MAX_LOOKUPS];   /* 1: not in the cache */
    int degraded;
    tl_identity_cb cb;
    void *arg;
} resolution_t;

/* The resolutions one query answers. */
typedef struct batch {
    uv_work_t work;
    tl_identity_t *idx;
    resolution_t *first;
    int nlook;                      /* lookups asked (ask[i] set) */
} batch_t;

struct tl_identity {
    uv_loop_t *loop;
    tl_identity_cache_t *cache;
    char *dsn;
    int in_flight;                  /* resolutions not answered yet */
    int batches;                    /* batches on the thread pool */
    resolution_t *queue, *queue_tail;   /* misses waiting for a batch */
    int queued_lookups;
    uint64_t batches_total;
};

/* Follows merges from each lookup's row (or its deterministic id, the
 * fourth array) to the customer that absorbed it last; depth-bounded
 * against any cycle a hand-made link could write.  A phone resolves only
 * through its own calls or a VERIFIED_PHONE link: a phone number an agent
 * merely typed in must not route someone else's calls.  The identities
 * primary key makes the LEFT JOIN match at most one row per lookup, and
 * the identity_merges key at most one survivor per customer, so each
 * lookup's chain is a single path and the deepest row is its answer. */
static const char *const batch_sql =
    "WITH RECURSIVE q AS ("
    "  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
    "   WITH ORDINALITY AS q(tenant_id, kind, id, dflt, n)),"
    " seed AS ("
    "  SELECT q.n, q.tenant_id, COALESCE(i.customer_id, q.dflt) AS customer_id,"
    "         i.customer_id IS NOT NULL AS found"
    "    FROM q LEFT JOIN identities i"
    "      ON i.tenant_id = q.tenant_id AND i.platform = q.kind AND i.platform_user_id = q.id"
    "     AND i.active AND (q.kind <> 'phone' OR i.evidence IS NULL OR i.evidence = 'VERIFIED_PHONE')),"
    " r(n, tenant_id, customer_id, depth, found) AS ("
    "  SELECT n, tenant_id, customer_id, 0, found FROM seed"
    "  UNION ALL"
    "  SELECT r.n, r.tenant_id, m.survivor, r.depth + 1, true FROM identity_merges m JOIN r"
    "    ON m.tenant_id = r.tenant_id AND m.absorbed = r.customer_id AND m.active"
    "   WHERE r.depth < 8)"
    " SELECT DISTINCT ON (n) n, customer_id, found FROM r ORDER BY n, depth DESC";

size_t tl_identity_pg_array(const tl_str_t *v, size_t n, char *out, size_t cap) {
    size_t len = 0;
#define PUT(c)                                 \
    do {                                       \
        if (out && len + 1 < cap) out[len] = (c); \
        len++;                                 \
    } while (0)
    PUT('{');
    for (size_t i = 0; i < n; i++) {
        if (i) PUT(',');
        PUT('"');
        /* Up to a NUL byte: PostgreSQL text cannot hold one. */
        for (size_t k = 0; k < v[i].len && v[i].ptr[k]; k++) {
            char c = v[i].ptr[k];
            if (c == '"' || c == '\\') PUT('\\');
            PUT(c);
        }
        PUT('"');
    }
    PUT('}');
#undef PUT
    if (out && cap) out[len < cap ? len : cap - 1] = 0;
    return len;
}

/* One connection per thread-pool thread, made on first use; after a
 * failed connect the thread waits a second before trying again, so a dead
 * database costs ingest one refused connect per second per thread, not one
 * per batch. */
static _Thread_local PGconn *tls_pg;
static _Thread_local int64_t tls_retry_at;
static _Thread_local int tls_prepared;     /* batch_sql prepared on tls_pg */

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static PGconn *pool_pg(const char *dsn) {
    int err;
    if (tls_pg && PQstatus(tls_pg) == CONNECTION_OK) return tls_pg;
    PQfinish(tls_pg);
    tls_pg = NULL;
    tls_prepared = 0;
    if (mono_ms() < tls_retry_at) return NULL;
    tls_pg = tl_pg_connect(dsn, &err);
    if (!tls_pg) tls_retry_at = mono_ms() + 1000;
    return tls_pg;
}

static void drop_broken(PGconn **pg) {
    if (PQstatus(*pg) != CONNECTION_OK) {
        PQfinish(tls_pg);
        tls_pg = *pg = NULL;
        tls_prepared = 0;
    }
}

/* Asks for the nlook lookups at look[] in one statement and fills in what
 * it answered.  1 when the statement ran, 0 when it failed (*data_error
 * set when PostgreSQL refused a value rather than the statement: invalid
 * UTF-8 in one identity must not degrade the rest of the batch). */
static int ask_batch(PGconn *pg, tl_identity_lookup_t **look, int nlook, int *data_error) {
    tl_str_t *v = malloc((size_t)nlook * 4 * sizeof *v);
    char *arr[4] = {0};
    int ok = 0;
    *data_error = 0;
    if (!v) return 0;
    for (int i = 0; i < nlook; i++) {
        v[i] = look[i]->tenant;
        v[nlook + i] = (tl_str_t){look[i]->kind, strlen(look[i]->kind)};
        v[2 * nlook + i] = look[i]->id;
        v[3 * nlook + i] = (tl_str_t){look[i]->customer_id, TL_UUID_STRLEN};
    }
    for (int a = 0; a < 4; a++) {
        size_t need = tl_identity_pg_array(v + (size_t)a * nlook, (size_t)nlook, NULL, 0) + 1;
        if (!(arr[a] = malloc(need))) goto out;
        tl_identity_pg_array(v + (size_t)a * nlook, (size_t)nlook, arr[a], need);
    }
    const char *vals[4] = {arr[0], arr[1], arr[2], arr[3]};
    /* Prepared once per connection: parsing and planning the recursive
     * statement cost as much as running it on a small batch. */
    if (!tls_prepared) {
        PGresult *prep = PQprepare(pg, "tl_identity_resolve", batch_sql, 4, NULL);
        tls_prepared = PQresultStatus(prep) == PGRES_COMMAND_OK;
        PQclear(prep);
    }
    PGresult *res = tls_prepared
                        ? PQexecPrepared(pg, "tl_identity_resolve", 4, vals, NULL, NULL, 0)
                        : PQexecParams(pg, batch_sql, 4, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        ok = 1;
        for (int r = 0; r < PQntuples(res); r++) {
            long k = strtol(PQgetvalue(res, r, 0), NULL, 10) - 1;
            const char *cust = PQgetvalue(res, r, 1);
            if (k < 0 || k >= nlook || strlen(cust) != TL_UUID_STRLEN) continue;
            memcpy(look[k]->customer_id, cust, TL_UUID_STRLEN + 1);
            look[k]->found = PQgetvalue(res, r, 2)[0] == 't';
        }
    } else {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        *data_error = state && strncmp(state, "22", 2) == 0;
        tl_debug("identity", "resolve batch of %d: %s", nlook, PQerrorMessage(pg));
    }
    PQclear(res);
out:
    for (int a = 0; a < 4; a++) free(arr[a]);
    free(v);
    return ok;
}

/* Asks for one lookup alone (the batch's statement with one element), so
 * a value PostgreSQL refuses degrades only its own request.  1 when
 * answered. */
static int ask_one(PGconn *pg, tl_identity_lookup_t *l) {
    int data_error;
    return ask_batch(pg, &l, 1, &data_error);
}

static _Atomic int64_t degraded_logged_at;

/* Thread pool: asks PostgreSQL, in one statement, for every lookup of the
 * batch that the cache did not know. */
static void batch_work(uv_work_t *w) {
    batch_t *b = w->data;
    tl_identity_lookup_t **look = malloc((size_t)b->nlook * sizeof *look);
    resolution_t **owner = malloc((size_t)b->nlook * sizeof *owner);
    int k = 0, any_degraded = 0;
    for (resolution_t *r = b->first; r; r = r->next)
        for (int i = 0; i < r->n; i++) {
            if (!r->ask[i]) continue;
            tl_identity_lookup_t *l = &r->l[i];
            tl_identity_default_id(l->tenant, l->kind, l->id, l->customer_id);
            l->found = 0;
            if (look && owner) {
                look[k] = l;
                owner[k++] = r;
            }
        }
    PGconn *pg = look && owner ? pool_pg(b->idx->dsn) : NULL;
    int data_error = 0;
    if (pg && !ask_batch(pg, look, k, &data_error)) {
        drop_broken(&pg);
        if (!data_error) pg = NULL;
        /* A refused value: each lookup alone, so only its request
         * degrades. */
        for (int i = 0; pg && i < k; i++) {
            if (ask_one(pg, look[i])) continue;
            owner[i]->degraded = 1;
            drop_broken(&pg);
        }
        if (!pg)
            for (int i = 0; i < k; i++)
                if (!look[i]->found) owner[i]->degraded = 1;
    } else if (!pg) {
        for (resolution_t *r = b->first; r; r = r->next) r->degraded = 1;
    }
    for (resolution_t *r = b->first; r; r = r->next) any_degraded |= r->degraded;
    free(look);
    free(owner);
    if (any_degraded) {
        int64_t now = mono_ms(), last = atomic_load(&degraded_logged_at);
        if ((last == 0 || now - last >= 10000) &&
            atomic_compare_exchange_strong(&degraded_logged_at, &last, now))
            tl_warn("identity", "PostgreSQL unreachable: resolving identities to their "
                                "deterministic ids (linked customers are not followed meanwhile)");
    }
}

static int64_t wall_ms(const tl_identity_t *idx) { return (int64_t)uv_now(idx->loop); }

static void batch_done(uv_work_t *w, int status);

/* Loop thread: sends the head of the queue, up to
 * TL_IDENTITY_BATCH_LOOKUPS lookups (a resolution is never split), as one
 * batch.  Errors: TL_ENOMEM (the queue is left as it was). */
static int submit(tl_identity_t *idx) {
    batch_t *b = calloc(1, sizeof *b);
    if (!b) return TL_ENOMEM;
    b->idx = idx;
    b->work.data = b;
    resolution_t *last = NULL;
    for (resolution_t *r = idx->queue; r; r = r->next) {
        int asked = 0;
        for (int i = 0; i < r->n; i++) asked += r->ask[i];
        if (last && b->nlook + asked > TL_IDENTITY_BATCH_LOOKUPS) break;
        b->nlook += asked;
        last = r;
    }
    resolution_t *rest = last->next;
    b->first = idx->queue;
    last->next = NULL;
    if (uv_queue_work(idx->loop, &b->work, batch_work, batch_done) != 0) {
        last->next = rest;
        free(b);
        return TL_ENOMEM;
    }
    idx->queue = rest;
    if (!rest) idx->queue_tail = NULL;
    idx->queued_lookups -= b->nlook;
    idx->batches++;
    idx->batches_total++;
    return TL_OK;
}

/* Loop thread: caches what the database said and answers one
 * resolution. */
static void answer(tl_identity_t *idx, resolution_t *r) {
    idx->in_flight--;
    for (int i = 0; i < r->n; i++) {
        tl_identity_lookup_t *l = &r->l[i];
        if (!r->ask[i]) continue;
        if (r->degraded && !l->found) {
            tl_metric_add(TL_M_identity_degraded_total, 1);
            /* Not cached: the next request asks again, so the index is
             * followed again as soon as PostgreSQL is back. */
            if (!l->customer_id[0]) tl_identity_default_id(l->tenant, l->kind, l->id, l->customer_id);
            continue;
        }
        char key[TL_IDENTITY_KEY_MAX];
        size_t kn = tl_identity_key(l->tenant, l->kind, l->id, key, sizeof key);
        if (kn) tl_identity_cache_put(idx->cache, key, kn, l->customer_id, l->found, wall_ms(idx));
    }
    tl_identity_cb cb = r->cb;
    void *arg = r->arg;
    int degraded = r->degraded;
    free(r);
    cb(arg, degraded);
}

/* Loop thread: the next batch goes out first (its query overlaps these
 * callbacks), then every resolution of this one is answered. */
static void batch_done(uv_work_t *w, int status) {
    batch_t *b = w->data;
    tl_identity_t *idx = b->idx;
    resolution_t *r = b->first;
    idx->batches--;
    free(b);
    if (idx->queue && submit(idx) != TL_OK) {
        /* Cannot happen short of memory: answer the queue with the
         * deterministic ids rather than leave it waiting. */
        resolution_t *q = idx->queue;
        idx->queue = idx->queue_tail = NULL;
        idx->queued_lookups = 0;
        for (resolution_t *next; q; q = next) {
            next = q->next;
            q->degraded = 1;
            for (int i = 0; i < q->n; i++)
                if (q->ask[i]) q->l[i].found = 0;
            answer(idx, q);
        }
    }
    for (resolution_t *next; r; r = next) {
        next = r->next;
        if (status == UV_ECANCELED) r->degraded = 1;
        answer(idx, r);
    }
}

int tl_identity_new(uv_loop_t *loop, const tl_config_t *cfg, tl_identity_t **out) {
    tl_identity_t *idx = calloc(1, sizeof *idx);
    if (!idx) return TL_ENOMEM;
    idx->loop = loop;
    idx->cache = tl_identity_cache_new(cfg->identity_cache > 0 ? (size_t)cfg->identity_cache : 1,
                                       cfg->identity_ttl_ms);
    /* Bound the connect: an unreachable host must degrade ingest in
     * seconds, not after the kernel's TCP timeout. */
    const char *dsn = cfg->pg_dsn ? cfg->pg_dsn : "";
    size_t n = strlen(dsn) + 32;
    idx->dsn = malloc(n);
    if (!idx->cache || !idx->dsn) {
        tl_identity_free(idx);
        return TL_ENOMEM;
    }
    if (strstr(dsn, "connect_timeout") || strstr(dsn, "://")) snprintf(idx->dsn, n, "%s", dsn);
    else snprintf(idx->dsn, n, "%s connect_timeout=2", dsn);
    *out = idx;
    return TL_OK;
}

void tl_identity_free(tl_identity_t *idx) {
    if (!idx) return;
    tl_identity_cache_free(idx->cache);
    free(idx->dsn);
    free(idx);
}

int tl_identity_in_flight(const tl_identity_t *idx) { return idx ? idx->in_flight : 0; }

void tl_identity_stats(const tl_identity_t *idx, tl_identity_stats_t *out) {
    *out = (tl_identity_stats_t){idx->batches, idx->queued_lookups, idx->batches_total};
}

int tl_identity_resolve(tl_identity_t *idx, tl_identity_lookup_t *l, int n, tl_identity_cb cb,
                        void *arg) {
    if (n < 1 || n > TL_IDENTITY_MAX_LOOKUPS) return TL_EINVAL;
    int ask[TL_IDENTITY_MAX_LOOKUPS] = {0}, misses = 0;
    int64_t now = wall_ms(idx);
    for (int i = 0; i < n; i++) {
        char key[TL_IDENTITY_KEY_MAX];
        size_t kn = tl_identity_key(l[i].tenant, l[i].kind, l[i].id, key, sizeof key);
        if (kn && tl_identity_cache_get(idx->cache, key, kn, now, l[i].customer_id, &l[i].found)) {
            tl_metric_add(TL_M_identity_cache_hits_total, 1);
            continue;
        }
        tl_metric_add(TL_M_identity_cache_misses_total, 1);
        ask[i] = 1;
        misses++;
    }
    if (!misses) {
        cb(arg, 0);
        return TL_OK;
    }
    resolution_t *r = calloc(1, sizeof *r);
    if (!r) return TL_ENOMEM;
    r->l = l;
    r->n = n;
    memcpy(r->ask, ask, sizeof ask);
    r->cb = cb;
    r->arg = arg;
    for (int i = 0; i < n; i++)
        if (ask[i]) l[i].customer_id[0] = 0;
    /* Queue it; when fewer than BATCHES_MAX batches are out, the queue
     * (then only this resolution) goes at once.  Otherwise it waits for a
     * batch to come back and leaves with every miss that arrived
     * meanwhile: batches grow with the load, and a quiet gateway pays no
     * wait. */
    if (idx->queue_tail) idx->queue_tail->next = r;
    else idx->queue = r;
    idx->queue_tail = r;
    idx->queued_lookups += misses;
    if (idx->batches < BATCHES_MAX && submit(idx) != TL_OK) {
        /* Only r was queued (a batch coming back sends the queue). */
        idx->queue = idx->queue_tail = NULL;
        idx->queued_lookups = 0;
        free(r);
        return TL_ENOMEM;
    }
    idx->in_flight++;
    return TL_OK;
}

/* ------------------------------------------------------------ writer */

struct tl_identity_writer {
    tl_kafka_t *kafka;
    const tl_config_t *cfg;
    pthread_t thread;
    atomic_int stop;
    rd_kafka_t *consumer;
    PGconn *pg;
    tl_codec_t *ch_codec, *ev_codec;
    rd_kafka_message_t **batch;
    int64_t part_next[1024];
    uint64_t conn_gen, prepared_gen;    /* connections made; the one prepared on */
    tl_identity_cache_t *written;       /* what the index holds, as far as we know */
};

#define WRITER_NAME "identity"
#define WRITTEN_ENTRIES 65536
#define WRITTEN_TTL_MS (10 * 60 * 1000)

static const char *const seen_sql =
    "INSERT INTO identities AS i (tenant_id, platform, platform_user_id, customer_id, set_by_event)"
    " VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (tenant_id, platform, platform_user_id) DO UPDATE SET"
    "  customer_id = EXCLUDED.customer_id, set_by_event = EXCLUDED.set_by_event,"
    "  evidence = NULL, evidence_value = NULL, linked_customer_id = NULL, active = true,"
    "  updated_at = now()"
    " WHERE NOT i.active OR (i.evidence IS NULL AND i.customer_id IS DISTINCT FROM EXCLUDED.customer_id)";

static const char *const link_sql =
    "INSERT INTO identities AS i (tenant_id, platform, platform_user_id, customer_id, evidence,"
    "  evidence_value, linked_customer_id, set_by_event)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (tenant_id, platform, platform_user_id) DO UPDATE SET"
    "  customer_id = EXCLUDED.customer_id, evidence = EXCLUDED.evidence,"
    "  evidence_value = EXCLUDED.evidence_value, linked_customer_id = EXCLUDED.linked_customer_id,"
    "  set_by_event = EXCLUDED.set_by_event, active = true, updated_at = now()";

static const char *const merge_sql =
    "INSERT INTO identity_merges (tenant_id, absorbed, survivor, evidence, set_by_event)"
    " VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (tenant_id, absorbed) DO UPDATE SET survivor = EXCLUDED.survivor,"
    "  evidence = EXCLUDED.evidence, set_by_event = EXCLUDED.set_by_event, active = true,"
    "  updated_at = now()";

static const char *const unlink_rows_sql =
    "UPDATE identities SET active = false, updated_at = now()"
    " WHERE tenant_id = $1 AND customer_id = $2 AND linked_customer_id = $3 AND active";

static const char *const unlink_merge_sql =
    "UPDATE identity_merges SET active = false, updated_at = now()"
    " WHERE tenant_id = $1 AND absorbed = $3 AND survivor = $2 AND active";

static const char *const offsets_sql =
    "INSERT INTO projection_offsets (consumer, topic, partition, next_offset)"
    " VALUES ($1, $2, $3::int, $4::bigint)"
    " ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset";

static char *dupstr(tl_str_t s) {
    if (!s.ptr) return NULL;
    char *p = malloc(s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

/* The writer's statements, prepared once per connection under these
 * names (prepare_all). */
enum { Q_SEEN, Q_LINK, Q_MERGE, Q_UNLINK_ROWS, Q_UNLINK_MERGE, Q_OFFSETS, NQ };
static const char *const q_names[NQ] = {
    "tl_id_seen", "tl_id_link", "tl_id_merge", "tl_id_unlink_rows", "tl_id_unlink_merge", "tl_id_offsets",
};

static int prepare_all(tl_identity_writer_t *w) {
    const char *const sql[NQ] = {seen_sql, link_sql, merge_sql, unlink_rows_sql, unlink_merge_sql,
                                 offsets_sql};
    if (w->prepared_gen == w->conn_gen) return TL_OK;
    for (int i = 0; i < NQ; i++) {
        PGresult *r = PQprepare(w->pg, q_names[i], sql[i], 0, NULL);
        int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? TL_OK : tl_pg_err(w->pg, r);
        if (rc) tl_warn("identity", "writer: prepare: %s", PQerrorMessage(w->pg));
        PQclear(r);
        if (rc) return rc;
    }
    w->prepared_gen = w->conn_gen;
    return TL_OK;
}

/* Runs prepared statement q with n parameters given as tl_str_t (ptr NULL
 * = SQL NULL). */
static int exec_strs(PGconn *pg, int q, const tl_str_t *args, int n) {
    char *vals[8];
    int rc = TL_OK;
    for (int i = 0; i < n; i++) {
        vals[i] = args[i].ptr ? dupstr(args[i]) : NULL;
        if (args[i].ptr && !vals[i]) rc = TL_ENOMEM;
    }
    if (rc == TL_OK) {
        PGresult *r = PQexecPrepared(pg, q_names[q], n, (const char *const *)vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = tl_pg_err(pg, r);
            tl_warn("identity", "writer: %s", PQerrorMessage(pg));
        } else {
            tl_metric_add(TL_M_identity_rows_total, (uint64_t)atoll(PQcmdTuples(r)));
        }
        PQclear(r);
    }
    for (int i = 0; i < n; i++) free(vals[i]);
    return rc;
}

static tl_str_t cstr(const char *s) { return (tl_str_t){s, strlen(s)}; }

static const char *evidence_name(tl_evidence_t e) {
    static const char *const names[] = {"UNIONID", "VERIFIED_PHONE", "LOGIN", "AGENT", "OTHER"};
    return (unsigned)e <= TL_EVIDENCE_OTHER ? names[e] : "OTHER";
}

static tl_identity_op_t *op_add(tl_identity_op_t *ops, size_t *n, tl_identity_op_kind_t kind,
                                const tl_str_t *args, int nargs) {
    tl_identity_op_t *o = &ops[(*n)++];
    o->kind = kind;
    o->nargs = nargs;
    for (int i = 0; i < nargs; i++) o->args[i] = args[i];
    return o;
}

size_t tl_identity_ops(const tl_change_t *ch, const tl_event_t *ev, tl_identity_op_t ops[TL_IDENTITY_MAX_OPS]) {
    size_t n = 0;
    if (ch->duplicate) return 0;
    int link = ev->kind == TL_EV_IDENTITY_LINKED, unlink = ev->kind == TL_EV_IDENTITY_UNLINKED;
    /* The fold applied the link without effect: neither the link nor the
     * identity that asked for it is recorded. */
    if ((link || unlink) && ch->ignored.ptr) return 0;
    /* Engine notices (the absorbed side of a link) and agent actions name
     * no platform identity. */
    if (ev->platform == TL_PLATFORM_SYSTEM || ev->platform == TL_PLATFORM_AGENT) return 0;
    if (ev->platform_user_id.ptr && ev->platform_user_id.len) {
        tl_str_t a[] = {ev->tenant_id, cstr(tl_platform_slug(ev->platform)), ev->platform_user_id,
                        ev->customer_id, ev->event_id};
        op_add(ops, &n, TL_IDENTITY_OP_SEEN, a, 5);
    }
    if (link) {
        const tl_identity_linked_t *l = &ev->u.link;
        tl_str_t other = l->linked_customer_id;
        if (!other.ptr || (other.len == ev->customer_id.len &&
                           memcmp(other.ptr, ev->customer_id.ptr, other.len) == 0))
            return n;   /* a self-link changes nothing (the fold ignores it too) */
        tl_str_t evn = cstr(evidence_name(l->evidence));
        if (l->platform_user_id.ptr && l->platform_user_id.len) {
            tl_str_t a[] = {ev->tenant_id, cstr(tl_platform_slug(l->platform)), l->platform_user_id,
                            ev->customer_id, evn, l->evidence_value, other, ev->event_id};
            op_add(ops, &n, TL_IDENTITY_OP_LINK, a, 8);
        }
        const char *kind = tl_identity_evidence_kind(l->evidence);
        tl_str_t value = l->evidence_value;
        if (l->evidence == TL_EVIDENCE_VERIFIED_PHONE && (!value.ptr || !value.len) &&
            l->platform == TL_PLATFORM_PHONE)
            value = l->platform_user_id;
        if (kind && value.ptr && value.len) {
            tl_str_t b[] = {ev->tenant_id, cstr(kind), value, ev->customer_id, evn,
                            l->evidence_value, other, ev->event_id};
            op_add(ops, &n, TL_IDENTITY_OP_LINK, b, 8);
        }
        tl_str_t m[] = {ev->tenant_id, other, ev->customer_id, evn, ev->event_id};
        op_add(ops, &n, TL_IDENTITY_OP_MERGE, m, 5);
        return n;
    }
    if (unlink && ev->u.unlink.linked_customer_id.ptr) {
        tl_str_t a[] = {ev->tenant_id, ev->customer_id, ev->u.unlink.linked_customer_id};
        op_add(ops, &n, TL_IDENTITY_OP_UNLINK_ROWS, a, 3);
        op_add(ops, &n, TL_IDENTITY_OP_UNLINK_MERGE, a, 3);
    }
    return n;
}

/* Forgets everything the writer remembered writing (the next event of
 * each identity is written again).  On allocation failure the writer
 * simply remembers nothing. */
static void written_reset(tl_identity_writer_t *w) {
    tl_identity_cache_free(w->written);
    w->written = tl_identity_cache_new(WRITTEN_ENTRIES, WRITTEN_TTL_MS);
}

/* The written-cache key of a SEEN or LINK op's identity (args 0..2:
 * tenant, kind, id); 0 when it does not fit. */
static size_t op_key(const tl_identity_op_t *o, char *key) {
    char kind[64];
    snprintf(kind, sizeof kind, "%.*s", (int)o->args[1].len, o->args[1].ptr ? o->args[1].ptr : "");
    return o->args[2].ptr ? tl_identity_key(o->args[0], kind, o->args[2], key, TL_IDENTITY_KEY_MAX) : 0;
}

/* What one Change means for the index.  A SEEN whose row the writer
 * wrote itself, mapping to this customer or carrying a link's evidence,
 * would change nothing (seen_sql's WHERE) and is skipped.  After a SEEN
 * the row maps to its customer or keeps a link that seen_sql may not
 * replace -- either way the same SEEN again is a no-op, which is all the
 * entry (found = 0) claims; after a LINK the row carries evidence
 * (found = 1), so no SEEN changes it while it is active. */
static int apply_event(tl_identity_writer_t *w, const tl_change_t *ch, const tl_event_t *ev) {
    tl_identity_op_t ops[TL_IDENTITY_MAX_OPS];
    size_t n = tl_identity_ops(ch, ev, ops);
    int64_t now = mono_ms();
    for (size_t i = 0; i < n; i++) {
        const tl_identity_op_t *o = &ops[i];
        char key[TL_IDENTITY_KEY_MAX], have[TL_UUID_STRLEN + 1];
        size_t klen = 0;
        int linked = 0, q = o->kind == TL_IDENTITY_OP_SEEN          ? Q_SEEN
                            : o->kind == TL_IDENTITY_OP_LINK        ? Q_LINK
                            : o->kind == TL_IDENTITY_OP_MERGE       ? Q_MERGE
                            : o->kind == TL_IDENTITY_OP_UNLINK_ROWS ? Q_UNLINK_ROWS
                                                                    : Q_UNLINK_MERGE;
        if ((q == Q_SEEN || q == Q_LINK) && w->written) klen = op_key(o, key);
        if (q == Q_SEEN && klen && tl_identity_cache_get(w->written, key, klen, now, have, &linked) &&
            (linked || (strlen(have) == o->args[3].len && memcmp(have, o->args[3].ptr, o->args[3].len) == 0)))
            continue;
        int rc = exec_strs(w->pg, q, o->args, o->nargs);
        if (rc) return rc;
        if (klen && o->args[3].len <= TL_UUID_STRLEN) {
            char cust[TL_UUID_STRLEN + 1];
            snprintf(cust, sizeof cust, "%.*s", (int)o->args[3].len, o->args[3].ptr);
            tl_identity_cache_put(w->written, key, klen, cust, q == Q_LINK, now);
        }
        if (q == Q_UNLINK_ROWS) written_reset(w);   /* which rows it touched is PostgreSQL's to know */
    }
    return TL_OK;
}

static int apply_change(tl_identity_writer_t *w, const rd_kafka_message_t *m) {
    tl_change_t ch;
    tl_event_t ev;
    if (tl_change_decode(w->ch_codec, m->payload, m->len, &ch)) {
        tl_error("identity", "unreadable change at [%d]@%lld: %s", (int)m->partition,
                 (long long)m->offset, tl_codec_errmsg(w->ch_codec));
        return TL_OK;
    }
    if (ch.duplicate) return TL_OK;
    if (tl_codec_decode_event(w->ev_codec, ch.event.ptr, ch.event.len, &ev)) {
        tl_error("identity", "unreadable event in change [%d]@%lld", (int)m->partition,
                 (long long)m->offset);
        return TL_OK;
    }
    return apply_event(w, &ch, &ev);
}

static int write_batch(tl_identity_writer_t *w, int n) {
    int rc;
    for (int i = 0; i < 1024; i++) w->part_next[i] = -1;
    if ((rc = prepare_all(w)) || (rc = tl_pg_exec(w->pg, "BEGIN"))) return rc;
    for (int i = 0; i < n && !rc; i++) {
        rd_kafka_message_t *m = w->batch[i];
        if ((size_t)m->partition < 1024) w->part_next[m->partition] = m->offset + 1;
        rc = apply_change(w, m);
    }
    const char *topic = tl_kafka_topic(w->kafka, TL_TOPIC_CHANGES);
    for (int i = 0; i < 1024 && !rc; i++) {
        if (w->part_next[i] < 0) continue;
        char part[16], next[24];
        snprintf(part, sizeof part, "%d", i);
        snprintf(next, sizeof next, "%lld", (long long)w->part_next[i]);
        tl_str_t a[] = {cstr(WRITER_NAME), cstr(topic), cstr(part), cstr(next)};
        rc = exec_strs(w->pg, Q_OFFSETS, a, 4);
    }
    if (!rc) rc = tl_pg_exec(w->pg, "COMMIT");
    if (rc && w->pg && PQstatus(w->pg) == CONNECTION_OK) tl_pg_exec(w->pg, "ROLLBACK");
    if (rc) written_reset(w);   /* it remembered rows that rolled back */
    return rc;
}

/* (Re)connects, waiting with backoff; 0, or -1 when stopping. */
static int ensure_pg(tl_identity_writer_t *w) {
    int backoff = 100, err;
    while (!w->pg || PQstatus(w->pg) != CONNECTION_OK) {
        if (atomic_load(&w->stop)) return -1;
        PQfinish(w->pg);
        w->pg = tl_pg_connect(w->cfg->pg_dsn, &err);
        if (w->pg) {
            /* Rows and offsets share each transaction, so a commit that a
             * PostgreSQL crash forgets is written again from the log: no
             * need to wait for its WAL flush (as engine/projection.c). */
            w->conn_gen++;
            if (tl_pg_exec(w->pg, "SET synchronous_commit = off"))
                tl_warn("identity", "writer: synchronous_commit stays on");
            break;
        }
        usleep((useconds_t)backoff * 1000);
        if (backoff < 5000) backoff *= 2;
    }
    return 0;
}

static int load_offsets(tl_identity_writer_t *w, rd_kafka_topic_partition_list_t *parts) {
    if (ensure_pg(w)) return -1;
    for (int i = 0; i < parts->cnt; i++) {
        char part[16];
        snprintf(part, sizeof part, "%d", (int)parts->elems[i].partition);
        const char *vals[] = {WRITER_NAME, parts->elems[i].topic, part};
        PGresult *r = PQexecParams(w->pg,
                                   "SELECT next_offset FROM projection_offsets"
                                   " WHERE consumer = $1 AND topic = $2 AND partition = $3::int",
                                   3, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            tl_warn("identity", "reading offsets: %s", PQerrorMessage(w->pg));
            PQclear(r);
            return TL_EPG;
        }
        parts->elems[i].offset = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                                              : RD_KAFKA_OFFSET_BEGINNING;
        PQclear(r);
    }
    return TL_OK;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    tl_identity_writer_t *w = opaque;
    written_reset(w);   /* another instance may have written what we had */
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        while (load_offsets(w, parts) != TL_OK) {
            if (atomic_load(&w->stop)) break;
            PQfinish(w->pg);
            w->pg = NULL;
            usleep(200000);
        }
        rd_kafka_assign(rk, parts);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* After a failed batch: back to what PostgreSQL says was applied. */
static void rewind_to_stored(tl_identity_writer_t *w) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(w->consumer, &parts) || !parts) return;
    while (load_offsets(w, parts) != TL_OK && !atomic_load(&w->stop)) {
        PQfinish(w->pg);
        w->pg = NULL;
        usleep(200000);
    }
    rd_kafka_error_t *e = rd_kafka_seek_partitions(w->consumer, parts, 10000);
    if (e) rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(parts);
}

static void *writer_main(void *arg) {
    tl_identity_writer_t *w = arg;
    pthread_setname_np(pthread_self(), "tl-identity");  /* what top -H and perf show */
    int cap = (int)w->cfg->batch, backoff = 100;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, tl_kafka_topic(w->kafka, TL_TOPIC_CHANGES),
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(w->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);

    while (!atomic_load(&w->stop)) {
        int n = 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
        int64_t deadline = tl_kafka_now_ms() + w->cfg->batch_ms;
        while (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    tl_warn("identity", "consume: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
            } else {
                w->batch[n++] = m;
            }
            if (n == cap) break;
            m = rd_kafka_consumer_poll(w->consumer, tl_kafka_left_ms(deadline));
        }
        if (!n) continue;
        if (ensure_pg(w)) {
            for (int i = 0; i < n; i++) rd_kafka_message_destroy(w->batch[i]);
            break;
        }
        int rc = write_batch(w, n);
        for (int i = 0; i < n; i++) rd_kafka_message_destroy(w->batch[i]);
        if (rc) {
            tl_warn("identity", "batch rolled back (%s); retrying from stored offsets", tl_strerror(rc));
            if (rc == TL_EPG_DOWN) {
                PQfinish(w->pg);
                w->pg = NULL;
            }
            usleep((useconds_t)backoff * 1000);
            if (backoff < 5000) backoff *= 2;
            rewind_to_stored(w);
        } else {
            backoff = 100;
        }
    }
    rd_kafka_consumer_close(w->consumer);
    return NULL;
}

int tl_identity_writer_start(tl_kafka_t *kafka, const tl_config_t *cfg, tl_identity_writer_t **out) {
    char group[128];
    int rc = TL_ENOMEM;
    tl_identity_writer_t *w = calloc(1, sizeof *w);
    if (!w) return TL_ENOMEM;
    w->kafka = kafka;
    w->cfg = cfg;
    atomic_init(&w->stop, 0);
    if (!(w->batch = calloc((size_t)(cfg->batch > 0 ? cfg->batch : 1), sizeof *w->batch))) goto fail;
    written_reset(w);
    if (!(w->ch_codec = tl_change_codec_new(&rc)) || !(w->ev_codec = tl_codec_new_event(&rc)))
        goto fail;
    rc = TL_EKAFKA;
    tl_kafka_group(kafka, WRITER_NAME, group, sizeof group);
    if (!(w->consumer = tl_kafka_consumer_new(kafka, "identity", group, cfg->instance, on_rebalance, w)))
        goto fail;
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) goto fail_consumer;
    *out = w;
    return TL_OK;

fail_consumer:
    rd_kafka_destroy(w->consumer);
fail:
    tl_codec_free(w->ch_codec);
    tl_codec_free(w->ev_codec);
    tl_identity_cache_free(w->written);
    free(w->batch);
    free(w);
    return rc;
}

void tl_identity_writer_stop(tl_identity_writer_t *w) {
    if (!w) return;
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    rd_kafka_destroy(w->consumer);
    PQfinish(w->pg);
    tl_codec_free(w->ch_codec);
    tl_codec_free(w->ev_codec);
    tl_identity_cache_free(w->written);
    free(w->batch);
    free(w);
}
