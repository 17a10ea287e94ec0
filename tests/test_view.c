/* test_view.c -- engine/view.c: each built-in profile's shaping of one
 * Change, table by table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "profile.h"
#include "suites.h"
#include "view.h"

static tl_profile_t *profile(tl_platform_t p) {
    tl_profile_t *pf = NULL;
    char err[512];
    ck_assert_msg(tl_profile_load(NULL, p, &pf, err, sizeof err) == 0, "%s", err);
    return pf;
}

static tl_change_t change(void) {
    return (tl_change_t){
        .event_id = TL_STR("e-1"), .tenant_id = TL_STR("acme"), .customer_id = TL_STR("cust-1"),
        .source_partition = 1, .source_offset = 10, .customer_version = 3,
        .conversation_id = TL_STR("conv-1"), .conversation_version = 2, .effective_ts = 1700000000000LL,
    };
}

static tl_event_t message(tl_platform_t p, const char *text, const char *entry) {
    tl_event_t ev = {
        .event_id = TL_STR("e-1"), .tenant_id = TL_STR("acme"), .customer_id = TL_STR("cust-1"),
        .platform = p, .platform_user_id = TL_STR("u-1"), .idempotency_key = TL_STR("web:m-1"),
        .occurred_at = 1700000000000LL, .received_at = 1700000000001LL, .kind = TL_EV_MESSAGE_RECEIVED,
    };
    ev.u.message.text = text ? (tl_str_t){text, strlen(text)} : TL_STR_NULL;
    ev.u.message.entry_point = entry ? (tl_str_t){entry, strlen(entry)} : TL_STR_NULL;
    return ev;
}

/* Renders and returns the bodies parsed; *labels gets row 0's label. */
static json_t *render(tl_platform_t view, const tl_change_t *ch, const tl_event_t *ev, char *label,
                      size_t labellen) {
    tl_profile_t *pf = profile(view);
    tl_view_rows_t rows = {0};
    ck_assert_int_eq(tl_view_render(pf, ch, ev, &rows), 0);
    json_t *arr = json_array();
    for (size_t i = 0; i < rows.n; i++) {
        ck_assert_int_eq(rows.v[i].part, (int)i);
        json_error_t je;
        json_t *b = json_loads(rows.v[i].body, 0, &je);
        ck_assert_msg(b != NULL, "body is not JSON: %s", rows.v[i].body);
        json_array_append_new(arr, b);
        if (i == 0 && label) snprintf(label, labellen, "%s", rows.v[i].source_label);
    }
    tl_view_rows_close(&rows);
    tl_profile_free(pf);
    return arr;
}

static const char *text_of(json_t *rows, size_t i) {
    return json_string_value(json_object_get(json_array_get(rows, i), "text"));
}

START_TEST(view_utf8_cut_never_splits_a_character) {
    static const struct { const char *s; size_t max, want; } cases[] = {
        {"abcdef", 10, 6}, {"abcdef", 3, 3}, {"\xe5\xb0\xba\xe5\xb0\xba", 4, 3},
        {"\xe5\xb0\xba\xe5\xb0\xba", 3, 3}, {"\xe5\xb0\xba\xe5\xb0\xba", 2, 0},
        {"a\xf0\x9f\x98\x80", 4, 1}, {"a\xf0\x9f\x98\x80", 5, 5}, {"ab\xc3\xa9", 3, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_uint_eq(tl_view_utf8_cut(cases[i].s, strlen(cases[i].s), cases[i].max), cases[i].want);
}
END_TEST

START_TEST(view_wechat_splits_long_text_at_2048_bytes_on_character_boundaries) {
    /* 1000 three-byte characters and an ASCII tail: 3007 bytes. */
    size_t n = 1000 * 3 + 7;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < 1000; i++) memcpy(text + 3 * i, "\xe5\xb0\xba", 3);
    memcpy(text + 3000, " tail!!", 8);
    tl_change_t ch = change();
    tl_event_t ev = message(TL_PLATFORM_WEB, text, NULL);
    json_t *rows = render(TL_PLATFORM_WECHAT, &ch, &ev, NULL, 0);
    ck_assert_uint_eq(json_array_size(rows), 2);
    const char *a = text_of(rows, 0), *b = text_of(rows, 1);
    ck_assert_ptr_nonnull(a);   /* NULL would mean a piece is not UTF-8 */
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(strlen(a), 2046);     /* 682 whole characters */
    ck_assert_uint_eq(strlen(b), n - 2046);
    ck_assert(strncmp(a, text, 2046) == 0 && strcmp(b, text + 2046) == 0);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(rows, 1), "part")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(rows, 1), "parts")), 2);
    json_decref(rows);
    /* At the limit exactly: one row, no part numbers. */
    text[2048] = 0;
    memset(text, 'x', 2048);
    ev = message(TL_PLATFORM_WEB, text, NULL);
    rows = render(TL_PLATFORM_WECHAT, &ch, &ev, NULL, 0);
    ck_assert_uint_eq(json_array_size(rows), 1);
    ck_assert_ptr_null(json_object_get(json_array_get(rows, 0), "part"));
    json_decref(rows);
    free(text);
}
END_TEST

