/* test_app.c -- adapters/app.c: an SDK upload gives the exact events (message,
 * click stream, login link), bad input the exact status, problem type and
 * field. */
#include <stdio.h>
#include <string.h>

#include "adapter_cases.h"
#include "app.h"
#include "identity.h"
#include "suites.h"

#define NOW 1700000000000LL

static const tl_adapter_ctx_t ctx = {NOW, "018bcfe5-6800-7000-8000-0000000a0001", "trace-1", 1 << 20};

/* An out is ~60 KB: static, not on the test's stack. */
static tl_app_out_t out;

static int parse(const char *body, tl_problem_t *pb) {
    memset(&out, 0, sizeof out);
    return tl_app_parse(&ctx, body, strlen(body), &out, pb);
}

static void device_customer(const char *tenant, const char *device, char id[40]) {
    tl_adapter_customer_id((tl_str_t){tenant, strlen(tenant)}, TL_PLATFORM_APP,
                           (tl_str_t){device, strlen(device)}, id);
}

#define BATCH                                                                                    \
    "{\"tenant_id\":\"acme\",\"device_id\":\"dev-1\","                                            \
    "\"message\":{\"message_id\":\"m-1\",\"sent_at\":1699999999000,\"text\":\"订单到哪了？\","       \
    "\"entry_point\":\"OrderDetail\",\"attachments\":[{\"url\":\"https://cdn.example/s.jpg\","    \
    "\"mime\":\"image/jpeg\",\"bytes\":900}]},"                                                  \
    "\"events\":[{\"id\":\"e-1\",\"page\":\"Home\",\"action\":\"open\",\"ts\":1699999990000},"      \
    "{\"id\":\"e-2\",\"page\":\"OrderDetail\",\"action\":\"tap:track\",\"ts\":1699999995000}]}"

START_TEST(app_batch_becomes_message_and_behaviors) {
    tl_problem_t pb;
    char cust[40], id[40];
    ck_assert_int_eq(parse(BATCH, &pb), 0);
    device_customer("acme", "dev-1", cust);
    ck_assert_int_eq(out.first, 1);
    ck_assert_int_eq(out.n, 3);
    const tl_event_t *m = &out.ev[1];
    ck_assert_int_eq(m->kind, TL_EV_MESSAGE_RECEIVED);
    ck_assert_int_eq(m->platform, TL_PLATFORM_APP);
    ck_assert(tl_adapter_cases_streq(m->tenant_id, "acme"));
    ck_assert(tl_adapter_cases_streq(m->platform_user_id, "dev-1"));
    ck_assert(tl_adapter_cases_streq(m->customer_id, cust));
    ck_assert(tl_adapter_cases_streq(m->idempotency_key, "app:m-1"));
    tl_adapter_sub_id(ctx.event_id, 0, id);
    ck_assert(tl_adapter_cases_streq(m->event_id, id));
    ck_assert_str_eq(id, "018bcfe5-6800-7000-8000-0000000a0000");
    ck_assert_int_eq(m->occurred_at, 1699999999000LL);
    ck_assert_int_eq(m->received_at, NOW);
    ck_assert(tl_adapter_cases_streq(m->trace_id, "trace-1"));
    ck_assert(tl_adapter_cases_streq(m->u.message.text, "订单到哪了？"));
    ck_assert(tl_adapter_cases_streq(m->u.message.entry_point, "OrderDetail"));
    ck_assert(tl_adapter_cases_streq(m->u.message.device_id, "dev-1"));
    ck_assert_uint_eq(m->u.message.attachments.n, 1);
    ck_assert(tl_adapter_cases_streq(m->u.message.attachments.v[0].url, "https://cdn.example/s.jpg"));
    ck_assert_int_eq(out.index[1], 0);

    const char *pages[] = {"Home", "OrderDetail"}, *actions[] = {"open", "tap:track"};
    const char *keys[] = {"app:event:e-1", "app:event:e-2"};
    int64_t ts[] = {1699999990000LL, 1699999995000LL};
    for (int k = 0; k < 2; k++) {
        const tl_event_t *b = &out.ev[2 + k];
        ck_assert_int_eq(b->kind, TL_EV_BEHAVIOR_TRACKED);
        ck_assert(tl_adapter_cases_streq(b->u.behavior.page, pages[k]));
        ck_assert(tl_adapter_cases_streq(b->u.behavior.action, actions[k]));
        ck_assert(tl_adapter_cases_streq(b->u.behavior.device_id, "dev-1"));
        ck_assert(tl_adapter_cases_streq(b->idempotency_key, keys[k]));
        ck_assert(tl_adapter_cases_streq(b->customer_id, cust));
        ck_assert_int_eq(b->occurred_at, ts[k]);
        tl_adapter_sub_id(ctx.event_id, (unsigned)k + 1, id);
        ck_assert(tl_adapter_cases_streq(b->event_id, id));
        ck_assert_int_eq(out.index[2 + k], k + 1);
    }
    tl_app_out_close(&out);
}
END_TEST

