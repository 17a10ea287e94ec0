/*
 * projection.c -- the agent view projection (see projection.h).
 *
 * A batch is written with one multi-row INSERT per table, every value a
 * parameter.  Decoded strings live in the codecs' storage only until the
 * next decode, so everything a row needs is copied into `arena` first;
 * parameters are recorded as arena offsets and turned into pointers once
 * the arena has stopped growing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "change.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "projection.h"

#define MAX_PARAMS 60000

/* One multi-row statement under construction. */
typedef struct stmt {
    tl_buf_t sql;
    size_t *offs;       /* arena offsets of the parameters; SIZE_MAX = NULL */
    int nparams, nrows, ncols;
    const char *head, *tail;
    const char *const *casts;
} stmt_t;

typedef struct conv_agg {
    char tenant[72], id[40], customer[40];
    int64_t version, opened_at, last_activity, items;
    int opened, closed;
    char platforms[128];
} conv_agg_t;

typedef struct cust_agg {
    char tenant[72], id[40];
    int64_t version, first_seen, last_activity;
    char platforms[128];
} cust_agg_t;

struct tl_projection {
    tl_kafka_t *kafka;
    const tl_config_t *cfg;
    char name[32];
    pthread_t thread;
    atomic_int stop;
    rd_kafka_t *consumer;
    PGconn *pg;
    tl_codec_t *ch_codec, *ev_codec;
    tl_buf_t arena;
    stmt_t timeline, convs, custs, idents, offsets, positions;
    conv_agg_t *conv;
    cust_agg_t *cust;
    int nconv, ncust;
    rd_kafka_message_t **batch;
    int64_t part_next[1024];            /* next offset per .changes partition, this batch */
    int64_t pos[1024];                  /* max source offset per .events partition */
};

static const char *const timeline_casts[] = {
    "", "", "", "", "", "", "", "to_timestamp($::bigint/1000.0)", "to_timestamp($::bigint/1000.0)",
    "to_timestamp($::bigint/1000.0)", "$::int", "$::bigint", "", "$::jsonb"};
static const char *const conv_casts[] = {
    "", "", "", "", "$::bigint", "to_timestamp($::bigint/1000.0)", "to_timestamp($::bigint/1000.0)",
    "$::text[]", "$::bigint"};
static const char *const cust_casts[] = {
    "", "", "$::bigint", "$::text[]", "to_timestamp($::bigint/1000.0)", "to_timestamp($::bigint/1000.0)"};
static const char *const ident_casts[] = {"", "", "", ""};
static const char *const off_casts[] = {"", "", "$::int", "$::bigint"};
static const char *const pos_casts[] = {"", "$::int", "$::bigint"};

static void stmt_init(stmt_t *s, int ncols, const char *const *casts, const char *head, const char *tail) {
    memset(s, 0, sizeof *s);
    tl_buf_init(&s->sql);
    s->ncols = ncols;
    s->casts = casts;
    s->head = head;
    s->tail = tail;
    s->offs = malloc(sizeof *s->offs * MAX_PARAMS);
}

static void stmt_close(stmt_t *s) {
    tl_buf_close(&s->sql);
    free(s->offs);
}

static void stmt_reset(stmt_t *s) {
    tl_buf_reset(&s->sql);
    s->nparams = s->nrows = 0;
}

/* Appends a parameter value (copied into the arena); NULL ptr = SQL NULL. */
static int arena_put(tl_projection_t *p, stmt_t *s, const char *v, size_t len) {
    if (s->nparams >= MAX_PARAMS) return TL_ETOOBIG;
    if (!v) {
        s->offs[s->nparams++] = SIZE_MAX;
        return TL_OK;
    }
    s->offs[s->nparams++] = p->arena.len;
    if (tl_buf_append(&p->arena, v, len) || tl_buf_append(&p->arena, "", 1)) return TL_ENOMEM;
    return TL_OK;
}

