/*
 * ingest.c -- the ingest endpoints (see ingest.h).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "codec.h"
#include "dedup.h"
#include "error.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "uuid.h"
#include "api.h"
#include "web.h"
#include "douyin.h"
#include "phone.h"
#include "quota.h"
#include "wechat.h"

/* What the recent-key cache remembers of an acknowledged event. */
typedef struct ack {
    char event_id[TL_UUID_STRLEN + 1];
    char customer_id[TL_UUID_STRLEN + 1];
    int32_t partition;
    int64_t offset;
} ack_t;

/* How a platform expects to hear that its event was accepted. */
typedef enum answer {
    ANSWER_202,             /* 202 with event id, customer id, position */
    ANSWER_200,             /* the same body with 200 (Douyin retries other codes) */
    ANSWER_WECHAT           /* 200 text/plain "success" */
} answer_t;

/* One event waiting for its delivery report. */
typedef struct ticket {
    tl_ingest_t *in;
    tl_http_pending_t *pending;
    ack_t ack;
    answer_t answer;        /* how this platform expects to hear "accepted" */
    uv_timer_t deadline;    /* WeChat only: answer 503 before WeChat gives up */
    int has_deadline;
    size_t keylen;
    char key[TL_DEDUP_KEY_MAX];
} ticket_t;

typedef int (*adapter_fn)(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                          tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb);

struct tl_ingest {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    tl_codec_t *codec;
    tl_buf_t buf;
    tl_dedup_t *recent;
    int pipefd[2];
    uv_poll_t poll;
    uv_timer_t timer;
    int64_t max_body;
    int ack_timeout_ms;
    adapter_fn adapters[TL_PLATFORM__COUNT];
    int has_wechat;
    tl_wechat_conf_t wechat;
    int has_douyin;
    tl_douyin_conf_t douyin;
    tl_phone_conf_t phone;
    tl_quota_t quota;
};

/* Admits one request of platform under its quota, or answers 429 and
 * returns 0.  Loop thread. */
static int admit(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform) {
    int retry = tl_quota_take(&in->quota, platform, (int64_t)(uv_hrtime() / 1000));
    if (!retry) return 1;
    tl_problem_t pb;
    tl_problem_set(&pb, 429, "quota-exceeded", "Platform over its quota", "platform",
                   "platform \"%s\" is over its ingest quota; nothing was accepted, retry later",
                   tl_platform_slug(platform));
    pb.retry_after = retry;
    tl_metric_add(TL_M_ingest_throttled_total, 1);
    tl_http_problem(req, &pb);
    return 0;
}

static int64_t now_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void answer_ack(h2o_req_t *req, int status, const ack_t *a, int duplicate) {
    char body[256], position[48];
    /* The broker can acknowledge without an offset: when an idempotent
     * retry finds the first attempt already written (DUPLICATE_SEQUENCE),
     * librdkafka reports success with RD_KAFKA_OFFSET_INVALID.  The event
     * is durable; only its position is unknown, so say null. */
    if (a->offset >= 0)
        snprintf(position, sizeof position, "\"%d:%lld\"", (int)a->partition, (long long)a->offset);
    else
        snprintf(position, sizeof position, "null");
    int n = snprintf(body, sizeof body,
                     "{\"event_id\":\"%s\",\"customer_id\":\"%s\",\"duplicate\":%s,"
                     "\"position\":%s}",
                     a->event_id, a->customer_id, duplicate ? "true" : "false", position);
    tl_http_json(req, status, body, (size_t)n);
}

static void answer_unavailable(h2o_req_t *req, const char *why) {
    tl_problem_t pb;
    tl_problem_set(&pb, 503, "kafka-unavailable", "Event log unavailable", NULL,
                   "the event was not acknowledged by Kafka (%s); nothing was accepted, "
                   "retry with the same message id", why);
    pb.retry_after = 2;
    tl_metric_add(TL_M_ingest_unavailable_total, 1);
    tl_http_problem(req, &pb);
}

/* WeChat wants the plain body "success" within its 5-second window; the
 * event id and position are of no use to it. */
static void answer_wechat_success(h2o_req_t *req) {
    tl_http_send(req, 200, "text/plain; charset=utf-8", "success", 7);
}

static void answer_accepted(h2o_req_t *req, const ticket_t *t, const ack_t *a, int duplicate) {
    if (t->answer == ANSWER_WECHAT) answer_wechat_success(req);
    else answer_ack(req, t->answer == ANSWER_200 ? 200 : 202, a, duplicate);
}

