/*
 * api.c -- canonical JSON adapter (see api.h).
 *
 * One reader per payload kind a connector may send; agent actions
 * (replies, assignment, tags, close, conflict resolution) are refused here
 * because they enter through the agent API with the agent's identity.
 */
#include <string.h>

#include "api.h"
#include "uuid.h"

/* Runs a field reader on payload p; on error prefixes pb->field with
 * "payload.". */
#define PAYLOAD(call)                                                         \
    do {                                                                      \
        int rc_ = (call);                                                     \
        if (rc_) return payload_field(pb, rc_);                               \
    } while (0)

static int payload_field(tl_problem_t *pb, int rc) {
    char inner[sizeof pb->field];
    memcpy(inner, pb->field, sizeof inner);
    if (strlen(inner) + 8 < sizeof pb->field) {
        memcpy(pb->field, "payload.", 8);
        memcpy(pb->field + 8, inner, strlen(inner) + 1);
    }
    return rc;
}

/* Reads an enum given as one of `names` (count n). */
static int enum_field(json_t *o, const char *name, const char *const *names, int n, int *out,
                      tl_problem_t *pb) {
    tl_str_t s;
    int rc = tl_adapter_req_str(o, name, 32, &s, pb);
    if (rc) return rc;
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == s.len && memcmp(names[i], s.ptr, s.len) == 0) {
            *out = i;
            return 0;
        }
    return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                          "\"%.*s\" is not a valid %s", (int)(s.len > 32 ? 32 : s.len), s.ptr, name);
}

/* The identity kind evidence names (as engine/identity.c records it). */
static const char *evidence_kind(tl_evidence_t e) {
    switch (e) {
    case TL_EVIDENCE_UNIONID: return "unionid";
    case TL_EVIDENCE_VERIFIED_PHONE: return "phone";
    case TL_EVIDENCE_LOGIN: return "account";
    default: return NULL;
    }
}

static int platform_field(json_t *o, const char *name, int connector_only, tl_platform_t *out,
                          tl_problem_t *pb) {
    tl_str_t s;
    int rc = tl_adapter_req_str(o, name, 32, &s, pb);
    if (rc) return rc;
    if (tl_platform_from_slug(s.ptr, s.len, out) != 0)
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "\"%.*s\" is not a platform (web, app, mini_program, wechat, douyin, "
                              "phone, api)", (int)(s.len > 32 ? 32 : s.len), s.ptr);
    if (connector_only && (*out == TL_PLATFORM_AGENT || *out == TL_PLATFORM_SYSTEM))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", name,
                              "connectors cannot write events as platform \"%s\"", tl_platform_slug(*out));
    return 0;
}

static int read_message(json_t *p, tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    tl_message_received_t *m = &ev->u.message;
    PAYLOAD(tl_adapter_opt_str(p, "text", 16 * 1024, &m->text, pb));
    PAYLOAD(tl_adapter_attachments(p, "attachments", out, &m->attachments, pb));
    PAYLOAD(tl_adapter_opt_str(p, "entry_point", 256, &m->entry_point, pb));
    PAYLOAD(tl_adapter_opt_str(p, "device_id", 128, &m->device_id, pb));
    if (!m->text.ptr) m->text = TL_STR("");
    if (m->text.len == 0 && m->attachments.n == 0)
        return tl_problem_set(pb, 422, "missing-field", "Missing field", "payload.text",
                              "a message needs \"text\" or at least one attachment");
    return 0;
}

