/*
 * fold_worker.c -- the fold stage (see fold_worker.h).
 *
 * Shape of one batch:
 *   poll up to `batch` records (no transaction open while polling, so a
 *   rebalance can happen between batches only) -> begin_transaction ->
 *   per record: decode, fold, produce Change to the same partition of
 *   .changes -> produce the final state of every customer touched to
 *   .state -> send_offsets_to_transaction -> commit_transaction.
 * An abortable error aborts, forgets the in-memory states, reloads them
 * from .state and rewinds the consumer to the committed offsets, as
 * librdkafka's transactional examples do.  A fatal error (fenced by a newer
 * instance) stops the worker.
 *
 * Bounded memory: at most --max-customers states stay in memory.  After a
 * commit, when there are more, the least recently used whose newest state
 * is durable in .state are evicted; the residency table (resident.h)
 * remembers the offset of that state record, and a batch holding an event
 * of an evicted customer first reads that one record back.  Eviction never
 * changes what the fold computes: a state serialises and restores byte for
 * byte (the fold's property tests).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "change.h"
#include "error.h"
#include "fold.h"
#include "fold_worker.h"
#include "log.h"
#include "metrics.h"
#include "resident.h"
#include "schemas.h"

struct tl_fold_worker {
    tl_kafka_t *kafka;
    const tl_config_t *cfg;
    pthread_t thread;
    atomic_int stop;
    atomic_int failed;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    tl_fold_t *fold;
    tl_codec_t *ev_codec, *ch_codec, *st_codec;
    tl_codec_t *emit_codec;     /* encodes emitted events; decoding stays on ev_codec */
    tl_buf_t buf;
    int rebalanced;             /* set by the rebalance callback */
    rd_kafka_message_t **batch;
    /* customers touched in the current batch: indexes into batch */
    int *touched;
    int ntouched;
    /* bounded memory */
    tl_resident_t *res;
    uint64_t stamp;             /* batches processed: the residency clock */
    int64_t *state_offsets;     /* per touched index: offset of its .state record */
    rd_kafka_t *restorer;       /* reads single evicted states back */
    tl_fold_change_out_t *fold_out; /* the Change's fold_changes, per event */
};

/* Drops every state and what we knew of where they are. */
static void forget_all(tl_fold_worker_t *w) {
    tl_fold_clear(w->fold);
    tl_resident_clear(w->res);
}

/* Evicts least recently used durable states while over the limit. */
static void evict_over_limit(tl_fold_worker_t *w) {
    tl_str_t customer, tenant;
    while (tl_fold_count(w->fold) > (size_t)w->cfg->max_customers &&
           tl_resident_evict_one(w->res, &customer, &tenant)) {
        tl_fold_evict(w->fold, tenant, customer);
        tl_metric_add(TL_M_fold_evictions_total, 1);
    }
}

/* A consumer that reads .state with read_committed and no group. */
static rd_kafka_t *state_reader_new(tl_fold_worker_t *w, int eof, const char *isolation) {
    char errstr[256];
    rd_kafka_conf_t *conf = tl_kafka_conf(w->kafka);
    if (!conf) return NULL;
    rd_kafka_conf_set(conf, "isolation.level", isolation, NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", eof ? "true" : "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "threadline-state-reader", NULL, 0);
    /* A restore waits on exactly one record: don't let the broker hold the
     * fetch open hoping for more. */
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tl_error("fold", "state reader: %s", errstr);
    }
    return rk;
}

/* ---- restoring state from <prefix>.state ---- */

/* Waits (bounded) until no transaction is open on the .state partitions we
 * are about to read: commit_transaction returns before the broker has
 * written the commit markers, so right after the previous owner's last
 * commit its state records may still sit beyond the last stable offset,
 * where a read_committed reader would stop short of them.  A crashed
 * owner's open transaction ends at the latest when it times out. */
