/*
 * verify.c -- comparing derived copies with the replay (see verify.h).
 *
 * The replay side is two tables (customers, conversations) filled by
 * tl_verify_observe, each with a string-keyed index.  A source is read
 * into the same structures (tl_verify_conv_t) and compared record by
 * record; a record only one side has is a difference too.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "codec.h"
#include "error.h"
#include "pg.h"
#include "schemas.h"
#include "verify.h"

/* ---- a string-keyed index ------------------------------------------------ */

typedef struct smap {
    char **keys;
    size_t *vals;
    size_t cap, n;
} smap_t;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void smap_close(smap_t *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t smap_slot(const smap_t *m, const char *key) {
    size_t i = fnv(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

/* Index of key, or SIZE_MAX. */
static size_t smap_get(const smap_t *m, const char *key) {
    if (!m->cap) return SIZE_MAX;
    size_t i = smap_slot(m, key);
    return m->keys[i] ? m->vals[i] : SIZE_MAX;
}

static int smap_put(smap_t *m, const char *key, size_t val) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        smap_t g = {calloc(ncap, sizeof(char *)), calloc(ncap, sizeof(size_t)), ncap, m->n};
        if (!g.keys || !g.vals) {
            free(g.keys);
            free(g.vals);
            return TL_ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = smap_slot(&g, m->keys[i]);
                g.keys[j] = m->keys[i];
                g.vals[j] = m->vals[i];
            }
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    size_t i = smap_slot(m, key);
    if (!m->keys[i]) {
        if (!(m->keys[i] = strdup(key))) return TL_ENOMEM;
        m->n++;
    }
    m->vals[i] = val;
    return TL_OK;
}

/* ---- the replayed model -------------------------------------------------- */

typedef struct vcust {
    char tenant[72], id[40];
    int64_t version, first_seen, last_activity;
    uint32_t platforms;
} vcust_t;

/* A set of conversations with their index by "tenant/id". */
typedef struct convs {
    tl_verify_conv_t *v;
    size_t n, cap;
    smap_t idx;
} convs_t;

struct tl_verify {
    vcust_t *cust;
    size_t ncust, capcust;
    smap_t cust_idx;            /* "tenant/customer" */
    convs_t conv;
    uint32_t *conv_platforms;   /* bitmask per replayed conversation */
    size_t capbits;
    tl_verify_diff_t *diffs;
    size_t ndiffs, capdiffs;
    json_t *checked;            /* {source: rows read} */
};

static void convs_close(convs_t *c) {
    for (size_t i = 0; i < c->n; i++) free(c->v[i].items);
    free(c->v);
    smap_close(&c->idx);
    memset(c, 0, sizeof *c);
}

static void ckey(char *out, size_t n, const char *tenant, const char *id) {
    snprintf(out, n, "%s/%s", tenant, id);
}

/* The conversation tenant/id of set c, created empty if absent. */
static tl_verify_conv_t *convs_get(convs_t *c, const char *tenant, const char *id, int create) {
    char key[160];
    ckey(key, sizeof key, tenant, id);
    size_t i = smap_get(&c->idx, key);
    if (i != SIZE_MAX) return &c->v[i];
    if (!create) return NULL;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        tl_verify_conv_t *nv = realloc(c->v, ncap * sizeof *nv);
        if (!nv) return NULL;
        c->v = nv;
        c->cap = ncap;
    }
    if (smap_put(&c->idx, key, c->n)) return NULL;
    tl_verify_conv_t *cv = &c->v[c->n++];
    memset(cv, 0, sizeof *cv);
    snprintf(cv->tenant, sizeof cv->tenant, "%s", tenant);
    snprintf(cv->id, sizeof cv->id, "%s", id);
    return cv;
}

static int conv_push(tl_verify_conv_t *c, const tl_verify_item_t *it) {
    if (c->nitems == c->capitems) {
        size_t ncap = c->capitems ? c->capitems * 2 : 8;
        tl_verify_item_t *ni = realloc(c->items, ncap * sizeof *ni);
        if (!ni) return TL_ENOMEM;
        c->items = ni;
        c->capitems = ncap;
    }
    c->items[c->nitems++] = *it;
    return TL_OK;
}

tl_verify_t *tl_verify_new(void) {
    tl_verify_t *v = calloc(1, sizeof *v);
    if (v && !(v->checked = json_object())) {
        free(v);
        return NULL;
    }
    return v;
}

void tl_verify_free(tl_verify_t *v) {
    if (!v) return;
    free(v->cust);
    smap_close(&v->cust_idx);
    convs_close(&v->conv);
    free(v->conv_platforms);
    free(v->diffs);
    json_decref(v->checked);
    free(v);
}

static void copy_str(char *out, size_t n, tl_str_t s) {
    snprintf(out, n, "%.*s", (int)(s.ptr ? s.len : 0), s.ptr ? s.ptr : "");
}

static void platform_bits_text(uint32_t bits, char *out, size_t n) {
    /* Sorted slugs, as tl_verify_platform_set gives them. */
    char raw[256] = "";
    for (int p = 0; p < TL_PLATFORM__COUNT; p++)
        if (bits & (1u << p)) {
            size_t used = strlen(raw);
            snprintf(raw + used, sizeof raw - used, "%s%s", used ? "," : "", tl_platform_slug((tl_platform_t)p));
        }
    tl_verify_platform_set(raw, out, n);
}

int tl_verify_observe(void *opaque, const tl_event_t *ev, const tl_fold_result_t *res,
                      int32_t partition, int64_t offset) {
    tl_verify_t *v = opaque;
    /* projection.c aggregates the non-duplicate Changes, and so do we. */
    if (res->duplicate) return TL_OK;
    char tenant[72], id[40], key[160];
    copy_str(tenant, sizeof tenant, ev->tenant_id);
    copy_str(id, sizeof id, ev->customer_id);
    ckey(key, sizeof key, tenant, id);
    size_t ci = smap_get(&v->cust_idx, key);
    if (ci == SIZE_MAX) {
        if (v->ncust == v->capcust) {
            size_t ncap = v->capcust ? v->capcust * 2 : 256;
            vcust_t *nc = realloc(v->cust, ncap * sizeof *nc);
            if (!nc) return TL_ENOMEM;
            v->cust = nc;
            v->capcust = ncap;
        }
        ci = v->ncust++;
        if (smap_put(&v->cust_idx, key, ci)) return TL_ENOMEM;
        vcust_t *c = &v->cust[ci];
        memset(c, 0, sizeof *c);
        snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
        snprintf(c->id, sizeof c->id, "%s", id);
        c->first_seen = c->last_activity = res->effective_ts;
    }
    vcust_t *c = &v->cust[ci];
    if (res->customer_version > c->version) c->version = res->customer_version;
    if (res->effective_ts < c->first_seen) c->first_seen = res->effective_ts;
    if (res->effective_ts > c->last_activity) c->last_activity = res->effective_ts;
    c->platforms |= 1u << ev->platform;
    if (!res->conversation_id[0]) return TL_OK;

    size_t before = v->conv.n;
    tl_verify_conv_t *cv = convs_get(&v->conv, tenant, res->conversation_id, 1);
    if (!cv) return TL_ENOMEM;
    size_t idx = (size_t)(cv - v->conv.v);
    if (v->conv.n > v->capbits) {
        size_t ncap = v->capbits ? v->capbits * 2 : 256;
        uint32_t *nb = realloc(v->conv_platforms, ncap * sizeof *nb);
        if (!nb) return TL_ENOMEM;
        v->conv_platforms = nb;
        v->capbits = ncap;
    }
    if (v->conv.n > before) {
        v->conv_platforms[idx] = 0;
        snprintf(cv->customer, sizeof cv->customer, "%s", id);
        cv->opened_at = cv->last_activity = res->effective_ts;
    }
    if (res->conversation_version > cv->version) cv->version = res->conversation_version;
    if (res->effective_ts < cv->opened_at) cv->opened_at = res->effective_ts;
    if (res->effective_ts > cv->last_activity) cv->last_activity = res->effective_ts;
    if (ev->kind == TL_EV_CONVERSATION_CLOSED) cv->closed = 1;
    cv->item_count++;
    v->conv_platforms[idx] |= 1u << ev->platform;
    tl_verify_item_t it = {.effective_ts = res->effective_ts, .partition = partition, .offset = offset};
    copy_str(it.event_id, sizeof it.event_id, ev->event_id);
    return conv_push(cv, &it);
}

/* ---- pure parts ---------------------------------------------------------- */

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void tl_verify_platform_set(const char *in, char *out, size_t n) {
    char buf[512];
    const char *items[64];
    int k = 0;
    snprintf(buf, sizeof buf, "%s", in ? in : "");
    for (char *save = NULL, *t = strtok_r(buf, ",{} ", &save); t && k < 64; t = strtok_r(NULL, ",{} ", &save))
        items[k++] = t;
    qsort(items, (size_t)k, sizeof *items, cmp_cstr);
    size_t used = 0;
    if (n) out[0] = 0;
    for (int i = 0; i < k; i++) {
        if (i && strcmp(items[i], items[i - 1]) == 0) continue;
        int w = snprintf(out + used, n > used ? n - used : 0, "%s%s", used ? "," : "", items[i]);
        if (w < 0 || used + (size_t)w >= n) break;
        used += (size_t)w;
    }
}

int tl_verify_render_conversation(const tl_verify_conv_t *c, tl_buf_t *out) {
    char line[512];
    int rc = 0;
    snprintf(line, sizeof line,
             "conversation %s/%s\ncustomer %s\nversion %" PRId64 "\nstatus %s\nitem_count %" PRId64
             "\nplatforms %s\nopened_at %" PRId64 "\nlast_activity %" PRId64 "\n",
             c->tenant, c->id, c->customer, c->version, c->closed ? "closed" : "open", c->item_count,
             c->platforms, c->opened_at, c->last_activity);
    rc |= tl_buf_puts(out, line);
    for (size_t i = 0; i < c->nitems; i++) {
        const tl_verify_item_t *it = &c->items[i];
        snprintf(line, sizeof line, "item %s %" PRId64 " %d:%" PRId64 " %d\n", it->event_id,
                 it->effective_ts, (int)it->partition, it->offset, it->part);
        rc |= tl_buf_puts(out, line);
    }
    return rc ? TL_ENOMEM : TL_OK;
}

int tl_verify_digest(const void *p, size_t n, char hex[TL_VERIFY_DIGEST_HEX]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL)) return TL_ENOMEM;
    for (unsigned int i = 0; i < len && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = 0;
    return TL_OK;
}

