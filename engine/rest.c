/*
 * rest.c -- read endpoints (see rest.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rest.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "uuid.h"

#define AFTER_WAIT_MS 5000

struct tl_rest {
    uv_loop_t *loop;
    tl_ingest_t *ingest;
    const tl_config_t *cfg;
};

typedef enum { Q_TIMELINE, Q_CUSTOMER, Q_READY } query_t;

typedef struct job {
    uv_work_t work;
    tl_rest_t *api;
    tl_http_pending_t *pending;
    query_t q;
    char id[80], tenant[80];
    int has_tenant;
    int after_part;
    long long after_off;
    /* result */
    int status;
    tl_problem_t pb;
    char *body;
} job_t;

/* One connection per thread-pool thread, made on first use. */
static _Thread_local PGconn *tls_pg;

static PGconn *pool_pg(const char *dsn) {
    int err;
    if (tls_pg && PQstatus(tls_pg) == CONNECTION_OK) return tls_pg;
    PQfinish(tls_pg);
    tls_pg = tl_pg_connect(dsn, &err);
    return tls_pg;
}

static const char *const timeline_sql =
    "SELECT json_build_object("
    " 'conversation_id', c.conversation_id, 'tenant_id', c.tenant_id,"
    " 'customer_id', c.customer_id, 'status', c.status, 'version', c.version,"
    " 'platforms', c.platforms,"
    " 'items', COALESCE((SELECT json_agg(json_build_object("
    "    'event_id', t.event_id, 'kind', t.kind, 'platform', t.platform,"
    "    'source', t.source_label, 'text', t.body->>'text',"
    "    'effective_ts', (extract(epoch FROM t.effective_ts) * 1000)::bigint,"
    "    'occurred_at', (extract(epoch FROM t.occurred_at) * 1000)::bigint,"
    "    'received_at', (extract(epoch FROM t.received_at) * 1000)::bigint,"
    "    'idempotency_key', t.idempotency_key,"
    "    'position', t.source_partition || ':' || t.source_offset, 'body', t.body)"
    "  ORDER BY t.effective_ts, t.source_partition, t.source_offset)"
    "  FROM view_agent t WHERE t.tenant_id = c.tenant_id AND t.conversation_id = c.conversation_id),"
    "  '[]'::json))::text"
    " FROM conversations c WHERE c.conversation_id = $1 AND ($2::text IS NULL OR c.tenant_id = $2)";

static const char *const customer_sql =
    "SELECT json_build_object("
    " 'customer_id', cu.customer_id, 'tenant_id', cu.tenant_id, 'version', cu.version,"
    " 'platforms', cu.platforms,"
    " 'first_seen', (extract(epoch FROM cu.first_seen) * 1000)::bigint,"
    " 'last_activity', (extract(epoch FROM cu.last_activity) * 1000)::bigint,"
    " 'identities', COALESCE((SELECT json_agg(json_build_object('platform', i.platform,"
    "    'platform_user_id', i.platform_user_id) ORDER BY i.platform, i.platform_user_id)"
    "    FROM identities i WHERE i.tenant_id = cu.tenant_id AND i.customer_id = cu.customer_id), '[]'::json),"
    " 'conversations', COALESCE((SELECT json_agg(json_build_object("
    "    'conversation_id', c.conversation_id, 'status', c.status, 'version', c.version,"
    "    'platforms', c.platforms, 'items', c.item_count,"
    "    'opened_at', (extract(epoch FROM c.opened_at) * 1000)::bigint,"
    "    'last_activity', (extract(epoch FROM c.last_activity) * 1000)::bigint)"
    "    ORDER BY c.last_activity DESC)"
    "    FROM conversations c WHERE c.tenant_id = cu.tenant_id AND c.customer_id = cu.customer_id),"
    "    '[]'::json))::text"
    " FROM customers cu WHERE cu.customer_id = $1 AND ($2::text IS NULL OR cu.tenant_id = $2)";

