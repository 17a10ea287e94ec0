/*
 * resident.h -- which customers' fold states are in memory, and where the
 * others can be found.
 *
 * A fold worker may own more customers than it should hold in memory.
 * Every state it commits is also in the compacted <prefix>.state topic, so
 * an idle customer can be dropped from memory (evicted) as long as we
 * remember the offset of its latest state record; when that customer's next
 * event comes, the worker reads that one record back (restore on demand).
 * This table remembers, per customer id (the Kafka key), the tenant, the
 * partition and offset of the newest durable state, whether the state is in
 * memory, and when it was last used.  Memory per customer is a few dozen
 * bytes instead of a whole state.
 *
 * Least-recently-used order is kept lazily: each use appends (entry, stamp)
 * to a queue, and a queue item whose stamp is older than its entry's is
 * stale and skipped.  The queue is compacted when stale items dominate.
 */
#ifndef TL_RESIDENT_H
#define TL_RESIDENT_H

#include <stdint.h>

#include "event.h"

typedef struct tl_resident tl_resident_t;

typedef enum tl_resident_state {
    TL_RESIDENT_UNKNOWN,    /* never seen: a new customer */
    TL_RESIDENT_HELD,       /* state in memory */
    TL_RESIDENT_EVICTED     /* state only in .state, at the recorded offset */
} tl_resident_state_t;

/* An empty table; NULL on allocation failure.  One owner thread. */
tl_resident_t *tl_resident_new(void);
void tl_resident_free(tl_resident_t *r);
/* Forgets everything (after a rebalance or an aborted transaction). */
void tl_resident_clear(tl_resident_t *r);

/* Records that the customer's state is in memory and was used at `stamp`
 * (stamps increase).  Creates the entry.  TL_ENOMEM on failure. */
int tl_resident_use(tl_resident_t *r, tl_str_t customer, tl_str_t tenant, uint64_t stamp);

/* Records that the newest durable state of customer is at
 * (partition, offset).  TL_ENOTFOUND if the customer has no entry. */
int tl_resident_durable(tl_resident_t *r, tl_str_t customer, int32_t partition, int64_t offset);

/* Where the customer's state is; for EVICTED also its record's position. */
tl_resident_state_t tl_resident_where(const tl_resident_t *r, tl_str_t customer,
                                      int32_t *partition, int64_t *offset);

/* The least recently used held customer whose state is durable: returns 1,
 * marks it EVICTED and sets *customer and *tenant (borrowed from the table,
 * valid until it changes), or 0 if there is none.  The caller then drops
 * the state from the fold. */
int tl_resident_evict_one(tl_resident_t *r, tl_str_t *customer, tl_str_t *tenant);

/* The tenant recorded for customer (borrowed from the table), or
 * TL_STR_NULL when the customer has no entry. */
tl_str_t tl_resident_tenant(const tl_resident_t *r, tl_str_t customer);

/* Number of customers whose state is held in memory. */
size_t tl_resident_held(const tl_resident_t *r);

#endif
