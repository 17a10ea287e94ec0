/*
 * test_ingest.c -- every ingest adapter on the real broker: a connector
 * posts one platform's request to `threadline serve` over HTTP, and the
 * event the answer promises is read back from <prefix>.events with a plain
 * librdkafka consumer and decoded with the event codec.
 *
 * serve runs ingest only (--fold 0 --project 0), with WeChat (plain mode,
 * token "tok") and Douyin (secret "sec") both configured for tenant acme.
 * With --project 0 serve uses PostgreSQL only for /readyz, so the tests
 * give it the base DSN and create no database.
 *
 * For web, api and phone the 202 answer names the record (event_id,
 * customer_id, position "partition:offset") and the test reads exactly that
 * offset; Douyin answers the same body with 200; WeChat answers only
 * "success", so its tests read the whole topic.  Each event is checked
 * field by field against what was sent and what the adapter documentation
 * (docs/adapters.md) says it becomes.  Two more tests: a resend with the
 * same message id is answered "duplicate":true and writes nothing more, and
 * refused requests (bad signatures, a verify_webhook) write nothing.  Each
 * test prints one summary line.
 *
 * Isolation and cleanup as in test_pipeline.c: each test has its own topic
 * prefix in<runner pid>t<epoch s>x<test pid>x<n>; every assertion goes
 * through IN_ASSERT, which prints the serve log, stops the server and
 * deletes the topics before it fails; the runner's unchecked teardown
 * sweeps whatever a test killed on timeout left behind.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <openssl/sha.h>

#include "adapter.h"
#include "codec.h"
#include "error.h"
#include "event.h"
#include "identity.h"
#include "suites.h"
#include "support.h"
#include "uuid.h"

#define IN_TENANT "acme"
#define IN_PARTITIONS 4
#define IN_READY_MS 60000
#define IN_POST_TIMEOUT_MS 20000
#define IN_READ_MS 20000
#define IN_LOG_TAIL 40
#define IN_WECHAT_TOKEN "tok"
#define IN_DOUYIN_SECRET "sec"
#define IN_MAX_RECORDS 64
#define IN_IDENTITY_TTL_MS "300"
#define IN_INDEX_MS 90000       /* fold + identity writer, on a busy machine */

/* ------------------------------------------------------------ suite state */

/* Set by the unchecked setup in the runner process; inherited by each
 * forked test. */
static const char *in_brokers, *in_pg_dsn, *in_exe;
static char in_run_tag[64]; /* in<runner pid>t<epoch s> */
static char in_db_tag[64];  /* tl_in_<runner pid>_ */

/* One record read back from the events topic, copied out of librdkafka. */
typedef struct in_rec {
    int partition;
    int64_t offset;
    char key[64];
    void *data;
    size_t len;
} in_rec_t;

/* One test's resources, so a failure anywhere can release them. */
typedef struct in_test {
    char prefix[128];
    char topic[160];
    int have_serve;
    tl_test_serve_t serve;
    CURL *curl;
    rd_kafka_t *rk;
    tl_codec_t *codec;
    in_rec_t recs[IN_MAX_RECORDS];
    int nrecs;
    char db[128];               /* the identity tests' own database */
    char dsn[512];
    int have_db;
    PGconn *pg;
} in_test_t;

static in_test_t in;
/* Outside `in`: with CK_FORK=no all tests share one process and pid. */
static int in_seq;

static void in_recs_clear(void) {
    for (int i = 0; i < in.nrecs; i++)
        free(in.recs[i].data);
    in.nrecs = 0;
}

static void in_cleanup(int ok) {
    char err[512];
    in_recs_clear();
    if (in.rk != NULL) {
        rd_kafka_consumer_close(in.rk);
        rd_kafka_destroy(in.rk);
        in.rk = NULL;
    }
    if (in.codec != NULL) {
        tl_codec_free(in.codec);
        in.codec = NULL;
    }
    if (in.curl != NULL) {
        curl_easy_cleanup(in.curl);
        in.curl = NULL;
    }
    if (in.pg != NULL) {
        PQfinish(in.pg);
        in.pg = NULL;
    }
    if (in.have_serve) {
        tl_test_serve_close(&in.serve, ok);
        in.have_serve = 0;
    }
    if (in.have_db) {
        if (tl_test_pg_drop_db(in_pg_dsn, in.db, err, sizeof err) != 0)
            fprintf(stderr, "cleanup: %s\n", err);
        in.have_db = 0;
    }
    if (in.prefix[0] != '\0') {
        char topics[160];
        snprintf(topics, sizeof topics, "%s.", in.prefix);
        if (tl_test_kafka_delete_topics(in_brokers, topics, 10000, err, sizeof err) < 0)
            fprintf(stderr, "cleanup: %s\n", err);
        in.prefix[0] = '\0';
    }
}

static void in_on_failure(const char *file, int line, const char *msg) {
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    if (in.have_serve) {
        tl_test_serve_log_tail(&in.serve, IN_LOG_TAIL);
        fprintf(stderr, "(full serve log kept: %s)\n", in.serve.log_path);
    }
    in_cleanup(0);
}

#define IN_FAIL(...)                                                                         \
    do {                                                                                     \
        char in_msg_[8192];                                                                  \
        snprintf(in_msg_, sizeof in_msg_, __VA_ARGS__);                                      \
        in_on_failure(__FILE__, __LINE__, in_msg_);                                          \
        ck_abort_msg("%s", in_msg_);                                                         \
    } while (0)

#define IN_ASSERT(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond))                                                                         \
            IN_FAIL(__VA_ARGS__);                                                            \
    } while (0)

