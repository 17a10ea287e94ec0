/*
 * bench_ingest.c -- the ingest gateway over loopback against the real
 * broker: how many events per second `threadline serve` acknowledges, and
 * how long a client waits for the acknowledgement.
 *
 *   bench_ingest [REQUESTS [CONNECTIONS]]     defaults 20000 and 64
 *
 * Starts `threadline serve` (next to this binary: ../tools/threadline, or
 * $TL_THREADLINE) on a free port of 127.0.0.1 with a fresh prefix
 * (benchingest<pid>), $TL_KAFKA_BROKERS and $TL_PG_DSN, the projection and
 * the fold workers off (--project 0 --fold 0: ingest alone, so neither
 * PostgreSQL nor the fold competes for the two cores) and a Douyin secret,
 * and waits for /readyz.  Then, after a short warm-up, one phase per
 * platform -- web, api, phone, douyin, app, mini_program -- and one of all
 * six interleaved:
 * REQUESTS requests each (or as many as 15 seconds allow) over CONNECTIONS
 * kept-alive HTTP/1.1 connections, one request in flight per connection.
 * Every request is a new message (unique message id, text from the shared
 * workload stream), so every answer is a broker acknowledgement, never the
 * gateway's cache of recent resends.  Only the documented success status
 * counts (202; 200 for douyin), and only if its body says
 * "duplicate":false; anything else -- another status, a dropped
 * connection, no answer within 15 s after the phase -- is an error.
 *
 * An app request is one SDK upload: a message and APP_CLICKS click-stream
 * items, so APP_CLICKS + 1 events, all acknowledged before the 202; a
 * mini_program request carries a unionid for every other user, so ingest
 * adds a unionid link before the message (counted as one event: the link
 * is the same for every message of a user).  events_per_s counts events,
 * requests_per_s requests.  Identity resolution runs as in production: the
 * server gets a database of its own (benchingest<pid>, migrated, dropped at
 * the end) whose empty identity index answers every lookup with a miss, so
 * the resolver's cache and thread-pool lookups are part of what is
 * measured.
 *
 * The ceiling: benchmarks/hello, threadline's HTTP front (h2o on libuv, the
 * same tl_http_* glue) answering 200 "ok" at once, driven by the same
 * client with the same requests and connections.  It is what this machine
 * does with no ingest behind the HTTP, client included.
 *
 * The client is a small epoll loop written for this (a few microseconds of
 * CPU per request: libcurl would take a noticeable share of the two cores
 * from the server it measures).  Latency is from the first byte written to
 * the last byte of the answer read.
 *
 * Prints:
 *   bench_ingest platform=P events_per_s=N requests_per_s=N p99_ms=N
 *     p50_ms=N requests=N acked=N errors=N seconds=S connections=C
 *     fold=0 project=0
 *   (one per platform), then
 *   bench_ingest platform=all events_per_s=N p99_ms=N ceiling_per_s=N
 *     ceiling_p99_ms=N p50_ms=N requests=N acked=N errors=N seconds=S
 *     connections=C kafka_records=N fold=0 project=0
 * kafka_records is what <prefix>.events holds afterwards: every event
 * acknowledged in the run, warm-up included.  Exits 1 (after printing) if
 * any request failed or the log holds fewer records than were
 * acknowledged.  The serve log is /tmp/bench-ingest-<pid>.log, removed
 * when the run is clean.  The topics are deleted at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>

#include "auth.h"
#include "config.h"
#include "event.h"
#include "harness.h"
#include "kafka.h"
#include "workload.h"

#define DEF_REQUESTS 20000
#define DEF_CONNS 64
#define MAX_REQUESTS 1000000
#define MAX_CONNS 1024
#define PHASE_S 15.0            /* no new request after this */
#define DRAIN_S 15.0            /* then at most this long for the answers */
#define WARMUP 2000
#define READY_S 90.0
#define REQ_CAP 16384
#define RESP_CAP 16384
#define DOUYIN_SECRET "bench-ingest-douyin-secret"

