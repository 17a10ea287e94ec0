/*
 * test_projection.c -- the projection workers and `threadline rebuild` on
 * the real services: connectors post to `threadline serve` over HTTP, and
 * every platform's view is read back from PostgreSQL.
 *
 * Each test gets its own topic prefix and its own database (as in
 * test_pipeline.c):
 *
 *   topic prefix  pj<runner pid>t<epoch s>x<test pid>x<n>
 *   database      tl_pj_<runner pid>_<test pid>_<n>
 *
 * "Equals a fresh rebuild" is checked the same way throughout: with the
 * server stopped, each view is copied aside, `threadline rebuild
 * --platform P` rebuilds it from the log, and the copy and the rebuilt
 * view must hold the same rows (EXCEPT ALL both ways, every column).
 *
 * PostgreSQL outage: the PostgreSQL server is shared with other test runs,
 * so it is never stopped here.  The outage is of this test's database
 * only: ALTER DATABASE ... ALLOW_CONNECTIONS false, then every backend on
 * it is terminated (pg_terminate_backend), so the workers lose their
 * connections mid-stream and cannot reconnect until it is allowed again.
 * To the workers that is what a restart looks like.
 */
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "suites.h"
#include "support.h"

#define PJ_TENANT "acme"
#define PJ_PARTITIONS 4
#define PJ_READY_MS 60000
#define PJ_WAIT_MS 180000
#define PJ_LOG_TAIL 80

static const char *const pj_views[] = {"agent", "web", "app", "mini_program", "wechat", "douyin", "phone"};
#define PJ_NVIEWS 7

static const char *pj_brokers, *pj_pg_dsn, *pj_exe;
static char pj_run_tag[64], pj_db_tag[64];

typedef struct pj_test {
    char prefix[128], db[128], dsn[1024];
    int have_db, have_serve;
    tl_test_serve_t serve;
    PGconn *pg;
    CURL *curl;
} pj_test_t;

static pj_test_t pj;
static int pj_seq;

static void pj_cleanup(int ok) {
    char err[512];
    if (pj.curl) {
        curl_easy_cleanup(pj.curl);
        pj.curl = NULL;
    }
    if (pj.pg) {
        PQfinish(pj.pg);
        pj.pg = NULL;
    }
    if (pj.have_serve) {
        tl_test_serve_close(&pj.serve, ok);
        pj.have_serve = 0;
    }
    if (pj.have_db) {
        PGconn *base = tl_test_pg_connect(pj_pg_dsn, err, sizeof err);
        if (base) {
            char sql[256];
            snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", pj.db);
            tl_test_pg_exec(base, sql, err, sizeof err);
            PQfinish(base);
        }
        if (tl_test_pg_drop_db(pj_pg_dsn, pj.db, err, sizeof err) != 0) fprintf(stderr, "cleanup: %s\n", err);
        pj.have_db = 0;
    }
    if (pj.prefix[0]) {
        char topics[160];
        snprintf(topics, sizeof topics, "%s.", pj.prefix);
        if (tl_test_kafka_delete_topics(pj_brokers, topics, 10000, err, sizeof err) < 0)
            fprintf(stderr, "cleanup: %s\n", err);
        pj.prefix[0] = 0;
    }
}

static void pj_on_failure(const char *file, int line, const char *msg) {
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    if (pj.have_serve) {
        tl_test_serve_log_tail(&pj.serve, PJ_LOG_TAIL);
        fprintf(stderr, "(full serve log kept: %s)\n", pj.serve.log_path);
    }
    pj_cleanup(0);
}

#define PJ_FAIL(...)                                                                         \
    do {                                                                                     \
        char pj_msg_[8192];                                                                  \
        snprintf(pj_msg_, sizeof pj_msg_, __VA_ARGS__);                                      \
        pj_on_failure(__FILE__, __LINE__, pj_msg_);                                          \
        ck_abort_msg("%s", pj_msg_);                                                         \
    } while (0)

#define PJ_ASSERT(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond)) PJ_FAIL(__VA_ARGS__);                                                   \
    } while (0)

