/*
 * audit.c -- state with provenance, accounts and exports (see audit.h).
 *
 * Records are kept in log order as they arrive; the account sorts a copy
 * of the indexes by effective_ts.  A customer's records are few enough
 * (one customer's history) that provenance looks event ids up linearly.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "codec.h"
#include "error.h"
#include "replay.h"
#include "schemas.h"
#include "verify.h"

typedef struct record {
    char event_id[40], customer[40], tenant[72], conversation[40];
    int64_t effective_ts;
    size_t seq;
    int duplicate;
    json_t *rec;                /* the account record */
    json_t *event;              /* the event as sent */
} record_t;

struct tl_audit {
    record_t *r;
    size_t n, cap;
    char **linked;
    size_t nlinked, caplinked;
};

tl_audit_t *tl_audit_new(void) { return calloc(1, sizeof(tl_audit_t)); }

void tl_audit_clear(tl_audit_t *a) {
    for (size_t i = 0; i < a->n; i++) {
        json_decref(a->r[i].rec);
        json_decref(a->r[i].event);
    }
    a->n = 0;
    for (size_t i = 0; i < a->nlinked; i++) free(a->linked[i]);
    a->nlinked = 0;
}

void tl_audit_free(tl_audit_t *a) {
    if (!a) return;
    tl_audit_clear(a);
    free(a->r);
    free(a->linked);
    free(a);
}

size_t tl_audit_count(const tl_audit_t *a) { return a->n; }

const char *const *tl_audit_linked(const tl_audit_t *a, size_t *n) {
    *n = a->nlinked;
    return (const char *const *)a->linked;
}

static int add_linked(tl_audit_t *a, tl_str_t id) {
    if (!id.ptr || !id.len || id.len >= 40) return TL_OK;
    for (size_t i = 0; i < a->nlinked; i++)
        if (strlen(a->linked[i]) == id.len && memcmp(a->linked[i], id.ptr, id.len) == 0) return TL_OK;
    if (a->nlinked == a->caplinked) {
        size_t ncap = a->caplinked ? a->caplinked * 2 : 8;
        char **nl = realloc(a->linked, ncap * sizeof *nl);
        if (!nl) return TL_ENOMEM;
        a->linked = nl;
        a->caplinked = ncap;
    }
    if (!(a->linked[a->nlinked] = strndup(id.ptr, id.len))) return TL_ENOMEM;
    a->nlinked++;
    return TL_OK;
}

const char *tl_audit_tenant(const tl_audit_t *a, const char *customer) {
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->r[i].customer, customer) == 0) return a->r[i].tenant;
    return NULL;
}

/* ---- events as JSON ------------------------------------------------------ */

static json_t *js(tl_str_t s) { return s.ptr ? json_stringn(s.ptr, s.len) : json_null(); }

static json_t *jtime(int64_t ms) {
    char t[40];
    tl_replay_format_time(ms, t, sizeof t);
    return json_string(t);
}

static json_t *attachments(tl_attachments_t a) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < a.n; i++) {
        const tl_attachment_t *at = &a.v[i];
        json_t *o = json_pack("{s:o, s:o, s:I}", "url", js(at->url), "mime", js(at->mime), "bytes",
                              (json_int_t)at->bytes);
        if (o && at->has_width) json_object_set_new(o, "width", json_integer(at->width));
        if (o && at->has_height) json_object_set_new(o, "height", json_integer(at->height));
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *strs(tl_strs_t s) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s.n; i++) json_array_append_new(arr, js(s.v[i]));
    return arr;
}

static const char *const speakers[] = {"CUSTOMER", "AGENT", "UNKNOWN"};
static const char *const evidences[] = {"UNIONID", "VERIFIED_PHONE", "LOGIN", "AGENT", "OTHER"};

