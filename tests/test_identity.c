/* test_identity.c -- engine/identity.c without PostgreSQL: key derivation,
 * deterministic ids, the LRU cache with its TTL, the text[] literal the
 * batch query binds, and a resolver that cannot reach the database:
 * degrading to the deterministic ids, coalescing misses into bounded
 * batches. */
#include <stdio.h>
#include <string.h>

#include "adapter.h"
#include "error.h"
#include "fold.h"
#include "fold_worker.h"
#include "identity.h"
#include "metrics.h"
#include "suites.h"

#define CUST_A "0b8a2f0e-9a51-5c1f-8d6b-1f2d3c4b5a60"
#define CUST_B "5d0b9c7e-2c1a-5e3f-9a8b-7c6d5e4f3a21"

START_TEST(identity_key_joins_with_nul_and_refuses_overflow) {
    char k1[64], k2[64];
    size_t n1 = tl_identity_key(TL_STR("ab"), "app", TL_STR("c"), k1, sizeof k1);
    size_t n2 = tl_identity_key(TL_STR("a"), "app", TL_STR("bc"), k2, sizeof k2);
    ck_assert_uint_eq(n1, 8);
    ck_assert_uint_eq(n2, 8);
    ck_assert(memcmp(k1, "ab\0app\0c", 8) == 0);
    ck_assert(memcmp(k1, k2, 8) != 0);
    ck_assert_uint_eq(tl_identity_key(TL_STR("tenant"), "unionid", TL_STR("x"), k1, 8), 0);
}
END_TEST

START_TEST(identity_default_id_matches_adapters_and_separates_kinds) {
    char a[40], b[40], c[40];
    tl_identity_default_id(TL_STR("acme"), "wechat", TL_STR("o-1"), a);
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_WECHAT, TL_STR("o-1"), b);
    ck_assert_str_eq(a, b);
    tl_identity_default_id(TL_STR("acme"), "unionid", TL_STR("o-1"), c);
    ck_assert_str_ne(a, c);
    tl_identity_default_id(TL_STR("other"), "wechat", TL_STR("o-1"), c);
    ck_assert_str_ne(a, c);
}
END_TEST

START_TEST(identity_evidence_kinds) {
    ck_assert_str_eq(tl_identity_evidence_kind(TL_EVIDENCE_UNIONID), "unionid");
    ck_assert_str_eq(tl_identity_evidence_kind(TL_EVIDENCE_VERIFIED_PHONE), "phone");
    ck_assert_str_eq(tl_identity_evidence_kind(TL_EVIDENCE_LOGIN), "account");
    ck_assert_ptr_null(tl_identity_evidence_kind(TL_EVIDENCE_AGENT));
    ck_assert_ptr_null(tl_identity_evidence_kind(TL_EVIDENCE_OTHER));
}
END_TEST

START_TEST(identity_cache_hits_until_ttl) {
    tl_identity_cache_t *c = tl_identity_cache_new(4, 1000);
    char cust[40];
    int found = -1;
    ck_assert_int_eq(tl_identity_cache_get(c, "k", 1, 0, cust, &found), 0);
    tl_identity_cache_put(c, "k", 1, CUST_A, 1, 100);
    ck_assert_int_eq(tl_identity_cache_get(c, "k", 1, 1099, cust, &found), 1);
    ck_assert_str_eq(cust, CUST_A);
    ck_assert_int_eq(found, 1);
    /* Expired: dropped, a miss. */
    ck_assert_int_eq(tl_identity_cache_get(c, "k", 1, 1100, cust, &found), 0);
    ck_assert_uint_eq(tl_identity_cache_size(c), 0);
    /* A miss from the index is cached too. */
    tl_identity_cache_put(c, "m", 1, CUST_B, 0, 2000);
    ck_assert_int_eq(tl_identity_cache_get(c, "m", 1, 2001, cust, &found), 1);
    ck_assert_int_eq(found, 0);
    ck_assert_str_eq(cust, CUST_B);
    /* A put replaces. */
    tl_identity_cache_put(c, "m", 1, CUST_A, 1, 2002);
    ck_assert_int_eq(tl_identity_cache_get(c, "m", 1, 2003, cust, &found), 1);
    ck_assert_str_eq(cust, CUST_A);
    ck_assert_uint_eq(tl_identity_cache_size(c), 1);
    tl_identity_cache_free(c);
}
END_TEST

