/*
 * test_rest.c -- the REST API (engine/rest.c, engine/auth.c, engine/writes.c,
 * engine/stream.c) against a real `threadline serve`, Kafka and PostgreSQL.
 *
 * Each test has its own database (migrated) and topic prefix, and a serve
 * with --auth required.  Keys are made with tl_auth_key_create, the
 * function behind `threadline keys create`.  Read tests seed the tables
 * with SQL (a fixed cast of conversations, customers, conflicts and view
 * rows across two tenants) so that filters, cursors and scope decisions are
 * checked against known rows; the write tests go end to end: POST, event,
 * fold, projection, and a read with ?after=<position> that must show the
 * write.
 *
 * Isolation and cleanup follow test_pipeline.c: RT_ASSERT prints the serve
 * log, stops the server, drops the database and deletes the topics before
 * it fails.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <jansson.h>

#include "auth.h"
#include "error.h"
#include "suites.h"
#include "support.h"

#define RT_PARTITIONS 2
#define RT_READY_MS 60000
#define RT_HTTP_MS 20000
#define RT_LOG_TAIL 60

static const char *rt_brokers, *rt_pg_dsn, *rt_exe;
static char rt_run_tag[64], rt_db_tag[32];
static int rt_seq;

typedef struct rt_test {
    char prefix[128], db[96], dsn[512];
    int have_db, have_serve;
    tl_test_serve_t serve;
    PGconn *pg;
    CURL *curl;
    /* keys: admin, agent alice (team blue), auditor, connector, admin of t2 */
    char admin[TL_AUTH_TOKEN_LEN + 1], alice[TL_AUTH_TOKEN_LEN + 1], auditor[TL_AUTH_TOKEN_LEN + 1];
    char connector[TL_AUTH_TOKEN_LEN + 1], admin2[TL_AUTH_TOKEN_LEN + 1];
} rt_test_t;

static rt_test_t rt;

static void rt_cleanup(int ok) {
    char err[512];
    if (rt.curl) curl_easy_cleanup(rt.curl);
    rt.curl = NULL;
    if (rt.pg) PQfinish(rt.pg);
    rt.pg = NULL;
    if (rt.have_serve) tl_test_serve_close(&rt.serve, ok);
    rt.have_serve = 0;
    if (rt.have_db && tl_test_pg_drop_db(rt_pg_dsn, rt.db, err, sizeof err) < 0)
        fprintf(stderr, "cleanup: %s\n", err);
    rt.have_db = 0;
    if (rt.prefix[0]) {
        char topics[160];
        snprintf(topics, sizeof topics, "%s.", rt.prefix);
        if (tl_test_kafka_delete_topics(rt_brokers, topics, 10000, err, sizeof err) < 0)
            fprintf(stderr, "cleanup: %s\n", err);
        rt.prefix[0] = 0;
    }
}

static void rt_on_failure(const char *file, int line, const char *msg) {
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    if (rt.have_serve) {
        tl_test_serve_log_tail(&rt.serve, RT_LOG_TAIL);
        fprintf(stderr, "(full serve log kept: %s)\n", rt.serve.log_path);
    }
    rt_cleanup(0);
}

#define RT_FAIL(...)                                                                         \
    do {                                                                                     \
        char rt_msg_[8192];                                                                  \
        snprintf(rt_msg_, sizeof rt_msg_, __VA_ARGS__);                                      \
        rt_on_failure(__FILE__, __LINE__, rt_msg_);                                          \
        ck_abort_msg("%s", rt_msg_);                                                         \
    } while (0)

#define RT_ASSERT(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond)) RT_FAIL(__VA_ARGS__);                                                   \
    } while (0)

/* ------------------------------------------------------------ fixtures */

static void rt_services_check(void) {
    tl_test_services_t sv;
    tl_test_services_require("rest", &sv);
    rt_brokers = sv.brokers;
    rt_pg_dsn = sv.pg_dsn;
    rt_exe = sv.exe;
    snprintf(rt_run_tag, sizeof rt_run_tag, "rt%dt%lld", (int)getpid(), (long long)time(NULL));
    snprintf(rt_db_tag, sizeof rt_db_tag, "tl_rt%d_", (int)getpid());
}

