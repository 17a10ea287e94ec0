/*
 * runner.c -- one Check runner for each test suite group.  Built twice:
 * with TL_RUN_UNIT for `meson test --suite unit`, with TL_RUN_INTEGRATION
 * for the suites that need Kafka and PostgreSQL.  CK_RUN_SUITE=name runs one
 * suite, as Check documents.
 */
#include <stdio.h>
#include <stdlib.h>

#include "suites.h"

const char *tl_test_data(const char *name) {
    static char path[4096];
    const char *dir = getenv("TL_TEST_DATA");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data", name);
    return path;
}

int main(void) {
    SRunner *sr = srunner_create(NULL);
#define TL_SUITE_ADD(name) srunner_add_suite(sr, tl_##name##_suite());
#ifdef TL_RUN_UNIT
    TL_UNIT_SUITES(TL_SUITE_ADD)
#endif
#ifdef TL_RUN_INTEGRATION
    TL_INTEGRATION_SUITES(TL_SUITE_ADD)
#endif
#undef TL_SUITE_ADD
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
