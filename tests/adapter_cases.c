/*
 * adapter_cases.c -- the adapters' table-driven test harness (see
 * adapter_cases.h).
 */
#include <string.h>

#include <check.h>

#include "adapter_cases.h"

int tl_adapter_cases_streq(tl_str_t s, const char *want) {
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

void tl_adapter_cases_expect(const char *name, int status, const tl_problem_t *pb,
                             int want_status, const char *want_type, const char *want_field) {
    ck_assert_msg(status == want_status, "%s: status %d, want %d (%s)", name, status, want_status,
                  pb->detail);
    ck_assert_msg(strcmp(pb->type, want_type) == 0, "%s: type %s, want %s", name, pb->type,
                  want_type);
    ck_assert_msg(strcmp(pb->field, want_field) == 0, "%s: field \"%s\", want \"%s\"", name,
                  pb->field, want_field);
}

void tl_adapter_cases_check(const tl_adapter_case_t *c, int status, const tl_problem_t *pb) {
    tl_adapter_cases_expect(c->name, status, pb, c->status, c->type, c->field);
}