json_t *tl_audit_event_json(const tl_event_t *ev) {
    json_t *p = NULL;
    switch (ev->kind) {
    case TL_EV_MESSAGE_RECEIVED:
        p = json_pack("{s:o, s:o, s:o, s:o}", "text", js(ev->u.message.text), "attachments",
                      attachments(ev->u.message.attachments), "entry_point", js(ev->u.message.entry_point),
                      "device_id", js(ev->u.message.device_id));
        break;
    case TL_EV_AGENT_REPLIED:
        p = json_pack("{s:o, s:o, s:o, s:o, s:s}", "agent_id", js(ev->u.reply.agent_id), "conversation_id",
                      js(ev->u.reply.conversation_id), "text", js(ev->u.reply.text), "attachments",
                      attachments(ev->u.reply.attachments), "target_platform",
                      tl_platform_slug(ev->u.reply.target_platform));
        break;
    case TL_EV_TRANSCRIPT_SEGMENT: {
        const tl_transcript_segment_t *t = &ev->u.transcript;
        p = json_pack("{s:o, s:I, s:I, s:s, s:o, s:f, s:o}", "call_id", js(t->call_id), "start_ms",
                      (json_int_t)t->start_ms, "end_ms", (json_int_t)t->end_ms, "speaker",
                      (unsigned)t->speaker < 3 ? speakers[t->speaker] : "UNKNOWN", "text", js(t->text),
                      "confidence", (double)t->confidence, "caller_number", js(t->caller_number));
        break;
    }
    case TL_EV_BEHAVIOR_TRACKED:
        p = json_pack("{s:o, s:o, s:o}", "page", js(ev->u.behavior.page), "action", js(ev->u.behavior.action),
                      "device_id", js(ev->u.behavior.device_id));
        break;
    case TL_EV_FIELD_ASSERTED:
        p = json_pack("{s:o, s:o}", "field", js(ev->u.field.field), "value", js(ev->u.field.value));
        break;
    case TL_EV_IDENTITY_LINKED: {
        const tl_identity_linked_t *l = &ev->u.link;
        p = json_pack("{s:o, s:s, s:o, s:s, s:o}", "linked_customer_id", js(l->linked_customer_id),
                      "platform", tl_platform_slug(l->platform), "platform_user_id", js(l->platform_user_id),
                      "evidence", (unsigned)l->evidence < 5 ? evidences[l->evidence] : "OTHER",
                      "evidence_value", js(l->evidence_value));
        break;
    }
    case TL_EV_IDENTITY_UNLINKED: {
        const tl_identity_unlinked_t *u = &ev->u.unlink;
        p = json_pack("{s:o, s:s, s:o, s:o}", "linked_customer_id", js(u->linked_customer_id), "platform",
                      tl_platform_slug(u->platform), "platform_user_id", js(u->platform_user_id), "reason",
                      js(u->reason));
        break;
    }
    case TL_EV_CONVERSATION_ASSIGNED:
        p = json_pack("{s:o, s:o, s:o}", "conversation_id", js(ev->u.assign.conversation_id), "agent_id",
                      js(ev->u.assign.agent_id), "team_id", js(ev->u.assign.team_id));
        break;
    case TL_EV_CONVERSATION_TAGGED:
        p = json_pack("{s:o, s:o, s:o}", "conversation_id", js(ev->u.tag.conversation_id), "added",
                      strs(ev->u.tag.added), "removed", strs(ev->u.tag.removed));
        break;
    case TL_EV_CONVERSATION_CLOSED:
        p = json_pack("{s:o, s:o, s:o}", "conversation_id", js(ev->u.close.conversation_id), "reason",
                      js(ev->u.close.reason), "closed_by", js(ev->u.close.closed_by));
        break;
    case TL_EV_CONFLICT_RESOLVED:
        p = json_pack("{s:o, s:o, s:o, s:o}", "conflict_id", js(ev->u.resolve.conflict_id), "field",
                      js(ev->u.resolve.field), "chosen_value", js(ev->u.resolve.chosen_value), "agent_id",
                      js(ev->u.resolve.agent_id));
        break;
    default:
        p = json_object();
        break;
    }
    if (!p) return NULL;
    return json_pack("{s:o, s:o, s:o, s:s, s:o, s:o, s:I, s:I, s:o, s:s, s:o}", "event_id", js(ev->event_id),
                     "tenant_id", js(ev->tenant_id), "customer_id", js(ev->customer_id), "platform",
                     tl_platform_slug(ev->platform), "platform_user_id", js(ev->platform_user_id),
                     "idempotency_key", js(ev->idempotency_key), "occurred_at", (json_int_t)ev->occurred_at,
                     "received_at", (json_int_t)ev->received_at, "trace_id", js(ev->trace_id), "type",
                     tl_event_kind_name(ev->kind), "payload", p);
}

