/* test_profile.c -- engine/profile.c: the built-in profiles, and every
 * refusal naming the file and the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "profile.h"
#include "suites.h"

START_TEST(profile_builtins_load_and_say_what_each_platform_renders) {
    static const struct {
        tl_platform_t platform;
        size_t max_bytes;
        tl_profile_overflow_t overflow;
        tl_profile_media_t media;
        int markers;
    } want[] = {
        {TL_PLATFORM_AGENT, 0, TL_OVERFLOW_SPLIT, TL_MEDIA_INLINE, 1},
        {TL_PLATFORM_WEB, 16384, TL_OVERFLOW_SPLIT, TL_MEDIA_THUMBNAIL_LINK, 1},
        {TL_PLATFORM_APP, 16384, TL_OVERFLOW_SPLIT, TL_MEDIA_INLINE, 1},
        {TL_PLATFORM_MINI_PROGRAM, 4096, TL_OVERFLOW_SPLIT, TL_MEDIA_THUMBNAIL_LINK, 1},
        {TL_PLATFORM_WECHAT, 2048, TL_OVERFLOW_SPLIT, TL_MEDIA_LINK_ONLY, 1},
        {TL_PLATFORM_DOUYIN, 1000, TL_OVERFLOW_CUT, TL_MEDIA_LINK_ONLY, 0},
        {TL_PLATFORM_PHONE, 0, TL_OVERFLOW_SPLIT, TL_MEDIA_LINK_ONLY, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        tl_profile_t *pf = NULL;
        char err[512] = "";
        ck_assert_msg(tl_profile_load(NULL, want[i].platform, &pf, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(pf->platform, want[i].platform);
        ck_assert_uint_eq(pf->max_bytes, want[i].max_bytes);
        ck_assert_int_eq(pf->overflow, want[i].overflow);
        ck_assert_int_eq(pf->media, want[i].media);
        ck_assert_int_eq(pf->transcript_markers, want[i].markers);
        ck_assert(pf->kinds & 1u << TL_EV_MESSAGE_RECEIVED);
        ck_assert_str_eq(pf->platform_labels[TL_PLATFORM_MINI_PROGRAM], "mini-program");
        ck_assert_uint_gt(pf->nkeywords, 0);
        tl_profile_free(pf);
    }
    tl_profile_t *pf = NULL;
    char err[512];
    ck_assert_int_eq(tl_profile_load(NULL, TL_PLATFORM_WECHAT, &pf, err, sizeof err), 0);
    ck_assert(pf->mask & TL_MASK_PHONE_IN_TEXT);
    ck_assert(!(pf->kinds & 1u << TL_EV_BEHAVIOR_TRACKED));
    tl_profile_free(pf);
    ck_assert_ptr_null(tl_profile_builtin(TL_PLATFORM_SYSTEM));
}
END_TEST

/* Each broken profile and the exact message it gets. */
static const struct {
    const char *json, *error;
} bad[] = {
    {"[1]", "w.json: : must be a JSON object"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"],}",
     "w.json: line 1 column 53: not valid JSON: string or '}' expected near '}'"},
    {"{\"kinds\": [\"MessageReceived\"]}", "w.json: platform: required: the platform slug"},
    {"{\"platform\": \"web\", \"kinds\": [\"MessageReceived\"]}",
     "w.json: platform: is \"web\" but the file is the profile of \"wechat\""},
    {"{\"platform\": \"wechat\", \"kinds\": []}",
     "w.json: kinds: required: a non-empty array of event kinds"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\", \"FieldAsserted\"]}",
     "w.json: kinds[1]: \"FieldAsserted\" is not an item kind (MessageReceived, AgentReplied, "
     "TranscriptSegment, BehaviorTracked, ConversationAssigned, ConversationTagged, ConversationClosed)"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"colour\": \"red\"}",
     "w.json: colour: unknown key"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"text\": {\"max_bytes\": 10}}",
     "w.json: text.max_bytes: must be an integer from 64 to 1048576"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"text\": {\"max_bytes\": 2048, "
     "\"overflow\": \"wrap\"}}",
     "w.json: text.overflow: must be \"split\" or \"cut\""},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"text\": {\"max_bytes\": 2048, "
     "\"overflow\": \"cut\"}}",
     "w.json: text.link: required when overflow is \"cut\""},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"text\": {\"max_bytes\": 2048, "
     "\"limit\": 1}}",
     "w.json: text.limit: unknown key"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"media\": \"thumbnail_link\"}",
     "w.json: thumbnail: required when media is \"thumbnail_link\""},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"media\": \"embed\"}",
     "w.json: media: must be \"inline\", \"thumbnail_link\" or \"link_only\""},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"thumbnail\": \"https://t/\"}",
     "w.json: thumbnail: must contain {url}"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"labels\": {\"keywords\": "
     "[{\"any\": [\"size\"], \"label\": \"size\"}, {\"any\": [], \"label\": \"x\"}]}}",
     "w.json: labels.keywords[1].any: must be an array of 1 to 256 keywords"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"labels\": {\"entry_points\": "
     "[{\"prefix\": \"p\"}]}}",
     "w.json: labels.entry_points[0].label: must be a string"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"labels\": {\"platforms\": "
     "{\"telegram\": \"tg\"}}}",
     "w.json: labels.platforms.telegram: not a platform slug"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"mask\": [\"phone_in_text\", \"iban\"]}",
     "w.json: mask[1]: must be one of caller_number, device_id, phone_in_text, email_in_text"},
    {"{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"transcript_markers\": 1}",
     "w.json: transcript_markers: must be true or false"},
    {"{\"platform\": \"wechat\", \"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"]}",
     "w.json: line 1 column 33: not valid JSON: duplicate object key near '\"platform\"'"},
};