static void pj_services_check(void) {
    tl_test_services_t sv;
    tl_test_services_require("projection", &sv);
    pj_brokers = sv.brokers;
    pj_pg_dsn = sv.pg_dsn;
    pj_exe = sv.exe;
    snprintf(pj_run_tag, sizeof pj_run_tag, "pj%dt%lld", (int)getpid(), (long long)time(NULL));
    snprintf(pj_db_tag, sizeof pj_db_tag, "tl_pj_%d_", (int)getpid());
}

static void pj_services_sweep(void) {
    char err[512];
    if (pj_pg_dsn && pj_db_tag[0] && tl_test_pg_drop_dbs_like(pj_pg_dsn, pj_db_tag, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
    if (pj_brokers && pj_run_tag[0] && tl_test_kafka_delete_topics(pj_brokers, pj_run_tag, 10000, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
}

static void pj_setup(void) { memset(&pj, 0, sizeof pj); }
static void pj_teardown(void) { pj_cleanup(1); }

static void pj_connect(void) {
    char err[1024];
    if (pj.pg) PQfinish(pj.pg);
    pj.pg = tl_test_pg_connect(pj.dsn, err, sizeof err);
    PJ_ASSERT(pj.pg != NULL, "%s", err);
}

/* A fresh database and a ready server on it (all seven views), REST
 * without keys (--auth off) so the tests post and read as an admin. */
static void pj_begin(const char *const *more) {
    char err[1024];
    const char *extra[24] = {"--auth", "off"};
    for (int i = 0; more && more[i] && i + 3 < 24; i++) extra[i + 2] = more[i];
    int n = ++pj_seq;
    snprintf(pj.prefix, sizeof pj.prefix, "%sx%dx%d", pj_run_tag, (int)getpid(), n);
    snprintf(pj.db, sizeof pj.db, "%s%d_%d", pj_db_tag, (int)getpid(), n);
    PJ_ASSERT(tl_test_pg_dsn_for(pj_pg_dsn, pj.db, pj.dsn, sizeof pj.dsn) == 0, "DSN too long");
    PJ_ASSERT(tl_test_pg_create_db(pj_pg_dsn, pj.db, err, sizeof err) == 0, "%s", err);
    pj.have_db = 1;
    PJ_ASSERT(tl_test_serve_init(&pj.serve, pj_exe, pj_brokers, pj.dsn, pj.prefix, PJ_PARTITIONS, extra,
                                 err, sizeof err) == 0, "%s", err);
    pj.have_serve = 1;
    char *migrate[] = {(char *)pj_exe, "migrate", "--pg-dsn", pj.dsn, NULL};
    int rc = tl_test_run(migrate, pj.serve.log_path, 60000, err, sizeof err);
    PJ_ASSERT(rc == 0, "threadline migrate: %s", rc < 0 ? err : "non-zero exit");
    PJ_ASSERT(tl_test_serve_start(&pj.serve, err, sizeof err) == 0, "%s", err);
    PJ_ASSERT(tl_test_serve_wait_ready(&pj.serve, PJ_READY_MS, err, sizeof err) == 0, "serve not ready: %s", err);
    pj_connect();
    pj.curl = curl_easy_init();
    PJ_ASSERT(pj.curl != NULL, "curl_easy_init");
}

/* POSTs one event to /v1/ingest/api, resending on 503 or a refused
 * connection (a server coming back), until 202 or 120 s. */
static void pj_post(const char *platform, const char *user, const char *message_id, int64_t occurred_at,
                    json_t *payload) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "tenant_id", PJ_TENANT, "platform", platform,
                          "platform_user_id", user, "message_id", message_id, "occurred_at",
                          (json_int_t)occurred_at, "payload", payload);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    PJ_ASSERT(body != NULL, "out of memory");
    char url[128];
    snprintf(url, sizeof url, "%s/v1/ingest/api", pj.serve.base_url);
    int64_t deadline = tl_test_mono_ms() + 120000;
    for (;;) {
        tl_test_resp_t resp;
        tl_test_http(pj.curl, "POST", url, body, strlen(body), 30000, &resp);
        long status = resp.status;
        if (status == 202) {
            tl_test_resp_close(&resp);
            break;
        }
        int retry = (status == 0 || status == 503) && tl_test_mono_ms() < deadline;
        if (!retry) {
            char msg[1024];
            snprintf(msg, sizeof msg, "POST %s: %ld %s", message_id, status, status ? resp.body : resp.error);
            tl_test_resp_close(&resp);
            free(body);
            PJ_FAIL("%s", msg);
        }
        tl_test_resp_close(&resp);
        tl_test_sleep_ms(200);
    }
    free(body);
}

static int64_t pj_int(const char *sql, int n, const char *const *params) {
    char err[1024];
    int64_t v = -1;
    PJ_ASSERT(tl_test_pg_int(pj.pg, sql, n, params, &v, err, sizeof err) == 0, "%s: %s", sql, err);
    return v;
}

static int64_t pj_count(const char *view) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM view_%s WHERE tenant_id = '" PJ_TENANT "'", view);
    return pj_int(sql, 0, NULL);
}

/* Waits until every view holds want[i] rows (reconnecting if our own
 * connection was cut), then a little longer so a second copy would show. */
static void pj_wait_views(const int64_t *want) {
    int64_t deadline = tl_test_mono_ms() + PJ_WAIT_MS;
    for (int i = 0; i < PJ_NVIEWS; i++) {
        int64_t n = pj_count(pj_views[i]);
        while (n < want[i] && tl_test_mono_ms() < deadline) {
            tl_test_sleep_ms(250);
            n = pj_count(pj_views[i]);
        }
        PJ_ASSERT(n >= want[i], "view_%s holds %" PRId64 " of %" PRId64 " rows after %d ms", pj_views[i], n,
                  want[i], PJ_WAIT_MS);
    }
    tl_test_sleep_ms(1500);
    for (int i = 0; i < PJ_NVIEWS; i++) {
        int64_t n = pj_count(pj_views[i]);
        PJ_ASSERT(n == want[i], "view_%s holds %" PRId64 " rows, want %" PRId64, pj_views[i], n, want[i]);
    }
}

/* Runs `threadline rebuild --platform view` on the test's database. */
static void pj_rebuild(const char *view) {
    char err[1024];
    char *argv[] = {(char *)pj_exe, "rebuild", "--platform", (char *)view, "--pg-dsn", pj.dsn,
                    "--kafka-brokers", (char *)pj_brokers, "--prefix", pj.prefix, NULL};
    int rc = tl_test_run(argv, pj.serve.log_path, 120000, err, sizeof err);
    PJ_ASSERT(rc == 0, "threadline rebuild --platform %s: %s", view, rc < 0 ? err : "non-zero exit (see log)");
}

/* With the server stopped: every view equals a fresh rebuild of it. */
static void pj_check_views_equal_rebuild(void) {
    char err[1024], sql[512];
    for (int i = 0; i < PJ_NVIEWS; i++) {
        const char *v = pj_views[i];
        snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS snap_%s; CREATE TABLE snap_%s AS SELECT * FROM view_%s",
                 v, v, v);
        PJ_ASSERT(tl_test_pg_exec(pj.pg, sql, err, sizeof err) == 0, "%s", err);
        pj_rebuild(v);
        snprintf(sql, sizeof sql,
                 "SELECT (SELECT count(*) FROM (SELECT * FROM snap_%s EXCEPT ALL SELECT * FROM view_%s) a)"
                 " + (SELECT count(*) FROM (SELECT * FROM view_%s EXCEPT ALL SELECT * FROM snap_%s) b)",
                 v, v, v, v);
        int64_t diff = pj_int(sql, 0, NULL);
        PJ_ASSERT(diff == 0, "view_%s differs from its rebuild in %" PRId64 " rows", v, diff);
        snprintf(sql, sizeof sql, "SELECT count(*) FROM view_%s", v);
        PJ_ASSERT(pj_int(sql, 0, NULL) > 0, "view_%s is empty after the rebuild", v);
    }
}