/* s (a tl_str_t) equals the NUL-terminated want. */
static int in_str_is(tl_str_t s, const char *want) {
    return s.ptr != NULL && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* Asserts that tl_str_t `s` equals want, naming `what`. */
#define IN_STR_EQ(s, want, what)                                                             \
    do {                                                                                     \
        tl_str_t in_s_ = (s);                                                                \
        const char *in_w_ = (want);                                                          \
        IN_ASSERT(in_str_is(in_s_, in_w_), "%s: got %s%.*s%s, want \"%s\"", (what),          \
                  in_s_.ptr ? "\"" : "", in_s_.ptr ? (int)in_s_.len : 4,                     \
                  in_s_.ptr ? in_s_.ptr : "null", in_s_.ptr ? "\"" : "", in_w_);             \
    } while (0)

/* ------------------------------------------------------------ fixtures */

/* Runner process, once: the services must be the real ones and answer. */
static void in_services_check(void) {
    tl_test_services_t sv;
    tl_test_services_require("ingest", &sv);
    in_brokers = sv.brokers;
    in_pg_dsn = sv.pg_dsn;
    in_exe = sv.exe;
    snprintf(in_run_tag, sizeof in_run_tag, "in%dt%lld", (int)getpid(), (long long)time(NULL));
    snprintf(in_db_tag, sizeof in_db_tag, "tl_in_%d_", (int)getpid());
}

/* Runner process, once: what a test killed on timeout could not release. */
static void in_services_sweep(void) {
    char err[512];
    if (in_pg_dsn != NULL && in_db_tag[0] != '\0' &&
        tl_test_pg_drop_dbs_like(in_pg_dsn, in_db_tag, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
    if (in_brokers != NULL && in_run_tag[0] != '\0' &&
        tl_test_kafka_delete_topics(in_brokers, in_run_tag, 10000, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
}

static void in_setup(void) { memset(&in, 0, sizeof in); }

static void in_teardown(void) { in_cleanup(1); }

/* A fresh prefix and a server with WeChat and Douyin set up, ready; an
 * HTTP handle and an event codec.  Ingest only (identity resolution falls
 * back to the deterministic ids on the base database), or, with_index, the
 * whole pipeline -- fold, agent projection and identity writer -- on a
 * fresh migrated database, with a short identity cache TTL so that a link
 * is followed soon after the writer indexed it. */
static void in_begin_with(int with_index) {
    char err[1024];
    int n = ++in_seq;
    snprintf(in.prefix, sizeof in.prefix, "%sx%dx%d", in_run_tag, (int)getpid(), n);
    snprintf(in.topic, sizeof in.topic, "%s.events", in.prefix);
    /* Connector keys are the rest suite's subject; these post without. */
    static const char *const ingest_only[] = {
        "--auth", "off", "--fold", "0", "--project", "0", "--identity", "0",
        "--wechat-token", IN_WECHAT_TOKEN, "--wechat-tenant", IN_TENANT,
        "--douyin-secret", IN_DOUYIN_SECRET, "--douyin-tenant", IN_TENANT,
        NULL,
    };
    static const char *const pipeline[] = {
        "--auth", "off", "--fold", "1", "--project", "1", "--identity", "1",
        "--identity-ttl-ms", IN_IDENTITY_TTL_MS, "--batch-ms", "5",
        "--wechat-token", IN_WECHAT_TOKEN, "--wechat-tenant", IN_TENANT,
        "--douyin-secret", IN_DOUYIN_SECRET, "--douyin-tenant", IN_TENANT,
        NULL,
    };
    const char *dsn = in_pg_dsn;
    if (with_index) {
        snprintf(in.db, sizeof in.db, "%s%d_%d", in_db_tag, (int)getpid(), n);
        IN_ASSERT(tl_test_pg_dsn_for(in_pg_dsn, in.db, in.dsn, sizeof in.dsn) == 0, "DSN too long");
        IN_ASSERT(tl_test_pg_create_db(in_pg_dsn, in.db, err, sizeof err) == 0, "%s", err);
        in.have_db = 1;
        dsn = in.dsn;
    }
    IN_ASSERT(tl_test_serve_init(&in.serve, in_exe, in_brokers, dsn, in.prefix, IN_PARTITIONS,
                                 with_index ? pipeline : ingest_only, err, sizeof err) == 0,
              "%s", err);
    in.have_serve = 1;
    if (with_index) {
        char *migrate[] = {(char *)in_exe, "migrate", "--pg-dsn", in.dsn, NULL};
        int rc = tl_test_run(migrate, in.serve.log_path, 60000, err, sizeof err);
        IN_ASSERT(rc == 0, "threadline migrate --pg-dsn \"%s\": %s", in.dsn,
                  rc < 0 ? err : "non-zero exit (see the log)");
        in.pg = tl_test_pg_connect(in.dsn, err, sizeof err);
        IN_ASSERT(in.pg != NULL, "%s", err);
    }
    IN_ASSERT(tl_test_serve_start(&in.serve, err, sizeof err) == 0, "%s", err);
    IN_ASSERT(tl_test_serve_wait_ready(&in.serve, IN_READY_MS, err, sizeof err) == 0,
              "serve not ready: %s", err);
    in.curl = curl_easy_init();
    IN_ASSERT(in.curl != NULL, "curl_easy_init failed");
    int cerr = 0;
    in.codec = tl_codec_new_event(&cerr);
    IN_ASSERT(in.codec != NULL, "tl_codec_new_event: %s", tl_strerror(cerr));
}

static void in_begin(void) { in_begin_with(0); }

/* ------------------------------------------------------------------- HTTP */

static size_t in_on_body(char *data, size_t size, size_t nmemb, void *opaque) {
    tl_test_resp_t *resp = opaque;
    size_t n = size * nmemb;
    char *b = realloc(resp->body, resp->len + n + 1);
    if (b == NULL)
        return 0;
    memcpy(b + resp->len, data, n);
    resp->len += n;
    b[resp->len] = '\0';
    resp->body = b;
    return n;
}

static size_t in_on_header(char *data, size_t size, size_t nmemb, void *opaque) {
    tl_test_resp_t *resp = opaque;
    size_t n = size * nmemb;
    static const char name[] = "Content-Type:";
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        resp->content_type[0] = '\0';
    if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1, *end = data + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        snprintf(resp->content_type, sizeof resp->content_type, "%.*s", (int)(end - v), v);
    }
    return n;
}

/* POSTs body to base_url + path_query with the given Content-Type and, if
 * not NULL, one more header line ("Name: value").  Fails the test on a
 * transport error; resp must be released with tl_test_resp_close. */
static void in_post(const char *path_query, const char *content_type, const char *header,
                    const char *body, tl_test_resp_t *resp) {
    char url[2048], ct[160];
    snprintf(url, sizeof url, "%s%s", in.serve.base_url, path_query);
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    memset(resp, 0, sizeof *resp);
    CURL *c = in.curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)IN_POST_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, in_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, in_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->error);
    struct curl_slist *hdrs = curl_slist_append(NULL, ct);
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (header != NULL)
        hdrs = curl_slist_append(hdrs, header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    CURLcode rc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(hdrs);
    if (resp->body == NULL)
        resp->body = calloc(1, 1);
    IN_ASSERT(resp->body != NULL, "out of memory");
    if (rc != CURLE_OK) {
        char msg[CURL_ERROR_SIZE + 64];
        snprintf(msg, sizeof msg, "%s", resp->error[0] ? resp->error : curl_easy_strerror(rc));
        tl_test_resp_close(resp);
        IN_FAIL("POST %s: %s", path_query, msg);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
}

/* What a 202 (or Douyin's 200) says. */
typedef struct in_ack {
    char event_id[40];
    char customer_id[40];
    int duplicate;
    int partition;
    int64_t offset;
    char position[32];
} in_ack_t;

/* Asserts resp is `status` with the ack JSON body and reads it into ack. */
static void in_parse_ack(tl_test_resp_t *resp, long status, const char *what, in_ack_t *ack) {
    char got[1024];
    snprintf(got, sizeof got, "%s", resp->body);
    long st = resp->status;
    int is_json = tl_test_resp_is(resp, "application/json");
    tl_test_resp_close(resp);
    IN_ASSERT(st == status, "%s: HTTP %ld, want %ld: %s", what, st, status, got);
    IN_ASSERT(is_json, "%s: answer is not application/json: %s", what, got);
    json_error_t je;
    json_t *j = json_loads(got, 0, &je);
    const char *event_id = NULL, *customer_id = NULL, *position = NULL;
    int duplicate = 0;
    /* position is null when the broker acknowledged without an offset (an
     * idempotent retry of a record it already held). */
    json_t *pos = NULL;
    int bad = j == NULL || json_unpack_ex(j, &je, JSON_STRICT, "{s:s, s:s, s:b, s:o}",
                                          "event_id", &event_id, "customer_id", &customer_id,
                                          "duplicate", &duplicate, "position", &pos) != 0 ||
              !(json_is_string(pos) || json_is_null(pos));
    if (!bad) position = json_is_string(pos) ? json_string_value(pos) : NULL;
    if (!bad) {
        snprintf(ack->event_id, sizeof ack->event_id, "%s", event_id);
        snprintf(ack->customer_id, sizeof ack->customer_id, "%s", customer_id);
        snprintf(ack->position, sizeof ack->position, "%s", position ? position : "null");
        ack->duplicate = duplicate;
    }
    json_decref(j);
    IN_ASSERT(!bad, "%s: body is not {event_id, customer_id, duplicate, position}: %s (%s)",
              what, got, je.text);
    int partition = -1;
    long long offset = -1;
    char tail;
    IN_ASSERT(strcmp(ack->position, "null") == 0 ||
                  (sscanf(ack->position, "%d:%lld%c", &partition, &offset, &tail) == 2 &&
                   partition >= 0 && partition < IN_PARTITIONS && offset >= 0),
              "%s: position \"%s\" is not <partition>:<offset> with partition < %d", what,
              ack->position, IN_PARTITIONS);
    ack->partition = partition;
    ack->offset = offset;
    IN_ASSERT(tl_uuid_valid(ack->event_id, strlen(ack->event_id)) &&
                  tl_uuid_valid(ack->customer_id, strlen(ack->customer_id)),
              "%s: event_id or customer_id is not a UUID: %s", what, got);
}

/* -------------------------------------------------------------- signing */

static void in_hex(const unsigned char *md, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * n] = '\0';
}

static int in_strcmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* WeChat: hex SHA-1 of token, timestamp and nonce sorted byte-wise and
 * concatenated. */
static void in_wechat_sign(const char *token, const char *ts, const char *nonce, char out[41]) {
    const char *parts[3] = {token, ts, nonce};
    qsort(parts, 3, sizeof parts[0], in_strcmp);
    char joined[512];
    snprintf(joined, sizeof joined, "%s%s%s", parts[0], parts[1], parts[2]);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)joined, strlen(joined), md);
    in_hex(md, sizeof md, out);
}

/* Douyin: hex SHA-1 of the secret immediately followed by the body. */
static void in_douyin_sign(const char *secret, const char *body, char out[41]) {
    size_t sl = strlen(secret), bl = strlen(body);
    unsigned char *buf = malloc(sl + bl + 1);
    IN_ASSERT(buf != NULL, "out of memory");
    memcpy(buf, secret, sl);
    memcpy(buf + sl, body, bl);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(buf, sl + bl, md);
    free(buf);
    in_hex(md, sizeof md, out);
}

/* Posts a plain-mode WeChat message, signed with `token`, timestamp ts. */
static void in_wechat_post(const char *token, int64_t ts, const char *xml, tl_test_resp_t *resp) {
    char tss[32], nonce[32], sig[41], path[512];
    snprintf(tss, sizeof tss, "%" PRId64, ts);
    snprintf(nonce, sizeof nonce, "%d", 100000000 + (int)(tl_test_mono_ms() % 899999999));
    in_wechat_sign(token, tss, nonce, sig);
    snprintf(path, sizeof path,
             "/v1/ingest/wechat?signature=%s&timestamp=%s&nonce=%s&openid=oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
             sig, tss, nonce);
    in_post(path, "text/xml", NULL, xml, resp);
}

/* Posts a Douyin webhook body signed with `secret` (NULL: no signature). */
static void in_douyin_post(const char *secret, const char *body, tl_test_resp_t *resp) {
    char sig[41], header[96];
    if (secret != NULL) {
        in_douyin_sign(secret, body, sig);
        snprintf(header, sizeof header, "X-Douyin-Signature: %s", sig);
    }
    in_post("/v1/ingest/douyin", "application/json", secret != NULL ? header : NULL, body, resp);
}

/* ---------------------------------------------------------------- reading */

static void in_consumer_open(void) {
    if (in.rk != NULL)
        return;
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const settings[][2] = {
        {"bootstrap.servers", in_brokers},        {"log_level", "3"},
        {"group.id", "threadline-test-ingest"},   {"isolation.level", "read_committed"},
        {"enable.partition.eof", "true"},         {"enable.auto.commit", "false"},
        {"fetch.wait.max.ms", "50"},
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        IN_ASSERT(rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof errstr) ==
                      RD_KAFKA_CONF_OK,
                  "reader config: %s", errstr);
    in.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (in.rk == NULL)
        rd_kafka_conf_destroy(conf);
    IN_ASSERT(in.rk != NULL, "reader: %s", errstr);
}

static void in_rec_add(const rd_kafka_message_t *m) {
    IN_ASSERT(in.nrecs < IN_MAX_RECORDS, "%s holds more than %d records", in.topic,
              IN_MAX_RECORDS);
    in_rec_t *r = &in.recs[in.nrecs];
    r->partition = m->partition;
    r->offset = m->offset;
    snprintf(r->key, sizeof r->key, "%.*s", m->key ? (int)m->key_len : 0,
             m->key ? (const char *)m->key : "");
    r->data = malloc(m->len ? m->len : 1);
    IN_ASSERT(r->data != NULL, "out of memory");
    memcpy(r->data, m->payload, m->len);
    r->len = m->len;
    in.nrecs++;
}

/* Reads the record at partition:offset into in.recs[0] (replacing what was
 * read before). */
static const in_rec_t *in_read_at(int partition, int64_t offset) {
    in_recs_clear();
    in_consumer_open();
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, in.topic, partition)->offset = offset;
    rd_kafka_resp_err_t e = rd_kafka_assign(in.rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    IN_ASSERT(e == RD_KAFKA_RESP_ERR_NO_ERROR, "assign %s: %s", in.topic, rd_kafka_err2str(e));
    int64_t deadline = tl_test_mono_ms() + IN_READ_MS;
    while (in.nrecs == 0 && tl_test_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(in.rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            in_rec_add(m);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                 m->err != RD_KAFKA_RESP_ERR__TRANSPORT)
            fprintf(stderr, "ingest: reading %s: %s\n", in.topic, rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(in.rk, NULL);
    IN_ASSERT(in.nrecs == 1, "no record at %s %d:%" PRId64 " within %d ms", in.topic, partition,
              offset, IN_READ_MS);
    IN_ASSERT(in.recs[0].partition == partition && in.recs[0].offset == offset,
              "asked for %d:%" PRId64 ", the first record there is %d:%" PRId64, partition,
              offset, in.recs[0].partition, in.recs[0].offset);
    return &in.recs[0];
}

/* Reads every partition of the topic from the beginning to its end into
 * in.recs; returns how many records there are. */
static int in_read_all(void) {
    in_recs_clear();
    in_consumer_open();
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(IN_PARTITIONS);
    for (int p = 0; p < IN_PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, in.topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(in.rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    IN_ASSERT(e == RD_KAFKA_RESP_ERR_NO_ERROR, "assign %s: %s", in.topic, rd_kafka_err2str(e));
    int at_eof[IN_PARTITIONS] = {0}, ends = 0;
    int64_t deadline = tl_test_mono_ms() + IN_READ_MS;
    while (ends < IN_PARTITIONS && tl_test_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(in.rk, 100);
        if (m == NULL)
            continue;
        int p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p >= 0 && p < IN_PARTITIONS && !at_eof[p]) {
                at_eof[p] = 1;
                ends++;
            }
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (p >= 0 && p < IN_PARTITIONS && at_eof[p]) {
                at_eof[p] = 0;
                ends--;
            }
            in_rec_add(m);
        } else if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT) {
            fprintf(stderr, "ingest: reading %s: %s\n", in.topic, rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(in.rk, NULL);
    IN_ASSERT(ends == IN_PARTITIONS, "%s not read to its end within %d ms", in.topic, IN_READ_MS);
    return in.nrecs;
}

/* Decodes r into ev (valid until the next decode). */
static void in_decode(const in_rec_t *r, tl_event_t *ev) {
    int rc = tl_codec_decode_event(in.codec, r->data, r->len, ev);
    IN_ASSERT(rc == TL_OK, "%s %d:%" PRId64 " does not decode: %s: %s", in.topic, r->partition,
              r->offset, tl_err_name(rc), tl_codec_errmsg(in.codec));
}

/* The record an acknowledgement names: at its position, or, when the
 * broker gave none, found by event id in the whole topic. */
static const in_rec_t *in_read_ack(const in_ack_t *ack) {
    if (ack->offset >= 0) return in_read_at(ack->partition, ack->offset);
    int n = in_read_all();
    for (int i = 0; i < n; i++) {
        tl_event_t ev;
        in_decode(&in.recs[i], &ev);
        if (ev.event_id.len == strlen(ack->event_id) &&
            memcmp(ev.event_id.ptr, ack->event_id, ev.event_id.len) == 0)
            return &in.recs[i];
    }
    IN_FAIL("event %s (acknowledged without a position) is not in %s", ack->event_id, in.topic);
    return NULL;
}

/* The envelope every ingested event carries. */
static void in_check_envelope(const in_rec_t *r, const tl_event_t *ev, tl_event_kind_t kind,
                              tl_platform_t platform, const char *user, const char *key,
                              const char *customer_id, const char *event_id,
                              int64_t occurred_at) {
    IN_ASSERT(ev->kind == kind, "kind %s, want %s", tl_event_kind_name(ev->kind),
              tl_event_kind_name(kind));
    IN_ASSERT(ev->platform == platform, "platform %s, want %s", tl_platform_slug(ev->platform),
              tl_platform_slug(platform));
    IN_STR_EQ(ev->tenant_id, IN_TENANT, "tenant_id");
    IN_STR_EQ(ev->platform_user_id, user, "platform_user_id");
    IN_STR_EQ(ev->idempotency_key, key, "idempotency_key");
    IN_STR_EQ(ev->customer_id, customer_id, "customer_id");
    if (event_id != NULL)
        IN_STR_EQ(ev->event_id, event_id, "event_id");
    else
        IN_ASSERT(ev->event_id.ptr != NULL && tl_uuid_valid(ev->event_id.ptr, ev->event_id.len),
                  "event_id is not a UUID");
    IN_ASSERT(ev->occurred_at == occurred_at, "occurred_at %" PRId64 ", want %" PRId64,
              ev->occurred_at, occurred_at);
    int64_t now = tl_test_now_ms();
    IN_ASSERT(ev->received_at > now - 120000 && ev->received_at <= now + 5000,
              "received_at %" PRId64 " is not the gateway's recent clock (now %" PRId64 ")",
              ev->received_at, now);
    IN_ASSERT(strcmp(r->key, customer_id) == 0, "record key \"%s\", want the customer id %s",
              r->key, customer_id);
}

/* ------------------------------------------------------------------ tests */

START_TEST(ingest_web_message_reaches_the_log) {
    in_begin();
    int64_t sent_at = tl_test_now_ms() - 1500;
    char body[2048];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-7f3a\",\"message_id\":\"m-9\","
             "\"sent_at\":%" PRId64 ",\"text\":\"请问这件衬衫有L码吗？\","
             "\"entry_point\":\"product-detail:SKU-1\",\"device_id\":\"d-7\","
             "\"attachments\":[{\"url\":\"https://cdn.example/a.png\",\"mime\":\"image/png\","
             "\"bytes\":2048,\"width\":640,\"height\":480}]}",
             sent_at);
    tl_test_resp_t resp;
    in_ack_t ack;
    in_post("/v1/ingest/web", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "web", &ack);
    IN_ASSERT(!ack.duplicate, "first post answered as a duplicate");

    char want_cid[40];
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_WEB, TL_STR("v-7f3a"), want_cid);
    IN_ASSERT(strcmp(ack.customer_id, want_cid) == 0,
              "customer_id %s, want UUIDv5(acme, web, v-7f3a) = %s", ack.customer_id, want_cid);

    const in_rec_t *r = in_read_ack(&ack);
    tl_event_t ev;
    in_decode(r, &ev);
    in_check_envelope(r, &ev, TL_EV_MESSAGE_RECEIVED, TL_PLATFORM_WEB, "v-7f3a", "web:m-9",
                      ack.customer_id, ack.event_id, sent_at);
    const tl_message_received_t *mr = &ev.u.message;
    IN_STR_EQ(mr->text, "请问这件衬衫有L码吗？", "text");
    IN_STR_EQ(mr->entry_point, "product-detail:SKU-1", "entry_point");
    IN_STR_EQ(mr->device_id, "d-7", "device_id");
    IN_ASSERT(mr->attachments.n == 1, "%zu attachments, want 1", mr->attachments.n);
    const tl_attachment_t *a = &mr->attachments.v[0];
    IN_STR_EQ(a->url, "https://cdn.example/a.png", "attachments[0].url");
    IN_STR_EQ(a->mime, "image/png", "attachments[0].mime");
    IN_ASSERT(a->bytes == 2048, "attachments[0].bytes %" PRId64, a->bytes);
    IN_ASSERT(a->has_width && a->width == 640 && a->has_height && a->height == 480,
              "attachments[0] size %s%d x %s%d, want 640 x 480", a->has_width ? "" : "(none)",
              (int)a->width, a->has_height ? "" : "(none)", (int)a->height);
    printf("ingest: web: 202 at %s, MessageReceived web:m-9 read back with text, "
           "1 attachment, entry_point and device_id\n", ack.position);
    fflush(stdout);
}
END_TEST

START_TEST(ingest_api_events_reach_the_log) {
    in_begin();
    int64_t t = tl_test_now_ms() - 2000;
    char body[2048];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"platform\":\"app\",\"platform_user_id\":\"app-u-42\","
             "\"message_id\":\"am-77\",\"occurred_at\":%" PRId64 ","
             "\"payload\":{\"type\":\"MessageReceived\",\"text\":\"在吗？订单还没到\","
             "\"device_id\":\"ios-1\"}}",
             t);
    tl_test_resp_t resp;
    in_ack_t msg, beh;
    in_post("/v1/ingest/api", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "api MessageReceived", &msg);
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"platform\":\"app\",\"platform_user_id\":\"app-u-42\","
             "\"message_id\":\"ab-78\",\"occurred_at\":%" PRId64 ","
             "\"payload\":{\"type\":\"BehaviorTracked\",\"page\":\"order-detail\","
             "\"action\":\"view\"}}",
             t + 500);
    in_post("/v1/ingest/api", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "api BehaviorTracked", &beh);
    IN_ASSERT(!msg.duplicate && !beh.duplicate, "a first post answered as a duplicate");
    IN_ASSERT(strcmp(msg.customer_id, beh.customer_id) == 0,
              "one user, two customers: %s and %s", msg.customer_id, beh.customer_id);
    IN_ASSERT(msg.offset < 0 || beh.offset < 0 ||
                  (msg.partition == beh.partition && beh.offset > msg.offset),
              "one customer's events out of order: %s then %s", msg.position, beh.position);

    tl_event_t ev;
    const in_rec_t *r = in_read_ack(&msg);
    in_decode(r, &ev);
    in_check_envelope(r, &ev, TL_EV_MESSAGE_RECEIVED, TL_PLATFORM_APP, "app-u-42", "app:am-77",
                      msg.customer_id, msg.event_id, t);
    IN_STR_EQ(ev.u.message.text, "在吗？订单还没到", "text");
    IN_STR_EQ(ev.u.message.device_id, "ios-1", "device_id");
    IN_ASSERT(ev.u.message.attachments.n == 0, "%zu attachments, want 0",
              ev.u.message.attachments.n);

    r = in_read_ack(&beh);
    in_decode(r, &ev);
    in_check_envelope(r, &ev, TL_EV_BEHAVIOR_TRACKED, TL_PLATFORM_APP, "app-u-42", "app:ab-78",
                      beh.customer_id, beh.event_id, t + 500);
    IN_STR_EQ(ev.u.behavior.page, "order-detail", "page");
    IN_STR_EQ(ev.u.behavior.action, "view", "action");
    printf("ingest: api: 202 at %s and %s, MessageReceived app:am-77 and BehaviorTracked "
           "app:ab-78 read back on one customer\n", msg.position, beh.position);
    fflush(stdout);
}
END_TEST

START_TEST(ingest_wechat_plain_messages_reach_the_log) {
    in_begin();
    const char *openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
    int64_t now_s = tl_test_now_ms() / 1000;
    int64_t create = now_s - 2;
    char xml[2048];
    snprintf(xml, sizeof xml,
             "<xml>\n"
             "  <ToUserName><![CDATA[gh_3f1e2d4c5b6a]]></ToUserName>\n"
             "  <FromUserName><![CDATA[%s]]></FromUserName>\n"
             "  <CreateTime>%" PRId64 "</CreateTime>\n"
             "  <MsgType><![CDATA[text]]></MsgType>\n"
             "  <Content><![CDATA[我的订单 TL-20231114-001 什么时候发货？]]></Content>\n"
             "  <MsgId>24329877421234567</MsgId>\n"
             "</xml>\n",
             openid, create);
    tl_test_resp_t resp;
    in_wechat_post(IN_WECHAT_TOKEN, now_s, xml, &resp);
    char got[512];
    snprintf(got, sizeof got, "%s", resp.body);
    long st = resp.status;
    int text = tl_test_resp_is(&resp, "text/plain");
    tl_test_resp_close(&resp);
    IN_ASSERT(st == 200 && text && strcmp(got, "success") == 0,
              "wechat text: HTTP %ld, want 200 text/plain \"success\": %s", st, got);

    snprintf(xml, sizeof xml,
             "<xml><ToUserName><![CDATA[gh_3f1e2d4c5b6a]]></ToUserName>"
             "<FromUserName><![CDATA[%s]]></FromUserName>"
             "<CreateTime>%" PRId64 "</CreateTime>"
             "<MsgType><![CDATA[event]]></MsgType>"
             "<Event><![CDATA[subscribe]]></Event></xml>",
             openid, create + 1);
    in_wechat_post(IN_WECHAT_TOKEN, now_s, xml, &resp);
    snprintf(got, sizeof got, "%s", resp.body);
    st = resp.status;
    tl_test_resp_close(&resp);
    IN_ASSERT(st == 200 && strcmp(got, "success") == 0,
              "wechat subscribe: HTTP %ld, want 200 \"success\": %s", st, got);

    char cid[40], sub_key[160];
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_WECHAT,
                           (tl_str_t){openid, strlen(openid)}, cid);
    snprintf(sub_key, sizeof sub_key, "wechat:%s:%" PRId64 ":subscribe", openid, create + 1);
    int n = in_read_all();
    IN_ASSERT(n == 2, "%s holds %d records, want 2", in.topic, n);
    IN_ASSERT(in.recs[0].partition == in.recs[1].partition,
              "one openid's events in partitions %d and %d", in.recs[0].partition,
              in.recs[1].partition);
    /* Same partition: read in log order, the message first. */
    const in_rec_t *m = in.recs[0].offset < in.recs[1].offset ? &in.recs[0] : &in.recs[1];
    const in_rec_t *s = m == &in.recs[0] ? &in.recs[1] : &in.recs[0];
    tl_event_t ev;
    in_decode(m, &ev);
    in_check_envelope(m, &ev, TL_EV_MESSAGE_RECEIVED, TL_PLATFORM_WECHAT, openid,
                      "wechat:24329877421234567", cid, NULL, create * 1000);
    IN_STR_EQ(ev.u.message.text, "我的订单 TL-20231114-001 什么时候发货？", "text");
    IN_ASSERT(ev.u.message.attachments.n == 0, "%zu attachments, want 0",
              ev.u.message.attachments.n);
    in_decode(s, &ev);
    in_check_envelope(s, &ev, TL_EV_BEHAVIOR_TRACKED, TL_PLATFORM_WECHAT, openid, sub_key, cid,
                      NULL, (create + 1) * 1000);
    IN_STR_EQ(ev.u.behavior.page, "wechat-oa", "page");
    IN_STR_EQ(ev.u.behavior.action, "subscribe", "action");
    printf("ingest: wechat: 2 x 200 \"success\"; MessageReceived wechat:24329877421234567 at "
           "%d:%" PRId64 " and BehaviorTracked subscribe at %d:%" PRId64 " read back\n",
           m->partition, m->offset, s->partition, s->offset);
    fflush(stdout);
}
END_TEST