static int item_cmp(const void *a, const void *b) {
    const tl_verify_item_t *x = a, *y = b;
    if (x->effective_ts != y->effective_ts) return x->effective_ts < y->effective_ts ? -1 : 1;
    if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->part - y->part;
}

/* Brings the replayed conversations into view order, with platform sets. */
static void finish_replay(tl_verify_t *v) {
    for (size_t i = 0; i < v->conv.n; i++) {
        tl_verify_conv_t *c = &v->conv.v[i];
        qsort(c->items, c->nitems, sizeof *c->items, item_cmp);
        platform_bits_text(v->conv_platforms[i], c->platforms, sizeof c->platforms);
    }
}

/* ---- differences --------------------------------------------------------- */

static int add_diff(tl_verify_t *v, const char *subject, const char *id, const char *customer,
                    const char *source, const char *field, const char *replay, const char *found) {
    if (v->ndiffs == v->capdiffs) {
        size_t ncap = v->capdiffs ? v->capdiffs * 2 : 16;
        tl_verify_diff_t *nd = realloc(v->diffs, ncap * sizeof *nd);
        if (!nd) return TL_ENOMEM;
        v->diffs = nd;
        v->capdiffs = ncap;
    }
    tl_verify_diff_t *d = &v->diffs[v->ndiffs++];
    memset(d, 0, sizeof *d);
    snprintf(d->subject, sizeof d->subject, "%s", subject);
    snprintf(d->id, sizeof d->id, "%s", id);
    snprintf(d->customer, sizeof d->customer, "%s", customer ? customer : "");
    snprintf(d->source, sizeof d->source, "%s", source);
    snprintf(d->field, sizeof d->field, "%s", field);
    snprintf(d->replay, sizeof d->replay, "%s", replay);
    snprintf(d->found, sizeof d->found, "%s", found);
    return TL_OK;
}

