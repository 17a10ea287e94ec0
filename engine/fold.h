/*
 * fold.h -- state' = fold(state, event): the one place threadline decides
 * what is true about a customer.
 *
 * The fold is pure and deterministic: it reads only the event and the state
 * (never a clock, never randomness), so the fold workers, replay and the
 * tests all compute byte-identical state from the same events in the same
 * partition order.  A tl_fold_t holds the states of many customers (those of
 * the partitions a worker owns) in a hash table keyed by tenant and
 * customer id.
 *
 * What this cut decides (DESIGN.md section 4):
 *   - versions: the customer's version counts applied events; the current
 *     conversation's version counts events applied to it;
 *   - ordering: effective_ts = clamp(occurred_at, received_at - max_skew,
 *     received_at), ties left to partition order;
 *   - dedup: the newest TL_FOLD_RECENT_KEYS idempotency keys per customer;
 *     a repeat is reported as a duplicate and changes nothing;
 *   - conversations: a conversational event after idle_timeout without
 *     activity, or after a close, opens a new conversation whose id is
 *     UUIDv5(tenant, customer, opening event id).
 */
#ifndef TL_FOLD_H
#define TL_FOLD_H

#include <stdint.h>

#include "buf.h"
#include "codec.h"
#include "event.h"

#define TL_FOLD_RECENT_KEYS 64

typedef struct tl_fold tl_fold_t;

typedef struct tl_fold_opts {
    int64_t max_skew_ms;        /* default 5 min */
    int64_t idle_timeout_ms;    /* default 30 min */
} tl_fold_opts_t;

/* What applying one event did. */
typedef struct tl_fold_result {
    int duplicate;              /* idempotency key seen: nothing changed */
    int64_t effective_ts;
    int64_t customer_version;
    char conversation_id[40];   /* "" when the event belongs to none */
    int64_t conversation_version;
    int conversation_opened;    /* this event opened conversation_id */
} tl_fold_result_t;

/* A fold holding no states.  NULL on allocation failure.  Not thread-safe:
 * one owner thread. */
tl_fold_t *tl_fold_new(const tl_fold_opts_t *opts);
void tl_fold_free(tl_fold_t *f);

/* The clamped effective timestamp of ev.  Cannot fail. */
int64_t tl_fold_effective_ts(const tl_fold_t *f, const tl_event_t *ev);

/* Applies ev to its customer's state (created on first sight) and describes
 * the outcome in *res.  Errors: TL_EINVAL (event lacks tenant or customer
 * id; nothing changed), TL_ENOMEM (nothing changed).  Owner thread. */
int tl_fold_apply(tl_fold_t *f, const tl_event_t *ev, tl_fold_result_t *res);

/* Appends the customer's state, Avro single-object encoded with codec (made
 * for tl_schema_state), to out.  TL_ENOTFOUND if the fold holds no state for
 * that customer. */
int tl_fold_state_encode(tl_fold_t *f, tl_codec_t *codec, tl_str_t tenant, tl_str_t customer,
                         tl_buf_t *out);

/* Loads a state record read from <prefix>.state, replacing any state held
 * for that customer.  Errors: decode errors from the codec (nothing
 * changed), TL_ENOMEM. */
int tl_fold_state_load(tl_fold_t *f, tl_codec_t *codec, const void *data, size_t len);

/* Forgets every state (after an aborted transaction, or a revoked
 * partition set).  Cannot fail. */
void tl_fold_clear(tl_fold_t *f);

/* Number of customers held. */
size_t tl_fold_count(const tl_fold_t *f);

#endif
