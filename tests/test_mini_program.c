/* test_mini_program.c -- adapters/mini_program.c: a message gives the exact
 * event, a unionid the exact link, bad input the exact status, problem type
 * and field. */
#include <stdio.h>
#include <string.h>

#include "adapter_cases.h"
#include "identity.h"
#include "mini_program.h"
#include "suites.h"

#define NOW 1700000000000LL

static const tl_adapter_ctx_t ctx = {NOW, "018bcfe5-6800-7000-8000-0000000b0001", "trace-2", 1 << 20};

static tl_mini_program_out_t out;

static int parse(const char *body, tl_problem_t *pb) {
    memset(&out, 0, sizeof out);
    return tl_mini_program_parse(&ctx, body, strlen(body), &out, pb);
}

START_TEST(mini_program_message_becomes_message_received) {
    tl_problem_t pb;
    char cust[40];
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"openid\":\"o-mp-1\",\"message_id\":\"mm-1\","
                           "\"sent_at\":1699999999000,\"text\":\"我想退货\","
                           "\"entry_point\":\"pages/order/detail?id=9\",\"device_id\":\"iPhone15,2\"}",
                           &pb), 0);
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_MINI_PROGRAM, TL_STR("o-mp-1"), cust);
    ck_assert_int_eq(out.first, 1);
    const tl_event_t *ev = &out.ev[1];
    ck_assert_int_eq(ev->kind, TL_EV_MESSAGE_RECEIVED);
    ck_assert_int_eq(ev->platform, TL_PLATFORM_MINI_PROGRAM);
    ck_assert(tl_adapter_cases_streq(ev->tenant_id, "acme"));
    ck_assert(tl_adapter_cases_streq(ev->platform_user_id, "o-mp-1"));
    ck_assert(tl_adapter_cases_streq(ev->customer_id, cust));
    ck_assert(tl_adapter_cases_streq(ev->idempotency_key, "mini_program:mm-1"));
    ck_assert(tl_adapter_cases_streq(ev->event_id, ctx.event_id));
    ck_assert(tl_adapter_cases_streq(ev->trace_id, "trace-2"));
    ck_assert_int_eq(ev->occurred_at, 1699999999000LL);
    ck_assert_int_eq(ev->received_at, NOW);
    ck_assert(tl_adapter_cases_streq(ev->u.message.text, "我想退货"));
    ck_assert(tl_adapter_cases_streq(ev->u.message.entry_point, "pages/order/detail?id=9"));
    ck_assert(tl_adapter_cases_streq(ev->u.message.device_id, "iPhone15,2"));
    ck_assert_uint_eq(ev->u.message.attachments.n, 0);
    /* Without a unionid, resolution only rekeys. */
    ck_assert_int_eq(tl_mini_program_resolve(&ctx, &out, cust, NULL), 0);
    ck_assert_int_eq(out.first, 1);
    tl_mini_program_out_close(&out);
}
END_TEST

START_TEST(mini_program_unionid_keys_message_on_unionid_customer) {
    tl_problem_t pb;
    char uc[40];
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"openid\":\"o\",\"unionid\":\"u-9\",\"message_id\":\"m\","
                           "\"sent_at\":1700000000000,\"text\":\"x\"}", &pb), 0);
    tl_identity_default_id(TL_STR("acme"), "unionid", TL_STR("u-9"), uc);
    ck_assert(tl_adapter_cases_streq(out.ev[1].customer_id, uc));
    ck_assert(tl_adapter_cases_streq(out.unionid, "u-9"));
    tl_mini_program_out_close(&out);
}
END_TEST

START_TEST(mini_program_unionid_links_openid_customer) {
    tl_problem_t pb;
    char oc[40], uc[40], id[40];
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"openid\":\"o\",\"unionid\":\"u-9\",\"message_id\":\"m\","
                           "\"sent_at\":1700000000000,\"text\":\"x\"}", &pb), 0);
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_MINI_PROGRAM, TL_STR("o"), oc);
    tl_identity_default_id(TL_STR("acme"), "unionid", TL_STR("u-9"), uc);
    ck_assert_int_eq(tl_mini_program_resolve(&ctx, &out, oc, uc), 1);
    ck_assert_int_eq(out.first, 0);
    const tl_event_t *l = &out.ev[0];
    ck_assert_int_eq(l->kind, TL_EV_IDENTITY_LINKED);
    ck_assert_int_eq(l->platform, TL_PLATFORM_MINI_PROGRAM);
    ck_assert(tl_adapter_cases_streq(l->customer_id, uc));
    ck_assert(tl_adapter_cases_streq(l->u.link.linked_customer_id, oc));
    ck_assert_int_eq(l->u.link.platform, TL_PLATFORM_MINI_PROGRAM);
    ck_assert(tl_adapter_cases_streq(l->u.link.platform_user_id, "o"));
    ck_assert_int_eq(l->u.link.evidence, TL_EVIDENCE_UNIONID);
    ck_assert(tl_adapter_cases_streq(l->u.link.evidence_value, "u-9"));
    ck_assert(tl_adapter_cases_streq(l->idempotency_key, "mini_program:unionid:o:u-9"));
    tl_adapter_sub_id(ctx.event_id, TL_MINI_PROGRAM_LINK_ID, id);
    ck_assert(tl_adapter_cases_streq(l->event_id, id));
    ck_assert(tl_adapter_cases_streq(out.ev[1].customer_id, uc));
    tl_mini_program_out_close(&out);
}
END_TEST

