/* test_wechat.c -- adapters/wechat.c: every WeChat message type gives the
 * exact event; signatures, encryption and hostile XML get the exact status,
 * problem type and field.  Encrypted bodies are made here with OpenSSL the
 * way WeChat makes them, and one comes from Tencent's own sample. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "adapter_cases.h"
#include "error.h"
#include "suites.h"
#include "wechat.h"

#define NOW 1700000000000LL
#define TS "1700000000"
#define NONCE "415311942"
#define TOKEN "threadline"
#define AES_KEY "kWxPWkWpA1v7bH9QzNqT3sY2dRfL8gJcE4mUoV6iX0a"
#define APPID "wx3f1e2d4c5b6a7980"
#define OPENID "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

static const tl_adapter_ctx_t ctx = {NOW, "018bcfe5-6800-7000-8000-000000000001", "trace-1", 1 << 20};

static tl_wechat_conf_t plain_conf, safe_conf;

static void setup(void) {
    char err[256];
    ck_assert_int_eq(tl_wechat_conf_init(&plain_conf, "acme", TOKEN, NULL, NULL, err, sizeof err), 0);
    ck_assert_int_eq(tl_wechat_conf_init(&safe_conf, "acme", TOKEN, AES_KEY, APPID, err, sizeof err), 0);
}

static void teardown(void) {
    tl_wechat_conf_close(&plain_conf);
    tl_wechat_conf_close(&safe_conf);
}

/* Reads tests/data/wechat/<name>; NUL-terminated, caller frees. */
static char *fixture(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "wechat/%s", name);
    FILE *fp = fopen(tl_test_data(rel), "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", tl_test_data(rel));
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *s = malloc((size_t)n + 1);
    ck_assert(s && fread(s, 1, (size_t)n, fp) == (size_t)n);
    s[n] = 0;
    fclose(fp);
    return s;
}

/* WeChat's signature, written out independently of the adapter's. */
static void sign(const char **parts, int n, char hex[41]) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(parts[j], parts[i]) < 0) {
                const char *t = parts[i];
                parts[i] = parts[j];
                parts[j] = t;
            }
    char cat[8192] = "";
    for (int i = 0; i < n; i++) strcat(cat, parts[i]);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, strlen(cat), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) sprintf(hex + 2 * i, "%02x", md[i]);
}

/* A plain-mode query signed for TOKEN. */
typedef struct signed_query {
    tl_wechat_query_t q;
    char sig[41];
    char msg_sig[41];
} signed_query_t;

static void plain_query(signed_query_t *sq, const char *ts, const char *nonce) {
    const char *parts[] = {TOKEN, ts, nonce};
    sign(parts, 3, sq->sig);
    sq->q = (tl_wechat_query_t){.signature = sq->sig, .timestamp = ts, .nonce = nonce, .openid = OPENID};
}

/* Ways to spoil a ciphertext that is otherwise well made. */
enum { SPOIL_NONE, SPOIL_PAD_LENGTH, SPOIL_PAD_BYTE, SPOIL_MSG_LEN };

/* Encrypts xml exactly as WeChat does: random(16) + msg_len (4, big-endian)
 * + msg + appid, PKCS#7-padded to 32 bytes, AES-256-CBC with IV =
 * key[0..16), then Base64.  Caller frees. */
static char *wx_encrypt(const char *xml, const char *aes_key, const char *appid, int spoil) {
    unsigned char key[33 + 3];
    char key64[45];
    snprintf(key64, sizeof key64, "%s=", aes_key);
    ck_assert_int_eq(EVP_DecodeBlock(key, (const unsigned char *)key64, 44), 33);
    size_t mlen = strlen(xml), alen = strlen(appid), n = 20 + mlen + alen;
    size_t pad = 32 - n % 32, said = spoil == SPOIL_MSG_LEN ? mlen + alen + 1 : mlen;
    unsigned char *pt = malloc(n + pad), *ct = malloc(n + pad + 32);
    memcpy(pt, "0123456789abcdef", 16);
    pt[16] = (unsigned char)(said >> 24);
    pt[17] = (unsigned char)(said >> 16);
    pt[18] = (unsigned char)(said >> 8);
    pt[19] = (unsigned char)said;
    memcpy(pt + 20, xml, mlen);
    memcpy(pt + 20 + mlen, appid, alen);
    memset(pt + n, spoil == SPOIL_PAD_LENGTH ? 33 : (int)pad, pad);
    if (spoil == SPOIL_PAD_BYTE) {
        ck_assert_uint_gt(pad, 1);
        pt[n] ^= 1;
    }
    int l1 = 0, l2 = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    ck_assert(EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, key, key));
    EVP_CIPHER_CTX_set_padding(c, 0);
    ck_assert(EVP_EncryptUpdate(c, ct, &l1, pt, (int)(n + pad)));
    ck_assert(EVP_EncryptFinal_ex(c, ct + l1, &l2));
    EVP_CIPHER_CTX_free(c);
    char *b64 = malloc(((size_t)(l1 + l2) + 2) / 3 * 4 + 1);
    EVP_EncodeBlock((unsigned char *)b64, ct, l1 + l2);
    free(pt);
    free(ct);
    return b64;
}

/* The POST body of safe mode and its signed query. */
static char *safe_body(signed_query_t *sq, const char *encrypt) {
    size_t n = strlen(encrypt) + 128;
    char *body = malloc(n);
    snprintf(body, n, "<xml><ToUserName><![CDATA[gh_3f1e2d4c5b6a]]></ToUserName>"
                      "<Encrypt><![CDATA[%s]]></Encrypt></xml>", encrypt);
    const char *parts[] = {TOKEN, TS, NONCE, encrypt};
    sign(parts, 4, sq->msg_sig);
    plain_query(sq, TS, NONCE);
    sq->q.encrypt_type = "aes";
    sq->q.msg_signature = sq->msg_sig;
    return body;
}