static int put_str(tl_projection_t *p, stmt_t *s, tl_str_t v) { return arena_put(p, s, v.ptr, v.len); }
static int put_cstr(tl_projection_t *p, stmt_t *s, const char *v) { return arena_put(p, s, v, v ? strlen(v) : 0); }
static int put_i64(tl_projection_t *p, stmt_t *s, int64_t v) {
    char n[24];
    int len = snprintf(n, sizeof n, "%lld", (long long)v);
    return arena_put(p, s, n, (size_t)len);
}

/* Closes a row: appends "($1,$2::bigint,...)" for its ncols parameters. */
static int stmt_row(stmt_t *s) {
    int first = s->nparams - s->ncols + 1;
    tl_buf_puts(&s->sql, s->nrows ? ",(" : "(");
    for (int c = 0; c < s->ncols; c++) {
        const char *cast = s->casts[c];
        char num[16];
        snprintf(num, sizeof num, "$%d", first + c);
        if (c) tl_buf_puts(&s->sql, ",");
        if (!*cast) {
            tl_buf_puts(&s->sql, num);
        } else {
            const char *d = strchr(cast, '$');
            tl_buf_append(&s->sql, cast, (size_t)(d - cast));
            tl_buf_puts(&s->sql, num);
            tl_buf_puts(&s->sql, d + 1);
        }
    }
    s->nrows++;
    return tl_buf_puts(&s->sql, ")");
}

static int stmt_exec(tl_projection_t *p, stmt_t *s) {
    if (!s->nrows) return TL_OK;
    tl_buf_t q;
    tl_buf_init(&q);
    tl_buf_puts(&q, s->head);
    tl_buf_append(&q, s->sql.data, s->sql.len);
    tl_buf_puts(&q, s->tail);
    const char **vals = malloc(sizeof *vals * (size_t)s->nparams);
    if (!vals || !q.data) {
        free(vals);
        tl_buf_close(&q);
        return TL_ENOMEM;
    }
    for (int i = 0; i < s->nparams; i++)
        vals[i] = s->offs[i] == SIZE_MAX ? NULL : p->arena.data + s->offs[i];
    PGresult *r = PQexecParams(p->pg, q.data, s->nparams, NULL, vals, NULL, NULL, 0);
    int rc = TL_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = tl_pg_err(p->pg, r);
        tl_warn("projection", "%s: %s", p->name, PQerrorMessage(p->pg));
    }
    PQclear(r);
    free(vals);
    tl_buf_close(&q);
    return rc;
}

/* Adds slug to set, a PostgreSQL array literal "{web,app}" (slugs are
 * [a-z_], so no quoting is needed); does nothing if it is already there or
 * the set is full. */
static void platforms_add(char *set, size_t n, const char *slug) {
    size_t len = strlen(slug), used = strlen(set);
    if (used == 0) {
        snprintf(set, n, "{%s}", slug);
        return;
    }
    for (const char *p = set + 1; *p && *p != '}';) {
        size_t item = strcspn(p, ",}");
        if (item == len && memcmp(p, slug, len) == 0) return;
        p += item;
        if (*p == ',') p++;
    }
    if (used + len + 2 > n) return;
    set[used - 1] = ',';
    memcpy(set + used, slug, len);
    memcpy(set + used + len, "}", 2);
}

static conv_agg_t *conv_get(tl_projection_t *p, const tl_change_t *ch) {
    for (int i = 0; i < p->nconv; i++)
        if (strlen(p->conv[i].id) == ch->conversation_id.len &&
            memcmp(p->conv[i].id, ch->conversation_id.ptr, ch->conversation_id.len) == 0)
            return &p->conv[i];
    conv_agg_t *c = &p->conv[p->nconv++];
    memset(c, 0, sizeof *c);
    snprintf(c->tenant, sizeof c->tenant, "%.*s", (int)ch->tenant_id.len, ch->tenant_id.ptr);
    snprintf(c->id, sizeof c->id, "%.*s", (int)ch->conversation_id.len, ch->conversation_id.ptr);
    snprintf(c->customer, sizeof c->customer, "%.*s", (int)ch->customer_id.len, ch->customer_id.ptr);
    c->opened_at = ch->effective_ts;
    return c;
}