/* WeChat waits 5 s for an answer and then resends; a 503 before that tells
 * it plainly to resend, and if the first attempt does land after all, the
 * resend is recognised by its MsgId. */
#define WECHAT_ANSWER_MS 4500

static void on_ticket_closed(uv_handle_t *h) { free(h->data); }

/* Releases a ticket (its deadline timer closes first, if it has one). */
static void ticket_free(ticket_t *t) {
    tl_http_pending_free(t->pending);
    t->pending = NULL;
    if (t->has_deadline) {
        uv_timer_stop(&t->deadline);
        uv_close((uv_handle_t *)&t->deadline, on_ticket_closed);
    } else {
        free(t);
    }
}

static void on_deadline(uv_timer_t *h) {
    ticket_t *t = h->data;
    if (t->pending && t->pending->req)
        answer_unavailable(t->pending->req, "no acknowledgement within WeChat's 5-second window");
    tl_http_pending_free(t->pending);
    t->pending = NULL;
}

/* librdkafka delivery report: runs on the loop thread, from rd_kafka_poll. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    ticket_t *t = m->_private;
    tl_ingest_t *in = t->in;
    h2o_req_t *req = t->pending ? t->pending->req : NULL;
    if (m->err) {
        tl_warn("ingest", "event %s not acknowledged: %s", t->ack.event_id, rd_kafka_err2str(m->err));
        if (req) answer_unavailable(req, rd_kafka_err2str(m->err));
    } else {
        t->ack.partition = m->partition;
        t->ack.offset = m->offset;
        if (t->keylen) tl_dedup_put(in->recent, t->key, t->keylen, &t->ack, sizeof t->ack);
        tl_metric_add(TL_M_ingest_accepted_total, 1);
        if (req) answer_accepted(req, t, &t->ack, 0);
    }
    ticket_free(t);
}

/* librdkafka reconnects by itself; its errors are for the operator. */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)opaque;
    tl_warn("ingest", "kafka: %s (%s)", reason, rd_kafka_err2name((rd_kafka_resp_err_t)err));
}

static void drain(tl_ingest_t *in) {
    char junk[256];
    while (read(in->pipefd[0], junk, sizeof junk) > 0) {}
    while (rd_kafka_poll(in->rk, 0) > 0) {}
}

static void on_pipe(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    drain(h->data);
}

static void on_timer(uv_timer_t *h) {
    tl_ingest_t *in = h->data;
    /* Belt and braces: the pipe wakes us, this catches anything else. */
    drain(in);
}

/* Everything after the adapter: the recent-key check, encoding, producing.
 * Answers req (now or from the delivery report).  ev's strings must stay
 * valid until this returns; they are not needed after. */
