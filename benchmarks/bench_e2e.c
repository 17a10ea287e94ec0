/*
 * bench_e2e.c -- the whole pipeline: ingest over HTTP, fold, and every
 * projection worker committing into PostgreSQL.
 *
 *   bench_e2e [CUSTOMERS [MESSAGES [SECONDS]]]     defaults 400, 100 and 4
 *
 * (40,000 events: long enough that the sustained rate is the pipeline's
 * steady state, not its first fetches and batches.)
 *
 * Starts `threadline serve` (../tools/threadline beside this binary, or
 * $TL_THREADLINE) on a free port with a fresh prefix (benche2e<pid>) and a
 * fresh database (bench_e2e_<pid>, migrated) on $TL_KAFKA_BROKERS and
 * $TL_PG_DSN, all seven views on, and waits for /readyz.  Then:
 *
 *   1. sustained: CUSTOMERS x MESSAGES MessageReceived events, platforms
 *      rotating over web, app, mini_program, wechat, douyin and phone,
 *      posted to /v1/ingest/api over 64 kept-alive connections as fast as
 *      they are acknowledged; the clock stops when every one of the seven
 *      consumers' projection_positions has passed every acknowledged log
 *      position, i.e. when every view has committed every event;
 *   2. latency: for each offered rate (500, 2000, 5000 per second),
 *      SECONDS of open-loop traffic (requests start on schedule whether or
 *      not earlier ones were answered, up to 512 in flight); each event's
 *      latency runs from its 202 to the moment the agent consumer's
 *      projection_positions shows its position -- what REST's
 *      read-your-writes (?after=) waits on -- polled every 2 ms.
 *
 * Prints
 *   bench_e2e sustained_events_per_s=N events=N seconds=S views=7 ... ingest_seconds=S
 *     (ingest_seconds: until the last 202, for telling ingest from the rest)
 *   bench_e2e offered_per_s=N achieved_per_s=N p50_ms=N p99_ms=N events=N
 * and writes build/bench_e2e.csv (offered_per_s,achieved_per_s,p50_ms,
 * p99_ms) and build/bench_e2e.png (gnuplot; skipped with a note when
 * gnuplot is missing).  Exits 1 when a request fails or an event never
 * becomes visible within 60 s.  The serve log is /tmp/bench-e2e-<pid>.log;
 * the topics and the database are removed at the end (the log too, unless
 * TL_KEEP_LOG is set).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#include "config.h"
#include "harness.h"
#include "kafka.h"

#define MAX_INFLIGHT 512
#define NVIEWS 7
#define MAX_PARTS 64

static const char *const platforms[] = {"web", "app", "mini_program", "wechat", "douyin", "phone"};
static const char *const consumers[NVIEWS] = {"agent", "web", "app", "mini_program", "wechat", "douyin", "phone"};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One event sent. */
typedef struct ev {
    int part;
    int64_t off;
    double acked, visible;  /* 0 until then */
    int failed;
} ev_t;

/* One request slot of the multi handle. */
typedef struct slot {
    CURL *h;
    char body[512];
    char resp[512];
    size_t rlen;
    long idx;               /* -1: free */
} slot_t;

typedef struct client {
    CURLM *multi;
    slot_t slots[MAX_INFLIGHT];
    int nslots, inflight;
    char url[128];
    struct curl_slist *hdrs;
    ev_t *evs;
    long failures;
    char first_error[256];
    int run;                /* makes message ids unique per phase */
    int customers;
} client_t;

static size_t on_body(char *p, size_t sz, size_t n, void *opaque) {
    slot_t *s = opaque;
    size_t len = sz * n, room = sizeof s->resp - 1 - s->rlen;
    memcpy(s->resp + s->rlen, p, len < room ? len : room);
    s->rlen += len < room ? len : room;
    s->resp[s->rlen] = 0;
    return len;
}

static int client_init(client_t *c, int port, int slots, ev_t *evs, int customers) {
    memset(c, 0, sizeof *c);
    c->multi = curl_multi_init();
    if (!c->multi) return -1;
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)slots);
    snprintf(c->url, sizeof c->url, "http://127.0.0.1:%d/v1/ingest/api", port);
    c->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    c->nslots = slots;
    c->evs = evs;
    c->customers = customers;
    for (int i = 0; i < slots; i++) {
        slot_t *s = &c->slots[i];
        s->idx = -1;
        if (!(s->h = curl_easy_init())) return -1;
        curl_easy_setopt(s->h, CURLOPT_URL, c->url);
        curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, c->hdrs);
        curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(s->h, CURLOPT_TCP_NODELAY, 1L);
    }
    return 0;
}

