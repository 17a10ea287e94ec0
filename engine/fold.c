/*
 * fold.c -- the fold (see fold.h for the rules, docs/fold.md for the story).
 *
 * Shape.  States live in an open-addressing table keyed by XXH64 of
 * (tenant, customer); a slot holds the hash beside the pointer, so a probe
 * reads no state but the one it finds, and the table doubles at 50% load.
 * A state is split by temperature: what every event touches (the ids,
 * versions, the conversation header, the ring of recent idempotency key
 * hashes) sits in state_t, in that order, ids inline when they fit;
 * fields, conflicts and links sit in a profile_t allocated the first time
 * one of them is needed.  A message then costs one miss on the slot and a
 * few consecutive lines of one state, and allocates nothing unless it
 * creates the customer (or opens a conversation: tl_uuid_v5 makes an
 * OpenSSL digest context).  Most of a fold's time is those misses and, for
 * the one message in ten or so that opens a conversation, the SHA-1 of its
 * id (bench_fold).
 *
 * Determinism.  Nothing is ordered by address or by hash: fields are kept
 * sorted by name (byte order), tags too; values, conflicts, candidates and
 * links are kept in the order the events made them; platforms are a bit
 * set written in symbol order.  The serialised form writes exactly these
 * orders, so equal states encode to equal bytes.
 *
 * Dedup.  Idempotency keys are remembered as XXH64 hashes (seed 0) in a
 * ring of TL_FOLD_RECENT_KEYS.  The check is 64 integer compares and no
 * allocation; the price is that a new key whose hash equals one of the 64
 * remembered is taken for a duplicate: probability 64 / 2^64 (3.5e-18) per
 * event, so over 10^12 events a 3.5e-6 chance of a single false one.
 *
 * Failure.  An event either applies completely or not at all: every
 * handler first allocates everything it needs (the "prepare" half; it may
 * fail with TL_ENOMEM and then frees what it took) and only then changes
 * the state (the "commit" half, which cannot fail).  Results point into the
 * state (field names and values, which outlive the call) or into the fold's
 * arena (emitted events), reset at the next apply.
 *
 * History.  A field keeps its last TL_FOLD_HISTORY values in assertion
 * order and the index of the current one.  When full, the oldest value that
 * is not the current one makes room.  Unlink never deletes: it flags the
 * values that came through the link as withdrawn and moves the current
 * index if it pointed at one of them.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>

#include "error.h"
#include "fold.h"
#include "uuid.h"

#define MAX_CHANGES (TL_FOLD_MAX_FIELDS + TL_FOLD_MAX_CONFLICTS + 4)
#define MAX_EMIT (TL_FOLD_MAX_FIELDS + 1)
#define ARENA_BLOCK 16384

static const char *const default_key_fields[] = {"order_no", "phone", "email"};

/* ---- XXH64 --------------------------------------------------------------- */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t in) {
    acc += in * P2;
    return rotl64(acc, 31) * P1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t v) {
    acc ^= xxh_round(0, v);
    return acc * P1 + P4;
}

/* XXH64 as its specification defines it (xxhash.com, "XXH64 algorithm"). */
static uint64_t xxh64(const void *data, size_t len, uint64_t seed) {
    const uint8_t *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        const uint8_t *limit = end - 32;
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        do {
            v1 = xxh_round(v1, rd64(p));
            v2 = xxh_round(v2, rd64(p + 8));
            v3 = xxh_round(v3, rd64(p + 16));
            v4 = xxh_round(v4, rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)len;
    for (; p + 8 <= end; p += 8) h = rotl64(h ^ xxh_round(0, rd64(p)), 27) * P1 + P4;
    if (p + 4 <= end) {
        h = rotl64(h ^ (uint64_t)rd32(p) * P1, 23) * P2 + P3;
        p += 4;
    }
    for (; p < end; p++) h = rotl64(h ^ (uint64_t)*p * P5, 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

int64_t tl_fold_key_hash(tl_str_t key) {
    return (int64_t)xxh64(key.ptr ? key.ptr : "", key.len, 0);
}

static uint64_t state_hash(tl_str_t tenant, tl_str_t customer) {
    return xxh64(customer.ptr, customer.len, xxh64(tenant.ptr, tenant.len, 0));
}

/* ---- owned strings ------------------------------------------------------- */

/* An owned, NUL-terminated string; p == NULL is "absent". */
typedef struct sstr {
    char *p;
    uint32_t n;
} sstr_t;

/* Sets *s to a copy of v (absent if v.ptr is NULL).  TL_ENOMEM leaves *s
 * absent.  *s must not own anything. */
static int sstr_make(sstr_t *s, tl_str_t v) {
    s->p = NULL;
    s->n = 0;
    if (!v.ptr) return TL_OK;
    if (!(s->p = malloc(v.len + 1))) return TL_ENOMEM;
    memcpy(s->p, v.ptr, v.len);
    s->p[v.len] = 0;
    s->n = (uint32_t)v.len;
    return TL_OK;
}

static void sstr_free(sstr_t *s) {
    free(s->p);
    s->p = NULL;
    s->n = 0;
}

static inline tl_str_t sstr_view(sstr_t s) { return (tl_str_t){s.p, s.n}; }

static inline int str_eq(tl_str_t a, tl_str_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline int sstr_eq(sstr_t s, tl_str_t v) { return s.p && v.ptr && str_eq(sstr_view(s), v); }

/* Byte order, shorter first on a common prefix. */
static int str_cmp(tl_str_t a, tl_str_t b) {
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

static inline tl_str_t or_empty(tl_str_t s) { return s.ptr ? s : (tl_str_t){"", 0}; }

/* ---- the state ----------------------------------------------------------- */

typedef struct entry {
    sstr_t value, event_id, via;
    int64_t version, ts;
    uint8_t platform, withdrawn;
} entry_t;

typedef struct field {
    sstr_t name;
    int key;                    /* from the fold's options, not serialised */
    int cur;                    /* index in v of the current value, -1: none */
    int n;
    entry_t v[TL_FOLD_HISTORY];
} field_t;

typedef struct conflict {
    char id[TL_UUID_STRLEN + 1];
    field_t *field;
    int64_t opened_version, opened_at;
    int n;
    entry_t c[TL_FOLD_MAX_CANDIDATES];
} conflict_t;

enum { ROLE_ABSORBED, ROLE_MERGED_INTO };

typedef struct link {
    sstr_t customer, link_event, unlink_event, platform_user_id;
    int64_t linked_at, unlinked_at;
    uint8_t role, active, platform, evidence;
} link_t;

typedef struct profile {
    field_t **fields;           /* sorted by name */
    int nfields, capfields;
    int nconflicts;             /* in the order opened */
    conflict_t *conflicts[TL_FOLD_MAX_CONFLICTS];
    int nlinks;                 /* in the order made */
    link_t links[TL_FOLD_MAX_LINKS];
} profile_t;

typedef struct conv {
    char id[TL_UUID_STRLEN + 1];
    uint8_t present, closed;
    uint32_t platforms;
    int64_t version, opened_at, last_activity;
    sstr_t assignee, team;
    sstr_t *tags;               /* TL_FOLD_MAX_TAGS slots once a tag was set */
    int ntags;                  /* sorted, distinct */
} conv_t;

/* Laid out in the order an event reads it: the ids find compares, the
 * conversation, the key ring. */
typedef struct state {
    char *tenant, *customer;    /* NUL-terminated, in idbuf when they fit */
    uint32_t tlen, clen;
    int nkeys, next;            /* ring: oldest at next once full */
    int64_t version, last_event_ts;
    profile_t *prof;            /* NULL until a field, conflict or link */
    uint64_t hash;
    char idbuf[64];
    conv_t conv;
    uint64_t keys[TL_FOLD_RECENT_KEYS];
} state_t;

/* A table slot: the hash is kept next to the pointer so that probing
 * touches no state but the one it finds. */
typedef struct slot {
    uint64_t hash;
    state_t *st;
} slot_t;

/* Scratch memory for emitted events: blocks that never move, rewound at
 * every apply and kept for the next. */
typedef struct block {
    struct block *next;
    size_t cap, used;
    char data[];
} block_t;

struct tl_fold {
    tl_fold_opts_t opts;
    sstr_t keyf[TL_FOLD_MAX_KEY_FIELDS];
    size_t nkeyf;
    slot_t *slots;
    size_t cap, count;
    block_t *blocks, *block;
    size_t nchanges, nemit;
    tl_fold_change_t changes[MAX_CHANGES];
    tl_event_t emit[MAX_EMIT];
};

/* ---- arena --------------------------------------------------------------- */

static void arena_rewind(tl_fold_t *f) {
    for (block_t *b = f->blocks; b; b = b->next) b->used = 0;
    f->block = f->blocks;
}

static char *arena_alloc(tl_fold_t *f, size_t n) {
    block_t *b = f->block;
    while (b && b->cap - b->used < n) b = b->next;
    if (!b) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        if (!(b = malloc(sizeof *b + cap))) return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = NULL;
        block_t **tail = &f->blocks;
        while (*tail) tail = &(*tail)->next;
        *tail = b;
    }
    f->block = b;
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

/* *out = the concatenation of parts, NUL-terminated, in the arena. */
static int arena_join(tl_fold_t *f, const tl_str_t *parts, size_t n, tl_str_t *out) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += parts[i].len;
    char *p = arena_alloc(f, len + 1), *q = p;
    if (!p) return TL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].len) memcpy(q, parts[i].ptr, parts[i].len);
        q += parts[i].len;
    }
    *q = 0;
    *out = (tl_str_t){p, len};
    return TL_OK;
}

static int arena_str(tl_fold_t *f, tl_str_t s, tl_str_t *out) {
    if (!s.ptr) {
        *out = TL_STR_NULL;
        return TL_OK;
    }
    return arena_join(f, &s, 1, out);
}

/* ---- entries and fields -------------------------------------------------- */

static void entry_free(entry_t *e) {
    sstr_free(&e->value);
    sstr_free(&e->event_id);
    sstr_free(&e->via);
}

static int entry_make(entry_t *e, tl_str_t value, tl_str_t event_id, tl_str_t via, int64_t version,
                      int64_t ts, int platform) {
    memset(e, 0, sizeof *e);
    if (sstr_make(&e->value, or_empty(value)) || sstr_make(&e->event_id, or_empty(event_id)) ||
        sstr_make(&e->via, via)) {
        entry_free(e);
        return TL_ENOMEM;
    }
    e->version = version;
    e->ts = ts;
    e->platform = (uint8_t)platform;
    return TL_OK;
}

static int entry_copy(entry_t *dst, const entry_t *src) {
    int rc = entry_make(dst, sstr_view(src->value), sstr_view(src->event_id), sstr_view(src->via),
                        src->version, src->ts, src->platform);
    dst->withdrawn = src->withdrawn;
    return rc;
}

static void field_free(field_t *fl) {
    if (!fl) return;
    for (int i = 0; i < fl->n; i++) entry_free(&fl->v[i]);
    sstr_free(&fl->name);
    free(fl);
}

/* Appends e (taken over) to fl's history, making room by dropping the
 * oldest value that is not the current one; makes it current if asked.
 * Returns its index.  Cannot fail. */
static int field_push(field_t *fl, entry_t *e, int make_current) {
    if (fl->n == TL_FOLD_HISTORY) {
        int drop = fl->cur == 0 ? 1 : 0;
        entry_free(&fl->v[drop]);
        memmove(&fl->v[drop], &fl->v[drop + 1], (size_t)(fl->n - drop - 1) * sizeof fl->v[0]);
        fl->n--;
        if (fl->cur > drop) fl->cur--;
    }
    fl->v[fl->n] = *e;
    memset(e, 0, sizeof *e);
    if (make_current) fl->cur = fl->n;
    return fl->n++;
}

static void conflict_free(conflict_t *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) entry_free(&c->c[i]);
    free(c);
}

