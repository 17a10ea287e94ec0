/*
 * wechat.c -- WeChat Official Account adapter (see wechat.h).
 *
 * A request is checked in the order that spends the least work on a caller
 * who has not proved it is WeChat: query parameters and signature, then
 * size, UTF-8 and XML.  Safe mode has to parse the outer XML to find the
 * ciphertext before msg_signature can be checked; that parse is as guarded
 * as every other one (size cap, no DOCTYPE, no network).
 *
 * Field texts are copied out of the libxml2 tree into out->owned, so the
 * tree is freed before returning and the event points only into out and
 * conf.  Every field has one byte limit, in WX_FIELD_MAP below.
 */
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "error.h"
#include "wechat.h"

#define YEAR_MS (366LL * 24 * 3600 * 1000)
#define PARAM_MAX 128           /* longest query parameter we look at */
#define SIG_HEXLEN 40           /* SHA-1, hex */

/* The message elements we read: XX(element, byte limit, trim).  Free text is
 * kept as sent; identifiers and numbers lose surrounding whitespace, which
 * some proxies add around CDATA sections. */
#define WX_FIELD_MAP(XX)                                                      \
    XX(ToUserName, 64, 1)                                                     \
    XX(FromUserName, 128, 1)                                                  \
    XX(CreateTime, 16, 1)                                                     \
    XX(MsgType, 32, 1)                                                        \
    XX(MsgId, 20, 1)                                                          \
    XX(Content, TL_WECHAT_TEXT_MAX, 0)                                        \
    XX(PicUrl, 2048, 1)                                                       \
    XX(MediaId, 256, 1)                                                       \
    XX(Format, 16, 1)                                                         \
    XX(Recognition, TL_WECHAT_TEXT_MAX, 0)                                    \
    XX(ThumbMediaId, 256, 1)                                                  \
    XX(Location_X, 32, 1)                                                     \
    XX(Location_Y, 32, 1)                                                     \
    XX(Scale, 16, 1)                                                          \
    XX(Label, 512, 0)                                                         \
    XX(Title, 1024, 0)                                                        \
    XX(Description, 4096, 0)                                                  \
    XX(Url, 2048, 1)                                                          \
    XX(Event, 64, 1)                                                          \
    XX(EventKey, 1024, 1)                                                     \
    XX(Encrypt, TL_WECHAT_BODY_MAX, 1)

enum {
#define WX_FIELD_ENUM(name, max, trim) F_##name,
    WX_FIELD_MAP(WX_FIELD_ENUM)
#undef WX_FIELD_ENUM
    F__COUNT
};

static const struct wx_field {
    const char *name;
    size_t max;
    int trim;
} wx_fields[] = {
#define WX_FIELD_ROW(name, max, trim) {#name, max, trim},
    WX_FIELD_MAP(WX_FIELD_ROW)
#undef WX_FIELD_ROW
};

#define WANT(f) (1u << (f))
#define WANT_MESSAGE (((1u << F__COUNT) - 1) & ~WANT(F_Encrypt))

/* ---- small helpers ---------------------------------------------------- */

static int nomem(tl_problem_t *pb) {
    tl_problem_set(pb, 503, "out-of-memory", "Out of memory", NULL,
                   "the gateway is short of memory; nothing was accepted, WeChat will resend");
    pb->retry_after = 1;
    return 503;
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }
static int is_alnum(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static int all_digits(tl_str_t s) {
    if (s.len == 0) return 0;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9') return 0;
    return 1;
}

/* Case-insensitive equality of s and a literal, for MsgType and Event. */
static int is(tl_str_t s, const char *lit) {
    size_t n = strlen(lit);
    if (s.len != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(s.ptr[i]) != ascii_lower(lit[i])) return 0;
    return 1;
}

static int is_http_url(tl_str_t s) {
    return (s.len > 7 && strncmp(s.ptr, "http://", 7) == 0) ||
           (s.len > 8 && strncmp(s.ptr, "https://", 8) == 0);
}

/* Offset of the first byte that does not begin a well-formed UTF-8 sequence
 * (Unicode table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF), or -1 when all n bytes are well formed.  libxml2 only catches
 * some of these, and then as generic "invalid char" errors. */
static long utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        unsigned lo = 0x80, hi = 0xBF;
        size_t k;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return (long)i;
        if (n - i <= k || s[i + 1] < lo || s[i + 1] > hi) return (long)i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return (long)i;
        i += k + 1;
    }
    return -1;
}

