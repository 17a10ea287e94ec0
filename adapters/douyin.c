/*
 * douyin.c -- Douyin private-message adapter (see douyin.h).
 *
 * A request is checked in the order that spends the least work on a caller
 * who has not proved it is Douyin: size, then the signature over the raw
 * bytes, and only then JSON.  Fields inside `content` are reported with the
 * prefix "content.", whichever form (object or JSON string) it came in.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "douyin.h"
#include "error.h"

#define YEAR_MS (366LL * 24 * 3600 * 1000)
#define SIG_HEXLEN 40                   /* SHA-1, hex */
#define SECONDS_BELOW 100000000000LL    /* 10^11: as ms that is 1973, as s year 5138 */
#define CHALLENGE_MAX 128

static int nomem(tl_problem_t *pb) {
    tl_problem_set(pb, 503, "out-of-memory", "Out of memory", NULL,
                   "the gateway is short of memory; retry");
    pb->retry_after = 1;
    return 503;
}

int tl_douyin_conf_init(tl_douyin_conf_t *conf, const char *tenant_id, const char *secret,
                        char *err, size_t errlen) {
    size_t tlen = tenant_id ? strlen(tenant_id) : 0;
    size_t slen = secret ? strlen(secret) : 0;
    if (tlen == 0 || tlen > 64) {
        snprintf(err, errlen, "Douyin: the tenant (douyin-tenant) must be 1 to 64 bytes");
        return TL_ECONFIG;
    }
    if (slen == 0 || slen > TL_DOUYIN_SECRET_MAX) {
        snprintf(err, errlen, "Douyin: the secret (douyin-secret) must be the app's client secret "
                              "as shown in the Douyin console, 1 to %d bytes",
                 TL_DOUYIN_SECRET_MAX);
        return TL_ECONFIG;
    }
    conf->tenant_id = tenant_id;
    conf->secret = secret;
    conf->secret_len = slen;
    return 0;
}

/* ---- signature -------------------------------------------------------- */

/* hex SHA-1 of secret || body.  0, or TL_ENOMEM. */
static int sign(const tl_douyin_conf_t *conf, const char *body, size_t len,
                char hex[SIG_HEXLEN]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (!h) return TL_ENOMEM;
    int ok = EVP_DigestInit_ex(h, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(h, conf->secret, conf->secret_len) &&
             EVP_DigestUpdate(h, body, len) && EVP_DigestFinal_ex(h, md, &mdlen) &&
             mdlen * 2 == SIG_HEXLEN;
    EVP_MD_CTX_free(h);
    if (!ok) return TL_ENOMEM;
    for (unsigned i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    return 0;
}

static int verify(const tl_douyin_conf_t *conf, tl_str_t sig, const char *body, size_t len,
                  tl_problem_t *pb) {
    char want[SIG_HEXLEN], got[SIG_HEXLEN];
    if (!sig.ptr || sig.len == 0)
        return tl_problem_set(pb, 403, "missing-signature", "Missing signature",
                              TL_DOUYIN_SIG_HEADER, "the " TL_DOUYIN_SIG_HEADER
                              " header is required: Douyin signs every webhook");
    if (sign(conf, body, len, want)) return nomem(pb);
    /* The length is public (40); only the digits are compared in constant
     * time.  Upper-case hex is the same signature. */
    int ok = sig.len == SIG_HEXLEN;
    for (size_t i = 0; ok && i < SIG_HEXLEN; i++) {
        char c = sig.ptr[i];
        got[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    if (!ok || CRYPTO_memcmp(want, got, SIG_HEXLEN) != 0)
        return tl_problem_set(pb, 403, "bad-signature", "Signature mismatch", TL_DOUYIN_SIG_HEADER,
                              TL_DOUYIN_SIG_HEADER " is not the hex SHA-1 of the configured "
                              "secret followed by the body");
    return 0;
}

/* ---- fields ----------------------------------------------------------- */

/* Makes pb->field name the member of content: "text" -> "content.text". */
static int content_field(tl_problem_t *pb, int rc) {
    char inner[sizeof pb->field];
    memcpy(inner, pb->field, sizeof inner);
    if (strlen(inner) + 8 < sizeof pb->field) {
        memcpy(pb->field, "content.", 8);
        memcpy(pb->field + 8, inner, strlen(inner) + 1);
    }
    return rc;
}

#define CONTENT(call)                                                         \
    do {                                                                      \
        int rc_ = (call);                                                     \
        if (rc_) return content_field(pb, rc_);                               \
    } while (0)

static int is_str(tl_str_t s, const char *lit) {
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* Douyin ids (open_id, message and conversation ids) are printable ASCII:
 * letters, digits and a few of "-_.@+/=". */
static int printable_id(tl_str_t s, const char *name, tl_problem_t *pb) {
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c <= 0x20 || c >= 0x7f || c == ':')
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                                  "\"%s\" may hold only printable ASCII without spaces or ':'",
                                  name);
    }
    return 0;
}

/* content: an object, or a string holding one (decoded into out->content). */
static int read_content(tl_douyin_out_t *out, json_t **content, tl_problem_t *pb) {
    json_t *c = json_object_get(out->base.root, "content");
    if (!c || json_is_null(c))
        return tl_problem_set(pb, 422, "missing-field", "Missing field", "content",
                              "\"content\" is required");
    if (json_is_string(c)) {
        json_error_t err;
        out->content = json_loadb(json_string_value(c), json_string_length(c),
                                  JSON_REJECT_DUPLICATES, &err);
        if (!out->content || !json_is_object(out->content))
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "content",
                                  "\"content\" is a string but not a JSON object (%s)",
                                  out->content ? "not an object" : err.text);
        c = out->content;
    }
    if (!json_is_object(c))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "content",
                              "\"content\" must be an object, or a string holding one");
    *content = c;
    return 0;
}

