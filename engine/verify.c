/*
 * verify.c -- comparing derived copies with the replay (see verify.h).
 *
 * The replay side is two tables (customers, conversations) filled by
 * tl_verify_observe, each with a string-keyed index.  A source is read
 * into the same structures (tl_verify_conv_t) and compared record by
 * record; a record only one side has is a difference too.
 *
 * The views and the fold-change tables are recomputed as the projection
 * computes them, from the Change: tl_verify_observe rebuilds it with
 * tl_fold_worker_change, renders it for every configured view and applies
 * its fold changes to an in-memory customer_fields and conflict queue.  A
 * view row is kept as its columns joined by a unit separator (NULL is a
 * record separator), bodies normalised to compact JSON with sorted keys,
 * so the replay's rendering and PostgreSQL's jsonb compare byte for byte.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "change.h"
#include "codec.h"
#include "error.h"
#include "fold_worker.h"
#include "pg.h"
#include "schemas.h"
#include "verify.h"
#include "view.h"

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

/* One row of a view: its sort key and its columns (VCOLS order). */
typedef struct vrow {
    char event_id[40];
    int part;
    int64_t effective_ts;
    int32_t partition;
    int64_t offset;
    char *cols;
} vrow_t;

typedef struct vrows {
    vrow_t *v;
    size_t n, cap;
} vrows_t;

/* customer_fields, as the agent projection keeps it. */
typedef struct frow {
    char tenant[72], customer[40], platform[24], event_id[40];
    char *field, *value;        /* value NULL: no current value */
    int is_key;
    int64_t version;
} frow_t;

/* conflicts, as the agent projection keeps them. */
typedef struct crow {
    char tenant[72], id[80], customer[40], status[16];
    char *field, *candidates, *chosen;
} crow_t;

struct tl_verify {
    const tl_fold_t *fold;      /* configured: rebuild Changes from it */
    const tl_profile_t *pf[TL_VERIFY_MAX_VIEWS];
    size_t nviews;
    int configured, unified;
    tl_fold_change_out_t *fco;
    vrows_t *conv_rows;         /* [conversation * TL_VERIFY_MAX_VIEWS + view] */
    size_t caprows;             /* conversations conv_rows has room for */
    frow_t *fields;
    size_t nfields, capfields;
    smap_t field_idx;           /* "tenant/customer/field" */
    crow_t *confs;
    size_t nconfs, capconfs;
    smap_t conf_idx;            /* "tenant/conflict" */
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

static void vrows_close(vrows_t *r) {
    for (size_t i = 0; i < r->n; i++) free(r->v[i].cols);
    free(r->v);
    memset(r, 0, sizeof *r);
}

void tl_verify_free(tl_verify_t *v) {
    if (!v) return;
    for (size_t i = 0; v->conv_rows && i < v->caprows * TL_VERIFY_MAX_VIEWS; i++) vrows_close(&v->conv_rows[i]);
    free(v->conv_rows);
    free(v->fco);
    for (size_t i = 0; i < v->nfields; i++) {
        free(v->fields[i].field);
        free(v->fields[i].value);
    }
    free(v->fields);
    smap_close(&v->field_idx);
    for (size_t i = 0; i < v->nconfs; i++) {
        free(v->confs[i].field);
        free(v->confs[i].candidates);
        free(v->confs[i].chosen);
    }
    free(v->confs);
    smap_close(&v->conf_idx);
    free(v->cust);
    smap_close(&v->cust_idx);
    convs_close(&v->conv);
    free(v->conv_platforms);
    free(v->diffs);
    json_decref(v->checked);
    free(v);
}

static void i64s(char *out, size_t n, int64_t x) { snprintf(out, n, "%" PRId64, x); }

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

int tl_verify_configure(tl_verify_t *v, const tl_fold_t *fold, const tl_profile_t *const *profiles,
                        size_t n) {
    if (!fold || n > TL_VERIFY_MAX_VIEWS) return TL_EINVAL;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (profiles[i]->platform == profiles[j]->platform) return TL_EINVAL;
    if (!v->fco && !(v->fco = malloc(sizeof *v->fco))) return TL_ENOMEM;
    v->fold = fold;
    v->nviews = n;
    v->unified = 0;
    for (size_t i = 0; i < n; i++) {
        v->pf[i] = profiles[i];
        v->unified |= profiles[i]->platform == TL_PLATFORM_AGENT;
    }
    v->configured = 1;
    return TL_OK;
}

static char *dup_str(tl_str_t s) {
    char *p = malloc(s.len + 1);
    if (!p) return NULL;
    if (s.len) memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

/* Compact JSON with sorted keys of the JSON text s; NULL if s is not JSON
 * (then a copy of s) or on allocation failure. */
static char *json_norm(const char *s, size_t len) {
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY, NULL);
    char *out = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!out && (out = malloc(len + 1))) {
        memcpy(out, s, len);
        out[len] = 0;
    }
    return out;
}