/* Allocates n+1 bytes that out owns until tl_wechat_out_close. */
static char *own(tl_wechat_out_t *out, size_t n) {
    /* At most one copy per field and three derived strings per request. */
    assert(out->n_owned < TL_WECHAT_OWNED_MAX);
    if (out->n_owned >= TL_WECHAT_OWNED_MAX) return NULL;
    char *p = malloc(n + 1);
    if (p) out->owned[out->n_owned++] = p;
    return p;
}

/* Formats a string that out owns into *s.  0 or 503. */
static int own_printf(tl_wechat_out_t *out, tl_str_t *s, tl_problem_t *pb, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int own_printf(tl_wechat_out_t *out, tl_str_t *s, tl_problem_t *pb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n < 0 ? NULL : own(out, (size_t)n);
    if (!p) return nomem(pb);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *s = (tl_str_t){p, (size_t)n};
    return 0;
}

/* ---- signatures ------------------------------------------------------- */

static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* hex SHA-1 of the n parts sorted byte-wise and concatenated: WeChat's
 * signature.  0, or TL_ENOMEM. */
static int sorted_sha1(const char **parts, size_t n, char hex[SIG_HEXLEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    qsort(parts, n, sizeof *parts, cmp_strp);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (!h) return TL_ENOMEM;
    int ok = EVP_DigestInit_ex(h, EVP_sha1(), NULL);
    for (size_t i = 0; ok && i < n; i++) ok = EVP_DigestUpdate(h, parts[i], strlen(parts[i]));
    ok = ok && EVP_DigestFinal_ex(h, md, &mdlen) && mdlen * 2 == SIG_HEXLEN;
    EVP_MD_CTX_free(h);
    if (!ok) return TL_ENOMEM;
    for (unsigned i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[SIG_HEXLEN] = 0;
    return 0;
}

/* Constant-time comparison of a received hex signature with ours. */
static int sig_matches(const char *want, const char *got) {
    char low[SIG_HEXLEN];
    if (strlen(got) != SIG_HEXLEN) return 0;
    for (int i = 0; i < SIG_HEXLEN; i++) low[i] = ascii_lower(got[i]);
    return CRYPTO_memcmp(want, low, SIG_HEXLEN) == 0;
}

static int need_param(const char *v, const char *name, tl_problem_t *pb) {
    if (!v || !*v)
        return tl_problem_set(pb, 400, "missing-param", "Missing query parameter", name,
                              "the query parameter \"%s\" is required", name);
    if (strlen(v) > PARAM_MAX)
        return tl_problem_set(pb, 400, "invalid-param", "Invalid query parameter", name,
                              "the query parameter \"%s\" is longer than %d bytes", name, PARAM_MAX);
    return 0;
}

int tl_wechat_verify(const tl_wechat_conf_t *conf, const char *signature,
                     const char *timestamp, const char *nonce, tl_problem_t *pb) {
    int rc;
    char want[SIG_HEXLEN + 1];
    if ((rc = need_param(signature, "signature", pb)) ||
        (rc = need_param(timestamp, "timestamp", pb)) || (rc = need_param(nonce, "nonce", pb)))
        return rc;
    const char *parts[] = {conf->token, timestamp, nonce};
    if (sorted_sha1(parts, 3, want)) return nomem(pb);
    if (!sig_matches(want, signature))
        return tl_problem_set(pb, 403, "bad-signature", "Signature mismatch", "signature",
                              "\"signature\" is not the SHA-1 of the configured token, "
                              "\"timestamp\" and \"nonce\"");
    return 0;
}

int tl_wechat_echo(const tl_wechat_conf_t *conf, const tl_wechat_query_t *q, tl_str_t *echo,
                   tl_problem_t *pb) {
    int rc;
    if ((rc = need_param(q->signature, "signature", pb)) ||
        (rc = need_param(q->timestamp, "timestamp", pb)) ||
        (rc = need_param(q->nonce, "nonce", pb)) || (rc = need_param(q->echostr, "echostr", pb)))
        return rc;
    /* The signature does not cover echostr and we send it back verbatim, so
     * only the characters WeChat uses may pass. */
    for (const char *p = q->echostr; *p; p++)
        if (!is_alnum(*p) && !strchr("+/=._-", *p))
            return tl_problem_set(pb, 400, "invalid-param", "Invalid query parameter", "echostr",
                                  "\"echostr\" may hold only letters, digits and +/=._-");
    if ((rc = tl_wechat_verify(conf, q->signature, q->timestamp, q->nonce, pb))) return rc;
    *echo = (tl_str_t){q->echostr, strlen(q->echostr)};
    return 0;
}

/* ---- XML -------------------------------------------------------------- */

/* SAX hook for <!DOCTYPE ...>: stop at once.  Without a DTD no entity can be
 * declared, so nothing can expand, internally or from a SYSTEM URL. */
static void refuse_doctype(void *ud, const xmlChar *name, const xmlChar *external_id,
                           const xmlChar *system_id) {
    xmlParserCtxtPtr ctxt = ud;
    (void)name;
    (void)external_id;
    (void)system_id;
    *(int *)ctxt->_private = 1;
    xmlStopParser(ctxt);
}

/* Parses len bytes of XML whose root must be <xml>.  0 and *docp (free with
 * xmlFreeDoc), or a 400/503 in pb. */
static int parse_xml(const char *body, size_t len, xmlDoc **docp, tl_problem_t *pb) {
    /* No XML_PARSE_NOENT (entities stay unsubstituted), no DTDLOAD/DTDATTR,
     * no network; the document's own encoding declaration is ignored: WeChat
     * sends UTF-8, and that is what was checked. */
    const int opts = XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_NOERROR |
                     XML_PARSE_NOWARNING | XML_PARSE_IGNORE_ENC;
    long bad = utf8_invalid_at((const unsigned char *)body, len);
    if (bad >= 0)
        return tl_problem_set(pb, 400, "invalid-utf8", "Invalid UTF-8", NULL,
                              "the XML is not valid UTF-8 (byte %ld)", bad);
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) return nomem(pb);
    int doctype = 0;
    ctxt->_private = &doctype;
    ctxt->sax->internalSubset = refuse_doctype;
    xmlDoc *doc = xmlCtxtReadMemory(ctxt, body, (int)len, NULL, "UTF-8", opts);
    if (doctype) {
        xmlFreeDoc(doc);
        xmlFreeParserCtxt(ctxt);
        return tl_problem_set(pb, 400, "doctype-refused", "DOCTYPE not accepted", NULL,
                              "the XML has a DOCTYPE; WeChat never sends one, and DTDs and "
                              "entities are not accepted");
    }
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        char msg[160] = "not well-formed";
        int line = e ? e->line : 0;
        if (e && e->code == XML_ERR_NO_MEMORY) {
            xmlFreeParserCtxt(ctxt);
            return nomem(pb);
        }
        if (e && e->message) {
            /* libxml2 quotes the input; cut whole characters only, the
             * detail must stay UTF-8 for the problem's JSON. */
            snprintf(msg, sizeof msg, "%s", e->message);
            msg[strcspn(msg, "\n")] = 0;
            long cut = utf8_invalid_at((const unsigned char *)msg, strlen(msg));
            if (cut >= 0) msg[cut] = 0;
        }
        xmlFreeParserCtxt(ctxt);
        return tl_problem_set(pb, 400, "malformed-xml", "Malformed XML", NULL,
                              "%s (line %d)", msg, line);
    }
    xmlFreeParserCtxt(ctxt);
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || strcmp((const char *)root->name, "xml") != 0) {
        xmlFreeDoc(doc);
        return tl_problem_set(pb, 400, "malformed-xml", "Malformed XML", NULL,
                              "the root element must be <xml>");
    }
    *docp = doc;
    return 0;
}

