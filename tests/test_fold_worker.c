/*
 * test_fold_worker.c -- the fold stage on the real broker: `threadline serve
 * --project 0 --fold 1` turns <prefix>.events into .changes exactly once
 * through crashes, rebalances and bad records.
 *
 * Each test writes events straight to <prefix>.events as a connector's
 * producer would (tl_codec_encode_event, key = customer_id, idempotent
 * producer, murmur2_random), runs one or two serve processes that only
 * fold, and reads .changes with isolation.level=read_committed -- what any
 * downstream reader sees -- while it runs.  Every event has its own event
 * id and idempotency key, so the fold must record each exactly once, and a
 * customer's k-th event (0-based) must carry customer_version k + 1 and
 * follow the customer's earlier changes in its partition.
 *
 * The tests: two SIGKILLs in the middle of a stream (the worker restarts
 * with the same --instance, fences its predecessor and restores its states
 * from .state); a second worker joining the group mid-stream and the first
 * leaving (two rebalances); a worker holding fewer states than it has
 * customers (--max-customers: evicted states are read back from .state),
 * killed in the middle; and bad records among good ones, which go to .dlq
 * with a reason without holding up the partition.  Each prints one
 * summary line.
 *
 * Isolation and cleanup as in test_pipeline.c: each test has its own topic
 * prefix fw<runner pid>t<epoch s>x<test pid>x<n>; every assertion goes
 * through FW_ASSERT, which prints the serve logs, stops the servers and
 * deletes the topics before it fails; the runner's unchecked teardown
 * sweeps whatever a test killed on timeout left behind.  With --project 0
 * serve uses PostgreSQL only for /readyz, so the tests give it the base
 * DSN and create no database.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "change.h"
#include "codec.h"
#include "config.h"
#include "error.h"
#include "event.h"
#include "kafka.h"
#include "suites.h"
#include "support.h"
#include "uuid.h"

#define FW_TENANT "acme"
#define FW_READY_MS 60000
#define FW_LOG_TAIL 40
#define FW_SERVES 2

/* ------------------------------------------------------------ suite state */

/* Set by the unchecked setup in the runner process; inherited by each
 * forked test. */
static const char *fw_brokers, *fw_pg_dsn, *fw_exe;
static char fw_run_tag[64]; /* fw<runner pid>t<epoch s> */
/* Outside `fw`: with CK_FORK=no all tests share one process and pid. */
static int fw_seq;

/* One test's resources, so a failure anywhere can release them. */
typedef struct fw_test {
    char prefix[128];
    tl_test_serve_t serve[FW_SERVES];
    int have_serve[FW_SERVES];
} fw_test_t;

static fw_test_t fw;

static void fw_cleanup(int ok) {
    char err[512];
    for (int i = 0; i < FW_SERVES; i++)
        if (fw.have_serve[i]) {
            tl_test_serve_close(&fw.serve[i], ok);
            fw.have_serve[i] = 0;
        }
    if (fw.prefix[0] != '\0') {
        char topics[160];
        snprintf(topics, sizeof topics, "%s.", fw.prefix);
        if (tl_test_kafka_delete_topics(fw_brokers, topics, 10000, err, sizeof err) < 0)
            fprintf(stderr, "cleanup: %s\n", err);
        fw.prefix[0] = '\0';
    }
}

static void fw_on_failure(const char *file, int line, const char *msg) {
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    for (int i = 0; i < FW_SERVES; i++)
        if (fw.have_serve[i]) {
            tl_test_serve_log_tail(&fw.serve[i], FW_LOG_TAIL);
            fprintf(stderr, "(full serve log kept: %s)\n", fw.serve[i].log_path);
        }
    fw_cleanup(0);
}

#define FW_FAIL(...)                                                                         \
    do {                                                                                     \
        char fw_msg_[8192];                                                                  \
        snprintf(fw_msg_, sizeof fw_msg_, __VA_ARGS__);                                      \
        fw_on_failure(__FILE__, __LINE__, fw_msg_);                                          \
        ck_abort_msg("%s", fw_msg_);                                                         \
    } while (0)

#define FW_ASSERT(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond))                                                                         \
            FW_FAIL(__VA_ARGS__);                                                            \
    } while (0)


/* ------------------------------------------------------------ fixtures */

/* Runner process, once: the services must be the real ones and answer. */
static void fw_services_check(void) {
    tl_test_services_t sv;
    tl_test_services_require("fold_worker", &sv);
    fw_brokers = sv.brokers;
    fw_pg_dsn = sv.pg_dsn;
    fw_exe = sv.exe;
    snprintf(fw_run_tag, sizeof fw_run_tag, "fw%dt%lld", (int)getpid(), (long long)time(NULL));
}

/* Runner process, once: what a test killed on timeout could not release. */
static void fw_services_sweep(void) {
    char err[512];
    if (fw_brokers != NULL && fw_run_tag[0] != '\0' &&
        tl_test_kafka_delete_topics(fw_brokers, fw_run_tag, 10000, err, sizeof err) < 0)
        fprintf(stderr, "sweep: %s\n", err);
}

static void fw_setup(void) { memset(&fw, 0, sizeof fw); }

static void fw_teardown(void) { fw_cleanup(1); }

/* Names this test's prefix and creates its four topics. */
static void fw_begin(int partitions) {
    int n = ++fw_seq;
    snprintf(fw.prefix, sizeof fw.prefix, "%sx%dx%d", fw_run_tag, (int)getpid(), n);
    tl_config_t cfg;
    FW_ASSERT(tl_config_init(&cfg) == TL_OK, "tl_config_init failed");
    cfg.kafka_brokers = fw_brokers;
    cfg.prefix = fw.prefix;
    tl_kafka_t *k = NULL;
    FW_ASSERT(tl_kafka_new(&cfg, &k) == TL_OK, "tl_kafka_new failed");
    int rc = tl_kafka_ensure_topics(k, partitions, 30000);
    tl_kafka_free(k);
    FW_ASSERT(rc == TL_OK, "creating the topics of %s: %s", fw.prefix, tl_strerror(rc));
}

/* Prepares serve number `which`: fold only, named `instance`, with
 * --batch batch and the NULL-terminated flags in more (or NULL).  Serve
 * i > 0 logs to /tmp/tl-it-<prefix>.<instance>.log (serve 0 to the usual
 * log). */
