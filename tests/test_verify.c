/*
 * test_verify.c -- the pure parts of replay tooling: times (replay.c),
 * digests, canonical renderings and difference texts (verify.c), event
 * rendering and accounts (audit.c).  No services.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "audit.h"
#include "error.h"
#include "fold.h"
#include "profile.h"
#include "replay.h"
#include "suites.h"
#include "verify.h"

START_TEST(verify_parses_rfc3339_and_epoch_ms) {
    char err[256];
    int64_t ms = 0;
    ck_assert_int_eq(tl_replay_parse_time("1795284771814", &ms, err, sizeof err), 0);
    ck_assert_int_eq(ms, 1795284771814);
    ck_assert_int_eq(tl_replay_parse_time("1970-01-01T00:00:00Z", &ms, err, sizeof err), 0);
    ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(tl_replay_parse_time("2026-11-21T18:12:51.784Z", &ms, err, sizeof err), 0);
    ck_assert_int_eq(ms, 1795284771784);
    /* The same instant in Beijing time, with a space and a 1-digit fraction. */
    ck_assert_int_eq(tl_replay_parse_time("2026-11-22 02:12:51.7+08:00", &ms, err, sizeof err), 0);
    ck_assert_int_eq(ms, 1795284771700);
    ck_assert_int_eq(tl_replay_parse_time("2024-02-29T00:00:00-00:30", &ms, err, sizeof err), 0);
    ck_assert_int_eq(ms, 1709166600000);
    char out[40];
    tl_replay_format_time(1795284771784, out, sizeof out);
    ck_assert_str_eq(out, "2026-11-21T18:12:51.784Z");
}
END_TEST

static const struct {
    const char *in, *says;
} bad_times[] = {
    {"", "empty"},
    {"yesterday", "not a time"},
    {"2026-13-01T00:00:00Z", "no such date"},
    {"2025-02-29T00:00:00Z", "no such date"},
    {"2026-11-21", "time of day"},
    {"2026-11-21T25:00:00Z", "out of range"},
    {"2026-11-21T18:00:00", "offset is missing"},
    {"2026-11-21T18:00:00+8", "bad UTC offset"},
    {"2026-11-21T18:00:00.Z", "digits must follow"},
    {"2026-11-21T18:00:00Zjunk", "unexpected text"},
    {"99999999999999999999", "out of range"},
    {"1969-12-31T23:59:59Z", "before 1970"},
};

START_TEST(verify_bad_times_are_refused_precisely) {
    char err[256] = "";
    int64_t ms = 42;
    ck_assert_int_eq(tl_replay_parse_time(bad_times[_i].in, &ms, err, sizeof err), TL_EINVAL);
    ck_assert_msg(strstr(err, bad_times[_i].says) != NULL, "\"%s\": message \"%s\" lacks \"%s\"",
                  bad_times[_i].in, err, bad_times[_i].says);
    ck_assert_int_eq(ms, 42);
}
END_TEST

START_TEST(verify_digest_is_sha256) {
    char hex[TL_VERIFY_DIGEST_HEX];
    ck_assert_int_eq(tl_verify_digest("abc", 3, hex), 0);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(verify_platform_sets_are_sorted_and_distinct) {
    char out[128];
    tl_verify_platform_set("web,app,web,mini_program", out, sizeof out);
    ck_assert_str_eq(out, "app,mini_program,web");
    tl_verify_platform_set("{wechat,api}", out, sizeof out);
    ck_assert_str_eq(out, "api,wechat");
    tl_verify_platform_set("", out, sizeof out);
    ck_assert_str_eq(out, "");
}
END_TEST

static tl_verify_conv_t sample_conv(tl_verify_item_t *items, size_t n) {
    tl_verify_conv_t c;
    memset(&c, 0, sizeof c);
    strcpy(c.tenant, "acme");
    strcpy(c.id, "c-1");
    strcpy(c.customer, "u-1");
    c.version = 2;
    c.item_count = 2;
    c.opened_at = 1000;
    c.last_activity = 2000;
    strcpy(c.platforms, "app,web");
    c.items = items;
    c.nitems = c.capitems = n;
    return c;
}

START_TEST(verify_rendering_is_canonical_and_digest_sees_every_field) {
    tl_verify_item_t items[2] = {{"e-1", 1000, 0, 5, 0}, {"e-2", 2000, 0, 9, 0}};
    tl_verify_conv_t c = sample_conv(items, 2);
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_verify_render_conversation(&c, &b), 0);
    ck_assert_int_eq(tl_buf_append(&b, "", 1), 0);
    ck_assert_str_eq(b.data, "conversation acme/c-1\ncustomer u-1\nversion 2\nstatus open\nitem_count 2\n"
                             "platforms app,web\nopened_at 1000\nlast_activity 2000\n"
                             "item e-1 1000 0:5 0\nitem e-2 2000 0:9 0\n");
    char d1[TL_VERIFY_DIGEST_HEX], d2[TL_VERIFY_DIGEST_HEX];
    tl_buf_reset(&b);
    tl_verify_render_conversation(&c, &b);
    tl_verify_digest(b.data, b.len, d1);
    items[1].offset = 10;
    tl_buf_reset(&b);
    tl_verify_render_conversation(&c, &b);
    tl_verify_digest(b.data, b.len, d2);
    ck_assert_str_ne(d1, d2);
    tl_buf_close(&b);
}
END_TEST

