/*
 * suites.h -- every Check suite, one line each.  A test file tests one
 * module and exports Suite *tl_<module>_suite(void).  Unit suites run with
 * nothing started; integration suites need the real Kafka broker and
 * PostgreSQL (tools/services up) and fail rather than fall back to a mock.
 */
#ifndef TL_TEST_SUITES_H
#define TL_TEST_SUITES_H

#include <check.h>

#define TL_UNIT_SUITES(XX)                                                    \
    XX(error)                                                                 \
    XX(uuid)                                                                  \
    XX(canon)                                                                 \
    XX(codec)                                                                 \
    XX(dedup)                                                                 \
    XX(quota)                                                                 \
    XX(web)                                                                   \
    XX(wechat)                                                                \
    XX(douyin)                                                                \
    XX(phone)                                                                 \
    XX(api)                                                                   \
    XX(app)                                                                   \
    XX(mini_program)                                                          \
    XX(identity)                                                              \
    XX(change)                                                                \
    XX(profile)                                                               \
    XX(view)                                                                  \
    XX(fold)                                                                  \
    XX(resident)                                                              \
    XX(auth)                                                                  \
    XX(verify)

#define TL_INTEGRATION_SUITES(XX)                                             \
    XX(pipeline)                                                              \
    XX(fold_worker)                                                           \
    XX(ingest)                                                                \
    XX(rest)                                                                  \
    XX(openapi)                                                               \
    XX(replay)                                                                \
    XX(projection)

#define TL_SUITE_DECL(name) Suite *tl_##name##_suite(void);
TL_UNIT_SUITES(TL_SUITE_DECL)
TL_INTEGRATION_SUITES(TL_SUITE_DECL)
#undef TL_SUITE_DECL

/* Path of a file under tests/data (from $TL_TEST_DATA); static buffer. */
const char *tl_test_data(const char *name);

#endif