static void link_free(link_t *l) {
    sstr_free(&l->customer);
    sstr_free(&l->link_event);
    sstr_free(&l->unlink_event);
    sstr_free(&l->platform_user_id);
}

static void profile_free(profile_t *p) {
    if (!p) return;
    for (int i = 0; i < p->nfields; i++) field_free(p->fields[i]);
    free(p->fields);
    for (int i = 0; i < p->nconflicts; i++) conflict_free(p->conflicts[i]);
    for (int i = 0; i < p->nlinks; i++) link_free(&p->links[i]);
    free(p);
}

/* The field named name, or NULL and *pos = where it would go. */
static field_t *field_find(const profile_t *p, tl_str_t name, int *pos) {
    int lo = 0, hi = p ? p->nfields : 0;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int c = str_cmp(sstr_view(p->fields[mid]->name), name);
        if (c == 0) return p->fields[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (pos) *pos = lo;
    return NULL;
}

static conflict_t *conflict_on(const profile_t *p, const field_t *fl) {
    for (int i = 0; i < p->nconflicts; i++)
        if (p->conflicts[i]->field == fl) return p->conflicts[i];
    return NULL;
}

static void conflict_remove(profile_t *p, conflict_t *c) {
    for (int i = 0; i < p->nconflicts; i++)
        if (p->conflicts[i] == c) {
            memmove(&p->conflicts[i], &p->conflicts[i + 1],
                    (size_t)(p->nconflicts - i - 1) * sizeof p->conflicts[0]);
            p->nconflicts--;
            break;
        }
    conflict_free(c);
}

static link_t *link_find(const state_t *st, tl_str_t customer, int role) {
    profile_t *p = st->prof;
    for (int i = 0; p && i < p->nlinks; i++) {
        link_t *l = &p->links[i];
        if (l->active && l->role == role && sstr_eq(l->customer, customer)) return l;
    }
    return NULL;
}

static link_t *merged_link(const state_t *st) {
    profile_t *p = st->prof;
    for (int i = 0; p && i < p->nlinks; i++)
        if (p->links[i].active && p->links[i].role == ROLE_MERGED_INTO) return &p->links[i];
    return NULL;
}

/* Index the next link goes to, making room by dropping the oldest inactive
 * link when full (only at commit time: see link_take); -1 when every slot
 * holds an active link. */
static int link_slot(const profile_t *p) {
    if (p->nlinks < TL_FOLD_MAX_LINKS) return p->nlinks;
    for (int i = 0; i < p->nlinks; i++)
        if (!p->links[i].active) return TL_FOLD_MAX_LINKS - 1;
    return -1;
}

/* Appends l (taken over) to the links, dropping the oldest inactive one if
 * full (link_slot said there is one).  Returns the stored link. */
static link_t *link_take(profile_t *p, link_t *l) {
    if (p->nlinks == TL_FOLD_MAX_LINKS) {
        int i = 0;
        while (p->links[i].active) i++;
        link_free(&p->links[i]);
        memmove(&p->links[i], &p->links[i + 1], (size_t)(p->nlinks - i - 1) * sizeof p->links[0]);
        p->nlinks--;
    }
    p->links[p->nlinks] = *l;
    memset(l, 0, sizeof *l);
    return &p->links[p->nlinks++];
}

static void conv_reset_header(conv_t *c) {
    sstr_free(&c->assignee);
    sstr_free(&c->team);
    for (int i = 0; i < c->ntags; i++) sstr_free(&c->tags[i]);
    c->ntags = 0;
    c->platforms = 0;
}

static void state_free(state_t *st) {
    if (!st) return;
    conv_reset_header(&st->conv);
    free(st->conv.tags);
    profile_free(st->prof);
    if (st->tenant != st->idbuf) free(st->tenant);
    free(st);
}

static state_t *state_new(uint64_t h, tl_str_t tenant, tl_str_t customer) {
    state_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    size_t need = tenant.len + customer.len + 2;
    char *ids = need <= sizeof st->idbuf ? st->idbuf : malloc(need);
    if (!ids) {
        free(st);
        return NULL;
    }
    memcpy(ids, tenant.ptr, tenant.len);
    ids[tenant.len] = 0;
    memcpy(ids + tenant.len + 1, customer.ptr, customer.len);
    ids[need - 1] = 0;
    st->hash = h;
    st->tenant = ids;
    st->tlen = (uint32_t)tenant.len;
    st->customer = ids + tenant.len + 1;
    st->clen = (uint32_t)customer.len;
    return st;
}

static profile_t *profile_get(state_t *st) {
    if (!st->prof) st->prof = calloc(1, sizeof *st->prof);
    return st->prof;
}

/* ---- the table ----------------------------------------------------------- */

static int key_fields_set(tl_fold_t *f, const tl_fold_opts_t *opts) {
    const char *const *names = opts->key_fields ? opts->key_fields : default_key_fields;
    size_t n = opts->key_fields ? opts->nkey_fields : sizeof default_key_fields / sizeof *default_key_fields;
    if (n > TL_FOLD_MAX_KEY_FIELDS) return TL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        size_t len = names[i] ? strlen(names[i]) : 0;
        if (len == 0 || len > TL_FOLD_MAX_NAME) return TL_EINVAL;
        if (sstr_make(&f->keyf[i], (tl_str_t){names[i], len})) return TL_ENOMEM;
        f->nkeyf = i + 1;
    }
    return TL_OK;
}

static int is_key_field(const tl_fold_t *f, tl_str_t name) {
    for (size_t i = 0; i < f->nkeyf; i++)
        if (sstr_eq(f->keyf[i], name)) return 1;
    return 0;
}

tl_fold_t *tl_fold_new(const tl_fold_opts_t *opts) {
    tl_fold_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->opts = *opts;
    f->opts.key_fields = NULL;      /* the copies in keyf are what counts */
    f->cap = 1024;
    f->slots = calloc(f->cap, sizeof *f->slots);
    if (!f->slots || opts->max_skew_ms < 0 || opts->idle_timeout_ms < 0 || key_fields_set(f, opts)) {
        tl_fold_free(f);
        return NULL;
    }
    f->opts.nkey_fields = f->nkeyf;
    return f;
}

void tl_fold_clear(tl_fold_t *f) {
    for (size_t i = 0; i < f->cap; i++) {
        state_free(f->slots[i].st);
        f->slots[i] = (slot_t){0, NULL};
    }
    f->count = 0;
    f->nchanges = f->nemit = 0;
}

void tl_fold_free(tl_fold_t *f) {
    if (!f) return;
    if (f->slots) tl_fold_clear(f);
    free(f->slots);
    for (size_t i = 0; i < f->nkeyf; i++) sstr_free(&f->keyf[i]);
    while (f->blocks) {
        block_t *b = f->blocks;
        f->blocks = b->next;
        free(b);
    }
    free(f);
}

size_t tl_fold_count(const tl_fold_t *f) { return f->count; }

static size_t find(const tl_fold_t *f, uint64_t h, tl_str_t tenant, tl_str_t customer) {
    size_t i = h & (f->cap - 1);
    for (;;) {
        const slot_t *s = &f->slots[i];
        if (!s->st || (s->hash == h && s->st->clen == customer.len && s->st->tlen == tenant.len &&
                       memcmp(s->st->customer, customer.ptr, customer.len) == 0 &&
                       memcmp(s->st->tenant, tenant.ptr, tenant.len) == 0))
            return i;
        i = (i + 1) & (f->cap - 1);
    }
}

static state_t *lookup(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer) {
    if (!tenant.ptr || !customer.ptr) return NULL;
    return f->slots[find(f, state_hash(tenant, customer), tenant, customer)].st;
}

static int grow(tl_fold_t *f) {
    size_t ncap = f->cap * 2;
    slot_t *n = calloc(ncap, sizeof *n);
    if (!n) return TL_ENOMEM;
    for (size_t i = 0; i < f->cap; i++) {
        if (!f->slots[i].st) continue;
        size_t j = f->slots[i].hash & (ncap - 1);
        while (n[j].st) j = (j + 1) & (ncap - 1);
        n[j] = f->slots[i];
    }
    free(f->slots);
    f->slots = n;
    f->cap = ncap;
    return TL_OK;
}

/* Makes room for one more state.  TL_ENOMEM leaves the table as it was. */
static int reserve_one(tl_fold_t *f) { return (f->count + 1) * 2 > f->cap ? grow(f) : TL_OK; }

/* Puts st into slot i (found empty by find). */
static void insert_at(tl_fold_t *f, size_t i, state_t *st) {
    f->slots[i] = (slot_t){st->hash, st};
    f->count++;
}

/* Takes the state in slot i out of the table (not freed): linear probing
 * needs the rest of its cluster put back where find will look. */
static void remove_at(tl_fold_t *f, size_t i) {
    f->slots[i] = (slot_t){0, NULL};
    f->count--;
    for (size_t j = (i + 1) & (f->cap - 1); f->slots[j].st; j = (j + 1) & (f->cap - 1)) {
        slot_t moved = f->slots[j];
        f->slots[j] = (slot_t){0, NULL};
        size_t k = moved.hash & (f->cap - 1);
        while (f->slots[k].st) k = (k + 1) & (f->cap - 1);
        f->slots[k] = moved;
    }
}