START_TEST(ingest_douyin_message_reaches_the_log) {
    in_begin();
    const char *from = "_000hTVu3KpG6ZqJ0bWn7xCq2sL4mRfYd";
    int64_t created = tl_test_now_ms() - 3000;
    char body[2048];
    snprintf(body, sizeof body,
             "{\"event\":\"im_receive_msg\",\"client_key\":\"awx3kq9tbd2c7m1p\","
             "\"from_user_id\":\"%s\",\"to_user_id\":\"_000aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT\","
             "\"log_id\":\"20231114221319010225113025B2C9A1F0\","
             "\"content\":{\"conversation_short_id\":\"@9VwKz8u0N7uG==\","
             "\"server_message_id\":\"@9VwKz8u0N7uH==\",\"conversation_type\":1,"
             "\"message_type\":\"text\",\"text\":\"你好，我昨天下的单 DY-20231113-778 还没发货\","
             "\"create_time\":%" PRId64 ",\"user_infos\":[{\"open_id\":\"%s\","
             "\"nick_name\":\"小鹿\",\"avatar\":\"https://p3.douyinpic.com/a.jpeg\"}]}}",
             from, created, from);
    tl_test_resp_t resp;
    in_ack_t ack;
    in_douyin_post(IN_DOUYIN_SECRET, body, &resp);
    in_parse_ack(&resp, 200, "douyin", &ack);
    IN_ASSERT(!ack.duplicate, "first post answered as a duplicate");
    char cid[40];
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_DOUYIN, (tl_str_t){from, strlen(from)},
                           cid);
    IN_ASSERT(strcmp(ack.customer_id, cid) == 0, "customer_id %s, want UUIDv5(acme, douyin, %s) = %s",
              ack.customer_id, from, cid);

    int n = in_read_all();
    IN_ASSERT(n == 1, "%s holds %d records, want 1", in.topic, n);
    const in_rec_t *r = &in.recs[0];
    IN_ASSERT(r->partition == ack.partition && r->offset == ack.offset,
              "the record is at %d:%" PRId64 ", the answer said %s", r->partition, r->offset,
              ack.position);
    tl_event_t ev;
    in_decode(r, &ev);
    in_check_envelope(r, &ev, TL_EV_MESSAGE_RECEIVED, TL_PLATFORM_DOUYIN, from,
                      "douyin:@9VwKz8u0N7uH==", ack.customer_id, ack.event_id, created);
    IN_STR_EQ(ev.u.message.text, "你好，我昨天下的单 DY-20231113-778 还没发货", "text");
    IN_ASSERT(ev.u.message.attachments.n == 0, "%zu attachments, want 0",
              ev.u.message.attachments.n);
    printf("ingest: douyin: signed webhook 200 at %s, MessageReceived douyin:@9VwKz8u0N7uH== "
           "read back, the only record\n", ack.position);
    fflush(stdout);
}
END_TEST

