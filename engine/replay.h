/*
 * replay.h -- re-folding <prefix>.events from the log alone: the oracle
 * every derived copy (the .state topic, the PostgreSQL views) must equal,
 * and the reader behind `threadline replay`, `verify`, `state`, `audit`
 * and `export` (DESIGN.md section 7).
 *
 * Shape.  A replay is a read-only consumer: it assigns partitions
 * explicitly (no group membership, never a commit), reads read_committed
 * from the beginning or from given offsets up to the end offsets captured
 * when it starts (later records are not read, so a replay of a live log
 * ends), and applies every record with tl_fold_apply, exactly as the fold
 * worker does:
 *
 *   - a record that does not decode, whose key is not the event's
 *     customer_id, or that tl_fold_apply refuses with TL_EINVAL is what the
 *     fold worker sends to the dead-letter topic: counted as rejected, not
 *     folded;
 *   - the events a result asks to emit (identity hand-overs) are NOT
 *     produced: they are in the log already and the replay folds them when
 *     it reads them (fold.h).
 *
 * Filters.  customers: only those record keys, read only from their
 * partitions (murmur2_random of the key, as every producer routes them).
 * as_of_ms: only events whose received_at (the gateway's clock, the time
 * threadline was told) is at or before it; later ones are skipped.  The
 * client clock (occurred_at) and effective_ts are not used: a client may
 * stamp a message in the past, but the engine could not have known it
 * before it was received.  A filtered replay folds the sub-sequence of the
 * log that passes, in log order.
 *
 * Throughput.  Records are consumed in batches from the consumer queue
 * (rd_kafka_consume_batch_queue), decoded once into the codec's reusable
 * storage, and folded without per-record allocation; the callback sees
 * borrowed views.
 *
 * Threads: a replay runs on the calling thread; the callback runs on it.
 */
#ifndef TL_REPLAY_H
#define TL_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"
#include "fold.h"
#include "kafka.h"

#define TL_REPLAY_MAX_PARTITIONS 1024
#define TL_REPLAY_NO_LIMIT INT64_MAX

/* Called for every record folded (duplicates and ignored events included),
 * in log order per partition.  ev and res are borrowed until the call
 * returns.  A non-zero return stops the replay with that error. */
typedef int (*tl_replay_cb)(void *opaque, const tl_event_t *ev, const tl_fold_result_t *res,
                            int32_t partition, int64_t offset);

typedef struct tl_replay_opts {
    const tl_str_t *customers;  /* NULL/0: every customer */
    size_t ncustomers;
    int64_t as_of_ms;           /* TL_REPLAY_NO_LIMIT: no time limit */
    /* Start offsets per partition (from[p]); NULL: from the beginning.
     * A negative entry means the beginning too. */
    const int64_t *from;
    size_t nfrom;
    int progress;               /* draw progress on stderr if it is a terminal */
    int timeout_ms;             /* for metadata and end offsets; six times it
                                   without a record fails the replay */
} tl_replay_opts_t;

typedef struct tl_replay_stats {
    int64_t records;            /* read from the log in range */
    int64_t folded;             /* applied with tl_fold_apply */
    int64_t duplicates;         /* of those, duplicates */
    int64_t filtered;           /* skipped by the customer or time filter */
    int64_t rejected;           /* what the fold worker dead-letters */
    int64_t elapsed_ms;
    double events_per_s;        /* records / elapsed */
} tl_replay_stats_t;

/* Sets opts to: every customer, no time limit, from the beginning, no
 * progress, 10 s timeout.  Cannot fail. */
void tl_replay_opts_init(tl_replay_opts_t *opts);

/* A fold configured as the fold workers are (--max-skew-ms,
 * --idle-timeout-ms, --key-fields).  NULL with a message in err on a bad
 * --key-fields or allocation failure.  Any thread. */
tl_fold_t *tl_replay_fold_new(const tl_config_t *cfg, char *err, size_t errlen);

/* Replays <prefix>.events of cluster k into fold (which may already hold
 * states: they are folded onto), calling cb (may be NULL) after every
 * record folded.  Errors: TL_EKAFKA_DOWN (broker unreachable or the topic
 * missing, or no record for 6 x opts.timeout_ms while some are due), TL_EKAFKA, TL_ENOMEM, or cb's error; a message in err.  On
 * error the fold holds what was folded so far.  Calling thread. */
int tl_replay_run(tl_kafka_t *k, tl_fold_t *fold, const tl_replay_opts_t *opts, tl_replay_cb cb,
                  void *opaque, tl_replay_stats_t *stats, char *err, size_t errlen);

/* The partition a customer's records go to among n: murmur2_random of the
 * key, as the Java client and every producer of threadline compute it.
 * Any thread; cannot fail for n > 0. */
int32_t tl_replay_partition(tl_str_t key, int32_t n);

/* Parses a point in time: RFC 3339 ("2026-11-21T18:00:00Z",
 * "2026-11-21T18:00:00.250+08:00"; 'T' or a space, 't'/'z' accepted) or
 * milliseconds since the epoch (digits only).  Sets *ms.  TL_EINVAL with a
 * message in err naming what is wrong (which part, out of range, trailing
 * text).  Any thread. */
int tl_replay_parse_time(const char *s, int64_t *ms, char *err, size_t errlen);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-21T18:00:00.250Z") into out (at least 32 bytes).  Any thread;
 * cannot fail. */
void tl_replay_format_time(int64_t ms, char *out, size_t n);

#endif