enum { P_WEB, P_API, P_PHONE, P_DOUYIN, P_APP, P_MINI_PROGRAM, P__COUNT };
static const char *const platform_name[P__COUNT] = {"web", "api", "phone", "douyin", "app",
                                                    "mini_program"};
#define APP_CLICKS 3            /* click-stream items per app upload */

static char run_tag[32];        /* makes message ids unique across runs */
static long seq;                /* makes them unique within the run */
static tl_workload_t workload;

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --------------------------------------------------------------- requests */

/* Appends s as the inside of a JSON string; returns the new length, or
 * -1 if it does not fit. */
static int json_escape(char *out, int n, int cap, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (n + 7 >= cap) return -1;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += snprintf(out + n, (size_t)(cap - n), "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

/* The next text of the shared workload stream, JSON-escaped into out. */
static int next_text(char *out, int cap) {
    tl_event_t ev;
    tl_workload_next(&workload, &ev);
    tl_str_t t = ev.u.message.text;
    if (ev.kind != TL_EV_MESSAGE_RECEIVED || !t.ptr || t.len == 0) t = TL_STR("在吗？");
    int n = json_escape(out, 0, cap, t.ptr, t.len);
    if (n < 0) n = json_escape(out, 0, cap, "在吗？", strlen("在吗？"));
    out[n] = 0;
    return n;
}

static void sha1_hex(const char *a, size_t alen, const char *b, size_t blen, char out[41]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha1(), NULL) || !EVP_DigestUpdate(c, a, alen) ||
        !EVP_DigestUpdate(c, b, blen) || !EVP_DigestFinal_ex(c, md, &mdlen))
        mdlen = 0;
    EVP_MD_CTX_free(c);
    for (unsigned i = 0; i < 20; i++) snprintf(out + 2 * i, 3, "%02x", i < mdlen ? md[i] : 0);
}

/* The connector key every JSON route is sent with (Douyin signs instead),
 * made in the server's database before it starts. */
static char connector_key[TL_AUTH_TOKEN_LEN + 1];

/* Writes a whole HTTP/1.1 request for a new message of platform into out;
 * returns its length, *want the success status, *events how many events
 * its acknowledgement stands for. */
