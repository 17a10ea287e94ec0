/*
 * phone.h -- the call-centre adapter: ASR transcript segments at
 * POST /v1/ingest/phone.
 *
 * The call centre's speech recogniser posts one segment per request:
 *
 *   {"tenant_id": "acme", "call_id": "c-20231114-0042", "segment_id": "3",
 *    "caller_number": "+86 138 0013 8000", "speaker": "customer",
 *    "start_ms": 12000, "end_ms": 15500, "text": "...", "confidence": 0.93,
 *    "call_started_at": 1699999990000}
 *
 * `seq` (integer) may stand in for `segment_id`.  Produces one
 * TranscriptSegment: platform PHONE, platform_user_id = caller_number
 * normalised to E.164, so the deterministic customer id is one per number.
 * Linking that number to the customer whose *verified* phone it is, is not
 * the adapter's business: it is an IdentityLinked event (evidence
 * VERIFIED_PHONE), applied by the fold like any other link.
 * Idempotency key "phone:<call_id>:<segment id>"; occurred_at =
 * call_started_at + start_ms.
 *
 * E.164.  Spaces, '-', '.', '(' and ')' are dropped; then
 *   "+<digits>"      is taken as international;
 *   "00<digits>"     is international too ("00" is the international prefix
 *                    in China and most of the world);
 *   anything else    is national: one leading '0' (trunk prefix) is dropped
 *                    and the configured country code put in front.
 * The result is '+', a first digit 1-9 and 7 to 15 digits in all.  Numbers
 * in +86 must also look Chinese: a mobile (11 digits, "1[3-9]..."), or a
 * fixed line with its area code (9 to 11 digits, "10..." for Beijing or
 * "[2-9]...").  So with the default country 86, "13800138000",
 * "+86 138 0013 8000", "0086 13800138000" and "013800138000" are all
 * +8613800138000, and "(010) 1234-5678" is +861012345678.
 */
#ifndef TL_PHONE_H
#define TL_PHONE_H

#include <stddef.h>

#include "adapter.h"

#define TL_PHONE_TEXT_MAX (16 * 1024)   /* text, bytes */
#define TL_PHONE_E164_MAX 16            /* '+' and at most 15 digits */
#define TL_PHONE_NUMBER_MAX 32          /* caller_number as sent, bytes */
#define TL_PHONE_CALL_ID_MAX 64         /* the key must fit the dedup cache */
#define TL_PHONE_SEGMENT_ID_MAX 32
#define TL_PHONE_CALL_MAX_MS (24LL * 3600 * 1000)  /* start_ms, end_ms */

/* The call centre's settings. */
typedef struct tl_phone_conf {
    char country_code[4];           /* default country calling code, digits: "86" */
} tl_phone_conf_t;

/* What a parsed event points into.  Caller-allocated, zeroed before
 * tl_phone_parse; lives as long as the event; tl_phone_out_close frees it. */
typedef struct tl_phone_out {
    tl_adapter_out_t base;          /* body tree, customer id, key */
    char e164[TL_PHONE_E164_MAX + 1];
    char message_id[TL_PHONE_CALL_ID_MAX + TL_PHONE_SEGMENT_ID_MAX + 2];  /* call:segment */
} tl_phone_out_t;

/* Checks and stores the default country calling code: 1 to 3 digits, the
 * first not 0, with or without a leading '+' ("86", "+44").  Returns 0, or
 * TL_ECONFIG with a sentence naming the flag in err (cut to errlen); on
 * failure conf is untouched.  Any thread. */
int tl_phone_conf_init(tl_phone_conf_t *conf, const char *country_code, char *err, size_t errlen);

/* Normalises the number s (len bytes) to E.164 as described above, into out
 * (NUL-terminated).  Returns 0, or TL_EINVAL and points *why at a static
 * sentence saying what is wrong.  Any thread. */
int tl_phone_e164(const tl_phone_conf_t *conf, const char *s, size_t len,
                  char out[TL_PHONE_E164_MAX + 1], const char **why);

/* Parses body into ev (strings point into out).  Returns 0, or a status
 * with pb filled:
 *   400  malformed-json, invalid-utf8
 *   422  missing-field / invalid-field / field-too-long / out-of-range /
 *        implausible-time naming the field; invalid-field "caller_number"
 *        for a number that cannot be made E.164
 * Whatever the result, call tl_phone_out_close(out).  Any thread. */
int tl_phone_parse(const tl_phone_conf_t *conf, const tl_adapter_ctx_t *ctx, const char *body,
                   size_t len, tl_phone_out_t *out, tl_event_t *ev, tl_problem_t *pb);

/* Frees what out holds.  Safe on a zeroed or already-closed out. */
void tl_phone_out_close(tl_phone_out_t *out);

#endif
