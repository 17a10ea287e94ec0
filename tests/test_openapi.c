/*
 * test_openapi.c -- openapi.yaml against the running server.
 *
 * The document is parsed with libyaml; every operation (path, method) and
 * every response status it documents becomes one check.  For each, the
 * test knows a request that should produce that status (the table in
 * `trigger`), sends it to a real `threadline serve` (--auth required,
 * --max-body 4096, WeChat and Douyin configured) over seeded tables, and
 * compares the status and the documented content type.  A documented
 * status the test cannot reasonably provoke here must be listed in
 * `untriggered` with the reason and the suite that covers it; a documented
 * status with neither fails, so the document cannot grow a promise nobody
 * checks, and a route that answers differently from its document fails.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <yaml.h>

#include "auth.h"
#include "error.h"
#include "suites.h"
#include "support.h"

#define OA_PARTITIONS 2
#define OA_HTTP_MS 20000
#define OA_MAX_BODY 4096
#define OA_MAX_CHECKS 256

#define CONV1 "00000000-0000-4000-8000-0000000000c1"
#define CONV3 "00000000-0000-4000-8000-0000000000c3"
#define CUST1 "00000000-0000-4000-8000-0000000000a1"
#define UNKNOWN "00000000-0000-4000-8000-00000000ffff"

static const char *oa_brokers, *oa_pg_dsn, *oa_exe;
static char oa_tag[64];

typedef struct oa_check {
    char path[128], method[8], status[8], ctype[64];
} oa_check_t;

static struct {
    char prefix[128], db[96], dsn[512];
    int have_db, have_serve;
    tl_test_serve_t serve;
    PGconn *pg;
    CURL *curl;
    char admin[TL_AUTH_TOKEN_LEN + 1], connector[TL_AUTH_TOKEN_LEN + 1];
    char stranger[TL_AUTH_TOKEN_LEN + 1];   /* a connector for Douyin only: no JSON route */
    yaml_document_t doc;
    int have_doc;
    oa_check_t checks[OA_MAX_CHECKS];
    int nchecks;
} oa;

static void oa_cleanup(int ok) {
    char err[512];
    if (oa.have_doc) yaml_document_delete(&oa.doc);
    oa.have_doc = 0;
    if (oa.curl) curl_easy_cleanup(oa.curl);
    oa.curl = NULL;
    if (oa.pg) PQfinish(oa.pg);
    oa.pg = NULL;
    if (oa.have_serve) tl_test_serve_close(&oa.serve, ok);
    oa.have_serve = 0;
    if (oa.have_db && tl_test_pg_drop_db(oa_pg_dsn, oa.db, err, sizeof err) < 0)
        fprintf(stderr, "cleanup: %s\n", err);
    oa.have_db = 0;
    if (oa.prefix[0]) {
        char topics[160];
        snprintf(topics, sizeof topics, "%s.", oa.prefix);
        tl_test_kafka_delete_topics(oa_brokers, topics, 10000, err, sizeof err);
        oa.prefix[0] = 0;
    }
}

#define OA_FAIL(...)                                                                         \
    do {                                                                                     \
        char oa_msg_[8192];                                                                  \
        snprintf(oa_msg_, sizeof oa_msg_, __VA_ARGS__);                                      \
        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, oa_msg_);                         \
        if (oa.have_serve) tl_test_serve_log_tail(&oa.serve, 40);                            \
        oa_cleanup(0);                                                                       \
        ck_abort_msg("%s", oa_msg_);                                                         \
    } while (0)
#define OA_ASSERT(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond)) OA_FAIL(__VA_ARGS__);                                                   \
    } while (0)

/* ------------------------------------------------------------ the document */

static yaml_node_t *oa_get(yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&oa.doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(&oa.doc, p->value);
    }
    return NULL;
}

