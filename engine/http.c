/*
 * http.c -- h2o glue and response helpers (see http.h).
 *
 * One h2o handler is registered at "/"; it walks the route table.  A route
 * pattern is split on '/', and a "{}" segment matches any one non-empty path
 * segment, captured into the params.  Few routes, so a linear walk is
 * cheaper than anything cleverer.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "http.h"
#include "log.h"

typedef struct route {
    char method[8];
    char *pattern;
    tl_http_fn fn;
    void *ud;
} route_t;

typedef struct root_handler {
    h2o_handler_t super;
    tl_http_t *h;
} root_handler_t;

struct tl_http {
    uv_loop_t *loop;
    size_t max_body;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    int listening;
    route_t *routes;
    int nroutes;
};

static int match(const char *pattern, h2o_iovec_t path, tl_http_params_t *params) {
    const char *p = pattern, *s = path.base, *end = path.base + path.len;
    const char *q = memchr(s, '?', path.len);
    if (q) end = q;
    params->n = 0;
    while (*p && s < end) {
        if (p[0] == '{' && p[1] == '}') {
            const char *seg = s;
            while (s < end && *s != '/') s++;
            if (s == seg || params->n == TL_HTTP_MAX_PARAMS) return 0;
            params->v[params->n++] = h2o_iovec_init(seg, (size_t)(s - seg));
            p += 2;
        } else if (*p == *s) {
            p++, s++;
        } else {
            return 0;
        }
    }
    return *p == 0 && s == end;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    tl_http_t *h = ((root_handler_t *)self)->h;
    tl_http_params_t params;
    int path_matched = 0;
    for (int i = 0; i < h->nroutes; i++) {
        route_t *r = &h->routes[i];
        if (!match(r->pattern, req->path, &params)) continue;
        path_matched = 1;
        if (!h2o_memis(req->method.base, req->method.len, r->method, strlen(r->method))) continue;
        r->fn(r->ud, req, &params);
        return 0;
    }
    tl_problem_t pb;
    if (path_matched) {
        tl_problem_set(&pb, 405, "method-not-allowed", "Method not allowed", NULL,
                       "%.*s is not allowed on %.*s", (int)req->method.len, req->method.base,
                       (int)req->path.len, req->path.base);
    } else {
        tl_problem_set(&pb, 404, "not-found", "Not found", NULL, "no route for %.*s",
                       (int)req->path.len, req->path.base);
    }
    tl_http_problem(req, &pb);
    return 0;
}

static void on_accept(uv_stream_t *listener, int status) {
    tl_http_t *h = listener->data;
    if (status != 0) return;
    uv_tcp_t *conn = h2o_mem_alloc(sizeof *conn);
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(&h->accept_ctx, sock);
}

tl_http_t *tl_http_new(uv_loop_t *loop, size_t max_body) {
    tl_http_t *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->loop = loop;
    h->max_body = max_body;
    h2o_config_init(&h->config);
    /* h2o refuses bodies over its own limit with a plain-text 413; keep its
     * limit well above ours so clients normally get our problem+json 413,
     * while a hostile multi-megabyte body is still cut off early. */
    h->config.max_request_entity_size = max_body * 4 + 65536;
    h2o_hostconf_t *host = h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    root_handler_t *rh = (root_handler_t *)h2o_create_handler(path, sizeof *rh);
    rh->super.on_req = on_req;
    rh->h = h;
    h2o_context_init(&h->ctx, loop, &h->config);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;
    return h;
}

int tl_http_route(tl_http_t *h, const char *method, const char *pattern, tl_http_fn fn, void *ud) {
    if (strlen(method) >= sizeof h->routes[0].method || pattern[0] != '/') return TL_EINVAL;
    route_t *r = realloc(h->routes, sizeof *r * (size_t)(h->nroutes + 1));
    if (!r) return TL_ENOMEM;
    h->routes = r;
    r = &h->routes[h->nroutes];
    snprintf(r->method, sizeof r->method, "%s", method);
    r->pattern = strdup(pattern);
    if (!r->pattern) return TL_ENOMEM;
    r->fn = fn;
    r->ud = ud;
    h->nroutes++;
    return TL_OK;
}

