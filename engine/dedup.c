/*
 * dedup.c -- bounded FIFO key set (see dedup.h).
 *
 * Slots live in a ring; `index` maps hash -> slot+1 (0 = empty) with linear
 * probing and is sized to twice the capacity so probes stay short.  When the
 * ring wraps, the evicted slot's index entry is removed with backward-shift
 * deletion, so no tombstones accumulate.
 */
#include <stdlib.h>
#include <string.h>

#include "dedup.h"
#include "error.h"

typedef struct slot {
    uint64_t hash;
    uint16_t klen, vlen;
    char key[TL_DEDUP_KEY_MAX];
    char val[TL_DEDUP_VAL_MAX];
    int used;
} slot_t;

struct tl_dedup {
    size_t cap, next;       /* ring */
    slot_t *slots;
    size_t mask;            /* index size - 1 */
    uint32_t *index;
};

static uint64_t hash(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;              /* FNV-1a, then mixed */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ULL;
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; h ^= h >> 33;
    return h;
}

tl_dedup_t *tl_dedup_new(size_t capacity) {
    tl_dedup_t *d = calloc(1, sizeof *d);
    if (!d || capacity == 0) goto fail;
    size_t isz = 16;
    while (isz < capacity * 2) isz *= 2;
    d->cap = capacity;
    d->mask = isz - 1;
    d->slots = calloc(capacity, sizeof *d->slots);
    d->index = calloc(isz, sizeof *d->index);
    if (!d->slots || !d->index) goto fail;
    return d;
fail:
    tl_dedup_free(d);
    return NULL;
}

void tl_dedup_free(tl_dedup_t *d) {
    if (!d) return;
    free(d->slots);
    free(d->index);
    free(d);
}

/* Position in index of key, or of the empty cell where it would go. */
static size_t probe(const tl_dedup_t *d, uint64_t h, const char *key, size_t klen) {
    size_t i = h & d->mask;
    for (;;) {
        uint32_t s = d->index[i];
        if (!s) return i;
        const slot_t *sl = &d->slots[s - 1];
        if (sl->hash == h && sl->klen == klen && memcmp(sl->key, key, klen) == 0) return i;
        i = (i + 1) & d->mask;
    }
}

int tl_dedup_get(const tl_dedup_t *d, const char *key, size_t klen, void *val, size_t *vlen) {
    if (klen > TL_DEDUP_KEY_MAX) return 0;
    size_t i = probe(d, hash(key, klen), key, klen);
    if (!d->index[i]) return 0;
    const slot_t *sl = &d->slots[d->index[i] - 1];
    memcpy(val, sl->val, sl->vlen);
    *vlen = sl->vlen;
    return 1;
}

static void index_remove(tl_dedup_t *d, size_t i) {
    /* Backward-shift deletion for linear probing. */
    size_t j = i;
    for (;;) {
        d->index[i] = 0;
        for (;;) {
            j = (j + 1) & d->mask;
            if (!d->index[j]) return;
            size_t home = d->slots[d->index[j] - 1].hash & d->mask;
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) break;
        }
        d->index[i] = d->index[j];
        i = j;
    }
}

int tl_dedup_put(tl_dedup_t *d, const char *key, size_t klen, const void *val, size_t vlen) {
    if (klen > TL_DEDUP_KEY_MAX || vlen > TL_DEDUP_VAL_MAX) return TL_ETOOBIG;
    uint64_t h = hash(key, klen);
    size_t i = probe(d, h, key, klen);
    if (d->index[i]) {
        slot_t *sl = &d->slots[d->index[i] - 1];
        memcpy(sl->val, val, vlen);
        sl->vlen = (uint16_t)vlen;
        return TL_OK;
    }
    slot_t *sl = &d->slots[d->next];
    if (sl->used) {
        index_remove(d, probe(d, sl->hash, sl->key, sl->klen));
        i = probe(d, h, key, klen);
    }
    sl->used = 1;
    sl->hash = h;
    sl->klen = (uint16_t)klen;
    memcpy(sl->key, key, klen);
    sl->vlen = (uint16_t)vlen;
    memcpy(sl->val, val, vlen);
    d->index[i] = (uint32_t)(d->next + 1);
    d->next = (d->next + 1) % d->cap;
    return TL_OK;
}
