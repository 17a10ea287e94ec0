/*
 * audit_cmd.c -- replay, verify, state, audit, export (see audit_cmd.h).
 *
 * Every command is the same three steps: check the flags (exit 2 on a bad
 * one, before touching a service), replay what it needs with the fold
 * configured as the fold workers are, render.  Commands about one customer
 * that must follow identity links (audit, export) replay again with the
 * linked customers added until the set stops growing: a linked customer
 * lives on another key and usually another partition.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "audit.h"
#include "audit_cmd.h"
#include "error.h"
#include "log.h"
#include "pg.h"
#include "profile.h"
#include "projection.h"
#include "replay.h"
#include "verify.h"

#define MAX_LINKED 64

typedef struct cmd_ctx {
    const char *name;
    const tl_config_t *cfg;
    tl_kafka_t *kafka;
    tl_fold_t *fold;
    int64_t as_of;
    int64_t from[TL_REPLAY_MAX_PARTITIONS];
    size_t nfrom;
} cmd_ctx_t;

static void cmd_close(cmd_ctx_t *c) {
    tl_fold_free(c->fold);
    tl_kafka_free(c->kafka);
}

/* Parses the shared flags and creates the fold.  Returns 0, or the exit
 * code (2) after printing why. */
static int cmd_open(cmd_ctx_t *c, const char *name, const tl_config_t *cfg, int need_customer) {
    char err[512];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->cfg = cfg;
    c->as_of = TL_REPLAY_NO_LIMIT;
    /* Tools print their own messages; librdkafka's reconnect chatter and
     * the engine's info lines would only bury them. */
    tl_log_set_level(TL_LOG_ERROR);
    if (need_customer && !cfg->customer[0]) {
        fprintf(stderr, "threadline %s: --customer is required (see --help)\n", name);
        return 2;
    }
    if (cfg->as_of[0] && tl_replay_parse_time(cfg->as_of, &c->as_of, err, sizeof err)) {
        fprintf(stderr, "threadline %s: --as-of: %s\n", name, err);
        return 2;
    }
    if (cfg->from[0]) {
        for (size_t i = 0; i < TL_REPLAY_MAX_PARTITIONS; i++) c->from[i] = -1;
        const char *p = cfg->from;
        while (*p) {
            char *end;
            long part = strtol(p, &end, 10);
            long long off = -1;
            if (end == p || *end != ':' || part < 0 || part >= TL_REPLAY_MAX_PARTITIONS ||
                (p = end + 1, off = strtoll(p, &end, 10), end == p) || off < 0 || (*end && *end != ',')) {
                fprintf(stderr, "threadline %s: --from \"%s\": want PARTITION:OFFSET[,PARTITION:OFFSET...] "
                        "with non-negative numbers\n", name, cfg->from);
                return 2;
            }
            c->from[part] = off;
            if ((size_t)part + 1 > c->nfrom) c->nfrom = (size_t)part + 1;
            p = *end ? end + 1 : end;
        }
    }
    if (tl_kafka_new(cfg, &c->kafka)) {
        fprintf(stderr, "threadline %s: cannot set up the Kafka client for %s\n", name, cfg->kafka_brokers);
        return 2;
    }
    if (!(c->fold = tl_replay_fold_new(cfg, err, sizeof err))) {
        fprintf(stderr, "threadline %s: %s\n", name, err);
        cmd_close(c);
        return 2;
    }
    return 0;
}

/* Replays for the customers (n 0: all).  Returns 0 or exit code 2. */
static int cmd_replay(cmd_ctx_t *c, const tl_str_t *customers, size_t n, tl_replay_cb cb, void *opaque,
                      int progress, tl_replay_stats_t *stats) {
    char err[512];
    tl_replay_opts_t o;
    tl_replay_opts_init(&o);
    o.customers = customers;
    o.ncustomers = n;
    o.as_of_ms = c->as_of;
    o.from = c->nfrom ? c->from : NULL;
    o.nfrom = c->nfrom;
    o.progress = progress;
    int rc = tl_replay_run(c->kafka, c->fold, &o, cb, opaque, stats, err, sizeof err);
    if (rc) {
        fprintf(stderr, "threadline %s: replay of %s failed: %s (%s)\n", c->name,
                tl_kafka_topic(c->kafka, TL_TOPIC_EVENTS), err, tl_strerror(rc));
        return 2;
    }
    return 0;
}