static void submit(tl_ingest_t *in, h2o_req_t *req, const tl_event_t *ev, const char *event_id,
                   answer_t answer) {
    tl_problem_t pb;
    /* A resend of a message acknowledged a moment ago gets the same answer. */
    ticket_t *t = calloc(1, sizeof *t);
    if (!t) {
        answer_unavailable(req, "out of memory");
        return;
    }
    t->in = in;
    t->answer = answer;
    /* Idempotency keys are unique per customer (the fold dedups per
     * customer), not per tenant: a web message id is only unique per
     * visitor.  So the cache key is tenant, customer and key. */
    t->keylen = (size_t)snprintf(t->key, sizeof t->key, "%.*s%c%.*s%c%.*s", (int)ev->tenant_id.len,
                                 ev->tenant_id.ptr, 0, (int)ev->customer_id.len, ev->customer_id.ptr,
                                 0, (int)ev->idempotency_key.len, ev->idempotency_key.ptr);
    /* A key too long for the cache is simply not cached (never cut: two
     * cut keys could collide and a new event be taken for a resend); the
     * fold's own dedup still applies it once. */
    if (t->keylen >= sizeof t->key) t->keylen = 0;
    size_t alen;
    ack_t prev;
    if (t->keylen && tl_dedup_get(in->recent, t->key, t->keylen, &prev, &alen) &&
        alen == sizeof prev) {
        tl_metric_add(TL_M_ingest_duplicate_total, 1);
        answer_accepted(req, t, &prev, 1);
        free(t);
        return;
    }
    memcpy(t->ack.event_id, event_id, TL_UUID_STRLEN + 1);
    memcpy(t->ack.customer_id, ev->customer_id.ptr, TL_UUID_STRLEN);

    tl_buf_reset(&in->buf);
    int rc = tl_codec_encode_event(in->codec, ev, &in->buf);
    if (rc) {
        free(t);
        tl_error("ingest", "encoding event %s: %s", event_id, tl_strerror(rc));
        tl_problem_set(&pb, 500, "internal", "Internal error", NULL, "the event could not be encoded");
        tl_http_problem(req, &pb);
        return;
    }
    t->pending = tl_http_pending_new(req);
    if (!t->pending) {
        free(t);
        answer_unavailable(req, "out of memory");
        return;
    }
    if (answer == ANSWER_WECHAT) {
        uv_timer_init(in->loop, &t->deadline);
        t->deadline.data = t;
        t->has_deadline = 1;
        uv_timer_start(&t->deadline, on_deadline, WECHAT_ANSWER_MS, 0);
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        in->rk, RD_KAFKA_V_RKT(in->rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(t->ack.customer_id, TL_UUID_STRLEN),
        RD_KAFKA_V_VALUE(in->buf.data, in->buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
    if (err) {
        ticket_free(t);
        answer_unavailable(req, rd_kafka_err2str(err));
    }
}

/* The gateway's part of the adapter context: clock, event id, trace id. */
static void make_ctx(tl_ingest_t *in, h2o_req_t *req, char event_id[TL_UUID_STRLEN + 1],
                     char trace[64], tl_adapter_ctx_t *ctx) {
    int64_t now = now_ms();
    tl_uuid_v7(now, event_id);
    const h2o_iovec_t *tp = tl_http_header(req, "traceparent");
    /* W3C traceparent: 00-<32 hex trace id>-<16 hex span>-<2 hex flags> */
    if (tp && tp->len >= 55 && tp->base[2] == '-')
        snprintf(trace, 64, "%.32s", tp->base + 3);
    else
        snprintf(trace, 64, "%s", event_id);
    *ctx = (tl_adapter_ctx_t){now, event_id, trace, in->max_body};
}

/* What every ingest route has before its adapter runs. */
typedef struct request {
    const char *body;
    size_t len;
    char event_id[TL_UUID_STRLEN + 1];
    char trace[64];
    tl_adapter_ctx_t ctx;
} request_t;

/* Quota, body and adapter context for a request of platform; returns 0, or
 * -1 when the request was already answered (429, 413).  Loop thread. */
static int begin(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform, request_t *r) {
    if (!admit(in, req, platform)) return -1;
    if (tl_http_body(req, &r->body, &r->len) < 0) {
        tl_metric_add(TL_M_ingest_rejected_total, 1);
        return -1;
    }
    make_ctx(in, req, r->event_id, r->trace, &r->ctx);
    return 0;
}

/* Answers an adapter's refusal. */
static void reject(h2o_req_t *req, const tl_problem_t *pb) {
    tl_metric_add(TL_M_ingest_rejected_total, 1);
    tl_http_problem(req, pb);
}

static void ingest_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_ingest_t *in = ud;
    tl_problem_t pb;
    tl_platform_t platform;
    request_t r;

    if (tl_platform_from_slug(params->v[0].base, params->v[0].len, &platform) != TL_OK ||
        !in->adapters[platform]) {
        tl_problem_set(&pb, 404, "unknown-platform", "Unknown platform", "platform",
                       "no ingest adapter for platform \"%.*s\"", (int)params->v[0].len,
                       params->v[0].base);
        reject(req, &pb);
        return;
    }
    if (begin(in, req, platform, &r)) return;
    tl_adapter_out_t out = {0};
    tl_event_t ev;
    if (in->adapters[platform](&r.ctx, r.body, r.len, &out, &ev, &pb)) reject(req, &pb);
    else submit(in, req, &ev, r.event_id, ANSWER_202);
    tl_adapter_out_close(&out);
}

/* POST /v1/ingest/phone: a call centre's transcript segment. */
static void phone_post(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_ingest_t *in = ud;
    tl_problem_t pb;
    request_t r;
    (void)params;
    if (begin(in, req, TL_PLATFORM_PHONE, &r)) return;
    tl_phone_out_t out = {0};
    tl_event_t ev;
    if (tl_phone_parse(&in->phone, &r.ctx, r.body, r.len, &out, &ev, &pb)) reject(req, &pb);
    else submit(in, req, &ev, r.event_id, ANSWER_202);
    tl_phone_out_close(&out);
}

/* POST /v1/ingest/douyin: a signed Douyin webhook. */
static void douyin_post(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_ingest_t *in = ud;
    tl_problem_t pb;
    request_t r;
    (void)params;
    if (begin(in, req, TL_PLATFORM_DOUYIN, &r)) return;
    /* h2o keeps header names in lower case. */
    const h2o_iovec_t *h = tl_http_header(req, "x-douyin-signature");
    tl_str_t sig = h ? (tl_str_t){h->base, h->len} : TL_STR_NULL;
    tl_douyin_out_t out = {0};
    tl_event_t ev;
    int rc = tl_douyin_parse(&in->douyin, &r.ctx, sig, r.body, r.len, &out, &ev, &pb);
    if (rc == TL_DOUYIN_CHALLENGE) tl_http_json(req, 200, out.reply, out.reply_len);
    else if (rc) reject(req, &pb);
    else submit(in, req, &ev, r.event_id, ANSWER_200);
    tl_douyin_out_close(&out);
}

/* The query of a WeChat call.  Buffers are larger than the adapter accepts
 * so that an over-long value is reported, not silently cut. */
typedef struct wechat_query {
    tl_wechat_query_t q;
    char signature[256], timestamp[256], nonce[256], echostr[256], openid[256];
    char encrypt_type[256], msg_signature[256];
} wechat_query_t;

static void wechat_query(h2o_req_t *req, wechat_query_t *wq) {
#define WQ(name) wq->q.name = tl_http_query(req, #name, wq->name, sizeof wq->name) >= 0 ? wq->name : NULL;
    WQ(signature) WQ(timestamp) WQ(nonce) WQ(echostr) WQ(openid) WQ(encrypt_type) WQ(msg_signature)
#undef WQ
}

/* GET /v1/ingest/wechat: WeChat's URL verification. */
static void wechat_get(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_ingest_t *in = ud;
    tl_problem_t pb;
    wechat_query_t wq;
    tl_str_t echo;
    (void)params;
    wechat_query(req, &wq);
    if (tl_wechat_echo(&in->wechat, &wq.q, &echo, &pb)) {
        tl_http_problem(req, &pb);
        return;
    }
    tl_http_send(req, 200, "text/plain; charset=utf-8", echo.ptr, echo.len);
}

/* POST /v1/ingest/wechat: a message or event from WeChat. */
static void wechat_post(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_ingest_t *in = ud;
    tl_problem_t pb;
    wechat_query_t wq;
    request_t r;
    (void)params;
    if (begin(in, req, TL_PLATFORM_WECHAT, &r)) return;
    wechat_query(req, &wq);
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    if (tl_wechat_parse(&in->wechat, &r.ctx, &wq.q, r.body, r.len, &out, &ev, &pb)) reject(req, &pb);
    else submit(in, req, &ev, r.event_id, ANSWER_WECHAT);
    tl_wechat_out_close(&out);
}

int tl_ingest_new(uv_loop_t *loop, tl_http_t *http, tl_kafka_t *kafka, const tl_config_t *cfg,
                  tl_ingest_t **out) {
    char errstr[256];
    int rc = TL_ENOMEM;
    tl_ingest_t *in = calloc(1, sizeof *in);
    if (!in) return TL_ENOMEM;
    in->loop = loop;
    in->max_body = cfg->max_body;
    in->ack_timeout_ms = (int)cfg->ack_timeout_ms;
    in->adapters[TL_PLATFORM_WEB] = tl_web_parse;
    in->adapters[TL_PLATFORM_API] = tl_api_parse;
    if (cfg->wechat_token && *cfg->wechat_token) {
        char err[256];
        if (tl_wechat_conf_init(&in->wechat, cfg->wechat_tenant, cfg->wechat_token,
                                cfg->wechat_aes_key, cfg->wechat_appid, err, sizeof err)) {
            tl_error("ingest", "%s", err);
            free(in);
            return TL_ECONFIG;
        }
        in->has_wechat = 1;
    }
    char err[256];
    if (tl_quota_init(&in->quota, cfg->quotas, cfg->ingest_capacity, err, sizeof err) ||
        tl_phone_conf_init(&in->phone, cfg->phone_country_code, err, sizeof err)) {
        tl_error("ingest", "%s", err);
        tl_wechat_conf_close(&in->wechat);
        free(in);
        return TL_ECONFIG;
    }
    if (cfg->douyin_secret && *cfg->douyin_secret) {
        if (tl_douyin_conf_init(&in->douyin, cfg->douyin_tenant, cfg->douyin_secret, err, sizeof err)) {
            tl_error("ingest", "%s", err);
            tl_wechat_conf_close(&in->wechat);
            free(in);
            return TL_ECONFIG;
        }
        in->has_douyin = 1;
    }
    tl_buf_init(&in->buf);
    in->codec = tl_codec_new_event(&rc);
    if (!in->codec) goto fail;
    rc = TL_ENOMEM;
    if (!(in->recent = tl_dedup_new(65536))) goto fail_codec;
    if (pipe2(in->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) goto fail_dedup;

    rd_kafka_conf_t *conf = tl_kafka_conf_producer(kafka, (int)cfg->ack_timeout_ms);
    if (!conf) goto fail_pipe;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_opaque(conf, in);
    in->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!in->rk) {
        rd_kafka_conf_destroy(conf);
        tl_error("ingest", "producer: %s", errstr);
        rc = TL_EKAFKA;
        goto fail_pipe;
    }
    in->rkt = rd_kafka_topic_new(in->rk, tl_kafka_topic(kafka, TL_TOPIC_EVENTS), NULL);
    if (!in->rkt) goto fail_rk;
    rd_kafka_queue_t *mq = rd_kafka_queue_get_main(in->rk);
    rd_kafka_queue_io_event_enable(mq, in->pipefd[1], "1", 1);
    rd_kafka_queue_destroy(mq);

    uv_poll_init(loop, &in->poll, in->pipefd[0]);
    in->poll.data = in;
    uv_poll_start(&in->poll, UV_READABLE, on_pipe);
    uv_timer_init(loop, &in->timer);
    in->timer.data = in;
    uv_timer_start(&in->timer, on_timer, 100, 100);

    /* WeChat's own protocol first: routes are tried in order. */
    if (in->has_wechat &&
        ((rc = tl_http_route(http, "GET", "/v1/ingest/wechat", wechat_get, in)) ||
         (rc = tl_http_route(http, "POST", "/v1/ingest/wechat", wechat_post, in)))) {
        tl_ingest_close(in, 0);
        return rc;
    }
    if ((in->has_douyin && (rc = tl_http_route(http, "POST", "/v1/ingest/douyin", douyin_post, in))) ||
        (rc = tl_http_route(http, "POST", "/v1/ingest/phone", phone_post, in)) ||
        (rc = tl_http_route(http, "POST", "/v1/ingest/{}", ingest_handler, in))) {
        tl_ingest_close(in, 0);
        return rc;
    }
    *out = in;
    return TL_OK;

fail_rk:
    rd_kafka_destroy(in->rk);
fail_pipe:
    close(in->pipefd[0]);
    close(in->pipefd[1]);
fail_dedup:
    tl_dedup_free(in->recent);
fail_codec:
    tl_codec_free(in->codec);
fail:
    tl_buf_close(&in->buf);
    tl_wechat_conf_close(&in->wechat);
    free(in);
    return rc;
}

int tl_ingest_ping(tl_ingest_t *in, int timeout_ms) {
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(in->rk, 0, in->rkt, &md, timeout_ms);
    if (err) return TL_EKAFKA_DOWN;
    int ok = md->topic_cnt == 1 && !md->topics[0].err;
    rd_kafka_metadata_destroy(md);
    return ok ? TL_OK : TL_EKAFKA_DOWN;
}

void tl_ingest_close(tl_ingest_t *in, int timeout_ms) {
    /* Answer what is in flight before going: flush runs delivery reports. */
    rd_kafka_flush(in->rk, timeout_ms);
    uv_poll_stop(&in->poll);
    uv_close((uv_handle_t *)&in->poll, NULL);
    uv_close((uv_handle_t *)&in->timer, NULL);
}

void tl_ingest_free(tl_ingest_t *in) {
    if (!in) return;
    rd_kafka_topic_destroy(in->rkt);
    rd_kafka_destroy(in->rk);
    close(in->pipefd[0]);
    close(in->pipefd[1]);
    tl_dedup_free(in->recent);
    tl_codec_free(in->codec);
    tl_buf_close(&in->buf);
    tl_wechat_conf_close(&in->wechat);
    free(in);
}
