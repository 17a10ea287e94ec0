/*
 * ingest.c -- the ingest endpoints (see ingest.h).
 *
 * Every accepted request becomes one heap `job` that owns everything its
 * events point into (the adapter's out, the gateway's ids), because the
 * request now waits twice off the loop: for the identity lookups on the
 * thread pool, then for one delivery report per event.  Each event has a
 * `slot` (its outcome); the job answers when the last report is in, so a
 * multi-event request is answered once, from the full picture, and a
 * partial failure can say exactly which events the broker holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <jansson.h>

#include "codec.h"
#include "dedup.h"
#include "error.h"
#include "identity.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "producer.h"
#include "uuid.h"
#include "api.h"
#include "app.h"
#include "mini_program.h"
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
    ANSWER_WECHAT,          /* 200 text/plain "success" */
    ANSWER_LIST             /* 202 with one entry per event (app) */
} answer_t;

/* Which adapter filled a job, so it is closed the right way. */
typedef enum route {
    ROUTE_JSON,             /* web, api: a plain tl_adapter_out_t */
    ROUTE_PHONE,
    ROUTE_DOUYIN,
    ROUTE_WECHAT,
    ROUTE_APP,
    ROUTE_MINI_PROGRAM
} route_t;

/* What became of one event of a request. */
typedef enum slot_state {
    SLOT_PENDING,           /* produced, no delivery report yet */
    SLOT_HELD,              /* the broker acknowledged it */
    SLOT_DUPLICATE,         /* acknowledged a moment ago: answered from the cache */
    SLOT_FAILED             /* not acknowledged: the broker may not hold it */
} slot_state_t;

typedef struct job job_t;

/* One event of a request, from production to its delivery report. */
typedef struct slot {
    job_t *job;
    slot_state_t state;
    int index;              /* the event's position in the request (-1: a link ingest added) */
    tl_event_kind_t kind;
    ack_t ack;
    const char *why;        /* static: why it failed */
    size_t keylen;
    char key[TL_DEDUP_KEY_MAX];
} slot_t;

#define JOB_MAX_EVENTS (TL_APP_MAX_EVENTS + 2)

/* What every ingest route has before its adapter runs. */
typedef struct request {
    const char *body;
    size_t len;
    char event_id[TL_UUID_STRLEN + 1];
    char trace[64];
    tl_adapter_ctx_t ctx;
} request_t;

/* One request from its adapter to its answer: resolving its identities on
 * the thread pool, producing its events, waiting for every delivery report.
 * Every string its events point to lives here, so nothing dangles while it
 * waits. */
struct job {
    tl_ingest_t *in;
    tl_http_pending_t *pending;
    route_t route;
    answer_t answer;
    tl_platform_t platform;
    request_t r;
    union {
        tl_adapter_out_t base;      /* every adapter's out starts with one */
        tl_phone_out_t phone;
        tl_douyin_out_t douyin;
        tl_wechat_out_t wechat;
        tl_app_out_t app;
        tl_mini_program_out_t mp;
    } out;
    char key_tenant[72];            /* the connector key's tenant; "": any */
    tl_event_t ev;                  /* the event of one-event adapters */
    const tl_event_t *evs;          /* what to produce */
    int nev;
    tl_identity_lookup_t look[TL_IDENTITY_MAX_LOOKUPS];
    int nlook;
    int outstanding;                /* delivery reports still to come */
    uv_timer_t deadline;            /* WeChat only: answer 503 before WeChat gives up */
    int has_deadline;
    slot_t slot[JOB_MAX_EVENTS];
};

typedef int (*adapter_fn)(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                          tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb);

