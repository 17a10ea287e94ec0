/*
 * test_replay.c -- replay tooling on the real services: `threadline verify`,
 * `state --as-of` and `export` run as an operator runs them, against a
 * `threadline serve` fed over HTTP.
 *
 * Each test gets its own topic prefix and database (as test_pipeline.c
 * does), and every assertion goes through RP_ASSERT, which prints the tail
 * of the serve log and releases the test's resources before failing.  The
 * commands' output (stdout and stderr) goes to a log file that is read
 * back; a JSON document starts at the first line that opens with '{'.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "fold.h"
#include "replay.h"
#include "schemas.h"
#include "suites.h"
#include "support.h"
#include "verify.h"

#define RP_TENANT "acme"
#define RP_PARTITIONS 4
#define RP_READY_MS 60000

static const char *rp_brokers, *rp_pg_dsn, *rp_exe;
static char rp_run_tag[64], rp_db_tag[64];
static int rp_seq;

typedef struct rp_test {
    char prefix[128], db[128], dsn[1024], cmd_log[512];
    int have_db, have_serve;
    tl_test_serve_t serve;
    PGconn *pg;
    CURL *curl;
    char *out;                  /* the last command's output */
} rp_test_t;

static rp_test_t rp;

static void rp_cleanup(int ok) {
    char err[512];
    if (rp.curl) curl_easy_cleanup(rp.curl);
    rp.curl = NULL;
    if (rp.pg) PQfinish(rp.pg);
    rp.pg = NULL;
    free(rp.out);
    rp.out = NULL;
    if (rp.have_serve) tl_test_serve_close(&rp.serve, ok);
    rp.have_serve = 0;
    if (rp.cmd_log[0] && ok) unlink(rp.cmd_log);
    if (rp.have_db && tl_test_pg_drop_db(rp_pg_dsn, rp.db, err, sizeof err) != 0)
        fprintf(stderr, "cleanup: %s\n", err);
    rp.have_db = 0;
    if (rp.prefix[0]) {
        char topics[160];
        snprintf(topics, sizeof topics, "%s.", rp.prefix);
        if (tl_test_kafka_delete_topics(rp_brokers, topics, 10000, err, sizeof err) < 0)
            fprintf(stderr, "cleanup: %s\n", err);
        rp.prefix[0] = 0;
    }
}

static void rp_on_failure(const char *file, int line, const char *msg) {
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    if (rp.out) fprintf(stderr, "---- last command output ----\n%.6000s\n----\n", rp.out);
    if (rp.have_serve) tl_test_serve_log_tail(&rp.serve, 40);
    rp_cleanup(0);
}

#define RP_FAIL(...)                                                                         \
    do {                                                                                     \
        char rp_msg_[8192];                                                                  \
        snprintf(rp_msg_, sizeof rp_msg_, __VA_ARGS__);                                      \
        rp_on_failure(__FILE__, __LINE__, rp_msg_);                                          \
        ck_abort_msg("%s", rp_msg_);                                                         \
    } while (0)

#define RP_ASSERT(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond)) RP_FAIL(__VA_ARGS__);                                                   \
    } while (0)

static void rp_services_check(void) {
    tl_test_services_t sv;
    tl_test_services_require("replay", &sv);
    rp_brokers = sv.brokers;
    rp_pg_dsn = sv.pg_dsn;
    rp_exe = sv.exe;
    snprintf(rp_run_tag, sizeof rp_run_tag, "rp%dt%lld", (int)getpid(), (long long)time(NULL));
    snprintf(rp_db_tag, sizeof rp_db_tag, "tl_rp_%d_", (int)getpid());
}

