/*
 * kafka.c -- cluster description, client settings, topic creation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "error.h"
#include "kafka.h"
#include "log.h"

struct tl_kafka {
    char *brokers;
    char prefix[64];
    char topics[TL_TOPIC__COUNT][96];
    rd_kafka_t *mock_rk;                    /* owns the mock cluster */
    rd_kafka_mock_cluster_t *mock;
};

static const char *const topic_suffix[TL_TOPIC__COUNT] = {
    "events", "changes", "state", "dlq",
};

int64_t tl_kafka_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tl_kafka_left_ms(int64_t deadline_ms) {
    int64_t left = deadline_ms - tl_kafka_now_ms();
    return left > 0 ? (int)left : 0;
}

int tl_kafka_err(rd_kafka_resp_err_t err) {
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR: return TL_OK;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return TL_EKAFKA_DOWN;
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
        return TL_EFENCED;
    default:
        return TL_EKAFKA;
    }
}

int tl_kafka_new(const tl_config_t *cfg, tl_kafka_t **out) {
    tl_kafka_t *k = calloc(1, sizeof *k);
    char errstr[256];
    int rc = TL_ENOMEM;
    if (!k) return TL_ENOMEM;
    snprintf(k->prefix, sizeof k->prefix, "%s", cfg->prefix);
    for (int t = 0; t < TL_TOPIC__COUNT; t++)
        snprintf(k->topics[t], sizeof k->topics[t], "%s.%s", k->prefix, topic_suffix[t]);

    if (tl_config_kafka_embedded(cfg)) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (!conf) goto fail;
        /* This handle only hosts the mock; it never connects anywhere. */
        rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
        k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        if (!k->mock_rk) {
            rd_kafka_conf_destroy(conf);
            tl_error("kafka", "mock cluster: %s", errstr);
            rc = TL_EKAFKA;
            goto fail;
        }
        k->mock = rd_kafka_mock_cluster_new(k->mock_rk, 1);
        rc = TL_EKAFKA;
        if (!k->mock) goto fail_rk;
        rc = TL_ENOMEM;
        k->brokers = strdup(rd_kafka_mock_cluster_bootstraps(k->mock));
        if (!k->brokers) goto fail_mock;
        tl_warn("kafka", "using librdkafka's in-process MOCK cluster at %s: memory only, "
                "no transactions, for trying threadline out -- never for durability claims",
                k->brokers);
    } else {
        k->brokers = strdup(cfg->kafka_brokers);
        if (!k->brokers) goto fail;
    }
    *out = k;
    return TL_OK;

fail_mock:
    rd_kafka_mock_cluster_destroy(k->mock);
fail_rk:
    rd_kafka_destroy(k->mock_rk);
fail:
    free(k);
    return rc;
}

void tl_kafka_free(tl_kafka_t *k) {
    if (!k) return;
    if (k->mock) rd_kafka_mock_cluster_destroy(k->mock);
    if (k->mock_rk) rd_kafka_destroy(k->mock_rk);
    free(k->brokers);
    free(k);
}

const char *tl_kafka_brokers(const tl_kafka_t *k) { return k->brokers; }
const char *tl_kafka_topic(const tl_kafka_t *k, tl_topic_t t) { return k->topics[t]; }

void tl_kafka_group(const tl_kafka_t *k, const char *suffix, char *out, size_t n) {
    snprintf(out, n, "%s-%s", k->prefix, suffix);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        tl_error("kafka", "config %s=%s: %s", name, value, errstr);
        return TL_ECONFIG;
    }
    return TL_OK;
}

rd_kafka_conf_t *tl_kafka_conf(const tl_kafka_t *k) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) return NULL;
    if (conf_set(conf, "bootstrap.servers", k->brokers) ||
        conf_set(conf, "client.id", "threadline") ||
        conf_set(conf, "reconnect.backoff.max.ms", "2000") ||
        conf_set(conf, "log_level", "4")) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