size_t tl_verify_ndiffs(const tl_verify_t *v) { return v->ndiffs; }

const tl_verify_diff_t *tl_verify_diff_at(const tl_verify_t *v, size_t i) {
    return i < v->ndiffs ? &v->diffs[i] : NULL;
}

void tl_verify_diff_text(const tl_verify_diff_t *d, char *out, size_t n) {
    snprintf(out, n, "%s %s: %s: replay %s, %s %s", d->subject, d->id, d->field, d->replay,
             d->source, d->found);
}

static void i64s(char *out, size_t n, int64_t x) { snprintf(out, n, "%" PRId64, x); }

/* Header fields of conversation r (replay) and s (source); records the
 * first that differs.  Returns 1 if one did. */
static int conv_header_diff(tl_verify_t *v, const tl_verify_conv_t *r, const tl_verify_conv_t *s,
                            const char *source) {
    char a[64], b[64];
    const char *id = r->id;
#define CMP_I64(name)                                                                         \
    if (r->name != s->name) {                                                                 \
        i64s(a, sizeof a, r->name);                                                           \
        i64s(b, sizeof b, s->name);                                                           \
        return add_diff(v, "conversation", id, r->customer, source, #name, a, b) ? -1 : 1;     \
    }
    if (strcmp(r->customer, s->customer) != 0)
        return add_diff(v, "conversation", id, r->customer, source, "customer", r->customer, s->customer) ? -1 : 1;
    CMP_I64(version)
    if (r->closed != s->closed)
        return add_diff(v, "conversation", id, r->customer, source, "status", r->closed ? "closed" : "open",
                        s->closed ? "closed" : "open") ? -1 : 1;
    CMP_I64(item_count)
    if (strcmp(r->platforms, s->platforms) != 0)
        return add_diff(v, "conversation", id, r->customer, source, "platforms", r->platforms, s->platforms) ? -1 : 1;
    CMP_I64(opened_at)
    CMP_I64(last_activity)
#undef CMP_I64
    return 0;
}

static void item_text(const tl_verify_item_t *it, char *out, size_t n) {
    snprintf(out, n, "%s at %" PRId64 " %d:%" PRId64 " part %d", it->event_id, it->effective_ts,
             (int)it->partition, it->offset, it->part);
}

/* Items of r and s must be equal one for one (the agent view). */
static int conv_items_diff(tl_verify_t *v, const tl_verify_conv_t *r, const tl_verify_conv_t *s,
                           const char *source) {
    char a[160], b[160], field[64];
    size_t n = r->nitems < s->nitems ? r->nitems : s->nitems;
    for (size_t i = 0; i < n; i++) {
        const tl_verify_item_t *x = &r->items[i], *y = &s->items[i];
        const char *what = strcmp(x->event_id, y->event_id) != 0 ? "event_id"
                           : x->effective_ts != y->effective_ts       ? "effective_ts"
                           : x->partition != y->partition || x->offset != y->offset ? "position"
                           : x->part != y->part                       ? "part"
                                                                      : NULL;
        if (what) {
            snprintf(field, sizeof field, "items[%zu].%s", i, what);
            item_text(x, a, sizeof a);
            item_text(y, b, sizeof b);
            return add_diff(v, "conversation", r->id, r->customer, source, field, a, b) ? -1 : 1;
        }
    }
    if (r->nitems != s->nitems) {
        snprintf(a, sizeof a, "%zu items", r->nitems);
        snprintf(b, sizeof b, "%zu items", s->nitems);
        return add_diff(v, "conversation", r->id, r->customer, source, "items", a, b) ? -1 : 1;
    }
    return 0;
}

/* Rows of a platform view for one conversation must be a plausible
 * rendering of the replayed items (see verify.h). */
static int conv_view_diff(tl_verify_t *v, const tl_verify_conv_t *r, const tl_verify_conv_t *s,
                          const char *source) {
    char a[160], b[160], field[64];
    size_t j = 0; /* next replay item a row may be */
    const tl_verify_item_t *prev = NULL;
    for (size_t i = 0; i < s->nitems; i++) {
        const tl_verify_item_t *y = &s->items[i];
        snprintf(field, sizeof field, "rows[%zu]", i);
        if (prev && strcmp(prev->event_id, y->event_id) == 0) {
            if (y->part != prev->part + 1) {
                snprintf(a, sizeof a, "part %d of %s", prev->part + 1, y->event_id);
                snprintf(b, sizeof b, "part %d", y->part);
                return add_diff(v, "conversation", r->id, r->customer, source, field, a, b) ? -1 : 1;
            }
            prev = y;
            continue;
        }
        size_t k = j;
        while (k < r->nitems && strcmp(r->items[k].event_id, y->event_id) != 0) k++;
        if (k == r->nitems) {
            int elsewhere = 0;
            for (size_t q = 0; q < j && !elsewhere; q++) elsewhere = strcmp(r->items[q].event_id, y->event_id) == 0;
            item_text(y, b, sizeof b);
            snprintf(a, sizeof a, "%s", elsewhere ? "an event once, in (effective_ts, position) order"
                                                  : "no such event in this conversation");
            return add_diff(v, "conversation", r->id, r->customer, source, field, a, b) ? -1 : 1;
        }
        const tl_verify_item_t *x = &r->items[k];
        if (y->part != 0 || x->effective_ts != y->effective_ts || x->partition != y->partition ||
            x->offset != y->offset) {
            item_text(x, a, sizeof a);
            item_text(y, b, sizeof b);
            return add_diff(v, "conversation", r->id, r->customer, source, field, a, b) ? -1 : 1;
        }
        j = k + 1;
        prev = y;
    }
    return 0;
}

/* ---- the .state topic ---------------------------------------------------- */

typedef struct stored {
    smap_t idx;                 /* customer key -> index */
    char **data;
    size_t *len;
    int32_t *partition;
    int64_t *offset;
    size_t n, cap;
} stored_t;

static void stored_close(stored_t *s) {
    for (size_t i = 0; i < s->n; i++) free(s->data[i]);
    free(s->data);
    free(s->len);
    free(s->partition);
    free(s->offset);
    smap_close(&s->idx);
}

static int stored_put(stored_t *s, const rd_kafka_message_t *m) {
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(m->key_len < 255 ? m->key_len : 255), (const char *)m->key);
    size_t i = smap_get(&s->idx, key);
    if (i == SIZE_MAX) {
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 256;
            char **nd = realloc(s->data, ncap * sizeof *nd);
            if (nd) s->data = nd;
            size_t *nl = realloc(s->len, ncap * sizeof *nl);
            if (nl) s->len = nl;
            int32_t *np = realloc(s->partition, ncap * sizeof *np);
            if (np) s->partition = np;
            int64_t *no = realloc(s->offset, ncap * sizeof *no);
            if (no) s->offset = no;
            if (!nd || !nl || !np || !no) return TL_ENOMEM;
            s->cap = ncap;
        }
        i = s->n++;
        s->data[i] = NULL;
        if (smap_put(&s->idx, key, i)) return TL_ENOMEM;
    }
    free(s->data[i]);
    s->data[i] = NULL;
    s->len[i] = 0;
    s->partition[i] = m->partition;
    s->offset[i] = m->offset;
    if (m->payload) { /* a tombstone stays NULL */
        if (!(s->data[i] = malloc(m->len ? m->len : 1))) return TL_ENOMEM;
        memcpy(s->data[i], m->payload, m->len);
        s->len[i] = m->len;
    }
    return TL_OK;
}