START_TEST(app_click_stream_alone_starts_at_slot_two) {
    tl_problem_t pb;
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"device_id\":\"d\",\"events\":[{\"id\":\"1\","
                           "\"page\":\"p\",\"action\":\"a\",\"ts\":1700000000000}]}", &pb), 0);
    ck_assert_int_eq(out.first, 2);
    ck_assert_int_eq(out.n, 1);
    ck_assert_int_eq(out.ev[2].kind, TL_EV_BEHAVIOR_TRACKED);
    tl_app_out_close(&out);
}
END_TEST

START_TEST(app_login_links_device_into_account_once) {
    tl_problem_t pb;
    char dev[40], acct[40], id[40];
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"device_id\":\"dev-1\",\"account_id\":\"u-42\","
                           "\"message\":{\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":\"hi\"}}",
                           &pb), 0);
    device_customer("acme", "dev-1", dev);
    tl_identity_default_id(TL_STR("acme"), "account", TL_STR("u-42"), acct);
    ck_assert_int_eq(tl_app_resolve(&ctx, &out, dev, acct), 1);
    ck_assert_int_eq(out.first, 0);
    ck_assert_int_eq(out.n, 2);
    const tl_event_t *l = &out.ev[0];
    ck_assert_int_eq(l->kind, TL_EV_IDENTITY_LINKED);
    ck_assert(tl_adapter_cases_streq(l->customer_id, acct));
    ck_assert(tl_adapter_cases_streq(l->u.link.linked_customer_id, dev));
    ck_assert_int_eq(l->u.link.platform, TL_PLATFORM_APP);
    ck_assert(tl_adapter_cases_streq(l->u.link.platform_user_id, "dev-1"));
    ck_assert_int_eq(l->u.link.evidence, TL_EVIDENCE_LOGIN);
    ck_assert(tl_adapter_cases_streq(l->u.link.evidence_value, "u-42"));
    ck_assert(tl_adapter_cases_streq(l->idempotency_key, "app:login:dev-1:u-42"));
    tl_adapter_sub_id(ctx.event_id, TL_APP_LINK_ID, id);
    ck_assert(tl_adapter_cases_streq(l->event_id, id));
    ck_assert_int_eq(out.index[0], -1);
    /* The message moved to the account's customer. */
    ck_assert(tl_adapter_cases_streq(out.ev[1].customer_id, acct));
    tl_app_out_close(&out);
}
END_TEST

START_TEST(app_login_without_message_puts_link_before_clicks) {
    tl_problem_t pb;
    char dev[40], acct[40];
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"device_id\":\"d\",\"account_id\":\"u\","
                           "\"events\":[{\"id\":\"1\",\"page\":\"p\",\"action\":\"a\",\"ts\":1700000000000}]}",
                           &pb), 0);
    device_customer("acme", "d", dev);
    tl_identity_default_id(TL_STR("acme"), "account", TL_STR("u"), acct);
    ck_assert_int_eq(tl_app_resolve(&ctx, &out, dev, acct), 1);
    ck_assert_int_eq(out.first, 1);
    ck_assert_int_eq(out.n, 2);
    ck_assert_int_eq(out.ev[1].kind, TL_EV_IDENTITY_LINKED);
    ck_assert(tl_adapter_cases_streq(out.ev[1].idempotency_key, "app:login:d:u"));
    ck_assert_int_eq(out.ev[2].kind, TL_EV_BEHAVIOR_TRACKED);
    ck_assert(tl_adapter_cases_streq(out.ev[2].customer_id, acct));
    tl_app_out_close(&out);
}
END_TEST

