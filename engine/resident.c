/*
 * resident.c -- the residency table (see resident.h).
 *
 * Entries live in a growable array (stable indexes, never removed until
 * clear); an open-addressing index maps a customer id to its entry.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "resident.h"

typedef struct entry {
    char *customer, *tenant;        /* one allocation: customer\0tenant\0 */
    uint32_t clen, tlen;
    uint64_t hash;
    int32_t partition;
    int64_t offset;                 /* -1: no durable state yet */
    uint64_t stamp;
    int held;
} entry_t;

typedef struct lru_item { uint32_t entry; uint64_t stamp; } lru_item_t;

struct tl_resident {
    entry_t *e;
    uint32_t n, cap;
    uint32_t *index;                /* entry + 1; 0 = empty */
    size_t mask;
    lru_item_t *q;
    size_t qhead, qlen, qcap;       /* items q[qhead .. qlen) */
    size_t held;
};

static uint64_t hash(tl_str_t s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < s.len; i++) h = (h ^ (uint8_t)s.ptr[i]) * 0x100000001b3ULL;
    return h ^ (h >> 31);
}

tl_resident_t *tl_resident_new(void) {
    tl_resident_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->mask = 1023;
    r->index = calloc(r->mask + 1, sizeof *r->index);
    if (!r->index) {
        free(r);
        return NULL;
    }
    return r;
}

void tl_resident_clear(tl_resident_t *r) {
    for (uint32_t i = 0; i < r->n; i++) free(r->e[i].customer);
    r->n = 0;
    memset(r->index, 0, (r->mask + 1) * sizeof *r->index);
    r->qhead = r->qlen = 0;
    r->held = 0;
}

void tl_resident_free(tl_resident_t *r) {
    if (!r) return;
    tl_resident_clear(r);
    free(r->e);
    free(r->index);
    free(r->q);
    free(r);
}

static size_t slot(const tl_resident_t *r, uint64_t h, tl_str_t customer) {
    size_t i = h & r->mask;
    while (r->index[i]) {
        const entry_t *e = &r->e[r->index[i] - 1];
        if (e->hash == h && e->clen == customer.len && memcmp(e->customer, customer.ptr, customer.len) == 0)
            break;
        i = (i + 1) & r->mask;
    }
    return i;
}

static entry_t *find(const tl_resident_t *r, tl_str_t customer) {
    uint32_t k = r->index[slot(r, hash(customer), customer)];
    return k ? &r->e[k - 1] : NULL;
}

static int grow_index(tl_resident_t *r) {
    size_t nmask = r->mask * 2 + 1;
    uint32_t *ni = calloc(nmask + 1, sizeof *ni);
    if (!ni) return TL_ENOMEM;
    for (uint32_t k = 0; k < r->n; k++) {
        size_t i = r->e[k].hash & nmask;
        while (ni[i]) i = (i + 1) & nmask;
        ni[i] = k + 1;
    }
    free(r->index);
    r->index = ni;
    r->mask = nmask;
    return TL_OK;
}

/* Drops stale queue items when they are most of the queue. */
static void compact_queue(tl_resident_t *r) {
    size_t j = 0;
    for (size_t i = r->qhead; i < r->qlen; i++) {
        lru_item_t it = r->q[i];
        if (r->e[it.entry].stamp == it.stamp && r->e[it.entry].held) r->q[j++] = it;
    }
    r->qhead = 0;
    r->qlen = j;
}

static int push(tl_resident_t *r, uint32_t k, uint64_t stamp) {
    if (r->qlen == r->qcap) {
        if (r->qlen - r->qhead < r->qcap / 2 && r->qcap) {
            compact_queue(r);
        } else {
            size_t ncap = r->qcap ? r->qcap * 2 : 1024;
            lru_item_t *nq = realloc(r->q, ncap * sizeof *nq);
            if (!nq) return TL_ENOMEM;
            r->q = nq;
            r->qcap = ncap;
        }
    }
    r->q[r->qlen++] = (lru_item_t){k, stamp};
    return TL_OK;
}

int tl_resident_use(tl_resident_t *r, tl_str_t customer, tl_str_t tenant, uint64_t stamp) {
    uint64_t h = hash(customer);
    size_t i = slot(r, h, customer);
    if (!r->index[i]) {
        if ((size_t)(r->n + 1) * 2 > r->mask + 1) {
            if (grow_index(r)) return TL_ENOMEM;
            i = slot(r, h, customer);
        }
        if (r->n == r->cap) {
            uint32_t ncap = r->cap ? r->cap * 2 : 1024;
            entry_t *ne = realloc(r->e, ncap * sizeof *ne);
            if (!ne) return TL_ENOMEM;
            r->e = ne;
            r->cap = ncap;
        }
        char *mem = malloc(customer.len + tenant.len + 2);
        if (!mem) return TL_ENOMEM;
        memcpy(mem, customer.ptr, customer.len);
        mem[customer.len] = 0;
        memcpy(mem + customer.len + 1, tenant.ptr, tenant.len);
        mem[customer.len + 1 + tenant.len] = 0;
        r->e[r->n] = (entry_t){mem, mem + customer.len + 1, (uint32_t)customer.len,
                               (uint32_t)tenant.len, h, -1, -1, 0, 0};
        r->index[i] = ++r->n;
    }
    uint32_t k = r->index[i] - 1;
    entry_t *e = &r->e[k];
    if (push(r, k, stamp)) return TL_ENOMEM;
    if (!e->held) r->held++;
    e->held = 1;
    e->stamp = stamp;
    return TL_OK;
}

int tl_resident_durable(tl_resident_t *r, tl_str_t customer, int32_t partition, int64_t offset) {
    entry_t *e = find(r, customer);
    if (!e) return TL_ENOTFOUND;
    e->partition = partition;
    e->offset = offset;
    return TL_OK;
}

tl_resident_state_t tl_resident_where(const tl_resident_t *r, tl_str_t customer,
                                      int32_t *partition, int64_t *offset) {
    const entry_t *e = find(r, customer);
    if (!e) return TL_RESIDENT_UNKNOWN;
    if (e->held) return TL_RESIDENT_HELD;
    *partition = e->partition;
    *offset = e->offset;
    return TL_RESIDENT_EVICTED;
}

int tl_resident_evict_one(tl_resident_t *r, tl_str_t *customer, tl_str_t *tenant) {
    /* Read from i, write kept items at keep: stale items are dropped, items
     * whose state is not durable yet stay (in order) for a later round. */
    size_t i = r->qhead, keep = r->qhead;
    int found = 0;
    while (i < r->qlen && !found) {
        lru_item_t it = r->q[i++];
        entry_t *e = &r->e[it.entry];
        if (e->stamp != it.stamp || !e->held) continue;
        if (e->offset < 0) {
            r->q[keep++] = it;
            continue;
        }
        e->held = 0;
        r->held--;
        *customer = (tl_str_t){e->customer, e->clen};
        *tenant = (tl_str_t){e->tenant, e->tlen};
        found = 1;
    }
    if (keep < i) {
        memmove(r->q + keep, r->q + i, (r->qlen - i) * sizeof *r->q);
        r->qlen = keep + (r->qlen - i);
    }
    return found;
}

tl_str_t tl_resident_tenant(const tl_resident_t *r, tl_str_t customer) {
    const entry_t *e = find(r, customer);
    return e ? (tl_str_t){e->tenant, e->tlen} : TL_STR_NULL;
}

size_t tl_resident_held(const tl_resident_t *r) { return r->held; }
