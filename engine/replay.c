/*
 * replay.c -- re-folding the log (see replay.h).
 *
 * The end of the replay is fixed when it starts: per partition the end
 * offset a read_committed client sees then (the last stable offset).  A
 * partition is done when a record at or past end - 1 arrives (the last
 * offsets may be transaction markers, which are never delivered, so a
 * record beyond the end also ends it, unfolded) or when librdkafka reports
 * the partition's end.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "error.h"
#include "replay.h"

#define BATCH 4096

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void tl_replay_opts_init(tl_replay_opts_t *opts) {
    memset(opts, 0, sizeof *opts);
    opts->as_of_ms = TL_REPLAY_NO_LIMIT;
    opts->timeout_ms = 10000;
}

tl_fold_t *tl_replay_fold_new(const tl_config_t *cfg, char *err, size_t errlen) {
    /* The same split of --key-fields as the fold worker's. */
    char keys[512];
    const char *names[TL_FOLD_MAX_KEY_FIELDS];
    size_t nnames = 0;
    snprintf(keys, sizeof keys, "%s", cfg->key_fields);
    for (char *save = NULL, *tok = strtok_r(keys, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        if (nnames == TL_FOLD_MAX_KEY_FIELDS || strlen(tok) > TL_FOLD_MAX_NAME) {
            set_err(err, errlen, "--key-fields: at most %d names of at most %d bytes each",
                    TL_FOLD_MAX_KEY_FIELDS, TL_FOLD_MAX_NAME);
            return NULL;
        }
        names[nnames++] = tok;
    }
    tl_fold_opts_t opts = {cfg->max_skew_ms, cfg->idle_timeout_ms, names, nnames};
    tl_fold_t *f = tl_fold_new(&opts);
    if (!f) set_err(err, errlen, "cannot create the fold (out of memory or bad options)");
    return f;
}

int32_t tl_replay_partition(tl_str_t key, int32_t n) {
    /* With a key, murmur2_random never looks at the topic handle. */
    return rd_kafka_msg_partitioner_murmur2_random(NULL, key.ptr ? key.ptr : "", key.len, n, NULL,
                                                   NULL);
}

/* ---- time ---------------------------------------------------------------- */

/* n decimal digits at *p into *v; advances *p.  0 or -1. */
static int digits(const char **p, int n, int *v) {
    *v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return -1;
        *v = *v * 10 + (c - '0');
    }
    *p += n;
    return 0;
}

static int64_t days_from_civil(int y, int m, int d) {
    /* Days since 1970-01-01 of a proleptic Gregorian date. */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int tl_replay_parse_time(const char *s, int64_t *ms, char *err, size_t errlen) {
    if (!s || !*s) {
        set_err(err, errlen, "empty time: want RFC 3339 (2026-11-21T18:00:00Z) or epoch milliseconds");
        return TL_EINVAL;
    }
    size_t len = strlen(s);
    if (strspn(s, "0123456789") == len) {
        if (len > 15) {
            set_err(err, errlen, "\"%s\": epoch milliseconds out of range", s);
            return TL_EINVAL;
        }
        *ms = strtoll(s, NULL, 10);
        return TL_OK;
    }
    const char *p = s;
    int y, mo, d, h, mi, sec, frac = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d)) {
        set_err(err, errlen, "\"%s\": not a time: want RFC 3339 YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM) "
                "or epoch milliseconds", s);
        return TL_EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))) {
        set_err(err, errlen, "\"%s\": no such date", s);
        return TL_EINVAL;
    }
    if ((*p != 'T' && *p != 't' && *p != ' ') || (p++, digits(&p, 2, &h)) || *p++ != ':' ||
        digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &sec)) {
        set_err(err, errlen, "\"%s\": want a time of day after the date: THH:MM:SS", s);
        return TL_EINVAL;
    }
    if (h > 23 || mi > 59 || sec > 60) {
        set_err(err, errlen, "\"%s\": time of day out of range", s);
        return TL_EINVAL;
    }
    if (sec == 60) sec = 59; /* a leap second is the last millisecond of its minute */
    if (*p == '.') {
        p++;
        int nd = 0;
        for (; *p >= '0' && *p <= '9'; p++, nd++)
            if (nd < 3) frac = frac * 10 + (*p - '0');
        if (nd == 0) {
            set_err(err, errlen, "\"%s\": digits must follow the decimal point", s);
            return TL_EINVAL;
        }
        for (; nd < 3; nd++) frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59) {
            set_err(err, errlen, "\"%s\": bad UTC offset: want +HH:MM or -HH:MM", s);
            return TL_EINVAL;
        }
        off = sign * (oh * 3600 + om * 60);
    } else {
        set_err(err, errlen, "\"%s\": the UTC offset is missing: end with Z or +HH:MM", s);
        return TL_EINVAL;
    }
    if (*p) {
        set_err(err, errlen, "\"%s\": unexpected text after the time: \"%s\"", s, p);
        return TL_EINVAL;
    }
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    if (t < 0) {
        set_err(err, errlen, "\"%s\": before 1970-01-01T00:00:00Z", s);
        return TL_EINVAL;
    }
    *ms = t * 1000 + frac;
    return TL_OK;
}

