/*
 * phone.c -- call-centre transcript adapter (see phone.h).
 *
 * The caller's number is the customer's identity on this channel, so it is
 * normalised before anything is derived from it: "+86 138-0013-8000" and
 * "013800138000" must give the same platform_user_id, hence the same
 * customer, or one caller would become two customers.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "phone.h"

#define E164_MIN_DIGITS 7
#define E164_MAX_DIGITS 15

int tl_phone_conf_init(tl_phone_conf_t *conf, const char *country_code, char *err, size_t errlen) {
    const char *cc = country_code ? country_code : "";
    if (*cc == '+') cc++;
    size_t n = strlen(cc);
    int ok = n >= 1 && n <= 3 && cc[0] != '0';
    for (size_t i = 0; ok && i < n; i++) ok = cc[i] >= '0' && cc[i] <= '9';
    if (!ok) {
        snprintf(err, errlen, "phone: the default country code (phone-country-code) must be 1 to 3 "
                              "digits, not starting with 0, such as 86");
        return TL_ECONFIG;
    }
    memcpy(conf->country_code, cc, n + 1);
    return 0;
}

/* Digits after +86 (the national significant number) that China uses: a
 * mobile, or a fixed line with its area code. */
static int chinese(const char *nsn, size_t n) {
    if (nsn[0] == '1')
        return (n == 11 && nsn[1] >= '3' && nsn[1] <= '9') || (n == 10 && nsn[1] == '0');
    return nsn[0] >= '2' && nsn[0] <= '9' && n >= 9 && n <= 11;
}

int tl_phone_e164(const tl_phone_conf_t *conf, const char *s, size_t len,
                  char out[TL_PHONE_E164_MAX + 1], const char **why) {
    char digits[TL_PHONE_NUMBER_MAX + 1];
    size_t nd = 0;
    int plus = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (nd == TL_PHONE_NUMBER_MAX) { *why = "is too long"; return TL_EINVAL; }
            digits[nd++] = c;
        } else if (c == '+' && nd == 0 && !plus) {
            plus = 1;
        } else if (!strchr(" -.()", c) || c == 0) {
            *why = "may hold only digits, a leading '+', spaces and - . ( )";
            return TL_EINVAL;
        }
    }
    digits[nd] = 0;
    if (nd == 0) { *why = "has no digits"; return TL_EINVAL; }

    char intl[TL_PHONE_NUMBER_MAX + 8];
    if (plus) {
        memcpy(intl, digits, nd + 1);
    } else if (nd >= 2 && digits[0] == '0' && digits[1] == '0') {
        memcpy(intl, digits + 2, nd - 1);
    } else {
        const char *national = digits[0] == '0' ? digits + 1 : digits;
        snprintf(intl, sizeof intl, "%s%s", conf->country_code, national);
    }
    size_t n = strlen(intl);
    if (n == 0 || intl[0] == '0') {
        *why = "has no country code (it cannot start with 0 after the international prefix)";
        return TL_EINVAL;
    }
    if (n < E164_MIN_DIGITS) { *why = "is too short for a phone number"; return TL_EINVAL; }
    if (n > E164_MAX_DIGITS) { *why = "is longer than the 15 digits E.164 allows"; return TL_EINVAL; }
    if (intl[0] == '8' && intl[1] == '6' && !chinese(intl + 2, n - 2)) {
        *why = "is neither a Chinese mobile (11 digits, 13x-19x) nor a fixed line with its "
               "area code";
        return TL_EINVAL;
    }
    out[0] = '+';
    memcpy(out + 1, intl, n + 1);
    return 0;
}

/* call_id and segment_id become the idempotency key "phone:<call>:<segment>",
 * so the call id may not hold ':' (the key would be ambiguous), and neither
 * may hold control characters. */
static int key_part(tl_str_t s, const char *name, int colon_ok, tl_problem_t *pb) {
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < 0x20 || c == 0x7f || (c == ':' && !colon_ok))
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                                  "\"%s\" may not hold control characters%s", name,
                                  colon_ok ? "" : " or ':'");
    }
    return 0;
}

/* segment_id (string or integer), else seq (integer), as text in buf. */
static int segment(json_t *o, char *buf, size_t cap, tl_str_t *seg, tl_problem_t *pb) {
    const char *name = "segment_id";
    json_t *v = json_object_get(o, name);
    int is_seq = !v || json_is_null(v);
    if (is_seq) {
        name = "seq";
        v = json_object_get(o, name);
        if (!v || json_is_null(v))
            return tl_problem_set(pb, 422, "missing-field", "Missing field", "segment_id",
                                  "\"segment_id\" (or \"seq\") is required");
    }
    if (json_is_integer(v)) {
        int64_t x;
        int rc = tl_adapter_req_int(o, name, 0, INT64_MAX, &x, pb);
        if (rc) return rc;
        int n = snprintf(buf, cap, "%lld", (long long)x);
        *seg = (tl_str_t){buf, (size_t)n};
        return 0;
    }
    if (is_seq || !json_is_string(v))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name, "\"%s\" must be %s",
                              name, is_seq ? "an integer" : "a string or an integer");
    int rc = tl_adapter_req_str(o, name, TL_PHONE_SEGMENT_ID_MAX, seg, pb);
    return rc ? rc : key_part(*seg, name, 1, pb);
}

