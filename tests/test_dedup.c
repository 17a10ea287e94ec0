/* test_dedup.c -- engine/dedup.c */
#include <stdio.h>
#include <string.h>

#include "dedup.h"
#include "error.h"
#include "suites.h"

START_TEST(dedup_remembers_value_of_key) {
    tl_dedup_t *d = tl_dedup_new(8);
    char v[16];
    size_t n;
    ck_assert_int_eq(tl_dedup_get(d, "k", 1, v, &n), 0);
    ck_assert_int_eq(tl_dedup_put(d, "k", 1, "val", 4), 0);
    ck_assert_int_eq(tl_dedup_get(d, "k", 1, v, &n), 1);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(v, "val");
    tl_dedup_free(d);
}
END_TEST

START_TEST(dedup_forgets_oldest_when_full) {
    tl_dedup_t *d = tl_dedup_new(100);
    char k[16], v[16];
    size_t n;
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(k, sizeof k, "key-%d", i);
        ck_assert_int_eq(tl_dedup_put(d, k, (size_t)len, &i, sizeof i), 0);
    }
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(k, sizeof k, "key-%d", i);
        int found = tl_dedup_get(d, k, (size_t)len, v, &n);
        ck_assert_int_eq(found, i >= 900);
        if (found) {
            int got;
            memcpy(&got, v, sizeof got);
            ck_assert_int_eq(got, i);
        }
    }
    tl_dedup_free(d);
}
END_TEST

START_TEST(dedup_refuses_oversized_keys) {
    tl_dedup_t *d = tl_dedup_new(4);
    char big[TL_DEDUP_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    ck_assert_int_eq(tl_dedup_put(d, big, sizeof big, "v", 1), TL_ETOOBIG);
    char v[4];
    size_t n;
    ck_assert_int_eq(tl_dedup_get(d, big, sizeof big, v, &n), 0);
    tl_dedup_free(d);
}
END_TEST

Suite *tl_dedup_suite(void) {
    Suite *s = suite_create("dedup");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dedup_remembers_value_of_key);
    tcase_add_test(tc, dedup_forgets_oldest_when_full);
    tcase_add_test(tc, dedup_refuses_oversized_keys);
    suite_add_tcase(s, tc);
    return s;
}