static void fw_serve_init_with(int which, const char *instance, int partitions, const char *batch,
                               const char *const *more) {
    char err[1024];
    const char *extra[16] = {"--project", "0", "--fold", "1", "--instance", instance,
                             "--batch", batch};
    size_t n = 8;
    for (size_t i = 0; more != NULL && more[i] != NULL; i++) {
        FW_ASSERT(n + 1 < sizeof extra / sizeof extra[0], "too many serve flags");
        extra[n++] = more[i];
    }
    extra[n] = NULL;
    tl_test_serve_t *s = &fw.serve[which];
    FW_ASSERT(tl_test_serve_init(s, fw_exe, fw_brokers, fw_pg_dsn, fw.prefix, partitions, extra,
                                 err, sizeof err) == 0,
              "%s", err);
    fw.have_serve[which] = 1;
    if (which > 0) {
        snprintf(s->log_path, sizeof s->log_path, "/tmp/tl-it-%s.%s.log", fw.prefix, instance);
        FILE *f = fopen(s->log_path, "w");
        FW_ASSERT(f != NULL, "cannot create %s", s->log_path);
        fclose(f);
    }
}

static void fw_serve_init(int which, const char *instance, int partitions, const char *batch) {
    fw_serve_init_with(which, instance, partitions, batch, NULL);
}

static void fw_serve_start(int which) {
    char err[1024];
    FW_ASSERT(tl_test_serve_start(&fw.serve[which], err, sizeof err) == 0, "%s", err);
    FW_ASSERT(tl_test_serve_wait_ready(&fw.serve[which], FW_READY_MS, err, sizeof err) == 0,
              "serve %d not ready: %s", which, err);
}

/* Sends sig and asserts how serve ended: killed by SIGKILL, or exit 0
 * after SIGTERM. */
static void fw_serve_stop(int which, int sig) {
    int st = tl_test_serve_stop(&fw.serve[which], sig, 20000);
    FW_ASSERT(st != -1, "serve %d was not running when it was to be stopped", which);
    if (sig == SIGKILL)
        FW_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "serve %d did not die of SIGKILL (status 0x%x)", which, st);
    else
        FW_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "serve %d did not exit 0 after signal %d (status 0x%x)", which, sig, st);
}

/* Fails if a serve that should be running has exited. */
static void fw_serves_alive(void) {
    for (int i = 0; i < FW_SERVES; i++) {
        int st = 0;
        if (fw.have_serve[i] && fw.serve[i].pid > 0 && !tl_test_serve_alive(&fw.serve[i], &st))
            FW_FAIL("serve %d exited on its own (status 0x%x)", i, st);
    }
}

/* "6 3 6": the partition counts of the serve log's "assigned N partitions"
 * lines, in order; returns how many such lines there were. */
static int fw_log_assignments(int which, char *out, size_t outlen, int *max_out, int *min_out) {
    FILE *f = fopen(fw.serve[which].log_path, "r");
    out[0] = '\0';
    *max_out = 0;
    *min_out = 1 << 30;
    if (f == NULL)
        return 0;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *p = strstr(line, "assigned ");
        int parts;
        if (p == NULL || sscanf(p, "assigned %d partitions", &parts) != 1)
            continue;
        size_t used = strlen(out);
        snprintf(out + used, outlen - used, "%s%d", n ? " " : "", parts);
        if (parts > *max_out)
            *max_out = parts;
        if (parts < *min_out)
            *min_out = parts;
        n++;
    }
    fclose(f);
    return n;
}

/* ---------------------------------------------------------------- events */

/* Where the broker put a record (delivery report); partition -1 before. */
typedef struct fw_dr {
    int32_t partition;
    int64_t offset;
    rd_kafka_resp_err_t err;
} fw_dr_t;

/* One input event and what .changes said about it. */
typedef struct fw_event {
    fw_dr_t dr; /* first: the delivery report's opaque points here */
    char id[TL_UUID_STRLEN + 1];
    int customer, seq;
    /* from the first Change record naming it */
    int seen;
    int32_t ch_partition;
    int64_t ch_offset, src_offset, version;
    int32_t src_partition;
    int duplicate, wrong_customer;
} fw_event_t;

/* The stream: customers × per_customer events in rounds; in each round
 * every customer, in turn, sends `burst` events one after the other.  With
 * burst 1 customers interleave event by event; a larger burst gives the
 * locality of real conversations (an evicted state comes back once per
 * burst, not once per event). */
typedef struct fw_stream {
    int n, customers, per_customer, burst;
    fw_event_t *ev;
    char (*cust)[TL_UUID_STRLEN + 1];
    fw_event_t **by_id; /* sorted by id, for lookups */
    int64_t t0;         /* received_at of event 0 */
    rd_kafka_t *producer;
    tl_codec_t *enc;
    const char *topic;
    char topic_buf[160];
    /* paced production on a thread */
    pthread_t th;
    int have_thread, rate;
    atomic_int produced;
    char error[512];
    /* what the reader of .changes found */
    tl_codec_t *ch_codec;
    int64_t records, distinct, extra, unknown, undecodable;
    tl_test_report_t rep;
} fw_stream_t;

static size_t fw_index(const fw_stream_t *s, int customer, int seq) {
    size_t round = (size_t)(seq / s->burst), in_burst = (size_t)(seq % s->burst);
    return round * (size_t)s->customers * (size_t)s->burst + (size_t)customer * (size_t)s->burst +
           in_burst;
}

static fw_event_t *fw_ev(fw_stream_t *s, int customer, int seq) {
    return &s->ev[fw_index(s, customer, seq)];
}

static void fw_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    fw_dr_t *dr = m->_private;
    if (dr == NULL)
        return;
    dr->err = m->err;
    dr->partition = m->partition;
    dr->offset = m->offset;
}

static int fw_by_id_cmp(const void *a, const void *b) {
    return strcmp((*(fw_event_t *const *)a)->id, (*(fw_event_t *const *)b)->id);
}