static cust_agg_t *cust_get(tl_projection_t *p, const tl_change_t *ch) {
    for (int i = 0; i < p->ncust; i++)
        if (strlen(p->cust[i].id) == ch->customer_id.len &&
            memcmp(p->cust[i].id, ch->customer_id.ptr, ch->customer_id.len) == 0 &&
            strlen(p->cust[i].tenant) == ch->tenant_id.len &&
            memcmp(p->cust[i].tenant, ch->tenant_id.ptr, ch->tenant_id.len) == 0)
            return &p->cust[i];
    cust_agg_t *c = &p->cust[p->ncust++];
    memset(c, 0, sizeof *c);
    snprintf(c->tenant, sizeof c->tenant, "%.*s", (int)ch->tenant_id.len, ch->tenant_id.ptr);
    snprintf(c->id, sizeof c->id, "%.*s", (int)ch->customer_id.len, ch->customer_id.ptr);
    c->first_seen = ch->effective_ts;
    return c;
}

static json_t *jstr(tl_str_t s) { return s.ptr ? json_stringn(s.ptr, s.len) : json_null(); }

/* What an agent needs to render the item, beyond the indexed columns. */
static json_t *item_body(const tl_event_t *ev) {
    json_t *o = json_object(), *atts;
    const tl_attachments_t *a = NULL;
    switch (ev->kind) {
    case TL_EV_MESSAGE_RECEIVED:
        json_object_set_new(o, "text", jstr(ev->u.message.text));
        json_object_set_new(o, "entry_point", jstr(ev->u.message.entry_point));
        json_object_set_new(o, "device_id", jstr(ev->u.message.device_id));
        a = &ev->u.message.attachments;
        break;
    case TL_EV_AGENT_REPLIED:
        json_object_set_new(o, "text", jstr(ev->u.reply.text));
        json_object_set_new(o, "agent_id", jstr(ev->u.reply.agent_id));
        json_object_set_new(o, "target_platform", json_string(tl_platform_slug(ev->u.reply.target_platform)));
        a = &ev->u.reply.attachments;
        break;
    case TL_EV_TRANSCRIPT_SEGMENT:
        json_object_set_new(o, "text", jstr(ev->u.transcript.text));
        json_object_set_new(o, "call_id", jstr(ev->u.transcript.call_id));
        json_object_set_new(o, "start_ms", json_integer(ev->u.transcript.start_ms));
        json_object_set_new(o, "end_ms", json_integer(ev->u.transcript.end_ms));
        json_object_set_new(o, "confidence", json_real(ev->u.transcript.confidence));
        break;
    case TL_EV_BEHAVIOR_TRACKED:
        json_object_set_new(o, "page", jstr(ev->u.behavior.page));
        json_object_set_new(o, "action", jstr(ev->u.behavior.action));
        break;
    case TL_EV_CONVERSATION_ASSIGNED:
        json_object_set_new(o, "agent_id", jstr(ev->u.assign.agent_id));
        json_object_set_new(o, "team_id", jstr(ev->u.assign.team_id));
        break;
    case TL_EV_CONVERSATION_CLOSED:
        json_object_set_new(o, "reason", jstr(ev->u.close.reason));
        break;
    default:
        break;
    }
    if (a) {
        atts = json_array();
        for (size_t i = 0; i < a->n; i++) {
            const tl_attachment_t *at = &a->v[i];
            json_t *j = json_pack("{s:o, s:o, s:I}", "url", jstr(at->url), "mime", jstr(at->mime),
                                  "bytes", (json_int_t)at->bytes);
            if (at->has_width) json_object_set_new(j, "width", json_integer(at->width));
            if (at->has_height) json_object_set_new(j, "height", json_integer(at->height));
            json_array_append_new(atts, j);
        }
        json_object_set_new(o, "attachments", atts);
    }
    return o;
}

