/*
 * bench_replay.c -- how close `threadline replay` comes to reading the log
 * as fast as the broker hands it out.
 *
 * The stream: EVENTS MessageReceived events of 10,000 customers from
 * workload.c (the mix bench_fold and bench_fold_stage use), produced to a
 * fresh prefix's .events (12 partitions, key = customer_id, idempotent
 * producer, murmur2_random) before any clock starts.
 *
 * Then, in the same run on the same machine, two readers of that topic,
 * alternated ROUNDS (3) times, each one's best time kept:
 *
 *   raw     a bare librdkafka consumer: partitions assigned at their low
 *           watermarks, read_committed, the same fetch sizes as the replay,
 *           rd_kafka_consume_batch_queue as the replay calls it (wait for one
 *           record, then drain the queue), every record counted and freed,
 *           nothing decoded, stopping at the E-th record: the ceiling.
 *   Both are timed from creating their client to their last record.
 *   replay  tl_replay_run into a fresh fold: the same consumer, plus
 *           decoding every record and folding it.
 *
 *   bench_replay [EVENTS]          default 200000
 *
 * Prints one line:
 *   bench_replay events_per_s=N raw_consume_per_s=N ratio=R events=E
 *     customers=N partitions=N folded=N duplicates=N
 * ratio = events_per_s / raw_consume_per_s (target: at least 0.7).
 * Exit 1 (reason on stderr) if either reader does not see every event.
 * The topics are deleted afterwards.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "config.h"
#include "error.h"
#include "fold.h"
#include "kafka.h"
#include "replay.h"
#include "workload.h"

#define CUSTOMERS 10000
#define PARTITIONS 12
#define ROUNDS 3

static long delivered, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) failed++;
    else delivered++;
}

static int produce_stream(tl_kafka_t *kafka, int events) {
    char errstr[256];
    int err = 0;
    tl_codec_t *enc = tl_codec_new_event(&err);
    rd_kafka_conf_t *conf = tl_kafka_conf_producer(kafka, 60000);
    if (!enc || !conf) return -1;
    rd_kafka_conf_set(conf, "linger.ms", "20", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "bench_replay: producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        tl_codec_free(enc);
        return -1;
    }
    const char *topic = tl_kafka_topic(kafka, TL_TOPIC_EVENTS);
    tl_buf_t out;
    tl_buf_init(&out);
    tl_workload_t wl;
    if (tl_workload_init(&wl, CUSTOMERS, 36, "bench-replay-event")) abort();
    int rc = 0;
    for (int i = 0; i < events && !rc; i++) {
        tl_event_t ev;
        tl_workload_next(&wl, &ev);
        tl_buf_reset(&out);
        if (tl_codec_encode_event(enc, &ev, &out)) {
            rc = -1;
            break;
        }
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(ev.customer_id.ptr, ev.customer_id.len),
                RD_KAFKA_V_VALUE(out.data, out.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 50);
                continue;
            }
            if (e) rc = -1;
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    if (!rc && (failed || delivered != events)) {
        fprintf(stderr, "bench_replay: %ld of %d events delivered\n", delivered, events);
        rc = -1;
    }
    rd_kafka_destroy(rk);
    tl_buf_close(&out);
    tl_workload_close(&wl);
    tl_codec_free(enc);
    return rc;
}

/* The ceiling: reads every partition to its end, counting.  Returns the
 * records read, or -1; *seconds gets the time from assign to the end. */
static int64_t raw_consume(tl_kafka_t *kafka, int64_t expect, double *seconds) {
    char errstr[256];
    const char *topic = tl_kafka_topic(kafka, TL_TOPIC_EVENTS);
    /* Timed like the replay: from creating the client to the last record,
     * starting at explicit offsets and stopping at the known end (rather
     * than waiting for end-of-partition signals, which cost a fetch wait). */
    double t0 = tl_workload_now();
    rd_kafka_conf_t *conf = tl_kafka_conf(kafka);
    rd_kafka_conf_set(conf, "group.id", "bench-replay-raw", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "fetch.max.bytes", "104857600", NULL, 0);
    rd_kafka_conf_set(conf, "max.partition.fetch.bytes", "16777216", NULL, 0);
    rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "262144", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "bench_replay: raw consumer: %s\n", errstr);
        return -1;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = lo;
    }
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t *msgs[4096];
    int64_t n = 0;
    while (n < expect && tl_workload_now() - t0 < 300) {
        ssize_t got = rd_kafka_consume_batch_queue(q, 100, msgs, 1);
        if (got == 1) {
            ssize_t more = rd_kafka_consume_batch_queue(q, 0, msgs + 1, 4095);
            if (more > 0) got += more;
        }
        for (ssize_t i = 0; i < got; i++) {
            if (!msgs[i]->err) n++;
            rd_kafka_message_destroy(msgs[i]);
        }
    }
    *seconds = tl_workload_now() - t0;
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return n;
}