static void client_close(client_t *c) {
    for (int i = 0; i < c->nslots; i++) {
        if (c->slots[i].idx >= 0) curl_multi_remove_handle(c->multi, c->slots[i].h);
        curl_easy_cleanup(c->slots[i].h);
    }
    curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->hdrs);
}

/* Starts event idx on a free slot; 0, or -1 when none is free. */
static int client_send(client_t *c, long idx) {
    for (int i = 0; i < c->nslots; i++) {
        slot_t *s = &c->slots[i];
        if (s->idx >= 0) continue;
        s->idx = idx;
        s->rlen = 0;
        int cust = (int)(idx % c->customers);
        snprintf(s->body, sizeof s->body,
                 "{\"tenant_id\":\"bench\",\"platform\":\"%s\",\"platform_user_id\":\"u-%d\","
                 "\"message_id\":\"r%d-%ld\",\"occurred_at\":%lld,\"payload\":{\"type\":\"MessageReceived\","
                 "\"text\":\"\\u4f60\\u597d, where is my order %ld? size M please\"}}",
                 platforms[cust % 6], cust, c->run, idx, (long long)wall_ms(), idx);
        curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
        curl_multi_add_handle(c->multi, s->h);
        c->inflight++;
        return 0;
    }
    return -1;
}

/* Runs transfers for up to timeout_ms and records the answers. */
static void client_step(client_t *c, int timeout_ms) {
    int running;
    curl_multi_perform(c->multi, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        slot_t *s;
        long status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        ev_t *e = &c->evs[s->idx];
        const char *pos = strstr(s->resp, "\"position\":\"");
        if (msg->data.result == CURLE_OK && status == 202 && pos &&
            sscanf(pos + 12, "%d:%" SCNd64, &e->part, &e->off) == 2 && e->part >= 0 && e->part < MAX_PARTS) {
            e->acked = now_s();
        } else {
            e->failed = 1;
            if (!c->failures++)
                snprintf(c->first_error, sizeof c->first_error, "status %ld (%s): %.150s", status,
                         curl_easy_strerror(msg->data.result), s->resp);
        }
        curl_multi_remove_handle(c->multi, s->h);
        s->idx = -1;
        c->inflight--;
    }
    curl_multi_poll(c->multi, NULL, 0, timeout_ms, NULL);
}

/* The smallest position over the consumers for each partition: one
 * prepared query per poll (the poll runs every 2 ms on the same two cores
 * as the pipeline, so it is kept cheap). */
