/*
 * rest.c -- the REST API (see rest.h).
 *
 * One job type serves every route: the handler parses the path and query
 * on the loop (bad parameters are answered at once, 400 naming the
 * parameter), copies what the pool thread needs, and queues the job; the
 * pool thread authenticates, authorises and queries; after_work answers, or
 * for a write builds the event and produces it.  Query parameters shared by
 * every scoped statement come first: $1 tenant (NULL: every tenant, only
 * with --auth off), $2 agent id and $3 team (both NULL: no agent scope).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "adapter.h"
#include "dedup.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "rest.h"
#include "uuid.h"

#define AFTER_WAIT_MS 5000
#define LIST_DEFAULT 50
#define LIST_MAX 200
#define TIMELINE_DEFAULT 200
#define TIMELINE_MAX 1000
#define IDEMPOTENCY_MAX 128
#define PAGE_CACHE_SLOTS 64
#define PAGE_CACHE_MAX_BYTES (256 * 1024)

/* A rendered page of an agent-view timeline.  Every event of a conversation
 * bumps its version, and the view only ever gains rows, so a page rendered
 * at version V with N header items and R view rows is still exact while the
 * conversation still says V, N and R.  The header query every timeline
 * read runs anyway (it also checks scope) fetches those three -- R with an
 * index-only count, so the check holds even if a projection commits the
 * header and the rows in separate transactions -- and the expensive part,
 * PostgreSQL building a few hundred items' JSON, is skipped.  Other views are written by other consumers, not in step with
 * the header, so they are never cached.  Bounded: 64 slots of at most
 * 256 KiB, direct-mapped by key. */
typedef struct page_entry {
    char key[640];
    char version[24], items[48];
    char *body;         /* "\"items\":[...],\"next_cursor\":...}" */
    size_t len;
} page_entry_t;

struct tl_rest {
    pthread_mutex_t cache_mu;
    page_entry_t cache[PAGE_CACHE_SLOTS];
    uv_loop_t *loop;
    tl_ingest_t *ingest;
    tl_writes_t *writes;
    tl_auth_t *auth;
    const tl_config_t *cfg;
};

typedef enum {
    Q_READY, Q_LIST, Q_CONV, Q_TIMELINE, Q_CUSTOMER, Q_CONFLICTS,
    W_REPLY, W_ASSIGN, W_CLOSE, W_RESOLVE
} query_t;

#define IS_WRITE(q) ((q) >= W_REPLY)

/* The views a timeline can be read in: platform slug -> table. */
static const char *const views[][2] = {
    {"agent", "view_agent"},   {"web", "view_web"},       {"app", "view_app"},
    {"mini_program", "view_mini_program"}, {"wechat", "view_wechat"},
    {"douyin", "view_douyin"}, {"phone", "view_phone"},
};
#define NVIEWS ((int)(sizeof views / sizeof views[0]))

typedef struct job {
    uv_work_t work;
    tl_rest_t *api;
    tl_http_pending_t *pending;
    query_t q;
    char id[132];
    char tenant_param[72];
    int has_tenant_param;
    char *authz;                    /* Authorization header, copied; NULL if absent */
    size_t authz_len;
    int after_part;
    long long after_off;
    /* filters and paging */
    char status[16], assignee[72], team[72], platform[16], tag[72], customer[40];
    int has_status, has_assignee, has_team, has_platform, has_tag, has_customer;
    char cursor[3][48];             /* parsed cursor parts; [0][0] == 0: none */
    char cursor_id[132];
    int limit;
    int view;
    /* writes */
    char *body;
    size_t body_len;
    char idem[IDEMPOTENCY_MAX + 1];
    int has_idem;
    tl_adapter_out_t in;            /* the parsed body */
    tl_str_t text, reason, value, agent_to, team_to;
    tl_attachments_t atts;
    tl_platform_t target;
    char w_tenant[72], w_customer[40], w_field[72];
    /* result */
    tl_auth_key_t key;
    int status_code;                /* 0: a write to produce */
    tl_problem_t pb;
    char *out;
} job_t;

/* One connection per thread-pool thread, made on first use, with the
 * statements it has prepared (bit i: statement i of `stmts`); a new
 * connection starts with none. */
static _Thread_local PGconn *tls_pg;
static _Thread_local uint64_t tls_prepared;

static PGconn *pool_pg(const char *dsn) {
    int err;
    if (tls_pg && PQstatus(tls_pg) == CONNECTION_OK) return tls_pg;
    PQfinish(tls_pg);
    tls_prepared = 0;
    tls_pg = tl_pg_connect(dsn, &err);
    return tls_pg;
}

#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"
#define US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
#define FROM_US(p) "(timestamptz 'epoch' + " p "::bigint * interval '1 microsecond')"
#define SCOPE(c)                                                                        \
    "($1::text IS NULL OR " c ".tenant_id = $1) AND "                                   \
    "(($2::text IS NULL AND $3::text IS NULL) OR " c ".assignee = $2 OR " c ".team = $3)"
#define CUSTOMER_SCOPE(t)                                                               \
    "($1::text IS NULL OR " t ".tenant_id = $1) AND "                                   \
    "(($2::text IS NULL AND $3::text IS NULL) OR EXISTS (SELECT 1 FROM conversations s" \
    " WHERE s.tenant_id = " t ".tenant_id AND s.customer_id = " t ".customer_id"        \
    " AND (s.assignee = $2 OR s.team = $3)))"

#define CONV_JSON                                                                       \
    "'conversation_id', c.conversation_id, 'tenant_id', c.tenant_id,"                   \
    " 'customer_id', c.customer_id, 'status', c.status, 'assignee', c.assignee,"        \
    " 'team', c.team, 'tags', c.tags, 'platforms', c.platforms, 'version', c.version,"  \
    " 'items', c.item_count, 'opened_at', " MS("c.opened_at") ","                       \
    " 'last_activity', " MS("c.last_activity") ", 'closed_at', " MS("c.closed_at") ","  \
    " 'close_reason', c.close_reason, 'closed_by', c.closed_by"