static int add_change(tl_projection_t *p, const rd_kafka_message_t *m) {
    tl_change_t ch;
    tl_event_t ev;
    int rc = tl_change_decode(p->ch_codec, m->payload, m->len, &ch);
    if (rc) {
        /* The fold writes every Change; one we cannot read is a bug or a
         * newer schema.  Skip it visibly rather than block the partition. */
        tl_error("projection", "%s: unreadable change at [%d]@%lld: %s", p->name, (int)m->partition,
                 (long long)m->offset, tl_codec_errmsg(p->ch_codec));
        return TL_OK;
    }
    if ((size_t)ch.source_partition < 1024 && ch.source_offset > p->pos[ch.source_partition])
        p->pos[ch.source_partition] = ch.source_offset;
    if (ch.duplicate) return TL_OK;
    if ((rc = tl_codec_decode_event(p->ev_codec, ch.event.ptr, ch.event.len, &ev))) {
        tl_error("projection", "%s: unreadable event in change [%d]@%lld", p->name, (int)m->partition,
                 (long long)m->offset);
        return TL_OK;
    }
    const char *slug = tl_platform_slug(ev.platform);
    cust_agg_t *cu = cust_get(p, &ch);
    if (ch.customer_version > cu->version) cu->version = ch.customer_version;
    if (ch.effective_ts > cu->last_activity) cu->last_activity = ch.effective_ts;
    if (ch.effective_ts < cu->first_seen) cu->first_seen = ch.effective_ts;
    platforms_add(cu->platforms, sizeof cu->platforms, slug);

    stmt_t *s = &p->idents;
    rc |= put_str(p, s, ev.tenant_id);
    rc |= put_cstr(p, s, slug);
    rc |= put_str(p, s, ev.platform_user_id);
    rc |= put_str(p, s, ev.customer_id);
    rc |= stmt_row(s);

    if (!ch.conversation_id.ptr) return rc ? TL_ENOMEM : TL_OK;
    conv_agg_t *c = conv_get(p, &ch);
    if (ch.conversation_version > c->version) c->version = ch.conversation_version;
    if (ch.effective_ts > c->last_activity) c->last_activity = ch.effective_ts;
    if (ch.effective_ts < c->opened_at) c->opened_at = ch.effective_ts;
    if (ev.kind == TL_EV_CONVERSATION_CLOSED) c->closed = 1;
    c->items++;
    platforms_add(c->platforms, sizeof c->platforms, slug);

    char label[320];
    tl_str_t entry = ev.kind == TL_EV_MESSAGE_RECEIVED ? ev.u.message.entry_point : TL_STR_NULL;
    if (entry.ptr && entry.len)
        snprintf(label, sizeof label, "%s \xc2\xb7 %.*s", slug, (int)entry.len, entry.ptr);
    else
        snprintf(label, sizeof label, "%s", slug);
    json_t *body = item_body(&ev);
    char *bj = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!bj) return TL_ENOMEM;
    s = &p->timeline;
    rc |= put_str(p, s, ev.tenant_id);
    rc |= put_str(p, s, ev.event_id);
    rc |= put_str(p, s, ch.conversation_id);
    rc |= put_str(p, s, ev.customer_id);
    rc |= put_cstr(p, s, tl_event_kind_name(ev.kind));
    rc |= put_cstr(p, s, slug);
    rc |= put_cstr(p, s, label);
    rc |= put_i64(p, s, ch.effective_ts);
    rc |= put_i64(p, s, ev.occurred_at);
    rc |= put_i64(p, s, ev.received_at);
    rc |= put_i64(p, s, ch.source_partition);
    rc |= put_i64(p, s, ch.source_offset);
    rc |= put_str(p, s, ev.idempotency_key);
    rc |= put_cstr(p, s, bj);
    rc |= stmt_row(s);
    free(bj);
    return rc ? TL_ENOMEM : TL_OK;
}

static void batch_reset(tl_projection_t *p) {
    tl_buf_reset(&p->arena);
    stmt_reset(&p->timeline);
    stmt_reset(&p->convs);
    stmt_reset(&p->custs);
    stmt_reset(&p->idents);
    stmt_reset(&p->offsets);
    stmt_reset(&p->positions);
    p->nconv = p->ncust = 0;
    for (int i = 0; i < 1024; i++) p->part_next[i] = p->pos[i] = -1;
}

