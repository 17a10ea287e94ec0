/*
 * projection.c -- the projection workers (see projection.h).
 *
 * A batch is one PostgreSQL transaction.  View rows, conversation and
 * customer aggregates, offsets and positions go in one prepared statement
 * (batch_sql): each table's rows travel as one binary array per column,
 * unnested by data-modifying WITH queries, so PostgreSQL parses and plans
 * the batch once per connection and a batch is one round trip.  The rare
 * per-event statements (an assignment, a tag, a close, a field's new value,
 * a conflict) run one by one before it, in log order, inside a transaction
 * the first of them opens and the batch statement joins, which keeps their
 * effects ordered without merging them by hand.  Decoded strings live in
 * the codecs' storage only until the next decode, so everything a row
 * needs is copied (into the column arrays, or `arena` for the per-event
 * statements) before the next Change is decoded.
 *
 * PostgreSQL down: the failed batch rolls back, the worker pauses its
 * partitions (still polling, so it stays in its group), reconnects with
 * backoff, seeks to the offsets stored in PostgreSQL and resumes.
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
#include "view.h"

#define MAX_PARTS 1024
#define MAX_COLS 16

/* The rows of one table in a batch, as one PostgreSQL array per column in
 * the binary wire format that the batch statement unnests back into rows
 * (see batch_sql).  Binary, because parsing text array literals
 * (array_in, its quoting and its per-element input functions) was a sixth
 * of PostgreSQL's work for a view; a binary element is a length and the
 * bytes, an integer is its eight (or four) bytes. */
typedef struct stmt {
    tl_buf_t col[MAX_COLS];     /* ARR_HDR bytes kept for the header, then the elements */
    char type[MAX_COLS];        /* 't' text, 'i' int4, 'b' int8, 'j' jsonb */
    int hasnull[MAX_COLS];
    int ncols, nrows, at;       /* at: the next column of the row being added */
    int failed;                 /* out of memory while adding */
} stmt_t;

#define ARR_HDR 20              /* ndim, flags, element type, length, lower bound */
typedef struct conv_agg {
    char tenant[72], id[40], customer[40];
    int64_t version, opened_at, last_activity, items;
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
    tl_projection_spec_t spec;
    tl_profile_t *pf;
    char name[64];                      /* the consumer */
    char table[64];
    pthread_t thread;
    int has_thread;
    uint64_t conn_gen;                  /* counts connections made */
    int skip_rows;                      /* store offsets only (a refused Change) */
    atomic_int stop;
    rd_kafka_t *consumer;
    PGconn *pg;
    tl_codec_t *ch_codec, *ev_codec;
    tl_buf_t arena;
    stmt_t rows, convs, custs, offsets, positions;
    conv_agg_t *conv;
    cust_agg_t *cust;
    int nconv, ncust, cap;
    rd_kafka_message_t **batch;
    int last_n;                         /* the previous batch's size */
    char *batch_sql;                    /* see batch_sql() */
    uint64_t batch_prep_conn;           /* the connection it was prepared on */
    int in_txn;                         /* BEGIN sent for this batch */
    int64_t part_next[MAX_PARTS];       /* next offset per .changes partition, this batch */
    int64_t pos[MAX_PARTS];             /* max source offset per .events partition */
};

static const tl_platform_t view_platforms[] = {
    TL_PLATFORM_AGENT, TL_PLATFORM_WEB, TL_PLATFORM_APP, TL_PLATFORM_MINI_PROGRAM,
    TL_PLATFORM_WECHAT, TL_PLATFORM_DOUYIN, TL_PLATFORM_PHONE,
};

const tl_platform_t *tl_projection_platforms(size_t *n) {
    *n = sizeof view_platforms / sizeof *view_platforms;
    return view_platforms;
}

int tl_projection_parse_views(const char *list, tl_platform_t *out, size_t *n, char *err,
                              size_t errlen) {
    *n = 0;
    if (!list || !*list || strcmp(list, "all") == 0) {
        size_t k;
        const tl_platform_t *all = tl_projection_platforms(&k);
        memcpy(out, all, k * sizeof *all);
        *n = k;
        return TL_OK;
    }
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        tl_platform_t pl;
        int known = 0;
        if (tl_platform_from_slug(p, len, &pl) == 0)
            for (size_t i = 0; i < sizeof view_platforms / sizeof *view_platforms; i++)
                known |= view_platforms[i] == pl;
        if (!known) {
            snprintf(err, errlen, "--views: \"%.*s\" is not a view (agent, web, app, mini_program, "
                     "wechat, douyin, phone)", (int)len, p);
            return TL_ECONFIG;
        }
        for (size_t i = 0; i < *n; i++)
            if (out[i] == pl) {
                snprintf(err, errlen, "--views: \"%.*s\" named twice", (int)len, p);
                return TL_ECONFIG;
            }
        out[(*n)++] = pl;
        p += len;
        if (*p == ',') p++;
    }
    return TL_OK;
}

static void be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

/* types: one letter per column (see stmt_t). */
static void stmt_init(stmt_t *s, const char *types) {
    memset(s, 0, sizeof *s);
    s->ncols = (int)strlen(types);
    memcpy(s->type, types, (size_t)s->ncols);
    for (int c = 0; c < s->ncols; c++) tl_buf_init(&s->col[c]);
}

static void stmt_close(stmt_t *s) {
    for (int c = 0; c < s->ncols; c++) tl_buf_close(&s->col[c]);
}

static void stmt_reset(stmt_t *s) {
    static const unsigned char hdr[ARR_HDR];
    s->failed = 0;
    for (int c = 0; c < s->ncols; c++) {
        tl_buf_reset(&s->col[c]);
        s->hasnull[c] = 0;
        if (tl_buf_append(&s->col[c], hdr, ARR_HDR)) s->failed = 1;
    }
    s->nrows = s->at = 0;
}

/* Appends the next column's element: len bytes of v (text or jsonb), or
 * NULL when v is NULL.  A value ends at a NUL byte, as it did when each
 * value was a parameter of its own (a C string), so the rows are the
 * same.  Records out-of-memory in s. */