START_TEST(view_douyin_cuts_long_text_and_links_to_the_whole) {
    char text[3000];
    memset(text, 'y', sizeof text - 1);
    text[sizeof text - 1] = 0;
    tl_change_t ch = change();
    tl_event_t ev = message(TL_PLATFORM_DOUYIN, text, NULL);
    json_t *rows = render(TL_PLATFORM_DOUYIN, &ch, &ev, NULL, 0);
    ck_assert_uint_eq(json_array_size(rows), 1);
    const char *t = text_of(rows, 0);
    const char *link = "https://threadline.example/c/conv-1/i/e-1";
    ck_assert_uint_eq(strlen(t), 1000);
    ck_assert_str_eq(t + 1000 - strlen(link) - 4, "\xe2\x80\xa6 https://threadline.example/c/conv-1/i/e-1");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "full_text_link")), link);
    ck_assert(json_is_true(json_object_get(json_array_get(rows, 0), "truncated")));
    json_decref(rows);
}
END_TEST

START_TEST(view_media_inline_thumbnail_or_link) {
    tl_attachment_t at[2] = {
        {TL_STR("https://cdn.example/a.png"), TL_STR("image/png"), 2048, 640, 480, 1, 1},
        {TL_STR("https://cdn.example/b.pdf"), TL_STR("application/pdf"), 99, 0, 0, 0, 0},
    };
    tl_change_t ch = change();
    tl_event_t ev = message(TL_PLATFORM_WEB, "see", NULL);
    ev.u.message.attachments = (tl_attachments_t){at, 2};
    static const struct { tl_platform_t view; const char *want; } cases[] = {
        {TL_PLATFORM_WEB,
         "[{\"thumbnail\":\"https://cdn.example/a.png?x-thumbnail=240\",\"link\":\"https://cdn.example/a.png\","
         "\"mime\":\"image/png\",\"width\":640,\"height\":480},"
         "{\"link\":\"https://cdn.example/b.pdf\",\"mime\":\"application/pdf\",\"bytes\":99}]"},
        {TL_PLATFORM_AGENT,
         "[{\"url\":\"https://cdn.example/a.png\",\"mime\":\"image/png\",\"bytes\":2048,\"width\":640,\"height\":480},"
         "{\"url\":\"https://cdn.example/b.pdf\",\"mime\":\"application/pdf\",\"bytes\":99}]"},
        {TL_PLATFORM_WECHAT,
         "[{\"link\":\"https://cdn.example/a.png\",\"mime\":\"image/png\"},"
         "{\"link\":\"https://cdn.example/b.pdf\",\"mime\":\"application/pdf\"}]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *rows = render(cases[i].view, &ch, &ev, NULL, 0);
        char *got = json_dumps(json_object_get(json_array_get(rows, 0), "attachments"), JSON_COMPACT);
        ck_assert_str_eq(got, cases[i].want);
        free(got);
        json_decref(rows);
    }
}
END_TEST

START_TEST(view_phone_segments_carry_their_time_markers) {
    tl_change_t ch = change();
    tl_event_t ev = message(TL_PLATFORM_PHONE, NULL, NULL);
    ev.kind = TL_EV_TRANSCRIPT_SEGMENT;
    ev.u.transcript = (tl_transcript_segment_t){TL_STR("call-9"), 12000, 30500, TL_SPEAKER_CUSTOMER,
                                                TL_STR("where is my parcel"), 0.91f, TL_STR("+8613812345678")};
    json_t *rows = render(TL_PLATFORM_PHONE, &ch, &ev, NULL, 0);
    json_t *b = json_array_get(rows, 0);
    ck_assert_str_eq(text_of(rows, 0), "[0:12\xe2\x80\x93" "0:30] where is my parcel");
    ck_assert_str_eq(json_string_value(json_object_get(b, "time_marker")), "0:12\xe2\x80\x93" "0:30");
    ck_assert_str_eq(json_string_value(json_object_get(b, "speaker")), "customer");
    ck_assert_str_eq(json_string_value(json_object_get(b, "caller_number")), "+8613812345678");
    json_decref(rows);
    /* Over an hour in; the web view masks the caller's number. */
    ev.u.transcript.start_ms = 3723000;
    ev.u.transcript.end_ms = 3725000;
    rows = render(TL_PLATFORM_WEB, &ch, &ev, NULL, 0);
    ck_assert_str_eq(text_of(rows, 0), "[1:02:03\xe2\x80\x93" "1:02:05] where is my parcel");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "caller_number")),
                     "+*********5678");
    json_decref(rows);
    /* Douyin has no markers. */
    rows = render(TL_PLATFORM_DOUYIN, &ch, &ev, NULL, 0);
    ck_assert_str_eq(text_of(rows, 0), "where is my parcel");
    json_decref(rows);
}
END_TEST