static void wait_state_stable(tl_fold_worker_t *w, rd_kafka_t *committed,
                              const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_t *raw = state_reader_new(w, 0, "read_uncommitted");
    if (!raw) return;
    const char *topic = tl_kafka_topic(w->kafka, TL_TOPIC_STATE);
    int64_t deadline = tl_kafka_now_ms() + 40000;
    for (int i = 0; i < parts->cnt && !atomic_load(&w->stop); i++) {
        int32_t p = parts->elems[i].partition;
        for (;;) {
            int64_t lo, lso = -1, hw = -2;
            rd_kafka_query_watermark_offsets(committed, topic, p, &lo, &lso, 5000);
            rd_kafka_query_watermark_offsets(raw, topic, p, &lo, &hw, 5000);
            if (lso >= hw || tl_kafka_left_ms(deadline) == 0 || atomic_load(&w->stop)) {
                if (lso < hw)
                    tl_warn("fold", "%s[%d]: a transaction is still open; reading up to %lld of %lld",
                            topic, (int)p, (long long)lso, (long long)hw);
                break;
            }
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    rd_kafka_destroy(raw);
}

static int load_states(tl_fold_worker_t *w, const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_t *rk = state_reader_new(w, 1, "read_committed");
    if (!rk) return TL_EKAFKA;
    wait_state_stable(w, rk, parts);
    const char *topic = tl_kafka_topic(w->kafka, TL_TOPIC_STATE);
    rd_kafka_topic_partition_list_t *st = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        rd_kafka_topic_partition_list_add(st, topic, parts->elems[i].partition)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    int rc = TL_OK, eofs = 0;
    size_t loaded = 0;
    rd_kafka_assign(rk, st);
    while (eofs < st->cnt && !atomic_load(&w->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else if (m->err) {
            tl_warn("fold", "reading %s: %s", topic, rd_kafka_message_errstr(m));
            if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT) rc = tl_kafka_err(m->err);
        } else if (m->payload) {
            tl_str_t tenant, customer;
            int e = tl_fold_state_load_ids(w->fold, w->st_codec, m->payload, m->len, &tenant, &customer);
            if (e == TL_ENOMEM) rc = e;
            else if (e) tl_warn("fold", "unreadable state at %s[%d]@%lld: %s", topic,
                                (int)m->partition, (long long)m->offset, tl_strerror(e));
            else if (tl_resident_use(w->res, customer, tenant, 0) ||
                     tl_resident_durable(w->res, customer, m->partition, m->offset))
                rc = TL_ENOMEM;
            else {
                loaded++;
                evict_over_limit(w);
            }
        }
        rd_kafka_message_destroy(m);
        if (rc) break;
    }
    rd_kafka_topic_partition_list_destroy(st);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    tl_info("fold", "restored %zu customer states for %d partitions (%zu held in memory)", loaded,
            parts->cnt, tl_resident_held(w->res));
    return rc;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    tl_fold_worker_t *w = opaque;
    w->rebalanced = 1;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        forget_all(w);
        int rc;
        while ((rc = load_states(w, parts)) != TL_OK && !atomic_load(&w->stop)) {
            tl_warn("fold", "restoring state failed (%s); retrying", tl_strerror(rc));
        }
        rd_kafka_assign(rk, parts);
        tl_info("fold", "assigned %d partitions", parts->cnt);
    } else {
        forget_all(w);
        rd_kafka_assign(rk, NULL);
    }
}

/* ---- one batch ---- */

static void dlq(tl_fold_worker_t *w, const rd_kafka_message_t *m, const char *reason) {
    char part[16], off[24];
    snprintf(part, sizeof part, "%d", (int)m->partition);
    snprintf(off, sizeof off, "%lld", (long long)m->offset);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
    rd_kafka_header_add(hdrs, "reason", -1, reason, -1);
    rd_kafka_header_add(hdrs, "source_topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(hdrs, "source_partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "source_offset", -1, off, -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        w->producer, RD_KAFKA_V_TOPIC(tl_kafka_topic(w->kafka, TL_TOPIC_DLQ)),
        RD_KAFKA_V_PARTITION(m->partition), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err) rd_kafka_headers_destroy(hdrs);
    tl_warn("fold", "%s[%d]@%lld to dead-letter topic: %s", rd_kafka_topic_name(m->rkt),
            (int)m->partition, (long long)m->offset, reason);
    tl_metric_add(TL_M_fold_dlq_total, 1);
}

/* Produces w->buf; opaque (may be NULL) comes back in the delivery report. */
static int produce(tl_fold_worker_t *w, tl_topic_t topic, int32_t partition, tl_str_t key,
                   void *opaque) {
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            w->producer, RD_KAFKA_V_TOPIC(tl_kafka_topic(w->kafka, topic)),
            RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key.ptr, key.len),
            RD_KAFKA_V_VALUE(w->buf.data, w->buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return tl_kafka_err(err);
        rd_kafka_poll(w->producer, 50);
    }
}

