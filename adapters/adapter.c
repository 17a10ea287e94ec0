/*
 * adapter.c -- JSON field rules shared by every adapter (see adapter.h).
 */
#include <stdio.h>
#include <string.h>

#include "adapter.h"
#include "error.h"
#include "uuid.h"

#define YEAR_MS (366LL * 24 * 3600 * 1000)

int tl_adapter_parse_json(const char *body, size_t len, tl_adapter_out_t *out, tl_problem_t *pb) {
    json_error_t err;
    out->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!out->root) {
        if (json_error_code(&err) == json_error_invalid_utf8)
            return tl_problem_set(pb, 400, "invalid-utf8", "Invalid UTF-8", NULL,
                                  "the body is not valid UTF-8 (byte %d)", err.position);
        if (json_error_code(&err) == json_error_duplicate_key)
            return tl_problem_set(pb, 400, "malformed-json", "Malformed JSON", NULL,
                                  "%s", err.text);
        return tl_problem_set(pb, 400, "malformed-json", "Malformed JSON", NULL,
                              "%s at line %d column %d", err.text, err.line, err.column);
    }
    if (!json_is_object(out->root)) {
        json_decref(out->root);
        out->root = NULL;
        return tl_problem_set(pb, 400, "malformed-json", "Malformed JSON", NULL,
                              "the body must be a JSON object");
    }
    return 0;
}

static int str_field(json_t *obj, const char *name, size_t max, tl_str_t *s, tl_problem_t *pb,
                     int required) {
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        if (!required) { *s = TL_STR_NULL; return 0; }
        return tl_problem_set(pb, 422, "missing-field", "Missing field", name,
                              "\"%s\" is required", name);
    }
    if (!json_is_string(v))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "\"%s\" must be a string", name);
    size_t len = json_string_length(v);
    if (required && len == 0)
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "\"%s\" must not be empty", name);
    if (len > max)
        return tl_problem_set(pb, 422, "field-too-long", "Field too long", name,
                              "\"%s\" is %zu bytes; the limit is %zu", name, len, max);
    /* No NUL can hide inside: json_loadb without JSON_ALLOW_NUL refuses
     * "\u0000", so every string is safe for C and PostgreSQL. */
    s->ptr = json_string_value(v);
    s->len = len;
    return 0;
}

int tl_adapter_req_str(json_t *obj, const char *name, size_t max, tl_str_t *s, tl_problem_t *pb) {
    return str_field(obj, name, max, s, pb, 1);
}

int tl_adapter_opt_str(json_t *obj, const char *name, size_t max, tl_str_t *s, tl_problem_t *pb) {
    return str_field(obj, name, max, s, pb, 0);
}

int tl_adapter_key_part(tl_str_t s, const char *name, tl_problem_t *pb) {
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < 0x20 || c == 0x7f || c == ':')
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                                  "\"%s\" may not hold control characters or ':'", name);
    }
    return 0;
}

int tl_adapter_req_key(json_t *obj, const char *name, size_t max, tl_str_t *s, tl_problem_t *pb) {
    int rc = tl_adapter_req_str(obj, name, max, s, pb);
    return rc ? rc : tl_adapter_key_part(*s, name, pb);
}

int tl_adapter_opt_key(json_t *obj, const char *name, size_t max, const char *absent_means,
                       tl_str_t *s, tl_problem_t *pb) {
    int rc = tl_adapter_opt_str(obj, name, max, s, pb);
    if (rc || !s->ptr) return rc;
    if (s->len == 0)
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "\"%s\" must not be empty (leave it out when %s)", name,
                              absent_means);
    return tl_adapter_key_part(*s, name, pb);
}

int tl_adapter_req_int(json_t *obj, const char *name, int64_t min, int64_t max, int64_t *out,
                       tl_problem_t *pb) {
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return tl_problem_set(pb, 422, "missing-field", "Missing field", name,
                              "\"%s\" is required", name);
    if (!json_is_integer(v))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "\"%s\" must be an integer", name);
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return tl_problem_set(pb, 422, "out-of-range", "Value out of range", name,
                              "\"%s\" is %lld; it must be between %lld and %lld", name,
                              (long long)x, (long long)min, (long long)max);
    *out = x;
    return 0;
}

int tl_adapter_req_time(json_t *obj, const char *name, int64_t now_ms, int64_t *v, tl_problem_t *pb) {
    int rc = tl_adapter_req_int(obj, name, 0, INT64_MAX, v, pb);
    if (rc) return rc;
    if (*v < now_ms - YEAR_MS || *v > now_ms + YEAR_MS)
        return tl_problem_set(pb, 422, "implausible-time", "Implausible timestamp", name,
                              "\"%s\" (%lld ms since the epoch) is more than a year from the "
                              "gateway clock (%lld); it must be milliseconds since the epoch",
                              name, (long long)*v, (long long)now_ms);
    return 0;
}

/* Makes pb->field name the element: "url" -> "attachments[2].url". */
static int prefix_field(tl_problem_t *pb, const char *path, int rc) {
    char inner[sizeof pb->field];
    size_t n = strlen(path);
    memcpy(inner, pb->field, sizeof inner);
    if (n + 1 + strlen(inner) < sizeof pb->field) {
        memcpy(pb->field, path, n);
        pb->field[n] = '.';
        memcpy(pb->field + n + 1, inner, strlen(inner) + 1);
    }
    return rc;
}