struct tl_ingest {
    uv_loop_t *loop;
    tl_producer_t *producer;
    tl_codec_t *codec;
    tl_buf_t buf;
    tl_dedup_t *recent;
    tl_identity_t *identity;
    tl_auth_t *auth;
    int closing;
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

/* "P:O".  An acknowledgement without an offset never gets here (the
 * producer fails it: see producer.c), so null is only a guard. */
static void position_json(const ack_t *a, char *out, size_t n) {
    if (a->offset >= 0) snprintf(out, n, "\"%d:%lld\"", (int)a->partition, (long long)a->offset);
    else snprintf(out, n, "null");
}

static void answer_ack(h2o_req_t *req, int status, const ack_t *a, int duplicate) {
    char body[256], position[48];
    position_json(a, position, sizeof position);
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

/* The answer to a request whose every event the broker holds: one entry
 * per event, in production order (a login link first). */
static void answer_list(h2o_req_t *req, const job_t *j) {
    json_t *o = json_object(), *arr = json_array();
    char position[48];
    json_object_set_new(o, "customer_id", json_string(j->out.base.customer_id));
    for (int i = 0; i < j->nev; i++) {
        const slot_t *s = &j->slot[i];
        position_json(&s->ack, position, sizeof position);
        json_t *e = json_pack("{s:i, s:s, s:s, s:s, s:b}", "index", s->index, "type",
                              tl_event_kind_name(s->kind), "event_id", s->ack.event_id,
                              "customer_id", s->ack.customer_id, "duplicate",
                              s->state == SLOT_DUPLICATE);
        json_object_set_new(e, "position", json_loads(position, JSON_DECODE_ANY, NULL));
        json_array_append_new(arr, e);
    }
    json_object_set_new(o, "events", arr);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (body) tl_http_json(req, 202, body, strlen(body));
    else tl_http_send(req, 500, "text/plain", "out of memory", 13);
    free(body);
}

/* Some events of a request were held and some were not: 503, and exactly
 * which the broker holds ("held") and which it may not ("failed"), so the
 * connector knows a resend of the whole request is safe (the held ones come
 * back as duplicates) and what to tell its user meanwhile. */
static void answer_partial(h2o_req_t *req, const job_t *j) {
    json_t *held = json_array(), *failed = json_array();
    const char *why = "no acknowledgement";
    char position[48];
    for (int i = 0; i < j->nev; i++) {
        const slot_t *s = &j->slot[i];
        json_t *e = json_pack("{s:i, s:s, s:s}", "index", s->index, "type",
                              tl_event_kind_name(s->kind), "event_id", s->ack.event_id);
        if (s->state == SLOT_FAILED) {
            why = s->why;
            json_array_append_new(failed, e);
        } else {
            position_json(&s->ack, position, sizeof position);
            json_object_set_new(e, "position", json_loads(position, JSON_DECODE_ANY, NULL));
            json_object_set_new(e, "duplicate", json_boolean(s->state == SLOT_DUPLICATE));
            json_array_append_new(held, e);
        }
    }
    char detail[256];
    snprintf(detail, sizeof detail,
             "Kafka acknowledged %zu of %d events (%s); resend the whole request with the same "
             "ids: the held ones are recognised as duplicates",
             json_array_size(held), j->nev, why);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:i, s:o, s:o}", "type",
                          "urn:threadline:problem:kafka-unavailable", "title",
                          "Event log unavailable", "status", 503, "detail", detail,
                          "retry_after", 2, "held", held, "failed", failed);
    char *body = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    tl_metric_add(TL_M_ingest_unavailable_total, 1);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("2"));
    if (body) tl_http_send(req, 503, "application/problem+json", body, strlen(body));
    else tl_http_send(req, 500, "text/plain", "out of memory", 13);
    free(body);
}

/* Answers a request once every event has its outcome. */
static void answer_job(h2o_req_t *req, job_t *j) {
    int failed = 0;
    const slot_t *last = &j->slot[j->nev - 1];
    for (int i = 0; i < j->nev; i++) failed += j->slot[i].state == SLOT_FAILED;
    if (j->answer == ANSWER_LIST) {
        if (!failed) answer_list(req, j);
        else if (failed == j->nev) answer_unavailable(req, j->slot[0].why);
        else answer_partial(req, j);
        return;
    }
    /* One-message platforms answer for the message (the last event; a
     * unionid link ingest added goes before it), and only when every event
     * of the request is held. */
    if (failed) {
        for (int i = 0; i < j->nev; i++)
            if (j->slot[i].state == SLOT_FAILED) {
                answer_unavailable(req, j->slot[i].why);
                return;
            }
    }
    if (j->answer == ANSWER_WECHAT) answer_wechat_success(req);
    else answer_ack(req, j->answer == ANSWER_200 ? 200 : 202, &last->ack,
                    last->state == SLOT_DUPLICATE);
}

/* WeChat waits 5 s for an answer and then resends; a 503 before that tells
 * it plainly to resend, and if the first attempt does land after all, the
 * resend is recognised by its MsgId. */
#define WECHAT_ANSWER_MS 4500

