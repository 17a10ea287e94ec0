/*
 * workload.c -- the benchmarks' message stream (see workload.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "workload.h"

#define T0 1716019200000LL

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

double tl_workload_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tl_workload_init(tl_workload_t *w, int customers, int step_ms, const char *id_prefix) {
    memset(w, 0, sizeof *w);
    if (customers < 1 || customers > TL_WORKLOAD_MAX_CUSTOMERS) return -1;
    w->customers = customers;
    w->step_ms = step_ms;
    w->id_prefix = id_prefix;
    w->clock = T0;
    w->customer_ids = calloc((size_t)customers, sizeof *w->customer_ids);
    w->last_wechat_msg = calloc((size_t)customers, sizeof *w->last_wechat_msg);
    if (!w->customer_ids || !w->last_wechat_msg) {
        tl_workload_close(w);
        return -1;
    }
    for (int i = 0; i < customers; i++) {
        char name[32];
        int n = snprintf(name, sizeof name, "bench-customer-%d", i);
        const char *parts[] = {name};
        size_t lens[] = {(size_t)n};
        tl_uuid_v5(parts, lens, 1, w->customer_ids[i]);
    }
    return 0;
}

void tl_workload_close(tl_workload_t *w) {
    free(w->customer_ids);
    free(w->last_wechat_msg);
    w->customer_ids = NULL;
    w->last_wechat_msg = NULL;
}

void tl_workload_next(tl_workload_t *w, tl_event_t *ev) {
    int i = w->index++;
    int c = (int)rnd((uint64_t)w->customers);
    w->clock += (int64_t)rnd((uint64_t)w->step_ms);
    tl_platform_t platform = pick_platform();
    const char *parts[] = {w->id_prefix, (const char *)&i};
    size_t lens[] = {strlen(w->id_prefix), sizeof i};
    tl_uuid_v5(parts, lens, 2, w->event_id);
    int resend = i > 0 && w->last_wechat_msg[c] && rnd(100) < 3;
    if (resend) {
        platform = TL_PLATFORM_WECHAT;
        snprintf(w->key, sizeof w->key, "wechat:msg-%" PRId64, w->last_wechat_msg[c]);
    } else {
        snprintf(w->key, sizeof w->key, "%s:msg-%d", tl_platform_slug(platform), i);
        if (platform == TL_PLATFORM_WECHAT) w->last_wechat_msg[c] = i;
    }
    snprintf(w->puid, sizeof w->puid, "o%s_%08d", tl_platform_slug(platform), c);
    snprintf(w->device, sizeof w->device, "iPhone15,3-%08X", (unsigned)c);
    int64_t skew = rnd(50) == 0 ? (int64_t)rnd(600000) : (int64_t)rnd(3000);
    const char *text = texts[rnd(sizeof texts / sizeof texts[0])];
    int mobile = platform == TL_PLATFORM_APP || platform == TL_PLATFORM_MINI_PROGRAM;
    *ev = (tl_event_t){
        .event_id = {w->event_id, TL_UUID_STRLEN},
        .tenant_id = TL_STR("tenant-hz-01"),
        .customer_id = {w->customer_ids[c], TL_UUID_STRLEN},
        .platform = platform,
        .platform_user_id = {w->puid, strlen(w->puid)},
        .idempotency_key = {w->key, strlen(w->key)},
        .occurred_at = w->clock - skew,
        .received_at = w->clock,
        .trace_id = TL_STR("4bf92f3577b34da6a3ce929d0e0e4736"),
        .kind = TL_EV_MESSAGE_RECEIVED,
        .u.message = {
            .text = {text, strlen(text)},
            .attachments = {&image, rnd(10) == 0},
            .entry_point = rnd(5) == 0 ? TL_STR("product-detail:SKU20240518123") : TL_STR_NULL,
            .device_id = mobile ? (tl_str_t){w->device, strlen(w->device)} : TL_STR_NULL,
        },
    };
}