START_TEST(ingest_phone_segment_reaches_the_log) {
    in_begin();
    int64_t started = tl_test_now_ms() - 60000;
    char body[2048];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"call_id\":\"c-20231114-0042\",\"segment_id\":\"3\","
             "\"caller_number\":\"+86 138 0013 8000\",\"speaker\":\"customer\","
             "\"start_ms\":12000,\"end_ms\":15500,\"text\":\"我的快递三天了还没到\","
             "\"confidence\":0.93,\"call_started_at\":%" PRId64 "}",
             started);
    tl_test_resp_t resp;
    in_ack_t ack;
    in_post("/v1/ingest/phone", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "phone", &ack);
    IN_ASSERT(!ack.duplicate, "first post answered as a duplicate");
    char cid[40];
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_PHONE, TL_STR("+8613800138000"), cid);
    IN_ASSERT(strcmp(ack.customer_id, cid) == 0,
              "customer_id %s, want UUIDv5(acme, phone, +8613800138000) = %s", ack.customer_id,
              cid);

    const in_rec_t *r = in_read_ack(&ack);
    tl_event_t ev;
    in_decode(r, &ev);
    in_check_envelope(r, &ev, TL_EV_TRANSCRIPT_SEGMENT, TL_PLATFORM_PHONE, "+8613800138000",
                      "phone:c-20231114-0042:3", ack.customer_id, ack.event_id, started + 12000);
    const tl_transcript_segment_t *ts = &ev.u.transcript;
    IN_STR_EQ(ts->call_id, "c-20231114-0042", "call_id");
    IN_ASSERT(ts->start_ms == 12000 && ts->end_ms == 15500, "segment %" PRId64 "-%" PRId64
              " ms, want 12000-15500", ts->start_ms, ts->end_ms);
    IN_ASSERT(ts->speaker == TL_SPEAKER_CUSTOMER, "speaker %d, want CUSTOMER", (int)ts->speaker);
    IN_STR_EQ(ts->text, "我的快递三天了还没到", "text");
    IN_ASSERT(fabsf(ts->confidence - 0.93f) < 1e-6f, "confidence %g, want 0.93",
              (double)ts->confidence);
    IN_STR_EQ(ts->caller_number, "+8613800138000", "caller_number");
    printf("ingest: phone: 202 at %s, TranscriptSegment phone:c-20231114-0042:3 read back "
           "with the caller as +8613800138000\n", ack.position);
    fflush(stdout);
}
END_TEST

