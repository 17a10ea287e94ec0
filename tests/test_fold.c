/*
 * test_fold.c -- engine/fold.c: every rule of DESIGN.md section 4, one
 * behaviour per test, then property tests over seeded random event
 * sequences (determinism, and cutting a sequence at a serialised state).
 *
 * Emitted events are delivered the way the fold worker would: encoded with
 * the event codec (which checks they are well-formed events), then decoded
 * and folded in the order they were emitted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fold.h"
#include "schemas.h"
#include "suites.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define T0 1700000000000LL

static tl_str_t S(const char *s) { return (tl_str_t){s, strlen(s)}; }

/* An assertion for hot loops: Check's ck_assert reports every passing
 * check to the parent process, which the property tests cannot afford. */
#define MUST(expr)                                                            \
    do {                                                                      \
        if (!(expr)) ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #expr);    \
    } while (0)

static tl_fold_opts_t opts = {5 * MIN, 30 * MIN, NULL, 0};

/* ---- building events ---------------------------------------------------- */

static tl_event_t event(const char *customer, const char *event_id, const char *key, tl_platform_t platform,
                        int64_t occurred, int64_t received, tl_event_kind_t kind) {
    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.event_id = S(event_id);
    ev.tenant_id = TL_STR("acme");
    ev.customer_id = S(customer);
    ev.platform = platform;
    ev.platform_user_id = TL_STR("u1");
    ev.idempotency_key = S(key);
    ev.occurred_at = occurred;
    ev.received_at = received;
    ev.trace_id = TL_STR("t");
    ev.kind = kind;
    return ev;
}

static tl_event_t message(const char *customer, const char *event_id, const char *key,
                          int64_t occurred, int64_t received) {
    tl_event_t ev = event(customer, event_id, key, TL_PLATFORM_WEB, occurred, received, TL_EV_MESSAGE_RECEIVED);
    ev.u.message.text = TL_STR("hello");
    return ev;
}

static tl_event_t field(const char *customer, const char *event_id, tl_platform_t platform, int64_t ts,
                        const char *name, const char *value) {
    tl_event_t ev = event(customer, event_id, event_id, platform, ts, ts, TL_EV_FIELD_ASSERTED);
    ev.u.field.field = S(name);
    ev.u.field.value = S(value);
    return ev;
}

static tl_event_t resolve(const char *customer, const char *event_id, int64_t ts, const char *conflict_id,
                          const char *name, const char *chosen) {
    tl_event_t ev = event(customer, event_id, event_id, TL_PLATFORM_AGENT, ts, ts, TL_EV_CONFLICT_RESOLVED);
    ev.u.resolve.conflict_id = S(conflict_id);
    ev.u.resolve.field = S(name);
    ev.u.resolve.chosen_value = S(chosen);
    ev.u.resolve.agent_id = TL_STR("agent-7");
    return ev;
}

static tl_event_t link_ev(const char *survivor, const char *event_id, int64_t ts, const char *absorbed) {
    tl_event_t ev = event(survivor, event_id, event_id, TL_PLATFORM_WECHAT, ts, ts, TL_EV_IDENTITY_LINKED);
    ev.u.link.linked_customer_id = S(absorbed);
    ev.u.link.platform = TL_PLATFORM_MINI_PROGRAM;
    ev.u.link.platform_user_id = TL_STR("oMini_7781");
    ev.u.link.evidence = TL_EVIDENCE_UNIONID;
    ev.u.link.evidence_value = TL_STR("oUnion_42");
    return ev;
}

static tl_event_t unlink_ev(const char *survivor, const char *event_id, int64_t ts, const char *absorbed) {
    tl_event_t ev = event(survivor, event_id, event_id, TL_PLATFORM_AGENT, ts, ts, TL_EV_IDENTITY_UNLINKED);
    ev.u.unlink.linked_customer_id = S(absorbed);
    ev.u.unlink.platform = TL_PLATFORM_MINI_PROGRAM;
    ev.u.unlink.platform_user_id = TL_STR("oMini_7781");
    ev.u.unlink.reason = TL_STR("different people sharing a phone");
    return ev;
}

static tl_event_t conv_action(const char *customer, const char *event_id, int64_t ts, tl_event_kind_t kind,
                              const char *conversation_id) {
    tl_event_t ev = event(customer, event_id, event_id, TL_PLATFORM_AGENT, ts, ts, kind);
    tl_str_t id = S(conversation_id);
    switch (kind) {
    case TL_EV_CONVERSATION_ASSIGNED: ev.u.assign.conversation_id = id; break;
    case TL_EV_CONVERSATION_TAGGED: ev.u.tag.conversation_id = id; break;
    case TL_EV_CONVERSATION_CLOSED:
        ev.u.close.conversation_id = id;
        ev.u.close.reason = TL_STR("solved");
        break;
    default: break;
    }
    return ev;
}

static int str_is(tl_str_t s, const char *want) {
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

#define ck_assert_tlstr(s, want) ck_assert_msg(str_is((s), (want)), "got '%.*s', want '%s'", \
                                               (int)(s).len, (s).ptr ? (s).ptr : "(null)", (want))

/* Applies ev and checks it succeeded. */
static tl_fold_result_t apply(tl_fold_t *f, tl_event_t ev) {
    tl_fold_result_t r;
    int rc = tl_fold_apply(f, &ev, &r);
    ck_assert_msg(rc == 0, "apply: %s", tl_strerror(rc));
    return r;
}

static const tl_fold_change_t *find_change(const tl_fold_result_t *r, tl_fold_change_kind_t kind) {
    for (size_t i = 0; i < r->nchanges; i++)
        if (r->changes[i].kind == kind) return &r->changes[i];
    return NULL;
}

static tl_fold_field_t get_field(tl_fold_t *f, const char *customer, const char *name) {
    tl_fold_field_t fl;
    ck_assert_int_eq(tl_fold_get_field(f, TL_STR("acme"), S(customer), S(name), &fl), 0);
    return fl;
}

static tl_fold_customer_t get_customer(tl_fold_t *f, const char *customer) {
    tl_fold_customer_t c;
    ck_assert_int_eq(tl_fold_get_customer(f, TL_STR("acme"), S(customer), &c), 0);
    return c;
}

/* Delivers r's emitted events, and theirs in turn, as the fold worker
 * would: each through the event codec, in order.  Returns how many. */
static int deliver(tl_fold_t *f, tl_codec_t *ec, const tl_fold_result_t *r) {
    size_t n = r->nemit;
    tl_buf_t *bufs = calloc(n ? n : 1, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        tl_buf_init(&bufs[i]);
        ck_assert_int_eq(tl_codec_encode_event(ec, &r->emit[i], &bufs[i]), 0);
    }
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        tl_event_t ev;
        tl_fold_result_t r2;
        ck_assert_int_eq(tl_codec_decode_event(ec, bufs[i].data, bufs[i].len, &ev), 0);
        ck_assert_int_eq(tl_fold_apply(f, &ev, &r2), 0);
        ck_assert(!r2.duplicate);
        count += 1 + deliver(f, ec, &r2);
        tl_buf_close(&bufs[i]);
    }
    free(bufs);
    return count;
}

static tl_codec_t *event_codec(void) {
    int err = 0;
    tl_codec_t *c = tl_codec_new_event(&err);
    ck_assert_ptr_nonnull(c);
    return c;
}

static tl_codec_t *state_codec(void) {
    int err = 0;
    tl_codec_t *c = tl_codec_new(tl_schema_state, &err);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* ---- ordering, versions, dedup, conversations --------------------------- */

START_TEST(fold_effective_ts_is_clamped_to_skew_window) {
    tl_fold_t *f = tl_fold_new(&opts);
    int64_t now = T0;
    tl_event_t ev = message("c1", "e1", "web:1", now - 10 * MIN, now);
    ck_assert_int_eq(tl_fold_effective_ts(f, &ev), now - 5 * MIN);   /* too far behind */
    ev.occurred_at = now + MIN;
    ck_assert_int_eq(tl_fold_effective_ts(f, &ev), now);             /* in the future */
    ev.occurred_at = now - 3000;
    ck_assert_int_eq(tl_fold_effective_ts(f, &ev), now - 3000);      /* within skew */
    ev.received_at = INT64_MIN + 5;                                  /* no overflow */
    ev.occurred_at = 0;
    ck_assert_int_eq(tl_fold_effective_ts(f, &ev), INT64_MIN + 5);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_late_app_message_sorts_where_written) {
    /* The customer writes on the web at T and on the app 3 s later; the
     * app's message is delivered first (the web one was held up 4 s). */
    tl_fold_t *f = tl_fold_new(&opts);
    tl_event_t app = message("c1", "e-app", "app:m1", T0 + 3 * SEC, T0 + 3 * SEC + 200);
    app.platform = TL_PLATFORM_APP;
    tl_event_t web = message("c1", "e-web", "web:m1", T0, T0 + 4 * SEC);
    tl_fold_result_t first = apply(f, app), second = apply(f, web);
    /* One conversation, the late one included. */
    ck_assert(first.conversation_opened && !second.conversation_opened);
    ck_assert_str_eq(first.conversation_id, second.conversation_id);
    ck_assert_int_eq(second.conversation_version, 2);
    /* The timeline orders by effective_ts, then partition order: the web
     * message, written first, is shown first. */
    ck_assert_int_eq(second.effective_ts, T0);
    ck_assert_int_eq(first.effective_ts, T0 + 3 * SEC);
    ck_assert_int_lt(second.effective_ts, first.effective_ts);
    tl_fold_customer_t c = get_customer(f, "c1");
    ck_assert_uint_eq(c.platforms, (1u << TL_PLATFORM_APP) | (1u << TL_PLATFORM_WEB));
    ck_assert_int_eq(c.last_event_ts, T0 + 3 * SEC);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_versions_count_applied_events) {
    tl_fold_t *f = tl_fold_new(&opts);
    for (int i = 0; i < 5; i++) {
        char id[16], key[16];
        snprintf(id, sizeof id, "e%d", i);
        snprintf(key, sizeof key, "web:%d", i);
        tl_fold_result_t r = apply(f, message("c1", id, key, T0 + i, T0 + i));
        ck_assert_int_eq(r.customer_version, i + 1);
        ck_assert_int_eq(r.conversation_version, i + 1);
        ck_assert_int_eq(r.conversation_opened, i == 0);
    }
    /* A field event counts on the customer, not on the conversation. */
    tl_fold_result_t r = apply(f, field("c1", "e5", TL_PLATFORM_WEB, T0 + 5, "name", "Li"));
    ck_assert_int_eq(r.customer_version, 6);
    ck_assert_str_eq(r.conversation_id, "");
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_wechat_triple_resend_applied_once) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r = apply(f, message("c1", "e1", "wechat:msg-42", T0, T0));
    ck_assert(!r.duplicate);
    char first_conv[40];
    strcpy(first_conv, r.conversation_id);
    for (int i = 0; i < 3; i++) {
        const char *id = i == 0 ? "e2" : i == 1 ? "e3" : "e4";
        r = apply(f, message("c1", id, "wechat:msg-42", T0 + 1000 * i, T0 + 1000 * i));
        ck_assert(r.duplicate);
        ck_assert_int_eq(r.customer_version, 1);
        ck_assert_int_eq(r.conversation_version, 1);
        ck_assert_str_eq(r.conversation_id, first_conv);
        ck_assert_uint_eq(r.nchanges, 0);
    }
    /* A resent field assertion is recorded once too. */
    apply(f, field("c1", "wechat:msg-43", TL_PLATFORM_WECHAT, T0, "name", "Li"));
    r = apply(f, field("c1", "wechat:msg-43", TL_PLATFORM_WECHAT, T0 + 1, "name", "Li"));
    ck_assert(r.duplicate);
    ck_assert_uint_eq(get_field(f, "c1", "name").nvalues, 1);
    ck_assert_int_eq(get_customer(f, "c1").version, 2);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_idempotency_window_is_bounded) {
    tl_fold_t *f = tl_fold_new(&opts);
    apply(f, message("c1", "e0", "web:0", T0, T0));
    char id[16], key[16];
    for (int i = 1; i < TL_FOLD_RECENT_KEYS; i++) {
        snprintf(id, sizeof id, "e%d", i);
        snprintf(key, sizeof key, "web:%d", i);
        apply(f, message("c1", id, key, T0 + i, T0 + i));
    }
    ck_assert(apply(f, message("c1", "x", "web:0", T0 + 100, T0 + 100)).duplicate);
    apply(f, message("c1", "e64", "web:64", T0 + 101, T0 + 101));   /* pushes web:0 out */
    ck_assert(!apply(f, message("c1", "y", "web:0", T0 + 102, T0 + 102)).duplicate);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_key_hash_is_xxh64) {
    /* Pinned: recent_key_hashes in every stored state depend on these. */
    ck_assert_int_eq(tl_fold_key_hash(TL_STR("")), (int64_t)0xef46db3751d8e999ULL);
    ck_assert_int_eq(tl_fold_key_hash(TL_STR("abc")), (int64_t)0x44bc2cf5ad770999ULL);
    ck_assert_int_eq(tl_fold_key_hash(TL_STR("wechat:msg-42")), (int64_t)0x51d4a59a79a74d58ULL);
    ck_assert_int_eq(tl_fold_key_hash(TL_STR("mini_program:msg-20240518-000187")),
                     (int64_t)0x742844c99d035a36ULL);
    ck_assert_int_eq(tl_fold_key_hash(TL_STR("0123456789abcdef0123456789abcdef0123456789")),
                     (int64_t)0xa76190c3acf08a1cULL);
}
END_TEST