START_TEST(verify_difference_text_names_conversation_field_and_source) {
    tl_verify_diff_t d;
    memset(&d, 0, sizeof d);
    strcpy(d.subject, "conversation");
    strcpy(d.id, "X");
    strcpy(d.source, "conversations");
    strcpy(d.field, "version");
    strcpy(d.replay, "12");
    strcpy(d.found, "11");
    char line[512];
    tl_verify_diff_text(&d, line, sizeof line);
    ck_assert_str_eq(line, "conversation X: version: replay 12, conversations 11");
    /* A view row: the view, then the row and column. */
    strcpy(d.source, "view_wechat");
    strcpy(d.field, "item E part 1: body.text");
    strcpy(d.replay, "abc");
    strcpy(d.found, "abd");
    tl_verify_diff_text(&d, line, sizeof line);
    ck_assert_str_eq(line, "conversation X: view_wechat: item E part 1: body.text: replay 'abc', view 'abd'");
    strcpy(d.subject, "customer");
    strcpy(d.id, "C");
    strcpy(d.source, "customer_fields");
    strcpy(d.field, "field email: value");
    tl_verify_diff_text(&d, line, sizeof line);
    ck_assert_str_eq(line, "customer C: customer_fields: field email: value: replay 'abc', table 'abd'");
}
END_TEST

/* The replayed model a verifier keeps is what projection.c aggregates:
 * duplicates count for nothing, a close closes, items in view order. */
START_TEST(verify_observe_aggregates_like_the_projection) {
    tl_fold_t *f = tl_fold_new(&(tl_fold_opts_t){300000, 1800000, NULL, 0});
    tl_verify_t *v = tl_verify_new();
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(v);
    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.tenant_id = TL_STR("acme");
    ev.customer_id = TL_STR("u-1");
    ev.platform = TL_PLATFORM_WEB;
    ev.platform_user_id = TL_STR("v-1");
    ev.kind = TL_EV_MESSAGE_RECEIVED;
    ev.u.message.text = TL_STR("hi");
    const char *ids[] = {"e-1", "e-2", "e-2"};
    const char *keys[] = {"web:1", "web:2", "web:2"};
    for (int i = 0; i < 3; i++) {
        tl_fold_result_t res;
        ev.event_id = (tl_str_t){ids[i], 3};
        ev.idempotency_key = (tl_str_t){keys[i], 5};
        ev.occurred_at = ev.received_at = 1000 + i;
        ck_assert_int_eq(tl_fold_apply(f, &ev, &res), 0);
        ck_assert_int_eq(tl_verify_observe(v, &ev, &res, 0, i), 0);
    }
    json_t *r = tl_verify_report(v, f);
    ck_assert_ptr_nonnull(r);
    json_t *convs = json_object_get(r, "conversations");
    ck_assert_int_eq(json_array_size(convs), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(convs, 0), "version")), 2);
    json_t *custs = json_object_get(r, "customers");
    ck_assert_int_eq(json_array_size(custs), 1);
    ck_assert_int_eq(strlen(json_string_value(json_object_get(json_array_get(custs, 0), "digest"))), 64);
    ck_assert(json_is_true(json_object_get(r, "ok")));
    json_decref(r);
    tl_verify_free(v);
    tl_fold_free(f);
}
END_TEST

/* An account names who acted and what the fold did; state shows the
 * field's provenance. */