START_TEST(profile_refusals_name_the_file_and_the_key) {
    tl_profile_t *pf = (tl_profile_t *)&pf;     /* must stay untouched */
    char err[512];
    int rc = tl_profile_parse(bad[_i].json, strlen(bad[_i].json), TL_PLATFORM_WECHAT, "w.json", &pf,
                              err, sizeof err);
    ck_assert_int_eq(rc, TL_ECONFIG);
    ck_assert_ptr_eq(pf, (tl_profile_t *)&pf);
    ck_assert_str_eq(err, bad[_i].error);
}
END_TEST

START_TEST(profile_directory_overrides_the_builtin_file_by_file) {
    char dir[] = "/tmp/tl-profiles-XXXXXX", path[128], err[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/wechat.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"text\": {\"max_bytes\": 600}}", f);
    fclose(f);
    tl_profile_t *pf = NULL;
    ck_assert_int_eq(tl_profile_load(dir, TL_PLATFORM_WECHAT, &pf, err, sizeof err), 0);
    ck_assert_uint_eq(pf->max_bytes, 600);
    ck_assert_str_eq(pf->source, path);
    tl_profile_free(pf);
    /* No web.json there: the built-in one. */
    ck_assert_int_eq(tl_profile_load(dir, TL_PLATFORM_WEB, &pf, err, sizeof err), 0);
    ck_assert_int_eq(pf->media, TL_MEDIA_THUMBNAIL_LINK);
    ck_assert(strstr(pf->source, "(built in)") != NULL);
    tl_profile_free(pf);
    /* A broken file is an error naming it, not a silent fallback. */
    f = fopen(path, "w");
    fputs("{\"platform\": \"wechat\", \"kinds\": [\"MessageReceived\"], \"media\": 3}", f);
    fclose(f);
    ck_assert_int_eq(tl_profile_load(dir, TL_PLATFORM_WECHAT, &pf, err, sizeof err), TL_ECONFIG);
    char want[512];
    snprintf(want, sizeof want, "%s: media: must be \"inline\", \"thumbnail_link\" or \"link_only\"", path);
    ck_assert_str_eq(err, want);
    unlink(path);
    rmdir(dir);
}
END_TEST

Suite *tl_profile_suite(void) {
    Suite *s = suite_create("profile");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, profile_builtins_load_and_say_what_each_platform_renders);
    tcase_add_loop_test(tc, profile_refusals_name_the_file_and_the_key, 0, (int)(sizeof bad / sizeof *bad));
    tcase_add_test(tc, profile_directory_overrides_the_builtin_file_by_file);
    suite_add_tcase(s, tc);
    return s;
}