#define FIELDS_JSON(t, cust)                                                            \
    "COALESCE((SELECT json_object_agg(f.field, json_build_object('value', f.value,"     \
    " 'version', f.version, 'platform', f.platform, 'event_id', f.event_id,"            \
    " 'effective_ts', " MS("f.effective_ts") ", 'is_key', f.is_key) ORDER BY f.field)"  \
    " FROM customer_fields f WHERE f.tenant_id = " t " AND f.customer_id = " cust "),"  \
    " '{}'::json)"

#define CONFLICT_JSON                                                                   \
    "'conflict_id', k.conflict_id, 'tenant_id', k.tenant_id, 'customer_id', k.customer_id," \
    " 'field', k.field, 'status', k.status, 'candidates', k.candidates,"                \
    " 'chosen_value', k.chosen_value, 'resolved_by', k.resolved_by,"                    \
    " 'opened_at', " MS("k.opened_at") ", 'closed_at', " MS("k.closed_at") ","          \
    " 'version', k.version"

static const char *const list_sql =
    "SELECT json_build_object(" CONV_JSON ")::text,"
    " " US("c.last_activity") " || '~' || c.conversation_id"
    " FROM conversations c WHERE " SCOPE("c")
    " AND ($4::text IS NULL OR c.status = $4) AND ($5::text IS NULL OR c.assignee = $5)"
    " AND ($6::text IS NULL OR c.team = $6) AND ($7::text IS NULL OR $7 = ANY (c.platforms))"
    " AND ($8::text IS NULL OR $8 = ANY (c.tags)) AND ($9::text IS NULL OR c.customer_id = $9)"
    " AND ($10::bigint IS NULL OR (c.last_activity, c.conversation_id) < (" FROM_US("$10") ", $11::text))"
    " ORDER BY c.last_activity DESC, c.conversation_id DESC LIMIT $12::int";

static const char *const conv_sql =
    "SELECT json_build_object(" CONV_JSON ","
    " 'fields', " FIELDS_JSON("c.tenant_id", "c.customer_id") ","
    " 'open_conflicts', (SELECT count(*) FROM conflicts k WHERE k.tenant_id = c.tenant_id"
    "   AND k.customer_id = c.customer_id AND k.status = 'open'))::text"
    " FROM conversations c WHERE c.conversation_id = $4 AND " SCOPE("c");

static const char *const header_sql =
    "SELECT json_build_object(" CONV_JSON ")::text, c.tenant_id, c.version,"
    " c.item_count || '/' || (SELECT count(*) FROM view_agent t"
    "   WHERE t.tenant_id = c.tenant_id AND t.conversation_id = c.conversation_id)"
    " FROM conversations c WHERE c.conversation_id = $4 AND " SCOPE("c");

/* %s: the view table, from the fixed list `views` (never from the client). */
static const char *const items_sql_fmt =
    "SELECT json_build_object('event_id', t.event_id, 'part', t.part, 'kind', t.kind,"
    " 'platform', t.platform, 'source', t.source_label, 'text', t.body->>'text',"
    " 'effective_ts', " MS("t.effective_ts") ", 'occurred_at', " MS("t.occurred_at") ","
    " 'received_at', " MS("t.received_at") ", 'idempotency_key', t.idempotency_key,"
    " 'position', t.source_partition || ':' || t.source_offset, 'body', t.body)::text,"
    " " US("t.effective_ts") " || '~' || t.source_partition || '~' || t.source_offset || '~' || t.part"
    " FROM %s t WHERE t.tenant_id = $1 AND t.conversation_id = $2"
    " AND ($3::bigint IS NULL OR (t.effective_ts, t.source_partition, t.source_offset, t.part) >"
    "   (" FROM_US("$3") ", $4::int, $5::bigint, $6::int))"
    " ORDER BY t.effective_ts, t.source_partition, t.source_offset, t.part LIMIT $7::int";

static const char *const customer_sql =
    "SELECT json_build_object("
    " 'customer_id', cu.customer_id, 'tenant_id', cu.tenant_id, 'version', cu.version,"
    " 'platforms', cu.platforms,"
    " 'first_seen', " MS("cu.first_seen") ", 'last_activity', " MS("cu.last_activity") ","
    " 'fields', " FIELDS_JSON("cu.tenant_id", "cu.customer_id") ","
    " 'conflicts', COALESCE((SELECT json_agg(json_build_object(" CONFLICT_JSON ")"
    "    ORDER BY k.opened_at, k.conflict_id) FROM conflicts k"
    "    WHERE k.tenant_id = cu.tenant_id AND k.customer_id = cu.customer_id), '[]'::json),"
    " 'identities', COALESCE((SELECT json_agg(json_build_object('platform', i.platform,"
    "    'platform_user_id', i.platform_user_id) ORDER BY i.platform, i.platform_user_id)"
    "    FROM identities i WHERE i.tenant_id = cu.tenant_id AND i.customer_id = cu.customer_id), '[]'::json),"
    " 'conversations', COALESCE((SELECT json_agg(json_build_object("
    "    'conversation_id', c.conversation_id, 'status', c.status, 'version', c.version,"
    "    'assignee', c.assignee, 'team', c.team,"
    "    'platforms', c.platforms, 'items', c.item_count,"
    "    'opened_at', " MS("c.opened_at") ", 'last_activity', " MS("c.last_activity") ")"
    "    ORDER BY c.last_activity DESC)"
    "    FROM conversations c WHERE c.tenant_id = cu.tenant_id AND c.customer_id = cu.customer_id"
    "    AND (($2::text IS NULL AND $3::text IS NULL) OR c.assignee = $2 OR c.team = $3)),"
    "    '[]'::json))::text"
    " FROM customers cu WHERE cu.customer_id = $4 AND " CUSTOMER_SCOPE("cu");