/* ---- recording ----------------------------------------------------------- */

/* Who acted: (role, id). */
static void actor_of(const tl_event_t *ev, const char **role, tl_str_t *id) {
    *role = "customer";
    *id = ev->platform_user_id;
    switch (ev->kind) {
    case TL_EV_AGENT_REPLIED:
        *role = "agent";
        *id = ev->u.reply.agent_id;
        return;
    case TL_EV_CONFLICT_RESOLVED:
        *role = "agent";
        *id = ev->u.resolve.agent_id;
        return;
    case TL_EV_CONVERSATION_CLOSED:
        if (ev->u.close.closed_by.ptr) {
            *role = "agent";
            *id = ev->u.close.closed_by;
            return;
        }
        break;
    default:
        break;
    }
    if (ev->platform == TL_PLATFORM_AGENT) *role = "agent";
    else if (ev->platform == TL_PLATFORM_SYSTEM) *role = "system";
    else if (ev->kind == TL_EV_TRANSCRIPT_SEGMENT && ev->u.transcript.speaker == TL_SPEAKER_AGENT)
        *role = "agent";
}

static void summary_of(const tl_event_t *ev, char *out, size_t n) {
#define S(x) (int)((x).ptr ? ((x).len > 120 ? 120 : (x).len) : 0), (x).ptr ? (x).ptr : ""
    switch (ev->kind) {
    case TL_EV_MESSAGE_RECEIVED: snprintf(out, n, "\"%.*s\"", S(ev->u.message.text)); break;
    case TL_EV_AGENT_REPLIED: snprintf(out, n, "reply \"%.*s\"", S(ev->u.reply.text)); break;
    case TL_EV_TRANSCRIPT_SEGMENT: snprintf(out, n, "call %.*s: \"%.*s\"", S(ev->u.transcript.call_id), S(ev->u.transcript.text)); break;
    case TL_EV_BEHAVIOR_TRACKED: snprintf(out, n, "%.*s on %.*s", S(ev->u.behavior.action), S(ev->u.behavior.page)); break;
    case TL_EV_FIELD_ASSERTED: snprintf(out, n, "%.*s = \"%.*s\"", S(ev->u.field.field), S(ev->u.field.value)); break;
    case TL_EV_IDENTITY_LINKED: snprintf(out, n, "linked with customer %.*s (%s %.*s)", S(ev->u.link.linked_customer_id), tl_platform_slug(ev->u.link.platform), S(ev->u.link.platform_user_id)); break;
    case TL_EV_IDENTITY_UNLINKED: snprintf(out, n, "unlinked from customer %.*s: %.*s", S(ev->u.unlink.linked_customer_id), S(ev->u.unlink.reason)); break;
    case TL_EV_CONVERSATION_ASSIGNED: snprintf(out, n, "assigned to agent %.*s team %.*s", S(ev->u.assign.agent_id), S(ev->u.assign.team_id)); break;
    case TL_EV_CONVERSATION_TAGGED: snprintf(out, n, "tags +%zu -%zu", ev->u.tag.added.n, ev->u.tag.removed.n); break;
    case TL_EV_CONVERSATION_CLOSED: snprintf(out, n, "closed: %.*s", S(ev->u.close.reason)); break;
    case TL_EV_CONFLICT_RESOLVED: snprintf(out, n, "conflict %.*s on %.*s resolved: \"%.*s\"", S(ev->u.resolve.conflict_id), S(ev->u.resolve.field), S(ev->u.resolve.chosen_value)); break;
    default: snprintf(out, n, "?"); break;
    }
#undef S
}

