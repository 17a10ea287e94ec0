/* test_phone.c -- adapters/phone.c: transcript segments give the exact
 * event, caller numbers one E.164 form, bad input the exact status, problem
 * type and field. */
#include <stdio.h>
#include <string.h>

#include "adapter_cases.h"
#include "error.h"
#include "phone.h"
#include "suites.h"

#define NOW 1700000000000LL

static const tl_adapter_ctx_t ctx = {NOW, "018bcfe5-6800-7000-8000-000000000004", "trace-4", 1 << 20};

static tl_phone_conf_t conf;

static void setup(void) {
    char err[256];
    ck_assert_int_eq(tl_phone_conf_init(&conf, "86", err, sizeof err), 0);
}

static int parse(const char *body, tl_phone_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    memset(out, 0, sizeof *out);
    return tl_phone_parse(&conf, &ctx, body, strlen(body), out, ev, pb);
}

START_TEST(phone_segment_becomes_transcript_segment) {
    tl_phone_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"call_id\":\"c-20231114-0042\",\"segment_id\":\"3\","
                           "\"caller_number\":\"+86 138 0013 8000\",\"speaker\":\"customer\","
                           "\"start_ms\":12000,\"end_ms\":15500,\"text\":\"我的快递三天了还没到\","
                           "\"confidence\":0.93,\"call_started_at\":1699999900000}", &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.kind, TL_EV_TRANSCRIPT_SEGMENT);
    ck_assert_int_eq(ev.platform, TL_PLATFORM_PHONE);
    ck_assert(tl_adapter_cases_streq(ev.tenant_id, "acme"));
    ck_assert(tl_adapter_cases_streq(ev.platform_user_id, "+8613800138000"));
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "phone:c-20231114-0042:3"));
    ck_assert(tl_adapter_cases_streq(ev.event_id, ctx.event_id));
    ck_assert(tl_adapter_cases_streq(ev.trace_id, "trace-4"));
    ck_assert_int_eq(ev.occurred_at, 1699999912000LL);
    ck_assert_int_eq(ev.received_at, NOW);
    const tl_transcript_segment_t *t = &ev.u.transcript;
    ck_assert(tl_adapter_cases_streq(t->call_id, "c-20231114-0042"));
    ck_assert_int_eq(t->start_ms, 12000);
    ck_assert_int_eq(t->end_ms, 15500);
    ck_assert_int_eq(t->speaker, TL_SPEAKER_CUSTOMER);
    ck_assert(tl_adapter_cases_streq(t->text, "我的快递三天了还没到"));
    ck_assert(t->confidence > 0.929f && t->confidence < 0.931f);
    ck_assert(tl_adapter_cases_streq(t->caller_number, "+8613800138000"));
    char want[40];
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_PHONE, TL_STR("+8613800138000"), want);
    ck_assert(tl_adapter_cases_streq(ev.customer_id, want));
    tl_phone_out_close(&out);
}
END_TEST

START_TEST(phone_seq_and_integer_segment_ids_make_the_same_key) {
    tl_phone_out_t o1, o2;
    tl_event_t e1, e2;
    tl_problem_t pb;
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"call_id\":\"c-1\",\"seq\":7,"
                           "\"caller_number\":\"13800138000\",\"speaker\":\"AGENT\",\"start_ms\":0,"
                           "\"end_ms\":0,\"text\":\"您好\",\"confidence\":1,"
                           "\"call_started_at\":1700000000000}", &o1, &e1, &pb), 0);
    ck_assert_int_eq(parse("{\"tenant_id\":\"acme\",\"call_id\":\"c-1\",\"segment_id\":7,"
                           "\"caller_number\":\"13800138000\",\"speaker\":\"agent\",\"start_ms\":0,"
                           "\"end_ms\":0,\"text\":\"您好\",\"confidence\":0,"
                           "\"call_started_at\":1700000000000}", &o2, &e2, &pb), 0);
    ck_assert(tl_adapter_cases_streq(e1.idempotency_key, "phone:c-1:7"));
    ck_assert(tl_adapter_cases_streq(e2.idempotency_key, "phone:c-1:7"));
    ck_assert_int_eq(e1.u.transcript.speaker, TL_SPEAKER_AGENT);
    /* An agent's words belong to the caller's customer too. */
    ck_assert(tl_adapter_cases_streq(e1.platform_user_id, "+8613800138000"));
    ck_assert_int_eq(e1.occurred_at, 1700000000000LL);
    tl_phone_out_close(&o1);
    tl_phone_out_close(&o2);
}
END_TEST