static void on_job_closed(uv_handle_t *h) { free(h->data); }

/* Releases a job (its deadline timer closes first, if it has one). */
static void job_free(job_t *j) {
    tl_http_pending_free(j->pending);
    j->pending = NULL;
    switch (j->route) {
    case ROUTE_PHONE: tl_phone_out_close(&j->out.phone); break;
    case ROUTE_DOUYIN: tl_douyin_out_close(&j->out.douyin); break;
    case ROUTE_WECHAT: tl_wechat_out_close(&j->out.wechat); break;
    case ROUTE_APP: tl_app_out_close(&j->out.app); break;
    case ROUTE_MINI_PROGRAM: tl_mini_program_out_close(&j->out.mp); break;
    default: tl_adapter_out_close(&j->out.base); break;
    }
    if (j->has_deadline) {
        uv_timer_stop(&j->deadline);
        uv_close((uv_handle_t *)&j->deadline, on_job_closed);
    } else {
        free(j);
    }
}

/* Every event has its outcome: answer (unless the client or WeChat's
 * window is gone) and release. */
static void job_finish(job_t *j) {
    if (j->pending && j->pending->req) answer_job(j->pending->req, j);
    job_free(j);
}

static void on_deadline(uv_timer_t *h) {
    job_t *j = h->data;
    if (j->pending && j->pending->req)
        answer_unavailable(j->pending->req, "no acknowledgement within WeChat's 5-second window");
    tl_http_pending_free(j->pending);
    j->pending = NULL;
}

/* The delivery report of one slot: runs on the loop thread. */
static void on_report(void *ud, void *msg, int err, const char *why, int32_t partition,
                      int64_t offset) {
    tl_ingest_t *in = ud;
    slot_t *s = msg;
    job_t *j = s->job;
    if (err) {
        tl_warn("ingest", "event %s not acknowledged: %s", s->ack.event_id, why);
        s->state = SLOT_FAILED;
        s->why = why;
    } else {
        s->state = SLOT_HELD;
        s->ack.partition = partition;
        s->ack.offset = offset;
        if (s->keylen) tl_dedup_put(in->recent, s->key, s->keylen, &s->ack, sizeof s->ack);
        tl_metric_add(TL_M_ingest_accepted_total, 1);
    }
    if (--j->outstanding == 0) job_finish(j);
}

/* Produces event i of j: the recent-key check, encoding, producing.
 * Returns 1 when a delivery report will follow, else 0 (the slot already
 * has its outcome). */
static int produce(tl_ingest_t *in, job_t *j, int i) {
    const tl_event_t *ev = &j->evs[i];
    slot_t *s = &j->slot[i];
    s->job = j;
    s->kind = ev->kind;
    /* Idempotency keys are unique per customer (the fold dedups per
     * customer), not per tenant: a web message id is only unique per
     * visitor.  So the cache key is tenant, customer and key. */
    s->keylen = (size_t)snprintf(s->key, sizeof s->key, "%.*s%c%.*s%c%.*s", (int)ev->tenant_id.len,
                                 ev->tenant_id.ptr, 0, (int)ev->customer_id.len, ev->customer_id.ptr,
                                 0, (int)ev->idempotency_key.len, ev->idempotency_key.ptr);
    /* A key too long for the cache is simply not cached (never cut: two
     * cut keys could collide and a new event be taken for a resend); the
     * fold's own dedup still applies it once. */
    if (s->keylen >= sizeof s->key) s->keylen = 0;
    size_t alen;
    if (s->keylen && tl_dedup_get(in->recent, s->key, s->keylen, &s->ack, &alen) &&
        alen == sizeof s->ack) {
        /* A resend of an event acknowledged a moment ago gets the same answer. */
        tl_metric_add(TL_M_ingest_duplicate_total, 1);
        s->state = SLOT_DUPLICATE;
        return 0;
    }
    memcpy(s->ack.event_id, ev->event_id.ptr, TL_UUID_STRLEN);
    s->ack.event_id[TL_UUID_STRLEN] = 0;
    memcpy(s->ack.customer_id, ev->customer_id.ptr, TL_UUID_STRLEN);
    s->ack.customer_id[TL_UUID_STRLEN] = 0;
    s->ack.offset = -1;

    tl_buf_reset(&in->buf);
    int rc = tl_codec_encode_event(in->codec, ev, &in->buf);
    if (rc) {
        tl_error("ingest", "encoding event %s: %s", s->ack.event_id, tl_strerror(rc));
        s->state = SLOT_FAILED;
        s->why = "the event could not be encoded";
        return 0;
    }
    if (tl_producer_send(in->producer, s->ack.customer_id, TL_UUID_STRLEN, in->buf.data,
                         in->buf.len, s, &s->why)) {
        s->state = SLOT_FAILED;
        return 0;
    }
    s->state = SLOT_PENDING;
    return 1;
}