static const char *const conflicts_sql =
    "SELECT json_build_object(" CONFLICT_JSON ")::text,"
    " " US("k.opened_at") " || '~' || k.conflict_id"
    " FROM conflicts k WHERE " CUSTOMER_SCOPE("k") " AND k.status = $4"
    " AND ($5::bigint IS NULL OR (k.opened_at, k.conflict_id) > (" FROM_US("$5") ", $6::text))"
    " ORDER BY k.opened_at, k.conflict_id LIMIT $7::int";

static const char *const write_conv_sql =
    "SELECT c.tenant_id, c.customer_id, c.status FROM conversations c"
    " WHERE c.conversation_id = $4 AND " SCOPE("c");

static const char *const write_conflict_sql =
    "SELECT k.tenant_id, k.customer_id, k.field, k.status, k.candidates::text FROM conflicts k"
    " WHERE k.conflict_id = $4 AND " CUSTOMER_SCOPE("k");

static int fail503(job_t *j, const char *type, const char *title, const char *detail) {
    tl_problem_set(&j->pb, 503, type, title, NULL, "%s", detail);
    j->pb.retry_after = 1;
    return j->status_code = 503;
}

static int not_found(job_t *j, const char *what) {
    tl_problem_set(&j->pb, 404, "not-found", "Not found", NULL, "no %s with id %s", what, j->id);
    return j->status_code = 404;
}