/* The columns of a view row after (event_id, part), in this order. */
static const char *const vcols[] = {"customer_id", "kind", "platform", "source_label", "effective_ts",
                                    "occurred_at", "received_at", "source_partition", "source_offset",
                                    "idempotency_key", "body"};
#define NVCOLS (sizeof vcols / sizeof *vcols)
#define VSEP '\x1f'             /* between columns */
#define VNULL "\x1e"            /* a NULL column */

/* Appends one column to b: s[0..len), or NULL when s is NULL. */
static int vcol(tl_buf_t *b, const char *s, size_t len, int first) {
    int rc = first ? 0 : tl_buf_append(b, "\x1f", 1);
    if (!s) return rc | tl_buf_puts(b, VNULL);
    return rc | (len ? tl_buf_append(b, s, len) : 0);
}

static int vcol_i64(tl_buf_t *b, int64_t x) {
    char n[24];
    i64s(n, sizeof n, x);
    return vcol(b, n, strlen(n), 0);
}

static int vrows_push(vrows_t *r, const vrow_t *row) {
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        vrow_t *nv = realloc(r->v, ncap * sizeof *nv);
        if (!nv) return TL_ENOMEM;
        r->v = nv;
        r->cap = ncap;
    }
    r->v[r->n++] = *row;
    return TL_OK;
}

/* Room in conv_platforms and conv_rows for every conversation of v. */
static int conv_room(tl_verify_t *v) {
    if (v->conv.n <= v->capbits && v->conv.n <= v->caprows) return TL_OK;
    size_t ncap = v->capbits ? v->capbits * 2 : 256;
    while (ncap < v->conv.n) ncap *= 2;
    uint32_t *nb = realloc(v->conv_platforms, ncap * sizeof *nb);
    if (!nb) return TL_ENOMEM;
    v->conv_platforms = nb;
    v->capbits = ncap;
    vrows_t *nr = realloc(v->conv_rows, ncap * TL_VERIFY_MAX_VIEWS * sizeof *nr);
    if (!nr) return TL_ENOMEM;
    memset(nr + v->caprows * TL_VERIFY_MAX_VIEWS, 0, (ncap - v->caprows) * TL_VERIFY_MAX_VIEWS * sizeof *nr);
    v->conv_rows = nr;
    v->caprows = ncap;
    return TL_OK;
}

/* The rows every configured view holds for ch, into conversation ci. */
static int render_views(tl_verify_t *v, size_t ci, const tl_change_t *ch, const tl_event_t *ev) {
    tl_buf_t b;
    tl_buf_init(&b);
    int rc = TL_OK;
    for (size_t k = 0; !rc && k < v->nviews; k++) {
        tl_view_rows_t rows = {0};
        if ((rc = tl_view_render(v->pf[k], ch, ev, &rows))) break;
        for (size_t i = 0; !rc && i < rows.n; i++) {
            const tl_view_row_t *r = &rows.v[i];
            tl_buf_reset(&b);
            char *body = json_norm(r->body, strlen(r->body));
            int e = !body;
            e |= vcol(&b, ev->customer_id.ptr, ev->customer_id.len, 1);
            e |= vcol(&b, r->kind, r->kind ? strlen(r->kind) : 0, 0);
            e |= vcol(&b, r->platform, r->platform ? strlen(r->platform) : 0, 0);
            e |= vcol(&b, r->source_label, r->source_label ? strlen(r->source_label) : 0, 0);
            e |= vcol_i64(&b, ch->effective_ts);
            e |= vcol_i64(&b, ev->occurred_at);
            e |= vcol_i64(&b, ev->received_at);
            e |= vcol_i64(&b, ch->source_partition);
            e |= vcol_i64(&b, ch->source_offset);
            e |= vcol(&b, ev->idempotency_key.ptr, ev->idempotency_key.len, 0);
            e |= vcol(&b, body, body ? strlen(body) : 0, 0);
            free(body);
            vrow_t row = {.part = r->part, .effective_ts = ch->effective_ts,
                          .partition = ch->source_partition, .offset = ch->source_offset};
            copy_str(row.event_id, sizeof row.event_id, ev->event_id);
            if (e || !(row.cols = dup_str((tl_str_t){b.data, b.len}))) rc = TL_ENOMEM;
            else if ((rc = vrows_push(&v->conv_rows[ci * TL_VERIFY_MAX_VIEWS + k], &row))) free(row.cols);
        }
        tl_view_rows_close(&rows);
    }
    tl_buf_close(&b);
    return rc;
}

static int set_owned(char **slot, tl_str_t s) {
    char *p = s.ptr ? dup_str(s) : NULL;
    if (s.ptr && !p) return TL_ENOMEM;
    free(*slot);
    *slot = p;
    return TL_OK;
}

