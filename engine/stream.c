/*
 * stream.c -- the live change stream (see stream.h).
 *
 * Threads: the consumer thread owns the rd_kafka consumer, the codecs and
 * a PostgreSQL connection for assignments; it only ever touches `inbox`
 * (under `mu`).  Everything else -- clients, the ring, the position vector
 * -- belongs to the loop thread.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "buf.h"
#include "change.h"
#include "codec.h"
#include "error.h"
#include "log.h"
#include "pg.h"
#include "stream.h"

#define MAX_PARTS 1024
#define ASSIGN_SLOTS 4096
#define ASSIGN_TTL_MS 2000

/* One change, as the stream shows it. */
typedef struct note {
    struct note *next;
    int32_t cpart;              /* position on .changes */
    int64_t coff;
    char tenant[72], customer[40], conversation[40];
    char assignee[72], team[72];
    int has_assignee, has_team;
    char *json;                 /* the SSE data line's JSON */
} note_t;

typedef struct client {
    h2o_generator_t gen;        /* first: h2o hands it back to proceed */
    tl_stream_t *s;
    h2o_req_t *req;
    struct client *prev, *next;
    tl_auth_key_t key;
    tl_buf_t pending, sending;
    int64_t limit;              /* bytes it may fall behind (--stream-buffer) */
    int in_flight, closing, finished;
} client_t;

typedef struct assign_entry {
    char conversation[40];
    char assignee[72], team[72];
    int has_assignee, has_team;
    int64_t expires_ms;
} assign_entry_t;

struct tl_stream {
    uv_loop_t *loop;
    tl_kafka_t *kafka;
    tl_auth_t *auth;
    const tl_config_t *cfg;
    pthread_t thread;
    int thread_started;
    atomic_int stop;
    uv_async_t async;
    uv_timer_t heartbeat;
    pthread_mutex_t mu;
    note_t *inbox, *inbox_tail;         /* consumer thread -> loop */
    client_t *clients;
    note_t *ring[TL_STREAM_RING];       /* recent notes, for Last-Event-ID */
    int ring_head, ring_count;
    int64_t evicted[MAX_PARTS];         /* highest .changes offset dropped from the ring, +1 */
    int64_t vec[MAX_PARTS];             /* next .changes offset per partition, as fanned out */
    int nparts;                         /* set by the consumer thread, under mu */
    int loop_nparts;                    /* the loop's copy */
    assign_entry_t *assign;             /* consumer thread only */
    int assign_prepared;                /* the lookup is prepared on the thread's PGconn */
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note_free(note_t *n) {
    if (!n) return;
    free(n->json);
    free(n);
}

/* ------------------------------------------------------- consumer thread */

static unsigned slot_of(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % ASSIGN_SLOTS;
}

/* Fills the note's assignee and team: from the cache, else PostgreSQL. */
static void lookup_assignment(tl_stream_t *s, PGconn **pg, note_t *n) {
    assign_entry_t *e = &s->assign[slot_of(n->conversation)];
    int64_t now = mono_ms();
    if (strcmp(e->conversation, n->conversation) != 0 || e->expires_ms < now) {
        int err;
        if (!*pg || PQstatus(*pg) != CONNECTION_OK) {
            PQfinish(*pg);
            *pg = tl_pg_connect(s->cfg->pg_dsn, &err);
            s->assign_prepared = 0;
        }
        if (*pg && !s->assign_prepared) {
            /* Asked for every conversation every ASSIGN_TTL_MS: parse and
             * plan it once. */
            PGresult *r = PQprepare(*pg, "tl_stream_assign",
                                    "SELECT assignee, team FROM conversations"
                                    " WHERE tenant_id = $1 AND conversation_id = $2", 2, NULL);
            s->assign_prepared = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
        }
        memset(e, 0, sizeof *e);
        snprintf(e->conversation, sizeof e->conversation, "%s", n->conversation);
        e->expires_ms = now + ASSIGN_TTL_MS;
        if (*pg && s->assign_prepared) {
            const char *vals[] = {n->tenant, n->conversation};
            PGresult *r = PQexecPrepared(*pg, "tl_stream_assign", 2, vals, NULL, NULL, 0);
            if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
                if ((e->has_assignee = !PQgetisnull(r, 0, 0)))
                    snprintf(e->assignee, sizeof e->assignee, "%s", PQgetvalue(r, 0, 0));
                if ((e->has_team = !PQgetisnull(r, 0, 1)))
                    snprintf(e->team, sizeof e->team, "%s", PQgetvalue(r, 0, 1));
            } else {
                e->expires_ms = 0;      /* not projected yet: ask again next time */
            }
            PQclear(r);
        }
    }
    memcpy(n->assignee, e->assignee, sizeof n->assignee);
    memcpy(n->team, e->team, sizeof n->team);
    n->has_assignee = e->has_assignee;
    n->has_team = e->has_team;
}