START_TEST(identity_cache_evicts_least_recently_used) {
    tl_identity_cache_t *c = tl_identity_cache_new(3, 60000);
    char cust[40];
    int found;
    tl_identity_cache_put(c, "a", 1, CUST_A, 1, 1);
    tl_identity_cache_put(c, "b", 1, CUST_A, 1, 2);
    tl_identity_cache_put(c, "c", 1, CUST_A, 1, 3);
    /* Touch a: b is now the least recently used. */
    ck_assert_int_eq(tl_identity_cache_get(c, "a", 1, 4, cust, &found), 1);
    tl_identity_cache_put(c, "d", 1, CUST_B, 1, 5);
    ck_assert_uint_eq(tl_identity_cache_size(c), 3);
    ck_assert_int_eq(tl_identity_cache_get(c, "b", 1, 6, cust, &found), 0);
    ck_assert_int_eq(tl_identity_cache_get(c, "a", 1, 6, cust, &found), 1);
    ck_assert_int_eq(tl_identity_cache_get(c, "c", 1, 6, cust, &found), 1);
    ck_assert_int_eq(tl_identity_cache_get(c, "d", 1, 6, cust, &found), 1);
    ck_assert_str_eq(cust, CUST_B);
    /* Keys that differ only after a NUL are different keys. */
    tl_identity_cache_put(c, "x\0y", 3, CUST_A, 1, 7);
    ck_assert_int_eq(tl_identity_cache_get(c, "x\0z", 3, 8, cust, &found), 0);
    ck_assert_int_eq(tl_identity_cache_get(c, "x\0y", 3, 8, cust, &found), 1);
    tl_identity_cache_free(c);
    tl_identity_cache_free(NULL);
}
END_TEST

START_TEST(identity_cache_bounded_under_many_keys) {
    tl_identity_cache_t *c = tl_identity_cache_new(100, 60000);
    char key[32], cust[40];
    int found;
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof key, "visitor-%d", i);
        tl_identity_cache_put(c, key, (size_t)n, CUST_A, 0, i);
        ck_assert_uint_le(tl_identity_cache_size(c), 100);
    }
    int n = snprintf(key, sizeof key, "visitor-%d", 9999);
    ck_assert_int_eq(tl_identity_cache_get(c, key, (size_t)n, 10000, cust, &found), 1);
    n = snprintf(key, sizeof key, "visitor-%d", 0);
    ck_assert_int_eq(tl_identity_cache_get(c, key, (size_t)n, 10000, cust, &found), 0);
    tl_identity_cache_free(c);
}
END_TEST

/* The resolver with PostgreSQL unreachable (a port nothing listens on):
 * every lookup comes back with the deterministic id, degraded, counted. */
static int resolved, was_degraded;
static void on_done(void *arg, int degraded) {
    (void)arg;
    resolved++;
    was_degraded = degraded;
}

START_TEST(identity_resolver_degrades_to_deterministic_ids) {
    uv_loop_t loop;
    tl_config_t cfg;
    tl_identity_t *idx;
    ck_assert_int_eq(tl_config_init(&cfg), 0);
    cfg.pg_dsn = "host=127.0.0.1 port=1 dbname=none user=none";
    cfg.identity_cache = 16;
    cfg.identity_ttl_ms = 60000;
    uv_loop_init(&loop);
    ck_assert_int_eq(tl_identity_new(&loop, &cfg, &idx), 0);
    uint64_t before = atomic_load(&tl_metrics[TL_M_identity_degraded_total]);
    tl_identity_lookup_t l[2] = {
        {.tenant = TL_STR("acme"), .kind = "app", .id = TL_STR("dev-1")},
        {.tenant = TL_STR("acme"), .kind = "account", .id = TL_STR("u-1")},
    };
    resolved = 0;
    ck_assert_int_eq(tl_identity_resolve(idx, l, 2, on_done, NULL), 0);
    ck_assert_int_eq(tl_identity_in_flight(idx), 1);
    while (!resolved) uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(resolved, 1);
    ck_assert_int_eq(was_degraded, 1);
    char want[40];
    tl_identity_default_id(TL_STR("acme"), "app", TL_STR("dev-1"), want);
    ck_assert_str_eq(l[0].customer_id, want);
    ck_assert_int_eq(l[0].found, 0);
    tl_identity_default_id(TL_STR("acme"), "account", TL_STR("u-1"), want);
    ck_assert_str_eq(l[1].customer_id, want);
    ck_assert_uint_eq(atomic_load(&tl_metrics[TL_M_identity_degraded_total]) - before, 2);
    /* Degraded answers are not cached: the next request asks again. */
    resolved = 0;
    ck_assert_int_eq(tl_identity_resolve(idx, l, 1, on_done, NULL), 0);
    ck_assert_int_eq(tl_identity_in_flight(idx), 1);
    while (!resolved) uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(tl_identity_resolve(idx, l, 0, on_done, NULL), TL_EINVAL);
    tl_identity_free(idx);
    uv_loop_close(&loop);
}
END_TEST