START_TEST(ingest_resend_is_a_duplicate_and_writes_nothing) {
    in_begin();
    int64_t sent_at = tl_test_now_ms() - 1000;
    char body[1024];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-dup\",\"message_id\":\"m-dup-1\","
             "\"sent_at\":%" PRId64 ",\"text\":\"hello?\"}",
             sent_at);
    tl_test_resp_t resp;
    in_ack_t first, again;
    in_post("/v1/ingest/web", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "web first", &first);
    IN_ASSERT(!first.duplicate, "first post answered as a duplicate");
    in_post("/v1/ingest/web", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "web resend", &again);
    IN_ASSERT(again.duplicate, "the resend was not answered \"duplicate\":true");
    IN_ASSERT(strcmp(first.event_id, again.event_id) == 0 &&
                  strcmp(first.customer_id, again.customer_id) == 0 &&
                  strcmp(first.position, again.position) == 0,
              "the resend's answer (%s %s %s) is not the first acknowledgement (%s %s %s)",
              again.event_id, again.customer_id, again.position, first.event_id,
              first.customer_id, first.position);

    /* And a Douyin resend of the same server_message_id, answered 200. */
    const char *from = "_000dupUser0000000000000000000001";
    snprintf(body, sizeof body,
             "{\"event\":\"im_receive_msg\",\"from_user_id\":\"%s\",\"content\":"
             "\"{\\\"server_message_id\\\":\\\"@dupMsg==\\\",\\\"conversation_type\\\":1,"
             "\\\"message_type\\\":\\\"text\\\",\\\"text\\\":\\\"还在吗\\\","
             "\\\"create_time\\\":%" PRId64 "}\"}",
             from, sent_at / 1000);
    in_ack_t dy1, dy2;
    in_douyin_post(IN_DOUYIN_SECRET, body, &resp);
    in_parse_ack(&resp, 200, "douyin first", &dy1);
    in_douyin_post(IN_DOUYIN_SECRET, body, &resp);
    in_parse_ack(&resp, 200, "douyin resend", &dy2);
    IN_ASSERT(!dy1.duplicate && dy2.duplicate, "douyin duplicate flags %d then %d, want 0 then 1",
              dy1.duplicate, dy2.duplicate);
    IN_ASSERT(strcmp(dy1.event_id, dy2.event_id) == 0 && strcmp(dy1.position, dy2.position) == 0,
              "douyin resend answered %s %s, first was %s %s", dy2.event_id, dy2.position,
              dy1.event_id, dy1.position);

    int n = in_read_all();
    IN_ASSERT(n == 2, "%s holds %d records after two messages sent twice each, want 2", in.topic,
              n);
    int seen_web = 0, seen_dy = 0;
    for (int i = 0; i < n; i++) {
        tl_event_t ev;
        in_decode(&in.recs[i], &ev);
        if (in_str_is(ev.idempotency_key, "web:m-dup-1")) {
            seen_web++;
            IN_STR_EQ(ev.event_id, first.event_id, "web event_id");
            IN_ASSERT(in.recs[i].partition == first.partition &&
                          in.recs[i].offset == first.offset,
                      "web record at %d:%" PRId64 ", the answer said %s", in.recs[i].partition,
                      in.recs[i].offset, first.position);
        } else if (in_str_is(ev.idempotency_key, "douyin:@dupMsg==")) {
            seen_dy++;
            IN_STR_EQ(ev.event_id, dy1.event_id, "douyin event_id");
            IN_ASSERT(ev.occurred_at == (sent_at / 1000) * 1000,
                      "douyin create_time in seconds read as %" PRId64, ev.occurred_at);
            IN_STR_EQ(ev.u.message.text, "还在吗", "douyin text");
        } else {
            IN_FAIL("unexpected record with key %.*s", (int)ev.idempotency_key.len,
                    ev.idempotency_key.ptr ? ev.idempotency_key.ptr : "");
        }
    }
    IN_ASSERT(seen_web == 1 && seen_dy == 1, "records: web %d, douyin %d, want 1 each", seen_web,
              seen_dy);
    printf("ingest: resend: web and douyin resends answered \"duplicate\":true with the first "
           "acknowledgement (%s, %s); the topic holds 1 record each\n", first.position,
           dy1.position);
    fflush(stdout);
}
END_TEST

/* Reads a problem answer: asserts status and type, frees resp. */
static void in_expect_problem(tl_test_resp_t *resp, long status, const char *type,
                              const char *what) {
    char got[1024];
    snprintf(got, sizeof got, "%s", resp->body);
    long st = resp->status;
    int problem = tl_test_resp_is(resp, "application/problem+json");
    tl_test_resp_close(resp);
    char want_type[128];
    snprintf(want_type, sizeof want_type, "\"urn:threadline:problem:%s\"", type);
    IN_ASSERT(st == status && problem && strstr(got, want_type) != NULL,
              "%s: HTTP %ld, want %ld problem+json of type %s: %s", what, st, status, type, got);
}

START_TEST(ingest_refused_requests_write_nothing) {
    in_begin();
    int64_t now_ms = tl_test_now_ms();
    int64_t now_s = now_ms / 1000;
    tl_test_resp_t resp;

    /* WeChat signed with another token. */
    char xml[1024];
    snprintf(xml, sizeof xml,
             "<xml><ToUserName><![CDATA[gh_3f1e2d4c5b6a]]></ToUserName>"
             "<FromUserName><![CDATA[oBadSig000000000000000000001]]></FromUserName>"
             "<CreateTime>%" PRId64 "</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             "<Content><![CDATA[forged]]></Content><MsgId>111222333444555666</MsgId></xml>",
             now_s);
    in_wechat_post("not-the-token", now_s, xml, &resp);
    in_expect_problem(&resp, 403, "bad-signature", "wechat with a wrong token");
    /* WeChat correctly signed, but the signed timestamp is 10 minutes old. */
    in_wechat_post(IN_WECHAT_TOKEN, now_s - 600, xml, &resp);
    in_expect_problem(&resp, 403, "stale-timestamp", "wechat with a stale timestamp");

    /* Douyin signed with another secret, and not signed at all. */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"event\":\"im_receive_msg\",\"from_user_id\":\"_000forged\",\"content\":"
             "{\"server_message_id\":\"@forged==\",\"message_type\":\"text\","
             "\"text\":\"forged\",\"create_time\":%" PRId64 "}}",
             now_ms);
    in_douyin_post("wrong-secret", body, &resp);
    in_expect_problem(&resp, 403, "bad-signature", "douyin with a wrong secret");
    in_douyin_post(NULL, body, &resp);
    in_expect_problem(&resp, 403, "missing-signature", "douyin without a signature");

    /* Douyin's URL check: answered, but not an event. */
    in_douyin_post(IN_DOUYIN_SECRET,
                   "{\"event\":\"verify_webhook\",\"client_key\":\"abc\","
                   "\"content\":{\"challenge\":12345}}",
                   &resp);
    char got[256];
    snprintf(got, sizeof got, "%s", resp.body);
    long st = resp.status;
    tl_test_resp_close(&resp);
    IN_ASSERT(st == 200 && strcmp(got, "{\"challenge\":12345}") == 0,
              "douyin verify_webhook: HTTP %ld: %s", st, got);

    /* A web message without a visitor. */
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"message_id\":\"m-1\",\"sent_at\":%" PRId64
             ",\"text\":\"hi\"}",
             now_ms);
    in_post("/v1/ingest/web", "application/json", NULL, body, &resp);
    in_expect_problem(&resp, 422, "missing-field", "web without visitor_id");

    /* One good message, so that an empty topic is not mistaken for one
     * nobody could read. */
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-ok\",\"message_id\":\"m-ok\","
             "\"sent_at\":%" PRId64 ",\"text\":\"the only one\"}",
             now_ms);
    in_ack_t ack;
    in_post("/v1/ingest/web", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "web sentinel", &ack);

    int n = in_read_all();
    IN_ASSERT(n == 1, "%s holds %d records after 6 refused requests and 1 good one, want 1",
              in.topic, n);
    tl_event_t ev;
    in_decode(&in.recs[0], &ev);
    IN_STR_EQ(ev.idempotency_key, "web:m-ok", "the only record's idempotency_key");
    printf("ingest: refused: wechat bad-signature and stale-timestamp 403, douyin bad- and "
           "missing-signature 403, verify_webhook 200, web 422; the topic holds only the "
           "1 good message\n");
    fflush(stdout);
}
END_TEST

/* ------------------------------------------------- app, identity links */

/* One entry of the app's list answer. */
typedef struct in_entry {
    int index;
    char type[32];
    char event_id[40];
    char customer_id[40];
    int duplicate;
    int partition;
    int64_t offset;
} in_entry_t;

/* Asserts resp is 202 with the list answer {customer_id, events: [...]};
 * fills up to max entries, returns how many there are. */