static void rt_services_sweep(void) {
    char err[512];
    if (rt_brokers && rt_run_tag[0] &&
        tl_test_kafka_delete_topics(rt_brokers, rt_run_tag, 10000, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
    if (rt_pg_dsn && rt_db_tag[0] && tl_test_pg_drop_dbs_like(rt_pg_dsn, rt_db_tag, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
}

static void rt_setup(void) { memset(&rt, 0, sizeof rt); }
static void rt_teardown(void) { rt_cleanup(1); }

static void rt_key(tl_auth_role_t role, const char *tenant, const char *agent, const char *team,
                   const char *platforms, char *out) {
    char msg[256];
    tl_auth_new_key_t nk = {tenant, role, agent, team, platforms, "test"};
    int rc = tl_auth_key_create(rt.pg, &nk, out, msg, sizeof msg);
    RT_ASSERT(rc == TL_OK, "key create: %s", msg);
}

/* A fresh database with keys, and a server with --auth required on
 * brokers; waits for /readyz when ready.  extra: more serve flags or NULL. */
static void rt_begin_on(const char *brokers, int ready, const char *const *extra_in) {
    char err[1024];
    int n = ++rt_seq;
    snprintf(rt.prefix, sizeof rt.prefix, "%sx%dx%d", rt_run_tag, (int)getpid(), n);
    snprintf(rt.db, sizeof rt.db, "%s%d", rt_db_tag, n);
    RT_ASSERT(tl_test_pg_dsn_for(rt_pg_dsn, rt.db, rt.dsn, sizeof rt.dsn) == 0, "DSN too long");
    RT_ASSERT(tl_test_pg_create_db(rt_pg_dsn, rt.db, err, sizeof err) == 0, "%s", err);
    rt.have_db = 1;
    const char *extra[20] = {"--auth", "required", "--batch-ms", "5"};
    for (int i = 0; extra_in && extra_in[i] && i < 15; i++) extra[i + 4] = extra_in[i];
    RT_ASSERT(tl_test_serve_init(&rt.serve, rt_exe, brokers, rt.dsn, rt.prefix, RT_PARTITIONS, extra,
                                 err, sizeof err) == 0, "%s", err);
    rt.have_serve = 1;
    char *migrate[] = {(char *)rt_exe, "migrate", "--pg-dsn", rt.dsn, NULL};
    int rc = tl_test_run(migrate, rt.serve.log_path, 60000, err, sizeof err);
    RT_ASSERT(rc == 0, "migrate: %s", rc < 0 ? err : "non-zero exit");
    rt.pg = tl_test_pg_connect(rt.dsn, err, sizeof err);
    RT_ASSERT(rt.pg != NULL, "%s", err);
    rt_key(TL_ROLE_ADMIN, "t1", NULL, NULL, NULL, rt.admin);
    rt_key(TL_ROLE_AGENT, "t1", "alice", "blue", NULL, rt.alice);
    rt_key(TL_ROLE_AUDITOR, "t1", NULL, NULL, NULL, rt.auditor);
    rt_key(TL_ROLE_CONNECTOR, "t1", NULL, NULL, "web,api", rt.connector);
    rt_key(TL_ROLE_ADMIN, "t2", NULL, NULL, NULL, rt.admin2);
    RT_ASSERT(tl_test_serve_start(&rt.serve, err, sizeof err) == 0, "%s", err);
    if (ready)
        RT_ASSERT(tl_test_serve_wait_ready(&rt.serve, RT_READY_MS, err, sizeof err) == 0, "not ready: %s", err);
    rt.curl = curl_easy_init();
    RT_ASSERT(rt.curl != NULL, "curl_easy_init");
}

static void rt_begin(const char *const *extra) { rt_begin_on(rt_brokers, 1, extra); }

/* ------------------------------------------------------------ requests */

/* method path (with query) as `key` (NULL: no Authorization); idem: an
 * Idempotency-Key or NULL.  resp must be closed by the caller. */
static void rt_call(const char *method, const char *key, const char *path, const char *body,
                    const char *idem, tl_test_resp_t *resp) {
    char url[1024], auth[256], ik[256];
    const char *headers[3] = {NULL, NULL, NULL};
    int h = 0;
    snprintf(url, sizeof url, "%s%s", rt.serve.base_url, path);
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        headers[h++] = auth;
    }
    if (idem) {
        snprintf(ik, sizeof ik, "Idempotency-Key: %s", idem);
        headers[h++] = ik;
    }
    tl_test_http_h(rt.curl, method, url, headers, body, body ? strlen(body) : 0, RT_HTTP_MS, resp);
}

/* Asserts the status; a problem must be problem+json, a 2xx JSON. */
static void rt_expect(const char *method, const char *key, const char *who, const char *path,
                      const char *body, long want, tl_test_resp_t *out) {
    tl_test_resp_t resp;
    rt_call(method, key, path, body, NULL, &resp);
    int ok = resp.status == want &&
             tl_test_resp_is(&resp, want >= 400 ? "application/problem+json" : "application/json");
    if (!ok) {
        char got[512];
        snprintf(got, sizeof got, "%s", resp.body ? resp.body : "");
        long st = resp.status;
        char ct[128];
        snprintf(ct, sizeof ct, "%s", resp.content_type);
        tl_test_resp_close(&resp);
        RT_FAIL("%s %s as %s: got %ld (%s) %s, want %ld", method, path, who, st, ct, got, want);
    }
    if (out) *out = resp;
    else tl_test_resp_close(&resp);
}

static json_t *rt_json(const tl_test_resp_t *resp) {
    json_error_t je;
    json_t *j = json_loads(resp->body, 0, &je);
    RT_ASSERT(j != NULL, "not JSON: %s (%s)", je.text, resp->body);
    return j;
}

static void rt_sql(const char *sql) {
    char err[1024];
    RT_ASSERT(tl_test_pg_exec(rt.pg, sql, err, sizeof err) == 0, "%s", err);
}

/* ------------------------------------------------------------ the cast */

#define CONV(n) "00000000-0000-4000-8000-0000000000c" #n
#define CUST(n) "00000000-0000-4000-8000-0000000000a" #n

/* t1: c1 alice/blue (cu1, web, vip), c2 bob/blue (cu1, app+wechat), c3 bob/red
 * closed (cu2, phone, refund), c4 unassigned (cu2, web), c5 carol/red (cu3);
 * t2: c6 alice (cu9).  Timeline: 7 agent items and 2 web items on c1.
 * Conflicts: k1 open and k2 resolved on cu1, k3 open on cu3. */
static void rt_seed(void) {
    rt_sql("INSERT INTO customers (tenant_id, customer_id, version, platforms, first_seen, last_activity) VALUES"
           " ('t1', '" CUST(1) "', 3, '{web,app}', now() - interval '1 day', now()),"
           " ('t1', '" CUST(2) "', 2, '{phone}', now() - interval '1 day', now()),"
           " ('t1', '" CUST(3) "', 1, '{web}', now() - interval '1 day', now()),"
           " ('t2', '" CUST(9) "', 1, '{web}', now() - interval '1 day', now())");
    rt_sql("INSERT INTO conversations (tenant_id, conversation_id, customer_id, status, assignee, team,"
           " tags, platforms, version, opened_at, last_activity, item_count) VALUES"
           " ('t1', '" CONV(1) "', '" CUST(1) "', 'open', 'alice', 'blue', '{vip}', '{web}', 7,"
           "   now() - interval '2 hours', now() - interval '1 minute', 7),"
           " ('t1', '" CONV(2) "', '" CUST(1) "', 'open', 'bob', 'blue', '{}', '{app,wechat}', 2,"
           "   now() - interval '2 hours', now() - interval '2 minutes', 2),"
           " ('t1', '" CONV(3) "', '" CUST(2) "', 'closed', 'bob', 'red', '{refund}', '{phone}', 3,"
           "   now() - interval '2 hours', now() - interval '3 minutes', 3),"
           " ('t1', '" CONV(4) "', '" CUST(2) "', 'open', NULL, NULL, '{}', '{web}', 1,"
           "   now() - interval '2 hours', now() - interval '4 minutes', 1),"
           " ('t1', '" CONV(5) "', '" CUST(3) "', 'open', 'carol', 'red', '{}', '{web}', 1,"
           "   now() - interval '2 hours', now() - interval '5 minutes', 1),"
           " ('t2', '" CONV(6) "', '" CUST(9) "', 'open', 'alice', 'blue', '{}', '{web}', 1,"
           "   now() - interval '2 hours', now() - interval '1 minute', 1)");
    rt_sql("INSERT INTO view_agent (tenant_id, event_id, conversation_id, customer_id, kind, platform,"
           " source_label, effective_ts, occurred_at, received_at, source_partition, source_offset,"
           " idempotency_key, body, part)"
           " SELECT 't1', 'ev-' || g, '" CONV(1) "', '" CUST(1) "', 'MessageReceived', 'web', 'web',"
           "  now() - interval '1 hour' + g * interval '1 second', now(), now(), 0, g, 'web:m' || g,"
           "  json_build_object('text', 'item ' || g)::jsonb, 0 FROM generate_series(1, 7) g");
    rt_sql("INSERT INTO view_web (tenant_id, event_id, conversation_id, customer_id, kind, platform,"
           " source_label, effective_ts, occurred_at, received_at, source_partition, source_offset,"
           " idempotency_key, body, part)"
           " SELECT 't1', 'ev-1', '" CONV(1) "', '" CUST(1) "', 'MessageReceived', 'web', 'web',"
           "  now(), now(), now(), 0, 1, 'web:m1', json_build_object('text', 'piece ' || g)::jsonb, g"
           "  FROM generate_series(0, 1) g");
    rt_sql("INSERT INTO customer_fields (tenant_id, customer_id, field, value, is_key, version,"
           " effective_ts, platform, event_id) VALUES"
           " ('t1', '" CUST(1) "', 'phone', '111', true, 2, now(), 'web', 'ev-2'),"
           " ('t1', '" CUST(1) "', 'name', 'Li', false, 3, now(), 'app', 'ev-3')");
    rt_sql("INSERT INTO conflicts (tenant_id, conflict_id, customer_id, field, status, candidates,"
           " opened_at, version) VALUES"
           " ('t1', 'k1', '" CUST(1) "', 'phone', 'open',"
           "   '[{\"value\":\"111\",\"platform\":\"web\"},{\"value\":\"222\",\"platform\":\"app\"}]',"
           "   now() - interval '3 minutes', 3),"
           " ('t1', 'k2', '" CUST(1) "', 'email', 'resolved', '[{\"value\":\"a@x\"},{\"value\":\"b@x\"}]',"
           "   now() - interval '2 minutes', 3),"
           " ('t1', 'k3', '" CUST(3) "', 'phone', 'open', '[{\"value\":\"5\"},{\"value\":\"6\"}]',"
           "   now() - interval '1 minutes', 1)");
    rt_sql("INSERT INTO identities (tenant_id, platform, platform_user_id, customer_id) VALUES"
           " ('t1', 'web', 'v-1', '" CUST(1) "'), ('t1', 'app', 'u-1', '" CUST(1) "')");
}

/* ------------------------------------------------------------ authorisation */

typedef struct rt_route {
    const char *method, *path, *body;
    int write;
} rt_route_t;

static const rt_route_t rt_routes[] = {
    {"GET", "/v1/conversations", NULL, 0},
    {"GET", "/v1/conversations/" CONV(1), NULL, 0},
    {"GET", "/v1/conversations/" CONV(1) "/timeline", NULL, 0},
    {"GET", "/v1/customers/" CUST(1), NULL, 0},
    {"GET", "/v1/conflicts?status=open", NULL, 0},
    {"POST", "/v1/conversations/" CONV(1) "/replies", "{\"text\":\"hi\",\"target_platform\":\"web\"}", 1},
    {"POST", "/v1/conversations/" CONV(1) "/assign", "{\"team\":\"blue\"}", 1},
    {"POST", "/v1/conversations/" CONV(1) "/close", "{\"reason\":\"done\"}", 1},
    {"POST", "/v1/conflicts/k1/resolve", "{\"value\":\"111\"}", 1},
};
#define RT_NROUTES ((int)(sizeof rt_routes / sizeof *rt_routes))

START_TEST(rest_denies_every_role_what_it_may_not_do) {
    rt_begin(NULL);
    rt_seed();
    static const char bogus[] = "tl_0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    for (int i = 0; i < RT_NROUTES; i++) {
        const rt_route_t *r = &rt_routes[i];
        rt_expect(r->method, NULL, "nobody", r->path, r->body, 401, NULL);
        rt_expect(r->method, bogus, "an unknown key", r->path, r->body, 401, NULL);
        rt_expect(r->method, "not-a-key", "a malformed key", r->path, r->body, 401, NULL);
        rt_expect(r->method, rt.connector, "connector", r->path, r->body, 403, NULL);
        if (r->write) rt_expect(r->method, rt.auditor, "auditor", r->path, r->body, 403, NULL);
        else rt_expect(r->method, rt.auditor, "auditor", r->path, r->body, 200, NULL);
    }
    /* The stream: no key 401, connector 403. */
    rt_expect("GET", NULL, "nobody", "/v1/stream", NULL, 401, NULL);
    rt_expect("GET", rt.connector, "connector", "/v1/stream", NULL, 403, NULL);

    /* Tenant isolation: t2's admin finds nothing of t1, not even by id. */
    static const char *const t1_paths[] = {
        "/v1/conversations/" CONV(1), "/v1/conversations/" CONV(1) "/timeline", "/v1/customers/" CUST(1),
    };
    for (size_t i = 0; i < 3; i++) rt_expect("GET", rt.admin2, "t2 admin", t1_paths[i], NULL, 404, NULL);
    rt_expect("POST", rt.admin2, "t2 admin", "/v1/conversations/" CONV(1) "/close", "{}", 404, NULL);
    rt_expect("POST", rt.admin2, "t2 admin", "/v1/conflicts/k1/resolve", "{\"value\":\"111\"}", 404, NULL);
    tl_test_resp_t resp;
    rt_expect("GET", rt.admin2, "t2 admin", "/v1/conversations", NULL, 200, &resp);
    json_t *j = rt_json(&resp);
    json_t *items = json_object_get(j, "items");
    RT_ASSERT(json_array_size(items) == 1 &&
                  strcmp(json_string_value(json_object_get(json_array_get(items, 0), "conversation_id")), CONV(6)) == 0,
              "t2 admin lists %s", resp.body);
    json_decref(j);
    tl_test_resp_close(&resp);

    /* Agent scope: alice sees c1 (hers) and c2 (team blue), nothing else,
     * and what she may not see is "not found", never "forbidden". */
    rt_expect("GET", rt.alice, "alice", "/v1/conversations", NULL, 200, &resp);
    j = rt_json(&resp);
    items = json_object_get(j, "items");
    RT_ASSERT(json_array_size(items) == 2, "alice lists %s", resp.body);
    json_decref(j);
    tl_test_resp_close(&resp);
    static const char *const hidden[] = {
        "/v1/conversations/" CONV(5), "/v1/conversations/" CONV(4) "/timeline", "/v1/customers/" CUST(3),
        "/v1/conversations/" CONV(6),
    };
    for (size_t i = 0; i < 4; i++) rt_expect("GET", rt.alice, "alice", hidden[i], NULL, 404, NULL);
    rt_expect("POST", rt.alice, "alice", "/v1/conversations/" CONV(5) "/replies",
              "{\"text\":\"x\",\"target_platform\":\"web\"}", 404, NULL);
    rt_expect("POST", rt.alice, "alice", "/v1/conflicts/k3/resolve", "{\"value\":\"5\"}", 404, NULL);
    rt_expect("GET", rt.alice, "alice", "/v1/customers/" CUST(1), NULL, 200, NULL);
    rt_expect("GET", rt.alice, "alice", "/v1/conflicts?status=open", NULL, 200, &resp);
    j = rt_json(&resp);
    RT_ASSERT(json_array_size(json_object_get(j, "items")) == 1, "alice's open conflicts: %s", resp.body);
    json_decref(j);
    tl_test_resp_close(&resp);

    /* A revoked key stops working within the cache lifetime. */
    char id[TL_AUTH_KEY_ID_LEN + 1], sec[TL_AUTH_SECRET_LEN + 1];
    RT_ASSERT(tl_auth_parse_token(rt.auditor, strlen(rt.auditor), id, sec) == TL_OK, "auditor key shape");
    RT_ASSERT(tl_auth_key_revoke(rt.pg, id) == TL_OK, "revoke");
    RT_ASSERT(tl_auth_key_revoke(rt.pg, id) == TL_ENOTFOUND, "second revoke must find nothing");
    tl_test_sleep_ms(TL_AUTH_CACHE_MS + 500);
    rt_expect("GET", rt.auditor, "revoked auditor", "/v1/conversations", NULL, 401, NULL);
    printf("rest: every role denied as documented on %d routes; tenants and agent scope isolated\n",
           RT_NROUTES + 1);
}
END_TEST

/* ------------------------------------------------------------ reads */

/* Pages through path with limit n, collecting the ids under `idkey`;
 * returns how many, into ids (comma-joined). */
/* The JSON ingest routes take connector keys for their platforms, of the
 * tenant they post for; WeChat and Douyin keep their own signatures. */
START_TEST(rest_ingest_requires_a_connector_key_for_its_platform_and_tenant) {
    rt_begin(NULL);
    char web_t1[512], web_t2[512], phone_t1[512];
    long long now = (long long)tl_test_now_ms();
    snprintf(web_t1, sizeof web_t1,
             "{\"tenant_id\":\"t1\",\"visitor_id\":\"v-auth\",\"message_id\":\"m-auth\","
             "\"sent_at\":%lld,\"text\":\"hello\"}", now);
    snprintf(web_t2, sizeof web_t2,
             "{\"tenant_id\":\"t2\",\"visitor_id\":\"v-auth\",\"message_id\":\"m-auth\","
             "\"sent_at\":%lld,\"text\":\"hello\"}", now);
    snprintf(phone_t1, sizeof phone_t1,
             "{\"tenant_id\":\"t1\",\"call_id\":\"c-auth\",\"caller_number\":\"+8613800138000\","
             "\"speaker\":\"customer\",\"start_ms\":0,\"end_ms\":900,\"text\":\"hi\","
             "\"confidence\":0.9,\"segment_id\":\"s1\",\"occurred_at\":%lld}", now);
    char forged[TL_AUTH_TOKEN_LEN + 1];
    snprintf(forged, sizeof forged, "%s", rt.connector);
    forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';

    tl_test_resp_t resp;
    static const char *const paths[] = {"/v1/ingest/web", "/v1/ingest/api", "/v1/ingest/app",
                                        "/v1/ingest/mini_program", "/v1/ingest/phone"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        rt_expect("POST", NULL, "nobody", paths[i], web_t1, 401, &resp);
        json_t *j = rt_json(&resp);
        RT_ASSERT(strcmp(json_string_value(json_object_get(j, "field")), "Authorization") == 0,
                  "401 names Authorization");
        json_decref(j);
        tl_test_resp_close(&resp);
        rt_expect("POST", forged, "a forged key", paths[i], web_t1, 401, NULL);
    }
    /* Roles: agents and auditors never ingest; a connector only for its platforms. */
    rt_expect("POST", rt.alice, "agent", "/v1/ingest/web", web_t1, 403, NULL);
    rt_expect("POST", rt.auditor, "auditor", "/v1/ingest/web", web_t1, 403, NULL);
    rt_expect("POST", rt.connector, "web/api connector", "/v1/ingest/phone", phone_t1, 403, NULL);
    rt_expect("POST", rt.connector, "web/api connector", "/v1/ingest/app", web_t1, 403, NULL);
    /* Tenants: a key speaks for its own tenant only. */
    rt_expect("POST", rt.connector, "t1 connector", "/v1/ingest/web", web_t2, 403, &resp);
    json_t *j = rt_json(&resp);
    RT_ASSERT(strcmp(json_string_value(json_object_get(j, "field")), "tenant_id") == 0,
              "403 names tenant_id: %s", resp.body);
    json_decref(j);
    tl_test_resp_close(&resp);
    rt_expect("POST", rt.admin2, "t2 admin", "/v1/ingest/web", web_t1, 403, NULL);
    /* Nothing refused reached the log; the right key is accepted once. */
    rt_expect("POST", rt.connector, "web/api connector", "/v1/ingest/web", web_t1, 202, &resp);
    j = rt_json(&resp);
    RT_ASSERT(json_is_false(json_object_get(j, "duplicate")), "first accepted post is new: %s",
              resp.body);
    json_decref(j);
    tl_test_resp_close(&resp);
}
END_TEST

static int rt_page_all(const char *key, const char *path, int n, const char *idkey, char *ids, size_t idsz) {
    char cursor[256] = "", p[1024];
    int count = 0, pages = 0;
    ids[0] = 0;
    for (;;) {
        RT_ASSERT(++pages < 50, "paging never ends on %s", path);
        snprintf(p, sizeof p, "%s%slimit=%d%s%s", path, strchr(path, '?') ? "&" : "?", n,
                 cursor[0] ? "&cursor=" : "", cursor);
        tl_test_resp_t resp;
        rt_expect("GET", key, "admin", p, NULL, 200, &resp);
        json_t *j = rt_json(&resp);
        json_t *items = json_object_get(j, "items"), *it;
        size_t i;
        RT_ASSERT(json_array_size(items) <= (size_t)n, "page over limit: %s", resp.body);
        json_array_foreach(items, i, it) {
            json_t *v = json_object_get(it, idkey);
            char one[128];
            if (json_is_integer(v)) snprintf(one, sizeof one, "%lld", (long long)json_integer_value(v));
            else snprintf(one, sizeof one, "%s", json_string_value(v));
            size_t l = strlen(ids);
            snprintf(ids + l, idsz - l, "%s%s", l ? "," : "", one);
            count++;
        }
        const char *next = json_string_value(json_object_get(j, "next_cursor"));
        if (next) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(j);
        tl_test_resp_close(&resp);
        if (!next) break;
    }
    return count;
}

static int rt_list_count(const char *key, const char *path) {
    tl_test_resp_t resp;
    rt_expect("GET", key, "caller", path, NULL, 200, &resp);
    json_t *j = rt_json(&resp);
    int n = (int)json_array_size(json_object_get(j, "items"));
    json_decref(j);
    tl_test_resp_close(&resp);
    return n;
}

START_TEST(rest_reads_filter_page_and_render_every_view) {
    rt_begin(NULL);
    rt_seed();
    char ids[4096];
    /* Most recent first, stable across pages. */
    int n = rt_page_all(rt.admin, "/v1/conversations", 2, "conversation_id", ids, sizeof ids);
    RT_ASSERT(n == 5 && strcmp(ids, CONV(1) "," CONV(2) "," CONV(3) "," CONV(4) "," CONV(5)) == 0,
              "paged conversations: %s", ids);
    static const struct { const char *query; int want; } filters[] = {
        {"?status=open", 4}, {"?status=closed", 1}, {"?assignee=bob", 2}, {"?team=red", 2},
        {"?platform=wechat", 1}, {"?platform=web", 3}, {"?tag=vip", 1},
        {"?customer_id=" CUST(2), 2}, {"?status=open&team=blue", 2}, {"?tag=none", 0},
    };
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++) {
        char p[256];
        snprintf(p, sizeof p, "/v1/conversations%s", filters[i].query);
        int got = rt_list_count(rt.admin, p);
        RT_ASSERT(got == filters[i].want, "%s: %d rows, want %d", p, got, filters[i].want);
    }
    /* Bad parameters name themselves. */
    static const struct { const char *path, *field; } bad[] = {
        {"/v1/conversations?status=maybe", "status"}, {"/v1/conversations?limit=0", "limit"},
        {"/v1/conversations?limit=100000", "limit"}, {"/v1/conversations?platform=fax", "platform"},
        {"/v1/conversations?cursor=nope", "cursor"}, {"/v1/conversations?after=3", "after"},
        {"/v1/conversations/" CONV(1) "/timeline?view=telegram", "view"},
        {"/v1/conversations/" CONV(1) "/timeline?cursor=1~2", "cursor"},
        {"/v1/conflicts?status=pending", "status"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tl_test_resp_t resp;
        rt_expect("GET", rt.admin, "admin", bad[i].path, NULL, 400, &resp);
        json_t *j = rt_json(&resp);
        const char *field = json_string_value(json_object_get(j, "field"));
        RT_ASSERT(field && strcmp(field, bad[i].field) == 0, "%s: field %s, want %s", bad[i].path,
                  field ? field : "(none)", bad[i].field);
        json_decref(j);
        tl_test_resp_close(&resp);
    }
    /* The timeline pages in effective_ts order; the web view has its split parts. */
    n = rt_page_all(rt.admin, "/v1/conversations/" CONV(1) "/timeline", 3, "event_id", ids, sizeof ids);
    RT_ASSERT(n == 7 && strcmp(ids, "ev-1,ev-2,ev-3,ev-4,ev-5,ev-6,ev-7") == 0, "agent timeline: %s", ids);
    /* A page served again after the projection moved on is the new page. */
    RT_ASSERT(rt_page_all(rt.admin, "/v1/conversations/" CONV(1) "/timeline", 50, "event_id", ids, sizeof ids) == 7,
              "timeline: %s", ids);
    rt_sql("BEGIN; INSERT INTO view_agent (tenant_id, event_id, conversation_id, customer_id, kind, platform,"
           " source_label, effective_ts, occurred_at, received_at, source_partition, source_offset,"
           " idempotency_key, body, part) VALUES ('t1', 'ev-8', '" CONV(1) "', '" CUST(1) "', 'AgentReplied',"
           " 'agent', 'agent', now(), now(), now(), 0, 8, 'agent:8', '{\"text\": \"eight\"}', 0);"
           " UPDATE conversations SET version = 8, item_count = 8 WHERE conversation_id = '" CONV(1) "'; COMMIT");
    n = rt_page_all(rt.admin, "/v1/conversations/" CONV(1) "/timeline", 50, "event_id", ids, sizeof ids);
    RT_ASSERT(n == 8 && strstr(ids, "ev-8"), "timeline after the projection moved on: %s", ids);
    /* Rows committed apart from the header are seen too. */
    rt_sql("INSERT INTO view_agent (tenant_id, event_id, conversation_id, customer_id, kind, platform,"
           " source_label, effective_ts, occurred_at, received_at, source_partition, source_offset,"
           " idempotency_key, body, part) VALUES ('t1', 'ev-9', '" CONV(1) "', '" CUST(1) "', 'AgentReplied',"
           " 'agent', 'agent', now(), now(), now(), 0, 9, 'agent:9', '{\"text\": \"nine\"}', 0)");
    n = rt_page_all(rt.admin, "/v1/conversations/" CONV(1) "/timeline", 50, "event_id", ids, sizeof ids);
    RT_ASSERT(n == 9 && strstr(ids, "ev-9"), "timeline after rows landed before their header: %s", ids);
    n = rt_page_all(rt.admin, "/v1/conversations/" CONV(1) "/timeline?view=web", 1, "part", ids, sizeof ids);
    RT_ASSERT(n == 2 && strcmp(ids, "0,1") == 0, "web view parts: %s", ids);
    n = rt_page_all(rt.admin, "/v1/conversations/" CONV(1) "/timeline?view=phone", 5, "event_id", ids, sizeof ids);
    RT_ASSERT(n == 0, "phone view: %s", ids);

    /* Conversation header: fields and the open conflict count. */
    tl_test_resp_t resp;
    rt_expect("GET", rt.admin, "admin", "/v1/conversations/" CONV(1), NULL, 200, &resp);
    json_t *j = rt_json(&resp);
    RT_ASSERT(json_integer_value(json_object_get(j, "open_conflicts")) == 1, "open_conflicts: %s", resp.body);
    RT_ASSERT(strcmp(json_string_value(json_object_get(json_object_get(json_object_get(j, "fields"), "phone"), "value")), "111") == 0,
              "fields: %s", resp.body);
    RT_ASSERT(strcmp(json_string_value(json_object_get(j, "assignee")), "alice") == 0, "assignee: %s", resp.body);
    json_decref(j);
    tl_test_resp_close(&resp);

    /* Customer: fields with provenance, conflicts, identities, conversations. */
    rt_expect("GET", rt.admin, "admin", "/v1/customers/" CUST(1), NULL, 200, &resp);
    j = rt_json(&resp);
    json_t *name = json_object_get(json_object_get(j, "fields"), "name");
    RT_ASSERT(json_integer_value(json_object_get(name, "version")) == 3 &&
                  strcmp(json_string_value(json_object_get(name, "platform")), "app") == 0 &&
                  strcmp(json_string_value(json_object_get(name, "event_id")), "ev-3") == 0,
              "field provenance: %s", resp.body);
    RT_ASSERT(json_array_size(json_object_get(j, "conflicts")) == 2 &&
                  json_array_size(json_object_get(j, "identities")) == 2 &&
                  json_array_size(json_object_get(j, "conversations")) == 2,
              "customer: %s", resp.body);
    json_decref(j);
    tl_test_resp_close(&resp);

    /* Conflicts: open by default, oldest first, paged; other statuses. */
    n = rt_page_all(rt.admin, "/v1/conflicts?status=open", 1, "conflict_id", ids, sizeof ids);
    RT_ASSERT(n == 2 && strcmp(ids, "k1,k3") == 0, "open conflicts: %s", ids);
    RT_ASSERT(rt_list_count(rt.admin, "/v1/conflicts?status=resolved") == 1, "resolved conflicts");

    /* Unknown ids and routes. */
    rt_expect("GET", rt.admin, "admin", "/v1/conversations/not-a-uuid", NULL, 404, NULL);
    rt_expect("GET", rt.admin, "admin", "/v1/customers/" CUST(7), NULL, 404, NULL);
    rt_expect("DELETE", rt.admin, "admin", "/v1/conversations", NULL, 405, NULL);
    printf("rest: filters, keyset cursors, views, customer and conflict reads as seeded\n");
}
END_TEST

/* ------------------------------------------------------------ writes */

START_TEST(rest_writes_check_their_bodies_and_conflict_state) {
    rt_begin(NULL);
    rt_seed();
    static const struct { const char *path, *body; long status; const char *field; } rows[] = {
        {"/v1/conversations/" CONV(1) "/replies", "not json", 400, NULL},
        {"/v1/conversations/" CONV(1) "/replies", "{\"target_platform\":\"web\"}", 422, "text"},
        {"/v1/conversations/" CONV(1) "/replies", "{\"text\":\"x\"}", 422, "target_platform"},
        {"/v1/conversations/" CONV(1) "/replies", "{\"text\":\"x\",\"target_platform\":\"agent\"}", 422, "target_platform"},
        {"/v1/conversations/" CONV(1) "/replies", "{\"text\":7,\"target_platform\":\"web\"}", 422, "text"},
        {"/v1/conversations/" CONV(1) "/assign", "{}", 422, "agent_id"},
        {"/v1/conversations/" CONV(3) "/close", "{}", 409, NULL},
        {"/v1/conflicts/k2/resolve", "{\"value\":\"a@x\"}", 409, NULL},
        {"/v1/conflicts/k1/resolve", "{\"value\":\"333\"}", 422, "value"},
        {"/v1/conflicts/k1/resolve", "{}", 422, "value"},
        {"/v1/conflicts/k9/resolve", "{\"value\":\"1\"}", 404, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        tl_test_resp_t resp;
        rt_expect("POST", rt.admin, "admin", rows[i].path, rows[i].body, rows[i].status, &resp);
        if (rows[i].field) {
            json_t *j = rt_json(&resp);
            const char *f = json_string_value(json_object_get(j, "field"));
            RT_ASSERT(f && strcmp(f, rows[i].field) == 0, "%s %s: field %s, want %s", rows[i].path,
                      rows[i].body, f ? f : "(none)", rows[i].field);
            json_decref(j);
        }
        tl_test_resp_close(&resp);
    }
    /* A good resolve is accepted with a position; the same Idempotency-Key
     * gives the same event and nothing more in the log. */
    char topic[200];
    snprintf(topic, sizeof topic, "%s.events", rt.prefix);
    tl_test_resp_t a, b;
    rt_call("POST", rt.admin, "/v1/conflicts/k1/resolve", "{\"value\":\"222\"}", "resolve-1", &a);
    RT_ASSERT(a.status == 202, "resolve: %ld %s", a.status, a.body);
    int64_t before, after;
    char err[512];
    RT_ASSERT(tl_test_kafka_topic_size(rt_brokers, topic, 10000, &before, err, sizeof err) == 0, "%s", err);
    rt_call("POST", rt.admin, "/v1/conflicts/k1/resolve", "{\"value\":\"222\"}", "resolve-1", &b);
    RT_ASSERT(b.status == 202, "resolve again: %ld %s", b.status, b.body);
    RT_ASSERT(tl_test_kafka_topic_size(rt_brokers, topic, 10000, &after, err, sizeof err) == 0, "%s", err);
    json_t *ja = rt_json(&a), *jb = rt_json(&b);
    RT_ASSERT(strcmp(json_string_value(json_object_get(ja, "event_id")),
                     json_string_value(json_object_get(jb, "event_id"))) == 0 &&
                  json_is_true(json_object_get(jb, "duplicate")) &&
                  json_string_value(json_object_get(ja, "position")),
              "idempotent resend: %s then %s", a.body, b.body);
    RT_ASSERT(before == after && before >= 1, "the resend wrote to the log: %" PRId64 " -> %" PRId64, before, after);
    json_decref(ja);
    json_decref(jb);
    tl_test_resp_close(&a);
    tl_test_resp_close(&b);
    rt_call("POST", rt.admin, "/v1/conversations/" CONV(1) "/replies", "{\"text\":\"x\",\"target_platform\":\"web\"}",
            "bad key with spaces", &a);
    RT_ASSERT(a.status == 400, "Idempotency-Key with spaces: %ld", a.status);
    tl_test_resp_close(&a);
    printf("rest: write bodies checked (400/404/409/422); an idempotent resend writes nothing\n");
}
END_TEST

/* Posts one message for visitor as the web widget; returns its position. */
static void rt_ingest(const char *visitor, const char *mid, const char *text, char *customer, char *position) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"t1\",\"visitor_id\":\"%s\",\"message_id\":\"%s\",\"sent_at\":%lld,\"text\":\"%s\"}",
             visitor, mid, (long long)tl_test_now_ms(), text);
    tl_test_resp_t resp;
    rt_call("POST", rt.connector, "/v1/ingest/web", body, NULL, &resp);
    RT_ASSERT(resp.status == 202, "ingest: %ld %s", resp.status, resp.body);
    json_t *j = rt_json(&resp);
    snprintf(customer, 40, "%s", json_string_value(json_object_get(j, "customer_id")));
    snprintf(position, 48, "%s", json_string_value(json_object_get(j, "position")));
    json_decref(j);
    tl_test_resp_close(&resp);
}

/* GET path?after=position as key until 200 (the wait is bounded server
 * side; under load the test retries a few times).  Returns the body. */
static json_t *rt_read_after(const char *key, const char *path, const char *position) {
    char p[1024];
    snprintf(p, sizeof p, "%s%safter=%s", path, strchr(path, '?') ? "&" : "?", position);
    int64_t deadline = tl_test_mono_ms() + 90000;
    for (;;) {
        tl_test_resp_t resp;
        rt_call("GET", key, p, NULL, NULL, &resp);
        if (resp.status == 200) {
            json_t *j = rt_json(&resp);
            tl_test_resp_close(&resp);
            return j;
        }
        long st = resp.status;
        char body[512];
        snprintf(body, sizeof body, "%s", resp.body ? resp.body : "");
        tl_test_resp_close(&resp);
        RT_ASSERT(st == 503 && tl_test_mono_ms() < deadline, "GET %s: %ld %s", p, st, body);
    }
}

/* Ingests a message and returns its conversation, read with ?after. */
static void rt_conversation_of(const char *visitor, char *conv, char *customer) {
    char position[48];
    rt_ingest(visitor, "m-1", "hello", customer, position);
    char path[256];
    snprintf(path, sizeof path, "/v1/conversations?customer_id=%s", customer);
    json_t *j = rt_read_after(rt.admin, path, position);
    json_t *first = json_array_get(json_object_get(j, "items"), 0);
    RT_ASSERT(first != NULL, "no conversation for customer %s after %s", customer, position);
    snprintf(conv, 40, "%s", json_string_value(json_object_get(first, "conversation_id")));
    json_decref(j);
}

/* POSTs body to path as key; returns the acknowledged position. */
static void rt_write(const char *key, const char *path, const char *body, char *position) {
    tl_test_resp_t resp;
    rt_call("POST", key, path, body, NULL, &resp);
    RT_ASSERT(resp.status == 202 && tl_test_resp_is(&resp, "application/json"), "POST %s: %ld %s", path,
              resp.status, resp.body);
    json_t *j = rt_json(&resp);
    const char *pos = json_string_value(json_object_get(j, "position"));
    RT_ASSERT(pos && strchr(pos, ':') && json_string_value(json_object_get(j, "event_id")),
              "POST %s: no position in %s", path, resp.body);
    snprintf(position, 48, "%s", pos);
    json_decref(j);
    tl_test_resp_close(&resp);
}

START_TEST(rest_reply_is_read_back_after_its_position) {
    rt_begin(NULL);
    char conv[40], customer[40], position[48], path[256];
    rt_conversation_of("v-reply", conv, customer);
    /* Read once before the write, so the read after it cannot be an old page. */
    snprintf(path, sizeof path, "/v1/conversations/%s/timeline", conv);
    rt_expect("GET", rt.admin, "admin", path, NULL, 200, NULL);
    snprintf(path, sizeof path, "/v1/conversations/%s/replies", conv);
    rt_write(rt.admin, path, "{\"text\":\"we are on it\",\"target_platform\":\"web\"}", position);
    snprintf(path, sizeof path, "/v1/conversations/%s/timeline", conv);
    json_t *j = rt_read_after(rt.admin, path, position);
    json_t *items = json_object_get(j, "items"), *it;
    size_t i;
    int found = 0;
    json_array_foreach(items, i, it) {
        const char *kind = json_string_value(json_object_get(it, "kind"));
        const char *pos = json_string_value(json_object_get(it, "position"));
        if (kind && strcmp(kind, "AgentReplied") == 0 && pos && strcmp(pos, position) == 0) found = 1;
    }
    char *dump = json_dumps(j, JSON_COMPACT);
    RT_ASSERT(found, "the reply at %s is not in the timeline read after it: %s", position, dump);
    free(dump);
    json_decref(j);
    printf("rest: reply acknowledged at %s and read back with ?after\n", position);
}
END_TEST

/* Needs the projection to fill conversations.assignee from
 * ConversationAssigned. */
START_TEST(rest_assign_is_read_back_after_its_position) {
    rt_begin(NULL);
    char conv[40], customer[40], position[48], path[256];
    rt_conversation_of("v-assign", conv, customer);
    snprintf(path, sizeof path, "/v1/conversations/%s/assign", conv);
    rt_write(rt.admin, path, "{\"agent_id\":\"alice\",\"team\":\"blue\"}", position);
    snprintf(path, sizeof path, "/v1/conversations/%s", conv);
    json_t *j = rt_read_after(rt.alice, path, position);
    const char *who = json_string_value(json_object_get(j, "assignee"));
    RT_ASSERT(who && strcmp(who, "alice") == 0, "assignee after %s: %s", position, who ? who : "null");
    json_decref(j);
    printf("rest: assignment acknowledged at %s; the agent sees the conversation after it\n", position);
}
END_TEST

/* Needs the projection to fill conversations.status/closed_* from
 * ConversationClosed. */
START_TEST(rest_close_is_read_back_after_its_position) {
    rt_begin(NULL);
    char conv[40], customer[40], position[48], path[256];
    rt_conversation_of("v-close", conv, customer);
    snprintf(path, sizeof path, "/v1/conversations/%s/close", conv);
    rt_write(rt.admin, path, "{\"reason\":\"solved\"}", position);
    snprintf(path, sizeof path, "/v1/conversations/%s", conv);
    json_t *j = rt_read_after(rt.admin, path, position);
    const char *status = json_string_value(json_object_get(j, "status"));
    const char *reason = json_string_value(json_object_get(j, "close_reason"));
    RT_ASSERT(status && strcmp(status, "closed") == 0 && reason && strcmp(reason, "solved") == 0,
              "after close at %s: status %s reason %s", position, status ? status : "null",
              reason ? reason : "null");
    json_decref(j);
    printf("rest: close acknowledged at %s and read back\n", position);
}
END_TEST

/* Needs the projection to write the conflicts table. */
START_TEST(rest_resolve_is_read_back_after_its_position) {
    rt_begin(NULL);
    char conv[40], customer[40], position[48], path[256], body[512];
    rt_conversation_of("v-conflict", conv, customer);
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body,
                 "{\"tenant_id\":\"t1\",\"platform\":\"web\",\"platform_user_id\":\"v-conflict\","
                 "\"message_id\":\"f-%d\",\"occurred_at\":%lld,"
                 "\"payload\":{\"type\":\"FieldAsserted\",\"field\":\"phone\",\"value\":\"+86130000000%d\"}}",
                 i, (long long)tl_test_now_ms(), i);
        tl_test_resp_t resp;
        rt_call("POST", rt.connector, "/v1/ingest/api", body, NULL, &resp);
        RT_ASSERT(resp.status == 202, "field %d: %ld %s", i, resp.status, resp.body);
        json_t *j = rt_json(&resp);
        snprintf(position, sizeof position, "%s", json_string_value(json_object_get(j, "position")));
        json_decref(j);
        tl_test_resp_close(&resp);
    }
    json_t *j = rt_read_after(rt.admin, "/v1/conflicts?status=open", position);
    json_t *k = json_array_get(json_object_get(j, "items"), 0);
    RT_ASSERT(k != NULL, "no open conflict after two phone numbers (after %s)", position);
    char conflict[200], chosen[64];
    snprintf(conflict, sizeof conflict, "%s", json_string_value(json_object_get(k, "conflict_id")));
    snprintf(chosen, sizeof chosen, "%s",
             json_string_value(json_object_get(json_array_get(json_object_get(k, "candidates"), 1), "value")));
    json_decref(j);
    snprintf(path, sizeof path, "/v1/conflicts/%s/resolve", conflict);
    snprintf(body, sizeof body, "{\"value\":\"%s\"}", chosen);
    rt_write(rt.admin, path, body, position);
    j = rt_read_after(rt.admin, "/v1/conflicts?status=resolved", position);
    RT_ASSERT(json_array_size(json_object_get(j, "items")) == 1, "conflict %s not resolved after %s",
              conflict, position);
    json_decref(j);
    printf("rest: conflict %s resolved at %s and read back\n", conflict, position);
}
END_TEST