static void fw_stream_init(fw_stream_t *s, int customers, int per_customer, int burst) {
    memset(s, 0, sizeof *s);
    FW_ASSERT(burst > 0 && per_customer % burst == 0, "burst %d does not divide %d", burst,
              per_customer);
    s->customers = customers;
    s->per_customer = per_customer;
    s->burst = burst;
    s->n = customers * per_customer;
    s->ev = calloc((size_t)s->n, sizeof *s->ev);
    s->cust = calloc((size_t)customers, sizeof *s->cust);
    s->by_id = calloc((size_t)s->n, sizeof *s->by_id);
    FW_ASSERT(s->ev && s->cust && s->by_id, "out of memory");
    for (int c = 0; c < customers; c++) {
        char name[32];
        int len = snprintf(name, sizeof name, "fw-customer-%d", c);
        const char *parts[] = {FW_TENANT, fw.prefix, name};
        size_t lens[] = {strlen(FW_TENANT), strlen(fw.prefix), (size_t)len};
        tl_uuid_v5(parts, lens, 3, s->cust[c]);
    }
    s->t0 = tl_test_now_ms() - 3600 * 1000;
    for (int c = 0; c < customers; c++)
        for (int q = 0; q < per_customer; q++) {
            fw_event_t *e = fw_ev(s, c, q);
            e->customer = c;
            e->seq = q;
        }
    for (int i = 0; i < s->n; i++) {
        fw_event_t *e = &s->ev[i];
        e->dr.partition = -1;
        tl_uuid_v7(s->t0 + i, e->id);
        s->by_id[i] = e;
    }
    qsort(s->by_id, (size_t)s->n, sizeof *s->by_id, fw_by_id_cmp);
    for (int i = 1; i < s->n; i++)
        FW_ASSERT(strcmp(s->by_id[i - 1]->id, s->by_id[i]->id) != 0, "event id %s minted twice",
                  s->by_id[i]->id);

    int err = 0;
    s->enc = tl_codec_new_event(&err);
    FW_ASSERT(s->enc != NULL, "event codec: %s", tl_strerror(err));
    s->ch_codec = tl_change_codec_new(&err);
    FW_ASSERT(s->ch_codec != NULL, "change codec: %s", tl_strerror(err));

    tl_config_t cfg;
    FW_ASSERT(tl_config_init(&cfg) == TL_OK, "tl_config_init failed");
    cfg.kafka_brokers = fw_brokers;
    cfg.prefix = fw.prefix;
    tl_kafka_t *k = NULL;
    FW_ASSERT(tl_kafka_new(&cfg, &k) == TL_OK, "tl_kafka_new failed");
    snprintf(s->topic_buf, sizeof s->topic_buf, "%s", tl_kafka_topic(k, TL_TOPIC_EVENTS));
    s->topic = s->topic_buf;
    rd_kafka_conf_t *conf = tl_kafka_conf_producer(k, 60000);
    tl_kafka_free(k);
    FW_ASSERT(conf != NULL, "producer config");
    rd_kafka_conf_set_dr_msg_cb(conf, fw_on_delivery);
    char errstr[256];
    s->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (s->producer == NULL)
        rd_kafka_conf_destroy(conf);
    FW_ASSERT(s->producer != NULL, "producer: %s", errstr);
}

static void fw_stream_free(fw_stream_t *s) {
    if (s->producer != NULL)
        rd_kafka_destroy(s->producer);
    tl_codec_free(s->enc);
    tl_codec_free(s->ch_codec);
    free(s->ev);
    free(s->cust);
    free(s->by_id);
    memset(s, 0, sizeof *s);
}

/* Produces one record; value NULL is a null value.  Returns 0 or an
 * rdkafka error.  The producer's thread. */
static rd_kafka_resp_err_t fw_produce_raw(fw_stream_t *s, const char *key, const void *value,
                                          size_t len, fw_dr_t *dr) {
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            s->producer, RD_KAFKA_V_TOPIC(s->topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(dr), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return e;
        rd_kafka_poll(s->producer, 20);
    }
}

/* Fills ev with event i of the stream (strings point into s and bufs). */
static void fw_event_build(fw_stream_t *s, int i, tl_event_t *ev, char *key, size_t keylen,
                           char *puid, size_t puidlen, char *text, size_t textlen) {
    const fw_event_t *e = &s->ev[i];
    snprintf(key, keylen, "web:fw-%d-%d", e->customer, e->seq);
    snprintf(puid, puidlen, "v-%d", e->customer);
    snprintf(text, textlen, "message %d of customer %d: 我的快递到哪里了？", e->seq, e->customer);
    int64_t at = s->t0 + i;
    *ev = (tl_event_t){
        .event_id = {e->id, TL_UUID_STRLEN},
        .tenant_id = TL_STR(FW_TENANT),
        .customer_id = {s->cust[e->customer], TL_UUID_STRLEN},
        .platform = TL_PLATFORM_WEB,
        .platform_user_id = {puid, strlen(puid)},
        .idempotency_key = {key, strlen(key)},
        .occurred_at = at - 40,
        .received_at = at,
        .trace_id = TL_STR("4bf92f3577b34da6a3ce929d0e0e4736"),
        .kind = TL_EV_MESSAGE_RECEIVED,
        .u.message = {.text = {text, strlen(text)},
                      .entry_point = TL_STR("product-detail:SKU20240518123")},
    };
}

/* Encodes and produces event i.  Returns 0 or an rdkafka error (then
 * s->error says more). */
static rd_kafka_resp_err_t fw_produce_event(fw_stream_t *s, int i, tl_buf_t *buf) {
    char key[64], puid[32], text[128];
    tl_event_t ev;
    fw_event_build(s, i, &ev, key, sizeof key, puid, sizeof puid, text, sizeof text);
    tl_buf_reset(buf);
    int rc = tl_codec_encode_event(s->enc, &ev, buf);
    if (rc != TL_OK) {
        snprintf(s->error, sizeof s->error, "encoding event %d: %s", i, tl_strerror(rc));
        return RD_KAFKA_RESP_ERR__BAD_MSG;
    }
    rd_kafka_resp_err_t e = fw_produce_raw(s, s->cust[s->ev[i].customer], buf->data, buf->len,
                                           &s->ev[i].dr);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(s->error, sizeof s->error, "producing event %d: %s", i, rd_kafka_err2str(e));
    return e;
}

/* Waits for every delivery report; fails unless all records were stored. */
static void fw_stream_flush(fw_stream_t *s) {
    rd_kafka_resp_err_t e = rd_kafka_flush(s->producer, 60000);
    FW_ASSERT(e == RD_KAFKA_RESP_ERR_NO_ERROR, "%d records not delivered within 60 s",
              rd_kafka_outq_len(s->producer));
    tl_test_report_t rep = {.text = ""};
    for (int i = 0; i < s->n; i++)
        if (s->ev[i].dr.err != RD_KAFKA_RESP_ERR_NO_ERROR || s->ev[i].dr.partition < 0)
            tl_test_report(&rep, "event %d: %s", i, rd_kafka_err2str(s->ev[i].dr.err));
    FW_ASSERT(rep.count == 0, "%d events not delivered:%s", rep.count, rep.text);
}

/* Produces the whole stream from this thread, then waits for delivery. */
static void fw_stream_produce_all(fw_stream_t *s) {
    tl_buf_t buf;
    tl_buf_init(&buf);
    for (int i = 0; i < s->n; i++) {
        rd_kafka_resp_err_t e = fw_produce_event(s, i, &buf);
        FW_ASSERT(e == RD_KAFKA_RESP_ERR_NO_ERROR, "%s", s->error);
        rd_kafka_poll(s->producer, 0);
        atomic_store(&s->produced, i + 1);
    }
    tl_buf_close(&buf);
    fw_stream_flush(s);
}