/* The text[] literal the batch statement binds: every element quoted, so
 * a comma, a brace, a quote, a backslash or the word NULL stays data. */
START_TEST(identity_pg_array_quotes_every_element) {
    tl_str_t v[] = {TL_STR("plain"), TL_STR("a,b{c}"), TL_STR("q\"uote"), TL_STR("back\\slash"),
                    TL_STR("NULL"), TL_STR("")};
    char out[128];
    const char *want = "{\"plain\",\"a,b{c}\",\"q\\\"uote\",\"back\\\\slash\",\"NULL\",\"\"}";
    size_t n = tl_identity_pg_array(v, 6, NULL, 0);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_uint_eq(tl_identity_pg_array(v, 6, out, sizeof out), n);
    ck_assert_str_eq(out, want);
    /* Empty array; a value stops at a NUL byte; a short buffer truncates
     * but still reports the full length. */
    ck_assert_uint_eq(tl_identity_pg_array(v, 0, out, sizeof out), 2);
    ck_assert_str_eq(out, "{}");
    tl_str_t nul = {"ab\0cd", 5};
    tl_identity_pg_array(&nul, 1, out, sizeof out);
    ck_assert_str_eq(out, "{\"ab\"}");
    ck_assert_uint_eq(tl_identity_pg_array(v, 1, out, 4), 9);
    ck_assert_str_eq(out, "{\"p");
}
END_TEST

/* Misses coalesce: two queries go out at once, every miss after them
 * queues, and the queue leaves as one batch when a query comes back; each
 * request is answered exactly once with its own lookups' ids. */
#define COALESCE_REQS 40
static int answered[COALESCE_REQS + 1];
static void on_counted(void *arg, int degraded) {
    (void)degraded;
    answered[(int *)arg - answered]++;
    resolved++;
}

static void resolver_unreachable(uv_loop_t *loop, tl_identity_t **idx) {
    tl_config_t cfg;
    ck_assert_int_eq(tl_config_init(&cfg), 0);
    cfg.pg_dsn = "host=127.0.0.1 port=1 dbname=none user=none";
    cfg.identity_cache = 16;
    cfg.identity_ttl_ms = 60000;
    uv_loop_init(loop);
    ck_assert_int_eq(tl_identity_new(loop, &cfg, idx), 0);
}