static int stmt_put(stmt_t *s, const char *v, size_t len) {
    int c = s->at++;
    tl_buf_t *b = &s->col[c];
    unsigned char n[5];
    int rc;
    if (!v) {
        be32(n, 0xffffffffu);
        s->hasnull[c] = 1;
        rc = tl_buf_append(b, n, 4);
    } else {
        len = strnlen(v, len);
        int jsonb = s->type[c] == 'j';
        be32(n, (uint32_t)(len + (size_t)jsonb));
        n[4] = 1;   /* jsonb's binary input: version 1, then the text */
        rc = tl_buf_append(b, n, 4 + (size_t)jsonb) | tl_buf_append(b, v, len);
    }
    if (rc) s->failed = 1;
    return rc ? TL_ENOMEM : TL_OK;
}

static int put_str(stmt_t *s, tl_str_t v) { return stmt_put(s, v.ptr, v.len); }
static int put_cstr(stmt_t *s, const char *v) { return stmt_put(s, v, v ? strlen(v) : 0); }
static int put_i64(stmt_t *s, int64_t v) {
    int c = s->at++;
    unsigned char n[12];
    size_t w = s->type[c] == 'i' ? 4 : 8;
    be32(n, (uint32_t)w);
    if (w == 4) {
        be32(n + 4, (uint32_t)(int32_t)v);
    } else {
        be32(n + 4, (uint32_t)((uint64_t)v >> 32));
        be32(n + 8, (uint32_t)v);
    }
    if (tl_buf_append(&s->col[c], n, 4 + w)) {
        s->failed = 1;
        return TL_ENOMEM;
    }
    return TL_OK;
}

/* Closes a row (every column has its element). */
static int stmt_row(stmt_t *s) {
    s->at = 0;
    s->nrows++;
    return s->failed ? TL_ENOMEM : TL_OK;
}

/* Writes each column's array header and appends the columns to vals and
 * lens (its ncols parameters of the batch statement, binary format).  An
 * empty column is the zero-dimensional array. */
static int stmt_params(stmt_t *s, const char **vals, int *lens) {
    if (s->failed) return TL_ENOMEM;
    for (int c = 0; c < s->ncols; c++) {
        unsigned char *h = (unsigned char *)s->col[c].data;
        uint32_t oid = s->type[c] == 'i' ? 23 : s->type[c] == 'b' ? 20 : s->type[c] == 'j' ? 3802 : 25;
        be32(h, s->nrows ? 1 : 0);
        be32(h + 4, (uint32_t)s->hasnull[c]);
        be32(h + 8, oid);
        be32(h + 12, (uint32_t)s->nrows);
        be32(h + 16, 1);
        vals[c] = s->col[c].data;
        lens[c] = s->nrows ? (int)s->col[c].len : 12;
    }
    return TL_OK;
}

#define BATCH_PARAMS (15 + 8 + 6 + 4 + 3)

/* The batch statement: the view rows, the conversation and customer
 * aggregates, the offsets and the positions of a batch, each table's rows
 * given as one array per column, as data-modifying WITH queries of one
 * statement.  Its text never changes, so it is prepared (parsed and
 * planned) once per connection, where multi-row VALUES lists of a new
 * length had to be parsed and planned every time; and a batch that has no
 * per-event statement is this one statement -- its own transaction, one
 * round trip -- instead of BEGIN, five statements and COMMIT.  A table
 * with no rows gets empty arrays.  Caller frees. */
static char *batch_sql(const char *table) {
    tl_buf_t b;
    tl_buf_init(&b);
    char rows[1024];
    snprintf(rows, sizeof rows,
             "WITH v AS (INSERT INTO %s (tenant_id, event_id, part, conversation_id, customer_id, kind,"
             " platform, source_label, effective_ts, occurred_at, received_at, source_partition,"
             " source_offset, idempotency_key, body)"
             " SELECT t, e, pt, cv, cu, k, pl, sl, to_timestamp(ef/1e3::float8), to_timestamp(oc/1e3::float8),"
             " to_timestamp(rc/1e3::float8), sp, so, ik, b"
             " FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],"
             " $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::int[],"
             " $13::bigint[], $14::text[], $15::jsonb[])"
             " AS r(t, e, pt, cv, cu, k, pl, sl, ef, oc, rc, sp, so, ik, b)"
             " ON CONFLICT (tenant_id, event_id, part) DO NOTHING), ", table);
    tl_buf_puts(&b, rows);
    tl_buf_puts(&b,
        "cv AS (INSERT INTO conversations AS c (tenant_id, conversation_id, customer_id, version,"
        " opened_at, last_activity, platforms, item_count)"
        " SELECT t, id, cu, v, to_timestamp(o/1e3::float8), to_timestamp(l/1e3::float8), pl::text[], n"
        " FROM unnest($16::text[], $17::text[], $18::text[], $19::bigint[], $20::bigint[], $21::bigint[],"
        " $22::text[], $23::bigint[]) AS r(t, id, cu, v, o, l, pl, n)"
        " ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET"
        " version = GREATEST(c.version, EXCLUDED.version),"
        " opened_at = LEAST(c.opened_at, EXCLUDED.opened_at),"
        " last_activity = GREATEST(c.last_activity, EXCLUDED.last_activity),"
        " platforms = CASE WHEN c.platforms @> EXCLUDED.platforms THEN c.platforms"
        " ELSE ARRAY(SELECT DISTINCT unnest(c.platforms || EXCLUDED.platforms) ORDER BY 1) END,"
        " item_count = c.item_count + EXCLUDED.item_count), "
        "cs AS (INSERT INTO customers AS c (tenant_id, customer_id, version, platforms, first_seen,"
        " last_activity)"
        " SELECT t, id, v, pl::text[], to_timestamp(f/1e3::float8), to_timestamp(l/1e3::float8)"
        " FROM unnest($24::text[], $25::text[], $26::bigint[], $27::text[], $28::bigint[], $29::bigint[])"
        " AS r(t, id, v, pl, f, l)"
        " ON CONFLICT (tenant_id, customer_id) DO UPDATE SET"
        " version = GREATEST(c.version, EXCLUDED.version),"
        " platforms = CASE WHEN c.platforms @> EXCLUDED.platforms THEN c.platforms"
        " ELSE ARRAY(SELECT DISTINCT unnest(c.platforms || EXCLUDED.platforms) ORDER BY 1) END,"
        " first_seen = LEAST(c.first_seen, EXCLUDED.first_seen),"
        " last_activity = GREATEST(c.last_activity, EXCLUDED.last_activity)), "
        "o AS (INSERT INTO projection_offsets (consumer, topic, partition, next_offset)"
        " SELECT * FROM unnest($30::text[], $31::text[], $32::int[], $33::bigint[])"
        " ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset) "
        "INSERT INTO projection_positions AS p (consumer, partition, source_offset)"
        " SELECT * FROM unnest($34::text[], $35::int[], $36::bigint[])"
        " ON CONFLICT (consumer, partition) DO UPDATE SET"
        " source_offset = GREATEST(p.source_offset, EXCLUDED.source_offset)");
    return b.data;
}