/* Thread: produces the stream at s->rate events a second. */
static void *fw_stream_main(void *opaque) {
    fw_stream_t *s = opaque;
    tl_buf_t buf;
    tl_buf_init(&buf);
    int64_t start = tl_test_mono_ms();
    for (int i = 0; i < s->n;) {
        int64_t due = (tl_test_mono_ms() - start) * s->rate / 1000 + 1;
        for (; i < s->n && i < due; i++) {
            if (fw_produce_event(s, i, &buf) != RD_KAFKA_RESP_ERR_NO_ERROR)
                goto out;
            atomic_store(&s->produced, i + 1);
        }
        rd_kafka_poll(s->producer, 5);
    }
out:
    tl_buf_close(&buf);
    return NULL;
}

static void fw_stream_start(fw_stream_t *s, int rate) {
    s->rate = rate;
    int rc = pthread_create(&s->th, NULL, fw_stream_main, s);
    FW_ASSERT(rc == 0, "pthread_create: %s", strerror(rc));
    s->have_thread = 1;
}

static void fw_stream_join(fw_stream_t *s) {
    if (!s->have_thread)
        return;
    pthread_join(s->th, NULL);
    s->have_thread = 0;
    FW_ASSERT(s->error[0] == '\0', "producer: %s", s->error);
    fw_stream_flush(s);
}

/* ---------------------------------------------------------------- reading */

/* A read_committed reader of every partition of a topic, from the start. */
typedef struct fw_tail {
    rd_kafka_t *rk;
    char topic[160];
    int partitions;
    int at_eof[64];  /* end of partition seen, nothing since */
    int64_t records;
} fw_tail_t;

typedef void fw_on_record_fn(void *opaque, const rd_kafka_message_t *m);

static void fw_tail_open(fw_tail_t *t, const char *suffix, int partitions) {
    memset(t, 0, sizeof *t);
    FW_ASSERT(partitions <= (int)(sizeof t->at_eof / sizeof t->at_eof[0]), "too many partitions");
    snprintf(t->topic, sizeof t->topic, "%s.%s", fw.prefix, suffix);
    t->partitions = partitions;
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const settings[][2] = {
        {"bootstrap.servers", fw_brokers},  {"log_level", "3"},
        {"group.id", "threadline-test-reader"}, {"isolation.level", "read_committed"},
        {"enable.partition.eof", "true"},   {"enable.auto.commit", "false"},
        {"fetch.wait.max.ms", "50"},
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        FW_ASSERT(rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof errstr) ==
                      RD_KAFKA_CONF_OK,
                  "reader config: %s", errstr);
    t->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (t->rk == NULL)
        rd_kafka_conf_destroy(conf);
    FW_ASSERT(t->rk != NULL, "reader: %s", errstr);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, t->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(t->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    FW_ASSERT(e == RD_KAFKA_RESP_ERR_NO_ERROR, "assign %s: %s", t->topic, rd_kafka_err2str(e));
}

/* Reads for about ms milliseconds, handing each record to cb. */
static void fw_tail_poll(fw_tail_t *t, int ms, fw_on_record_fn *cb, void *opaque) {
    int64_t deadline = tl_test_mono_ms() + ms;
    do {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->rk, 50);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < t->partitions)
                t->at_eof[m->partition] = 1;
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT)
                fprintf(stderr, "fold_worker: reading %s: %s\n", t->topic,
                        rd_kafka_message_errstr(m));
        } else {
            if (m->partition >= 0 && m->partition < t->partitions)
                t->at_eof[m->partition] = 0;
            t->records++;
            cb(opaque, m);
        }
        rd_kafka_message_destroy(m);
    } while (tl_test_mono_ms() < deadline);
}

static int fw_tail_at_end(const fw_tail_t *t) {
    for (int p = 0; p < t->partitions; p++)
        if (!t->at_eof[p])
            return 0;
    return 1;
}

/* Reads until every partition is at its end (nothing else may be writing
 * to the topic by then), up to timeout_ms. */
static void fw_tail_drain(fw_tail_t *t, int timeout_ms, fw_on_record_fn *cb, void *opaque) {
    int64_t deadline = tl_test_mono_ms() + timeout_ms;
    /* An end seen before now may have been passed by later records: look
     * again from here. */
    do
        fw_tail_poll(t, 200, cb, opaque);
    while (!fw_tail_at_end(t) && tl_test_mono_ms() < deadline);
    FW_ASSERT(fw_tail_at_end(t), "%s not read to its end within %d ms", t->topic, timeout_ms);
}

static void fw_tail_close(fw_tail_t *t) {
    if (t->rk == NULL)
        return;
    rd_kafka_consumer_close(t->rk);
    rd_kafka_destroy(t->rk);
    t->rk = NULL;
}

/* One Change record: which event, what the fold said. */
static void fw_on_change(void *opaque, const rd_kafka_message_t *m) {
    fw_stream_t *s = opaque;
    tl_change_t ch;
    s->records++;
    int rc = tl_change_decode(s->ch_codec, m->payload, m->len, &ch);
    if (rc != TL_OK) {
        s->undecodable++;
        tl_test_report(&s->rep, ".changes[%d]@%" PRId64 " does not decode: %s: %s", (int)m->partition,
                  m->offset, tl_err_name(rc), tl_codec_errmsg(s->ch_codec));
        return;
    }
    fw_event_t key, *kp = &key, **hit = NULL;
    if (ch.event_id.ptr != NULL && ch.event_id.len == TL_UUID_STRLEN) {
        memcpy(key.id, ch.event_id.ptr, TL_UUID_STRLEN);
        key.id[TL_UUID_STRLEN] = '\0';
        hit = bsearch(&kp, s->by_id, (size_t)s->n, sizeof *s->by_id, fw_by_id_cmp);
    }
    if (hit == NULL) {
        s->unknown++;
        tl_test_report(&s->rep, ".changes[%d]@%" PRId64 " names event %.*s, which was never produced",
                  (int)m->partition, m->offset, (int)ch.event_id.len,
                  ch.event_id.ptr ? ch.event_id.ptr : "");
        return;
    }
    fw_event_t *e = *hit;
    if (e->seen++ > 0) {
        s->extra++;
        tl_test_report(&s->rep,
                  "event %s (customer %d #%d) recorded again at .changes[%d]@%" PRId64
                  " (version %" PRId64 ", source %d@%" PRId64 "); first at .changes[%d]@%" PRId64
                  " (version %" PRId64 ")",
                  e->id, e->customer, e->seq, (int)m->partition, m->offset, ch.customer_version,
                  (int)ch.source_partition, ch.source_offset, (int)e->ch_partition, e->ch_offset,
                  e->version);
        return;
    }
    s->distinct++;
    e->ch_partition = m->partition;
    e->ch_offset = m->offset;
    e->src_partition = ch.source_partition;
    e->src_offset = ch.source_offset;
    e->version = ch.customer_version;
    e->duplicate = ch.duplicate;
    const char *cust = s->cust[e->customer];
    e->wrong_customer = ch.customer_id.ptr == NULL || ch.customer_id.len != strlen(cust) ||
                        memcmp(ch.customer_id.ptr, cust, ch.customer_id.len) != 0;
}

