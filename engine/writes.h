/*
 * writes.h -- the agent side's events: replies, assignments, closes and
 * conflict resolutions, produced to <prefix>.events.
 *
 * The REST write endpoints build a tl_event_t (platform AGENT, keyed by the
 * conversation's customer) and hand it here.  Like ingest, this module owns
 * a tl_producer_t (producer.h: idempotent, acks=all, delivery reports on the
 * loop thread), so the answer (202 with the event's position) is sent only
 * once the broker holds the event, and no locks are needed.  It is a
 * separate producer from ingest's so that a burst of connector traffic
 * never queues in front of an agent's reply, and so the two modules can
 * change independently.
 *
 * Idempotency: a write carrying an `Idempotency-Key` gets an event id
 * derived from (tenant, key id, Idempotency-Key) (UUIDv5) and the event's
 * idempotency_key "agent:<that id>", so a resend yields the same event and
 * the fold applies it once; acknowledged writes are also remembered in a
 * bounded recent-key cache, so a resend within it gets the first answer
 * without a second record in the log.
 */
#ifndef TL_WRITES_H
#define TL_WRITES_H

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "event.h"
#include "kafka.h"
#include "uuid.h"

typedef struct tl_writes tl_writes_t;

/* What a write produced.  offset < 0: the broker acknowledged without an
 * offset (an idempotent retry it already held); the event is durable. */
typedef struct tl_writes_ack {
    char event_id[TL_UUID_STRLEN + 1];
    int32_t partition;
    int64_t offset;
    int duplicate;              /* answered from the recent-key cache */
} tl_writes_ack_t;

/* Called once per accepted tl_writes_produce, on the loop thread: err 0
 * with ack filled, or TL_EKAFKA_DOWN (not acknowledged in time; nothing may
 * be assumed written) with why. */
typedef void (*tl_writes_cb)(void *ud, int err, const tl_writes_ack_t *ack, const char *why);

/* Creates the producer on loop.  Errors: TL_ENOMEM, TL_EKAFKA.  Loop
 * thread. */
int tl_writes_new(uv_loop_t *loop, tl_kafka_t *kafka, const tl_config_t *cfg, tl_writes_t **out);

/* Waits up to timeout_ms for in-flight writes (their callbacks run), then
 * closes the loop handles.  Loop thread. */
void tl_writes_close(tl_writes_t *w, int timeout_ms);
/* Frees it after close and after the loop ran once more.  NULL ok. */
void tl_writes_free(tl_writes_t *w);

/* Encodes ev and produces it keyed by ev->customer_id.  ev->event_id must be
 * set; its strings need stay valid only during the call.  dedup_key (may be
 * NULL) names the write in the recent-key cache: a key acknowledged before
 * is answered at once with the first ack (duplicate = 1) and nothing is
 * produced.  Returns 0 and later calls cb exactly once; or an error
 * (TL_ENOMEM, TL_EINVAL: could not encode; TL_EKAFKA_DOWN: the producer
 * queue refused it) and never calls cb.  Loop thread. */
int tl_writes_produce(tl_writes_t *w, const tl_event_t *ev, const char *dedup_key,
                      tl_writes_cb cb, void *ud);

#endif