/* Waits until the projection `consumer` has applied position P:O; 0 or -1. */
static int wait_after(job_t *j, PGconn *pg, const char *consumer) {
    char part[16];
    snprintf(part, sizeof part, "%d", j->after_part);
    const char *vals[] = {consumer, part};
    for (int waited = 0; waited <= AFTER_WAIT_MS; waited += 10) {
        PGresult *r = PQexecParams(pg,
                                   "SELECT source_offset FROM projection_positions"
                                   " WHERE consumer = $1 AND partition = $2::int",
                                   2, NULL, vals, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                 strtoll(PQgetvalue(r, 0, 0), NULL, 10) >= j->after_off;
        PQclear(r);
        if (ok) return 0;
        usleep(10000);
    }
    return -1;
}

/* Every statement, prepared once per connection: planning these is a good
 * part of a small read's cost.  The view statements follow, one per view. */
enum { S_LIST, S_CONV, S_HEADER, S_CUSTOMER, S_CONFLICTS, S_WRITE_CONV, S_WRITE_CONFLICT, S_ITEMS };

static int stmt_index(const char *sql) {
    const char *const fixed[] = {list_sql, conv_sql, header_sql, customer_sql, conflicts_sql,
                                 write_conv_sql, write_conflict_sql};
    for (int i = 0; i < S_ITEMS; i++)
        if (sql == fixed[i]) return i;
    return -1;
}

/* Runs sql with params (prepared on first use as statement `idx`, or
 * unprepared when idx < 0); on failure fills the job's 503 and returns
 * NULL. */
static PGresult *query_as(job_t *j, PGconn *pg, int idx, const char *sql, int n,
                          const char *const *vals) {
    PGresult *r;
    char name[16];
    if (idx >= 0 && idx < 64) {
        snprintf(name, sizeof name, "rest_%d", idx);
        if (!(tls_prepared & (1ull << idx))) {
            r = PQprepare(pg, name, sql, n, NULL);
            int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (ok) tls_prepared |= 1ull << idx;
        }
        r = tls_prepared & (1ull << idx) ? PQexecPrepared(pg, name, n, vals, NULL, NULL, 0)
                                         : PQexecParams(pg, sql, n, NULL, vals, NULL, NULL, 0);
    } else {
        r = PQexecParams(pg, sql, n, NULL, vals, NULL, NULL, 0);
    }
    if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
    tl_warn("rest", "query: %s", PQerrorMessage(pg));
    PQclear(r);
    fail503(j, "postgres-unavailable", "Views unavailable", "the query failed; try again");
    return NULL;
}

static PGresult *query(job_t *j, PGconn *pg, const char *sql, int n, const char *const *vals) {
    return query_as(j, pg, stmt_index(sql), sql, n, vals);
}

/* Renders a page: {"items":[rows' col 0...],"next_cursor":...} into j->out,
 * where a full page (limit + 1 rows fetched) gives the cursor of its last. */
static void page(job_t *j, PGresult *r, const char *prefix) {
    tl_buf_t b;
    tl_buf_init(&b);
    int n = PQntuples(r), shown = n > j->limit ? j->limit : n;
    int rc = prefix ? tl_buf_puts(&b, prefix) : 0;
    rc |= tl_buf_puts(&b, "\"items\":[");
    for (int i = 0; i < shown; i++) {
        if (i) rc |= tl_buf_puts(&b, ",");
        rc |= tl_buf_puts(&b, PQgetvalue(r, i, 0));
    }
    if (n > j->limit) rc |= tl_buf_printf(&b, "],\"next_cursor\":\"%s\"}", PQgetvalue(r, shown - 1, 1));
    else rc |= tl_buf_puts(&b, "],\"next_cursor\":null}");
    j->status_code = 200;
    j->out = rc ? NULL : strdup(b.data);
    tl_buf_close(&b);
}

static unsigned cache_slot(const char *key) {
    unsigned h = 2166136261u;
    for (const char *p = key; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h % PAGE_CACHE_SLOTS;
}

/* A copy of the cached page for key if it was rendered at hdr's version and
 * item count; else NULL.  Any thread. */
static char *cache_get(tl_rest_t *a, const char *key, const page_entry_t *hdr) {
    char *out = NULL;
    pthread_mutex_lock(&a->cache_mu);
    page_entry_t *e = &a->cache[cache_slot(key)];
    if (e->body && strcmp(e->key, key) == 0 && strcmp(e->version, hdr->version) == 0 &&
        strcmp(e->items, hdr->items) == 0 && (out = malloc(e->len + 1)))
        memcpy(out, e->body, e->len + 1);
    pthread_mutex_unlock(&a->cache_mu);
    return out;
}

static void cache_put(tl_rest_t *a, const char *key, const page_entry_t *hdr, const char *body) {
    size_t len = strlen(body);
    char *copy;
    if (len > PAGE_CACHE_MAX_BYTES || strlen(key) >= sizeof hdr->key || !(copy = malloc(len + 1))) return;
    memcpy(copy, body, len + 1);
    pthread_mutex_lock(&a->cache_mu);
    page_entry_t *e = &a->cache[cache_slot(key)];
    free(e->body);
    snprintf(e->key, sizeof e->key, "%s", key);
    memcpy(e->version, hdr->version, sizeof e->version);
    memcpy(e->items, hdr->items, sizeof e->items);
    e->body = copy;
    e->len = len;
    pthread_mutex_unlock(&a->cache_mu);
}

static void run_read(job_t *j, PGconn *pg, const char *const *scope) {
    char limit[16];
    snprintf(limit, sizeof limit, "%d", j->limit + 1);
    const char *c0 = j->cursor[0][0] ? j->cursor[0] : NULL;
    PGresult *r = NULL;
    switch (j->q) {
    case Q_LIST: {
        const char *vals[] = {scope[0], scope[1], scope[2],
                              j->has_status ? j->status : NULL, j->has_assignee ? j->assignee : NULL,
                              j->has_team ? j->team : NULL, j->has_platform ? j->platform : NULL,
                              j->has_tag ? j->tag : NULL, j->has_customer ? j->customer : NULL,
                              c0, c0 ? j->cursor_id : NULL, limit};
        if (!(r = query(j, pg, list_sql, 12, vals))) return;
        page(j, r, "{");
        break;
    }
    case Q_CONV:
    case Q_CUSTOMER: {
        const char *vals[] = {scope[0], scope[1], scope[2], j->id};
        if (!(r = query(j, pg, j->q == Q_CONV ? conv_sql : customer_sql, 4, vals))) return;
        if (PQntuples(r) == 0) not_found(j, j->q == Q_CONV ? "conversation" : "customer");
        else {
            j->status_code = 200;
            j->out = strdup(PQgetvalue(r, 0, 0));
        }
        break;
    }
    case Q_TIMELINE: {
        const char *vals[] = {scope[0], scope[1], scope[2], j->id};
        if (!(r = query(j, pg, header_sql, 4, vals))) return;
        if (PQntuples(r) == 0) {
            not_found(j, "conversation");
            break;
        }
        char *header = strdup(PQgetvalue(r, 0, 0));
        char tenant[72], key[640];
        snprintf(tenant, sizeof tenant, "%s", PQgetvalue(r, 0, 1));
        snprintf(key, sizeof key, "%s\x1f%s\x1f%s~%s~%s~%s\x1f%d", tenant, j->id, j->cursor[0],
                 j->cursor[1], j->cursor[2], j->cursor_id, j->limit);
        page_entry_t hdr = {0};
        snprintf(hdr.version, sizeof hdr.version, "%s", PQgetvalue(r, 0, 2));
        snprintf(hdr.items, sizeof hdr.items, "%s", PQgetvalue(r, 0, 3));
        PQclear(r);
        r = NULL;
        char *items = j->view == 0 ? cache_get(j->api, key, &hdr) : NULL;
        if (!items && header) {
            char sql[2048];
            snprintf(sql, sizeof sql, items_sql_fmt, views[j->view][1]);
            const char *iv[] = {tenant, j->id, c0, c0 ? j->cursor[1] : NULL, c0 ? j->cursor[2] : NULL,
                                c0 ? j->cursor_id : NULL, limit};
            if (!(r = query_as(j, pg, S_ITEMS + j->view, sql, 7, iv))) {
                free(header);
                return;
            }
            page(j, r, NULL);
            items = j->out;
            j->out = NULL;
            if (items && j->view == 0) cache_put(j->api, key, &hdr, items);
        }
        /* The header object, reopened: {...header..., "view":..., "items":...}. */
        if (header && items) {
            size_t hl = strlen(header), il = strlen(items);
            if ((j->out = malloc(hl + il + 64))) {
                int k = snprintf(j->out, hl + 64, "%.*s,\"view\":\"%s\",", (int)hl - 1, header,
                                 views[j->view][0]);
                memcpy(j->out + k, items, il + 1);
            }
            j->status_code = 200;
        } else {
            fail503(j, "overloaded", "Overloaded", "out of memory");
        }
        free(items);
        free(header);
        break;
    }
    case Q_CONFLICTS: {
        const char *vals[] = {scope[0], scope[1], scope[2], j->has_status ? j->status : "open",
                              c0, c0 ? j->cursor_id : NULL, limit};
        if (!(r = query(j, pg, conflicts_sql, 7, vals))) return;
        page(j, r, "{");
        break;
    }
    default: break;
    }
    PQclear(r);
}

/* Parses and checks a write's body (pool thread); 0 or an error status. */
static int parse_write(job_t *j) {
    tl_problem_t *pb = &j->pb;
    int rc = tl_adapter_parse_json(j->body ? j->body : "", j->body_len, &j->in, pb);
    if (rc) return rc;
    json_t *o = j->in.root;
    switch (j->q) {
    case W_REPLY: {
        tl_str_t target;
        if ((rc = tl_adapter_opt_str(o, "text", 16 * 1024, &j->text, pb)) ||
            (rc = tl_adapter_attachments(o, "attachments", &j->in, &j->atts, pb)) ||
            (rc = tl_adapter_req_str(o, "target_platform", 32, &target, pb)))
            return rc;
        if (!j->text.ptr) j->text = TL_STR("");
        if (j->text.len == 0 && j->atts.n == 0)
            return tl_problem_set(pb, 422, "missing-field", "Missing field", "text",
                                  "a reply needs \"text\" or at least one attachment");
        if (tl_platform_from_slug(target.ptr, target.len, &j->target) != TL_OK ||
            j->target == TL_PLATFORM_AGENT || j->target == TL_PLATFORM_SYSTEM)
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "target_platform",
                                  "\"%.*s\" is not a platform a customer can be answered on",
                                  (int)(target.len > 32 ? 32 : target.len), target.ptr);
        return 0;
    }
    case W_ASSIGN:
        if ((rc = tl_adapter_opt_str(o, "agent_id", 64, &j->agent_to, pb)) ||
            (rc = tl_adapter_opt_str(o, "team", 64, &j->team_to, pb)))
            return rc;
        if (!j->agent_to.ptr && !j->team_to.ptr)
            return tl_problem_set(pb, 422, "missing-field", "Missing field", "agent_id",
                                  "an assignment needs \"agent_id\", \"team\" or both");
        return 0;
    case W_CLOSE:
        if ((rc = tl_adapter_opt_str(o, "reason", 256, &j->reason, pb))) return rc;
        if (!j->reason.ptr) j->reason = TL_STR("closed by agent");
        return 0;
    case W_RESOLVE:
        return tl_adapter_req_str(o, "value", 1024, &j->value, pb);
    default: return 0;
    }
}

/* Looks up and authorises a write's target (pool thread). */
static void run_write(job_t *j, PGconn *pg, const char *const *scope) {
    if (parse_write(j)) {
        j->status_code = j->pb.status;
        return;
    }
    const char *vals[] = {scope[0], scope[1], scope[2], j->id};
    PGresult *r;
    if (j->q != W_RESOLVE) {
        if (!(r = query(j, pg, write_conv_sql, 4, vals))) return;
        if (PQntuples(r) == 0) not_found(j, "conversation");
        else if (j->q == W_CLOSE && strcmp(PQgetvalue(r, 0, 2), "closed") == 0) {
            tl_problem_set(&j->pb, 409, "already-closed", "Conversation already closed", NULL,
                           "conversation %s is already closed", j->id);
            j->status_code = 409;
        } else {
            snprintf(j->w_tenant, sizeof j->w_tenant, "%s", PQgetvalue(r, 0, 0));
            snprintf(j->w_customer, sizeof j->w_customer, "%s", PQgetvalue(r, 0, 1));
        }
        PQclear(r);
        return;
    }
    if (!(r = query(j, pg, write_conflict_sql, 4, vals))) return;
    if (PQntuples(r) == 0) {
        not_found(j, "conflict");
        PQclear(r);
        return;
    }
    if (strcmp(PQgetvalue(r, 0, 3), "open") != 0) {
        tl_problem_set(&j->pb, 409, "conflict-closed", "Conflict already closed", NULL,
                       "conflict %s is %s", j->id, PQgetvalue(r, 0, 3));
        j->status_code = 409;
        PQclear(r);
        return;
    }
    json_t *cands = json_loads(PQgetvalue(r, 0, 4), 0, NULL);
    int found = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cands, i, c) {
        const char *v = json_string_value(json_object_get(c, "value"));
        if (v && strlen(v) == j->value.len && memcmp(v, j->value.ptr, j->value.len) == 0) found = 1;
    }
    json_decref(cands);
    if (!found) {
        tl_problem_set(&j->pb, 422, "not-a-candidate", "Not a candidate value", "value",
                       "the chosen value is not one of the conflict's candidates");
        j->status_code = 422;
    } else {
        snprintf(j->w_tenant, sizeof j->w_tenant, "%s", PQgetvalue(r, 0, 0));
        snprintf(j->w_customer, sizeof j->w_customer, "%s", PQgetvalue(r, 0, 1));
        snprintf(j->w_field, sizeof j->w_field, "%s", PQgetvalue(r, 0, 2));
    }
    PQclear(r);
}

