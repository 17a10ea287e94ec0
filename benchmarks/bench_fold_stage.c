/*
 * bench_fold_stage.c -- the fold stage end to end on the real broker: how
 * fast one fold worker turns <prefix>.events into committed .changes.
 *
 * The stream: 200,000 MessageReceived events of 10,000 customers (the same
 * mix as bench_fold: Chinese customer-service text of 6 to 120 characters
 * from the web widget, the app, the mini-program, WeChat and Douyin, one in
 * ten with an image, one in five with an entry point, app and mini-program
 * ones with a device id, client clocks a little behind, three in a hundred
 * WeChat resends that the fold records as duplicates).  They are produced
 * to a fresh prefix's .events (12 partitions, key = customer_id, idempotent
 * producer, murmur2_random) before the clock starts.
 *
 * Then one fold worker runs in this process (tl_fold_worker_start: consumer
 * group <prefix>-fold, read_committed, one Kafka transaction per batch of
 * up to --batch records holding the Change records, the states and the
 * input offsets), and the clock runs until the group's committed input
 * offsets cover every event: since offsets and changes commit in one
 * transaction, .changes then holds one committed record per event.  The
 * worker is then stopped and .changes is read back with read_committed to
 * check that it holds exactly E records.
 *
 *   bench_fold_stage [BATCH [BATCH_MS]]     defaults 500 and 20
 *
 * Prints one line:
 *   bench_fold_stage events_per_s=N events=E seconds=S customers=N
 *     partitions=N batch=N batch_ms=N transactions=N aborts=N changes=N
 *     produce_per_s=N bytes=N
 * bytes is the mean size of an event record.  Fails (exit 1, reason on
 * stderr) if the stage has not caught up within five minutes or .changes
 * does not hold exactly E records.  The topics are deleted afterwards.
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
#include "event.h"
#include "fold_worker.h"
#include "kafka.h"
#include "metrics.h"
#include "uuid.h"
#include "workload.h"

#define EVENTS 200000
#define CUSTOMERS 10000
#define PARTITIONS 12
#define DEADLINE_S 300


/* ---------------------------------------------------------------- produce */

static long delivered, failed;
static rd_kafka_resp_err_t first_error;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (!failed++) first_error = m->err;
    } else {
        delivered++;
    }
}

/* Builds the stream and produces it to .events; *bytes gets the total
 * size of the records.  Returns 0 or -1 with a message on stderr. */
static int produce_stream(tl_kafka_t *kafka, size_t *bytes) {
    char errstr[256];
    int err = 0;
    tl_codec_t *enc = tl_codec_new_event(&err);
    rd_kafka_conf_t *conf = tl_kafka_conf_producer(kafka, 60000);
    if (!enc || !conf) {
        fprintf(stderr, "bench_fold_stage: codec or producer config: %s\n",
                tl_strerror(enc ? TL_ENOMEM : err));
        return -1;
    }
    rd_kafka_conf_set(conf, "linger.ms", "20", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tl_codec_free(enc);
        fprintf(stderr, "bench_fold_stage: producer: %s\n", errstr);
        return -1;
    }
    const char *topic = tl_kafka_topic(kafka, TL_TOPIC_EVENTS);
    tl_buf_t out;
    tl_buf_init(&out);
    tl_workload_t wl;
    if (tl_workload_init(&wl, CUSTOMERS, 36, "bench-fold-stage-event")) abort();
    *bytes = 0;
    int rc = 0;
    for (int i = 0; i < EVENTS && rc == 0; i++) {
        tl_event_t ev;
        tl_workload_next(&wl, &ev);
        tl_buf_reset(&out);
        if ((err = tl_codec_encode_event(enc, &ev, &out))) {
            fprintf(stderr, "bench_fold_stage: encoding event %d: %s\n", i, tl_strerror(err));
            rc = -1;
            break;
        }
        *bytes += out.len;
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(ev.customer_id.ptr, ev.customer_id.len),
                RD_KAFKA_V_VALUE(out.data, out.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 50);
                continue;
            }
            if (e) {
                fprintf(stderr, "bench_fold_stage: produce: %s\n", rd_kafka_err2str(e));
                rc = -1;
            }
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR && rc == 0) {
        fprintf(stderr, "bench_fold_stage: %d events not delivered within 120 s\n",
                rd_kafka_outq_len(rk));
        rc = -1;
    }
    if (rc == 0 && (failed || delivered != EVENTS)) {
        fprintf(stderr, "bench_fold_stage: %ld of %d events delivered, %ld failed (%s)\n", delivered,
                EVENTS, failed, rd_kafka_err2str(first_error));
        rc = -1;
    }
    rd_kafka_destroy(rk);
    tl_buf_close(&out);
    tl_workload_close(&wl);
    tl_codec_free(enc);
    return rc;
}