int tl_fold_evict(tl_fold_t *f, tl_str_t tenant, tl_str_t customer) {
    if (!tenant.ptr || !customer.ptr) return TL_ENOTFOUND;
    size_t i = find(f, state_hash(tenant, customer), tenant, customer);
    state_t *st = f->slots[i].st;
    if (!st) return TL_ENOTFOUND;
    remove_at(f, i);
    state_free(st);
    return TL_OK;
}

/* ---- idempotency keys ---------------------------------------------------- */

static int key_seen(const state_t *st, uint64_t h) {
    int found = 0;
    for (int i = 0; i < st->nkeys; i++) found |= st->keys[i] == h;
    return found;
}

static void key_add(state_t *st, uint64_t h) {
    if (st->nkeys < TL_FOLD_RECENT_KEYS) {
        st->keys[st->nkeys++] = h;
    } else {
        st->keys[st->next] = h;
        st->next = (st->next + 1) % TL_FOLD_RECENT_KEYS;
    }
}

/* ---- apply --------------------------------------------------------------- */

int64_t tl_fold_effective_ts(const tl_fold_t *f, const tl_event_t *ev) {
    int64_t hi = ev->received_at;
    /* received_at is data: keep received_at - max_skew from overflowing. */
    int64_t lo = hi < INT64_MIN + f->opts.max_skew_ms ? INT64_MIN : hi - f->opts.max_skew_ms;
    return ev->occurred_at < lo ? lo : ev->occurred_at > hi ? hi : ev->occurred_at;
}

/* One apply in progress. */
typedef struct ctx {
    tl_fold_t *f;
    state_t *st;
    const tl_event_t *ev;
    tl_fold_result_t *res;
    int64_t ets;
    int64_t ver;                /* the customer version this event makes */
} ctx_t;

static int ignore(ctx_t *x, tl_fold_ignore_t why) {
    x->res->ignored = why;
    return TL_OK;
}

static tl_fold_change_t *change(ctx_t *x, tl_fold_change_kind_t kind) {
    assert(x->f->nchanges < MAX_CHANGES);
    tl_fold_change_t *c = &x->f->changes[x->f->nchanges++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}

static void change_field(ctx_t *x, tl_fold_change_kind_t kind, const field_t *fl, const entry_t *e) {
    tl_fold_change_t *c = change(x, kind);
    c->field = sstr_view(fl->name);
    if (e) c->value = sstr_view(e->value);
}

static void change_conflict(ctx_t *x, tl_fold_change_kind_t kind, const conflict_t *cf,
                            const entry_t *e) {
    tl_fold_change_t *c = change(x, kind);
    c->field = sstr_view(cf->field->name);
    if (e) c->value = sstr_view(e->value);
    memcpy(c->conflict_id, cf->id, sizeof c->conflict_id);
}

static void change_link(ctx_t *x, tl_fold_change_kind_t kind, const link_t *l) {
    tl_fold_change_t *c = change(x, kind);
    c->customer = sstr_view(l->customer);
}

static tl_str_t st_tenant(const state_t *st) { return (tl_str_t){st->tenant, st->tlen}; }
static tl_str_t st_customer(const state_t *st) { return (tl_str_t){st->customer, st->clen}; }

/* ---- conversations ---- */

/* Events a person exchanged with the business: these open conversations. */
static int conversational(tl_event_kind_t k) {
    return k == TL_EV_MESSAGE_RECEIVED || k == TL_EV_AGENT_REPLIED || k == TL_EV_TRANSCRIPT_SEGMENT;
}

/* The conversation an agent action names, if any. */
static tl_str_t named_conversation(const tl_event_t *ev) {
    switch (ev->kind) {
    case TL_EV_CONVERSATION_ASSIGNED: return ev->u.assign.conversation_id;
    case TL_EV_CONVERSATION_TAGGED: return ev->u.tag.conversation_id;
    case TL_EV_CONVERSATION_CLOSED: return ev->u.close.conversation_id;
    case TL_EV_AGENT_REPLIED: return ev->u.reply.conversation_id;
    default: return TL_STR_NULL;
    }
}

/* The platform a conversational event shows the customer was on. */
static int seen_platform(const tl_event_t *ev) {
    return ev->kind == TL_EV_AGENT_REPLIED ? (int)ev->u.reply.target_platform : (int)ev->platform;
}

/* Builds the conversation's tag set after tagging ev into out[] (sorted,
 * distinct; new tags copied, kept ones borrowed from the state).  Sets
 * *n, and fresh[i] when out[i] was allocated here.  Returns TL_OK,
 * TL_ENOMEM (nothing left allocated) or 1 when the tags break a rule. */
static int tags_build(const conv_t *c, const tl_conversation_tagged_t *t, sstr_t *out, int *fresh,
                      int *n) {
    int k = 0;
    for (size_t i = 0; i < t->added.n; i++) {
        tl_str_t a = t->added.v[i];
        if (!a.ptr || a.len == 0 || a.len > TL_FOLD_MAX_NAME) return 1;
    }
    /* Removals first, then additions: a tag in both lists stays. */
    for (int i = 0; i < c->ntags; i++) {
        int removed = 0;
        for (size_t j = 0; j < t->removed.n && !removed; j++)
            removed = t->removed.v[j].ptr && sstr_eq(c->tags[i], t->removed.v[j]);
        if (!removed) {
            out[k] = c->tags[i];
            fresh[k++] = 0;
        }
    }
    int rc = TL_OK;
    for (size_t i = 0; i < t->added.n && rc == TL_OK; i++) {
        tl_str_t a = t->added.v[i];
        int have = 0;
        for (int j = 0; j < k && !have; j++) have = sstr_eq(out[j], a);
        if (have) continue;
        if (k == TL_FOLD_MAX_TAGS) {
            rc = 1;
            break;
        }
        if (sstr_make(&out[k], a)) {
            rc = TL_ENOMEM;
            break;
        }
        fresh[k++] = 1;
    }
    if (rc) {
        for (int j = 0; j < k; j++)
            if (fresh[j]) sstr_free(&out[j]);
        return rc;
    }
    /* Insertion sort: at most TL_FOLD_MAX_TAGS. */
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && str_cmp(sstr_view(out[j - 1]), sstr_view(out[j])) > 0; j--) {
            sstr_t s = out[j];
            out[j] = out[j - 1];
            out[j - 1] = s;
            int fr = fresh[j];
            fresh[j] = fresh[j - 1];
            fresh[j - 1] = fr;
        }
    *n = k;
    return TL_OK;
}

/* An agent action on the current conversation: assign, tag, close.
 * Returns TL_OK, TL_ENOMEM, or 1 when ignored (reason set). */
static int conv_action(ctx_t *x) {
    const tl_event_t *ev = x->ev;
    conv_t *c = &x->st->conv;
    switch (ev->kind) {
    case TL_EV_CONVERSATION_ASSIGNED: {
        tl_str_t agent = ev->u.assign.agent_id, team = ev->u.assign.team_id;
        if (agent.len > TL_FOLD_MAX_ID || team.len > TL_FOLD_MAX_ID) {
            ignore(x, TL_FOLD_IGNORE_ID_TOO_LONG);
            return 1;
        }
        sstr_t a, t;
        if (sstr_make(&a, agent)) return TL_ENOMEM;
        if (sstr_make(&t, team)) {
            sstr_free(&a);
            return TL_ENOMEM;
        }
        sstr_free(&c->assignee);
        sstr_free(&c->team);
        c->assignee = a;
        c->team = t;
        return TL_OK;
    }
    case TL_EV_CONVERSATION_TAGGED: {
        sstr_t tags[TL_FOLD_MAX_TAGS];
        int fresh[TL_FOLD_MAX_TAGS], n = 0;
        if (!c->tags && !(c->tags = calloc(TL_FOLD_MAX_TAGS, sizeof *c->tags))) return TL_ENOMEM;
        int rc = tags_build(c, &ev->u.tag, tags, fresh, &n);
        if (rc == 1) {
            ignore(x, TL_FOLD_IGNORE_BAD_TAG);
            return 1;
        }
        if (rc) return rc;
        /* Free the tags that were removed: those of the old set not kept. */
        for (int i = 0; i < c->ntags; i++) {
            int kept = 0;
            for (int j = 0; j < n && !kept; j++) kept = !fresh[j] && tags[j].p == c->tags[i].p;
            if (!kept) sstr_free(&c->tags[i]);
        }
        memcpy(c->tags, tags, (size_t)n * sizeof *tags);
        c->ntags = n;
        return TL_OK;
    }
    case TL_EV_CONVERSATION_CLOSED:
        c->closed = 1;
        return TL_OK;
    default:
        return TL_OK;
    }
}

static int on_conversation(ctx_t *x) {
    const tl_event_t *ev = x->ev;
    tl_fold_result_t *res = x->res;
    conv_t *c = &x->st->conv;
    int64_t ets = x->ets;
    tl_str_t named = named_conversation(ev);
    int names_current = named.ptr && c->present && named.len == TL_UUID_STRLEN &&
                        memcmp(named.ptr, c->id, TL_UUID_STRLEN) == 0;

    if (conversational(ev->kind)) {
        /* ets - last_activity cannot overflow in unsigned arithmetic when
         * ets is the later one. */
        if (!c->present || c->closed ||
            (ets > c->last_activity &&
             (uint64_t)ets - (uint64_t)c->last_activity > (uint64_t)x->f->opts.idle_timeout_ms)) {
            const char *parts[] = {"conversation", ev->tenant_id.ptr, ev->customer_id.ptr,
                                   ev->event_id.ptr ? ev->event_id.ptr : ""};
            size_t lens[] = {12, ev->tenant_id.len, ev->customer_id.len, ev->event_id.len};
            tl_uuid_v5(parts, lens, 4, c->id);
            conv_reset_header(c);
            c->present = 1;
            c->closed = 0;
            c->version = 0;
            c->opened_at = ets;
            c->last_activity = ets;
            res->conversation_opened = 1;
        }
        c->version++;
        if (ets > c->last_activity) c->last_activity = ets;
        if (ets < c->opened_at) c->opened_at = ets;     /* a late arrival written earlier */
        c->platforms |= 1u << seen_platform(ev);
    } else if (names_current) {
        int rc = conv_action(x);
        if (rc == TL_ENOMEM) return rc;
        if (rc == TL_OK) c->version++;
    } else if (ev->kind == TL_EV_BEHAVIOR_TRACKED && c->present && !c->closed) {
        c->version++;
        c->platforms |= 1u << ev->platform;
    }

    if (c->present && (conversational(ev->kind) || names_current ||
                       (ev->kind == TL_EV_BEHAVIOR_TRACKED && !c->closed))) {
        memcpy(res->conversation_id, c->id, sizeof c->id);
        res->conversation_version = c->version;
    } else if (named.ptr) {
        /* An action on a conversation that is no longer current: recorded
         * on the customer, attributed to the conversation it names. */
        size_t n = named.len < TL_UUID_STRLEN ? named.len : TL_UUID_STRLEN;
        memcpy(res->conversation_id, named.ptr, n);
        res->conversation_id[n] = 0;
        res->conversation_version = 0;
        if (!conversational(ev->kind)) ignore(x, TL_FOLD_IGNORE_NOT_CURRENT);
    } else {
        res->conversation_id[0] = 0;
        res->conversation_version = 0;
    }
    return TL_OK;
}