/* The candidates of entry fc of ch as the projection writes them. */
static char *candidates_json(const tl_change_fold_t *fc) {
    json_t *arr = json_array();
    for (size_t j = 0; arr && j < fc->ncandidates; j++) {
        const tl_change_candidate_t *c = &fc->candidates[j];
        json_t *o = json_object();
        json_object_set_new(o, "value", c->value.ptr ? json_stringn(c->value.ptr, c->value.len) : json_null());
        json_object_set_new(o, "platform",
                            c->platform.ptr ? json_stringn(c->platform.ptr, c->platform.len) : json_null());
        json_object_set_new(o, "event_id",
                            c->event_id.ptr ? json_stringn(c->event_id.ptr, c->event_id.len) : json_null());
        json_object_set_new(o, "effective_ts", json_integer(c->effective_ts));
        json_array_append_new(arr, o);
    }
    char *out = arr ? json_dumps(arr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(arr);
    return out;
}

/* customer_fields and the conflict queue: what projection.c does with the
 * Change's fold changes, in memory. */
static int fold_tables(tl_verify_t *v, const tl_change_t *ch, const tl_event_t *ev) {
    char tenant[72], cust[40], key[512];
    copy_str(tenant, sizeof tenant, ch->tenant_id);
    copy_str(cust, sizeof cust, ch->customer_id);
    for (size_t i = 0; i < ch->nfold_changes; i++) {
        const tl_change_fold_t *fc = &ch->fold_changes[i];
        char kind[32];
        copy_str(kind, sizeof kind, fc->kind);
        if (strcmp(kind, "field_set") == 0 || strcmp(kind, "field_reverted") == 0) {
            snprintf(key, sizeof key, "%s/%s/%.*s", tenant, cust, (int)fc->field.len,
                     fc->field.ptr ? fc->field.ptr : "");
            size_t fi = smap_get(&v->field_idx, key);
            if (fi == SIZE_MAX) {
                if (v->nfields == v->capfields) {
                    size_t ncap = v->capfields ? v->capfields * 2 : 64;
                    frow_t *nf = realloc(v->fields, ncap * sizeof *nf);
                    if (!nf) return TL_ENOMEM;
                    v->fields = nf;
                    v->capfields = ncap;
                }
                fi = v->nfields;
                frow_t *f = &v->fields[fi];
                memset(f, 0, sizeof *f);
                if (!(f->field = dup_str(fc->field.ptr ? fc->field : TL_STR("")))) return TL_ENOMEM;
                v->nfields++;
                if (smap_put(&v->field_idx, key, fi)) return TL_ENOMEM;
                snprintf(f->tenant, sizeof f->tenant, "%s", tenant);
                snprintf(f->customer, sizeof f->customer, "%s", cust);
            }
            frow_t *f = &v->fields[fi];
            int has = fc->platform.ptr != NULL && fc->value.ptr != NULL;
            if (set_owned(&f->value, has ? fc->value : TL_STR_NULL)) return TL_ENOMEM;
            f->is_key = fc->is_key;
            f->version = has ? fc->version : ch->customer_version;
            if (has) {
                copy_str(f->platform, sizeof f->platform, fc->platform);
                copy_str(f->event_id, sizeof f->event_id, fc->event_id);
            } else {
                snprintf(f->platform, sizeof f->platform, "%s", tl_platform_slug(ev->platform));
                copy_str(f->event_id, sizeof f->event_id, ev->event_id);
            }
        } else if (strcmp(kind, "conflict_opened") == 0 || strcmp(kind, "conflict_candidate") == 0 ||
                   strcmp(kind, "conflict_resolved") == 0 || strcmp(kind, "conflict_withdrawn") == 0) {
            int open = kind[9] == 'o' || kind[9] == 'c';
            snprintf(key, sizeof key, "%s/%.*s", tenant, (int)fc->conflict_id.len,
                     fc->conflict_id.ptr ? fc->conflict_id.ptr : "");
            size_t ki = smap_get(&v->conf_idx, key);
            if (ki == SIZE_MAX) {
                if (!open) continue; /* an UPDATE of no row */
                if (v->nconfs == v->capconfs) {
                    size_t ncap = v->capconfs ? v->capconfs * 2 : 16;
                    crow_t *nc = realloc(v->confs, ncap * sizeof *nc);
                    if (!nc) return TL_ENOMEM;
                    v->confs = nc;
                    v->capconfs = ncap;
                }
                ki = v->nconfs;
                crow_t *c = &v->confs[ki];
                memset(c, 0, sizeof *c);
                if (!(c->field = dup_str(fc->field.ptr ? fc->field : TL_STR("")))) return TL_ENOMEM;
                v->nconfs++;
                if (smap_put(&v->conf_idx, key, ki)) return TL_ENOMEM;
                snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
                copy_str(c->id, sizeof c->id, fc->conflict_id);
                snprintf(c->customer, sizeof c->customer, "%s", cust);
                snprintf(c->status, sizeof c->status, "open");
            }
            crow_t *c = &v->confs[ki];
            if (open) {
                char *cj = candidates_json(fc);
                if (!cj) return TL_ENOMEM;
                free(c->candidates);
                c->candidates = cj;
            } else {
                int resolved = kind[9] == 'r';
                snprintf(c->status, sizeof c->status, "%s", resolved ? "resolved" : "withdrawn");
                if (set_owned(&c->chosen, resolved ? fc->value : TL_STR_NULL)) return TL_ENOMEM;
            }
        }
    }
    return TL_OK;
}

int tl_verify_observe(void *opaque, const tl_event_t *ev, const tl_fold_result_t *res,
                      int32_t partition, int64_t offset) {
    tl_verify_t *v = opaque;
    /* projection.c aggregates the non-duplicate Changes, and so do we. */
    if (res->duplicate) return TL_OK;
    tl_change_t ch;
    if (v->configured) {
        tl_fold_worker_change(v->fold, ev, res, partition, offset, TL_STR_NULL, v->fco, &ch);
        int rc = v->unified ? fold_tables(v, &ch, ev) : TL_OK;
        if (rc) return rc;
    }
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
    /* Engine notices (system) are no platform the customer used. */
    if (ev->platform != TL_PLATFORM_SYSTEM) c->platforms |= 1u << ev->platform;
    /* An event the fold ignored is in no conversation's rows. */
    if (!res->conversation_id[0] || res->ignored != TL_FOLD_IGNORE_NONE) return TL_OK;

    size_t before = v->conv.n;
    tl_verify_conv_t *cv = convs_get(&v->conv, tenant, res->conversation_id, 1);
    if (!cv) return TL_ENOMEM;
    size_t idx = (size_t)(cv - v->conv.v);
    if (conv_room(v)) return TL_ENOMEM;
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
    int rc = conv_push(cv, &it);
    if (!rc && v->configured && v->nviews) rc = render_views(v, idx, &ch, ev);
    return rc;
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

static int vrow_cmp(const void *a, const void *b) {
    const vrow_t *x = a, *y = b;
    if (x->effective_ts != y->effective_ts) return x->effective_ts < y->effective_ts ? -1 : 1;
    if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->part != y->part) return x->part < y->part ? -1 : 1;
    return strcmp(x->event_id, y->event_id);
}

/* Brings the replayed conversations into view order, with platform sets. */
static void finish_replay(tl_verify_t *v) {
    for (size_t i = 0; i < v->conv.n; i++) {
        tl_verify_conv_t *c = &v->conv.v[i];
        qsort(c->items, c->nitems, sizeof *c->items, item_cmp);
        platform_bits_text(v->conv_platforms[i], c->platforms, sizeof c->platforms);
        for (size_t k = 0; v->conv_rows && i < v->caprows && k < v->nviews; k++) {
            vrows_t *r = &v->conv_rows[i * TL_VERIFY_MAX_VIEWS + k];
            qsort(r->v, r->n, sizeof *r->v, vrow_cmp);
        }
    }
}

/* The digest of a conversation's rows in one view: every column of every
 * row, in view order. */
static int vrows_digest(const vrows_t *r, char hex[TL_VERIFY_DIGEST_HEX]) {
    tl_buf_t b;
    tl_buf_init(&b);
    int rc = 0;
    for (size_t i = 0; r && i < r->n; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s\x1f%d\x1f", r->v[i].event_id, r->v[i].part);
        rc |= tl_buf_puts(&b, head);
        rc |= tl_buf_puts(&b, r->v[i].cols);
        rc |= tl_buf_append(&b, "\n", 1);
    }
    if (!rc) rc = tl_verify_digest(b.data ? b.data : "", b.len, hex);
    tl_buf_close(&b);
    return rc ? TL_ENOMEM : TL_OK;
}

/* ---- differences --------------------------------------------------------- */

static void copy_utf8(char *out, size_t n, const char *s) {
    size_t len = tl_view_utf8_cut(s, strlen(s), n - 1);
    memcpy(out, s, len);
    out[len] = 0;
}

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
    /* Cut at a character boundary: the report is JSON, valid UTF-8. */
    copy_utf8(d->field, sizeof d->field, field);
    copy_utf8(d->replay, sizeof d->replay, replay);
    copy_utf8(d->found, sizeof d->found, found);
    return TL_OK;
}