START_TEST(app_no_link_when_device_already_linked_or_claimed) {
    tl_problem_t pb;
    char dev[40], acct[40], other[40];
    const char *body = "{\"tenant_id\":\"acme\",\"device_id\":\"d\",\"account_id\":\"u\","
                       "\"message\":{\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":\"x\"}}";
    device_customer("acme", "d", dev);
    tl_identity_default_id(TL_STR("acme"), "account", TL_STR("u"), acct);
    tl_identity_default_id(TL_STR("acme"), "account", TL_STR("someone-else"), other);
    /* The index already maps the device to this account: nothing to link. */
    ck_assert_int_eq(parse(body, &pb), 0);
    ck_assert_int_eq(tl_app_resolve(&ctx, &out, acct, acct), 0);
    ck_assert_int_eq(out.first, 1);
    ck_assert_int_eq(out.n, 1);
    tl_app_out_close(&out);
    /* The device belongs to another account: route to this one, merge nobody. */
    ck_assert_int_eq(parse(body, &pb), 0);
    ck_assert_int_eq(tl_app_resolve(&ctx, &out, other, acct), 0);
    ck_assert(tl_adapter_cases_streq(out.ev[1].customer_id, acct));
    tl_app_out_close(&out);
    /* No account: the device's (resolved) customer. */
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"device_id\":\"d\",\"message\":{\"message_id\":"
                           "\"m\",\"sent_at\":1700000000000,\"text\":\"x\"}}", &pb), 0);
    ck_assert_int_eq(tl_app_resolve(&ctx, &out, other, NULL), 0);
    ck_assert(tl_adapter_cases_streq(out.ev[1].customer_id, other));
    tl_app_out_close(&out);
}
END_TEST

#define ENV "\"tenant_id\":\"a\",\"device_id\":\"d\""
#define MSG "\"message\":{\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":\"x\"}"

static const tl_adapter_case_t bad_cases[] = {
    {"malformed", "{\"tenant_id\":", 400, "malformed-json", ""},
    {"not an object", "\"x\"", 400, "malformed-json", ""},
    {"invalid utf-8", "{\"tenant_id\":\"a\xc3\x28\"}", 400, "invalid-utf8", ""},
    {"missing tenant", "{\"device_id\":\"d\"," MSG "}", 422, "missing-field", "tenant_id"},
    {"missing device", "{\"tenant_id\":\"a\"," MSG "}", 422, "missing-field", "device_id"},
    {"device with colon", "{\"tenant_id\":\"a\",\"device_id\":\"d:1\"," MSG "}", 422, "invalid-field", "device_id"},
    {"empty account", "{" ENV ",\"account_id\":\"\"," MSG "}", 422, "invalid-field", "account_id"},
    {"account as number", "{" ENV ",\"account_id\":7," MSG "}", 422, "invalid-field", "account_id"},
    {"neither message nor events", "{" ENV "}", 422, "missing-field", "message"},
    {"message not object", "{" ENV ",\"message\":\"hi\"}", 422, "invalid-field", "message"},
    {"message without id", "{" ENV ",\"message\":{\"sent_at\":1700000000000,\"text\":\"x\"}}",
     422, "missing-field", "message.message_id"},
    {"message sent_at in seconds", "{" ENV ",\"message\":{\"message_id\":\"m\",\"sent_at\":1700000000,\"text\":\"x\"}}",
     422, "implausible-time", "message.sent_at"},
    {"message empty", "{" ENV ",\"message\":{\"message_id\":\"m\",\"sent_at\":1700000000000}}",
     422, "missing-field", "message.text"},
    {"message attachment ftp", "{" ENV ",\"message\":{\"message_id\":\"m\",\"sent_at\":1700000000000,"
     "\"attachments\":[{\"url\":\"ftp://x/y\",\"mime\":\"a/b\",\"bytes\":1}]}}",
     422, "invalid-field", "message.attachments[0].url"},
    {"events not array", "{" ENV ",\"events\":{}}", 422, "invalid-field", "events"},
    {"events empty", "{" ENV ",\"events\":[]}", 422, "invalid-field", "events"},
    {"event not object", "{" ENV ",\"events\":[1]}", 422, "invalid-field", "events[0]"},
    {"event without page", "{" ENV ",\"events\":[{\"id\":\"1\",\"action\":\"a\",\"ts\":1700000000000}]}",
     422, "missing-field", "events[0].page"},
    {"event ts as string", "{" ENV ",\"events\":[{\"id\":\"1\",\"page\":\"p\",\"action\":\"a\",\"ts\":\"now\"}]}",
     422, "invalid-field", "events[0].ts"},
    {"event ts far future", "{" ENV ",\"events\":[{\"id\":\"1\",\"page\":\"p\",\"action\":\"a\",\"ts\":1900000000000}]}",
     422, "implausible-time", "events[0].ts"},
    {"second event without id", "{" ENV ",\"events\":[{\"id\":\"1\",\"page\":\"p\",\"action\":\"a\",\"ts\":1700000000000},"
     "{\"page\":\"p\",\"action\":\"a\",\"ts\":1700000000000}]}", 422, "missing-field", "events[1].id"},
    {"repeated event id", "{" ENV ",\"events\":[{\"id\":\"1\",\"page\":\"p\",\"action\":\"a\",\"ts\":1700000000000},"
     "{\"id\":\"1\",\"page\":\"q\",\"action\":\"a\",\"ts\":1700000000000}]}", 422, "invalid-field", "events[1].id"},
    {"NUL in page", "{" ENV ",\"events\":[{\"id\":\"1\",\"page\":\"p\\u0000\",\"action\":\"a\",\"ts\":1700000000000}]}",
     400, "malformed-json", ""},
};

