/*
 * writes.c -- the agent write producer (see writes.h).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "codec.h"
#include "dedup.h"
#include "error.h"
#include "log.h"
#include "writes.h"

/* One write waiting for its delivery report. */
typedef struct wticket {
    tl_writes_t *w;
    tl_writes_cb cb;
    void *ud;
    tl_writes_ack_t ack;
    size_t keylen;
    char key[TL_DEDUP_KEY_MAX];
} wticket_t;

struct tl_writes {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    tl_codec_t *codec;
    tl_buf_t buf;
    tl_dedup_t *recent;
    int pipefd[2];
    uv_poll_t poll;
    uv_timer_t timer;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    wticket_t *t = m->_private;
    if (m->err) {
        tl_warn("writes", "event %s not acknowledged: %s", t->ack.event_id, rd_kafka_err2str(m->err));
        t->cb(t->ud, TL_EKAFKA_DOWN, NULL, rd_kafka_err2str(m->err));
    } else {
        t->ack.partition = m->partition;
        t->ack.offset = m->offset;
        if (t->keylen) tl_dedup_put(t->w->recent, t->key, t->keylen, &t->ack, sizeof t->ack);
        t->cb(t->ud, 0, &t->ack, NULL);
    }
    free(t);
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)opaque;
    tl_warn("writes", "kafka: %s (%s)", reason, rd_kafka_err2name((rd_kafka_resp_err_t)err));
}

static void drain(tl_writes_t *w) {
    char junk[256];
    while (read(w->pipefd[0], junk, sizeof junk) > 0) {}
    while (rd_kafka_poll(w->rk, 0) > 0) {}
}

static void on_pipe(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    drain(h->data);
}

static void on_timer(uv_timer_t *h) { drain(h->data); }

int tl_writes_new(uv_loop_t *loop, tl_kafka_t *kafka, const tl_config_t *cfg, tl_writes_t **out) {
    char errstr[256];
    int rc;
    tl_writes_t *w = calloc(1, sizeof *w);
    if (!w) return TL_ENOMEM;
    w->loop = loop;
    tl_buf_init(&w->buf);
    if (!(w->codec = tl_codec_new_event(&rc))) goto fail;
    rc = TL_ENOMEM;
    if (!(w->recent = tl_dedup_new(16384))) goto fail_codec;
    if (pipe2(w->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) goto fail_dedup;
    rd_kafka_conf_t *conf = tl_kafka_conf_producer(kafka, (int)cfg->ack_timeout_ms);
    if (!conf) goto fail_pipe;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_opaque(conf, w);
    if (!(w->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        tl_error("writes", "producer: %s", errstr);
        rc = TL_EKAFKA;
        goto fail_pipe;
    }
    if (!(w->rkt = rd_kafka_topic_new(w->rk, tl_kafka_topic(kafka, TL_TOPIC_EVENTS), NULL)))
        goto fail_rk;
    rd_kafka_queue_t *mq = rd_kafka_queue_get_main(w->rk);
    rd_kafka_queue_io_event_enable(mq, w->pipefd[1], "1", 1);
    rd_kafka_queue_destroy(mq);
    uv_poll_init(loop, &w->poll, w->pipefd[0]);
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_pipe);
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_timer, 100, 100);
    *out = w;
    return TL_OK;

fail_rk:
    rd_kafka_destroy(w->rk);
fail_pipe:
    close(w->pipefd[0]);
    close(w->pipefd[1]);
fail_dedup:
    tl_dedup_free(w->recent);
fail_codec:
    tl_codec_free(w->codec);
fail:
    tl_buf_close(&w->buf);
    free(w);
    return rc;
}

void tl_writes_close(tl_writes_t *w, int timeout_ms) {
    if (!w) return;
    rd_kafka_flush(w->rk, timeout_ms);
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, NULL);
    uv_close((uv_handle_t *)&w->timer, NULL);
}

void tl_writes_free(tl_writes_t *w) {
    if (!w) return;
    rd_kafka_topic_destroy(w->rkt);
    rd_kafka_destroy(w->rk);
    close(w->pipefd[0]);
    close(w->pipefd[1]);
    tl_dedup_free(w->recent);
    tl_codec_free(w->codec);
    tl_buf_close(&w->buf);
    free(w);
}

int tl_writes_produce(tl_writes_t *w, const tl_event_t *ev, const char *dedup_key,
                      tl_writes_cb cb, void *ud) {
    if (ev->event_id.len != TL_UUID_STRLEN || ev->customer_id.len != TL_UUID_STRLEN) return TL_EINVAL;
    size_t klen = dedup_key ? strlen(dedup_key) : 0;
    if (klen >= TL_DEDUP_KEY_MAX) klen = 0;
    tl_writes_ack_t prev;
    size_t alen;
    if (klen && tl_dedup_get(w->recent, dedup_key, klen, &prev, &alen) && alen == sizeof prev) {
        prev.duplicate = 1;
        cb(ud, 0, &prev, NULL);
        return TL_OK;
    }
    tl_buf_reset(&w->buf);
    int rc = tl_codec_encode_event(w->codec, ev, &w->buf);
    if (rc) {
        tl_error("writes", "encoding event %.*s: %s", (int)ev->event_id.len, ev->event_id.ptr,
                 tl_strerror(rc));
        return rc == TL_ENOMEM ? TL_ENOMEM : TL_EINVAL;
    }
    wticket_t *t = calloc(1, sizeof *t);
    if (!t) return TL_ENOMEM;
    t->w = w;
    t->cb = cb;
    t->ud = ud;
    memcpy(t->ack.event_id, ev->event_id.ptr, TL_UUID_STRLEN);
    t->keylen = klen;
    if (klen) memcpy(t->key, dedup_key, klen);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        w->rk, RD_KAFKA_V_RKT(w->rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(ev->customer_id.ptr, ev->customer_id.len),
        RD_KAFKA_V_VALUE(w->buf.data, w->buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
    if (err) {
        tl_warn("writes", "produce: %s", rd_kafka_err2str(err));
        free(t);
        return TL_EKAFKA_DOWN;
    }
    return TL_OK;
}