static json_t *pj_text(const char *text) { return json_pack("{s:s, s:s}", "type", "MessageReceived", "text", text); }

static const char *const pj_platforms[] = {"web", "app", "mini_program", "wechat", "douyin", "phone"};

/* Message i of a stream: customers c0..c9 on rotating platforms. */
static void pj_post_stream(int from, int to, int64_t t0) {
    for (int i = from; i < to; i++) {
        char user[32], id[32], text[64];
        snprintf(user, sizeof user, "u-%d", i % 10);
        snprintf(id, sizeof id, "s-%d", i);
        snprintf(text, sizeof text, "stream message %d", i);
        pj_post(pj_platforms[i % 6], user, id, t0 + i, pj_text(text));
    }
}

/* ------------------------------------------------------------------ tests */

START_TEST(projection_each_view_is_shaped_by_its_profile) {
    pj_begin(NULL);
    int64_t t0 = tl_test_now_ms() - 60000;
    pj_post("mini_program", "mp-1", "a", t0,
            json_pack("{s:s, s:s, s:s}", "type", "MessageReceived", "text", "Do you have this in a bigger size?",
                      "entry_point", "product-detail:SKU-1"));
    pj_post("web", "w-1", "b", t0 + 1,
            json_pack("{s:s, s:s, s:[{s:s, s:s, s:i, s:i, s:i}]}", "type", "MessageReceived", "text", "this one",
                      "attachments", "url", "https://cdn.example/a.png", "mime", "image/png", "bytes", 2048,
                      "width", 640, "height", 480));
    char long_text[3008];
    for (int i = 0; i < 1000; i++) memcpy(long_text + 3 * i, "\xe5\xb0\xba", 3);
    memcpy(long_text + 3000, " tail!!", 8);
    pj_post("wechat", "wx-1", "c", t0 + 2, pj_text(long_text));
    pj_post("phone", "+8613812345678", "d", t0 + 3,
            json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:f}", "type", "TranscriptSegment", "call_id", "call-1",
                      "start_ms", 12000, "end_ms", 30500, "speaker", "CUSTOMER", "text", "where is my parcel",
                      "confidence", 0.9));
    pj_post("mini_program", "mp-1", "f1", t0 + 4,
            json_pack("{s:s, s:s, s:s}", "type", "FieldAsserted", "field", "order_no", "value", "A-1"));
    pj_post("mini_program", "mp-1", "f2", t0 + 5,
            json_pack("{s:s, s:s, s:s}", "type", "FieldAsserted", "field", "order_no", "value", "B-2"));
    pj_post("mini_program", "mp-1", "f3", t0 + 6,
            json_pack("{s:s, s:s, s:s}", "type", "FieldAsserted", "field", "name", "value", "Li Lei"));

    /* agent, web, app, mini_program, wechat (split in two), douyin (cut), phone */
    const int64_t want[PJ_NVIEWS] = {4, 4, 4, 4, 5, 4, 4};
    pj_wait_views(want);

    const char *k[] = {"wechat:c"};
    PJ_ASSERT(pj_int("SELECT count(*) FROM view_wechat WHERE idempotency_key = $1 AND"
                     " octet_length(body->>'text') <= 2048", 1, k) == 2,
              "the long WeChat text is not two parts of at most 2048 bytes");
    PGresult *r = tl_test_pg_query(pj.pg, "SELECT string_agg(body->>'text', '' ORDER BY part) FROM view_wechat"
                                   " WHERE idempotency_key = $1", 1, k, NULL, 0);
    PJ_ASSERT(r && strcmp(PQgetvalue(r, 0, 0), long_text) == 0, "WeChat parts do not join to the text");
    PQclear(r);
    PJ_ASSERT(pj_int("SELECT count(*) FROM view_douyin WHERE idempotency_key = 'wechat:c' AND"
                     " octet_length(body->>'text') <= 1000 AND (body->>'truncated')::boolean", 0, NULL) == 1,
              "Douyin does not cut the long text with a link");
    PJ_ASSERT(pj_int("SELECT count(*) FROM view_web WHERE idempotency_key = 'web:b' AND"
                     " body->'attachments'->0->>'thumbnail' = 'https://cdn.example/a.png?x-thumbnail=240' AND"
                     " body->'attachments'->0->>'link' = 'https://cdn.example/a.png'", 0, NULL) == 1,
              "the web view does not show the image as a thumbnail link");
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)(t0 + 3));
    const char *tsp[] = {ts};
    PJ_ASSERT(pj_int("SELECT count(*) FROM view_phone WHERE idempotency_key = 'phone:d' AND"
                     " body->>'text' = '[0:12\xe2\x80\x93" "0:30] where is my parcel' AND"
                     " effective_ts = to_timestamp($1::bigint/1000.0)", 1, tsp) == 1,
              "the phone segment is not in the timeline with its time marker");
    PJ_ASSERT(pj_int("SELECT count(*) FROM view_agent WHERE idempotency_key = 'mini_program:a' AND"
                     " source_label = 'mini-program \xc2\xb7 size question'", 0, NULL) == 1,
              "the mini-program message lacks its source label");
    PJ_ASSERT(pj_int("SELECT count(*) FROM view_agent WHERE idempotency_key = 'web:b' AND"
                     " body->'attachments'->0->>'url' = 'https://cdn.example/a.png'", 0, NULL) == 1,
              "the agent view does not show the image inline");
    /* The agent worker's unified tables, from the Changes' fold changes. */
    PJ_ASSERT(pj_int("SELECT count(*) FROM customer_fields WHERE field = 'name' AND value = 'Li Lei'"
                     " AND platform = 'mini_program'", 0, NULL) == 1, "customer_fields lacks name");
    PJ_ASSERT(pj_int("SELECT count(*) FROM customer_fields WHERE field = 'order_no' AND value = 'A-1'"
                     " AND is_key", 0, NULL) == 1, "customer_fields lacks the first order_no");
    PJ_ASSERT(pj_int("SELECT count(*) FROM conflicts WHERE field = 'order_no' AND status = 'open' AND"
                     " jsonb_array_length(candidates) = 2 AND candidates->1->>'value' = 'B-2'", 0, NULL) == 1,
              "the order_no conflict is not in the queue with both candidates");
    PJ_ASSERT(pj_int("SELECT count(*) FROM projection_offsets WHERE consumer IN"
                     " ('agent','web','app','mini_program','wechat','douyin','phone')", 0, NULL) > 0,
              "no consumer stored its offsets under its platform's name");

    /* A rebuild while the server keeps serving: the same rows. */
    char err[512];
    PJ_ASSERT(tl_test_pg_exec(pj.pg, "CREATE TABLE snap AS SELECT * FROM view_wechat", err, sizeof err) == 0,
              "%s", err);
    pj_rebuild("wechat");
    PJ_ASSERT(pj_int("SELECT (SELECT count(*) FROM (SELECT * FROM snap EXCEPT ALL SELECT * FROM view_wechat) a)"
                     " + (SELECT count(*) FROM (SELECT * FROM view_wechat EXCEPT ALL SELECT * FROM snap) b)",
                     0, NULL) == 0, "the rebuilt WeChat view differs from the live one");
    PJ_ASSERT(pj_int("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'view_wechat_%'", 0, NULL) == 0,
              "the rebuild left a shadow or old table behind");
    /* The live worker goes on writing into the swapped-in table. */
    pj_post("wechat", "wx-1", "e", t0 + 7, pj_text("after the rebuild"));
    const int64_t want2[PJ_NVIEWS] = {5, 5, 5, 5, 6, 5, 5};
    pj_wait_views(want2);
}
END_TEST