START_TEST(fold_idle_timeout_opens_new_conversation) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r = apply(f, message("c1", "e1", "web:1", T0, T0));
    char first[40];
    strcpy(first, r.conversation_id);
    r = apply(f, message("c1", "e2", "web:2", T0 + 29 * MIN, T0 + 29 * MIN));
    ck_assert_str_eq(r.conversation_id, first);
    r = apply(f, message("c1", "e3", "web:3", T0 + 60 * MIN, T0 + 60 * MIN));
    ck_assert_str_ne(r.conversation_id, first);
    ck_assert(r.conversation_opened);
    ck_assert_int_eq(r.conversation_version, 1);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_close_then_message_opens_new_conversation) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r = apply(f, message("c1", "e1", "web:1", T0, T0));
    char first[40];
    strcpy(first, r.conversation_id);
    r = apply(f, conv_action("c1", "e2", T0 + 500, TL_EV_CONVERSATION_CLOSED, first));
    ck_assert_str_eq(r.conversation_id, first);
    ck_assert_int_eq(r.conversation_version, 2);
    ck_assert(get_customer(f, "c1").conversation_closed);
    r = apply(f, message("c1", "e3", "web:2", T0 + 1000, T0 + 1000));
    ck_assert_str_ne(r.conversation_id, first);
    ck_assert(r.conversation_opened);
    ck_assert(!get_customer(f, "c1").conversation_closed);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_conversation_id_is_deterministic) {
    tl_fold_t *f1 = tl_fold_new(&opts), *f2 = tl_fold_new(&opts);
    tl_fold_result_t r1 = apply(f1, message("c1", "e1", "web:1", 1, 1));
    tl_fold_result_t r2 = apply(f2, message("c1", "e1", "web:1", 1, 1));
    ck_assert_str_eq(r1.conversation_id, r2.conversation_id);
    ck_assert_int_eq(strlen(r1.conversation_id), 36);
    tl_fold_free(f1);
    tl_fold_free(f2);
}
END_TEST

START_TEST(fold_conversation_header_tracks_assignment_tags_and_platforms) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r = apply(f, message("c1", "e1", "web:1", T0, T0));
    char conv[40];
    strcpy(conv, r.conversation_id);
    tl_event_t ev = conv_action("c1", "e2", T0 + 1, TL_EV_CONVERSATION_ASSIGNED, conv);
    ev.u.assign.agent_id = TL_STR("agent-7");
    ev.u.assign.team_id = TL_STR("after-sales");
    r = apply(f, ev);
    ck_assert_int_eq(r.conversation_version, 2);
    static const tl_str_t added[] = {TL_STR("vip"), TL_STR("refund"), TL_STR("vip"), TL_STR("物流")};
    ev = conv_action("c1", "e3", T0 + 2, TL_EV_CONVERSATION_TAGGED, conv);
    ev.u.tag.added = (tl_strs_t){added, 4};
    apply(f, ev);
    static const tl_str_t removed[] = {TL_STR("refund"), TL_STR("never-there")};
    ev = conv_action("c1", "e4", T0 + 3, TL_EV_CONVERSATION_TAGGED, conv);
    ev.u.tag.removed = (tl_strs_t){removed, 2};
    apply(f, ev);
    /* A bad tag spoils the whole event: nothing of it applies. */
    static const tl_str_t bad[] = {TL_STR("ok"), TL_STR("")};
    ev = conv_action("c1", "e5", T0 + 4, TL_EV_CONVERSATION_TAGGED, conv);
    ev.u.tag.added = (tl_strs_t){bad, 2};
    r = apply(f, ev);
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_BAD_TAG);
    ck_assert_int_eq(r.conversation_version, 4);
    ev = event("c1", "e6", "app:1", TL_PLATFORM_APP, T0 + 5, T0 + 5, TL_EV_BEHAVIOR_TRACKED);
    ev.u.behavior.page = TL_STR("order-detail");
    ev.u.behavior.action = TL_STR("view");
    apply(f, ev);

    tl_fold_customer_t c = get_customer(f, "c1");
    ck_assert_str_eq(c.conversation_id, conv);
    ck_assert_int_eq(c.conversation_version, 5);
    ck_assert_tlstr(c.assignee, "agent-7");
    ck_assert_tlstr(c.team, "after-sales");
    ck_assert_uint_eq(c.ntags, 2);
    ck_assert_tlstr(c.tags[0], "vip");      /* byte order */
    ck_assert_tlstr(c.tags[1], "物流");
    ck_assert_uint_eq(c.platforms, (1u << TL_PLATFORM_WEB) | (1u << TL_PLATFORM_APP));

    /* A new conversation starts with a clean header. */
    apply(f, message("c1", "e7", "web:2", T0 + 90 * MIN, T0 + 90 * MIN));
    c = get_customer(f, "c1");
    ck_assert_ptr_null(c.assignee.ptr);
    ck_assert_uint_eq(c.ntags, 0);
    ck_assert_uint_eq(c.platforms, 1u << TL_PLATFORM_WEB);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_action_on_old_conversation_is_attributed_not_applied) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r = apply(f, message("c1", "e1", "web:1", T0, T0));
    char old[40];
    strcpy(old, r.conversation_id);
    apply(f, message("c1", "e2", "web:2", T0 + 60 * MIN, T0 + 60 * MIN));
    tl_event_t ev = conv_action("c1", "e3", T0 + 61 * MIN, TL_EV_CONVERSATION_ASSIGNED, old);
    ev.u.assign.agent_id = TL_STR("agent-7");
    r = apply(f, ev);
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_NOT_CURRENT);
    ck_assert_str_eq(r.conversation_id, old);
    ck_assert_int_eq(r.conversation_version, 0);
    ck_assert_int_eq(r.customer_version, 3);
    ck_assert_ptr_null(get_customer(f, "c1").assignee.ptr);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_customers_are_independent) {
    tl_fold_t *f = tl_fold_new(&opts);
    /* Enough customers to force the table to grow several times. */
    for (int i = 0; i < 5000; i++) {
        char c[16], e[16];
        snprintf(c, sizeof c, "c%d", i);
        snprintf(e, sizeof e, "e%d", i);
        tl_fold_result_t r = apply(f, message(c, e, "web:same-key", 1, 1));
        ck_assert(!r.duplicate);
        ck_assert_int_eq(r.customer_version, 1);
    }
    ck_assert_uint_eq(tl_fold_count(f), 5000);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_rejects_event_without_customer) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r;
    tl_event_t ev = message("", "e1", "web:1", 1, 1);
    ck_assert_int_eq(tl_fold_apply(f, &ev, &r), TL_EINVAL);
    ev = message("c1", "e1", "web:1", 1, 1);
    ev.platform = TL_PLATFORM__COUNT;
    ck_assert_int_eq(tl_fold_apply(f, &ev, &r), TL_EINVAL);
    ev = message("c1", "e1", "web:1", 1, 1);
    ev.kind = TL_EV__COUNT;
    ck_assert_int_eq(tl_fold_apply(f, &ev, &r), TL_EINVAL);
    ck_assert_uint_eq(tl_fold_count(f), 0);
    tl_fold_free(f);
}
END_TEST

/* ---- fields and conflicts ----------------------------------------------- */