START_TEST(rest_writes_answer_503_when_kafka_is_down) {
    static const char *const extra[] = {"--ack-timeout-ms", "3000", NULL};
    rt_begin_on("127.0.0.1:1", 0, extra);
    rt_seed();
    int64_t deadline = tl_test_mono_ms() + 30000;
    tl_test_resp_t resp;
    for (;;) {
        rt_call("GET", rt.admin, "/healthz", NULL, NULL, &resp);
        if (resp.status == 200) break;
        tl_test_resp_close(&resp);
        RT_ASSERT(tl_test_mono_ms() < deadline, "serve never answered");
        tl_test_sleep_ms(200);
    }
    tl_test_resp_close(&resp);
    rt_call("POST", rt.admin, "/v1/conversations/" CONV(1) "/replies",
            "{\"text\":\"x\",\"target_platform\":\"web\"}", NULL, &resp);
    RT_ASSERT(resp.status == 503 && resp.retry_after[0] && tl_test_resp_is(&resp, "application/problem+json"),
              "write with Kafka down: %ld (Retry-After \"%s\") %s", resp.status, resp.retry_after, resp.body);
    tl_test_resp_close(&resp);
    /* Reads do not need Kafka. */
    rt_expect("GET", rt.admin, "admin", "/v1/conversations/" CONV(1), NULL, 200, NULL);
    printf("rest: with Kafka down writes answer 503 + Retry-After, reads still answer\n");
}
END_TEST