static int print_json(json_t *j) {
    if (!j) {
        fprintf(stderr, "threadline: out of memory\n");
        return 2;
    }
    json_dumpf(j, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(j);
    return 0;
}

static void print_stats(FILE *out, const char *name, const tl_replay_stats_t *s) {
    fprintf(out, "%s: %" PRId64 " records in %.3f s (%.0f events/s): %" PRId64 " folded (%" PRId64
            " duplicates), %" PRId64 " filtered, %" PRId64 " rejected\n", name, s->records,
            (double)s->elapsed_ms / 1000.0, s->events_per_s, s->folded, s->duplicates, s->filtered, s->rejected);
}

static json_t *stats_json(const tl_replay_stats_t *s) {
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "records", (json_int_t)s->records, "folded",
                     (json_int_t)s->folded, "duplicates", (json_int_t)s->duplicates, "filtered",
                     (json_int_t)s->filtered, "rejected", (json_int_t)s->rejected, "elapsed_ms",
                     (json_int_t)s->elapsed_ms, "events_per_s", s->events_per_s);
}

/* ---- replay --------------------------------------------------------------- */

int tl_audit_cmd_replay(const tl_config_t *cfg) {
    cmd_ctx_t c;
    int rc = cmd_open(&c, "replay", cfg, 0);
    if (rc) return rc;
    tl_str_t who = {cfg->customer, strlen(cfg->customer)};
    tl_replay_stats_t st;
    /* --scratch-schema: keep what the projections would hold, then write
     * it to a new schema (the only write any of these commands makes, and
     * only when asked). */
    tl_verify_t *v = NULL;
    PGconn *pg = NULL;
    if (cfg->scratch_schema[0]) {
        int e;
        if (!(v = tl_verify_new())) rc = 2;
        else if (!(pg = tl_pg_connect(cfg->pg_dsn, &e))) {
            fprintf(stderr, "threadline replay: cannot reach PostgreSQL (%s) for --scratch-schema\n", cfg->pg_dsn);
            rc = 2;
        }
    }
    if (!rc) rc = cmd_replay(&c, &who, who.len ? 1 : 0, v ? tl_verify_observe : NULL, v, 1, &st);
    if (!rc && v) {
        char err[512];
        int e = tl_verify_write_schema(v, c.fold, pg, cfg->scratch_schema, err, sizeof err);
        if (e) {
            fprintf(stderr, "threadline replay: --scratch-schema %s: %s\n", cfg->scratch_schema, err);
            rc = 2;
        } else if (!cfg->json) {
            printf("replay: wrote the replayed customers, conversations and items to schema %s\n",
                   cfg->scratch_schema);
        }
    }
    if (pg) PQfinish(pg);
    tl_verify_free(v);
    if (!rc) {
        if (cfg->json) {
            json_t *j = json_pack("{s:s, s:o, s:I}", "topic", tl_kafka_topic(c.kafka, TL_TOPIC_EVENTS), "stats",
                                  stats_json(&st), "customers", (json_int_t)tl_fold_count(c.fold));
            rc = print_json(j);
        } else {
            print_stats(stdout, "replay", &st);
            printf("replay: %zu customer states in memory\n", tl_fold_count(c.fold));
        }
    }
    cmd_close(&c);
    return rc;
}

/* ---- verify --------------------------------------------------------------- */

/* The profiles of --views, loaded as serve loads them (--profiles), into
 * pf[0..*n).  Returns 0, or exit code 2 with the error printed. */
static int verify_profiles(const tl_config_t *cfg, tl_profile_t **pf, size_t *n) {
    tl_platform_t views[TL_PLATFORM__COUNT];
    char err[512];
    *n = 0;
    size_t nv = 0;
    int rc = tl_projection_parse_views(cfg->views, views, &nv, err, sizeof err);
    for (size_t i = 0; i < nv && rc == TL_OK && i < TL_VERIFY_MAX_VIEWS; i++) {
        if ((rc = tl_profile_load(cfg->profiles, views[i], &pf[i], err, sizeof err)) == TL_OK) (*n)++;
    }
    if (rc) {
        fprintf(stderr, "threadline verify: %s\n", err);
        return 2;
    }
    return 0;
}

