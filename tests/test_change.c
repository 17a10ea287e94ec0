/* test_change.c -- engine/change.c */
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "change_cmp.h"
#include "error.h"
#include "fold.h"
#include "schemas.h"
#include "suites.h"

START_TEST(change_roundtrip_every_field) {
    int err;
    tl_codec_t *c = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(c);
    static const char event[] = "\xc3\x01 opaque event bytes \x00\xff";
    tl_change_t in = {
        .event_id = TL_STR("018bcfe5-6800-7000-8000-000000000001"),
        .tenant_id = TL_STR("acme"),
        .customer_id = TL_STR("ccb98ee3-cc1b-581d-aa66-7d85f131e0af"),
        .source_partition = 7, .source_offset = 123456789012LL,
        .customer_version = 42,
        .conversation_id = TL_STR("8821379b-782e-5391-83cb-7405595a777d"),
        .conversation_version = 9, .conversation_opened = 1,
        .effective_ts = 1700000000123LL, .duplicate = 0,
        .event = {event, sizeof event - 1},
    }, out;
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert(out.event_id.len == in.event_id.len && !memcmp(out.event_id.ptr, in.event_id.ptr, in.event_id.len));
    ck_assert(out.tenant_id.len == 4 && !memcmp(out.tenant_id.ptr, "acme", 4));
    ck_assert(out.customer_id.len == 36);
    ck_assert_int_eq(out.source_partition, 7);
    ck_assert_int_eq(out.source_offset, 123456789012LL);
    ck_assert_int_eq(out.customer_version, 42);
    ck_assert(out.conversation_id.len == 36 && !memcmp(out.conversation_id.ptr, in.conversation_id.ptr, 36));
    ck_assert_int_eq(out.conversation_version, 9);
    ck_assert_int_eq(out.conversation_opened, 1);
    ck_assert_int_eq(out.effective_ts, 1700000000123LL);
    ck_assert_int_eq(out.duplicate, 0);
    ck_assert(out.event.len == in.event.len && !memcmp(out.event.ptr, event, in.event.len));

    /* no conversation, duplicate */
    in.conversation_id = TL_STR_NULL;
    in.duplicate = 1;
    tl_buf_reset(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert_ptr_null(out.conversation_id.ptr);
    ck_assert_int_eq(out.duplicate, 1);
    tl_buf_close(&b);
    tl_codec_free(c);
}
END_TEST

START_TEST(change_decode_refuses_an_event_record) {
    int err;
    tl_codec_t *c = tl_change_codec_new(&err);
    tl_change_t out;
    /* Right magic, fingerprint of another schema. */
    static const char bytes[] = "\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00";
    ck_assert_int_eq(tl_change_decode(c, bytes, sizeof bytes - 1, &out), TL_EUNKNOWNSCHEMA);
    tl_codec_free(c);
}
END_TEST

static int str_is(tl_str_t s, const char *want) {
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

START_TEST(change_roundtrip_fold_changes) {
    int err;
    tl_codec_t *c = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(c);
    char big[600];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    tl_change_candidate_t cands[2] = {
        {TL_STR("A-1"), TL_STR("web"), TL_STR("e-1"), 1000},
        {{big, strlen(big)}, TL_STR("wechat"), TL_STR("e-2"), 2000},
    };
    tl_change_fold_t fc[3] = {
        {.kind = TL_STR("field_set"), .field = TL_STR("name"), .value = TL_STR("Li Lei"),
         .platform = TL_STR("app"), .event_id = TL_STR("e-3"), .effective_ts = 3000, .version = 7},
        {.kind = TL_STR("conflict_opened"), .field = TL_STR("order_no"), .value = TL_STR("B-2"),
         .conflict_id = TL_STR("c0f1"), .is_key = 1, .candidates = cands, .ncandidates = 2},
        {.kind = TL_STR("linked"), .customer = TL_STR("cust-b")},
    };
    tl_change_t in = {
        .event_id = TL_STR("e-9"), .tenant_id = TL_STR("acme"), .customer_id = TL_STR("cust-a"),
        .customer_version = 3, .effective_ts = 5, .event = TL_STR("x"),
        .ignored = TL_STR("NOT_LINKED"), .fold_changes = fc, .nfold_changes = 3,
    }, out;
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert(str_is(out.ignored, "NOT_LINKED"));
    ck_assert_uint_eq(out.nfold_changes, 3);
    tl_change_fold_t x;
    tl_change_candidate_t cd;
    ck_assert_int_eq(tl_change_fold_get(&out, 0, &x), 0);
    ck_assert(str_is(x.kind, "field_set") && str_is(x.field, "name") && str_is(x.value, "Li Lei"));
    ck_assert(str_is(x.platform, "app") && str_is(x.event_id, "e-3"));
    ck_assert_int_eq(x.effective_ts, 3000);
    ck_assert_int_eq(x.version, 7);
    ck_assert_ptr_null(x.conflict_id.ptr);
    ck_assert_uint_eq(x.ncandidates, 0);
    ck_assert_int_eq(tl_change_fold_get(&out, 1, &x), 0);
    ck_assert(str_is(x.conflict_id, "c0f1") && x.is_key && x.ncandidates == 2);
    ck_assert_int_eq(tl_change_candidate_get(&out, 1, 1, &cd), 0);
    ck_assert(str_is(cd.value, big) && str_is(cd.platform, "wechat") && str_is(cd.event_id, "e-2"));
    ck_assert_int_eq(cd.effective_ts, 2000);
    ck_assert_int_eq(tl_change_candidate_get(&out, 1, 2, &cd), TL_EINVAL);
    ck_assert_int_eq(tl_change_fold_get(&out, 2, &x), 0);
    ck_assert(str_is(x.customer, "cust-b") && !x.field.ptr && !x.value.ptr);
    ck_assert_int_eq(tl_change_fold_get(&out, 3, &x), TL_EINVAL);

    /* The array is emptied by the next encode: a Change without fold changes. */
    in.nfold_changes = 0;
    in.ignored = TL_STR_NULL;
    tl_buf_reset(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert_uint_eq(out.nfold_changes, 0);
    ck_assert_ptr_null(out.ignored.ptr);
    tl_buf_close(&b);
    tl_codec_free(c);
}
END_TEST

/* A record written with version 1 of the schema (schemas/history) decodes
 * with the current reader: no ignored reason, no fold changes. */
START_TEST(change_decodes_a_version_1_record) {
    int err;
    tl_codec_t *v1 = tl_codec_new(tl_schema_change_v1, &err), *c = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(v1);
    ck_assert_ptr_nonnull(c);
    ck_assert(tl_codec_fingerprint(v1) != tl_codec_fingerprint(c));
    avro_value_t *v = tl_codec_value(v1), f, br;
    static const struct { const char *name, *val; } strs[] = {
        {"event_id", "e-1"}, {"tenant_id", "acme"}, {"customer_id", "cust-1"}};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(avro_value_get_by_name(v, strs[i].name, &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_string(&f, strs[i].val), 0);
    }
    avro_value_get_by_name(v, "source_partition", &f, NULL);
    avro_value_set_int(&f, 2);
    avro_value_get_by_name(v, "source_offset", &f, NULL);
    avro_value_set_long(&f, 77);
    avro_value_get_by_name(v, "customer_version", &f, NULL);
    avro_value_set_long(&f, 4);
    avro_value_get_by_name(v, "conversation_id", &f, NULL);
    avro_value_set_branch(&f, 1, &br);
    avro_value_set_string(&br, "conv-1");
    avro_value_get_by_name(v, "conversation_version", &f, NULL);
    avro_value_set_long(&f, 2);
    avro_value_get_by_name(v, "conversation_opened", &f, NULL);
    avro_value_set_boolean(&f, 0);
    avro_value_get_by_name(v, "effective_ts", &f, NULL);
    avro_value_set_long(&f, 1700000000000LL);
    avro_value_get_by_name(v, "duplicate", &f, NULL);
    avro_value_set_boolean(&f, 0);
    avro_value_get_by_name(v, "event", &f, NULL);
    avro_value_set_bytes(&f, "ev", 2);
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_codec_write(v1, &b), 0);
    tl_change_t out;
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert(str_is(out.event_id, "e-1") && str_is(out.conversation_id, "conv-1"));
    ck_assert_int_eq(out.source_offset, 77);
    ck_assert_int_eq(out.effective_ts, 1700000000000LL);
    ck_assert_ptr_null(out.ignored.ptr);
    ck_assert_uint_eq(out.nfold_changes, 0);
    tl_buf_close(&b);
    tl_codec_free(v1);
    tl_codec_free(c);
}
END_TEST

/* ---- the direct decoder against the general path ----------------------- */

/* The same Change (tests/change_cmp.h), or a failure naming the first
 * difference. */
static void same_change(const tl_change_t *a, const tl_change_t *b) {
    char where[96];
    const char *d = tl_change_diff(a, b, where, sizeof where);
    ck_assert_msg(d == NULL, "direct and general decodes differ in %s", d);
    ck_assert(a->event.ptr != NULL && b->event.ptr != NULL);
}

/* The comparison itself: it must see a difference, or the differential
 * tests above could not fail. */
START_TEST(change_diff_names_the_first_difference) {
    tl_change_t a, b;
    memset(&a, 0, sizeof a);
    a.event_id = (tl_str_t)TL_STR("e-1");
    a.tenant_id = (tl_str_t)TL_STR("t");
    a.customer_id = (tl_str_t)TL_STR("c");
    a.event = (tl_str_t){"\xc3\x01", 2};
    a.customer_version = 3;
    b = a;
    char where[96];
    ck_assert_ptr_null(tl_change_diff(&a, &b, where, sizeof where));
    b.customer_version = 4;
    ck_assert_str_eq(tl_change_diff(&a, &b, where, sizeof where), "customer_version");
    b = a;
    b.tenant_id = (tl_str_t)TL_STR("u");
    ck_assert_str_eq(tl_change_diff(&a, &b, where, sizeof where), "tenant_id");
    b = a;
    b.ignored = (tl_str_t)TL_STR("NOT_LINKED");
    ck_assert_str_eq(tl_change_diff(&a, &b, where, sizeof where), "ignored");
    b = a;
    b.nfold_changes = 1;    /* b claims an entry its accessor cannot give */
    ck_assert_str_eq(tl_change_diff(&a, &b, where, sizeof where), "nfold_changes");
}
END_TEST

/* Both paths on data[0..len): the same code and message, and on success
 * the same Change.  Returns the code. */
static int diff_decode(tl_codec_t *direct, tl_codec_t *general, const void *data, size_t len) {
    tl_change_t d, g;
    int rd = tl_change_decode(direct, data, len, &d);
    int rg = tl_change_decode_general(general, data, len, &g);
    ck_assert_msg(rd == rg, "direct %s, general %s at length %zu", tl_strerror(rd), tl_strerror(rg), len);
    ck_assert_str_eq(tl_codec_errmsg(direct), tl_codec_errmsg(general));
    if (rd == 0) same_change(&d, &g);
    return rd;
}

/* Deterministic generator of Changes (xorshift64). */
typedef struct gen {
    uint64_t s;
    tl_codec_t *ev;                 /* event codec for the embedded events */
    tl_buf_t event;
    char *big;                      /* a long value */
    size_t nbig;
    tl_change_candidate_t cand[8][4];
    tl_change_fold_t fold[8];
} gen_t;

static uint64_t gen_next(gen_t *g) {
    g->s ^= g->s << 13;
    g->s ^= g->s >> 7;
    g->s ^= g->s << 17;
    return g->s;
}

static size_t gen_below(gen_t *g, size_t n) { return (size_t)(gen_next(g) % n); }

/* Empty, short, UTF-8, an id, 255 bytes, or the long value. */
static tl_str_t gen_str(gen_t *g) {
    static const char *const pool[] = {
        "", "a", "name", "order_no", "李雷", "mini_program",
        "018bcfe5-6800-7000-8000-000000000001",
    };
    switch (gen_below(g, 9)) {
    case 7: return (tl_str_t){ g->big, 255 };
    case 8: return (tl_str_t){ g->big, g->nbig };
    default: {
        const char *p = pool[gen_below(g, sizeof pool / sizeof pool[0])];
        return (tl_str_t){ p, strlen(p) };
    }
    }
}

static tl_str_t gen_opt(gen_t *g) { return gen_below(g, 3) == 0 ? TL_STR_NULL : gen_str(g); }

static int64_t gen_long(gen_t *g) {
    static const int64_t edge[] = { 0, 1, -1, 63, 64, -65, INT32_MAX, INT32_MIN,
                                    INT64_MAX, INT64_MIN, 1716019200123LL };
    return gen_below(g, 2) ? edge[gen_below(g, sizeof edge / sizeof edge[0])] : (int64_t)gen_next(g);
}

/* An event of one of several kinds, encoded, for the `event` field. */
static tl_str_t gen_event(gen_t *g) {
    static const tl_attachment_t att = { TL_STR("https://img.example.cn/a.jpg"), TL_STR("image/jpeg"),
                                         1234, 640, 480, 1, 1 };
    tl_event_t ev = {
        .event_id = TL_STR("018bcfe5-6800-7000-8000-000000000002"), .tenant_id = TL_STR("acme"),
        .customer_id = TL_STR("cust-a"), .platform = (tl_platform_t)gen_below(g, TL_PLATFORM__COUNT),
        .platform_user_id = TL_STR("u-1"), .idempotency_key = TL_STR("k-1"),
        .occurred_at = 1700000000000LL, .received_at = 1700000000001LL, .trace_id = TL_STR("t"),
    };
    switch (gen_below(g, 3)) {
    case 0:
        ev.kind = TL_EV_MESSAGE_RECEIVED;
        ev.u.message.text = TL_STR("您好，订单什么时候发货？");
        ev.u.message.attachments = (tl_attachments_t){ &att, 1 };
        break;
    case 1:
        ev.kind = TL_EV_FIELD_ASSERTED;
        ev.u.field.field = TL_STR("order_no");
        ev.u.field.value = TL_STR("SO-1");
        break;
    default:
        ev.kind = TL_EV_IDENTITY_LINKED;
        ev.u.link.linked_customer_id = TL_STR("cust-b");
        ev.u.link.platform_user_id = TL_STR("u-2");
        ev.u.link.evidence_value = TL_STR("+8613800000000");
        break;
    }
    tl_buf_reset(&g->event);
    ck_assert_int_eq(tl_codec_encode_event(g->ev, &ev, &g->event), 0);
    return (tl_str_t){ g->event.data, g->event.len };
}

/* Change number i: the first ones take every fold change kind in turn. */
static void gen_change(gen_t *g, int i, tl_change_t *ch) {
    static const char *const ignored[] = { "NOT_LINKED", "VALUE_TOO_LONG", "BAD_TAG", "" };
    memset(ch, 0, sizeof *ch);
    ch->event_id = gen_str(g);
    ch->tenant_id = gen_str(g);
    ch->customer_id = gen_str(g);
    ch->source_partition = (int32_t)gen_long(g);
    ch->source_offset = gen_long(g);
    ch->customer_version = gen_long(g);
    ch->conversation_id = gen_opt(g);
    ch->conversation_version = gen_long(g);
    ch->conversation_opened = (int)gen_below(g, 2);
    ch->effective_ts = gen_long(g);
    ch->duplicate = (int)gen_below(g, 2);
    ch->event = gen_below(g, 8) ? gen_event(g) : TL_STR("");
    if (gen_below(g, 2)) {
        const char *w = ignored[gen_below(g, 4)];
        ch->ignored = (tl_str_t){ w, strlen(w) };
    }
    size_t n = i < 11 ? (size_t)1 + (size_t)(i % 3) : gen_below(g, 9);
    for (size_t k = 0; k < n; k++) {
        tl_change_fold_t *f = &g->fold[k];
        int kind = i < 11 ? (i + (int)k) % (TL_FOLD_UNMERGED + 1) : (int)gen_below(g, TL_FOLD_UNMERGED + 1);
        const char *slug = tl_fold_change_slug((tl_fold_change_kind_t)kind);
        *f = (tl_change_fold_t){
            .kind = { slug, strlen(slug) }, .field = gen_opt(g), .value = gen_opt(g),
            .conflict_id = gen_opt(g), .customer = gen_opt(g), .platform = gen_opt(g),
            .event_id = gen_opt(g), .effective_ts = gen_long(g), .version = gen_long(g),
            .is_key = (int)gen_below(g, 2), .candidates = g->cand[k], .ncandidates = gen_below(g, 5),
        };
        for (size_t j = 0; j < f->ncandidates; j++)
            g->cand[k][j] = (tl_change_candidate_t){ gen_str(g), gen_str(g), gen_str(g), gen_long(g) };
    }
    ch->fold_changes = g->fold;
    ch->nfold_changes = n;
}

static void gen_init(gen_t *g, uint64_t seed) {
    int err;
    memset(g, 0, sizeof *g);
    g->s = seed;
    g->ev = tl_codec_new_event(&err);
    ck_assert_ptr_nonnull(g->ev);
    tl_buf_init(&g->event);
    g->nbig = 70000;                /* a three-byte length prefix */
    g->big = malloc(g->nbig);
    ck_assert_ptr_nonnull(g->big);
    for (size_t i = 0; i < g->nbig; i++) g->big[i] = (char)('a' + i % 26);
}

static void gen_close(gen_t *g) {
    tl_codec_free(g->ev);
    tl_buf_close(&g->event);
    free(g->big);
}

/* Generated Changes (every field, every fold change kind, empty and long
 * strings, embedded events) decode to the same thing both ways, and to
 * what was encoded; the codecs are kept across records, as workers keep
 * theirs, so reused arrays shrinking and growing are part of it. */
START_TEST(change_direct_matches_general_on_generated_changes) {
    int err;
    tl_codec_t *enc = tl_change_codec_new(&err), *direct = tl_change_codec_new(&err),
               *general = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(enc);
    ck_assert_ptr_nonnull(direct);
    ck_assert_ptr_nonnull(general);
    gen_t g;
    gen_init(&g, 0x9e3779b97f4a7c15ULL);
    tl_buf_t b;
    tl_buf_init(&b);
    int kinds_seen = 0, with_candidates = 0;
    for (int i = 0; i < 400; i++) {
        tl_change_t in, out;
        gen_change(&g, i, &in);
        tl_buf_reset(&b);
        ck_assert_int_eq(tl_change_encode(enc, &in, &b), 0);
        ck_assert_int_eq(diff_decode(direct, general, b.data, b.len), 0);
        /* And what was encoded (the direct path, checked against `in`). */
        ck_assert_int_eq(tl_change_decode(direct, b.data, b.len, &out), 0);
        ck_assert(out.event.len == in.event.len && !memcmp(out.event.ptr, in.event.ptr, in.event.len));
        ck_assert_int_eq(out.source_offset, in.source_offset);
        ck_assert_uint_eq(out.nfold_changes, in.nfold_changes);
        for (size_t k = 0; k < in.nfold_changes; k++) {
            tl_change_fold_t x;
            ck_assert_int_eq(tl_change_fold_get(&out, k, &x), 0);
            ck_assert(x.kind.len == in.fold_changes[k].kind.len &&
                      !memcmp(x.kind.ptr, in.fold_changes[k].kind.ptr, x.kind.len));
            ck_assert(x.value.len == in.fold_changes[k].value.len);
            ck_assert_uint_eq(x.ncandidates, in.fold_changes[k].ncandidates);
            for (size_t j = 0; j < x.ncandidates; j++) {
                tl_change_candidate_t cd;
                ck_assert_int_eq(tl_change_candidate_get(&out, k, j, &cd), 0);
                ck_assert_int_eq(cd.effective_ts, in.fold_changes[k].candidates[j].effective_ts);
                ck_assert_uint_eq(cd.value.len, in.fold_changes[k].candidates[j].value.len);
            }
            with_candidates += x.ncandidates > 0;
            if (i < 11) kinds_seen |= 1 << ((i + (int)k) % (TL_FOLD_UNMERGED + 1));
        }
        /* The direct decoder took it: its entries, not the avro value's. */
        ck_assert(out.nfold_changes == 0 || out.dfc_ != NULL);
    }
    ck_assert_int_eq(kinds_seen, (1 << (TL_FOLD_UNMERGED + 1)) - 1);
    ck_assert_int_gt(with_candidates, 0);
    tl_buf_close(&b);
    gen_close(&g);
    tl_codec_free(enc);
    tl_codec_free(direct);
    tl_codec_free(general);
}
END_TEST

/* Every prefix of a record and every byte of it replaced by a few values:
 * the same error and message both ways (or the same Change), and every
 * proper prefix fails. */
START_TEST(change_direct_matches_general_on_damaged_records) {
    int err;
    tl_codec_t *enc = tl_change_codec_new(&err), *direct = tl_change_codec_new(&err),
               *general = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(direct);
    gen_t g;
    gen_init(&g, 42);
    g.nbig = 300;                   /* keeps every-prefix runs short */
    tl_buf_t b;
    tl_buf_init(&b);
    int codes[64] = { 0 };
    for (int i = 0; i < 12; i++) {
        tl_change_t in;
        gen_change(&g, i, &in);
        tl_buf_reset(&b);
        ck_assert_int_eq(tl_change_encode(enc, &in, &b), 0);
        uint8_t *copy = malloc(b.len);
        ck_assert_ptr_nonnull(copy);
        for (size_t n = 0; n < b.len; n++) {
            memcpy(copy, b.data, n);        /* its own allocation: ASan sees overreads */
            int rc = diff_decode(direct, general, copy, n);
            ck_assert_int_ne(rc, 0);
            codes[-rc & 63] = 1;
        }
        static const uint8_t subst[] = { 0x00, 0x02, 0x80, 0xff };
        for (size_t pos = 0; pos < b.len; pos += 1 + (b.len > 600 ? (size_t)(i % 7) : 0)) {
            for (size_t k = 0; k < sizeof subst; k++) {
                memcpy(copy, b.data, b.len);
                copy[pos] = subst[k];
                int rc = diff_decode(direct, general, copy, b.len);
                codes[-rc & 63] = 1;
            }
        }
        /* A byte too many. */
        uint8_t *longer = malloc(b.len + 1);
        ck_assert_ptr_nonnull(longer);
        memcpy(longer, b.data, b.len);
        longer[b.len] = 0;
        ck_assert_int_eq(diff_decode(direct, general, longer, b.len + 1), TL_ECORRUPT);
        free(longer);
        free(copy);
    }
    /* The damage reached each kind of failure. */
    ck_assert(codes[-TL_ETRUNCATED & 63] && codes[-TL_ECORRUPT & 63] && codes[-TL_EBADMAGIC & 63] &&
              codes[-TL_EUNKNOWNSCHEMA & 63]);
    tl_buf_close(&b);
    gen_close(&g);
    tl_codec_free(enc);
    tl_codec_free(direct);
    tl_codec_free(general);
}
END_TEST

/* Hand-made data the encoder never writes: blocks with a negative count
 * and a size, counts that cannot fit, out-of-range ints, booleans and
 * branches, huge lengths.  Same answers both ways. */
START_TEST(change_direct_matches_general_on_odd_encodings) {
    int err;
    tl_codec_t *direct = tl_change_codec_new(&err), *general = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(direct);
    uint64_t fp = tl_codec_fingerprint(direct);
    /* The fields before fold_changes: "e","t","c", partition 1, offset 2,
     * version 3, conversation null, 0, false, ts 5, false, event "x",
     * ignored null. */
    static const uint8_t head[] = { 2, 'e', 2, 't', 2, 'c', 2, 4, 6, 0, 0, 0, 10, 0, 2, 'x', 0 };
    /* One fold change: "linked", six nulls, 0, 0, false, then candidates. */
    static const uint8_t fold[] = { 12, 'l', 'i', 'n', 'k', 'e', 'd', 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    static const uint8_t cand[] = { 2, 'v', 2, 'p', 2, 'e', 8 };
    /* want: the error, or 1 and 2 for the two cases built below, which
     * decode. */
    static const struct { const char *what; uint8_t tail[24]; size_t n; int want; } cases[] = {
        { "block with size", { 0 }, 0, 1 },            /* built below */
        { "count that cannot fit", { 0x80, 0x80, 0x04 }, 3, TL_ETRUNCATED },
        { "INT64_MIN count", { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 10,
          TL_ECORRUPT },
        { "negative block size", { 1, 1 }, 2, TL_ECORRUPT },
        { "varint too long", { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 }, 10,
          TL_ECORRUPT },
        { "candidate block", { 0 }, 0, 2 },          /* built below */
    };
    uint8_t rec[256];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n = 0;
        rec[n++] = 0xc3;
        rec[n++] = 0x01;
        for (int i = 0; i < 8; i++) rec[n++] = (uint8_t)(fp >> (8 * i));
        memcpy(rec + n, head, sizeof head);
        n += sizeof head;
        if (cases[k].want == 1) {              /* block of one, with its size */
            rec[n++] = 1;
            rec[n++] = (uint8_t)((sizeof fold + 1) * 2);
            memcpy(rec + n, fold, sizeof fold);
            n += sizeof fold;
            rec[n++] = 0;                       /* no candidates */
            rec[n++] = 0;                       /* end of fold_changes */
        } else if (cases[k].want == 2) {       /* a candidate in a sized block */
            rec[n++] = 2;
            memcpy(rec + n, fold, sizeof fold);
            n += sizeof fold;
            rec[n++] = 1;
            rec[n++] = (uint8_t)(sizeof cand * 2);
            memcpy(rec + n, cand, sizeof cand);
            n += sizeof cand;
            rec[n++] = 0;
            rec[n++] = 0;
        } else {
            memcpy(rec + n, cases[k].tail, cases[k].n);
            n += cases[k].n;
        }
        int rc = diff_decode(direct, general, rec, n);
        ck_assert_msg(rc == (cases[k].want > 0 ? 0 : cases[k].want), "%s: %s (%s)", cases[k].what,
                      tl_strerror(rc), tl_codec_errmsg(direct));
    }
    /* Ints and booleans out of range, a branch out of range, a length
     * past the end, in the head. */
    static const struct { size_t at; uint8_t v[10]; size_t n; int want; } edits[] = {
        { 6, { 0x80, 0x80, 0x80, 0x80, 0x20 }, 5, TL_ECORRUPT },   /* partition 2^32 */
        { 9, { 4 }, 1, TL_ECORRUPT },                              /* conversation branch 2 */
        { 9, { 1 }, 1, TL_ECORRUPT },                              /* branch -1 */
        { 11, { 2 }, 1, TL_ECORRUPT },                             /* boolean 2 */
        { 13, { 3 }, 1, TL_ECORRUPT },                             /* duplicate 3 */
        { 14, { 0xfe, 0xff, 0xff, 0xff, 0x0f }, 5, TL_ETRUNCATED }, /* event of 2^31 - 1 bytes */
        { 14, { 1 }, 1, TL_ECORRUPT },                             /* event length -1 */
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        size_t n = 0;
        rec[n++] = 0xc3;
        rec[n++] = 0x01;
        for (int i = 0; i < 8; i++) rec[n++] = (uint8_t)(fp >> (8 * i));
        memcpy(rec + n, head, edits[k].at);
        n += edits[k].at;
        memcpy(rec + n, edits[k].v, edits[k].n);
        n += edits[k].n;
        memcpy(rec + n, head + edits[k].at + 1, sizeof head - edits[k].at - 1);
        n += sizeof head - edits[k].at - 1;
        rec[n++] = 0;
        int rc = diff_decode(direct, general, rec, n);
        ck_assert_msg(rc == edits[k].want, "edit %zu: %s (%s)", k, tl_strerror(rc), tl_codec_errmsg(direct));
    }
    tl_codec_free(direct);
    tl_codec_free(general);
}
END_TEST

/* One codec, both paths and both schema versions in turn: a decode by one
 * path leaves nothing behind that the next one by the other trips on. */
START_TEST(change_paths_share_a_codec) {
    int err;
    tl_codec_t *enc = tl_change_codec_new(&err), *c = tl_change_codec_new(&err),
               *ref = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(c);
    gen_t g;
    gen_init(&g, 7);
    tl_buf_t b;
    tl_buf_init(&b);
    for (int i = 0; i < 60; i++) {
        tl_change_t in, x, y;
        gen_change(&g, i, &in);
        tl_buf_reset(&b);
        ck_assert_int_eq(tl_change_encode(enc, &in, &b), 0);
        int (*first)(tl_codec_t *, const void *, size_t, tl_change_t *) =
            i % 2 ? tl_change_decode : tl_change_decode_general;
        ck_assert_int_eq(first(c, b.data, b.len, &x), 0);
        ck_assert_int_eq(tl_change_decode_general(ref, b.data, b.len, &y), 0);
        same_change(&x, &y);
    }
    tl_buf_close(&b);
    gen_close(&g);
    tl_codec_free(enc);
    tl_codec_free(c);
    tl_codec_free(ref);
}
END_TEST

Suite *tl_change_suite(void) {
    Suite *s = suite_create("change");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, change_roundtrip_every_field);
    tcase_add_test(tc, change_decode_refuses_an_event_record);
    tcase_add_test(tc, change_roundtrip_fold_changes);
    tcase_add_test(tc, change_decodes_a_version_1_record);
    suite_add_tcase(s, tc);
    /* Thousands of decodes each: a busy machine needs more than the
     * default four seconds. */
    TCase *direct = tcase_create("direct");
    tcase_set_timeout(direct, 120);
    tcase_add_test(direct, change_diff_names_the_first_difference);
    tcase_add_test(direct, change_direct_matches_general_on_generated_changes);
    tcase_add_test(direct, change_direct_matches_general_on_damaged_records);
    tcase_add_test(direct, change_direct_matches_general_on_odd_encodings);
    tcase_add_test(direct, change_paths_share_a_codec);
    suite_add_tcase(s, direct);
    return s;
}