static int speaker(json_t *o, tl_speaker_t *sp, tl_problem_t *pb) {
    static const char *const names[] = {"customer", "agent", "unknown"};
    tl_str_t s;
    int rc = tl_adapter_req_str(o, "speaker", 16, &s, pb);
    if (rc) return rc;
    for (int i = 0; i < 3; i++)
        if (s.len == strlen(names[i]) && strncasecmp(s.ptr, names[i], s.len) == 0) {
            *sp = (tl_speaker_t)i;
            return 0;
        }
    return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "speaker",
                          "\"speaker\" must be \"customer\", \"agent\" or \"unknown\"");
}

static int confidence(json_t *o, float *c, tl_problem_t *pb) {
    json_t *v = json_object_get(o, "confidence");
    if (!v || json_is_null(v))
        return tl_problem_set(pb, 422, "missing-field", "Missing field", "confidence",
                              "\"confidence\" is required");
    if (!json_is_number(v))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "confidence",
                              "\"confidence\" must be a number from 0 to 1");
    double x = json_number_value(v);
    if (!(x >= 0 && x <= 1))
        return tl_problem_set(pb, 422, "out-of-range", "Value out of range", "confidence",
                              "\"confidence\" is %g; it must be from 0 to 1", x);
    *c = (float)x;
    return 0;
}

int tl_phone_parse(const tl_phone_conf_t *conf, const tl_adapter_ctx_t *ctx, const char *body,
                   size_t len, tl_phone_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    int rc;
    tl_str_t tenant, number, seg;
    int64_t started;
    char segbuf[24];
    const char *why;
    memset(ev, 0, sizeof *ev);
    if ((rc = tl_adapter_parse_json(body, len, &out->base, pb))) return rc;
    json_t *o = out->base.root;
    tl_transcript_segment_t *t = &ev->u.transcript;
    if ((rc = tl_adapter_req_str(o, "tenant_id", 64, &tenant, pb)) ||
        (rc = tl_adapter_req_str(o, "call_id", TL_PHONE_CALL_ID_MAX, &t->call_id, pb)) ||
        (rc = key_part(t->call_id, "call_id", 0, pb)) ||
        (rc = segment(o, segbuf, sizeof segbuf, &seg, pb)) ||
        (rc = tl_adapter_req_str(o, "caller_number", TL_PHONE_NUMBER_MAX, &number, pb)))
        return rc;
    if (tl_phone_e164(conf, number.ptr, number.len, out->e164, &why))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "caller_number",
                              "\"caller_number\" cannot be made an E.164 number: it %s", why);
    if ((rc = speaker(o, &t->speaker, pb)) ||
        (rc = tl_adapter_req_int(o, "start_ms", 0, TL_PHONE_CALL_MAX_MS, &t->start_ms, pb)) ||
        (rc = tl_adapter_req_int(o, "end_ms", 0, TL_PHONE_CALL_MAX_MS, &t->end_ms, pb)))
        return rc;
    if (t->end_ms < t->start_ms)
        return tl_problem_set(pb, 422, "out-of-range", "Value out of range", "end_ms",
                              "\"end_ms\" (%lld) is before \"start_ms\" (%lld)",
                              (long long)t->end_ms, (long long)t->start_ms);
    if ((rc = tl_adapter_req_str(o, "text", TL_PHONE_TEXT_MAX, &t->text, pb)) ||
        (rc = confidence(o, &t->confidence, pb)) ||
        (rc = tl_adapter_req_time(o, "call_started_at", ctx->now_ms, &started, pb)))
        return rc;

    tl_str_t user = {out->e164, strlen(out->e164)};
    t->caller_number = user;
    int n = snprintf(out->message_id, sizeof out->message_id, "%.*s:%.*s", (int)t->call_id.len,
                     t->call_id.ptr, (int)seg.len, seg.ptr);
    ev->kind = TL_EV_TRANSCRIPT_SEGMENT;
    tl_adapter_envelope(ctx, &out->base, ev, tenant, TL_PLATFORM_PHONE, user,
                        (tl_str_t){out->message_id, (size_t)n}, started + t->start_ms);
    return 0;
}

void tl_phone_out_close(tl_phone_out_t *out) {
    tl_adapter_out_close(&out->base);
}
