/*
 * producer.h -- an idempotent producer whose delivery reports run on a
 * libuv loop.
 *
 * Ingest and the agent writes both answer a request only once the broker
 * holds its event (DESIGN.md section 9), and both do so from the loop
 * thread, without locks.  This module is what they share: one rd_kafka_t
 * configured by tl_kafka_conf_producer() (idempotent, acks=all,
 * murmur2_random), one topic handle, and a wake-up path from librdkafka to
 * the loop.  librdkafka writes a byte to a non-blocking pipe whenever its
 * main queue gets something (rd_kafka_queue_io_event_enable); a uv_poll_t on
 * the pipe's read end drains the pipe and calls rd_kafka_poll(), which runs
 * the delivery reports on the loop thread.  A 100 ms timer polls as well, so
 * a wake-up that is missed for any reason only delays a report.
 *
 * Each user keeps its own producer (a burst of connector traffic never
 * queues in front of an agent's reply) and its own bookkeeping: what is
 * produced is opaque here, and the report hands back the pointer given to
 * tl_producer_send().
 */
#ifndef TL_PRODUCER_H
#define TL_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "kafka.h"

typedef struct tl_producer tl_producer_t;

/* The delivery report of one record, on the loop thread.  msg is the
 * pointer given to tl_producer_send().  err 0: the broker holds the record
 * at (partition, offset) (offset < 0: acknowledged without an offset, an
 * idempotent retry it already held).  err < 0: not acknowledged in time,
 * nothing may be assumed written; why is librdkafka's reason (static
 * string).  ud is the one given to tl_producer_new(). */
typedef void (*tl_producer_report_cb)(void *ud, void *msg, int err, const char *why,
                                      int32_t partition, int64_t offset);

/* Creates a producer to `topic` of kafka whose records time out after
 * timeout_ms, and starts its poll handle and timer on loop.  who names the
 * owner in log lines.  report is called once per record accepted by
 * tl_producer_send.  On success *out is owned by the caller
 * (tl_producer_close, then tl_producer_free).  Errors: TL_ENOMEM, TL_EKAFKA
 * (librdkafka refused the configuration; logged); nothing is left behind.
 * Loop thread. */
int tl_producer_new(uv_loop_t *loop, tl_kafka_t *kafka, tl_topic_t topic, int timeout_ms,
                    const char *who, tl_producer_report_cb report, void *ud,
                    tl_producer_t **out);

/* Produces value (copied) keyed by key (copied) to a partition chosen by
 * the key.  Returns 0 and later reports msg exactly once; or
 * TL_EKAFKA_DOWN (the producer's queue refused it) with *why set to
 * librdkafka's reason (static string), and never reports msg.  Loop
 * thread. */
int tl_producer_send(tl_producer_t *p, const void *key, size_t keylen, const void *value,
                     size_t len, void *msg, const char **why);

/* Asks the brokers for the topic's metadata: 0 when it is there and
 * healthy, TL_EKAFKA_DOWN otherwise.  Blocks up to timeout_ms.  Loop
 * thread. */
int tl_producer_ping(tl_producer_t *p, int timeout_ms);

/* Waits up to timeout_ms for records in flight (their reports run), then
 * stops and closes the loop handles.  Loop thread. */
void tl_producer_close(tl_producer_t *p, int timeout_ms);

/* Frees p after tl_producer_close and after the loop ran once more (the
 * handles' close has completed).  NULL is a no-op.  Loop thread. */
void tl_producer_free(tl_producer_t *p);

#endif