static int build_request(int platform, int port, char *out, int cap, int *want, int *events) {
    char text[4096], body[8192], sig[41];
    long id = seq++;
    int user = (int)(id % 10000);
    int64_t now = wall_ms();
    int blen;
    next_text(text, (int)sizeof text);
    *want = 202;
    *events = 1;
    switch (platform) {
    case P_APP:
        *events = 1 + APP_CLICKS;
        blen = snprintf(body, sizeof body,
                        "{\"tenant_id\":\"bench\",\"device_id\":\"dev-%d\",\"message\":{"
                        "\"message_id\":\"%s-%ld\",\"sent_at\":%" PRId64 ",\"text\":\"%s\","
                        "\"entry_point\":\"OrderDetail\"},\"events\":["
                        "{\"id\":\"%s-%ld-1\",\"page\":\"Home\",\"action\":\"open\",\"ts\":%" PRId64 "},"
                        "{\"id\":\"%s-%ld-2\",\"page\":\"Product:SKU-%d\",\"action\":\"view\",\"ts\":%" PRId64 "},"
                        "{\"id\":\"%s-%ld-3\",\"page\":\"Cart\",\"action\":\"tap:checkout\",\"ts\":%" PRId64 "}]}",
                        user, run_tag, id, now - 700, text, run_tag, id, now - 9000, run_tag, id,
                        user % 97, now - 5000, run_tag, id, now - 1000);
        break;
    case P_MINI_PROGRAM:
        if (user % 2)
            blen = snprintf(body, sizeof body,
                            "{\"tenant_id\":\"bench\",\"openid\":\"o-mp-%d\",\"unionid\":\"un-%d\","
                            "\"message_id\":\"%s-%ld\",\"sent_at\":%" PRId64 ",\"text\":\"%s\","
                            "\"entry_point\":\"pages/product/detail?sku=%d\"}",
                            user, user, run_tag, id, now - 600, text, user % 97);
        else
            blen = snprintf(body, sizeof body,
                            "{\"tenant_id\":\"bench\",\"openid\":\"o-mp-%d\",\"message_id\":\"%s-%ld\","
                            "\"sent_at\":%" PRId64 ",\"text\":\"%s\"}",
                            user, run_tag, id, now - 600, text);
        break;
    case P_WEB:
        blen = snprintf(body, sizeof body,
                        "{\"tenant_id\":\"bench\",\"visitor_id\":\"v-%d\",\"message_id\":\"%s-%ld\","
                        "\"sent_at\":%" PRId64 ",\"text\":\"%s\",\"entry_point\":\"product-detail:SKU-%d\"}",
                        user, run_tag, id, now - 1500, text, user % 97);
        break;
    case P_API:
        blen = snprintf(body, sizeof body,
                        "{\"tenant_id\":\"bench\",\"platform\":\"app\",\"platform_user_id\":\"u-%d\","
                        "\"message_id\":\"%s-%ld\",\"occurred_at\":%" PRId64 ","
                        "\"payload\":{\"type\":\"MessageReceived\",\"text\":\"%s\",\"device_id\":\"d-%d\"}}",
                        user, run_tag, id, now - 800, text, user);
        break;
    case P_PHONE:
        blen = snprintf(body, sizeof body,
                        "{\"tenant_id\":\"bench\",\"call_id\":\"c-%s-%ld\",\"segment_id\":%ld,"
                        "\"caller_number\":\"+86 138 %04d %04d\",\"speaker\":\"customer\","
                        "\"start_ms\":%ld,\"end_ms\":%ld,\"text\":\"%s\",\"confidence\":0.91,"
                        "\"call_started_at\":%" PRId64 "}",
                        run_tag, id / 20, id % 20, user / 100, user, (id % 20) * 3000,
                        (id % 20) * 3000 + 2500, text, now - 60000);
        break;
    default:
        *want = 200;
        blen = snprintf(body, sizeof body,
                        "{\"event\":\"im_receive_msg\",\"client_key\":\"awx3kq9tbd2c7m1p\","
                        "\"from_user_id\":\"_000bench%d\",\"to_user_id\":\"_000shop\","
                        "\"content\":{\"conversation_short_id\":\"@bench%d==\","
                        "\"server_message_id\":\"@%s-%ld==\",\"conversation_type\":1,"
                        "\"message_type\":\"text\",\"text\":\"%s\",\"create_time\":%" PRId64 "}}",
                        user, user, run_tag, id, text, now - 500);
        break;
    }
    if (blen < 0 || blen >= (int)sizeof body) return -1;
    char extra[TL_AUTH_TOKEN_LEN + 64] = "";
    if (platform == P_DOUYIN) {
        sha1_hex(DOUYIN_SECRET, strlen(DOUYIN_SECRET), body, (size_t)blen, sig);
        snprintf(extra, sizeof extra, "X-Douyin-Signature: %s\r\n", sig);
    } else {
        snprintf(extra, sizeof extra, "Authorization: Bearer %s\r\n", connector_key);
    }
    int n = snprintf(out, (size_t)cap,
                     "POST /v1/ingest/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s",
                     platform_name[platform], port, blen, extra, body);
    return n < 0 || n >= cap ? -1 : n;
}

/* ----------------------------------------------------------------- client */

typedef struct conn {
    int fd;
    int busy;
    int want;
    int events;                 /* events the request's acknowledgement stands for */
    int platform;
    char req[REQ_CAP];
    int reqlen, sent;
    char resp[RESP_CAP];
    int resplen;
    char body[RESP_CAP];          /* a chunked answer's body, decoded */
    double t0;
} conn_t;

typedef struct phase {
    /* in */
    const char *name;
    int port;
    int platform;               /* P_*, or -1 for all interleaved */
    int requests, conns;
    int any_2xx;                /* the ceiling: 200 from hello is success */
    /* out */
    long issued, acked, errors, duplicates;
    long events;                /* events acknowledged (an app upload is several) */
    long reconnects;            /* connections the server closed after an answer */
    long status_count[6];       /* errors by class: 1xx..5xx, [0] transport */
    char first_error[256];
    double seconds;
    double p50_ms, p99_ms;
    double *lat;                /* acked latencies, seconds */
} phase_t;

