/* test_fold.c -- engine/fold.c: the rules of this cut, one behaviour each. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "fold.h"
#include "schemas.h"
#include "suites.h"

#define MIN (60 * 1000LL)

static tl_fold_opts_t opts = {5 * MIN, 30 * MIN};

static tl_event_t message(const char *customer, const char *event_id, const char *key,
                          int64_t occurred, int64_t received) {
    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.event_id = (tl_str_t){event_id, strlen(event_id)};
    ev.tenant_id = TL_STR("acme");
    ev.customer_id = (tl_str_t){customer, strlen(customer)};
    ev.platform = TL_PLATFORM_WEB;
    ev.platform_user_id = TL_STR("v1");
    ev.idempotency_key = (tl_str_t){key, strlen(key)};
    ev.occurred_at = occurred;
    ev.received_at = received;
    ev.trace_id = TL_STR("t");
    ev.kind = TL_EV_MESSAGE_RECEIVED;
    ev.u.message.text = TL_STR("hello");
    return ev;
}

START_TEST(fold_effective_ts_is_clamped_to_skew_window) {
    tl_fold_t *f = tl_fold_new(&opts);
    int64_t now = 1700000000000LL;
    tl_event_t ev = message("c1", "e1", "web:1", now - 10 * MIN, now);
    ck_assert_int_eq(tl_fold_effective_ts(f, &ev), now - 5 * MIN);   /* too far behind */
    ev.occurred_at = now + MIN;
    ck_assert_int_eq(tl_fold_effective_ts(f, &ev), now);             /* in the future */
    ev.occurred_at = now - 3000;
    ck_assert_int_eq(tl_fold_effective_ts(f, &ev), now - 3000);      /* within skew */
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_versions_count_applied_events) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r;
    int64_t t = 1700000000000LL;
    for (int i = 0; i < 5; i++) {
        char id[16], key[16];
        snprintf(id, sizeof id, "e%d", i);
        snprintf(key, sizeof key, "web:%d", i);
        tl_event_t ev = message("c1", id, key, t + i, t + i);
        ck_assert_int_eq(tl_fold_apply(f, &ev, &r), 0);
        ck_assert_int_eq(r.customer_version, i + 1);
        ck_assert_int_eq(r.conversation_version, i + 1);
        ck_assert_int_eq(r.conversation_opened, i == 0);
    }
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_wechat_triple_resend_applied_once) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r;
    int64_t t = 1700000000000LL;
    tl_event_t ev = message("c1", "e1", "wechat:msg-42", t, t);
    ck_assert_int_eq(tl_fold_apply(f, &ev, &r), 0);
    ck_assert(!r.duplicate);
    char first_conv[40];
    strcpy(first_conv, r.conversation_id);
    for (int i = 0; i < 3; i++) {
        tl_event_t again = message("c1", i == 0 ? "e2" : i == 1 ? "e3" : "e4", "wechat:msg-42", t + 1000 * i, t + 1000 * i);
        ck_assert_int_eq(tl_fold_apply(f, &again, &r), 0);
        ck_assert(r.duplicate);
        ck_assert_int_eq(r.customer_version, 1);
        ck_assert_str_eq(r.conversation_id, first_conv);
    }
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_idle_timeout_opens_new_conversation) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r;
    int64_t t = 1700000000000LL;
    tl_event_t a = message("c1", "e1", "web:1", t, t);
    tl_fold_apply(f, &a, &r);
    char first[40];
    strcpy(first, r.conversation_id);
    tl_event_t b = message("c1", "e2", "web:2", t + 29 * MIN, t + 29 * MIN);
    tl_fold_apply(f, &b, &r);
    ck_assert_str_eq(r.conversation_id, first);
    tl_event_t c = message("c1", "e3", "web:3", t + 60 * MIN, t + 60 * MIN);
    tl_fold_apply(f, &c, &r);
    ck_assert_str_ne(r.conversation_id, first);
    ck_assert(r.conversation_opened);
    ck_assert_int_eq(r.conversation_version, 1);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_close_then_message_opens_new_conversation) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r;
    int64_t t = 1700000000000LL;
    tl_event_t a = message("c1", "e1", "web:1", t, t);
    tl_fold_apply(f, &a, &r);
    char first[40];
    strcpy(first, r.conversation_id);
    tl_event_t close;
    memset(&close, 0, sizeof close);
    close = a;
    close.event_id = TL_STR("e2");
    close.idempotency_key = TL_STR("agent:close-1");
    close.kind = TL_EV_CONVERSATION_CLOSED;
    close.u.close.conversation_id = (tl_str_t){first, strlen(first)};
    close.u.close.reason = TL_STR("solved");
    close.u.close.closed_by = TL_STR_NULL;
    ck_assert_int_eq(tl_fold_apply(f, &close, &r), 0);
    ck_assert_str_eq(r.conversation_id, first);
    ck_assert_int_eq(r.conversation_version, 2);
    tl_event_t b = message("c1", "e3", "web:2", t + 1000, t + 1000);
    tl_fold_apply(f, &b, &r);
    ck_assert_str_ne(r.conversation_id, first);
    ck_assert(r.conversation_opened);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_conversation_id_is_deterministic) {
    tl_fold_t *f1 = tl_fold_new(&opts), *f2 = tl_fold_new(&opts);
    tl_fold_result_t r1, r2;
    tl_event_t a = message("c1", "e1", "web:1", 1, 1);
    tl_fold_apply(f1, &a, &r1);
    tl_fold_apply(f2, &a, &r2);
    ck_assert_str_eq(r1.conversation_id, r2.conversation_id);
    ck_assert_int_eq(strlen(r1.conversation_id), 36);
    tl_fold_free(f1);
    tl_fold_free(f2);
}
END_TEST

