/*
 * rebuild.c -- `threadline rebuild` (see rebuild.h).
 *
 * The shadow is filled by the same projector code as the live view, so a
 * rebuilt view and a live one can differ only by what the log held when
 * each read it.  The consumer is assigned every partition by hand (no
 * group: a rebuild must not take partitions from the live workers) and
 * reads with read_committed, so it sees exactly the Changes of committed
 * fold transactions, as the live workers do.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "kafka.h"
#include "log.h"
#include "pg.h"
#include "profile.h"
#include "projection.h"
#include "rebuild.h"

#define MAX_PARTS 1024

typedef struct rebuild {
    const tl_config_t *cfg;
    tl_kafka_t *kafka;
    tl_projection_t *proj;
    rd_kafka_t *rk;
    const char *topic;
    int nparts;
    int64_t low[MAX_PARTS], next[MAX_PARTS], target[MAX_PARTS];
    int paused[MAX_PARTS];      /* reached its target; sought back to it */
    int64_t total, last_print;
    int tty;
    char slug[32];
    rd_kafka_message_t **batch;
    int cap;
} rebuild_t;

static void progress(rebuild_t *r, int final) {
    if (!r->tty) return;
    int64_t now = tl_kafka_now_ms();
    if (!final && now - r->last_print < 200) return;
    r->last_print = now;
    int64_t done = 0;
    for (int i = 0; i < r->nparts; i++) done += r->next[i] - r->low[i];
    fprintf(stderr, "\rrebuild %s: %lld/%lld offsets (%d%%)%s", r->slug, (long long)done,
            (long long)r->total, r->total ? (int)(done * 100 / r->total) : 100, final ? "\n" : "");
    fflush(stderr);
}

/* A record at or past target[part] arrived: it is the live worker's, not
 * ours -- yet.  Stop the partition there and seek back to the target, so
 * that if the swap raises the target the records are read again rather
 * than lost. */
static void hold_at_target(rebuild_t *r, int32_t part) {
    /* Records arrive in offset order: every record below the target that
     * read_committed delivers has been delivered; what is left below it
     * (transaction markers, aborted records) needs no reading -- and a
     * paused partition reports no end to tell us so. */
    if (r->next[part] < r->target[part]) r->next[part] = r->target[part];
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, r->topic, part)->offset = r->target[part];
    rd_kafka_pause_partitions(r->rk, tp);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(r->rk, tp, 10000);
    if (e) {
        tl_warn("rebuild", "%s[%d]: seek: %s", r->topic, (int)part, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    r->paused[part] = 1;
}

/* Raises part's target; a partition held at its old target goes on. */
static void raise_target(rebuild_t *r, int32_t part, int64_t target) {
    r->target[part] = target;
    if (!r->paused[part]) return;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, r->topic, part);
    rd_kafka_resume_partitions(r->rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    r->paused[part] = 0;
}

/* Consumes until every partition's next offset reaches target[]. */
static int catch_up(rebuild_t *r) {
    for (;;) {
        int behind = 0;
        for (int i = 0; i < r->nparts; i++) behind |= r->next[i] < r->target[i];
        if (!behind) return TL_OK;
        int n = 0;
        int64_t deadline = tl_kafka_now_ms() + (r->cfg->batch_ms > 0 ? r->cfg->batch_ms : 20);
        while (n < r->cap) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, n ? tl_kafka_left_ms(deadline) : 500);
            if (!m) break;
            int32_t p = m->partition;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* The end of what read_committed may see: transaction
                 * markers after the last record count as read (up to the
                 * target: beyond it nothing but markers was passed, or a
                 * record would have held the partition). */
                if (p >= 0 && p < r->nparts) {
                    int64_t end = m->offset < r->target[p] ? m->offset : r->target[p];
                    if (end > r->next[p]) r->next[p] = end;
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->err) {
                tl_warn("rebuild", "consume: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                continue;
            }
            if (p >= 0 && p < r->nparts && m->offset >= r->target[p]) {
                rd_kafka_message_destroy(m);
                if (!r->paused[p]) hold_at_target(r, p);
                continue;
            }
            r->batch[n++] = m;
        }
        if (n) {
            int rc;
            while ((rc = tl_projection_apply(r->proj, r->batch, n)) == TL_EPG_DOWN) {
                tl_warn("rebuild", "PostgreSQL unreachable; retrying the batch");
                if (!tl_projection_pg(r->proj, NULL)) break;
            }
            for (int i = 0; i < n; i++) {
                rd_kafka_message_t *m = r->batch[i];
                if (rc == TL_OK && m->partition < r->nparts && m->offset + 1 > r->next[m->partition])
                    r->next[m->partition] = m->offset + 1;
                rd_kafka_message_destroy(m);
            }
            if (rc) return rc;
        }
        progress(r, 0);
    }
}