size_t tl_verify_ndiffs(const tl_verify_t *v) { return v->ndiffs; }

const tl_verify_diff_t *tl_verify_diff_at(const tl_verify_t *v, size_t i) {
    return i < v->ndiffs ? &v->diffs[i] : NULL;
}

void tl_verify_diff_text(const tl_verify_diff_t *d, char *out, size_t n) {
    int view = strncmp(d->source, "view_", 5) == 0;
    if (view || strcmp(d->source, "customer_fields") == 0 || strcmp(d->source, "conflicts") == 0)
        snprintf(out, n, "%s %s: %s: %s: replay '%s', %s '%s'", d->subject, d->id, d->source, d->field,
                 d->replay, view ? "view" : "table", d->found);
    else
        snprintf(out, n, "%s %s: %s: replay %s, %s %s", d->subject, d->id, d->field, d->replay,
                 d->source, d->found);
}


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

/* A view table's rows per conversation ("tenant/conversation" in idx). */
typedef struct vtable {
    smap_t idx;
    vrows_t *convs;
    char (*customer)[40];
    size_t n, cap;
} vtable_t;

static void vtable_close(vtable_t *t) {
    for (size_t i = 0; i < t->n; i++) vrows_close(&t->convs[i]);
    free(t->convs);
    free(t->customer);
    smap_close(&t->idx);
    memset(t, 0, sizeof *t);
}

