/*
 * bench_fold.c -- decode plus fold of a realistic MessageReceived stream on
 * one core: what a fold worker spends per record before Kafka.
 *
 * The stream: 100,000 events of 10,000 customers over one hour of traffic,
 * built with the codec before the clock starts.  Messages of 6 to 120
 * characters of Chinese customer-service text from the web widget, the app,
 * the mini-program, WeChat and Douyin; one in ten with an image, one in
 * five with an entry point, app and mini-program ones with a device id;
 * client clocks up to 3 s behind and one in fifty up to 10 min (clamped);
 * three in a hundred are WeChat resends of an earlier message (duplicates).
 * Each customer writes about ten messages in the hour, so about one event
 * in eight opens a conversation.
 *
 * Each pass folds the whole stream into an empty fold, so every pass pays
 * for creating 10,000 customer states and opening their conversations:
 * a worker that restored its states pays less.  Passes repeat for about
 * two seconds.  Decoding alone, and folding alone (the events as built,
 * without the codec), are timed the same way to show where the time goes.
 *
 * Prints one line:
 *   bench_fold events_per_s=N decode_ns=N fold_ns=N events=N customers=N bytes=N
 * events_per_s is decode + fold; decode_ns and fold_ns are per event; bytes
 * is the mean size of a framed record.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "error.h"
#include "event.h"
#include "fold.h"
#include "uuid.h"

#define SECONDS 2.0
#define EVENTS 100000
#define CUSTOMERS 10000
#define T0 1716019200000LL

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x243f6a8885a308d3ULL;

static uint64_t rnd(uint64_t n) {     /* xorshift64*: a fixed stream every run */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (rng * 0x2545f4914f6cdd1dULL) % n;
}

static const char *const texts[] = {
    "在吗？",
    "你好，请问有人吗",
    "我的快递到哪里了？",
    "订单号TL20240518001，麻烦帮我查一下物流",
    "收到的商品有破损，外包装也压坏了，可以换货吗？",
    "我想修改收货地址，改成杭州市西湖区文三路一百号，谢谢",
    "您好，我上周在小程序下的订单到现在还没有发货，客服说今天会处理，请问现在物流到哪里了？",
    ("您好，我上周在小程序下的订单到现在还没有发货，订单号是二零二四零五一八零零一，客服说今天会处理，"
     "请问现在物流到哪里了？如果今天还不能发货，我想申请退款，谢谢！另外发票抬头请开公司名称。"),
};

static const tl_attachment_t image = {
    TL_STR("https://img.example.cn/u/7781/order-screenshot.jpg"), TL_STR("image/jpeg"),
    482113, 1080, 2340, 1, 1,
};

static const struct {
    tl_platform_t platform;
    int weight;
} mix[] = {
    {TL_PLATFORM_WEB, 30}, {TL_PLATFORM_APP, 20}, {TL_PLATFORM_MINI_PROGRAM, 25},
    {TL_PLATFORM_WECHAT, 20}, {TL_PLATFORM_DOUYIN, 5},
};

static tl_platform_t pick_platform(void) {
    int r = (int)rnd(100);
    for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
        if (r < mix[i].weight) return mix[i].platform;
        r -= mix[i].weight;
    }
    return TL_PLATFORM_WEB;
}

typedef struct record {
    char *data;
    size_t len;
} record_t;

static tl_str_t keep(tl_str_t s) {
    if (!s.ptr) return s;
    char *p = malloc(s.len + 1);
    if (!p) abort();
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return (tl_str_t){p, s.len};
}

/* Builds the stream: each event as built (strings owned) and encoded. */
static int build(tl_event_t *evs, record_t *recs, size_t *bytes) {
    int err = 0;
    tl_codec_t *enc = tl_codec_new_event(&err);
    if (!enc) return err;
    tl_buf_t out;
    tl_buf_init(&out);
    static char customers[CUSTOMERS][TL_UUID_STRLEN + 1];
    static int64_t last_msg[CUSTOMERS];
    for (int i = 0; i < CUSTOMERS; i++) {
        char name[32];
        int n = snprintf(name, sizeof name, "bench-customer-%d", i);
        const char *parts[] = {name};
        size_t lens[] = {(size_t)n};
        tl_uuid_v5(parts, lens, 1, customers[i]);
    }
    int64_t clock = T0;
    *bytes = 0;
    for (int i = 0; i < EVENTS; i++) {
        char event_id[TL_UUID_STRLEN + 1], key[64], puid[32], device[32];
        int c = (int)rnd(CUSTOMERS);
        clock += (int64_t)rnd(72);      /* 100k events in about an hour */
        tl_platform_t platform = pick_platform();
        const char *parts[] = {"bench-event", (const char *)&i};
        size_t lens[] = {11, sizeof i};
        tl_uuid_v5(parts, lens, 2, event_id);
        int resend = i > 0 && last_msg[c] && rnd(100) < 3;
        if (resend) {
            platform = TL_PLATFORM_WECHAT;
            snprintf(key, sizeof key, "wechat:msg-%" PRId64, last_msg[c]);
        } else {
            snprintf(key, sizeof key, "%s:msg-%d", tl_platform_slug(platform), i);
            if (platform == TL_PLATFORM_WECHAT) last_msg[c] = i;
        }
        snprintf(puid, sizeof puid, "o%s_%08d", tl_platform_slug(platform), c);
        snprintf(device, sizeof device, "iPhone15,3-%08X", (unsigned)c);
        int64_t skew = rnd(50) == 0 ? (int64_t)rnd(600000) : (int64_t)rnd(3000);
        const char *text = texts[rnd(sizeof texts / sizeof texts[0])];
        int mobile = platform == TL_PLATFORM_APP || platform == TL_PLATFORM_MINI_PROGRAM;
        tl_event_t ev = {
            .event_id = {event_id, TL_UUID_STRLEN},
            .tenant_id = TL_STR("tenant-hz-01"),
            .customer_id = {customers[c], TL_UUID_STRLEN},
            .platform = platform,
            .platform_user_id = {puid, strlen(puid)},
            .idempotency_key = {key, strlen(key)},
            .occurred_at = clock - skew,
            .received_at = clock,
            .trace_id = TL_STR("4bf92f3577b34da6a3ce929d0e0e4736"),
            .kind = TL_EV_MESSAGE_RECEIVED,
            .u.message = {
                .text = {text, strlen(text)},
                .attachments = {&image, rnd(10) == 0},
                .entry_point = rnd(5) == 0 ? TL_STR("product-detail:SKU20240518123") : TL_STR_NULL,
                .device_id = mobile ? (tl_str_t){device, strlen(device)} : TL_STR_NULL,
            },
        };
        tl_buf_reset(&out);
        if ((err = tl_codec_encode_event(enc, &ev, &out))) break;
        if (!(recs[i].data = malloc(out.len))) {
            err = TL_ENOMEM;
            break;
        }
        memcpy(recs[i].data, out.data, out.len);
        recs[i].len = out.len;
        *bytes += out.len;
        evs[i] = ev;
        tl_str_t *strs[] = {&evs[i].event_id, &evs[i].customer_id, &evs[i].platform_user_id,
                            &evs[i].idempotency_key, &evs[i].u.message.device_id};
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) *strs[k] = keep(*strs[k]);
    }
    tl_buf_close(&out);
    tl_codec_free(enc);
    return err;
}