/* An assignment in the stream is newer than the projection: remember it. */
static void remember_assignment(tl_stream_t *s, const tl_event_t *ev, const char *conv) {
    assign_entry_t *e = &s->assign[slot_of(conv)];
    memset(e, 0, sizeof *e);
    snprintf(e->conversation, sizeof e->conversation, "%s", conv);
    if ((e->has_assignee = ev->u.assign.agent_id.ptr != NULL))
        snprintf(e->assignee, sizeof e->assignee, "%.*s", (int)ev->u.assign.agent_id.len,
                 ev->u.assign.agent_id.ptr);
    if ((e->has_team = ev->u.assign.team_id.ptr != NULL))
        snprintf(e->team, sizeof e->team, "%.*s", (int)ev->u.assign.team_id.len, ev->u.assign.team_id.ptr);
    e->expires_ms = mono_ms() + ASSIGN_TTL_MS * 5;
}

#define CPY(dst, str) snprintf(dst, sizeof dst, "%.*s", (int)(str).len, (str).ptr ? (str).ptr : "")

static note_t *make_note(tl_stream_t *s, PGconn **pg, const rd_kafka_message_t *m,
                         tl_codec_t *ch_codec, tl_codec_t *ev_codec) {
    tl_change_t ch;
    tl_event_t ev;
    if (tl_change_decode(ch_codec, m->payload, m->len, &ch) != TL_OK || ch.duplicate) return NULL;
    if (tl_codec_decode_event(ev_codec, ch.event.ptr, ch.event.len, &ev) != TL_OK) return NULL;
    note_t *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->cpart = m->partition;
    n->coff = m->offset;
    CPY(n->tenant, ch.tenant_id);
    CPY(n->customer, ch.customer_id);
    CPY(n->conversation, ch.conversation_id);
    if (ev.kind == TL_EV_CONVERSATION_ASSIGNED && n->conversation[0])
        remember_assignment(s, &ev, n->conversation);
    if (n->conversation[0]) lookup_assignment(s, pg, n);
    tl_buf_t b;
    tl_buf_init(&b);
    int rc = tl_buf_printf(&b,
                           "{\"kind\":\"%s\",\"event_id\":\"%.*s\",\"tenant_id\":\"%s\","
                           "\"customer_id\":\"%s\",\"position\":\"%d:%lld\",\"platform\":\"%s\","
                           "\"customer_version\":%lld,\"effective_ts\":%lld,\"conversation_id\":",
                           tl_event_kind_name(ev.kind), (int)ch.event_id.len, ch.event_id.ptr,
                           n->tenant, n->customer, (int)ch.source_partition,
                           (long long)ch.source_offset, tl_platform_slug(ev.platform),
                           (long long)ch.customer_version, (long long)ch.effective_ts);
    if (n->conversation[0])
        rc |= tl_buf_printf(&b, "\"%s\",\"conversation_version\":%lld}", n->conversation,
                            (long long)ch.conversation_version);
    else
        rc |= tl_buf_puts(&b, "null}");
    n->json = rc ? NULL : strdup(b.data);
    tl_buf_close(&b);
    /* Tenant ids and event ids are plain text the adapters checked, but a
     * quote or newline must never break the SSE framing: drop such notes. */
    if (!n->json || strpbrk(n->tenant, "\"\\\n") || strpbrk(n->customer, "\"\\\n")) {
        note_free(n);
        return NULL;
    }
    return n;
}