/* Applies the resolved identities to the job's events and says which
 * events to produce.  Loop thread. */
static void apply_identities(job_t *j) {
    const tl_adapter_ctx_t *ctx = &j->r.ctx;
    switch (j->route) {
    case ROUTE_APP: {
        tl_app_out_t *a = &j->out.app;
        if (tl_app_resolve(ctx, a, j->look[0].customer_id, j->nlook > 1 ? j->look[1].customer_id : NULL))
            tl_metric_add(TL_M_ingest_links_total, 1);
        j->evs = a->ev + a->first;
        j->nev = a->n;
        for (int i = 0; i < j->nev; i++) j->slot[i].index = a->index[a->first + i];
        return;
    }
    case ROUTE_MINI_PROGRAM: {
        tl_mini_program_out_t *mp = &j->out.mp;
        if (tl_mini_program_resolve(ctx, mp, j->look[0].customer_id,
                                    j->nlook > 1 ? j->look[1].customer_id : NULL))
            tl_metric_add(TL_M_ingest_links_total, 1);
        j->evs = mp->ev + mp->first;
        j->nev = 2 - mp->first;
        j->slot[0].index = mp->first == 0 ? -1 : 0;
        j->slot[j->nev - 1].index = 0;
        return;
    }
    default:
        break;
    }
    j->evs = &j->ev;
    j->nev = 1;
    tl_adapter_out_t *o = &j->out.base;
    for (int i = 0; i < j->nlook; i++) {
        /* look[0] is the event's own customer; for an api link by
         * evidence, look[0] the survivor and look[1] the absorbed. */
        if (i == 0) memcpy(o->customer_id, j->look[0].customer_id, TL_UUID_STRLEN + 1);
        else memcpy(o->linked_customer_id, j->look[1].customer_id, TL_UUID_STRLEN + 1);
    }
}

/* The identities a job's events depend on (strings point into the job). */
static void plan_lookups(job_t *j) {
    tl_event_t *ev = &j->ev;
    tl_identity_lookup_t *l = j->look;
    j->nlook = 0;
#define LOOK(tenant_, kind_, id_) \
    (l[j->nlook++] = (tl_identity_lookup_t){.tenant = (tenant_), .kind = (kind_), .id = (id_)})
    switch (j->route) {
    case ROUTE_APP:
        LOOK(j->out.app.tenant, "app", j->out.app.device_id);
        if (j->out.app.account_id.ptr) LOOK(j->out.app.tenant, "account", j->out.app.account_id);
        break;
    case ROUTE_MINI_PROGRAM:
        LOOK(j->out.mp.tenant, "mini_program", j->out.mp.openid);
        if (j->out.mp.unionid.ptr) LOOK(j->out.mp.tenant, "unionid", j->out.mp.unionid);
        break;
    case ROUTE_PHONE:
        /* The caller's E.164 number: its own customer, or the customer
         * whose verified phone it is (identity.c resolves phones only
         * through calls and VERIFIED_PHONE links). */
        LOOK(ev->tenant_id, "phone", ev->platform_user_id);
        break;
    default:
        if (j->out.base.customer_given) break;
        if (ev->kind == TL_EV_IDENTITY_LINKED) {
            const tl_identity_linked_t *lk = &ev->u.link;
            const char *kind = tl_identity_evidence_kind(lk->evidence);
            int derived = lk->linked_customer_id.ptr == j->out.base.linked_customer_id;
            if (kind && lk->evidence_value.ptr && lk->evidence_value.len)
                LOOK(ev->tenant_id, kind, lk->evidence_value);
            else
                LOOK(ev->tenant_id, tl_platform_slug(ev->platform), ev->platform_user_id);
            if (derived)
                LOOK(ev->tenant_id, tl_platform_slug(lk->platform), lk->platform_user_id);
            break;
        }
        LOOK(ev->tenant_id, tl_platform_slug(ev->platform), ev->platform_user_id);
        break;
    }
#undef LOOK
    /* What a lookup answers when nothing can be asked. */
    for (int i = 0; i < j->nlook; i++)
        tl_identity_default_id(l[i].tenant, l[i].kind, l[i].id, l[i].customer_id);
}