/* Copies the wanted child elements of root into f[] (out owns the copies);
 * absent ones stay TL_STR_NULL.  An element twice is malformed; an element
 * holding elements is invalid; limits per WX_FIELD_MAP. */
static int collect(xmlNode *root, unsigned want, tl_wechat_out_t *out, tl_str_t f[F__COUNT],
                   tl_problem_t *pb) {
    for (int i = 0; i < F__COUNT; i++) f[i] = TL_STR_NULL;
    for (xmlNode *n = root->children; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        int i = 0;
        while (i < F__COUNT && strcmp((const char *)n->name, wx_fields[i].name) != 0) i++;
        if (i == F__COUNT || !(want & WANT(i))) continue;
        const char *name = wx_fields[i].name;
        if (f[i].ptr)
            return tl_problem_set(pb, 400, "malformed-xml", "Malformed XML", name,
                                  "<%s> appears more than once", name);
        size_t len = 0;
        for (xmlNode *c = n->children; c; c = c->next) {
            if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
                len += strlen((const char *)c->content);
            else if (c->type == XML_ELEMENT_NODE)
                return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                                      "<%s> must hold text, not elements", name);
        }
        char *p = own(out, len);
        if (!p) return nomem(pb);
        len = 0;
        for (xmlNode *c = n->children; c; c = c->next) {
            if ((c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE) || !c->content)
                continue;
            size_t k = strlen((const char *)c->content);
            memcpy(p + len, c->content, k);
            len += k;
        }
        p[len] = 0;
        if (wx_fields[i].trim) {
            size_t a = 0;
            while (a < len && is_space(p[a])) a++;
            while (len > a && is_space(p[len - 1])) len--;
            memmove(p, p + a, len - a);
            len -= a;
            p[len] = 0;
        }
        if (len > wx_fields[i].max)
            return tl_problem_set(pb, 422, "field-too-long", "Field too long", name,
                                  "<%s> is %zu bytes; the limit is %zu", name, len,
                                  wx_fields[i].max);
        f[i] = (tl_str_t){p, len};
    }
    return 0;
}

