/* fuzz_wechat.c -- adapters/wechat.c: WeChat's XML POSTs, plain and safe.
 *
 * The first byte picks how the rest of the input reaches the adapter; the
 * harness makes every signature and the encryption itself, so that the
 * parsers behind them are what gets fuzzed:
 *
 *   0  plain mode: the rest is the XML body, the query is signed
 *   1  safe mode: the rest is the ciphertext, Base64'd into <Encrypt>
 *   2  safe mode: the rest is the decrypted layout (random, msg_len, msg,
 *      appid), padded and encrypted with the account's key
 *   3  safe mode: the rest is the message XML, framed with a good msg_len
 *      and appid, then encrypted
 *
 * In safe mode msg_signature is computed over the <Encrypt> text. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fuzz.h"
#include "wechat.h"

#define TOKEN "threadline"
#define NONCE "415311942"
#define AES_KEY "kWxPWkWpA1v7bH9QzNqT3sY2dRfL8gJcE4mUoV6iX0a"
#define APPID "wx3f1e2d4c5b6a7980"
#define OPENID "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tl_wechat_conf_t plain_conf, safe_conf;

static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* WeChat's signature: SHA-1 of the parts sorted byte-wise, concatenated. */
static void sign(const char **parts, int n, char hex[41]) {
    const void *p[4];
    size_t len[4];
    qsort(parts, (size_t)n, sizeof *parts, cmp_strp);
    for (int i = 0; i < n; i++) {
        p[i] = parts[i];
        len[i] = strlen(parts[i]);
    }
    fuzz_sha1_hex(p, len, n, hex);
}

/* AES-256-CBC of pt (a multiple of 16 bytes) with the safe account's key,
 * IV its first 16 bytes, into ct.  Returns the length. */
static size_t encrypt(const unsigned char *pt, size_t n, unsigned char *ct) {
    int l1 = 0, l2 = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, safe_conf.aes_key,
                                     safe_conf.aes_key) &&
             EVP_CIPHER_CTX_set_padding(c, 0) &&
             EVP_EncryptUpdate(c, ct, &l1, pt, (int)n) && EVP_EncryptFinal_ex(c, ct + l1, &l2);
    EVP_CIPHER_CTX_free(c);
    if (!ok) abort();
    return (size_t)l1 + (size_t)l2;
}

/* pt padded in place to 32-byte blocks (WeChat's PKCS#7), encrypted.
 * pt has room for 32 more bytes; ct for n + 32.  Returns the length. */
static size_t pad_encrypt(unsigned char *pt, size_t n, unsigned char *ct) {
    size_t pad = 32 - n % 32;
    memset(pt + n, (int)pad, pad);
    return encrypt(pt, n + pad, ct);
}

static void parse(const tl_wechat_conf_t *conf, const tl_wechat_query_t *q, const char *body,
                  size_t len) {
    tl_wechat_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    if (tl_wechat_parse(conf, &fuzz_ctx, q, body, len, &out, &ev, &pb) == 0)
        fuzz_check_event(&ev);
    tl_wechat_out_close(&out);
}

/* Safe mode: wraps the ciphertext ct in the envelope WeChat POSTs and
 * signs it. */
static void parse_safe(const unsigned char *ct, size_t ctlen) {
    static const char head[] = "<xml><ToUserName><![CDATA[gh_fuzz]]></ToUserName>"
                               "<Encrypt><![CDATA[";
    static const char tail[] = "]]></Encrypt></xml>";
    size_t b64cap = 4 * ((ctlen + 2) / 3) + 1;
    char *body = malloc(sizeof head - 1 + b64cap + sizeof tail);
    if (!body) abort();
    memcpy(body, head, sizeof head - 1);
    char *enc = body + sizeof head - 1;
    int b64len = EVP_EncodeBlock((unsigned char *)enc, ct, (int)ctlen);
    enc[b64len] = 0;
    char msg_sig[41];
    const char *parts[] = {TOKEN, FUZZ_NOW_S, NONCE, enc};
    sign(parts, 4, msg_sig);
    memcpy(enc + b64len, tail, sizeof tail);

    tl_wechat_query_t q = {.signature = "", .timestamp = FUZZ_NOW_S, .nonce = NONCE,
                           .openid = OPENID, .encrypt_type = "aes", .msg_signature = msg_sig};
    parse(&safe_conf, &q, body, strlen(body));
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    char err[256];
    if (!ready) {
        if (tl_wechat_conf_init(&plain_conf, "acme", TOKEN, NULL, NULL, err, sizeof err) ||
            tl_wechat_conf_init(&safe_conf, "acme", TOKEN, AES_KEY, APPID, err, sizeof err))
            abort();
        ready = 1;
    }
    if (size == 0 || size > TL_WECHAT_BODY_MAX / 2) return 0;
    int mode = data[0] & 3;
    data++;
    size--;

    if (mode == 0) {
        char sig[41];
        const char *parts[] = {TOKEN, FUZZ_NOW_S, NONCE};
        sign(parts, 3, sig);
        tl_wechat_query_t q = {.signature = sig, .timestamp = FUZZ_NOW_S, .nonce = NONCE,
                               .openid = OPENID};
        parse(&plain_conf, &q, (const char *)data, size);
        return 0;
    }
    if (mode == 1) {
        parse_safe(data, size);
        return 0;
    }

    size_t n = mode == 2 ? size : 20 + size + sizeof APPID - 1;
    unsigned char *pt = malloc(n + 32), *ct = malloc(n + 64);
    if (!pt || !ct) abort();
    if (mode == 2) {
        memcpy(pt, data, size);
    } else {
        memcpy(pt, "0123456789abcdef", 16);
        pt[16] = (unsigned char)(size >> 24);
        pt[17] = (unsigned char)(size >> 16);
        pt[18] = (unsigned char)(size >> 8);
        pt[19] = (unsigned char)size;
        memcpy(pt + 20, data, size);
        memcpy(pt + 20 + size, APPID, sizeof APPID - 1);
    }
    parse_safe(ct, pad_encrypt(pt, n, ct));
    free(pt);
    free(ct);
    return 0;
}