/* ------------------------------------------------------------ stream */

typedef struct rt_sse {
    char url[512], auth[256], last[512];
    char buf[1 << 20];
    size_t len;
    int ms;
    pthread_t thread;
} rt_sse_t;

static size_t rt_sse_body(char *data, size_t size, size_t nmemb, void *opaque) {
    rt_sse_t *s = opaque;
    size_t n = size * nmemb, room = sizeof s->buf - 1 - s->len;
    memcpy(s->buf + s->len, data, n < room ? n : room);
    s->len += n < room ? n : room;
    s->buf[s->len] = 0;
    return n;
}

static void *rt_sse_run(void *arg) {
    rt_sse_t *s = arg;
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    struct curl_slist *h = curl_slist_append(NULL, s->auth);
    if (s->last[0]) h = curl_slist_append(h, s->last);
    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, rt_sse_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_perform(c);       /* ends on the timeout */
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static void rt_sse_start(rt_sse_t *s, const char *key, int ms, const char *last_id) {
    memset(s, 0, sizeof *s);
    if (last_id) snprintf(s->last, sizeof s->last, "Last-Event-ID: %s", last_id);
    snprintf(s->url, sizeof s->url, "%s/v1/stream", rt.serve.base_url);
    snprintf(s->auth, sizeof s->auth, "Authorization: Bearer %s", key);
    s->ms = ms;
    RT_ASSERT(pthread_create(&s->thread, NULL, rt_sse_run, s) == 0, "thread");
}

START_TEST(rest_stream_sends_changes_in_scope_only) {
    rt_begin(NULL);
    char conv_a[40], conv_b[40], cust_a[40], cust_b[40], position[48], path[256];
    rt_conversation_of("v-sse-a", conv_a, cust_a);
    rt_conversation_of("v-sse-b", conv_b, cust_b);
    static rt_sse_t alice, other, admin;
    rt_sse_start(&alice, rt.alice, 25000, NULL);
    rt_sse_start(&other, rt.admin2, 25000, NULL);
    rt_sse_start(&admin, rt.admin, 25000, NULL);
    tl_test_sleep_ms(3000);     /* connected, and the stream at the end of .changes */
    /* a goes to alice, b to bob of team red. */
    snprintf(path, sizeof path, "/v1/conversations/%s/assign", conv_a);
    rt_write(rt.admin, path, "{\"agent_id\":\"alice\"}", position);
    snprintf(path, sizeof path, "/v1/conversations/%s/assign", conv_b);
    rt_write(rt.admin, path, "{\"agent_id\":\"bob\",\"team\":\"red\"}", position);
    pthread_join(alice.thread, NULL);
    pthread_join(other.thread, NULL);
    pthread_join(admin.thread, NULL);
    RT_ASSERT(strstr(alice.buf, ": connected") && strstr(admin.buf, ": connected"), "streams did not open");
    RT_ASSERT(strstr(admin.buf, conv_a) && strstr(admin.buf, conv_b), "admin stream missed a change:\n%.3000s", admin.buf);
    RT_ASSERT(strstr(alice.buf, conv_a) && strstr(alice.buf, "ConversationAssigned"),
              "alice did not get her assignment:\n%.3000s", alice.buf);
    RT_ASSERT(!strstr(alice.buf, conv_b), "alice got a change out of her scope:\n%.3000s", alice.buf);
    RT_ASSERT(!strstr(other.buf, "event: change"), "another tenant got t1's changes:\n%.3000s", other.buf);
    RT_ASSERT(strstr(admin.buf, "id: ") != NULL, "changes carry no id:\n%.3000s", admin.buf);
    /* Reconnecting with the id of a's change replays b's, and not a's. */
    const char *ida = strstr(admin.buf, conv_a);
    const char *idl = NULL;
    for (const char *p = admin.buf; p && p < ida; p = strstr(p + 1, "\nid: ")) idl = p;
    RT_ASSERT(idl && strncmp(idl, "\nid: ", 5) == 0, "no id before a's change:\n%.3000s", admin.buf);
    char last[256];
    snprintf(last, sizeof last, "%.*s", (int)strcspn(idl + 5, "\n"), idl + 5);
    static rt_sse_t again;
    rt_sse_start(&again, rt.admin, 4000, last);
    pthread_join(again.thread, NULL);
    RT_ASSERT(strstr(again.buf, conv_b) != NULL,
              "Last-Event-ID %s did not replay b's change:\n%.3000s", last, again.buf);
    const char *first_assign = strstr(again.buf, "ConversationAssigned");
    RT_ASSERT(first_assign && !strstr(first_assign + 1, "ConversationAssigned"),
              "Last-Event-ID %s replayed more than b's assignment:\n%.3000s", last, again.buf);
    printf("rest: the stream delivered in-scope changes only, and replayed after Last-Event-ID\n");
}
END_TEST

/* A stream client that reads nothing: a tiny receive buffer, the request
 * sent, then left alone.  Returns the socket. */
static int rt_stalled_stream(const char *key) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    RT_ASSERT(fd >= 0, "socket");
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rt.serve.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    RT_ASSERT(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
    char req[512];
    int n = snprintf(req, sizeof req, "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n", key);
    RT_ASSERT(send(fd, req, (size_t)n, 0) == n, "send");
    return fd;
}

START_TEST(rest_stream_drops_a_slow_client_without_holding_up_others) {
    /* Small enough that 600 changes overflow a client that reads nothing
     * (with the 64 KiB the kernel keeps for its socket), large enough for
     * a burst the reading client takes in stride. */
    static const char *const extra[] = {"--stream-buffer", "65536", NULL};
    rt_begin(extra);
    static rt_sse_t reader;
    rt_sse_start(&reader, rt.admin, 40000, NULL);
    int slow = rt_stalled_stream(rt.admin);
    tl_test_sleep_ms(2000);
    enum { CHANGES = 600 };
    char customer[40], position[48], visitor[32];
    for (int i = 0; i < CHANGES; i++) {
        snprintf(visitor, sizeof visitor, "v-slow-%d", i);
        rt_ingest(visitor, "m-1", "a message long enough to fill a small buffer quickly", customer, position);
    }
    /* The stalled client now drains: it must find the final event. */
    struct timeval tv = {2, 0};
    setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static char got[1 << 20];
    size_t have = 0;
    int64_t deadline = tl_test_mono_ms() + 30000;
    while (have < sizeof got - 1 && tl_test_mono_ms() < deadline) {
        ssize_t k = recv(slow, got + have, sizeof got - 1 - have, 0);
        if (k <= 0) break;
        have += (size_t)k;
        got[have] = 0;
        if (strstr(got, "event: dropped")) break;
    }
    close(slow);
    RT_ASSERT(strstr(got, "event: dropped") != NULL, "the stalled client was never dropped (%zu bytes read)", have);
    pthread_join(reader.thread, NULL);
    int seen = 0;
    for (const char *p = reader.buf; (p = strstr(p, "MessageReceived")); p++) seen++;
    RT_ASSERT(seen >= CHANGES && !strstr(reader.buf, "event: dropped"),
              "the reading client got %d of %d changes while another stalled%s", seen, CHANGES,
              strstr(reader.buf, "event: dropped") ? ", and was dropped" : "");
    printf("rest: a stalled stream client was dropped with a final event; the other got all %d changes\n", seen);
}
END_TEST

/* ------------------------------------------------------------ keys command */

/* Runs `threadline keys ARGS...` with output to log; returns its status. */
static int rt_keys(const char *log, const char *const *args) {
    char err[512];
    char *argv[16] = {(char *)rt_exe, "keys"};
    int n = 2;
    for (int i = 0; args[i] && n < 13; i++) argv[n++] = (char *)args[i];
    argv[n++] = "--pg-dsn";
    argv[n++] = rt.dsn;
    argv[n] = NULL;
    truncate(log, 0);
    int rc = tl_test_run(argv, log, 30000, err, sizeof err);
    RT_ASSERT(rc >= 0, "threadline keys: %s", err);
    return rc;
}

static void rt_slurp(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(out, 1, n - 1, f) : 0;
    out[k] = 0;
    if (f) fclose(f);
}

START_TEST(rest_keys_command_creates_lists_and_revokes) {
    char err[1024], log[256], out[8192];
    int n = ++rt_seq;
    snprintf(rt.db, sizeof rt.db, "%s%d", rt_db_tag, n);
    RT_ASSERT(tl_test_pg_dsn_for(rt_pg_dsn, rt.db, rt.dsn, sizeof rt.dsn) == 0, "DSN too long");
    RT_ASSERT(tl_test_pg_create_db(rt_pg_dsn, rt.db, err, sizeof err) == 0, "%s", err);
    rt.have_db = 1;
    snprintf(log, sizeof log, "/tmp/tl-it-keys-%d.log", (int)getpid());
    char *migrate[] = {(char *)rt_exe, "migrate", "--pg-dsn", rt.dsn, NULL};
    RT_ASSERT(tl_test_run(migrate, log, 60000, err, sizeof err) == 0, "migrate failed");
    rt.pg = tl_test_pg_connect(rt.dsn, err, sizeof err);
    RT_ASSERT(rt.pg != NULL, "%s", err);

    static const char *const create[] = {"create", "--tenant", "acme", "--role", "agent", "--agent-id", "alice",
                                         "--team", "blue", "--label", "desk 4", NULL};
    RT_ASSERT(rt_keys(log, create) == 0, "keys create failed");
    rt_slurp(log, out, sizeof out);
    /* The key is a line of its own (the log also holds the command line). */
    const char *tok = strstr(out, "\ntl_");
    if (tok) tok++;
    char key_id[TL_AUTH_KEY_ID_LEN + 1], secret[TL_AUTH_SECRET_LEN + 1];
    RT_ASSERT(tok && tl_auth_parse_token(tok, TL_AUTH_TOKEN_LEN, key_id, secret) == TL_OK, "no key printed: %s", out);
    /* Only the digest is stored, and it is the digest of the secret. */
    unsigned char digest[32];
    char hexd[65];
    tl_auth_hash(secret, strlen(secret), digest);
    for (int i = 0; i < 32; i++) snprintf(hexd + 2 * i, 3, "%02x", digest[i]);
    const char *params[] = {key_id, hexd};
    int64_t match = 0;
    RT_ASSERT(tl_test_pg_int(rt.pg, "SELECT count(*) FROM api_keys WHERE key_id = $1 AND"
                             " encode(secret_sha256, 'hex') = $2 AND role = 'agent' AND agent_id = 'alice'"
                             " AND team = 'blue' AND tenant_id = 'acme'", 2, params, &match, err, sizeof err) == 0,
              "%s", err);
    RT_ASSERT(match == 1, "the stored key does not match what was printed");
    int64_t leaks = 1;
    const char *sp[] = {secret};
    RT_ASSERT(tl_test_pg_int(rt.pg, "SELECT count(*) FROM api_keys WHERE position($1 in row(api_keys.*)::text) > 0",
                             1, sp, &leaks, err, sizeof err) == 0, "%s", err);
    RT_ASSERT(leaks == 0, "the secret is stored in clear");

    static const char *const list[] = {"list", "--tenant", "acme", NULL};
    RT_ASSERT(rt_keys(log, list) == 0, "keys list failed");
    rt_slurp(log, out, sizeof out);
    RT_ASSERT(strstr(out, key_id) && strstr(out, "alice") && !strstr(out, secret), "keys list: %s", out);

    static const char *const bad[][8] = {
        {"create", "--tenant", "acme", "--role", "agent", NULL},                     /* no agent id */
        {"create", "--tenant", "acme", "--role", "connector", NULL},                 /* no platforms */
        {"create", "--tenant", "acme", "--role", "connector", "--platforms", "fax", NULL},
        {"create", "--tenant", "acme", "--role", "root", NULL},
        {"revoke", "000000000000", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        RT_ASSERT(rt_keys(log, bad[i]) != 0, "keys %s %s ... succeeded", bad[i][0], bad[i][1]);

    const char *const revoke[] = {"revoke", key_id, NULL};
    RT_ASSERT(rt_keys(log, revoke) == 0, "keys revoke failed");
    RT_ASSERT(rt_keys(log, revoke) != 0, "a second revoke succeeded");
    RT_ASSERT(tl_test_pg_int(rt.pg, "SELECT count(*) FROM api_keys WHERE key_id = $1 AND revoked_at IS NOT NULL",
                             1, params, &match, err, sizeof err) == 0 && match == 1, "not revoked");
    unlink(log);
    printf("rest: threadline keys create/list/revoke; only the SHA-256 of the secret is stored\n");
}
END_TEST

Suite *tl_rest_suite(void) {
    Suite *s = suite_create("rest");
    TCase *tc = tcase_create("rest");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, rt_services_check, rt_services_sweep);
    tcase_add_checked_fixture(tc, rt_setup, rt_teardown);
    tcase_add_test(tc, rest_keys_command_creates_lists_and_revokes);
    tcase_add_test(tc, rest_denies_every_role_what_it_may_not_do);
    tcase_add_test(tc, rest_ingest_requires_a_connector_key_for_its_platform_and_tenant);
    tcase_add_test(tc, rest_reads_filter_page_and_render_every_view);
    tcase_add_test(tc, rest_writes_check_their_bodies_and_conflict_state);
    tcase_add_test(tc, rest_reply_is_read_back_after_its_position);
    tcase_add_test(tc, rest_stream_sends_changes_in_scope_only);
    tcase_add_test(tc, rest_writes_answer_503_when_kafka_is_down);
    tcase_add_test(tc, rest_stream_drops_a_slow_client_without_holding_up_others);
    tcase_add_test(tc, rest_assign_is_read_back_after_its_position);
    tcase_add_test(tc, rest_close_is_read_back_after_its_position);
    tcase_add_test(tc, rest_resolve_is_read_back_after_its_position);
    suite_add_tcase(s, tc);
    return s;
}