/* Runs the batch statement on what the batch gathered (preparing it first
 * on a connection that has not seen it). */
static int batch_exec(tl_projection_t *p) {
    if (!p->pg) return TL_EPG_DOWN;
    const char *vals[BATCH_PARAMS];
    int lens[BATCH_PARAMS], fmts[BATCH_PARAMS];
    int rc = stmt_params(&p->rows, vals, lens);
    if (!rc) rc = stmt_params(&p->convs, vals + 15, lens + 15);
    if (!rc) rc = stmt_params(&p->custs, vals + 23, lens + 23);
    if (!rc) rc = stmt_params(&p->offsets, vals + 29, lens + 29);
    if (!rc) rc = stmt_params(&p->positions, vals + 33, lens + 33);
    if (rc) return rc;
    for (int i = 0; i < BATCH_PARAMS; i++) fmts[i] = 1;
    PGresult *r;
    if (p->batch_prep_conn != p->conn_gen) {
        r = PQprepare(p->pg, "tl_view_batch", p->batch_sql, 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) tl_warn("projection", "%s: prepare: %s", p->name, PQerrorMessage(p->pg));
        rc = ok ? TL_OK : tl_pg_err(p->pg, r);
        PQclear(r);
        if (rc) return rc;
        p->batch_prep_conn = p->conn_gen;
    }
    r = PQexecPrepared(p->pg, "tl_view_batch", BATCH_PARAMS, vals, lens, fmts, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = tl_pg_err(p->pg, r);
        tl_warn("projection", "%s: %s", p->name, PQerrorMessage(p->pg));
    }
    PQclear(r);
    return rc;
}

/* Adds slug to set, a PostgreSQL array literal "{app,web}" (slugs are
 * [a-z_], so no quoting is needed) kept sorted, as the aggregate upserts
 * keep the stored arrays (batch_sql); does nothing if it is already there
 * or the set is full. */
static void platforms_add(char *set, size_t n, const char *slug) {
    size_t len = strlen(slug), used = strlen(set);
    if (used == 0) {
        snprintf(set, n, "{%s}", slug);
        return;
    }
    if (used + len + 2 > n) return;
    char *p = set + 1;          /* the first item not sorting before slug, or the '}' */
    while (*p && *p != '}') {
        size_t item = strcspn(p, ",}");
        int cmp = strncmp(p, slug, item < len ? item : len);
        if (cmp == 0 && item == len) return;
        if (cmp > 0 || (cmp == 0 && item > len)) break;
        p += item;
        if (*p == ',') p++;
    }
    char out[256];
    size_t at = (size_t)(p - set);
    if (*p == '}')      /* last: "{a,b" + ",slug" + "}" */
        snprintf(out, sizeof out, "%.*s,%s}", (int)at, set, slug);
    else                /* before an item: "{a," + "slug," + "c}" */
        snprintf(out, sizeof out, "%.*s%s,%s", (int)at, set, slug, p);
    size_t olen = strlen(out);
    if (olen < n) memcpy(set, out, olen + 1);
}

/* Runs one statement of the batch's transaction. */
static int exec_params(tl_projection_t *p, const char *sql, int n, const char *const *vals) {
    if (!p->pg) return TL_EPG_DOWN;
    if (!p->in_txn) {
        /* The batch statement that ends the batch joins this transaction. */
        int rc = tl_pg_exec(p->pg, "BEGIN");
        if (rc) return rc;
        p->in_txn = 1;
    }
    PGresult *r = PQexecParams(p->pg, sql, n, NULL, vals, NULL, NULL, 0);
    int rc = TL_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = tl_pg_err(p->pg, r);
        tl_warn("projection", "%s: %s", p->name, PQerrorMessage(p->pg));
    }
    PQclear(r);
    return rc;
}

/* A NUL-terminated copy of s in the arena, for exec_params; NULL stays
 * NULL.  The arena may move: take pointers only once every value of a
 * statement is in (see sv_ptrs). */
typedef struct sv { size_t off[16]; int n; } sv_t;
static int sv_put(tl_projection_t *p, sv_t *v, const char *s, size_t len) {
    if (!s) {
        v->off[v->n++] = SIZE_MAX;
        return TL_OK;
    }
    v->off[v->n++] = p->arena.len;
    return tl_buf_append(&p->arena, s, len) || tl_buf_append(&p->arena, "", 1) ? TL_ENOMEM : TL_OK;
}
static int sv_str(tl_projection_t *p, sv_t *v, tl_str_t s) { return sv_put(p, v, s.ptr, s.len); }
static int sv_cstr(tl_projection_t *p, sv_t *v, const char *s) { return sv_put(p, v, s, s ? strlen(s) : 0); }
static int sv_i64(tl_projection_t *p, sv_t *v, int64_t x) {
    char n[24];
    return sv_put(p, v, n, (size_t)snprintf(n, sizeof n, "%lld", (long long)x));
}
static int sv_exec(tl_projection_t *p, sv_t *v, const char *sql) {
    const char *vals[16];
    for (int i = 0; i < v->n; i++) vals[i] = v->off[i] == SIZE_MAX ? NULL : p->arena.data + v->off[i];
    return exec_params(p, sql, v->n, vals);
}