int tl_adapter_attachments(json_t *obj, const char *name, tl_adapter_out_t *out,
                           tl_attachments_t *atts, tl_problem_t *pb) {
    json_t *arr = json_object_get(obj, name);
    char path[96];
    atts->v = out->attachments;
    atts->n = 0;
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "\"%s\" must be an array", name);
    if (json_array_size(arr) > TL_ADAPTER_MAX_ATTACHMENTS)
        return tl_problem_set(pb, 422, "too-many", "Too many items", name,
                              "at most %d attachments per message", TL_ADAPTER_MAX_ATTACHMENTS);
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a) {
        tl_attachment_t *at = &out->attachments[i];
        memset(at, 0, sizeof *at);
        snprintf(path, sizeof path, "%s[%zu]", name, i);
        if (!json_is_object(a))
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", path,
                                  "\"%s\" must be an object", path);
        int rc;
        int64_t bytes = 0, w = 0, h = 0;
        if ((rc = tl_adapter_req_str(a, "url", 2048, &at->url, pb)) ||
            (rc = tl_adapter_req_str(a, "mime", 127, &at->mime, pb)) ||
            (rc = tl_adapter_req_int(a, "bytes", 0, INT64_MAX, &bytes, pb)))
            return prefix_field(pb, path, rc);
        if (!(at->url.len > 8 && (strncmp(at->url.ptr, "https://", 8) == 0 ||
                                  strncmp(at->url.ptr, "http://", 7) == 0))) {
            snprintf(path + strlen(path), sizeof path - strlen(path), ".url");
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", path,
                                  "attachment URLs must be http or https");
        }
        at->bytes = bytes;
        if (json_object_get(a, "width")) {
            if ((rc = tl_adapter_req_int(a, "width", 0, INT32_MAX, &w, pb)))
                return prefix_field(pb, path, rc);
            at->width = (int32_t)w;
            at->has_width = 1;
        }
        if (json_object_get(a, "height")) {
            if ((rc = tl_adapter_req_int(a, "height", 0, INT32_MAX, &h, pb)))
                return prefix_field(pb, path, rc);
            at->height = (int32_t)h;
            at->has_height = 1;
        }
        atts->n++;
    }
    return 0;
}

int tl_adapter_message(json_t *obj, size_t text_max, size_t entry_max, size_t device_max,
                       tl_adapter_out_t *out, tl_message_received_t *m, tl_problem_t *pb) {
    int rc;
    if ((rc = tl_adapter_opt_str(obj, "text", text_max, &m->text, pb)) ||
        (rc = tl_adapter_attachments(obj, "attachments", out, &m->attachments, pb)) ||
        (rc = tl_adapter_opt_str(obj, "entry_point", entry_max, &m->entry_point, pb)) ||
        (device_max && (rc = tl_adapter_opt_str(obj, "device_id", device_max, &m->device_id, pb))))
        return rc;
    if (!m->text.ptr) m->text = TL_STR("");
    if (m->text.len == 0 && m->attachments.n == 0)
        return tl_problem_set(pb, 422, "missing-field", "Missing field", "text",
                              "a message needs \"text\" or at least one attachment");
    return 0;
}

void tl_adapter_customer_id(tl_str_t tenant, tl_platform_t platform, tl_str_t user, char out[40]) {
    const char *slug = tl_platform_slug(platform);
    const char *parts[] = {"customer", tenant.ptr, slug, user.ptr};
    size_t lens[] = {8, tenant.len, strlen(slug), user.len};
    tl_uuid_v5(parts, lens, 4, out);
}

void tl_adapter_sub_id(const char *event_id, unsigned i, char out[40]) {
    static const char hex[] = "0123456789abcdef";
    memcpy(out, event_id, TL_UUID_STRLEN);
    out[TL_UUID_STRLEN] = 0;
    for (int k = 0; k < 4; k++) out[TL_UUID_STRLEN - 1 - k] = hex[(i >> (4 * k)) & 0xf];
}

void tl_adapter_envelope(const tl_adapter_ctx_t *ctx, tl_adapter_out_t *out, tl_event_t *ev,
                         tl_str_t tenant, tl_platform_t platform, tl_str_t user,
                         tl_str_t message_id, int64_t occurred_at) {
    tl_adapter_customer_id(tenant, platform, user, out->customer_id);
    int n = snprintf(out->idempotency_key, sizeof out->idempotency_key, "%s:%.*s",
                     tl_platform_slug(platform), (int)message_id.len, message_id.ptr);
    ev->event_id = (tl_str_t){ctx->event_id, strlen(ctx->event_id)};
    ev->tenant_id = tenant;
    ev->customer_id = (tl_str_t){out->customer_id, TL_UUID_STRLEN};
    ev->platform = platform;
    ev->platform_user_id = user;
    ev->idempotency_key = (tl_str_t){out->idempotency_key, (size_t)n};
    ev->occurred_at = occurred_at;
    ev->received_at = ctx->now_ms;
    ev->trace_id = (tl_str_t){ctx->trace_id, strlen(ctx->trace_id)};
}

void tl_adapter_out_close(tl_adapter_out_t *out) {
    if (out->root) json_decref(out->root);
    out->root = NULL;
}
