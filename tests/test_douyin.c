/* test_douyin.c -- adapters/douyin.c: signed webhooks give the exact event,
 * the URL check its challenge, and everything else the exact status,
 * problem type and field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "adapter_cases.h"
#include "douyin.h"
#include "error.h"
#include "suites.h"

#define NOW 1700000000000LL
#define SECRET "tl-douyin-test-secret"
#define OPEN_ID "_000hTVu3KpG6ZqJ0bWn7xCq2sL4mRfYd"
#define CONV_ID "@9VwKz8u0T7xQjR2mL5nP1c791EfoPPyAq3lWqHv4yRlUBdIuVXnZ9gI4tKbS0wXhJ2pOeD8aMfQ1rY6sC3vN7uG=="
#define MSG_ID(last) "@9VwKz8u0T7xQjR2mL5nP1c791EfoPPyAq3lWqHv4yRlUBdIuVXnZ9gI4tKbS0wXhJ2pOeD8aMfQ1rY6sC3vN7u" last "=="

static const tl_adapter_ctx_t ctx = {NOW, "018bcfe5-6800-7000-8000-000000000003", "trace-3", 1 << 20};

static tl_douyin_conf_t conf;

static void setup(void) {
    char err[256];
    ck_assert_int_eq(tl_douyin_conf_init(&conf, "acme", SECRET, err, sizeof err), 0);
}

/* Reads a fixture whole; the caller frees it. */
static char *fixture(const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof path, "douyin/%s", name);
    FILE *f = fopen(tl_test_data(path), "rb");
    ck_assert_msg(f != NULL, "cannot open %s", tl_test_data(path));
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char *s = malloc(*len + 1);
    memcpy(s, buf, *len);
    s[*len] = 0;
    return s;
}

/* Signs body as Douyin does, for the inline bodies below; the fixtures
 * carry signatures computed with sha1sum instead. */
static void sign(const char *secret, const char *body, size_t len, char hex[41]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    EVP_DigestInit_ex(h, EVP_sha1(), NULL);
    EVP_DigestUpdate(h, secret, strlen(secret));
    EVP_DigestUpdate(h, body, len);
    EVP_DigestFinal_ex(h, md, &n);
    EVP_MD_CTX_free(h);
    for (unsigned i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int parse_signed(const char *body, tl_douyin_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    char sig[41];
    sign(SECRET, body, strlen(body), sig);
    memset(out, 0, sizeof *out);
    return tl_douyin_parse(&conf, &ctx, (tl_str_t){sig, 40}, body, strlen(body), out, ev, pb);
}

static int parse_fixture(const char *name, const char *sig, tl_douyin_out_t *out, tl_event_t *ev,
                         tl_problem_t *pb) {
    size_t len;
    char *body = fixture(name, &len);
    memset(out, 0, sizeof *out);
    int rc = tl_douyin_parse(&conf, &ctx, (tl_str_t){sig, strlen(sig)}, body, len, out, ev, pb);
    free(body);     /* the event points into out's tree, not into body */
    return rc;
}

START_TEST(douyin_text_becomes_message_received) {
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_fixture("text.json", "75f45d292e9d80bfce71418b411f3bf92590d32c",
                                   &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.kind, TL_EV_MESSAGE_RECEIVED);
    ck_assert_int_eq(ev.platform, TL_PLATFORM_DOUYIN);
    ck_assert(tl_adapter_cases_streq(ev.tenant_id, "acme"));
    ck_assert(tl_adapter_cases_streq(ev.platform_user_id, OPEN_ID));
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "douyin:" MSG_ID("H")));
    ck_assert(tl_adapter_cases_streq(ev.event_id, ctx.event_id));
    ck_assert(tl_adapter_cases_streq(ev.trace_id, "trace-3"));
    ck_assert_int_eq(ev.occurred_at, 1699999999000LL);
    ck_assert_int_eq(ev.received_at, NOW);
    ck_assert(tl_adapter_cases_streq(ev.u.message.text, "你好，我昨天下的单 DY-20231113-778 还没发货"));
    ck_assert_uint_eq(ev.u.message.attachments.n, 0);
    ck_assert_ptr_null(ev.u.message.entry_point.ptr);
    ck_assert_ptr_null(ev.u.message.device_id.ptr);
    char want[40];
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_DOUYIN, TL_STR(OPEN_ID), want);
    ck_assert(tl_adapter_cases_streq(ev.customer_id, want));
    tl_douyin_out_close(&out);
}
END_TEST