/* Identities resolved: rekey, produce everything, wait for the reports. */
static void on_resolved(void *arg, int degraded) {
    job_t *j = arg;
    tl_ingest_t *in = j->in;
    (void)degraded;     /* identity.c counted and logged it; ingest goes on */
    if (!j->pending->req) {
        /* The client went away while we asked: nothing was produced, so
         * nothing is acknowledged; its resend starts afresh. */
        job_free(j);
        return;
    }
    if (in->closing) {
        answer_unavailable(j->pending->req, "the gateway is shutting down");
        job_free(j);
        return;
    }
    apply_identities(j);
    if (j->answer == ANSWER_WECHAT) {
        uv_timer_init(in->loop, &j->deadline);
        j->deadline.data = j;
        j->has_deadline = 1;
        uv_timer_start(&j->deadline, on_deadline, WECHAT_ANSWER_MS, 0);
    }
    /* Count first: a report can only arrive from a later rd_kafka_poll,
     * but the job must not finish while its own loop is still producing. */
    j->outstanding = 1;
    for (int i = 0; i < j->nev; i++) j->outstanding += produce(in, j, i);
    if (--j->outstanding == 0) job_finish(j);
}

/* The gateway's part of the adapter context: clock, event id, trace id. */
static void make_ctx(tl_ingest_t *in, h2o_req_t *req, request_t *r) {
    int64_t now = now_ms();
    tl_uuid_v7(now, r->event_id);
    const h2o_iovec_t *tp = tl_http_header(req, "traceparent");
    /* W3C traceparent: 00-<32 hex trace id>-<16 hex span>-<2 hex flags> */
    if (tp && tp->len >= 55 && tp->base[2] == '-')
        snprintf(r->trace, sizeof r->trace, "%.32s", tp->base + 3);
    else
        snprintf(r->trace, sizeof r->trace, "%s", r->event_id);
    r->ctx = (tl_adapter_ctx_t){now, r->event_id, r->trace, in->max_body};
}

/* Quota, body and a job for a request of platform; returns the job, or
 * NULL when the request was already answered (429, 413, 503).  Loop
 * thread. */
static job_t *begin(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform, route_t route,
                    answer_t answer) {
    if (!admit(in, req, platform)) return NULL;
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        answer_unavailable(req, "out of memory");
        return NULL;
    }
    if (tl_http_body(req, &j->r.body, &j->r.len) < 0) {
        tl_metric_add(TL_M_ingest_rejected_total, 1);
        free(j);
        return NULL;
    }
    j->in = in;
    j->route = route;
    j->answer = answer;
    j->platform = platform;
    make_ctx(in, req, &j->r);
    return j;
}

/* Answers an adapter's refusal and releases the job. */
static void reject(h2o_req_t *req, job_t *j, const tl_problem_t *pb) {
    tl_metric_add(TL_M_ingest_rejected_total, 1);
    tl_http_problem(req, pb);
    job_free(j);
}

/* The tenant a parsed request speaks for. */
static tl_str_t request_tenant(const job_t *j) {
    switch (j->route) {
    case ROUTE_APP: return j->out.app.tenant;
    case ROUTE_MINI_PROGRAM: return j->out.mp.tenant;
    default: return j->ev.tenant_id;
    }
}

/* The adapter accepted the request: resolve its identities (off the loop
 * when the cache does not know them), then produce. */
static void accept_job(tl_ingest_t *in, h2o_req_t *req, job_t *j) {
    plan_lookups(j);
    tl_str_t tenant = request_tenant(j);
    if (j->key_tenant[0] &&
        (tenant.len != strlen(j->key_tenant) || memcmp(tenant.ptr, j->key_tenant, tenant.len))) {
        tl_problem_t pb;
        tl_problem_set(&pb, 403, "forbidden", "Forbidden", "tenant_id",
                       "the connector key belongs to another tenant");
        reject(req, j, &pb);
        return;
    }
    j->pending = tl_http_pending_new(req);
    if (!j->pending) {
        answer_unavailable(req, "out of memory");
        job_free(j);
        return;
    }
    if (!j->nlook || tl_identity_resolve(in->identity, j->look, j->nlook, on_resolved, j) != TL_OK)
        on_resolved(j, 1);
}