static const char *oa_scalar(yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Follows "$ref: '#/components/responses/X'" (the only refs responses use). */
static yaml_node_t *oa_deref(yaml_node_t *n) {
    const char *ref = oa_scalar(oa_get(n, "$ref"));
    if (!ref) return n;
    const char *prefix = "#/components/responses/";
    if (strncmp(ref, prefix, strlen(prefix)) != 0) return NULL;
    yaml_node_t *root = yaml_document_get_root_node(&oa.doc);
    return oa_get(oa_get(oa_get(root, "components"), "responses"), ref + strlen(prefix));
}

static const char *const oa_methods[] = {"get", "post", "put", "patch", "delete"};

/* Loads openapi.yaml and lists every (path, method, status, content type). */
static void oa_load(void) {
    /* TL_OPENAPI from meson; else the checkout this binary was run from. */
    char path[1024];
    const char *env = tl_test_env("TL_OPENAPI");
    snprintf(path, sizeof path, "%s", env ? env : "openapi.yaml");
    FILE *f = fopen(path, "rb");
    OA_ASSERT(f != NULL, "cannot open %s", path);
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int ok = yaml_parser_load(&parser, &oa.doc);
    yaml_parser_delete(&parser);
    fclose(f);
    OA_ASSERT(ok, "openapi.yaml is not valid YAML");
    oa.have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&oa.doc);
    const char *version = oa_scalar(oa_get(root, "openapi"));
    OA_ASSERT(version && strncmp(version, "3.1", 3) == 0, "openapi version %s, want 3.1.x", version ? version : "none");
    yaml_node_t *paths = oa_get(root, "paths");
    OA_ASSERT(paths && paths->type == YAML_MAPPING_NODE, "no paths");
    for (yaml_node_pair_t *p = paths->data.mapping.pairs.start; p < paths->data.mapping.pairs.top; p++) {
        const char *pth = oa_scalar(yaml_document_get_node(&oa.doc, p->key));
        yaml_node_t *item = yaml_document_get_node(&oa.doc, p->value);
        for (size_t m = 0; m < sizeof oa_methods / sizeof *oa_methods; m++) {
            yaml_node_t *op = oa_get(item, oa_methods[m]);
            if (!op) continue;
            yaml_node_t *responses = oa_get(op, "responses");
            OA_ASSERT(responses && responses->type == YAML_MAPPING_NODE, "%s %s: no responses", oa_methods[m], pth);
            for (yaml_node_pair_t *r = responses->data.mapping.pairs.start; r < responses->data.mapping.pairs.top; r++) {
                OA_ASSERT(oa.nchecks < OA_MAX_CHECKS, "too many responses");
                oa_check_t *c = &oa.checks[oa.nchecks++];
                snprintf(c->path, sizeof c->path, "%s", pth);
                for (size_t i = 0; oa_methods[m][i] && i < sizeof c->method - 1; i++)
                    c->method[i] = (char)(oa_methods[m][i] - 'a' + 'A'), c->method[i + 1] = 0;
                snprintf(c->status, sizeof c->status, "%s", oa_scalar(yaml_document_get_node(&oa.doc, r->key)));
                yaml_node_t *resp = oa_deref(yaml_document_get_node(&oa.doc, r->value));
                OA_ASSERT(resp != NULL, "%s %s %s: unresolvable response", c->method, pth, c->status);
                yaml_node_t *content = oa_get(resp, "content");
                OA_ASSERT(content && content->type == YAML_MAPPING_NODE && content->data.mapping.pairs.top > content->data.mapping.pairs.start,
                          "%s %s %s: no content type", c->method, pth, c->status);
                snprintf(c->ctype, sizeof c->ctype, "%s",
                         oa_scalar(yaml_document_get_node(&oa.doc, content->data.mapping.pairs.start->key)));
            }
        }
    }
}

/* ------------------------------------------------------------ triggers */

/* Statuses documented but not provoked here, and why. */
static const struct { const char *method, *path, *status, *why; } untriggered[] = {
    {"*", "*", "503", "needs Kafka or PostgreSQL down: test_rest (writes), test_pipeline (ingest)"},
    {"*", "*", "429", "needs a platform over its quota: test_quota, test_pipeline"},
    {"POST", "/v1/ingest/douyin", "200", "needs a Douyin signature: test_ingest"},
    {"POST", "/v1/ingest/douyin", "400", "needs a Douyin signature: test_ingest"},
    {"POST", "/v1/ingest/douyin", "422", "needs a Douyin signature: test_ingest"},
    {"GET", "/v1/ingest/wechat", "200", "needs a WeChat signature: test_ingest"},
    {"POST", "/v1/ingest/wechat", "200", "needs a WeChat signature: test_ingest"},
    {"POST", "/v1/ingest/wechat", "422", "needs a WeChat signature: test_ingest"},
};

static int oa_untriggered(const oa_check_t *c) {
    for (size_t i = 0; i < sizeof untriggered / sizeof *untriggered; i++)
        if ((strcmp(untriggered[i].method, "*") == 0 || strcmp(untriggered[i].method, c->method) == 0) &&
            (strcmp(untriggered[i].path, "*") == 0 || strcmp(untriggered[i].path, c->path) == 0) &&
            strcmp(untriggered[i].status, c->status) == 0)
            return 1;
    return 0;
}