static void rp_services_sweep(void) {
    char err[512];
    if (rp_pg_dsn && rp_db_tag[0] && tl_test_pg_drop_dbs_like(rp_pg_dsn, rp_db_tag, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
    if (rp_brokers && rp_run_tag[0] && tl_test_kafka_delete_topics(rp_brokers, rp_run_tag, 10000, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
}

static void rp_setup(void) { memset(&rp, 0, sizeof rp); }
static void rp_teardown(void) { rp_cleanup(1); }

static void rp_begin(const char *const *extra) {
    char err[1024];
    int n = ++rp_seq;
    snprintf(rp.prefix, sizeof rp.prefix, "%sx%dx%d", rp_run_tag, (int)getpid(), n);
    snprintf(rp.db, sizeof rp.db, "%s%d_%d", rp_db_tag, (int)getpid(), n);
    snprintf(rp.cmd_log, sizeof rp.cmd_log, "/tmp/tl-it-%s-cmd.log", rp.prefix);
    RP_ASSERT(tl_test_pg_dsn_for(rp_pg_dsn, rp.db, rp.dsn, sizeof rp.dsn) == 0, "DSN too long");
    RP_ASSERT(tl_test_pg_create_db(rp_pg_dsn, rp.db, err, sizeof err) == 0, "%s", err);
    rp.have_db = 1;
    /* These tests post and read without keys: the rest suite tests those. */
    const char *args[16] = {"--auth", "off"};
    for (int i = 0; extra && extra[i] && i < 13; i++) args[i + 2] = extra[i];
    RP_ASSERT(tl_test_serve_init(&rp.serve, rp_exe, rp_brokers, rp.dsn, rp.prefix, RP_PARTITIONS, args, err,
                                 sizeof err) == 0, "%s", err);
    rp.have_serve = 1;
    char *migrate[] = {(char *)rp_exe, "migrate", "--pg-dsn", rp.dsn, NULL};
    RP_ASSERT(tl_test_run(migrate, rp.serve.log_path, 60000, err, sizeof err) == 0, "migrate failed");
    RP_ASSERT(tl_test_serve_start(&rp.serve, err, sizeof err) == 0, "%s", err);
    RP_ASSERT(tl_test_serve_wait_ready(&rp.serve, RP_READY_MS, err, sizeof err) == 0, "not ready: %s", err);
    rp.pg = tl_test_pg_connect(rp.dsn, err, sizeof err);
    RP_ASSERT(rp.pg != NULL, "%s", err);
    rp.curl = curl_easy_init();
    RP_ASSERT(rp.curl != NULL, "curl_easy_init");
}

/* ---------------------------------------------------------------- posting */

typedef struct rp_ack {
    char event_id[40], customer_id[40];
    int partition;
} rp_ack_t;

/* Posts body to path until 202 (resending the same body on transport
 * errors and 503, up to 120 s).  Returns 0 and fills ack, or -1 with the
 * reason in err. */
static int rp_post_on(CURL *curl, const char *path, const char *body, rp_ack_t *ack, char *err, size_t errlen) {
    char url[256];
    snprintf(url, sizeof url, "%s%s", rp.serve.base_url, path);
    int64_t deadline = tl_test_mono_ms() + 120000;
    for (;;) {
        tl_test_resp_t resp;
        tl_test_http(curl, "POST", url, body, strlen(body), 30000, &resp);
        if (resp.status == 202) {
            json_t *j = json_loads(resp.body, 0, NULL);
            const char *e = json_string_value(json_object_get(j, "event_id"));
            const char *c = json_string_value(json_object_get(j, "customer_id"));
            const char *pos = json_string_value(json_object_get(j, "position"));
            if (ack) {
                snprintf(ack->event_id, sizeof ack->event_id, "%s", e ? e : "");
                snprintf(ack->customer_id, sizeof ack->customer_id, "%s", c ? c : "");
                ack->partition = pos ? atoi(pos) : -1;
            }
            json_decref(j);
            tl_test_resp_close(&resp);
            return 0;
        }
        int retry = resp.status == 0 || resp.status == 503;
        if (!retry || tl_test_mono_ms() > deadline) {
            snprintf(err, errlen, "POST %s: %ld %s", path, resp.status, resp.status ? resp.body : resp.error);
            tl_test_resp_close(&resp);
            return -1;
        }
        tl_test_resp_close(&resp);
        tl_test_sleep_ms(200);
    }
}

static void rp_post(const char *path, const char *body, rp_ack_t *ack) {
    char err[1024];
    RP_ASSERT(rp_post_on(rp.curl, path, body, ack, err, sizeof err) == 0, "%s", err);
}

static void rp_web(const char *visitor, const char *msgid, const char *text, rp_ack_t *ack) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"" RP_TENANT "\",\"visitor_id\":\"%s\",\"message_id\":\"%s\",\"sent_at\":%" PRId64
             ",\"text\":\"%s\"}", visitor, msgid, tl_test_now_ms(), text);
    rp_post("/v1/ingest/web", body, ack);
}

/* A FieldAsserted through the api route onto a known customer. */
static void rp_field(const char *customer, const char *msgid, const char *field, const char *value, rp_ack_t *ack) {
    char body[768];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"" RP_TENANT "\",\"platform\":\"app\",\"platform_user_id\":\"app-user\","
             "\"message_id\":\"%s\",\"occurred_at\":%" PRId64 ",\"customer_id\":\"%s\","
             "\"payload\":{\"type\":\"FieldAsserted\",\"field\":\"%s\",\"value\":\"%s\"}}",
             msgid, tl_test_now_ms(), customer, field, value);
    rp_post("/v1/ingest/api", body, ack);
}

/* An event of any kind on any platform through the api route. */
static void rp_api(const char *platform, const char *user, const char *msgid, int64_t occurred_at, json_t *payload,
                   rp_ack_t *ack) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "tenant_id", RP_TENANT, "platform", platform,
                          "platform_user_id", user, "message_id", msgid, "occurred_at", (json_int_t)occurred_at,
                          "payload", payload);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    RP_ASSERT(body != NULL, "out of memory");
    char err[1024];
    int rc = rp_post_on(rp.curl, "/v1/ingest/api", body, ack, err, sizeof err);
    free(body);
    RP_ASSERT(rc == 0, "%s", err);
}

static json_t *rp_text(const char *text) {
    return json_pack("{s:s, s:s}", "type", "MessageReceived", "text", text);
}

/* ------------------------------------------------------------- commands */

/* Runs `threadline <cmd> <common flags> args...`; its output in rp.out.
 * Returns the exit status. */
static int rp_cmd(const char *cmd, const char *const *args) {
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)rp_exe;
    argv[n++] = (char *)cmd;
    argv[n++] = "--kafka-brokers";
    argv[n++] = (char *)rp_brokers;
    argv[n++] = "--prefix";
    argv[n++] = rp.prefix;
    argv[n++] = "--pg-dsn";
    argv[n++] = rp.dsn;
    for (int i = 0; args && args[i] && n < 31; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    unlink(rp.cmd_log);
    char err[512];
    int st = tl_test_run(argv, rp.cmd_log, 180000, err, sizeof err);
    RP_ASSERT(st >= 0, "threadline %s: %s", cmd, err);
    free(rp.out);
    rp.out = NULL;
    FILE *f = fopen(rp.cmd_log, "r");
    RP_ASSERT(f != NULL, "no output log %s", rp.cmd_log);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    rp.out = calloc((size_t)len + 1, 1);
    RP_ASSERT(rp.out != NULL && fread(rp.out, 1, (size_t)len, f) == (size_t)len, "reading %s", rp.cmd_log);
    fclose(f);
    return st;
}

/* The JSON document in rp.out (new reference). */
static json_t *rp_json(void) {
    const char *p = rp.out;
    while (p && *p && *p != '{') {
        p = strchr(p, '\n');
        if (p) p++;
    }
    json_error_t je;
    json_t *j = p && *p ? json_loads(p, JSON_DISABLE_EOF_CHECK, &je) : NULL;
    RP_ASSERT(j != NULL, "no JSON document in the command's output");
    return j;
}