void tl_replay_format_time(int64_t ms, char *out, size_t n) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* ---- the consumer -------------------------------------------------------- */

typedef struct part {
    int64_t start, end;         /* [start, end) */
    int64_t next;               /* next offset expected (progress) */
    int wanted, done;
} part_t;

static int64_t now_ms(void) { return tl_kafka_now_ms(); }

static void draw_progress(const part_t *parts, int n, int64_t t0, int64_t records, int final) {
    int64_t total = 0, read = 0;
    for (int i = 0; i < n; i++) {
        if (!parts[i].wanted) continue;
        total += parts[i].end - parts[i].start;
        read += (parts[i].done ? parts[i].end : parts[i].next) - parts[i].start;
    }
    double secs = (double)(now_ms() - t0) / 1000.0;
    int pct = total > 0 ? (int)(read * 100 / total) : 100;
    char bar[31];
    for (int i = 0; i < 30; i++) bar[i] = i < pct * 30 / 100 ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\rreplay [%s] %3d%% %lld records %.0f/s   ", bar, pct, (long long)records,
            secs > 0 ? (double)records / secs : 0.0);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

static int key_wanted(const tl_replay_opts_t *o, const void *key, size_t len) {
    if (!o->ncustomers) return 1;
    for (size_t i = 0; i < o->ncustomers; i++)
        if (o->customers[i].len == len && key && memcmp(o->customers[i].ptr, key, len) == 0) return 1;
    return 0;
}

