/*
 * writes.c -- the agent write producer (see writes.h).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "dedup.h"
#include "error.h"
#include "log.h"
#include "producer.h"
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
    tl_producer_t *producer;
    tl_codec_t *codec;
    tl_buf_t buf;
    tl_dedup_t *recent;
};

static void on_report(void *ud, void *msg, int err, const char *why, int32_t partition,
                      int64_t offset) {
    (void)ud;
    wticket_t *t = msg;
    if (err) {
        tl_warn("writes", "event %s not acknowledged: %s", t->ack.event_id, why);
        t->cb(t->ud, TL_EKAFKA_DOWN, NULL, why);
    } else {
        t->ack.partition = partition;
        t->ack.offset = offset;
        if (t->keylen) tl_dedup_put(t->w->recent, t->key, t->keylen, &t->ack, sizeof t->ack);
        t->cb(t->ud, 0, &t->ack, NULL);
    }
    free(t);
}

int tl_writes_new(uv_loop_t *loop, tl_kafka_t *kafka, const tl_config_t *cfg, tl_writes_t **out) {
    int rc;
    tl_writes_t *w = calloc(1, sizeof *w);
    if (!w) return TL_ENOMEM;
    tl_buf_init(&w->buf);
    if (!(w->codec = tl_codec_new_event(&rc))) goto fail;
    rc = TL_ENOMEM;
    if (!(w->recent = tl_dedup_new(16384))) goto fail_codec;
    if ((rc = tl_producer_new(loop, kafka, TL_TOPIC_EVENTS, (int)cfg->ack_timeout_ms, "writes",
                              on_report, w, &w->producer)))
        goto fail_dedup;
    *out = w;
    return TL_OK;

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
    tl_producer_close(w->producer, timeout_ms);
}

void tl_writes_free(tl_writes_t *w) {
    if (!w) return;
    tl_producer_free(w->producer);
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
    const char *why;
    if (tl_producer_send(w->producer, ev->customer_id.ptr, ev->customer_id.len, w->buf.data,
                         w->buf.len, t, &why)) {
        tl_warn("writes", "produce: %s", why);
        free(t);
        return TL_EKAFKA_DOWN;
    }
    return TL_OK;
}
