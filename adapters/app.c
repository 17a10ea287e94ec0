/*
 * app.c -- mobile app adapter (see app.h).
 *
 * One request becomes several events, each with its own id and idempotency
 * key but one customer: they all point at base.customer_id, so resolving
 * the identity rekeys the whole request with one copy.
 */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "uuid.h"

/* Ids that become part of a key "app:<id>" may not hold ':' (a message id
 * "event:7" would collide with click 7) nor control characters. */
/* Makes pb->field name the element: "page" -> "events[2].page". */
static int nested(tl_problem_t *pb, const char *path, int rc) {
    char inner[sizeof pb->field];
    memcpy(inner, pb->field, sizeof inner);
    size_t n = strlen(path), m = strlen(inner);
    if (strcmp(inner, path) != 0 && n + 1 + m < sizeof pb->field) {
        memcpy(pb->field, path, n);
        pb->field[n] = '.';
        memcpy(pb->field + n + 1, inner, m + 1);
    }
    return rc;
}

/* The envelope of event slot i: the request's tenant, device and customer,
 * its own id and key. */
static void envelope(const tl_adapter_ctx_t *ctx, tl_app_out_t *out, int i, unsigned sub,
                     const char *key_fmt, tl_str_t key_id, int64_t occurred_at) {
    tl_event_t *ev = &out->ev[i];
    tl_adapter_sub_id(ctx->event_id, sub, out->ids[i]);
    int n = snprintf(out->keys[i], sizeof out->keys[i], key_fmt, (int)key_id.len, key_id.ptr);
    ev->event_id = (tl_str_t){out->ids[i], TL_UUID_STRLEN};
    ev->tenant_id = out->tenant;
    ev->customer_id = (tl_str_t){out->base.customer_id, TL_UUID_STRLEN};
    ev->platform = TL_PLATFORM_APP;
    ev->platform_user_id = out->device_id;
    ev->idempotency_key = (tl_str_t){out->keys[i], (size_t)n};
    ev->occurred_at = occurred_at;
    ev->received_at = ctx->now_ms;
    ev->trace_id = (tl_str_t){ctx->trace_id, strlen(ctx->trace_id)};
}

static int read_message(const tl_adapter_ctx_t *ctx, json_t *m, tl_app_out_t *out, tl_problem_t *pb) {
    tl_event_t *ev = &out->ev[1];
    tl_message_received_t *msg = &ev->u.message;
    tl_str_t msgid;
    int64_t sent_at;
    int rc;
    if (!json_is_object(m))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "message",
                              "\"message\" must be an object");
    if ((rc = tl_adapter_req_key(m, "message_id", TL_APP_ID_MAX, &msgid, pb)) ||
        (rc = tl_adapter_req_time(m, "sent_at", ctx->now_ms, &sent_at, pb)) ||
        (rc = tl_adapter_message(m, TL_APP_TEXT_MAX, 256, 0, &out->base, msg, pb)))
        return nested(pb, "message", rc);
    msg->device_id = out->device_id;
    ev->kind = TL_EV_MESSAGE_RECEIVED;
    envelope(ctx, out, 1, 0, "app:%.*s", msgid, sent_at);
    out->index[1] = 0;
    return 0;
}

static int read_events(const tl_adapter_ctx_t *ctx, json_t *arr, tl_app_out_t *out, int at,
                       tl_problem_t *pb) {
    char path[32];
    if (!json_is_array(arr))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "events",
                              "\"events\" must be an array");
    if (json_array_size(arr) == 0)
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "events",
                              "\"events\" must not be empty (leave it out instead)");
    if (json_array_size(arr) > TL_APP_MAX_EVENTS)
        return tl_problem_set(pb, 422, "too-many", "Too many items", "events",
                              "at most %d click-stream events per request; send the rest in "
                              "another", TL_APP_MAX_EVENTS);
    size_t k;
    json_t *e;
    json_array_foreach(arr, k, e) {
        tl_event_t *ev = &out->ev[at];
        tl_behavior_tracked_t *b = &ev->u.behavior;
        tl_str_t id;
        int64_t ts;
        int rc;
        snprintf(path, sizeof path, "events[%zu]", k);
        if (!json_is_object(e))
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", path,
                                  "\"%s\" must be an object", path);
        if ((rc = tl_adapter_req_key(e, "id", TL_APP_ID_MAX, &id, pb)) ||
            (rc = tl_adapter_req_str(e, "page", 512, &b->page, pb)) ||
            (rc = tl_adapter_req_str(e, "action", 256, &b->action, pb)) ||
            (rc = tl_adapter_req_time(e, "ts", ctx->now_ms, &ts, pb)))
            return nested(pb, path, rc);
        for (size_t j = 0; j < k; j++) {
            /* The same id twice would be one event applied once: say so. */
            const tl_event_t *prev = &out->ev[at - (int)(k - j)];
            if (prev->idempotency_key.len == id.len + 10 &&
                memcmp(prev->idempotency_key.ptr + 10, id.ptr, id.len) == 0) {
                snprintf(path + strlen(path), sizeof path - strlen(path), ".id");
                return tl_problem_set(pb, 422, "invalid-field", "Invalid field", path,
                                      "\"%s\" repeats events[%zu].id", path, j);
            }
        }
        b->device_id = out->device_id;
        ev->kind = TL_EV_BEHAVIOR_TRACKED;
        envelope(ctx, out, at, (unsigned)(k + 1), "app:event:%.*s", id, ts);
        out->index[at] = (int)k + 1;
        at++;
    }
    return 0;
}