static void *consume(void *arg) {
    tl_stream_t *s = arg;
    char errstr[256], group[256];
    int err;
    pthread_setname_np(pthread_self(), "tl-stream");   /* what top -H and perf show */
    tl_codec_t *ch_codec = tl_change_codec_new(&err), *ev_codec = tl_codec_new_event(&err);
    PGconn *pg = NULL;
    rd_kafka_conf_t *conf = tl_kafka_conf(s->kafka);
    rd_kafka_t *rk = NULL;
    if (!ch_codec || !ev_codec || !conf) goto out;
    /* A group id is needed to create a consumer; it never joins or
     * commits: partitions are assigned by hand. */
    tl_kafka_group(s->kafka, "stream", group, sizeof group);
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        tl_error("stream", "consumer: %s", errstr);
        goto out;
    }
    const char *topic = tl_kafka_topic(s->kafka, TL_TOPIC_CHANGES);
    int nparts = -1;
    while (!atomic_load(&s->stop) && (nparts = tl_kafka_partition_count(rk, topic, 1000)) <= 0) {
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (nparts <= 0) goto out;
    if (nparts > MAX_PARTS) nparts = MAX_PARTS;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    pthread_mutex_lock(&s->mu);
    s->nparts = nparts;
    pthread_mutex_unlock(&s->mu);
    tl_info("stream", "following %s (%d partitions) from its end", topic, nparts);
    while (!atomic_load(&s->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        note_t *n = m->err ? NULL : make_note(s, &pg, m, ch_codec, ev_codec);
        rd_kafka_message_destroy(m);
        if (!n) continue;
        pthread_mutex_lock(&s->mu);
        if (s->inbox_tail) s->inbox_tail->next = n;
        else s->inbox = n;
        s->inbox_tail = n;
        pthread_mutex_unlock(&s->mu);
        uv_async_send(&s->async);
    }
out:
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    PQfinish(pg);
    tl_codec_free(ch_codec);
    tl_codec_free(ev_codec);
    return NULL;
}

/* ----------------------------------------------------------- loop thread */

static void flush(client_t *c);

static void on_proceed(h2o_generator_t *g, h2o_req_t *req) {
    (void)req;
    client_t *c = (client_t *)g;
    c->in_flight = 0;
    tl_buf_reset(&c->sending);
    flush(c);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req) {
    (void)g;
    (void)req;
}

/* Sends what is pending, unless a send is in flight (h2o allows one). */
static void flush(client_t *c) {
    if (c->in_flight || c->finished || (!c->pending.len && !c->closing)) return;
    tl_buf_t t = c->sending;
    c->sending = c->pending;
    c->pending = t;
    tl_buf_reset(&c->pending);
    h2o_iovec_t v = h2o_iovec_init(c->sending.data ? c->sending.data : "", c->sending.len);
    c->in_flight = 1;
    if (c->closing) c->finished = 1;
    h2o_send(c->req, &v, 1, c->closing ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void client_unlink(client_t *c) {
    if (!c->s) return;
    if (c->prev) c->prev->next = c->next;
    else c->s->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->s = NULL;
}

/* h2o disposes the request's pool: the client is gone. */
static void on_client_dispose(void *arg) {
    client_t *c = arg;
    client_unlink(c);
    tl_buf_close(&c->pending);
    tl_buf_close(&c->sending);
}

/* Queues text for c; drops the client when its buffer is full. */
static void client_write(client_t *c, const char *text, size_t len) {
    if (c->closing) return;
    if (c->pending.len + len > (size_t)c->limit) {
        static const char bye[] = "event: dropped\ndata: {\"reason\":\"client too slow\"}\n\n";
        tl_buf_append(&c->pending, bye, sizeof bye - 1);
        c->closing = 1;
        client_unlink(c);
        tl_warn("stream", "dropping a slow client (%zu bytes unsent)", c->pending.len);
    } else if (tl_buf_append(&c->pending, text, len) != TL_OK) {
        c->closing = 1;
        client_unlink(c);
    }
    flush(c);
}

static int in_scope(const client_t *c, const note_t *n) {
    if (c->key.tenant[0] && strcmp(c->key.tenant, n->tenant) != 0) return 0;
    if (c->key.role != TL_ROLE_AGENT) return 1;
    if (!n->conversation[0]) return 0;
    return tl_auth_sees(&c->key, n->has_assignee ? n->assignee : NULL, n->has_team ? n->team : NULL);
}

/* "event: change\nid: <vector>\ndata: <json>\n\n" for n into b. */
static int render(const note_t *n, const char *vec, tl_buf_t *b) {
    return tl_buf_printf(b, "event: change\nid: %s\ndata: %s\n\n", vec, n->json);
}

static void render_vec(tl_stream_t *s, char *out, size_t size) {
    size_t len = 0;
    out[0] = 0;
    for (int p = 0; p < s->loop_nparts && len + 32 < size; p++)
        if (s->vec[p] > 0) len += (size_t)snprintf(out + len, size - len, "%s%d:%lld", len ? "," : "", p, (long long)s->vec[p]);
}

static void on_async(uv_async_t *h) {
    tl_stream_t *s = h->data;
    pthread_mutex_lock(&s->mu);
    note_t *n = s->inbox;
    s->inbox = s->inbox_tail = NULL;
    s->loop_nparts = s->nparts;
    pthread_mutex_unlock(&s->mu);
    char vec[MAX_PARTS * 24 > 8192 ? 8192 : MAX_PARTS * 24];
    tl_buf_t b;
    tl_buf_init(&b);
    while (n) {
        note_t *next = n->next;
        n->next = NULL;
        if (n->cpart >= 0 && n->cpart < MAX_PARTS) s->vec[n->cpart] = n->coff + 1;
        render_vec(s, vec, sizeof vec);
        tl_buf_reset(&b);
        if (render(n, vec, &b) == TL_OK)
            for (client_t *c = s->clients, *cn; c; c = cn) {
                cn = c->next;
                if (in_scope(c, n)) client_write(c, b.data, b.len);
            }
        /* Into the ring, evicting the oldest. */
        int slot = (s->ring_head + s->ring_count) % TL_STREAM_RING;
        if (s->ring_count == TL_STREAM_RING) {
            note_t *old = s->ring[s->ring_head];
            if (old->cpart >= 0 && old->cpart < MAX_PARTS) s->evicted[old->cpart] = old->coff + 1;
            note_free(old);
            s->ring_head = (s->ring_head + 1) % TL_STREAM_RING;
            slot = (s->ring_head + s->ring_count - 1) % TL_STREAM_RING;
        } else {
            s->ring_count++;
        }
        s->ring[slot] = n;
        n = next;
    }
    tl_buf_close(&b);
}

static void on_heartbeat(uv_timer_t *h) {
    tl_stream_t *s = h->data;
    for (client_t *c = s->clients, *cn; c; c = cn) {
        cn = c->next;
        client_write(c, ": heartbeat\n\n", 13);
    }
}

/* Replays the ring after the client's Last-Event-ID vector "P:O,...". */
static void replay(tl_stream_t *s, client_t *c, const h2o_iovec_t *last) {
    static int64_t seen[MAX_PARTS];
    memset(seen, 0, sizeof seen);
    char tmp[8192];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(last->len < sizeof tmp ? last->len : sizeof tmp - 1), last->base);
    for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ",")) {
        int p;
        long long o;
        if (sscanf(tok, "%d:%lld", &p, &o) == 2 && p >= 0 && p < MAX_PARTS && o >= 0) seen[p] = o;
    }
    for (int p = 0; p < MAX_PARTS; p++)
        if (s->evicted[p] > seen[p]) {
            client_write(c, "event: reset\ndata: {\"reason\":\"Last-Event-ID is older than the stream "
                            "remembers; re-read what you show\"}\n\n", 105);
            return;
        }
    tl_buf_t b;
    tl_buf_init(&b);
    char vec[64];
    for (int i = 0; i < s->ring_count; i++) {
        note_t *n = s->ring[(s->ring_head + i) % TL_STREAM_RING];
        if (n->coff < seen[n->cpart] || !in_scope(c, n)) continue;
        /* The id of a replayed note names only its own partition; the
         * next live note carries the full vector again. */
        snprintf(vec, sizeof vec, "%d:%lld", n->cpart, (long long)n->coff + 1);
        tl_buf_reset(&b);
        if (render(n, vec, &b) == TL_OK) client_write(c, b.data, b.len);
    }
    tl_buf_close(&b);
}

