/*
 * producer.c -- an idempotent producer reporting on a libuv loop (see
 * producer.h).
 */
#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "producer.h"

struct tl_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    const char *who;
    tl_producer_report_cb report;
    void *ud;
    int pipefd[2];
    uv_poll_t poll;
    uv_timer_t timer;
};

/* librdkafka delivery report: runs on the loop thread, from rd_kafka_poll.
 *
 * A success without a log offset is not taken as proof.  librdkafka reports
 * one when it counts a retry as delivered without the broker naming where
 * it wrote it (a DUPLICATE_SEQUENCE_NUMBER answer, or a possibly persisted
 * batch it resolves as sent), and on a freshly started broker we have seen
 * such an event missing from the log.  An acknowledgement must mean the
 * broker holds the event, so this one fails: the caller answers 503 and the
 * connector resends the same message id, which the fold applies once
 * whether or not the first copy was written. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    tl_producer_t *p = opaque;
    if (m->err)
        p->report(p->ud, m->_private, TL_EKAFKA_DOWN, rd_kafka_err2str(m->err), m->partition, -1);
    else if (m->offset < 0)
        p->report(p->ud, m->_private, TL_EKAFKA_DOWN,
                  "the broker acknowledged without a log position, so it is not known to hold the "
                  "event", m->partition, -1);
    else
        p->report(p->ud, m->_private, 0, NULL, m->partition, m->offset);
}

/* librdkafka reconnects by itself; its errors are for the operator. */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    tl_producer_t *p = opaque;
    tl_warn(p->who, "kafka: %s (%s)", reason, rd_kafka_err2name((rd_kafka_resp_err_t)err));
}

static void drain(tl_producer_t *p) {
    char junk[256];
    while (read(p->pipefd[0], junk, sizeof junk) > 0) {}
    while (rd_kafka_poll(p->rk, 0) > 0) {}
}

static void on_pipe(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    drain(h->data);
}

/* Belt and braces: the pipe wakes us, this catches anything else. */
static void on_timer(uv_timer_t *h) { drain(h->data); }

int tl_producer_new(uv_loop_t *loop, tl_kafka_t *kafka, tl_topic_t topic, int timeout_ms,
                    const char *who, tl_producer_report_cb report, void *ud,
                    tl_producer_t **out) {
    char errstr[256];
    int rc = TL_ENOMEM;
    assert(report);
    tl_producer_t *p = calloc(1, sizeof *p);
    if (!p) return TL_ENOMEM;
    p->who = who;
    p->report = report;
    p->ud = ud;
    if (pipe2(p->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) goto fail;
    rd_kafka_conf_t *conf = tl_kafka_conf_producer(kafka, timeout_ms);
    if (!conf) goto fail_pipe;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_opaque(conf, p);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        tl_error(who, "producer: %s", errstr);
        rc = TL_EKAFKA;
        goto fail_pipe;
    }
    if (!(p->rkt = rd_kafka_topic_new(p->rk, tl_kafka_topic(kafka, topic), NULL))) goto fail_rk;
    rd_kafka_queue_t *mq = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(mq, p->pipefd[1], "1", 1);
    rd_kafka_queue_destroy(mq);

    uv_poll_init(loop, &p->poll, p->pipefd[0]);
    p->poll.data = p;
    uv_poll_start(&p->poll, UV_READABLE, on_pipe);
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timer, 100, 100);
    *out = p;
    return TL_OK;

fail_rk:
    rd_kafka_destroy(p->rk);
fail_pipe:
    close(p->pipefd[0]);
    close(p->pipefd[1]);
fail:
    free(p);
    return rc;
}

int tl_producer_send(tl_producer_t *p, const void *key, size_t keylen, const void *value,
                     size_t len, void *msg, const char **why) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(msg), RD_KAFKA_V_END);
    if (err) {
        *why = rd_kafka_err2str(err);
        return TL_EKAFKA_DOWN;
    }
    return TL_OK;
}

int tl_producer_ping(tl_producer_t *p, int timeout_ms) {
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, p->rkt, &md, timeout_ms);
    if (err) return TL_EKAFKA_DOWN;
    int ok = md->topic_cnt == 1 && !md->topics[0].err;
    rd_kafka_metadata_destroy(md);
    return ok ? TL_OK : TL_EKAFKA_DOWN;
}

void tl_producer_close(tl_producer_t *p, int timeout_ms) {
    rd_kafka_flush(p->rk, timeout_ms);
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, NULL);
    uv_close((uv_handle_t *)&p->timer, NULL);
}

void tl_producer_free(tl_producer_t *p) {
    if (!p) return;
    rd_kafka_topic_destroy(p->rkt);
    rd_kafka_destroy(p->rk);
    close(p->pipefd[0]);
    close(p->pipefd[1]);
    free(p);
}
