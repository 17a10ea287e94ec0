/* test_uuid.c -- engine/uuid.c */
#include <string.h>

#include "suites.h"
#include "uuid.h"

START_TEST(uuid_v7_is_versioned_and_time_ordered) {
    char a[TL_UUID_STRLEN + 1], b[TL_UUID_STRLEN + 1];
    tl_uuid_v7(1700000000000LL, a);
    tl_uuid_v7(1700000000001LL, b);
    ck_assert(tl_uuid_valid(a, strlen(a)));
    ck_assert_int_eq(a[14], '7');
    ck_assert(strchr("89ab", a[19]) != NULL);
    ck_assert_int_lt(strcmp(a, b), 0);
    /* 1700000000000 = 0x18bcfe56800 */
    ck_assert(strncmp(a, "018bcfe5-6800-7", 15) == 0);
}
END_TEST

START_TEST(uuid_v7_two_in_same_ms_differ) {
    char a[TL_UUID_STRLEN + 1], b[TL_UUID_STRLEN + 1];
    tl_uuid_v7(5, a);
    tl_uuid_v7(5, b);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(uuid_v5_is_deterministic_and_separates_parts) {
    const char *p1[] = {"acme", "web", "v1"};
    size_t l1[] = {4, 3, 2};
    const char *p2[] = {"acme", "webv", "1"};
    size_t l2[] = {4, 4, 1};
    char a[TL_UUID_STRLEN + 1], b[TL_UUID_STRLEN + 1], c[TL_UUID_STRLEN + 1];
    tl_uuid_v5(p1, l1, 3, a);
    tl_uuid_v5(p1, l1, 3, b);
    tl_uuid_v5(p2, l2, 3, c);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);
    ck_assert_int_eq(a[14], '5');
    ck_assert(tl_uuid_valid(a, strlen(a)));
}
END_TEST

START_TEST(uuid_valid_rejects_malformed) {
    ck_assert(!tl_uuid_valid("", 0));
    ck_assert(!tl_uuid_valid("018bcfe5-6800-7xxx-8000-000000000000", 36));
    ck_assert(!tl_uuid_valid("018bcfe5x6800-7000-8000-000000000000", 36));
    ck_assert(tl_uuid_valid("018BCFE5-6800-7000-8000-000000000000", 36));
}
END_TEST

Suite *tl_uuid_suite(void) {
    Suite *s = suite_create("uuid");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, uuid_v7_is_versioned_and_time_ordered);
    tcase_add_test(tc, uuid_v7_two_in_same_ms_differ);
    tcase_add_test(tc, uuid_v5_is_deterministic_and_separates_parts);
    tcase_add_test(tc, uuid_valid_rejects_malformed);
    suite_add_tcase(s, tc);
    return s;
}