/* A PostgreSQL array literal of strs: {"a","b\"c"}. */
static char *pg_array(tl_strs_t strs) {
    tl_buf_t b;
    tl_buf_init(&b);
    tl_buf_puts(&b, "{");
    for (size_t i = 0; i < strs.n; i++) {
        tl_buf_puts(&b, i ? ",\"" : "\"");
        for (size_t k = 0; k < strs.v[i].len; k++) {
            char c = strs.v[i].ptr[k];
            if (c == '"' || c == '\\') tl_buf_append(&b, "\\", 1);
            tl_buf_append(&b, &c, 1);
        }
        tl_buf_puts(&b, "\"");
    }
    tl_buf_puts(&b, "}");
    return b.data;
}

/* The Conversation* events: their effect on the conversation row, in log
 * order.  An insert when the row does not exist yet (the aggregate upsert
 * of the batch fills in the rest). */
static int conversation_event(tl_projection_t *p, const tl_change_t *ch, const tl_event_t *ev) {
    sv_t v = {.n = 0};
    int rc = 0;
    rc |= sv_str(p, &v, ch->tenant_id);
    rc |= sv_str(p, &v, ch->conversation_id);
    rc |= sv_str(p, &v, ch->customer_id);
    rc |= sv_i64(p, &v, ch->conversation_version);
    rc |= sv_i64(p, &v, ch->effective_ts);
    if (ev->kind == TL_EV_CONVERSATION_ASSIGNED) {
        rc |= sv_str(p, &v, ev->u.assign.agent_id);
        rc |= sv_str(p, &v, ev->u.assign.team_id);
        if (rc) return TL_ENOMEM;
        return sv_exec(p, &v,
            "INSERT INTO conversations AS c (tenant_id, conversation_id, customer_id, version, opened_at,"
            " last_activity, assignee, team) VALUES ($1, $2, $3, $4::bigint,"
            " to_timestamp($5::bigint/1000.0), to_timestamp($5::bigint/1000.0), $6, $7)"
            " ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET"
            " assignee = EXCLUDED.assignee, team = EXCLUDED.team");
    }
    if (ev->kind == TL_EV_CONVERSATION_TAGGED) {
        char *added = pg_array(ev->u.tag.added), *removed = pg_array(ev->u.tag.removed);
        rc |= !added || !removed;
        rc |= sv_cstr(p, &v, added);
        rc |= sv_cstr(p, &v, removed);
        free(added);
        free(removed);
        if (rc) return TL_ENOMEM;
        return sv_exec(p, &v,
            "INSERT INTO conversations AS c (tenant_id, conversation_id, customer_id, version, opened_at,"
            " last_activity, tags) VALUES ($1, $2, $3, $4::bigint, to_timestamp($5::bigint/1000.0),"
            " to_timestamp($5::bigint/1000.0),"
            " ARRAY(SELECT DISTINCT t FROM unnest($6::text[]) t WHERE t <> ALL($7::text[]) ORDER BY 1))"
            " ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET"
            " tags = ARRAY(SELECT DISTINCT t FROM unnest(c.tags || $6::text[]) t"
            "              WHERE t <> ALL($7::text[]) ORDER BY 1)");
    }
    if (ev->kind == TL_EV_CONVERSATION_CLOSED) {
        rc |= sv_str(p, &v, ev->u.close.reason);
        rc |= sv_str(p, &v, ev->u.close.closed_by);
        if (rc) return TL_ENOMEM;
        return sv_exec(p, &v,
            "INSERT INTO conversations AS c (tenant_id, conversation_id, customer_id, version, opened_at,"
            " last_activity, status, closed_at, close_reason, closed_by) VALUES ($1, $2, $3, $4::bigint,"
            " to_timestamp($5::bigint/1000.0), to_timestamp($5::bigint/1000.0), 'closed',"
            " to_timestamp($5::bigint/1000.0), $6, $7)"
            " ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET status = 'closed',"
            " closed_at = EXCLUDED.closed_at, close_reason = EXCLUDED.close_reason,"
            " closed_by = EXCLUDED.closed_by");
    }
    return TL_OK;
}

/* A JSON string of s; NUL bytes (which jsonb refuses) become U+FFFD. */
static json_t *jstr(tl_str_t s) {
    if (!s.ptr) return json_null();
    tl_buf_t b;
    tl_buf_init(&b);
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i]) tl_buf_append(&b, s.ptr + i, 1);
        else tl_buf_puts(&b, "\xef\xbf\xbd");
    }
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    tl_buf_close(&b);
    return j ? j : json_null();
}

