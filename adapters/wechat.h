/*
 * wechat.h -- the WeChat Official Account adapter: WeChat's own server
 * protocol at GET|POST /v1/ingest/wechat.
 *
 * WeChat does not speak threadline's JSON: it calls the account's server URL
 * with a signed query string and an XML body, and expects the plain text
 * `success` within five seconds, resending a message up to three times when
 * it does not get it.  So this adapter has a shape of its own:
 *
 *   GET  ?signature&timestamp&nonce&echostr      URL verification:
 *        tl_wechat_echo() checks the signature and gives back echostr,
 *        which the server answers as text/plain.
 *   POST ?signature&timestamp&nonce&openid       plain mode
 *   POST ...&encrypt_type=aes&msg_signature=...  safe (encrypted) mode
 *        tl_wechat_parse() checks the signature, decrypts in safe mode,
 *        parses the XML and fills one canonical event.
 *
 * Signatures.  signature = hex SHA-1 of token, timestamp and nonce sorted
 * byte-wise and concatenated; msg_signature = the same over token,
 * timestamp, nonce and the <Encrypt> text.  Compared in constant time.  In
 * plain mode the signature does not cover the body, so a signed query seen
 * once could carry any body: POSTs whose timestamp is more than
 * TL_WECHAT_SKEW_S from the gateway clock are refused to bound that window,
 * and safe mode (which signs the ciphertext) is the real answer.
 *
 * Safe mode.  AES key = Base64(EncodingAESKey + "="), 32 bytes; IV = the
 * key's first 16 bytes; AES-256-CBC; PKCS#7 padding to 32-byte blocks.  The
 * decrypted bytes are:
 *
 *   OFFSET  SIZE  FIELD
 *   0       16    random
 *   16      4     msg_len, unsigned, network byte order
 *   20      n     msg: the message XML, as in plain mode
 *   20+n    rest  appid of the account; must equal the configured appid
 *
 * XML.  Parsed with libxml2 in UTF-8, no network, no entity substitution,
 * and any document with a DOCTYPE is refused the moment the parser meets it:
 * with no DTD there are no entities to expand, internal (billion laughs) or
 * external (SYSTEM "file:///etc/passwd").  Each field element must hold text
 * only; unknown elements are ignored, because WeChat adds fields over time.
 *
 * Mapping (platform WECHAT, platform_user_id = FromUserName, the openid):
 *   text        MessageReceived, text = Content
 *   image       MessageReceived, text "", attachment {PicUrl, image/jpeg, 0}
 *   voice       MessageReceived, text = Recognition ("" if absent),
 *               attachment {"wechat-media:<MediaId>", "audio/<Format>", 0}
 *   video, shortvideo
 *               MessageReceived, text "", attachment
 *               {"wechat-media:<MediaId>", "video/mp4", 0}
 *   location    MessageReceived, text "📍 <Label> (<Location_X>,<Location_Y>)"
 *               ("📍 (<x>,<y>)" without a Label)
 *   link        MessageReceived, text "<Title>\n<Description>\n<Url>"
 *   event       BehaviorTracked, page "wechat-oa", action "subscribe",
 *               "unsubscribe" or "click:<EventKey>"
 * Idempotency key: "wechat:<MsgId>"; an event without MsgId gets
 * "wechat:<FromUserName>:<CreateTime>:<event, lower case>", the pair WeChat
 * itself recommends for deduplicating events.  occurred_at = CreateTime
 * (seconds) * 1000, within a year of the gateway clock.
 */
#ifndef TL_WECHAT_H
#define TL_WECHAT_H

#include <stddef.h>

#include "adapter.h"

#define TL_WECHAT_BODY_MAX (64 * 1024)   /* largest POST body, either mode */
#define TL_WECHAT_TEXT_MAX (16 * 1024)   /* Content and Recognition, bytes */
#define TL_WECHAT_SKEW_S 300              /* POST timestamp vs gateway clock */
#define TL_WECHAT_OWNED_MAX 32

/* The account's settings.  Strings are borrowed and must outlive the conf;
 * the AES key is decoded once, here, rather than per request. */
typedef struct tl_wechat_conf {
    const char *tenant_id;          /* tenant the account's customers belong to */
    const char *token;              /* the Token set in the WeChat console */
    const char *appid;              /* the account's AppID; NULL unless safe */
    int safe;                       /* 1 when an EncodingAESKey is set */
    unsigned char aes_key[32];
} tl_wechat_conf_t;