static const struct {
    tl_platform_t from;
    const char *text, *entry, *want;
} label_cases[] = {
    {TL_PLATFORM_MINI_PROGRAM, "Do you have this in a bigger SIZE?", "product-detail:SKU-1",
     "mini-program \xc2\xb7 size question"},
    {TL_PLATFORM_MINI_PROGRAM, "\xe8\xbf\x99\xe4\xb8\xaa\xe5\xb0\xba\xe7\xa0\x81\xe5\x81\x8f\xe5\xb0\x8f\xe5\x90\x97", NULL,
     "mini-program \xc2\xb7 size question"},
    {TL_PLATFORM_WEB, "hello", "product-detail:SKU-1", "web \xc2\xb7 product page"},
    {TL_PLATFORM_APP, "hello", "campaign-spring", "app \xc2\xb7 campaign-spring"},
    {TL_PLATFORM_WECHAT, "hello", NULL, "WeChat"},
    {TL_PLATFORM_DOUYIN, "where is the courier", "qrscene_42", "Douyin \xc2\xb7 delivery"},
};

START_TEST(view_source_labels_from_entry_point_and_keywords) {
    char label[256];
    tl_change_t ch = change();
    tl_event_t ev = message(label_cases[_i].from, label_cases[_i].text, label_cases[_i].entry);
    json_t *rows = render(TL_PLATFORM_AGENT, &ch, &ev, label, sizeof label);
    ck_assert_str_eq(label, label_cases[_i].want);
    json_decref(rows);
}
END_TEST

START_TEST(view_masks_phone_numbers_emails_and_devices) {
    tl_change_t ch = change();
    tl_event_t ev = message(TL_PLATFORM_WEB, "call 13812345678 or li.lei+x@example.com, order 12345", NULL);
    ev.u.message.device_id = TL_STR("device-abcdef");
    json_t *rows = render(TL_PLATFORM_WECHAT, &ch, &ev, NULL, 0);
    ck_assert_str_eq(text_of(rows, 0), "call *******5678 or ***@example.com, order 12345");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "device_id")), "*********cdef");
    json_decref(rows);
    rows = render(TL_PLATFORM_AGENT, &ch, &ev, NULL, 0);
    ck_assert_str_eq(text_of(rows, 0), "call 13812345678 or li.lei+x@example.com, order 12345");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "device_id")), "device-abcdef");
    json_decref(rows);
}
END_TEST

START_TEST(view_renders_nothing_for_duplicates_ignored_and_unlisted_kinds) {
    tl_profile_t *wechat = profile(TL_PLATFORM_WECHAT), *agent = profile(TL_PLATFORM_AGENT);
    tl_view_rows_t rows = {0};
    tl_event_t ev = message(TL_PLATFORM_WEB, "hi", NULL);
    tl_change_t ch = change();
    ch.duplicate = 1;
    ck_assert_int_eq(tl_view_render(agent, &ch, &ev, &rows), 0);
    ck_assert_uint_eq(rows.n, 0);
    ch = change();
    ch.ignored = TL_STR("NOT_CURRENT");
    ck_assert_int_eq(tl_view_render(agent, &ch, &ev, &rows), 0);
    ck_assert_uint_eq(rows.n, 0);
    ch = change();
    ch.conversation_id = TL_STR_NULL;
    ck_assert_int_eq(tl_view_render(agent, &ch, &ev, &rows), 0);
    ck_assert_uint_eq(rows.n, 0);
    ch = change();
    ev.kind = TL_EV_BEHAVIOR_TRACKED;
    ev.u.behavior = (tl_behavior_tracked_t){TL_STR("/p/1"), TL_STR("view"), TL_STR_NULL};
    ck_assert_int_eq(tl_view_render(wechat, &ch, &ev, &rows), 0);
    ck_assert_uint_eq(rows.n, 0);
    ck_assert_int_eq(tl_view_render(agent, &ch, &ev, &rows), 0);
    ck_assert_uint_eq(rows.n, 1);
    ck_assert_str_eq(rows.v[0].kind, "BehaviorTracked");
    tl_view_rows_close(&rows);
    tl_profile_free(wechat);
    tl_profile_free(agent);
}
END_TEST