/* verify --json until it exits 0 (the projections may still be catching
 * up), up to timeout_ms; fails with the last differences otherwise. */
static void rp_verify_passes(int timeout_ms) {
    static const char *const args[] = {"--json", NULL};
    int64_t deadline = tl_test_mono_ms() + timeout_ms;
    int st, tries = 0;
    for (;;) {
        st = rp_cmd("verify", args);
        tries++;
        if (st == 0 || st != 1 || tl_test_mono_ms() > deadline) break;
        tl_test_sleep_ms(1000);
    }
    RP_ASSERT(st == 0, "verify exited %d after %d tries", st, tries);
    json_t *j = rp_json();
    RP_ASSERT(json_is_true(json_object_get(j, "ok")) &&
              json_array_size(json_object_get(j, "differences")) == 0, "verify exit 0 but not ok");
    json_decref(j);
}

static int64_t rp_rows(void) {
    char err[512];
    int64_t n = -1;
    RP_ASSERT(tl_test_pg_int(rp.pg, "SELECT count(*) FROM view_agent", 0, NULL, &n, err, sizeof err) == 0, "%s", err);
    return n;
}

static void rp_wait_rows(int64_t want, int timeout_ms) {
    int64_t deadline = tl_test_mono_ms() + timeout_ms;
    while (rp_rows() < want && tl_test_mono_ms() < deadline) tl_test_sleep_ms(250);
    RP_ASSERT(rp_rows() >= want, "view_agent holds %" PRId64 " of %" PRId64 " rows", rp_rows(), want);
}