/* Reads .changes until every event has been recorded (or timeout_ms),
 * checking meanwhile that the servers are up.  Returns the milliseconds it
 * took. */
static int64_t fw_wait_changes(fw_stream_t *s, fw_tail_t *t, int64_t want, int timeout_ms) {
    int64_t t0 = tl_test_mono_ms(), deadline = t0 + timeout_ms;
    while (s->distinct < want && tl_test_mono_ms() < deadline) {
        fw_tail_poll(t, 100, fw_on_change, s);
        fw_serves_alive();
    }
    FW_ASSERT(s->distinct >= want,
              ".changes records %" PRId64 " of the %" PRId64 " events waited for after %d ms "
              "(%d of %d produced; %" PRId64 " records read)",
              s->distinct, want, timeout_ms, atomic_load(&s->produced), s->n, s->records);
    return tl_test_mono_ms() - t0;
}

/* Reads .changes until serve `which` logs an assignment of at least one
 * partition (up to timeout_ms); returns the milliseconds it took. */
static int64_t fw_wait_assigned(fw_stream_t *s, fw_tail_t *t, int which, int timeout_ms) {
    int64_t t0 = tl_test_mono_ms(), deadline = t0 + timeout_ms;
    char parts[256];
    int max, min;
    for (;;) {
        if (fw_log_assignments(which, parts, sizeof parts, &max, &min) > 0 && max > 0)
            return tl_test_mono_ms() - t0;
        FW_ASSERT(tl_test_mono_ms() < deadline, "serve %d was assigned no partition within %d ms",
                  which, timeout_ms);
        fw_tail_poll(t, 100, fw_on_change, s);
        fw_serves_alive();
    }
}

/* The verdict on .changes: every event exactly once, in its own partition,
 * naming its source record, and each customer's versions 1, 2, 3, ... in
 * the order of its events and of the partition. */
static void fw_check_changes(fw_stream_t *s) {
    tl_test_report_t *rep = &s->rep;
    int missing = 0, misplaced = 0, misversioned = 0, disordered = 0;
    for (int c = 0; c < s->customers; c++) {
        const fw_event_t *prev = NULL;
        for (int q = 0; q < s->per_customer; q++) {
            const fw_event_t *e = fw_ev(s, c, q);
            if (e->seen == 0) {
                missing++;
                tl_test_report(rep, "event %s (customer %d #%d, %d@%" PRId64 ") has no Change", e->id,
                          c, q, (int)e->dr.partition, e->dr.offset);
                continue;
            }
            if (e->src_partition != e->dr.partition || e->src_offset != e->dr.offset ||
                e->ch_partition != e->dr.partition || e->wrong_customer || e->duplicate) {
                misplaced++;
                tl_test_report(rep,
                          "event %s (customer %d #%d) at %d@%" PRId64 ": its Change at "
                          ".changes[%d]@%" PRId64 " says source %d@%" PRId64
                          "%s%s", e->id, c, q, (int)e->dr.partition, e->dr.offset,
                          (int)e->ch_partition, e->ch_offset, (int)e->src_partition,
                          e->src_offset, e->wrong_customer ? ", another customer" : "",
                          e->duplicate ? ", duplicate" : "");
            }
            if (e->version != q + 1) {
                misversioned++;
                tl_test_report(rep, "customer %d #%d (event %s): customer_version %" PRId64
                          ", want %d", c, q, e->id, e->version, q + 1);
            }
            if (prev != NULL && (e->ch_partition != prev->ch_partition ||
                                 e->ch_offset <= prev->ch_offset)) {
                disordered++;
                tl_test_report(rep, "customer %d #%d at .changes[%d]@%" PRId64 " does not follow #%d "
                          "at .changes[%d]@%" PRId64, c, q, (int)e->ch_partition, e->ch_offset,
                          q - 1, (int)prev->ch_partition, prev->ch_offset);
            }
            prev = e;
        }
    }
    FW_ASSERT(rep->count == 0,
              "%s: %d events produced, %" PRId64 " Change records read: %d missing, %" PRId64
              " recorded more than once, %d misplaced, %d with a wrong version, %d out of order, "
              "%" PRId64 " unknown, %" PRId64 " undecodable; first problems:%s",
              fw.prefix, s->n, s->records, missing, s->extra, misplaced, misversioned, disordered,
              s->unknown, s->undecodable, rep->text);
}

/* The number of committed records in <prefix>.<suffix>. */
static int64_t fw_count(const char *suffix) {
    char topic[160], err[512];
    int64_t n = -1;
    snprintf(topic, sizeof topic, "%s.%s", fw.prefix, suffix);
    FW_ASSERT(tl_test_kafka_count_committed(fw_brokers, topic, 30000, &n, err, sizeof err) == 0,
              "%s", err);
    return n;
}

