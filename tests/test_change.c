/* test_change.c -- engine/change.c */
#include <string.h>

#include "change.h"
#include "error.h"
#include "schemas.h"
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

static int str_is(tl_str_t s, const char *want) {
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

START_TEST(change_roundtrip_fold_changes) {
    int err;
    tl_codec_t *c = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(c);
    char big[600];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    tl_change_candidate_t cands[2] = {
        {TL_STR("A-1"), TL_STR("web"), TL_STR("e-1"), 1000},
        {{big, strlen(big)}, TL_STR("wechat"), TL_STR("e-2"), 2000},
    };
    tl_change_fold_t fc[3] = {
        {.kind = TL_STR("field_set"), .field = TL_STR("name"), .value = TL_STR("Li Lei"),
         .platform = TL_STR("app"), .event_id = TL_STR("e-3"), .effective_ts = 3000, .version = 7},
        {.kind = TL_STR("conflict_opened"), .field = TL_STR("order_no"), .value = TL_STR("B-2"),
         .conflict_id = TL_STR("c0f1"), .is_key = 1, .candidates = cands, .ncandidates = 2},
        {.kind = TL_STR("linked"), .customer = TL_STR("cust-b")},
    };
    tl_change_t in = {
        .event_id = TL_STR("e-9"), .tenant_id = TL_STR("acme"), .customer_id = TL_STR("cust-a"),
        .customer_version = 3, .effective_ts = 5, .event = TL_STR("x"),
        .ignored = TL_STR("NOT_LINKED"), .fold_changes = fc, .nfold_changes = 3,
    }, out;
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert(str_is(out.ignored, "NOT_LINKED"));
    ck_assert_uint_eq(out.nfold_changes, 3);
    tl_change_fold_t x;
    tl_change_candidate_t cd;
    ck_assert_int_eq(tl_change_fold_get(&out, 0, &x), 0);
    ck_assert(str_is(x.kind, "field_set") && str_is(x.field, "name") && str_is(x.value, "Li Lei"));
    ck_assert(str_is(x.platform, "app") && str_is(x.event_id, "e-3"));
    ck_assert_int_eq(x.effective_ts, 3000);
    ck_assert_int_eq(x.version, 7);
    ck_assert_ptr_null(x.conflict_id.ptr);
    ck_assert_uint_eq(x.ncandidates, 0);
    ck_assert_int_eq(tl_change_fold_get(&out, 1, &x), 0);
    ck_assert(str_is(x.conflict_id, "c0f1") && x.is_key && x.ncandidates == 2);
    ck_assert_int_eq(tl_change_candidate_get(&out, 1, 1, &cd), 0);
    ck_assert(str_is(cd.value, big) && str_is(cd.platform, "wechat") && str_is(cd.event_id, "e-2"));
    ck_assert_int_eq(cd.effective_ts, 2000);
    ck_assert_int_eq(tl_change_candidate_get(&out, 1, 2, &cd), TL_EINVAL);
    ck_assert_int_eq(tl_change_fold_get(&out, 2, &x), 0);
    ck_assert(str_is(x.customer, "cust-b") && !x.field.ptr && !x.value.ptr);
    ck_assert_int_eq(tl_change_fold_get(&out, 3, &x), TL_EINVAL);

    /* The array is emptied by the next encode: a Change without fold changes. */
    in.nfold_changes = 0;
    in.ignored = TL_STR_NULL;
    tl_buf_reset(&b);
    ck_assert_int_eq(tl_change_encode(c, &in, &b), 0);
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert_uint_eq(out.nfold_changes, 0);
    ck_assert_ptr_null(out.ignored.ptr);
    tl_buf_close(&b);
    tl_codec_free(c);
}
END_TEST

/* A record written with version 1 of the schema (schemas/history) decodes
 * with the current reader: no ignored reason, no fold changes. */
START_TEST(change_decodes_a_version_1_record) {
    int err;
    tl_codec_t *v1 = tl_codec_new(tl_schema_change_v1, &err), *c = tl_change_codec_new(&err);
    ck_assert_ptr_nonnull(v1);
    ck_assert_ptr_nonnull(c);
    ck_assert(tl_codec_fingerprint(v1) != tl_codec_fingerprint(c));
    avro_value_t *v = tl_codec_value(v1), f, br;
    static const struct { const char *name, *val; } strs[] = {
        {"event_id", "e-1"}, {"tenant_id", "acme"}, {"customer_id", "cust-1"}};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(avro_value_get_by_name(v, strs[i].name, &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_string(&f, strs[i].val), 0);
    }
    avro_value_get_by_name(v, "source_partition", &f, NULL);
    avro_value_set_int(&f, 2);
    avro_value_get_by_name(v, "source_offset", &f, NULL);
    avro_value_set_long(&f, 77);
    avro_value_get_by_name(v, "customer_version", &f, NULL);
    avro_value_set_long(&f, 4);
    avro_value_get_by_name(v, "conversation_id", &f, NULL);
    avro_value_set_branch(&f, 1, &br);
    avro_value_set_string(&br, "conv-1");
    avro_value_get_by_name(v, "conversation_version", &f, NULL);
    avro_value_set_long(&f, 2);
    avro_value_get_by_name(v, "conversation_opened", &f, NULL);
    avro_value_set_boolean(&f, 0);
    avro_value_get_by_name(v, "effective_ts", &f, NULL);
    avro_value_set_long(&f, 1700000000000LL);
    avro_value_get_by_name(v, "duplicate", &f, NULL);
    avro_value_set_boolean(&f, 0);
    avro_value_get_by_name(v, "event", &f, NULL);
    avro_value_set_bytes(&f, "ev", 2);
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_codec_write(v1, &b), 0);
    tl_change_t out;
    ck_assert_int_eq(tl_change_decode(c, b.data, b.len, &out), 0);
    ck_assert(str_is(out.event_id, "e-1") && str_is(out.conversation_id, "conv-1"));
    ck_assert_int_eq(out.source_offset, 77);
    ck_assert_int_eq(out.effective_ts, 1700000000000LL);
    ck_assert_ptr_null(out.ignored.ptr);
    ck_assert_uint_eq(out.nfold_changes, 0);
    tl_buf_close(&b);
    tl_codec_free(v1);
    tl_codec_free(c);
}
END_TEST

Suite *tl_change_suite(void) {
    Suite *s = suite_create("change");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, change_roundtrip_every_field);
    tcase_add_test(tc, change_decode_refuses_an_event_record);
    tcase_add_test(tc, change_roundtrip_fold_changes);
    tcase_add_test(tc, change_decodes_a_version_1_record);
    suite_add_tcase(s, tc);
    return s;
}
