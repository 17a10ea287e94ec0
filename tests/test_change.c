/* test_change.c -- engine/change.c */
#include <string.h>

#include "change.h"
#include "error.h"
#include "suites.h"

START_TEST(change_roundtrip_every_field) {
    int err;
    tl_codec_t *c = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(c);
    static const char event[] = "\xc3\x01 opaque event bytes \x00\xff";
    tl_change_t in = {
        .event_id = TL_STR("018bcfe5-6800-7000-8000-000000000001"),
        .tenant_id = TL_STR("acme"),
        .customer_id = TL_STR("ccb98ee3-cc1b-581d-aa66-7d85f131e0af"),
        .source_partition = 7, .source_offset = 123456789012LL,
        .customer_version = 42,
        .conversation_id = TL_STR("8821379b-782e-5391-83cb-7405595a777d"),
        .conversation_version = 9, .conversation_opened = 1,
        .effective_ts = 1700000000123LL, .duplicate = 0,
        .event = {event, sizeof event - 1},
    }, out;
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert(out.event_id.len == in.event_id.len && !memcmp(out.event_id.ptr, in.event_id.ptr, in.event_id.len));
    ck_assert(out.tenant_id.len == 4 && !memcmp(out.tenant_id.ptr, "acme", 4));
    ck_assert(out.customer_id.len == 36);
    ck_assert_int_eq(out.source_partition, 7);
    ck_assert_int_eq(out.source_offset, 123456789012LL);
    ck_assert_int_eq(out.customer_version, 42);
    ck_assert(out.conversation_id.len == 36 && !memcmp(out.conversation_id.ptr, in.conversation_id.ptr, 36));
    ck_assert_int_eq(out.conversation_version, 9);
    ck_assert_int_eq(out.conversation_opened, 1);
    ck_assert_int_eq(out.effective_ts, 1700000000123LL);
    ck_assert_int_eq(out.duplicate, 0);
    ck_assert(out.event.len == in.event.len && !memcmp(out.event.ptr, event, in.event.len));

    /* no conversation, duplicate */
    in.conversation_id = TL_STR_NULL;
    in.duplicate = 1;
    tl_buf_reset(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert_ptr_null(out.conversation_id.ptr);
    ck_assert_int_eq(out.duplicate, 1);
    tl_buf_close(&b);
    tl_codec_free(c);
}
END_TEST

START_TEST(change_decode_refuses_an_event_record) {
    int err;
    tl_codec_t *c = tl_change_codec_new(&err);
    tl_change_t out;
    /* Right magic, fingerprint of another schema. */
    static const char bytes[] = "\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00";
    ck_assert_int_eq(tl_change_decode(c, bytes, sizeof bytes - 1, &out), TL_EUNKNOWNSCHEMA);
    tl_codec_free(c);
}
END_TEST

Suite *tl_change_suite(void) {
    Suite *s = suite_create("change");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, change_roundtrip_every_field);
    tcase_add_test(tc, change_decode_refuses_an_event_record);
    suite_add_tcase(s, tc);
    return s;
}