/* ---- fields ---- */

/* The value a field falls back to when its current one is withdrawn: what
 * the rules pick among the values left.  A key field keeps its first value;
 * an ordinary field the latest (greatest effective_ts, then the later
 * assertion).  -1 when none is left. */
static int field_fallback(const field_t *fl) {
    int best = -1;
    for (int i = 0; i < fl->n; i++) {
        const entry_t *e = &fl->v[i];
        if (e->withdrawn) continue;
        if (fl->key) {
            if (e->value.n) return i;
        } else if (best < 0 || e->ts >= fl->v[best].ts) {
            best = i;
        }
    }
    return best;
}

static int on_field(ctx_t *x) {
    tl_fold_t *f = x->f;
    const tl_event_t *ev = x->ev;
    tl_str_t name = ev->u.field.field, value = or_empty(ev->u.field.value), via = TL_STR_NULL;
    if (!name.ptr || name.len == 0 || name.len > TL_FOLD_MAX_NAME)
        return ignore(x, TL_FOLD_IGNORE_FIELD_NAME);
    if (value.len > TL_FOLD_MAX_VALUE) return ignore(x, TL_FOLD_IGNORE_VALUE_TOO_LONG);
    if (ev->event_id.len > TL_FOLD_MAX_ID) return ignore(x, TL_FOLD_IGNORE_ID_TOO_LONG);
    if (ev->platform == TL_PLATFORM_SYSTEM && ev->platform_user_id.len) {
        via = ev->platform_user_id;
        if (!link_find(x->st, via, ROLE_ABSORBED)) return ignore(x, TL_FOLD_IGNORE_NOT_LINKED);
    }
    int pos = 0;
    field_t *fl = field_find(x->st->prof, name, &pos);
    int key = fl ? fl->key : is_key_field(f, name);
    if (key && value.len == 0) return ignore(x, TL_FOLD_IGNORE_EMPTY_KEY_VALUE);
    profile_t *p = profile_get(x->st);
    if (!p) return TL_ENOMEM;
    if (!fl && p->nfields == TL_FOLD_MAX_FIELDS) return ignore(x, TL_FOLD_IGNORE_TOO_MANY_FIELDS);

    entry_t e;
    if (entry_make(&e, value, ev->event_id, via, x->ver, x->ets, ev->platform)) return TL_ENOMEM;

    if (!fl) {
        if (p->nfields == p->capfields) {
            int ncap = p->capfields ? p->capfields * 2 : 8;
            field_t **nf = realloc(p->fields, (size_t)ncap * sizeof *nf);
            if (!nf) goto nomem;
            p->fields = nf;
            p->capfields = ncap;
        }
        if (!(fl = calloc(1, sizeof *fl)) || sstr_make(&fl->name, name)) {
            free(fl);
            goto nomem;
        }
        fl->key = key;
        fl->cur = -1;
        memmove(&p->fields[pos + 1], &p->fields[pos], (size_t)(p->nfields - pos) * sizeof *p->fields);
        p->fields[pos] = fl;
        p->nfields++;
        change_field(x, TL_FOLD_FIELD_SET, fl, &fl->v[field_push(fl, &e, 1)]);
        return TL_OK;
    }

    const entry_t *cur = fl->cur >= 0 ? &fl->v[fl->cur] : NULL;
    if (!key) {
        /* Last writer wins; at equal times the later record is the later write. */
        int wins = !cur || x->ets >= cur->ts;
        change_field(x, wins ? TL_FOLD_FIELD_SET : TL_FOLD_FIELD_KEPT, fl, &fl->v[field_push(fl, &e, wins)]);
        return TL_OK;
    }
    if (!cur || cur->value.n == 0) {
        change_field(x, TL_FOLD_FIELD_SET, fl, &fl->v[field_push(fl, &e, 1)]);
        return TL_OK;
    }
    if (sstr_eq(cur->value, value)) {
        change_field(x, TL_FOLD_FIELD_KEPT, fl, &fl->v[field_push(fl, &e, 0)]);
        return TL_OK;
    }
    conflict_t *cf = conflict_on(p, fl);
    if (cf) {
        for (int i = 0; i < cf->n; i++)
            if (sstr_eq(cf->c[i].value, value)) {
                change_field(x, TL_FOLD_FIELD_KEPT, fl, &fl->v[field_push(fl, &e, 0)]);
                return TL_OK;
            }
        if (cf->n == TL_FOLD_MAX_CANDIDATES) {
            entry_free(&e);
            return ignore(x, TL_FOLD_IGNORE_TOO_MANY_CANDIDATES);
        }
        if (entry_copy(&cf->c[cf->n], &e)) goto nomem;
        cf->n++;
        field_push(fl, &e, 0);
        change_conflict(x, TL_FOLD_CONFLICT_CANDIDATE, cf, &cf->c[cf->n - 1]);
        return TL_OK;
    }
    if (p->nconflicts == TL_FOLD_MAX_CONFLICTS) {
        entry_free(&e);
        return ignore(x, TL_FOLD_IGNORE_TOO_MANY_CONFLICTS);
    }
    if (!(cf = calloc(1, sizeof *cf))) goto nomem;
    if (entry_copy(&cf->c[0], cur)) {
        free(cf);
        goto nomem;
    }
    if (entry_copy(&cf->c[1], &e)) {
        entry_free(&cf->c[0]);
        free(cf);
        goto nomem;
    }
    cf->n = 2;
    cf->field = fl;
    cf->opened_version = x->ver;
    cf->opened_at = x->ets;
    const char *parts[] = {"conflict", ev->tenant_id.ptr, ev->customer_id.ptr, name.ptr,
                           ev->event_id.ptr ? ev->event_id.ptr : ""};
    size_t lens[] = {8, ev->tenant_id.len, ev->customer_id.len, name.len, ev->event_id.len};
    tl_uuid_v5(parts, lens, 5, cf->id);
    p->conflicts[p->nconflicts++] = cf;
    field_push(fl, &e, 0);
    change_conflict(x, TL_FOLD_CONFLICT_OPENED, cf, &cf->c[1]);
    return TL_OK;

nomem:
    entry_free(&e);
    return TL_ENOMEM;
}

static int on_resolve(ctx_t *x) {
    const tl_event_t *ev = x->ev;
    const tl_conflict_resolved_t *r = &ev->u.resolve;
    profile_t *p = x->st->prof;
    conflict_t *cf = NULL;
    for (int i = 0; p && i < p->nconflicts && !cf; i++)
        if (r->conflict_id.len == TL_UUID_STRLEN &&
            memcmp(p->conflicts[i]->id, r->conflict_id.ptr, TL_UUID_STRLEN) == 0)
            cf = p->conflicts[i];
    if (!cf) return ignore(x, TL_FOLD_IGNORE_UNKNOWN_CONFLICT);
    if (!r->field.ptr || !sstr_eq(cf->field->name, r->field)) return ignore(x, TL_FOLD_IGNORE_CONFLICT_FIELD);
    if (!r->chosen_value.ptr || r->chosen_value.len == 0) return ignore(x, TL_FOLD_IGNORE_EMPTY_CHOICE);
    if (r->chosen_value.len > TL_FOLD_MAX_VALUE) return ignore(x, TL_FOLD_IGNORE_VALUE_TOO_LONG);
    if (ev->event_id.len > TL_FOLD_MAX_ID) return ignore(x, TL_FOLD_IGNORE_ID_TOO_LONG);
    entry_t e;
    /* An agent's decision: it belongs to this customer, whatever link the
     * chosen value came through, and no unlink takes it back. */
    if (entry_make(&e, r->chosen_value, ev->event_id, TL_STR_NULL, x->ver, x->ets, ev->platform))
        return TL_ENOMEM;
    field_t *fl = cf->field;
    const entry_t *now = &fl->v[field_push(fl, &e, 1)];
    change_field(x, TL_FOLD_FIELD_SET, fl, now);
    change_conflict(x, TL_FOLD_CONFLICT_RESOLVED, cf, now);
    conflict_remove(p, cf);
    return TL_OK;
}

/* ---- identity ---- */

/* Fills the envelope of an emitted event (strings in the arena). */
static int emit_envelope(ctx_t *x, tl_event_t *out, tl_str_t customer, const tl_str_t *id_parts,
                         size_t nid, const tl_str_t *key_parts, size_t nkey, int64_t ts) {
    tl_fold_t *f = x->f;
    const tl_event_t *ev = x->ev;
    const char *parts[6];
    size_t lens[6];
    char id[TL_UUID_STRLEN + 1];
    assert(nid + 3 <= 6);
    parts[0] = "emit";
    lens[0] = 4;
    parts[1] = ev->tenant_id.ptr;
    lens[1] = ev->tenant_id.len;
    parts[2] = ev->event_id.ptr ? ev->event_id.ptr : "";
    lens[2] = ev->event_id.len;
    for (size_t i = 0; i < nid; i++) {
        parts[3 + i] = id_parts[i].ptr;
        lens[3 + i] = id_parts[i].len;
    }
    tl_uuid_v5(parts, lens, 3 + nid, id);
    memset(out, 0, sizeof *out);
    if (arena_str(f, (tl_str_t){id, TL_UUID_STRLEN}, &out->event_id) ||
        arena_str(f, ev->tenant_id, &out->tenant_id) || arena_str(f, customer, &out->customer_id) ||
        arena_str(f, st_customer(x->st), &out->platform_user_id) ||
        arena_join(f, key_parts, nkey, &out->idempotency_key) ||
        arena_str(f, or_empty(ev->trace_id), &out->trace_id))
        return TL_ENOMEM;
    out->platform = TL_PLATFORM_SYSTEM;
    out->occurred_at = out->received_at = ts;
    return TL_OK;
}

/* Makes the link record for the other customer of ev (prepare half). */
static int link_make(ctx_t *x, link_t *l, tl_str_t other, int role, tl_platform_t platform,
                     tl_str_t puid, tl_evidence_t evidence) {
    memset(l, 0, sizeof *l);
    if (sstr_make(&l->customer, other) || sstr_make(&l->link_event, or_empty(x->ev->event_id)) ||
        sstr_make(&l->platform_user_id, or_empty(puid))) {
        link_free(l);
        return TL_ENOMEM;
    }
    l->role = (uint8_t)role;
    l->active = 1;
    l->linked_at = x->ets;
    l->platform = (uint8_t)platform;
    l->evidence = (uint8_t)evidence;
    return TL_OK;
}