static int read_transcript(json_t *p, tl_event_t *ev, tl_problem_t *pb) {
    static const char *const speakers[] = {"CUSTOMER", "AGENT", "UNKNOWN"};
    tl_transcript_segment_t *t = &ev->u.transcript;
    int speaker;
    PAYLOAD(tl_adapter_req_str(p, "call_id", 128, &t->call_id, pb));
    PAYLOAD(tl_adapter_req_int(p, "start_ms", 0, INT64_MAX, &t->start_ms, pb));
    PAYLOAD(tl_adapter_req_int(p, "end_ms", 0, INT64_MAX, &t->end_ms, pb));
    PAYLOAD(enum_field(p, "speaker", speakers, 3, &speaker, pb));
    PAYLOAD(tl_adapter_req_str(p, "text", 16 * 1024, &t->text, pb));
    PAYLOAD(tl_adapter_opt_str(p, "caller_number", 32, &t->caller_number, pb));
    json_t *c = json_object_get(p, "confidence");
    if (!json_is_number(c) || json_number_value(c) < 0 || json_number_value(c) > 1)
        return tl_problem_set(pb, 422, c ? "invalid-field" : "missing-field",
                              c ? "Invalid field" : "Missing field", "payload.confidence",
                              "\"confidence\" must be a number from 0 to 1");
    if (t->end_ms < t->start_ms)
        return tl_problem_set(pb, 422, "out-of-range", "Value out of range", "payload.end_ms",
                              "\"end_ms\" is before \"start_ms\"");
    t->speaker = (tl_speaker_t)speaker;
    t->confidence = (float)json_number_value(c);
    return 0;
}

static int read_behavior(json_t *p, tl_event_t *ev, tl_problem_t *pb) {
    tl_behavior_tracked_t *b = &ev->u.behavior;
    PAYLOAD(tl_adapter_req_str(p, "page", 512, &b->page, pb));
    PAYLOAD(tl_adapter_req_str(p, "action", 256, &b->action, pb));
    PAYLOAD(tl_adapter_opt_str(p, "device_id", 128, &b->device_id, pb));
    return 0;
}

static int read_field(json_t *p, tl_event_t *ev, tl_problem_t *pb) {
    tl_field_asserted_t *f = &ev->u.field;
    PAYLOAD(tl_adapter_req_str(p, "field", 64, &f->field, pb));
    PAYLOAD(tl_adapter_req_str(p, "value", 1024, &f->value, pb));
    for (size_t i = 0; i < f->field.len; i++) {
        char c = f->field.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "payload.field",
                                  "field names are lower-case letters, digits and '_' "
                                  "(order_no, phone, email, ...)");
    }
    return 0;
}

static int read_link(json_t *p, tl_event_t *ev, int linked, tl_problem_t *pb) {
    static const char *const evidence[] = {"UNIONID", "VERIFIED_PHONE", "LOGIN", "AGENT", "OTHER"};
    tl_str_t other;
    tl_platform_t platform;
    tl_str_t user;
    /* A link may leave linked_customer_id out: the customer of (platform,
     * platform_user_id) is then absorbed, as the identity index resolves
     * it at ingest (see api.h). */
    if (linked) PAYLOAD(tl_adapter_opt_str(p, "linked_customer_id", 36, &other, pb));
    else PAYLOAD(tl_adapter_req_str(p, "linked_customer_id", 36, &other, pb));
    if (other.ptr && !tl_uuid_valid(other.ptr, other.len))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "payload.linked_customer_id",
                              "\"linked_customer_id\" must be a customer id (UUID)");
    PAYLOAD(platform_field(p, "platform", 1, &platform, pb));
    PAYLOAD(tl_adapter_req_str(p, "platform_user_id", 128, &user, pb));
    if (linked) {
        int ev_kind;
        tl_identity_linked_t *l = &ev->u.link;
        PAYLOAD(enum_field(p, "evidence", evidence, 5, &ev_kind, pb));
        PAYLOAD(tl_adapter_opt_str(p, "evidence_value", 256, &l->evidence_value, pb));
        l->linked_customer_id = other;
        l->platform = platform;
        l->platform_user_id = user;
        l->evidence = (tl_evidence_t)ev_kind;
    } else {
        tl_identity_unlinked_t *u = &ev->u.unlink;
        PAYLOAD(tl_adapter_req_str(p, "reason", 512, &u->reason, pb));
        u->linked_customer_id = other;
        u->platform = platform;
        u->platform_user_id = user;
    }
    return 0;
}