START_TEST(douyin_image_becomes_attachment_naming_the_message) {
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_fixture("image.json", "e2e087b977e676afade020b45a6a6b057d74228d",
                                   &out, &ev, &pb), 0);
    ck_assert_int_eq(ev.kind, TL_EV_MESSAGE_RECEIVED);
    ck_assert(tl_adapter_cases_streq(ev.u.message.text, ""));
    ck_assert_uint_eq(ev.u.message.attachments.n, 1);
    const tl_attachment_t *a = &ev.u.message.attachments.v[0];
    ck_assert(tl_adapter_cases_streq(a->url, "douyin-im:" CONV_ID ":" MSG_ID("J")));
    ck_assert(tl_adapter_cases_streq(a->mime, "image/*"));
    ck_assert_int_eq(a->bytes, 0);
    ck_assert(!a->has_width && !a->has_height);
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "douyin:" MSG_ID("J")));
    ck_assert_int_eq(ev.occurred_at, 1699999999500LL);
    tl_douyin_out_close(&out);
}
END_TEST

START_TEST(douyin_content_as_string_and_seconds_are_read) {
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_fixture("user_local_image_string_content.json",
                                   "59e60df8f0a334607364ee056b8beeac58fe7960", &out, &ev, &pb), 0);
    ck_assert_uint_eq(ev.u.message.attachments.n, 1);
    ck_assert(tl_adapter_cases_streq(ev.u.message.attachments.v[0].url, "douyin-im:" CONV_ID ":" MSG_ID("K")));
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "douyin:" MSG_ID("K")));
    ck_assert_int_eq(ev.occurred_at, 1699999998000LL);
    tl_douyin_out_close(&out);
}
END_TEST

START_TEST(douyin_verify_webhook_answers_the_challenge) {
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_fixture("verify_webhook.json", "7d1d044bbfdf481c6efc38499c0faa7158673cfd",
                                   &out, &ev, &pb), TL_DOUYIN_CHALLENGE);
    ck_assert_uint_eq(out.reply_len, strlen("{\"challenge\":12345}"));
    ck_assert(memcmp(out.reply, "{\"challenge\":12345}", out.reply_len) == 0);
    tl_douyin_out_close(&out);

    /* A string challenge goes back as the same string. */
    ck_assert_int_eq(parse_signed("{\"event\":\"verify_webhook\",\"client_key\":\"\","
                                  "\"content\":\"{\\\"challenge\\\":\\\"x-42\\\"}\"}",
                                  &out, &ev, &pb), TL_DOUYIN_CHALLENGE);
    ck_assert_uint_eq(out.reply_len, strlen("{\"challenge\":\"x-42\"}"));
    ck_assert(memcmp(out.reply, "{\"challenge\":\"x-42\"}", out.reply_len) == 0);
    tl_douyin_out_close(&out);
}
END_TEST

START_TEST(douyin_upper_case_signature_is_the_same) {
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_fixture("text.json", "75F45D292E9D80BFCE71418B411F3BF92590D32C",
                                   &out, &ev, &pb), 0);
    tl_douyin_out_close(&out);
}
END_TEST

START_TEST(douyin_customer_id_is_per_tenant_and_open_id) {
    tl_douyin_out_t o1, o2, o3;
    tl_event_t e1, e2, e3;
    tl_problem_t pb;
    tl_douyin_conf_t other;
    char err[128];
    const char *a = "{\"event\":\"im_receive_msg\",\"from_user_id\":\"u-1\",\"content\":{"
                    "\"server_message_id\":\"m-1\",\"message_type\":\"text\",\"text\":\"a\","
                    "\"create_time\":1700000000000}}";
    const char *b = "{\"event\":\"im_receive_msg\",\"from_user_id\":\"u-1\",\"content\":{"
                    "\"server_message_id\":\"m-2\",\"message_type\":\"text\",\"text\":\"b\","
                    "\"create_time\":1700000000000}}";
    ck_assert_int_eq(parse_signed(a, &o1, &e1, &pb), 0);
    ck_assert_int_eq(parse_signed(b, &o2, &e2, &pb), 0);
    ck_assert_int_eq(tl_douyin_conf_init(&other, "globex", SECRET, err, sizeof err), 0);
    char sig[41];
    sign(SECRET, a, strlen(a), sig);
    memset(&o3, 0, sizeof o3);
    ck_assert_int_eq(tl_douyin_parse(&other, &ctx, (tl_str_t){sig, 40}, a, strlen(a), &o3, &e3, &pb), 0);
    ck_assert_str_eq(o1.base.customer_id, o2.base.customer_id);
    ck_assert_str_ne(o1.base.customer_id, o3.base.customer_id);
    ck_assert(tl_adapter_cases_streq(e3.tenant_id, "globex"));
    tl_douyin_out_close(&o1);
    tl_douyin_out_close(&o2);
    tl_douyin_out_close(&o3);
}
END_TEST