/* Checks shared by both sides of a link; returns an ignore reason or NONE. */
static tl_fold_ignore_t link_check(ctx_t *x, tl_str_t other, tl_str_t puid) {
    if (!other.ptr || other.len == 0 || str_eq(other, st_customer(x->st))) return TL_FOLD_IGNORE_SELF_LINK;
    if (other.len > TL_FOLD_MAX_ID || x->ev->event_id.len > TL_FOLD_MAX_ID || puid.len > TL_FOLD_MAX_ID)
        return TL_FOLD_IGNORE_ID_TOO_LONG;
    return TL_FOLD_IGNORE_NONE;
}

/* IdentityLinked on the survivor: record the link, notify the absorbed. */
static int on_link(ctx_t *x) {
    const tl_event_t *ev = x->ev;
    const tl_identity_linked_t *l = &ev->u.link;
    tl_str_t other = l->linked_customer_id;
    tl_fold_ignore_t why = link_check(x, other, l->platform_user_id);
    if (why) return ignore(x, why);
    if (merged_link(x->st)) return ignore(x, TL_FOLD_IGNORE_MERGED);
    if (link_find(x->st, other, ROLE_ABSORBED)) return ignore(x, TL_FOLD_IGNORE_ALREADY_LINKED);
    profile_t *p = profile_get(x->st);
    if (!p) return TL_ENOMEM;
    if (link_slot(p) < 0) return ignore(x, TL_FOLD_IGNORE_TOO_MANY_LINKS);

    tl_event_t *out = &x->f->emit[0];
    tl_str_t key[] = {TL_STR("system:link:"), or_empty(ev->event_id)};
    tl_str_t idp[] = {TL_STR("link")};
    if (emit_envelope(x, out, other, idp, 1, key, 2, x->ets)) return TL_ENOMEM;
    out->kind = TL_EV_IDENTITY_LINKED;
    out->u.link.platform = l->platform;
    out->u.link.evidence = l->evidence;
    if (arena_str(x->f, st_customer(x->st), &out->u.link.linked_customer_id) ||
        arena_str(x->f, or_empty(l->platform_user_id), &out->u.link.platform_user_id) ||
        arena_str(x->f, l->evidence_value, &out->u.link.evidence_value))
        return TL_ENOMEM;
    link_t nl;
    if (link_make(x, &nl, other, ROLE_ABSORBED, l->platform, l->platform_user_id, l->evidence))
        return TL_ENOMEM;
    x->f->nemit = 1;
    change_link(x, TL_FOLD_LINKED, link_take(p, &nl));
    return TL_OK;
}

/* The link notice on the absorbed customer: mark the merge and hand every
 * field value over to the survivor. */
static int on_link_notice(ctx_t *x) {
    tl_fold_t *f = x->f;
    const tl_event_t *ev = x->ev;
    const tl_identity_linked_t *l = &ev->u.link;
    tl_str_t other = l->linked_customer_id;
    tl_fold_ignore_t why = link_check(x, other, l->platform_user_id);
    if (why) return ignore(x, why);
    link_t *m = merged_link(x->st);
    if (m) return ignore(x, sstr_eq(m->customer, other) ? TL_FOLD_IGNORE_ALREADY_LINKED : TL_FOLD_IGNORE_MERGED);
    /* Absorbing a customer that absorbed us would make a cycle. */
    if (link_find(x->st, other, ROLE_ABSORBED)) return ignore(x, TL_FOLD_IGNORE_ALREADY_LINKED);
    profile_t *p = profile_get(x->st);
    if (!p) return TL_ENOMEM;
    if (link_slot(p) < 0) return ignore(x, TL_FOLD_IGNORE_TOO_MANY_LINKS);

    size_t n = 0;
    for (int i = 0; i < p->nfields; i++) {
        const field_t *fl = p->fields[i];
        if (fl->cur < 0) continue;
        const entry_t *e = &fl->v[fl->cur];
        if (sstr_eq(e->via, other)) continue;   /* came from the survivor: no echo */
        tl_event_t *out = &f->emit[n];
        tl_str_t name = sstr_view(fl->name);
        tl_str_t key[] = {TL_STR("system:link:"), or_empty(ev->event_id), TL_STR(":"), name};
        tl_str_t idp[] = {TL_STR("field"), name};
        if (emit_envelope(x, out, other, idp, 2, key, 4, e->ts)) return TL_ENOMEM;
        out->kind = TL_EV_FIELD_ASSERTED;
        if (arena_str(f, name, &out->u.field.field) || arena_str(f, sstr_view(e->value), &out->u.field.value))
            return TL_ENOMEM;
        n++;
    }
    link_t nl;
    if (link_make(x, &nl, other, ROLE_MERGED_INTO, l->platform, l->platform_user_id, l->evidence))
        return TL_ENOMEM;
    f->nemit = n;
    change_link(x, TL_FOLD_MERGED, link_take(p, &nl));
    return TL_OK;
}

/* IdentityUnlinked on the survivor: withdraw what came through the link,
 * notify the absorbed customer. */
static int on_unlink(ctx_t *x) {
    tl_fold_t *f = x->f;
    const tl_event_t *ev = x->ev;
    const tl_identity_unlinked_t *u = &ev->u.unlink;
    tl_str_t other = u->linked_customer_id;
    if (!other.ptr || ev->event_id.len > TL_FOLD_MAX_ID) return ignore(x, TL_FOLD_IGNORE_ID_TOO_LONG);
    link_t *lk = link_find(x->st, other, ROLE_ABSORBED);
    if (!lk) return ignore(x, TL_FOLD_IGNORE_UNKNOWN_LINK);

    tl_event_t *out = &f->emit[0];
    tl_str_t key[] = {TL_STR("system:unlink:"), or_empty(ev->event_id)};
    tl_str_t idp[] = {TL_STR("unlink")};
    if (emit_envelope(x, out, other, idp, 1, key, 2, x->ets)) return TL_ENOMEM;
    out->kind = TL_EV_IDENTITY_UNLINKED;
    out->u.unlink.platform = u->platform;
    if (arena_str(f, st_customer(x->st), &out->u.unlink.linked_customer_id) ||
        arena_str(f, or_empty(u->platform_user_id), &out->u.unlink.platform_user_id) ||
        arena_str(f, or_empty(u->reason), &out->u.unlink.reason))
        return TL_ENOMEM;
    sstr_t unlink_event;
    if (sstr_make(&unlink_event, or_empty(ev->event_id))) return TL_ENOMEM;

    /* Commit: nothing below allocates. */
    f->nemit = 1;
    lk->active = 0;
    lk->unlinked_at = x->ets;
    lk->unlink_event = unlink_event;
    change_link(x, TL_FOLD_UNLINKED, lk);
    profile_t *p = x->st->prof;
    for (int i = 0; i < p->nfields; i++) {
        field_t *fl = p->fields[i];
        int lost = 0;
        for (int j = 0; j < fl->n; j++)
            if (!fl->v[j].withdrawn && sstr_eq(fl->v[j].via, other)) {
                fl->v[j].withdrawn = 1;
                lost |= j == fl->cur;
            }
        if (!lost) continue;
        fl->cur = field_fallback(fl);
        change_field(x, TL_FOLD_FIELD_REVERTED, fl, fl->cur >= 0 ? &fl->v[fl->cur] : NULL);
    }
    for (int i = 0; i < p->nconflicts;) {
        conflict_t *cf = p->conflicts[i];
        int k = 0;
        for (int j = 0; j < cf->n; j++) {
            if (sstr_eq(cf->c[j].via, other)) entry_free(&cf->c[j]);
            else cf->c[k++] = cf->c[j];
        }
        cf->n = k;
        if (k > 1) {
            i++;
            continue;
        }
        change_conflict(x, TL_FOLD_CONFLICT_WITHDRAWN, cf, NULL);
        conflict_remove(p, cf);
    }
    return TL_OK;
}

/* The unlink notice on the absorbed customer: the merge is over. */
static int on_unlink_notice(ctx_t *x) {
    tl_str_t other = x->ev->u.unlink.linked_customer_id;
    if (!other.ptr || x->ev->event_id.len > TL_FOLD_MAX_ID) return ignore(x, TL_FOLD_IGNORE_ID_TOO_LONG);
    link_t *m = merged_link(x->st);
    if (!m || !sstr_eq(m->customer, other)) return ignore(x, TL_FOLD_IGNORE_UNKNOWN_LINK);
    sstr_t unlink_event;
    if (sstr_make(&unlink_event, or_empty(x->ev->event_id))) return TL_ENOMEM;
    m->active = 0;
    m->unlinked_at = x->ets;
    m->unlink_event = unlink_event;
    change_link(x, TL_FOLD_UNMERGED, m);
    return TL_OK;
}

static int dispatch(ctx_t *x) {
    int system = x->ev->platform == TL_PLATFORM_SYSTEM;
    if (x->ev->kind == TL_EV_FIELD_ASSERTED || x->ev->kind == TL_EV_CONFLICT_RESOLVED ||
        x->ev->kind == TL_EV_IDENTITY_LINKED || x->ev->kind == TL_EV_IDENTITY_UNLINKED) {
        x->res->conversation_id[0] = 0;     /* about the customer, not a conversation */
        x->res->conversation_version = 0;
    }
    switch (x->ev->kind) {
    case TL_EV_FIELD_ASSERTED: return on_field(x);
    case TL_EV_CONFLICT_RESOLVED: return on_resolve(x);
    case TL_EV_IDENTITY_LINKED: return system ? on_link_notice(x) : on_link(x);
    case TL_EV_IDENTITY_UNLINKED: return system ? on_unlink_notice(x) : on_unlink(x);
    default: return on_conversation(x);
    }
}

/* The enums a hand-made event could get wrong (a decoded one cannot). */
static int event_valid(const tl_event_t *ev) {
    if (!ev->tenant_id.ptr || !ev->tenant_id.len || !ev->customer_id.ptr || !ev->customer_id.len)
        return 0;
    if ((unsigned)ev->kind >= TL_EV__COUNT || (unsigned)ev->platform >= TL_PLATFORM__COUNT) return 0;
    switch (ev->kind) {
    case TL_EV_AGENT_REPLIED: return (unsigned)ev->u.reply.target_platform < TL_PLATFORM__COUNT;
    case TL_EV_IDENTITY_LINKED:
        return (unsigned)ev->u.link.platform < TL_PLATFORM__COUNT &&
               (unsigned)ev->u.link.evidence <= TL_EVIDENCE_OTHER;
    case TL_EV_IDENTITY_UNLINKED: return (unsigned)ev->u.unlink.platform < TL_PLATFORM__COUNT;
    default: return 1;
    }
}