static int parse_plain(const char *body, tl_wechat_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    signed_query_t sq;
    plain_query(&sq, TS, NONCE);
    memset(out, 0, sizeof *out);
    return tl_wechat_parse(&plain_conf, &ctx, &sq.q, body, strlen(body), out, ev, pb);
}

/* ---- every message type ------------------------------------------------ */

typedef struct good_case {
    const char *fixture;
    tl_event_kind_t kind;
    const char *key;            /* idempotency key */
    const char *text;           /* MessageReceived */
    const char *url, *mime;     /* its one attachment; NULL: none */
    const char *action;         /* BehaviorTracked */
} good_case_t;

static const good_case_t good_cases[] = {
    {"text.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234567",
     "我的订单 TL-20231114-001 什么时候发货？", NULL, NULL, NULL},
    {"image.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234568", "",
     "http://mmbiz.qpic.cn/mmbiz_jpg/Xq1cYhZfP0aBc/0", "image/jpeg", NULL},
    {"voice.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234569", "我想把衬衫换成L码",
     "wechat-media:VxM2mZ8bQeRk1tYpLcN0aHf3Wg5sDjU7oIv9ErTnBqK", "audio/amr", NULL},
    {"voice_unrecognised.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234570", "",
     "wechat-media:VxM2mZ8bQeRk1tYpLcN0aHf3Wg5sDjU7oIv9ErTnBqL", "audio/speex", NULL},
    {"video.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234571", "",
     "wechat-media:Vd0gP3kZsW8uQ1mB6yTnJ4cHxE2aRfL9oK5iU7vNtMe", "video/mp4", NULL},
    {"shortvideo.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234572", "",
     "wechat-media:Sv1aB2cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4a", "video/mp4", NULL},
    {"location.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234573",
     "📍 广州市天河区天河路385号 (23.134521,113.358803)", NULL, NULL, NULL},
    {"link.xml", TL_EV_MESSAGE_RECEIVED, "wechat:24329877421234574",
     "秋季新款衬衫\n纯棉 · 三色可选\nhttps://shop.example.com/p/SKU-1?from=wechat&sku=1", NULL, NULL,
     NULL},
    {"event_subscribe.xml", TL_EV_BEHAVIOR_TRACKED, "wechat:" OPENID ":1699999999:subscribe",
     NULL, NULL, NULL, "subscribe"},
    {"event_unsubscribe.xml", TL_EV_BEHAVIOR_TRACKED, "wechat:" OPENID ":1699999999:unsubscribe",
     NULL, NULL, NULL, "unsubscribe"},
    {"event_click.xml", TL_EV_BEHAVIOR_TRACKED, "wechat:" OPENID ":1699999999:click",
     NULL, NULL, NULL, "click:V1001_ORDER_STATUS"},
};

static void check_good(const good_case_t *c, const tl_event_t *ev) {
    char want_customer[40];
    tl_adapter_customer_id(TL_STR("acme"), TL_PLATFORM_WECHAT, TL_STR(OPENID), want_customer);
    ck_assert_int_eq(ev->kind, c->kind);
    ck_assert_int_eq(ev->platform, TL_PLATFORM_WECHAT);
    ck_assert(tl_adapter_cases_streq(ev->tenant_id, "acme"));
    ck_assert(tl_adapter_cases_streq(ev->platform_user_id, OPENID));
    ck_assert(tl_adapter_cases_streq(ev->customer_id, want_customer));
    ck_assert_msg(tl_adapter_cases_streq(ev->idempotency_key, c->key), "%s: key %.*s", c->fixture,
                  (int)ev->idempotency_key.len, ev->idempotency_key.ptr);
    ck_assert(tl_adapter_cases_streq(ev->event_id, ctx.event_id));
    ck_assert(tl_adapter_cases_streq(ev->trace_id, "trace-1"));
    ck_assert_int_eq(ev->occurred_at, 1699999999000LL);
    ck_assert_int_eq(ev->received_at, NOW);
    if (c->kind == TL_EV_BEHAVIOR_TRACKED) {
        ck_assert(tl_adapter_cases_streq(ev->u.behavior.page, "wechat-oa"));
        ck_assert_msg(tl_adapter_cases_streq(ev->u.behavior.action, c->action), "%s: action %.*s", c->fixture,
                      (int)ev->u.behavior.action.len, ev->u.behavior.action.ptr);
        ck_assert_ptr_null(ev->u.behavior.device_id.ptr);
        return;
    }
    const tl_message_received_t *m = &ev->u.message;
    ck_assert_msg(tl_adapter_cases_streq(m->text, c->text), "%s: text \"%.*s\"", c->fixture, (int)m->text.len,
                  m->text.ptr);
    ck_assert_ptr_null(m->entry_point.ptr);
    ck_assert_ptr_null(m->device_id.ptr);
    ck_assert_uint_eq(m->attachments.n, c->url ? 1 : 0);
    if (c->url) {
        const tl_attachment_t *a = &m->attachments.v[0];
        ck_assert_msg(tl_adapter_cases_streq(a->url, c->url), "%s: url %.*s", c->fixture, (int)a->url.len, a->url.ptr);
        ck_assert(tl_adapter_cases_streq(a->mime, c->mime));
        ck_assert_int_eq(a->bytes, 0);
        ck_assert(!a->has_width && !a->has_height);
    }
}

