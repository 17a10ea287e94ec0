/*
 * rest.h -- the read side of the REST API: conversations, customers, and the
 * operator endpoints (healthz, readyz, metrics).
 *
 * Queries run on libuv's thread pool, each pool thread with its own
 * PostgreSQL connection, so a slow query never stalls the loop that answers
 * ingest.  PostgreSQL builds the JSON (json_build_object), which keeps row
 * shaping next to the query and off our heap.  `?after=P:O` waits, bounded,
 * until the projection has applied event-log position P:O: read-your-writes
 * for a client that just got a 202 carrying that position.
 */
#ifndef TL_REST_H
#define TL_REST_H

#include <uv.h>

#include "config.h"
#include "http.h"
#include "ingest.h"

typedef struct tl_rest tl_rest_t;

/* Registers the read routes on http.  ingest (may be NULL) is asked for
 * Kafka readiness.  Errors: TL_ENOMEM.  Loop thread. */
int tl_rest_new(uv_loop_t *loop, tl_http_t *http, tl_ingest_t *ingest, const tl_config_t *cfg,
               tl_rest_t **out);
void tl_rest_free(tl_rest_t *a);

#endif
