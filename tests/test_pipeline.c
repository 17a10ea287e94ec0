/*
 * test_pipeline.c -- the whole pipeline on the real services: a connector
 * posts to `threadline serve` over HTTP, ingest writes to Kafka, the fold
 * and the projection bring it into PostgreSQL, an agent reads it over REST.
 *
 * Each test gets its own topic prefix and its own database, so tests do not
 * see each other's data and a rerun does not see an earlier run's topics:
 *
 *   topic prefix  it<runner pid>t<epoch s>x<test pid>x<n>
 *   database      tl_it_<runner pid>_<test pid>_<n>
 *
 * Check forks a process per test and a failed assertion ends that process
 * at once, skipping the checked teardown; so every assertion here goes
 * through IT_ASSERT, which first prints the tail of the serve log, stops the
 * server and drops the database, then fails.  The unchecked teardown (in the
 * runner process) sweeps what a test killed on timeout left behind.  Worker
 * threads never assert: they record what went wrong and the main thread
 * asserts after joining them.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "suites.h"
#include "support.h"

#define IT_TENANT "acme"
#define IT_PARTITIONS 4
#define IT_READY_MS 60000
#define IT_POST_TIMEOUT_MS 30000
#define IT_LOG_TAIL 60

/* ------------------------------------------------------------ suite state */

/* Set by the unchecked setup in the runner process; inherited by each
 * forked test. */
static const char *it_brokers, *it_pg_dsn, *it_exe;
static char it_run_tag[64]; /* it<runner pid>t<epoch s> */
static char it_db_tag[64];  /* tl_it_<runner pid>_ */

/* One test's resources, so a failure anywhere can release them. */
typedef struct it_test {
    char prefix[128];
    char db[128];
    char dsn[1024];
    int have_db;
    int have_serve;
    tl_test_serve_t serve;
    PGconn *pg;
} it_test_t;

static it_test_t it;
/* Outside `it`: with CK_FORK=no all tests share one process and pid. */
static int it_seq;

static void it_cleanup(int ok) {
    char err[512];
    if (it.pg != NULL) {
        PQfinish(it.pg);
        it.pg = NULL;
    }
    if (it.have_serve) {
        tl_test_serve_close(&it.serve, ok);
        it.have_serve = 0;
    }
    if (it.have_db) {
        if (tl_test_pg_drop_db(it_pg_dsn, it.db, err, sizeof err) != 0)
            fprintf(stderr, "cleanup: %s\n", err);
        it.have_db = 0;
    }
    if (it.prefix[0] != '\0') {
        char topics[160];
        snprintf(topics, sizeof topics, "%s.", it.prefix);
        if (tl_test_kafka_delete_topics(it_brokers, topics, 10000, err, sizeof err) < 0)
            fprintf(stderr, "cleanup: %s\n", err);
        it.prefix[0] = '\0';
    }
}

static void it_on_failure(const char *file, int line, const char *msg) {
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    if (it.have_serve) {
        tl_test_serve_log_tail(&it.serve, IT_LOG_TAIL);
        fprintf(stderr, "(full serve log kept: %s)\n", it.serve.log_path);
    }
    it_cleanup(0);
}

#define IT_FAIL(...)                                                                         \
    do {                                                                                     \
        char it_msg_[16384];                                                                  \
        snprintf(it_msg_, sizeof it_msg_, __VA_ARGS__);                                      \
        it_on_failure(__FILE__, __LINE__, it_msg_);                                          \
        ck_abort_msg("%s", it_msg_);                                                         \
    } while (0)

#define IT_ASSERT(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond))                                                                         \
            IT_FAIL(__VA_ARGS__);                                                            \
    } while (0)

/* ------------------------------------------------------------ fixtures */

/* Runner process, once: the services must be the real ones and answer. */
static void it_services_check(void) {
    tl_test_services_t sv;
    tl_test_services_require("pipeline", &sv);
    it_brokers = sv.brokers;
    it_pg_dsn = sv.pg_dsn;
    it_exe = sv.exe;
    snprintf(it_run_tag, sizeof it_run_tag, "it%dt%lld", (int)getpid(), (long long)time(NULL));
    snprintf(it_db_tag, sizeof it_db_tag, "tl_it_%d_", (int)getpid());
}