/* A JSON route's handler, run once its connector key was verified;
 * tenant: the key's tenant ("" with --auth off). */
typedef void (*route_fn)(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform,
                         const char *tenant);

typedef struct guarded {
    tl_ingest_t *in;
    tl_platform_t platform;
    route_fn fn;
} guarded_t;

static void guarded_cb(void *ud, h2o_req_t *req, const tl_auth_key_t *key) {
    guarded_t *g = ud;
    g->fn(g->in, req, g->platform, key->tenant);
}

/* Requires a connector key for platform (on the thread pool), then runs fn.
 * The refusals (401, 403, 503) are answered by auth. */
static void guard(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform, route_fn fn) {
    guarded_t *g = h2o_mem_alloc_pool(&req->pool, sizeof *g);
    *g = (guarded_t){in, platform, fn};
    tl_auth_require_connector(in->auth, in->loop, req, platform, guarded_cb, g);
}

/* begin() for a guarded route: also remembers the key's tenant. */
static job_t *begin_as(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform, route_t route,
                       answer_t answer, const char *tenant) {
    job_t *j = begin(in, req, platform, route, answer);
    if (j) snprintf(j->key_tenant, sizeof j->key_tenant, "%s", tenant);
    return j;
}

static void json_run(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform, const char *tenant) {
    tl_problem_t pb;
    job_t *j = begin_as(in, req, platform, ROUTE_JSON, ANSWER_202, tenant);
    if (!j) return;
    if (in->adapters[platform](&j->r.ctx, j->r.body, j->r.len, &j->out.base, &j->ev, &pb))
        reject(req, j, &pb);
    else
        accept_job(in, req, j);
}

/* POST /v1/ingest/{platform}: web, api and the other plain JSON routes. */
static void ingest_handler(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_ingest_t *in = ud;
    tl_problem_t pb;
    tl_platform_t platform;

    if (tl_platform_from_slug(params->v[0].base, params->v[0].len, &platform) != TL_OK ||
        !in->adapters[platform]) {
        tl_problem_set(&pb, 404, "unknown-platform", "Unknown platform", "platform",
                       "no ingest adapter for platform \"%.*s\"", (int)params->v[0].len,
                       params->v[0].base);
        tl_metric_add(TL_M_ingest_rejected_total, 1);
        tl_http_problem(req, &pb);
        return;
    }
    guard(in, req, platform, json_run);
}

static void app_run(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform, const char *tenant) {
    tl_problem_t pb;
    job_t *j = begin_as(in, req, platform, ROUTE_APP, ANSWER_LIST, tenant);
    if (!j) return;
    if (tl_app_parse(&j->r.ctx, j->r.body, j->r.len, &j->out.app, &pb)) reject(req, j, &pb);
    else accept_job(in, req, j);
}

/* POST /v1/ingest/app: a mobile SDK upload (message and/or click stream). */
static void app_post(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    (void)params;
    guard(ud, req, TL_PLATFORM_APP, app_run);
}

static void mini_program_run(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform,
                             const char *tenant) {
    tl_problem_t pb;
    job_t *j = begin_as(in, req, platform, ROUTE_MINI_PROGRAM, ANSWER_202, tenant);
    if (!j) return;
    if (tl_mini_program_parse(&j->r.ctx, j->r.body, j->r.len, &j->out.mp, &pb)) reject(req, j, &pb);
    else accept_job(in, req, j);
}

/* POST /v1/ingest/mini_program: a WeChat mini-program message. */
static void mini_program_post(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    (void)params;
    guard(ud, req, TL_PLATFORM_MINI_PROGRAM, mini_program_run);
}

static void phone_run(tl_ingest_t *in, h2o_req_t *req, tl_platform_t platform, const char *tenant) {
    tl_problem_t pb;
    job_t *j = begin_as(in, req, platform, ROUTE_PHONE, ANSWER_202, tenant);
    if (!j) return;
    if (tl_phone_parse(&in->phone, &j->r.ctx, j->r.body, j->r.len, &j->out.phone, &j->ev, &pb))
        reject(req, j, &pb);
    else
        accept_job(in, req, j);
}