START_TEST(app_bad_input_gets_precise_problem) {
    const tl_adapter_case_t *c = &bad_cases[_i];
    tl_problem_t pb;
    int status = parse(c->body, &pb);
    tl_app_out_close(&out);
    tl_adapter_cases_check(c, status, &pb);
}
END_TEST

START_TEST(app_batch_over_limit_is_refused) {
    static char body[64 * 1024];
    tl_problem_t pb;
    int n = snprintf(body, sizeof body, "{" ENV ",\"events\":[");
    for (int k = 0; k <= TL_APP_MAX_EVENTS; k++)
        n += snprintf(body + n, sizeof body - (size_t)n,
                      "%s{\"id\":\"%d\",\"page\":\"p\",\"action\":\"a\",\"ts\":1700000000000}", k ? "," : "", k);
    snprintf(body + n, sizeof body - (size_t)n, "]}");
    ck_assert_int_eq(parse(body, &pb), 422);
    ck_assert_str_eq(pb.type, "too-many");
    ck_assert_str_eq(pb.field, "events");
    tl_app_out_close(&out);
}
END_TEST

START_TEST(app_text_over_limit_is_refused) {
    static char body[TL_APP_TEXT_MAX + 256];
    tl_problem_t pb;
    int n = snprintf(body, sizeof body, "{" ENV ",\"message\":{\"message_id\":\"m\",\"sent_at\":1700000000000,\"text\":\"");
    memset(body + n, 'x', TL_APP_TEXT_MAX + 1);
    strcpy(body + n + TL_APP_TEXT_MAX + 1, "\"}}");
    ck_assert_int_eq(parse(body, &pb), 422);
    ck_assert_str_eq(pb.type, "field-too-long");
    ck_assert_str_eq(pb.field, "message.text");
    tl_app_out_close(&out);
}
END_TEST

Suite *tl_app_suite(void) {
    Suite *s = suite_create("app");
    TCase *tc = tcase_create("good");
    tcase_add_test(tc, app_batch_becomes_message_and_behaviors);
    tcase_add_test(tc, app_click_stream_alone_starts_at_slot_two);
    tcase_add_test(tc, app_login_links_device_into_account_once);
    tcase_add_test(tc, app_login_without_message_puts_link_before_clicks);
    tcase_add_test(tc, app_no_link_when_device_already_linked_or_claimed);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_loop_test(tc, app_bad_input_gets_precise_problem, 0,
                        TL_ADAPTER_CASES_COUNT(bad_cases));
    tcase_add_test(tc, app_batch_over_limit_is_refused);
    tcase_add_test(tc, app_text_over_limit_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