int tl_app_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len, tl_app_out_t *out,
                 tl_problem_t *pb) {
    int rc;
    memset(out->ev, 0, sizeof out->ev);
    out->first = 1;
    out->n = 0;
    if ((rc = tl_adapter_parse_json(body, len, &out->base, pb))) return rc;
    json_t *o = out->base.root;
    if ((rc = tl_adapter_req_str(o, "tenant_id", 64, &out->tenant, pb)) ||
        (rc = tl_adapter_req_key(o, "device_id", TL_APP_ID_MAX, &out->device_id, pb)) ||
        (rc = tl_adapter_opt_key(o, "account_id", TL_APP_ID_MAX, "logged out", &out->account_id,
                                 pb)))
        return rc;
    json_t *m = json_object_get(o, "message"), *evs = json_object_get(o, "events");
    if (json_is_null(m)) m = NULL;
    if (json_is_null(evs)) evs = NULL;
    if (!m && !evs)
        return tl_problem_set(pb, 422, "missing-field", "Missing field", "message",
                              "a request needs a \"message\", an \"events\" batch, or both");
    tl_adapter_customer_id(out->tenant, TL_PLATFORM_APP, out->device_id, out->base.customer_id);
    int at = 1;
    if (m) {
        if ((rc = read_message(ctx, m, out, pb))) return rc;
        at = 2;
    } else {
        out->first = 2;     /* no message: the events start at slot 2 */
        at = 2;
    }
    if (evs && (rc = read_events(ctx, evs, out, at, pb))) return rc;
    out->n = (at - out->first) + (evs ? (int)json_array_size(evs) : 0);
    return 0;
}

int tl_app_resolve(const tl_adapter_ctx_t *ctx, tl_app_out_t *out, const char *device_customer,
                   const char *account_customer) {
    char own[40];
    tl_adapter_customer_id(out->tenant, TL_PLATFORM_APP, out->device_id, own);
    if (!out->account_id.ptr || !account_customer) {
        memcpy(out->base.customer_id, device_customer, TL_UUID_STRLEN + 1);
        return 0;
    }
    memcpy(out->base.customer_id, account_customer, TL_UUID_STRLEN + 1);
    if (strcmp(device_customer, account_customer) == 0 || strcmp(device_customer, own) != 0)
        return 0;
    /* The login link goes in slot 0, before the message and the clicks:
     * one key, one partition, so the fold sees the link first. */
    memcpy(out->device_customer, device_customer, TL_UUID_STRLEN + 1);
    tl_event_t *ev = &out->ev[0];
    memset(ev, 0, sizeof *ev);
    tl_adapter_sub_id(ctx->event_id, TL_APP_LINK_ID, out->ids[0]);
    int n = snprintf(out->keys[0], sizeof out->keys[0], "app:login:%.*s:%.*s",
                     (int)out->device_id.len, out->device_id.ptr, (int)out->account_id.len,
                     out->account_id.ptr);
    ev->event_id = (tl_str_t){out->ids[0], TL_UUID_STRLEN};
    ev->tenant_id = out->tenant;
    ev->customer_id = (tl_str_t){out->base.customer_id, TL_UUID_STRLEN};
    ev->platform = TL_PLATFORM_APP;
    ev->platform_user_id = out->device_id;
    ev->idempotency_key = (tl_str_t){out->keys[0], (size_t)n};
    ev->occurred_at = ev->received_at = ctx->now_ms;
    ev->trace_id = (tl_str_t){ctx->trace_id, strlen(ctx->trace_id)};
    ev->kind = TL_EV_IDENTITY_LINKED;
    ev->u.link.linked_customer_id = (tl_str_t){out->device_customer, TL_UUID_STRLEN};
    ev->u.link.platform = TL_PLATFORM_APP;
    ev->u.link.platform_user_id = out->device_id;
    ev->u.link.evidence = TL_EVIDENCE_LOGIN;
    ev->u.link.evidence_value = out->account_id;
    out->index[0] = -1;
    /* Slot 1 is empty when there was no message: the link moves next to
     * the first click instead. */
    if (out->first == 2) {
        out->ev[1] = out->ev[0];
        memcpy(out->ids[1], out->ids[0], sizeof out->ids[1]);
        memcpy(out->keys[1], out->keys[0], sizeof out->keys[1]);
        out->ev[1].event_id.ptr = out->ids[1];
        out->ev[1].idempotency_key.ptr = out->keys[1];
        out->index[1] = -1;
        out->first = 1;
    } else {
        out->first = 0;
    }
    out->n++;
    return 1;
}

void tl_app_out_close(tl_app_out_t *out) {
    tl_adapter_out_close(&out->base);
}