START_TEST(wechat_message_type_becomes_exact_event) {
    const good_case_t *c = &good_cases[_i];
    tl_wechat_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    char *body = fixture(c->fixture);
    int status = parse_plain(body, &out, &ev, &pb);
    ck_assert_msg(status == 0, "%s: %d %s (%s)", c->fixture, status, pb.detail, pb.field);
    check_good(c, &ev);
    tl_wechat_out_close(&out);
    free(body);
}
END_TEST

START_TEST(wechat_encrypted_message_gives_same_event_as_plain) {
    const good_case_t *c = &good_cases[_i];
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    signed_query_t sq;
    char *xml = fixture(c->fixture);
    char *enc = wx_encrypt(xml, AES_KEY, APPID, SPOIL_NONE);
    char *body = safe_body(&sq, enc);
    int status = tl_wechat_parse(&safe_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb);
    ck_assert_msg(status == 0, "%s: %d %s (%s)", c->fixture, status, pb.detail, pb.field);
    check_good(c, &ev);
    tl_wechat_out_close(&out);
    free(body);
    free(enc);
    free(xml);
}
END_TEST

START_TEST(wechat_resent_message_keeps_idempotency_key_and_customer) {
    /* WeChat resends with a fresh timestamp and nonce; the gateway mints a
     * fresh event id.  Key and customer must not move. */
    static const tl_adapter_ctx_t later = {NOW + 5000, "018bcfe5-6800-7000-8000-000000000002",
                                           "trace-2", 1 << 20};
    tl_wechat_out_t o1 = {0}, o2 = {0};
    tl_event_t e1, e2;
    tl_problem_t pb;
    signed_query_t s1, s2;
    char *body = fixture("text.xml");
    plain_query(&s1, TS, NONCE);
    plain_query(&s2, "1700000005", "1938274650");
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &ctx, &s1.q, body, strlen(body), &o1, &e1, &pb), 0);
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &later, &s2.q, body, strlen(body), &o2, &e2, &pb), 0);
    ck_assert(tl_adapter_cases_streq(e1.idempotency_key, "wechat:24329877421234567"));
    ck_assert(tl_adapter_cases_streq(e2.idempotency_key, "wechat:24329877421234567"));
    ck_assert_str_eq(o1.base.customer_id, o2.base.customer_id);
    ck_assert(!tl_adapter_cases_streq(e1.event_id, "018bcfe5-6800-7000-8000-000000000002"));
    ck_assert(tl_adapter_cases_streq(e2.event_id, "018bcfe5-6800-7000-8000-000000000002"));
    tl_wechat_out_close(&o1);
    tl_wechat_out_close(&o2);
    free(body);
}
END_TEST

START_TEST(wechat_events_without_msgid_are_keyed_by_user_time_and_event) {
    tl_wechat_out_t o1, o2, o3;
    tl_event_t e1, e2, e3;
    tl_problem_t pb;
    const char *sub = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oA-b_c</FromUserName>"
                      "<CreateTime>1699999990</CreateTime><MsgType>event</MsgType>"
                      "<Event>subscribe</Event><EventKey>qrscene_42</EventKey></xml>";
    const char *click = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oA-b_c</FromUserName>"
                        "<CreateTime>1699999990</CreateTime><MsgType>event</MsgType>"
                        "<Event>CLICK</Event><EventKey>K</EventKey></xml>";
    const char *with_id = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oA-b_c</FromUserName>"
                          "<CreateTime>1699999990</CreateTime><MsgType>event</MsgType>"
                          "<Event>unsubscribe</Event><MsgId>77</MsgId></xml>";
    ck_assert_int_eq(parse_plain(sub, &o1, &e1, &pb), 0);
    ck_assert_int_eq(parse_plain(click, &o2, &e2, &pb), 0);
    ck_assert_int_eq(parse_plain(with_id, &o3, &e3, &pb), 0);
    ck_assert(tl_adapter_cases_streq(e1.idempotency_key, "wechat:oA-b_c:1699999990:subscribe"));
    ck_assert(tl_adapter_cases_streq(e1.u.behavior.action, "subscribe"));
    ck_assert(tl_adapter_cases_streq(e2.idempotency_key, "wechat:oA-b_c:1699999990:click"));
    ck_assert(tl_adapter_cases_streq(e3.idempotency_key, "wechat:77"));
    tl_wechat_out_close(&o1);
    tl_wechat_out_close(&o2);
    tl_wechat_out_close(&o3);
}
END_TEST

START_TEST(wechat_location_without_label_and_link_without_description) {
    tl_wechat_out_t o1, o2;
    tl_event_t e1, e2;
    tl_problem_t pb;
    const char *loc = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oA</FromUserName>"
                      "<CreateTime>1699999990</CreateTime><MsgType>location</MsgType>"
                      "<Location_X>-33.8688</Location_X><Location_Y>151.2093</Location_Y>"
                      "<Label></Label><MsgId>5</MsgId></xml>";
    const char *link = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oA</FromUserName>"
                       "<CreateTime>1699999990</CreateTime><MsgType>link</MsgType>"
                       "<Title>T &amp; C</Title><Url>https://x.example/t?a=1&amp;b=2</Url>"
                       "<MsgId>6</MsgId></xml>";
    ck_assert_int_eq(parse_plain(loc, &o1, &e1, &pb), 0);
    ck_assert_int_eq(parse_plain(link, &o2, &e2, &pb), 0);
    ck_assert(tl_adapter_cases_streq(e1.u.message.text, "📍 (-33.8688,151.2093)"));
    ck_assert(tl_adapter_cases_streq(e2.u.message.text, "T & C\n\nhttps://x.example/t?a=1&b=2"));
    tl_wechat_out_close(&o1);
    tl_wechat_out_close(&o2);
}
END_TEST

