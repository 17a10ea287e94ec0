/*
 * dedup.h -- a bounded set of recently seen idempotency keys, with a small
 * value per key.
 *
 * The ingest gateway keeps one so that a platform's resend (WeChat resends a
 * message up to three times within seconds) gets the first answer again
 * without a second record in the log.  It is a cache, not the guarantee:
 * after a restart or for an old key it forgets, and the fold's per-customer
 * dedup (fold.h) is what guarantees an event is applied once.  Bounded
 * memory: the oldest key is forgotten first (FIFO ring), and lookups are
 * O(1) through an open-addressing index over the ring.
 */
#ifndef TL_DEDUP_H
#define TL_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#define TL_DEDUP_KEY_MAX 192
#define TL_DEDUP_VAL_MAX 128

typedef struct tl_dedup tl_dedup_t;

/* A set holding at most `capacity` keys.  NULL on allocation failure.
 * Not thread-safe: one owner thread. */
tl_dedup_t *tl_dedup_new(size_t capacity);
void tl_dedup_free(tl_dedup_t *d);

/* If key is in the set, copies its value (up to TL_DEDUP_VAL_MAX bytes) into
 * val, sets *vlen and returns 1; else returns 0.  Keys longer than
 * TL_DEDUP_KEY_MAX are never stored and never found. */
int tl_dedup_get(const tl_dedup_t *d, const char *key, size_t klen, void *val, size_t *vlen);

/* Inserts or replaces key with value, forgetting the oldest key when full.
 * Returns 0, or TL_ETOOBIG for an oversized key or value (nothing changed). */
int tl_dedup_put(tl_dedup_t *d, const char *key, size_t klen, const void *val, size_t vlen);

#endif