START_TEST(verify_audit_account_and_state_provenance) {
    tl_fold_t *f = tl_fold_new(&(tl_fold_opts_t){300000, 1800000, NULL, 0});
    tl_audit_t *a = tl_audit_new();
    tl_event_t ev;
    tl_fold_result_t res;
    memset(&ev, 0, sizeof ev);
    ev.tenant_id = TL_STR("acme");
    ev.customer_id = TL_STR("u-1");
    ev.platform = TL_PLATFORM_APP;
    ev.platform_user_id = TL_STR("app-7");
    ev.kind = TL_EV_FIELD_ASSERTED;
    ev.event_id = TL_STR("e-1");
    ev.idempotency_key = TL_STR("app:1");
    ev.occurred_at = ev.received_at = 5000;
    ev.u.field.field = TL_STR("email");
    ev.u.field.value = TL_STR("a@example.com");
    ck_assert_int_eq(tl_fold_apply(f, &ev, &res), 0);
    ck_assert_int_eq(tl_audit_observe(a, &ev, &res, 3, 17), 0);
    ev.event_id = TL_STR("e-2");
    ev.idempotency_key = TL_STR("app:2");
    ev.occurred_at = ev.received_at = 6000;
    ev.u.field.value = TL_STR("b@example.com");
    ck_assert_int_eq(tl_fold_apply(f, &ev, &res), 0);
    ck_assert_int_eq(tl_audit_observe(a, &ev, &res, 3, 18), 0);

    json_t *acc = tl_audit_account(a, "u-1", NULL);
    json_t *evs = json_object_get(acc, "events");
    ck_assert_int_eq(json_array_size(evs), 2);
    json_t *second = json_array_get(evs, 1);
    ck_assert_str_eq(json_string_value(json_object_get(second, "position")), "3:18");
    ck_assert_str_eq(json_string_value(json_object_get(second, "actor")), "app-7");
    ck_assert_str_eq(json_string_value(json_object_get(second, "role")), "customer");
    int opened = 0;
    size_t k;
    json_t *ch;
    json_array_foreach(json_object_get(second, "changes"), k, ch)
        opened |= strcmp(json_string_value(json_object_get(ch, "kind")), "conflict_opened") == 0;
    ck_assert_msg(opened, "the second email opens a conflict");
    json_decref(acc);

    int err;
    json_t *st = tl_audit_state(a, f, "u-1", INT64_MAX, &err);
    ck_assert_ptr_nonnull(st);
    json_t *field = json_array_get(json_object_get(st, "fields"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(field, "value")), "a@example.com");
    json_t *prov = json_object_get(field, "provenance");
    ck_assert_str_eq(json_string_value(json_object_get(prov, "event_id")), "e-1");
    ck_assert_str_eq(json_string_value(json_object_get(prov, "platform")), "app");
    ck_assert_str_eq(json_string_value(json_object_get(prov, "actor")), "app-7");
    ck_assert_int_eq(json_array_size(json_object_get(st, "conflicts")), 1);
    json_decref(st);
    ck_assert_ptr_null(tl_audit_state(a, f, "nobody", INT64_MAX, &err));
    ck_assert_int_eq(err, TL_ENOTFOUND);
    tl_audit_free(a);
    tl_fold_free(f);
}
END_TEST


/* A configured verifier renders every view with the profile it is given:
 * the report digests each view's rows, the same inputs give the same
 * digests, and another WeChat profile (a smaller max_bytes, as --profiles
 * may give) changes view_wechat's digest and no other. */