int tl_audit_observe(void *opaque, const tl_event_t *ev, const tl_fold_result_t *res,
                     int32_t partition, int64_t offset) {
    tl_audit_t *a = opaque;
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 64;
        record_t *nr = realloc(a->r, ncap * sizeof *nr);
        if (!nr) return TL_ENOMEM;
        a->r = nr;
        a->cap = ncap;
    }
    record_t *r = &a->r[a->n];
    memset(r, 0, sizeof *r);
    snprintf(r->event_id, sizeof r->event_id, "%.*s", (int)ev->event_id.len, ev->event_id.ptr ? ev->event_id.ptr : "");
    snprintf(r->customer, sizeof r->customer, "%.*s", (int)ev->customer_id.len, ev->customer_id.ptr);
    snprintf(r->tenant, sizeof r->tenant, "%.*s", (int)ev->tenant_id.len, ev->tenant_id.ptr);
    snprintf(r->conversation, sizeof r->conversation, "%s", res->conversation_id);
    r->effective_ts = res->effective_ts;
    r->seq = a->n;
    r->duplicate = res->duplicate;
    const char *role;
    tl_str_t actor;
    char position[48], summary[512];
    actor_of(ev, &role, &actor);
    summary_of(ev, summary, sizeof summary);
    snprintf(position, sizeof position, "%d:%" PRId64, (int)partition, offset);
    json_t *changes = json_array();
    for (size_t i = 0; changes && i < res->nchanges; i++) {
        const tl_fold_change_t *c = &res->changes[i];
        json_t *o = json_pack("{s:s}", "kind", tl_fold_change_slug(c->kind));
        if (!o) break;
        if (c->field.ptr) json_object_set_new(o, "field", js(c->field));
        if (c->value.ptr || c->kind == TL_FOLD_FIELD_REVERTED) json_object_set_new(o, "value", js(c->value));
        if (c->customer.ptr) json_object_set_new(o, "customer", js(c->customer));
        if (c->conflict_id[0]) json_object_set_new(o, "conflict_id", json_string(c->conflict_id));
        json_array_append_new(changes, o);
        if (c->kind == TL_FOLD_LINKED || c->kind == TL_FOLD_UNLINKED || c->kind == TL_FOLD_MERGED ||
            c->kind == TL_FOLD_UNMERGED)
            if (add_linked(a, c->customer)) return TL_ENOMEM;
    }
    r->rec = json_pack("{s:s, s:o, s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:I, s:o, s:I, s:b, s:b,"
                       " s:o, s:o, s:s}",
                       "position", position, "event_id", js(ev->event_id), "kind", tl_event_kind_name(ev->kind),
                       "platform", tl_platform_slug(ev->platform), "customer_id", js(ev->customer_id),
                       "actor", js(actor), "role", role, "occurred_at", jtime(ev->occurred_at),
                       "received_at", jtime(ev->received_at), "effective_ts", jtime(res->effective_ts),
                       "effective_ts_ms", json_integer(res->effective_ts),
                       "customer_version", (json_int_t)res->customer_version, "conversation_id",
                       res->conversation_id[0] ? json_string(res->conversation_id) : json_null(),
                       "conversation_version", (json_int_t)res->conversation_version, "conversation_opened",
                       res->conversation_opened, "duplicate", res->duplicate, "ignored",
                       res->ignored == TL_FOLD_IGNORE_NONE ? json_null() : json_string(tl_fold_ignore_text(res->ignored)),
                       "changes", changes ? changes : json_array(), "summary", summary);
    r->event = tl_audit_event_json(ev);
    if (!r->rec || !r->event) {
        json_decref(r->rec);
        json_decref(r->event);
        return TL_ENOMEM;
    }
    a->n++;
    if (add_linked(a, ev->customer_id)) return TL_ENOMEM;
    if (ev->kind == TL_EV_IDENTITY_LINKED && add_linked(a, ev->u.link.linked_customer_id)) return TL_ENOMEM;
    if (ev->kind == TL_EV_IDENTITY_UNLINKED && add_linked(a, ev->u.unlink.linked_customer_id)) return TL_ENOMEM;
    return TL_OK;
}

/* ---- rendering ----------------------------------------------------------- */

static const record_t *find_event(const tl_audit_t *a, tl_str_t id) {
    for (size_t i = 0; i < a->n; i++)
        if (!a->r[i].duplicate && strlen(a->r[i].event_id) == id.len && memcmp(a->r[i].event_id, id.ptr, id.len) == 0)
            return &a->r[i];
    return NULL;
}