static void rp_sql(const char *sql, const char *param) {
    char err[512];
    const char *params[] = {param};
    PGresult *r = PQexecParams(rp.pg, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0;
    snprintf(err, sizeof err, "%s", PQerrorMessage(rp.pg));
    PQclear(r);
    RP_ASSERT(ok, "%s: not exactly one row changed %s", sql, err);
}

static void rp_sql_value(const char *sql, const char *param, char *out, size_t n) {
    char err[512];
    const char *params[] = {param};
    PGresult *r = tl_test_pg_query(rp.pg, sql, 1, params, err, sizeof err);
    RP_ASSERT(r != NULL && PQntuples(r) >= 1, "%s: %s", sql, r ? "no row" : err);
    snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* verify must exit 1 with a difference on conversation conv from source
 * whose field starts with field. */
static void rp_verify_names(const char *conv, const char *source, const char *field) {
    static const char *const args[] = {"--json", NULL};
    int st = rp_cmd("verify", args);
    RP_ASSERT(st == 1, "verify exited %d after tampering with %s; want 1", st, source);
    json_t *j = rp_json();
    json_t *diffs = json_object_get(j, "differences"), *d;
    size_t i;
    int found = 0;
    tl_test_report_t rep = {.text = ""};
    json_array_foreach(diffs, i, d) {
        const char *id = json_string_value(json_object_get(d, "id"));
        const char *src = json_string_value(json_object_get(d, "source"));
        const char *f = json_string_value(json_object_get(d, "field"));
        tl_test_report(&rep, "%s %s: %s: replay %s, found %s", id ? id : "?", src ? src : "?", f ? f : "?",
                       json_string_value(json_object_get(d, "replay")),
                       json_string_value(json_object_get(d, "found")));
        found |= id && src && f && strcmp(id, conv) == 0 && strcmp(src, source) == 0 &&
                 strncmp(f, field, strlen(field)) == 0;
    }
    size_t nd = json_array_size(diffs);
    json_decref(j);
    RP_ASSERT(found, "verify did not name conversation %s, %s, %s:%s", conv, source, field, rep.text);
    RP_ASSERT(nd == 1, "one row tampered with, %zu differences reported:%s", nd, rep.text);
    /* The text form names it too. */
    st = rp_cmd("verify", NULL);
    RP_ASSERT(st == 1 && strstr(rp.out, conv) && strstr(rp.out, source), "text verify does not name %s in %s",
              conv, source);
    const char *line = strstr(rp.out, "DIFFERS ");
    printf("replay: %.*s\n", line ? (int)strcspn(line, "\n") : 4, line ? line : "none");
    fflush(stdout);
}

/* ------------------------------------------------------------------ tests */

START_TEST(replay_verify_names_tampered_conversation_and_field) {
    enum { CUSTOMERS = 4, PER = 3 };
    rp_begin(NULL);
    rp_ack_t acks[CUSTOMERS][PER];
    for (int s = 0; s < PER; s++)
        for (int c = 0; c < CUSTOMERS; c++) {
            char visitor[16], id[16], text[32];
            snprintf(visitor, sizeof visitor, "v-%d", c);
            snprintf(id, sizeof id, "m-%d", s);
            snprintf(text, sizeof text, "msg %d %d", c, s);
            rp_web(visitor, id, text, &acks[c][s]);
        }
    rp_wait_rows(CUSTOMERS * PER, 120000);
    rp_verify_passes(60000);

    /* A replay written to a scratch schema holds what the projection
     * holds; a second one never overwrites it. */
    const char *const scratch[] = {"--scratch-schema", "rp_scratch", NULL};
    RP_ASSERT(rp_cmd("replay", scratch) == 0, "replay --scratch-schema exited non-zero");
    char err[512];
    int64_t diff = -1;
    RP_ASSERT(tl_test_pg_int(rp.pg,
                             "SELECT (SELECT count(*) FROM ((SELECT conversation_id, event_id,"
                             " round(extract(epoch FROM effective_ts) * 1000)::bigint, source_partition, source_offset"
                             " FROM view_agent) EXCEPT (SELECT conversation_id, event_id, effective_ts, source_partition,"
                             " source_offset FROM rp_scratch.items)) d)"
                             " + (SELECT count(*) FROM view_agent) - (SELECT count(*) FROM rp_scratch.items)"
                             " + (SELECT count(*) FROM ((SELECT conversation_id, customer_id, version, item_count FROM"
                             " conversations) EXCEPT (SELECT conversation_id, customer_id, version, item_count FROM"
                             " rp_scratch.conversations)) c)",
                             0, NULL, &diff, err, sizeof err) == 0, "%s", err);
    RP_ASSERT(diff == 0, "the scratch schema differs from the projection (%" PRId64 ")", diff);
    RP_ASSERT(rp_cmd("replay", scratch) == 2 && strstr(rp.out, "exists"), "a second --scratch-schema rp_scratch");
    const char *const bad_schema[] = {"--scratch-schema", "public", NULL};
    RP_ASSERT(rp_cmd("replay", bad_schema) == 2, "--scratch-schema public must be refused");

    char conv[64];
    rp_sql_value("SELECT conversation_id FROM conversations WHERE customer_id = $1", acks[0][0].customer_id, conv,
                 sizeof conv);
    rp_sql("UPDATE conversations SET item_count = item_count + 1 WHERE conversation_id = $1", conv);
    rp_verify_names(conv, "conversations", "item_count");
    rp_sql("UPDATE conversations SET item_count = item_count - 1 WHERE conversation_id = $1", conv);

    /* One agent-view row moved an hour later: the conversation's second
     * item is now another event. */
    rp_sql_value("SELECT conversation_id FROM conversations WHERE customer_id = $1", acks[1][0].customer_id, conv,
                 sizeof conv);
    rp_sql("UPDATE view_agent SET effective_ts = effective_ts + interval '1 hour' WHERE event_id = $1",
           acks[1][1].event_id);
    char want_field[640];
    snprintf(want_field, sizeof want_field, "item %s part 0: effective_ts", acks[1][1].event_id);
    rp_verify_names(conv, "view_agent", want_field);
    rp_sql("UPDATE view_agent SET effective_ts = effective_ts - interval '1 hour' WHERE event_id = $1",
           acks[1][1].event_id);

    /* A platform view row naming an event of another conversation. */
    rp_sql_value("SELECT conversation_id FROM conversations WHERE customer_id = $1", acks[3][0].customer_id, conv,
                 sizeof conv);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO view_web SELECT tenant_id, 'f' || substr(event_id, 2), '%s', customer_id, kind, platform,"
             " source_label, effective_ts, occurred_at, received_at, source_partition, source_offset,"
             " idempotency_key, body, part FROM view_web WHERE event_id = $1", conv);
    rp_sql(sql, acks[2][0].event_id);
    snprintf(want_field, sizeof want_field, "item f%s part 0: row", acks[2][0].event_id + 1);
    rp_verify_names(conv, "view_web", want_field);
    snprintf(want_field, sizeof want_field, "f%s", acks[2][0].event_id + 1);
    rp_sql("DELETE FROM view_web WHERE event_id = $1", want_field);
    rp_verify_passes(30000);

    /* A conversation's account: its events, in order, nothing else. */
    const char *const au_args[] = {"--conversation", conv, "--json", NULL};
    RP_ASSERT(rp_cmd("audit", au_args) == 0, "audit --conversation exited non-zero");
    json_t *j = rp_json(), *e;
    size_t i;
    tl_test_report_t rep = {.text = ""};
    json_t *events = json_object_get(j, "events");
    if (json_array_size(events) != PER) tl_test_report(&rep, "%zu events, want %d", json_array_size(events), PER);
    json_array_foreach(events, i, e) {
        const char *id = json_string_value(json_object_get(e, "event_id"));
        const char *c = json_string_value(json_object_get(e, "conversation_id"));
        if (i < PER && (!id || strcmp(id, acks[3][i].event_id) != 0))
            tl_test_report(&rep, "event %zu is %s, want %s", i, id ? id : "?", acks[3][i].event_id);
        if (!c || strcmp(c, conv) != 0) tl_test_report(&rep, "event %zu of conversation %s", i, c ? c : "none");
    }
    json_decref(j);
    RP_ASSERT(rep.count == 0, "audit --conversation %s:%s", conv, rep.text);
    const char *const none[] = {"--conversation", "00000000-0000-5000-8000-000000000000", NULL};
    RP_ASSERT(rp_cmd("audit", none) == 1 && strstr(rp.out, "no events of conversation"), "unknown conversation");

    /* A newer .state record for customer 0 holding an older state (one
     * event folded): verify names the customer and the field. */
    const char *cust = acks[0][0].customer_id;
    int cerr = 0;
    tl_fold_t *f = tl_fold_new(&(tl_fold_opts_t){300000, 1800000, NULL, 0});
    tl_codec_t *st_codec = tl_codec_new(tl_schema_state, &cerr);
    RP_ASSERT(f && st_codec, "fold or codec");
    tl_event_t ev;
    tl_fold_result_t res;
    memset(&ev, 0, sizeof ev);
    ev.event_id = TL_STR("forged-event");
    ev.tenant_id = TL_STR(RP_TENANT);
    ev.customer_id = (tl_str_t){cust, strlen(cust)};
    ev.platform = TL_PLATFORM_WEB;
    ev.platform_user_id = TL_STR("v-0");
    ev.idempotency_key = TL_STR("web:forged");
    ev.occurred_at = ev.received_at = tl_test_now_ms();
    ev.kind = TL_EV_MESSAGE_RECEIVED;
    ev.u.message.text = TL_STR("forged");
    RP_ASSERT(tl_fold_apply(f, &ev, &res) == 0, "fold");
    tl_buf_t b;
    tl_buf_init(&b);
    RP_ASSERT(tl_fold_state_encode(f, st_codec, ev.tenant_id, ev.customer_id, &b) == 0, "encode");
    char errstr[256], topic[256];
    snprintf(topic, sizeof topic, "%s.state", rp.prefix);
    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    rd_kafka_conf_set(pconf, "bootstrap.servers", rp_brokers, errstr, sizeof errstr);
    rd_kafka_conf_set(pconf, "partitioner", "murmur2_random", errstr, sizeof errstr);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof errstr);
    RP_ASSERT(prod != NULL, "%s", errstr);
    rd_kafka_resp_err_t pe = rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(cust, strlen(cust)),
                                               RD_KAFKA_V_VALUE(b.data, b.len),
                                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    int left = rd_kafka_flush(prod, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : rd_kafka_outq_len(prod);
    rd_kafka_destroy(prod);
    tl_buf_close(&b);
    tl_codec_free(st_codec);
    tl_fold_free(f);
    RP_ASSERT(pe == 0 && left == 0, "producing the forged state: %s", rd_kafka_err2str(pe));
    rp_verify_names(cust, ".state", "version");
}
END_TEST


/* Every view rendered from the replay, row for row and column for column,
 * and the fold's tables: a clean run verifies clean; one tampered cell of
 * view_wechat (the second part of a split text), of customer_fields and of
 * conflicts is named with its conversation or customer and its field. */
START_TEST(replay_verify_checks_every_view_and_the_fold_tables) {
    rp_begin(NULL);
    int64_t t0 = tl_test_now_ms() - 60000;
    rp_ack_t web, app, mp, wx, dy, ph, f1, f2, f3;
    rp_api("web", "w-1", "a", t0,
           json_pack("{s:s, s:s, s:[{s:s, s:s, s:i, s:i, s:i}]}", "type", "MessageReceived", "text", "this one",
                     "attachments", "url", "https://cdn.example/a.png", "mime", "image/png", "bytes", 2048,
                     "width", 640, "height", 480), &web);
    rp_api("app", "app-1", "b", t0 + 1, rp_text("where is my refund? call 13812345678"), &app);
    rp_api("mini_program", "mp-1", "c", t0 + 2,
           json_pack("{s:s, s:s, s:s}", "type", "MessageReceived", "text", "Do you have this in a bigger size?",
                     "entry_point", "product-detail:SKU-1"), &mp);
    char long_text[3008];
    for (int i = 0; i < 1000; i++) memcpy(long_text + 3 * i, "\xe5\xb0\xba", 3);
    memcpy(long_text + 3000, " tail!!", 8);
    rp_api("wechat", "wx-1", "d", t0 + 3, rp_text(long_text), &wx);
    rp_api("douyin", "dy-1", "e", t0 + 4, rp_text("delivery status please, mail me at li@example.com"), &dy);
    rp_api("phone", "+8613812345678", "f", t0 + 5,
           json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:f}", "type", "TranscriptSegment", "call_id", "call-1",
                     "start_ms", 12000, "end_ms", 30500, "speaker", "CUSTOMER", "text", "where is my parcel",
                     "confidence", 0.9), &ph);
    rp_api("mini_program", "mp-1", "g1", t0 + 6,
           json_pack("{s:s, s:s, s:s}", "type", "FieldAsserted", "field", "order_no", "value", "A-1"), &f1);
    rp_api("mini_program", "mp-1", "g2", t0 + 7,
           json_pack("{s:s, s:s, s:s}", "type", "FieldAsserted", "field", "order_no", "value", "B-2"), &f2);
    rp_api("mini_program", "mp-1", "g3", t0 + 8,
           json_pack("{s:s, s:s, s:s}", "type", "FieldAsserted", "field", "name", "value", "Li Lei"), &f3);
    char err[512];
    int64_t n = 0, deadline = tl_test_mono_ms() + 120000;
    while (tl_test_mono_ms() < deadline) {
        RP_ASSERT(tl_test_pg_int(rp.pg, "SELECT (SELECT count(*) FROM view_wechat) * 10 + (SELECT count(*) FROM"
                                 " conflicts)", 0, NULL, &n, err, sizeof err) == 0, "%s", err);
        if (n >= 21) break;
        tl_test_sleep_ms(250);
    }
    RP_ASSERT(n >= 21, "view_wechat and conflicts did not fill (%" PRId64 ")", n);
    rp_verify_passes(120000);
    /* The report names what it compared, every view among them. */
    static const char *const json_args[] = {"--json", NULL};
    RP_ASSERT(rp_cmd("verify", json_args) == 0, "verify exited non-zero on a clean run");
    json_t *j = rp_json(), *checked = json_object_get(j, "checked");
    static const char *const sources[] = {"view_agent", "view_web", "view_app", "view_mini_program", "view_wechat",
                                          "view_douyin", "view_phone", "customer_fields", "conflicts"};
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++)
        RP_ASSERT(json_integer_value(json_object_get(checked, sources[i])) > 0, "verify did not compare %s",
                  sources[i]);
    json_decref(j);

    /* The second part of the split WeChat text. */
    char conv[64], field[256];
    rp_sql_value("SELECT conversation_id FROM conversations WHERE customer_id = $1", wx.customer_id, conv,
                 sizeof conv);
    rp_sql("UPDATE view_wechat SET body = jsonb_set(body, '{text}', to_jsonb((body->>'text') || 'X'))"
           " WHERE event_id = $1 AND part = 1", wx.event_id);
    snprintf(field, sizeof field, "item %s part 1: body.text", wx.event_id);
    rp_verify_names(conv, "view_wechat", field);
    rp_sql("UPDATE view_wechat SET body = jsonb_set(body, '{text}', to_jsonb(left(body->>'text', -1)))"
           " WHERE event_id = $1 AND part = 1", wx.event_id);

    /* A field's value. */
    rp_sql("UPDATE customer_fields SET value = value || 'X' WHERE customer_id = $1 AND field = 'name'",
           f3.customer_id);
    rp_verify_names(f3.customer_id, "customer_fields", "field name: value");
    rp_sql("UPDATE customer_fields SET value = left(value, -1) WHERE customer_id = $1 AND field = 'name'",
           f3.customer_id);

    /* A conflict's status. */
    char conflict[80];
    rp_sql_value("SELECT conflict_id FROM conflicts WHERE customer_id = $1 AND field = 'order_no'", f2.customer_id,
                 conflict, sizeof conflict);
    rp_sql("UPDATE conflicts SET status = 'withdrawn' WHERE customer_id = $1 AND field = 'order_no'",
           f2.customer_id);
    snprintf(field, sizeof field, "conflict %s (field order_no): status", conflict);
    rp_verify_names(f2.customer_id, "conflicts", field);
    rp_sql("UPDATE conflicts SET status = 'open' WHERE customer_id = $1 AND field = 'order_no'", f2.customer_id);
    rp_verify_passes(30000);

    /* Only the views serve runs are compared: without agent, neither
     * view_agent nor the unified tables. */
    static const char *const some[] = {"--json", "--views", "wechat,phone", NULL};
    RP_ASSERT(rp_cmd("verify", some) == 0, "verify --views wechat,phone exited non-zero");
    j = rp_json();
    checked = json_object_get(j, "checked");
    RP_ASSERT(json_object_get(checked, "view_wechat") && json_object_get(checked, "view_phone") &&
              !json_object_get(checked, "view_web") && !json_object_get(checked, "view_agent") &&
              !json_object_get(checked, "customer_fields"), "--views wechat,phone compared other tables");
    json_decref(j);
}
END_TEST