static int pg_run(PGconn *pg, const char *sql, int n, const char *const *vals, PGresult **out) {
    PGresult *res = PQexecParams(pg, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = tl_pg_err(pg, res);
        tl_error("rebuild", "%s: %s", sql, PQerrorMessage(pg));
        PQclear(res);
        return rc;
    }
    if (out) *out = res;
    else PQclear(res);
    return TL_OK;
}

/* Step 3 of rebuild.h, on the control connection. */
static int swap(rebuild_t *r, PGconn *pg, tl_platform_t platform) {
    char sql[512], live[64], shadow[80], old[80], consumer[64];
    snprintf(live, sizeof live, "view_%s", r->slug);
    snprintf(shadow, sizeof shadow, "view_%s_shadow", r->slug);
    snprintf(old, sizeof old, "view_%s_old", r->slug);
    snprintf(consumer, sizeof consumer, "rebuild:%s", r->slug);
    const char *vals[4] = {r->slug, r->topic};
    PGresult *res = NULL;
    int rc;
    if ((rc = tl_pg_exec(pg, "BEGIN")) || (rc = tl_pg_exec(pg, "SET LOCAL lock_timeout = '30s'")))
        return rc;
    snprintf(sql, sizeof sql, "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", live);
    if ((rc = pg_run(pg, sql, 0, NULL, NULL)) ||
        (rc = pg_run(pg, "SELECT partition, next_offset FROM projection_offsets"
                         " WHERE consumer = $1 AND topic = $2 FOR UPDATE", 2, vals, &res)))
        goto fail;
    int64_t stored[MAX_PARTS];
    for (int i = 0; i < r->nparts; i++) stored[i] = -1;
    for (int i = 0; i < PQntuples(res); i++) {
        int part = atoi(PQgetvalue(res, i, 0));
        if (part >= 0 && part < r->nparts) stored[part] = strtoll(PQgetvalue(res, i, 1), NULL, 10);
    }
    PQclear(res);
    /* The live worker got further while we read: the shadow follows, so
     * the swapped-in view has everything the live one has. */
    int more = 0;
    for (int i = 0; i < r->nparts; i++)
        if (stored[i] > r->target[i]) raise_target(r, i, stored[i]), more = 1;
    if (more && (rc = catch_up(r))) goto fail;
    if (platform != TL_PLATFORM_AGENT) {
        for (int i = 0; i < r->nparts; i++) {
            if (stored[i] >= r->next[i]) continue;
            char part[16], off[24];
            snprintf(part, sizeof part, "%d", i);
            snprintf(off, sizeof off, "%lld", (long long)r->next[i]);
            const char *v[] = {r->slug, r->topic, part, off};
            if ((rc = pg_run(pg, "INSERT INTO projection_offsets (consumer, topic, partition, next_offset)"
                                 " VALUES ($1, $2, $3::int, $4::bigint) ON CONFLICT (consumer, topic, partition)"
                                 " DO UPDATE SET next_offset = EXCLUDED.next_offset", 4, v, NULL)))
                goto fail;
        }
    }
    snprintf(sql, sizeof sql, "ALTER TABLE %s RENAME TO %s", live, old);
    if ((rc = pg_run(pg, sql, 0, NULL, NULL))) goto fail;
    snprintf(sql, sizeof sql, "ALTER TABLE %s RENAME TO %s", shadow, live);
    if ((rc = pg_run(pg, sql, 0, NULL, NULL))) goto fail;
    snprintf(sql, sizeof sql, "DROP TABLE %s", old);
    if ((rc = pg_run(pg, sql, 0, NULL, NULL))) goto fail;
    /* Keep the primary key's name what migrations gave it. */
    vals[0] = live;
    if ((rc = pg_run(pg, "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
                     1, vals, &res)))
        goto fail;
    if (PQntuples(res) == 1) {
        char want[96];
        snprintf(want, sizeof want, "%s_pkey", live);
        if (strcmp(PQgetvalue(res, 0, 0), want) != 0) {
            char *from = PQescapeIdentifier(pg, PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)));
            snprintf(sql, sizeof sql, "ALTER TABLE %s RENAME CONSTRAINT %s TO %s", live, from ? from : "\"\"",
                     want);
            PQfreemem(from);
            rc = pg_run(pg, sql, 0, NULL, NULL);
        }
    }
    PQclear(res);
    if (rc) goto fail;
    vals[0] = consumer;
    if ((rc = pg_run(pg, "DELETE FROM projection_offsets WHERE consumer = $1", 1, vals, NULL)) ||
        (rc = pg_run(pg, "DELETE FROM projection_positions WHERE consumer = $1", 1, vals, NULL)) ||
        (rc = tl_pg_exec(pg, "COMMIT")))
        goto fail;
    return TL_OK;
fail:
    if (PQstatus(pg) == CONNECTION_OK) tl_pg_exec(pg, "ROLLBACK");
    return rc;
}

/* Assigns every partition of .changes from the beginning and notes where
 * each starts and (last stable offset) ends. */
