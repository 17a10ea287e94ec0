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

#include "config.h"
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

#endif
