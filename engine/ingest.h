/*
 * ingest.h -- POST /v1/ingest/{platform}: adapter, Kafka, answer.
 *
 * The ingest path keeps the first promise of the failure contract: a
 * connector hears 202 only after the broker has acknowledged the event
 * (acks=all, idempotent producer).  The request waits, off the loop, for its
 * delivery report; its producer (engine/producer.h) signals the loop through
 * a pipe, so delivery reports run on the loop thread and no locks are needed.  If the
 * broker does not acknowledge within ack_timeout_ms the answer is 503 with
 * Retry-After, and the connector retries with the same message id, which the
 * fold recognises (idempotency key) if the first attempt did land.
 *
 * Before producing, each request's identities are resolved through the
 * identity index (engine/identity.h) -- a cache hit on the loop, a miss on
 * the thread pool -- so a customer linked by unionid, login or verified
 * phone keeps receiving events on the surviving id; when PostgreSQL is
 * unreachable the deterministic ids are used and ingest goes on.  A request
 * may yield several events (an app upload with a click stream, a login or
 * unionid link before a message); it is answered once every delivery
 * report is in, and never acknowledges an event the broker does not hold:
 * a partial failure is a 503 naming which events were held.
 */
#ifndef TL_INGEST_H
#define TL_INGEST_H

#include <uv.h>

#include "config.h"
#include "http.h"
#include "auth.h"
#include "kafka.h"

typedef struct tl_ingest tl_ingest_t;

/* Creates the producer and registers the ingest routes on http.  The
 * producer starts connecting in the background; nothing is sent until a
 * request arrives.  The JSON routes (web, app, mini_program, phone, api,
 * ...) require a connector key for their platform through auth, which
 * must outlive the ingest; WeChat and Douyin prove themselves with their
 * platforms' signatures instead.  On success *out is owned by the caller.
 * Errors: TL_ENOMEM, TL_EKAFKA (producer could not be created).  Loop
 * thread. */
int tl_ingest_new(uv_loop_t *loop, tl_http_t *http, tl_kafka_t *kafka, tl_auth_t *auth,
                  const tl_config_t *cfg, tl_ingest_t **out);

/* Waits up to timeout_ms for in-flight events, then closes the loop handles
 * (the loop must run once more to finish closing).  Loop thread. */
void tl_ingest_close(tl_ingest_t *in, int timeout_ms);
/* Frees it after close and after the loop ran.  NULL ok. */
void tl_ingest_free(tl_ingest_t *in);

/* Asks the cluster for the events topic's metadata (blocks up to
 * timeout_ms): 0 when a broker answered, else TL_EKAFKA_DOWN.  Any thread
 * (librdkafka handles are thread-safe). */
int tl_ingest_ping(tl_ingest_t *in, int timeout_ms);

#endif