START_TEST(phone_one_caller_is_one_customer_however_the_number_is_written) {
    static const char *const forms[] = {
        "+86 138 0013 8000", "0086 138 0013 8000", "13800138000", "138-0013-8000",
        "013800138000", "(+86) 138.0013.8000",
    };
    char first[40] = "";
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"tenant_id\":\"acme\",\"call_id\":\"c-%zu\",\"segment_id\":\"1\","
                 "\"caller_number\":\"%s\",\"speaker\":\"customer\",\"start_ms\":0,\"end_ms\":10,"
                 "\"text\":\"喂\",\"confidence\":0.5,\"call_started_at\":1700000000000}", i, forms[i]);
        tl_phone_out_t out;
        tl_event_t ev;
        tl_problem_t pb;
        ck_assert_msg(parse(body, &out, &ev, &pb) == 0, "%s: %s", forms[i], pb.detail);
        ck_assert_msg(tl_adapter_cases_streq(ev.platform_user_id, "+8613800138000"), "%s", forms[i]);
        if (!first[0]) memcpy(first, out.base.customer_id, sizeof first);
        ck_assert_str_eq(out.base.customer_id, first);
        tl_phone_out_close(&out);
    }
}
END_TEST

/* ---- E.164 ------------------------------------------------------------ */

typedef struct e164_case {
    const char *cc;             /* default country code */
    const char *in;
    const char *want;           /* NULL: refused */
} e164_case_t;

static const e164_case_t e164_cases[] = {
    {"86", "+86 138 0013 8000", "+8613800138000"},
    {"86", "+8613800138000", "+8613800138000"},
    {"86", "0086 138 0013 8000", "+8613800138000"},
    {"86", "008613800138000", "+8613800138000"},
    {"86", "13800138000", "+8613800138000"},
    {"86", "013800138000", "+8613800138000"},
    {"86", "199-1234-5678", "+8619912345678"},
    {"86", "(010) 1234-5678", "+861012345678"},
    {"86", "010-12345678", "+861012345678"},
    {"86", "021 6123 4567", "+862161234567"},
    {"86", "0755-8888-1234", "+8675588881234"},
    {"86", "0371-1234567", "+863711234567"},
    {"86", " +86 138 0013 8000 ", "+8613800138000"},
    {"86", "+44 20 7946 0958", "+442079460958"},
    {"86", "+1 (212) 555-0100", "+12125550100"},
    {"86", "001 212 555 0100", "+12125550100"},
    {"86", "+852 2123 4567", "+85221234567"},
    {"44", "020 7946 0958", "+442079460958"},
    {"44", "07700 900123", "+447700900123"},
    {"1", "(212) 555-0100", "+12125550100"},
    /* refused */
    {"86", "", NULL},
    {"86", "+", NULL},
    {"86", "()- ", NULL},
    {"86", "123", NULL},                        /* too short */
    {"86", "+86 2345", NULL},                   /* too short */
    {"86", "+8613800138000123", NULL},          /* 17 digits */
    {"86", "+1234567890123456", NULL},          /* 16 digits */
    {"86", "138 0013 800a", NULL},              /* letters */
    {"86", "anonymous", NULL},
    {"86", "13800138000 ext 12", NULL},
    {"86", "13800138000#12", NULL},
    {"86", "+86+13800138000", NULL},            /* a second '+' */
    {"86", "138+00138000", NULL},
    {"86", "\xef\xbc\x91\xef\xbc\x93\xef\xbc\x98", NULL},   /* full-width digits */
    {"86", "+0 123 4567 890", NULL},            /* no country code starts with 0 */
    {"86", "000 123 4567 890", NULL},
    {"86", "12345678", NULL},                   /* a local number without its area code */
    {"86", "1380013800", NULL},                 /* 10 digits: no Chinese mobile */
    {"86", "138001380001", NULL},               /* 12 digits */
    {"86", "+86 (0)10 1234 5678", NULL},        /* trunk 0 after +86 */
    {"86", "86 138 0013 8000", NULL},           /* 86 without + or 00: not guessed */
    {"86", "+86 123 4567 8901", NULL},          /* 12x is no mobile prefix */
};