/* A required element: present and not empty. */
static int need(const tl_str_t *f, int i, tl_problem_t *pb) {
    const char *name = wx_fields[i].name;
    if (!f[i].ptr)
        return tl_problem_set(pb, 422, "missing-field", "Missing field", name,
                              "<%s> is required", name);
    if (f[i].len == 0)
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "<%s> must not be empty", name);
    return 0;
}

static int invalid(int i, tl_problem_t *pb, const char *why) {
    const char *name = wx_fields[i].name;
    return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name, "<%s> %s", name, why);
}

/* A decimal coordinate, [-]digits[.digits], within [-limit, limit]. */
static int coordinate(const tl_str_t *f, int i, double limit, tl_problem_t *pb) {
    int rc = need(f, i, pb);
    if (rc) return rc;
    const char *s = f[i].ptr, *p = s + (*s == '-');
    size_t int_digits = 0, frac_digits = 0;
    while (*p >= '0' && *p <= '9') p++, int_digits++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++) frac_digits++;
    if (*p || int_digits == 0 || (p[-1] == '.' && frac_digits == 0))
        return invalid(i, pb, "must be a decimal number");
    double v = strtod(s, NULL);
    if (v < -limit || v > limit) return invalid(i, pb, "is out of range");
    return 0;
}

/* ---- safe mode -------------------------------------------------------- */

/* Base64 (newlines allowed) to bytes; out needs inlen bytes.  0 or -1. */
static int b64_decode(const char *in, size_t inlen, unsigned char *out, size_t *outlen) {
    int n1 = 0, n2 = 0;
    if (inlen > INT_MAX) return -1;
    EVP_ENCODE_CTX *e = EVP_ENCODE_CTX_new();
    if (!e) return -1;
    EVP_DecodeInit(e);
    int ok = EVP_DecodeUpdate(e, out, &n1, (const unsigned char *)in, (int)inlen) >= 0 &&
             EVP_DecodeFinal(e, out + n1, &n2) >= 0;
    EVP_ENCODE_CTX_free(e);
    *outlen = (size_t)n1 + (size_t)n2;
    return ok ? 0 : -1;
}

static int undecryptable(tl_problem_t *pb, const char *why) {
    return tl_problem_set(pb, 400, "undecryptable", "Cannot decrypt", "Encrypt",
                          "<Encrypt> %s; is the EncodingAESKey the one set in the WeChat "
                          "console?", why);
}

/* Decrypts enc (see the layout in wechat.h) and checks the appid.  0 and
 * *plain (malloc'd, free it) with the message at *msg, or a 400/403/503. */