/* Runner process, once: what a test killed on timeout could not release. */
static void it_services_sweep(void) {
    char err[512];
    if (it_pg_dsn != NULL && it_db_tag[0] != '\0' &&
        tl_test_pg_drop_dbs_like(it_pg_dsn, it_db_tag, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
    if (it_brokers != NULL && it_run_tag[0] != '\0' &&
        tl_test_kafka_delete_topics(it_brokers, it_run_tag, 10000, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
}

static void it_setup(void) {
    memset(&it, 0, sizeof it);
}

static void it_teardown(void) {
    it_cleanup(1);
}

/* A fresh database, migrated, and a server on it talking to `brokers`;
 * waits for /readyz when `ready`.  extra: more serve flags
 * (NULL-terminated) or NULL. */
static void it_begin_on(const char *brokers, int ready, const char *const *extra) {
    char err[1024];
    int n = ++it_seq;
    snprintf(it.prefix, sizeof it.prefix, "%sx%dx%d", it_run_tag, (int)getpid(), n);
    snprintf(it.db, sizeof it.db, "%s%d_%d", it_db_tag, (int)getpid(), n);
    IT_ASSERT(tl_test_pg_dsn_for(it_pg_dsn, it.db, it.dsn, sizeof it.dsn) == 0, "DSN too long");
    IT_ASSERT(tl_test_pg_create_db(it_pg_dsn, it.db, err, sizeof err) == 0, "%s", err);
    it.have_db = 1;

    /* These tests read over REST without keys. */
    const char *args[16] = {"--auth", "off"};
    for (int i = 0; extra && extra[i] && i < 13; i++) args[i + 2] = extra[i];
    IT_ASSERT(tl_test_serve_init(&it.serve, it_exe, brokers, it.dsn, it.prefix,
                                 IT_PARTITIONS, args, err, sizeof err) == 0,
              "%s", err);
    it.have_serve = 1;

    char *migrate[] = {(char *)it_exe, "migrate", "--pg-dsn", it.dsn, NULL};
    int rc = tl_test_run(migrate, it.serve.log_path, 60000, err, sizeof err);
    IT_ASSERT(rc == 0, "threadline migrate --pg-dsn \"%s\": %s", it.dsn,
              rc < 0 ? err : "non-zero exit (see the log above)");

    IT_ASSERT(tl_test_serve_start(&it.serve, err, sizeof err) == 0, "%s", err);
    if (ready)
        IT_ASSERT(tl_test_serve_wait_ready(&it.serve, IT_READY_MS, err, sizeof err) == 0,
                  "serve not ready: %s", err);

    it.pg = tl_test_pg_connect(it.dsn, err, sizeof err);
    IT_ASSERT(it.pg != NULL, "%s", err);
}

/* The usual start: the real broker, ready. */
static void it_begin(const char *const *extra) { it_begin_on(it_brokers, 1, extra); }

/* --------------------------------------------------------------- messages */

/* What a connector knows about one message it sent. */
typedef struct it_msg {
    int customer, seq;
    char message_id[32];
    int64_t sent_at;
    int acked;              /* got 202 */
    int attempts;
    int duplicate;          /* the 202 said "duplicate":true */
    char event_id[40];
    char customer_id[40];
    int partition;
    int64_t offset;
} it_msg_t;

typedef struct it_batch {
    int customers, per_customer;
    it_msg_t *msgs; /* [customer * per_customer + seq] */
} it_batch_t;

static it_msg_t *it_msg_at(const it_batch_t *b, int customer, int seq) {
    return &b->msgs[(size_t)customer * (size_t)b->per_customer + (size_t)seq];
}

static void it_batch_init(it_batch_t *b, int customers, int per_customer) {
    b->customers = customers;
    b->per_customer = per_customer;
    b->msgs = calloc((size_t)customers * (size_t)per_customer, sizeof *b->msgs);
    IT_ASSERT(b->msgs != NULL, "out of memory");
    for (int c = 0; c < customers; c++)
        for (int s = 0; s < per_customer; s++) {
            it_msg_t *m = it_msg_at(b, c, s);
            m->customer = c;
            m->seq = s;
            m->partition = -1;
            /* Unique per visitor only, as a web widget's ids are: every
             * customer reuses the same ids, which must not collide. */
            snprintf(m->message_id, sizeof m->message_id, "m-%d", s);
        }
}

/* The ingest body for m; malloc'ed. */
static char *it_msg_body(const it_msg_t *m) {
    char visitor[32], text[64];
    snprintf(visitor, sizeof visitor, "v-%d", m->customer);
    snprintf(text, sizeof text, "msg %d %d", m->customer, m->seq);
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s}", "tenant_id", IT_TENANT, "visitor_id",
                          visitor, "message_id", m->message_id, "sent_at",
                          (json_int_t)m->sent_at, "text", text);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

/* Reads a 202 answer into m.  Returns 0, or -1 with a message. */
static int it_parse_ack(const tl_test_resp_t *resp, it_msg_t *m, char *err, size_t errlen) {
    json_error_t je;
    json_t *j = json_loads(resp->body, 0, &je);
    const char *event_id = NULL, *customer_id = NULL, *position = NULL;
    int duplicate = 0;
    /* position is null when the broker acknowledged without an offset (an
     * idempotent retry of a record it already had). */
    json_t *pos = NULL;
    if (j == NULL || json_unpack_ex(j, &je, 0, "{s:s, s:s, s:b, s:o}", "event_id", &event_id,
                                    "customer_id", &customer_id, "duplicate", &duplicate,
                                    "position", &pos) != 0 ||
        !(json_is_string(pos) || json_is_null(pos))) {
        snprintf(err, errlen, "202 body for %s is not {event_id, customer_id, duplicate, "
                 "position}: %s (%s)", m->message_id, resp->body, je.text);
        json_decref(j);
        return -1;
    }
    position = json_is_string(pos) ? json_string_value(pos) : NULL;
    int partition = -1;
    long long offset = -1;
    char tail;
    if (position &&
        (sscanf(position, "%d:%lld%c", &partition, &offset, &tail) != 2 || partition < 0 ||
         partition >= IT_PARTITIONS || offset < 0)) {
        snprintf(err, errlen, "202 for %s: position \"%s\" is not <partition>:<offset> with "
                 "partition < %d", m->message_id, position, IT_PARTITIONS);
        json_decref(j);
        return -1;
    }
    snprintf(m->event_id, sizeof m->event_id, "%s", event_id);
    snprintf(m->customer_id, sizeof m->customer_id, "%s", customer_id);
    m->duplicate = duplicate;
    m->partition = partition;
    m->offset = offset;
    json_decref(j);
    return 0;
}

/* One thread of connector traffic: its customers' messages, round-robin
 * across them, each customer's strictly one after the other. */
typedef struct it_client {
    pthread_t th;
    it_batch_t *batch;
    const char *base_url;
    int first, count;        /* customers [first, first + count) */
    int retry;               /* retry refused/reset/503 with the same id */
    int64_t retry_ms;        /* per message, from its first attempt */
    atomic_int *acks;        /* shared count of 202s */
    char error[768];         /* the first failure; "" if none */
} it_client_t;

/* Posts m until it gets 202 (or once, without retry).  Returns 0 on 202. */
static int it_client_post(it_client_t *cl, CURL *curl, const char *url, it_msg_t *m,
                          int64_t prev_sent_at) {
    /* sent_at is the browser clock at send time; a customer's next message
     * is never stamped before the previous one. */
    int64_t now = tl_test_now_ms();
    m->sent_at = now > prev_sent_at ? now : prev_sent_at;
    char *body = it_msg_body(m);
    if (body == NULL) {
        snprintf(cl->error, sizeof cl->error, "out of memory");
        return -1;
    }
    int64_t deadline = tl_test_mono_ms() + cl->retry_ms;
    int ret = -1;
    for (;;) {
        tl_test_resp_t resp;
        m->attempts++;
        tl_test_http(curl, "POST", url, body, strlen(body), IT_POST_TIMEOUT_MS, &resp);
        if (resp.status == 202) {
            char err[512];
            if (it_parse_ack(&resp, m, err, sizeof err) == 0) {
                m->acked = 1;
                atomic_fetch_add(cl->acks, 1);
                ret = 0;
            } else {
                snprintf(cl->error, sizeof cl->error, "%s", err);
            }
            tl_test_resp_close(&resp);
            break;
        }
        int retriable = resp.status == 0 || resp.status == 503;
        if (!cl->retry || !retriable || tl_test_mono_ms() > deadline) {
            snprintf(cl->error, sizeof cl->error,
                     "POST %s (attempt %d): %ld %s%s%s", m->message_id, m->attempts,
                     resp.status, resp.status ? resp.content_type : resp.error,
                     resp.status ? " " : "", resp.status ? resp.body : "");
            tl_test_resp_close(&resp);
            break;
        }
        /* 503 says when; a refused connection means the server is coming
         * back: either way pause briefly and resend the same message id. */
        int64_t pause = 200;
        if (resp.retry_after[0] != '\0') {
            int64_t ra = strtoll(resp.retry_after, NULL, 10) * 1000;
            pause = ra < 100 ? 100 : ra > 1000 ? 1000 : ra;
        }
        tl_test_resp_close(&resp);
        tl_test_sleep_ms(pause);
    }
    free(body);
    return ret;
}

static void *it_client_main(void *opaque) {
    it_client_t *cl = opaque;
    it_batch_t *b = cl->batch;
    char url[128];
    snprintf(url, sizeof url, "%s/v1/ingest/web", cl->base_url);
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(cl->error, sizeof cl->error, "curl_easy_init failed");
        return NULL;
    }
    for (int s = 0; s < b->per_customer && cl->error[0] == '\0'; s++)
        for (int c = cl->first; c < cl->first + cl->count && cl->error[0] == '\0'; c++) {
            int64_t prev = s > 0 ? it_msg_at(b, c, s - 1)->sent_at : 0;
            it_client_post(cl, curl, url, it_msg_at(b, c, s), prev);
        }
    curl_easy_cleanup(curl);
    return NULL;
}

/* Starts nthreads clients sharing the batch's customers evenly. */
static it_client_t *it_clients_start(it_batch_t *b, int nthreads, int retry, atomic_int *acks) {
    it_client_t *cls = calloc((size_t)nthreads, sizeof *cls);
    IT_ASSERT(cls != NULL, "out of memory");
    IT_ASSERT(b->customers % nthreads == 0, "customers must split evenly over threads");
    int per = b->customers / nthreads;
    for (int i = 0; i < nthreads; i++) {
        it_client_t *cl = &cls[i];
        cl->batch = b;
        cl->base_url = it.serve.base_url;
        cl->first = i * per;
        cl->count = per;
        cl->retry = retry;
        cl->retry_ms = 120000;
        cl->acks = acks;
        int rc = pthread_create(&cl->th, NULL, it_client_main, cl);
        IT_ASSERT(rc == 0, "pthread_create: %s", strerror(rc));
    }
    return cls;
}

/* Joins the clients; fails with the first client error, if any. */
static void it_clients_join(it_client_t *cls, int nthreads) {
    for (int i = 0; i < nthreads; i++)
        pthread_join(cls[i].th, NULL);
    for (int i = 0; i < nthreads; i++)
        IT_ASSERT(cls[i].error[0] == '\0', "client %d: %s", i, cls[i].error);
    free(cls);
}

/* ------------------------------------------------------------- timeline */

static int64_t it_timeline_count(void) {
    char err[1024];
    int64_t n = -1;
    const char *params[] = {IT_TENANT};
    IT_ASSERT(tl_test_pg_int(it.pg, "SELECT count(*) FROM view_agent WHERE tenant_id = $1", 1,
                             params, &n, err, sizeof err) == 0,
              "%s", err);
    return n;
}

/* When rows are missing: which acknowledged messages (by the log position
 * their 202 named) have no row, and how far each view's projection says it
 * got in that partition -- so a failure tells the fold's loss from the
 * projection's. */
static void it_missing_report(const it_batch_t *b, tl_test_report_t *rep) {
    char err[1024];
    for (int c = 0; b && c < b->customers; c++)
        for (int s = 0; s < b->per_customer; s++) {
            const it_msg_t *m = it_msg_at(b, c, s);
            if (!m->acked) continue;
            char part[16], off[32];
            snprintf(part, sizeof part, "%d", m->partition);
            snprintf(off, sizeof off, "%" PRId64, m->offset);
            const char *params[] = {IT_TENANT, m->event_id};
            int64_t have = -1;
            if (tl_test_pg_int(it.pg, "SELECT count(*) FROM view_agent WHERE tenant_id = $1"
                               " AND event_id = $2", 2, params, &have, err, sizeof err) || have != 0)
                continue;
            PGresult *r = tl_test_pg_query(it.pg,
                                           "SELECT string_agg(consumer || '@' || source_offset, ' ')"
                                           " FROM projection_positions WHERE partition = $1::int",
                                           1, (const char *[]){part}, err, sizeof err);
            tl_test_report(rep, "%s (%s, %d attempt(s), duplicate %d) at %d:%" PRId64
                           " (-1: no position in the 202) has no row; projections at that partition: %s",
                           m->message_id, m->event_id, m->attempts, m->duplicate, m->partition, m->offset,
                           r && PQntuples(r) ? PQgetvalue(r, 0, 0) : err);
            PQclear(r);
        }
}

/* Polls until the tenant's timeline holds at least want rows (then waits a
 * little longer so late duplicates would show), up to timeout_ms.  b: the
 * messages sent, for the report when rows are missing (may be NULL). */
static int64_t it_timeline_wait(const it_batch_t *b, int64_t want, int timeout_ms) {
    int64_t deadline = tl_test_mono_ms() + timeout_ms;
    int64_t n = it_timeline_count();
    while (n < want && tl_test_mono_ms() < deadline) {
        tl_test_sleep_ms(250);
        n = it_timeline_count();
    }
    if (n < want) {
        tl_test_report_t rep = {.text = ""};
        it_missing_report(b, &rep);
        IT_FAIL("timeline holds %" PRId64 " of %" PRId64 " rows after %d ms:%s", n, want, timeout_ms,
                rep.text);
    }
    tl_test_sleep_ms(2000);
    return it_timeline_count();
}


/* Checks the tenant's timeline against what the connectors were told:
 * every acknowledged message exactly once, nothing else, no event id twice,
 * each customer's messages in the order they were sent.  strict: no message
 * was retried, so each row must sit at the log position its 202 named. */
static void it_timeline_check(const it_batch_t *b, int strict) {
    char err[1024];
    const char *params[] = {IT_TENANT};
    int64_t acked = 0;
    for (int c = 0; c < b->customers; c++)
        for (int s = 0; s < b->per_customer; s++)
            acked += it_msg_at(b, c, s)->acked;

    PGresult *r = tl_test_pg_query(
        it.pg,
        "SELECT count(*), count(DISTINCT (customer_id, idempotency_key)), count(DISTINCT event_id) "
        "FROM view_agent WHERE tenant_id = $1",
        1, params, err, sizeof err);
    IT_ASSERT(r != NULL, "%s", err);
    int64_t rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    int64_t keys = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    int64_t events = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    PQclear(r);
    if (rows != keys) {
        r = tl_test_pg_query(it.pg,
                             "SELECT idempotency_key, count(*), string_agg(event_id || '@' || "
                             "source_partition || ':' || source_offset, ' ') FROM view_agent "
                             "WHERE tenant_id = $1 GROUP BY customer_id, 1 HAVING count(*) > 1 LIMIT 5",
                             1, params, err, sizeof err);
        tl_test_report_t rep = {.text = ""};
        for (int i = 0; r != NULL && i < PQntuples(r); i++)
            tl_test_report(&rep, "%s x%s: %s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                      PQgetvalue(r, i, 2));
        PQclear(r);
        IT_FAIL("timeline has %" PRId64 " rows but %" PRId64 " distinct idempotency keys "
                "(a message applied twice); e.g.:%s", rows, keys, rep.text);
    }
    IT_ASSERT(events == rows, "timeline has %" PRId64 " rows but %" PRId64 " distinct event ids",
              rows, events);
    IT_ASSERT(rows == acked, "timeline has %" PRId64 " rows, %" PRId64 " messages were acknowledged",
              rows, acked);

    r = tl_test_pg_query(it.pg,
                         "SELECT idempotency_key, event_id, customer_id, kind, body->>'text', "
                         "source_partition, source_offset, "
                         "round(extract(epoch FROM effective_ts) * 1000)::bigint "
                         "FROM view_agent WHERE tenant_id = $1 "
                         "ORDER BY customer_id, effective_ts, source_partition, source_offset",
                         1, params, err, sizeof err);
    IT_ASSERT(r != NULL, "%s", err);
    int *last = malloc(sizeof *last * (size_t)b->customers);
    char *seen = calloc((size_t)b->customers * (size_t)b->per_customer, 1);
    IT_ASSERT(last != NULL && seen != NULL, "out of memory");
    for (int c = 0; c < b->customers; c++)
        last[c] = -1;
    tl_test_report_t rep = {.text = ""};
    for (int i = 0; i < PQntuples(r); i++) {
        const char *key = PQgetvalue(r, i, 0), *event_id = PQgetvalue(r, i, 1);
        const char *customer_id = PQgetvalue(r, i, 2), *kind = PQgetvalue(r, i, 3);
        const char *text = PQgetvalue(r, i, 4);
        int partition = atoi(PQgetvalue(r, i, 5));
        int64_t offset = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        int64_t ets = strtoll(PQgetvalue(r, i, 7), NULL, 10);
        int c = -1, s = -1;
        char tail;
        char want_key[32];
        if (sscanf(text, "msg %d %d%c", &c, &s, &tail) != 2 || c < 0 || c >= b->customers ||
            s < 0 || s >= b->per_customer) {
            tl_test_report(&rep, "row %s: text \"%s\" was never sent", event_id, text);
            continue;
        }
        snprintf(want_key, sizeof want_key, "web:m-%d", s);
        if (strcmp(key, want_key) != 0)
            tl_test_report(&rep, "row %s: idempotency key \"%s\", sent \"%s\"", event_id, key, want_key);
        const it_msg_t *m = it_msg_at(b, c, s);
        char want_text[64];
        snprintf(want_text, sizeof want_text, "msg %d %d", c, s);
        if (!m->acked)
            tl_test_report(&rep, "%s: in the timeline but never acknowledged", key);
        if (seen[(size_t)c * (size_t)b->per_customer + (size_t)s]++)
            tl_test_report(&rep, "%s: twice", key);
        if (s <= last[c])
            tl_test_report(&rep, "v-%d: seq %d sits after seq %d (effective_ts %" PRId64 ", %d:%" PRId64
                      ")", c, s, last[c], ets, partition, offset);
        last[c] = s;
        if (strcmp(text, want_text) != 0)
            tl_test_report(&rep, "%s: body text \"%s\", sent \"%s\"", key, text, want_text);
        if (strcmp(kind, "MessageReceived") != 0)
            tl_test_report(&rep, "%s: kind \"%s\"", key, kind);
        if (m->acked && strcmp(customer_id, m->customer_id) != 0)
            tl_test_report(&rep, "%s: customer %s, the 202 said %s", key, customer_id, m->customer_id);
        if (m->acked && m->partition >= 0 && partition != m->partition)
            tl_test_report(&rep, "%s: partition %d, the 202 said %d", key, partition, m->partition);
        /* effective_ts = clamp(sent_at, received_at - max_skew, received_at):
         * the gateway received it after the client stamped it. */
        if (ets > m->sent_at || ets < m->sent_at - 5000)
            tl_test_report(&rep, "%s: effective_ts %" PRId64 ", sent_at %" PRId64, key, ets,
                      m->sent_at);
        /* A resent message's row may be its first copy (written, though
         * not acknowledged): only a message sent once must sit where its
         * 202 said. */
        if (strict && m->attempts == 1 &&
            ((m->offset >= 0 && offset != m->offset) || strcmp(event_id, m->event_id) != 0))
            tl_test_report(&rep, "%s: event %s at %d:%" PRId64 ", the 202 said %s at %d:%" PRId64, key,
                      event_id, partition, offset, m->event_id, m->partition, m->offset);
    }
    PQclear(r);
    for (int c = 0; c < b->customers; c++)
        for (int s = 0; s < b->per_customer; s++)
            if (it_msg_at(b, c, s)->acked && !seen[(size_t)c * (size_t)b->per_customer + (size_t)s])
                tl_test_report(&rep, "v-%d m-%d: acknowledged (event %s) but not in the timeline", c, s,
                          it_msg_at(b, c, s)->event_id);
    free(last);
    free(seen);
    IT_ASSERT(rep.count == 0, "%d timeline problems:%s", rep.count, rep.text);
}

/* ------------------------------------------------------------------ REST */

/* GET path; the body as JSON (owned by the caller), status into *status. */
static json_t *it_get_json(CURL *curl, const char *path, long *status) {
    char url[512];
    snprintf(url, sizeof url, "%s%s", it.serve.base_url, path);
    tl_test_resp_t resp;
    int rc = tl_test_http(curl, "GET", url, NULL, 0, 10000, &resp);
    *status = resp.status;
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", rc == 0 ? resp.body : resp.error);
    json_error_t je;
    json_t *j = rc == 0 ? json_loads(resp.body, 0, &je) : NULL;
    tl_test_resp_close(&resp);
    IT_ASSERT(rc == 0, "GET %s: %s", path, copy);
    IT_ASSERT(j != NULL, "GET %s: %ld, body not JSON: %s", path, *status, copy);
    return j;
}

/* The customer's one conversation over REST: its header, then its timeline
 * holding exactly the customer's messages, in the order sent. */
static void it_rest_check(const it_batch_t *b, int c) {
    CURL *curl = curl_easy_init();
    IT_ASSERT(curl != NULL, "curl_easy_init failed");
    const it_msg_t *first = it_msg_at(b, c, 0);
    char path[256];
    long status;

    snprintf(path, sizeof path, "/v1/customers/%s?tenant=%s", first->customer_id, IT_TENANT);
    json_t *cust = it_get_json(curl, path, &status);
    char *dump = json_dumps(cust, JSON_COMPACT);
    char shown[1024];
    snprintf(shown, sizeof shown, "%s", dump ? dump : "?");
    free(dump);
    IT_ASSERT(status == 200, "GET %s: %ld %s", path, status, shown);
    json_t *convs = json_object_get(cust, "conversations");
    IT_ASSERT(json_is_string(json_object_get(cust, "customer_id")) &&
                  strcmp(json_string_value(json_object_get(cust, "customer_id")),
                         first->customer_id) == 0,
              "GET %s: customer_id: %s", path, shown);
    IT_ASSERT(json_is_array(convs) && json_array_size(convs) == 1,
              "GET %s: want one conversation: %s", path, shown);
    json_t *conv = json_array_get(convs, 0);
    const char *conv_id = json_string_value(json_object_get(conv, "conversation_id"));
    const char *conv_status = json_string_value(json_object_get(conv, "status"));
    json_t *version = json_object_get(conv, "version");
    IT_ASSERT(conv_id != NULL && conv_status != NULL && strcmp(conv_status, "open") == 0 &&
                  json_is_integer(version) &&
                  json_integer_value(version) == (json_int_t)b->per_customer,
              "GET %s: want an open conversation at version %d: %s", path, b->per_customer,
              shown);
    char conv_id_copy[64];
    snprintf(conv_id_copy, sizeof conv_id_copy, "%s", conv_id);
    json_decref(cust);

    snprintf(path, sizeof path, "/v1/conversations/%s/timeline?tenant=%s", conv_id_copy,
             IT_TENANT);
    json_t *tl = it_get_json(curl, path, &status);
    dump = json_dumps(tl, JSON_COMPACT);
    static char tl_shown[4096];
    snprintf(tl_shown, sizeof tl_shown, "%s", dump ? dump : "?");
    free(dump);
    IT_ASSERT(status == 200, "GET %s: %ld %s", path, status, tl_shown);
    const char *tl_conv = json_string_value(json_object_get(tl, "conversation_id"));
    IT_ASSERT(tl_conv != NULL && strcmp(tl_conv, conv_id_copy) == 0,
              "GET %s: conversation_id: %s", path, tl_shown);
    json_t *items = json_object_get(tl, "items");
    IT_ASSERT(json_is_array(items) && json_array_size(items) == (size_t)b->per_customer,
              "GET %s: want %d items: %s", path, b->per_customer, tl_shown);
    tl_test_report_t rep = {.text = ""};
    for (int s = 0; s < b->per_customer; s++) {
        const it_msg_t *m = it_msg_at(b, c, s);
        json_t *item = json_array_get(items, (size_t)s);
        const char *kind = json_string_value(json_object_get(item, "kind"));
        const char *platform = json_string_value(json_object_get(item, "platform"));
        const char *text = json_string_value(json_object_get(item, "text"));
        const char *key = json_string_value(json_object_get(item, "idempotency_key"));
        const char *event_id = json_string_value(json_object_get(item, "event_id"));
        json_t *ets = json_object_get(item, "effective_ts");
        char want_text[64], want_key[64];
        snprintf(want_text, sizeof want_text, "msg %d %d", c, s);
        snprintf(want_key, sizeof want_key, "web:%s", m->message_id);
        if (!kind || strcmp(kind, "MessageReceived") != 0 || !platform ||
            strcmp(platform, "web") != 0 || !text || strcmp(text, want_text) != 0 || !key ||
            strcmp(key, want_key) != 0 || !event_id || strcmp(event_id, m->event_id) != 0 ||
            !json_is_integer(ets) || json_integer_value(ets) > m->sent_at ||
            json_integer_value(ets) < m->sent_at - 5000) {
            char *d = json_dumps(item, JSON_COMPACT);
            tl_test_report(&rep, "item %d is %s; want %s \"%s\" event %s effective_ts ~%" PRId64, s,
                      d ? d : "?", want_key, want_text, m->event_id, m->sent_at);
            free(d);
        }
    }
    json_decref(tl);
    curl_easy_cleanup(curl);
    IT_ASSERT(rep.count == 0, "GET %s: %d items wrong:%s", path, rep.count, rep.text);
}

/* ------------------------------------------------------------------ tests */

START_TEST(pipeline_concurrent_messages_land_once_in_order) {
    enum { CUSTOMERS = 100, PER_CUSTOMER = 20, THREADS = 25 };
    it_begin(NULL);
    it_batch_t b;
    it_batch_init(&b, CUSTOMERS, PER_CUSTOMER);
    atomic_int acks = 0;
    int64_t t0 = tl_test_mono_ms();
    /* As connectors do: a 503 is resent with the same message id. */
    it_client_t *cls = it_clients_start(&b, THREADS, 1, &acks);
    it_clients_join(cls, THREADS);
    int64_t t1 = tl_test_mono_ms();
    IT_ASSERT(atomic_load(&acks) == CUSTOMERS * PER_CUSTOMER, "%d of %d acknowledged",
              atomic_load(&acks), CUSTOMERS * PER_CUSTOMER);

    /* One customer, one key, one partition. */
    tl_test_report_t rep = {.text = ""};
    for (int c = 0; c < CUSTOMERS; c++)
        for (int s = 1; s < PER_CUSTOMER; s++) {
            const it_msg_t *m0 = it_msg_at(&b, c, 0), *m = it_msg_at(&b, c, s);
            if (strcmp(m->customer_id, m0->customer_id) != 0 ||
                (m->partition >= 0 && m0->partition >= 0 && m->partition != m0->partition))
                tl_test_report(&rep, "v-%d: %s went to %s@%d, %s to %s@%d", c, m0->message_id,
                          m0->customer_id, m0->partition, m->message_id, m->customer_id,
                          m->partition);
            if (m->duplicate)
                tl_test_report(&rep, "%s: first send answered duplicate:true", m->message_id);
        }
    IT_ASSERT(rep.count == 0, "%d acknowledgement problems:%s", rep.count, rep.text);

    int64_t rows = it_timeline_wait(&b, CUSTOMERS * PER_CUSTOMER, 120000);
    fprintf(stderr, "pipeline: %d messages acknowledged in %" PRId64 " ms, %" PRId64
            " timeline rows %" PRId64 " ms later\n",
            CUSTOMERS * PER_CUSTOMER, t1 - t0, rows, tl_test_mono_ms() - t1);
    it_timeline_check(&b, 1);
    it_rest_check(&b, 42);
    free(b.msgs);
}
END_TEST

START_TEST(pipeline_sigkill_loses_nothing_acknowledged) {
    enum { CUSTOMERS = 30, PER_CUSTOMER = 50, THREADS = 10, KILL_AFTER = 300 };
    /* Fewer customer states in memory than customers: the crash lands while
     * states are being evicted and read back from the state topic. */
    static const char *const extra[] = {"--max-customers", "8", NULL};
    it_begin(extra);
    it_batch_t b;
    it_batch_init(&b, CUSTOMERS, PER_CUSTOMER);
    atomic_int acks = 0;
    it_client_t *cls = it_clients_start(&b, THREADS, 1, &acks);

    int64_t deadline = tl_test_mono_ms() + 60000;
    while (atomic_load(&acks) < KILL_AFTER && tl_test_mono_ms() < deadline)
        tl_test_sleep_ms(2);
    int at_kill = atomic_load(&acks);
    int st = tl_test_serve_stop(&it.serve, SIGKILL, 0);
    IT_ASSERT(at_kill >= KILL_AFTER, "only %d acknowledgements in 60 s before the kill", at_kill);
    IT_ASSERT(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
              "serve was not running when it was to be killed (status %d)", st);
    int at_restart = atomic_load(&acks);
    char err[1024];
    int64_t t_restart = tl_test_mono_ms();
    IT_ASSERT(tl_test_serve_start(&it.serve, err, sizeof err) == 0, "restart: %s", err);
    IT_ASSERT(tl_test_serve_wait_ready(&it.serve, IT_READY_MS, err, sizeof err) == 0,
              "restarted serve not ready: %s", err);
    int at_ready = atomic_load(&acks);
    int64_t ready_ms = tl_test_mono_ms() - t_restart;
    it_clients_join(cls, THREADS);

    int retried = 0, duplicates = 0;
    for (int c = 0; c < CUSTOMERS; c++)
        for (int s = 0; s < PER_CUSTOMER; s++) {
            retried += it_msg_at(&b, c, s)->attempts > 1;
            duplicates += it_msg_at(&b, c, s)->duplicate;
        }
    fprintf(stderr,
            "pipeline: SIGKILL after %d acknowledgements (%d at restart, %d when ready "
            "%" PRId64 " ms later); %d messages resent, %d answered duplicate\n",
            at_kill, at_restart, at_ready, ready_ms, retried, duplicates);
    IT_ASSERT(at_kill < CUSTOMERS * PER_CUSTOMER,
              "all messages were acknowledged before the kill: it did not land mid-stream");
    IT_ASSERT(atomic_load(&acks) == CUSTOMERS * PER_CUSTOMER, "%d of %d acknowledged",
              atomic_load(&acks), CUSTOMERS * PER_CUSTOMER);

    /* The fold's consumer group may wait out the killed member's session. */
    int64_t t_joined = tl_test_mono_ms();
    it_timeline_wait(&b, CUSTOMERS * PER_CUSTOMER, 150000);
    /* More records than messages in the log means some unacknowledged
     * first attempts landed before the kill and the fold had to drop them. */
    char err2[512], events[160];
    int64_t logged = -1;
    snprintf(events, sizeof events, "%s.events", it.prefix);
    if (tl_test_kafka_topic_size(it_brokers, events, 10000, &logged, err2, sizeof err2) != 0)
        fprintf(stderr, "pipeline: %s\n", err2);
    fprintf(stderr,
            "pipeline: timeline complete %" PRId64 " ms after the last acknowledgement; "
            "%s holds %" PRId64 " offsets for %d messages\n",
            tl_test_mono_ms() - t_joined, events, logged, CUSTOMERS * PER_CUSTOMER);
    it_timeline_check(&b, 0);
    free(b.msgs);
}
END_TEST

/* Posts body (len bytes); asserts status, problem+json and, if field is
 * not NULL, its "field". */
static void it_expect_problem(CURL *curl, const char *what, const char *body, size_t len,
                              long want_status, const char *want_field) {
    char url[128];
    snprintf(url, sizeof url, "%s/v1/ingest/web", it.serve.base_url);
    tl_test_resp_t resp;
    int rc = tl_test_http(curl, "POST", url, body, len, 10000, &resp);
    char got[1024], ctype[128];
    snprintf(got, sizeof got, "%s", rc == 0 ? resp.body : resp.error);
    snprintf(ctype, sizeof ctype, "%s", resp.content_type);
    long status = resp.status;
    int is_problem = tl_test_resp_is(&resp, "application/problem+json");
    tl_test_resp_close(&resp);
    IT_ASSERT(rc == 0, "%s: no answer: %s", what, got);
    IT_ASSERT(status == want_status, "%s: %ld, want %ld: %s", what, status, want_status, got);
    IT_ASSERT(is_problem, "%s: Content-Type \"%s\", want application/problem+json", what, ctype);
    json_error_t je;
    json_t *j = json_loads(got, 0, &je);
    IT_ASSERT(json_is_object(j), "%s: problem body is not a JSON object: %s", what, got);
    json_t *st = json_object_get(j, "status");
    int status_ok = st == NULL || (json_is_integer(st) && json_integer_value(st) == want_status);
    const char *field = json_string_value(json_object_get(j, "field"));
    int field_ok = want_field == NULL || (field != NULL && strcmp(field, want_field) == 0);
    json_decref(j);
    IT_ASSERT(status_ok, "%s: problem \"status\" differs from %ld: %s", what, want_status, got);
    IT_ASSERT(field_ok, "%s: want \"field\":\"%s\": %s", what, want_field, got);
}

START_TEST(pipeline_bad_input_gets_problem_json) {
    static const char *const extra[] = {"--max-body", "4096", NULL};
    it_begin(extra);
    CURL *curl = curl_easy_init();
    IT_ASSERT(curl != NULL, "curl_easy_init failed");
    char body[512];
    int64_t now = tl_test_now_ms();

    const char *truncated = "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-0\",\"message_id\":";
    it_expect_problem(curl, "malformed JSON", truncated, strlen(truncated), 400, NULL);

    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"message_id\":\"bad-1\",\"sent_at\":%" PRId64
             ",\"text\":\"no visitor\"}", now);
    it_expect_problem(curl, "missing visitor_id", body, strlen(body), 422, "visitor_id");

    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-0\",\"message_id\":\"bad-2\","
             "\"sent_at\":\"%" PRId64 "\",\"text\":\"string clock\"}", now);
    it_expect_problem(curl, "sent_at as a string", body, strlen(body), 422, "sent_at");

    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-0\",\"message_id\":\"bad-3\","
             "\"sent_at\":%" PRId64 ",\"text\":\"bad \xff\xfe bytes\"}", now);
    it_expect_problem(curl, "invalid UTF-8", body, strlen(body), 400, NULL);

    /* Well-formed but twice the --max-body limit. */
    size_t big_len = 8192;
    char *big = malloc(big_len + 1);
    IT_ASSERT(big != NULL, "out of memory");
    int head = snprintf(big, big_len, "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-0\","
                        "\"message_id\":\"bad-4\",\"sent_at\":%" PRId64 ",\"text\":\"", now);
    memset(big + head, 'x', big_len - (size_t)head - 2);
    memcpy(big + big_len - 2, "\"}", 3);
    it_expect_problem(curl, "body over --max-body", big, big_len, 413, NULL);
    free(big);

    /* A good message from the same visitor: it shares the partition any of
     * the bad ones would have taken, so once it is in the timeline, nothing
     * else got there ahead of it. */
    it_batch_t b;
    it_batch_init(&b, 1, 1);
    atomic_int acks = 0;
    it_client_t *cls = it_clients_start(&b, 1, 0, &acks);
    it_clients_join(cls, 1);
    int64_t rows = it_timeline_wait(NULL, 1, 60000);

    const char *params[] = {IT_TENANT};
    char err[1024];
    PGresult *r = tl_test_pg_query(it.pg,
                                   "SELECT idempotency_key FROM view_agent WHERE tenant_id = $1 "
                                   "AND idempotency_key <> 'web:m-0' ORDER BY 1",
                                   1, params, err, sizeof err);
    IT_ASSERT(r != NULL, "%s", err);
    char keys[512] = "";
    for (int i = 0; i < PQntuples(r); i++) {
        size_t used = strlen(keys);
        snprintf(keys + used, sizeof keys - used, " %s", PQgetvalue(r, i, 0));
    }
    int others = PQntuples(r);
    PQclear(r);
    IT_ASSERT(others == 0 && rows == 1, "rejected input reached the timeline (%" PRId64
              " rows):%s", rows, keys);
    curl_easy_cleanup(curl);
    free(b.msgs);
}
END_TEST