START_TEST(projection_sigkill_mid_batch_then_restart_equals_rebuild) {
    static const char *const extra[] = {"--batch", "20", "--batch-ms", "50", NULL};
    pj_begin(extra);
    int64_t t0 = tl_test_now_ms() - 60000;
    pj_post_stream(0, 150, t0);
    /* Let the projections get going, then kill the process mid-stream. */
    tl_test_sleep_ms(300);
    tl_test_serve_stop(&pj.serve, SIGKILL, 0);
    char err[512];
    PJ_ASSERT(tl_test_serve_start(&pj.serve, err, sizeof err) == 0, "%s", err);
    PJ_ASSERT(tl_test_serve_wait_ready(&pj.serve, PJ_READY_MS, err, sizeof err) == 0, "restart: %s", err);
    pj_post_stream(150, 300, t0);
    const int64_t want[PJ_NVIEWS] = {300, 300, 300, 300, 300, 300, 300};
    pj_wait_views(want);
    /* Nothing twice in the unified tables either: every item counted once. */
    PJ_ASSERT(pj_int("SELECT sum(item_count) FROM conversations", 0, NULL) == 300,
              "conversations count their items more than once");
    tl_test_serve_stop(&pj.serve, SIGTERM, 20000);
    pj_check_views_equal_rebuild();
}
END_TEST