/* POST /v1/ingest/phone: a call centre's transcript segment. */
static void phone_post(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    (void)params;
    guard(ud, req, TL_PLATFORM_PHONE, phone_run);
}

/* POST /v1/ingest/douyin: a signed Douyin webhook. */
static void douyin_post(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    tl_ingest_t *in = ud;
    tl_problem_t pb;
    (void)params;
    job_t *j = begin(in, req, TL_PLATFORM_DOUYIN, ROUTE_DOUYIN, ANSWER_200);
    if (!j) return;
    /* h2o keeps header names in lower case. */
    const h2o_iovec_t *h = tl_http_header(req, "x-douyin-signature");
    tl_str_t sig = h ? (tl_str_t){h->base, h->len} : TL_STR_NULL;
    int rc = tl_douyin_parse(&in->douyin, &j->r.ctx, sig, j->r.body, j->r.len, &j->out.douyin,
                             &j->ev, &pb);
    if (rc == TL_DOUYIN_CHALLENGE) {
        tl_http_json(req, 200, j->out.douyin.reply, j->out.douyin.reply_len);
        job_free(j);
    } else if (rc) {
        reject(req, j, &pb);
    } else {
        accept_job(in, req, j);
    }
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
    (void)params;
    job_t *j = begin(in, req, TL_PLATFORM_WECHAT, ROUTE_WECHAT, ANSWER_WECHAT);
    if (!j) return;
    wechat_query(req, &wq);
    if (tl_wechat_parse(&in->wechat, &j->r.ctx, &wq.q, j->r.body, j->r.len, &j->out.wechat, &j->ev, &pb))
        reject(req, j, &pb);
    else
        accept_job(in, req, j);
}

int tl_ingest_new(uv_loop_t *loop, tl_http_t *http, tl_kafka_t *kafka, tl_auth_t *auth,
                  const tl_config_t *cfg, tl_ingest_t **out) {
    int rc = TL_ENOMEM;
    tl_ingest_t *in = calloc(1, sizeof *in);
    if (!in) return TL_ENOMEM;
    in->loop = loop;
    in->auth = auth;
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
    if ((rc = tl_identity_new(loop, cfg, &in->identity))) goto fail_dedup;
    if ((rc = tl_producer_new(loop, kafka, TL_TOPIC_EVENTS, (int)cfg->ack_timeout_ms, "ingest",
                              on_report, in, &in->producer)))
        goto fail_identity;

    /* WeChat's own protocol first: routes are tried in order. */
    if (in->has_wechat &&
        ((rc = tl_http_route(http, "GET", "/v1/ingest/wechat", wechat_get, in)) ||
         (rc = tl_http_route(http, "POST", "/v1/ingest/wechat", wechat_post, in)))) {
        tl_ingest_close(in, 0);
        return rc;
    }
    if ((in->has_douyin && (rc = tl_http_route(http, "POST", "/v1/ingest/douyin", douyin_post, in))) ||
        (rc = tl_http_route(http, "POST", "/v1/ingest/phone", phone_post, in)) ||
        (rc = tl_http_route(http, "POST", "/v1/ingest/app", app_post, in)) ||
        (rc = tl_http_route(http, "POST", "/v1/ingest/mini_program", mini_program_post, in)) ||
        (rc = tl_http_route(http, "POST", "/v1/ingest/{}", ingest_handler, in))) {
        tl_ingest_close(in, 0);
        return rc;
    }
    *out = in;
    return TL_OK;

fail_identity:
    tl_identity_free(in->identity);
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
    return tl_producer_ping(in->producer, timeout_ms);
}

void tl_ingest_close(tl_ingest_t *in, int timeout_ms) {
    /* Requests still resolving their identities are answered 503 when
     * their lookup returns; wait for those, then answer what is in flight:
     * flush runs delivery reports. */
    in->closing = 1;
    while (tl_identity_in_flight(in->identity) > 0) uv_run(in->loop, UV_RUN_ONCE);
    tl_producer_close(in->producer, timeout_ms);
}

void tl_ingest_free(tl_ingest_t *in) {
    if (!in) return;
    tl_producer_free(in->producer);
    tl_dedup_free(in->recent);
    tl_identity_free(in->identity);
    tl_codec_free(in->codec);
    tl_buf_close(&in->buf);
    tl_wechat_conf_close(&in->wechat);
    free(in);
}