START_TEST(identity_resolver_coalesces_misses) {
    uv_loop_t loop;
    tl_identity_t *idx;
    resolver_unreachable(&loop, &idx);
    static char ids[COALESCE_REQS][16];
    static tl_identity_lookup_t l[COALESCE_REQS][2];
    memset(answered, 0, sizeof answered);
    resolved = 0;
    for (int i = 0; i < COALESCE_REQS; i++) {
        snprintf(ids[i], sizeof ids[i], "dev-%d", i);
        l[i][0] = (tl_identity_lookup_t){.tenant = TL_STR("acme"), .kind = "app",
                                         .id = {ids[i], strlen(ids[i])}};
        l[i][1] = (tl_identity_lookup_t){.tenant = TL_STR("acme"), .kind = "account",
                                         .id = {ids[i], strlen(ids[i])}};
        ck_assert_int_eq(tl_identity_resolve(idx, l[i], 2, on_counted, &answered[i]), 0);
    }
    tl_identity_stats_t st;
    tl_identity_stats(idx, &st);
    ck_assert_int_eq(st.batches, 2);
    ck_assert_uint_eq(st.batches_total, 2);
    ck_assert_int_eq(st.queued_lookups, 2 * (COALESCE_REQS - 2));
    ck_assert_int_eq(tl_identity_in_flight(idx), COALESCE_REQS);
    while (resolved < COALESCE_REQS) {
        uv_run(&loop, UV_RUN_ONCE);
        tl_identity_stats(idx, &st);
        ck_assert_int_le(st.batches, 2);
    }
    /* The two first requests alone, then everything else in one query. */
    tl_identity_stats(idx, &st);
    ck_assert_uint_eq(st.batches_total, 3);
    ck_assert_int_eq(st.queued_lookups, 0);
    ck_assert_int_eq(tl_identity_in_flight(idx), 0);
    for (int i = 0; i < COALESCE_REQS; i++) {
        char want[40];
        ck_assert_int_eq(answered[i], 1);
        tl_identity_default_id(TL_STR("acme"), "app", l[i][0].id, want);
        ck_assert_str_eq(l[i][0].customer_id, want);
        tl_identity_default_id(TL_STR("acme"), "account", l[i][1].id, want);
        ck_assert_str_eq(l[i][1].customer_id, want);
        ck_assert_int_eq(l[i][1].found, 0);
    }
    tl_identity_free(idx);
    uv_loop_close(&loop);
}
END_TEST

/* A batch holds at most TL_IDENTITY_BATCH_LOOKUPS lookups and never splits
 * a request: 2 + 300 requests of 4 lookups leave as 1, 1, 256 and 44. */
START_TEST(identity_resolver_bounds_batches) {
    enum { REQS = 302 };
    uv_loop_t loop;
    tl_identity_t *idx;
    resolver_unreachable(&loop, &idx);
    static char ids[REQS][16];
    static tl_identity_lookup_t l[REQS][4];
    static const char *const kinds[4] = {"app", "account", "unionid", "phone"};
    resolved = 0;
    for (int i = 0; i < REQS; i++) {
        snprintf(ids[i], sizeof ids[i], "u-%d", i);
        for (int k = 0; k < 4; k++)
            l[i][k] = (tl_identity_lookup_t){.tenant = TL_STR("acme"), .kind = kinds[k],
                                             .id = {ids[i], strlen(ids[i])}};
        ck_assert_int_eq(tl_identity_resolve(idx, l[i], 4, on_done, NULL), 0);
    }
    tl_identity_stats_t st;
    int max_seen = 0;
    while (resolved < REQS) {
        tl_identity_stats(idx, &st);
        if (st.queued_lookups > max_seen) max_seen = st.queued_lookups;
        ck_assert_int_le(st.batches, 2);
        uv_run(&loop, UV_RUN_ONCE);
    }
    ck_assert_int_eq(max_seen, 4 * 300);
    tl_identity_stats(idx, &st);
    ck_assert_uint_eq(st.batches_total, 4);
    char want[40];
    tl_identity_default_id(TL_STR("acme"), "phone", TL_STR("u-301"), want);
    ck_assert_str_eq(l[301][3].customer_id, want);
    tl_identity_free(idx);
    uv_loop_close(&loop);
}
END_TEST


/* Folds ev and returns the writer's statements for the Change the fold
 * worker writes for it. */
static size_t ops_after_fold(tl_fold_t *f, const tl_event_t *ev, tl_identity_op_t *ops, tl_str_t *ignored) {
    static tl_fold_change_out_t out;
    tl_fold_result_t res;
    tl_change_t ch;
    ck_assert_int_eq(tl_fold_apply(f, ev, &res), 0);
    tl_fold_worker_change(f, ev, &res, 0, 0, TL_STR_NULL, &out, &ch);
    *ignored = ch.ignored;
    return tl_identity_ops(&ch, ev, ops);
}

static int has_op(const tl_identity_op_t *ops, size_t n, tl_identity_op_kind_t kind) {
    for (size_t i = 0; i < n; i++)
        if (ops[i].kind == kind) return 1;
    return 0;
}

/* The index follows what the fold did: a link applied writes the link and
 * the merge; one the fold ignored (already linked, self link, unknown
 * link) writes nothing at all. */