typedef struct oa_req {
    char url[1024];
    const char *key;            /* NULL: no Authorization */
    char body[OA_MAX_BODY * 2];
    int has_body;
    int sse;
} oa_req_t;

/* Replaces the first "{...}" of the template with value. */
static void oa_fill(const char *tmpl, const char *value, char *out, size_t n) {
    const char *b = strchr(tmpl, '{'), *e = b ? strchr(b, '}') : NULL;
    if (!b || !e) snprintf(out, n, "%s", tmpl);
    else snprintf(out, n, "%.*s%s%s", (int)(b - tmpl), tmpl, value, e + 1);
}

static const char *oa_good_body(const char *path) {
    static char web[512];
    if (strstr(path, "/replies")) return "{\"text\":\"hello\",\"target_platform\":\"web\"}";
    if (strstr(path, "/assign")) return "{\"team\":\"blue\"}";
    if (strstr(path, "/close")) return "{\"reason\":\"done\"}";
    if (strstr(path, "/resolve")) return "{\"value\":\"222\"}";
    if (strstr(path, "/ingest/app")) {
        snprintf(web, sizeof web,
                 "{\"tenant_id\":\"t1\",\"device_id\":\"d-oa\",\"message\":{\"message_id\":\"m-oa\","
                 "\"sent_at\":%lld,\"text\":\"hi\"}}", (long long)tl_test_now_ms());
        return web;
    }
    if (strstr(path, "/ingest/mini_program")) {
        snprintf(web, sizeof web,
                 "{\"tenant_id\":\"t1\",\"openid\":\"o-oa\",\"message_id\":\"m-oa\",\"sent_at\":%lld,"
                 "\"text\":\"hi\"}", (long long)tl_test_now_ms());
        return web;
    }
    if (strstr(path, "/phone"))
        return "{\"tenant_id\":\"t1\",\"call_id\":\"c-1\",\"segment_id\":\"1\",\"caller_number\":\"+86 138 0013 8000\","
               "\"speaker\":\"customer\",\"start_ms\":0,\"end_ms\":1000,\"text\":\"hi\",\"confidence\":0.9,"
               "\"call_started_at\":1800000000000}";
    snprintf(web, sizeof web,
             "{\"tenant_id\":\"t1\",\"visitor_id\":\"v-oa\",\"message_id\":\"m-oa\",\"sent_at\":%lld,\"text\":\"hi\"}",
             (long long)tl_test_now_ms());
    return web;
}

/* The request that should make c's operation answer c's status; 0, or -1
 * when this test has no way to (the check then fails unless untriggered). */
static int trigger(const oa_check_t *c, oa_req_t *r) {
    memset(r, 0, sizeof *r);
    int status = atoi(c->status);
    int post = strcmp(c->method, "POST") == 0;
    int rest = strncmp(c->path, "/v1/ingest", 10) != 0;
    const char *id = strstr(c->path, "/conflicts/") ? "k1" : strstr(c->path, "/customers/") ? CUST1 : CONV1;
    if (strstr(c->path, "{platform}")) id = "web";
    if (status == 404) id = strstr(c->path, "{platform}") ? "fax" : strstr(c->path, "/conflicts/") ? "k9" : UNKNOWN;
    if (status == 409) id = strstr(c->path, "/conflicts/") ? "k2" : CONV3;
    char path[512], query[256] = "";
    oa_fill(c->path, id, path, sizeof path);
    r->key = rest ? oa.admin : oa.connector;
    if (post) {
        snprintf(r->body, sizeof r->body, "%s", oa_good_body(c->path));
        r->has_body = 1;
    }
    r->sse = strcmp(c->path, "/v1/stream") == 0 && status == 200;
    switch (status) {
    case 200: case 202: case 404: case 409: break;
    case 401:
        if (!rest && (strstr(c->path, "wechat") || strstr(c->path, "douyin"))) return -1;
        r->key = NULL;
        break;
    case 403:
        if (rest) r->key = oa.connector;
        else if (!strstr(c->path, "wechat") && !strstr(c->path, "douyin")) r->key = oa.stranger;
        else if (strstr(c->path, "wechat")) snprintf(query, sizeof query, "?signature=bad&timestamp=1700000000&nonce=1&echostr=x&openid=o");
        else if (strstr(c->path, "douyin")) { /* no valid signature header: refused */ }
        else return -1;
        break;
    case 400:
        if (strstr(c->path, "wechat")) snprintf(query, sizeof query, "?timestamp=1&nonce=1");
        else if (post) snprintf(r->body, sizeof r->body, "not json");
        else snprintf(query, sizeof query, "?after=bad");
        break;
    case 413:
        if (!post) return -1;
        memset(r->body, ' ', OA_MAX_BODY + 16);
        r->body[0] = '{';
        r->body[OA_MAX_BODY + 14] = '}';
        r->body[OA_MAX_BODY + 15] = 0;
        if (strstr(c->path, "wechat")) snprintf(query, sizeof query, "?signature=x&timestamp=1&nonce=1");
        break;
    case 422:
        if (!post) return -1;
        snprintf(r->body, sizeof r->body, "%s",
                 strstr(c->path, "/close") ? "{\"reason\":5}" : rest ? "{}" : "{\"tenant_id\":\"t1\"}");
        break;
    default: return -1;
    }
    snprintf(r->url, sizeof r->url, "%s%s%s", oa.serve.base_url, path, query);
    return 0;
}