static int read_state_topic(tl_kafka_t *k, stored_t *s, int timeout_ms, char *err, size_t errlen) {
    char errstr[512], group[160];
    const char *topic = tl_kafka_topic(k, TL_TOPIC_STATE);
    rd_kafka_conf_t *conf = tl_kafka_conf(k);
    if (!conf) return TL_ENOMEM;
    tl_kafka_group(k, "verify", group, sizeof group);
    if (rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "consumer configuration: %s", errstr);
        return TL_EKAFKA;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "consumer: %s", errstr);
        return TL_EKAFKA;
    }
    int rc = TL_OK;
    int n = tl_kafka_partition_count(rk, topic, timeout_ms);
    if (n <= 0) {
        snprintf(err, errlen, "cannot read the partitions of %s from %s", topic, tl_kafka_brokers(k));
        rd_kafka_destroy(rk);
        return TL_EKAFKA_DOWN;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    int64_t *end = calloc((size_t)n, sizeof *end);
    int live = 0;
    for (int p = 0; p < n && end; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms);
        if (e) {
            snprintf(err, errlen, "end offsets of %s[%d]: %s", topic, p, rd_kafka_err2str(e));
            rc = tl_kafka_err(e);
            break;
        }
        end[p] = hi;
        if (lo < hi) {
            rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
            live++;
        }
    }
    if (!end) rc = TL_ENOMEM;
    char *done = calloc((size_t)n, 1);
    if (!rc && !done) rc = TL_ENOMEM;
    if (!rc && live) rd_kafka_assign(rk, parts);
    int64_t last_record = tl_kafka_now_ms();
    while (!rc && live > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m && tl_kafka_now_ms() - last_record > (int64_t)timeout_ms * 6) {
            snprintf(err, errlen, "no record of %s for %d s with %d partitions unfinished", topic,
                     timeout_ms * 6 / 1000, live);
            rc = TL_EKAFKA_DOWN;
        }
        if (!m) continue;
        last_record = tl_kafka_now_ms();
        int p = m->partition;
        if (p < 0 || p >= n || done[p]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            done[p] = 1;
            live--;
        } else if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT) {
                snprintf(err, errlen, "reading %s: %s", topic, rd_kafka_message_errstr(m));
                rc = tl_kafka_err(m->err);
            }
        } else if (m->offset >= end[p]) {
            done[p] = 1;
            live--;
        } else {
            rc = stored_put(s, m);
            if (m->offset >= end[p] - 1) {
                done[p] = 1;
                live--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(done);
    free(end);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_assign(rk, NULL);
    rd_kafka_destroy(rk);
    return rc;
}

static void sv(char *out, size_t n, tl_str_t s) {
    if (!s.ptr) snprintf(out, n, "(none)");
    else snprintf(out, n, "%.*s", (int)s.len, s.ptr);
}

/* Names the first field where the customer's state in a and b differ;
 * returns 1 and fills field/x/y, or 0 if none of the compared ones do. */
static int state_first_diff(const tl_fold_t *a, const tl_fold_t *b, tl_str_t t, tl_str_t c,
                            char *field, size_t fn, char *x, char *y, size_t n) {
    tl_fold_customer_t ca, cb;
    if (tl_fold_get_customer(a, t, c, &ca) || tl_fold_get_customer(b, t, c, &cb)) {
        snprintf(field, fn, "tenant");
        snprintf(x, n, "%.*s", (int)t.len, t.ptr);
        snprintf(y, n, "another tenant");
        return 1;
    }
#define I64(name, expr_a, expr_b)                                                            \
    if ((int64_t)(expr_a) != (int64_t)(expr_b)) {                                            \
        snprintf(field, fn, "%s", name);                                                     \
        snprintf(x, n, "%" PRId64, (int64_t)(expr_a));                                       \
        snprintf(y, n, "%" PRId64, (int64_t)(expr_b));                                       \
        return 1;                                                                            \
    }
#define STR(name, sa, sb)                                                                    \
    if ((sa).ptr != NULL ? !((sb).ptr && (sa).len == (sb).len && memcmp((sa).ptr, (sb).ptr, (sa).len) == 0) \
                         : (sb).ptr != NULL) {                                               \
        snprintf(field, fn, "%s", name);                                                     \
        sv(x, n, sa);                                                                        \
        sv(y, n, sb);                                                                        \
        return 1;                                                                            \
    }
    I64("version", ca.version, cb.version)
    I64("last_event_ts", ca.last_event_ts, cb.last_event_ts)
    STR("merged_into", ca.merged_into, cb.merged_into)
    if (strcmp(ca.conversation_id, cb.conversation_id) != 0) {
        snprintf(field, fn, "conversation_id");
        snprintf(x, n, "%s", ca.conversation_id);
        snprintf(y, n, "%s", cb.conversation_id);
        return 1;
    }
    I64("conversation_version", ca.conversation_version, cb.conversation_version)
    I64("conversation_closed", ca.conversation_closed, cb.conversation_closed)
    STR("assignee", ca.assignee, cb.assignee)
    STR("team", ca.team, cb.team)
    I64("platforms", ca.platforms, cb.platforms)
    I64("tags", ca.ntags, cb.ntags)
    for (size_t i = 0; i < ca.ntags; i++) STR("tags", ca.tags[i], cb.tags[i])
    I64("fields", ca.nfields, cb.nfields)
    for (size_t i = 0; i < ca.nfields; i++) {
        tl_str_t na, nb;
        tl_fold_field_t fa, fb;
        tl_fold_field_at(a, t, c, i, &na);
        tl_fold_field_at(b, t, c, i, &nb);
        STR("fields", na, nb)
        tl_fold_get_field(a, t, c, na, &fa);
        tl_fold_get_field(b, t, c, nb, &fb);
        char fname[128];
        snprintf(fname, sizeof fname, "fields.%.*s", (int)na.len, na.ptr);
        I64(fname, fa.has_current, fb.has_current)
        if (fa.has_current) {
            STR(fname, fa.current.value, fb.current.value)
            STR(fname, fa.current.event_id, fb.current.event_id)
        }
        I64(fname, fa.nvalues, fb.nvalues)
    }
    I64("conflicts", ca.nconflicts, cb.nconflicts)
    I64("linked", ca.nlinked, cb.nlinked)
#undef I64
#undef STR
    return 0;
}

int tl_verify_state_topic(tl_verify_t *v, tl_kafka_t *k, tl_fold_t *fold, int timeout_ms,
                          char *err, size_t errlen) {
    stored_t st;
    memset(&st, 0, sizeof st);
    int rc = read_state_topic(k, &st, timeout_ms, err, errlen);
    tl_codec_t *codec = rc ? NULL : tl_codec_new(tl_schema_state, &rc);
    tl_buf_t buf;
    tl_buf_init(&buf);
    char *seen = rc ? NULL : calloc(st.n + 1, 1);
    if (!rc && !seen) rc = TL_ENOMEM;
    size_t cursor = 0;
    tl_str_t tenant, customer;
    while (!rc && tl_fold_customer_at(fold, &cursor, &tenant, &customer) == TL_OK) {
        char key[256];
        const char *id = key;
        snprintf(key, sizeof key, "%.*s", (int)customer.len, customer.ptr);
        tl_buf_reset(&buf);
        if ((rc = tl_fold_state_encode(fold, codec, tenant, customer, &buf))) {
            snprintf(err, errlen, "encoding the replayed state of %s: %s", id, tl_strerror(rc));
            break;
        }
        size_t i = smap_get(&st.idx, key);
        if (i == SIZE_MAX || !st.data[i]) {
            rc = add_diff(v, "customer", id, id, ".state", "state", "present",
                          i == SIZE_MAX ? "missing" : "deleted (tombstone)");
            continue;
        }
        seen[i] = 1;
        if (st.len[i] == buf.len && memcmp(st.data[i], buf.data, buf.len) == 0) continue;
        /* Explain it: load the stored state beside the replayed one. */
        char field[128] = "state", x[256] = "", y[256] = "";
        tl_fold_t *other = tl_fold_new(&(tl_fold_opts_t){0});
        int e = other ? tl_fold_state_load(other, codec, st.data[i], st.len[i]) : TL_ENOMEM;
        if (e) {
            snprintf(x, sizeof x, "a valid state");
            snprintf(y, sizeof y, "undecodable at %d:%" PRId64 " (%s)", (int)st.partition[i],
                     st.offset[i], tl_strerror(e));
        } else if (!state_first_diff(fold, other, tenant, customer, field, sizeof field, x, y,
                                     sizeof x)) {
            snprintf(field, sizeof field, "encoding");
            snprintf(x, sizeof x, "%zu bytes", buf.len);
            snprintf(y, sizeof y, "%zu bytes differing (history, recent keys or conflicts)", st.len[i]);
        }
        tl_fold_free(other);
        rc = add_diff(v, "customer", id, id, ".state", field, x, y);
    }
    for (size_t i = 0; !rc && i < st.n; i++) {
        if (seen[i] || !st.data[i]) continue;
        char at[64];
        snprintf(at, sizeof at, "present at %d:%" PRId64, (int)st.partition[i], st.offset[i]);
        for (size_t s = 0; s < st.idx.cap; s++)
            if (st.idx.keys[s] && st.idx.vals[s] == i)
                rc = add_diff(v, "customer", st.idx.keys[s], st.idx.keys[s], ".state", "state",
                              "no events", at);
    }
    if (!rc) json_object_set_new(v->checked, ".state", json_integer((json_int_t)st.n));
    free(seen);
    tl_buf_close(&buf);
    tl_codec_free(codec);
    stored_close(&st);
    return rc;
}

/* ---- PostgreSQL ---------------------------------------------------------- */

static PGresult *select_rows(PGconn *pg, const char *sql, char *err, size_t errlen, int *rc) {
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        *rc = tl_pg_err(pg, r);
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        PQclear(r);
        return NULL;
    }
    return r;
}