/* ---- signatures ------------------------------------------------------- */

typedef struct sig_case {
    const char *name;
    const char *sig;            /* NULL: header absent */
    const char *type;
} sig_case_t;

static const sig_case_t sig_cases[] = {
    {"absent", NULL, "missing-signature"},
    {"empty", "", "missing-signature"},
    {"one digit off", "75f45d292e9d80bfce71418b411f3bf92590d32d", "bad-signature"},
    {"too short", "75f45d292e9d80bfce71418b411f3bf92590d32", "bad-signature"},
    {"too long", "75f45d292e9d80bfce71418b411f3bf92590d32c0", "bad-signature"},
    {"with prefix", "sha1=75f45d292e9d80bfce71418b411f3bf92590d32c", "bad-signature"},
    {"another secret's", "RESIGN:other-secret", "bad-signature"},
    {"HMAC-SHA256 instead", "HMAC:", "bad-signature"},
    {"HMAC-SHA1 instead", "HMAC1:", "bad-signature"},
    {"of the body without the secret", "RESIGN:", "bad-signature"},
};

START_TEST(douyin_signature_is_required_and_checked) {
    const sig_case_t *c = &sig_cases[_i];
    size_t len;
    char *body = fixture("text.json", &len);
    char resigned[2 * EVP_MAX_MD_SIZE + 1];
    tl_str_t sig = TL_STR_NULL;
    if (c->sig && strncmp(c->sig, "RESIGN:", 7) == 0) {
        sign(c->sig + 7, body, len, resigned);
        sig = (tl_str_t){resigned, 40};
    } else if (c->sig && strncmp(c->sig, "HMAC", 4) == 0) {
        /* What a reader of "signature" might guess: a keyed MAC. */
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        HMAC(c->sig[4] == '1' ? EVP_sha1() : EVP_sha256(), SECRET, (int)strlen(SECRET),
             (const unsigned char *)body, len, md, &n);
        for (unsigned i = 0; i < n; i++) snprintf(resigned + 2 * i, 3, "%02x", md[i]);
        sig = (tl_str_t){resigned, 2 * (size_t)n};
    } else if (c->sig) {
        sig = (tl_str_t){c->sig, strlen(c->sig)};
    }
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    memset(&out, 0, sizeof out);
    int status = tl_douyin_parse(&conf, &ctx, sig, body, len, &out, &ev, &pb);
    tl_douyin_out_close(&out);
    free(body);
    ck_assert_msg(status == 403, "%s: status %d, want 403 (%s)", c->name, status, pb.detail);
    ck_assert_msg(strcmp(pb.type, c->type) == 0, "%s: type %s, want %s", c->name, pb.type, c->type);
    ck_assert_str_eq(pb.field, "X-Douyin-Signature");
}
END_TEST

START_TEST(douyin_signature_covers_every_byte) {
    static const tl_str_t sig = TL_STR("75f45d292e9d80bfce71418b411f3bf92590d32c");
    size_t len;
    char *body = fixture("text.json", &len);
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    /* One changed byte in the text: still valid JSON, no longer signed. */
    char *p = strstr(body, "778");
    p[2] = '9';
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_douyin_parse(&conf, &ctx, sig, body, len, &out, &ev, &pb), 403);
    ck_assert_str_eq(pb.type, "bad-signature");
    tl_douyin_out_close(&out);
    p[2] = '8';
    /* A trailing newline, as a careless proxy might add. */
    char *longer = malloc(len + 1);
    memcpy(longer, body, len);
    longer[len] = '\n';
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_douyin_parse(&conf, &ctx, sig, longer, len + 1, &out, &ev, &pb), 403);
    tl_douyin_out_close(&out);
    /* And the original bytes pass. */
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_douyin_parse(&conf, &ctx, sig, body, len, &out, &ev, &pb), 0);
    tl_douyin_out_close(&out);
    free(longer);
    free(body);
}
END_TEST

START_TEST(douyin_signature_is_checked_before_json) {
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_douyin_parse(&conf, &ctx, TL_STR_NULL, "{not json", 9, &out, &ev, &pb), 403);
    ck_assert_str_eq(pb.type, "missing-signature");
    ck_assert_ptr_null(out.base.root);
    tl_douyin_out_close(&out);
}
END_TEST