/* The counter threadline_<name> from serve `which`'s GET /metrics. */
static int64_t fw_metric(int which, const char *name) {
    char url[128], want[128];
    snprintf(url, sizeof url, "%s/metrics", fw.serve[which].base_url);
    snprintf(want, sizeof want, "threadline_%s ", name);
    CURL *curl = curl_easy_init();
    FW_ASSERT(curl != NULL, "curl_easy_init failed");
    tl_test_resp_t resp;
    int rc = tl_test_http(curl, "GET", url, NULL, 0, 10000, &resp);
    long status = resp.status;
    int64_t v = -1;
    for (const char *p = resp.body; rc == 0 && p != NULL && *p != '\0';) {
        if (strncmp(p, want, strlen(want)) == 0) {
            v = strtoll(p + strlen(want), NULL, 10);
            break;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    char got[256];
    snprintf(got, sizeof got, "%s", rc == 0 ? "" : resp.error);
    tl_test_resp_close(&resp);
    curl_easy_cleanup(curl);
    FW_ASSERT(rc == 0 && status == 200, "GET %s: %ld %s", url, status, got);
    FW_ASSERT(v >= 0, "GET %s has no threadline_%s", url, name);
    return v;
}

/* ------------------------------------------------------------------ tests */

START_TEST(fold_worker_sigkill_mid_stream_changes_exactly_once) {
    enum { CUSTOMERS = 500, PER_CUSTOMER = 40, PARTITIONS = 6, N = CUSTOMERS * PER_CUSTOMER };
    /* Kill twice: once a quarter is folded, and once half is, so the
     * second run also restarts from states it restored from .state. */
    static const int kill_at[] = {N / 4, N / 2};
    enum { KILLS = sizeof kill_at / sizeof kill_at[0] };
    fw_begin(PARTITIONS);
    fw_stream_t s;
    fw_stream_init(&s, CUSTOMERS, PER_CUSTOMER, 1);
    int64_t t_prod = tl_test_mono_ms();
    fw_stream_produce_all(&s);
    t_prod = tl_test_mono_ms() - t_prod;

    fw_serve_init(0, "w1", PARTITIONS, "100");
    fw_tail_t tail;
    fw_tail_open(&tail, "changes", PARTITIONS);
    int64_t t0 = tl_test_mono_ms();
    fw_serve_start(0);
    int64_t at_kill[KILLS], kill_ms[KILLS], restart_ms[KILLS];
    for (int k = 0; k < KILLS; k++) {
        fw_wait_changes(&s, &tail, kill_at[k], 90000);
        fw_serve_stop(0, SIGKILL);
        at_kill[k] = s.distinct;
        kill_ms[k] = tl_test_mono_ms() - t0;
        FW_ASSERT(at_kill[k] < N, "every event was folded before kill %d: it did not land "
                  "mid-stream (make the stream longer or the batches smaller)", k + 1);
        int64_t t_restart = tl_test_mono_ms();
        fw_serve_start(0);
        restart_ms[k] = tl_test_mono_ms() - t_restart;
    }
    int64_t t_rest = tl_test_mono_ms();
    fw_wait_changes(&s, &tail, N, 120000);
    int64_t all_ms = tl_test_mono_ms() - t0, rest_ms = tl_test_mono_ms() - t_rest;
    /* A late duplicate would show up now, or once the worker is gone. */
    fw_tail_poll(&tail, 2000, fw_on_change, &s);
    fw_serve_stop(0, SIGTERM);
    fw_tail_drain(&tail, 30000, fw_on_change, &s);
    fw_tail_close(&tail);
    fw_check_changes(&s);
    int64_t dlq = fw_count("dlq");
    FW_ASSERT(dlq == 0, "%" PRId64 " records in the dead-letter topic; want none", dlq);
    printf("fold_worker: sigkill: %d events of %d customers on %d partitions produced in %" PRId64
           " ms; SIGKILL at %" PRId64 " changes (%" PRId64 " ms) and at %" PRId64
           " changes (%" PRId64 " ms), ready again in %" PRId64 "/%" PRId64 " ms; all %" PRId64
           " changes after %" PRId64 " ms (%" PRId64 " ms after the last restart); %" PRId64
           " records read: 0 missing, 0 duplicated, versions contiguous\n",
           N, CUSTOMERS, PARTITIONS, t_prod, at_kill[0], kill_ms[0], at_kill[1], kill_ms[1],
           restart_ms[0], restart_ms[1], s.distinct, all_ms, rest_ms, s.records);
    fflush(stdout);
    fw_stream_free(&s);
}
END_TEST

START_TEST(fold_worker_rebalance_loses_and_repeats_nothing) {
    enum { CUSTOMERS = 500, PER_CUSTOMER = 40, PARTITIONS = 6, N = CUSTOMERS * PER_CUSTOMER,
           RATE = 2500 };
    fw_begin(PARTITIONS);
    fw_stream_t s;
    fw_stream_init(&s, CUSTOMERS, PER_CUSTOMER, 1);
    /* Both prepared now: they share the prefix, and so the log name that
     * serve 1 then moves away from. */
    fw_serve_init(0, "a", PARTITIONS, "100");
    fw_serve_init(1, "b", PARTITIONS, "100");
    FW_ASSERT(fw.serve[0].port != fw.serve[1].port, "both servers got port %d", fw.serve[0].port);
    fw_tail_t tail;
    fw_tail_open(&tail, "changes", PARTITIONS);
    int64_t t0 = tl_test_mono_ms();
    fw_serve_start(0);
    fw_stream_start(&s, RATE);

    fw_wait_changes(&s, &tail, N / 4, 90000);
    int64_t at_b = s.distinct, b_ms = tl_test_mono_ms() - t0;
    int produced_at_b = atomic_load(&s.produced);
    fw_serve_start(1);
    /* The group rebalances once a notices (at its next heartbeat). */
    int64_t join_ms = fw_wait_assigned(&s, &tail, 1, 30000);
    int64_t at_join = s.distinct;
    FW_ASSERT(at_join < N, "every event was folded before b was assigned partitions");
    /* Both fold side by side for half of what is left, then a leaves. */
    fw_wait_changes(&s, &tail, at_join + (N - at_join) / 2, 90000);
    int64_t at_stop = s.distinct, stop_ms = tl_test_mono_ms() - t0;
    int produced_at_stop = atomic_load(&s.produced);
    fw_serve_stop(0, SIGTERM);
    /* b takes a's partitions once a's session times out (static members
     * do not leave the group). */
    fw_wait_changes(&s, &tail, N, 120000);
    int64_t all_ms = tl_test_mono_ms() - t0;
    fw_stream_join(&s);
    fw_tail_poll(&tail, 2000, fw_on_change, &s);
    fw_serve_stop(1, SIGTERM);
    fw_tail_drain(&tail, 30000, fw_on_change, &s);
    fw_tail_close(&tail);
    fw_check_changes(&s);
    int64_t dlq = fw_count("dlq");
    FW_ASSERT(dlq == 0, "%" PRId64 " records in the dead-letter topic; want none", dlq);

    char a_parts[256], b_parts[256];
    int a_max, a_min, b_max, b_min;
    int a_n = fw_log_assignments(0, a_parts, sizeof a_parts, &a_max, &a_min);
    int b_n = fw_log_assignments(1, b_parts, sizeof b_parts, &b_max, &b_min);
    FW_ASSERT(a_n > 0 && b_n > 0 && a_min < PARTITIONS && b_max > 0,
              "the group did not rebalance: worker a was assigned [%s] partitions, b [%s]",
              a_parts, b_parts);
    printf("fold_worker: rebalance: %d events of %d customers on %d partitions at %d/s; b "
           "started at %" PRId64 " changes (%d produced, %" PRId64 " ms) and was assigned "
           "partitions %" PRId64 " ms later at %" PRId64 " changes, a stopped at %" PRId64
           " changes (%d produced, %" PRId64 " ms); all %" PRId64 " changes after %" PRId64
           " ms; assignments a [%s] b [%s]; %" PRId64
           " records read: 0 missing, 0 duplicated, versions contiguous\n",
           N, CUSTOMERS, PARTITIONS, RATE, at_b, produced_at_b, b_ms, join_ms, at_join, at_stop,
           produced_at_stop, stop_ms, s.distinct, all_ms, a_parts, b_parts, s.records);
    fflush(stdout);
    fw_stream_free(&s);
}
END_TEST

/* More customers than a worker may hold: states are evicted after commits
 * and read back from .state when their customer writes again, also by a
 * worker restarted after SIGKILL, which restores its partitions under the
 * same limit. */
START_TEST(fold_worker_evicted_states_survive_sigkill) {
    enum { CUSTOMERS = 200, PER_CUSTOMER = 20, BURST = 5, PARTITIONS = 4,
           N = CUSTOMERS * PER_CUSTOMER, MAX_CUSTOMERS = 20 };
    static const char *const more[] = {"--max-customers", "20", NULL};
    fw_begin(PARTITIONS);
    fw_stream_t s;
    fw_stream_init(&s, CUSTOMERS, PER_CUSTOMER, BURST);
    fw_stream_produce_all(&s);

    fw_serve_init_with(0, "w1", PARTITIONS, "100", more);
    fw_tail_t tail;
    fw_tail_open(&tail, "changes", PARTITIONS);
    int64_t t0 = tl_test_mono_ms();
    fw_serve_start(0);
    fw_wait_changes(&s, &tail, N / 2, 120000);
    int64_t evicted1 = fw_metric(0, "fold_evictions_total");
    int64_t restored1 = fw_metric(0, "fold_restores_total");
    fw_serve_stop(0, SIGKILL);
    int64_t at_kill = s.distinct, kill_ms = tl_test_mono_ms() - t0;
    FW_ASSERT(at_kill < N, "every event was folded before the kill: it did not land mid-stream");
    fw_serve_start(0);
    fw_wait_changes(&s, &tail, N, 120000);
    int64_t all_ms = tl_test_mono_ms() - t0;
    int64_t evicted2 = fw_metric(0, "fold_evictions_total");
    int64_t restored2 = fw_metric(0, "fold_restores_total");
    fw_tail_poll(&tail, 2000, fw_on_change, &s);
    fw_serve_stop(0, SIGTERM);
    fw_tail_drain(&tail, 30000, fw_on_change, &s);
    fw_tail_close(&tail);
    fw_check_changes(&s);
    int64_t dlq = fw_count("dlq");
    FW_ASSERT(dlq == 0, "%" PRId64 " records in the dead-letter topic; want none", dlq);
    FW_ASSERT(evicted1 > 0 && restored1 > 0 && evicted2 > 0 && restored2 > 0,
              "with --max-customers %d and %d customers both runs should evict and restore: "
              "evicted %" PRId64 "/%" PRId64 ", restored %" PRId64 "/%" PRId64,
              MAX_CUSTOMERS, CUSTOMERS, evicted1, evicted2, restored1, restored2);
    printf("fold_worker: eviction: %d events of %d customers in bursts of %d on %d partitions, "
           "--max-customers %d; before SIGKILL at %" PRId64 " changes (%" PRId64 " ms) %" PRId64
           " states evicted and %" PRId64 " read back, after the restart %" PRId64 " and %" PRId64
           "; all %" PRId64 " changes after %" PRId64 " ms; %" PRId64
           " records read: 0 missing, 0 duplicated, versions contiguous\n",
           N, CUSTOMERS, BURST, PARTITIONS, MAX_CUSTOMERS, at_kill, kill_ms, evicted1, restored1,
           evicted2, restored2, s.distinct, all_ms, s.records);
    fflush(stdout);
    fw_stream_free(&s);
}
END_TEST

/* A record of .dlq, copied. */
typedef struct fw_dlq_rec {
    int32_t partition;
    char key[64];
    size_t len;
    int null_value;
    unsigned char value[512];
    char reason[512], source_topic[160];
    int32_t source_partition;
    int64_t source_offset;
} fw_dlq_rec_t;

typedef struct fw_dlq {
    fw_dlq_rec_t recs[16];
    int n;
} fw_dlq_t;

static void fw_header(const rd_kafka_message_t *m, const char *name, char *out, size_t outlen) {
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t len = 0;
    out[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v != NULL)
        snprintf(out, outlen, "%.*s", (int)len, (const char *)v);
}

static void fw_on_dlq(void *opaque, const rd_kafka_message_t *m) {
    fw_dlq_t *d = opaque;
    if (d->n == (int)(sizeof d->recs / sizeof d->recs[0])) {
        d->n++;
        return;
    }
    if (d->n > (int)(sizeof d->recs / sizeof d->recs[0]))
        return;
    fw_dlq_rec_t *r = &d->recs[d->n++];
    char num[32];
    r->partition = m->partition;
    snprintf(r->key, sizeof r->key, "%.*s", (int)m->key_len, m->key ? (const char *)m->key : "");
    r->null_value = m->payload == NULL;
    r->len = m->len;
    memcpy(r->value, m->payload ? m->payload : "", m->len < sizeof r->value ? m->len : sizeof r->value);
    fw_header(m, "reason", r->reason, sizeof r->reason);
    fw_header(m, "source_topic", r->source_topic, sizeof r->source_topic);
    fw_header(m, "source_partition", num, sizeof num);
    r->source_partition = num[0] ? (int32_t)strtol(num, NULL, 10) : -1;
    fw_header(m, "source_offset", num, sizeof num);
    r->source_offset = num[0] ? strtoll(num, NULL, 10) : -1;
}

START_TEST(fold_worker_undecodable_event_goes_to_dlq) {
    enum { CUSTOMERS = 4, PER_CUSTOMER = 10, PARTITIONS = 2, N = CUSTOMERS * PER_CUSTOMER };
    fw_begin(PARTITIONS);
    fw_stream_t s;
    fw_stream_init(&s, CUSTOMERS, PER_CUSTOMER, 1);

    /* Bad records, each on a customer's key (so in the partition of good
     * events after it) and produced after the event numbered `after`. */
    enum { BAD = 5 };
    struct {
        const char *what, *want;
        int after, customer;
        unsigned char value[400];
        size_t len;
        int null_value;
        fw_dr_t dr;
    } bad[BAD] = {
        {.what = "not Avro", .want = "TL_EBADMAGIC", .after = 4, .customer = 0},
        {.what = "unknown schema", .want = "TL_EUNKNOWNSCHEMA", .after = 9, .customer = 1},
        {.what = "no customer_id", .want = "TL_EINVAL", .after = 14, .customer = 2},
        {.what = "truncated", .want = "TL_ETRUNCATED", .after = 19, .customer = 3},
        {.what = "null value", .want = "TL_ETRUNCATED", .after = 26, .customer = 2},
    };
    static const char junk[] = "{\"this\": \"is JSON, not an Avro single-object encoding\"}";
    memcpy(bad[0].value, junk, sizeof junk - 1);
    bad[0].len = sizeof junk - 1;
    static const unsigned char unknown_fp[] = {0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x02, 0x41};
    memcpy(bad[1].value, unknown_fp, sizeof unknown_fp);
    bad[1].len = sizeof unknown_fp;
    tl_buf_t buf;
    tl_buf_init(&buf);
    {
        char key[64], puid[32], text[128];
        tl_event_t ev;
        fw_event_build(&s, 2, &ev, key, sizeof key, puid, sizeof puid, text, sizeof text);
        char id[TL_UUID_STRLEN + 1];
        tl_uuid_v7(tl_test_now_ms(), id);
        ev.event_id = (tl_str_t){id, TL_UUID_STRLEN};
        ev.customer_id = TL_STR("");
        FW_ASSERT(tl_codec_encode_event(s.enc, &ev, &buf) == TL_OK && buf.len <= sizeof bad[2].value,
                  "encoding the event without a customer");
        memcpy(bad[2].value, buf.data, buf.len);
        bad[2].len = buf.len;
        /* A good event of customer 3 cut in half. */
        fw_event_build(&s, 3, &ev, key, sizeof key, puid, sizeof puid, text, sizeof text);
        tl_uuid_v7(tl_test_now_ms(), id);
        ev.event_id = (tl_str_t){id, TL_UUID_STRLEN};
        tl_buf_reset(&buf);
        FW_ASSERT(tl_codec_encode_event(s.enc, &ev, &buf) == TL_OK && buf.len <= sizeof bad[3].value,
                  "encoding the event to cut");
        bad[3].len = buf.len / 2;
        memcpy(bad[3].value, buf.data, bad[3].len);
        bad[4].null_value = 1;
    }
    for (int i = 0, b = 0; i < N; i++) {
        FW_ASSERT(fw_produce_event(&s, i, &buf) == RD_KAFKA_RESP_ERR_NO_ERROR, "%s", s.error);
        for (; b < BAD && bad[b].after == i; b++) {
            bad[b].dr.partition = -1;
            rd_kafka_resp_err_t e = fw_produce_raw(&s, s.cust[bad[b].customer],
                                                   bad[b].null_value ? NULL : bad[b].value,
                                                   bad[b].null_value ? 0 : bad[b].len, &bad[b].dr);
            FW_ASSERT(e == RD_KAFKA_RESP_ERR_NO_ERROR, "producing %s: %s", bad[b].what,
                      rd_kafka_err2str(e));
        }
    }
    tl_buf_close(&buf);
    fw_stream_flush(&s);
    for (int b = 0; b < BAD; b++)
        FW_ASSERT(bad[b].dr.err == RD_KAFKA_RESP_ERR_NO_ERROR && bad[b].dr.partition >= 0,
                  "%s not delivered: %s", bad[b].what, rd_kafka_err2str(bad[b].dr.err));

    fw_serve_init(0, "w1", PARTITIONS, "500");
    fw_tail_t tail;
    fw_tail_open(&tail, "changes", PARTITIONS);
    int64_t t0 = tl_test_mono_ms();
    fw_serve_start(0);
    fw_wait_changes(&s, &tail, N, 60000);
    int64_t all_ms = tl_test_mono_ms() - t0;
    fw_tail_poll(&tail, 1000, fw_on_change, &s);
    fw_serve_stop(0, SIGTERM);
    fw_tail_drain(&tail, 30000, fw_on_change, &s);
    fw_tail_close(&tail);
    fw_check_changes(&s);

    fw_dlq_t *d = calloc(1, sizeof *d);
    FW_ASSERT(d != NULL, "out of memory");
    fw_tail_t dt;
    fw_tail_open(&dt, "dlq", PARTITIONS);
    fw_tail_drain(&dt, 30000, fw_on_dlq, d);
    fw_tail_close(&dt);
    tl_test_report_t rep = {.text = ""};
    char events_topic[160];
    snprintf(events_topic, sizeof events_topic, "%s.events", fw.prefix);
    if (d->n != BAD)
        tl_test_report(&rep, "%d records in the dead-letter topic, want %d", d->n, BAD);
    for (int b = 0; b < BAD; b++) {
        const fw_dlq_rec_t *r = NULL;
        for (int i = 0; i < d->n && i < (int)(sizeof d->recs / sizeof d->recs[0]); i++)
            if (d->recs[i].source_partition == bad[b].dr.partition &&
                d->recs[i].source_offset == bad[b].dr.offset)
                r = &d->recs[i];
        if (r == NULL) {
            tl_test_report(&rep, "%s (%d@%" PRId64 "): not in the dead-letter topic", bad[b].what,
                      (int)bad[b].dr.partition, bad[b].dr.offset);
            continue;
        }
        if (strstr(r->reason, bad[b].want) == NULL)
            tl_test_report(&rep, "%s: reason \"%s\", want it to name %s", bad[b].what, r->reason,
                      bad[b].want);
        if (strcmp(r->source_topic, events_topic) != 0)
            tl_test_report(&rep, "%s: source_topic \"%s\", want %s", bad[b].what, r->source_topic,
                      events_topic);
        if (strcmp(r->key, s.cust[bad[b].customer]) != 0 || r->partition != bad[b].dr.partition)
            tl_test_report(&rep, "%s: key %s in partition %d, want %s in %d", bad[b].what, r->key,
                      (int)r->partition, s.cust[bad[b].customer], (int)bad[b].dr.partition);
        if (r->null_value != bad[b].null_value ||
            (!r->null_value && (r->len != bad[b].len || memcmp(r->value, bad[b].value, r->len) != 0)))
            tl_test_report(&rep, "%s: value is not the original record (%zu bytes%s, want %zu)",
                      bad[b].what, r->len, r->null_value ? ", null" : "", bad[b].len);
    }
    FW_ASSERT(rep.count == 0, "dead-letter topic:%s", rep.text);
    printf("fold_worker: dlq: %d good events and %d bad records (", N, BAD);
    for (int b = 0; b < BAD; b++)
        printf("%s%s -> %s", b ? ", " : "", bad[b].what, bad[b].want);
    printf(") on %d partitions: all %" PRId64 " changes after %" PRId64 " ms with versions "
           "contiguous past the bad records, %d records in the dead-letter topic with reasons\n",
           PARTITIONS, s.distinct, all_ms, d->n);
    fflush(stdout);
    free(d);
    fw_stream_free(&s);
}
END_TEST

Suite *tl_fold_worker_suite(void) {
    Suite *s = suite_create("fold_worker");
    TCase *tc = tcase_create("services");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, fw_services_check, fw_services_sweep);
    tcase_add_checked_fixture(tc, fw_setup, fw_teardown);
    tcase_add_test(tc, fold_worker_sigkill_mid_stream_changes_exactly_once);
    tcase_add_test(tc, fold_worker_rebalance_loses_and_repeats_nothing);
    tcase_add_test(tc, fold_worker_evicted_states_survive_sigkill);
    tcase_add_test(tc, fold_worker_undecodable_event_goes_to_dlq);
    suite_add_tcase(s, tc);
    return s;
}