/* Waits until the agent projection has applied position P:O; 0 or -1. */
static int wait_after(job_t *j, PGconn *pg) {
    char part[16];
    snprintf(part, sizeof part, "%d", j->after_part);
    const char *vals[] = {part};
    for (int waited = 0; waited <= AFTER_WAIT_MS; waited += 10) {
        PGresult *r = PQexecParams(pg,
                                   "SELECT source_offset FROM projection_positions"
                                   " WHERE consumer = 'agent' AND partition = $1::int",
                                   1, NULL, vals, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                 strtoll(PQgetvalue(r, 0, 0), NULL, 10) >= j->after_off;
        PQclear(r);
        if (ok) return 0;
        usleep(10000);
    }
    return -1;
}

static void work(uv_work_t *w) {
    job_t *j = w->data;
    if (j->q == Q_READY) {
        PGconn *pg = pool_pg(j->api->cfg->pg_dsn);
        int pg_ok = pg && tl_pg_exec(pg, "SELECT 1") == TL_OK;
        int kafka_ok = !j->api->ingest || tl_ingest_ping(j->api->ingest, 2000) == TL_OK;
        if (pg_ok && kafka_ok) {
            j->status = 200;
            j->body = strdup("{\"status\":\"ready\",\"kafka\":\"up\",\"postgres\":\"up\"}");
        } else {
            tl_problem_set(&j->pb, 503, "not-ready", "Not ready", NULL, "kafka %s, postgres %s",
                           kafka_ok ? "up" : "unreachable", pg_ok ? "up" : "unreachable");
            j->pb.retry_after = 1;
            j->status = 503;
        }
        return;
    }
    PGconn *pg = pool_pg(j->api->cfg->pg_dsn);
    if (!pg) {
        tl_problem_set(&j->pb, 503, "postgres-unavailable", "Views unavailable", NULL,
                       "PostgreSQL is unreachable");
        j->pb.retry_after = 2;
        j->status = 503;
        return;
    }
    if (j->after_part >= 0 && wait_after(j, pg) != 0) {
        tl_problem_set(&j->pb, 503, "projection-behind", "Projection has not caught up", "after",
                       "the view has not yet applied position %d:%lld after %d ms", j->after_part,
                       j->after_off, AFTER_WAIT_MS);
        j->pb.retry_after = 1;
        j->status = 503;
        return;
    }
    const char *vals[] = {j->id, j->has_tenant ? j->tenant : NULL};
    PGresult *r = PQexecParams(pg, j->q == Q_TIMELINE ? timeline_sql : customer_sql, 2, NULL, vals,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        tl_warn("rest", "query: %s", PQerrorMessage(pg));
        tl_problem_set(&j->pb, 503, "postgres-unavailable", "Views unavailable", NULL,
                       "the query failed; try again");
        j->pb.retry_after = 1;
        j->status = 503;
    } else if (PQntuples(r) == 0) {
        tl_problem_set(&j->pb, 404, "not-found", "Not found", NULL, "no %s with id %s",
                       j->q == Q_TIMELINE ? "conversation" : "customer", j->id);
        j->status = 404;
    } else {
        j->status = 200;
        j->body = strdup(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
}

static void after_work(uv_work_t *w, int status) {
    (void)status;
    job_t *j = w->data;
    h2o_req_t *req = j->pending->req;
    if (req) {
        if (j->status == 200 && j->body) tl_http_json(req, 200, j->body, strlen(j->body));
        else if (j->status == 200) {
            tl_problem_set(&j->pb, 500, "internal", "Internal error", NULL, "out of memory");
            tl_http_problem(req, &j->pb);
        } else tl_http_problem(req, &j->pb);
    }
    tl_http_pending_free(j->pending);
    free(j->body);
    free(j);
}

static void submit(tl_rest_t *a, h2o_req_t *req, query_t q, const tl_http_params_t *params) {
    tl_problem_t pb;
    job_t *j = calloc(1, sizeof *j);
    if (!j || !(j->pending = tl_http_pending_new(req))) {
        free(j);
        tl_problem_set(&pb, 503, "overloaded", "Overloaded", NULL, "out of memory");
        tl_http_problem(req, &pb);
        return;
    }
    j->api = a;
    j->q = q;
    j->after_part = -1;
    j->work.data = j;
    if (params && params->n) {
        if (!tl_uuid_valid(params->v[0].base, params->v[0].len)) {
            tl_problem_set(&pb, 404, "not-found", "Not found", "id", "\"%.*s\" is not a valid id",
                           (int)(params->v[0].len > 64 ? 64 : params->v[0].len), params->v[0].base);
            goto bad;
        }
        snprintf(j->id, sizeof j->id, "%.*s", (int)params->v[0].len, params->v[0].base);
    }
    j->has_tenant = tl_http_query(req, "tenant", j->tenant, sizeof j->tenant) > 0;
    char after[64];
    if (tl_http_query(req, "after", after, sizeof after) >= 0) {
        char *colon = strchr(after, ':'), *end;
        long part = colon ? strtol(after, &end, 10) : -1;
        long long off = colon ? strtoll(colon + 1, &end, 10) : -1;
        if (!colon || part < 0 || part > 1023 || off < 0 || *end) {
            tl_problem_set(&pb, 400, "invalid-parameter", "Invalid parameter", "after",
                           "\"after\" must be a log position PARTITION:OFFSET, as returned by a write");
            goto bad;
        }
        j->after_part = (int)part;
        j->after_off = off;
    }
    uv_queue_work(a->loop, &j->work, work, after_work);
    return;
bad:
    tl_http_pending_free(j->pending);
    free(j);
    tl_http_problem(req, &pb);
}

static void timeline_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    submit(ud, req, Q_TIMELINE, params);
}

static void customer_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    submit(ud, req, Q_CUSTOMER, params);
}

static void readyz_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    (void)params;
    submit(ud, req, Q_READY, NULL);
}

static void healthz_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    (void)ud;
    (void)params;
    tl_http_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
}

static void metrics_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    (void)ud;
    (void)params;
    tl_buf_t b;
    tl_buf_init(&b);
    if (tl_metrics_render(&b) == TL_OK)
        tl_http_send(req, 200, "text/plain; version=0.0.4", b.data, b.len);
    else
        tl_http_send(req, 500, "text/plain", H2O_STRLIT("out of memory"));
    tl_buf_close(&b);
}

int tl_rest_new(uv_loop_t *loop, tl_http_t *http, tl_ingest_t *ingest, const tl_config_t *cfg,
               tl_rest_t **out) {
    tl_rest_t *a = calloc(1, sizeof *a);
    if (!a) return TL_ENOMEM;
    a->loop = loop;
    a->ingest = ingest;
    a->cfg = cfg;
    int rc = 0;
    rc |= tl_http_route(http, "GET", "/v1/conversations/{}/timeline", timeline_handler, a);
    rc |= tl_http_route(http, "GET", "/v1/customers/{}", customer_handler, a);
    rc |= tl_http_route(http, "GET", "/healthz", healthz_handler, a);
    rc |= tl_http_route(http, "GET", "/readyz", readyz_handler, a);
    rc |= tl_http_route(http, "GET", "/metrics", metrics_handler, a);
    if (rc) {
        free(a);
        return TL_ENOMEM;
    }
    *out = a;
    return TL_OK;
}

void tl_rest_free(tl_rest_t *a) { free(a); }