/* ------------------------------------------------------------- handler */

typedef struct open_job {
    uv_work_t work;
    tl_stream_t *s;
    tl_http_pending_t *pending;
    char *authz;
    size_t authz_len;
    char tenant[72];
    int has_tenant;
    int status;
    tl_problem_t pb;
    tl_auth_key_t key;
} open_job_t;

static void open_work(uv_work_t *w) {
    open_job_t *j = w->data;
    j->status = tl_auth_verify_pooled(j->s->auth, j->authz, j->authz_len,
                                      j->has_tenant ? j->tenant : NULL, &j->key, &j->pb);
    if (!j->status && !tl_auth_allow(&j->key, TL_OP_STREAM, TL_PLATFORM_AGENT, &j->pb))
        j->status = 403;
}

static void open_done(uv_work_t *w, int status) {
    open_job_t *j = w->data;
    tl_stream_t *s = j->s;
    h2o_req_t *req = j->pending->req;
    if (req && (status == UV_ECANCELED || atomic_load(&s->stop))) {
        tl_problem_set(&j->pb, 503, "shutting-down", "Shutting down", NULL, "the server is stopping");
        tl_http_problem(req, &j->pb);
    } else if (req && j->status) {
        tl_http_problem(req, &j->pb);
    } else if (req) {
        client_t *c = h2o_mem_alloc_shared(&req->pool, sizeof *c, on_client_dispose);
        memset(c, 0, sizeof *c);
        c->gen.proceed = on_proceed;
        c->gen.stop = on_stop;
        c->req = req;
        c->key = j->key;
        c->limit = s->cfg->stream_buffer > 0 ? s->cfg->stream_buffer : TL_STREAM_CLIENT_BUFFER;
        tl_buf_init(&c->pending);
        tl_buf_init(&c->sending);
        c->s = s;
        c->next = s->clients;
        if (s->clients) s->clients->prev = c;
        s->clients = c;
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("text/event-stream"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                       H2O_STRLIT("no-store"));
        /* Left to itself the kernel grows a socket's send buffer to
         * megabytes, all of which a stalled client could pin; a small one
         * keeps --stream-buffer the real bound on how far it falls behind. */
        h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
        int fd = sock ? h2o_socket_get_fd(sock) : -1;
        int sndbuf = TL_STREAM_SOCKET_BUFFER;
        if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        h2o_start_response(req, &c->gen);
        client_write(c, ": connected\nretry: 2000\n\n", 25);
        const h2o_iovec_t *last = tl_http_header(req, "last-event-id");
        if (last && last->len) replay(s, c, last);
    }
    tl_http_pending_free(j->pending);
    free(j->authz);
    free(j);
}