/* verify_webhook: echo content.challenge back as {"challenge": <it>}. */
static int challenge(tl_douyin_out_t *out, json_t *content, tl_problem_t *pb) {
    json_t *v = json_object_get(content, "challenge");
    if (!v || json_is_null(v))
        return tl_problem_set(pb, 422, "missing-field", "Missing field", "content.challenge",
                              "\"challenge\" is required in a verify_webhook event");
    if (!json_is_integer(v) && !(json_is_string(v) && json_string_length(v) <= CHALLENGE_MAX))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "content.challenge",
                              "\"challenge\" must be an integer or a string of at most %d bytes",
                              CHALLENGE_MAX);
    json_t *reply = json_pack("{s:O}", "challenge", v);
    if (!reply) return nomem(pb);
    size_t n = json_dumpb(reply, out->reply, sizeof out->reply, JSON_COMPACT);
    json_decref(reply);
    if (n == 0 || n > sizeof out->reply) return nomem(pb);
    out->reply_len = n;
    return TL_DOUYIN_CHALLENGE;
}

/* create_time: ms, or seconds when below 10^11. */
static int create_time(json_t *content, int64_t now_ms, int64_t *ms, tl_problem_t *pb) {
    int64_t v;
    CONTENT(tl_adapter_req_int(content, "create_time", 0, INT64_MAX / 1000, &v, pb));
    int seconds = v < SECONDS_BELOW;
    if (seconds) v *= 1000;
    if (v < now_ms - YEAR_MS || v > now_ms + YEAR_MS)
        return tl_problem_set(pb, 422, "implausible-time", "Implausible timestamp",
                              "content.create_time",
                              "\"create_time\" (%lld, read as %s) is more than a year from the "
                              "gateway clock (%lld ms)", (long long)(seconds ? v / 1000 : v),
                              seconds ? "seconds" : "milliseconds", (long long)now_ms);
    *ms = v;
    return 0;
}