static int64_t col_i64(PGresult *r, int row, int col) { return strtoll(PQgetvalue(r, row, col), NULL, 10); }

static int cmp_customers(tl_verify_t *v, PGconn *pg, const char *table, char *err, size_t errlen) {
    int rc = TL_OK;
    PGresult *r = select_rows(pg,
        "SELECT tenant_id, customer_id, version, array_to_string(platforms, ','),"
        " round(extract(epoch FROM first_seen) * 1000)::bigint,"
        " round(extract(epoch FROM last_activity) * 1000)::bigint FROM customers", err, errlen, &rc);
    if (!r) return rc;
    char *seen = calloc(v->ncust + 1, 1);
    if (!seen) rc = TL_ENOMEM;
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        char key[160], a[160], b[160];
        const char *tenant = PQgetvalue(r, i, 0), *id = PQgetvalue(r, i, 1);
        ckey(key, sizeof key, tenant, id);
        size_t ci = smap_get(&v->cust_idx, key);
        if (ci == SIZE_MAX) {
            rc = add_diff(v, "customer", id, id, table, "row", "no events", "present");
            continue;
        }
        seen[ci] = 1;
        const vcust_t *c = &v->cust[ci];
        tl_verify_platform_set(PQgetvalue(r, i, 3), b, sizeof b);
        platform_bits_text(c->platforms, a, sizeof a);
        int64_t version = col_i64(r, i, 2), first = col_i64(r, i, 4), last = col_i64(r, i, 5);
        if (c->version != version) {
            char x[32], y[32];
            i64s(x, sizeof x, c->version);
            i64s(y, sizeof y, version);
            rc = add_diff(v, "customer", id, id, table, "version", x, y);
        } else if (strcmp(a, b) != 0) {
            rc = add_diff(v, "customer", id, id, table, "platforms", a, b);
        } else if (c->first_seen != first || c->last_activity != last) {
            char x[32], y[32];
            int fs = c->first_seen != first;
            i64s(x, sizeof x, fs ? c->first_seen : c->last_activity);
            i64s(y, sizeof y, fs ? first : last);
            rc = add_diff(v, "customer", id, id, table, fs ? "first_seen" : "last_activity", x, y);
        }
    }
    for (size_t i = 0; !rc && i < v->ncust; i++)
        if (!seen[i]) rc = add_diff(v, "customer", v->cust[i].id, v->cust[i].id, table, "row", "present", "missing");
    json_object_set_new(v->checked, table, json_integer(PQntuples(r)));
    free(seen);
    PQclear(r);
    return rc;
}