START_TEST(wechat_identifiers_are_trimmed_free_text_is_not) {
    tl_wechat_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    const char *body = "<xml>\n <ToUserName> gh_1 </ToUserName>\n"
                       " <FromUserName>\n  <![CDATA[oA]]>\n </FromUserName>\n"
                       " <CreateTime> 1699999990 </CreateTime>\n"
                       " <MsgType>  <![CDATA[text]]> </MsgType>\n"
                       " <Content>  hi <![CDATA[&]]> bye  </Content>\n"
                       " <MsgId>\t9\t</MsgId>\n</xml>\n";
    int status = parse_plain(body, &out, &ev, &pb);
    ck_assert_msg(status == 0, "%d %s (%s)", status, pb.detail, pb.field);
    ck_assert(tl_adapter_cases_streq(ev.platform_user_id, "oA"));
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "wechat:9"));
    ck_assert(tl_adapter_cases_streq(ev.u.message.text, "  hi & bye  "));
    ck_assert_int_eq(ev.occurred_at, 1699999990000LL);
    tl_wechat_out_close(&out);
}
END_TEST

/* ---- signatures and URL verification ----------------------------------- */

START_TEST(wechat_signature_matches_known_value) {
    tl_problem_t pb;
    /* sha1("1700000000" "415311942" "threadline"), computed elsewhere. */
    ck_assert_int_eq(tl_wechat_verify(&plain_conf, "fcec52be8e8e8a90edf0c91824f7b790dd02ba41", TS,
                                      NONCE, &pb), 0);
    ck_assert_int_eq(tl_wechat_verify(&plain_conf, "fcec52be8e8e8a90edf0c91824f7b790dd02ba40", TS,
                                      NONCE, &pb), 403);
    ck_assert_str_eq(pb.type, "bad-signature");
    ck_assert_str_eq(pb.field, "signature");
}
END_TEST

START_TEST(wechat_url_verification_echoes_echostr) {
    signed_query_t sq;
    tl_problem_t pb;
    tl_str_t echo = TL_STR_NULL;
    plain_query(&sq, "1409659813", "1372623149");
    sq.q.echostr = "5838479218127813673";
    ck_assert_int_eq(tl_wechat_echo(&plain_conf, &sq.q, &echo, &pb), 0);
    ck_assert(tl_adapter_cases_streq(echo, "5838479218127813673"));
    /* Safe-mode accounts verify the URL the same way, in the clear. */
    ck_assert_int_eq(tl_wechat_echo(&safe_conf, &sq.q, &echo, &pb), 0);
}
END_TEST

START_TEST(wechat_url_verification_with_bad_signature_is_refused) {
    signed_query_t sq;
    tl_problem_t pb;
    tl_str_t echo = TL_STR_NULL;
    plain_query(&sq, "1409659813", "1372623149");
    sq.q.echostr = "5838479218127813673";
    sq.q.nonce = "1372623150";
    ck_assert_int_eq(tl_wechat_echo(&plain_conf, &sq.q, &echo, &pb), 403);
    ck_assert_str_eq(pb.type, "bad-signature");
    ck_assert_str_eq(pb.field, "signature");
    ck_assert_ptr_null(echo.ptr);
}
END_TEST

static const char *const echo_params[] = {"signature", "timestamp", "nonce", "echostr"};

START_TEST(wechat_url_verification_missing_param_is_named) {
    signed_query_t sq;
    tl_problem_t pb;
    tl_str_t echo;
    plain_query(&sq, "1409659813", "1372623149");
    sq.q.echostr = "5838479218127813673";
    const char **slot[] = {&sq.q.signature, &sq.q.timestamp, &sq.q.nonce, &sq.q.echostr};
    *slot[_i] = (_i % 2) ? "" : NULL;
    ck_assert_int_eq(tl_wechat_echo(&plain_conf, &sq.q, &echo, &pb), 400);
    ck_assert_str_eq(pb.type, "missing-param");
    ck_assert_str_eq(pb.field, echo_params[_i]);
}
END_TEST

START_TEST(wechat_url_verification_refuses_markup_in_echostr) {
    signed_query_t sq;
    tl_problem_t pb;
    tl_str_t echo;
    plain_query(&sq, "1409659813", "1372623149");
    sq.q.echostr = "<script>alert(1)</script>";
    ck_assert_int_eq(tl_wechat_echo(&plain_conf, &sq.q, &echo, &pb), 400);
    ck_assert_str_eq(pb.type, "invalid-param");
    ck_assert_str_eq(pb.field, "echostr");
}
END_TEST

START_TEST(wechat_post_missing_param_is_named) {
    signed_query_t sq;
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    char *body = fixture("text.xml");
    plain_query(&sq, TS, NONCE);
    const char **slot[] = {&sq.q.signature, &sq.q.timestamp, &sq.q.nonce};
    *slot[_i] = NULL;
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 400);
    ck_assert_str_eq(pb.type, "missing-param");
    ck_assert_str_eq(pb.field, echo_params[_i]);
    tl_wechat_out_close(&out);
    free(body);
}
END_TEST

START_TEST(wechat_post_with_wrong_signature_is_refused) {
    signed_query_t sq;
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    char *body = fixture("text.xml");
    plain_query(&sq, TS, NONCE);
    sq.q.nonce = "415311943";
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 403);
    ck_assert_str_eq(pb.type, "bad-signature");
    ck_assert_str_eq(pb.field, "signature");
    /* A signature made with another token is just as wrong. */
    sq.q.nonce = NONCE;
    sq.q.signature = "0000000000000000000000000000000000000000";
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 403);
    tl_wechat_out_close(&out);
    free(body);
}
END_TEST