/* Connector traffic with retries while serve is killed. */
typedef struct rp_client {
    pthread_t th;
    int customers, per;
    atomic_int acked;
    char error[512];
} rp_client_t;

static void *rp_client_main(void *opaque) {
    rp_client_t *cl = opaque;
    CURL *curl = curl_easy_init();
    for (int s = 0; s < cl->per && !cl->error[0]; s++)
        for (int c = 0; c < cl->customers && !cl->error[0]; c++) {
            char body[512];
            snprintf(body, sizeof body,
                     "{\"tenant_id\":\"" RP_TENANT "\",\"visitor_id\":\"k-%d\",\"message_id\":\"m-%d\",\"sent_at\":%"
                     PRId64 ",\"text\":\"kill %d %d\"}", c, s, tl_test_now_ms(), c, s);
            if (rp_post_on(curl, "/v1/ingest/web", body, NULL, cl->error, sizeof cl->error) == 0)
                atomic_fetch_add(&cl->acked, 1);
        }
    curl_easy_cleanup(curl);
    return NULL;
}

START_TEST(replay_verify_passes_after_random_sigkills) {
    enum { CUSTOMERS = 12, PER = 25, KILLS = 2 };
    static const char *const extra[] = {"--max-customers", "4", NULL};
    rp_begin(extra);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    rp_client_t cl;
    memset(&cl, 0, sizeof cl);
    cl.customers = CUSTOMERS;
    cl.per = PER;
    RP_ASSERT(pthread_create(&cl.th, NULL, rp_client_main, &cl) == 0, "pthread_create");
    int total = CUSTOMERS * PER, kills = 0;
    for (int k = 0; k < KILLS; k++) {
        int at = (k + 1) * total / (KILLS + 2) + rand() % (total / (KILLS + 2) / 2 + 1);
        int64_t deadline = tl_test_mono_ms() + 120000;
        while (atomic_load(&cl.acked) < at && tl_test_mono_ms() < deadline && !cl.error[0]) tl_test_sleep_ms(2);
        if (atomic_load(&cl.acked) >= total) break;
        int st = tl_test_serve_stop(&rp.serve, SIGKILL, 0);
        RP_ASSERT(st != -1 && WIFSIGNALED(st), "serve was not running at kill %d", k);
        kills++;
        char err[512];
        tl_test_sleep_ms(rand() % 500);
        RP_ASSERT(tl_test_serve_start(&rp.serve, err, sizeof err) == 0, "restart: %s", err);
        RP_ASSERT(tl_test_serve_wait_ready(&rp.serve, RP_READY_MS, err, sizeof err) == 0, "not ready: %s", err);
    }
    pthread_join(cl.th, NULL);
    RP_ASSERT(!cl.error[0], "client: %s", cl.error);
    RP_ASSERT(atomic_load(&cl.acked) == total, "%d of %d acknowledged", atomic_load(&cl.acked), total);
    fprintf(stderr, "replay: %d SIGKILLs of serve (seed %u)\n", kills, seed);
    RP_ASSERT(kills >= 1, "no kill landed mid-stream");
    rp_wait_rows(total, 180000);
    rp_verify_passes(120000);
}
END_TEST