static int col_append(tl_buf_t *b, PGresult *r, int row, int col, int first) {
    if (PQgetisnull(r, row, col)) return vcol(b, NULL, 0, first);
    return vcol(b, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col), first);
}

/* Reads a view table into rows per conversation, as render_views keeps
 * them. */
static int load_view(PGconn *pg, const char *table, vtable_t *t, int *rows, char *err, size_t errlen) {
    char sql[768];
    int rc = TL_OK;
    snprintf(sql, sizeof sql,
             "SELECT tenant_id, conversation_id, event_id, part, customer_id, kind, platform, source_label,"
             " round(extract(epoch FROM effective_ts) * 1000)::bigint,"
             " round(extract(epoch FROM occurred_at) * 1000)::bigint,"
             " round(extract(epoch FROM received_at) * 1000)::bigint, source_partition, source_offset,"
             " idempotency_key, body::text FROM %s", table);
    PGresult *r = select_rows(pg, sql, err, errlen, &rc);
    if (!r) return rc;
    *rows = PQntuples(r);
    tl_buf_t b;
    tl_buf_init(&b);
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        char key[160];
        ckey(key, sizeof key, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        size_t ci = smap_get(&t->idx, key);
        if (ci == SIZE_MAX) {
            if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 64;
                vrows_t *nc = realloc(t->convs, ncap * sizeof *nc);
                if (nc) t->convs = nc;
                char(*ncu)[40] = realloc(t->customer, ncap * sizeof *ncu);
                if (ncu) t->customer = ncu;
                if (!nc || !ncu) {
                    rc = TL_ENOMEM;
                    break;
                }
                t->cap = ncap;
            }
            ci = t->n++;
            memset(&t->convs[ci], 0, sizeof t->convs[ci]);
            snprintf(t->customer[ci], sizeof t->customer[ci], "%s", PQgetvalue(r, i, 4));
            if ((rc = smap_put(&t->idx, key, ci))) break;
        }
        tl_buf_reset(&b);
        int e = 0;
        for (int col = 4; col < 14; col++) e |= col_append(&b, r, i, col, col == 4);
        char *body = PQgetisnull(r, i, 14) ? NULL
                                           : json_norm(PQgetvalue(r, i, 14), (size_t)PQgetlength(r, i, 14));
        e |= vcol(&b, body, body ? strlen(body) : 0, 0);
        free(body);
        vrow_t row = {.part = (int)col_i64(r, i, 3), .effective_ts = col_i64(r, i, 8),
                      .partition = (int32_t)col_i64(r, i, 11), .offset = col_i64(r, i, 12)};
        snprintf(row.event_id, sizeof row.event_id, "%s", PQgetvalue(r, i, 2));
        if (e || !(row.cols = dup_str((tl_str_t){b.data, b.len}))) rc = TL_ENOMEM;
        else if ((rc = vrows_push(&t->convs[ci], &row))) free(row.cols);
    }
    for (size_t i = 0; !rc && i < t->n; i++) qsort(t->convs[i].v, t->convs[i].n, sizeof *t->convs[i].v, vrow_cmp);
    tl_buf_close(&b);
    PQclear(r);
    return rc;
}

/* Column k (0-based, vcols order) of a joined row and its length; NULL
 * when the row has fewer columns. */
static const char *col_at(const char *cols, size_t k, size_t *len) {
    const char *p = cols;
    for (size_t i = 0; i < k && p; i++) {
        p = strchr(p, VSEP);
        if (p) p++;
    }
    if (p) *len = strcspn(p, "\x1f");
    return p;
}

/* The text of x[0..lx) and y[0..ly) around where they first differ, each
 * into n bytes: from a little before that byte ("…" when not from the
 * start), cut at a UTF-8 character boundary ("…" when cut), so a long
 * text differing near its end shows the difference. */
static void excerpt(const char *x, size_t lx, const char *y, size_t ly, char *a, char *b, size_t n) {
    size_t d = 0;
    while (d < lx && d < ly && x[d] == y[d]) d++;
    size_t start = d > 48 ? d - 48 : 0;
    while (start > 0 && ((unsigned char)x[start] & 0xC0) == 0x80) start--;
    const char *src[2] = {x, y};
    size_t len[2] = {lx, ly};
    char *dst[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        size_t room = n > 16 ? n - 16 : 0;
        size_t from = start < len[i] ? start : len[i];
        size_t take = tl_view_utf8_cut(src[i] + from, len[i] - from, room);
        snprintf(dst[i], n, "%s%.*s%s", from ? "\xe2\x80\xa6" : "", (int)take, src[i] + from,
                 from + take < len[i] ? "\xe2\x80\xa6" : "");
    }
}

