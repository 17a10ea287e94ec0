/*
 * bench_api.c -- GET /v1/conversations/{id}/timeline of a 200-item
 * conversation, paced at a fixed rate over kept-alive connections.
 *
 *   bench_api [RATE [SECONDS [CONNECTIONS]]]      defaults 1000, 10 and 8
 *
 * Creates a scratch database (tl_bench_api_<pid>, migrated, dropped at the
 * end) holding one conversation with 200 agent-view items and an admin
 * key, then starts `threadline serve` (../tools/threadline or
 * $TL_THREADLINE; --fold 0 --project 0, so only the REST reads use the two
 * cores) on a free port of 127.0.0.1 and waits for /readyz.
 *
 * The client: CONNECTIONS threads, each with one kept-alive HTTP/1.1
 * connection and one request in flight, together sending RATE requests per
 * second on a fixed schedule.  Latency runs from a request's scheduled
 * send time (not the moment it was actually sent) to the last byte of its
 * answer, so a slow answer that delays the next request is charged to the
 * requests it delayed too (no coordinated omission).  Only 200 with the
 * whole body counts; anything else is an error.  The loop is bounded: it
 * stops after SECONDS, and a request unanswered 5 s later is an error.
 *
 * Prints:
 *   bench_api rps=N p99_ms=N p50_ms=N max_ms=N requests=N errors=N
 *     items=200 connections=C rate=R seconds=S body_bytes=B
 * rps is answered requests per second of the run.  The target is p99 at
 * most 5 ms at 1,000 requests per second.  Exits 1 on any error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "auth.h"
#include "config.h"
#include "error.h"
#include "harness.h"
#include "kafka.h"
#include "pg.h"
#include "workload.h"

#define ITEMS 200
#define READY_S 60.0
#define ANSWER_S 5.0
#define CONV "00000000-0000-4000-8000-00000000be01"
#define CUST "00000000-0000-4000-8000-00000000be02"

static void sleep_until(double t) {
    double d = t - tl_workload_now();
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    nanosleep(&ts, NULL);
}

typedef struct worker {
    pthread_t thread;
    int port;
    const char *request;
    size_t request_len;
    double start, interval, end;
    double *lat;            /* seconds, one per answered request */
    long n, cap, errors, body_bytes;
    char first_error[160];
} worker_t;