static int cmp_conversations(tl_verify_t *v, PGconn *pg, const char *table, char *err, size_t errlen) {
    int rc = TL_OK;
    PGresult *r = select_rows(pg,
        "SELECT tenant_id, conversation_id, customer_id, version, status, item_count,"
        " array_to_string(platforms, ','), round(extract(epoch FROM opened_at) * 1000)::bigint,"
        " round(extract(epoch FROM last_activity) * 1000)::bigint FROM conversations", err, errlen, &rc);
    if (!r) return rc;
    char *seen = calloc(v->conv.n + 1, 1);
    if (!seen) rc = TL_ENOMEM;
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        tl_verify_conv_t s;
        memset(&s, 0, sizeof s);
        snprintf(s.tenant, sizeof s.tenant, "%s", PQgetvalue(r, i, 0));
        snprintf(s.id, sizeof s.id, "%s", PQgetvalue(r, i, 1));
        snprintf(s.customer, sizeof s.customer, "%s", PQgetvalue(r, i, 2));
        s.version = col_i64(r, i, 3);
        s.closed = strcmp(PQgetvalue(r, i, 4), "closed") == 0;
        s.item_count = col_i64(r, i, 5);
        tl_verify_platform_set(PQgetvalue(r, i, 6), s.platforms, sizeof s.platforms);
        s.opened_at = col_i64(r, i, 7);
        s.last_activity = col_i64(r, i, 8);
        const tl_verify_conv_t *c = convs_get(&v->conv, s.tenant, s.id, 0);
        if (!c) {
            rc = add_diff(v, "conversation", s.id, s.customer, table, "row", "no events", "present");
            continue;
        }
        seen[c - v->conv.v] = 1;
        if (conv_header_diff(v, c, &s, table) < 0) rc = TL_ENOMEM;
    }
    for (size_t i = 0; !rc && i < v->conv.n; i++)
        if (!seen[i])
            rc = add_diff(v, "conversation", v->conv.v[i].id, v->conv.v[i].customer, table, "row",
                          "present", "missing");
    json_object_set_new(v->checked, table, json_integer(PQntuples(r)));
    free(seen);
    PQclear(r);
    return rc;
}

/* Reads a view table into per-conversation item lists. */
static int load_view(PGconn *pg, const char *table, convs_t *out, int *rows, char *err, size_t errlen) {
    char sql[512];
    int rc = TL_OK;
    snprintf(sql, sizeof sql,
             "SELECT tenant_id, conversation_id, customer_id, event_id, part,"
             " round(extract(epoch FROM effective_ts) * 1000)::bigint, source_partition, source_offset"
             " FROM %s ORDER BY tenant_id, conversation_id, effective_ts, source_partition,"
             " source_offset, part", table);
    PGresult *r = select_rows(pg, sql, err, errlen, &rc);
    if (!r) return rc;
    *rows = PQntuples(r);
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        tl_verify_conv_t *c = convs_get(out, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), 1);
        if (!c) {
            rc = TL_ENOMEM;
            break;
        }
        if (!c->customer[0]) snprintf(c->customer, sizeof c->customer, "%s", PQgetvalue(r, i, 2));
        tl_verify_item_t it = {.part = (int)col_i64(r, i, 4), .effective_ts = col_i64(r, i, 5),
                               .partition = (int32_t)col_i64(r, i, 6), .offset = col_i64(r, i, 7)};
        snprintf(it.event_id, sizeof it.event_id, "%s", PQgetvalue(r, i, 3));
        rc = conv_push(c, &it);
    }
    PQclear(r);
    return rc;
}