int main(int argc, char **argv) {
    int events = 200000;
    if (argc > 1) {
        char *end;
        long v = strtol(argv[1], &end, 10);
        if (end == argv[1] || *end || v < 1000 || v > 10000000) {
            fprintf(stderr, "bench_replay: EVENTS: want 1000 to 10000000, got \"%s\"\n", argv[1]);
            return 2;
        }
        events = (int)v;
    }
    tl_config_t cfg;
    if (tl_config_init(&cfg)) return EXIT_FAILURE;
    if (tl_config_kafka_embedded(&cfg) || !getenv("TL_KAFKA_BROKERS")) {
        fprintf(stderr, "bench_replay: needs the real broker in TL_KAFKA_BROKERS (tools/bench replay sets it)\n");
        return EXIT_FAILURE;
    }
    char prefix[64], err[512];
    snprintf(prefix, sizeof prefix, "bench-replay-%d-%lld", (int)getpid(), (long long)time(NULL));
    cfg.prefix = prefix;
    tl_kafka_t *kafka = NULL;
    if (tl_kafka_new(&cfg, &kafka)) return EXIT_FAILURE;
    int status = EXIT_FAILURE;
    tl_fold_t *fold = NULL;
    if (tl_kafka_ensure_topics(kafka, PARTITIONS, 30000)) {
        fprintf(stderr, "bench_replay: cannot create topics at %s\n", cfg.kafka_brokers);
        goto out;
    }
    double p0 = tl_workload_now();
    if (produce_stream(kafka, events)) goto out;
    fprintf(stderr, "bench_replay: %d events produced in %.2f s\n", events, tl_workload_now() - p0);

    /* Alternate the two readers ROUNDS times and keep each one's best:
     * the first read of a fresh topic pays for the broker's cold caches,
     * whichever reader does it. */
    double raw_s = 1e9, replay_s = 1e9;
    tl_replay_stats_t st;
    memset(&st, 0, sizeof st);
    for (int round = 0; round < ROUNDS; round++) {
        double s = 0;
        int64_t raw = raw_consume(kafka, events, &s);
        if (raw != events) {
            fprintf(stderr, "bench_replay: the raw consumer read %" PRId64 " of %d events\n", raw, events);
            goto out;
        }
        if (s < raw_s) raw_s = s;
        tl_fold_free(fold);
        if (!(fold = tl_replay_fold_new(&cfg, err, sizeof err))) {
            fprintf(stderr, "bench_replay: %s\n", err);
            goto out;
        }
        tl_replay_opts_t o;
        tl_replay_opts_init(&o);
        double r0 = tl_workload_now();
        int rc = tl_replay_run(kafka, fold, &o, NULL, NULL, &st, err, sizeof err);
        s = tl_workload_now() - r0;
        if (rc || st.folded != events) {
            fprintf(stderr, "bench_replay: replay folded %" PRId64 " of %d events (%s)\n", st.folded, events,
                    rc ? err : "ok");
            goto out;
        }
        if (s < replay_s) replay_s = s;
        fprintf(stderr, "bench_replay: round %d: raw %.3f s, replay %.3f s\n", round + 1, raw_s, s);
    }
    double eps = (double)events / replay_s, raw_eps = (double)events / raw_s;
    printf("bench_replay events_per_s=%.0f raw_consume_per_s=%.0f ratio=%.2f events=%d customers=%d "
           "partitions=%d folded=%" PRId64 " duplicates=%" PRId64 "\n",
           eps, raw_eps, eps / raw_eps, events, CUSTOMERS, PARTITIONS, st.folded, st.duplicates);
    fflush(stdout);
    status = EXIT_SUCCESS;
out:
    tl_fold_free(fold);
    tl_kafka_delete_topics(kafka, 30000);
    tl_kafka_free(kafka);
    return status;
}
