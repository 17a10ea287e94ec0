/* test_api.c -- adapters/api.c: the canonical JSON adapter. */
#include <stdio.h>
#include <string.h>

#include "adapter_cases.h"
#include "api.h"
#include "uuid.h"
#include "suites.h"

#define NOW 1700000000000LL

static const tl_adapter_ctx_t ctx = {NOW, "018bcfe5-6800-7000-8000-000000000002", "trace-2", 1 << 20};

static int parse(const char *body, tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    memset(out, 0, sizeof *out);
    return tl_api_parse(&ctx, body, strlen(body), out, ev, pb);
}

#define ENV "\"tenant_id\":\"acme\",\"platform\":\"douyin\",\"platform_user_id\":\"dy-1\"," \
            "\"message_id\":\"dm-77\",\"occurred_at\":1699999990000"

START_TEST(api_message_keeps_platform_and_key) {
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse("{" ENV ",\"payload\":{\"type\":\"MessageReceived\",\"text\":\"在吗\"}}",
                           &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.kind, TL_EV_MESSAGE_RECEIVED);
    ck_assert_int_eq(ev.platform, TL_PLATFORM_DOUYIN);
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "douyin:dm-77"));
    ck_assert(tl_adapter_cases_streq(ev.platform_user_id, "dy-1"));
    ck_assert(tl_adapter_cases_streq(ev.u.message.text, "在吗"));
    ck_assert_int_eq(ev.occurred_at, 1699999990000LL);
    ck_assert_int_eq(ev.received_at, NOW);
    tl_adapter_out_close(&out);
}
END_TEST

START_TEST(api_given_customer_id_is_used_lower_case) {
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse("{" ENV ",\"customer_id\":\"CCB98EE3-CC1B-581D-AA66-7D85F131E0AF\","
                           "\"payload\":{\"type\":\"FieldAsserted\",\"field\":\"order_no\",\"value\":\"SO-1\"}}",
                           &out, &ev, &pb), 0);
    ck_assert(tl_adapter_cases_streq(ev.customer_id, "ccb98ee3-cc1b-581d-aa66-7d85f131e0af"));
    ck_assert_int_eq(ev.kind, TL_EV_FIELD_ASSERTED);
    ck_assert(tl_adapter_cases_streq(ev.u.field.field, "order_no"));
    ck_assert(tl_adapter_cases_streq(ev.u.field.value, "SO-1"));
    tl_adapter_out_close(&out);
}
END_TEST

START_TEST(api_transcript_segment_maps_every_field) {
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"platform\":\"phone\",\"platform_user_id\":\"+8613800000000\","
                           "\"message_id\":\"call-1:3\",\"occurred_at\":1699999990000,\"payload\":{"
                           "\"type\":\"TranscriptSegment\",\"call_id\":\"call-1\",\"start_ms\":1000,"
                           "\"end_ms\":4500,\"speaker\":\"CUSTOMER\",\"text\":\"快递还没到\","
                           "\"confidence\":0.93,\"caller_number\":\"+8613800000000\"}}", &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.kind, TL_EV_TRANSCRIPT_SEGMENT);
    ck_assert(tl_adapter_cases_streq(ev.u.transcript.call_id, "call-1"));
    ck_assert_int_eq(ev.u.transcript.start_ms, 1000);
    ck_assert_int_eq(ev.u.transcript.end_ms, 4500);
    ck_assert_int_eq(ev.u.transcript.speaker, TL_SPEAKER_CUSTOMER);
    ck_assert(ev.u.transcript.confidence > 0.92f && ev.u.transcript.confidence < 0.94f);
    ck_assert(tl_adapter_cases_streq(ev.u.transcript.caller_number, "+8613800000000"));
    tl_adapter_out_close(&out);
}
END_TEST

START_TEST(api_identity_linked_maps_evidence) {
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse("{" ENV ",\"payload\":{\"type\":\"IdentityLinked\","
                           "\"linked_customer_id\":\"ccb98ee3-cc1b-581d-aa66-7d85f131e0af\","
                           "\"platform\":\"wechat\",\"platform_user_id\":\"o-1\",\"evidence\":\"UNIONID\","
                           "\"evidence_value\":\"u-9\"}}", &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.kind, TL_EV_IDENTITY_LINKED);
    ck_assert_int_eq(ev.u.link.platform, TL_PLATFORM_WECHAT);
    ck_assert_int_eq(ev.u.link.evidence, TL_EVIDENCE_UNIONID);
    ck_assert(tl_adapter_cases_streq(ev.u.link.evidence_value, "u-9"));
    tl_adapter_out_close(&out);
}
END_TEST