/* The query parameters of a WeChat call, URL-decoded and NUL-terminated;
 * NULL (or "") for absent ones.  Borrowed. */
typedef struct tl_wechat_query {
    const char *signature;
    const char *timestamp;
    const char *nonce;
    const char *echostr;            /* GET only */
    const char *openid;             /* POST; not signed, so not used: FromUserName is */
    const char *encrypt_type;       /* "aes" selects safe mode; absent or "raw": plain */
    const char *msg_signature;      /* safe mode */
} tl_wechat_query_t;

/* What a parsed event points into.  Caller-allocated, zeroed before
 * tl_wechat_parse; lives as long as the event; tl_wechat_out_close frees it. */
typedef struct tl_wechat_out {
    tl_adapter_out_t base;          /* customer id, idempotency key, attachments */
    char *owned[TL_WECHAT_OWNED_MAX];   /* field texts and derived strings */
    int n_owned;
} tl_wechat_out_t;

/* Checks and stores the account's settings.  aes_key (43 characters, the
 * EncodingAESKey) and appid are both NULL/"" for plain mode, or both set for
 * safe mode.  Also initialises libxml2, so call it on the main thread before
 * other threads parse.  Returns 0, or TL_ECONFIG with a sentence in err
 * (cut to errlen); on failure conf is untouched. */
int tl_wechat_conf_init(tl_wechat_conf_t *conf, const char *tenant_id, const char *token,
                        const char *aes_key, const char *appid, char *err, size_t errlen);

/* Wipes the decoded AES key.  Cannot fail; safe on a zeroed conf. */
void tl_wechat_conf_close(tl_wechat_conf_t *conf);

/* Checks signature = SHA-1(sort(token, timestamp, nonce)).  Returns 0, or
 * fills pb and returns its status: 400 "missing-param" naming the absent
 * parameter, 400 "invalid-param" for an over-long one, 403 "bad-signature"
 * naming "signature".  Any thread. */
int tl_wechat_verify(const tl_wechat_conf_t *conf, const char *signature,
                     const char *timestamp, const char *nonce, tl_problem_t *pb);

/* URL verification (GET).  On success returns 0 and points *echo at
 * q->echostr, which the server answers with 200 text/plain.  Errors as
 * tl_wechat_verify, and 400 for a missing echostr or one with characters
 * outside [A-Za-z0-9+/=._-] (it is echoed back, so nothing else may pass).
 * Any thread. */
int tl_wechat_echo(const tl_wechat_conf_t *conf, const tl_wechat_query_t *q, tl_str_t *echo,
                   tl_problem_t *pb);

/* A message or event (POST).  Checks the signature (plain mode) or
 * msg_signature and the appid (safe mode), parses body and fills ev, whose
 * strings point into out and conf.  Returns 0, or a status with pb filled:
 *   400  missing-param / invalid-param (query), malformed-xml,
 *        doctype-refused, invalid-utf8, undecryptable (safe mode: the
 *        Encrypt text is not a valid ciphertext for the configured key),
 *        encryption-not-configured (encrypt_type=aes on a plain account)
 *   403  bad-signature ("signature" or "msg_signature"), stale-timestamp
 *        (query timestamp over TL_WECHAT_SKEW_S away), appid-mismatch,
 *        encryption-required (a plain POST to an account set up for safe
 *        mode: its unsigned body is exactly what safe mode guards against)
 *   413  body-too-large (over TL_WECHAT_BODY_MAX or ctx->max_body)
 *   422  missing-field / invalid-field / field-too-long / implausible-time
 *        naming the XML element; unsupported-type naming MsgType or Event
 *   503  out-of-memory (retry)
 * Whatever the result, call tl_wechat_out_close(out).  Any thread. */
int tl_wechat_parse(const tl_wechat_conf_t *conf, const tl_adapter_ctx_t *ctx,
                    const tl_wechat_query_t *q, const char *body, size_t len,
                    tl_wechat_out_t *out, tl_event_t *ev, tl_problem_t *pb);

/* Frees what out holds.  Safe on a zeroed or already-closed out. */
void tl_wechat_out_close(tl_wechat_out_t *out);

#endif