START_TEST(phone_numbers_become_e164) {
    const e164_case_t *c = &e164_cases[_i];
    tl_phone_conf_t cf;
    char err[128], out[TL_PHONE_E164_MAX + 1] = "";
    const char *why = NULL;
    ck_assert_int_eq(tl_phone_conf_init(&cf, c->cc, err, sizeof err), 0);
    int rc = tl_phone_e164(&cf, c->in, strlen(c->in), out, &why);
    if (c->want) {
        ck_assert_msg(rc == 0, "\"%s\" (+%s): refused, it %s", c->in, c->cc, why);
        ck_assert_msg(strcmp(out, c->want) == 0, "\"%s\" (+%s): %s, want %s", c->in, c->cc, out, c->want);
    } else {
        ck_assert_msg(rc == TL_EINVAL, "\"%s\" (+%s): accepted as %s", c->in, c->cc, out);
        ck_assert_ptr_nonnull(why);
    }
}
END_TEST

START_TEST(phone_conf_takes_a_country_code) {
    tl_phone_conf_t c;
    char err[256];
    ck_assert_int_eq(tl_phone_conf_init(&c, "+44", err, sizeof err), 0);
    ck_assert_str_eq(c.country_code, "44");
    ck_assert_int_eq(tl_phone_conf_init(&c, "86", err, sizeof err), 0);
    ck_assert_str_eq(c.country_code, "86");
    static const char *const bad[] = {"", "+", "0", "086", "1234", "8a", " 86"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(tl_phone_conf_init(&c, bad[i], err, sizeof err) == TL_ECONFIG, "\"%s\"", bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "phone-country-code"));
    }
    ck_assert_int_eq(tl_phone_conf_init(&c, NULL, err, sizeof err), TL_ECONFIG);
    ck_assert_str_eq(c.country_code, "86");     /* untouched by the failures */
}
END_TEST

/* ---- bad bodies ------------------------------------------------------- */

#define SEG(pre, post) "{\"tenant_id\":\"acme\"," pre "\"speaker\":\"customer\",\"start_ms\":100," \
    "\"end_ms\":200,\"text\":\"t\",\"confidence\":0.5,\"call_started_at\":1700000000000" post "}"
#define OK_IDS "\"call_id\":\"c\",\"segment_id\":\"1\",\"caller_number\":\"13800138000\","