/* With no broker to talk to, serve still answers: not ready, and ingest
 * refuses with 503 and Retry-After instead of acknowledging anything. */
START_TEST(pipeline_kafka_down_answers_503_and_acknowledges_nothing) {
    static const char *const extra[] = {"--ack-timeout-ms", "1500", NULL};
    char dead[32], url[160], body[256];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", tl_test_free_port());
    it_begin_on(dead, 0, extra);
    CURL *curl = curl_easy_init();
    IT_ASSERT(curl != NULL, "curl_easy_init failed");
    tl_test_resp_t resp;
    long status = 0;
    snprintf(url, sizeof url, "%s/healthz", it.serve.base_url);
    for (int i = 0; i < 300 && status != 200; i++) {
        if (tl_test_http(curl, "GET", url, NULL, 0, 2000, &resp) == 0) status = resp.status;
        tl_test_resp_close(&resp);
        if (status != 200) tl_test_sleep_ms(100);
    }
    IT_ASSERT(status == 200, "serve never answered /healthz with Kafka down");

    snprintf(url, sizeof url, "%s/readyz", it.serve.base_url);
    IT_ASSERT(tl_test_http(curl, "GET", url, NULL, 0, 10000, &resp) == 0, "readyz: %s", resp.error);
    status = resp.status;
    int problem = tl_test_resp_is(&resp, "application/problem+json");
    tl_test_resp_close(&resp);
    IT_ASSERT(status == 503 && problem, "readyz with Kafka down: %ld, want 503 problem+json", status);

    snprintf(url, sizeof url, "%s/v1/ingest/web", it.serve.base_url);
    snprintf(body, sizeof body,
             "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-0\",\"message_id\":\"down-1\","
             "\"sent_at\":%" PRId64 ",\"text\":\"is anyone there?\"}", tl_test_now_ms());
    int64_t t0 = tl_test_mono_ms();
    IT_ASSERT(tl_test_http(curl, "POST", url, body, strlen(body), 20000, &resp) == 0,
              "ingest: %s", resp.error);
    int64_t took = tl_test_mono_ms() - t0;
    status = resp.status;
    problem = tl_test_resp_is(&resp, "application/problem+json");
    int retry = resp.retry_after[0] != 0;
    char got[512];
    snprintf(got, sizeof got, "%s", resp.body ? resp.body : "");
    tl_test_resp_close(&resp);
    curl_easy_cleanup(curl);
    IT_ASSERT(status == 503, "ingest with Kafka down: %ld, want 503: %s", status, got);
    IT_ASSERT(problem && retry, "503 must be problem+json with Retry-After: %s", got);
    IT_ASSERT(took < 10000, "503 took %lld ms; the ack timeout is 1500 ms", (long long)took);
    IT_ASSERT(it_timeline_count() == 0, "something reached the timeline with Kafka down");
    printf("pipeline: Kafka down: readyz 503, ingest 503 with Retry-After after %lld ms\n",
           (long long)took);
}
END_TEST

Suite *tl_pipeline_suite(void) {
    Suite *s = suite_create("pipeline");
    TCase *tc = tcase_create("services");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, it_services_check, it_services_sweep);
    tcase_add_checked_fixture(tc, it_setup, it_teardown);
    tcase_add_test(tc, pipeline_concurrent_messages_land_once_in_order);
    tcase_add_test(tc, pipeline_sigkill_loses_nothing_acknowledged);
    tcase_add_test(tc, pipeline_bad_input_gets_problem_json);
    tcase_add_test(tc, pipeline_kafka_down_answers_503_and_acknowledges_nothing);
    suite_add_tcase(s, tc);
    return s;
}