static void work(uv_work_t *w) {
    job_t *j = w->data;
    tl_rest_t *a = j->api;
    PGconn *pg = pool_pg(a->cfg->pg_dsn);
    if (j->q == Q_READY) {
        int pg_ok = pg && tl_pg_exec(pg, "SELECT 1") == TL_OK;
        int kafka_ok = !a->ingest || tl_ingest_ping(a->ingest, 2000) == TL_OK;
        if (pg_ok && kafka_ok) {
            j->status_code = 200;
            j->out = strdup("{\"status\":\"ready\",\"kafka\":\"up\",\"postgres\":\"up\"}");
        } else {
            tl_problem_set(&j->pb, 503, "not-ready", "Not ready", NULL, "kafka %s, postgres %s",
                           kafka_ok ? "up" : "unreachable", pg_ok ? "up" : "unreachable");
            j->pb.retry_after = 1;
            j->status_code = 503;
        }
        return;
    }
    int st = tl_auth_verify(a->auth, pg, j->authz, j->authz_len,
                            j->has_tenant_param ? j->tenant_param : NULL, &j->key, &j->pb);
    if (st) {
        j->status_code = st;
        return;
    }
    if (!tl_auth_allow(&j->key, IS_WRITE(j->q) ? TL_OP_WRITE : TL_OP_READ, TL_PLATFORM_AGENT, &j->pb)) {
        j->status_code = 403;
        return;
    }
    if (!pg) {
        fail503(j, "postgres-unavailable", "Views unavailable", "PostgreSQL is unreachable");
        return;
    }
    if (j->after_part >= 0 &&
        wait_after(j, pg, j->q == Q_TIMELINE ? views[j->view][0] : "agent") != 0) {
        tl_problem_set(&j->pb, 503, "projection-behind", "Projection has not caught up", "after",
                       "the view has not yet applied position %d:%lld after %d ms", j->after_part,
                       j->after_off, AFTER_WAIT_MS);
        j->pb.retry_after = 1;
        j->status_code = 503;
        return;
    }
    int agent = j->key.role == TL_ROLE_AGENT;
    const char *scope[3] = {j->key.tenant[0] ? j->key.tenant : NULL,
                            agent ? j->key.agent_id : NULL,
                            agent && j->key.team[0] ? j->key.team : NULL};
    /* An agent key always has an agent id; a team-less agent must still
     * be scoped, so $2 is never NULL for agents. */
    if (IS_WRITE(j->q)) run_write(j, pg, scope);
    else run_read(j, pg, scope);
}