int tl_fold_apply(tl_fold_t *f, const tl_event_t *ev, tl_fold_result_t *res) {
    if (!event_valid(ev)) return TL_EINVAL;
    uint64_t h = state_hash(ev->tenant_id, ev->customer_id);
    size_t slot = find(f, h, ev->tenant_id, ev->customer_id);
    state_t *st = f->slots[slot].st;
    int created = 0;
    if (!st) {
        if (reserve_one(f)) return TL_ENOMEM;
        if (!(st = state_new(h, ev->tenant_id, ev->customer_id))) return TL_ENOMEM;
        slot = find(f, h, ev->tenant_id, ev->customer_id);
        insert_at(f, slot, st);
        created = 1;
    }
    f->nchanges = f->nemit = 0;
    arena_rewind(f);
    memset(res, 0, sizeof *res);
    res->changes = f->changes;
    res->emit = f->emit;
    res->effective_ts = tl_fold_effective_ts(f, ev);
    if (st->conv.present) {
        memcpy(res->conversation_id, st->conv.id, sizeof st->conv.id);
        res->conversation_version = st->conv.version;
    }
    uint64_t kh = 0;
    if (ev->idempotency_key.len) {
        kh = (uint64_t)tl_fold_key_hash(ev->idempotency_key);
        if (key_seen(st, kh)) {
            res->duplicate = 1;
            res->customer_version = st->version;
            return TL_OK;
        }
    }

    ctx_t x = {f, st, ev, res, res->effective_ts, st->version + 1};
    int rc = dispatch(&x);
    if (rc) {
        f->nchanges = f->nemit = 0;
        if (created) {
            remove_at(f, slot);
            state_free(st);
        }
        return rc;
    }
    if (ev->idempotency_key.len) key_add(st, kh);
    st->version = x.ver;
    if (x.ets > st->last_event_ts) st->last_event_ts = x.ets;
    res->customer_version = st->version;
    res->nchanges = f->nchanges;
    res->nemit = f->nemit;
    return TL_OK;
}

/* ---- serialised form: schemas/state.avsc --------------------------------- */

/* Field indexes, in the order of the schema's records. */
enum { S_TENANT, S_CUSTOMER, S_VERSION, S_LAST_TS, S_CONV, S_KEYS, S_FIELDS, S_CONFLICTS, S_LINKS, S_MERGED };
enum { C_ID, C_VERSION, C_OPENED, C_LAST, C_STATUS, C_ASSIGNEE, C_TEAM, C_TAGS, C_PLATFORMS };
enum { F_NAME, F_CURRENT, F_VALUES };
enum { V_VALUE, V_VERSION, V_TS, V_PLATFORM, V_EVENT, V_VIA, V_WITHDRAWN };
enum { K_ID, K_FIELD, K_VERSION, K_OPENED, K_CANDIDATES };
enum { L_CUSTOMER, L_ROLE, L_ACTIVE, L_EVENT, L_AT, L_UNEVENT, L_UNAT, L_PLATFORM, L_PUID, L_EVIDENCE };

/* Setters: each returns non-zero when avro-c fails (only on allocation). */
static int put_str(avro_value_t *rec, int ix, const char *p, size_t n) {
    avro_value_t v;
    /* avro-c copies n + 1 bytes: every string here has its NUL at p[n]. */
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) ||
           avro_value_set_string_len(&v, p ? p : "", p ? n + 1 : 1);
}

static int put_sstr(avro_value_t *rec, int ix, sstr_t s) { return put_str(rec, ix, s.p, s.n); }

static int put_opt_sstr(avro_value_t *rec, int ix, sstr_t s) {
    avro_value_t v, b;
    if (avro_value_get_by_index(rec, (size_t)ix, &v, NULL)) return 1;
    if (!s.p) return avro_value_set_branch(&v, 0, &b) || avro_value_set_null(&b);
    return avro_value_set_branch(&v, 1, &b) || avro_value_set_string_len(&b, s.p, (size_t)s.n + 1);
}

static int put_long(avro_value_t *rec, int ix, int64_t x) {
    avro_value_t v;
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_set_long(&v, x);
}

static int put_int(avro_value_t *rec, int ix, int32_t x) {
    avro_value_t v;
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_set_int(&v, x);
}

static int put_bool(avro_value_t *rec, int ix, int x) {
    avro_value_t v;
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_set_boolean(&v, x != 0);
}

static int put_enum(avro_value_t *rec, int ix, int x) {
    avro_value_t v;
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_set_enum(&v, x);
}

static int put_entry(avro_value_t *rec, const entry_t *e) {
    return put_sstr(rec, V_VALUE, e->value) || put_long(rec, V_VERSION, e->version) ||
           put_long(rec, V_TS, e->ts) || put_enum(rec, V_PLATFORM, e->platform) ||
           put_sstr(rec, V_EVENT, e->event_id) || put_opt_sstr(rec, V_VIA, e->via) ||
           put_bool(rec, V_WITHDRAWN, e->withdrawn);
}

static int put_conv(avro_value_t *root, const conv_t *c) {
    avro_value_t v, rec, arr, item;
    if (avro_value_get_by_index(root, S_CONV, &v, NULL)) return 1;
    if (!c->present) return avro_value_set_branch(&v, 0, &rec) || avro_value_set_null(&rec);
    int e = avro_value_set_branch(&v, 1, &rec);
    e = e || put_str(&rec, C_ID, c->id, TL_UUID_STRLEN) || put_long(&rec, C_VERSION, c->version) ||
        put_long(&rec, C_OPENED, c->opened_at) || put_long(&rec, C_LAST, c->last_activity) ||
        put_enum(&rec, C_STATUS, c->closed) || put_opt_sstr(&rec, C_ASSIGNEE, c->assignee) ||
        put_opt_sstr(&rec, C_TEAM, c->team) || avro_value_get_by_index(&rec, C_TAGS, &arr, NULL);
    for (int i = 0; !e && i < c->ntags; i++)
        e = avro_value_append(&arr, &item, NULL) ||
            avro_value_set_string_len(&item, c->tags[i].p, (size_t)c->tags[i].n + 1);
    e = e || avro_value_get_by_index(&rec, C_PLATFORMS, &arr, NULL);
    for (int p = 0; !e && p < TL_PLATFORM__COUNT; p++)
        if (c->platforms & (1u << p)) e = avro_value_append(&arr, &item, NULL) || avro_value_set_enum(&item, p);
    return e;
}

static int put_profile(avro_value_t *root, const state_t *st) {
    const profile_t *p = st->prof;
    avro_value_t arr, rec, sub, item;
    int e = 0;
    const link_t *merged = merged_link(st);
    if (avro_value_get_by_index(root, S_FIELDS, &arr, NULL)) return 1;
    for (int i = 0; p && !e && i < p->nfields; i++) {
        const field_t *fl = p->fields[i];
        e = avro_value_append(&arr, &rec, NULL) || put_sstr(&rec, F_NAME, fl->name) ||
            put_int(&rec, F_CURRENT, fl->cur) || avro_value_get_by_index(&rec, F_VALUES, &sub, NULL);
        for (int j = 0; !e && j < fl->n; j++)
            e = avro_value_append(&sub, &item, NULL) || put_entry(&item, &fl->v[j]);
    }
    e = e || avro_value_get_by_index(root, S_CONFLICTS, &arr, NULL);
    for (int i = 0; p && !e && i < p->nconflicts; i++) {
        const conflict_t *cf = p->conflicts[i];
        e = avro_value_append(&arr, &rec, NULL) || put_str(&rec, K_ID, cf->id, TL_UUID_STRLEN) ||
            put_sstr(&rec, K_FIELD, cf->field->name) || put_long(&rec, K_VERSION, cf->opened_version) ||
            put_long(&rec, K_OPENED, cf->opened_at) ||
            avro_value_get_by_index(&rec, K_CANDIDATES, &sub, NULL);
        for (int j = 0; !e && j < cf->n; j++)
            e = avro_value_append(&sub, &item, NULL) || put_entry(&item, &cf->c[j]);
    }
    e = e || avro_value_get_by_index(root, S_LINKS, &arr, NULL);
    for (int i = 0; p && !e && i < p->nlinks; i++) {
        const link_t *l = &p->links[i];
        e = avro_value_append(&arr, &rec, NULL) || put_sstr(&rec, L_CUSTOMER, l->customer) ||
            put_enum(&rec, L_ROLE, l->role) || put_bool(&rec, L_ACTIVE, l->active) ||
            put_sstr(&rec, L_EVENT, l->link_event) || put_long(&rec, L_AT, l->linked_at) ||
            put_opt_sstr(&rec, L_UNEVENT, l->unlink_event) ||
            avro_value_get_by_index(&rec, L_UNAT, &sub, NULL);
        if (!e && l->active) e = avro_value_set_branch(&sub, 0, &item) || avro_value_set_null(&item);
        else if (!e) e = avro_value_set_branch(&sub, 1, &item) || avro_value_set_long(&item, l->unlinked_at);
        e = e || put_enum(&rec, L_PLATFORM, l->platform) || put_sstr(&rec, L_PUID, l->platform_user_id) ||
            put_enum(&rec, L_EVIDENCE, l->evidence);
    }
    return e || put_opt_sstr(root, S_MERGED, merged ? merged->customer : (sstr_t){NULL, 0});
}

int tl_fold_state_encode(tl_fold_t *f, tl_codec_t *codec, tl_str_t tenant, tl_str_t customer,
                         tl_buf_t *out) {
    const state_t *st = lookup(f, tenant, customer);
    if (!st) return TL_ENOTFOUND;
    avro_value_t *v = tl_codec_value(codec), arr, item;
    int e = put_str(v, S_TENANT, st->tenant, st->tlen) || put_str(v, S_CUSTOMER, st->customer, st->clen) ||
            put_long(v, S_VERSION, st->version) || put_long(v, S_LAST_TS, st->last_event_ts) ||
            put_conv(v, &st->conv) || avro_value_get_by_index(v, S_KEYS, &arr, NULL);
    for (int i = 0; !e && i < st->nkeys; i++) {
        int k = st->nkeys < TL_FOLD_RECENT_KEYS ? i : (st->next + i) % TL_FOLD_RECENT_KEYS;
        e = avro_value_append(&arr, &item, NULL) || avro_value_set_long(&item, (int64_t)st->keys[k]);
    }
    if (e || put_profile(v, st)) return TL_ENOMEM;
    return tl_codec_write(codec, out);
}