/* A stream answers 200 and keeps going: read its head, then hang up. */
static long oa_sse_status(const oa_req_t *r, char *ctype, size_t n) {
    CURL *c = curl_easy_init();
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
    FILE *sink = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    curl_easy_perform(c);
    long status = 0;
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(ctype, n, "%s", ct ? ct : "");
    if (sink) fclose(sink);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void oa_seed(void) {
    char err[1024];
    static const char *const sql[] = {
        "INSERT INTO customers VALUES ('t1', '" CUST1 "', 1, '{web}', now(), now())",
        "INSERT INTO conversations (tenant_id, conversation_id, customer_id, status, assignee, team,"
        " version, opened_at, last_activity) VALUES"
        " ('t1', '" CONV1 "', '" CUST1 "', 'open', 'alice', 'blue', 1, now(), now()),"
        " ('t1', '" CONV3 "', '" CUST1 "', 'closed', 'alice', 'blue', 1, now(), now())",
        "INSERT INTO conflicts (tenant_id, conflict_id, customer_id, field, status, candidates, opened_at, version)"
        " VALUES ('t1', 'k1', '" CUST1 "', 'phone', 'open', '[{\"value\":\"111\"},{\"value\":\"222\"}]', now(), 1),"
        " ('t1', 'k2', '" CUST1 "', 'email', 'resolved', '[{\"value\":\"a\"}]', now(), 1)",
    };
    for (size_t i = 0; i < sizeof sql / sizeof *sql; i++)
        OA_ASSERT(tl_test_pg_exec(oa.pg, sql[i], err, sizeof err) == 0, "%s", err);
}

static void oa_begin(void) {
    char err[1024], msg[256];
    snprintf(oa.prefix, sizeof oa.prefix, "%sx%d", oa_tag, (int)getpid());
    snprintf(oa.db, sizeof oa.db, "tl_oa%d", (int)getpid());
    OA_ASSERT(tl_test_pg_dsn_for(oa_pg_dsn, oa.db, oa.dsn, sizeof oa.dsn) == 0, "DSN too long");
    OA_ASSERT(tl_test_pg_create_db(oa_pg_dsn, oa.db, err, sizeof err) == 0, "%s", err);
    oa.have_db = 1;
    char maxbody[16];
    snprintf(maxbody, sizeof maxbody, "%d", OA_MAX_BODY);
    const char *extra[] = {"--auth", "required", "--max-body", maxbody, "--wechat-token", "tok",
                           "--wechat-tenant", "t1", "--douyin-secret", "sec", "--douyin-tenant", "t1", NULL};
    OA_ASSERT(tl_test_serve_init(&oa.serve, oa_exe, oa_brokers, oa.dsn, oa.prefix, OA_PARTITIONS, extra,
                                 err, sizeof err) == 0, "%s", err);
    oa.have_serve = 1;
    char *migrate[] = {(char *)oa_exe, "migrate", "--pg-dsn", oa.dsn, NULL};
    OA_ASSERT(tl_test_run(migrate, oa.serve.log_path, 60000, err, sizeof err) == 0, "migrate failed");
    oa.pg = tl_test_pg_connect(oa.dsn, err, sizeof err);
    OA_ASSERT(oa.pg != NULL, "%s", err);
    tl_auth_new_key_t admin = {"t1", TL_ROLE_ADMIN, NULL, NULL, NULL, "openapi"};
    tl_auth_new_key_t conn = {"t1", TL_ROLE_CONNECTOR, NULL, NULL, "web,api,phone,app,mini_program", "openapi"};
    OA_ASSERT(tl_auth_key_create(oa.pg, &admin, oa.admin, msg, sizeof msg) == TL_OK, "%s", msg);
    OA_ASSERT(tl_auth_key_create(oa.pg, &conn, oa.connector, msg, sizeof msg) == TL_OK, "%s", msg);
    tl_auth_new_key_t stranger = {"t1", TL_ROLE_CONNECTOR, NULL, NULL, "douyin", "openapi"};
    OA_ASSERT(tl_auth_key_create(oa.pg, &stranger, oa.stranger, msg, sizeof msg) == TL_OK, "%s", msg);
    oa_seed();
    OA_ASSERT(tl_test_serve_start(&oa.serve, err, sizeof err) == 0, "%s", err);
    OA_ASSERT(tl_test_serve_wait_ready(&oa.serve, 60000, err, sizeof err) == 0, "not ready: %s", err);
    oa.curl = curl_easy_init();
    OA_ASSERT(oa.curl != NULL, "curl");
}

START_TEST(openapi_every_documented_status_is_what_the_route_answers) {
    oa_begin();
    oa_load();
    OA_ASSERT(oa.nchecks > 40, "only %d documented responses", oa.nchecks);
    tl_test_report_t rep = {0};
    int tried = 0, skipped = 0;
    /* Successes last: a close or resolve must not change what the
     * 4xx checks of the same operation rely on. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < oa.nchecks; i++) {
            const oa_check_t *c = &oa.checks[i];
            int success = c->status[0] == '2';
            if (success != pass) continue;
            oa_req_t r;
            if (oa_untriggered(c)) {
                skipped++;
                continue;
            }
            if (trigger(c, &r) != 0) {
                tl_test_report(&rep, "%s %s %s: documented, but no test provokes it", c->method, c->path, c->status);
                continue;
            }
            tried++;
            long status;
            char ctype[128];
            if (r.sse) {
                status = oa_sse_status(&r, ctype, sizeof ctype);
            } else {
                char auth[256];
                const char *headers[] = {auth, NULL};
                snprintf(auth, sizeof auth, "Authorization: Bearer %s", r.key ? r.key : "");
                tl_test_resp_t resp;
                tl_test_http_h(oa.curl, c->method, r.url, r.key ? headers : NULL, r.has_body ? r.body : NULL,
                               r.has_body ? strlen(r.body) : 0, OA_HTTP_MS, &resp);
                status = resp.status;
                snprintf(ctype, sizeof ctype, "%s", resp.content_type);
                tl_test_resp_close(&resp);
            }
            size_t cl = strlen(c->ctype);
            if (status != atol(c->status) || strncasecmp(ctype, c->ctype, cl) != 0 ||
                (ctype[cl] && ctype[cl] != ';'))
                tl_test_report(&rep, "%s %s: documented %s %s, got %ld %s", c->method, r.url + strlen(oa.serve.base_url),
                               c->status, c->ctype, status, ctype);
        }
    OA_ASSERT(rep.count == 0, "%d operations answer differently from openapi.yaml:%s", rep.count, rep.text);
    printf("openapi: %d documented responses, %d provoked and as documented, %d covered elsewhere\n",
           oa.nchecks, tried, skipped);
    oa_cleanup(1);
}
END_TEST

static void oa_services_check(void) {
    tl_test_services_t sv;
    tl_test_services_require("openapi", &sv);
    oa_brokers = sv.brokers;
    oa_pg_dsn = sv.pg_dsn;
    oa_exe = sv.exe;
    snprintf(oa_tag, sizeof oa_tag, "oa%dt%lld", (int)getpid(), (long long)time(NULL));
}

static void oa_setup(void) { memset(&oa, 0, sizeof oa); }
static void oa_teardown(void) { oa_cleanup(1); }

Suite *tl_openapi_suite(void) {
    Suite *s = suite_create("openapi");
    TCase *tc = tcase_create("openapi");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, oa_services_check, NULL);
    tcase_add_checked_fixture(tc, oa_setup, oa_teardown);
    tcase_add_test(tc, openapi_every_documented_status_is_what_the_route_answers);
    suite_add_tcase(s, tc);
    return s;
}