START_TEST(wechat_post_with_stale_timestamp_is_refused) {
    signed_query_t sq;
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    char *body = fixture("text.xml");
    plain_query(&sq, "1699999000", NONCE);      /* validly signed, 1000 s old */
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 403);
    ck_assert_str_eq(pb.type, "stale-timestamp");
    ck_assert_str_eq(pb.field, "timestamp");
    tl_wechat_out_close(&out);
    free(body);
}
END_TEST

/* ---- bad bodies --------------------------------------------------------- */

#define HEAD "<xml><ToUserName><![CDATA[gh_3f1e2d4c5b6a]]></ToUserName>" \
             "<FromUserName><![CDATA[oUser_1]]></FromUserName><CreateTime>1699999999</CreateTime>"
#define TEXT(content) HEAD "<MsgType>text</MsgType><Content>" content "</Content><MsgId>1</MsgId></xml>"

typedef struct bad_case {
    const char *name;
    const char *body;           /* or NULL and: */
    const char *fixture;
    int status;
    const char *type;
    const char *field;
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"malformed", "<xml><ToUserName>", NULL, 400, "malformed-xml", ""},
    {"empty body", "", NULL, 400, "malformed-xml", ""},
    {"JSON instead of XML", "{\"text\":\"hi\"}", NULL, 400, "malformed-xml", ""},
    {"root not <xml>", "<message><MsgType>text</MsgType></message>", NULL, 400, "malformed-xml", ""},
    {"billion laughs", NULL, "billion_laughs.xml", 400, "doctype-refused", ""},
    {"external entity", NULL, "external_entity.xml", 400, "doctype-refused", ""},
    {"external DTD", NULL, "external_dtd.xml", 400, "doctype-refused", ""},
    {"bare DOCTYPE", "<!DOCTYPE xml><xml/>", NULL, 400, "doctype-refused", ""},
    {"undeclared entity", TEXT("&xxe;"), NULL, 400, "malformed-xml", ""},
    {"invalid utf-8 byte", TEXT("a\xff"), NULL, 400, "invalid-utf8", ""},
    {"overlong utf-8", TEXT("\xc0\xaf"), NULL, 400, "invalid-utf8", ""},
    {"utf-8 surrogate", TEXT("\xed\xa0\x80"), NULL, 400, "invalid-utf8", ""},
    {"beyond U+10FFFF", TEXT("\xf4\x90\x80\x80"), NULL, 400, "invalid-utf8", ""},
    {"latin-1 declared", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>" TEXT("caf\xe9"), NULL,
     400, "invalid-utf8", ""},
    {"control character", TEXT("&#1;"), NULL, 400, "malformed-xml", ""},
    {"element twice", HEAD "<MsgType>text</MsgType><Content>a</Content><Content>b</Content>"
     "<MsgId>1</MsgId></xml>", NULL, 400, "malformed-xml", "Content"},
    {"missing ToUserName", "<xml><FromUserName>o</FromUserName><CreateTime>1699999999</CreateTime>"
     "<MsgType>text</MsgType><Content>a</Content><MsgId>1</MsgId></xml>", NULL,
     422, "missing-field", "ToUserName"},
    {"missing FromUserName", "<xml><ToUserName>gh</ToUserName><CreateTime>1699999999</CreateTime>"
     "<MsgType>text</MsgType><Content>a</Content><MsgId>1</MsgId></xml>", NULL,
     422, "missing-field", "FromUserName"},
    {"FromUserName with colon", "<xml><ToUserName>gh</ToUserName><FromUserName>o:1</FromUserName>"
     "<CreateTime>1699999999</CreateTime><MsgType>text</MsgType><Content>a</Content><MsgId>1</MsgId>"
     "</xml>", NULL, 422, "invalid-field", "FromUserName"},
    {"missing CreateTime", "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName>"
     "<MsgType>text</MsgType><Content>a</Content><MsgId>1</MsgId></xml>", NULL,
     422, "missing-field", "CreateTime"},
    {"CreateTime in ms", "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName>"
     "<CreateTime>1699999999000</CreateTime><MsgType>text</MsgType><Content>a</Content>"
     "<MsgId>1</MsgId></xml>", NULL, 422, "implausible-time", "CreateTime"},
    {"CreateTime two years ago", "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName>"
     "<CreateTime>1636928000</CreateTime><MsgType>text</MsgType><Content>a</Content>"
     "<MsgId>1</MsgId></xml>", NULL, 422, "implausible-time", "CreateTime"},
    {"CreateTime not a number", "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName>"
     "<CreateTime>now</CreateTime><MsgType>text</MsgType><Content>a</Content><MsgId>1</MsgId></xml>",
     NULL, 422, "invalid-field", "CreateTime"},
    {"missing MsgType", HEAD "<Content>a</Content><MsgId>1</MsgId></xml>", NULL,
     422, "missing-field", "MsgType"},
    {"unknown MsgType", HEAD "<MsgType>miniprogrampage</MsgType><MsgId>1</MsgId></xml>", NULL,
     422, "unsupported-type", "MsgType"},
    {"text without Content", HEAD "<MsgType>text</MsgType><MsgId>1</MsgId></xml>", NULL,
     422, "missing-field", "Content"},
    {"empty Content", TEXT("<![CDATA[]]>"), NULL, 422, "invalid-field", "Content"},
    {"Content holding an element", TEXT("a<b>c</b>"), NULL, 422, "invalid-field", "Content"},
    {"text without MsgId", HEAD "<MsgType>text</MsgType><Content>a</Content></xml>", NULL,
     422, "missing-field", "MsgId"},
    {"MsgId not a number", HEAD "<MsgType>text</MsgType><Content>a</Content><MsgId>x1</MsgId></xml>",
     NULL, 422, "invalid-field", "MsgId"},
    {"image without PicUrl", HEAD "<MsgType>image</MsgType><MediaId>m</MediaId><MsgId>1</MsgId></xml>",
     NULL, 422, "missing-field", "PicUrl"},
    {"image with ftp PicUrl", HEAD "<MsgType>image</MsgType><PicUrl>ftp://x/y</PicUrl>"
     "<MsgId>1</MsgId></xml>", NULL, 422, "invalid-field", "PicUrl"},
    {"voice without Format", HEAD "<MsgType>voice</MsgType><MediaId>m</MediaId><MsgId>1</MsgId></xml>",
     NULL, 422, "missing-field", "Format"},
    {"voice with odd Format", HEAD "<MsgType>voice</MsgType><MediaId>m</MediaId>"
     "<Format>amr;x=1</Format><MsgId>1</MsgId></xml>", NULL, 422, "invalid-field", "Format"},
    {"video without MediaId", HEAD "<MsgType>video</MsgType><ThumbMediaId>t</ThumbMediaId>"
     "<MsgId>1</MsgId></xml>", NULL, 422, "missing-field", "MediaId"},
    {"location X not a number", HEAD "<MsgType>location</MsgType><Location_X>north</Location_X>"
     "<Location_Y>1</Location_Y><MsgId>1</MsgId></xml>", NULL, 422, "invalid-field", "Location_X"},
    {"location Y out of range", HEAD "<MsgType>location</MsgType><Location_X>1.5</Location_X>"
     "<Location_Y>200</Location_Y><MsgId>1</MsgId></xml>", NULL, 422, "invalid-field", "Location_Y"},
    {"link without Url", HEAD "<MsgType>link</MsgType><Title>t</Title><MsgId>1</MsgId></xml>", NULL,
     422, "missing-field", "Url"},
    {"event without Event", HEAD "<MsgType>event</MsgType></xml>", NULL, 422, "missing-field", "Event"},
    {"unsupported event", HEAD "<MsgType>event</MsgType><Event>VIEW</Event>"
     "<EventKey>https://x.example</EventKey></xml>", NULL, 422, "unsupported-type", "Event"},
    {"CLICK without EventKey", HEAD "<MsgType>event</MsgType><Event>CLICK</Event></xml>", NULL,
     422, "missing-field", "EventKey"},
};