/* Getters: each returns non-zero when the value is not what the schema
 * says, which after a successful decode means a corrupt record. */
static int get_str(avro_value_t *rec, int ix, tl_str_t *out) {
    avro_value_t v;
    const char *p = NULL;
    size_t n = 0;
    if (avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_get_string(&v, &p, &n)) return 1;
    *out = p && n ? (tl_str_t){p, n - 1} : (tl_str_t){"", 0};     /* avro-c counts the NUL */
    return 0;
}

static int get_opt_str(avro_value_t *rec, int ix, tl_str_t *out) {
    avro_value_t v, b;
    int disc = 0;
    const char *p = NULL;
    size_t n = 0;
    if (avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_get_discriminant(&v, &disc)) return 1;
    if (disc == 0) {
        *out = TL_STR_NULL;
        return 0;
    }
    if (avro_value_get_current_branch(&v, &b) || avro_value_get_string(&b, &p, &n)) return 1;
    *out = p && n ? (tl_str_t){p, n - 1} : (tl_str_t){"", 0};
    return 0;
}

static int get_long(avro_value_t *rec, int ix, int64_t *out) {
    avro_value_t v;
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_get_long(&v, out);
}

static int get_int(avro_value_t *rec, int ix, int *out) {
    avro_value_t v;
    int32_t x = 0;
    if (avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_get_int(&v, &x)) return 1;
    *out = x;
    return 0;
}

static int get_bool(avro_value_t *rec, int ix, int *out) {
    avro_value_t v;
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_get_boolean(&v, out);
}

static int get_enum(avro_value_t *rec, int ix, int *out) {
    avro_value_t v;
    return avro_value_get_by_index(rec, (size_t)ix, &v, NULL) || avro_value_get_enum(&v, out);
}

static int get_array(avro_value_t *rec, int ix, avro_value_t *arr, size_t *n, size_t max) {
    return avro_value_get_by_index(rec, (size_t)ix, arr, NULL) || avro_value_get_size(arr, n) || *n > max;
}

/* Reads a FieldValue into *e.  TL_ECORRUPT, TL_ENOMEM (*e empty). */
static int load_entry(avro_value_t *rec, entry_t *e) {
    tl_str_t value, event_id, via;
    int64_t version, ts;
    int platform, withdrawn;
    memset(e, 0, sizeof *e);
    if (get_str(rec, V_VALUE, &value) || get_long(rec, V_VERSION, &version) || get_long(rec, V_TS, &ts) ||
        get_enum(rec, V_PLATFORM, &platform) || get_str(rec, V_EVENT, &event_id) ||
        get_opt_str(rec, V_VIA, &via) || get_bool(rec, V_WITHDRAWN, &withdrawn))
        return TL_ECORRUPT;
    if (value.len > TL_FOLD_MAX_VALUE || event_id.len > TL_FOLD_MAX_ID || via.len > TL_FOLD_MAX_ID ||
        platform < 0 || platform >= TL_PLATFORM__COUNT)
        return TL_ECORRUPT;
    if (entry_make(e, value, event_id, via, version, ts, platform)) return TL_ENOMEM;
    e->withdrawn = (uint8_t)(withdrawn != 0);
    return TL_OK;
}

static int load_conv(avro_value_t *root, conv_t *c) {
    avro_value_t v, rec, arr, item;
    int disc = 0, status;
    size_t n;
    tl_str_t id, assignee, team;
    if (avro_value_get_by_index(root, S_CONV, &v, NULL) || avro_value_get_discriminant(&v, &disc))
        return TL_ECORRUPT;
    if (disc == 0) return TL_OK;
    if (avro_value_get_current_branch(&v, &rec) || get_str(&rec, C_ID, &id) ||
        get_long(&rec, C_VERSION, &c->version) || get_long(&rec, C_OPENED, &c->opened_at) ||
        get_long(&rec, C_LAST, &c->last_activity) || get_enum(&rec, C_STATUS, &status) ||
        get_opt_str(&rec, C_ASSIGNEE, &assignee) || get_opt_str(&rec, C_TEAM, &team))
        return TL_ECORRUPT;
    if (!tl_uuid_valid(id.ptr, id.len) || status < 0 || status > 1 || assignee.len > TL_FOLD_MAX_ID ||
        team.len > TL_FOLD_MAX_ID)
        return TL_ECORRUPT;
    memcpy(c->id, id.ptr, TL_UUID_STRLEN);
    c->id[TL_UUID_STRLEN] = 0;
    c->present = 1;
    c->closed = (uint8_t)status;
    if (sstr_make(&c->assignee, assignee) || sstr_make(&c->team, team)) return TL_ENOMEM;
    if (get_array(&rec, C_TAGS, &arr, &n, TL_FOLD_MAX_TAGS)) return TL_ECORRUPT;
    if (n && !(c->tags = calloc(TL_FOLD_MAX_TAGS, sizeof *c->tags))) return TL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *p = NULL;
        size_t len = 0;
        if (avro_value_get_by_index(&arr, i, &item, NULL) || avro_value_get_string(&item, &p, &len) || !p ||
            len < 2 || len - 1 > TL_FOLD_MAX_NAME)
            return TL_ECORRUPT;
        tl_str_t tag = {p, len - 1};
        if (i && str_cmp(sstr_view(c->tags[i - 1]), tag) >= 0) return TL_ECORRUPT;
        if (sstr_make(&c->tags[i], tag)) return TL_ENOMEM;
        c->ntags = (int)i + 1;
    }
    if (get_array(&rec, C_PLATFORMS, &arr, &n, TL_PLATFORM__COUNT)) return TL_ECORRUPT;
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        int p;
        if (avro_value_get_by_index(&arr, i, &item, NULL) || avro_value_get_enum(&item, &p) || p <= last ||
            p >= TL_PLATFORM__COUNT)
            return TL_ECORRUPT;
        c->platforms |= 1u << p;
        last = p;
    }
    return TL_OK;
}

static int load_fields(const tl_fold_t *f, avro_value_t *root, profile_t *p) {
    avro_value_t arr, rec, sub, item;
    size_t n, m;
    if (get_array(root, S_FIELDS, &arr, &n, TL_FOLD_MAX_FIELDS)) return TL_ECORRUPT;
    if (n && !(p->fields = calloc(n, sizeof *p->fields))) return TL_ENOMEM;
    p->capfields = (int)n;
    for (size_t i = 0; i < n; i++) {
        tl_str_t name;
        int cur;
        if (avro_value_get_by_index(&arr, i, &rec, NULL) || get_str(&rec, F_NAME, &name) ||
            get_int(&rec, F_CURRENT, &cur) || get_array(&rec, F_VALUES, &sub, &m, TL_FOLD_HISTORY))
            return TL_ECORRUPT;
        if (name.len == 0 || name.len > TL_FOLD_MAX_NAME || m == 0 || cur < -1 || cur >= (int)m ||
            (i && str_cmp(sstr_view(p->fields[i - 1]->name), name) >= 0))
            return TL_ECORRUPT;
        field_t *fl = calloc(1, sizeof *fl);
        if (!fl) return TL_ENOMEM;
        p->fields[p->nfields++] = fl;
        if (sstr_make(&fl->name, name)) return TL_ENOMEM;
        fl->key = is_key_field(f, name);
        fl->cur = cur;
        for (size_t j = 0; j < m; j++) {
            if (avro_value_get_by_index(&sub, j, &item, NULL)) return TL_ECORRUPT;
            int rc = load_entry(&item, &fl->v[j]);
            if (rc) return rc;
            fl->n = (int)j + 1;
        }
        if (cur >= 0 && fl->v[cur].withdrawn) return TL_ECORRUPT;
    }
    return TL_OK;
}

static int load_conflicts(avro_value_t *root, profile_t *p) {
    avro_value_t arr, rec, sub, item;
    size_t n, m;
    if (get_array(root, S_CONFLICTS, &arr, &n, TL_FOLD_MAX_CONFLICTS)) return TL_ECORRUPT;
    for (size_t i = 0; i < n; i++) {
        tl_str_t id, name;
        if (avro_value_get_by_index(&arr, i, &rec, NULL) || get_str(&rec, K_ID, &id) ||
            get_str(&rec, K_FIELD, &name) || get_array(&rec, K_CANDIDATES, &sub, &m, TL_FOLD_MAX_CANDIDATES))
            return TL_ECORRUPT;
        field_t *fl = field_find(p, name, NULL);
        if (!tl_uuid_valid(id.ptr, id.len) || !fl || conflict_on(p, fl) || m < 2) return TL_ECORRUPT;
        conflict_t *cf = calloc(1, sizeof *cf);
        if (!cf) return TL_ENOMEM;
        p->conflicts[p->nconflicts++] = cf;
        memcpy(cf->id, id.ptr, TL_UUID_STRLEN);
        cf->field = fl;
        if (get_long(&rec, K_VERSION, &cf->opened_version) || get_long(&rec, K_OPENED, &cf->opened_at))
            return TL_ECORRUPT;
        for (size_t j = 0; j < m; j++) {
            if (avro_value_get_by_index(&sub, j, &item, NULL)) return TL_ECORRUPT;
            int rc = load_entry(&item, &cf->c[j]);
            if (rc) return rc;
            cf->n = (int)j + 1;
        }
    }
    return TL_OK;
}

static int load_links(avro_value_t *root, profile_t *p) {
    avro_value_t arr, rec;
    size_t n;
    int merged = 0;
    if (get_array(root, S_LINKS, &arr, &n, TL_FOLD_MAX_LINKS)) return TL_ECORRUPT;
    for (size_t i = 0; i < n; i++) {
        tl_str_t customer, event, unevent, puid;
        int role, active, platform, evidence;
        int64_t at, unat = 0;
        avro_value_t v, b;
        int disc = 0;
        if (avro_value_get_by_index(&arr, i, &rec, NULL) || get_str(&rec, L_CUSTOMER, &customer) ||
            get_enum(&rec, L_ROLE, &role) || get_bool(&rec, L_ACTIVE, &active) ||
            get_str(&rec, L_EVENT, &event) || get_long(&rec, L_AT, &at) ||
            get_opt_str(&rec, L_UNEVENT, &unevent) || get_enum(&rec, L_PLATFORM, &platform) ||
            get_str(&rec, L_PUID, &puid) || get_enum(&rec, L_EVIDENCE, &evidence) ||
            avro_value_get_by_index(&rec, L_UNAT, &v, NULL) || avro_value_get_discriminant(&v, &disc) ||
            (disc == 1 && (avro_value_get_current_branch(&v, &b) || avro_value_get_long(&b, &unat))))
            return TL_ECORRUPT;
        /* An active link has no unlink half; an inactive one has both. */
        if (customer.len == 0 || customer.len > TL_FOLD_MAX_ID || event.len > TL_FOLD_MAX_ID ||
            unevent.len > TL_FOLD_MAX_ID || puid.len > TL_FOLD_MAX_ID || role < 0 || role > 1 ||
            platform < 0 || platform >= TL_PLATFORM__COUNT || evidence < 0 || evidence > TL_EVIDENCE_OTHER ||
            (active ? (unevent.ptr || disc) : (!unevent.ptr || !disc)) ||
            (active && role == ROLE_MERGED_INTO && merged++))
            return TL_ECORRUPT;
        link_t *l = &p->links[p->nlinks++];
        if (sstr_make(&l->customer, customer) || sstr_make(&l->link_event, event) ||
            sstr_make(&l->unlink_event, unevent) || sstr_make(&l->platform_user_id, puid))
            return TL_ENOMEM;
        l->role = (uint8_t)role;
        l->active = (uint8_t)(active != 0);
        l->platform = (uint8_t)platform;
        l->evidence = (uint8_t)evidence;
        l->linked_at = at;
        l->unlinked_at = unat;
    }
    return TL_OK;
}