static int read_message(const tl_adapter_ctx_t *ctx, tl_douyin_out_t *out, json_t *content,
                        tl_event_t *ev, tl_str_t *msgid, int64_t *occurred, tl_problem_t *pb) {
    tl_message_received_t *m = &ev->u.message;
    tl_str_t type, conv;
    int64_t ctype;
    CONTENT(tl_adapter_req_str(content, "server_message_id", TL_DOUYIN_MSGID_MAX, msgid, pb));
    CONTENT(printable_id(*msgid, "server_message_id", pb));
    CONTENT(tl_adapter_opt_str(content, "conversation_short_id", TL_DOUYIN_CONVID_MAX, &conv, pb));
    if (conv.ptr) CONTENT(printable_id(conv, "conversation_short_id", pb));
    if (json_object_get(content, "conversation_type")) {
        CONTENT(tl_adapter_req_int(content, "conversation_type", INT32_MIN, INT32_MAX, &ctype, pb));
        if (ctype != 1)
            return tl_problem_set(pb, 422, "unsupported-type", "Unsupported message type",
                                  "content.conversation_type",
                                  "conversation_type %lld is not a private chat (1)",
                                  (long long)ctype);
    }
    int rc = create_time(content, ctx->now_ms, occurred, pb);
    if (rc) return rc;
    CONTENT(tl_adapter_req_str(content, "message_type", 32, &type, pb));

    if (is_str(type, "text")) {
        CONTENT(tl_adapter_req_str(content, "text", TL_DOUYIN_TEXT_MAX, &m->text, pb));
        m->attachments = (tl_attachments_t){out->base.attachments, 0};
    } else if (is_str(type, "image") || is_str(type, "user_local_image")) {
        if (!conv.ptr)
            return tl_problem_set(pb, 422, "missing-field", "Missing field",
                                  "content.conversation_short_id",
                                  "an image message needs \"conversation_short_id\" to be "
                                  "fetched later");
        int n = snprintf(out->url, sizeof out->url, "douyin-im:%.*s:%.*s", (int)conv.len,
                         conv.ptr, (int)msgid->len, msgid->ptr);
        tl_attachment_t *a = &out->base.attachments[0];
        memset(a, 0, sizeof *a);
        a->url = (tl_str_t){out->url, (size_t)n};
        a->mime = TL_STR(TL_DOUYIN_IMAGE_MIME);
        m->text = TL_STR("");
        m->attachments = (tl_attachments_t){a, 1};
    } else {
        return tl_problem_set(pb, 422, "unsupported-type", "Unsupported message type",
                              "content.message_type",
                              "message_type \"%.*s\" is not supported (text, image, "
                              "user_local_image)", (int)(type.len > 32 ? 32 : type.len), type.ptr);
    }
    return 0;
}

int tl_douyin_parse(const tl_douyin_conf_t *conf, const tl_adapter_ctx_t *ctx,
                    tl_str_t signature, const char *body, size_t len,
                    tl_douyin_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    int rc;
    tl_str_t event, user, msgid;
    json_t *content;
    int64_t occurred = 0;
    memset(ev, 0, sizeof *ev);
    int64_t limit = TL_DOUYIN_BODY_MAX;
    if (ctx->max_body > 0 && ctx->max_body < limit) limit = ctx->max_body;
    if ((int64_t)len > limit)
        return tl_problem_set(pb, 413, "body-too-large", "Body too large", NULL,
                              "the body is %zu bytes; the limit is %lld", len, (long long)limit);
    if ((rc = verify(conf, signature, body, len, pb))) return rc;
    if ((rc = tl_adapter_parse_json(body, len, &out->base, pb))) return rc;
    json_t *o = out->base.root;
    if ((rc = tl_adapter_req_str(o, "event", 64, &event, pb))) return rc;
    if (is_str(event, "verify_webhook")) {
        if ((rc = read_content(out, &content, pb))) return rc;
        return challenge(out, content, pb);
    }
    if (!is_str(event, "im_receive_msg"))
        return tl_problem_set(pb, 422, "unsupported-type", "Unsupported event", "event",
                              "event \"%.*s\" is not supported; subscribe this URL to "
                              "im_receive_msg only", (int)(event.len > 64 ? 64 : event.len),
                              event.ptr);
    if ((rc = tl_adapter_req_str(o, "from_user_id", 128, &user, pb)) ||
        (rc = printable_id(user, "from_user_id", pb)) ||
        (rc = read_content(out, &content, pb)) ||
        (rc = read_message(ctx, out, content, ev, &msgid, &occurred, pb)))
        return rc;
    ev->kind = TL_EV_MESSAGE_RECEIVED;
    tl_str_t tenant = {conf->tenant_id, strlen(conf->tenant_id)};
    tl_adapter_envelope(ctx, &out->base, ev, tenant, TL_PLATFORM_DOUYIN, user, msgid, occurred);
    return 0;
}

void tl_douyin_out_close(tl_douyin_out_t *out) {
    tl_adapter_out_close(&out->base);
    if (out->content) json_decref(out->content);
    out->content = NULL;
}