int tl_audit_cmd_verify(const tl_config_t *cfg) {
    char err[512];
    cmd_ctx_t c;
    int rc = cmd_open(&c, "verify", cfg, 0);
    if (rc) return rc;
    if (cfg->customer[0] || cfg->as_of[0] || cfg->from[0]) {
        fprintf(stderr, "threadline verify: compares everything; --customer, --as-of and --from do not apply\n");
        cmd_close(&c);
        return 2;
    }
    tl_verify_t *v = tl_verify_new();
    PGconn *pg = NULL;
    tl_replay_stats_t st;
    tl_profile_t *pf[TL_VERIFY_MAX_VIEWS] = {0};
    size_t npf = 0;
    if (!v) {
        rc = 2;
        goto out;
    }
    /* Only the views serve runs (--views) hold rows, rendered with the
     * same profiles (--profiles). */
    if ((rc = verify_profiles(cfg, pf, &npf))) goto out;
    if (tl_verify_configure(v, c.fold, (const tl_profile_t *const *)pf, npf)) {
        rc = 2;
        goto out;
    }
    int e;
    if (!(pg = tl_pg_connect(cfg->pg_dsn, &e))) {
        fprintf(stderr, "threadline verify: cannot reach PostgreSQL (%s)\n", cfg->pg_dsn);
        rc = 2;
        goto out;
    }
    if ((rc = cmd_replay(&c, NULL, 0, tl_verify_observe, v, 1, &st))) goto out;
    if ((e = tl_verify_state_topic(v, c.kafka, c.fold, 10000, err, sizeof err))) {
        fprintf(stderr, "threadline verify: reading %s: %s (%s)\n", tl_kafka_topic(c.kafka, TL_TOPIC_STATE), err,
                tl_strerror(e));
        rc = 2;
        goto out;
    }
    if ((e = tl_verify_postgres(v, pg, err, sizeof err))) {
        fprintf(stderr, "threadline verify: reading PostgreSQL: %s (%s)\n", err, tl_strerror(e));
        rc = 2;
        goto out;
    }
    size_t nd = tl_verify_ndiffs(v);
    json_t *report = tl_verify_report(v, c.fold);
    if (!report) {
        rc = 2;
        goto out;
    }
    if (cfg->json) {
        json_object_set_new(report, "replay", stats_json(&st));
        print_json(report);
    } else {
        print_stats(stdout, "verify", &st);
        json_t *replayed = json_object_get(report, "replayed"), *checked = json_object_get(report, "checked");
        printf("verify: %lld customers, %lld conversations replayed; compared with",
               (long long)json_integer_value(json_object_get(replayed, "customers")),
               (long long)json_integer_value(json_object_get(replayed, "conversations")));
        const char *k;
        json_t *val;
        json_object_foreach(checked, k, val) printf(" %s (%lld)", k, (long long)json_integer_value(val));
        printf("\n");
        for (size_t i = 0; i < nd; i++) {
            char line[1024];
            tl_verify_diff_text(tl_verify_diff_at(v, i), line, sizeof line);
            printf("DIFFERS %s\n", line);
        }
        printf("verify: %s\n", nd ? "DIFFERENCES FOUND" : "every copy agrees with the replay");
        json_decref(report);
    }
    rc = nd ? 1 : 0;
out:
    if (pg) PQfinish(pg);
    tl_verify_free(v);
    for (size_t i = 0; i < npf; i++) tl_profile_free(pf[i]);
    cmd_close(&c);
    return rc;
}

/* ---- state, audit, export ------------------------------------------------ */

/* Replays customer and, when follow, everyone linked with it, into a. */
static int replay_linked(cmd_ctx_t *c, const char *customer, int follow, tl_audit_t *a) {
    tl_str_t set[MAX_LINKED];
    char copies[MAX_LINKED][40];
    size_t n = 1;
    set[0] = (tl_str_t){customer, strlen(customer)};
    for (int round = 0; round < 8; round++) {
        tl_replay_stats_t st;
        int rc = cmd_replay(c, set, n, tl_audit_observe, a, 1, &st);
        if (rc || !follow) return rc;
        size_t nl, before = n;
        const char *const *ids = tl_audit_linked(a, &nl);
        for (size_t i = 0; i < nl && n < MAX_LINKED; i++) {
            int have = 0;
            for (size_t k = 0; k < n && !have; k++)
                have = set[k].len == strlen(ids[i]) && memcmp(set[k].ptr, ids[i], set[k].len) == 0;
            if (!have) set[n++] = (tl_str_t){ids[i], strlen(ids[i])};
        }
        if (n == before) return 0;
        /* The ids point into a's list, which clear frees: keep copies. */
        for (size_t k = 1; k < n; k++) {
            if (set[k].ptr == copies[k]) continue;
            snprintf(copies[k], sizeof copies[k], "%.*s", (int)set[k].len, set[k].ptr);
            set[k] = (tl_str_t){copies[k], strlen(copies[k])};
        }
        tl_audit_clear(a);
        tl_fold_clear(c->fold);
    }
    return 0;
}

static void not_found(const cmd_ctx_t *c, const char *what, const char *id) {
    char t[40];
    if (c->as_of != TL_REPLAY_NO_LIMIT) tl_replay_format_time(c->as_of, t, sizeof t);
    fprintf(stderr, "threadline %s: no events of %s %s in %s%s%s\n", c->name, what, id,
            tl_kafka_topic(c->kafka, TL_TOPIC_EVENTS), c->as_of != TL_REPLAY_NO_LIMIT ? " received by " : "",
            c->as_of != TL_REPLAY_NO_LIMIT ? t : "");
}

