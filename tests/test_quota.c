/* test_quota.c -- engine/quota.c */
#include <string.h>

#include "error.h"
#include "quota.h"
#include "suites.h"

#define SEC 1000000LL

START_TEST(quota_unlisted_platform_is_unlimited) {
    tl_quota_t q;
    char err[256];
    ck_assert_int_eq(tl_quota_init(&q, "", 0, err, sizeof err), 0);
    for (int i = 0; i < 100000; i++) ck_assert_int_eq(tl_quota_take(&q, TL_PLATFORM_WEB, SEC), 0);
}
END_TEST

START_TEST(quota_platform_rate_refuses_then_refills) {
    tl_quota_t q;
    char err[256];
    ck_assert_int_eq(tl_quota_init(&q, "douyin=10:low,web=5", 0, err, sizeof err), 0);
    int64_t t = 100 * SEC;
    for (int i = 0; i < 10; i++) ck_assert_int_eq(tl_quota_take(&q, TL_PLATFORM_DOUYIN, t), 0);
    ck_assert_int_ge(tl_quota_take(&q, TL_PLATFORM_DOUYIN, t), 1);        /* 11th in the same instant */
    ck_assert_int_eq(tl_quota_take(&q, TL_PLATFORM_WECHAT, t), 0);        /* others unaffected */
    ck_assert_int_eq(tl_quota_take(&q, TL_PLATFORM_DOUYIN, t + SEC / 5), 0);  /* 2 tokens back */
    for (int i = 0; i < 5; i++) ck_assert_int_eq(tl_quota_take(&q, TL_PLATFORM_WEB, t), 0);
    ck_assert_int_eq(tl_quota_take(&q, TL_PLATFORM_WEB, t), 1);
}
END_TEST

START_TEST(quota_low_priority_cannot_starve_high) {
    tl_quota_t q;
    char err[256];
    ck_assert_int_eq(tl_quota_init(&q, "douyin=100000:low,web=100000:high", 100, err, sizeof err), 0);
    int64_t t = 100 * SEC;
    int low = 0;
    while (tl_quota_take(&q, TL_PLATFORM_DOUYIN, t) == 0) low++;
    ck_assert_int_eq(low, 50);                  /* stops at half the shared capacity */
    int normal = 0;
    while (tl_quota_take(&q, TL_PLATFORM_WECHAT, t) == 0) normal++;
    ck_assert_int_eq(normal, 30);               /* stops at a fifth */
    int high = 0;
    while (tl_quota_take(&q, TL_PLATFORM_WEB, t) == 0) high++;
    ck_assert_int_eq(high, 20);                 /* takes what is left */
}
END_TEST

START_TEST(quota_bad_spec_names_the_item) {
    tl_quota_t q;
    char err[256];
    ck_assert_int_eq(tl_quota_init(&q, "fax=10", 0, err, sizeof err), TL_ECONFIG);
    ck_assert(strstr(err, "fax=10") != NULL);
    ck_assert_int_eq(tl_quota_init(&q, "web=-1", 0, err, sizeof err), TL_ECONFIG);
    ck_assert_int_eq(tl_quota_init(&q, "web=10:urgent", 0, err, sizeof err), TL_ECONFIG);
    ck_assert(strstr(err, "priority") != NULL);
    ck_assert_int_eq(tl_quota_init(&q, "web", 0, err, sizeof err), TL_ECONFIG);
}
END_TEST

Suite *tl_quota_suite(void) {
    Suite *s = suite_create("quota");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, quota_unlisted_platform_is_unlimited);
    tcase_add_test(tc, quota_platform_rate_refuses_then_refills);
    tcase_add_test(tc, quota_low_priority_cannot_starve_high);
    tcase_add_test(tc, quota_bad_spec_names_the_item);
    suite_add_tcase(s, tc);
    return s;
}