static void job_free(job_t *j) {
    tl_http_pending_free(j->pending);
    tl_adapter_out_close(&j->in);
    free(j->authz);
    free(j->body);
    free(j->out);
    free(j);
}

static void answer_problem(job_t *j) {
    if (j->pending->req) tl_http_problem(j->pending->req, &j->pb);
}

/* Delivery of a write's event: answer 202 with its position, or 503. */
static void on_written(void *ud, int err, const tl_writes_ack_t *ack, const char *why) {
    job_t *j = ud;
    h2o_req_t *req = j->pending->req;
    if (req && err) {
        tl_problem_set(&j->pb, 503, "kafka-unavailable", "Event log unavailable", NULL,
                       "the event was not acknowledged by Kafka (%s); retry with the same "
                       "Idempotency-Key", why ? why : "unknown");
        j->pb.retry_after = 2;
        tl_http_problem(req, &j->pb);
    } else if (req) {
        char body[256], position[48];
        if (ack->offset >= 0)
            snprintf(position, sizeof position, "\"%d:%lld\"", (int)ack->partition, (long long)ack->offset);
        else
            snprintf(position, sizeof position, "null");
        int n = snprintf(body, sizeof body, "{\"event_id\":\"%s\",\"position\":%s,\"duplicate\":%s}",
                         ack->event_id, position, ack->duplicate ? "true" : "false");
        tl_http_json(req, 202, body, (size_t)n);
    }
    job_free(j);
}

static int64_t now_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static tl_str_t str_of(const char *s) { return (tl_str_t){s, strlen(s)}; }

/* Builds the write's event and produces it (loop thread). */
static void produce(job_t *j) {
    tl_rest_t *a = j->api;
    char event_id[TL_UUID_STRLEN + 1], idem[64], actor[96], dedup[TL_DEDUP_KEY_MAX];
    const char *dedup_key = NULL;
    int64_t now = now_ms();
    if (j->has_idem) {
        /* Same tenant, key and Idempotency-Key: the same event. */
        const char *parts[] = {j->w_tenant, j->key.key_id, j->idem};
        size_t lens[] = {strlen(j->w_tenant), strlen(j->key.key_id), strlen(j->idem)};
        tl_uuid_v5(parts, lens, 3, event_id);
        int n = snprintf(dedup, sizeof dedup, "%s\x1f%s\x1f%s", j->w_tenant, j->key.key_id, j->idem);
        if (n > 0 && (size_t)n < sizeof dedup) dedup_key = dedup;
    } else {
        tl_uuid_v7(now, event_id);
    }
    snprintf(idem, sizeof idem, "agent:%s", event_id);
    if (j->key.role == TL_ROLE_AGENT) snprintf(actor, sizeof actor, "%s", j->key.agent_id);
    else snprintf(actor, sizeof actor, "%s:%s", tl_auth_role_name(j->key.role), j->key.key_id);

    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.event_id = (tl_str_t){event_id, TL_UUID_STRLEN};
    ev.tenant_id = str_of(j->w_tenant);
    ev.customer_id = str_of(j->w_customer);
    ev.platform = TL_PLATFORM_AGENT;
    ev.platform_user_id = str_of(actor);
    ev.idempotency_key = str_of(idem);
    ev.occurred_at = ev.received_at = now;
    ev.trace_id = ev.event_id;
    tl_str_t conv = str_of(j->id);
    switch (j->q) {
    case W_REPLY:
        ev.kind = TL_EV_AGENT_REPLIED;
        ev.u.reply = (tl_agent_replied_t){str_of(actor), conv, j->text, j->atts, j->target};
        break;
    case W_ASSIGN:
        ev.kind = TL_EV_CONVERSATION_ASSIGNED;
        ev.u.assign = (tl_conversation_assigned_t){conv, j->agent_to, j->team_to};
        break;
    case W_CLOSE:
        ev.kind = TL_EV_CONVERSATION_CLOSED;
        ev.u.close = (tl_conversation_closed_t){conv, j->reason, str_of(actor)};
        break;
    default:
        ev.kind = TL_EV_CONFLICT_RESOLVED;
        ev.u.resolve = (tl_conflict_resolved_t){conv, str_of(j->w_field), j->value, str_of(actor)};
        break;
    }
    int rc = a->writes ? tl_writes_produce(a->writes, &ev, dedup_key, on_written, j) : TL_EKAFKA_DOWN;
    if (rc) {
        if (rc == TL_EKAFKA_DOWN)
            tl_problem_set(&j->pb, 503, "kafka-unavailable", "Event log unavailable", NULL,
                           "the event log is not accepting writes; retry with the same Idempotency-Key");
        else
            tl_problem_set(&j->pb, 503, "overloaded", "Overloaded", NULL, "the event could not be built (%s)",
                           tl_strerror(rc));
        j->pb.retry_after = 2;
        answer_problem(j);
        job_free(j);
    }
}

static void after_work(uv_work_t *w, int status) {
    job_t *j = w->data;
    h2o_req_t *req = j->pending->req;
    if (status == UV_ECANCELED) {
        tl_problem_set(&j->pb, 503, "shutting-down", "Shutting down", NULL, "the server is stopping");
        answer_problem(j);
    } else if (j->status_code == 0 && IS_WRITE(j->q)) {
        if (req) {
            produce(j);
            return;
        }
    } else if (req) {
        if (j->status_code == 200 && j->out) tl_http_json(req, 200, j->out, strlen(j->out));
        else if (j->status_code == 200 || j->status_code == 0) {
            tl_problem_set(&j->pb, 500, "internal", "Internal error", NULL, "out of memory");
            tl_http_problem(req, &j->pb);
        } else {
            if (j->status_code == 401)
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                               H2O_STRLIT("Bearer realm=\"threadline\""));
            tl_http_problem(req, &j->pb);
        }
    }
    job_free(j);
}