/* ---------------------------------------------------------------- measure */

/* Sum of the fold group's committed offsets on .events, or -1. */
static int64_t committed_sum(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts) {
    for (int i = 0; i < parts->cnt; i++) parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    if (rd_kafka_committed(rk, parts, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
    int64_t sum = 0;
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset > 0) sum += parts->elems[i].offset;
    return sum;
}

/* Counts the records of topic visible to a read_committed reader, reading
 * each partition to its end.  Returns the count, or -1 with a message. */
static int64_t count_committed(tl_kafka_t *kafka, const char *topic, int partitions) {
    char errstr[256];
    rd_kafka_conf_t *conf = tl_kafka_conf(kafka);
    if (!conf) return -1;
    rd_kafka_conf_set(conf, "group.id", "bench-fold-stage-reader", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "bench_fold_stage: reader: %s\n", errstr);
        return -1;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    int64_t n = 0;
    int eofs = 0;
    double deadline = tl_workload_now() + 120;
    while (eofs < partitions) {
        if (tl_workload_now() > deadline) {
            fprintf(stderr, "bench_fold_stage: reading %s: no end within 120 s\n", topic);
            n = -1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) eofs++;
        else if (m->err) fprintf(stderr, "bench_fold_stage: reading %s: %s\n", topic, rd_kafka_message_errstr(m));
        else n++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static int parse_arg(const char *s, const char *what, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < 1 || v > 100000) {
        fprintf(stderr, "bench_fold_stage: %s: want a number from 1 to 100000, got \"%s\"\n", what, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    tl_config_t cfg;
    if (tl_config_init(&cfg)) return EXIT_FAILURE;
    cfg.batch = 500;
    cfg.batch_ms = 20;
    if ((argc > 1 && parse_arg(argv[1], "BATCH", &cfg.batch)) ||
        (argc > 2 && parse_arg(argv[2], "BATCH_MS", &cfg.batch_ms)))
        return 2;
    if (tl_config_kafka_embedded(&cfg) || !getenv("TL_KAFKA_BROKERS")) {
        fprintf(stderr, "bench_fold_stage: needs the real broker in TL_KAFKA_BROKERS "
                        "(tools/bench fold_stage sets it from .run/env)\n");
        return EXIT_FAILURE;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "bench-fold-stage-%d-%lld", (int)getpid(), (long long)time(NULL));
    cfg.prefix = prefix;
    cfg.partitions = PARTITIONS;
    cfg.instance = "bench";

    tl_kafka_t *kafka = NULL;
    int rc = tl_kafka_new(&cfg, &kafka);
    if (rc) {
        fprintf(stderr, "bench_fold_stage: %s\n", tl_strerror(rc));
        return EXIT_FAILURE;
    }
    int status = EXIT_FAILURE;
    tl_fold_worker_t *w = NULL;
    rd_kafka_t *probe = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if ((rc = tl_kafka_ensure_topics(kafka, PARTITIONS, 30000))) {
        fprintf(stderr, "bench_fold_stage: creating topics at %s: %s\n", cfg.kafka_brokers,
                tl_strerror(rc));
        goto out;
    }

    size_t bytes = 0;
    double p0 = tl_workload_now();
    if (produce_stream(kafka, &bytes)) goto out;
    double produce_s = tl_workload_now() - p0;
    fprintf(stderr, "bench_fold_stage: %d events (%zu bytes) produced to %s in %.2f s\n", EVENTS,
            bytes, tl_kafka_topic(kafka, TL_TOPIC_EVENTS), produce_s);

    /* A client of the fold's group that never joins it: it only asks for
     * the committed offsets (stable ones, as a read_committed client). */
    char errstr[256], group[128];
    tl_kafka_group(kafka, "fold", group, sizeof group);
    rd_kafka_conf_t *conf = tl_kafka_conf(kafka);
    if (!conf) goto out;
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    if (!(probe = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "bench_fold_stage: offsets client: %s\n", errstr);
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, tl_kafka_topic(kafka, TL_TOPIC_EVENTS), p);

    uint64_t tx0 = atomic_load(&tl_metrics[TL_M_fold_transactions_total]);
    uint64_t ab0 = atomic_load(&tl_metrics[TL_M_fold_aborts_total]);
    double t0 = tl_workload_now();
    if ((rc = tl_fold_worker_start(kafka, &cfg, &w))) {
        fprintf(stderr, "bench_fold_stage: starting the fold worker: %s\n", tl_strerror(rc));
        goto out;
    }
    int64_t done = 0;
    double last_report = t0;
    for (;;) {
        done = committed_sum(probe, parts);
        if (done >= EVENTS) break;
        double t = tl_workload_now();
        if (tl_fold_worker_failed(w)) {
            fprintf(stderr, "bench_fold_stage: the fold worker failed after %.1f s (%" PRId64
                    " of %d folded)\n", t - t0, done, EVENTS);
            goto out;
        }
        if (t - t0 > DEADLINE_S) {
            fprintf(stderr, "bench_fold_stage: only %" PRId64 " of %d events folded after %d s\n",
                    done, EVENTS, DEADLINE_S);
            goto out;
        }
        if (t - last_report >= 5) {
            fprintf(stderr, "bench_fold_stage: %" PRId64 " of %d folded after %.1f s\n", done, EVENTS,
                    t - t0);
            last_report = t;
        }
        usleep(50 * 1000);
    }
    double seconds = tl_workload_now() - t0;
    uint64_t txns = atomic_load(&tl_metrics[TL_M_fold_transactions_total]) - tx0;
    uint64_t aborts = atomic_load(&tl_metrics[TL_M_fold_aborts_total]) - ab0;
    tl_fold_worker_stop(w);
    w = NULL;

    int64_t changes = count_committed(kafka, tl_kafka_topic(kafka, TL_TOPIC_CHANGES), PARTITIONS);
    if (changes != EVENTS) {
        fprintf(stderr, "bench_fold_stage: %s holds %" PRId64 " committed records for %d events\n",
                tl_kafka_topic(kafka, TL_TOPIC_CHANGES), changes, EVENTS);
        goto out;
    }
    printf("bench_fold_stage events_per_s=%.0f events=%d seconds=%.2f customers=%d partitions=%d "
           "batch=%" PRId64 " batch_ms=%" PRId64 " transactions=%" PRIu64 " aborts=%" PRIu64
           " changes=%" PRId64 " produce_per_s=%.0f bytes=%zu\n",
           (double)EVENTS / seconds, EVENTS, seconds, CUSTOMERS, PARTITIONS, cfg.batch, cfg.batch_ms,
           txns, aborts, changes, (double)EVENTS / produce_s, bytes / EVENTS);
    fflush(stdout);
    status = EXIT_SUCCESS;

out:
    tl_fold_worker_stop(w);
    if (parts) rd_kafka_topic_partition_list_destroy(parts);
    if (probe) {
        rd_kafka_consumer_close(probe);
        rd_kafka_destroy(probe);
    }
    tl_kafka_delete_topics(kafka, 30000);
    tl_kafka_free(kafka);
    return status;
}