static const char *const ignore_names[] = {
#define IGNORE_NAME(name, text) #name,
    TL_FOLD_IGNORE_MAP(IGNORE_NAME)
#undef IGNORE_NAME
};

/* Writes res's fold changes out for the Change, with what a projection
 * needs and the result alone does not say: the origin of a field's current
 * value, and every candidate of a conflict.  Arrays are sized by the
 * fold's own bounds; strings point into the fold (valid until the next
 * apply). */
static size_t describe_changes(const tl_fold_t *fold, const tl_event_t *ev, const tl_fold_result_t *res,
                               tl_fold_change_out_t *o) {
    size_t n = 0, nconf = 0;
    const size_t cap = sizeof o->fc / sizeof *o->fc, capc = sizeof o->cand / sizeof *o->cand;
    for (size_t i = 0; i < res->nchanges && n < cap; i++) {
        const tl_fold_change_t *c = &res->changes[i];
        tl_change_fold_t *x = &o->fc[n++];
        memset(x, 0, sizeof *x);
        x->kind = (tl_str_t){tl_fold_change_slug(c->kind), strlen(tl_fold_change_slug(c->kind))};
        x->field = c->field;
        x->value = c->value;
        x->customer = c->customer;
        if (c->conflict_id[0]) x->conflict_id = (tl_str_t){c->conflict_id, strlen(c->conflict_id)};
        if (c->kind == TL_FOLD_FIELD_SET || c->kind == TL_FOLD_FIELD_KEPT ||
            c->kind == TL_FOLD_FIELD_REVERTED) {
            tl_fold_field_t fl;
            if (tl_fold_get_field(fold, ev->tenant_id, ev->customer_id, c->field, &fl) == 0) {
                x->is_key = fl.key;
                if (fl.has_current) {
                    const char *slug = tl_platform_slug(fl.current.platform);
                    x->platform = (tl_str_t){slug, strlen(slug)};
                    x->event_id = fl.current.event_id;
                    x->effective_ts = fl.current.effective_ts;
                    x->version = fl.current.version;
                    if (c->kind != TL_FOLD_FIELD_KEPT) x->value = fl.current.value;
                }
            }
        } else if ((c->kind == TL_FOLD_CONFLICT_OPENED || c->kind == TL_FOLD_CONFLICT_CANDIDATE) &&
                   nconf < capc) {
            tl_fold_conflict_t cf;
            if (tl_fold_get_conflict(fold, ev->tenant_id, ev->customer_id, c->field, &cf) == 0) {
                tl_change_candidate_t *cand = o->cand[nconf++];
                for (size_t j = 0; j < cf.ncandidates && j < TL_FOLD_MAX_CANDIDATES; j++) {
                    const char *slug = tl_platform_slug(cf.candidates[j].platform);
                    cand[j] = (tl_change_candidate_t){cf.candidates[j].value, {slug, strlen(slug)},
                                                      cf.candidates[j].event_id,
                                                      cf.candidates[j].effective_ts};
                }
                x->candidates = cand;
                x->ncandidates = cf.ncandidates < TL_FOLD_MAX_CANDIDATES ? cf.ncandidates
                                                                         : TL_FOLD_MAX_CANDIDATES;
            }
        }
    }
    return n;
}