static int decrypt(const tl_wechat_conf_t *conf, tl_str_t enc, unsigned char **plain,
                   tl_str_t *msg, tl_problem_t *pb) {
    int rc = 0;
    size_t ctlen = 0;
    int n1 = 0, n2 = 0;
    unsigned char *ct = malloc(enc.len + 4), *pt = malloc(enc.len + 64);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!ct || !pt || !c) {
        rc = nomem(pb);
        goto done;
    }
    if (b64_decode(enc.ptr, enc.len, ct, &ctlen)) {
        rc = undecryptable(pb, "is not Base64");
        goto done;
    }
    if (ctlen < 32 || ctlen % 16) {
        rc = undecryptable(pb, "is not a whole number of AES blocks");
        goto done;
    }
    /* The IV is the key's first 16 bytes; padding is WeChat's PKCS#7 to 32
     * bytes, which OpenSSL's 16-byte PKCS#7 would refuse, so it is off here
     * and checked below. */
    if (!EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), NULL, conf->aes_key, conf->aes_key) ||
        !EVP_CIPHER_CTX_set_padding(c, 0) ||
        !EVP_DecryptUpdate(c, pt, &n1, ct, (int)ctlen) || !EVP_DecryptFinal_ex(c, pt + n1, &n2)) {
        rc = undecryptable(pb, "could not be decrypted");
        goto done;
    }
    size_t len = (size_t)n1 + (size_t)n2;
    unsigned pad = len ? pt[len - 1] : 0;
    int pad_ok = pad >= 1 && pad <= 32 && pad <= len;
    for (size_t i = 1; pad_ok && i <= pad; i++) pad_ok = pt[len - i] == pad;
    if (!pad_ok) {
        rc = undecryptable(pb, "has bad padding");
        goto done;
    }
    len -= pad;
    if (len < 20) {
        rc = undecryptable(pb, "is too short");
        goto done;
    }
    uint32_t mlen = (uint32_t)pt[16] << 24 | (uint32_t)pt[17] << 16 | (uint32_t)pt[18] << 8 | pt[19];
    if (mlen > len - 20) {
        rc = undecryptable(pb, "has a message length beyond its end");
        goto done;
    }
    size_t idlen = len - 20 - mlen, want = strlen(conf->appid);
    if (idlen != want || CRYPTO_memcmp(pt + 20 + mlen, conf->appid, want) != 0) {
        rc = tl_problem_set(pb, 403, "appid-mismatch", "AppID mismatch", "Encrypt",
                            "the decrypted message is addressed to another AppID than the "
                            "configured one");
        goto done;
    }
    *msg = (tl_str_t){(const char *)pt + 20, mlen};
    *plain = pt;
    pt = NULL;
done:
    EVP_CIPHER_CTX_free(c);
    free(ct);
    if (pt) {
        OPENSSL_cleanse(pt, enc.len + 64);
        free(pt);
    }
    return rc;
}

/* ---- mapping ---------------------------------------------------------- */

static int create_time(tl_str_t s, int64_t now_ms, int64_t *ms, tl_problem_t *pb) {
    if (!all_digits(s)) return invalid(F_CreateTime, pb, "must be seconds since the epoch");
    int64_t v = s.len <= 12 ? strtoll(s.ptr, NULL, 10) * 1000 : INT64_MAX;
    if (v < now_ms - YEAR_MS || v > now_ms + YEAR_MS)
        return tl_problem_set(pb, 422, "implausible-time", "Implausible timestamp", "CreateTime",
                              "<CreateTime> (%.*s) is more than a year from the gateway clock "
                              "(%lld ms); it must be seconds since the epoch",
                              (int)s.len, s.ptr, (long long)now_ms);
    *ms = v;
    return 0;
}

/* The openid goes into the customer id and the idempotency key: WeChat's
 * are [A-Za-z0-9_-], and nothing else (no ':' in particular) is let in. */
static int openid_ok(tl_str_t s, tl_problem_t *pb) {
    for (size_t i = 0; i < s.len; i++)
        if (!is_alnum(s.ptr[i]) && s.ptr[i] != '_' && s.ptr[i] != '-')
            return invalid(F_FromUserName, pb, "may hold only letters, digits, '_' and '-'");
    return 0;
}