static int write_batch(tl_projection_t *p, int n) {
    int rc = TL_OK;
    batch_reset(p);
    for (int i = 0; i < n && !rc; i++) {
        rd_kafka_message_t *m = p->batch[i];
        if ((size_t)m->partition < 1024) p->part_next[m->partition] = m->offset + 1;
        rc = add_change(p, m);
    }
    if (rc) return rc;
    for (int i = 0; i < p->nconv; i++) {
        conv_agg_t *c = &p->conv[i];
        stmt_t *s = &p->convs;
        rc |= put_cstr(p, s, c->tenant);
        rc |= put_cstr(p, s, c->id);
        rc |= put_cstr(p, s, c->customer);
        rc |= put_cstr(p, s, c->closed ? "closed" : "open");
        rc |= put_i64(p, s, c->version);
        rc |= put_i64(p, s, c->opened_at);
        rc |= put_i64(p, s, c->last_activity);
        rc |= put_cstr(p, s, c->platforms[0] ? c->platforms : "{}");
        rc |= put_i64(p, s, c->items);
        rc |= stmt_row(s);
    }
    for (int i = 0; i < p->ncust; i++) {
        cust_agg_t *c = &p->cust[i];
        stmt_t *s = &p->custs;
        rc |= put_cstr(p, s, c->tenant);
        rc |= put_cstr(p, s, c->id);
        rc |= put_i64(p, s, c->version);
        rc |= put_cstr(p, s, c->platforms[0] ? c->platforms : "{}");
        rc |= put_i64(p, s, c->first_seen);
        rc |= put_i64(p, s, c->last_activity);
        rc |= stmt_row(s);
    }
    const char *topic = tl_kafka_topic(p->kafka, TL_TOPIC_CHANGES);
    for (int i = 0; i < 1024; i++) {
        if (p->part_next[i] >= 0) {
            rc |= put_cstr(p, &p->offsets, p->name);
            rc |= put_cstr(p, &p->offsets, topic);
            rc |= put_i64(p, &p->offsets, i);
            rc |= put_i64(p, &p->offsets, p->part_next[i]);
            rc |= stmt_row(&p->offsets);
        }
        if (p->pos[i] >= 0) {
            rc |= put_cstr(p, &p->positions, p->name);
            rc |= put_i64(p, &p->positions, i);
            rc |= put_i64(p, &p->positions, p->pos[i]);
            rc |= stmt_row(&p->positions);
        }
    }
    if (rc) return TL_ENOMEM;
    if ((rc = tl_pg_exec(p->pg, "BEGIN")) ||
        (rc = stmt_exec(p, &p->timeline)) || (rc = stmt_exec(p, &p->convs)) ||
        (rc = stmt_exec(p, &p->custs)) || (rc = stmt_exec(p, &p->idents)) ||
        (rc = stmt_exec(p, &p->offsets)) || (rc = stmt_exec(p, &p->positions)) ||
        (rc = tl_pg_exec(p->pg, "COMMIT"))) {
        if (p->pg && PQstatus(p->pg) == CONNECTION_OK) tl_pg_exec(p->pg, "ROLLBACK");
        return rc;
    }
    tl_metric_add(TL_M_projection_rows_total, (uint64_t)n);
    tl_metric_add(TL_M_projection_batches_total, 1);
    return TL_OK;
}

/* (Re)connects to PostgreSQL, waiting with backoff; 0, or -1 when stopping. */
static int ensure_pg(tl_projection_t *p) {
    int backoff = 100, err;
    while (!p->pg || PQstatus(p->pg) != CONNECTION_OK) {
        if (atomic_load(&p->stop)) return -1;
        PQfinish(p->pg);
        p->pg = tl_pg_connect(p->cfg->pg_dsn, &err);
        if (p->pg) break;
        usleep((useconds_t)backoff * 1000);
        if (backoff < 5000) backoff *= 2;
    }
    return 0;
}

