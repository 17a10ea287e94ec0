/*
 * bench_codec.c -- encode and decode of one realistic MessageReceived
 * (about 300 bytes of Chinese customer-service text, one attachment, entry
 * point, device id) in a tight loop on one core, about two seconds each.
 *
 * Prints three lines:
 *   bench_codec encode_per_s=N decode_per_s=N bytes=N
 *   bench_codec path=general decode_per_s=N bytes=N
 *   bench_codec path=change decode_per_s=N general_decode_per_s=N bytes=N
 * where bytes is the size of the framed record; the second line decodes
 * it through the general path (tl_codec_decode_event_general), the one
 * records of older writer schemas take.  The third decodes the Change the
 * fold writes for that event (the event inside, a conversation, one
 * field_set and one conflict_opened with two candidates), as every
 * projection worker does: tl_change_decode, then tl_change_decode_general,
 * each followed by reading every fold entry and candidate.  Encoding and decoding use
 * separate codecs, as a producer and a consumer would.  The process pins
 * itself to the core it starts on, so "per second" means per core.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "change.h"
#include "codec.h"
#include "error.h"
#include "event.h"

#define SECONDS 2.0
#define BATCH 4096

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const tl_attachment_t attachment = {
    TL_STR("https://img.example.cn/u/7781/order-screenshot.jpg"), TL_STR("image/jpeg"),
    482113, 1080, 2340, 1, 1,
};

static void pin_to_current_core(void) {
    int cpu = sched_getcpu();
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);     /* best effort */
}

/* Decodes a Change about two seconds with decode and reads every fold
 * entry and candidate; returns decodes per second (0 on an error). */
static double change_rate(tl_codec_t *c, const tl_buf_t *rec,
                          int (*decode)(tl_codec_t *, const void *, size_t, tl_change_t *)) {
    tl_change_t ch;
    tl_change_fold_t fc;
    tl_change_candidate_t cd;
    size_t check = 0;
    long decodes = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < BATCH; i++) {
            if (decode(c, rec->data, rec->len, &ch)) return 0;
            check += ch.event.len;
            for (size_t f = 0; f < ch.nfold_changes; f++) {
                if (tl_change_fold_get(&ch, f, &fc)) return 0;
                check += fc.value.len;
                for (size_t j = 0; j < fc.ncandidates; j++)
                    if (tl_change_candidate_get(&ch, f, j, &cd) == 0) check += cd.value.len;
            }
        }
        decodes += BATCH;
    } while ((t = now() - t0) < SECONDS);
    return check ? (double)decodes / t : 0;
}

/* The Change line (see the top): event is the framed MessageReceived. */
static int bench_change(const tl_buf_t *event) {
    static const tl_change_candidate_t cands[2] = {
        { TL_STR("SO20240518001"), TL_STR("mini_program"), TL_STR("01890a5d-ac96-774b-bcce-b302099a8041"),
          1716019100000 },
        { TL_STR("SO20240518007"), TL_STR("phone"), TL_STR("01890a5d-ac96-774b-bcce-b302099a8057"),
          1716019200123 },
    };
    const tl_change_fold_t folds[2] = {
        { .kind = TL_STR("field_set"), .field = TL_STR("name"), .value = TL_STR("王晓明"),
          .platform = TL_STR("mini_program"), .event_id = TL_STR("01890a5d-ac96-774b-bcce-b302099a8057"),
          .effective_ts = 1716019200123, .version = 58 },
        { .kind = TL_STR("conflict_opened"), .field = TL_STR("order_no"), .value = TL_STR("SO20240518007"),
          .conflict_id = TL_STR("5b0e7c1a-3f7d-5a55-9d2e-0c4b9f1e2a77"), .is_key = 1,
          .candidates = cands, .ncandidates = 2 },
    };
    const tl_change_t ch = {
        .event_id = TL_STR("01890a5d-ac96-774b-bcce-b302099a8057"),
        .tenant_id = TL_STR("tenant-hz-01"),
        .customer_id = TL_STR("c-5f2a9e0b"),
        .source_partition = 5, .source_offset = 18204417, .customer_version = 58,
        .conversation_id = TL_STR("8821379b-782e-5391-83cb-7405595a777d"),
        .conversation_version = 12, .effective_ts = 1716019200123,
        .event = { event->data, event->len },
        .fold_changes = folds, .nfold_changes = 2,
    };
    int err = 0;
    tl_codec_t *enc = tl_change_codec_new(&err), *dec = enc ? tl_change_codec_new(&err) : NULL;
    tl_buf_t rec;
    tl_buf_init(&rec);
    if (!dec || (err = tl_change_encode(enc, &ch, &rec))) {
        fprintf(stderr, "bench_codec: change: %s\n", tl_strerror(err));
        return -1;
    }
    double direct = change_rate(dec, &rec, tl_change_decode);
    double general = change_rate(dec, &rec, tl_change_decode_general);
    if (!direct || !general) {
        fprintf(stderr, "bench_codec: change decode: %s\n", tl_codec_errmsg(dec));
        return -1;
    }
    printf("bench_codec path=change decode_per_s=%.0f general_decode_per_s=%.0f bytes=%zu\n", direct,
           general, rec.len);
    tl_buf_close(&rec);
    tl_codec_free(enc);
    tl_codec_free(dec);
    return 0;
}