/* Column k of a joined row, NULL shown as "(null)", into *p / *len. */
static void vrow_col(const char *cols, size_t k, const char **p, size_t *len) {
    *p = col_at(cols, k, len);
    if (!*p) *p = "(none)", *len = 6;
    else if (*len == 1 && (*p)[0] == VNULL[0]) *p = "(null)", *len = 6;
}

/* A JSON value as text: a string as itself, anything else as JSON; a new
 * string (NULL on allocation failure). */
static char *json_text(const json_t *j) {
    if (!j) return strdup("(absent)");
    if (json_is_string(j)) return strdup(json_string_value(j));
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* The first body key where the JSON objects a and b differ: "body.<key>"
 * into field, the values (see excerpt) into x and y.  0 when none does. */
static int body_diff(const char *a, const char *b, char *field, size_t fn, char *x, char *y, size_t n) {
    json_t *ja = json_loads(a, JSON_DECODE_ANY, NULL), *jb = json_loads(b, JSON_DECODE_ANY, NULL);
    int found = 0;
    if (json_is_object(ja) && json_is_object(jb)) {
        /* Keys in sorted order over both objects. */
        const char *best = NULL;
        for (int side = 0; side < 2; side++) {
            const char *k;
            json_t *val;
            json_object_foreach(side ? jb : ja, k, val) {
                if (json_equal(json_object_get(ja, k), json_object_get(jb, k))) continue;
                if (!best || strcmp(k, best) < 0) best = k;
            }
        }
        if (best) {
            snprintf(field, fn, "body.%s", best);
            char *tx = json_text(json_object_get(ja, best)), *ty = json_text(json_object_get(jb, best));
            excerpt(tx ? tx : "?", tx ? strlen(tx) : 1, ty ? ty : "?", ty ? strlen(ty) : 1, x, y, n);
            free(tx);
            free(ty);
            found = 1;
        }
    }
    json_decref(ja);
    json_decref(jb);
    return found;
}

static void row_name(const vrow_t *r, char *out, size_t n) {
    snprintf(out, n, "item %s part %d", r->event_id, r->part);
}

/* Row (event_id, part) of r, or NULL. */
static const vrow_t *vrows_find(const vrows_t *r, const vrow_t *key) {
    for (size_t i = 0; r && i < r->n; i++)
        if (r->v[i].part == key->part && strcmp(r->v[i].event_id, key->event_id) == 0) return &r->v[i];
    return NULL;
}

/* The first column where rows p (replay) and q (view) of the same item
 * differ, recorded; 0 when none does. */
static int vrow_diff(tl_verify_t *v, const char *conv, const char *customer, const vrow_t *p,
                     const vrow_t *q, const char *table) {
    char field[160], a[320], b[320], name[80];
    if (strcmp(p->cols, q->cols) == 0) return 0;
    row_name(p, name, sizeof name);
    for (size_t k = 0; k < NVCOLS; k++) {
        size_t la = 0, lb = 0;
        const char *pa = col_at(p->cols, k, &la), *pb = col_at(q->cols, k, &lb);
        if (pa && pb && la == lb && memcmp(pa, pb, la) == 0) continue;
        const char *sa, *sb;
        size_t na, nb;
        vrow_col(p->cols, k, &sa, &na);
        vrow_col(q->cols, k, &sb, &nb);
        excerpt(sa, na, sb, nb, a, b, sizeof a);
        if (strcmp(vcols[k], "body") == 0 && pa && pb) {
            char bf[64];
            if (body_diff(pa, pb, bf, sizeof bf, a, b, sizeof a)) {
                snprintf(field, sizeof field, "%s: %s", name, bf);
                return add_diff(v, "conversation", conv, customer, table, field, a, b) ? -1 : 1;
            }
        }
        snprintf(field, sizeof field, "%s: %s", name, vcols[k]);
        return add_diff(v, "conversation", conv, customer, table, field, a, b) ? -1 : 1;
    }
    return 0;
}

/* Rows x (replay) and y (view) of one conversation, whose digests differ:
 * the first row, in view order, that is missing, extra or different, and
 * its first differing column, recorded. */
static int vrows_diff(tl_verify_t *v, const char *conv, const char *customer, const vrows_t *x,
                      const vrows_t *y, const char *table) {
    char field[160], name[80];
    for (size_t i = 0; x && i < x->n; i++) {
        const vrow_t *q = vrows_find(y, &x->v[i]);
        if (!q) {
            row_name(&x->v[i], name, sizeof name);
            snprintf(field, sizeof field, "%s: row", name);
            return add_diff(v, "conversation", conv, customer, table, field, "present", "missing");
        }
        int d = vrow_diff(v, conv, customer, &x->v[i], q, table);
        if (d) return d < 0 ? TL_ENOMEM : TL_OK;
    }
    for (size_t i = 0; y && i < y->n; i++) {
        if (vrows_find(x, &y->v[i])) continue;
        row_name(&y->v[i], name, sizeof name);
        snprintf(field, sizeof field, "%s: row", name);
        return add_diff(v, "conversation", conv, customer, table, field, "absent", "present");
    }
    /* Same rows, same columns, and yet another digest: a row twice. */
    char a[32], b[32];
    snprintf(a, sizeof a, "%zu rows", x ? x->n : 0);
    snprintf(b, sizeof b, "%zu rows", y ? y->n : 0);
    return add_diff(v, "conversation", conv, customer, table, "rows", a, b);
}

/* view_<platform>: exactly the rows the replay renders, per conversation. */
static int cmp_view(tl_verify_t *v, PGconn *pg, size_t k, const char *table, char *err, size_t errlen) {
    vtable_t got;
    memset(&got, 0, sizeof got);
    int rows = 0, rc = load_view(pg, table, &got, &rows, err, errlen);
    char hx[TL_VERIFY_DIGEST_HEX], hy[TL_VERIFY_DIGEST_HEX];
    for (size_t i = 0; !rc && i < got.idx.cap; i++) {
        if (!got.idx.keys[i]) continue;
        const char *key = got.idx.keys[i], *slash = strchr(key, '/');
        size_t gi = got.idx.vals[i];
        size_t ci = smap_get(&v->conv.idx, key);
        const vrows_t *x = ci == SIZE_MAX ? NULL : &v->conv_rows[ci * TL_VERIFY_MAX_VIEWS + k];
        if ((rc = vrows_digest(x, hx)) || (rc = vrows_digest(&got.convs[gi], hy))) break;
        if (strcmp(hx, hy) == 0) continue;
        rc = vrows_diff(v, slash ? slash + 1 : key, ci == SIZE_MAX ? got.customer[gi] : v->conv.v[ci].customer,
                        x, &got.convs[gi], table);
    }
    for (size_t ci = 0; !rc && ci < v->conv.n; ci++) {
        const tl_verify_conv_t *c = &v->conv.v[ci];
        char key[160];
        ckey(key, sizeof key, c->tenant, c->id);
        if (smap_get(&got.idx, key) != SIZE_MAX || !v->conv_rows[ci * TL_VERIFY_MAX_VIEWS + k].n) continue;
        rc = vrows_diff(v, c->id, c->customer, &v->conv_rows[ci * TL_VERIFY_MAX_VIEWS + k], NULL, table);
    }
    if (!rc) json_object_set_new(v->checked, table, json_integer(rows));
    vtable_close(&got);
    return rc;
}

static int str_eq_null(const char *a, const char *b) {
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* customer_fields: value, is_key, version, platform, event_id per field. */
static int cmp_fields(tl_verify_t *v, PGconn *pg, char *err, size_t errlen) {
    int rc = TL_OK;
    PGresult *r = select_rows(pg,
        "SELECT tenant_id, customer_id, field, value, is_key, version, platform, event_id FROM customer_fields",
        err, errlen, &rc);
    if (!r) return rc;
    char *seen = calloc(v->nfields + 1, 1);
    if (!seen) rc = TL_ENOMEM;
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        char key[512], field[160], a[64], b[64];
        const char *cust = PQgetvalue(r, i, 1), *name = PQgetvalue(r, i, 2);
        snprintf(key, sizeof key, "%s/%s/%s", PQgetvalue(r, i, 0), cust, name);
        size_t fi = smap_get(&v->field_idx, key);
        if (fi == SIZE_MAX) {
            snprintf(field, sizeof field, "field %s: row", name);
            rc = add_diff(v, "customer", cust, cust, "customer_fields", field, "absent", "present");
            continue;
        }
        seen[fi] = 1;
        const frow_t *f = &v->fields[fi];
        const char *value = PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3);
        int is_key = PQgetvalue(r, i, 4)[0] == 't';
        int64_t version = col_i64(r, i, 5);
        const char *what = NULL, *x = NULL, *y = NULL;
        if (!str_eq_null(f->value, value)) {
            what = "value";
            x = f->value ? f->value : "(null)";
            y = value ? value : "(null)";
        } else if (f->is_key != is_key) {
            what = "is_key";
            x = f->is_key ? "true" : "false";
            y = is_key ? "true" : "false";
        } else if (f->version != version) {
            what = "version";
            i64s(a, sizeof a, f->version);
            i64s(b, sizeof b, version);
            x = a;
            y = b;
        } else if (strcmp(f->platform, PQgetvalue(r, i, 6)) != 0) {
            what = "platform";
            x = f->platform;
            y = PQgetvalue(r, i, 6);
        } else if (strcmp(f->event_id, PQgetvalue(r, i, 7)) != 0) {
            what = "event_id";
            x = f->event_id;
            y = PQgetvalue(r, i, 7);
        }
        if (!what) continue;
        snprintf(field, sizeof field, "field %s: %s", name, what);
        rc = add_diff(v, "customer", cust, cust, "customer_fields", field, x, y);
    }
    for (size_t i = 0; !rc && i < v->nfields; i++) {
        if (seen[i]) continue;
        char field[160];
        snprintf(field, sizeof field, "field %s: row", v->fields[i].field);
        rc = add_diff(v, "customer", v->fields[i].customer, v->fields[i].customer, "customer_fields", field,
                      "present", "missing");
    }
    if (!rc) json_object_set_new(v->checked, "customer_fields", json_integer(PQntuples(r)));
    free(seen);
    PQclear(r);
    return rc;
}