void tl_fold_worker_change(const tl_fold_t *fold, const tl_event_t *ev, const tl_fold_result_t *res,
                           int32_t partition, int64_t offset, tl_str_t payload, tl_fold_change_out_t *o,
                           tl_change_t *ch) {
    *ch = (tl_change_t){
        .event_id = ev->event_id, .tenant_id = ev->tenant_id, .customer_id = ev->customer_id,
        .source_partition = partition, .source_offset = offset,
        .customer_version = res->customer_version,
        .conversation_id = res->conversation_id[0] ? (tl_str_t){res->conversation_id, strlen(res->conversation_id)}
                                                   : TL_STR_NULL,
        .conversation_version = res->conversation_version,
        .conversation_opened = res->conversation_opened,
        .effective_ts = res->effective_ts, .duplicate = res->duplicate,
        .event = payload,
    };
    if (!res->duplicate && res->ignored != TL_FOLD_IGNORE_NONE &&
        (size_t)res->ignored < sizeof ignore_names / sizeof *ignore_names)
        ch->ignored = (tl_str_t){ignore_names[res->ignored], strlen(ignore_names[res->ignored])};
    if (!res->duplicate) {
        ch->fold_changes = o->fc;
        ch->nfold_changes = describe_changes(fold, ev, res, o);
    }
}

/* Folds one record; returns 0 or an error that must abort the batch. */
static int fold_one(tl_fold_worker_t *w, int idx) {
    rd_kafka_message_t *m = w->batch[idx];
    tl_event_t ev;
    tl_fold_result_t res;
    int rc = tl_codec_decode_event(w->ev_codec, m->payload, m->len, &ev);
    if (rc) {
        char reason[256];
        snprintf(reason, sizeof reason, "%s: %s", tl_err_name(rc), tl_codec_errmsg(w->ev_codec));
        dlq(w, m, reason);
        return TL_OK;
    }
    /* Everything per customer (the partition, .state, residency) goes by
     * the record key, which DESIGN.md fixes as the event's customer_id. */
    if (ev.customer_id.len && (m->key_len != ev.customer_id.len ||
                               memcmp(m->key, ev.customer_id.ptr, m->key_len) != 0)) {
        dlq(w, m, "TL_EINVAL: the record key is not the event's customer_id");
        return TL_OK;
    }
    rc = tl_fold_apply(w->fold, &ev, &res);
    if (rc == TL_EINVAL) {
        dlq(w, m, "TL_EINVAL: event lacks tenant_id or customer_id, or has an out-of-range enum");
        return TL_OK;
    }
    if (rc) return rc;
    tl_metric_add(res.duplicate ? TL_M_fold_duplicates_total : TL_M_fold_events_total, 1);

    tl_change_t ch;
    tl_fold_worker_change(w->fold, &ev, &res, m->partition, m->offset, (tl_str_t){m->payload, m->len},
                          w->fold_out, &ch);
    tl_buf_reset(&w->buf);
    if ((rc = tl_change_encode(w->ch_codec, &ch, &w->buf))) return rc;
    if ((rc = produce(w, TL_TOPIC_CHANGES, m->partition, ev.customer_id, NULL))) return rc;
    /* Hand-overs between customers (identity links) are events on the other
     * customer's key, in this same transaction: they exist exactly when the
     * event that caused them is recorded. */
    for (size_t i = 0; i < res.nemit; i++) {
        const tl_event_t *out = &res.emit[i];
        tl_buf_reset(&w->buf);
        if ((rc = tl_codec_encode_event(w->emit_codec, out, &w->buf))) return rc;
        if ((rc = produce(w, TL_TOPIC_EVENTS, RD_KAFKA_PARTITION_UA, out->customer_id, NULL)))
            return rc;
    }
    if (tl_resident_use(w->res, ev.customer_id, ev.tenant_id, w->stamp)) return TL_ENOMEM;
    if (!res.duplicate) {
        /* Its durable copy is stale until this batch's state record lands:
         * not evictable before then. */
        tl_resident_durable(w->res, ev.customer_id, m->partition, -1);
        w->touched[w->ntouched++] = idx;
    }
    return TL_OK;
}