static int map_event(tl_str_t *f, tl_wechat_out_t *out, tl_event_t *ev, char *suffix,
                     tl_problem_t *pb) {
    int rc;
    tl_behavior_tracked_t *b = &ev->u.behavior;
    if ((rc = need(f, F_Event, pb))) return rc;
    ev->kind = TL_EV_BEHAVIOR_TRACKED;
    b->page = TL_STR("wechat-oa");
    b->device_id = TL_STR_NULL;
    if (is(f[F_Event], "subscribe")) {
        b->action = TL_STR("subscribe");
    } else if (is(f[F_Event], "unsubscribe")) {
        b->action = TL_STR("unsubscribe");
    } else if (is(f[F_Event], "CLICK")) {
        if ((rc = need(f, F_EventKey, pb)) ||
            (rc = own_printf(out, &b->action, pb, "click:%s", f[F_EventKey].ptr)))
            return rc;
    } else {
        return tl_problem_set(pb, 422, "unsupported-type", "Unsupported message type", "Event",
                              "Event \"%.*s\" is not supported; supported: subscribe, "
                              "unsubscribe, CLICK", (int)f[F_Event].len, f[F_Event].ptr);
    }
    size_t k = 0;
    for (; k < f[F_Event].len; k++) suffix[k] = ascii_lower(f[F_Event].ptr[k]);
    suffix[k] = 0;
    return 0;
}

static int map_message(const tl_wechat_conf_t *conf, const tl_adapter_ctx_t *ctx, tl_str_t *f,
                       tl_wechat_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    int rc;
    int64_t at = 0;
    char event_suffix[80] = "";
    if ((rc = need(f, F_ToUserName, pb)) || (rc = need(f, F_FromUserName, pb)) ||
        (rc = openid_ok(f[F_FromUserName], pb)) || (rc = need(f, F_CreateTime, pb)) ||
        (rc = create_time(f[F_CreateTime], ctx->now_ms, &at, pb)) || (rc = need(f, F_MsgType, pb)))
        return rc;

    tl_str_t type = f[F_MsgType];
    tl_message_received_t *m = &ev->u.message;
    tl_attachment_t *a = &out->base.attachments[0];
    memset(a, 0, sizeof *a);
    ev->kind = TL_EV_MESSAGE_RECEIVED;
    m->text = TL_STR("");
    m->attachments = (tl_attachments_t){out->base.attachments, 0};
    m->entry_point = m->device_id = TL_STR_NULL;

    if (is(type, "text")) {
        if ((rc = need(f, F_Content, pb))) return rc;
        m->text = f[F_Content];
    } else if (is(type, "image")) {
        if ((rc = need(f, F_PicUrl, pb))) return rc;
        if (!is_http_url(f[F_PicUrl])) return invalid(F_PicUrl, pb, "must be an http or https URL");
        a->url = f[F_PicUrl];
        a->mime = TL_STR("image/jpeg");
        m->attachments.n = 1;
    } else if (is(type, "voice")) {
        if ((rc = need(f, F_MediaId, pb)) || (rc = need(f, F_Format, pb))) return rc;
        char *fmt = (char *)f[F_Format].ptr;      /* our copy */
        for (size_t i = 0; i < f[F_Format].len; i++) {
            fmt[i] = ascii_lower(fmt[i]);
            if (!is_alnum(fmt[i])) return invalid(F_Format, pb, "must be letters and digits");
        }
        if ((rc = own_printf(out, &a->url, pb, "wechat-media:%s", f[F_MediaId].ptr)) ||
            (rc = own_printf(out, &a->mime, pb, "audio/%s", fmt)))
            return rc;
        m->attachments.n = 1;
        if (f[F_Recognition].ptr) m->text = f[F_Recognition];
    } else if (is(type, "video") || is(type, "shortvideo")) {
        if ((rc = need(f, F_MediaId, pb)) ||
            (rc = own_printf(out, &a->url, pb, "wechat-media:%s", f[F_MediaId].ptr)))
            return rc;
        a->mime = TL_STR("video/mp4");
        m->attachments.n = 1;
    } else if (is(type, "location")) {
        if ((rc = coordinate(f, F_Location_X, 90, pb)) ||
            (rc = coordinate(f, F_Location_Y, 180, pb)))
            return rc;
        if (f[F_Label].len)
            rc = own_printf(out, &m->text, pb, "\xF0\x9F\x93\x8D %s (%s,%s)", f[F_Label].ptr,
                            f[F_Location_X].ptr, f[F_Location_Y].ptr);
        else
            rc = own_printf(out, &m->text, pb, "\xF0\x9F\x93\x8D (%s,%s)", f[F_Location_X].ptr,
                            f[F_Location_Y].ptr);
        if (rc) return rc;
    } else if (is(type, "link")) {
        if ((rc = need(f, F_Title, pb)) || (rc = need(f, F_Url, pb))) return rc;
        if (!is_http_url(f[F_Url])) return invalid(F_Url, pb, "must be an http or https URL");
        if ((rc = own_printf(out, &m->text, pb, "%s\n%s\n%s", f[F_Title].ptr,
                             f[F_Description].ptr ? f[F_Description].ptr : "", f[F_Url].ptr)))
            return rc;
    } else if (is(type, "event")) {
        memset(&ev->u, 0, sizeof ev->u);
        if ((rc = map_event(f, out, ev, event_suffix, pb))) return rc;
    } else {
        return tl_problem_set(pb, 422, "unsupported-type", "Unsupported message type", "MsgType",
                              "MsgType \"%.*s\" is not supported; supported: text, image, voice, "
                              "video, shortvideo, location, link, event",
                              (int)type.len, type.ptr);
    }

    /* WeChat's dedup advice: MsgId for messages, FromUserName + CreateTime
     * for events (which have no MsgId); the event name keeps a subscribe and
     * a menu click in the same second apart. */
    char id[256];
    tl_str_t msgid;
    if (f[F_MsgId].len) {
        if (!all_digits(f[F_MsgId])) return invalid(F_MsgId, pb, "must be a decimal number");
        msgid = f[F_MsgId];
    } else if (event_suffix[0]) {
        int n = snprintf(id, sizeof id, "%s:%s:%s", f[F_FromUserName].ptr, f[F_CreateTime].ptr,
                         event_suffix);
        msgid = (tl_str_t){id, (size_t)n};
    } else {
        return need(f, F_MsgId, pb);
    }
    tl_str_t tenant = {conf->tenant_id, strlen(conf->tenant_id)};
    tl_adapter_envelope(ctx, &out->base, ev, tenant, TL_PLATFORM_WECHAT, f[F_FromUserName], msgid, at);
    return 0;
}

