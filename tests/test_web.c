/* test_web.c -- adapters/web.c: good input gives the exact event, bad input
 * the exact status, problem type and field. */
#include <stdio.h>
#include <string.h>

#include "adapter_cases.h"
#include "suites.h"
#include "web.h"

#define NOW 1700000000000LL

static const tl_adapter_ctx_t ctx = {NOW, "018bcfe5-6800-7000-8000-000000000001", "trace-1", 1 << 20};

static int parse(const char *body, tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    memset(out, 0, sizeof *out);
    return tl_web_parse(&ctx, body, strlen(body), out, ev, pb);
}

START_TEST(web_message_becomes_message_received) {
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    const char *body =
        "{\"tenant_id\":\"acme\",\"visitor_id\":\"v-1\",\"message_id\":\"m-9\","
        "\"sent_at\":1699999999000,\"text\":\"请问这件衬衫有L码吗？\","
        "\"entry_point\":\"product-detail:SKU-1\",\"device_id\":\"d-7\","
        "\"attachments\":[{\"url\":\"https://cdn.example/a.png\",\"mime\":\"image/png\","
        "\"bytes\":2048,\"width\":640,\"height\":480}]}";
    ck_assert_int_eq(parse(body, &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.kind, TL_EV_MESSAGE_RECEIVED);
    ck_assert_int_eq(ev.platform, TL_PLATFORM_WEB);
    ck_assert(tl_adapter_cases_streq(ev.tenant_id, "acme"));
    ck_assert(tl_adapter_cases_streq(ev.platform_user_id, "v-1"));
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "web:m-9"));
    ck_assert(tl_adapter_cases_streq(ev.event_id, ctx.event_id));
    ck_assert(tl_adapter_cases_streq(ev.trace_id, "trace-1"));
    ck_assert_int_eq(ev.occurred_at, 1699999999000LL);
    ck_assert_int_eq(ev.received_at, NOW);
    ck_assert(tl_adapter_cases_streq(ev.u.message.text, "请问这件衬衫有L码吗？"));
    ck_assert(tl_adapter_cases_streq(ev.u.message.entry_point, "product-detail:SKU-1"));
    ck_assert(tl_adapter_cases_streq(ev.u.message.device_id, "d-7"));
    ck_assert_uint_eq(ev.u.message.attachments.n, 1);
    const tl_attachment_t *a = &ev.u.message.attachments.v[0];
    ck_assert(tl_adapter_cases_streq(a->url, "https://cdn.example/a.png"));
    ck_assert(tl_adapter_cases_streq(a->mime, "image/png"));
    ck_assert_int_eq(a->bytes, 2048);
    ck_assert(a->has_width && a->width == 640 && a->has_height && a->height == 480);
    ck_assert_int_eq(ev.customer_id.len, 36);
    tl_adapter_out_close(&out);
}
END_TEST

START_TEST(web_customer_id_is_deterministic_per_tenant_and_visitor) {
    tl_adapter_out_t o1, o2, o3;
    tl_event_t e1, e2, e3;
    tl_problem_t pb;
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"visitor_id\":\"v-1\",\"message_id\":\"a\","
                           "\"sent_at\":1700000000000,\"text\":\"x\"}", &o1, &e1, &pb), 0);
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"visitor_id\":\"v-1\",\"message_id\":\"b\","
                           "\"sent_at\":1700000000000,\"text\":\"y\"}", &o2, &e2, &pb), 0);
    ck_assert_int_eq(parse("{\"tenant_id\":\"other\",\"visitor_id\":\"v-1\",\"message_id\":\"a\","
                           "\"sent_at\":1700000000000,\"text\":\"x\"}", &o3, &e3, &pb), 0);
    ck_assert_str_eq(o1.customer_id, o2.customer_id);
    ck_assert_str_ne(o1.customer_id, o3.customer_id);
    tl_adapter_out_close(&o1);
    tl_adapter_out_close(&o2);
    tl_adapter_out_close(&o3);
}
END_TEST

static const tl_adapter_case_t bad_cases[] = {
    {"malformed", "{\"tenant_id\":", 400, "malformed-json", ""},
    {"not an object", "[1,2]", 400, "malformed-json", ""},
    {"invalid utf-8", "{\"tenant_id\":\"a\xff\"}", 400, "invalid-utf8", ""},
    {"duplicate key", "{\"tenant_id\":\"a\",\"tenant_id\":\"b\"}", 400, "malformed-json", ""},
    {"missing tenant", "{\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":\"x\"}",
     422, "missing-field", "tenant_id"},
    {"missing visitor", "{\"tenant_id\":\"a\",\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":\"x\"}",
     422, "missing-field", "visitor_id"},
    {"empty message id", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"\",\"sent_at\":1700000000000,\"text\":\"x\"}",
     422, "invalid-field", "message_id"},
    {"sent_at as string", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":\"now\",\"text\":\"x\"}",
     422, "invalid-field", "sent_at"},
    {"sent_at in seconds", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000,\"text\":\"x\"}",
     422, "implausible-time", "sent_at"},
    {"text as number", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":5}",
     422, "invalid-field", "text"},
    {"no text no attachments", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000000}",
     422, "missing-field", "text"},
    {"NUL in visitor", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\\u0000x\",\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":\"x\"}",
     400, "malformed-json", ""},
    {"attachment without url", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000000,"
     "\"attachments\":[{\"mime\":\"image/png\",\"bytes\":1}]}", 422, "missing-field", "attachments[0].url"},
    {"attachment ftp url", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000000,"
     "\"attachments\":[{\"url\":\"ftp://x/y\",\"mime\":\"image/png\",\"bytes\":1}]}", 422, "invalid-field", "attachments[0].url"},
    {"attachment negative width", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000000,"
     "\"attachments\":[{\"url\":\"https://x/y\",\"mime\":\"image/png\",\"bytes\":1,\"width\":-1}]}",
     422, "out-of-range", "attachments[0].width"},
    {"attachments not array", "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\",\"sent_at\":1700000000000,"
     "\"text\":\"x\",\"attachments\":{}}", 422, "invalid-field", "attachments"},
};

START_TEST(web_bad_input_gets_precise_problem) {
    const tl_adapter_case_t *c = &bad_cases[_i];
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    int status = parse(c->body, &out, &ev, &pb);
    tl_adapter_out_close(&out);
    tl_adapter_cases_check(c, status, &pb);
}
END_TEST

START_TEST(web_text_over_limit_is_refused) {
    static char body[TL_WEB_TEXT_MAX + 256];
    int n = snprintf(body, sizeof body, "{\"tenant_id\":\"a\",\"visitor_id\":\"v\",\"message_id\":\"m\","
                                        "\"sent_at\":1700000000000,\"text\":\"");
    memset(body + n, 'x', TL_WEB_TEXT_MAX + 1);
    strcpy(body + n + TL_WEB_TEXT_MAX + 1, "\"}");
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse(body, &out, &ev, &pb), 422);
    ck_assert_str_eq(pb.field, "text");
    ck_assert_str_eq(pb.type, "field-too-long");
    tl_adapter_out_close(&out);
}
END_TEST

Suite *tl_web_suite(void) {
    Suite *s = suite_create("web");
    TCase *tc = tcase_create("good");
    tcase_add_test(tc, web_message_becomes_message_received);
    tcase_add_test(tc, web_customer_id_is_deterministic_per_tenant_and_visitor);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_loop_test(tc, web_bad_input_gets_precise_problem, 0,
                        TL_ADAPTER_CASES_COUNT(bad_cases));
    tcase_add_test(tc, web_text_over_limit_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