/* Folds, with tl_fold directly, customer's events of partition received
 * at or before as_of; the state's SHA-256 into hex and its version. */
static void rp_fold_prefix(const char *customer, int partition, int64_t as_of, char hex[TL_VERIFY_DIGEST_HEX],
                           int64_t *version) {
    char errstr[512], topic[256];
    snprintf(topic, sizeof topic, "%s.events", rp.prefix);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rp_brokers, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", "rp-test-prefix", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    RP_ASSERT(rk != NULL, "%s", errstr);
    int64_t lo = 0, hi = 0;
    RP_ASSERT(rd_kafka_query_watermark_offsets(rk, topic, partition, &lo, &hi, 10000) == 0, "watermarks");
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, topic, partition)->offset = lo;
    rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    int err = 0;
    tl_codec_t *codec = tl_codec_new_event(&err);
    tl_codec_t *st_codec = tl_codec_new(tl_schema_state, &err);
    tl_fold_t *f = tl_fold_new(&(tl_fold_opts_t){300000, 1800000, NULL, 0});
    RP_ASSERT(codec && st_codec && f, "setup");
    int64_t next = lo, deadline = tl_test_mono_ms() + 60000;
    while (next < hi - 1 && tl_test_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        if (!m->err) {
            next = m->offset;
            tl_event_t ev;
            tl_fold_result_t res;
            if (m->offset < hi && m->key_len == strlen(customer) && memcmp(m->key, customer, m->key_len) == 0 &&
                tl_codec_decode_event(codec, m->payload, m->len, &ev) == 0 && ev.received_at <= as_of)
                RP_ASSERT(tl_fold_apply(f, &ev, &res) == 0, "fold");
        }
        rd_kafka_message_destroy(m);
    }
    tl_fold_customer_t cu;
    tl_str_t t = TL_STR(RP_TENANT), c = {customer, strlen(customer)};
    hex[0] = 0;
    *version = 0;
    if (tl_fold_get_customer(f, t, c, &cu) == 0) {
        tl_buf_t b;
        tl_buf_init(&b);
        RP_ASSERT(tl_fold_state_encode(f, st_codec, t, c, &b) == 0, "encode");
        tl_verify_digest(b.data, b.len, hex);
        tl_buf_close(&b);
        *version = cu.version;
    }
    tl_fold_free(f);
    tl_codec_free(codec);
    tl_codec_free(st_codec);
    rd_kafka_destroy(rk);
}

