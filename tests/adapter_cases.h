/*
 * adapter_cases.h -- what the adapters' table-driven tests share.
 *
 * Every adapter suite (test_web.c, test_app.c, test_mini_program.c, ...)
 * checks good input field by field and bad input against a table of cases,
 * each naming the status, problem type and field the adapter must answer
 * with.  The case type, the string comparison and the assertions on a
 * problem are the same everywhere, so they live here; each suite keeps its
 * own parse() (adapters differ in what they fill) and its own tables.
 */
#ifndef TL_TEST_ADAPTER_CASES_H
#define TL_TEST_ADAPTER_CASES_H

#include "event.h"
#include "problem.h"

/* One bad input and the exact answer it must get. */
typedef struct tl_adapter_case {
    const char *name;
    const char *body;
    int status;
    const char *type;           /* problem type */
    const char *field;          /* "" when no field applies */
} tl_adapter_case_t;

/* The number of cases in a table (an array, not a pointer). */
#define TL_ADAPTER_CASES_COUNT(table) ((int)(sizeof(table) / sizeof *(table)))

/* 1 when s is set and holds exactly want, else 0.  Cannot fail. */
int tl_adapter_cases_streq(tl_str_t s, const char *want);

/* Asserts (Check: fails the running test, naming the case `name`) that a
 * parse that returned status filled pb with want_status, want_type and
 * want_field.  Test thread. */
void tl_adapter_cases_expect(const char *name, int status, const tl_problem_t *pb,
                             int want_status, const char *want_type, const char *want_field);

/* tl_adapter_cases_expect with c's name and expectations. */
void tl_adapter_cases_check(const tl_adapter_case_t *c, int status, const tl_problem_t *pb);

#endif