/* Writes the final state of every customer touched in the batch, once each
 * (a later record of the same customer supersedes an earlier one). */
static int write_states(tl_fold_worker_t *w) {
    for (int i = 0; i < w->ntouched; i++) {
        rd_kafka_message_t *m = w->batch[w->touched[i]];
        int later = 0;
        for (int j = i + 1; j < w->ntouched && !later; j++) {
            rd_kafka_message_t *o = w->batch[w->touched[j]];
            later = o->key_len == m->key_len && o->partition == m->partition &&
                    memcmp(o->key, m->key, m->key_len) == 0;
        }
        if (later) continue;
        /* Every customer folded in this batch is in the residency table,
         * which knows its tenant: no need to decode the event again. */
        tl_str_t customer = {m->key, m->key_len};
        tl_str_t tenant = tl_resident_tenant(w->res, customer);
        tl_buf_reset(&w->buf);
        int rc = tl_fold_state_encode(w->fold, w->st_codec, tenant, customer, &w->buf);
        if (rc == TL_ENOTFOUND) continue;
        if (rc || (rc = produce(w, TL_TOPIC_STATE, m->partition, customer,
                                (void *)(intptr_t)(i + 1))))
            return rc;
    }
    return TL_OK;
}

/* Delivery report of the fold producer: remembers where each .state record
 * landed (used only once the transaction commits).  Runs on the worker
 * thread, inside commit_transaction's flush or rd_kafka_poll. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    tl_fold_worker_t *w = opaque;
    intptr_t i = (intptr_t)m->_private;
    if (i > 0 && i <= w->ntouched) w->state_offsets[i - 1] = m->err ? -1 : m->offset;
}

/* After a commit: the states written are durable at their offsets. */
static void record_durable(tl_fold_worker_t *w) {
    while (rd_kafka_poll(w->producer, 0) > 0) {}
    for (int i = 0; i < w->ntouched; i++) {
        rd_kafka_message_t *m = w->batch[w->touched[i]];
        if (w->state_offsets[i] >= 0)
            tl_resident_durable(w->res, (tl_str_t){m->key, m->key_len}, m->partition,
                                w->state_offsets[i]);
    }
}

/* Reads back the evicted state of customer from .state[partition]@offset. */
static int restore_one(tl_fold_worker_t *w, tl_str_t customer, int32_t partition, int64_t offset) {
    if (!w->restorer && !(w->restorer = state_reader_new(w, 0, "read_committed")))
        return TL_EKAFKA;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, tl_kafka_topic(w->kafka, TL_TOPIC_STATE), partition)->offset = offset;
    rd_kafka_assign(w->restorer, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    int rc = TL_ETIMEOUT;
    int64_t deadline = tl_kafka_now_ms() + 10000;
    while (rc == TL_ETIMEOUT && tl_kafka_left_ms(deadline) > 0 && !atomic_load(&w->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->restorer, 200);
        if (!m) continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                tl_warn("fold", "restoring a state: %s", rd_kafka_message_errstr(m));
        } else if (m->offset == offset && m->key_len == customer.len &&
                   memcmp(m->key, customer.ptr, customer.len) == 0) {
            tl_str_t tenant;
            rc = tl_fold_state_load_ids(w->fold, w->st_codec, m->payload, m->len, &tenant, NULL);
            /* Held again from now: a second event of it in this batch must
             * not read it back twice. */
            if (!rc && tl_resident_use(w->res, customer, tenant, w->stamp)) rc = TL_ENOMEM;
        } else if (m->offset >= offset) {
            tl_error("fold", "state of %.*s not at .state[%d]@%lld", (int)customer.len, customer.ptr,
                     (int)partition, (long long)offset);
            rc = TL_ECORRUPT;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(w->restorer, NULL);
    return rc;
}

/* Before folding a batch: bring back every evicted customer it mentions. */
static int restore_evicted(tl_fold_worker_t *w, int n) {
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = w->batch[i];
        tl_str_t customer = {m->key, m->key_len};
        int32_t part;
        int64_t off;
        if (!m->key || tl_resident_where(w->res, customer, &part, &off) != TL_RESIDENT_EVICTED) continue;
        int rc = restore_one(w, customer, part, off);
        if (rc) return rc;
        tl_metric_add(TL_M_fold_restores_total, 1);
    }
    return TL_OK;
}