/* conflicts: customer, field, status, candidates, chosen value. */
static int cmp_conflicts(tl_verify_t *v, PGconn *pg, char *err, size_t errlen) {
    int rc = TL_OK;
    PGresult *r = select_rows(pg,
        "SELECT tenant_id, conflict_id, customer_id, field, status, candidates::text, chosen_value FROM conflicts",
        err, errlen, &rc);
    if (!r) return rc;
    char *seen = calloc(v->nconfs + 1, 1);
    if (!seen) rc = TL_ENOMEM;
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        char key[256], field[160];
        const char *id = PQgetvalue(r, i, 1), *cust = PQgetvalue(r, i, 2), *name = PQgetvalue(r, i, 3);
        snprintf(key, sizeof key, "%s/%s", PQgetvalue(r, i, 0), id);
        size_t ki = smap_get(&v->conf_idx, key);
        if (ki == SIZE_MAX) {
            snprintf(field, sizeof field, "conflict %s (field %s): row", id, name);
            rc = add_diff(v, "customer", cust, cust, "conflicts", field, "absent", "present");
            continue;
        }
        seen[ki] = 1;
        const crow_t *c = &v->confs[ki];
        char *cand = json_norm(PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5));
        if (!cand) {
            rc = TL_ENOMEM;
            break;
        }
        const char *chosen = PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6);
        const char *what = NULL, *x = NULL, *y = NULL;
        if (strcmp(c->customer, cust) != 0) what = "customer", x = c->customer, y = cust;
        else if (strcmp(c->field, name) != 0) what = "field", x = c->field, y = name;
        else if (strcmp(c->status, PQgetvalue(r, i, 4)) != 0) what = "status", x = c->status, y = PQgetvalue(r, i, 4);
        else if (!str_eq_null(c->candidates, cand))
            what = "candidates", x = c->candidates ? c->candidates : "[]", y = cand;
        else if (!str_eq_null(c->chosen, chosen))
            what = "chosen_value", x = c->chosen ? c->chosen : "(null)", y = chosen ? chosen : "(null)";
        if (what) {
            snprintf(field, sizeof field, "conflict %s (field %s): %s", id, c->field, what);
            rc = add_diff(v, "customer", c->customer, c->customer, "conflicts", field, x, y);
        }
        free(cand);
    }
    for (size_t i = 0; !rc && i < v->nconfs; i++) {
        if (seen[i]) continue;
        char field[160];
        snprintf(field, sizeof field, "conflict %s (field %s): row", v->confs[i].id, v->confs[i].field);
        rc = add_diff(v, "customer", v->confs[i].customer, v->confs[i].customer, "conflicts", field, "present",
                      "missing");
    }
    if (!rc) json_object_set_new(v->checked, "conflicts", json_integer(PQntuples(r)));
    free(seen);
    PQclear(r);
    return rc;
}