/* Sets each partition's offset to the one stored in PostgreSQL. */
static int load_offsets(tl_projection_t *p, rd_kafka_topic_partition_list_t *parts) {
    if (ensure_pg(p)) return -1;
    for (int i = 0; i < parts->cnt; i++) {
        char part[16];
        snprintf(part, sizeof part, "%d", (int)parts->elems[i].partition);
        const char *vals[] = {p->name, parts->elems[i].topic, part};
        PGresult *r = PQexecParams(p->pg,
                                   "SELECT next_offset FROM projection_offsets "
                                   "WHERE consumer = $1 AND topic = $2 AND partition = $3::int",
                                   3, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            tl_warn("projection", "%s: reading offsets: %s", p->name, PQerrorMessage(p->pg));
            PQclear(r);
            return TL_EPG;
        }
        parts->elems[i].offset = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                                              : RD_KAFKA_OFFSET_BEGINNING;
        PQclear(r);
    }
    return TL_OK;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    tl_projection_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        while (load_offsets(p, parts) != TL_OK) {
            if (atomic_load(&p->stop)) break;
            PQfinish(p->pg);
            p->pg = NULL;
            usleep(200000);
        }
        rd_kafka_assign(rk, parts);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* After a failed batch: go back to what PostgreSQL says we have applied. */
static void rewind_to_stored(tl_projection_t *p) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(p->consumer, &parts) || !parts) return;
    while (load_offsets(p, parts) != TL_OK && !atomic_load(&p->stop)) {
        PQfinish(p->pg);
        p->pg = NULL;
        usleep(200000);
    }
    rd_kafka_error_t *e = rd_kafka_seek_partitions(p->consumer, parts, 10000);
    if (e) rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(parts);
}

static void *projection_main(void *arg) {
    tl_projection_t *p = arg;
    int cap = (int)p->cfg->batch, backoff = 100;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, tl_kafka_topic(p->kafka, TL_TOPIC_CHANGES), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(p->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);

    while (!atomic_load(&p->stop)) {
        int n = 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, 100);
        /* Gather for batch_ms after the first record: one transaction per
         * larger batch costs far less than one per trickle. */
        int64_t deadline = tl_kafka_now_ms() + p->cfg->batch_ms;
        while (m) {
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    tl_warn("projection", "%s: consume: %s", p->name, rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
            } else {
                p->batch[n++] = m;
            }
            if (n == cap) break;
            m = rd_kafka_consumer_poll(p->consumer, tl_kafka_left_ms(deadline));
        }
        if (!n) continue;
        if (ensure_pg(p)) {
            for (int i = 0; i < n; i++) rd_kafka_message_destroy(p->batch[i]);
            break;
        }
        int rc = write_batch(p, n);
        for (int i = 0; i < n; i++) rd_kafka_message_destroy(p->batch[i]);
        if (rc) {
            tl_metric_add(TL_M_projection_errors_total, 1);
            tl_warn("projection", "%s: batch rolled back (%s); retrying from stored offsets",
                    p->name, tl_strerror(rc));
            if (rc == TL_EPG_DOWN) {
                PQfinish(p->pg);
                p->pg = NULL;
            }
            usleep((useconds_t)backoff * 1000);
            if (backoff < 5000) backoff *= 2;
            rewind_to_stored(p);
        } else {
            backoff = 100;
        }
    }
    rd_kafka_consumer_close(p->consumer);
    return NULL;
}