START_TEST(replay_state_as_of_equals_folding_the_log_prefix) {
    rp_begin(NULL);
    rp_ack_t a;
    int64_t t[6];
    t[0] = tl_test_now_ms();
    tl_test_sleep_ms(30);
    rp_web("v-t", "m-1", "first", &a);
    char customer[40];
    snprintf(customer, sizeof customer, "%s", a.customer_id);
    int partition = a.partition;
    RP_ASSERT(partition >= 0, "no partition in the 202");
    tl_test_sleep_ms(30);
    t[1] = tl_test_now_ms();
    tl_test_sleep_ms(30);
    rp_field(customer, "f-1", "phone", "13800000001", NULL);
    tl_test_sleep_ms(30);
    t[2] = tl_test_now_ms();
    tl_test_sleep_ms(30);
    rp_web("v-t", "m-2", "second", NULL);
    rp_field(customer, "f-2", "phone", "13800000002", NULL); /* a key field: a conflict */
    tl_test_sleep_ms(30);
    t[3] = tl_test_now_ms();
    tl_test_sleep_ms(30);
    rp_field(customer, "f-3", "name", "Ann", NULL);
    rp_web("v-t", "m-3", "third", NULL);
    tl_test_sleep_ms(30);
    t[4] = tl_test_now_ms();
    t[5] = INT64_MAX;

    /* Before the first event the customer is unknown: exit 1. */
    char when[40];
    snprintf(when, sizeof when, "%" PRId64, t[0]);
    const char *const none[] = {"--customer", customer, "--as-of", when, "--json", NULL};
    RP_ASSERT(rp_cmd("state", none) == 1 && strstr(rp.out, "no events"), "state before the first event");

    for (int i = 1; i < 6; i++) {
        /* Epoch milliseconds and RFC 3339 alike. */
        if (i == 5) snprintf(when, sizeof when, "%s", "");
        else if (i % 2) tl_replay_format_time(t[i], when, sizeof when);
        else snprintf(when, sizeof when, "%" PRId64, t[i]);
        const char *const with[] = {"--customer", customer, "--as-of", when, "--json", NULL};
        const char *const all[] = {"--customer", customer, "--json", NULL};
        int st = rp_cmd("state", i == 5 ? all : with);
        RP_ASSERT(st == 0, "state --as-of %s exited %d", when, st);
        json_t *j = rp_json();
        char hex[TL_VERIFY_DIGEST_HEX];
        int64_t version;
        rp_fold_prefix(customer, partition, t[i], hex, &version);
        const char *got = json_string_value(json_object_get(j, "state_sha256"));
        int64_t got_version = json_integer_value(json_object_get(j, "version"));
        int same = got && strcmp(got, hex) == 0 && got_version == version;
        json_decref(j);
        RP_ASSERT(same, "as of %s: state digest %s version %" PRId64 ", folding the prefix gives %s version %" PRId64,
                  when, got ? got : "(none)", got_version, hex, version);
    }
    /* The final state names where its field came from. */
    json_t *j = rp_json();
    json_t *f, *phone = NULL;
    size_t i;
    json_array_foreach(json_object_get(j, "fields"), i, f)
        if (strcmp(json_string_value(json_object_get(f, "name")), "phone") == 0) phone = f;
    json_t *prov = json_object_get(phone, "provenance");
    int ok = phone && json_is_string(json_object_get(prov, "event_id")) &&
             strcmp(json_string_value(json_object_get(prov, "platform")), "app") == 0 &&
             strcmp(json_string_value(json_object_get(prov, "actor")), "app-user") == 0 &&
             json_array_size(json_object_get(j, "conflicts")) == 1;
    json_decref(j);
    RP_ASSERT(ok, "phone's provenance or the open conflict missing from the state");

    const char *const bad[] = {"--customer", customer, "--as-of", "2026-02-30T00:00:00Z", NULL};
    RP_ASSERT(rp_cmd("state", bad) == 2 && strstr(rp.out, "no such date"), "a bad --as-of must exit 2");
}
END_TEST