/* The Change's fold changes: customer_fields and the conflict queue. */
static int fold_changes(tl_projection_t *p, const tl_change_t *ch, const tl_event_t *ev) {
    for (size_t i = 0; i < ch->nfold_changes; i++) {
        tl_change_fold_t fc;
        if (tl_change_fold_get(ch, i, &fc)) continue;
        char kind[32];
        snprintf(kind, sizeof kind, "%.*s", (int)fc.kind.len, fc.kind.ptr ? fc.kind.ptr : "");
        sv_t v = {.n = 0};
        int rc = 0;
        rc |= sv_str(p, &v, ch->tenant_id);
        if (strcmp(kind, "field_set") == 0 || strcmp(kind, "field_reverted") == 0) {
            int has = fc.platform.ptr != NULL && fc.value.ptr != NULL;
            rc |= sv_str(p, &v, ch->customer_id);
            rc |= sv_str(p, &v, fc.field);
            rc |= sv_str(p, &v, has ? fc.value : TL_STR_NULL);
            rc |= sv_cstr(p, &v, fc.is_key ? "true" : "false");
            rc |= sv_i64(p, &v, has ? fc.version : ch->customer_version);
            rc |= sv_i64(p, &v, has ? fc.effective_ts : ch->effective_ts);
            if (has) {
                rc |= sv_str(p, &v, fc.platform);
                rc |= sv_str(p, &v, fc.event_id);
            } else {
                rc |= sv_cstr(p, &v, tl_platform_slug(ev->platform));
                rc |= sv_str(p, &v, ev->event_id);
            }
            if (rc) return TL_ENOMEM;
            rc = sv_exec(p, &v,
                "INSERT INTO customer_fields (tenant_id, customer_id, field, value, is_key, version,"
                " effective_ts, platform, event_id) VALUES ($1, $2, $3, $4, $5::boolean, $6::bigint,"
                " to_timestamp($7::bigint/1000.0), $8, $9)"
                " ON CONFLICT (tenant_id, customer_id, field) DO UPDATE SET value = EXCLUDED.value,"
                " is_key = EXCLUDED.is_key, version = EXCLUDED.version,"
                " effective_ts = EXCLUDED.effective_ts, platform = EXCLUDED.platform,"
                " event_id = EXCLUDED.event_id");
        } else if (strcmp(kind, "conflict_opened") == 0 || strcmp(kind, "conflict_candidate") == 0) {
            json_t *arr = json_array();
            for (size_t j = 0; j < fc.ncandidates; j++) {
                tl_change_candidate_t c;
                if (tl_change_candidate_get(ch, i, j, &c)) continue;
                json_t *o = json_object();
                json_object_set_new(o, "value", jstr(c.value));
                json_object_set_new(o, "platform", jstr(c.platform));
                json_object_set_new(o, "event_id", jstr(c.event_id));
                json_object_set_new(o, "effective_ts", json_integer(c.effective_ts));
                json_array_append_new(arr, o);
            }
            char *cj = json_dumps(arr, JSON_COMPACT);
            json_decref(arr);
            rc |= !cj;
            rc |= sv_str(p, &v, fc.conflict_id);
            rc |= sv_str(p, &v, ch->customer_id);
            rc |= sv_str(p, &v, fc.field);
            rc |= sv_cstr(p, &v, cj ? cj : "[]");
            rc |= sv_i64(p, &v, ch->effective_ts);
            rc |= sv_i64(p, &v, ch->customer_version);
            free(cj);
            if (rc) return TL_ENOMEM;
            rc = sv_exec(p, &v,
                "INSERT INTO conflicts (tenant_id, conflict_id, customer_id, field, status, candidates,"
                " opened_at, version) VALUES ($1, $2, $3, $4, 'open', $5::jsonb,"
                " to_timestamp($6::bigint/1000.0), $7::bigint)"
                " ON CONFLICT (tenant_id, conflict_id) DO UPDATE SET candidates = EXCLUDED.candidates,"
                " version = EXCLUDED.version");
        } else if (strcmp(kind, "conflict_resolved") == 0 || strcmp(kind, "conflict_withdrawn") == 0) {
            int resolved = kind[9] == 'r';
            rc |= sv_str(p, &v, fc.conflict_id);
            rc |= sv_str(p, &v, resolved ? fc.value : TL_STR_NULL);
            rc |= sv_str(p, &v, resolved && ev->kind == TL_EV_CONFLICT_RESOLVED ? ev->u.resolve.agent_id
                                                                                 : TL_STR_NULL);
            rc |= sv_i64(p, &v, ch->effective_ts);
            rc |= sv_i64(p, &v, ch->customer_version);
            rc |= sv_cstr(p, &v, resolved ? "resolved" : "withdrawn");
            if (rc) return TL_ENOMEM;
            rc = sv_exec(p, &v,
                "UPDATE conflicts SET status = $7, chosen_value = $3, resolved_by = $4,"
                " closed_at = to_timestamp($5::bigint/1000.0), version = $6::bigint"
                " WHERE tenant_id = $1 AND conflict_id = $2");
        }
        if (rc) return rc;
    }
    return TL_OK;
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

/* The unified tables' share of one Change (agent worker only). */
static int unified(tl_projection_t *p, const tl_change_t *ch, const tl_event_t *ev) {
    const char *slug = tl_platform_slug(ev->platform);
    cust_agg_t *cu = cust_get(p, ch);
    if (ch->customer_version > cu->version) cu->version = ch->customer_version;
    if (ch->effective_ts > cu->last_activity) cu->last_activity = ch->effective_ts;
    if (ch->effective_ts < cu->first_seen) cu->first_seen = ch->effective_ts;
    if (ev->platform != TL_PLATFORM_SYSTEM) platforms_add(cu->platforms, sizeof cu->platforms, slug);
    int rc = fold_changes(p, ch, ev);
    if (rc || !ch->conversation_id.ptr || ch->ignored.ptr) return rc;
    conv_agg_t *c = conv_get(p, ch);
    if (ch->conversation_version > c->version) c->version = ch->conversation_version;
    if (ch->effective_ts > c->last_activity) c->last_activity = ch->effective_ts;
    if (ch->effective_ts < c->opened_at) c->opened_at = ch->effective_ts;
    c->items++;
    platforms_add(c->platforms, sizeof c->platforms, slug);
    return conversation_event(p, ch, ev);
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
    if ((size_t)ch.source_partition < MAX_PARTS && ch.source_offset > p->pos[ch.source_partition])
        p->pos[ch.source_partition] = ch.source_offset;
    if (ch.duplicate) return TL_OK;
    if (tl_codec_decode_event(p->ev_codec, ch.event.ptr, ch.event.len, &ev)) {
        tl_error("projection", "%s: unreadable event in change [%d]@%lld", p->name, (int)m->partition,
                 (long long)m->offset);
        return TL_OK;
    }
    if (p->spec.unified && (rc = unified(p, &ch, &ev))) return rc;

    tl_view_rows_t rows = {0};
    if ((rc = tl_view_render(p->pf, &ch, &ev, &rows))) return rc;
    stmt_t *s = &p->rows;
    for (size_t i = 0; i < rows.n && !rc; i++) {
        const tl_view_row_t *r = &rows.v[i];
        rc |= put_str(s, ev.tenant_id);
        rc |= put_str(s, ev.event_id);
        rc |= put_i64(s, r->part);
        rc |= put_str(s, ch.conversation_id);
        rc |= put_str(s, ev.customer_id);
        rc |= put_cstr(s, r->kind);
        rc |= put_cstr(s, r->platform);
        rc |= put_cstr(s, r->source_label);
        rc |= put_i64(s, ch.effective_ts);
        rc |= put_i64(s, ev.occurred_at);
        rc |= put_i64(s, ev.received_at);
        rc |= put_i64(s, ch.source_partition);
        rc |= put_i64(s, ch.source_offset);
        rc |= put_str(s, ev.idempotency_key);
        rc |= put_cstr(s, r->body);
        if (rc == TL_OK) rc = stmt_row(s);
        if (rc && rc != TL_EPG_DOWN && rc != TL_EPG) rc = TL_ENOMEM;
    }
    tl_view_rows_close(&rows);
    return rc;
}

static void batch_reset(tl_projection_t *p) {
    tl_buf_reset(&p->arena);
    stmt_reset(&p->rows);
    stmt_reset(&p->convs);
    stmt_reset(&p->custs);
    stmt_reset(&p->offsets);
    stmt_reset(&p->positions);
    p->nconv = p->ncust = 0;
    for (int i = 0; i < MAX_PARTS; i++) p->part_next[i] = p->pos[i] = -1;
}

static int batch_body(tl_projection_t *p, rd_kafka_message_t **msgs, int n) {
    int rc = TL_OK;
    for (int i = 0; i < n && !rc; i++) {
        rd_kafka_message_t *m = msgs[i];
        if ((size_t)m->partition < MAX_PARTS) p->part_next[m->partition] = m->offset + 1;
        if (!p->skip_rows) rc = add_change(p, m);
    }
    if (rc) return rc;
    for (int i = 0; i < p->nconv && !rc; i++) {
        conv_agg_t *c = &p->conv[i];
        stmt_t *s = &p->convs;
        rc |= put_cstr(s, c->tenant);
        rc |= put_cstr(s, c->id);
        rc |= put_cstr(s, c->customer);
        rc |= put_i64(s, c->version);
        rc |= put_i64(s, c->opened_at);
        rc |= put_i64(s, c->last_activity);
        rc |= put_cstr(s, c->platforms[0] ? c->platforms : "{}");
        rc |= put_i64(s, c->items);
        rc |= stmt_row(s);
    }
    for (int i = 0; i < p->ncust && !rc; i++) {
        cust_agg_t *c = &p->cust[i];
        stmt_t *s = &p->custs;
        rc |= put_cstr(s, c->tenant);
        rc |= put_cstr(s, c->id);
        rc |= put_i64(s, c->version);
        rc |= put_cstr(s, c->platforms[0] ? c->platforms : "{}");
        rc |= put_i64(s, c->first_seen);
        rc |= put_i64(s, c->last_activity);
        rc |= stmt_row(s);
    }
    const char *topic = tl_kafka_topic(p->kafka, TL_TOPIC_CHANGES);
    for (int i = 0; i < MAX_PARTS && !rc; i++) {
        if (p->part_next[i] >= 0) {
            rc |= put_cstr(&p->offsets, p->name);
            rc |= put_cstr(&p->offsets, topic);
            rc |= put_i64(&p->offsets, i);
            rc |= put_i64(&p->offsets, p->part_next[i]);
            rc |= stmt_row(&p->offsets);
        }
        if (p->pos[i] >= 0) {
            rc |= put_cstr(&p->positions, p->name);
            rc |= put_i64(&p->positions, i);
            rc |= put_i64(&p->positions, p->pos[i]);
            rc |= stmt_row(&p->positions);
        }
    }
    if (rc) return rc == TL_EPG_DOWN || rc == TL_EPG ? rc : TL_ENOMEM;
    return batch_exec(p);
}

int tl_projection_apply(tl_projection_t *p, rd_kafka_message_t **msgs, int n) {
    batch_reset(p);
    if (!p->pg || PQstatus(p->pg) != CONNECTION_OK) return TL_EPG_DOWN;
    /* One transaction: the batch statement alone is one (implicitly), and
     * a per-event statement opens an explicit one that the batch statement
     * joins (exec_params). */
    p->in_txn = 0;
    int rc = batch_body(p, msgs, n);
    if (!rc && p->in_txn) rc = tl_pg_exec(p->pg, "COMMIT");
    if (rc) {
        if (p->in_txn && p->pg && PQstatus(p->pg) == CONNECTION_OK) tl_pg_exec(p->pg, "ROLLBACK");
        p->in_txn = 0;
        if (p->pg && PQstatus(p->pg) != CONNECTION_OK) rc = TL_EPG_DOWN;
        return rc;
    }
    tl_metric_add(TL_M_projection_rows_total, (uint64_t)n);
    tl_metric_add(TL_M_projection_batches_total, 1);
    return TL_OK;
}

/* A projection commit need not wait for its WAL flush: rows and offsets
 * share the transaction, so a commit that a PostgreSQL crash forgets takes
 * its offsets with it and the worker projects those Changes again from
 * the log.  Exactly-once in effect holds; only durability of the last few
 * hundred milliseconds is traded for not waiting on fsync per batch. */
static void session_setup(tl_projection_t *p) {
    p->conn_gen++;      /* prepared statements are per connection */
    if (tl_pg_exec(p->pg, "SET synchronous_commit = off"))
        tl_warn("projection", "%s: synchronous_commit stays on", p->name);
    /* The batch statements' plans do not depend on their array
     * parameters: plan them once, not once per execution for the first
     * five as PostgreSQL would by default. */
    if (tl_pg_exec(p->pg, "SET plan_cache_mode = force_generic_plan"))
        tl_warn("projection", "%s: plan_cache_mode stays auto", p->name);
}

PGconn *tl_projection_pg(tl_projection_t *p, const atomic_int *stop) {
    int backoff = 100, err;
    while (!p->pg || PQstatus(p->pg) != CONNECTION_OK) {
        if (stop && atomic_load(stop)) return NULL;
        PQfinish(p->pg);
        p->pg = tl_pg_connect(p->cfg->pg_dsn, &err);
        if (p->pg && PQstatus(p->pg) == CONNECTION_OK) {
            session_setup(p);
            break;
        }
        usleep((useconds_t)backoff * 1000);
        if (backoff < 5000) backoff *= 2;
    }
    return p->pg;
}

/* Sets each partition's offset to the one stored in PostgreSQL. */
static int load_offsets(tl_projection_t *p, rd_kafka_topic_partition_list_t *parts) {
    if (!tl_projection_pg(p, &p->stop)) return TL_ESHUTDOWN;
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

/* load_offsets until it works or the worker stops. */
static int load_offsets_retry(tl_projection_t *p, rd_kafka_topic_partition_list_t *parts) {
    int rc;
    while ((rc = load_offsets(p, parts)) != TL_OK) {
        if (atomic_load(&p->stop)) return rc;
        PQfinish(p->pg);
        p->pg = NULL;
        usleep(200000);
    }
    return TL_OK;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    tl_projection_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        load_offsets_retry(p, parts);
        rd_kafka_assign(rk, parts);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* After a failed batch: pause, wait for PostgreSQL (polling, so the group
 * keeps us), then go back to what PostgreSQL says we have applied. */
static void recover(tl_projection_t *p, int rc) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    int backoff = 100;
    if (rd_kafka_assignment(p->consumer, &parts) || !parts) return;
    rd_kafka_pause_partitions(p->consumer, parts);
    if (rc == TL_EPG_DOWN) {
        PQfinish(p->pg);
        p->pg = NULL;
    }
    for (;;) {
        int64_t until = tl_kafka_now_ms() + backoff;
        while (tl_kafka_left_ms(until) > 0) {
            /* Fetched before the pause: the seek below reads them again. */
            rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, tl_kafka_left_ms(until));
            if (m) rd_kafka_message_destroy(m);
        }
        if (atomic_load(&p->stop)) break;
        int err;
        if (!p->pg || PQstatus(p->pg) != CONNECTION_OK) {
            PQfinish(p->pg);
            p->pg = tl_pg_connect(p->cfg->pg_dsn, &err);
            if (p->pg && PQstatus(p->pg) == CONNECTION_OK) session_setup(p);
        }
        /* The assignment may have changed while we polled. */
        rd_kafka_topic_partition_list_destroy(parts);
        parts = NULL;
        if (rd_kafka_assignment(p->consumer, &parts) || !parts) return;
        if (p->pg && PQstatus(p->pg) == CONNECTION_OK && load_offsets(p, parts) == TL_OK) {
            rd_kafka_error_t *e = rd_kafka_seek_partitions(p->consumer, parts, 10000);
            if (e) {
                tl_warn("projection", "%s: seek: %s", p->name, rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            } else {
                break;
            }
        }
        if (backoff < 5000) backoff *= 2;
    }
    rd_kafka_resume_partitions(p->consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    tl_info("projection", "%s: resumed from the stored offsets", p->name);
}

/* Admission to PostgreSQL for this process's live workers: at most
 * --project-concurrency batches in flight (by default one per CPU), and a
 * waiting agent worker goes before the platform views.  Every Change
 * reaches all seven workers at once (a fold commit releases a batch to
 * each), and seven backends working at the same time on two cores made
 * each of them, the agent view's included, wait for the others; taking
 * turns costs no throughput (it measured slightly more: less switching,
 * and ingest gets its share) and it is what keeps the agent view's
 * latency in bounds once the machine is overloaded (p99 at 5,000/s offered,
 * six runs each: 475 to 1,172 ms, against 858 to 2,167 ms without).
 * Only the workers of tl_projection_start take part; a rebuild does not. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_busy, gate_agent_waiting;

static int gate_slots(const tl_config_t *cfg) {
    if (cfg->project_concurrency > 0) return (int)cfg->project_concurrency;
    if (cfg->project_concurrency < 0) return 0;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 2;
}

static void gate_enter(int slots, int agent) {
    if (!slots) return;
    pthread_mutex_lock(&gate_mu);
    if (agent) gate_agent_waiting++;
    while (gate_busy >= slots || (!agent && gate_agent_waiting))
        pthread_cond_wait(&gate_cv, &gate_mu);
    if (agent) gate_agent_waiting--;
    gate_busy++;
    pthread_mutex_unlock(&gate_mu);
}

static void gate_leave(int slots) {
    if (!slots) return;
    pthread_mutex_lock(&gate_mu);
    gate_busy--;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* A Change PostgreSQL keeps refusing (TL_EPG, not a lost connection) must
 * not stop the partition behind it.  After a refused batch the worker goes
 * on one Change per transaction for as many Changes as the batch held; a
 * single Change refused twice is skipped: its offset is stored without
 * rows, and it is logged with its position and counted.  The render is
 * pure, so a rebuild skips the same Change. */
typedef struct isolate {
    int single;                 /* Changes still to apply one by one */
    int32_t part;               /* the last single Change refused */
    int64_t off;
} isolate_t;

static void *projection_main(void *arg) {
    tl_projection_t *p = arg;
    int slots = gate_slots(p->cfg);
    char tname[16] = "tl-v-";   /* what top -H and perf show; 15 bytes at most */
    memcpy(tname + 5, p->name, strnlen(p->name, 10));
    pthread_setname_np(pthread_self(), tname);
    isolate_t iso = {0, -1, -1};
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, tl_kafka_topic(p->kafka, TL_TOPIC_CHANGES), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(p->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);

    while (!atomic_load(&p->stop)) {
        int n = 0, cap = iso.single ? 1 : p->cap;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, 100);
        /* The gathering window adapts: idle (the last batch was small),
         * take what has arrived and go, so an item waits for no timer;
         * under load (the last batch was at least half full), keep
         * gathering for batch_ms, since one transaction per larger batch
         * costs PostgreSQL far less than one per trickle.  Batches also
         * grow by themselves under load: what arrives during a commit is
         * all there for the next poll. */
        int64_t deadline = tl_kafka_now_ms() + (p->last_n * 2 >= p->cap ? p->cfg->batch_ms : 0);
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
        p->last_n = n;
        if (!n) continue;
        int rc = TL_ESHUTDOWN;
        if (tl_projection_pg(p, &p->stop)) {
            gate_enter(slots, p->spec.unified);
            rc = tl_projection_apply(p, p->batch, n);
            gate_leave(slots);
        }
        if (rc == TL_EPG && n == 1) {
            rd_kafka_message_t *one = p->batch[0];
            if (one->partition == iso.part && one->offset == iso.off) {
                p->skip_rows = 1;
                rc = tl_projection_apply(p, p->batch, 1);
                p->skip_rows = 0;
                if (rc == TL_OK) {
                    tl_metric_add(TL_M_projection_errors_total, 1);
                    tl_error("projection", "%s: change at %s[%d]@%lld refused twice by PostgreSQL; "
                             "skipped", p->name, rd_kafka_topic_name(one->rkt), (int)one->partition,
                             (long long)one->offset);
                }
            } else {
                iso.part = one->partition;
                iso.off = one->offset;
            }
        }
        for (int i = 0; i < n; i++) rd_kafka_message_destroy(p->batch[i]);
        if (rc == TL_ESHUTDOWN) break;
        if (rc) {
            tl_metric_add(TL_M_projection_errors_total, 1);
            if (rc == TL_EPG && !iso.single) iso.single = n;
            tl_warn("projection", "%s: batch rolled back (%s); pausing, then resuming from the stored "
                    "offsets%s", p->name, tl_strerror(rc), iso.single ? ", one change at a time" : "");
            recover(p, rc);
        } else if (iso.single) {
            iso.single--;
        }
    }
    rd_kafka_consumer_close(p->consumer);
    return NULL;
}

static int valid_table(const char *t) {
    if (!*t || strlen(t) >= 64) return 0;
    for (const char *c = t; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return 0;
    return 1;
}

int tl_projection_new(tl_kafka_t *kafka, const tl_config_t *cfg, const tl_projection_spec_t *spec,
                      tl_profile_t *pf, tl_projection_t **out) {
    int rc = TL_ENOMEM;
    tl_projection_t *p = calloc(1, sizeof *p);
    if (!p) {
        tl_profile_free(pf);
        return TL_ENOMEM;
    }
    p->kafka = kafka;
    p->cfg = cfg;
    p->spec = *spec;
    p->pf = pf;
    atomic_init(&p->stop, 0);
    const char *slug = tl_platform_slug(spec->platform);
    snprintf(p->name, sizeof p->name, "%s", spec->consumer ? spec->consumer : slug);
    if (spec->table) snprintf(p->table, sizeof p->table, "%s", spec->table);
    else snprintf(p->table, sizeof p->table, "view_%s", slug);
    p->spec.table = p->table;
    p->spec.consumer = p->name;
    p->cap = cfg->batch > 0 ? (int)cfg->batch : 500;
    tl_buf_init(&p->arena);
    /* The column types of batch_sql's arrays, $1 to $36. */
    stmt_init(&p->rows, "ttitttttbbbibtj");
    stmt_init(&p->convs, "tttbbbtb");
    stmt_init(&p->custs, "ttbtbb");
    stmt_init(&p->offsets, "ttib");
    stmt_init(&p->positions, "tib");
    int bad = !(p->batch_sql = batch_sql(p->table));
    p->batch = calloc((size_t)p->cap, sizeof *p->batch);
    p->conv = calloc((size_t)p->cap, sizeof *p->conv);
    p->cust = calloc((size_t)p->cap, sizeof *p->cust);
    if (!valid_table(p->table)) {
        tl_error("projection", "table name \"%s\" is not [a-z0-9_]", p->table);
        rc = TL_EINVAL;
        goto fail;
    }
    if (!p->batch || !p->conv || !p->cust || bad) goto fail;
    if (!(p->ch_codec = tl_change_codec_new(&rc)) || !(p->ev_codec = tl_codec_new_event(&rc))) goto fail;
    *out = p;
    return TL_OK;
fail:
    tl_projection_free(p);
    return rc;
}

void tl_projection_free(tl_projection_t *p) {
    if (!p) return;
    PQfinish(p->pg);
    tl_codec_free(p->ch_codec);
    tl_codec_free(p->ev_codec);
    free(p->batch);
    free(p->conv);
    free(p->cust);
    stmt_close(&p->rows); stmt_close(&p->convs); stmt_close(&p->custs);
    stmt_close(&p->offsets); stmt_close(&p->positions);
    tl_buf_close(&p->arena);
    free(p->batch_sql);
    tl_profile_free(p->pf);
    free(p);
}

/* The group consumer of tl_kafka_consumer_new, with the broker's fetch
 * wait cut from librdkafka's 500 ms to 10 ms.  A commit writes its markers
 * into the partition, which wakes a parked fetch, so the short wait is a
 * bound rather than the cause of low latency (100 ms measured no
 * different); it keeps a worker's poll loop, and so its stop and its
 * PostgreSQL checks, responsive.  A fetch is answered once 16 KiB (about
 * sixteen Changes) is there or the 10 ms are up: with one byte, seven
 * workers under load each sent the broker a fetch for every few Changes,
 * and the broker's request handling is CPU the two cores share with
 * everything else. */
static rd_kafka_t *consumer_new(tl_projection_t *p, const char *group) {
    char errstr[256], member[256];
    rd_kafka_conf_t *conf = tl_kafka_conf(p->kafka);
    if (!conf) return NULL;
    snprintf(member, sizeof member, "%s-%s", group, p->cfg->instance);
    static const char *const kv[][2] = {
        {"isolation.level", "read_committed"}, {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"}, {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", "10000"}, {"fetch.wait.max.ms", "10"}, {"fetch.min.bytes", "16384"},
    };
    int bad = rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
              rd_kafka_conf_set(conf, "group.instance.id", member, errstr, sizeof errstr) != RD_KAFKA_CONF_OK;
    for (size_t i = 0; i < sizeof kv / sizeof *kv && !bad; i++)
        bad = rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK;
    rd_kafka_t *rk = NULL;
    if (!bad) {
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_opaque(conf, p);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    }
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        tl_error("projection", "%s: consumer: %s", p->name, errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

int tl_projection_start(tl_kafka_t *kafka, const tl_config_t *cfg, const tl_projection_spec_t *spec,
                        tl_profile_t *pf, tl_projection_t **out) {
    char group[128], suffix[64];
    tl_projection_t *p;
    int rc = tl_projection_new(kafka, cfg, spec, pf, &p);
    if (rc) return rc;
    snprintf(suffix, sizeof suffix, "project-%s", tl_platform_slug(spec->platform));
    tl_kafka_group(kafka, suffix, group, sizeof group);
    if (!(p->consumer = consumer_new(p, group))) {
        tl_projection_free(p);
        return TL_EKAFKA;
    }
    if (pthread_create(&p->thread, NULL, projection_main, p) != 0) {
        rd_kafka_destroy(p->consumer);
        tl_projection_free(p);
        return TL_ENOMEM;
    }
    p->has_thread = 1;
    *out = p;
    return TL_OK;
}

void tl_projection_stop(tl_projection_t *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    if (p->has_thread) pthread_join(p->thread, NULL);
    if (p->consumer) rd_kafka_destroy(p->consumer);
    tl_projection_free(p);
}