START_TEST(projection_postgres_outage_mid_stream_then_resume_equals_rebuild) {
    static const char *const extra[] = {"--batch", "20", "--batch-ms", "50", NULL};
    pj_begin(extra);
    int64_t t0 = tl_test_now_ms() - 60000;
    pj_post_stream(0, 100, t0);
    char err[1024], sql[512];
    PGconn *base = tl_test_pg_connect(pj_pg_dsn, err, sizeof err);
    PJ_ASSERT(base != NULL, "%s", err);
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", pj.db);
    PJ_ASSERT(tl_test_pg_exec(base, sql, err, sizeof err) == 0, "%s", err);
    const char *db[] = {pj.db};
    PGresult *r = tl_test_pg_query(base, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                   " WHERE datname = $1", 1, db, err, sizeof err);
    PJ_ASSERT(r != NULL, "%s", err);
    PQclear(r);
    PQfinish(pj.pg);
    pj.pg = NULL;
    /* The log keeps everything meanwhile. */
    pj_post_stream(100, 200, t0);
    tl_test_sleep_ms(3000);
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", pj.db);
    PJ_ASSERT(tl_test_pg_exec(base, sql, err, sizeof err) == 0, "%s", err);
    PQfinish(base);
    pj_connect();
    pj_post_stream(200, 250, t0);
    const int64_t want[PJ_NVIEWS] = {250, 250, 250, 250, 250, 250, 250};
    pj_wait_views(want);
    PJ_ASSERT(pj_int("SELECT sum(item_count) FROM conversations", 0, NULL) == 250,
              "conversations count their items more than once");
    tl_test_serve_stop(&pj.serve, SIGTERM, 20000);
    pj_check_views_equal_rebuild();
}
END_TEST