START_TEST(view_app_shows_the_mobile_origin_and_render_is_repeatable) {
    tl_profile_t *app = profile(TL_PLATFORM_APP);
    tl_change_t ch = change();
    tl_event_t ev = message(TL_PLATFORM_MINI_PROGRAM, "hi", NULL);
    ev.u.message.device_id = TL_STR("iphone-15");
    tl_view_rows_t a = {0}, b = {0};
    ck_assert_int_eq(tl_view_render(app, &ch, &ev, &a), 0);
    ck_assert_int_eq(tl_view_render(app, &ch, &ev, &b), 0);
    ck_assert_uint_eq(a.n, 1);
    ck_assert_str_eq(a.v[0].body, "{\"entry_point\":null,\"device_id\":\"iphone-15\",\"origin\":\"mobile\","
                                  "\"text\":\"hi\",\"attachments\":[]}");
    ck_assert_str_eq(a.v[0].body, b.v[0].body);
    ck_assert_str_eq(a.v[0].platform, "mini_program");
    tl_view_rows_close(&a);
    tl_view_rows_close(&b);
    ev.platform = TL_PLATFORM_WEB;
    ck_assert_int_eq(tl_view_render(app, &ch, &ev, &a), 0);
    ck_assert(strstr(a.v[0].body, "origin") == NULL);
    tl_view_rows_close(&a);
    tl_profile_free(app);
}
END_TEST

/* PostgreSQL's text and jsonb cannot hold U+0000. */
START_TEST(view_nul_bytes_become_replacement_characters) {
    static const char text[] = "a\0b";
    tl_change_t ch = change();
    tl_event_t ev = message(TL_PLATFORM_WEB, NULL, NULL);
    ev.u.message.text = (tl_str_t){text, 3};
    ev.u.message.entry_point = (tl_str_t){"x\0y", 3};
    ev.u.message.device_id = (tl_str_t){"\0\0dev", 5};
    char label[64];
    json_t *rows = render(TL_PLATFORM_AGENT, &ch, &ev, label, sizeof label);
    ck_assert_str_eq(text_of(rows, 0), "a\xef\xbf\xbd" "b");
    ck_assert_str_eq(label, "web \xc2\xb7 x\xef\xbf\xbd" "y");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "device_id")),
                     "\xef\xbf\xbd\xef\xbf\xbd" "dev");
    json_decref(rows);
    rows = render(TL_PLATFORM_WECHAT, &ch, &ev, NULL, 0);
    ck_assert_str_eq(text_of(rows, 0), "a\xef\xbf\xbd" "b");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0), "device_id")), "*\xef\xbf\xbd" "dev");
    json_decref(rows);
}
END_TEST

Suite *tl_view_suite(void) {
    Suite *s = suite_create("view");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, view_utf8_cut_never_splits_a_character);
    tcase_add_test(tc, view_wechat_splits_long_text_at_2048_bytes_on_character_boundaries);
    tcase_add_test(tc, view_douyin_cuts_long_text_and_links_to_the_whole);
    tcase_add_test(tc, view_media_inline_thumbnail_or_link);
    tcase_add_test(tc, view_phone_segments_carry_their_time_markers);
    tcase_add_loop_test(tc, view_source_labels_from_entry_point_and_keywords, 0,
                        (int)(sizeof label_cases / sizeof *label_cases));
    tcase_add_test(tc, view_masks_phone_numbers_emails_and_devices);
    tcase_add_test(tc, view_renders_nothing_for_duplicates_ignored_and_unlisted_kinds);
    tcase_add_test(tc, view_app_shows_the_mobile_origin_and_render_is_repeatable);
    tcase_add_test(tc, view_nul_bytes_become_replacement_characters);
    suite_add_tcase(s, tc);
    return s;
}