int tl_verify_postgres(tl_verify_t *v, PGconn *pg, char *err, size_t errlen) {
    finish_replay(v);
    PGresult *r = PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? TL_OK : tl_pg_err(pg, r);
    if (rc) snprintf(err, errlen, "%s", PQerrorMessage(pg));
    PQclear(r);
    /* The unified tables are the agent worker's; a verifier never
     * configured compares them as far as the replay alone says. */
    int unified = !v->configured || v->unified;
    if (!rc && unified) rc = cmp_customers(v, pg, "customers", err, errlen);
    if (!rc && unified) rc = cmp_conversations(v, pg, "conversations", err, errlen);
    if (!rc && v->configured && v->unified) rc = cmp_fields(v, pg, err, errlen);
    if (!rc && v->configured && v->unified) rc = cmp_conflicts(v, pg, err, errlen);
    for (size_t k = 0; !rc && v->configured && k < v->nviews; k++) {
        char table[32];
        snprintf(table, sizeof table, "view_%s", tl_platform_slug(v->pf[k]->platform));
        rc = cmp_view(v, pg, k, table, err, errlen);
    }
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
        json_t *cj = json_pack("{s:s, s:s, s:s, s:I, s:s}", "tenant", c->tenant, "conversation", c->id,
                               "customer", c->customer, "version", (json_int_t)c->version, "digest", hex);
        if (!cj) goto fail;
        if (v->configured && v->nviews) {
            json_t *views = json_object();
            for (size_t k = 0; views && k < v->nviews; k++) {
                char table[32];
                snprintf(table, sizeof table, "view_%s", tl_platform_slug(v->pf[k]->platform));
                if (vrows_digest(&v->conv_rows[i * TL_VERIFY_MAX_VIEWS + k], hex)) break;
                json_object_set_new(views, table, json_string(hex));
            }
            json_object_set_new(cj, "views", views ? views : json_null());
        }
        json_array_append_new(convs, cj);
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