/* Folds events [0, EVENTS) into an empty f, decoding them first when dec
 * is given; returns the seconds it took. */
static double pass(tl_fold_t *f, tl_codec_t *dec, const tl_event_t *evs, const record_t *recs) {
    tl_event_t ev;
    tl_fold_result_t res;
    tl_fold_clear(f);
    double t0 = now();
    for (int i = 0; i < EVENTS; i++) {
        if (dec && tl_codec_decode_event(dec, recs[i].data, recs[i].len, &ev)) abort();
        if (tl_fold_apply(f, dec ? &ev : &evs[i], &res)) abort();
    }
    return now() - t0;
}

int main(void) {
    record_t *recs = calloc(EVENTS, sizeof *recs);
    tl_event_t *evs = calloc(EVENTS, sizeof *evs);
    size_t bytes = 0;
    int err = recs && evs ? build(evs, recs, &bytes) : TL_ENOMEM;
    if (err) {
        fprintf(stderr, "bench_fold: building the stream: %s\n", tl_strerror(err));
        return EXIT_FAILURE;
    }
    tl_codec_t *dec = tl_codec_new_event(&err);
    tl_fold_opts_t opts = {5 * 60 * 1000, 30 * 60 * 1000, NULL, 0};
    tl_fold_t *f = tl_fold_new(&opts);
    if (!dec || !f) {
        fprintf(stderr, "bench_fold: %s\n", tl_strerror(dec ? TL_ENOMEM : err));
        return EXIT_FAILURE;
    }

    /* One untimed pass: warms caches and the allocator, and checks the
     * stream does what the comment above says. */
    tl_event_t ev;
    tl_fold_result_t res;
    long dups = 0, opened = 0;
    for (int i = 0; i < EVENTS; i++) {
        if (tl_codec_decode_event(dec, recs[i].data, recs[i].len, &ev) || tl_fold_apply(f, &ev, &res)) {
            fprintf(stderr, "bench_fold: event %d: %s\n", i, tl_codec_errmsg(dec));
            return EXIT_FAILURE;
        }
        dups += res.duplicate;
        opened += res.conversation_opened;
    }
    fprintf(stderr, "bench_fold: %ld duplicates, %ld conversations opened, %zu customers\n", dups, opened,
            tl_fold_count(f));

    long events = 0;
    double busy = 0;
    do {
        busy += pass(f, dec, evs, recs);
        events += EVENTS;
    } while (busy < SECONDS);
    double rate = (double)events / busy;

    long decoded = 0;
    size_t check = 0;
    double dbusy = 0;
    do {
        double t0 = now();
        for (int i = 0; i < EVENTS; i++) {
            if (tl_codec_decode_event(dec, recs[i].data, recs[i].len, &ev)) abort();
            check += ev.u.message.text.len;
        }
        dbusy += now() - t0;
        decoded += EVENTS;
    } while (dbusy < SECONDS / 2);
    if (!check) abort();

    long folded = 0;
    double fbusy = 0;
    do {
        fbusy += pass(f, NULL, evs, recs);
        folded += EVENTS;
    } while (fbusy < SECONDS / 2);

    printf("bench_fold events_per_s=%.0f decode_ns=%.0f fold_ns=%.0f events=%d customers=%d bytes=%zu\n", rate,
           dbusy * 1e9 / (double)decoded, fbusy * 1e9 / (double)folded, EVENTS, CUSTOMERS, bytes / EVENTS);
    tl_fold_free(f);
    tl_codec_free(dec);
    for (int i = 0; i < EVENTS; i++) {
        free(recs[i].data);
        tl_str_t strs[] = {evs[i].event_id, evs[i].customer_id, evs[i].platform_user_id,
                           evs[i].idempotency_key, evs[i].u.message.device_id};
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) free((char *)strs[k].ptr);
    }
    free(recs);
    free(evs);
    return EXIT_SUCCESS;
}