static int connect_to(int port) {
    int fd = tl_harness_connect(port);
    if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void note_error(phase_t *ph, int status, const char *what, size_t len) {
    ph->errors++;
    ph->status_count[status >= 100 && status < 600 ? status / 100 : 0]++;
    if (!ph->first_error[0])
        snprintf(ph->first_error, sizeof ph->first_error, "%d %.*s", status,
                 (int)(len > 200 ? 200 : len), what);
}

/* Writes what is left of c's request; 0, or -1 on a transport error. */
static int flush_req(conn_t *c) {
    while (c->sent < c->reqlen) {
        ssize_t w = send(c->fd, c->req + c->sent, (size_t)(c->reqlen - c->sent), MSG_NOSIGNAL);
        if (w > 0) {
            c->sent += (int)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

static int update_events(int ep, conn_t *c) {
    struct epoll_event e = {.events = EPOLLIN | (c->sent < c->reqlen ? EPOLLOUT : 0u), .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* (Re)opens c's connection and registers it. */
static int open_conn(int ep, conn_t *c, int port) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = connect_to(port);
    if (c->fd < 0) return -1;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
}

static int start_request(int ep, phase_t *ph, conn_t *c) {
    int platform = ph->platform >= 0 ? ph->platform : (int)(ph->issued % P__COUNT);
    c->reqlen = build_request(platform, ph->port, c->req, REQ_CAP, &c->want, &c->events);
    if (c->reqlen < 0) return -1;
    if (ph->any_2xx) c->want = 200;
    c->platform = platform;
    c->sent = 0;
    c->resplen = 0;
    c->busy = 1;
    ph->issued++;
    c->t0 = tl_workload_now();
    if (flush_req(c) != 0) return -1;
    if (c->sent < c->reqlen) update_events(ep, c);
    return 0;
}

static const char *find_ci(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

/* Decodes a chunked body at p (n bytes) into out: the bytes consumed, 0
 * when more is needed, -1 if malformed. */
static long dechunk(const char *p, long n, char *out, long cap, long *outlen) {
    long i = 0;
    *outlen = 0;
    for (;;) {
        const char *eol = memmem(p + i, (size_t)(n - i), "\r\n", 2);
        if (!eol) return 0;
        char *end;
        long size = strtol(p + i, &end, 16);
        if (end == p + i || size < 0 || size > cap) return -1;
        i = (long)(eol - p) + 2;
        if (size == 0) {
            /* no trailers expected: the empty line ends the message */
            if (n - i < 2) return 0;
            return memcmp(p + i, "\r\n", 2) == 0 ? i + 2 : -1;
        }
        if (n - i < size + 2) return 0;
        if (*outlen + size > cap) return -1;
        memcpy(out + *outlen, p + i, (size_t)size);
        *outlen += size;
        i += size;
        if (memcmp(p + i, "\r\n", 2) != 0) return -1;
        i += 2;
    }
}

/* Parses c's buffer: 1 when a whole answer is there (*status, *body, *blen
 * set, *close_after when the server will close), 0 when more is needed,
 * -1 if it cannot be an answer we understand.  eof: the server has closed
 * the connection.  h2o 2.2 frames an answer of unknown length chunked when
 * its status is 200, and otherwise by closing the connection. */
static int parse_resp(conn_t *c, int eof, int *status, const char **body, size_t *blen,
                      int *close_after) {
    char *end = memmem(c->resp, (size_t)c->resplen, "\r\n\r\n", 4);
    if (!end) return c->resplen >= RESP_CAP ? -1 : 0;
    size_t hlen = (size_t)(end - c->resp) + 4;
    if (c->resplen < 12 || memcmp(c->resp, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->resp + 9);
    *close_after = find_ci(c->resp, hlen, "\r\nconnection: close") != NULL;
    const char *cl = find_ci(c->resp, hlen, "\r\ncontent-length:");
    if (cl) {
        long len = strtol(cl + 17, NULL, 10);
        if (len < 0 || (long)hlen + len > RESP_CAP) return -1;
        if ((long)c->resplen < (long)hlen + len) return 0;
        *body = c->resp + hlen;
        *blen = (size_t)len;
        return 1;
    }
    if (!find_ci(c->resp, hlen, "\r\ntransfer-encoding: chunked")) {
        if (!*close_after) return -1;
        if (!eof) return c->resplen >= RESP_CAP ? -1 : 0;
        *body = c->resp + hlen;
        *blen = (size_t)c->resplen - hlen;
        return 1;
    }
    long blen_l;
    long used = dechunk(c->resp + hlen, c->resplen - (long)hlen, c->body, RESP_CAP, &blen_l);
    if (used <= 0) return (int)used;
    *body = c->body;
    *blen = (size_t)blen_l;
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs one phase; 0, or -1 if it could not run at all (no connection). */
static int run_phase(phase_t *ph) {
    int rc = -1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)ph->conns, sizeof *cs);
    ph->lat = calloc((size_t)ph->requests + 1, sizeof *ph->lat);
    if (ep < 0 || !cs || !ph->lat) goto out;
    for (int i = 0; i < ph->conns; i++) cs[i].fd = -1;
    for (int i = 0; i < ph->conns; i++) {
        if (open_conn(ep, &cs[i], ph->port) != 0) {
            fprintf(stderr, "bench_ingest: cannot connect to 127.0.0.1:%d: %s\n", ph->port, strerror(errno));
            goto out;
        }
    }
    double t0 = tl_workload_now(), last = t0, stop_at = t0 + PHASE_S, give_up = stop_at + DRAIN_S;
    int busy = 0;
    for (int i = 0; i < ph->conns && ph->issued < ph->requests; i++) {
        if (start_request(ep, ph, &cs[i]) != 0) {
            note_error(ph, 0, "send failed", 11);
            cs[i].busy = 0;
            continue;
        }
        busy++;
    }
    struct epoll_event evs[256];
    while (busy > 0) {
        double t = tl_workload_now();
        if (t > give_up) break;
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno != EINTR) break;
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (!c->busy) {
                /* An idle connection closed or sent something unasked. */
                open_conn(ep, c, ph->port);
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                if (flush_req(c) != 0) goto transport;
                if (c->sent == c->reqlen) update_events(ep, c);
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            int eof = 0;
            for (;;) {
                ssize_t r = recv(c->fd, c->resp + c->resplen, (size_t)(RESP_CAP - c->resplen), 0);
                if (r > 0) {
                    c->resplen += (int)r;
                    if (c->resplen == RESP_CAP) break;
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) goto transport;  /* reset with the request in flight */
                eof = 1;
                break;
            }
            int status = 0, close_after = 0;
            const char *body = NULL;
            size_t blen = 0;
            int pr = parse_resp(c, eof, &status, &body, &blen, &close_after);
            if (pr == 0 && eof) goto transport;     /* closed before a whole answer */
            if (pr == 0) continue;
            if (pr < 0) {
                note_error(ph, 0, "unparsable answer", 17);
                close_after = 1;
            } else if (status != c->want) {
                note_error(ph, status, body, blen);
            } else {
                double now = tl_workload_now();
                if (!ph->any_2xx && memmem(body, blen, "\"duplicate\":false", 17) == NULL) {
                    ph->duplicates++;
                    note_error(ph, status, body, blen);
                } else {
                    ph->lat[ph->acked++] = now - c->t0;
                    ph->events += c->events;
                    last = now;
                }
            }
            goto next;
        transport:
            note_error(ph, 0, "connection closed or reset with a request in flight", 51);
            close_after = 1;
        next:
            c->busy = 0;
            busy--;
            if (close_after) {
                ph->reconnects++;
                if (open_conn(ep, c, ph->port) != 0) continue;
            }
            if (ph->issued < ph->requests && tl_workload_now() < stop_at) {
                if (start_request(ep, ph, c) == 0) busy++;
                else note_error(ph, 0, "send failed", 11), c->busy = 0;
            }
        }
    }
    for (int i = 0; i < ph->conns; i++)
        if (cs[i].busy) note_error(ph, 0, "no answer in time", 17);
    ph->seconds = last - t0;
    if (ph->acked > 0) {
        qsort(ph->lat, (size_t)ph->acked, sizeof *ph->lat, cmp_double);
        ph->p50_ms = ph->lat[(ph->acked - 1) * 50 / 100] * 1000;
        ph->p99_ms = ph->lat[(ph->acked - 1) * 99 / 100] * 1000;
    }
    rc = 0;
out:
    if (cs)
        for (int i = 0; i < ph->conns; i++)
            if (cs[i].fd >= 0) close(cs[i].fd);
    free(cs);
    if (ep >= 0) close(ep);
    return rc;
}

static double rate(const phase_t *ph) {
    return ph->seconds > 0 ? (double)ph->events / ph->seconds : 0;
}

static double request_rate(const phase_t *ph) {
    return ph->seconds > 0 ? (double)ph->acked / ph->seconds : 0;
}

static void report_errors(const phase_t *ph) {
    if (!ph->errors) return;
    fprintf(stderr,
            "bench_ingest: %s: %ld of %ld requests failed (transport %ld, 2xx other than the "
            "expected or duplicate %ld, 4xx %ld, 5xx %ld); first: %s\n",
            ph->name, ph->errors, ph->issued, ph->status_count[0], ph->status_count[2],
            ph->status_count[4], ph->status_count[5], ph->first_error);
}

/* ------------------------------------------------------------ the servers */

/* GET /readyz until 200, up to READY_S; fails early if pid exits. */
static int wait_ready(pid_t pid, int port, const char *what) {
    int rc = tl_harness_wait_ready(pid, port, READY_S);
    if (rc == -1) fprintf(stderr, "bench_ingest: %s exited before it was ready\n", what);
    else if (rc) fprintf(stderr, "bench_ingest: %s not ready after %.0f s\n", what, READY_S);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------- PostgreSQL */

/* Runs one administrative command (CREATE/DROP DATABASE, which take no
 * parameters; the name is "benchingest<pid>", digits and letters only) on
 * the server of dsn.  0, or -1 with the reason on stderr. */
static int pg_admin(const char *dsn, const char *sql) {
    PGconn *pg = PQconnectdb(dsn);
    int ok = PQstatus(pg) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(pg, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok) fprintf(stderr, "bench_ingest: %s: %s", sql, PQerrorMessage(pg));
    PQfinish(pg);
    return ok ? 0 : -1;
}

/* A connector key for every JSON ingest route, into connector_key: ingest
 * is measured with keys checked, as in production. */
static int make_key(const char *dsn) {
    PGconn *pg = PQconnectdb(dsn);
    char msg[256] = "";
    tl_auth_new_key_t nk = {"bench", TL_ROLE_CONNECTOR, NULL, NULL, "web,api,app,mini_program,phone",
                            "bench_ingest"};
    int rc = PQstatus(pg) == CONNECTION_OK ? tl_auth_key_create(pg, &nk, connector_key, msg, sizeof msg)
                                           : -1;
    if (rc) fprintf(stderr, "bench_ingest: cannot create a connector key: %s%s\n", msg, PQerrorMessage(pg));
    PQfinish(pg);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ Kafka */

static int64_t events_in_log(tl_kafka_t *kafka) {
    char errstr[256];
    rd_kafka_conf_t *conf = tl_kafka_conf(kafka);
    rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr) : NULL;
    if (!rk) {
        if (conf) rd_kafka_conf_destroy(conf);
        return -1;
    }
    const char *topic = tl_kafka_topic(kafka, TL_TOPIC_EVENTS);
    int parts = tl_kafka_partition_count(rk, topic, 10000);
    int64_t sum = parts > 0 ? 0 : -1;
    for (int p = 0; p < parts && sum >= 0; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000)) sum = -1;
        else sum += hi - lo;
    }
    rd_kafka_destroy(rk);
    return sum;
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv) {
    int requests = DEF_REQUESTS, conns = DEF_CONNS;
    if ((argc > 1 && tl_harness_parse_arg("bench_ingest", argv[1], "REQUESTS", MAX_REQUESTS, &requests)) ||
        (argc > 2 && tl_harness_parse_arg("bench_ingest", argv[2], "CONNECTIONS", MAX_CONNS, &conns)) || argc > 3) {
        fprintf(stderr, "usage: bench_ingest [REQUESTS [CONNECTIONS]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *brokers = getenv("TL_KAFKA_BROKERS"), *dsn = getenv("TL_PG_DSN");
    if (!brokers || !*brokers || !dsn || !*dsn) {
        fprintf(stderr, "bench_ingest: TL_KAFKA_BROKERS and TL_PG_DSN must be set (run it with tools/bench ingest)\n");
        return 1;
    }
    if (strcmp(brokers, "embedded") == 0) {
        fprintf(stderr, "bench_ingest: needs the real broker, not the embedded mock\n");
        return 1;
    }
    char exe[PATH_MAX], hello[PATH_MAX];
    if (tl_harness_threadline(exe, sizeof exe)) return 1;
    if (tl_harness_beside_me("hello", hello, sizeof hello)) return 1;
    if (access(exe, X_OK) || access(hello, X_OK)) {
        fprintf(stderr, "bench_ingest: %s or %s is missing (build first)\n", exe, hello);
        return 1;
    }

    pid_t me = getpid();
    char prefix[64], log[128], http_addr[64], hello_addr[64];
    snprintf(prefix, sizeof prefix, "benchingest%d", (int)me);
    snprintf(log, sizeof log, "/tmp/bench-ingest-%d.log", (int)me);
    snprintf(run_tag, sizeof run_tag, "%d-%" PRId64, (int)me, wall_ms() % 100000000);
    unlink(log);
    if (tl_workload_init(&workload, 10000, 1000, "bench-ingest")) {
        fprintf(stderr, "bench_ingest: out of memory\n");
        return 1;
    }

    tl_config_t cfg;
    if (tl_config_init(&cfg)) return 1;
    cfg.kafka_brokers = brokers;
    cfg.prefix = prefix;
    tl_kafka_t *kafka = NULL;
    if (tl_kafka_new(&cfg, &kafka)) {
        fprintf(stderr, "bench_ingest: kafka client for %s failed\n", brokers);
        return 1;
    }

    int status = 1, port = tl_harness_free_port(), hport = -1;
    pid_t serve = -1, hpid = -1;
    long total_acked = 0, total_errors = 0;
    phase_t ph[P__COUNT + 1], warm, ceil_ph;
    memset(ph, 0, sizeof ph);
    memset(&warm, 0, sizeof warm);
    memset(&ceil_ph, 0, sizeof ceil_ph);
    snprintf(http_addr, sizeof http_addr, "127.0.0.1:%d", port);
    /* A database of the server's own, so its identity index exists (and
     * is empty): resolution is measured as in production. */
    char db[64], db_dsn[1024], sql[128];
    int have_db = 0;
    snprintf(db, sizeof db, "benchingest%d", (int)me);
    snprintf(db_dsn, sizeof db_dsn, "%s dbname=%s", dsn, db);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    if (pg_admin(dsn, sql)) goto out;
    have_db = 1;
    char *margv[] = {exe, "migrate", "--pg-dsn", db_dsn, NULL};
    if (tl_harness_run(margv, log) != 0) {
        fprintf(stderr, "bench_ingest: threadline migrate failed (see %s)\n", log);
        goto out;
    }
    if (make_key(db_dsn)) goto out;
    char *sargv[] = {exe, "serve", "--http", http_addr, "--kafka-brokers", (char *)brokers,
                     "--pg-dsn", db_dsn, "--prefix", prefix, "--project", "0", "--fold", "0",
                     "--identity", "0",
                     "--douyin-secret", DOUYIN_SECRET, NULL};
    fprintf(stderr, "bench_ingest: threadline serve on %s, prefix %s, log %s\n", http_addr, prefix, log);
    if (port < 0 || (serve = tl_harness_spawn(sargv, log)) < 0 || wait_ready(serve, port, "threadline serve"))
        goto out;

    /* Warm-up: connections, the producer's metadata and idempotence state,
     * the broker's page cache and JIT.  Not reported. */
    warm = (phase_t){.name = "warm-up", .port = port, .platform = -1, .requests = WARMUP,
                     .conns = conns};
    if (run_phase(&warm)) goto out;
    total_acked += warm.events;
    report_errors(&warm);
    total_errors += warm.errors;

    for (int p = 0; p <= P__COUNT; p++) {
        ph[p] = (phase_t){.name = p < P__COUNT ? platform_name[p] : "all", .port = port,
                          .platform = p < P__COUNT ? p : -1, .requests = requests, .conns = conns};
        if (run_phase(&ph[p])) goto out;
        total_acked += ph[p].events;
        total_errors += ph[p].errors;
        report_errors(&ph[p]);
        if (p < P__COUNT) {
            printf("bench_ingest platform=%s events_per_s=%.0f requests_per_s=%.0f p99_ms=%.2f "
                   "p50_ms=%.2f requests=%ld acked=%ld errors=%ld seconds=%.2f connections=%d "
                   "reconnects=%ld fold=0 project=0\n",
                   ph[p].name, rate(&ph[p]), request_rate(&ph[p]), ph[p].p99_ms, ph[p].p50_ms,
                   ph[p].issued, ph[p].acked, ph[p].errors, ph[p].seconds, conns, ph[p].reconnects);
            fflush(stdout);
        }
    }
    tl_harness_stop(serve);
    serve = -1;
    int64_t in_log = events_in_log(kafka);

    /* The ceiling: the same client and requests against bare h2o. */
    hport = tl_harness_free_port();
    snprintf(hello_addr, sizeof hello_addr, "127.0.0.1:%d", hport);
    char *hargv[] = {hello, hello_addr, NULL};
    if (hport < 0 || (hpid = tl_harness_spawn(hargv, log)) < 0 || wait_ready(hpid, hport, "hello")) goto out;
    ceil_ph = (phase_t){.name = "ceiling", .port = hport, .platform = -1, .requests = requests,
                        .conns = conns, .any_2xx = 1};
    if (run_phase(&ceil_ph)) goto out;
    report_errors(&ceil_ph);
    total_errors += ceil_ph.errors;

    phase_t *all = &ph[P__COUNT];
    printf("bench_ingest platform=all events_per_s=%.0f p99_ms=%.2f ceiling_per_s=%.0f "
           "ceiling_p99_ms=%.2f p50_ms=%.2f requests=%ld acked=%ld errors=%ld seconds=%.2f "
           "connections=%d reconnects=%ld ceiling_reconnects=%ld kafka_records=%" PRId64
           " fold=0 project=0\n",
           rate(all), all->p99_ms, request_rate(&ceil_ph), ceil_ph.p99_ms, all->p50_ms, all->issued,
           all->acked, all->errors, all->seconds, conns, all->reconnects, ceil_ph.reconnects, in_log);
    fflush(stdout);
    if (in_log < total_acked)
        fprintf(stderr, "bench_ingest: %s holds %" PRId64 " records, but %ld events were acknowledged\n",
                tl_kafka_topic(kafka, TL_TOPIC_EVENTS), in_log, total_acked);
    status = total_errors == 0 && in_log >= total_acked ? 0 : 1;

out:
    tl_harness_stop(serve);
    tl_harness_stop(hpid);
    if (have_db) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
        pg_admin(dsn, sql);
    }
    tl_kafka_delete_topics(kafka, 30000);
    tl_kafka_free(kafka);
    tl_workload_close(&workload);
    for (int p = 0; p <= P__COUNT; p++) free(ph[p].lat);
    free(warm.lat);
    free(ceil_ph.lat);
    if (status == 0) unlink(log);
    else fprintf(stderr, "bench_ingest: the serve log is %s\n", log);
    return status;
}