rd_kafka_conf_t *tl_kafka_conf_producer(const tl_kafka_t *k, int timeout_ms) {
    rd_kafka_conf_t *conf = tl_kafka_conf(k);
    char tmo[32];
    if (!conf) return NULL;
    snprintf(tmo, sizeof tmo, "%d", timeout_ms);
    if (conf_set(conf, "enable.idempotence", "true") ||
        conf_set(conf, "acks", "all") ||
        conf_set(conf, "partitioner", "murmur2_random") ||
        conf_set(conf, "linger.ms", "2") ||
        conf_set(conf, "compression.codec", "lz4") ||
        conf_set(conf, "message.timeout.ms", tmo)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

rd_kafka_t *tl_kafka_consumer_new(const tl_kafka_t *k, const char *who, const char *group,
                                  const char *instance,
                                  void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                       rd_kafka_topic_partition_list_t *, void *),
                                  void *opaque) {
    char errstr[256], member[256];
    rd_kafka_conf_t *conf = tl_kafka_conf(k);
    if (!conf) return NULL;
    snprintf(member, sizeof member, "%s-%s", group, instance);
    if (conf_set(conf, "group.id", group) ||
        conf_set(conf, "group.instance.id", member) ||
        conf_set(conf, "isolation.level", "read_committed") ||
        conf_set(conf, "enable.auto.commit", "false") ||
        conf_set(conf, "enable.auto.offset.store", "false") ||
        conf_set(conf, "auto.offset.reset", "earliest") ||
        conf_set(conf, "session.timeout.ms", "10000")) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, opaque);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tl_error(who, "consumer: %s", errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

int tl_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms) {
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) return TL_ENOMEM;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (err) return tl_kafka_err(err);
    int n = TL_ENOTFOUND;
    if (md->topic_cnt == 1 && !md->topics[0].err) n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

int tl_kafka_ensure_topics(tl_kafka_t *k, int partitions, int timeout_ms) {
    char errstr[256];
    int rc = TL_OK;

    if (k->mock) {
        for (int t = 0; t < TL_TOPIC__COUNT; t++)
            rd_kafka_mock_topic_create(k->mock, k->topics[t], partitions, 1);
        return TL_OK;
    }

    rd_kafka_conf_t *conf = tl_kafka_conf(k);
    if (!conf) return TL_ENOMEM;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tl_error("kafka", "admin client: %s", errstr);
        return TL_EKAFKA;
    }

    rd_kafka_NewTopic_t *nt[TL_TOPIC__COUNT];
    for (int t = 0; t < TL_TOPIC__COUNT; t++) {
        /* The dead-letter topic is small and not customer-keyed; it still
         * gets the same partition count so a DLQ record can name its source
         * partition one to one. */
        nt[t] = rd_kafka_NewTopic_new(k->topics[t], partitions, 1, errstr, sizeof errstr);
        if (!nt[t]) abort(); /* only on invalid arguments, which are ours */
        switch ((tl_topic_t)t) {
        case TL_TOPIC_EVENTS:
            /* The audit log: never deleted, never compacted. */
            rd_kafka_NewTopic_set_config(nt[t], "retention.ms", "-1");
            rd_kafka_NewTopic_set_config(nt[t], "retention.bytes", "-1");
            rd_kafka_NewTopic_set_config(nt[t], "cleanup.policy", "delete");
            break;
        case TL_TOPIC_STATE:
            rd_kafka_NewTopic_set_config(nt[t], "cleanup.policy", "compact");
            rd_kafka_NewTopic_set_config(nt[t], "min.compaction.lag.ms", "60000");
            break;
        case TL_TOPIC_CHANGES:
        case TL_TOPIC_DLQ:
            rd_kafka_NewTopic_set_config(nt[t], "retention.ms", "-1");
            break;
        default:
            break;
        }
    }

    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof errstr);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, sizeof errstr);
    rd_kafka_CreateTopics(rk, nt, TL_TOPIC__COUNT, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (!ev) {
        tl_error("kafka", "creating topics: no answer from %s within %d ms", k->brokers, timeout_ms);
        rc = TL_EKAFKA_DOWN;
    } else if (rd_kafka_event_error(ev)) {
        tl_error("kafka", "creating topics at %s: %s", k->brokers, rd_kafka_event_error_string(ev));
        rc = tl_kafka_err(rd_kafka_event_error(ev));
        if (rc == TL_EKAFKA) rc = TL_EKAFKA_DOWN;
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                tl_info("kafka", "created topic %s (%d partitions)", rd_kafka_topic_result_name(res[i]), partitions);
            } else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                tl_error("kafka", "topic %s: %s", rd_kafka_topic_result_name(res[i]),
                         rd_kafka_topic_result_error_string(res[i]));
                rc = TL_EKAFKA;
            }
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nt, TL_TOPIC__COUNT);
    rd_kafka_destroy(rk);
    return rc;
}

int tl_kafka_delete_topics(tl_kafka_t *k, int timeout_ms) {
    char errstr[256];
    int rc = TL_OK;
    if (k->mock) return TL_OK;      /* the mock forgets everything on exit */
    rd_kafka_conf_t *conf = tl_kafka_conf(k);
    if (!conf) return TL_ENOMEM;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tl_error("kafka", "admin client: %s", errstr);
        return TL_EKAFKA;
    }
    rd_kafka_DeleteTopic_t *del[TL_TOPIC__COUNT];
    for (int t = 0; t < TL_TOPIC__COUNT; t++) del[t] = rd_kafka_DeleteTopic_new(k->topics[t]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, del, TL_TOPIC__COUNT, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms);
    if (!ev) {
        tl_error("kafka", "deleting topics: no answer from %s within %d ms", k->brokers, timeout_ms);
        rc = TL_EKAFKA_DOWN;
    } else if (rd_kafka_event_error(ev)) {
        tl_error("kafka", "deleting topics at %s: %s", k->brokers, rd_kafka_event_error_string(ev));
        rc = TL_EKAFKA;
    } else {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
            if (e && e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                tl_error("kafka", "deleting %s: %s", rd_kafka_topic_result_name(res[i]),
                         rd_kafka_topic_result_error_string(res[i]));
                rc = TL_EKAFKA;
            }
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy_array(del, TL_TOPIC__COUNT);
    rd_kafka_destroy(rk);
    return rc;
}
