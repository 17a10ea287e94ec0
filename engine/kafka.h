/*
 * kafka.h -- threadline's view of its Kafka cluster.
 *
 * One tl_kafka_t per process answers three questions for every other module:
 * where the brokers are (a real cluster, or librdkafka's in-process mock),
 * what the topics are called (<prefix>.events, .changes, .state, .dlq) and
 * how a client must be configured to keep the contracts of DESIGN.md
 * section 2 (murmur2_random partitioning so every Kafka client routes a
 * customer to the same partition; idempotent acks=all producers).  Modules
 * create their own rd_kafka_t from tl_kafka_conf_*() so that each thread owns
 * its clients.
 *
 * The mock cluster is memory-only, keeps little, and does not honour
 * transactions: it exists so people can try threadline without Java, and
 * nothing that claims durability may run on it.
 */
#ifndef TL_KAFKA_H
#define TL_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

typedef struct tl_kafka tl_kafka_t;

typedef enum tl_topic {
    TL_TOPIC_EVENTS, TL_TOPIC_CHANGES, TL_TOPIC_STATE, TL_TOPIC_DLQ, TL_TOPIC__COUNT
} tl_topic_t;

/* Connects the cluster description: for "embedded" starts the mock cluster
 * (and warns on stderr that it is memory-only).  Does not contact a real
 * broker.  On success *out is owned by the caller (tl_kafka_free).  Errors:
 * TL_ENOMEM, TL_EKAFKA (mock cluster could not start).  Main thread. */
int tl_kafka_new(const tl_config_t *cfg, tl_kafka_t **out);

/* Stops the mock cluster if any.  NULL is a no-op.  After every client made
 * from it is destroyed. */
void tl_kafka_free(tl_kafka_t *k);

/* Bootstrap servers ("127.0.0.1:9092", or the mock's).  Borrowed. */
const char *tl_kafka_brokers(const tl_kafka_t *k);
/* Full topic name, e.g. "tl.events".  Borrowed, valid for k's life. */
const char *tl_kafka_topic(const tl_kafka_t *k, tl_topic_t t);
/* "<prefix>-<suffix>" into out (consumer group names). */
void tl_kafka_group(const tl_kafka_t *k, const char *suffix, char *out, size_t n);

/* A new client configuration with bootstrap servers and threadline's common
 * settings.  Caller owns it (rd_kafka_conf_destroy, or hand it to
 * rd_kafka_new).  NULL on allocation failure. */
rd_kafka_conf_t *tl_kafka_conf(const tl_kafka_t *k);
/* ... plus producer settings: idempotence, acks=all, murmur2_random,
 * message.timeout.ms = timeout_ms. */
rd_kafka_conf_t *tl_kafka_conf_producer(const tl_kafka_t *k, int timeout_ms);

/* A consumer in group `group` as both workers need it: read_committed, no
 * auto-commit (offsets travel in a Kafka or PostgreSQL transaction),
 * earliest on first start, static membership as "<group>-<instance>" so a
 * restarted process takes its partitions back at once, rebalances through
 * rebalance_cb with opaque, and the main queue forwarded to the consumer
 * queue.  NULL on failure (logged, naming `who`).  Any thread. */
rd_kafka_t *tl_kafka_consumer_new(const tl_kafka_t *k, const char *who, const char *group,
                                  const char *instance,
                                  void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                       rd_kafka_topic_partition_list_t *, void *),
                                  void *opaque);

/* Creates the four topics with `partitions` partitions and the configs of
 * DESIGN.md section 2 (events: retention unlimited; state: compacted), or
 * checks they exist; an existing topic is not an error.  Blocks up to
 * timeout_ms.  Errors: TL_EKAFKA_DOWN (broker unreachable), TL_EKAFKA (with a
 * log line naming the topic and the broker's reason).  Any thread. */
int tl_kafka_ensure_topics(tl_kafka_t *k, int partitions, int timeout_ms);

/* Deletes the four topics of this prefix (scratch prefixes of tests and
 * benchmarks; never the production log).  A topic already gone is not an
 * error.  Blocks up to timeout_ms.  Errors: TL_EKAFKA_DOWN, TL_EKAFKA (each
 * logged with the broker's reason).  Any thread. */
int tl_kafka_delete_topics(tl_kafka_t *k, int timeout_ms);

/* Partition count of a topic via metadata on client rk; <0 on error. */
int tl_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms);

/* Milliseconds left until deadline_ms on the monotonic clock (never
 * negative); with tl_kafka_now_ms() it times batch windows.  Cannot fail. */
int64_t tl_kafka_now_ms(void);
int tl_kafka_left_ms(int64_t deadline_ms);

/* Converts a librdkafka error into threadline's error type.  Cannot fail. */
int tl_kafka_err(rd_kafka_resp_err_t err);

#endif