/* ---- entry points ----------------------------------------------------- */

int tl_wechat_parse(const tl_wechat_conf_t *conf, const tl_adapter_ctx_t *ctx,
                    const tl_wechat_query_t *q, const char *body, size_t len,
                    tl_wechat_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    int rc, safe;
    xmlDoc *doc = NULL;
    unsigned char *plain = NULL;
    tl_str_t f[F__COUNT];
    assert(conf && conf->token && ctx && q && out && ev && pb);
    memset(ev, 0, sizeof *ev);

    if (!q->encrypt_type || !*q->encrypt_type || strcmp(q->encrypt_type, "raw") == 0)
        safe = 0;
    else if (strcmp(q->encrypt_type, "aes") == 0)
        safe = 1;
    else
        return tl_problem_set(pb, 400, "invalid-param", "Invalid query parameter", "encrypt_type",
                              "\"encrypt_type\" must be \"aes\" or \"raw\"");
    if (safe && !conf->safe)
        return tl_problem_set(pb, 400, "encryption-not-configured", "Encryption not configured",
                              "encrypt_type", "the account is in safe mode at WeChat, but no "
                              "EncodingAESKey and AppID are configured here");
    /* The plain signature does not cover the body: accepting plain requests
     * on an account set up for safe mode would let a replayed query carry a
     * forged body past the encryption the operator asked for. */
    if (!safe && conf->safe)
        return tl_problem_set(pb, 403, "encryption-required", "Encryption required",
                              "encrypt_type", "the account is configured for safe mode; the "
                              "request must have encrypt_type=aes and msg_signature");
    if (safe) {
        if ((rc = need_param(q->msg_signature, "msg_signature", pb)) ||
            (rc = need_param(q->timestamp, "timestamp", pb)) ||
            (rc = need_param(q->nonce, "nonce", pb)))
            return rc;
    } else if ((rc = tl_wechat_verify(conf, q->signature, q->timestamp, q->nonce, pb))) {
        return rc;
    }
    tl_str_t ts = {q->timestamp, strlen(q->timestamp)};
    if (!all_digits(ts) || ts.len > 12 ||
        llabs(strtoll(ts.ptr, NULL, 10) * 1000 - ctx->now_ms) > TL_WECHAT_SKEW_S * 1000LL)
        return tl_problem_set(pb, 403, "stale-timestamp", "Stale timestamp", "timestamp",
                              "\"timestamp\" is more than %d s from the gateway clock; a signed "
                              "request is only good for a short while", TL_WECHAT_SKEW_S);

    size_t cap = TL_WECHAT_BODY_MAX;
    if (ctx->max_body > 0 && (uint64_t)ctx->max_body < cap) cap = (size_t)ctx->max_body;
    if (len > cap)
        return tl_problem_set(pb, 413, "body-too-large", "Body too large", NULL,
                              "the body is %zu bytes; the limit is %zu", len, cap);
    if ((rc = parse_xml(body, len, &doc, pb))) return rc;

    if (safe) {
        tl_str_t msg = TL_STR_NULL;
        char want[SIG_HEXLEN + 1];
        rc = collect(xmlDocGetRootElement(doc), WANT(F_Encrypt), out, f, pb);
        xmlFreeDoc(doc);
        doc = NULL;
        if (rc || (rc = need(f, F_Encrypt, pb))) return rc;
        const char *parts[] = {conf->token, q->timestamp, q->nonce, f[F_Encrypt].ptr};
        if (sorted_sha1(parts, 4, want)) return nomem(pb);
        if (!sig_matches(want, q->msg_signature))
            return tl_problem_set(pb, 403, "bad-signature", "Signature mismatch", "msg_signature",
                                  "\"msg_signature\" is not the SHA-1 of the configured token, "
                                  "\"timestamp\", \"nonce\" and <Encrypt>");
        if ((rc = decrypt(conf, f[F_Encrypt], &plain, &msg, pb))) return rc;
        rc = parse_xml(msg.ptr, msg.len, &doc, pb);
        OPENSSL_cleanse(plain, msg.len + 20);
        free(plain);
        if (rc) return rc;
    }
    rc = collect(xmlDocGetRootElement(doc), WANT_MESSAGE, out, f, pb);
    xmlFreeDoc(doc);
    if (rc) return rc;
    return map_message(conf, ctx, f, out, ev, pb);
}