/* Seeks every assigned partition to its committed offset; returns the
 * assignment (caller destroys) or NULL. */
static rd_kafka_topic_partition_list_t *seek_to_committed(tl_fold_worker_t *w) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(w->consumer, &parts) || !parts) return NULL;
    rd_kafka_committed(w->consumer, parts, 10000);
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset < 0) parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(w->consumer, parts, 10000);
    if (e) {
        tl_warn("fold", "rewind: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    return parts;
}

static void rewind_to_committed(tl_fold_worker_t *w) {
    rd_kafka_topic_partition_list_t *parts = seek_to_committed(w);
    if (!parts) return;
    forget_all(w);
    load_states(w, parts);
    rd_kafka_topic_partition_list_destroy(parts);
}

/* Handles a transactional API error; returns 0 to go on, -1 when fatal. */
static int txn_error(tl_fold_worker_t *w, rd_kafka_error_t *e, const char *what) {
    tl_warn("fold", "%s: %s", what, rd_kafka_error_string(e));
    if (rd_kafka_error_is_fatal(e)) {
        rd_kafka_error_destroy(e);
        tl_error("fold", "fatal transactional error: the worker stops");
        atomic_store(&w->failed, 1);
        return -1;
    }
    rd_kafka_error_destroy(e);
    if ((e = rd_kafka_abort_transaction(w->producer, -1))) {
        tl_warn("fold", "abort: %s", rd_kafka_error_string(e));
        int fatal = rd_kafka_error_is_fatal(e);
        rd_kafka_error_destroy(e);
        if (fatal) {
            atomic_store(&w->failed, 1);
            return -1;
        }
    }
    tl_metric_add(TL_M_fold_aborts_total, 1);
    rewind_to_committed(w);
    return 0;
}

static int process_batch(tl_fold_worker_t *w, int n) {
    rd_kafka_error_t *e;
    int rc;
    w->ntouched = 0;
    w->stamp++;
    if ((rc = restore_evicted(w, n))) {
        /* Nothing is open yet: start over from what Kafka has committed. */
        tl_warn("fold", "restoring evicted states failed (%s); rewinding", tl_strerror(rc));
        rewind_to_committed(w);
        return 0;
    }
    for (int i = 0; i < n; i++) w->state_offsets[i] = -1;
    if ((e = rd_kafka_begin_transaction(w->producer))) return txn_error(w, e, "begin_transaction");

    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(8);
    rc = TL_OK;
    for (int i = 0; i < n && !rc; i++) {
        rd_kafka_message_t *m = w->batch[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(offsets, rd_kafka_topic_name(m->rkt), m->partition);
        if (!tp) tp = rd_kafka_topic_partition_list_add(offsets, rd_kafka_topic_name(m->rkt), m->partition);
        tp->offset = m->offset + 1;
        rc = fold_one(w, i);
    }
    if (!rc) rc = write_states(w);
    if (rc) {
        rd_kafka_topic_partition_list_destroy(offsets);
        tl_warn("fold", "batch failed (%s); aborting", tl_strerror(rc));
        e = rd_kafka_error_new(RD_KAFKA_RESP_ERR__STATE, "batch failed");
        return txn_error(w, e, "batch");
    }
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(w->consumer);
    e = rd_kafka_send_offsets_to_transaction(w->producer, offsets, cgmd, -1);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    rd_kafka_topic_partition_list_destroy(offsets);
    if (e) return txn_error(w, e, "send_offsets_to_transaction");
    for (;;) {
        e = rd_kafka_commit_transaction(w->producer, -1);
        if (!e) break;
        if (rd_kafka_error_is_retriable(e)) {
            tl_warn("fold", "commit_transaction (retrying): %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            continue;
        }
        return txn_error(w, e, "commit_transaction");
    }
    tl_metric_add(TL_M_fold_transactions_total, 1);
    record_durable(w);
    evict_over_limit(w);
    return 0;
}

static void *worker_main(void *arg) {
    tl_fold_worker_t *w = arg;
    pthread_setname_np(pthread_self(), "tl-fold");  /* what top -H and perf show */
    int cap = (int)w->cfg->batch;
    rd_kafka_error_t *e;

    /* init_transactions fences an older instance with our transactional id
     * and aborts its open transaction, so readers are not held up by it. */
    while (!atomic_load(&w->stop)) {
        e = rd_kafka_init_transactions(w->producer, 30000);
        if (!e) break;
        tl_warn("fold", "init_transactions: %s", rd_kafka_error_string(e));
        int fatal = rd_kafka_error_is_fatal(e);
        rd_kafka_error_destroy(e);
        if (fatal) {
            atomic_store(&w->failed, 1);
            return NULL;
        }
    }
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, tl_kafka_topic(w->kafka, TL_TOPIC_EVENTS), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(w->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);

    while (!atomic_load(&w->stop)) {
        int n = 0;
        w->rebalanced = 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
        /* Gather for batch_ms after the first record: one transaction per
         * larger batch costs far less than one per trickle. */
        int64_t deadline = tl_kafka_now_ms() + w->cfg->batch_ms;
        while (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    tl_warn("fold", "consume: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
            } else {
                w->batch[n++] = m;
            }
            if (n == cap || w->rebalanced) break;
            m = rd_kafka_consumer_poll(w->consumer, tl_kafka_left_ms(deadline));
        }
        if (w->rebalanced) {
            /* Records gathered around a rebalance may belong to partitions
             * we no longer own, and the consumer has moved past any it
             * fetched after the new assignment: drop them all and go back
             * to the committed offsets, which the new owner starts from
             * too.  (States were just loaded for the assignment.) */
            for (int i = 0; i < n; i++) rd_kafka_message_destroy(w->batch[i]);
            if (n) {
                rd_kafka_topic_partition_list_t *parts = seek_to_committed(w);
                if (parts) rd_kafka_topic_partition_list_destroy(parts);
            }
            continue;
        }
        if (n == 0) continue;
        int rc = process_batch(w, n);
        for (int i = 0; i < n; i++) rd_kafka_message_destroy(w->batch[i]);
        if (rc < 0) break;
    }
    rd_kafka_consumer_close(w->consumer);
    return NULL;
}

int tl_fold_worker_start(tl_kafka_t *kafka, const tl_config_t *cfg, tl_fold_worker_t **out) {
    char errstr[256], group[128], txid[192];
    int rc = TL_ENOMEM;
    tl_fold_worker_t *w = calloc(1, sizeof *w);
    if (!w) return TL_ENOMEM;
    w->kafka = kafka;
    w->cfg = cfg;
    tl_buf_init(&w->buf);
    /* --key-fields "order_no,phone,email": split into the fold's list. */
    char keys[512];
    const char *names[32];
    size_t nnames = 0;
    snprintf(keys, sizeof keys, "%s", cfg->key_fields);
    for (char *save = NULL, *tok = strtok_r(keys, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        if (nnames == TL_FOLD_MAX_KEY_FIELDS || strlen(tok) > TL_FOLD_MAX_NAME) {
            tl_error("fold", "--key-fields: at most %d names of at most %d bytes each",
                     TL_FOLD_MAX_KEY_FIELDS, TL_FOLD_MAX_NAME);
            free(w);
            return TL_ECONFIG;
        }
        names[nnames++] = tok;
    }
    tl_fold_opts_t opts = {cfg->max_skew_ms, cfg->idle_timeout_ms, names, nnames};
    w->batch = calloc((size_t)cfg->batch, sizeof *w->batch);
    w->touched = calloc((size_t)cfg->batch, sizeof *w->touched);
    w->state_offsets = calloc((size_t)cfg->batch, sizeof *w->state_offsets);
    w->fold_out = calloc(1, sizeof *w->fold_out);
    w->res = tl_resident_new();
    if (!w->batch || !w->touched || !w->state_offsets || !w->fold_out || !w->res ||
        !(w->fold = tl_fold_new(&opts)))
        goto fail;
    if (!(w->ev_codec = tl_codec_new_event(&rc))) goto fail;
    if (!(w->emit_codec = tl_codec_new_event(&rc))) goto fail;
    if (!(w->ch_codec = tl_change_codec_new(&rc))) goto fail;
    if (!(w->st_codec = tl_codec_new(tl_schema_state, &rc))) goto fail;

    rc = TL_EKAFKA;
    tl_kafka_group(kafka, "fold", group, sizeof group);
    if (!(w->consumer = tl_kafka_consumer_new(kafka, "fold", group, cfg->instance, on_rebalance, w)))
        goto fail;

    snprintf(txid, sizeof txid, "%s-%s", group, cfg->instance);
    rd_kafka_conf_t *conf = tl_kafka_conf_producer(kafka, 30000);
    if (!conf) goto fail;
    rd_kafka_conf_set(conf, "transactional.id", txid, NULL, 0);
    rd_kafka_conf_set(conf, "transaction.timeout.ms", "30000", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    /* A transaction's AddPartitions/AddOffsets right after the previous
     * commit is often answered CONCURRENT_TRANSACTIONS while the broker
     * still writes that commit's markers; librdkafka retries after
     * retry.backoff.ms, 100 ms by default, which was a tenth of a second
     * added to every item of one batch in ten (p99 at 2,000/s: 220 ms,
     * 87 ms with 10). */
    rd_kafka_conf_set(conf, "retry.backoff.ms", "10", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, w);
    if (!(w->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        tl_error("fold", "producer: %s", errstr);
        goto fail;
    }
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) goto fail;
    *out = w;
    return TL_OK;

fail:
    if (w->producer) rd_kafka_destroy(w->producer);
    if (w->consumer) rd_kafka_destroy(w->consumer);
    tl_codec_free(w->st_codec);
    tl_codec_free(w->ch_codec);
    tl_codec_free(w->ev_codec);
    tl_codec_free(w->emit_codec);
    tl_fold_free(w->fold);
    tl_resident_free(w->res);
    free(w->state_offsets);
    free(w->fold_out);
    free(w->touched);
    free(w->batch);
    tl_buf_close(&w->buf);
    free(w);
    return rc;
}

int tl_fold_worker_failed(const tl_fold_worker_t *w) { return atomic_load(&w->failed); }

void tl_fold_worker_stop(tl_fold_worker_t *w) {
    if (!w) return;
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    rd_kafka_destroy(w->consumer);
    rd_kafka_flush(w->producer, 5000);
    rd_kafka_destroy(w->producer);
    tl_codec_free(w->st_codec);
    tl_codec_free(w->ch_codec);
    tl_codec_free(w->ev_codec);
    tl_codec_free(w->emit_codec);
    if (w->restorer) {
        rd_kafka_consumer_close(w->restorer);
        rd_kafka_destroy(w->restorer);
    }
    tl_fold_free(w->fold);
    tl_resident_free(w->res);
    free(w->state_offsets);
    free(w->fold_out);
    free(w->touched);
    free(w->batch);
    tl_buf_close(&w->buf);
    free(w);
}
