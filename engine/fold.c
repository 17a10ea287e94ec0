/*
 * fold.c -- the fold (see fold.h).
 *
 * States live in an open-addressing table keyed by (tenant, customer);
 * the table doubles at 50% load.  Each state owns its strings.  Recent
 * idempotency keys are a ring of owned strings scanned linearly: 64 short
 * keys compare faster than any hashing of them would pay back, and the ring
 * keeps them in arrival order, which is what the serialised form needs.
 */
#include <stdlib.h>
#include <string.h>

#include <avro.h>

#include "error.h"
#include "fold.h"
#include "uuid.h"

typedef struct conv {
    char id[TL_UUID_STRLEN + 1];
    int64_t version, opened_at, last_activity;
    int closed;
    int present;
} conv_t;

typedef struct state {
    uint64_t hash;
    char *tenant;
    char *customer;
    size_t tlen, clen;
    int64_t version;
    int64_t last_event_ts;
    conv_t conv;
    char *keys[TL_FOLD_RECENT_KEYS];    /* ring, oldest at `next` when full */
    uint16_t klens[TL_FOLD_RECENT_KEYS];
    int nkeys, next;
} state_t;

struct tl_fold {
    tl_fold_opts_t opts;
    state_t **slots;
    size_t cap, count;
};

static uint64_t key_hash(tl_str_t tenant, tl_str_t customer) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < tenant.len; i++) h = (h ^ (uint8_t)tenant.ptr[i]) * 0x100000001b3ULL;
    h = (h ^ 0xff) * 0x100000001b3ULL;
    for (size_t i = 0; i < customer.len; i++) h = (h ^ (uint8_t)customer.ptr[i]) * 0x100000001b3ULL;
    h ^= h >> 29;
    return h;
}

tl_fold_t *tl_fold_new(const tl_fold_opts_t *opts) {
    tl_fold_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->opts = *opts;
    f->cap = 1024;
    f->slots = calloc(f->cap, sizeof *f->slots);
    if (!f->slots) {
        free(f);
        return NULL;
    }
    return f;
}

static void state_free(state_t *st) {
    if (!st) return;
    for (int i = 0; i < st->nkeys; i++) free(st->keys[i]);
    free(st->tenant);
    free(st->customer);
    free(st);
}

void tl_fold_clear(tl_fold_t *f) {
    for (size_t i = 0; i < f->cap; i++) {
        state_free(f->slots[i]);
        f->slots[i] = NULL;
    }
    f->count = 0;
}

void tl_fold_free(tl_fold_t *f) {
    if (!f) return;
    tl_fold_clear(f);
    free(f->slots);
    free(f);
}

size_t tl_fold_count(const tl_fold_t *f) { return f->count; }

static size_t find(const tl_fold_t *f, uint64_t h, tl_str_t tenant, tl_str_t customer) {
    size_t i = h & (f->cap - 1);
    for (;;) {
        state_t *st = f->slots[i];
        if (!st || (st->hash == h && st->tlen == tenant.len && st->clen == customer.len &&
                    memcmp(st->tenant, tenant.ptr, tenant.len) == 0 &&
                    memcmp(st->customer, customer.ptr, customer.len) == 0))
            return i;
        i = (i + 1) & (f->cap - 1);
    }
}

static int grow(tl_fold_t *f) {
    size_t ncap = f->cap * 2;
    state_t **n = calloc(ncap, sizeof *n);
    if (!n) return TL_ENOMEM;
    for (size_t i = 0; i < f->cap; i++) {
        state_t *st = f->slots[i];
        if (!st) continue;
        size_t j = st->hash & (ncap - 1);
        while (n[j]) j = (j + 1) & (ncap - 1);
        n[j] = st;
    }
    free(f->slots);
    f->slots = n;
    f->cap = ncap;
    return TL_OK;
}

