/*
 * quota.c -- token buckets (see quota.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quota.h"

static void refill(tl_bucket_t *b, int64_t now_us) {
    if (b->rate <= 0) return;
    double add = (double)(now_us - b->at_us) / 1e6 * b->rate;
    if (add > 0) {
        b->tokens = fmin(b->rate, b->tokens + add);     /* one second of burst */
        b->at_us = now_us;
    }
}

static void bucket_init(tl_bucket_t *b, double rate) {
    b->rate = rate;
    b->tokens = rate;
    b->at_us = 0;
}

int tl_quota_init(tl_quota_t *q, const char *spec, int64_t capacity, char *err, size_t errlen) {
    tl_quota_t n;
    memset(&n, 0, sizeof n);
    for (int i = 0; i < TL_PLATFORM__COUNT; i++) n.priority[i] = TL_PRIORITY_NORMAL;
    bucket_init(&n.total, (double)capacity);
    char buf[1024];
    if (strlen(spec) >= sizeof buf) {
        snprintf(err, errlen, "--quotas: longer than %zu bytes", sizeof buf - 1);
        return TL_ECONFIG;
    }
    strcpy(buf, spec);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ') item++;
        char *eq = strchr(item, '=');
        tl_platform_t p;
        if (!eq || tl_platform_from_slug(item, (size_t)(eq - item), &p) != TL_OK) {
            snprintf(err, errlen, "--quotas: \"%s\" is not <platform>=<events per second>[:priority] "
                     "with a known platform", item);
            return TL_ECONFIG;
        }
        char *colon = strchr(eq + 1, ':'), *end;
        double rate = strtod(eq + 1, &end);
        if (end == eq + 1 || rate <= 0 || (*end && end != colon)) {
            snprintf(err, errlen, "--quotas: \"%s\": the rate must be a positive number", item);
            return TL_ECONFIG;
        }
        if (colon) {
            if (strcmp(colon + 1, "high") == 0) n.priority[p] = TL_PRIORITY_HIGH;
            else if (strcmp(colon + 1, "normal") == 0) n.priority[p] = TL_PRIORITY_NORMAL;
            else if (strcmp(colon + 1, "low") == 0) n.priority[p] = TL_PRIORITY_LOW;
            else {
                snprintf(err, errlen, "--quotas: \"%s\": priority is high, normal or low", item);
                return TL_ECONFIG;
            }
        }
        bucket_init(&n.platform[p], rate);
    }
    *q = n;
    return TL_OK;
}

/* Seconds until b holds `need` tokens. */
static int wait_s(const tl_bucket_t *b, double need) {
    double s = (need - b->tokens) / b->rate;
    return s < 1 ? 1 : (int)ceil(s);
}

int tl_quota_take(tl_quota_t *q, tl_platform_t platform, int64_t now_us) {
    tl_bucket_t *pb = &q->platform[platform], *tb = &q->total;
    if (pb->at_us == 0) pb->at_us = now_us;
    if (tb->at_us == 0) tb->at_us = now_us;
    refill(pb, now_us);
    refill(tb, now_us);
    if (pb->rate > 0 && pb->tokens < 1) return wait_s(pb, 1);
    if (tb->rate > 0) {
        /* Lower priorities must leave a reserve for higher ones. */
        static const double reserve[] = {0.5, 0.2, 0.0};
        double need = 1 + reserve[q->priority[platform]] * tb->rate;
        if (tb->tokens < need) return wait_s(tb, need);
        tb->tokens -= 1;
    }
    if (pb->rate > 0) pb->tokens -= 1;
    return 0;
}