int tl_replay_run(tl_kafka_t *k, tl_fold_t *fold, const tl_replay_opts_t *opts, tl_replay_cb cb,
                  void *opaque, tl_replay_stats_t *stats, char *err, size_t errlen) {
    char errstr[512], group[160];
    int rc = TL_OK;
    const char *topic = tl_kafka_topic(k, TL_TOPIC_EVENTS);
    memset(stats, 0, sizeof *stats);
    rd_kafka_conf_t *conf = tl_kafka_conf(k);
    if (!conf) return TL_ENOMEM;
    tl_kafka_group(k, "replay", group, sizeof group);
    /* A group id is required by the consumer API but never joined: the
     * partitions are assigned explicitly and nothing is committed. */
    if (rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "fetch.max.bytes", "104857600", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "max.partition.fetch.bytes", "16777216", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "262144", errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        set_err(err, errlen, "consumer configuration: %s", errstr);
        return TL_EKAFKA;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        set_err(err, errlen, "consumer: %s", errstr);
        return TL_EKAFKA;
    }
    tl_codec_t *codec = tl_codec_new_event(&rc);
    part_t *parts = calloc(TL_REPLAY_MAX_PARTITIONS, sizeof *parts);
    rd_kafka_message_t **msgs = malloc(sizeof *msgs * BATCH);
    rd_kafka_queue_t *q = NULL;
    rd_kafka_topic_partition_list_t *assign = NULL;
    if (!codec || !parts || !msgs) {
        rc = rc ? rc : TL_ENOMEM;
        set_err(err, errlen, "out of memory");
        goto done;
    }
    int n = tl_kafka_partition_count(rk, topic, opts->timeout_ms);
    if (n <= 0) {
        rc = TL_EKAFKA_DOWN;
        set_err(err, errlen, "cannot read the partitions of %s from %s (broker unreachable or no such "
                "topic)", topic, tl_kafka_brokers(k));
        goto done;
    }
    if (n > TL_REPLAY_MAX_PARTITIONS) n = TL_REPLAY_MAX_PARTITIONS;
    for (size_t i = 0; i < opts->ncustomers; i++)
        parts[tl_replay_partition(opts->customers[i], n)].wanted = 1;
    assign = rd_kafka_topic_partition_list_new(n);
    int live = 0;
    for (int p = 0; p < n; p++) {
        part_t *pt = &parts[p];
        if (!opts->ncustomers) pt->wanted = 1;
        if (!pt->wanted) continue;
        int64_t lo, hi;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, opts->timeout_ms);
        if (e) {
            rc = tl_kafka_err(e);
            set_err(err, errlen, "end offsets of %s[%d]: %s", topic, p, rd_kafka_err2str(e));
            goto done;
        }
        pt->start = (opts->from && (size_t)p < opts->nfrom && opts->from[p] >= 0) ? opts->from[p] : lo;
        if (pt->start < lo) pt->start = lo;
        pt->end = hi;
        pt->next = pt->start;
        if (pt->start >= pt->end) {
            pt->done = 1;
            continue;
        }
        rd_kafka_topic_partition_list_add(assign, topic, p)->offset = pt->start;
        live++;
    }
    int tty = opts->progress && isatty(2);
    int64_t t0 = now_ms(), last_draw = t0;
    if (live) {
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, assign);
        if (e) {
            rc = tl_kafka_err(e);
            set_err(err, errlen, "assign %s: %s", topic, rd_kafka_err2str(e));
            goto done;
        }
        q = rd_kafka_queue_get_consumer(rk);
    }
    int64_t last_record = now_ms();
    while (live > 0 && !rc) {
        /* A batch call waits for a full batch or its timeout, which would
         * stall every partition's tail: block for one record only, then
         * take whatever else is queued without waiting. */
        ssize_t got = rd_kafka_consume_batch_queue(q, 100, msgs, 1);
        if (got == 1) {
            ssize_t more = rd_kafka_consume_batch_queue(q, 0, msgs + 1, BATCH - 1);
            if (more > 0) got += more;
        }
        if (got > 0) {
            last_record = now_ms();
        } else if (now_ms() - last_record > (int64_t)opts->timeout_ms * 6) {
            /* Records remain below the end but none arrive: the broker has
             * gone away (librdkafka retries for ever on its own). */
            rc = TL_EKAFKA_DOWN;
            set_err(err, errlen, "no record of %s for %d s with %d partitions unfinished (broker %s "
                    "unreachable?)", topic, opts->timeout_ms * 6 / 1000, live, tl_kafka_brokers(k));
            break;
        }
        if (got < 0) {
            rc = TL_EKAFKA;
            set_err(err, errlen, "consume %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
            break;
        }
        for (ssize_t i = 0; i < got; i++) {
            rd_kafka_message_t *m = msgs[i];
            part_t *pt = (m->partition >= 0 && m->partition < n) ? &parts[m->partition] : NULL;
            if (rc || !pt || pt->done) {
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->err) {
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    /* Nothing committed is left to read below the end. */
                    pt->done = 1;
                    live--;
                } else if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT &&
                           m->err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
                    rc = tl_kafka_err(m->err);
                    set_err(err, errlen, "reading %s[%d]: %s", topic, (int)m->partition,
                            rd_kafka_message_errstr(m));
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->offset >= pt->end) {
                pt->done = 1;
                live--;
                rd_kafka_message_destroy(m);
                continue;
            }
            pt->next = m->offset + 1;
            stats->records++;
            if (!key_wanted(opts, m->key, m->key_len)) {
                stats->filtered++;
            } else {
                tl_event_t ev;
                tl_fold_result_t res;
                if (tl_codec_decode_event(codec, m->payload, m->len, &ev) ||
                    (ev.customer_id.len && (m->key_len != ev.customer_id.len ||
                                            memcmp(m->key, ev.customer_id.ptr, m->key_len) != 0))) {
                    stats->rejected++;
                } else if (ev.received_at > opts->as_of_ms) {
                    stats->filtered++;
                } else {
                    int e = tl_fold_apply(fold, &ev, &res);
                    if (e == TL_EINVAL) {
                        stats->rejected++;
                    } else if (e) {
                        rc = e;
                        set_err(err, errlen, "fold %s[%d]@%lld: %s", topic, (int)m->partition,
                                (long long)m->offset, tl_strerror(e));
                    } else {
                        stats->folded++;
                        stats->duplicates += res.duplicate;
                        if (cb && (e = cb(opaque, &ev, &res, m->partition, m->offset))) {
                            rc = e;
                            set_err(err, errlen, "at %s[%d]@%lld: %s", topic, (int)m->partition,
                                    (long long)m->offset, tl_strerror(e));
                        }
                    }
                }
            }
            if (m->offset >= pt->end - 1) {
                pt->done = 1;
                live--;
            }
            rd_kafka_message_destroy(m);
        }
        if (tty && now_ms() - last_draw >= 250) {
            draw_progress(parts, n, t0, stats->records, 0);
            last_draw = now_ms();
        }
    }
    stats->elapsed_ms = now_ms() - t0;
    stats->events_per_s = stats->elapsed_ms > 0 ? (double)stats->records * 1000.0 / (double)stats->elapsed_ms
                                                : (double)stats->records * 1000.0;
    if (tty) draw_progress(parts, n, t0, stats->records, 1);

done:
    if (q) rd_kafka_queue_destroy(q);
    if (assign) rd_kafka_topic_partition_list_destroy(assign);
    rd_kafka_assign(rk, NULL);
    rd_kafka_destroy(rk);
    tl_codec_free(codec);
    free(parts);
    free(msgs);
    return rc;
}