static char *dup_str(tl_str_t s) {
    char *p = malloc(s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

/* The state for (tenant, customer), created empty if absent; NULL on ENOMEM. */
static state_t *state_get(tl_fold_t *f, tl_str_t tenant, tl_str_t customer) {
    uint64_t h = key_hash(tenant, customer);
    size_t i = find(f, h, tenant, customer);
    if (f->slots[i]) return f->slots[i];
    if ((f->count + 1) * 2 > f->cap) {
        if (grow(f)) return NULL;
        i = find(f, h, tenant, customer);
    }
    state_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->hash = h;
    st->tenant = dup_str(tenant);
    st->customer = dup_str(customer);
    if (!st->tenant || !st->customer) {
        state_free(st);
        return NULL;
    }
    st->tlen = tenant.len;
    st->clen = customer.len;
    f->slots[i] = st;
    f->count++;
    return st;
}

static int key_seen(const state_t *st, tl_str_t key) {
    for (int i = 0; i < st->nkeys; i++)
        if (st->klens[i] == key.len && memcmp(st->keys[i], key.ptr, key.len) == 0) return 1;
    return 0;
}

static int key_add(state_t *st, tl_str_t key) {
    if (key.len > UINT16_MAX) return TL_OK; /* not remembered; adapters cap keys far lower */
    char *k = dup_str(key);
    if (!k) return TL_ENOMEM;
    if (st->nkeys < TL_FOLD_RECENT_KEYS) {
        st->keys[st->nkeys] = k;
        st->klens[st->nkeys++] = (uint16_t)key.len;
    } else {
        free(st->keys[st->next]);
        st->keys[st->next] = k;
        st->klens[st->next] = (uint16_t)key.len;
        st->next = (st->next + 1) % TL_FOLD_RECENT_KEYS;
    }
    return TL_OK;
}

int64_t tl_fold_effective_ts(const tl_fold_t *f, const tl_event_t *ev) {
    int64_t lo = ev->received_at - f->opts.max_skew_ms, hi = ev->received_at;
    return ev->occurred_at < lo ? lo : ev->occurred_at > hi ? hi : ev->occurred_at;
}

/* Events a person exchanged with the business: these open conversations. */
static int conversational(tl_event_kind_t k) {
    return k == TL_EV_MESSAGE_RECEIVED || k == TL_EV_AGENT_REPLIED || k == TL_EV_TRANSCRIPT_SEGMENT;
}

/* The conversation an agent action names, if it is the current one. */
static tl_str_t named_conversation(const tl_event_t *ev) {
    switch (ev->kind) {
    case TL_EV_CONVERSATION_ASSIGNED: return ev->u.assign.conversation_id;
    case TL_EV_CONVERSATION_TAGGED: return ev->u.tag.conversation_id;
    case TL_EV_CONVERSATION_CLOSED: return ev->u.close.conversation_id;
    case TL_EV_AGENT_REPLIED: return ev->u.reply.conversation_id;
    default: return TL_STR_NULL;
    }
}

int tl_fold_apply(tl_fold_t *f, const tl_event_t *ev, tl_fold_result_t *res) {
    if (!ev->tenant_id.len || !ev->customer_id.len) return TL_EINVAL;
    state_t *st = state_get(f, ev->tenant_id, ev->customer_id);
    if (!st) return TL_ENOMEM;
    memset(res, 0, sizeof *res);
    res->effective_ts = tl_fold_effective_ts(f, ev);
    if (st->conv.present) {
        memcpy(res->conversation_id, st->conv.id, sizeof st->conv.id);
        res->conversation_version = st->conv.version;
    }
    if (ev->idempotency_key.len && key_seen(st, ev->idempotency_key)) {
        res->duplicate = 1;
        res->customer_version = st->version;
        return TL_OK;
    }
    if (ev->idempotency_key.len && key_add(st, ev->idempotency_key)) return TL_ENOMEM;

    st->version++;
    if (res->effective_ts > st->last_event_ts) st->last_event_ts = res->effective_ts;
    conv_t *c = &st->conv;
    tl_str_t named = named_conversation(ev);
    int names_current = named.ptr && c->present && named.len == TL_UUID_STRLEN &&
                        memcmp(named.ptr, c->id, TL_UUID_STRLEN) == 0;

    if (conversational(ev->kind)) {
        if (!c->present || c->closed || res->effective_ts - c->last_activity > f->opts.idle_timeout_ms) {
            const char *parts[] = {"conversation", ev->tenant_id.ptr, ev->customer_id.ptr, ev->event_id.ptr};
            size_t lens[] = {12, ev->tenant_id.len, ev->customer_id.len, ev->event_id.len};
            tl_uuid_v5(parts, lens, 4, c->id);
            c->present = 1;
            c->closed = 0;
            c->version = 0;
            c->opened_at = res->effective_ts;
            c->last_activity = res->effective_ts;
            res->conversation_opened = 1;
        }
        c->version++;
        if (res->effective_ts > c->last_activity) c->last_activity = res->effective_ts;
    } else if (names_current || (ev->kind == TL_EV_BEHAVIOR_TRACKED && c->present && !c->closed)) {
        c->version++;
        if (ev->kind == TL_EV_CONVERSATION_CLOSED) c->closed = 1;
    }

    res->customer_version = st->version;
    if (c->present && (conversational(ev->kind) || names_current ||
                       (ev->kind == TL_EV_BEHAVIOR_TRACKED && !c->closed))) {
        memcpy(res->conversation_id, c->id, sizeof c->id);
        res->conversation_version = c->version;
    } else if (!names_current && named.ptr) {
        /* An action on a conversation that is no longer current: recorded
         * on the customer, attributed to the conversation it names. */
        size_t n = named.len < TL_UUID_STRLEN ? named.len : TL_UUID_STRLEN;
        memcpy(res->conversation_id, named.ptr, n);
        res->conversation_id[n] = 0;
        res->conversation_version = 0;
    } else {
        res->conversation_id[0] = 0;
        res->conversation_version = 0;
    }
    return TL_OK;
}

/* ---- serialised form: schemas/state.avsc ---- */

enum { S_TENANT, S_CUSTOMER, S_VERSION, S_LAST_TS, S_CONV, S_KEYS };
enum { C_ID, C_VERSION, C_OPENED, C_LAST, C_CLOSED };

int tl_fold_state_encode(tl_fold_t *f, tl_codec_t *codec, tl_str_t tenant, tl_str_t customer,
                         tl_buf_t *out) {
    state_t *st = f->slots[find(f, key_hash(tenant, customer), tenant, customer)];
    if (!st) return TL_ENOTFOUND;
    avro_value_t *v = tl_codec_value(codec), field, branch, rec, item;
    int e = 0;
    e |= avro_value_get_by_index(v, S_TENANT, &field, NULL);
    e |= avro_value_set_string_len(&field, st->tenant, st->tlen + 1);
    e |= avro_value_get_by_index(v, S_CUSTOMER, &field, NULL);
    e |= avro_value_set_string_len(&field, st->customer, st->clen + 1);
    e |= avro_value_get_by_index(v, S_VERSION, &field, NULL);
    e |= avro_value_set_long(&field, st->version);
    e |= avro_value_get_by_index(v, S_LAST_TS, &field, NULL);
    e |= avro_value_set_long(&field, st->last_event_ts);
    e |= avro_value_get_by_index(v, S_CONV, &field, NULL);
    if (!st->conv.present) {
        e |= avro_value_set_branch(&field, 0, &branch);
        e |= avro_value_set_null(&branch);
    } else {
        e |= avro_value_set_branch(&field, 1, &rec);
        e |= avro_value_get_by_index(&rec, C_ID, &item, NULL);
        e |= avro_value_set_string_len(&item, st->conv.id, TL_UUID_STRLEN + 1);
        e |= avro_value_get_by_index(&rec, C_VERSION, &item, NULL);
        e |= avro_value_set_long(&item, st->conv.version);
        e |= avro_value_get_by_index(&rec, C_OPENED, &item, NULL);
        e |= avro_value_set_long(&item, st->conv.opened_at);
        e |= avro_value_get_by_index(&rec, C_LAST, &item, NULL);
        e |= avro_value_set_long(&item, st->conv.last_activity);
        e |= avro_value_get_by_index(&rec, C_CLOSED, &item, NULL);
        e |= avro_value_set_boolean(&item, st->conv.closed);
    }
    e |= avro_value_get_by_index(v, S_KEYS, &field, NULL);
    for (int i = 0; i < st->nkeys; i++) {
        int k = st->nkeys < TL_FOLD_RECENT_KEYS ? i : (st->next + i) % TL_FOLD_RECENT_KEYS;
        e |= avro_value_append(&field, &item, NULL);
        e |= avro_value_set_string_len(&item, st->keys[k], (size_t)st->klens[k] + 1);
    }
    if (e) return TL_ENOMEM;
    return tl_codec_write(codec, out);
}

static tl_str_t get_str(avro_value_t *v) {
    const char *p = NULL;
    size_t n = 0;
    if (avro_value_get_string(v, &p, &n) || !p || n == 0) return (tl_str_t){"", 0};
    return (tl_str_t){p, n - 1};    /* avro-c counts the NUL */
}

int tl_fold_state_load(tl_fold_t *f, tl_codec_t *codec, const void *data, size_t len) {
    avro_value_t *v, field, rec, item;
    int rc = tl_codec_read(codec, data, len, &v);
    if (rc) return rc;
    avro_value_get_by_index(v, S_TENANT, &field, NULL);
    tl_str_t tenant = get_str(&field);
    avro_value_get_by_index(v, S_CUSTOMER, &field, NULL);
    tl_str_t customer = get_str(&field);
    if (!tenant.len || !customer.len) return TL_ECORRUPT;

    /* Replace: drop the old state, build the new one from scratch. */
    size_t i = find(f, key_hash(tenant, customer), tenant, customer);
    if (f->slots[i]) {
        /* Removal from linear probing: reinsert the cluster after it. */
        state_free(f->slots[i]);
        f->slots[i] = NULL;
        f->count--;
        for (size_t j = (i + 1) & (f->cap - 1); f->slots[j]; j = (j + 1) & (f->cap - 1)) {
            state_t *moved = f->slots[j];
            f->slots[j] = NULL;
            f->slots[find(f, moved->hash, (tl_str_t){moved->tenant, moved->tlen},
                          (tl_str_t){moved->customer, moved->clen})] = moved;
        }
    }
    state_t *st = state_get(f, tenant, customer);
    if (!st) return TL_ENOMEM;
    int64_t l;
    int b;
    avro_value_get_by_index(v, S_VERSION, &field, NULL);
    avro_value_get_long(&field, &st->version);
    avro_value_get_by_index(v, S_LAST_TS, &field, NULL);
    avro_value_get_long(&field, &st->last_event_ts);
    avro_value_get_by_index(v, S_CONV, &field, NULL);
    int disc = 0;
    avro_value_get_discriminant(&field, &disc);
    if (disc == 1) {
        avro_value_get_current_branch(&field, &rec);
        avro_value_get_by_index(&rec, C_ID, &item, NULL);
        tl_str_t id = get_str(&item);
        if (id.len != TL_UUID_STRLEN) return TL_ECORRUPT;
        memcpy(st->conv.id, id.ptr, TL_UUID_STRLEN);
        st->conv.id[TL_UUID_STRLEN] = 0;
        avro_value_get_by_index(&rec, C_VERSION, &item, NULL);
        avro_value_get_long(&item, &l);
        st->conv.version = l;
        avro_value_get_by_index(&rec, C_OPENED, &item, NULL);
        avro_value_get_long(&item, &st->conv.opened_at);
        avro_value_get_by_index(&rec, C_LAST, &item, NULL);
        avro_value_get_long(&item, &st->conv.last_activity);
        avro_value_get_by_index(&rec, C_CLOSED, &item, NULL);
        avro_value_get_boolean(&item, &b);
        st->conv.closed = b;
        st->conv.present = 1;
    }
    avro_value_get_by_index(v, S_KEYS, &field, NULL);
    size_t n = 0;
    avro_value_get_size(&field, &n);
    for (size_t k = 0; k < n; k++) {
        avro_value_get_by_index(&field, k, &item, NULL);
        if (key_add(st, get_str(&item))) return TL_ENOMEM;
    }
    return TL_OK;
}