static json_t *value_json(const tl_audit_t *a, const tl_fold_value_t *v) {
    json_t *o = json_pack("{s:o, s:o, s:s, s:o, s:I, s:I, s:b}", "value", js(v->value), "event_id", js(v->event_id),
                          "platform", tl_platform_slug(v->platform), "effective_ts", jtime(v->effective_ts),
                          "effective_ts_ms", (json_int_t)v->effective_ts, "customer_version", (json_int_t)v->version,
                          "withdrawn", v->withdrawn);
    if (!o) return NULL;
    const record_t *r = find_event(a, v->event_id);
    if (r) {
        json_object_set(o, "actor", json_object_get(r->rec, "actor"));
        json_object_set(o, "role", json_object_get(r->rec, "role"));
        json_object_set(o, "kind", json_object_get(r->rec, "kind"));
    }
    if (v->via.ptr) {
        /* Handed over from a linked customer: who said it there. */
        json_object_set_new(o, "via", js(v->via));
        json_object_set_new(o, "role", json_string("system"));
    }
    return o;
}

static int rec_cmp(const void *x, const void *y) {
    const record_t *a = *(const record_t *const *)x, *b = *(const record_t *const *)y;
    if (a->effective_ts != b->effective_ts) return a->effective_ts < b->effective_ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* The customer's conversations from its records, in the order opened. */
static json_t *conversations(const tl_audit_t *a, const char *customer) {
    json_t *arr = json_array(), *by_id = json_object();
    for (size_t i = 0; arr && by_id && i < a->n; i++) {
        const record_t *r = &a->r[i];
        if (r->duplicate || !r->conversation[0] || strcmp(r->customer, customer) != 0) continue;
        json_t *c = json_object_get(by_id, r->conversation);
        if (!c) {
            c = json_pack("{s:s, s:I, s:I, s:s, s:o, s:o, s:[], s:[], s:I, s:o}", "conversation_id", r->conversation,
                          "opened_at_ms", (json_int_t)r->effective_ts, "last_activity_ms", (json_int_t)r->effective_ts,
                          "status", "open", "assignee", json_null(), "team", json_null(), "tags", "platforms",
                          "items", (json_int_t)0, "close_reason", json_null());
            if (!c) break;
            json_object_set_new(by_id, r->conversation, c);
            json_array_append(arr, c);
        }
        json_t *rec = r->rec, *ev = json_object_get(r->event, "payload");
        json_object_set(c, "version", json_object_get(rec, "conversation_version"));
        json_object_set_new(c, "items", json_integer(json_integer_value(json_object_get(c, "items")) + 1));
        if (r->effective_ts > json_integer_value(json_object_get(c, "last_activity_ms")))
            json_object_set_new(c, "last_activity_ms", json_integer(r->effective_ts));
        const char *platform = json_string_value(json_object_get(rec, "platform"));
        json_t *plats = json_object_get(c, "platforms");
        int have = 0;
        for (size_t k = 0; k < json_array_size(plats); k++)
            have |= strcmp(json_string_value(json_array_get(plats, k)), platform) == 0;
        if (!have) json_array_append_new(plats, json_string(platform));
        if (!json_is_null(json_object_get(rec, "ignored"))) continue;
        const char *kind = json_string_value(json_object_get(rec, "kind"));
        if (strcmp(kind, "ConversationAssigned") == 0) {
            json_object_set(c, "assignee", json_object_get(ev, "agent_id"));
            json_object_set(c, "team", json_object_get(ev, "team_id"));
        } else if (strcmp(kind, "ConversationClosed") == 0) {
            json_object_set_new(c, "status", json_string("closed"));
            json_object_set(c, "close_reason", json_object_get(ev, "reason"));
        } else if (strcmp(kind, "ConversationTagged") == 0) {
            json_t *tags = json_object_get(c, "tags"), *t;
            size_t k;
            json_array_foreach(json_object_get(ev, "added"), k, t) {
                int dup = 0;
                for (size_t q = 0; q < json_array_size(tags); q++) dup |= json_equal(json_array_get(tags, q), t);
                if (!dup) json_array_append(tags, t);
            }
            json_array_foreach(json_object_get(ev, "removed"), k, t) {
                for (size_t q = 0; q < json_array_size(tags); q++)
                    if (json_equal(json_array_get(tags, q), t)) {
                        json_array_remove(tags, q);
                        break;
                    }
            }
        }
    }
    json_decref(by_id);
    return arr;
}

json_t *tl_audit_state(const tl_audit_t *a, tl_fold_t *fold, const char *customer,
                       int64_t as_of_ms, int *err) {
    *err = TL_ENOMEM;
    const char *tenant = tl_audit_tenant(a, customer);
    tl_fold_customer_t cu;
    if (!tenant) {
        *err = TL_ENOTFOUND;
        return NULL;
    }
    tl_str_t t = {tenant, strlen(tenant)}, c = {customer, strlen(customer)};
    if (tl_fold_get_customer(fold, t, c, &cu)) {
        *err = TL_ENOTFOUND;
        return NULL;
    }
    /* The fold's own encoding, hashed: two states with equal digests are
     * byte-identical (what .state holds, what any replay computes). */
    char hex[TL_VERIFY_DIGEST_HEX] = "";
    int e = 0;
    tl_codec_t *codec = tl_codec_new(tl_schema_state, &e);
    tl_buf_t buf;
    tl_buf_init(&buf);
    if (!codec || tl_fold_state_encode(fold, codec, t, c, &buf) ||
        tl_verify_digest(buf.data, buf.len, hex)) {
        tl_codec_free(codec);
        tl_buf_close(&buf);
        return NULL;
    }
    tl_codec_free(codec);
    tl_buf_close(&buf);
    json_t *fields = json_array(), *conflicts = json_array(), *links = json_array();
    json_t *o = json_pack("{s:s, s:s, s:o, s:I, s:o, s:o, s:s, s:o, s:o, s:o, s:o}", "tenant_id", tenant,
                          "customer_id", customer, "as_of", as_of_ms == INT64_MAX ? json_null() : jtime(as_of_ms),
                          "version", (json_int_t)cu.version, "last_event_ts",
                          cu.version ? jtime(cu.last_event_ts) : json_null(), "merged_into", js(cu.merged_into),
                          "state_sha256", hex, "fields", fields, "conflicts", conflicts, "links", links,
                          "conversations", conversations(a, customer));
    if (!o) return NULL;
    if (cu.conversation_id[0])
        json_object_set_new(o, "current_conversation",
                            json_pack("{s:s, s:I, s:b, s:o, s:o}", "conversation_id", cu.conversation_id,
                                      "version", (json_int_t)cu.conversation_version, "closed",
                                      cu.conversation_closed, "assignee", js(cu.assignee), "team", js(cu.team)));
    for (size_t i = 0; i < cu.nfields; i++) {
        tl_str_t name;
        tl_fold_field_t f;
        if (tl_fold_field_at(fold, t, c, i, &name) || tl_fold_get_field(fold, t, c, name, &f)) continue;
        json_t *hist = json_array();
        for (size_t k = 0; k < f.nvalues; k++) json_array_append_new(hist, value_json(a, &f.values[k]));
        json_array_append_new(fields, json_pack("{s:o, s:b, s:o, s:o, s:o}", "name", js(name), "key", f.key,
                                                "value", f.has_current ? js(f.current.value) : json_null(),
                                                "provenance", f.has_current ? value_json(a, &f.current) : json_null(),
                                                "history", hist));
    }
    for (size_t i = 0; i < cu.nconflicts; i++) {
        tl_str_t field;
        tl_fold_conflict_t cf;
        if (tl_fold_conflict_at(fold, t, c, i, &field, &cf)) continue;
        json_t *cands = json_array();
        for (size_t k = 0; k < cf.ncandidates; k++) json_array_append_new(cands, value_json(a, &cf.candidates[k]));
        json_array_append_new(conflicts, json_pack("{s:s, s:o, s:I, s:o}", "conflict_id", cf.id, "field", js(field),
                                                   "opened_version", (json_int_t)cf.opened_version, "candidates", cands));
    }
    tl_fold_link_t l;
    for (size_t i = 0; tl_fold_link_at(fold, t, c, i, &l) == TL_OK; i++)
        json_array_append_new(links, json_pack("{s:o, s:s, s:b, s:s, s:o, s:s, s:o, s:o, s:o, s:o}", "customer",
                                               js(l.customer), "direction", l.merged_into ? "merged_into" : "absorbed",
                                               "active", l.active, "platform", tl_platform_slug(l.platform),
                                               "platform_user_id", js(l.platform_user_id), "evidence",
                                               (unsigned)l.evidence < 5 ? evidences[l.evidence] : "OTHER",
                                               "link_event", js(l.link_event), "unlink_event", js(l.unlink_event),
                                               "linked_at", jtime(l.linked_at),
                                               "unlinked_at", l.unlink_event.ptr ? jtime(l.unlinked_at) : json_null()));
    *err = TL_OK;
    return o;
}

json_t *tl_audit_account(const tl_audit_t *a, const char *customer, const char *conversation) {
    const record_t **order = malloc((a->n + 1) * sizeof *order);
    json_t *events = json_array();
    if (!order || !events) {
        free(order);
        json_decref(events);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++) {
        const record_t *r = &a->r[i];
        if (customer && strcmp(r->customer, customer) != 0) continue;
        if (conversation && strcmp(r->conversation, conversation) != 0) continue;
        order[n++] = r;
    }
    qsort(order, n, sizeof *order, rec_cmp);
    for (size_t i = 0; i < n; i++) json_array_append(events, order[i]->rec);
    free(order);
    json_t *o = json_object();
    if (!o) {
        json_decref(events);
        return NULL;
    }
    if (conversation) json_object_set_new(o, "conversation_id", json_string(conversation));
    if (customer) json_object_set_new(o, "customer_id", json_string(customer));
    json_object_set_new(o, "events", events);
    return o;
}

json_t *tl_audit_export(const tl_audit_t *a, tl_fold_t *fold, const char *customer, int *err) {
    *err = TL_ENOMEM;
    json_t *o = json_pack("{s:s, s:[], s:[]}", "customer_id", customer, "linked_customers", "customers");
    if (!o) return NULL;
    json_t *linked = json_object_get(o, "linked_customers"), *custs = json_object_get(o, "customers");
    size_t nl;
    const char *const *ids = tl_audit_linked(a, &nl);
    int found = 0;
    for (size_t i = 0; i < nl; i++) {
        const char *id = ids[i];
        if (strcmp(id, customer) != 0) json_array_append_new(linked, json_string(id));
        int e;
        json_t *state = tl_audit_state(a, fold, id, INT64_MAX, &e);
        if (!state) {
            if (e == TL_ENOTFOUND) continue; /* linked, but no event of it in the log */
            json_decref(o);
            return NULL;
        }
        found |= strcmp(id, customer) == 0;
        json_t *idents = json_array(), *events = json_array();
        for (size_t k = 0; k < a->n; k++) {
            const record_t *r = &a->r[k];
            if (strcmp(r->customer, id) != 0) continue;
            json_array_append(events, r->event);
            json_t *p = json_object_get(r->event, "platform"), *u = json_object_get(r->event, "platform_user_id");
            const char *ps = json_string_value(p);
            if (!json_is_string(u) || (ps && (strcmp(ps, "system") == 0 || strcmp(ps, "agent") == 0))) continue;
            int dup = 0;
            for (size_t q = 0; q < json_array_size(idents) && !dup; q++) {
                json_t *x = json_array_get(idents, q);
                dup = json_equal(json_object_get(x, "platform"), p) && json_equal(json_object_get(x, "platform_user_id"), u);
            }
            if (!dup) json_array_append_new(idents, json_pack("{s:O, s:O}", "platform", p, "platform_user_id", u));
        }
        json_t *convs = json_object_get(state, "conversations");
        json_incref(convs);
        json_object_del(state, "conversations");
        json_array_append_new(custs, json_pack("{s:s, s:O, s:o, s:o, s:o, s:o}", "customer_id", id, "tenant_id",
                                               json_object_get(state, "tenant_id"), "identities", idents,
                                               "state", state, "conversations", convs, "events", events));
    }
    if (!found) {
        json_decref(o);
        *err = TL_ENOTFOUND;
        return NULL;
    }
    *err = TL_OK;
    return o;
}

/* ---- text ---------------------------------------------------------------- */

static const char *sget(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

void tl_audit_print_state(FILE *out, const json_t *st) {
    fprintf(out, "customer %s (tenant %s)", sget(st, "customer_id"), sget(st, "tenant_id"));
    if (json_is_string(json_object_get(st, "as_of"))) fprintf(out, " as of %s", sget(st, "as_of"));
    fprintf(out, "\n  version %lld, last event %s\n", (long long)json_integer_value(json_object_get(st, "version")),
            sget(st, "last_event_ts"));
    if (json_is_string(json_object_get(st, "merged_into")))
        fprintf(out, "  merged into %s\n", sget(st, "merged_into"));
    fprintf(out, "  state sha256 %s\n\nfields:\n", sget(st, "state_sha256"));
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(st, "fields"), i, f) {
        json_t *p = json_object_get(f, "provenance");
        fprintf(out, "  %-16s %s%s\n", sget(f, "name"),
                json_is_string(json_object_get(f, "value")) ? sget(f, "value") : "(no value)",
                json_is_true(json_object_get(f, "key")) ? "  [key field]" : "");
        if (json_is_object(p))
            fprintf(out, "  %-16s set by %s %s on %s at %s (event %s%s%s)\n", "", sget(p, "role"), sget(p, "actor"),
                    sget(p, "platform"), sget(p, "effective_ts"), sget(p, "event_id"),
                    json_is_string(json_object_get(p, "via")) ? ", via customer " : "",
                    json_is_string(json_object_get(p, "via")) ? sget(p, "via") : "");
    }
    json_array_foreach(json_object_get(st, "conflicts"), i, f) {
        fprintf(out, "conflict %s on %s (open):\n", sget(f, "conflict_id"), sget(f, "field"));
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(f, "candidates"), k, c)
            fprintf(out, "    \"%s\" from %s %s on %s at %s\n", sget(c, "value"), sget(c, "role"), sget(c, "actor"),
                    sget(c, "platform"), sget(c, "effective_ts"));
    }
    json_array_foreach(json_object_get(st, "links"), i, f)
        fprintf(out, "link: %s %s (%s) since %s%s\n", sget(f, "direction"), sget(f, "customer"),
                json_is_true(json_object_get(f, "active")) ? "active" : "undone", sget(f, "linked_at"), "");
    fprintf(out, "\nconversations:\n");
    json_array_foreach(json_object_get(st, "conversations"), i, f)
        fprintf(out, "  %s  %s  version %lld  %lld items  assignee %s\n", sget(f, "conversation_id"),
                sget(f, "status"), (long long)json_integer_value(json_object_get(f, "version")),
                (long long)json_integer_value(json_object_get(f, "items")), sget(f, "assignee"));
}