static int bad_param(tl_problem_t *pb, const char *name, const char *fmt, const char *v) {
    return tl_problem_set(pb, 400, "invalid-parameter", "Invalid parameter", name, fmt, v);
}

/* Reads an optional query parameter into buf; -1 (pb filled) when too long. */
static int opt_param(h2o_req_t *req, const char *name, char *buf, size_t n, int *has, tl_problem_t *pb) {
    char tmp[512];
    int l = tl_http_query(req, name, tmp, sizeof tmp);
    *has = 0;
    if (l < 0) return 0;
    if ((size_t)l >= n || l == 0) {
        tl_problem_set(pb, 400, "invalid-parameter", "Invalid parameter", name,
                       "\"%s\" must be between 1 and %zu bytes", name, n - 1);
        return -1;
    }
    memcpy(buf, tmp, (size_t)l + 1);
    *has = 1;
    return 0;
}

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* Splits a cursor "a~b~..." into nparts numeric parts and a trailing id
 * (when with_id), or nparts+... all numeric. */
static int parse_cursor(job_t *j, const char *s, int nnum, int with_id) {
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s", s);
    char *p = tmp;
    for (int i = 0; i < nnum; i++) {
        char *t = strchr(p, '~');
        if (t) *t = 0;
        if (!all_digits(p) || strlen(p) >= sizeof j->cursor[0] || (!t && (i + 1 < nnum || with_id)))
            return -1;
        if (i < 3) snprintf(j->cursor[i], sizeof j->cursor[i], "%s", p);
        else if (!with_id) snprintf(j->cursor_id, sizeof j->cursor_id, "%s", p);
        p = t ? t + 1 : p + strlen(p);
    }
    if (with_id) {
        if (!*p || strlen(p) >= sizeof j->cursor_id) return -1;
        snprintf(j->cursor_id, sizeof j->cursor_id, "%s", p);
    }
    return 0;
}