int main(void) {
    pin_to_current_core();
    tl_event_t ev = {
        .event_id = TL_STR("01890a5d-ac96-774b-bcce-b302099a8057"),
        .tenant_id = TL_STR("tenant-hz-01"),
        .customer_id = TL_STR("c-5f2a9e0b"),
        .platform = TL_PLATFORM_MINI_PROGRAM,
        .platform_user_id = TL_STR("oX9a_mini_77810023"),
        .idempotency_key = TL_STR("mini_program:msg-20240518-000187"),
        .occurred_at = 1716019200123,
        .received_at = 1716019200456,
        .trace_id = TL_STR("4bf92f3577b34da6a3ce929d0e0e4736"),
        .kind = TL_EV_MESSAGE_RECEIVED,
        .u.message = {
            /* 100 characters, 300 bytes of UTF-8 */
            .text = TL_STR("您好，我上周在小程序下的订单到现在还没有发货，订单号是"
                           "二零二四零五一八零零一，客服说今天会处理，请问现在物流到哪里了？"
                           "如果今天还不能发货，我想申请退款，谢谢！"
                           "另外发票抬头请开公司名称，麻烦尽快回复我。"),
            .attachments = { &attachment, 1 },
            .entry_point = TL_STR("product-detail:SKU20240518123"),
            .device_id = TL_STR("iPhone15,3-8F2C1A7E"),
        },
    };

    int err = 0;
    tl_codec_t *enc = tl_codec_new_event(&err), *dec = enc ? tl_codec_new_event(&err) : NULL;
    if (!dec) {
        fprintf(stderr, "bench_codec: %s\n", tl_strerror(err));
        return EXIT_FAILURE;
    }
    tl_buf_t out;
    tl_buf_init(&out);
    if ((err = tl_codec_encode_event(enc, &ev, &out))) {
        fprintf(stderr, "bench_codec: encode: %s\n", tl_codec_errmsg(enc));
        return EXIT_FAILURE;
    }
    size_t bytes = out.len;

    long encodes = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < BATCH; i++) {
            tl_buf_reset(&out);
            if (tl_codec_encode_event(enc, &ev, &out)) abort();
        }
        encodes += BATCH;
    } while ((t = now() - t0) < SECONDS);
    double encode_rate = (double)encodes / t;

    tl_event_t got;
    size_t check = 0;
    long decodes = 0;
    t0 = now();
    do {
        for (int i = 0; i < BATCH; i++) {
            if (tl_codec_decode_event(dec, out.data, out.len, &got)) abort();
            check += got.u.message.text.len;
        }
        decodes += BATCH;
    } while ((t = now() - t0) < SECONDS);
    double decode_rate = (double)decodes / t;
    if (check != (size_t)decodes * ev.u.message.text.len) abort();

    printf("bench_codec encode_per_s=%.0f decode_per_s=%.0f bytes=%zu\n", encode_rate, decode_rate,
           bytes);

    /* The same record through the general path (avro value, then
     * tl_event_t), which records of older writer schemas take. */
    check = 0;
    decodes = 0;
    t0 = now();
    do {
        for (int i = 0; i < BATCH; i++) {
            if (tl_codec_decode_event_general(dec, out.data, out.len, &got)) abort();
            check += got.u.message.text.len;
        }
        decodes += BATCH;
    } while ((t = now() - t0) < SECONDS);
    if (check != (size_t)decodes * ev.u.message.text.len) abort();
    printf("bench_codec path=general decode_per_s=%.0f bytes=%zu\n", (double)decodes / t, bytes);
    if (bench_change(&out)) return EXIT_FAILURE;
    tl_buf_close(&out);
    tl_codec_free(enc);
    tl_codec_free(dec);
    return EXIT_SUCCESS;
}