/* view_agent: every replayed conversation's items, exactly. */
static int cmp_view_agent(tl_verify_t *v, PGconn *pg, const char *table, char *err, size_t errlen) {
    convs_t got;
    memset(&got, 0, sizeof got);
    int rows = 0, rc = load_view(pg, table, &got, &rows, err, errlen);
    for (size_t i = 0; !rc && i < got.n; i++) {
        const tl_verify_conv_t *s = &got.v[i];
        const tl_verify_conv_t *c = convs_get(&v->conv, s->tenant, s->id, 0);
        if (!c) rc = add_diff(v, "conversation", s->id, s->customer, table, "rows", "no events", "present");
        else if (conv_items_diff(v, c, s, table) < 0) rc = TL_ENOMEM;
    }
    for (size_t i = 0; !rc && i < v->conv.n; i++) {
        const tl_verify_conv_t *c = &v->conv.v[i];
        if (!convs_get(&got, c->tenant, c->id, 0) && c->nitems) {
            char a[32];
            snprintf(a, sizeof a, "%zu items", c->nitems);
            rc = add_diff(v, "conversation", c->id, c->customer, table, "items", a, "0 items");
        }
    }
    if (!rc) json_object_set_new(v->checked, table, json_integer(rows));
    convs_close(&got);
    return rc;
}

/* view_<platform>: whatever rows exist are a plausible rendering. */
static int cmp_platform_view(tl_verify_t *v, PGconn *pg, const char *table, char *err, size_t errlen) {
    convs_t got;
    memset(&got, 0, sizeof got);
    int rows = 0, rc = load_view(pg, table, &got, &rows, err, errlen);
    for (size_t i = 0; !rc && i < got.n; i++) {
        const tl_verify_conv_t *s = &got.v[i];
        const tl_verify_conv_t *c = convs_get(&v->conv, s->tenant, s->id, 0);
        if (!c) rc = add_diff(v, "conversation", s->id, s->customer, table, "rows", "no events", "present");
        else if (conv_view_diff(v, c, s, table) < 0) rc = TL_ENOMEM;
    }
    if (!rc) json_object_set_new(v->checked, table, json_integer(rows));
    convs_close(&got);
    return rc;
}

typedef struct comparator {
    const char *table;
    int (*run)(tl_verify_t *v, PGconn *pg, const char *table, char *err, size_t errlen);
} comparator_t;

/* One entry per projection table.  A platform view's exact rendering
 * check replaces cmp_platform_view in its entry. */
static const comparator_t comparators[] = {
    {"customers", cmp_customers},
    {"conversations", cmp_conversations},
    {"view_agent", cmp_view_agent},
    {"view_web", cmp_platform_view},
    {"view_app", cmp_platform_view},
    {"view_mini_program", cmp_platform_view},
    {"view_wechat", cmp_platform_view},
    {"view_douyin", cmp_platform_view},
    {"view_phone", cmp_platform_view},
};

int tl_verify_postgres(tl_verify_t *v, PGconn *pg, char *err, size_t errlen) {
    finish_replay(v);
    PGresult *r = PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? TL_OK : tl_pg_err(pg, r);
    if (rc) snprintf(err, errlen, "%s", PQerrorMessage(pg));
    PQclear(r);
    for (size_t i = 0; !rc && i < sizeof comparators / sizeof *comparators; i++)
        rc = comparators[i].run(v, pg, comparators[i].table, err, errlen);
    PQclear(PQexec(pg, "ROLLBACK"));
    return rc;
}

/* ---- the report ---------------------------------------------------------- */

json_t *tl_verify_report(tl_verify_t *v, tl_fold_t *fold) {
    finish_replay(v);
    json_t *o = json_object(), *custs = json_array(), *convs = json_array(), *diffs = json_array();
    tl_codec_t *codec = NULL;
    int err = 0;
    tl_buf_t buf;
    tl_buf_init(&buf);
    if (!o || !custs || !convs || !diffs) goto fail;
    if (fold && !(codec = tl_codec_new(tl_schema_state, &err))) goto fail;
    char hex[TL_VERIFY_DIGEST_HEX];
    for (size_t i = 0; i < v->ncust; i++) {
        const vcust_t *c = &v->cust[i];
        tl_buf_reset(&buf);
        /* The digest of a customer is that of its state's encoding: what
         * .state holds for it must hash the same. */
        if (!fold || tl_fold_state_encode(fold, codec, (tl_str_t){c->tenant, strlen(c->tenant)},
                                          (tl_str_t){c->id, strlen(c->id)}, &buf) ||
            tl_verify_digest(buf.data ? buf.data : "", buf.len, hex))
            snprintf(hex, sizeof hex, "none");
        json_array_append_new(custs, json_pack("{s:s, s:s, s:I, s:s}", "tenant", c->tenant, "customer", c->id,
                                               "version", (json_int_t)c->version, "digest", hex));
    }
    for (size_t i = 0; i < v->conv.n; i++) {
        const tl_verify_conv_t *c = &v->conv.v[i];
        tl_buf_reset(&buf);
        if (tl_verify_render_conversation(c, &buf) || tl_verify_digest(buf.data, buf.len, hex)) goto fail;
        json_array_append_new(convs, json_pack("{s:s, s:s, s:s, s:I, s:s}", "tenant", c->tenant,
                                               "conversation", c->id, "customer", c->customer,
                                               "version", (json_int_t)c->version, "digest", hex));
    }
    for (size_t i = 0; i < v->ndiffs; i++) {
        const tl_verify_diff_t *d = &v->diffs[i];
        json_array_append_new(diffs, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "subject", d->subject,
                                               "id", d->id, "customer", d->customer, "source", d->source,
                                               "field", d->field, "replay", d->replay, "found", d->found));
    }
    json_object_set_new(o, "ok", json_boolean(v->ndiffs == 0));
    json_object_set_new(o, "replayed", json_pack("{s:I, s:I}", "customers", (json_int_t)v->ncust,
                                                 "conversations", (json_int_t)v->conv.n));
    json_object_set(o, "checked", v->checked);
    json_object_set_new(o, "customers", custs);
    json_object_set_new(o, "conversations", convs);
    json_object_set_new(o, "differences", diffs);
    tl_codec_free(codec);
    tl_buf_close(&buf);
    return o;