START_TEST(mini_program_no_link_once_index_agrees) {
    tl_problem_t pb;
    char uc[40];
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"openid\":\"o\",\"unionid\":\"u-9\",\"message_id\":\"m\","
                           "\"sent_at\":1700000000000,\"text\":\"x\"}", &pb), 0);
    tl_identity_default_id(TL_STR("acme"), "unionid", TL_STR("u-9"), uc);
    ck_assert_int_eq(tl_mini_program_resolve(&ctx, &out, uc, uc), 0);
    ck_assert_int_eq(out.first, 1);
    tl_mini_program_out_close(&out);
}
END_TEST

#define T "\"sent_at\":1700000000000,\"text\":\"x\""

static const tl_adapter_case_t bad_cases[] = {
    {"malformed", "{\"openid\":", 400, "malformed-json", ""},
    {"array", "[]", 400, "malformed-json", ""},
    {"invalid utf-8", "{\"openid\":\"\xed\xa0\x80\"}", 400, "invalid-utf8", ""},
    {"duplicate key", "{\"openid\":\"a\",\"openid\":\"b\"}", 400, "malformed-json", ""},
    {"missing tenant", "{\"openid\":\"o\",\"message_id\":\"m\"," T "}", 422, "missing-field", "tenant_id"},
    {"missing openid", "{\"tenant_id\":\"a\",\"message_id\":\"m\"," T "}", 422, "missing-field", "openid"},
    {"openid as number", "{\"tenant_id\":\"a\",\"openid\":1,\"message_id\":\"m\"," T "}", 422, "invalid-field", "openid"},
    {"openid with colon", "{\"tenant_id\":\"a\",\"openid\":\"o:1\",\"message_id\":\"m\"," T "}", 422, "invalid-field", "openid"},
    {"empty unionid", "{\"tenant_id\":\"a\",\"openid\":\"o\",\"unionid\":\"\",\"message_id\":\"m\"," T "}",
     422, "invalid-field", "unionid"},
    {"unionid with newline", "{\"tenant_id\":\"a\",\"openid\":\"o\",\"unionid\":\"u\\n\",\"message_id\":\"m\"," T "}",
     422, "invalid-field", "unionid"},
    {"missing message id", "{\"tenant_id\":\"a\",\"openid\":\"o\"," T "}", 422, "missing-field", "message_id"},
    {"sent_at in seconds", "{\"tenant_id\":\"a\",\"openid\":\"o\",\"message_id\":\"m\",\"sent_at\":1700000000,\"text\":\"x\"}",
     422, "implausible-time", "sent_at"},
    {"no text no attachments", "{\"tenant_id\":\"a\",\"openid\":\"o\",\"message_id\":\"m\",\"sent_at\":1700000000000}",
     422, "missing-field", "text"},
    {"attachment no bytes", "{\"tenant_id\":\"a\",\"openid\":\"o\",\"message_id\":\"m\",\"sent_at\":1700000000000,"
     "\"attachments\":[{\"url\":\"https://x/y\",\"mime\":\"image/png\"}]}", 422, "missing-field", "attachments[0].bytes"},
};

START_TEST(mini_program_bad_input_gets_precise_problem) {
    const tl_adapter_case_t *c = &bad_cases[_i];
    tl_problem_t pb;
    int status = parse(c->body, &pb);
    tl_mini_program_out_close(&out);
    tl_adapter_cases_check(c, status, &pb);
}
END_TEST

START_TEST(mini_program_openid_over_limit_is_refused) {
    char body[512];
    tl_problem_t pb;
    char id[TL_MINI_PROGRAM_ID_MAX + 2];
    memset(id, 'o', sizeof id - 1);
    id[sizeof id - 1] = 0;
    snprintf(body, sizeof body, "{\"tenant_id\":\"a\",\"openid\":\"%s\",\"message_id\":\"m\"," T "}", id);
    ck_assert_int_eq(parse(body, &pb), 422);
    ck_assert_str_eq(pb.type, "field-too-long");
    ck_assert_str_eq(pb.field, "openid");
    tl_mini_program_out_close(&out);
}
END_TEST

Suite *tl_mini_program_suite(void) {
    Suite *s = suite_create("mini_program");
    TCase *tc = tcase_create("good");
    tcase_add_test(tc, mini_program_message_becomes_message_received);
    tcase_add_test(tc, mini_program_unionid_keys_message_on_unionid_customer);
    tcase_add_test(tc, mini_program_unionid_links_openid_customer);
    tcase_add_test(tc, mini_program_no_link_once_index_agrees);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_loop_test(tc, mini_program_bad_input_gets_precise_problem, 0,
                        TL_ADAPTER_CASES_COUNT(bad_cases));
    tcase_add_test(tc, mini_program_openid_over_limit_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