/* Builds the state of a decoded record into *out (a new state). */
static int load_state(const tl_fold_t *f, avro_value_t *v, state_t **out) {
    tl_str_t tenant, customer;
    avro_value_t arr, item;
    size_t n;
    int rc = TL_ECORRUPT;
    if (get_str(v, S_TENANT, &tenant) || get_str(v, S_CUSTOMER, &customer) || !tenant.len || !customer.len)
        return TL_ECORRUPT;
    state_t *st = state_new(state_hash(tenant, customer), tenant, customer);
    if (!st) return TL_ENOMEM;
    if (get_long(v, S_VERSION, &st->version) || get_long(v, S_LAST_TS, &st->last_event_ts) ||
        st->version < 0)
        goto fail;
    if ((rc = load_conv(v, &st->conv))) goto fail;
    rc = TL_ECORRUPT;
    if (get_array(v, S_KEYS, &arr, &n, TL_FOLD_RECENT_KEYS)) goto fail;
    for (size_t i = 0; i < n; i++) {
        int64_t h;
        if (avro_value_get_by_index(&arr, i, &item, NULL) || avro_value_get_long(&item, &h)) goto fail;
        key_add(st, (uint64_t)h);
    }
    size_t nf, nc, nl;
    avro_value_t a1, a2, a3;
    if (get_array(v, S_FIELDS, &a1, &nf, TL_FOLD_MAX_FIELDS) ||
        get_array(v, S_CONFLICTS, &a2, &nc, TL_FOLD_MAX_CONFLICTS) ||
        get_array(v, S_LINKS, &a3, &nl, TL_FOLD_MAX_LINKS))
        goto fail;
    if (nf || nc || nl) {
        rc = TL_ENOMEM;
        if (!profile_get(st)) goto fail;
        if ((rc = load_fields(f, v, st->prof)) || (rc = load_conflicts(v, st->prof)) ||
            (rc = load_links(v, st->prof)))
            goto fail;
    }
    *out = st;
    return TL_OK;
fail:
    state_free(st);
    return rc;
}

int tl_fold_state_load_ids(tl_fold_t *f, tl_codec_t *codec, const void *data, size_t len,
                           tl_str_t *tenant_out, tl_str_t *customer_out) {
    avro_value_t *v;
    state_t *st;
    int rc = tl_codec_read(codec, data, len, &v);
    if (rc || (rc = load_state(f, v, &st))) return rc;
    tl_str_t tenant = st_tenant(st), customer = st_customer(st);
    size_t i = find(f, st->hash, tenant, customer);
    if (f->slots[i].st) {
        state_free(f->slots[i].st);     /* same key, same slot: replace in place */
        f->slots[i].st = st;
    } else {
        if (reserve_one(f)) {
            state_free(st);
            return TL_ENOMEM;
        }
        insert_at(f, find(f, st->hash, tenant, customer), st);
    }
    if (tenant_out) *tenant_out = tenant;
    if (customer_out) *customer_out = customer;
    return TL_OK;
}

int tl_fold_state_load(tl_fold_t *f, tl_codec_t *codec, const void *data, size_t len) {
    return tl_fold_state_load_ids(f, codec, data, len, NULL, NULL);
}

/* ---- views --------------------------------------------------------------- */

static void view_entry(const entry_t *e, tl_fold_value_t *out) {
    out->value = sstr_view(e->value);
    out->version = e->version;
    out->effective_ts = e->ts;
    out->platform = (tl_platform_t)e->platform;
    out->event_id = sstr_view(e->event_id);
    out->via = sstr_view(e->via);
    out->withdrawn = e->withdrawn;
}

int tl_fold_get_customer(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, tl_fold_customer_t *out) {
    const state_t *st = lookup(f, tenant, customer);
    if (!st) return TL_ENOTFOUND;
    memset(out, 0, sizeof *out);
    out->version = st->version;
    out->last_event_ts = st->last_event_ts;
    const link_t *m = merged_link(st);
    if (m) out->merged_into = sstr_view(m->customer);
    if (st->prof) {
        out->nfields = (size_t)st->prof->nfields;
        out->nconflicts = (size_t)st->prof->nconflicts;
        for (int i = 0; i < st->prof->nlinks; i++)
            out->nlinked += st->prof->links[i].active && st->prof->links[i].role == ROLE_ABSORBED;
    }
    const conv_t *c = &st->conv;
    if (c->present) {
        memcpy(out->conversation_id, c->id, sizeof c->id);
        out->conversation_version = c->version;
        out->conversation_closed = c->closed;
        out->assignee = sstr_view(c->assignee);
        out->team = sstr_view(c->team);
        out->platforms = c->platforms;
        out->ntags = (size_t)c->ntags;
        for (int i = 0; i < c->ntags; i++) out->tags[i] = sstr_view(c->tags[i]);
    }
    return TL_OK;
}

int tl_fold_get_field(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, tl_str_t field,
                      tl_fold_field_t *out) {
    const state_t *st = lookup(f, tenant, customer);
    const field_t *fl = st ? field_find(st->prof, field, NULL) : NULL;
    if (!fl) return TL_ENOTFOUND;
    memset(out, 0, sizeof *out);
    out->key = fl->key;
    out->has_current = fl->cur >= 0;
    if (fl->cur >= 0) view_entry(&fl->v[fl->cur], &out->current);
    out->nvalues = (size_t)fl->n;
    for (int i = 0; i < fl->n; i++) view_entry(&fl->v[i], &out->values[i]);
    return TL_OK;
}

int tl_fold_get_conflict(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, tl_str_t field,
                         tl_fold_conflict_t *out) {
    const state_t *st = lookup(f, tenant, customer);
    const field_t *fl = st ? field_find(st->prof, field, NULL) : NULL;
    const conflict_t *cf = fl ? conflict_on(st->prof, fl) : NULL;
    if (!cf) return TL_ENOTFOUND;
    memset(out, 0, sizeof *out);
    memcpy(out->id, cf->id, sizeof out->id);
    out->opened_version = cf->opened_version;
    out->ncandidates = (size_t)cf->n;
    for (int i = 0; i < cf->n; i++) view_entry(&cf->c[i], &out->candidates[i]);
    return TL_OK;
}

int tl_fold_customer_at(const tl_fold_t *f, size_t *cursor, tl_str_t *tenant, tl_str_t *customer) {
    for (size_t i = *cursor; i < f->cap; i++) {
        const state_t *st = f->slots[i].st;
        if (!st) continue;
        *tenant = (tl_str_t){st->tenant, st->tlen};
        *customer = (tl_str_t){st->customer, st->clen};
        *cursor = i + 1;
        return TL_OK;
    }
    *cursor = f->cap;
    return TL_ENOTFOUND;
}

int tl_fold_field_at(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, size_t i,
                     tl_str_t *name) {
    const state_t *st = lookup(f, tenant, customer);
    if (!st || !st->prof || i >= (size_t)st->prof->nfields) return TL_ENOTFOUND;
    *name = sstr_view(st->prof->fields[i]->name);
    return TL_OK;
}

int tl_fold_conflict_at(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, size_t i,
                        tl_str_t *field, tl_fold_conflict_t *out) {
    const state_t *st = lookup(f, tenant, customer);
    if (!st || !st->prof || i >= (size_t)st->prof->nconflicts) return TL_ENOTFOUND;
    const conflict_t *cf = st->prof->conflicts[i];
    *field = sstr_view(cf->field->name);
    memset(out, 0, sizeof *out);
    memcpy(out->id, cf->id, sizeof out->id);
    out->opened_version = cf->opened_version;
    out->ncandidates = (size_t)cf->n;
    for (int k = 0; k < cf->n; k++) view_entry(&cf->c[k], &out->candidates[k]);
    return TL_OK;
}

int tl_fold_link_at(const tl_fold_t *f, tl_str_t tenant, tl_str_t customer, size_t i,
                    tl_fold_link_t *out) {
    const state_t *st = lookup(f, tenant, customer);
    if (!st || !st->prof || i >= (size_t)st->prof->nlinks) return TL_ENOTFOUND;
    const link_t *l = &st->prof->links[i];
    memset(out, 0, sizeof *out);
    out->customer = sstr_view(l->customer);
    out->merged_into = l->role == ROLE_MERGED_INTO;
    out->active = l->active;
    out->platform = (tl_platform_t)l->platform;
    out->evidence = (tl_evidence_t)l->evidence;
    out->platform_user_id = sstr_view(l->platform_user_id);
    out->link_event = sstr_view(l->link_event);
    out->unlink_event = sstr_view(l->unlink_event);
    out->linked_at = l->linked_at;
    out->unlinked_at = l->unlinked_at;
    return TL_OK;
}

const char *tl_fold_ignore_text(tl_fold_ignore_t why) {
    switch (why) {
#define TL_FOLD_IGNORE_TEXT(name, text) case TL_FOLD_IGNORE_##name: return text;
        TL_FOLD_IGNORE_MAP(TL_FOLD_IGNORE_TEXT)
#undef TL_FOLD_IGNORE_TEXT
    }
    return "unknown";
}

const char *tl_fold_change_slug(tl_fold_change_kind_t kind) {
    switch (kind) {
#define TL_FOLD_CHANGE_SLUG(name, slug) case TL_FOLD_##name: return slug;
        TL_FOLD_CHANGE_MAP(TL_FOLD_CHANGE_SLUG)
#undef TL_FOLD_CHANGE_SLUG
    }
    return "unknown";
}
