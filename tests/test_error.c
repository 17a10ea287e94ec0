/* test_error.c -- engine/error.c */
#include <string.h>

#include "error.h"
#include "suites.h"

START_TEST(error_every_code_has_text_and_name) {
#define CHECK_ONE(name, code, msg)                                            \
    ck_assert_str_eq(tl_strerror(code), msg);                                 \
    ck_assert_str_eq(tl_err_name(code), "TL_E" #name);                        \
    ck_assert_int_lt(code, 0);
    TL_ERR_MAP(CHECK_ONE)
#undef CHECK_ONE
    ck_assert_str_eq(tl_strerror(0), "success");
    ck_assert_str_eq(tl_strerror(-9999), "unknown error");
}
END_TEST

Suite *tl_error_suite(void) {
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, error_every_code_has_text_and_name);
    suite_add_tcase(s, tc);
    return s;
}
