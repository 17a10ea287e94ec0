/*
 * http.h -- threadline's HTTP front: h2o on a libuv loop, a route table, and
 * the few ways a handler answers.
 *
 * h2o parses HTTP; this module only maps "METHOD /v1/things/{id}" patterns to
 * handlers and renders answers consistently: JSON bodies, and errors as
 * RFC 9457 `application/problem+json`.  Handlers run on the loop thread.  A
 * handler may answer later (after a Kafka acknowledgement or a database
 * query): it holds a tl_http_pending_t, which learns if the client went away
 * in the meantime, so an answer is never written to a freed request.
 */
#ifndef TL_HTTP_H
#define TL_HTTP_H

#include <stddef.h>

#include <h2o.h>
#include <uv.h>

#include "problem.h"

typedef struct tl_http tl_http_t;

#define TL_HTTP_MAX_PARAMS 4

/* The {} segments of a matched route, in order. */
typedef struct tl_http_params {
    h2o_iovec_t v[TL_HTTP_MAX_PARAMS];
    int n;
} tl_http_params_t;

/* A route handler: answers now or takes a pending handle and answers later.
 * Must answer exactly once either way.  Loop thread. */
typedef void (*tl_http_fn)(void *ud, h2o_req_t *req, const tl_http_params_t *params);

/* A request answered later.  Allocated by tl_http_pending_new; freed by
 * tl_http_pending_free (after answering or abandoning). */
typedef struct tl_http_pending {
    h2o_req_t *req;     /* NULL once the client is gone */
    void *slot;         /* internal: the pool-side back pointer */
} tl_http_pending_t;

/* Creates the server on loop (not yet listening).  max_body: the largest
 * body handlers accept; larger ones get 413 as problem+json.  Loop thread.
 * NULL on allocation failure. */
tl_http_t *tl_http_new(uv_loop_t *loop, size_t max_body);

/* Registers a route: method "GET", pattern "/v1/conversations/{}/timeline".
 * Routes are tried in registration order.  TL_ENOMEM or TL_EINVAL. */
int tl_http_route(tl_http_t *h, const char *method, const char *pattern, tl_http_fn fn, void *ud);

/* Starts listening on "HOST:PORT".  TL_EINVAL for a bad address, TL_EIO if
 * the port cannot be bound (message logged).  Loop thread. */
int tl_http_listen(tl_http_t *h, const char *addr);

/* Stops accepting; existing connections finish.  Loop thread. */
void tl_http_close(tl_http_t *h);
/* Frees the server after the loop has run its close callbacks. NULL ok. */
void tl_http_free(tl_http_t *h);

/* Answers with a JSON body (copied).  Loop thread. */
void tl_http_json(h2o_req_t *req, int status, const char *body, size_t len);
/* Answers with a body of the given content type (copied). */
void tl_http_send(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len);
/* Answers with problem+json; adds Retry-After when p->retry_after > 0. */
void tl_http_problem(h2o_req_t *req, const tl_problem_t *p);

/* The request body; for a body over max_body answers 413 itself and
 * returns -1 (the handler must then return at once).  Loop thread. */
int tl_http_body(h2o_req_t *req, const char **body, size_t *len);

/* Copies the URL-decoded value of query parameter `name` into out (NUL-
 * terminated, cut to n-1).  Returns its length, or -1 if absent. */
int tl_http_query(h2o_req_t *req, const char *name, char *out, size_t n);

/* Value of a request header (case-insensitive name) or NULL; borrowed from
 * the request. */
const h2o_iovec_t *tl_http_header(h2o_req_t *req, const char *name);

/* Starts a pending answer for req.  NULL on allocation failure (then answer
 * at once with 503). */
tl_http_pending_t *tl_http_pending_new(h2o_req_t *req);
/* Releases the handle; if the request is still alive it must have been
 * answered already.  NULL ok. */
void tl_http_pending_free(tl_http_pending_t *p);

#endif