/* ---- bad bodies (correctly signed) ------------------------------------ */

#define HEAD "{\"event\":\"im_receive_msg\",\"from_user_id\":\"u-1\","
#define MSG(fields) HEAD "\"content\":{\"server_message_id\":\"m-1\"," fields "}}"
#define TEXT_AT(t) MSG("\"message_type\":\"text\",\"text\":\"hi\",\"create_time\":" t)

static const tl_adapter_case_t bad_cases[] = {
    {"malformed", "{\"event\":", 400, "malformed-json", ""},
    {"not an object", "[1]", 400, "malformed-json", ""},
    {"invalid utf-8", "{\"event\":\"a\xc3\"}", 400, "invalid-utf8", ""},
    {"duplicate key", "{\"event\":\"im_receive_msg\",\"event\":\"x\"}", 400, "malformed-json", ""},
    {"no event", "{\"from_user_id\":\"u\"}", 422, "missing-field", "event"},
    {"event not a string", "{\"event\":7}", 422, "invalid-field", "event"},
    {"im_send_msg", "{\"event\":\"im_send_msg\",\"from_user_id\":\"u\",\"content\":{}}",
     422, "unsupported-type", "event"},
    {"group message", "{\"event\":\"im_group_receive_msg\"}", 422, "unsupported-type", "event"},
    {"no sender", "{\"event\":\"im_receive_msg\",\"content\":{}}", 422, "missing-field", "from_user_id"},
    {"sender with space", "{\"event\":\"im_receive_msg\",\"from_user_id\":\"u 1\",\"content\":{}}",
     422, "invalid-field", "from_user_id"},
    {"no content", HEAD "\"log_id\":\"x\"}", 422, "missing-field", "content"},
    {"content a number", HEAD "\"content\":5}", 422, "invalid-field", "content"},
    {"content string not JSON", HEAD "\"content\":\"{oops\"}", 422, "invalid-field", "content"},
    {"content string an array", HEAD "\"content\":\"[1]\"}", 422, "invalid-field", "content"},
    {"no message id", HEAD "\"content\":{\"message_type\":\"text\",\"text\":\"x\","
     "\"create_time\":1700000000000}}", 422, "missing-field", "content.server_message_id"},
    {"message id with space", HEAD "\"content\":{\"server_message_id\":\"m 1\"}}",
     422, "invalid-field", "content.server_message_id"},
    {"message id too long", HEAD "\"content\":{\"server_message_id\":\""
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "01234567890123456789012345678901234567890123456789\"}}",
     422, "field-too-long", "content.server_message_id"},
    {"group conversation", MSG("\"conversation_type\":2,\"message_type\":\"text\",\"text\":\"x\","
     "\"create_time\":1700000000000"), 422, "unsupported-type", "content.conversation_type"},
    {"conversation_type a string", MSG("\"conversation_type\":\"1\""),
     422, "invalid-field", "content.conversation_type"},
    {"no create_time", MSG("\"message_type\":\"text\",\"text\":\"x\""),
     422, "missing-field", "content.create_time"},
    {"create_time a string", TEXT_AT("\"1700000000000\""), 422, "invalid-field", "content.create_time"},
    {"create_time negative", TEXT_AT("-1"), 422, "out-of-range", "content.create_time"},
    {"create_time 2001 in seconds", TEXT_AT("1000000000"), 422, "implausible-time", "content.create_time"},
    {"create_time 2001 in ms", TEXT_AT("1000000000000"), 422, "implausible-time", "content.create_time"},
    {"create_time in microseconds", TEXT_AT("1700000000000000"), 422, "implausible-time",
     "content.create_time"},
    {"no message_type", MSG("\"create_time\":1700000000000"), 422, "missing-field", "content.message_type"},
    {"video", MSG("\"message_type\":\"video\",\"create_time\":1700000000000"),
     422, "unsupported-type", "content.message_type"},
    {"emoji", MSG("\"message_type\":\"emoji\",\"create_time\":1700000000000"),
     422, "unsupported-type", "content.message_type"},
    {"text without text", MSG("\"message_type\":\"text\",\"create_time\":1700000000000"),
     422, "missing-field", "content.text"},
    {"empty text", MSG("\"message_type\":\"text\",\"text\":\"\",\"create_time\":1700000000000"),
     422, "invalid-field", "content.text"},
    {"text a number", MSG("\"message_type\":\"text\",\"text\":1,\"create_time\":1700000000000"),
     422, "invalid-field", "content.text"},
    {"image without conversation", MSG("\"message_type\":\"image\",\"create_time\":1700000000000"),
     422, "missing-field", "content.conversation_short_id"},
    {"verify without challenge", "{\"event\":\"verify_webhook\",\"content\":{}}",
     422, "missing-field", "content.challenge"},
    {"verify challenge an object", "{\"event\":\"verify_webhook\",\"content\":{\"challenge\":{}}}",
     422, "invalid-field", "content.challenge"},
    {"verify without content", "{\"event\":\"verify_webhook\"}", 422, "missing-field", "content"},
};