/* A rebuild while connectors keep posting: the live view serves
 * throughout (counted during the rebuild), and once the traffic stops the
 * swapped-in view has every item once and equals a fresh rebuild. */
START_TEST(projection_rebuild_under_traffic_keeps_every_item) {
    static const char *const extra[] = {"--views", "agent,web", "--batch", "20", NULL};
    pj_begin(extra);
    int64_t t0 = tl_test_now_ms() - 60000;
    pj_post_stream(0, 100, t0);
    int64_t ready = tl_test_mono_ms() + PJ_WAIT_MS;
    while (pj_count("web") < 100 && tl_test_mono_ms() < ready) tl_test_sleep_ms(100);
    char *argv[] = {(char *)pj_exe, "rebuild", "--platform", "web", "--pg-dsn", pj.dsn, "--kafka-brokers",
                    (char *)pj_brokers, "--prefix", pj.prefix, "--batch", "10", NULL};
    pid_t pid = fork();
    PJ_ASSERT(pid >= 0, "fork");
    if (pid == 0) {
        int fd = open(pj.serve.log_path, O_WRONLY | O_APPEND);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    /* Traffic and reads go on while the rebuild runs. */
    int64_t served = 0;
    for (int i = 100; i < 250; i += 10) {
        pj_post_stream(i, i + 10, t0);
        served += pj_count("web") > 0;
    }
    int st = 0;
    PJ_ASSERT(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "threadline rebuild --platform web under traffic failed (see the log)");
    PJ_ASSERT(served == 15, "view_web was empty while it was rebuilt");
    const int64_t want = 250;
    int64_t deadline = tl_test_mono_ms() + PJ_WAIT_MS;
    while (pj_count("web") < want && tl_test_mono_ms() < deadline) tl_test_sleep_ms(250);
    tl_test_sleep_ms(1500);
    PJ_ASSERT(pj_count("web") == want, "view_web holds %" PRId64 " rows after the rebuild, want 250",
              pj_count("web"));
    tl_test_serve_stop(&pj.serve, SIGTERM, 20000);
    char err[512];
    PJ_ASSERT(tl_test_pg_exec(pj.pg, "CREATE TABLE snap AS SELECT * FROM view_web", err, sizeof err) == 0,
              "%s", err);
    pj_rebuild("web");
    PJ_ASSERT(pj_int("SELECT (SELECT count(*) FROM (SELECT * FROM snap EXCEPT ALL SELECT * FROM view_web) a)"
                     " + (SELECT count(*) FROM (SELECT * FROM view_web EXCEPT ALL SELECT * FROM snap) b)",
                     0, NULL) == 0, "view_web after a rebuild under traffic differs from a fresh rebuild");
}
END_TEST

/* A row PostgreSQL refuses (here: a CHECK constraint the test adds to one
 * view) is skipped after a retry; the Changes behind it still land. */
/* A batch's values travel to PostgreSQL inside array literals; the
 * characters those quote or escape (double quote, backslash, braces,
 * commas, spaces, a bare NULL) must land byte for byte, in every view. */
START_TEST(projection_values_that_array_literals_escape_land_unchanged) {
    pj_begin(NULL);
    int64_t t0 = tl_test_now_ms() - 60000;
    const char *text = "NULL";
    const char *text2 = "say \"hi\" \\o/ {a,b} , NULL\t}{";
    pj_post("web", "w-\"q\\{1,2}", "m \"1\\{,}", t0, pj_text(text));
    pj_post("web", "w-\"q\\{1,2}", "m2", t0 + 1, pj_text(text2));
    const int64_t want[PJ_NVIEWS] = {2, 2, 2, 2, 2, 2, 2};
    pj_wait_views(want);
    static const char *const views[] = {"view_agent", "view_web", "view_app", "view_mini_program",
                                        "view_wechat", "view_douyin", "view_phone"};
    for (int i = 0; i < PJ_NVIEWS; i++) {
        char sql[256];
        const char *k1[] = {"web:m \"1\\{,}", text}, *k2[] = {"web:m2", text2};
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE idempotency_key = $1 AND body->>'text' = $2",
                 views[i]);
        PJ_ASSERT(pj_int(sql, 2, k1) == 1, "%s: the text \"NULL\" or its key did not land unchanged", views[i]);
        PJ_ASSERT(pj_int(sql, 2, k2) == 1, "%s: a text with quotes, backslashes and braces did not land "
                  "unchanged", views[i]);
    }
    PJ_ASSERT(pj_int("SELECT count(*) FROM customers WHERE customer_id IS NOT NULL", 0, NULL) == 1,
              "one customer expected");
}
END_TEST