START_TEST(replay_export_of_linked_customer_has_every_identity) {
    rp_begin(NULL);
    rp_ack_t a[2], b[3], link;
    rp_web("v-a", "m-1", "I am A", &a[0]);
    rp_web("v-a", "m-2", "still A", &a[1]);
    rp_web("v-b", "m-1", "I am B", &b[0]);
    rp_web("v-b", "m-2", "still B", &b[1]);
    char A[40], B[40], body[1024];
    snprintf(A, sizeof A, "%s", a[0].customer_id);
    snprintf(B, sizeof B, "%s", b[0].customer_id);
    RP_ASSERT(strcmp(A, B) != 0, "two visitors, one customer");
    rp_field(B, "f-b", "email", "b@example.com", &b[2]);
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"" RP_TENANT "\",\"platform\":\"web\",\"platform_user_id\":\"v-a\","
             "\"message_id\":\"link-1\",\"occurred_at\":%" PRId64 ",\"customer_id\":\"%s\","
             "\"payload\":{\"type\":\"IdentityLinked\",\"linked_customer_id\":\"%s\",\"platform\":\"web\","
             "\"platform_user_id\":\"v-b\",\"evidence\":\"LOGIN\"}}", tl_test_now_ms(), A, B);
    rp_post("/v1/ingest/api", body, &link);

    /* The fold hands B's email to A with events on A's key: wait for them. */
    const char *const st_args[] = {"--customer", A, "--json", NULL};
    int64_t deadline = tl_test_mono_ms() + 90000;
    int handed = 0;
    while (!handed && tl_test_mono_ms() < deadline) {
        RP_ASSERT(rp_cmd("state", st_args) == 0, "state of A");
        json_t *j = rp_json(), *f;
        size_t i;
        json_array_foreach(json_object_get(j, "fields"), i, f)
            handed |= strcmp(json_string_value(json_object_get(f, "name")), "email") == 0 &&
                      json_is_string(json_object_get(json_object_get(f, "provenance"), "via"));
        json_decref(j);
        if (!handed) tl_test_sleep_ms(500);
    }
    RP_ASSERT(handed, "B's email never reached A through the link");

    const char *const ex_args[] = {"--customer", A, NULL};
    RP_ASSERT(rp_cmd("export", ex_args) == 0, "export exited non-zero");
    json_t *j = rp_json();
    tl_test_report_t rep = {.text = ""};
    json_t *linked = json_object_get(j, "linked_customers");
    if (json_array_size(linked) != 1 || strcmp(json_string_value(json_array_get(linked, 0)), B) != 0)
        tl_test_report(&rep, "linked_customers is not [B]");
    const rp_ack_t *want[] = {&a[0], &a[1], &link, &b[0], &b[1], &b[2]};
    for (size_t w = 0; w < sizeof want / sizeof *want; w++) {
        int seen = 0;
        size_t i, k;
        json_t *c, *e;
        json_array_foreach(json_object_get(j, "customers"), i, c)
            json_array_foreach(json_object_get(c, "events"), k, e)
                seen |= strcmp(json_string_value(json_object_get(e, "event_id")), want[w]->event_id) == 0 &&
                        strcmp(json_string_value(json_object_get(c, "customer_id")), want[w]->customer_id) == 0;
        if (!seen) tl_test_report(&rep, "event %s of customer %s missing from the export", want[w]->event_id,
                                  want[w]->customer_id);
    }
    int idents = 0;
    size_t i, k;
    json_t *c, *id;
    json_array_foreach(json_object_get(j, "customers"), i, c)
        json_array_foreach(json_object_get(c, "identities"), k, id)
            idents += strcmp(json_string_value(json_object_get(id, "platform_user_id")), "v-b") == 0;
    if (!idents) tl_test_report(&rep, "identity web v-b missing");
    json_decref(j);
    RP_ASSERT(rep.count == 0, "%d export problems:%s", rep.count, rep.text);

    /* The account follows the link as well. */
    const char *const au_args[] = {"--customer", A, "--json", NULL};
    RP_ASSERT(rp_cmd("audit", au_args) == 0, "audit exited non-zero");
    j = rp_json();
    int has_b = 0;
    json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
        has_b |= strcmp(json_string_value(json_object_get(e, "event_id")), b[0].event_id) == 0;
    json_decref(j);
    RP_ASSERT(has_b, "audit of A lacks B's events");

    const char *const unknown[] = {"--customer", "00000000-0000-5000-8000-000000000000", NULL};
    RP_ASSERT(rp_cmd("export", unknown) == 1 && strstr(rp.out, "no events of customer"), "unknown customer");
}
END_TEST

/* With the broker unreachable, commands say so and exit 2. */
START_TEST(replay_unreachable_broker_exits_2) {
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", tl_test_free_port());
    snprintf(rp.cmd_log, sizeof rp.cmd_log, "/tmp/tl-it-rp-%d-dead.log", (int)getpid());
    char *argv[] = {(char *)rp_exe, "replay", "--kafka-brokers", dead, "--prefix", "nothing", NULL};
    char err[256];
    unlink(rp.cmd_log);
    int st = tl_test_run(argv, rp.cmd_log, 120000, err, sizeof err);
    FILE *f = fopen(rp.cmd_log, "r");
    char out[4096] = "";
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        fclose(f);
    }
    ck_assert_msg(st == 2 && strstr(out, "replay of nothing.events failed"), "exit %d: %s", st, out);
    unlink(rp.cmd_log);
    rp.cmd_log[0] = 0;
}
END_TEST

Suite *tl_replay_suite(void) {
    Suite *s = suite_create("replay");
    TCase *tc = tcase_create("services");
    tcase_set_timeout(tc, 900);
    tcase_add_unchecked_fixture(tc, rp_services_check, rp_services_sweep);
    tcase_add_checked_fixture(tc, rp_setup, rp_teardown);
    tcase_add_test(tc, replay_verify_names_tampered_conversation_and_field);
    tcase_add_test(tc, replay_verify_checks_every_view_and_the_fold_tables);
    tcase_add_test(tc, replay_state_as_of_equals_folding_the_log_prefix);
    tcase_add_test(tc, replay_export_of_linked_customer_has_every_identity);
    tcase_add_test(tc, replay_unreachable_broker_exits_2);
    tcase_add_test(tc, replay_verify_passes_after_random_sigkills);
    suite_add_tcase(s, tc);
    return s;
}
