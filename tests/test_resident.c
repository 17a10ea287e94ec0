/* test_resident.c -- engine/resident.c: the fold worker's residency table. */
#include <stdio.h>
#include <string.h>

#include "resident.h"
#include "suites.h"

static tl_str_t S(const char *s) { return (tl_str_t){s, strlen(s)}; }

START_TEST(resident_unknown_until_used) {
    tl_resident_t *r = tl_resident_new();
    int32_t p;
    int64_t o;
    ck_assert_int_eq(tl_resident_where(r, S("c1"), &p, &o), TL_RESIDENT_UNKNOWN);
    ck_assert_int_eq(tl_resident_use(r, S("c1"), S("acme"), 1), 0);
    ck_assert_int_eq(tl_resident_where(r, S("c1"), &p, &o), TL_RESIDENT_HELD);
    ck_assert_uint_eq(tl_resident_held(r), 1);
    tl_resident_free(r);
}
END_TEST

START_TEST(resident_evicts_least_recently_used_durable_first) {
    tl_resident_t *r = tl_resident_new();
    tl_resident_use(r, S("a"), S("t"), 1);
    tl_resident_use(r, S("b"), S("t"), 2);
    tl_resident_use(r, S("c"), S("t"), 3);
    tl_resident_use(r, S("a"), S("t"), 4);      /* a is now the newest */
    tl_resident_durable(r, S("a"), 0, 10);
    tl_resident_durable(r, S("c"), 1, 30);      /* b is not durable yet */
    tl_str_t c, t;
    ck_assert_int_eq(tl_resident_evict_one(r, &c, &t), 1);
    ck_assert(c.len == 1 && c.ptr[0] == 'c');   /* b skipped: not durable */
    ck_assert(t.len == 1 && t.ptr[0] == 't');
    int32_t p;
    int64_t o;
    ck_assert_int_eq(tl_resident_where(r, S("c"), &p, &o), TL_RESIDENT_EVICTED);
    ck_assert_int_eq(p, 1);
    ck_assert_int_eq(o, 30);
    ck_assert_int_eq(tl_resident_evict_one(r, &c, &t), 1);
    ck_assert(c.ptr[0] == 'a');
    ck_assert_int_eq(tl_resident_evict_one(r, &c, &t), 0);   /* only b left, not durable */
    tl_resident_durable(r, S("b"), 0, 20);
    ck_assert_int_eq(tl_resident_evict_one(r, &c, &t), 1);
    ck_assert(c.ptr[0] == 'b');
    ck_assert_uint_eq(tl_resident_held(r), 0);
    tl_resident_free(r);
}
END_TEST

START_TEST(resident_many_customers_and_reuse) {
    tl_resident_t *r = tl_resident_new();
    char id[32];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 20000; i++) {
            snprintf(id, sizeof id, "customer-%d", i);
            ck_assert_int_eq(tl_resident_use(r, S(id), S("t"), (uint64_t)(round * 20000 + i)), 0);
            tl_resident_durable(r, S(id), i % 12, i);
        }
    ck_assert_uint_eq(tl_resident_held(r), 20000);
    tl_str_t c, t;
    /* Oldest use first: customer-0 was last used in round 2 at stamp 40000. */
    ck_assert_int_eq(tl_resident_evict_one(r, &c, &t), 1);
    ck_assert(c.len == 10 && memcmp(c.ptr, "customer-0", 10) == 0);
    int n = 1;
    while (tl_resident_evict_one(r, &c, &t)) n++;
    ck_assert_int_eq(n, 20000);
    tl_resident_clear(r);
    int32_t p;
    int64_t o;
    ck_assert_int_eq(tl_resident_where(r, S("customer-7"), &p, &o), TL_RESIDENT_UNKNOWN);
    tl_resident_free(r);
}
END_TEST

Suite *tl_resident_suite(void) {
    Suite *s = suite_create("resident");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, resident_unknown_until_used);
    tcase_add_test(tc, resident_evicts_least_recently_used_durable_first);
    tcase_add_test(tc, resident_many_customers_and_reuse);
    suite_add_tcase(s, tc);
    return s;
}
