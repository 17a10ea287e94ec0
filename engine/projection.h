/*
 * projection.h -- a thread that materialises <prefix>.changes into
 * PostgreSQL, exactly once in effect.
 *
 * Each batch is one PostgreSQL transaction holding the rows and the
 * consumer's offsets (table projection_offsets); on assignment the worker
 * seeks to the offsets stored there, never to Kafka's committed offsets.  So
 * a crash at any point replays at most the batch that did not commit, and
 * the row writes are idempotent besides (ON CONFLICT on event_id).  When
 * PostgreSQL is unreachable the worker pauses, retries with backoff, and
 * resumes from the stored offsets; the log keeps everything meanwhile.
 *
 * This cut projects the unified agent view (consumer "agent"); per-platform
 * views are further consumers of the same shape.
 */
#ifndef TL_PROJECTION_H
#define TL_PROJECTION_H

#include "config.h"
#include "kafka.h"

typedef struct tl_projection tl_projection_t;

/* Starts the worker thread for view `name` ("agent").  On success *out is
 * owned by the caller (tl_projection_stop).  Errors: TL_ENOMEM, TL_EKAFKA.
 * Any thread. */
int tl_projection_start(tl_kafka_t *kafka, const tl_config_t *cfg, const char *name,
                        tl_projection_t **out);

/* Stops after the current batch, leaves the group, joins, frees.  NULL ok. */
void tl_projection_stop(tl_projection_t *p);

#endif