static int connect_to(int port) {
    int fd = tl_harness_connect(port);
    if (fd < 0) return -1;
    struct timeval tv = {(time_t)ANSWER_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Reads one HTTP/1.1 answer on fd; returns its status (body length in
 * *blen) or -1 on a transport error. */
static int read_answer(int fd, char *buf, size_t cap, long *blen) {
    size_t have = 0;
    char *hend = NULL;
    while (!hend) {
        if (have == cap - 1) return -1;
        ssize_t k = recv(fd, buf + have, cap - 1 - have, 0);
        if (k <= 0) return -1;
        have += (size_t)k;
        buf[have] = 0;
        hend = strstr(buf, "\r\n\r\n");
    }
    int status = have > 12 ? atoi(buf + 9) : -1;
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (!cl || cl > hend) return -1;
    long len = strtol(cl + 17, NULL, 10);
    size_t need = (size_t)(hend + 4 - buf) + (size_t)len;
    while (have < need) {
        size_t want = need - have < cap - 1 ? need - have : cap - 1;
        ssize_t k = recv(fd, buf, want, 0);     /* the body: only its length matters */
        if (k <= 0) return -1;
        have += (size_t)k;
    }
    *blen = len;
    return status;
}

static void fail(worker_t *w, const char *what) {
    if (!w->errors++) snprintf(w->first_error, sizeof w->first_error, "%s", what);
}

static void *run_worker(void *arg) {
    worker_t *w = arg;
    static _Thread_local char buf[1 << 20];
    int fd = connect_to(w->port);
    for (long i = 0;; i++) {
        double due = w->start + (double)i * w->interval;
        if (due >= w->end) break;
        sleep_until(due);
        if (fd < 0 && (fd = connect_to(w->port)) < 0) {
            fail(w, "connect failed");
            continue;
        }
        long blen = 0;
        int status = -1;
        if (send(fd, w->request, w->request_len, MSG_NOSIGNAL) == (ssize_t)w->request_len)
            status = read_answer(fd, buf, sizeof buf, &blen);
        double done = tl_workload_now();
        if (status != 200) {
            char what[64];
            snprintf(what, sizeof what, status < 0 ? "transport error" : "status %d", status);
            fail(w, what);
            close(fd);
            fd = -1;
            continue;
        }
        if (w->n == w->cap) {
            long ncap = w->cap ? w->cap * 2 : 4096;
            double *nl = realloc(w->lat, sizeof *nl * (size_t)ncap);
            if (!nl) {
                fail(w, "out of memory");
                break;
            }
            w->lat = nl;
            w->cap = ncap;
        }
        w->lat[w->n++] = done - due;
        w->body_bytes = blen;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------ setup */

static int exec_sql(PGconn *pg, const char *sql) {
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "bench_api: %s", PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

/* The scratch database: migrated, one 200-item conversation, an admin key. */
static int seed(const char *dsn, char *token) {
    int err, applied;
    PGconn *pg = tl_pg_connect(dsn, &err);
    if (!pg) return -1;
    char msg[256];
    tl_auth_new_key_t nk = {"bench", TL_ROLE_ADMIN, NULL, NULL, NULL, "bench_api"};
    int rc = tl_pg_migrate(pg, &applied) ||
             exec_sql(pg, "INSERT INTO customers VALUES ('bench', '" CUST "', 1, '{web}', now(), now())") ||
             exec_sql(pg, "INSERT INTO conversations (tenant_id, conversation_id, customer_id, version,"
                          " opened_at, last_activity, item_count, platforms) VALUES"
                          " ('bench', '" CONV "', '" CUST "', 200, now(), now(), 200, '{web,app}')") ||
             exec_sql(pg, "INSERT INTO view_agent (tenant_id, event_id, conversation_id, customer_id, kind,"
                          " platform, source_label, effective_ts, occurred_at, received_at, source_partition,"
                          " source_offset, idempotency_key, body, part)"
                          " SELECT 'bench', 'ev-' || g, '" CONV "', '" CUST "', 'MessageReceived',"
                          " CASE WHEN g % 2 = 0 THEN 'web' ELSE 'app' END, 'web',"
                          " now() - interval '1 day' + g * interval '1 minute', now(), now(), 0, g,"
                          " 'web:m' || g, json_build_object('text', 'message number ' || g ||"
                          " ' about order 2023-' || g, 'attachments', '[]'::json)::jsonb, 0"
                          " FROM generate_series(1, 200) g") ||
             exec_sql(pg, "ANALYZE") ||
             tl_auth_key_create(pg, &nk, token, msg, sizeof msg);
    PQfinish(pg);
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    int rate = 1000, seconds = 10, conns = 8;
    if ((argc > 1 && tl_harness_parse_arg("bench_api", argv[1], "RATE", 100000, &rate)) ||
        (argc > 2 && tl_harness_parse_arg("bench_api", argv[2], "SECONDS", 600, &seconds)) ||
        (argc > 3 && tl_harness_parse_arg("bench_api", argv[3], "CONNECTIONS", 256, &conns)) || argc > 4) {
        fprintf(stderr, "usage: bench_api [RATE [SECONDS [CONNECTIONS]]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *brokers = getenv("TL_KAFKA_BROKERS"), *base = getenv("TL_PG_DSN");
    if (!brokers || !*brokers || !base || !*base) {
        fprintf(stderr, "bench_api: TL_KAFKA_BROKERS and TL_PG_DSN must be set (run it with tools/bench api)\n");
        return 1;
    }
    char exe[PATH_MAX];
    if (tl_harness_threadline(exe, sizeof exe)) return 1;

    pid_t me = getpid();
    char db[64], dsn[1024], prefix[64], log[128], addr[64], token[TL_AUTH_TOKEN_LEN + 1], sql[128];
    snprintf(db, sizeof db, "tl_bench_api_%d", (int)me);
    snprintf(dsn, sizeof dsn, "%s dbname=%s", base, db);
    snprintf(prefix, sizeof prefix, "benchapi%d", (int)me);
    snprintf(log, sizeof log, "/tmp/bench-api-%d.log", (int)me);
    int err;
    PGconn *admin = tl_pg_connect(base, &err);
    if (!admin) return 1;
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    if (exec_sql(admin, sql)) {
        PQfinish(admin);
        return 1;
    }
    tl_config_t cfg;
    tl_kafka_t *kafka = NULL;
    tl_config_init(&cfg);
    cfg.kafka_brokers = brokers;
    cfg.prefix = prefix;
    int status = 1, port = tl_harness_free_port();
    pid_t serve = -1;
    worker_t *ws = calloc((size_t)conns, sizeof *ws);
    if (!ws || tl_kafka_new(&cfg, &kafka) || seed(dsn, token)) goto out;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    char *sargv[] = {exe, "serve", "--http", addr, "--kafka-brokers", (char *)brokers, "--pg-dsn", dsn,
                     "--prefix", prefix, "--partitions", "1", "--fold", "0", "--project", "0", NULL};
    fprintf(stderr, "bench_api: threadline serve on %s, database %s, log %s\n", addr, db, log);
    if (port < 0 || (serve = tl_harness_spawn(sargv, log)) < 0 ||
        tl_harness_wait_ready(serve, port, READY_S)) {
        fprintf(stderr, "bench_api: threadline serve did not get ready\n");
        goto out;
    }
    char request[512];
    int rlen = snprintf(request, sizeof request,
                        "GET /v1/conversations/" CONV "/timeline HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Authorization: Bearer %s\r\n\r\n", token);
    /* Warm-up: connections and the pool threads' PostgreSQL sessions. */
    double t0 = tl_workload_now() + 0.1;
    for (int i = 0; i < conns; i++)
        ws[i] = (worker_t){.port = port, .request = request, .request_len = (size_t)rlen,
                           .start = t0 + (double)i / rate, .interval = (double)conns / rate, .end = t0 + 1.0};
    for (int i = 0; i < conns; i++) pthread_create(&ws[i].thread, NULL, run_worker, &ws[i]);
    for (int i = 0; i < conns; i++) pthread_join(ws[i].thread, NULL);
    for (int i = 0; i < conns; i++) free(ws[i].lat);

    t0 = tl_workload_now() + 0.1;
    for (int i = 0; i < conns; i++)
        ws[i] = (worker_t){.port = port, .request = request, .request_len = (size_t)rlen,
                           .start = t0 + (double)i / rate, .interval = (double)conns / rate,
                           .end = t0 + seconds};
    for (int i = 0; i < conns; i++) pthread_create(&ws[i].thread, NULL, run_worker, &ws[i]);
    for (int i = 0; i < conns; i++) pthread_join(ws[i].thread, NULL);
    double elapsed = tl_workload_now() - t0;

    long n = 0, errors = 0, body = 0;
    for (int i = 0; i < conns; i++) n += ws[i].n, errors += ws[i].errors, body = ws[i].body_bytes ? ws[i].body_bytes : body;
    double *all = malloc(sizeof *all * (size_t)(n ? n : 1));
    if (!all) goto out;
    long k = 0;
    for (int i = 0; i < conns; i++)
        for (long j = 0; j < ws[i].n; j++) all[k++] = ws[i].lat[j];
    qsort(all, (size_t)n, sizeof *all, cmp_double);
    double p99 = n ? all[(size_t)((double)(n - 1) * 0.99)] : 0, p50 = n ? all[(size_t)(n - 1) / 2] : 0;
    double mx = n ? all[n - 1] : 0;
    free(all);
    printf("bench_api rps=%.0f p99_ms=%.2f p50_ms=%.2f max_ms=%.2f requests=%ld errors=%ld items=%d "
           "connections=%d rate=%d seconds=%d body_bytes=%ld\n",
           (double)n / elapsed, p99 * 1e3, p50 * 1e3, mx * 1e3, n, errors, ITEMS, conns, rate, seconds, body);
    fflush(stdout);
    for (int i = 0; i < conns; i++)
        if (ws[i].errors) fprintf(stderr, "bench_api: connection %d: %ld errors, first: %s\n", i, ws[i].errors, ws[i].first_error);
    status = errors == 0 && n > 0 ? 0 : 1;

out:
    tl_harness_stop(serve);
    if (ws)
        for (int i = 0; i < conns; i++) free(ws[i].lat);
    free(ws);
    if (kafka) tl_kafka_delete_topics(kafka, 30000);
    tl_kafka_free(kafka);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    exec_sql(admin, sql);
    PQfinish(admin);
    if (status == 0) unlink(log);
    else fprintf(stderr, "bench_api: the serve log is %s\n", log);
    return status;
}
