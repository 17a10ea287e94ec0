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
#include "workload.h"

#define SECONDS 2.0
#define EVENTS 100000
#define CUSTOMERS 10000


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
    tl_workload_t wl;
    if (tl_workload_init(&wl, CUSTOMERS, 72, "bench-event")) abort();
    *bytes = 0;
    for (int i = 0; i < EVENTS; i++) {
        tl_event_t ev;
        tl_workload_next(&wl, &ev);
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
    tl_workload_close(&wl);
    tl_codec_free(enc);
    return err;
}

/* Folds events [0, EVENTS) into an empty f, decoding them first when dec
 * is given; returns the seconds it took. */
static double pass(tl_fold_t *f, tl_codec_t *dec, const tl_event_t *evs, const record_t *recs) {
    tl_event_t ev;
    tl_fold_result_t res;
    tl_fold_clear(f);
    double t0 = tl_workload_now();
    for (int i = 0; i < EVENTS; i++) {
        if (dec && tl_codec_decode_event(dec, recs[i].data, recs[i].len, &ev)) abort();
        if (tl_fold_apply(f, dec ? &ev : &evs[i], &res)) abort();
    }
    return tl_workload_now() - t0;
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
        double t0 = tl_workload_now();
        for (int i = 0; i < EVENTS; i++) {
            if (tl_codec_decode_event(dec, recs[i].data, recs[i].len, &ev)) abort();
            check += ev.u.message.text.len;
        }
        dbusy += tl_workload_now() - t0;
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