int tl_audit_cmd_state(const tl_config_t *cfg) {
    cmd_ctx_t c;
    int rc = cmd_open(&c, "state", cfg, 1);
    if (rc) return rc;
    tl_audit_t *a = tl_audit_new();
    if (!a || (rc = replay_linked(&c, cfg->customer, 0, a))) {
        rc = 2;
        goto out;
    }
    int e;
    json_t *st = tl_audit_state(a, c.fold, cfg->customer, c.as_of, &e);
    if (!st) {
        if (e == TL_ENOTFOUND) not_found(&c, "customer", cfg->customer);
        rc = e == TL_ENOTFOUND ? 1 : 2;
        goto out;
    }
    if (cfg->json) {
        rc = print_json(st);
    } else {
        tl_audit_print_state(stdout, st);
        json_decref(st);
    }
out:
    tl_audit_free(a);
    cmd_close(&c);
    return rc;
}

/* The customer of a conversation, from the conversations table (read
 * only); "" when PostgreSQL does not know it or cannot be reached. */
static void conversation_customer(const tl_config_t *cfg, char *out, size_t n) {
    int e;
    out[0] = 0;
    PGconn *pg = tl_pg_connect(cfg->pg_dsn, &e);
    if (!pg) return;
    const char *params[] = {cfg->conversation};
    PGresult *r = PQexecParams(pg, "SELECT customer_id FROM conversations WHERE conversation_id = $1 LIMIT 1", 1,
                               NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(pg);
}

int tl_audit_cmd_audit(const tl_config_t *cfg) {
    cmd_ctx_t c;
    int rc = cmd_open(&c, "audit", cfg, 0);
    if (rc) return rc;
    char customer[128];
    snprintf(customer, sizeof customer, "%s", cfg->customer);
    tl_audit_t *a = tl_audit_new();
    json_t *acc = NULL;
    if (!a) {
        rc = 2;
        goto out;
    }
    if (!customer[0] && !cfg->conversation[0]) {
        fprintf(stderr, "threadline audit: --customer or --conversation is required (see --help)\n");
        rc = 2;
        goto out;
    }
    /* A conversation's customer from the agent view when it knows it; a
     * whole-log replay otherwise. */
    if (!customer[0]) conversation_customer(cfg, customer, sizeof customer);
    if (customer[0]) rc = replay_linked(&c, customer, !cfg->conversation[0], a);
    else {
        tl_replay_stats_t st;
        rc = cmd_replay(&c, NULL, 0, tl_audit_observe, a, 1, &st);
    }
    if (rc) goto out;
    acc = tl_audit_account(a, NULL, cfg->conversation[0] ? cfg->conversation : NULL);
    if (!acc) {
        rc = 2;
        goto out;
    }
    if (json_array_size(json_object_get(acc, "events")) == 0) {
        not_found(&c, cfg->conversation[0] ? "conversation" : "customer",
                  cfg->conversation[0] ? cfg->conversation : customer);
        rc = 1;
        goto out;
    }
    if (customer[0] && !cfg->conversation[0]) {
        size_t nl;
        const char *const *ids = tl_audit_linked(a, &nl);
        json_t *linked = json_array();
        for (size_t i = 0; i < nl; i++)
            if (strcmp(ids[i], customer) != 0) json_array_append_new(linked, json_string(ids[i]));
        json_object_set_new(acc, "customer_id", json_string(customer));
        json_object_set_new(acc, "linked_customers", linked);
    }
    if (cfg->json) {
        rc = print_json(acc);
        acc = NULL;
    } else {
        if (customer[0] && !cfg->conversation[0]) {
            printf("account of customer %s", customer);
            size_t k;
            json_t *id;
            json_array_foreach(json_object_get(acc, "linked_customers"), k, id)
                printf("%s%s", k ? ", " : " and linked customers ", json_string_value(id));
            printf("\n");
        } else {
            printf("account of conversation %s\n", cfg->conversation);
        }
        tl_audit_print_account(stdout, acc);
    }
out:
    json_decref(acc);
    tl_audit_free(a);
    cmd_close(&c);
    return rc;
}

int tl_audit_cmd_export(const tl_config_t *cfg) {
    cmd_ctx_t c;
    int rc = cmd_open(&c, "export", cfg, 1);
    if (rc) return rc;
    tl_audit_t *a = tl_audit_new();
    if (!a || (rc = replay_linked(&c, cfg->customer, 1, a))) {
        rc = 2;
        goto out;
    }
    int e;
    json_t *ex = tl_audit_export(a, c.fold, cfg->customer, &e);
    if (!ex) {
        if (e == TL_ENOTFOUND) not_found(&c, "customer", cfg->customer);
        rc = e == TL_ENOTFOUND ? 1 : 2;
        goto out;
    }
    rc = print_json(ex);
out:
    tl_audit_free(a);
    cmd_close(&c);
    return rc;
}
