/*
 * fold_worker.h -- a thread that folds <prefix>.events into .changes and
 * .state, exactly once.
 *
 * Consumer group "<prefix>-fold", read_committed.  Per batch, one Kafka
 * transaction holds the Change records, the updated CustomerState records
 * and the input offsets (KIP-447 offsets-in-transaction), so after a crash a
 * restarted worker resumes at the last committed batch and no reader of
 * .changes sees an event twice or loses one.  On assignment the worker
 * restores its partitions' states from the compacted .state topic.  Events
 * that cannot be decoded or applied go to <prefix>.dlq with the reason in
 * headers; the partition keeps moving.
 */
#ifndef TL_FOLD_WORKER_H
#define TL_FOLD_WORKER_H

#include "change.h"
#include "config.h"
#include "fold.h"
#include "kafka.h"

typedef struct tl_fold_worker tl_fold_worker_t;

/* Starts the worker thread.  On success *out is owned by the caller
 * (tl_fold_worker_stop).  Errors: TL_ENOMEM, TL_EKAFKA (clients could not be
 * created).  Any thread. */
int tl_fold_worker_start(tl_kafka_t *kafka, const tl_config_t *cfg, tl_fold_worker_t **out);

/* 1 once the worker hit a fatal error and stopped (e.g. fenced). */
int tl_fold_worker_failed(const tl_fold_worker_t *w);

/* Asks the worker to finish its batch, leave the group and exit; joins and
 * frees.  NULL ok.  Not from the worker's thread. */
void tl_fold_worker_stop(tl_fold_worker_t *w);

/* Room for one Change's fold_changes and the candidates of its conflicts,
 * sized by the fold's own bounds. */
typedef struct tl_fold_change_out {
    tl_change_fold_t fc[2 * TL_FOLD_MAX_FIELDS + 2 * TL_FOLD_MAX_CONFLICTS + TL_FOLD_MAX_LINKS + 8];
    tl_change_candidate_t cand[TL_FOLD_MAX_CONFLICTS + 4][TL_FOLD_MAX_CANDIDATES];
} tl_fold_change_out_t;

/* Fills *ch with the Change the worker writes for ev, read at
 * partition/offset with the bytes payload, right after tl_fold_apply gave
 * res: the origin of a field's current value and every candidate of a
 * conflict are read from fold, so call it before the next apply.  Strings
 * point into ev, res, fold, payload and *o (which must outlive *ch).  The
 * replay builds the same Change with it to recompute the projections.
 * Cannot fail.  The fold's thread. */
void tl_fold_worker_change(const tl_fold_t *fold, const tl_event_t *ev, const tl_fold_result_t *res,
                           int32_t partition, int64_t offset, tl_str_t payload, tl_fold_change_out_t *o,
                           tl_change_t *ch);

#endif