int tl_projection_start(tl_kafka_t *kafka, const tl_config_t *cfg, const char *name,
                        tl_projection_t **out) {
    char group[128], suffix[64];
    int rc = TL_ENOMEM;
    tl_projection_t *p = calloc(1, sizeof *p);
    if (!p) return TL_ENOMEM;
    p->kafka = kafka;
    p->cfg = cfg;
    snprintf(p->name, sizeof p->name, "%s", name);
    tl_buf_init(&p->arena);
    stmt_init(&p->timeline, 14, timeline_casts,
              "INSERT INTO view_agent (tenant_id, event_id, conversation_id, customer_id, kind, platform,"
              " source_label, effective_ts, occurred_at, received_at, source_partition, source_offset,"
              " idempotency_key, body) VALUES ",
              " ON CONFLICT (tenant_id, event_id, part) DO NOTHING");
    stmt_init(&p->convs, 9, conv_casts,
              "INSERT INTO conversations AS c (tenant_id, conversation_id, customer_id, status, version,"
              " opened_at, last_activity, platforms, item_count) VALUES ",
              " ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET"
              " version = GREATEST(c.version, EXCLUDED.version),"
              " opened_at = LEAST(c.opened_at, EXCLUDED.opened_at),"
              " last_activity = GREATEST(c.last_activity, EXCLUDED.last_activity),"
              " status = CASE WHEN c.status = 'closed' OR EXCLUDED.status = 'closed'"
              "          THEN 'closed' ELSE 'open' END,"
              " platforms = ARRAY(SELECT DISTINCT unnest(c.platforms || EXCLUDED.platforms) ORDER BY 1),"
              " item_count = c.item_count + EXCLUDED.item_count");
    stmt_init(&p->custs, 6, cust_casts,
              "INSERT INTO customers AS c (tenant_id, customer_id, version, platforms, first_seen,"
              " last_activity) VALUES ",
              " ON CONFLICT (tenant_id, customer_id) DO UPDATE SET"
              " version = GREATEST(c.version, EXCLUDED.version),"
              " platforms = ARRAY(SELECT DISTINCT unnest(c.platforms || EXCLUDED.platforms) ORDER BY 1),"
              " first_seen = LEAST(c.first_seen, EXCLUDED.first_seen),"
              " last_activity = GREATEST(c.last_activity, EXCLUDED.last_activity)");
    stmt_init(&p->idents, 4, ident_casts,
              "INSERT INTO identities (tenant_id, platform, platform_user_id, customer_id) VALUES ",
              " ON CONFLICT DO NOTHING");
    stmt_init(&p->offsets, 4, off_casts,
              "INSERT INTO projection_offsets (consumer, topic, partition, next_offset) VALUES ",
              " ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset");
    stmt_init(&p->positions, 3, pos_casts,
              "INSERT INTO projection_positions AS p (consumer, partition, source_offset) VALUES ",
              " ON CONFLICT (consumer, partition) DO UPDATE SET"
              " source_offset = GREATEST(p.source_offset, EXCLUDED.source_offset)");
    p->batch = calloc((size_t)cfg->batch, sizeof *p->batch);
    p->conv = calloc((size_t)cfg->batch, sizeof *p->conv);
    p->cust = calloc((size_t)cfg->batch, sizeof *p->cust);
    if (!p->batch || !p->conv || !p->cust || !p->timeline.offs || !p->idents.offs) goto fail;
    if (!(p->ch_codec = tl_change_codec_new(&rc)) || !(p->ev_codec = tl_codec_new_event(&rc))) goto fail;

    rc = TL_EKAFKA;
    snprintf(suffix, sizeof suffix, "proj-%s", name);
    tl_kafka_group(kafka, suffix, group, sizeof group);
    if (!(p->consumer = tl_kafka_consumer_new(kafka, "projection", group, cfg->instance,
                                              on_rebalance, p)))
        goto fail;
    if (pthread_create(&p->thread, NULL, projection_main, p) != 0) goto fail;
    *out = p;
    return TL_OK;

fail:
    if (p->consumer) rd_kafka_destroy(p->consumer);
    tl_codec_free(p->ch_codec);
    tl_codec_free(p->ev_codec);
    free(p->batch);
    free(p->conv);
    free(p->cust);
    stmt_close(&p->timeline); stmt_close(&p->convs); stmt_close(&p->custs);
    stmt_close(&p->idents); stmt_close(&p->offsets); stmt_close(&p->positions);
    tl_buf_close(&p->arena);
    free(p);
    return rc;
}

void tl_projection_stop(tl_projection_t *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    rd_kafka_destroy(p->consumer);
    PQfinish(p->pg);
    tl_codec_free(p->ch_codec);
    tl_codec_free(p->ev_codec);
    free(p->batch);
    free(p->conv);
    free(p->cust);
    stmt_close(&p->timeline); stmt_close(&p->convs); stmt_close(&p->custs);
    stmt_close(&p->idents); stmt_close(&p->offsets); stmt_close(&p->positions);
    tl_buf_close(&p->arena);
    free(p);
}