int tl_http_listen(tl_http_t *h, const char *addr) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) return TL_EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535) return TL_EINVAL;
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) != 0)
        return TL_EINVAL;
    uv_tcp_init(h->loop, &h->listener);
    h->listener.data = h;
    int r;
    if ((r = uv_tcp_bind(&h->listener, (struct sockaddr *)&sa, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&h->listener, 1024, on_accept)) != 0) {
        tl_error("http", "cannot listen on %s: %s", addr, uv_strerror(r));
        uv_close((uv_handle_t *)&h->listener, NULL);
        return TL_EIO;
    }
    h->listening = 1;
    tl_info("http", "listening on http://%s", addr);
    return TL_OK;
}

void tl_http_close(tl_http_t *h) {
    if (h->listening) {
        uv_close((uv_handle_t *)&h->listener, NULL);
        h->listening = 0;
    }
}

void tl_http_free(tl_http_t *h) {
    if (!h) return;
    h2o_context_dispose(&h->ctx);
    h2o_config_dispose(&h->config);
    for (int i = 0; i < h->nroutes; i++) free(h->routes[i].pattern);
    free(h->routes);
    free(h);
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

void tl_http_send(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len) {
    req->res.status = status;
    req->res.reason = reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    /* Without a length h2o keeps the connection alive only for 200 (it
     * chunks those); a 202 or a problem would close it. */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void tl_http_json(h2o_req_t *req, int status, const char *body, size_t len) {
    tl_http_send(req, status, "application/json", body, len);
}

void tl_http_problem(h2o_req_t *req, const tl_problem_t *p) {
    tl_buf_t b;
    tl_buf_init(&b);
    if (p->retry_after > 0) {
        char ra[16];
        int n = snprintf(ra, sizeof ra, "%d", p->retry_after);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       h2o_strdup(&req->pool, ra, (size_t)n).base, (size_t)n);
    }
    if (tl_problem_json(p, &b) != TL_OK) {
        tl_buf_close(&b);
        tl_http_send(req, 500, "text/plain", H2O_STRLIT("out of memory"));
        return;
    }
    tl_http_send(req, p->status, "application/problem+json", b.data, b.len);
    tl_buf_close(&b);
}

int tl_http_body(h2o_req_t *req, const char **body, size_t *len) {
    /* The h2o context is embedded in tl_http_t: find the server from it. */
    tl_http_t *h = (tl_http_t *)((char *)req->conn->ctx - offsetof(tl_http_t, ctx));
    if (req->entity.len > h->max_body) {
        tl_problem_t pb;
        tl_problem_set(&pb, 413, "body-too-large", "Request body too large", NULL,
                       "the body is %zu bytes; the limit is %zu", req->entity.len, h->max_body);
        tl_http_problem(req, &pb);
        return -1;
    }
    *body = req->entity.base ? req->entity.base : "";
    *len = req->entity.len;
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tl_http_query(h2o_req_t *req, const char *name, char *out, size_t n) {
    if (req->query_at == SIZE_MAX) return -1;
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nlen = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - p) == nlen && memcmp(p, name, nlen) == 0) {
            size_t j = 0;
            for (const char *v = eq ? eq + 1 : pe; v < pe && j + 1 < n; v++) {
                int c = *v;
                if (c == '+') c = ' ';
                else if (c == '%' && pe - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    c = hexval(v[1]) * 16 + hexval(v[2]);
                    v += 2;
                }
                out[j++] = (char)c;
            }
            out[j] = 0;
            return (int)j;
        }
        p = pe + 1;
    }
    return -1;
}

const h2o_iovec_t *tl_http_header(h2o_req_t *req, const char *name) {
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i < 0 ? NULL : &req->headers.entries[i].value;
}

/* The pool-side slot points back at the pending handle; when h2o disposes
 * the request it clears p->req, and when the handle is freed first it
 * clears the slot's pointer.  Either side may go first. */
typedef struct pending_slot { tl_http_pending_t *p; } pending_slot_t;

static void on_req_dispose(void *arg) {
    pending_slot_t *slot = arg;
    if (slot->p) {
        slot->p->req = NULL;
        slot->p->slot = NULL;
    }
}

tl_http_pending_t *tl_http_pending_new(h2o_req_t *req) {
    tl_http_pending_t *p = malloc(sizeof *p);
    if (!p) return NULL;
    pending_slot_t *slot = h2o_mem_alloc_shared(&req->pool, sizeof *slot, on_req_dispose);
    slot->p = p;
    p->req = req;
    p->slot = slot;
    return p;
}

void tl_http_pending_free(tl_http_pending_t *p) {
    if (!p) return;
    if (p->slot) ((pending_slot_t *)p->slot)->p = NULL;
    free(p);
}