START_TEST(api_link_by_evidence_derives_survivor_and_absorbed) {
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    char survivor[40], absorbed[40];
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"platform\":\"wechat\",\"platform_user_id\":\"o-1\","
                           "\"message_id\":\"unionid:o-1\",\"occurred_at\":1700000000000,\"payload\":{"
                           "\"type\":\"IdentityLinked\",\"platform\":\"wechat\",\"platform_user_id\":\"o-1\","
                           "\"evidence\":\"UNIONID\",\"evidence_value\":\"u-9\"}}", &out, &ev, &pb), 0);
    /* The unionid's customer survives; the follower's is absorbed. */
    const char *parts[] = {"customer", "acme", "unionid", "u-9"};
    size_t lens[] = {8, 4, 7, 3};
    tl_uuid_v5(parts, lens, 4, survivor);
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_WECHAT, TL_STR("o-1"), absorbed);
    ck_assert(tl_adapter_cases_streq(ev.customer_id, survivor));
    ck_assert(tl_adapter_cases_streq(ev.u.link.linked_customer_id, absorbed));
    ck_assert_int_eq(out.customer_given, 0);
    tl_adapter_out_close(&out);
    /* A given customer_id stays the survivor. */
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"platform\":\"web\",\"platform_user_id\":\"v\","
                           "\"message_id\":\"verify-1\",\"occurred_at\":1700000000000,"
                           "\"customer_id\":\"CCB98EE3-CC1B-581D-AA66-7D85F131E0AF\",\"payload\":{"
                           "\"type\":\"IdentityLinked\",\"platform\":\"phone\",\"platform_user_id\":"
                           "\"+8613800138000\",\"evidence\":\"VERIFIED_PHONE\",\"evidence_value\":"
                           "\"+8613800138000\"}}", &out, &ev, &pb), 0);
    ck_assert(tl_adapter_cases_streq(ev.customer_id, "ccb98ee3-cc1b-581d-aa66-7d85f131e0af"));
    ck_assert_int_eq(out.customer_given, 1);
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_PHONE, TL_STR("+8613800138000"), absorbed);
    ck_assert(tl_adapter_cases_streq(ev.u.link.linked_customer_id, absorbed));
    tl_adapter_out_close(&out);
}
END_TEST

static const tl_adapter_case_t bad_cases[] = {
    {"no payload", "{" ENV "}", 422, "missing-field", "payload"},
    {"payload not object", "{" ENV ",\"payload\":[]}", 422, "invalid-field", "payload"},
    {"no type", "{" ENV ",\"payload\":{}}", 422, "missing-field", "payload.type"},
    {"unknown type", "{" ENV ",\"payload\":{\"type\":\"Nope\"}}", 422, "invalid-field", "payload.type"},
    {"agent action", "{" ENV ",\"payload\":{\"type\":\"ConflictResolved\"}}", 422, "agent-only", "payload.type"},
    {"agent platform", "{\"tenant_id\":\"a\",\"platform\":\"agent\",\"platform_user_id\":\"x\",\"message_id\":\"m\","
     "\"occurred_at\":1700000000000,\"payload\":{\"type\":\"MessageReceived\",\"text\":\"x\"}}",
     422, "invalid-field", "platform"},
    {"unknown platform", "{\"tenant_id\":\"a\",\"platform\":\"fax\",\"platform_user_id\":\"x\",\"message_id\":\"m\","
     "\"occurred_at\":1700000000000,\"payload\":{\"type\":\"MessageReceived\",\"text\":\"x\"}}",
     422, "invalid-field", "platform"},
    {"bad customer id", "{" ENV ",\"customer_id\":\"nope\",\"payload\":{\"type\":\"MessageReceived\",\"text\":\"x\"}}",
     422, "invalid-field", "customer_id"},
    {"empty message", "{" ENV ",\"payload\":{\"type\":\"MessageReceived\"}}", 422, "missing-field", "payload.text"},
    {"transcript end before start", "{" ENV ",\"payload\":{\"type\":\"TranscriptSegment\",\"call_id\":\"c\","
     "\"start_ms\":5,\"end_ms\":4,\"speaker\":\"AGENT\",\"text\":\"t\",\"confidence\":0.5}}",
     422, "out-of-range", "payload.end_ms"},
    {"transcript bad speaker", "{" ENV ",\"payload\":{\"type\":\"TranscriptSegment\",\"call_id\":\"c\","
     "\"start_ms\":1,\"end_ms\":4,\"speaker\":\"ROBOT\",\"text\":\"t\",\"confidence\":0.5}}",
     422, "invalid-field", "payload.speaker"},
    {"transcript confidence 2", "{" ENV ",\"payload\":{\"type\":\"TranscriptSegment\",\"call_id\":\"c\","
     "\"start_ms\":1,\"end_ms\":4,\"speaker\":\"AGENT\",\"text\":\"t\",\"confidence\":2}}",
     422, "invalid-field", "payload.confidence"},
    {"field name with space", "{" ENV ",\"payload\":{\"type\":\"FieldAsserted\",\"field\":\"order no\",\"value\":\"1\"}}",
     422, "invalid-field", "payload.field"},
    {"link without evidence", "{" ENV ",\"payload\":{\"type\":\"IdentityLinked\","
     "\"linked_customer_id\":\"ccb98ee3-cc1b-581d-aa66-7d85f131e0af\",\"platform\":\"wechat\","
     "\"platform_user_id\":\"o\"}}", 422, "missing-field", "payload.evidence"},
    {"occurred_at in seconds", "{\"tenant_id\":\"a\",\"platform\":\"web\",\"platform_user_id\":\"x\",\"message_id\":\"m\","
     "\"occurred_at\":1700000000,\"payload\":{\"type\":\"MessageReceived\",\"text\":\"x\"}}",
     422, "implausible-time", "occurred_at"},
};

START_TEST(api_bad_input_gets_precise_problem) {
    const tl_adapter_case_t *c = &bad_cases[_i];
    tl_adapter_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    int status = parse(c->body, &out, &ev, &pb);
    tl_adapter_out_close(&out);
    tl_adapter_cases_check(c, status, &pb);
}
END_TEST

Suite *tl_api_suite(void) {
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("good");
    tcase_add_test(tc, api_message_keeps_platform_and_key);
    tcase_add_test(tc, api_given_customer_id_is_used_lower_case);
    tcase_add_test(tc, api_transcript_segment_maps_every_field);
    tcase_add_test(tc, api_identity_linked_maps_evidence);
    tcase_add_test(tc, api_link_by_evidence_derives_survivor_and_absorbed);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_loop_test(tc, api_bad_input_gets_precise_problem, 0, TL_ADAPTER_CASES_COUNT(bad_cases));
    suite_add_tcase(s, tc);
    return s;
}