START_TEST(fold_customers_are_independent) {
    tl_fold_t *f = tl_fold_new(&opts);
    tl_fold_result_t r;
    /* Enough customers to force the table to grow several times. */
    for (int i = 0; i < 5000; i++) {
        char c[16], e[16];
        snprintf(c, sizeof c, "c%d", i);
        snprintf(e, sizeof e, "e%d", i);
        tl_event_t ev = message(c, e, "web:same-key", 1, 1);
        ck_assert_int_eq(tl_fold_apply(f, &ev, &r), 0);
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
    ck_assert_uint_eq(tl_fold_count(f), 0);
    tl_fold_free(f);
}
END_TEST

START_TEST(fold_state_roundtrip_continues_identically) {
    /* Fold a sequence in one go, and again with a serialise/restore cut in
     * the middle: the outcomes after the cut must be identical. */
    int err;
    tl_codec_t *codec = tl_codec_new(tl_schema_state, &err);
    ck_assert_ptr_nonnull(codec);
    tl_fold_t *whole = tl_fold_new(&opts), *cut = tl_fold_new(&opts);
    tl_fold_result_t rw, rc;
    tl_buf_t buf;
    tl_buf_init(&buf);
    int64_t t = 1700000000000LL;
    for (int i = 0; i < 200; i++) {
        char e[16], k[16];
        snprintf(e, sizeof e, "e%d", i);
        snprintf(k, sizeof k, "web:%d", i % 90);  /* repeats: duplicates across the cut */
        tl_event_t ev = message("c1", e, k, t + i * 7 * MIN, t + i * 7 * MIN);
        if (i % 11 == 0) ev.occurred_at -= 20 * MIN;
        ck_assert_int_eq(tl_fold_apply(whole, &ev, &rw), 0);
        ck_assert_int_eq(tl_fold_apply(cut, &ev, &rc), 0);
        ck_assert_int_eq(rw.duplicate, rc.duplicate);
        ck_assert_int_eq(rw.customer_version, rc.customer_version);
        ck_assert_int_eq(rw.conversation_version, rc.conversation_version);
        ck_assert_str_eq(rw.conversation_id, rc.conversation_id);
        if (i % 50 == 49) {
            tl_buf_reset(&buf);
            ck_assert_int_eq(tl_fold_state_encode(cut, codec, TL_STR("acme"), TL_STR("c1"), &buf), 0);
            tl_fold_clear(cut);
            ck_assert_int_eq(tl_fold_state_load(cut, codec, buf.data, buf.len), 0);
            /* byte-identical state after the restore */
            tl_buf_t again;
            tl_buf_init(&again);
            tl_fold_state_encode(cut, codec, TL_STR("acme"), TL_STR("c1"), &again);
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

START_TEST(fold_state_load_rejects_garbage) {
    int err;
    tl_codec_t *codec = tl_codec_new(tl_schema_state, &err);
    tl_fold_t *f = tl_fold_new(&opts);
    ck_assert_int_ne(tl_fold_state_load(f, codec, "\xc3\x01garbage", 9), 0);
    ck_assert_uint_eq(tl_fold_count(f), 0);
    tl_fold_free(f);
    tl_codec_free(codec);
}
END_TEST

Suite *tl_fold_suite(void) {
    Suite *s = suite_create("fold");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, fold_effective_ts_is_clamped_to_skew_window);
    tcase_add_test(tc, fold_versions_count_applied_events);
    tcase_add_test(tc, fold_wechat_triple_resend_applied_once);
    tcase_add_test(tc, fold_idle_timeout_opens_new_conversation);
    tcase_add_test(tc, fold_close_then_message_opens_new_conversation);
    tcase_add_test(tc, fold_conversation_id_is_deterministic);
    tcase_add_test(tc, fold_customers_are_independent);
    tcase_add_test(tc, fold_rejects_event_without_customer);
    suite_add_tcase(s, tc);
    tc = tcase_create("state");
    tcase_add_test(tc, fold_state_roundtrip_continues_identically);
    tcase_add_test(tc, fold_state_load_rejects_garbage);
    suite_add_tcase(s, tc);
    return s;
}