static void stream_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_stream_t *s = ud;
    (void)params;
    tl_problem_t pb;
    open_job_t *j = calloc(1, sizeof *j);
    const h2o_iovec_t *h = tl_http_header(req, "authorization");
    if (j && h && (j->authz = malloc(h->len + 1))) {
        memcpy(j->authz, h->base, h->len);
        j->authz[h->len] = 0;
        j->authz_len = h->len;
    }
    if (!j || (h && !j->authz) || !(j->pending = tl_http_pending_new(req))) {
        if (j) free(j->authz);
        free(j);
        tl_problem_set(&pb, 503, "overloaded", "Overloaded", NULL, "out of memory");
        tl_http_problem(req, &pb);
        return;
    }
    int l = tl_http_query(req, "tenant", j->tenant, sizeof j->tenant);
    j->has_tenant = l > 0;
    j->s = s;
    j->work.data = j;
    uv_queue_work(s->loop, &j->work, open_work, open_done);
}

int tl_stream_new(uv_loop_t *loop, tl_http_t *http, tl_kafka_t *kafka, tl_auth_t *auth,
                  const tl_config_t *cfg, tl_stream_t **out) {
    tl_stream_t *s = calloc(1, sizeof *s);
    if (!s) return TL_ENOMEM;
    if (!(s->assign = calloc(ASSIGN_SLOTS, sizeof *s->assign))) {
        free(s);
        return TL_ENOMEM;
    }
    s->loop = loop;
    s->kafka = kafka;
    s->auth = auth;
    s->cfg = cfg;
    atomic_init(&s->stop, 0);
    pthread_mutex_init(&s->mu, NULL);
    int rc = tl_http_route(http, "GET", "/v1/stream", stream_handler, s);
    if (rc) {
        pthread_mutex_destroy(&s->mu);
        free(s->assign);
        free(s);
        return rc;
    }
    uv_async_init(loop, &s->async, on_async);
    s->async.data = s;
    uv_timer_init(loop, &s->heartbeat);
    s->heartbeat.data = s;
    uv_timer_start(&s->heartbeat, on_heartbeat, TL_STREAM_HEARTBEAT_MS, TL_STREAM_HEARTBEAT_MS);
    if (pthread_create(&s->thread, NULL, consume, s) != 0) {
        tl_error("stream", "cannot start the consumer thread");
        uv_close((uv_handle_t *)&s->async, NULL);
        uv_close((uv_handle_t *)&s->heartbeat, NULL);
        *out = s;           /* the route holds s: keep it, without a thread */
        return TL_OK;
    }
    s->thread_started = 1;
    *out = s;
    return TL_OK;
}

void tl_stream_close(tl_stream_t *s) {
    if (!s) return;
    atomic_store(&s->stop, 1);
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
        s->thread_started = 0;
        uv_timer_stop(&s->heartbeat);
        uv_close((uv_handle_t *)&s->async, NULL);
        uv_close((uv_handle_t *)&s->heartbeat, NULL);
    }
    for (client_t *c = s->clients, *cn; c; c = cn) {
        cn = c->next;
        c->closing = 1;
        client_unlink(c);
        flush(c);
    }
}

void tl_stream_free(tl_stream_t *s) {
    if (!s) return;
    for (note_t *n = s->inbox, *nn; n; n = nn) {
        nn = n->next;
        note_free(n);
    }
    for (int i = 0; i < s->ring_count; i++) note_free(s->ring[(s->ring_head + i) % TL_STREAM_RING]);
    pthread_mutex_destroy(&s->mu);
    free(s->assign);
    free(s);
}