START_TEST(projection_a_refused_change_does_not_stop_the_view) {
    static const char *const extra[] = {"--views", "agent,wechat", NULL};
    pj_begin(extra);
    char err[512];
    PJ_ASSERT(tl_test_pg_exec(pj.pg, "ALTER TABLE view_wechat ADD CONSTRAINT test_refuses_poison"
                              " CHECK (body->>'text' <> 'poison')", err, sizeof err) == 0, "%s", err);
    int64_t t0 = tl_test_now_ms() - 60000;
    pj_post("wechat", "wx-1", "p1", t0, pj_text("before"));
    pj_post("wechat", "wx-1", "p2", t0 + 1, pj_text("poison"));
    pj_post("wechat", "wx-1", "p3", t0 + 2, pj_text("after"));
    int64_t deadline = tl_test_mono_ms() + PJ_WAIT_MS;
    while (pj_count("wechat") < 2 && tl_test_mono_ms() < deadline) tl_test_sleep_ms(250);
    PJ_ASSERT(pj_int("SELECT count(*) FROM view_wechat WHERE body->>'text' IN ('before', 'after')", 0, NULL) == 2,
              "the changes around the refused one are not in view_wechat");
    PJ_ASSERT(pj_count("agent") == 3, "the agent view lacks a message");
    tl_test_sleep_ms(1000);
    PJ_ASSERT(pj_count("wechat") == 2, "view_wechat holds the refused row");
}
END_TEST

Suite *tl_projection_suite(void) {
    Suite *s = suite_create("projection");
    TCase *tc = tcase_create("services");
    tcase_set_timeout(tc, 900);
    tcase_add_unchecked_fixture(tc, pj_services_check, pj_services_sweep);
    tcase_add_checked_fixture(tc, pj_setup, pj_teardown);
    tcase_add_test(tc, projection_each_view_is_shaped_by_its_profile);
    tcase_add_test(tc, projection_sigkill_mid_batch_then_restart_equals_rebuild);
    tcase_add_test(tc, projection_postgres_outage_mid_stream_then_resume_equals_rebuild);
    tcase_add_test(tc, projection_a_refused_change_does_not_stop_the_view);
    tcase_add_test(tc, projection_values_that_array_literals_escape_land_unchanged);
    tcase_add_test(tc, projection_rebuild_under_traffic_keeps_every_item);
    suite_add_tcase(s, tc);
    return s;
}