START_TEST(fold_ordinary_field_last_writer_wins_with_history) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r = apply(f, field("c1", "e1", TL_PLATFORM_WEB, T0, "name", "Li"));
    ck_assert_uint_eq(r.nchanges, 1);
    ck_assert_int_eq(r.changes[0].kind, TL_FOLD_FIELD_SET);
    ck_assert_tlstr(r.changes[0].field, "name");
    ck_assert_tlstr(r.changes[0].value, "Li");
    apply(f, message("c1", "e2", "web:2", T0 + 1, T0 + 1));
    r = apply(f, field("c1", "e3", TL_PLATFORM_APP, T0 + 10 * SEC, "name", "Li Lei"));
    ck_assert_int_eq(r.changes[0].kind, TL_FOLD_FIELD_SET);
    tl_fold_field_t fl = get_field(f, "c1", "name");
    ck_assert(!fl.key && fl.has_current);
    ck_assert_tlstr(fl.current.value, "Li Lei");
    ck_assert_int_eq(fl.current.version, 3);
    ck_assert_int_eq(fl.current.effective_ts, T0 + 10 * SEC);
    ck_assert_int_eq(fl.current.platform, TL_PLATFORM_APP);
    ck_assert_tlstr(fl.current.event_id, "e3");
    ck_assert_ptr_null(fl.current.via.ptr);
    ck_assert_uint_eq(fl.nvalues, 2);
    ck_assert_tlstr(fl.values[0].value, "Li");
    ck_assert_int_eq(fl.values[0].platform, TL_PLATFORM_WEB);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_older_field_value_is_kept_not_applied) {
    tl_fold_t *f = tl_fold_new(&opts);
    apply(f, field("c1", "e1", TL_PLATFORM_APP, T0 + 10 * SEC, "address", "新地址"));
    /* Written earlier, arrives later: history only. */
    tl_fold_result_t r = apply(f, field("c1", "e2", TL_PLATFORM_WEB, T0, "address", "旧地址"));
    ck_assert_int_eq(r.changes[0].kind, TL_FOLD_FIELD_KEPT);
    tl_fold_field_t fl = get_field(f, "c1", "address");
    ck_assert_tlstr(fl.current.value, "新地址");
    ck_assert_uint_eq(fl.nvalues, 2);
    ck_assert_tlstr(fl.values[1].value, "旧地址");
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_field_tie_goes_to_the_later_record) {
    tl_fold_t *f = tl_fold_new(&opts);
    apply(f, field("c1", "e1", TL_PLATFORM_APP, T0, "name", "first"));
    apply(f, field("c1", "e2", TL_PLATFORM_WEB, T0, "name", "second"));
    ck_assert_tlstr(get_field(f, "c1", "name").current.value, "second");
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_field_history_is_bounded) {
    tl_fold_t *f = tl_fold_new(&opts);
    char id[16], value[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "e%d", i);
        snprintf(value, sizeof value, "v%d", i);
        apply(f, field("c1", id, TL_PLATFORM_WEB, T0 + i, "name", value));
    }
    tl_fold_field_t fl = get_field(f, "c1", "name");
    ck_assert_uint_eq(fl.nvalues, TL_FOLD_HISTORY);
    ck_assert_tlstr(fl.values[0].value, "v12");
    ck_assert_tlstr(fl.current.value, "v19");
    /* The current value survives however many older ones arrive late. */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "late%d", i);
        apply(f, field("c1", id, TL_PLATFORM_WEB, T0 - i, "name", "stale"));
    }
    fl = get_field(f, "c1", "name");
    ck_assert_uint_eq(fl.nvalues, TL_FOLD_HISTORY);
    ck_assert_tlstr(fl.current.value, "v19");
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_key_field_change_opens_conflict) {
    /* An order number given on the mini-program, and a different one on
     * WeChat: a conflict with both candidates, the value unchanged. */
    tl_fold_t *f = tl_fold_new(&opts);
    apply(f, field("c1", "e-mini", TL_PLATFORM_MINI_PROGRAM, T0, "order_no", "TL20240518001"));
    tl_fold_result_t r = apply(f, field("c1", "e-wx", TL_PLATFORM_WECHAT, T0 + MIN, "order_no", "TL20240519007"));
    const tl_fold_change_t *ch = find_change(&r, TL_FOLD_CONFLICT_OPENED);
    ck_assert_ptr_nonnull(ch);
    ck_assert_tlstr(ch->field, "order_no");
    ck_assert_tlstr(ch->value, "TL20240519007");
    ck_assert_int_eq(strlen(ch->conflict_id), 36);
    char conflict_id[40];
    strcpy(conflict_id, ch->conflict_id);

    tl_fold_field_t fl = get_field(f, "c1", "order_no");
    ck_assert(fl.key);
    ck_assert_tlstr(fl.current.value, "TL20240518001");
    ck_assert_int_eq(fl.current.platform, TL_PLATFORM_MINI_PROGRAM);
    tl_fold_conflict_t cf;
    ck_assert_int_eq(tl_fold_get_conflict(f, TL_STR("acme"), TL_STR("c1"), TL_STR("order_no"), &cf), 0);
    ck_assert_str_eq(cf.id, conflict_id);
    ck_assert_uint_eq(cf.ncandidates, 2);
    ck_assert_tlstr(cf.candidates[0].value, "TL20240518001");
    ck_assert_int_eq(cf.candidates[0].platform, TL_PLATFORM_MINI_PROGRAM);
    ck_assert_tlstr(cf.candidates[0].event_id, "e-mini");
    ck_assert_tlstr(cf.candidates[1].value, "TL20240519007");
    ck_assert_int_eq(cf.candidates[1].platform, TL_PLATFORM_WECHAT);
    ck_assert_tlstr(cf.candidates[1].event_id, "e-wx");
    ck_assert_uint_eq(get_customer(f, "c1").nconflicts, 1);

    /* The agent picks the WeChat one. */
    r = apply(f, resolve("c1", "e-res", T0 + 2 * MIN, conflict_id, "order_no", "TL20240519007"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_NONE);
    ch = find_change(&r, TL_FOLD_CONFLICT_RESOLVED);
    ck_assert_ptr_nonnull(ch);
    ck_assert_str_eq(ch->conflict_id, conflict_id);
    ck_assert_tlstr(ch->value, "TL20240519007");
    ck_assert_ptr_nonnull(find_change(&r, TL_FOLD_FIELD_SET));
    fl = get_field(f, "c1", "order_no");
    ck_assert_tlstr(fl.current.value, "TL20240519007");
    ck_assert_int_eq(fl.current.platform, TL_PLATFORM_AGENT);
    ck_assert_tlstr(fl.current.event_id, "e-res");
    ck_assert_int_eq(tl_fold_get_conflict(f, TL_STR("acme"), TL_STR("c1"), TL_STR("order_no"), &cf),
                     TL_ENOTFOUND);
    ck_assert_uint_eq(get_customer(f, "c1").nconflicts, 0);

    /* Resolving it again: the conflict is closed, nothing happens. */
    r = apply(f, resolve("c1", "e-res2", T0 + 3 * MIN, conflict_id, "order_no", "TL20240518001"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_UNKNOWN_CONFLICT);
    ck_assert_tlstr(get_field(f, "c1", "order_no").current.value, "TL20240519007");
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_conflict_gathers_each_candidate_once) {
    tl_fold_t *f = tl_fold_new(&opts);
    apply(f, field("c1", "e1", TL_PLATFORM_WEB, T0, "phone", "13800000001"));
    tl_fold_result_t r = apply(f, field("c1", "e2", TL_PLATFORM_APP, T0 + 1, "phone", "13800000001"));
    ck_assert_int_eq(r.changes[0].kind, TL_FOLD_FIELD_KEPT);     /* agrees: no conflict */
    apply(f, field("c1", "e3", TL_PLATFORM_APP, T0 + 2, "phone", "13900000002"));
    r = apply(f, field("c1", "e4", TL_PLATFORM_DOUYIN, T0 + 3, "phone", "13700000003"));
    ck_assert_ptr_nonnull(find_change(&r, TL_FOLD_CONFLICT_CANDIDATE));
    r = apply(f, field("c1", "e5", TL_PLATFORM_WECHAT, T0 + 4, "phone", "13900000002"));
    ck_assert_int_eq(r.changes[0].kind, TL_FOLD_FIELD_KEPT);
    tl_fold_conflict_t cf;
    ck_assert_int_eq(tl_fold_get_conflict(f, TL_STR("acme"), TL_STR("c1"), TL_STR("phone"), &cf), 0);
    ck_assert_uint_eq(cf.ncandidates, 3);
    ck_assert_tlstr(cf.candidates[2].value, "13700000003");
    ck_assert_tlstr(get_field(f, "c1", "phone").current.value, "13800000001");
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_bad_resolution_is_ignored) {
    tl_fold_t *f = tl_fold_new(&opts);
    apply(f, field("c1", "e1", TL_PLATFORM_WEB, T0, "email", "a@example.cn"));
    tl_fold_result_t r = apply(f, field("c1", "e2", TL_PLATFORM_APP, T0 + 1, "email", "b@example.cn"));
    char id[40];
    strcpy(id, find_change(&r, TL_FOLD_CONFLICT_OPENED)->conflict_id);
    r = apply(f, resolve("c1", "e3", T0 + 2, "00000000-0000-5000-8000-000000000000", "email", "b@example.cn"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_UNKNOWN_CONFLICT);
    ck_assert_int_eq(r.customer_version, 3);
    ck_assert_uint_eq(r.nchanges, 0);
    r = apply(f, resolve("c1", "e4", T0 + 3, id, "phone", "b@example.cn"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_CONFLICT_FIELD);
    r = apply(f, resolve("c1", "e5", T0 + 4, id, "email", ""));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_EMPTY_CHOICE);
    r = apply(f, resolve("nobody", "e6", T0 + 5, id, "email", "x"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_UNKNOWN_CONFLICT);
    ck_assert_tlstr(get_field(f, "c1", "email").current.value, "a@example.cn");
    ck_assert_uint_eq(get_customer(f, "c1").nconflicts, 1);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_key_fields_are_configurable) {
    static const char *const keys[] = {"vip_level"};
    tl_fold_opts_t o = {5 * MIN, 30 * MIN, keys, 1};
    tl_fold_t *f = tl_fold_new(&o);
    ck_assert_ptr_nonnull(f);
    apply(f, field("c1", "e1", TL_PLATFORM_WEB, T0, "phone", "13800000001"));
    apply(f, field("c1", "e2", TL_PLATFORM_WEB, T0 + 1, "phone", "13900000002"));
    ck_assert_tlstr(get_field(f, "c1", "phone").current.value, "13900000002");   /* ordinary now */
    apply(f, field("c1", "e3", TL_PLATFORM_WEB, T0 + 2, "vip_level", "gold"));
    tl_fold_result_t r = apply(f, field("c1", "e4", TL_PLATFORM_WEB, T0 + 3, "vip_level", "silver"));
    ck_assert_ptr_nonnull(find_change(&r, TL_FOLD_CONFLICT_OPENED));
    tl_fold_free(f);

    /* No key fields at all, and options that cannot work. */
    tl_fold_opts_t none = {5 * MIN, 30 * MIN, keys, 0};
    f = tl_fold_new(&none);
    apply(f, field("c1", "e1", TL_PLATFORM_WEB, T0, "order_no", "A"));
    apply(f, field("c1", "e2", TL_PLATFORM_WEB, T0 + 1, "order_no", "B"));
    ck_assert_tlstr(get_field(f, "c1", "order_no").current.value, "B");
    tl_fold_free(f);
    static const char *const bad[] = {""};
    tl_fold_opts_t o2 = {5 * MIN, 30 * MIN, bad, 1};
    ck_assert_ptr_null(tl_fold_new(&o2));
    tl_fold_opts_t o3 = {-1, 30 * MIN, NULL, 0};
    ck_assert_ptr_null(tl_fold_new(&o3));
}
END_TEST

START_TEST(fold_field_limits_are_enforced) {
    tl_fold_t *f = tl_fold_new(&opts);
    char id[32], name[32];
    for (int i = 0; i < TL_FOLD_MAX_FIELDS; i++) {
        snprintf(id, sizeof id, "e%d", i);
        snprintf(name, sizeof name, "f%02d", i);
        ck_assert_int_eq(apply(f, field("c1", id, TL_PLATFORM_WEB, T0, name, "x")).ignored, 0);
    }
    tl_fold_result_t r = apply(f, field("c1", "e-over", TL_PLATFORM_WEB, T0, "one_too_many", "x"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_TOO_MANY_FIELDS);
    ck_assert_int_eq(r.customer_version, TL_FOLD_MAX_FIELDS + 1);   /* recorded, though */
    /* An existing field still takes values. */
    ck_assert_int_eq(apply(f, field("c1", "e-ok", TL_PLATFORM_WEB, T0 + 1, "f00", "y")).ignored, 0);

    char big[TL_FOLD_MAX_VALUE + 2];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    ck_assert_int_eq(apply(f, field("c1", "e-big", TL_PLATFORM_WEB, T0, "f01", big)).ignored,
                     TL_FOLD_IGNORE_VALUE_TOO_LONG);
    big[TL_FOLD_MAX_NAME + 1] = 0;
    ck_assert_int_eq(apply(f, field("c1", "e-name", TL_PLATFORM_WEB, T0, big, "x")).ignored,
                     TL_FOLD_IGNORE_FIELD_NAME);
    ck_assert_int_eq(apply(f, field("c1", "e-empty", TL_PLATFORM_WEB, T0, "", "x")).ignored,
                     TL_FOLD_IGNORE_FIELD_NAME);
    ck_assert_int_eq(apply(f, field("c2", "e-key", TL_PLATFORM_WEB, T0, "phone", "")).ignored,
                     TL_FOLD_IGNORE_EMPTY_KEY_VALUE);
    ck_assert_int_eq(tl_fold_get_field(f, TL_STR("acme"), TL_STR("c2"), TL_STR("phone"), &(tl_fold_field_t){0}),
                     TL_ENOTFOUND);
    ck_assert_uint_eq(get_customer(f, "c1").nfields, TL_FOLD_MAX_FIELDS);
    ck_assert_str_ne(tl_fold_ignore_text(TL_FOLD_IGNORE_TOO_MANY_FIELDS), "unknown");
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_candidate_limit_is_enforced) {
    tl_fold_t *f = tl_fold_new(&opts);
    char id[16], value[16];
    apply(f, field("c1", "e0", TL_PLATFORM_WEB, T0, "phone", "p0"));
    for (int i = 1; i < TL_FOLD_MAX_CANDIDATES; i++) {
        snprintf(id, sizeof id, "e%d", i);
        snprintf(value, sizeof value, "p%d", i);
        ck_assert_int_eq(apply(f, field("c1", id, TL_PLATFORM_WEB, T0 + i, "phone", value)).ignored, 0);
    }
    tl_fold_result_t r = apply(f, field("c1", "e-over", TL_PLATFORM_WEB, T0 + 100, "phone", "p-over"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_TOO_MANY_CANDIDATES);
    tl_fold_conflict_t cf;
    ck_assert_int_eq(tl_fold_get_conflict(f, TL_STR("acme"), TL_STR("c1"), TL_STR("phone"), &cf), 0);
    ck_assert_uint_eq(cf.ncandidates, TL_FOLD_MAX_CANDIDATES);
    tl_fold_free(f);
}
END_TEST

/* ---- identity ----------------------------------------------------------- */

/* A (WeChat Official Account) and B (mini-program), before they are known
 * to be one person. */
static void two_profiles(tl_fold_t *f) {
    apply(f, field("A", "a1", TL_PLATFORM_WECHAT, T0, "phone", "13800000001"));
    apply(f, field("A", "a2", TL_PLATFORM_WECHAT, T0, "name", "Li"));
    apply(f, field("B", "b1", TL_PLATFORM_MINI_PROGRAM, T0 + MIN, "phone", "13900000002"));
    apply(f, field("B", "b2", TL_PLATFORM_MINI_PROGRAM, T0 + MIN, "name", "Li Lei"));
    apply(f, field("B", "b3", TL_PLATFORM_MINI_PROGRAM, T0 + MIN, "email", "lilei@example.cn"));
}

START_TEST(fold_unionid_link_merges_profiles_with_phone_conflict) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_codec_t *ec = event_codec();
    two_profiles(f);

    /* The unionid shows B is A: the link event goes to the survivor A. */
    tl_fold_result_t r = apply(f, link_ev("A", "L1", T0 + 5 * MIN, "B"));
    ck_assert_int_eq(r.ignored, 0);
    ck_assert_tlstr(find_change(&r, TL_FOLD_LINKED)->customer, "B");
    ck_assert_uint_eq(r.nemit, 1);
    const tl_event_t *notice = &r.emit[0];
    ck_assert_int_eq(notice->kind, TL_EV_IDENTITY_LINKED);
    ck_assert_tlstr(notice->customer_id, "B");
    ck_assert_int_eq(notice->platform, TL_PLATFORM_SYSTEM);
    ck_assert_tlstr(notice->u.link.linked_customer_id, "A");
    ck_assert_tlstr(notice->idempotency_key, "system:link:L1");
    ck_assert_int_eq(notice->u.link.evidence, TL_EVIDENCE_UNIONID);
    ck_assert_int_eq(notice->occurred_at, T0 + 5 * MIN);
    ck_assert(tl_uuid_valid(notice->event_id.ptr, notice->event_id.len));

    /* B folds the notice and hands its three fields to A, which folds them. */
    tl_buf_t buf;
    tl_buf_init(&buf);
    ck_assert_int_eq(tl_codec_encode_event(ec, notice, &buf), 0);
    tl_event_t ev;
    ck_assert_int_eq(tl_codec_decode_event(ec, buf.data, buf.len, &ev), 0);
    tl_fold_result_t rb = apply(f, ev);
    ck_assert_tlstr(find_change(&rb, TL_FOLD_MERGED)->customer, "A");
    ck_assert_uint_eq(rb.nemit, 3);
    for (size_t i = 0; i < rb.nemit; i++) {
        const tl_event_t *e = &rb.emit[i];
        ck_assert_int_eq(e->kind, TL_EV_FIELD_ASSERTED);
        ck_assert_tlstr(e->customer_id, "A");
        ck_assert_tlstr(e->platform_user_id, "B");
        ck_assert_int_eq(e->platform, TL_PLATFORM_SYSTEM);
        ck_assert_int_eq(e->occurred_at, T0 + MIN);     /* the value's own time */
        ck_assert_int_eq(e->received_at, T0 + MIN);
    }
    ck_assert_tlstr(rb.emit[0].u.field.field, "email");     /* by name */
    char key[128];
    snprintf(key, sizeof key, "system:link:%.*s:email", (int)ev.event_id.len, ev.event_id.ptr);
    ck_assert_tlstr(rb.emit[0].idempotency_key, key);
    ck_assert_int_eq(deliver(f, ec, &rb), 3);
    tl_buf_close(&buf);

    ck_assert_tlstr(get_customer(f, "B").merged_into, "A");
    ck_assert_uint_eq(get_customer(f, "A").nlinked, 1);
    ck_assert_ptr_null(get_customer(f, "A").merged_into.ptr);
    /* email: A had none, takes B's. */
    tl_fold_field_t fl = get_field(f, "A", "email");
    ck_assert_tlstr(fl.current.value, "lilei@example.cn");
    ck_assert_tlstr(fl.current.via, "B");
    ck_assert_int_eq(fl.current.effective_ts, T0 + MIN);
    /* name: ordinary, B's is newer: last writer wins. */
    ck_assert_tlstr(get_field(f, "A", "name").current.value, "Li Lei");
    /* phone: key field, they differ: conflict, A's value stays. */
    ck_assert_tlstr(get_field(f, "A", "phone").current.value, "13800000001");
    tl_fold_conflict_t cf;
    ck_assert_int_eq(tl_fold_get_conflict(f, TL_STR("acme"), TL_STR("A"), TL_STR("phone"), &cf), 0);
    ck_assert_uint_eq(cf.ncandidates, 2);
    ck_assert_tlstr(cf.candidates[0].value, "13800000001");
    ck_assert_int_eq(cf.candidates[0].platform, TL_PLATFORM_WECHAT);
    ck_assert_tlstr(cf.candidates[1].value, "13900000002");
    ck_assert_tlstr(cf.candidates[1].via, "B");
    /* B keeps its own profile: nothing moved out of it. */
    ck_assert_tlstr(get_field(f, "B", "phone").current.value, "13900000002");
    tl_codec_free(ec);
    tl_fold_free(f);
}
END_TEST

/* Links B into A and delivers every emitted event. */
static void link_and_deliver(tl_fold_t *f, tl_codec_t *ec, const char *id, int64_t ts) {
    tl_fold_result_t r = apply(f, link_ev("A", id, ts, "B"));
    ck_assert_int_eq(r.ignored, 0);
    deliver(f, ec, &r);
}

START_TEST(fold_unlink_reverts_linked_values_keeping_history) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_codec_t *ec = event_codec();
    two_profiles(f);
    link_and_deliver(f, ec, "L1", T0 + 5 * MIN);
    /* A's own values, before and after the link, stay. */
    apply(f, field("A", "a3", TL_PLATFORM_WECHAT, T0 + 6 * MIN, "city", "杭州"));

    tl_fold_result_t r = apply(f, unlink_ev("A", "U1", T0 + 10 * MIN, "B"));
    ck_assert_int_eq(r.ignored, 0);
    ck_assert_ptr_nonnull(find_change(&r, TL_FOLD_UNLINKED));
    const tl_fold_change_t *ch = find_change(&r, TL_FOLD_CONFLICT_WITHDRAWN);
    ck_assert_ptr_nonnull(ch);
    ck_assert_tlstr(ch->field, "phone");
    int reverted = 0;
    for (size_t i = 0; i < r.nchanges; i++)
        if (r.changes[i].kind == TL_FOLD_FIELD_REVERTED) {
            reverted++;
            if (str_is(r.changes[i].field, "email")) ck_assert_ptr_null(r.changes[i].value.ptr);
            else ck_assert_tlstr(r.changes[i].value, "Li");
        }
    ck_assert_int_eq(reverted, 2);
    ck_assert_uint_eq(r.nemit, 1);
    ck_assert_int_eq(r.emit[0].kind, TL_EV_IDENTITY_UNLINKED);
    ck_assert_tlstr(r.emit[0].customer_id, "B");
    ck_assert_tlstr(r.emit[0].u.unlink.linked_customer_id, "A");
    ck_assert_int_eq(deliver(f, ec, &r), 1);

    /* Values back to what A had; nothing deleted. */
    tl_fold_field_t fl = get_field(f, "A", "name");
    ck_assert_tlstr(fl.current.value, "Li");
    ck_assert_uint_eq(fl.nvalues, 2);
    ck_assert(fl.values[1].withdrawn);
    ck_assert_tlstr(fl.values[1].value, "Li Lei");
    fl = get_field(f, "A", "email");
    ck_assert(!fl.has_current);
    ck_assert_uint_eq(fl.nvalues, 1);
    ck_assert(fl.values[0].withdrawn);
    ck_assert_tlstr(get_field(f, "A", "phone").current.value, "13800000001");
    ck_assert_tlstr(get_field(f, "A", "city").current.value, "杭州");
    ck_assert_uint_eq(get_customer(f, "A").nconflicts, 0);
    ck_assert_uint_eq(get_customer(f, "A").nlinked, 0);
    ck_assert_ptr_null(get_customer(f, "B").merged_into.ptr);

    /* Unlinking again changes nothing. */
    r = apply(f, unlink_ev("A", "U2", T0 + 11 * MIN, "B"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_UNKNOWN_LINK);
    ck_assert_uint_eq(r.nemit, 0);

    /* Linking again hands B's values over again. */
    link_and_deliver(f, ec, "L2", T0 + 12 * MIN);
    ck_assert_tlstr(get_field(f, "A", "name").current.value, "Li Lei");
    ck_assert_tlstr(get_field(f, "A", "email").current.value, "lilei@example.cn");
    ck_assert_uint_eq(get_customer(f, "A").nconflicts, 1);
    tl_codec_free(ec);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_unlink_keeps_agent_decisions_and_own_values) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_codec_t *ec = event_codec();
    /* A has no phone; B's becomes A's, then A states another one and an
     * agent picks B's.  The agent's choice outlives the unlink. */
    apply(f, field("B", "b1", TL_PLATFORM_MINI_PROGRAM, T0, "phone", "13900000002"));
    apply(f, field("B", "b2", TL_PLATFORM_MINI_PROGRAM, T0, "order_no", "TL1"));
    link_and_deliver(f, ec, "L1", T0 + MIN);
    ck_assert_tlstr(get_field(f, "A", "phone").current.via, "B");
    tl_fold_result_t r = apply(f, field("A", "a1", TL_PLATFORM_WEB, T0 + 2 * MIN, "phone", "13800000001"));
    char id[40];
    strcpy(id, find_change(&r, TL_FOLD_CONFLICT_OPENED)->conflict_id);
    apply(f, resolve("A", "res", T0 + 3 * MIN, id, "phone", "13900000002"));
    apply(f, field("A", "a2", TL_PLATFORM_WEB, T0 + 4 * MIN, "order_no", "TL2"));   /* conflict */
    r = apply(f, unlink_ev("A", "U1", T0 + 5 * MIN, "B"));
    deliver(f, ec, &r);
    tl_fold_field_t fl = get_field(f, "A", "phone");
    ck_assert_tlstr(fl.current.value, "13900000002");
    ck_assert_int_eq(fl.current.platform, TL_PLATFORM_AGENT);
    /* order_no came from B; without it A's own value is the first. */
    ck_assert_tlstr(get_field(f, "A", "order_no").current.value, "TL2");
    ck_assert_uint_eq(get_customer(f, "A").nconflicts, 0);
    tl_codec_free(ec);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_link_rules_refuse_loops_and_strangers) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_codec_t *ec = event_codec();
    two_profiles(f);
    ck_assert_int_eq(apply(f, link_ev("A", "L0", T0, "A")).ignored, TL_FOLD_IGNORE_SELF_LINK);
    ck_assert_int_eq(apply(f, link_ev("A", "L00", T0, "")).ignored, TL_FOLD_IGNORE_SELF_LINK);
    link_and_deliver(f, ec, "L1", T0 + MIN);
    tl_fold_result_t r = apply(f, link_ev("A", "L2", T0 + 2 * MIN, "B"));
    ck_assert_int_eq(r.ignored, TL_FOLD_IGNORE_ALREADY_LINKED);
    ck_assert_uint_eq(r.nemit, 0);
    /* B is merged into A: it cannot absorb anyone, A least of all. */
    ck_assert_int_eq(apply(f, link_ev("B", "L3", T0 + 3 * MIN, "A")).ignored, TL_FOLD_IGNORE_MERGED);
    ck_assert_int_eq(apply(f, link_ev("B", "L4", T0 + 3 * MIN, "C")).ignored, TL_FOLD_IGNORE_MERGED);
    /* A notice for a customer merged elsewhere is refused. */
    tl_event_t notice = link_ev("B", "N1", T0 + 4 * MIN, "C");
    notice.platform = TL_PLATFORM_SYSTEM;
    ck_assert_int_eq(apply(f, notice).ignored, TL_FOLD_IGNORE_MERGED);
    /* A value through a customer that is not linked in is refused. */
    tl_event_t stray = field("A", "s1", TL_PLATFORM_SYSTEM, T0, "name", "Mallory");
    stray.platform_user_id = TL_STR("C");
    ck_assert_int_eq(apply(f, stray).ignored, TL_FOLD_IGNORE_NOT_LINKED);
    ck_assert_int_eq(apply(f, unlink_ev("A", "U1", T0, "C")).ignored, TL_FOLD_IGNORE_UNKNOWN_LINK);
    tl_event_t unotice = unlink_ev("B", "N2", T0, "C");
    unotice.platform = TL_PLATFORM_SYSTEM;
    ck_assert_int_eq(apply(f, unotice).ignored, TL_FOLD_IGNORE_UNKNOWN_LINK);
    ck_assert_tlstr(get_customer(f, "B").merged_into, "A");
    tl_codec_free(ec);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_link_limit_makes_room_from_inactive_links) {
    tl_fold_t *f = tl_fold_new(&opts);
    char id[32], other[32];
    for (int i = 0; i < TL_FOLD_MAX_LINKS; i++) {
        snprintf(id, sizeof id, "L%d", i);
        snprintf(other, sizeof other, "X%d", i);
        ck_assert_int_eq(apply(f, link_ev("A", id, T0 + i, other)).ignored, 0);
    }
    ck_assert_int_eq(apply(f, link_ev("A", "L-over", T0 + 100, "Y")).ignored, TL_FOLD_IGNORE_TOO_MANY_LINKS);
    ck_assert_int_eq(apply(f, unlink_ev("A", "U0", T0 + 101, "X3")).ignored, 0);
    ck_assert_int_eq(apply(f, link_ev("A", "L-again", T0 + 102, "Y")).ignored, 0);
    ck_assert_uint_eq(get_customer(f, "A").nlinked, TL_FOLD_MAX_LINKS);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_emitted_events_are_deterministic) {
    tl_codec_t *ec = event_codec();
    tl_buf_t out[2];
    for (int run = 0; run < 2; run++) {
        tl_fold_t *f = tl_fold_new(&opts);
        two_profiles(f);
        tl_buf_init(&out[run]);
        tl_fold_result_t r = apply(f, link_ev("A", "L1", T0, "B"));
        ck_assert_int_eq(tl_codec_encode_event(ec, &r.emit[0], &out[run]), 0);
        tl_event_t ev;
        tl_buf_t b;
        tl_buf_init(&b);
        tl_codec_encode_event(ec, &r.emit[0], &b);
        ck_assert_int_eq(tl_codec_decode_event(ec, b.data, b.len, &ev), 0);
        r = apply(f, ev);
        for (size_t i = 0; i < r.nemit; i++) ck_assert_int_eq(tl_codec_encode_event(ec, &r.emit[i], &out[run]), 0);
        tl_buf_close(&b);
        tl_fold_free(f);
    }
    ck_assert_uint_eq(out[0].len, out[1].len);
    ck_assert(memcmp(out[0].data, out[1].data, out[0].len) == 0);
    tl_buf_close(&out[0]);
    tl_buf_close(&out[1]);
    tl_codec_free(ec);
}
END_TEST

/* ---- serialised state --------------------------------------------------- */

static void encode_state(tl_fold_t *f, tl_codec_t *sc, const char *customer, tl_buf_t *out) {
    tl_buf_reset(out);
    ck_assert_int_eq(tl_fold_state_encode(f, sc, TL_STR("acme"), S(customer), out), 0);
}

START_TEST(fold_state_roundtrip_continues_identically) {
    /* Fold a sequence in one go, and again with a serialise/restore cut in
     * the middle: the outcomes after the cut must be identical. */
    tl_codec_t *codec = state_codec();
    tl_fold_t *whole = tl_fold_new(&opts), *cut = tl_fold_new(&opts);
    tl_buf_t buf;
    tl_buf_init(&buf);
    for (int i = 0; i < 200; i++) {
        char e[16], k[16];
        snprintf(e, sizeof e, "e%d", i);
        snprintf(k, sizeof k, "web:%d", i % 90);  /* repeats: duplicates across the cut */
        tl_event_t ev = message("c1", e, k, T0 + i * 7 * MIN, T0 + i * 7 * MIN);
        if (i % 11 == 0) ev.occurred_at -= 20 * MIN;
        tl_fold_result_t rw = apply(whole, ev), rc = apply(cut, ev);
        ck_assert_int_eq(rw.duplicate, rc.duplicate);
        ck_assert_int_eq(rw.customer_version, rc.customer_version);
        ck_assert_int_eq(rw.conversation_version, rc.conversation_version);
        ck_assert_str_eq(rw.conversation_id, rc.conversation_id);
        if (i % 50 == 49) {
            encode_state(cut, codec, "c1", &buf);
            tl_fold_clear(cut);
            ck_assert_int_eq(tl_fold_state_load(cut, codec, buf.data, buf.len), 0);
            /* byte-identical state after the restore */
            tl_buf_t again;
            tl_buf_init(&again);
            encode_state(cut, codec, "c1", &again);
            ck_assert_uint_eq(again.len, buf.len);
            ck_assert(memcmp(again.data, buf.data, buf.len) == 0);
            tl_buf_close(&again);
        }
    }
    tl_buf_close(&buf);
    tl_fold_free(whole);
    tl_fold_free(cut);
    tl_codec_free(codec);
}
END_TEST

/* A fold with every part of the state in use. */
static tl_fold_t *rich_fold(tl_codec_t *ec) {
    tl_fold_t *f = tl_fold_new(&opts);
    two_profiles(f);
    tl_fold_result_t r = apply(f, message("A", "m1", "wechat:1", T0, T0));
    char conv[40];
    strcpy(conv, r.conversation_id);
    tl_event_t ev = conv_action("A", "as1", T0 + 1, TL_EV_CONVERSATION_ASSIGNED, conv);
    ev.u.assign.agent_id = TL_STR("agent-7");
    apply(f, ev);
    static const tl_str_t added[] = {TL_STR("vip"), TL_STR("物流")};
    ev = conv_action("A", "tg1", T0 + 2, TL_EV_CONVERSATION_TAGGED, conv);
    ev.u.tag.added = (tl_strs_t){added, 2};
    apply(f, ev);
    link_and_deliver(f, ec, "L1", T0 + MIN);
    apply(f, link_ev("A", "L9", T0 + 2 * MIN, "Z"));
    apply(f, unlink_ev("A", "U9", T0 + 3 * MIN, "Z"));
    return f;
}

START_TEST(fold_state_roundtrip_keeps_fields_conflicts_links) {
    tl_codec_t *sc = state_codec(), *ec = event_codec();
    tl_fold_t *f = rich_fold(ec), *g = tl_fold_new(&opts);
    tl_buf_t a, b;
    tl_buf_init(&a);
    tl_buf_init(&b);
    const char *customers[] = {"A", "B"};
    for (int i = 0; i < 2; i++) {
        encode_state(f, sc, customers[i], &a);
        ck_assert_int_eq(tl_fold_state_load(g, sc, a.data, a.len), 0);
        encode_state(g, sc, customers[i], &b);
        ck_assert_uint_eq(a.len, b.len);
        ck_assert(memcmp(a.data, b.data, a.len) == 0);
    }
    /* Loading twice replaces, it does not add. */
    ck_assert_int_eq(tl_fold_state_load(g, sc, a.data, a.len), 0);
    ck_assert_uint_eq(tl_fold_count(g), 2);
    tl_fold_customer_t c = get_customer(g, "A");
    ck_assert_uint_eq(c.nfields, 3);
    ck_assert_uint_eq(c.nconflicts, 1);
    ck_assert_uint_eq(c.nlinked, 1);
    ck_assert_uint_eq(c.ntags, 2);
    ck_assert_tlstr(c.assignee, "agent-7");
    ck_assert_tlstr(get_customer(g, "B").merged_into, "A");
    /* The restored fold carries on as the original would. */
    tl_fold_conflict_t cf;
    ck_assert_int_eq(tl_fold_get_conflict(g, TL_STR("acme"), TL_STR("A"), TL_STR("phone"), &cf), 0);
    tl_fold_result_t r1 = apply(f, resolve("A", "R1", T0 + 9 * MIN, cf.id, "phone", "13900000002"));
    tl_fold_result_t r2 = apply(g, resolve("A", "R1", T0 + 9 * MIN, cf.id, "phone", "13900000002"));
    ck_assert_int_eq(r1.ignored, 0);
    ck_assert_int_eq(r2.ignored, 0);
    r1 = apply(f, unlink_ev("A", "U1", T0 + 10 * MIN, "B"));
    r2 = apply(g, unlink_ev("A", "U1", T0 + 10 * MIN, "B"));
    ck_assert_uint_eq(r1.nchanges, r2.nchanges);
    encode_state(f, sc, "A", &a);
    encode_state(g, sc, "A", &b);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert(memcmp(a.data, b.data, a.len) == 0);
    tl_buf_close(&a);
    tl_buf_close(&b);
    tl_fold_free(f);
    tl_fold_free(g);
    tl_codec_free(sc);
    tl_codec_free(ec);
}
END_TEST

/* The value of record field `name`, failing the test if absent. */
static avro_value_t by_name(avro_value_t *rec, const char *name) {
    avro_value_t v;
    ck_assert_msg(avro_value_get_by_name(rec, name, &v, NULL) == 0, "no field %s", name);
    return v;
}

static int64_t long_of(avro_value_t *rec, const char *name) {
    avro_value_t v = by_name(rec, name);
    int64_t x = 0;
    ck_assert_int_eq(avro_value_get_long(&v, &x), 0);
    return x;
}

static const char *string_of(avro_value_t *rec, const char *name) {
    avro_value_t v = by_name(rec, name), b;
    const char *p = NULL;
    size_t n;
    if (avro_value_get_type(&v) == AVRO_UNION) {
        ck_assert_int_eq(avro_value_get_current_branch(&v, &b), 0);
        v = b;
    }
    ck_assert_int_eq(avro_value_get_string(&v, &p, &n), 0);
    return p;
}

START_TEST(fold_state_fields_are_where_the_schema_says) {
    /* Read an encoded state by field name, as another Avro reader would:
     * catches any index in fold.c that does not follow state.avsc. */
    tl_codec_t *sc = state_codec(), *ec = event_codec();
    tl_fold_t *f = rich_fold(ec);
    tl_buf_t buf;
    tl_buf_init(&buf);
    encode_state(f, sc, "A", &buf);
    avro_value_t *root, arr, item, sub, x;
    ck_assert_int_eq(tl_codec_read(sc, buf.data, buf.len, &root), 0);
    tl_fold_customer_t c = get_customer(f, "A");
    ck_assert_str_eq(string_of(root, "tenant_id"), "acme");
    ck_assert_str_eq(string_of(root, "customer_id"), "A");
    ck_assert_int_eq(long_of(root, "version"), c.version);
    ck_assert_int_eq(long_of(root, "last_event_ts"), c.last_event_ts);
    avro_value_t conv = by_name(root, "conversation"), h;
    ck_assert_int_eq(avro_value_get_current_branch(&conv, &h), 0);
    ck_assert_str_eq(string_of(&h, "conversation_id"), c.conversation_id);
    ck_assert_int_eq(long_of(&h, "version"), c.conversation_version);
    ck_assert_str_eq(string_of(&h, "assignee"), "agent-7");
    int status = -1;
    x = by_name(&h, "status");
    avro_value_get_enum(&x, &status);
    ck_assert_int_eq(status, 0);
    arr = by_name(&h, "tags");
    size_t n = 0;
    avro_value_get_size(&arr, &n);
    ck_assert_uint_eq(n, 2);
    arr = by_name(&h, "platforms");
    avro_value_get_size(&arr, &n);
    ck_assert_uint_eq(n, 1);
    arr = by_name(root, "recent_key_hashes");
    avro_value_get_size(&arr, &n);
    ck_assert_uint_eq(n, (size_t)c.version);       /* every event had a key */

    arr = by_name(root, "fields");
    avro_value_get_size(&arr, &n);
    ck_assert_uint_eq(n, c.nfields);
    avro_value_get_by_index(&arr, 0, &item, NULL);
    ck_assert_str_eq(string_of(&item, "name"), "email");
    x = by_name(&item, "current");
    int32_t cur = -2;
    avro_value_get_int(&x, &cur);
    ck_assert_int_eq(cur, 0);
    sub = by_name(&item, "values");
    avro_value_get_by_index(&sub, 0, &x, NULL);
    ck_assert_str_eq(string_of(&x, "value"), "lilei@example.cn");
    ck_assert_str_eq(string_of(&x, "via"), "B");
    ck_assert_int_eq(long_of(&x, "effective_ts"), T0 + MIN);

    arr = by_name(root, "conflicts");
    avro_value_get_size(&arr, &n);
    ck_assert_uint_eq(n, 1);
    avro_value_get_by_index(&arr, 0, &item, NULL);
    ck_assert_str_eq(string_of(&item, "field"), "phone");
    tl_fold_conflict_t cf;
    tl_fold_get_conflict(f, TL_STR("acme"), TL_STR("A"), TL_STR("phone"), &cf);
    ck_assert_str_eq(string_of(&item, "conflict_id"), cf.id);

    arr = by_name(root, "links");
    avro_value_get_size(&arr, &n);
    ck_assert_uint_eq(n, 2);
    avro_value_get_by_index(&arr, 1, &item, NULL);
    ck_assert_str_eq(string_of(&item, "customer_id"), "Z");
    ck_assert_str_eq(string_of(&item, "unlink_event_id"), "U9");
    ck_assert_str_eq(string_of(&item, "link_event_id"), "L9");
    x = by_name(&item, "active");
    int active = 1;
    avro_value_get_boolean(&x, &active);
    ck_assert_int_eq(active, 0);
    x = by_name(root, "merged_into");
    int disc = -1;
    avro_value_get_discriminant(&x, &disc);
    ck_assert_int_eq(disc, 0);
    tl_buf_close(&buf);
    tl_fold_free(f);
    tl_codec_free(sc);
    tl_codec_free(ec);
}
END_TEST

/* Writes into buf an id of exactly TL_FOLD_MAX_ID bytes: tag, n, padding. */
static char *long_id(char *buf, const char *tag, int n) {
    int k = snprintf(buf, TL_FOLD_MAX_ID + 1, "%s%06d", tag, n);
    memset(buf + k, 'x', (size_t)(TL_FOLD_MAX_ID - k));
    buf[TL_FOLD_MAX_ID] = 0;
    return buf;
}

START_TEST(fold_largest_state_fits_a_kafka_message) {
    /* Every bound reached, with the longest strings the fold keeps. */
    static char key_names[TL_FOLD_MAX_KEY_FIELDS][8];
    const char *keys[TL_FOLD_MAX_KEY_FIELDS];
    for (int i = 0; i < TL_FOLD_MAX_KEY_FIELDS; i++) {
        snprintf(key_names[i], sizeof key_names[i], "k%02d", i);
        keys[i] = key_names[i];
    }
    tl_fold_opts_t o = {5 * MIN, 30 * MIN, keys, TL_FOLD_MAX_KEY_FIELDS};
    tl_fold_t *f = tl_fold_new(&o);
    tl_codec_t *sc = state_codec();
    char id[TL_FOLD_MAX_ID + 1], other[TL_FOLD_MAX_ID + 1], puid[TL_FOLD_MAX_ID + 1];
    char name[TL_FOLD_MAX_NAME + 1], value[TL_FOLD_MAX_VALUE + 1];
    int seq = 0;
    for (int l = 0; l < TL_FOLD_MAX_LINKS; l++) {
        tl_event_t ev = link_ev("A", long_id(id, "e", seq++), T0, long_id(other, "c", l));
        ev.u.link.platform_user_id = S(long_id(puid, "p", l));
        ck_assert_int_eq(apply(f, ev).ignored, 0);
    }
    long_id(other, "c", 0);     /* values come through the first linked customer */
    for (int i = 0; i < TL_FOLD_MAX_FIELDS; i++) {
        /* k00..k15 are the key fields; the others take the longest names. */
        memset(name, 'n', TL_FOLD_MAX_NAME);
        name[TL_FOLD_MAX_NAME] = 0;
        int k = snprintf(name, sizeof name, i < TL_FOLD_MAX_KEY_FIELDS ? "k%02d" : "f%02d", i);
        if (i >= TL_FOLD_MAX_KEY_FIELDS) name[k] = 'n';
        for (int v = 0; v < TL_FOLD_HISTORY; v++) {
            memset(value, 'v', TL_FOLD_MAX_VALUE);
            value[TL_FOLD_MAX_VALUE] = 0;
            value[0] = (char)('0' + v);
            tl_event_t ev = field("A", long_id(id, "e", seq++), TL_PLATFORM_SYSTEM, T0 + v, name, value);
            ev.platform_user_id = S(other);
            ck_assert_int_eq(apply(f, ev).ignored, 0);
        }
    }
    tl_fold_result_t r = apply(f, message("A", long_id(id, "e", seq++), "web:m", T0, T0));
    char conv[40];
    strcpy(conv, r.conversation_id);
    tl_event_t ev = conv_action("A", long_id(id, "e", seq++), T0, TL_EV_CONVERSATION_ASSIGNED, conv);
    ev.u.assign.agent_id = S(long_id(other, "a", 0));
    ev.u.assign.team_id = S(long_id(puid, "t", 0));
    ck_assert_int_eq(apply(f, ev).ignored, 0);
    static char tags[TL_FOLD_MAX_TAGS][TL_FOLD_MAX_NAME + 1];
    tl_str_t added[TL_FOLD_MAX_TAGS];
    for (int i = 0; i < TL_FOLD_MAX_TAGS; i++) {
        memset(tags[i], 'g', TL_FOLD_MAX_NAME);
        tags[i][0] = (char)('A' + i);
        added[i] = (tl_str_t){tags[i], TL_FOLD_MAX_NAME};
    }
    ev = conv_action("A", long_id(id, "e", seq++), T0, TL_EV_CONVERSATION_TAGGED, conv);
    ev.u.tag.added = (tl_strs_t){added, TL_FOLD_MAX_TAGS};
    ck_assert_int_eq(apply(f, ev).ignored, 0);

    tl_fold_customer_t c = get_customer(f, "A");
    ck_assert_uint_eq(c.nfields, TL_FOLD_MAX_FIELDS);
    ck_assert_uint_eq(c.nconflicts, TL_FOLD_MAX_KEY_FIELDS);
    ck_assert_uint_eq(c.nlinked, TL_FOLD_MAX_LINKS);
    ck_assert_uint_eq(c.ntags, TL_FOLD_MAX_TAGS);
    tl_fold_conflict_t cf;
    ck_assert_int_eq(tl_fold_get_conflict(f, TL_STR("acme"), TL_STR("A"), TL_STR("k03"), &cf), 0);
    ck_assert_uint_eq(cf.ncandidates, TL_FOLD_MAX_CANDIDATES);
    ck_assert_uint_eq(get_field(f, "A", "k03").nvalues, TL_FOLD_HISTORY);
    tl_buf_t buf;
    tl_buf_init(&buf);
    encode_state(f, sc, "A", &buf);
    ck_assert_msg(buf.len < 600 * 1000, "largest state takes %zu bytes", buf.len);
    tl_buf_close(&buf);
    tl_fold_free(f);
    tl_codec_free(sc);
}
END_TEST

START_TEST(fold_state_load_rejects_garbage) {
    tl_codec_t *codec = state_codec();
    tl_fold_t *f = tl_fold_new(&opts);
    ck_assert_int_ne(tl_fold_state_load(f, codec, "\xc3\x01garbage", 9), 0);
    ck_assert_uint_eq(tl_fold_count(f), 0);
    tl_fold_free(f);
    tl_codec_free(codec);
}
END_TEST

/* Encodes A's rich state, lets edit() break it through the decoded value,
 * writes it again and checks the load refuses it, keeping the old state. */
static void load_refuses(void (*edit)(avro_value_t *root)) {
    tl_codec_t *sc = state_codec(), *ec = event_codec();
    tl_fold_t *f = rich_fold(ec);
    tl_buf_t good, bad, after;
    tl_buf_init(&good);
    tl_buf_init(&bad);
    tl_buf_init(&after);
    encode_state(f, sc, "A", &good);
    avro_value_t *root;
    ck_assert_int_eq(tl_codec_read(sc, good.data, good.len, &root), 0);
    edit(root);
    ck_assert_int_eq(tl_codec_write(sc, &bad), 0);
    ck_assert_int_eq(tl_fold_state_load(f, sc, bad.data, bad.len), TL_ECORRUPT);
    encode_state(f, sc, "A", &after);
    ck_assert_uint_eq(after.len, good.len);
    ck_assert(memcmp(after.data, good.data, good.len) == 0);
    tl_buf_close(&good);
    tl_buf_close(&bad);
    tl_buf_close(&after);
    tl_fold_free(f);
    tl_codec_free(sc);
    tl_codec_free(ec);
}

static avro_value_t first_of(avro_value_t *root, const char *array) {
    avro_value_t arr = by_name(root, array), item;
    ck_assert_int_eq(avro_value_get_by_index(&arr, 0, &item, NULL), 0);
    return item;
}

static void edit_current_out_of_range(avro_value_t *root) {
    avro_value_t fl = first_of(root, "fields"), cur = by_name(&fl, "current");
    avro_value_set_int(&cur, 5);
}

static void edit_fields_out_of_order(avro_value_t *root) {
    avro_value_t fl = first_of(root, "fields"), name = by_name(&fl, "name");
    avro_value_set_string(&name, "zzz");
}

static void edit_conflict_on_missing_field(avro_value_t *root) {
    avro_value_t cf = first_of(root, "conflicts"), name = by_name(&cf, "field");
    avro_value_set_string(&name, "nonesuch");
}

static void edit_active_link_with_unlink(avro_value_t *root) {
    avro_value_t l = first_of(root, "links"), ev = by_name(&l, "unlink_event_id"), b;
    avro_value_set_branch(&ev, 1, &b);
    avro_value_set_string(&b, "U-bogus");
}

static void edit_too_many_keys(avro_value_t *root) {
    avro_value_t arr = by_name(root, "recent_key_hashes"), item;
    for (int i = 0; i < TL_FOLD_RECENT_KEYS + 1; i++) {
        avro_value_append(&arr, &item, NULL);
        avro_value_set_long(&item, i);
    }
}

static void edit_bad_conversation_id(avro_value_t *root) {
    avro_value_t conv = by_name(root, "conversation"), h, id;
    avro_value_get_current_branch(&conv, &h);
    id = by_name(&h, "conversation_id");
    avro_value_set_string(&id, "not-a-uuid");
}

START_TEST(fold_state_load_rejects_broken_invariants) {
    load_refuses(edit_current_out_of_range);
    load_refuses(edit_fields_out_of_order);
    load_refuses(edit_conflict_on_missing_field);
    load_refuses(edit_active_link_with_unlink);
    load_refuses(edit_too_many_keys);
    load_refuses(edit_bad_conversation_id);
}
END_TEST

/* ---- property tests ----------------------------------------------------- */

#define NCUST 4
#define PROP_SEQUENCES 300
#define PROP_EVENTS 120

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t next(rng_t *r) {   /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int pick(rng_t *r, int n) { return (int)(next(r) % (uint64_t)n); }

/* A partition: encoded events, in order. */
typedef struct log {
    tl_buf_t *rec;
    size_t n, cap;
} log_t;

static void log_add(log_t *l, const tl_buf_t *b) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->rec = realloc(l->rec, l->cap * sizeof *l->rec);
    }
    tl_buf_init(&l->rec[l->n]);
    tl_buf_append(&l->rec[l->n], b->data, b->len);
    l->n++;
}

static void log_free(log_t *l) {
    for (size_t i = 0; i < l->n; i++) tl_buf_close(&l->rec[i]);
    free(l->rec);
    memset(l, 0, sizeof *l);
}

/* Appends what a result says to trace: everything deterministic. */
static void trace_result(tl_buf_t *trace, tl_codec_t *ec, const tl_fold_result_t *r) {
    tl_buf_printf(trace, "dup=%d ets=%" PRId64 " v=%" PRId64 " conv=%s/%" PRId64 "/%d ign=%d ch=%zu em=%zu|",
                  r->duplicate, r->effective_ts, r->customer_version, r->conversation_id,
                  r->conversation_version, r->conversation_opened, (int)r->ignored, r->nchanges, r->nemit);
    for (size_t i = 0; i < r->nchanges; i++) {
        const tl_fold_change_t *c = &r->changes[i];
        tl_buf_printf(trace, "%s %.*s=%.*s %.*s %s|", tl_fold_change_slug(c->kind), (int)c->field.len,
                      c->field.ptr ? c->field.ptr : "", (int)c->value.len, c->value.ptr ? c->value.ptr : "-",
                      (int)c->customer.len, c->customer.ptr ? c->customer.ptr : "", c->conflict_id);
    }
    for (size_t i = 0; i < r->nemit; i++) MUST(tl_codec_encode_event(ec, &r->emit[i], trace) == 0);
}

static const char *const customers[NCUST] = {"c0", "c1", "c2", "c3"};
static const char *const field_names[] = {"order_no", "phone", "email", "name", "address", "city"};
static const char *const values[] = {"v1", "v2", "v3", "", "很长的地址 Hangzhou"};
static const tl_str_t tag_pool[] = {TL_STR("vip"), TL_STR("refund"), TL_STR("urgent"), TL_STR("物流")};

/* A random event from the generator's point of view of f (for the ids of
 * current conversations and open conflicts), encoded into out. */
static void random_event(rng_t *r, tl_fold_t *f, tl_codec_t *ec, int seq, int64_t *clock, char (*keys)[48],
                         int nkeys, tl_buf_t *out) {
    char id[48], key[48], conv_id[40] = "00000000-0000-5000-8000-000000000000";
    char conflict_id[40] = "00000000-0000-5000-8000-000000000001";
    const char *cust = customers[pick(r, NCUST)];
    const char *other = customers[pick(r, NCUST)];
    snprintf(id, sizeof id, "e-%d", seq);
    if (nkeys && pick(r, 10) == 0) snprintf(key, sizeof key, "%s", keys[pick(r, nkeys)]);
    else snprintf(key, sizeof key, "k-%d", seq);
    *clock += pick(r, 8) == 0 ? 45 * MIN : pick(r, 3 * MIN);
    int64_t received = *clock;
    int64_t occurred = received - 8 * MIN + pick(r, 10 * MIN);
    tl_fold_customer_t c;
    if (tl_fold_get_customer(f, TL_STR("acme"), S(cust), &c) == 0 && c.conversation_id[0] && pick(r, 5))
        strcpy(conv_id, c.conversation_id);
    static const tl_platform_t platforms[] = {TL_PLATFORM_WEB, TL_PLATFORM_APP, TL_PLATFORM_MINI_PROGRAM,
                                              TL_PLATFORM_WECHAT, TL_PLATFORM_DOUYIN, TL_PLATFORM_PHONE};
    tl_event_t ev = event(cust, id, key, platforms[pick(r, 6)], occurred, received, TL_EV_MESSAGE_RECEIVED);
    tl_str_t added[3], removed[2];
    int roll = pick(r, 100);
    if (roll < 25) {
        ev.u.message.text = TL_STR("在吗？我的订单还没到");
    } else if (roll < 30) {
        ev.kind = TL_EV_AGENT_REPLIED;
        ev.platform = TL_PLATFORM_AGENT;
        ev.u.reply.agent_id = TL_STR("agent-7");
        ev.u.reply.conversation_id = pick(r, 2) ? S(conv_id) : TL_STR_NULL;
        ev.u.reply.text = TL_STR("您好，马上为您查询");
        ev.u.reply.target_platform = platforms[pick(r, 6)];
    } else if (roll < 34) {
        ev.kind = TL_EV_TRANSCRIPT_SEGMENT;
        ev.platform = TL_PLATFORM_PHONE;
        ev.u.transcript.call_id = TL_STR("call-1");
        ev.u.transcript.text = TL_STR("喂，你好");
        ev.u.transcript.speaker = TL_SPEAKER_CUSTOMER;
    } else if (roll < 38) {
        ev.kind = TL_EV_BEHAVIOR_TRACKED;
        ev.u.behavior.page = TL_STR("order-detail");
        ev.u.behavior.action = TL_STR("view");
    } else if (roll < 63) {
        ev.kind = TL_EV_FIELD_ASSERTED;
        ev.u.field.field = S(field_names[pick(r, 6)]);
        ev.u.field.value = S(values[pick(r, 5)]);
    } else if (roll < 68) {
        ev.kind = TL_EV_CONVERSATION_ASSIGNED;
        ev.platform = TL_PLATFORM_AGENT;
        ev.u.assign.conversation_id = S(conv_id);
        ev.u.assign.agent_id = pick(r, 2) ? TL_STR("agent-7") : TL_STR_NULL;
        ev.u.assign.team_id = pick(r, 2) ? TL_STR("after-sales") : TL_STR_NULL;
    } else if (roll < 73) {
        ev.kind = TL_EV_CONVERSATION_TAGGED;
        ev.platform = TL_PLATFORM_AGENT;
        ev.u.tag.conversation_id = S(conv_id);
        int na = pick(r, 4), nr = pick(r, 3);
        for (int i = 0; i < na; i++) added[i] = pick(r, 20) ? tag_pool[pick(r, 4)] : TL_STR("");
        for (int i = 0; i < nr; i++) removed[i] = tag_pool[pick(r, 4)];
        ev.u.tag.added = (tl_strs_t){added, (size_t)na};
        ev.u.tag.removed = (tl_strs_t){removed, (size_t)nr};
    } else if (roll < 76) {
        ev.kind = TL_EV_CONVERSATION_CLOSED;
        ev.platform = TL_PLATFORM_AGENT;
        ev.u.close.conversation_id = S(conv_id);
        ev.u.close.reason = TL_STR("solved");
    } else if (roll < 86) {
        ev.kind = TL_EV_CONFLICT_RESOLVED;
        ev.platform = TL_PLATFORM_AGENT;
        /* Mostly a conflict that is open, sometimes one that is not. */
        int first = pick(r, 3), open = -1;
        tl_fold_conflict_t cf;
        for (int i = 0; i < 3 && open < 0; i++)
            if (tl_fold_get_conflict(f, TL_STR("acme"), S(cust), S(field_names[(first + i) % 3]), &cf) == 0)
                open = (first + i) % 3;
        const char *name = field_names[open >= 0 ? open : first];
        const char *chosen = values[pick(r, 3)];
        if (open >= 0 && pick(r, 6)) {
            strcpy(conflict_id, cf.id);
            if (pick(r, 2)) {
                static char cand[TL_FOLD_MAX_VALUE + 1];
                tl_str_t v = cf.candidates[pick(r, (int)cf.ncandidates)].value;
                memcpy(cand, v.ptr, v.len);
                cand[v.len] = 0;
                chosen = cand;
            }
        }
        ev.u.resolve.conflict_id = S(conflict_id);
        ev.u.resolve.field = S(name);
        ev.u.resolve.chosen_value = S(chosen);
        ev.u.resolve.agent_id = TL_STR("agent-7");
    } else if (roll < 95) {
        ev.kind = TL_EV_IDENTITY_LINKED;
        ev.u.link.linked_customer_id = S(other);
        ev.u.link.platform = TL_PLATFORM_WECHAT;
        ev.u.link.platform_user_id = TL_STR("oUnion");
        ev.u.link.evidence = TL_EVIDENCE_UNIONID;
    } else {
        ev.kind = TL_EV_IDENTITY_UNLINKED;
        ev.platform = TL_PLATFORM_AGENT;
        ev.u.unlink.linked_customer_id = S(other);
        ev.u.unlink.platform = TL_PLATFORM_WECHAT;
        ev.u.unlink.platform_user_id = TL_STR("oUnion");
        ev.u.unlink.reason = TL_STR("mistake");
    }
    tl_buf_reset(out);
    MUST(tl_codec_encode_event(ec, &ev, out) == 0);
}

/* Folds one encoded event and traces the result. */
static void fold_record(tl_fold_t *f, tl_codec_t *ec, tl_codec_t *emit_codec, const tl_buf_t *rec,
                        tl_buf_t *trace, tl_fold_result_t *r) {
    tl_event_t ev;
    MUST(tl_codec_decode_event(ec, rec->data, rec->len, &ev) == 0);
    MUST(tl_fold_apply(f, &ev, r) == 0);
    trace_result(trace, emit_codec, r);
}

/* Generates a partition by folding random events in f: emitted events go
 * to a queue and join the partition a little later, interleaved with new
 * events, as the fold worker's produce would make them. */
static void generate(uint64_t seed, tl_fold_t *f, log_t *log, tl_buf_t *trace, size_t *offsets) {
    rng_t r = {seed};
    tl_codec_t *ec = event_codec(), *emit_codec = event_codec();
    log_t queue = {0};
    size_t qhead = 0;
    tl_buf_t rec;
    tl_buf_init(&rec);
    char(*keys)[48] = calloc(PROP_EVENTS, sizeof *keys);
    int nkeys = 0, made = 0;
    int64_t clock = T0;
    while (made < PROP_EVENTS || qhead < queue.n) {
        const tl_buf_t *next_rec;
        if (qhead < queue.n && (made == PROP_EVENTS || pick(&r, 3) == 0)) {
            next_rec = &queue.rec[qhead++];
        } else {
            random_event(&r, f, ec, made, &clock, keys, nkeys, &rec);
            snprintf(keys[nkeys++], 48, "k-%d", made);
            made++;
            next_rec = &rec;
        }
        log_add(log, next_rec);
        offsets[log->n - 1] = trace->len;
        tl_fold_result_t res;
        fold_record(f, ec, emit_codec, &log->rec[log->n - 1], trace, &res);
        for (size_t i = 0; i < res.nemit; i++) {
            tl_buf_t b;
            tl_buf_init(&b);
            MUST(tl_codec_encode_event(emit_codec, &res.emit[i], &b) == 0);
            log_add(&queue, &b);
            tl_buf_close(&b);
        }
    }
    free(keys);
    tl_buf_close(&rec);
    log_free(&queue);
    tl_codec_free(ec);
    tl_codec_free(emit_codec);
}

/* All customers' states, concatenated. */
static void all_states(tl_fold_t *f, tl_codec_t *sc, tl_buf_t *out) {
    tl_buf_reset(out);
    for (int i = 0; i < NCUST; i++) {
        int rc = tl_fold_state_encode(f, sc, TL_STR("acme"), S(customers[i]), out);
        MUST(rc == 0 || rc == TL_ENOTFOUND);
    }
}

/* Stats over a property run, to show the generator reaches the rules. */
static size_t seen_conflicts, seen_links, seen_unlinks, seen_resolved, seen_dups, seen_ignored;

static void count(const tl_buf_t *trace) {
    const char *p = trace->data, *end = p + trace->len;
    for (; p < end; p++) {
        if (*p != '|') continue;
        if (end - p > 16 && !memcmp(p + 1, "conflict_opened", 15)) seen_conflicts++;
        if (end - p > 8 && !memcmp(p + 1, "linked ", 7)) seen_links++;
        if (end - p > 10 && !memcmp(p + 1, "unlinked ", 9)) seen_unlinks++;
        if (end - p > 18 && !memcmp(p + 1, "conflict_resolved", 17)) seen_resolved++;
    }
}

START_TEST(fold_property_same_events_give_identical_state) {
    tl_codec_t *ec = event_codec(), *sc = state_codec();
    size_t *offsets = calloc(PROP_EVENTS * (TL_FOLD_MAX_FIELDS + 2), sizeof *offsets);
    for (uint64_t seed = 1; seed <= PROP_SEQUENCES; seed++) {
        tl_fold_t *live = tl_fold_new(&opts), *again = tl_fold_new(&opts);
        log_t log = {0};
        tl_buf_t t1, t2, s1, s2;
        tl_buf_init(&t1);
        tl_buf_init(&t2);
        tl_buf_init(&s1);
        tl_buf_init(&s2);
        generate(seed * 7919, live, &log, &t1, offsets);
        for (size_t i = 0; i < log.n; i++) {
            tl_fold_result_t r;
            fold_record(again, ec, ec, &log.rec[i], &t2, &r);
            seen_dups += r.duplicate;
            seen_ignored += r.ignored != 0;
        }
        count(&t1);
        ck_assert_msg(t1.len == t2.len && memcmp(t1.data, t2.data, t1.len) == 0,
                      "seed %" PRIu64 ": results differ", seed);
        all_states(live, sc, &s1);
        all_states(again, sc, &s2);
        ck_assert_msg(s1.len == s2.len && memcmp(s1.data, s2.data, s1.len) == 0,
                      "seed %" PRIu64 ": states differ", seed);
        tl_buf_close(&t1);
        tl_buf_close(&t2);
        tl_buf_close(&s1);
        tl_buf_close(&s2);
        log_free(&log);
        tl_fold_free(live);
        tl_fold_free(again);
    }
    /* The sequences did exercise the rules. */
    ck_assert_msg(seen_conflicts > 500 && seen_links > 500 && seen_unlinks > 100 && seen_resolved > 200 &&
                      seen_dups > 100 && seen_ignored > 100,
                  "conflicts %zu links %zu unlinks %zu resolved %zu dups %zu ignored %zu", seen_conflicts,
                  seen_links, seen_unlinks, seen_resolved, seen_dups, seen_ignored);
    free(offsets);
    tl_codec_free(ec);
    tl_codec_free(sc);
}
END_TEST

START_TEST(fold_property_cut_restore_equals_one_go) {
    tl_codec_t *ec = event_codec(), *sc = state_codec();
    size_t *offsets = calloc(PROP_EVENTS * (TL_FOLD_MAX_FIELDS + 2), sizeof *offsets);
    for (uint64_t seed = 1; seed <= PROP_SEQUENCES; seed++) {
        tl_fold_t *whole = tl_fold_new(&opts), *before = tl_fold_new(&opts), *after = tl_fold_new(&opts);
        log_t log = {0};
        tl_buf_t tw, tc, sw, sc_bytes, cut_state, reloaded;
        tl_buf_init(&tw);
        tl_buf_init(&tc);
        tl_buf_init(&sw);
        tl_buf_init(&sc_bytes);
        tl_buf_init(&cut_state);
        tl_buf_init(&reloaded);
        generate(seed * 104729 + 3, whole, &log, &tw, offsets);
        rng_t r = {seed};
        size_t k = (size_t)pick(&r, (int)log.n + 1);
        for (size_t i = 0; i < k; i++) {
            tl_fold_result_t res;
            fold_record(before, ec, ec, &log.rec[i], &tc, &res);
        }
        /* Serialise every state, restore them into a fresh fold. */
        for (int i = 0; i < NCUST; i++) {
            tl_buf_reset(&cut_state);
            int rc = tl_fold_state_encode(before, sc, TL_STR("acme"), S(customers[i]), &cut_state);
            if (rc == TL_ENOTFOUND) continue;
            MUST(rc == 0);
            MUST(tl_fold_state_load(after, sc, cut_state.data, cut_state.len) == 0);
            tl_buf_reset(&reloaded);
            MUST(tl_fold_state_encode(after, sc, TL_STR("acme"), S(customers[i]), &reloaded) == 0);
            MUST(reloaded.len == cut_state.len && !memcmp(reloaded.data, cut_state.data, cut_state.len));
        }
        ck_assert_uint_eq(tl_fold_count(after), tl_fold_count(before));
        tl_buf_reset(&tc);
        for (size_t i = k; i < log.n; i++) {
            tl_fold_result_t res;
            fold_record(after, ec, ec, &log.rec[i], &tc, &res);
        }
        size_t from = k < log.n ? offsets[k] : tw.len;
        ck_assert_msg(tc.len == tw.len - from && memcmp(tc.data, tw.data + from, tc.len) == 0,
                      "seed %" PRIu64 " cut at %zu of %zu: results after the cut differ", seed, k, log.n);
        all_states(whole, sc, &sw);
        all_states(after, sc, &sc_bytes);
        ck_assert_msg(sw.len == sc_bytes.len && memcmp(sw.data, sc_bytes.data, sw.len) == 0,
                      "seed %" PRIu64 " cut at %zu: states differ", seed, k);
        tl_buf_close(&tw);
        tl_buf_close(&tc);
        tl_buf_close(&sw);
        tl_buf_close(&sc_bytes);
        tl_buf_close(&cut_state);
        tl_buf_close(&reloaded);
        log_free(&log);
        tl_fold_free(whole);
        tl_fold_free(before);
        tl_fold_free(after);
    }
    free(offsets);
    tl_codec_free(ec);
    tl_codec_free(sc);
}
END_TEST

Suite *tl_fold_suite(void) {
    Suite *s = suite_create("fold");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, fold_effective_ts_is_clamped_to_skew_window);
    tcase_add_test(tc, fold_late_app_message_sorts_where_written);
    tcase_add_test(tc, fold_versions_count_applied_events);
    tcase_add_test(tc, fold_wechat_triple_resend_applied_once);
    tcase_add_test(tc, fold_idempotency_window_is_bounded);
    tcase_add_test(tc, fold_key_hash_is_xxh64);
    tcase_add_test(tc, fold_idle_timeout_opens_new_conversation);
    tcase_add_test(tc, fold_close_then_message_opens_new_conversation);
    tcase_add_test(tc, fold_conversation_id_is_deterministic);
    tcase_add_test(tc, fold_conversation_header_tracks_assignment_tags_and_platforms);
    tcase_add_test(tc, fold_action_on_old_conversation_is_attributed_not_applied);
    tcase_add_test(tc, fold_customers_are_independent);
    tcase_add_test(tc, fold_rejects_event_without_customer);
    suite_add_tcase(s, tc);
    tc = tcase_create("fields");
    tcase_add_test(tc, fold_ordinary_field_last_writer_wins_with_history);
    tcase_add_test(tc, fold_older_field_value_is_kept_not_applied);
    tcase_add_test(tc, fold_field_tie_goes_to_the_later_record);
    tcase_add_test(tc, fold_field_history_is_bounded);
    tcase_add_test(tc, fold_key_field_change_opens_conflict);
    tcase_add_test(tc, fold_conflict_gathers_each_candidate_once);
    tcase_add_test(tc, fold_bad_resolution_is_ignored);
    tcase_add_test(tc, fold_key_fields_are_configurable);
    tcase_add_test(tc, fold_field_limits_are_enforced);
    tcase_add_test(tc, fold_candidate_limit_is_enforced);
    suite_add_tcase(s, tc);
    tc = tcase_create("identity");
    tcase_add_test(tc, fold_unionid_link_merges_profiles_with_phone_conflict);
    tcase_add_test(tc, fold_unlink_reverts_linked_values_keeping_history);
    tcase_add_test(tc, fold_unlink_keeps_agent_decisions_and_own_values);
    tcase_add_test(tc, fold_link_rules_refuse_loops_and_strangers);
    tcase_add_test(tc, fold_link_limit_makes_room_from_inactive_links);
    tcase_add_test(tc, fold_emitted_events_are_deterministic);
    suite_add_tcase(s, tc);
    tc = tcase_create("state");
    tcase_add_test(tc, fold_state_roundtrip_continues_identically);
    tcase_add_test(tc, fold_state_roundtrip_keeps_fields_conflicts_links);
    tcase_add_test(tc, fold_state_fields_are_where_the_schema_says);
    tcase_add_test(tc, fold_largest_state_fits_a_kafka_message);
    tcase_add_test(tc, fold_state_load_rejects_garbage);
    tcase_add_test(tc, fold_state_load_rejects_broken_invariants);
    suite_add_tcase(s, tc);
    tc = tcase_create("property");
    tcase_add_test(tc, fold_property_same_events_give_identical_state);
    tcase_add_test(tc, fold_property_cut_restore_equals_one_go);
    suite_add_tcase(s, tc);
    return s;
}