START_TEST(wechat_bad_body_gets_precise_problem) {
    const bad_case_t *c = &bad_cases[_i];
    tl_wechat_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    char *owned = c->fixture ? fixture(c->fixture) : NULL;
    int status = parse_plain(owned ? owned : c->body, &out, &ev, &pb);
    tl_wechat_out_close(&out);
    free(owned);
    tl_adapter_cases_expect(c->name, status, &pb, c->status, c->type, c->field);
}
END_TEST

START_TEST(wechat_oversized_body_is_refused) {
    static char body[TL_WECHAT_BODY_MAX + 256];
    int n = snprintf(body, sizeof body, "%s", HEAD "<MsgType>text</MsgType><Content>");
    memset(body + n, 'x', TL_WECHAT_BODY_MAX);
    strcpy(body + n + TL_WECHAT_BODY_MAX, "</Content><MsgId>1</MsgId></xml>");
    tl_wechat_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_plain(body, &out, &ev, &pb), 413);
    ck_assert_str_eq(pb.type, "body-too-large");
    tl_wechat_out_close(&out);

    /* The gateway's own limit applies when it is the smaller one. */
    static const tl_adapter_ctx_t small = {NOW, "018bcfe5-6800-7000-8000-000000000001", "t", 64};
    signed_query_t sq;
    char *text = fixture("text.xml");
    plain_query(&sq, TS, NONCE);
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &small, &sq.q, text, strlen(text), &out, &ev, &pb), 413);
    tl_wechat_out_close(&out);
    free(text);
}
END_TEST

START_TEST(wechat_content_over_limit_is_refused) {
    static char body[TL_WECHAT_TEXT_MAX + 512];
    int n = snprintf(body, sizeof body, "%s", HEAD "<MsgType>text</MsgType><Content>");
    memset(body + n, 'x', TL_WECHAT_TEXT_MAX + 1);
    strcpy(body + n + TL_WECHAT_TEXT_MAX + 1, "</Content><MsgId>1</MsgId></xml>");
    tl_wechat_out_t out;
    tl_event_t ev;
    tl_problem_t pb;
    ck_assert_int_eq(parse_plain(body, &out, &ev, &pb), 422);
    ck_assert_str_eq(pb.type, "field-too-long");
    ck_assert_str_eq(pb.field, "Content");
    tl_wechat_out_close(&out);
}
END_TEST

/* ---- safe mode ---------------------------------------------------------- */