static int in_parse_list(tl_test_resp_t *resp, const char *what, char customer[40],
                         in_entry_t *e, int max) {
    char got[4096];
    snprintf(got, sizeof got, "%s", resp->body);
    long st = resp->status;
    int is_json = tl_test_resp_is(resp, "application/json");
    tl_test_resp_close(resp);
    IN_ASSERT(st == 202 && is_json, "%s: HTTP %ld, want 202 application/json: %s", what, st, got);
    json_error_t je;
    json_t *j = json_loads(got, 0, &je), *arr = NULL;
    const char *cust = NULL;
    int bad = !j || json_unpack_ex(j, &je, JSON_STRICT, "{s:s, s:o}", "customer_id", &cust,
                                   "events", &arr) != 0 || !json_is_array(arr);
    int n = bad ? 0 : (int)json_array_size(arr);
    if (!bad) snprintf(customer, 40, "%s", cust);
    for (int i = 0; !bad && i < n && i < max; i++) {
        const char *type, *eid, *cid;
        json_t *pos;
        int dup;
        bad = json_unpack_ex(json_array_get(arr, (size_t)i), &je, JSON_STRICT,
                             "{s:i, s:s, s:s, s:s, s:b, s:o}", "index", &e[i].index, "type", &type,
                             "event_id", &eid, "customer_id", &cid, "duplicate", &dup,
                             "position", &pos) != 0;
        if (bad) break;
        snprintf(e[i].type, sizeof e[i].type, "%s", type);
        snprintf(e[i].event_id, sizeof e[i].event_id, "%s", eid);
        snprintf(e[i].customer_id, sizeof e[i].customer_id, "%s", cid);
        e[i].duplicate = dup;
        long long off = -1;
        e[i].partition = -1;
        if (json_is_string(pos)) sscanf(json_string_value(pos), "%d:%lld", &e[i].partition, &off);
        e[i].offset = off;
    }
    json_decref(j);
    IN_ASSERT(!bad, "%s: not the list answer: %s (%s)", what, got, je.text);
    return n;
}

/* Waits until the identity index maps (platform, id) of tenant acme to
 * want (active), written by the identity writer after the fold applied the
 * event; evidence, when not NULL, must match too. */
static void in_wait_identity(const char *platform, const char *id, const char *want,
                             const char *evidence) {
    char err[512], last[128] = "no row";
    const char *params[] = {IN_TENANT, platform, id};
    int64_t deadline = tl_test_mono_ms() + IN_INDEX_MS;
    while (tl_test_mono_ms() < deadline) {
        PGresult *r = tl_test_pg_query(in.pg,
                                       "SELECT customer_id, coalesce(evidence, '') FROM identities"
                                       " WHERE tenant_id = $1 AND platform = $2"
                                       " AND platform_user_id = $3 AND active",
                                       3, params, err, sizeof err);
        IN_ASSERT(r != NULL, "reading identities: %s", err);
        int ok = 0;
        if (PQntuples(r) == 1) {
            snprintf(last, sizeof last, "%s (%s)", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
            ok = strcmp(PQgetvalue(r, 0, 0), want) == 0 &&
                 (!evidence || strcmp(PQgetvalue(r, 0, 1), evidence) == 0);
        }
        PQclear(r);
        if (ok) return;
        tl_test_sleep_ms(100);
    }
    IN_FAIL("identity (%s, %s) not indexed to %s%s%s within %d ms; last: %s", platform, id, want,
            evidence ? " with evidence " : "", evidence ? evidence : "", IN_INDEX_MS, last);
}

/* Long enough for the resolver cache to forget what it knew before. */
static void in_wait_ttl(void) { tl_test_sleep_ms(3 * atoi(IN_IDENTITY_TTL_MS)); }

START_TEST(ingest_app_batch_reaches_the_log) {
    in_begin();
    int64_t now = tl_test_now_ms();
    char body[2048];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"device_id\":\"dev-a1\","
             "\"message\":{\"message_id\":\"am-1\",\"sent_at\":%" PRId64 ",\"text\":\"物流到哪了\","
             "\"entry_point\":\"OrderDetail\"},"
             "\"events\":[{\"id\":\"e-1\",\"page\":\"Home\",\"action\":\"open\",\"ts\":%" PRId64 "},"
             "{\"id\":\"e-2\",\"page\":\"Cart\",\"action\":\"tap:checkout\",\"ts\":%" PRId64 "}]}",
             now - 500, now - 9000, now - 4000);
    tl_test_resp_t resp;
    in_entry_t e[8], again[8];
    char cust[40], cust2[40], want[40];
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    int n = in_parse_list(&resp, "app batch", cust, e, 8);
    IN_ASSERT(n == 3, "app batch: %d entries, want 3", n);
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_APP, TL_STR("dev-a1"), want);
    IN_ASSERT(strcmp(cust, want) == 0, "customer %s, want UUIDv5(acme, app, dev-a1) = %s", cust, want);
    static const char *const types[] = {"MessageReceived", "BehaviorTracked", "BehaviorTracked"};
    static const char *const keys[] = {"app:am-1", "app:event:e-1", "app:event:e-2"};
    int64_t occurred[] = {now - 500, now - 9000, now - 4000};
    for (int i = 0; i < 3; i++) {
        IN_ASSERT(e[i].index == i && strcmp(e[i].type, types[i]) == 0 && !e[i].duplicate &&
                      e[i].offset >= 0 && strcmp(e[i].customer_id, want) == 0,
                  "entry %d: index %d type %s duplicate %d offset %" PRId64, i, e[i].index,
                  e[i].type, e[i].duplicate, e[i].offset);
        const in_rec_t *r = in_read_at(e[i].partition, e[i].offset);
        tl_event_t ev;
        in_decode(r, &ev);
        in_check_envelope(r, &ev, i == 0 ? TL_EV_MESSAGE_RECEIVED : TL_EV_BEHAVIOR_TRACKED,
                          TL_PLATFORM_APP, "dev-a1", keys[i], want, e[i].event_id, occurred[i]);
        if (i == 0) {
            IN_STR_EQ(ev.u.message.text, "物流到哪了", "text");
            IN_STR_EQ(ev.u.message.device_id, "dev-a1", "device_id");
            IN_STR_EQ(ev.u.message.entry_point, "OrderDetail", "entry_point");
        } else {
            IN_STR_EQ(ev.u.behavior.page, i == 1 ? "Home" : "Cart", "page");
            IN_STR_EQ(ev.u.behavior.action, i == 1 ? "open" : "tap:checkout", "action");
            IN_STR_EQ(ev.u.behavior.device_id, "dev-a1", "behavior device_id");
        }
    }
    /* The SDK uploads the same batch again: every event is a duplicate
     * with its first acknowledgement, and nothing more is written. */
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    IN_ASSERT(in_parse_list(&resp, "app resend", cust2, again, 8) == 3, "resend: not 3 entries");
    for (int i = 0; i < 3; i++)
        IN_ASSERT(again[i].duplicate && strcmp(again[i].event_id, e[i].event_id) == 0 &&
                      again[i].offset == e[i].offset,
                  "resend entry %d: duplicate %d, %s at %" PRId64 "; first was %s at %" PRId64, i,
                  again[i].duplicate, again[i].event_id, again[i].offset, e[i].event_id,
                  e[i].offset);
    IN_ASSERT(in_read_all() == 3, "%s holds %d records after a batch of 3 sent twice", in.topic,
              in.nrecs);

    /* A refused batch writes nothing: the second click has no page. */
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"device_id\":\"dev-a1\",\"events\":["
             "{\"id\":\"e-3\",\"page\":\"Home\",\"action\":\"open\",\"ts\":%" PRId64 "},"
             "{\"id\":\"e-4\",\"action\":\"open\",\"ts\":%" PRId64 "}]}", now, now);
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    in_expect_problem(&resp, 422, "missing-field", "app batch with a page missing");
    IN_ASSERT(in_read_all() == 3, "a refused batch wrote: %s holds %d records", in.topic, in.nrecs);
    printf("ingest: app: one upload, 202 with 3 entries (MessageReceived, 2 x BehaviorTracked) "
           "read back at their positions; the resend is 3 duplicates, a bad batch writes none\n");
    fflush(stdout);
}
END_TEST