void tl_audit_print_account(FILE *out, const json_t *acc) {
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(acc, "events"), i, r) {
        const char *conv = json_string_value(json_object_get(r, "conversation_id"));
        fprintf(out, "%s  %-12s %-8s %s %s  %s: %s", sget(r, "effective_ts"), sget(r, "platform"), sget(r, "role"),
                sget(r, "actor"), sget(r, "position"), sget(r, "kind"), sget(r, "summary"));
        if (conv) fprintf(out, "  [%s%s]", conv, json_is_true(json_object_get(r, "conversation_opened")) ? " opened" : "");
        if (json_is_true(json_object_get(r, "duplicate"))) fprintf(out, "  DUPLICATE (applied once)");
        if (json_is_string(json_object_get(r, "ignored"))) fprintf(out, "  IGNORED: %s", sget(r, "ignored"));
        fputc('\n', out);
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(r, "changes"), k, c) {
            fprintf(out, "      %s", sget(c, "kind"));
            if (json_object_get(c, "field")) fprintf(out, " %s", sget(c, "field"));
            if (json_object_get(c, "value")) fprintf(out, " = \"%s\"", sget(c, "value"));
            if (json_object_get(c, "conflict_id")) fprintf(out, " conflict %s", sget(c, "conflict_id"));
            if (json_object_get(c, "customer")) fprintf(out, " customer %s", sget(c, "customer"));
            fputc('\n', out);
        }
    }
}