START_TEST(douyin_bad_input_gets_precise_problem) {
    const tl_adapter_case_t *c = &bad_cases[_i];
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    int status = parse_signed(c->body, &out, &ev, &pb);
    tl_douyin_out_close(&out);
    tl_adapter_cases_check(c, status, &pb);
}
END_TEST

START_TEST(douyin_text_over_limit_is_refused) {
    static char body[TL_DOUYIN_TEXT_MAX + 512];
    int n = snprintf(body, sizeof body, MSG("\"message_type\":\"text\",\"create_time\":1700000000000,"
                                            "\"text\":\""));
    n -= 2;     /* drop the closing "}}" to append the text */
    memset(body + n, 'x', TL_DOUYIN_TEXT_MAX + 1);
    strcpy(body + n + TL_DOUYIN_TEXT_MAX + 1, "\"}}");
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_signed(body, &out, &ev, &pb), 422);
    ck_assert_str_eq(pb.type, "field-too-long");
    ck_assert_str_eq(pb.field, "content.text");
    tl_douyin_out_close(&out);
}
END_TEST

START_TEST(douyin_body_over_limit_is_refused_unread) {
    static char body[TL_DOUYIN_BODY_MAX + 2];
    memset(body, ' ', sizeof body - 1);
    body[sizeof body - 1] = 0;
    tl_douyin_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_douyin_parse(&conf, &ctx, TL_STR_NULL, body, strlen(body), &out, &ev, &pb), 413);
    ck_assert_str_eq(pb.type, "body-too-large");
    tl_douyin_out_close(&out);
    /* The gateway's own limit applies when it is lower. */
    tl_adapter_ctx_t small = ctx;
    small.max_body = 100;
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_douyin_parse(&conf, &small, TL_STR_NULL, body, 101, &out, &ev, &pb), 413);
    tl_douyin_out_close(&out);
}
END_TEST

START_TEST(douyin_conf_refuses_missing_settings) {
    tl_douyin_conf_t c;
    char err[256];
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(tl_douyin_conf_init(&c, "acme", "", err, sizeof err), TL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "douyin-secret"));
    ck_assert_int_eq(tl_douyin_conf_init(&c, "acme", NULL, err, sizeof err), TL_ECONFIG);
    ck_assert_int_eq(tl_douyin_conf_init(&c, "", SECRET, err, sizeof err), TL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "douyin-tenant"));
    ck_assert_ptr_null(c.secret);
}
END_TEST

Suite *tl_douyin_suite(void) {
    Suite *s = suite_create("douyin");
    TCase *tc = tcase_create("good");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, douyin_text_becomes_message_received);
    tcase_add_test(tc, douyin_image_becomes_attachment_naming_the_message);
    tcase_add_test(tc, douyin_content_as_string_and_seconds_are_read);
    tcase_add_test(tc, douyin_verify_webhook_answers_the_challenge);
    tcase_add_test(tc, douyin_upper_case_signature_is_the_same);
    tcase_add_test(tc, douyin_customer_id_is_per_tenant_and_open_id);
    suite_add_tcase(s, tc);
    tc = tcase_create("signature");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, douyin_signature_is_required_and_checked, 0,
                        TL_ADAPTER_CASES_COUNT(sig_cases));
    tcase_add_test(tc, douyin_signature_covers_every_byte);
    tcase_add_test(tc, douyin_signature_is_checked_before_json);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, douyin_bad_input_gets_precise_problem, 0,
                        TL_ADAPTER_CASES_COUNT(bad_cases));
    tcase_add_test(tc, douyin_text_over_limit_is_refused);
    tcase_add_test(tc, douyin_body_over_limit_is_refused_unread);
    tcase_add_test(tc, douyin_conf_refuses_missing_settings);
    suite_add_tcase(s, tc);
    return s;
}
