/*
 * rest.h -- the agent REST API: conversations, customers, conflicts, the
 * agent writes, and the operator endpoints (healthz, readyz, metrics).
 *
 * Every request becomes one job on libuv's thread pool, each pool thread
 * with its own PostgreSQL connection, so a slow query never stalls the loop
 * that answers ingest.  A job runs in a fixed order: verify the key
 * (auth.h), check the role may do this at all, wait for `?after=P:O`, then
 * one or two parameterised queries restricted to the key's tenant and, for
 * agents, to conversations assigned to them or their team.  Something out
 * of scope is answered 404 exactly like something that does not exist, so
 * no caller learns what it may not see.  PostgreSQL builds the row JSON
 * (json_build_object), which keeps row shaping next to the query.
 *
 * Writes (replies, assign, close, resolve) look up and authorise the
 * target on the pool, then build the event on the loop and hand it to
 * writes.h; they answer 202 with the event id and its log position only
 * after the broker acknowledged it.  A client that then reads with
 * `?after=<position>` sees its own write: read-your-writes.
 *
 * Lists page with keyset cursors (opaque strings naming the last row's sort
 * key), so a page is one index range scan however deep the client pages,
 * and rows inserted meanwhile never shift a page.
 */
#ifndef TL_REST_H
#define TL_REST_H

#include <uv.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "ingest.h"
#include "writes.h"

typedef struct tl_rest tl_rest_t;

/* Registers the REST routes on http.  ingest (may be NULL) is asked for
 * Kafka readiness; writes (may be NULL: then the write routes answer 503)
 * produces the agent events; auth verifies keys.  All must outlive the
 * returned object.  Errors: TL_ENOMEM.  Loop thread. */
int tl_rest_new(uv_loop_t *loop, tl_http_t *http, tl_ingest_t *ingest, tl_writes_t *writes,
                tl_auth_t *auth, const tl_config_t *cfg, tl_rest_t **out);
void tl_rest_free(tl_rest_t *a);

#endif