static int read_positions(PGconn *pg, int nconsumers, int64_t *min_pos) {
    static PGconn *prepared_on;
    if (prepared_on != pg) {
        PGresult *r = PQprepare(pg, "positions", "SELECT consumer, partition, source_offset"
                                " FROM projection_positions WHERE consumer = ANY($1::text[])", 1, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) return -1;
        prepared_on = pg;
    }
    char list[256] = "{";
    for (int i = 0; i < nconsumers; i++) {
        strcat(list, consumers[i]);
        strcat(list, i + 1 < nconsumers ? "," : "}");
    }
    const char *v[] = {list};
    PGresult *r = PQexecPrepared(pg, "positions", 1, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return -1;
    }
    int64_t seen[NVIEWS][MAX_PARTS];
    for (int i = 0; i < NVIEWS; i++)
        for (int p = 0; p < MAX_PARTS; p++) seen[i][p] = -1;
    for (int k = 0; k < PQntuples(r); k++) {
        const char *c = PQgetvalue(r, k, 0);
        int p = atoi(PQgetvalue(r, k, 1));
        for (int i = 0; i < nconsumers; i++)
            if (strcmp(c, consumers[i]) == 0 && p >= 0 && p < MAX_PARTS)
                seen[i][p] = strtoll(PQgetvalue(r, k, 2), NULL, 10);
    }
    PQclear(r);
    for (int p = 0; p < MAX_PARTS; p++) {
        min_pos[p] = INT64_MAX;
        for (int i = 0; i < nconsumers; i++)
            if (seen[i][p] < min_pos[p]) min_pos[p] = seen[i][p];
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Waits until every event of evs[from..to) is visible to nconsumers
 * consumers (their positions pass it); sets visible times.  0, or -1 on
 * timeout. */
static int wait_visible(PGconn *pg, ev_t *evs, long from, long to, int nconsumers, client_t *c,
                        double timeout_s) {
    int64_t pos[MAX_PARTS];
    double deadline = now_s() + timeout_s;
    long next = from;
    while (now_s() < deadline) {
        if (c) client_step(c, 0);
        if (read_positions(pg, nconsumers, pos)) return -1;
        double t = now_s();
        int pending = 0;
        for (long i = next; i < to; i++) {
            ev_t *e = &evs[i];
            if (e->failed || e->visible > 0) continue;
            if (e->acked > 0 && pos[e->part] >= e->off) e->visible = t;
            else pending = 1;
        }
        if (!pending) return 0;
        usleep(2000);
    }
    return -1;
}

int main(int argc, char **argv) {
    int customers = argc > 1 ? atoi(argv[1]) : 400, messages = argc > 2 ? atoi(argv[2]) : 100;
    double seconds = argc > 3 ? atof(argv[3]) : 4;
    if (customers <= 0 || messages <= 0 || seconds <= 0 || customers > 1000000) {
        fprintf(stderr, "usage: bench_e2e [CUSTOMERS [MESSAGES [SECONDS]]]\n");
        return 2;
    }
    const char *brokers = getenv("TL_KAFKA_BROKERS"), *dsn = getenv("TL_PG_DSN");
    if (!brokers || !dsn) {
        fprintf(stderr, "bench_e2e: TL_KAFKA_BROKERS and TL_PG_DSN must be set (tools/bench sets them)\n");
        return 2;
    }
    char exe[1024];
    if (getenv("TL_THREADLINE")) {
        snprintf(exe, sizeof exe, "%s", getenv("TL_THREADLINE"));
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 64);
        if (n <= 0) return 2;
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        snprintf(slash, 64, "/../tools/threadline");
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char prefix[64], db[64], dbdsn[1200], log[128], port_s[16], http[32], sql[256];
    snprintf(prefix, sizeof prefix, "benche2e%d", (int)getpid());
    snprintf(db, sizeof db, "bench_e2e_%d", (int)getpid());
    snprintf(dbdsn, sizeof dbdsn, "%s dbname=%s", dsn, db);
    snprintf(log, sizeof log, "/tmp/bench-e2e-%d.log", (int)getpid());
    int port = tl_harness_free_port();
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(http, sizeof http, "127.0.0.1:%d", port);

    PGconn *base = PQconnectdb(dsn);
    if (PQstatus(base) != CONNECTION_OK) {
        fprintf(stderr, "bench_e2e: PostgreSQL: %s", PQerrorMessage(base));
        return 1;
    }
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    PQclear(PQexec(base, sql));
    char *migrate[] = {exe, "migrate", "--pg-dsn", dbdsn, NULL};
    if (tl_harness_run(migrate, log) != 0) {
        fprintf(stderr, "bench_e2e: migrate failed (see %s)\n", log);
        return 1;
    }
    char *serve[] = {exe, "serve", "--http", http, "--kafka-brokers", (char *)brokers, "--pg-dsn", dbdsn,
                     "--prefix", prefix, "--partitions", "12", "--auth", "off", NULL};
    pid_t pid = tl_harness_spawn(serve, log);
    int rc = 1;
    PGconn *pg = NULL;
    long total = (long)customers * messages;
    static const int rates[] = {500, 2000, 5000};
    double p50[3] = {0}, p99[3] = {0}, achieved[3] = {0};
    long count[3] = {0};
    long lat_max = (long)(5000 * seconds) + 16;
    ev_t *evs = calloc((size_t)(total > lat_max ? total : lat_max), sizeof *evs);
    double *lat = calloc((size_t)lat_max, sizeof *lat);
    client_t cl;
    if (!evs || !lat || tl_harness_wait_ready(pid, port, 90)) {
        fprintf(stderr, "bench_e2e: serve not ready (see %s)\n", log);
        goto out;
    }
    pg = PQconnectdb(dbdsn);
    if (PQstatus(pg) != CONNECTION_OK) goto out;

    /* 1. Sustained. */
    if (client_init(&cl, port, 64, evs, customers)) goto out;
    cl.run = 0;
    double t0 = now_s();
    long sent = 0;
    while (sent < total || cl.inflight) {
        while (sent < total && client_send(&cl, sent) == 0) sent++;
        client_step(&cl, 5);
    }
    double ingest_secs = now_s() - t0;
    int vis = wait_visible(pg, evs, 0, total, NVIEWS, NULL, 300);
    double secs = now_s() - t0;
    client_close(&cl);
    if (cl.failures || vis) {
        fprintf(stderr, "bench_e2e: sustained: %ld failed requests (%s), %s\n", cl.failures, cl.first_error,
                vis ? "not every event became visible in every view within 300 s" : "all visible");
        goto out;
    }
    printf("bench_e2e sustained_events_per_s=%.0f events=%ld seconds=%.2f views=%d customers=%d messages=%d"
           " ingest_seconds=%.2f\n",
           (double)total / secs, total, secs, NVIEWS, customers, messages, ingest_secs);
    fflush(stdout);

    /* 2. Latency at offered rates. */
    for (int r = 0; r < 3; r++) {
        memset(evs, 0, sizeof *evs * (size_t)lat_max);
        if (client_init(&cl, port, MAX_INFLIGHT, evs, customers)) goto out;
        cl.run = r + 1;
        long n = (long)(rates[r] * seconds);
        double start = now_s(), interval = 1.0 / rates[r];
        long i = 0, lo = 0;   /* events before lo are visible (or failed) */
        while (i < n) {
            double due = start + (double)i * interval;
            if (now_s() >= due) {
                if (client_send(&cl, i) == 0) i++;
                else client_step(&cl, 1);   /* all slots busy: the offered rate is not met */
                continue;
            }
            client_step(&cl, 0);
            /* Note visibility while sending. */
            int64_t pos[MAX_PARTS];
            if (read_positions(pg, 1, pos) == 0) {
                double t = now_s();
                for (long k = lo; k < i; k++)
                    if (evs[k].acked > 0 && !evs[k].visible && pos[evs[k].part] >= evs[k].off) evs[k].visible = t;
                while (lo < i && (evs[lo].visible > 0 || evs[lo].failed)) lo++;
            }
            double left = due - now_s();
            if (left > 0.0005) usleep((useconds_t)(left * 1e6 > 2000 ? 2000 : left * 1e6));
        }
        double sent_s = now_s() - start;
        while (cl.inflight) client_step(&cl, 5);
        vis = wait_visible(pg, evs, 0, n, 1, NULL, 60);
        client_close(&cl);
        if (cl.failures || vis) {
            fprintf(stderr, "bench_e2e: rate %d: %ld failed requests (%s)%s\n", rates[r], cl.failures,
                    cl.first_error, vis ? ", events not visible in the agent view within 60 s" : "");
            goto out;
        }
        long m = 0;
        for (long k = 0; k < n; k++) lat[m++] = (evs[k].visible - evs[k].acked) * 1000.0;
        qsort(lat, (size_t)m, sizeof *lat, cmp_double);
        p50[r] = lat[m / 2];
        p99[r] = lat[(size_t)((double)m * 0.99) < (size_t)m ? (size_t)((double)m * 0.99) : (size_t)m - 1];
        achieved[r] = (double)n / sent_s;
        count[r] = n;
        printf("bench_e2e offered_per_s=%d achieved_per_s=%.0f p50_ms=%.1f p99_ms=%.1f events=%ld\n", rates[r],
               achieved[r], p50[r], p99[r], n);
        fflush(stdout);
    }

    /* CSV and plot. */
    FILE *csv = fopen("build/bench_e2e.csv", "w");
    if (csv) {
        fprintf(csv, "offered_per_s,achieved_per_s,p50_ms,p99_ms,events\n");
        for (int r = 0; r < 3; r++)
            fprintf(csv, "%d,%.0f,%.1f,%.1f,%ld\n", rates[r], achieved[r], p50[r], p99[r], count[r]);
        fclose(csv);
        FILE *gp = popen("gnuplot 2>/dev/null", "w");
        int gp_rc = -1;
        if (gp) {
            fprintf(gp, "set terminal png size 800,500\nset output 'build/bench_e2e.png'\n"
                        "set datafile separator ','\nset key autotitle columnhead left top\n"
                        "set title 'threadline: 202 to visible in the agent view'\n"
                        "set xlabel 'offered events/s'\nset ylabel 'latency (ms)'\nset logscale x\n"
                        "set grid\nplot 'build/bench_e2e.csv' using 1:3 with linespoints title 'p50', "
                        "'' using 1:4 with linespoints title 'p99'\n");
            gp_rc = pclose(gp);
        }
        if (gp_rc != 0) fprintf(stderr, "bench_e2e: gnuplot not available; wrote build/bench_e2e.csv only\n");
        else fprintf(stderr, "bench_e2e: wrote build/bench_e2e.csv and build/bench_e2e.png\n");
    }
    rc = 0;

out:
    tl_harness_stop(pid);
    PQfinish(pg);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    PQclear(PQexec(base, sql));
    PQfinish(base);
    tl_config_t cfg;
    tl_kafka_t *kafka = NULL;
    if (tl_config_init(&cfg) == 0) {
        cfg.kafka_brokers = brokers;
        cfg.prefix = prefix;
        if (tl_kafka_new(&cfg, &kafka) == 0) tl_kafka_delete_topics(kafka, 15000);
        tl_kafka_free(kafka);
    }
    if (rc == 0 && !getenv("TL_KEEP_LOG")) unlink(log);
    else fprintf(stderr, "bench_e2e: serve log kept: %s\n", log);
    free(evs);
    free(lat);
    curl_global_cleanup();
    return rc;
}