START_TEST(identity_writer_skips_links_the_fold_ignored) {
    tl_fold_t *f = tl_fold_new(&(tl_fold_opts_t){300000, 1800000, NULL, 0});
    ck_assert_ptr_nonnull(f);
    tl_identity_op_t ops[TL_IDENTITY_MAX_OPS];
    tl_str_t ignored;
    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.tenant_id = TL_STR("acme");
    ev.customer_id = TL_STR(CUST_A);
    ev.platform = TL_PLATFORM_WECHAT;
    ev.platform_user_id = TL_STR("o-1");
    ev.kind = TL_EV_IDENTITY_LINKED;
    ev.u.link.linked_customer_id = TL_STR(CUST_B);
    ev.u.link.platform = TL_PLATFORM_APP;
    ev.u.link.platform_user_id = TL_STR("app-1");
    ev.u.link.evidence = TL_EVIDENCE_UNIONID;
    ev.u.link.evidence_value = TL_STR("union-1");
    const char *ids[] = {"e-1", "e-2", "e-3", "e-4", "e-5"};
    const char *keys[] = {"k-1", "k-2", "k-3", "k-4", "k-5"};
    for (int i = 0; i < 5; i++) {
        ev.event_id = (tl_str_t){ids[i], 3};
        ev.idempotency_key = (tl_str_t){keys[i], 3};
        ev.occurred_at = ev.received_at = 1000 + i;
        if (i == 2) ev.u.link.linked_customer_id = TL_STR(CUST_A);           /* self link */
        if (i == 3) {                                                        /* unlink B */
            ev.kind = TL_EV_IDENTITY_UNLINKED;
            ev.u.unlink.linked_customer_id = TL_STR(CUST_B);
            ev.u.unlink.platform = TL_PLATFORM_APP;
            ev.u.unlink.platform_user_id = TL_STR("app-1");
        }
        /* i == 4: unlink B again, no such link any more */
        size_t n = ops_after_fold(f, &ev, ops, &ignored);
        switch (i) {
        case 0: /* applied: seen, the app identity, the unionid, the merge */
            ck_assert_ptr_null(ignored.ptr);
            ck_assert_uint_eq(n, 4);
            ck_assert(has_op(ops, n, TL_IDENTITY_OP_LINK) && has_op(ops, n, TL_IDENTITY_OP_MERGE));
            break;
        case 3: /* applied */
            ck_assert_ptr_null(ignored.ptr);
            ck_assert(has_op(ops, n, TL_IDENTITY_OP_UNLINK_ROWS) && has_op(ops, n, TL_IDENTITY_OP_UNLINK_MERGE));
            break;
        default: /* already linked, self link, unknown link */
            ck_assert_ptr_nonnull(ignored.ptr);
            ck_assert_uint_eq(n, 0);
        }
    }
    /* A duplicate changes nothing either. */
    tl_change_t dup = {.duplicate = 1};
    ck_assert_uint_eq(tl_identity_ops(&dup, &ev, ops), 0);
    tl_fold_free(f);
}
END_TEST

Suite *tl_identity_suite(void) {
    Suite *s = suite_create("identity");
    TCase *tc = tcase_create("keys");
    tcase_add_test(tc, identity_key_joins_with_nul_and_refuses_overflow);
    tcase_add_test(tc, identity_default_id_matches_adapters_and_separates_kinds);
    tcase_add_test(tc, identity_evidence_kinds);
    tcase_add_test(tc, identity_pg_array_quotes_every_element);
    tcase_add_test(tc, identity_writer_skips_links_the_fold_ignored);
    suite_add_tcase(s, tc);
    tc = tcase_create("cache");
    tcase_add_test(tc, identity_cache_hits_until_ttl);
    tcase_add_test(tc, identity_cache_evicts_least_recently_used);
    tcase_add_test(tc, identity_cache_bounded_under_many_keys);
    suite_add_tcase(s, tc);
    tc = tcase_create("resolver");
    tcase_add_test(tc, identity_resolver_degrades_to_deterministic_ids);
    tcase_add_test(tc, identity_resolver_coalesces_misses);
    tcase_add_test(tc, identity_resolver_bounds_batches);
    suite_add_tcase(s, tc);
    return s;
}
