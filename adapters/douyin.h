/*
 * douyin.h -- the Douyin (抖音) private-message adapter: Douyin Open
 * Platform webhooks at POST /v1/ingest/douyin.
 *
 * Douyin POSTs one JSON event per request to the URL configured under
 * 开发配置 → Webhooks, gives up on a connection after 5 s and resends up to
 * three times.  The adapter reads the private-message event `im_receive_msg`
 * (a customer wrote to the authorised business account) and Douyin's URL
 * check `verify_webhook`:
 *
 *   {"event": "im_receive_msg", "client_key": "...",
 *    "from_user_id": "<customer open_id>", "to_user_id": "<account open_id>",
 *    "log_id": "...",
 *    "content": {"conversation_short_id": "...", "server_message_id": "...",
 *                "conversation_type": 1, "message_type": "text",
 *                "text": "...", "create_time": 1699999999000, ...}}
 *
 *   {"event": "verify_webhook", "client_key": "", "content": {"challenge": 12345}}
 *
 * `content` arrives as an object or, for some products, as a string holding
 * the JSON object; both are read.
 *
 * Signature.  Header X-Douyin-Signature = lower-case hex SHA-1 of the app
 * secret immediately followed by the raw body bytes (no separator; not an
 * HMAC).  It is checked before the body is parsed, in constant time, and
 * upper-case hex is accepted.  It covers no timestamp, so a captured request
 * can be replayed: the replay carries the same server_message_id, hence the
 * same idempotency key, and the fold applies it once.
 *
 * Mapping (platform DOUYIN, platform_user_id = from_user_id, the sender's
 * open_id for this app):
 *   text                      MessageReceived, text = content.text
 *   image, user_local_image   MessageReceived, text "", attachment {url
 *                             "douyin-im:<conversation_short_id>:<server_message_id>",
 *                             mime TL_DOUYIN_IMAGE_MIME, bytes 0}: Douyin sends
 *                             neither an image URL nor its format; the two ids
 *                             are what its message-resources API takes (Base64
 *                             ids never hold ':').
 * Idempotency key "douyin:<server_message_id>".  occurred_at =
 * content.create_time, read as milliseconds (Douyin documents 13 digits) or,
 * below 10^11, as seconds; either way within a year of the gateway clock.
 */
#ifndef TL_DOUYIN_H
#define TL_DOUYIN_H

#include <stddef.h>

#include "adapter.h"

#define TL_DOUYIN_BODY_MAX (64 * 1024)  /* largest webhook body */
#define TL_DOUYIN_TEXT_MAX (16 * 1024)  /* content.text, bytes */
#define TL_DOUYIN_MSGID_MAX 119         /* server_message_id: key fits the dedup cache */
#define TL_DOUYIN_CONVID_MAX 128        /* conversation_short_id */
#define TL_DOUYIN_SECRET_MAX 256
#define TL_DOUYIN_SIG_HEADER "X-Douyin-Signature"
#define TL_DOUYIN_IMAGE_MIME "image/*"  /* an image of a format Douyin does not say */

/* tl_douyin_parse's answer to verify_webhook: not an event; reply 200 with
 * out->reply as application/json. */
#define TL_DOUYIN_CHALLENGE 200

/* The app's settings.  Strings are borrowed and must outlive the conf; it
 * holds nothing to free. */
typedef struct tl_douyin_conf {
    const char *tenant_id;          /* tenant the app's customers belong to */
    const char *secret;             /* signs X-Douyin-Signature */
    size_t secret_len;
} tl_douyin_conf_t;

/* What a parsed event points into.  Caller-allocated, zeroed before
 * tl_douyin_parse; lives as long as the event; tl_douyin_out_close frees
 * it. */
typedef struct tl_douyin_out {
    tl_adapter_out_t base;          /* body tree, customer id, key, attachments */
    json_t *content;                /* owned: content decoded from its string form */
    char url[TL_DOUYIN_CONVID_MAX + TL_DOUYIN_MSGID_MAX + 16];  /* image "douyin-im:..." */
    char reply[192];                /* verify_webhook: {"challenge":...} */
    size_t reply_len;
} tl_douyin_out_t;

/* Checks and stores the settings: tenant 1-64 bytes, secret 1-256 bytes.
 * Returns 0, or TL_ECONFIG with a sentence naming the flag in err (cut to
 * errlen); on failure conf is untouched.  Any thread. */
int tl_douyin_conf_init(tl_douyin_conf_t *conf, const char *tenant_id, const char *secret,
                        char *err, size_t errlen);

/* Checks `signature` (the X-Douyin-Signature value; ptr NULL when the header
 * is absent) over body, then parses body.  Returns
 *   0                    ev filled; its strings point into out, conf, ctx
 *   TL_DOUYIN_CHALLENGE  verify_webhook: answer 200 with out->reply
 *                        (out->reply_len bytes of JSON); ev is not an event
 *   4xx                  pb filled:
 *     400  malformed-json, invalid-utf8
 *     403  missing-signature / bad-signature, naming X-Douyin-Signature
 *     413  body-too-large (over TL_DOUYIN_BODY_MAX or ctx->max_body)
 *     422  missing-field / invalid-field / field-too-long / out-of-range /
 *          implausible-time naming the field ("content.text");
 *          unsupported-type naming "event", "content.message_type" or
 *          "content.conversation_type"
 *     503  out-of-memory (retry)
 * Whatever the result, call tl_douyin_out_close(out).  Any thread. */
int tl_douyin_parse(const tl_douyin_conf_t *conf, const tl_adapter_ctx_t *ctx,
                    tl_str_t signature, const char *body, size_t len,
                    tl_douyin_out_t *out, tl_event_t *ev, tl_problem_t *pb);

/* Frees what out holds.  Safe on a zeroed or already-closed out. */
void tl_douyin_out_close(tl_douyin_out_t *out);

#endif