START_TEST(ingest_app_login_links_device_into_account) {
    in_begin_with(1);
    int64_t now = tl_test_now_ms();
    char body[1024], cust[40], dev[40], acct[40];
    in_entry_t e[4];
    tl_test_resp_t resp;
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_APP, TL_STR("dev-l1"), dev);
    tl_identity_default_id(TL_STR(IN_TENANT), "account", TL_STR("u-7"), acct);

    /* Anonymous: the device's own customer. */
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"device_id\":\"dev-l1\",\"message\":{"
             "\"message_id\":\"lm-1\",\"sent_at\":%" PRId64 ",\"text\":\"hi\"}}", now);
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    IN_ASSERT(in_parse_list(&resp, "anonymous", cust, e, 4) == 1, "anonymous: not 1 entry");
    IN_ASSERT(strcmp(cust, dev) == 0, "anonymous upload on %s, want the device's %s", cust, dev);

    /* Logged in: the link first, then the message, both on the account. */
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"device_id\":\"dev-l1\",\"account_id\":"
             "\"u-7\",\"message\":{\"message_id\":\"lm-2\",\"sent_at\":%" PRId64 ",\"text\":\"我登录了\"}}",
             now);
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    int n = in_parse_list(&resp, "login", cust, e, 4);
    IN_ASSERT(n == 2 && e[0].index == -1 && strcmp(e[0].type, "IdentityLinked") == 0 &&
                  e[1].index == 0 && strcmp(cust, acct) == 0,
              "login: %d entries, first %s index %d, customer %s (account's %s)", n, e[0].type,
              e[0].index, cust, acct);
    const in_rec_t *r = in_read_at(e[0].partition, e[0].offset);
    tl_event_t ev;
    in_decode(r, &ev);
    in_check_envelope(r, &ev, TL_EV_IDENTITY_LINKED, TL_PLATFORM_APP, "dev-l1",
                      "app:login:dev-l1:u-7", acct, e[0].event_id, ev.occurred_at);
    IN_STR_EQ(ev.u.link.linked_customer_id, dev, "linked_customer_id");
    IN_ASSERT(ev.u.link.evidence == TL_EVIDENCE_LOGIN, "evidence %d, want LOGIN", (int)ev.u.link.evidence);
    IN_STR_EQ(ev.u.link.evidence_value, "u-7", "evidence_value");

    /* Once the index has it, the device's uploads go to the account, even
     * logged out, and a new login upload links nothing again. */
    in_wait_identity("app", "dev-l1", acct, "LOGIN");
    in_wait_identity("account", "u-7", acct, "LOGIN");
    in_wait_ttl();
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"device_id\":\"dev-l1\",\"events\":[{"
             "\"id\":\"le-1\",\"page\":\"Home\",\"action\":\"open\",\"ts\":%" PRId64 "}]}", now);
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    IN_ASSERT(in_parse_list(&resp, "logged out", cust, e, 4) == 1 && strcmp(cust, acct) == 0,
              "logged-out upload on %s, want the account's %s", cust, acct);
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"device_id\":\"dev-l1\",\"account_id\":"
             "\"u-7\",\"message\":{\"message_id\":\"lm-3\",\"sent_at\":%" PRId64 ",\"text\":\"again\"}}",
             now);
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    n = in_parse_list(&resp, "login again", cust, e, 4);
    IN_ASSERT(n == 1 && e[0].index == 0 && strcmp(cust, acct) == 0,
              "second login upload: %d entries (first %s), customer %s", n, e[0].type, cust);

    /* An agent unlinks them: the index forgets the link, and the device's
     * anonymous uploads are its own customer's again. */
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"platform\":\"app\",\"platform_user_id\":"
             "\"dev-l1\",\"message_id\":\"unlink-1\",\"occurred_at\":%" PRId64 ",\"customer_id\":\"%s\","
             "\"payload\":{\"type\":\"IdentityUnlinked\",\"linked_customer_id\":\"%s\",\"platform\":"
             "\"app\",\"platform_user_id\":\"dev-l1\",\"reason\":\"shared phone\"}}", now, acct, dev);
    in_ack_t ack;
    in_post("/v1/ingest/api", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "unlink", &ack);
    char err[512];
    const char *params[] = {IN_TENANT, acct, dev};
    int64_t deadline = tl_test_mono_ms() + IN_INDEX_MS, active = 1;
    while (active && tl_test_mono_ms() < deadline) {
        IN_ASSERT(tl_test_pg_int(in.pg, "SELECT count(*) FROM identity_merges WHERE tenant_id = $1"
                                        " AND survivor = $2 AND absorbed = $3 AND active",
                                 3, params, &active, err, sizeof err) == 0, "%s", err);
        if (active) tl_test_sleep_ms(100);
    }
    IN_ASSERT(!active, "the merge of %s into %s is still active %d ms after the unlink", dev, acct,
              IN_INDEX_MS);
    in_wait_ttl();
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"device_id\":\"dev-l1\",\"events\":[{"
             "\"id\":\"le-2\",\"page\":\"Home\",\"action\":\"open\",\"ts\":%" PRId64 "}]}", now);
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    IN_ASSERT(in_parse_list(&resp, "after unlink", cust, e, 4) == 1 && strcmp(cust, dev) == 0,
              "upload after the unlink on %s, want the device's own %s", cust, dev);
    printf("ingest: app login: IdentityLinked (LOGIN) absorbed the device's customer into the "
           "account's; once indexed, the device's uploads land on the account, no second link; "
           "after IdentityUnlinked they are the device's own again\n");
    fflush(stdout);
}
END_TEST

/* With no broker to acknowledge anything, an app upload is refused whole:
 * 503 with Retry-After, no event claimed. */
START_TEST(ingest_app_unacknowledged_upload_is_503) {
    char err[1024], brokers[64], url[512];
    int n = ++in_seq, port = tl_test_free_port();
    IN_ASSERT(port > 0, "no free port");
    snprintf(brokers, sizeof brokers, "127.0.0.1:%d", port);   /* nobody listens */
    snprintf(in.prefix, sizeof in.prefix, "%sx%dx%d", in_run_tag, (int)getpid(), n);
    static const char *const extra[] = {"--auth", "off", "--fold", "0", "--project", "0", "--identity", "0",
                                        "--ack-timeout-ms", "2000", NULL};
    IN_ASSERT(tl_test_serve_init(&in.serve, in_exe, brokers, in_pg_dsn, in.prefix, IN_PARTITIONS,
                                 extra, err, sizeof err) == 0, "%s", err);
    in.have_serve = 1;
    IN_ASSERT(tl_test_serve_start(&in.serve, err, sizeof err) == 0, "%s", err);
    in.curl = curl_easy_init();
    IN_ASSERT(in.curl != NULL, "curl_easy_init failed");
    /* Up (it answers /healthz) though not ready: the broker is missing. */
    snprintf(url, sizeof url, "%s/healthz", in.serve.base_url);
    int64_t deadline = tl_test_mono_ms() + IN_READY_MS;
    long st = 0;
    while (st != 200 && tl_test_mono_ms() < deadline) {
        tl_test_resp_t hr;
        if (tl_test_http(in.curl, "GET", url, NULL, 0, 2000, &hr) == 0) st = hr.status;
        tl_test_resp_close(&hr);
        if (st != 200) tl_test_sleep_ms(200);
    }
    IN_ASSERT(st == 200, "serve did not answer /healthz within %d ms", IN_READY_MS);

    int64_t now = tl_test_now_ms();
    char body[1024];
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"device_id\":\"dev-down\",\"message\":{\"message_id\":\"m\","
             "\"sent_at\":%" PRId64 ",\"text\":\"anyone?\"},\"events\":[{\"id\":\"1\",\"page\":\"p\","
             "\"action\":\"a\",\"ts\":%" PRId64 "}]}", now, now);
    tl_test_resp_t resp;
    in_post("/v1/ingest/app", "application/json", NULL, body, &resp);
    char got[1024];
    snprintf(got, sizeof got, "%s", resp.body);
    int problem = tl_test_resp_is(&resp, "application/problem+json");
    st = resp.status;
    tl_test_resp_close(&resp);
    IN_ASSERT(st == 503 && problem && strstr(got, "urn:threadline:problem:kafka-unavailable") &&
                  !strstr(got, "\"held\":[{"),
              "upload with no broker: HTTP %ld: %s", st, got);
    printf("ingest: app with no broker: 503 kafka-unavailable, nothing claimed as held\n");
    fflush(stdout);
}
END_TEST

/* A plain-mode WeChat text from openid `from`. */
static void in_wechat_text(const char *from, const char *msgid, const char *text) {
    char xml[1024];
    int64_t now_s = tl_test_now_ms() / 1000;
    snprintf(xml, sizeof xml,
             "<xml><ToUserName><![CDATA[gh_3f1e2d4c5b6a]]></ToUserName>"
             "<FromUserName><![CDATA[%s]]></FromUserName><CreateTime>%" PRId64 "</CreateTime>"
             "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content>"
             "<MsgId>%s</MsgId></xml>", from, now_s, text, msgid);
    tl_test_resp_t resp;
    in_wechat_post(IN_WECHAT_TOKEN, now_s, xml, &resp);
    char got[256];
    snprintf(got, sizeof got, "%s", resp.body);
    long st = resp.status;
    tl_test_resp_close(&resp);
    IN_ASSERT(st == 200 && strcmp(got, "success") == 0, "wechat %s: HTTP %ld: %s", msgid, st, got);
}

/* The customer the record with idempotency key `key` is on. */
static void in_customer_of(const char *key, char out[40]) {
    int n = in_read_all();
    for (int i = 0; i < n; i++) {
        tl_event_t ev;
        in_decode(&in.recs[i], &ev);
        if (in_str_is(ev.idempotency_key, key)) {
            snprintf(out, 40, "%.*s", (int)ev.customer_id.len, ev.customer_id.ptr);
            return;
        }
    }
    IN_FAIL("no record with key %s in %s", key, in.topic);
}