START_TEST(wechat_tencent_sample_decrypts) {
    /* Ciphertext from Tencent's published sample: proves we decrypt what
     * WeChat encrypts, not only what our own helper does. */
    static const tl_adapter_ctx_t then = {1409735669000LL, "018bcfe5-6800-7000-8000-000000000003",
                                          "trace-3", 1 << 20};
    tl_wechat_conf_t conf;
    char err[256];
    ck_assert_int_eq(tl_wechat_conf_init(&conf, "acme", "spamtest",
                                         "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                                         "wx2c2769f8efd9abc2", err, sizeof err), 0);
    tl_wechat_query_t q = {.signature = "ignored-in-safe-mode", .timestamp = "1409735669",
                           .nonce = "1320562132", .encrypt_type = "aes",
                           .msg_signature = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"};
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    char *body = fixture("tencent_sample_compat.xml");
    int status = tl_wechat_parse(&conf, &then, &q, body, strlen(body), &out, &ev, &pb);
    ck_assert_msg(status == 0, "%d %s %s", status, pb.type, pb.detail);
    ck_assert_int_eq(ev.kind, TL_EV_MESSAGE_RECEIVED);
    ck_assert(tl_adapter_cases_streq(ev.u.message.text, "abcdteT"));
    ck_assert(tl_adapter_cases_streq(ev.platform_user_id, "oyORnuP8q7ou2gfYjqLzSIWZf0rs"));
    ck_assert(tl_adapter_cases_streq(ev.idempotency_key, "wechat:6054768590064713728"));
    ck_assert_int_eq(ev.occurred_at, 1409735668000LL);
    tl_wechat_out_close(&out);

    /* Same body, wrong AppID configured. */
    tl_wechat_conf_t other;
    ck_assert_int_eq(tl_wechat_conf_init(&other, "acme", "spamtest",
                                         "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                                         "wx0000000000000000", err, sizeof err), 0);
    memset(&out, 0, sizeof out);
    ck_assert_int_eq(tl_wechat_parse(&other, &then, &q, body, strlen(body), &out, &ev, &pb), 403);
    ck_assert_str_eq(pb.type, "appid-mismatch");
    tl_wechat_out_close(&out);
    tl_wechat_conf_close(&other);
    tl_wechat_conf_close(&conf);
    free(body);
}
END_TEST

/* Builds and parses one safe-mode request; returns the status. */
static int parse_safe(const tl_wechat_conf_t *conf, const char *xml, const char *appid,
                      int spoil, const char *tamper_sig, tl_problem_t *pb) {
    signed_query_t sq;
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    char *enc = wx_encrypt(xml, AES_KEY, appid, spoil);
    char *body = safe_body(&sq, enc);
    if (tamper_sig) sq.q.msg_signature = tamper_sig;
    int status = tl_wechat_parse(conf, &ctx, &sq.q, body, strlen(body), &out, &ev, pb);
    tl_wechat_out_close(&out);
    free(body);
    free(enc);
    return status;
}

START_TEST(wechat_encrypted_for_another_appid_is_refused) {
    tl_problem_t pb;
    ck_assert_int_eq(parse_safe(&safe_conf, TEXT("hi"), "wxdeadbeefdeadbeef", SPOIL_NONE, NULL, &pb), 403);
    ck_assert_str_eq(pb.type, "appid-mismatch");
    ck_assert_str_eq(pb.field, "Encrypt");
    /* A prefix of the right AppID is not the right AppID. */
    ck_assert_int_eq(parse_safe(&safe_conf, TEXT("hi"), "wx3f1e2d4c5b6a798", SPOIL_NONE, NULL, &pb), 403);
}
END_TEST

START_TEST(wechat_bad_msg_signature_is_refused) {
    tl_problem_t pb;
    ck_assert_int_eq(parse_safe(&safe_conf, TEXT("hi"), APPID, SPOIL_NONE,
                                "fcec52be8e8e8a90edf0c91824f7b790dd02ba41", &pb), 403);
    ck_assert_str_eq(pb.type, "bad-signature");
    ck_assert_str_eq(pb.field, "msg_signature");
    ck_assert_int_eq(parse_safe(&safe_conf, TEXT("hi"), APPID, SPOIL_NONE, "", &pb), 400);
    ck_assert_str_eq(pb.type, "missing-param");
    ck_assert_str_eq(pb.field, "msg_signature");
}
END_TEST

START_TEST(wechat_undecryptable_ciphertext_is_refused) {
    tl_problem_t pb;
    signed_query_t sq;
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    /* Properly signed, but padding that is not PKCS#7: a pad length over
     * the 32-byte block, then one padding byte unlike the others. */
    ck_assert_int_eq(parse_safe(&safe_conf, TEXT("hi"), APPID, SPOIL_PAD_LENGTH, NULL, &pb), 400);
    ck_assert_str_eq(pb.type, "undecryptable");
    ck_assert_str_eq(pb.field, "Encrypt");
    ck_assert_int_eq(parse_safe(&safe_conf, TEXT("hi"), APPID, SPOIL_PAD_BYTE, NULL, &pb), 400);
    ck_assert_str_eq(pb.type, "undecryptable");
    /* A length prefix that runs past the end of the plaintext. */
    ck_assert_int_eq(parse_safe(&safe_conf, TEXT("hi"), APPID, SPOIL_MSG_LEN, NULL, &pb), 400);
    ck_assert_str_eq(pb.type, "undecryptable");
    /* Properly signed, not Base64; then Base64 of 20 bytes, not whole blocks. */
    const char *junk[] = {"!!!not-base64!!!", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM="};
    for (int i = 0; i < 2; i++) {
        char *body = safe_body(&sq, junk[i]);
        ck_assert_int_eq(tl_wechat_parse(&safe_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 400);
        ck_assert_str_eq(pb.type, "undecryptable");
        tl_wechat_out_close(&out);
        free(body);
    }
}
END_TEST

START_TEST(wechat_encrypted_doctype_is_refused_too) {
    tl_problem_t pb;
    char *xml = fixture("billion_laughs.xml");
    ck_assert_int_eq(parse_safe(&safe_conf, xml, APPID, SPOIL_NONE, NULL, &pb), 400);
    ck_assert_str_eq(pb.type, "doctype-refused");
    free(xml);
}
END_TEST

START_TEST(wechat_safe_mode_needs_encrypt_element_and_configuration) {
    signed_query_t sq;
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    const char *body = "<xml><ToUserName>gh_1</ToUserName></xml>";
    plain_query(&sq, TS, NONCE);
    sq.q.encrypt_type = "aes";
    sq.q.msg_signature = "fcec52be8e8e8a90edf0c91824f7b790dd02ba41";
    ck_assert_int_eq(tl_wechat_parse(&safe_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 422);
    ck_assert_str_eq(pb.type, "missing-field");
    ck_assert_str_eq(pb.field, "Encrypt");
    ck_assert_int_eq(tl_wechat_parse(&plain_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 400);
    ck_assert_str_eq(pb.type, "encryption-not-configured");
    ck_assert_str_eq(pb.field, "encrypt_type");
    sq.q.encrypt_type = "des";
    ck_assert_int_eq(tl_wechat_parse(&safe_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 400);
    ck_assert_str_eq(pb.type, "invalid-param");
    ck_assert_str_eq(pb.field, "encrypt_type");
    tl_wechat_out_close(&out);
}
END_TEST

START_TEST(wechat_safe_account_refuses_plain_requests) {
    /* Even validly signed: the plain signature does not cover the body. */
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    signed_query_t sq;
    char *body = fixture("text.xml");
    plain_query(&sq, TS, NONCE);
    ck_assert_int_eq(tl_wechat_parse(&safe_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 403);
    ck_assert_str_eq(pb.type, "encryption-required");
    ck_assert_str_eq(pb.field, "encrypt_type");
    sq.q.encrypt_type = "raw";
    ck_assert_int_eq(tl_wechat_parse(&safe_conf, &ctx, &sq.q, body, strlen(body), &out, &ev, &pb), 403);
    tl_wechat_out_close(&out);
    free(body);
}
END_TEST

/* ---- configuration ------------------------------------------------------ */

typedef struct conf_case {
    const char *name, *token, *aes_key, *appid;
    int rc;
} conf_case_t;

static const conf_case_t conf_cases[] = {
    {"plain", "abc", NULL, NULL, 0},
    {"safe", TOKEN, AES_KEY, APPID, 0},
    {"no token", NULL, NULL, NULL, TL_ECONFIG},
    {"short token", "ab", NULL, NULL, TL_ECONFIG},
    {"token with symbols", "tok-en", NULL, NULL, TL_ECONFIG},
    {"key too short", TOKEN, "kWxPWkWpA1v7bH9QzNqT3sY2dRfL8gJcE4mUoV6iX0", APPID, TL_ECONFIG},
    {"key not alphanumeric", TOKEN, "kWxPWkWpA1v7bH9QzNqT3sY2dRfL8gJcE4mUoV6iX0+", APPID, TL_ECONFIG},
    {"key without appid", TOKEN, AES_KEY, NULL, TL_ECONFIG},
};

START_TEST(wechat_configuration_is_checked) {
    const conf_case_t *c = &conf_cases[_i];
    tl_wechat_conf_t conf, zero;
    char err[256] = "";
    memset(&conf, 0, sizeof conf);
    memset(&zero, 0, sizeof zero);
    int rc = tl_wechat_conf_init(&conf, "acme", c->token, c->aes_key, c->appid, err, sizeof err);
    ck_assert_msg(rc == c->rc, "%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
    if (rc) {
        ck_assert_msg(err[0] != 0, "%s: no message", c->name);
        ck_assert_msg(memcmp(&conf, &zero, sizeof conf) == 0, "%s: conf changed", c->name);
    } else {
        ck_assert_int_eq(conf.safe, c->aes_key != NULL);
    }
    tl_wechat_conf_close(&conf);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof *(a)))

Suite *tl_wechat_suite(void) {
    Suite *s = suite_create("wechat");
    TCase *tc = tcase_create("good");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, wechat_message_type_becomes_exact_event, 0, N(good_cases));
    tcase_add_test(tc, wechat_resent_message_keeps_idempotency_key_and_customer);
    tcase_add_test(tc, wechat_events_without_msgid_are_keyed_by_user_time_and_event);
    tcase_add_test(tc, wechat_location_without_label_and_link_without_description);
    tcase_add_test(tc, wechat_identifiers_are_trimmed_free_text_is_not);
    suite_add_tcase(s, tc);

    tc = tcase_create("signature");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, wechat_signature_matches_known_value);
    tcase_add_test(tc, wechat_url_verification_echoes_echostr);
    tcase_add_test(tc, wechat_url_verification_with_bad_signature_is_refused);
    tcase_add_loop_test(tc, wechat_url_verification_missing_param_is_named, 0, N(echo_params));
    tcase_add_test(tc, wechat_url_verification_refuses_markup_in_echostr);
    tcase_add_loop_test(tc, wechat_post_missing_param_is_named, 0, 3);
    tcase_add_test(tc, wechat_post_with_wrong_signature_is_refused);
    tcase_add_test(tc, wechat_post_with_stale_timestamp_is_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, wechat_bad_body_gets_precise_problem, 0, N(bad_cases));
    tcase_add_test(tc, wechat_oversized_body_is_refused);
    tcase_add_test(tc, wechat_content_over_limit_is_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("safe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, wechat_encrypted_message_gives_same_event_as_plain, 0, N(good_cases));
    tcase_add_test(tc, wechat_tencent_sample_decrypts);
    tcase_add_test(tc, wechat_encrypted_for_another_appid_is_refused);
    tcase_add_test(tc, wechat_bad_msg_signature_is_refused);
    tcase_add_test(tc, wechat_undecryptable_ciphertext_is_refused);
    tcase_add_test(tc, wechat_encrypted_doctype_is_refused_too);
    tcase_add_test(tc, wechat_safe_mode_needs_encrypt_element_and_configuration);
    tcase_add_test(tc, wechat_safe_account_refuses_plain_requests);
    suite_add_tcase(s, tc);

    tc = tcase_create("conf");
    tcase_add_loop_test(tc, wechat_configuration_is_checked, 0, N(conf_cases));
    suite_add_tcase(s, tc);
    return s;
}