static int assign_all(rebuild_t *r) {
    char errstr[256];
    rd_kafka_conf_t *conf = tl_kafka_conf(r->kafka);
    if (!conf) return TL_EKAFKA;
    rd_kafka_conf_set(conf, "group.id", "threadline-rebuild", NULL, 0);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    if (!(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        tl_error("rebuild", "consumer: %s", errstr);
        return TL_EKAFKA;
    }
    rd_kafka_poll_set_consumer(r->rk);
    int n = tl_kafka_partition_count(r->rk, r->topic, 10000);
    if (n <= 0 || n > MAX_PARTS) {
        tl_error("rebuild", "%s: cannot read its partitions (%s)", r->topic, n < 0 ? tl_strerror(n) : "none");
        return n < 0 ? n : TL_EKAFKA;
    }
    r->nparts = n;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(r->rk, r->topic, i, &lo, &hi, 10000);
        if (err) {
            tl_error("rebuild", "%s[%d]: %s", r->topic, i, rd_kafka_err2str(err));
            rd_kafka_topic_partition_list_destroy(parts);
            return tl_kafka_err(err);
        }
        r->low[i] = r->next[i] = lo;
        r->target[i] = hi;
        r->total += hi - lo;
        rd_kafka_topic_partition_list_add(parts, r->topic, i)->offset = lo;
    }
    rd_kafka_assign(r->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return TL_OK;
}

int tl_rebuild_run(const tl_config_t *cfg, tl_platform_t platform) {
    rebuild_t r = {.cfg = cfg, .tty = isatty(2)};
    tl_profile_t *pf = NULL;
    PGconn *pg = NULL;
    char err[512], sql[512], table[80], consumer[64];
    int rc, known = 0;
    size_t nviews;
    const tl_platform_t *views = tl_projection_platforms(&nviews);
    for (size_t i = 0; i < nviews; i++) known |= views[i] == platform;
    if (!known) {
        tl_error("rebuild", "no view for platform \"%s\"", tl_platform_slug(platform));
        return TL_ECONFIG;
    }
    snprintf(r.slug, sizeof r.slug, "%s", tl_platform_slug(platform));
    if ((rc = tl_profile_load(cfg->profiles, platform, &pf, err, sizeof err))) {
        tl_error("rebuild", "%s", err);
        return rc;
    }
    if ((rc = tl_kafka_new(cfg, &r.kafka))) goto out;
    r.topic = tl_kafka_topic(r.kafka, TL_TOPIC_CHANGES);
    if (!(pg = tl_pg_connect(cfg->pg_dsn, &rc))) goto out;

    /* 1. The shadow, and no leftovers of an interrupted rebuild. */
    snprintf(table, sizeof table, "view_%s_shadow", r.slug);
    snprintf(consumer, sizeof consumer, "rebuild:%s", r.slug);
    const char *vals[] = {consumer};
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", table);
    if ((rc = pg_run(pg, sql, 0, NULL, NULL))) goto out;
    snprintf(sql, sizeof sql, "CREATE TABLE %s (LIKE view_%s INCLUDING ALL)", table, r.slug);
    if ((rc = pg_run(pg, sql, 0, NULL, NULL))) goto out;
    /* LIKE copies the columns' collations but not their statistics
     * targets (005_write_path). */
    snprintf(sql, sizeof sql, "ALTER TABLE %s ALTER COLUMN body SET STATISTICS 0", table);
    if ((rc = pg_run(pg, sql, 0, NULL, NULL)) ||
        (rc = pg_run(pg, "DELETE FROM projection_offsets WHERE consumer = $1", 1, vals, NULL)))
        goto out;

    /* 2. Fill it. */
    tl_projection_spec_t spec = {platform, table, consumer, 0};
    rc = tl_projection_new(r.kafka, cfg, &spec, pf, &r.proj);
    pf = NULL;
    if (rc) goto out;
    r.cap = cfg->batch > 0 ? (int)cfg->batch : 500;
    rc = TL_ENOMEM;
    if (!(r.batch = calloc((size_t)r.cap, sizeof *r.batch))) goto out;
    if (!tl_projection_pg(r.proj, NULL)) goto out;
    if ((rc = assign_all(&r)) || (rc = catch_up(&r))) goto out;
    progress(&r, 1);

    /* 3. Swap. */
    if ((rc = swap(&r, pg, platform))) goto out;
    int64_t done = 0;
    for (int i = 0; i < r.nparts; i++) done += r.next[i];
    tl_info("rebuild", "view_%s rebuilt from %lld offsets of %s and swapped in", r.slug,
            (long long)done, r.topic);

out:
    if (rc) {
        tl_error("rebuild", "view_%s: %s; the live view is unchanged", r.slug, tl_strerror(rc));
        if (pg && PQstatus(pg) == CONNECTION_OK) {
            snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS view_%s_shadow", r.slug);
            pg_run(pg, sql, 0, NULL, NULL);
        }
    }
    if (r.rk) {
        rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    free(r.batch);
    tl_projection_free(r.proj);
    tl_profile_free(pf);
    PQfinish(pg);
    tl_kafka_free(r.kafka);
    return rc;
}