static int valid_id(const h2o_iovec_t *v) {
    if (v->len == 0 || v->len >= 128) return 0;
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->base[i];
        if (!(c == '-' || c == '_' || c == '.' || c == ':' || (c >= '0' && c <= '9') ||
              (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}

static void submit(tl_rest_t *a, h2o_req_t *req, query_t q, const tl_http_params_t *params) {
    tl_problem_t pb;
    job_t *j = calloc(1, sizeof *j);
    if (!j || !(j->pending = tl_http_pending_new(req))) {
        free(j);
        tl_problem_set(&pb, 503, "overloaded", "Overloaded", NULL, "out of memory");
        pb.retry_after = 1;
        tl_http_problem(req, &pb);
        return;
    }
    j->api = a;
    j->q = q;
    j->after_part = -1;
    j->work.data = j;
    if (params && params->n) {
        /* Conversation and customer ids are UUIDs; conflict ids are the
         * fold's, so only their alphabet is checked.  Either way a bad id
         * is simply not found. */
        int conflict = q == W_RESOLVE;
        if (conflict ? !valid_id(&params->v[0]) : !tl_uuid_valid(params->v[0].base, params->v[0].len)) {
            tl_problem_set(&pb, 404, "not-found", "Not found", "id", "\"%.*s\" is not a valid id",
                           (int)(params->v[0].len > 64 ? 64 : params->v[0].len), params->v[0].base);
            goto bad;
        }
        snprintf(j->id, sizeof j->id, "%.*s", (int)params->v[0].len, params->v[0].base);
    }
    const h2o_iovec_t *h = tl_http_header(req, "authorization");
    if (h) {
        if (!(j->authz = malloc(h->len + 1))) {
            tl_problem_set(&pb, 503, "overloaded", "Overloaded", NULL, "out of memory");
            goto bad;
        }
        memcpy(j->authz, h->base, h->len);
        j->authz[h->len] = 0;
        j->authz_len = h->len;
    }
    if (opt_param(req, "tenant", j->tenant_param, sizeof j->tenant_param, &j->has_tenant_param, &pb))
        goto bad;
    char v[200];
    if (tl_http_query(req, "after", v, sizeof v) >= 0) {
        char *colon = strchr(v, ':'), *end;
        long part = colon ? strtol(v, &end, 10) : -1;
        long long off = colon ? strtoll(colon + 1, &end, 10) : -1;
        if (!colon || part < 0 || part > 1023 || off < 0 || *end) {
            bad_param(&pb, "after", "%s", "\"after\" must be a log position PARTITION:OFFSET, as returned by a write");
            goto bad;
        }
        j->after_part = (int)part;
        j->after_off = off;
    }
    int dflt = q == Q_TIMELINE ? TIMELINE_DEFAULT : LIST_DEFAULT, max = q == Q_TIMELINE ? TIMELINE_MAX : LIST_MAX;
    j->limit = dflt;
    if (tl_http_query(req, "limit", v, sizeof v) >= 0) {
        if (!all_digits(v) || strlen(v) > 6 || atoi(v) < 1 || atoi(v) > max) {
            tl_problem_set(&pb, 400, "invalid-parameter", "Invalid parameter", "limit",
                           "\"limit\" must be an integer from 1 to %d", max);
            goto bad;
        }
        j->limit = atoi(v);
    }
    if (tl_http_query(req, "cursor", v, sizeof v) >= 0) {
        int ok = q == Q_TIMELINE ? parse_cursor(j, v, 4, 0) : parse_cursor(j, v, 1, 1);
        if (ok != 0 || (q != Q_LIST && q != Q_TIMELINE && q != Q_CONFLICTS)) {
            bad_param(&pb, "cursor", "%s", "\"cursor\" is not a cursor this list returned");
            goto bad;
        }
    }
    if (q == Q_LIST || q == Q_CONFLICTS) {
        if (opt_param(req, "status", j->status, sizeof j->status, &j->has_status, &pb)) goto bad;
        if (j->has_status && q == Q_LIST && strcmp(j->status, "open") && strcmp(j->status, "closed")) {
            bad_param(&pb, "status", "%s", "\"status\" must be open or closed");
            goto bad;
        }
        if (j->has_status && q == Q_CONFLICTS && strcmp(j->status, "open") &&
            strcmp(j->status, "resolved") && strcmp(j->status, "withdrawn")) {
            bad_param(&pb, "status", "%s", "\"status\" must be open, resolved or withdrawn");
            goto bad;
        }
    }
    if (q == Q_LIST) {
        if (opt_param(req, "assignee", j->assignee, sizeof j->assignee, &j->has_assignee, &pb) ||
            opt_param(req, "team", j->team, sizeof j->team, &j->has_team, &pb) ||
            opt_param(req, "platform", j->platform, sizeof j->platform, &j->has_platform, &pb) ||
            opt_param(req, "tag", j->tag, sizeof j->tag, &j->has_tag, &pb) ||
            opt_param(req, "customer_id", j->customer, sizeof j->customer, &j->has_customer, &pb))
            goto bad;
        tl_platform_t pl;
        if (j->has_platform && tl_platform_from_slug(j->platform, strlen(j->platform), &pl) != TL_OK) {
            bad_param(&pb, "platform", "\"%s\" is not a platform", j->platform);
            goto bad;
        }
    }
    if (q == Q_TIMELINE) {
        j->view = 0;
        if (tl_http_query(req, "view", v, sizeof v) >= 0) {
            j->view = -1;
            for (int i = 0; i < NVIEWS; i++)
                if (strcmp(v, views[i][0]) == 0) j->view = i;
            if (j->view < 0) {
                bad_param(&pb, "view", "%s",
                          "\"view\" must be one of agent, web, app, mini_program, wechat, douyin, phone");
                goto bad;
            }
        }
    }
    if (IS_WRITE(q)) {
        const char *body;
        size_t len;
        if (tl_http_body(req, &body, &len) < 0) {
            job_free(j);        /* 413 already answered */
            return;
        }
        if (len && !(j->body = malloc(len))) {
            tl_problem_set(&pb, 503, "overloaded", "Overloaded", NULL, "out of memory");
            goto bad;
        }
        if (len) memcpy(j->body, body, len);
        j->body_len = len;
        const h2o_iovec_t *ik = tl_http_header(req, "idempotency-key");
        if (ik) {
            int printable = ik->len > 0 && ik->len <= IDEMPOTENCY_MAX;
            for (size_t i = 0; printable && i < ik->len; i++)
                printable = ik->base[i] > 32 && ik->base[i] < 127;
            if (!printable) {
                tl_problem_set(&pb, 400, "invalid-header", "Invalid header", "Idempotency-Key",
                               "Idempotency-Key must be 1 to %d printable ASCII characters", IDEMPOTENCY_MAX);
                goto bad;
            }
            memcpy(j->idem, ik->base, ik->len);
            j->idem[ik->len] = 0;
            j->has_idem = 1;
        }
    }
    uv_queue_work(a->loop, &j->work, work, after_work);
    return;
bad:
    job_free(j);
    tl_http_problem(req, &pb);
}

#define HANDLER(name, q)                                                                  \
    static void name(void *ud, h2o_req_t *req, const tl_http_params_t *params) {          \
        submit(ud, req, q, params);                                                       \
    }
HANDLER(list_handler, Q_LIST)
HANDLER(conv_handler, Q_CONV)
HANDLER(timeline_handler, Q_TIMELINE)
HANDLER(customer_handler, Q_CUSTOMER)
HANDLER(conflicts_handler, Q_CONFLICTS)
HANDLER(reply_handler, W_REPLY)
HANDLER(assign_handler, W_ASSIGN)
HANDLER(close_handler, W_CLOSE)
HANDLER(resolve_handler, W_RESOLVE)

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

int tl_rest_new(uv_loop_t *loop, tl_http_t *http, tl_ingest_t *ingest, tl_writes_t *writes,
                tl_auth_t *auth, const tl_config_t *cfg, tl_rest_t **out) {
    tl_rest_t *a = calloc(1, sizeof *a);
    if (!a) return TL_ENOMEM;
    a->loop = loop;
    a->ingest = ingest;
    a->writes = writes;
    a->auth = auth;
    a->cfg = cfg;
    pthread_mutex_init(&a->cache_mu, NULL);
    int rc = 0;
    rc |= tl_http_route(http, "GET", "/v1/conversations", list_handler, a);
    rc |= tl_http_route(http, "GET", "/v1/conversations/{}", conv_handler, a);
    rc |= tl_http_route(http, "GET", "/v1/conversations/{}/timeline", timeline_handler, a);
    rc |= tl_http_route(http, "POST", "/v1/conversations/{}/replies", reply_handler, a);
    rc |= tl_http_route(http, "POST", "/v1/conversations/{}/assign", assign_handler, a);
    rc |= tl_http_route(http, "POST", "/v1/conversations/{}/close", close_handler, a);
    rc |= tl_http_route(http, "GET", "/v1/customers/{}", customer_handler, a);
    rc |= tl_http_route(http, "GET", "/v1/conflicts", conflicts_handler, a);
    rc |= tl_http_route(http, "POST", "/v1/conflicts/{}/resolve", resolve_handler, a);
    rc |= tl_http_route(http, "GET", "/healthz", healthz_handler, a);
    rc |= tl_http_route(http, "GET", "/readyz", readyz_handler, a);
    rc |= tl_http_route(http, "GET", "/metrics", metrics_handler, a);
    if (rc) {
        tl_rest_free(a);
        return TL_ENOMEM;
    }
    *out = a;
    return TL_OK;
}

void tl_rest_free(tl_rest_t *a) {
    if (!a) return;
    for (int i = 0; i < PAGE_CACHE_SLOTS; i++) free(a->cache[i].body);
    pthread_mutex_destroy(&a->cache_mu);
    free(a);
}