static const tl_adapter_case_t bad_cases[] = {
    {"malformed", "{\"tenant_id\":", 400, "malformed-json", ""},
    {"not an object", "\"x\"", 400, "malformed-json", ""},
    {"invalid utf-8", "{\"text\":\"\xe4\xbd\"}", 400, "invalid-utf8", ""},
    {"duplicate key", "{\"call_id\":\"a\",\"call_id\":\"b\"}", 400, "malformed-json", ""},
    {"missing tenant", "{\"call_id\":\"c\"}", 422, "missing-field", "tenant_id"},
    {"missing call id", SEG("\"segment_id\":\"1\",\"caller_number\":\"13800138000\",", ""),
     422, "missing-field", "call_id"},
    {"call id with colon", SEG("\"call_id\":\"a:b\",\"segment_id\":\"1\",\"caller_number\":\"13800138000\",", ""),
     422, "invalid-field", "call_id"},
    {"call id with newline", SEG("\"call_id\":\"a\\nb\",\"segment_id\":\"1\",\"caller_number\":\"13800138000\",", ""),
     422, "invalid-field", "call_id"},
    {"call id too long", SEG("\"call_id\":\"0123456789012345678901234567890123456789012345678901234567890123x\","
     "\"segment_id\":\"1\",\"caller_number\":\"13800138000\",", ""), 422, "field-too-long", "call_id"},
    {"no segment id", SEG("\"call_id\":\"c\",\"caller_number\":\"13800138000\",", ""),
     422, "missing-field", "segment_id"},
    {"segment id a float", SEG("\"call_id\":\"c\",\"segment_id\":1.5,\"caller_number\":\"13800138000\",", ""),
     422, "invalid-field", "segment_id"},
    {"segment id empty", SEG("\"call_id\":\"c\",\"segment_id\":\"\",\"caller_number\":\"13800138000\",", ""),
     422, "invalid-field", "segment_id"},
    {"segment id negative", SEG("\"call_id\":\"c\",\"segment_id\":-1,\"caller_number\":\"13800138000\",", ""),
     422, "out-of-range", "segment_id"},
    {"seq a string", SEG("\"call_id\":\"c\",\"seq\":\"1\",\"caller_number\":\"13800138000\",", ""),
     422, "invalid-field", "seq"},
    {"seq negative", SEG("\"call_id\":\"c\",\"seq\":-3,\"caller_number\":\"13800138000\",", ""),
     422, "out-of-range", "seq"},
    {"no caller number", SEG("\"call_id\":\"c\",\"segment_id\":\"1\",", ""), 422, "missing-field", "caller_number"},
    {"caller number a number", SEG("\"call_id\":\"c\",\"segment_id\":\"1\",\"caller_number\":13800138000,", ""),
     422, "invalid-field", "caller_number"},
    {"caller number letters", SEG("\"call_id\":\"c\",\"segment_id\":\"1\",\"caller_number\":\"unknown\",", ""),
     422, "invalid-field", "caller_number"},
    {"caller number too short", SEG("\"call_id\":\"c\",\"segment_id\":\"1\",\"caller_number\":\"110\",", ""),
     422, "invalid-field", "caller_number"},
    {"caller number too long", SEG("\"call_id\":\"c\",\"segment_id\":\"1\",\"caller_number\":\"+86 138 0013 8000 1234\",", ""),
     422, "invalid-field", "caller_number"},
    {"caller number over 32 bytes", SEG("\"call_id\":\"c\",\"segment_id\":\"1\",\"caller_number\":"
     "\"+86 - 138 - 0013 - 8000 - - - - - -\",", ""), 422, "field-too-long", "caller_number"},
    {"bad speaker", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"robot\"}", 422, "invalid-field", "speaker"},
    {"missing speaker", "{\"tenant_id\":\"a\"," OK_IDS "\"start_ms\":1}", 422, "missing-field", "speaker"},
    {"start_ms a string", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":\"1\"}",
     422, "invalid-field", "start_ms"},
    {"start_ms negative", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":-1}",
     422, "out-of-range", "start_ms"},
    {"end_ms over a day", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":0,"
     "\"end_ms\":86400001}", 422, "out-of-range", "end_ms"},
    {"end before start", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":500,"
     "\"end_ms\":499}", 422, "out-of-range", "end_ms"},
    {"missing text", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,\"end_ms\":2}",
     422, "missing-field", "text"},
    {"empty text", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,\"end_ms\":2,"
     "\"text\":\"\"}", 422, "invalid-field", "text"},
    {"missing confidence", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,\"end_ms\":2,"
     "\"text\":\"t\"}", 422, "missing-field", "confidence"},
    {"confidence a string", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,\"end_ms\":2,"
     "\"text\":\"t\",\"confidence\":\"high\"}", 422, "invalid-field", "confidence"},
    {"confidence 1.5", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,\"end_ms\":2,"
     "\"text\":\"t\",\"confidence\":1.5}", 422, "out-of-range", "confidence"},
    {"confidence negative", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,\"end_ms\":2,"
     "\"text\":\"t\",\"confidence\":-0.1}", 422, "out-of-range", "confidence"},
    {"missing call_started_at", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,"
     "\"end_ms\":2,\"text\":\"t\",\"confidence\":0.5}", 422, "missing-field", "call_started_at"},
    {"call_started_at in seconds", "{\"tenant_id\":\"a\"," OK_IDS "\"speaker\":\"agent\",\"start_ms\":1,"
     "\"end_ms\":2,\"text\":\"t\",\"confidence\":0.5,\"call_started_at\":1700000000}",
     422, "implausible-time", "call_started_at"},
};

START_TEST(phone_bad_input_gets_precise_problem) {
    const tl_adapter_case_t *c = &bad_cases[_i];
    tl_phone_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    int status = parse(c->body, &out, &ev, &pb);
    tl_phone_out_close(&out);
    tl_adapter_cases_check(c, status, &pb);
}
END_TEST

START_TEST(phone_good_template_is_accepted) {
    /* The bad cases above are this body with one thing wrong. */
    tl_phone_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse(SEG(OK_IDS, ""), &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.occurred_at, 1700000000100LL);
    tl_phone_out_close(&out);
}
END_TEST

Suite *tl_phone_suite(void) {
    Suite *s = suite_create("phone");
    TCase *tc = tcase_create("good");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, phone_segment_becomes_transcript_segment);
    tcase_add_test(tc, phone_seq_and_integer_segment_ids_make_the_same_key);
    tcase_add_test(tc, phone_one_caller_is_one_customer_however_the_number_is_written);
    tcase_add_test(tc, phone_good_template_is_accepted);
    suite_add_tcase(s, tc);
    tc = tcase_create("e164");
    tcase_add_loop_test(tc, phone_numbers_become_e164, 0,
                        TL_ADAPTER_CASES_COUNT(e164_cases));
    tcase_add_test(tc, phone_conf_takes_a_country_code);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, phone_bad_input_gets_precise_problem, 0,
                        TL_ADAPTER_CASES_COUNT(bad_cases));
    suite_add_tcase(s, tc);
    return s;
}