int tl_wechat_conf_init(tl_wechat_conf_t *conf, const char *tenant_id, const char *token,
                        const char *aes_key, const char *appid, char *err, size_t errlen) {
    tl_wechat_conf_t c;
    memset(&c, 0, sizeof c);
    size_t n = token ? strlen(token) : 0;
    int ok = n >= 3 && n <= 32;
    for (size_t i = 0; ok && i < n; i++) ok = is_alnum(token[i]);
    if (!tenant_id || !*tenant_id) {
        snprintf(err, errlen, "WeChat: no tenant for the account");
        return TL_ECONFIG;
    }
    if (!ok) {
        snprintf(err, errlen, "WeChat: the token (wechat-token) must be 3 to 32 letters or digits, "
                              "as set in the WeChat console");
        return TL_ECONFIG;
    }
    c.tenant_id = tenant_id;
    c.token = token;
    if (aes_key && *aes_key) {
        char padded[45];
        size_t klen = 0;
        unsigned char key[48];
        n = strlen(aes_key);
        ok = n == 43;
        for (size_t i = 0; ok && i < n; i++) ok = is_alnum(aes_key[i]);
        if (ok) {
            memcpy(padded, aes_key, 43);
            memcpy(padded + 43, "=", 2);
            ok = b64_decode(padded, 44, key, &klen) == 0 && klen == 32;
        }
        if (!ok) {
            OPENSSL_cleanse(key, sizeof key);
            snprintf(err, errlen, "WeChat: the EncodingAESKey (wechat-aes-key) must be the 43 "
                                  "letters and digits shown in the WeChat console");
            return TL_ECONFIG;
        }
        if (!appid || !*appid) {
            OPENSSL_cleanse(key, sizeof key);
            snprintf(err, errlen, "WeChat: safe mode needs the AppID (wechat-appid) as well as the "
                                  "EncodingAESKey");
            return TL_ECONFIG;
        }
        memcpy(c.aes_key, key, 32);
        OPENSSL_cleanse(key, sizeof key);
        c.safe = 1;
        c.appid = appid;
    }
    xmlInitParser();
    *conf = c;
    OPENSSL_cleanse(&c, sizeof c);
    return 0;
}

void tl_wechat_conf_close(tl_wechat_conf_t *conf) {
    OPENSSL_cleanse(conf, sizeof *conf);
}

void tl_wechat_out_close(tl_wechat_out_t *out) {
    for (int i = 0; i < out->n_owned; i++) free(out->owned[i]);
    out->n_owned = 0;
    tl_adapter_out_close(&out->base);
}