START_TEST(ingest_unionid_joins_mini_program_and_official_account) {
    in_begin_with(1);
    int64_t now = tl_test_now_ms();
    char body[1024], oa[40], mp[40], un[40], got[40];
    tl_test_resp_t resp;
    in_ack_t ack;
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_WECHAT, TL_STR("o-oa-1"), oa);
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_MINI_PROGRAM, TL_STR("o-mp-1"), mp);
    tl_identity_default_id(TL_STR(IN_TENANT), "unionid", TL_STR("un-1"), un);

    /* The follower writes on the Official Account: no unionid there. */
    in_wechat_text("o-oa-1", "5001", "公众号来的");
    in_customer_of("wechat:5001", got);
    IN_ASSERT(strcmp(got, oa) == 0, "OA message on %s, want the openid's %s", got, oa);

    /* The same person in the mini-program, with the unionid. */
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"openid\":\"o-mp-1\",\"unionid\":\"un-1\","
             "\"message_id\":\"mp-1\",\"sent_at\":%" PRId64 ",\"text\":\"小程序来的\"}", now);
    in_post("/v1/ingest/mini_program", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "mini_program", &ack);
    IN_ASSERT(strcmp(ack.customer_id, un) == 0, "mini-program message on %s, want the unionid's %s",
              ack.customer_id, un);

    /* A connector tells threadline the follower's unionid. */
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"platform\":\"wechat\",\"platform_user_id\":"
             "\"o-oa-1\",\"message_id\":\"unionid:o-oa-1\",\"occurred_at\":%" PRId64 ",\"payload\":{"
             "\"type\":\"IdentityLinked\",\"platform\":\"wechat\",\"platform_user_id\":\"o-oa-1\","
             "\"evidence\":\"UNIONID\",\"evidence_value\":\"un-1\"}}", now);
    in_post("/v1/ingest/api", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "api unionid link", &ack);
    IN_ASSERT(strcmp(ack.customer_id, un) == 0, "unionid link on %s, want the unionid's %s",
              ack.customer_id, un);
    const in_rec_t *r = in_read_ack(&ack);
    tl_event_t ev;
    in_decode(r, &ev);
    IN_STR_EQ(ev.u.link.linked_customer_id, oa, "link absorbs the follower's customer");

    in_wait_identity("unionid", "un-1", un, "UNIONID");
    in_wait_identity("mini_program", "o-mp-1", un, "UNIONID");
    in_wait_identity("wechat", "o-oa-1", un, "UNIONID");
    in_wait_ttl();

    /* One customer: the next OA message and mini-program message both
     * land on the unionid's customer, and the mini-program is not linked
     * a second time. */
    in_wechat_text("o-oa-1", "5002", "还是我");
    in_customer_of("wechat:5002", got);
    IN_ASSERT(strcmp(got, un) == 0, "OA message after the link on %s, want %s", got, un);
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"openid\":\"o-mp-1\",\"unionid\":\"un-1\","
             "\"message_id\":\"mp-2\",\"sent_at\":%" PRId64 ",\"text\":\"again\"}", now);
    in_post("/v1/ingest/mini_program", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "mini_program again", &ack);
    IN_ASSERT(strcmp(ack.customer_id, un) == 0, "second mini-program message on %s", ack.customer_id);
    int n = in_read_all(), links = 0;
    for (int i = 0; i < n; i++) {
        in_decode(&in.recs[i], &ev);
        links += ev.kind == TL_EV_IDENTITY_LINKED && ev.platform == TL_PLATFORM_MINI_PROGRAM;
    }
    IN_ASSERT(links == 1, "%d mini-program unionid links in the log, want 1", links);
    printf("ingest: unionid: mini-program (linked by its unionid) and Official Account follower "
           "(linked by a connector's UNIONID link) are one customer %s\n", un);
    fflush(stdout);
}
END_TEST

START_TEST(ingest_verified_phone_routes_caller_to_linked_customer) {
    in_begin_with(1);
    int64_t now = tl_test_now_ms();
    char body[1024], web[40], phone[40], other[40];
    tl_test_resp_t resp;
    in_ack_t ack;
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_WEB, TL_STR("v-ph"), web);
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_PHONE, TL_STR("+8613800138000"), phone);
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_PHONE, TL_STR("+8613900139000"), other);
#define SEGMENT(call, seg, number)                                                               \
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"call_id\":\"%s\",\"segment_id\":\"%s\","  \
             "\"caller_number\":\"%s\",\"speaker\":\"customer\",\"start_ms\":0,\"end_ms\":900,"      \
             "\"text\":\"喂\",\"confidence\":0.9,\"call_started_at\":%" PRId64 "}", call, seg,       \
             number, now)

    /* Before the phone is verified, a call is its number's own customer. */
    SEGMENT("call-1", "1", "13800138000");
    in_post("/v1/ingest/phone", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "phone before", &ack);
    IN_ASSERT(strcmp(ack.customer_id, phone) == 0, "call before the link on %s, want %s",
              ack.customer_id, phone);

    /* The shop verified the web customer's phone (an SMS code). */
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"platform\":\"web\",\"platform_user_id\":"
             "\"v-ph\",\"message_id\":\"verify-1\",\"occurred_at\":%" PRId64 ",\"customer_id\":\"%s\","
             "\"payload\":{\"type\":\"IdentityLinked\",\"platform\":\"phone\",\"platform_user_id\":"
             "\"+8613800138000\",\"evidence\":\"VERIFIED_PHONE\",\"evidence_value\":\"+8613800138000\"}}",
             now, web);
    in_post("/v1/ingest/api", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "verified phone link", &ack);
    IN_ASSERT(strcmp(ack.customer_id, web) == 0, "link on %s, want the web customer %s",
              ack.customer_id, web);
    const in_rec_t *r = in_read_ack(&ack);
    tl_event_t ev;
    in_decode(r, &ev);
    IN_STR_EQ(ev.u.link.linked_customer_id, phone, "link absorbs the number's customer");

    in_wait_identity("phone", "+8613800138000", web, "VERIFIED_PHONE");
    in_wait_ttl();
    SEGMENT("call-2", "1", "+86 138-0013-8000");
    in_post("/v1/ingest/phone", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "phone after", &ack);
    IN_ASSERT(strcmp(ack.customer_id, web) == 0, "call after the link on %s, want the web customer %s",
              ack.customer_id, web);
    SEGMENT("call-3", "1", "13900139000");
    in_post("/v1/ingest/phone", "application/json", NULL, body, &resp);
    in_parse_ack(&resp, 202, "other caller", &ack);
    IN_ASSERT(strcmp(ack.customer_id, other) == 0, "another number's call on %s, want %s",
              ack.customer_id, other);
#undef SEGMENT
    printf("ingest: verified phone: after a VERIFIED_PHONE link, calls from +8613800138000 land on "
           "the web customer %s; other numbers stay their own\n", web);
    fflush(stdout);
}
END_TEST


/* A link the fold ignored (the customers are already linked) leaves the
 * identity index alone: the identity it names is not indexed to anyone.
 * A later applied link on the same customer (same partition, so the
 * writer has passed the ignored one) is the marker to wait for. */
START_TEST(ingest_ignored_link_leaves_the_index_alone) {
    in_begin_with(1);
    int64_t now = tl_test_now_ms();
    char body[1024], web[40], phone[40], fresh[40], err[512];
    tl_test_resp_t resp;
    in_ack_t ack;
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_WEB, TL_STR("v-ig"), web);
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_PHONE, TL_STR("+8613700137000"), phone);
    tl_adapter_customer_id(TL_STR(IN_TENANT), TL_PLATFORM_APP, TL_STR("dev-fresh"), fresh);
#define LINK(msg, other, platform, user, evidence)                                                   \
    snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"platform\":\"web\",\"platform_user_id\":" \
             "\"v-ig\",\"message_id\":\"%s\",\"occurred_at\":%" PRId64 ",\"customer_id\":\"%s\","      \
             "\"payload\":{\"type\":\"IdentityLinked\",\"linked_customer_id\":\"%s\",\"platform\":"   \
             "\"%s\",\"platform_user_id\":\"%s\",\"evidence\":\"%s\"}}", msg, now, web, other,        \
             platform, user, evidence);                                                              \
    in_post("/v1/ingest/api", "application/json", NULL, body, &resp);                                \
    in_parse_ack(&resp, 202, msg, &ack)

    LINK("link-1", phone, "phone", "+8613700137000", "VERIFIED_PHONE");
    in_wait_identity("phone", "+8613700137000", web, "VERIFIED_PHONE");
    /* The same two customers again, naming another identity: the fold
     * ignores it (already linked). */
    LINK("link-2", phone, "app", "dev-ignored", "OTHER");
    /* Applied: a customer not linked yet. */
    LINK("link-3", fresh, "app", "dev-fresh", "OTHER");
    in_wait_identity("app", "dev-fresh", web, "OTHER");
#undef LINK
    int64_t rows = -1;
    const char *params[] = {IN_TENANT, "dev-ignored"};
    IN_ASSERT(tl_test_pg_int(in.pg, "SELECT count(*) FROM identities WHERE tenant_id = $1 AND platform = 'app'"
                             " AND platform_user_id = $2", 2, params, &rows, err, sizeof err) == 0, "%s", err);
    IN_ASSERT(rows == 0, "the link the fold ignored indexed (app, dev-ignored): %" PRId64 " rows", rows);
    const char *merge[] = {IN_TENANT, phone};
    IN_ASSERT(tl_test_pg_int(in.pg, "SELECT count(*) FROM identity_merges WHERE tenant_id = $1 AND absorbed = $2"
                             " AND active", 2, merge, &rows, err, sizeof err) == 0, "%s", err);
    IN_ASSERT(rows == 1, "the applied link's merge: %" PRId64 " active rows, want 1", rows);
}
END_TEST

Suite *tl_ingest_suite(void) {
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("services");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, in_services_check, in_services_sweep);
    tcase_add_checked_fixture(tc, in_setup, in_teardown);
    tcase_add_test(tc, ingest_web_message_reaches_the_log);
    tcase_add_test(tc, ingest_api_events_reach_the_log);
    tcase_add_test(tc, ingest_wechat_plain_messages_reach_the_log);
    tcase_add_test(tc, ingest_douyin_message_reaches_the_log);
    tcase_add_test(tc, ingest_phone_segment_reaches_the_log);
    tcase_add_test(tc, ingest_resend_is_a_duplicate_and_writes_nothing);
    tcase_add_test(tc, ingest_refused_requests_write_nothing);
    tcase_add_test(tc, ingest_app_batch_reaches_the_log);
    tcase_add_test(tc, ingest_app_unacknowledged_upload_is_503);
    suite_add_tcase(s, tc);
    /* The whole pipeline on its own database: fold, projections and the
     * identity writer must have applied a link before ingest follows it. */
    tc = tcase_create("identity");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, in_services_check, in_services_sweep);
    tcase_add_checked_fixture(tc, in_setup, in_teardown);
    tcase_add_test(tc, ingest_app_login_links_device_into_account);
    tcase_add_test(tc, ingest_unionid_joins_mini_program_and_official_account);
    tcase_add_test(tc, ingest_verified_phone_routes_caller_to_linked_customer);
    tcase_add_test(tc, ingest_ignored_link_leaves_the_index_alone);
    suite_add_tcase(s, tc);
    return s;
}