START_TEST(verify_views_render_with_the_configured_profiles) {
    static const tl_platform_t views[] = {TL_PLATFORM_AGENT, TL_PLATFORM_WEB, TL_PLATFORM_APP,
                                          TL_PLATFORM_MINI_PROGRAM, TL_PLATFORM_WECHAT, TL_PLATFORM_DOUYIN,
                                          TL_PLATFORM_PHONE};
    enum { NV = sizeof views / sizeof *views };
    tl_profile_t *pf[NV], *small = NULL;
    char err[512];
    for (int i = 0; i < NV; i++) ck_assert_int_eq(tl_profile_load("", views[i], &pf[i], err, sizeof err), 0);
    const char *text = tl_profile_builtin(TL_PLATFORM_WECHAT);
    ck_assert_ptr_nonnull(text);
    char *edited = strdup(text), *at = strstr(edited, "\"max_bytes\": 2048");
    ck_assert_ptr_nonnull(at);
    memcpy(at, "\"max_bytes\": 1024", 17);
    ck_assert_int_eq(tl_profile_parse(edited, strlen(edited), TL_PLATFORM_WECHAT, "edited", &small, err, sizeof err), 0);
    free(edited);
    const tl_profile_t *other[NV];
    for (int i = 0; i < NV; i++) other[i] = views[i] == TL_PLATFORM_WECHAT ? small : pf[i];

    tl_fold_t *f = tl_fold_new(&(tl_fold_opts_t){300000, 1800000, NULL, 0});
    tl_verify_t *v[3] = {tl_verify_new(), tl_verify_new(), tl_verify_new()};
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tl_verify_configure(v[0], f, (const tl_profile_t *const *)pf, NV), 0);
    ck_assert_int_eq(tl_verify_configure(v[1], f, (const tl_profile_t *const *)pf, NV), 0);
    ck_assert_int_eq(tl_verify_configure(v[2], f, other, NV), 0);
    char long_text[3001];
    for (int i = 0; i < 1000; i++) memcpy(long_text + 3 * i, "\xe5\xb0\xba", 3);
    long_text[3000] = 0;
    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.tenant_id = TL_STR("acme");
    ev.customer_id = TL_STR("u-1");
    ev.platform = TL_PLATFORM_WECHAT;
    ev.platform_user_id = TL_STR("wx-1");
    ev.kind = TL_EV_MESSAGE_RECEIVED;
    ev.event_id = TL_STR("e-1");
    ev.idempotency_key = TL_STR("wechat:1");
    ev.occurred_at = ev.received_at = 1000;
    ev.u.message.text = (tl_str_t){long_text, 3000};
    tl_fold_result_t res;
    ck_assert_int_eq(tl_fold_apply(f, &ev, &res), 0);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(tl_verify_observe(v[i], &ev, &res, 0, 0), 0);
    json_t *views_of[3];
    json_t *r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = tl_verify_report(v[i], f);
        ck_assert_ptr_nonnull(r[i]);
        views_of[i] = json_object_get(json_array_get(json_object_get(r[i], "conversations"), 0), "views");
        ck_assert_int_eq(json_object_size(views_of[i]), NV);
    }
    ck_assert(json_equal(views_of[0], views_of[1]));
    ck_assert_str_ne(json_string_value(json_object_get(views_of[0], "view_wechat")),
                     json_string_value(json_object_get(views_of[2], "view_wechat")));
    ck_assert_str_eq(json_string_value(json_object_get(views_of[0], "view_web")),
                     json_string_value(json_object_get(views_of[2], "view_web")));
    /* Unconfigured: no views. */
    tl_verify_t *plain = tl_verify_new();
    ck_assert_int_eq(tl_verify_observe(plain, &ev, &res, 0, 0), 0);
    json_t *pr = tl_verify_report(plain, f);
    ck_assert_ptr_null(json_object_get(json_array_get(json_object_get(pr, "conversations"), 0), "views"));
    json_decref(pr);
    tl_verify_free(plain);
    for (int i = 0; i < 3; i++) {
        json_decref(r[i]);
        tl_verify_free(v[i]);
    }
    ck_assert_int_eq(tl_verify_configure(v[0] = tl_verify_new(), f, (const tl_profile_t *const *)pf, NV + 1),
                     TL_EINVAL);
    const tl_profile_t *twice[] = {pf[0], pf[0]};
    ck_assert_int_eq(tl_verify_configure(v[0], f, twice, 2), TL_EINVAL);
    ck_assert_int_eq(tl_verify_configure(v[0], NULL, (const tl_profile_t *const *)pf, NV), TL_EINVAL);
    tl_verify_free(v[0]);
    tl_fold_free(f);
    for (int i = 0; i < NV; i++) tl_profile_free(pf[i]);
    tl_profile_free(small);
}
END_TEST

Suite *tl_verify_suite(void) {
    Suite *s = suite_create("verify");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, verify_parses_rfc3339_and_epoch_ms);
    tcase_add_loop_test(tc, verify_bad_times_are_refused_precisely, 0,
                        (int)(sizeof bad_times / sizeof *bad_times));
    tcase_add_test(tc, verify_digest_is_sha256);
    tcase_add_test(tc, verify_platform_sets_are_sorted_and_distinct);
    tcase_add_test(tc, verify_rendering_is_canonical_and_digest_sees_every_field);
    tcase_add_test(tc, verify_difference_text_names_conversation_field_and_source);
    tcase_add_test(tc, verify_observe_aggregates_like_the_projection);
    tcase_add_test(tc, verify_audit_account_and_state_provenance);
    tcase_add_test(tc, verify_views_render_with_the_configured_profiles);
    suite_add_tcase(s, tc);
    return s;
}