fail:
    json_decref(o);
    json_decref(custs);
    json_decref(convs);
    json_decref(diffs);
    tl_codec_free(codec);
    tl_buf_close(&buf);
    return NULL;
}

/* ---- a scratch schema ---------------------------------------------------- */

static int exec_sql(PGconn *pg, const char *sql, int n, const char *const *vals, char *err, size_t errlen) {
    PGresult *r = PQexecParams(pg, sql, n, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? TL_OK : tl_pg_err(pg, r);
    if (rc) snprintf(err, errlen, "%s", PQerrorMessage(pg));
    PQclear(r);
    return rc;
}

static int plain_identifier(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
    return strcmp(s, "public") != 0 && strncmp(s, "pg_", 3) != 0 && strcmp(s, "information_schema") != 0;
}

int tl_verify_write_schema(tl_verify_t *v, tl_fold_t *fold, PGconn *pg, const char *schema, char *err,
                           size_t errlen) {
    if (!plain_identifier(schema)) {
        snprintf(err, errlen, "\"%s\" is not a plain lower-case identifier (or is public, pg_*, "
                 "information_schema)", schema);
        return TL_EINVAL;
    }
    finish_replay(v);
    json_t *report = tl_verify_report(v, fold);
    if (!report) return TL_ENOMEM;
    char sql[1024];
    int rc = exec_sql(pg, "BEGIN", 0, NULL, err, errlen);
    if (rc) {
        json_decref(report);
        return rc;
    }
    PGresult *r = PQexecParams(pg, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL,
                               (const char *const[]){schema}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = tl_pg_err(pg, r);
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
    } else if (PQntuples(r) > 0) {
        rc = TL_EEXISTS;
        snprintf(err, errlen, "schema %s exists: choose a new name (nothing existing is overwritten)", schema);
    }
    PQclear(r);
    /* The name is a checked plain identifier: safe to interpolate (an
     * identifier cannot be a parameter). */
    static const char *const ddl[] = {
        "CREATE SCHEMA \"%s\"",
        "CREATE TABLE \"%s\".customers (tenant_id text, customer_id text, version bigint, platforms text,"
        " first_seen bigint, last_activity bigint, state_sha256 text, PRIMARY KEY (tenant_id, customer_id))",
        "CREATE TABLE \"%s\".conversations (tenant_id text, conversation_id text, customer_id text, status text,"
        " version bigint, item_count bigint, platforms text, opened_at bigint, last_activity bigint, digest text,"
        " PRIMARY KEY (tenant_id, conversation_id))",
        "CREATE TABLE \"%s\".items (tenant_id text, conversation_id text, seq int, event_id text,"
        " effective_ts bigint, source_partition int, source_offset bigint,"
        " PRIMARY KEY (tenant_id, conversation_id, seq))",
    };
    for (size_t i = 0; !rc && i < sizeof ddl / sizeof *ddl; i++) {
        snprintf(sql, sizeof sql, ddl[i], schema);
        rc = exec_sql(pg, sql, 0, NULL, err, errlen);
    }
    json_t *custs = json_object_get(report, "customers");
    for (size_t i = 0; !rc && i < v->ncust; i++) {
        const vcust_t *c = &v->cust[i];
        char version[24], first[24], last[24], plats[160];
        i64s(version, sizeof version, c->version);
        i64s(first, sizeof first, c->first_seen);
        i64s(last, sizeof last, c->last_activity);
        platform_bits_text(c->platforms, plats, sizeof plats);
        const char *digest = json_string_value(json_object_get(json_array_get(custs, i), "digest"));
        const char *vals[] = {c->tenant, c->id, version, plats, first, last, digest};
        snprintf(sql, sizeof sql, "INSERT INTO \"%s\".customers VALUES ($1, $2, $3, $4, $5, $6, $7)", schema);
        rc = exec_sql(pg, sql, 7, vals, err, errlen);
    }
    json_t *convs = json_object_get(report, "conversations");
    for (size_t i = 0; !rc && i < v->conv.n; i++) {
        const tl_verify_conv_t *c = &v->conv.v[i];
        char version[24], count[24], opened[24], last[24];
        i64s(version, sizeof version, c->version);
        i64s(count, sizeof count, c->item_count);
        i64s(opened, sizeof opened, c->opened_at);
        i64s(last, sizeof last, c->last_activity);
        const char *digest = json_string_value(json_object_get(json_array_get(convs, i), "digest"));
        const char *vals[] = {c->tenant, c->id, c->customer, c->closed ? "closed" : "open", version, count,
                              c->platforms, opened, last, digest};
        snprintf(sql, sizeof sql, "INSERT INTO \"%s\".conversations VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                 " $10)", schema);
        rc = exec_sql(pg, sql, 10, vals, err, errlen);
        for (size_t k = 0; !rc && k < c->nitems; k++) {
            const tl_verify_item_t *it = &c->items[k];
            char seq[24], ets[24], part[24], off[24];
            i64s(seq, sizeof seq, (int64_t)k);
            i64s(ets, sizeof ets, it->effective_ts);
            i64s(part, sizeof part, it->partition);
            i64s(off, sizeof off, it->offset);
            const char *ivals[] = {c->tenant, c->id, seq, it->event_id, ets, part, off};
            snprintf(sql, sizeof sql, "INSERT INTO \"%s\".items VALUES ($1, $2, $3, $4, $5, $6, $7)", schema);
            rc = exec_sql(pg, sql, 7, ivals, err, errlen);
        }
    }
    json_decref(report);
    char ignored[256];
    if (!rc) rc = exec_sql(pg, "COMMIT", 0, NULL, err, errlen);
    else exec_sql(pg, "ROLLBACK", 0, NULL, ignored, sizeof ignored);
    return rc;
}