int tl_api_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                 tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb) {
    int rc;
    tl_str_t tenant, user, msgid, customer, type;
    tl_platform_t platform;
    int64_t occurred;
    memset(ev, 0, sizeof *ev);
    if ((rc = tl_adapter_parse_json(body, len, out, pb))) return rc;
    json_t *o = out->root;
    if ((rc = tl_adapter_req_str(o, "tenant_id", 64, &tenant, pb)) ||
        (rc = platform_field(o, "platform", 1, &platform, pb)) ||
        (rc = tl_adapter_req_str(o, "platform_user_id", 128, &user, pb)) ||
        (rc = tl_adapter_req_str(o, "message_id", 128, &msgid, pb)) ||
        (rc = tl_adapter_req_time(o, "occurred_at", ctx->now_ms, &occurred, pb)) ||
        (rc = tl_adapter_opt_str(o, "customer_id", 36, &customer, pb)))
        return rc;
    if (customer.ptr && !tl_uuid_valid(customer.ptr, customer.len))
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "customer_id",
                              "\"customer_id\" must be a customer id (UUID)");
    json_t *p = json_object_get(o, "payload");
    if (!json_is_object(p))
        return tl_problem_set(pb, 422, p ? "invalid-field" : "missing-field",
                              p ? "Invalid field" : "Missing field", "payload",
                              "\"payload\" must be an object with a \"type\"");
    if ((rc = tl_adapter_req_str(p, "type", 32, &type, pb))) return payload_field(pb, rc);

#define IS(name) (type.len == sizeof(name) - 1 && memcmp(type.ptr, name, type.len) == 0)
    if (IS("MessageReceived")) {
        ev->kind = TL_EV_MESSAGE_RECEIVED;
        rc = read_message(p, out, ev, pb);
    } else if (IS("TranscriptSegment")) {
        ev->kind = TL_EV_TRANSCRIPT_SEGMENT;
        rc = read_transcript(p, ev, pb);
    } else if (IS("BehaviorTracked")) {
        ev->kind = TL_EV_BEHAVIOR_TRACKED;
        rc = read_behavior(p, ev, pb);
    } else if (IS("FieldAsserted")) {
        ev->kind = TL_EV_FIELD_ASSERTED;
        rc = read_field(p, ev, pb);
    } else if (IS("IdentityLinked")) {
        ev->kind = TL_EV_IDENTITY_LINKED;
        rc = read_link(p, ev, 1, pb);
    } else if (IS("IdentityUnlinked")) {
        ev->kind = TL_EV_IDENTITY_UNLINKED;
        rc = read_link(p, ev, 0, pb);
    } else if (IS("AgentReplied") || IS("ConversationAssigned") || IS("ConversationTagged") ||
               IS("ConversationClosed") || IS("ConflictResolved")) {
        return tl_problem_set(pb, 422, "agent-only", "Agent action", "payload.type",
                              "%.*s is written through the agent API, not by connectors",
                              (int)type.len, type.ptr);
    } else {
        return tl_problem_set(pb, 422, "invalid-field", "Invalid field", "payload.type",
                              "\"%.*s\" is not an event type a connector can send",
                              (int)(type.len > 32 ? 32 : type.len), type.ptr);
    }
#undef IS
    if (rc) return rc;
    tl_adapter_envelope(ctx, out, ev, tenant, platform, user, msgid, occurred);
    if (ev->kind == TL_EV_IDENTITY_LINKED) {
        tl_identity_linked_t *l = &ev->u.link;
        const char *kind = evidence_kind(l->evidence);
        if (!l->linked_customer_id.ptr) {
            tl_adapter_customer_id(tenant, l->platform, l->platform_user_id, out->linked_customer_id);
            l->linked_customer_id = (tl_str_t){out->linked_customer_id, TL_UUID_STRLEN};
        }
        /* The survivor of an evidence link is the customer the evidence
         * belongs to (the unionid's, the verified phone's, the account's). */
        if (!customer.ptr && kind && l->evidence_value.ptr && l->evidence_value.len) {
            const char *parts[] = {"customer", tenant.ptr, kind, l->evidence_value.ptr};
            size_t lens[] = {8, tenant.len, strlen(kind), l->evidence_value.len};
            tl_uuid_v5(parts, lens, 4, out->customer_id);
        }
    }
    if (customer.ptr) {
        out->customer_given = 1;
        /* Lower case, as threadline mints them: one customer, one key. */
        for (size_t i = 0; i < customer.len; i++) {
            char c = customer.ptr[i];
            out->customer_id[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
        }
        out->customer_id[customer.len] = 0;
    }
    return 0;
}
