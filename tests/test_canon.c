/*
 * test_canon.c -- Parsing Canonical Form and CRC-64-AVRO (engine/canon.c).
 *
 * The spec_cases table is share/test/data/schema-tests.txt of Apache Avro
 * (Apache License 2.0), cases 000-033, whose fingerprints the Java
 * implementation cross-checks with a direct implementation of the Rabin
 * fingerprint.  The more_cases table holds schemas of our own (nested
 * namespaces, references, escapes, attributes to strip); their expected
 * forms and fingerprints were computed with fastavro 1.13
 * (fastavro.schema.to_parsing_canonical_form and fingerprint).
 */
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include <check.h>

#include "canon.h"
#include "error.h"
#include "schemas.h"
#include "suites.h"

typedef struct spec_case {
    const char *input;
    const char *canonical;
    uint64_t fingerprint;
    int has_fingerprint;
} spec_case_t;

static const spec_case_t spec_cases[] = {
    /* 000 */ { "\"null\"",
               "\"null\"",
               UINT64_C(0x63dd24e7cc258f8a), 1 },
    /* 001 */ { "{\"type\":\"null\"}",
               "\"null\"",
               0, 0 },
    /* 002 */ { "\"boolean\"",
               "\"boolean\"",
               UINT64_C(0x9f42fc78a4d4f764), 1 },
    /* 003 */ { "{\"type\":\"boolean\"}",
               "\"boolean\"",
               0, 0 },
    /* 004 */ { "\"int\"",
               "\"int\"",
               UINT64_C(0x7275d51a3f395c8f), 1 },
    /* 005 */ { "{\"type\":\"int\"}",
               "\"int\"",
               0, 0 },
    /* 006 */ { "\"long\"",
               "\"long\"",
               UINT64_C(0xd054e14493f41db7), 1 },
    /* 007 */ { "{\"type\":\"long\"}",
               "\"long\"",
               0, 0 },
    /* 008 */ { "\"float\"",
               "\"float\"",
               UINT64_C(0x4d7c02cb3ea8d790), 1 },
    /* 009 */ { "{\"type\":\"float\"}",
               "\"float\"",
               0, 0 },
    /* 010 */ { "\"double\"",
               "\"double\"",
               UINT64_C(0x8e7535c032ab957e), 1 },
    /* 011 */ { "{\"type\":\"double\"}",
               "\"double\"",
               0, 0 },
    /* 012 */ { "\"bytes\"",
               "\"bytes\"",
               UINT64_C(0x4fc016dac3201965), 1 },
    /* 013 */ { "{\"type\":\"bytes\"}",
               "\"bytes\"",
               0, 0 },
    /* 014 */ { "\"string\"",
               "\"string\"",
               UINT64_C(0x8f014872634503c7), 1 },
    /* 015 */ { "{\"type\":\"string\"}",
               "\"string\"",
               0, 0 },
    /* 016 */ { "[  ]",
               "[]",
               UINT64_C(0xeec6e173d23fb9d1), 1 },
    /* 017 */ { "[ \"int\"  ]",
               "[\"int\"]",
               UINT64_C(0xb763638a48b2fb03), 1 },
    /* 018 */ { "[ \"int\" , {\"type\":\"boolean\"} ]",
               "[\"int\",\"boolean\"]",
               UINT64_C(0x4ad63578080c1602), 1 },
    /* 019 */ { "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\"}",
               "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
               UINT64_C(0xbd0c50c84319be7e), 1 },
    /* 020 */ { "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
               "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}",
               UINT64_C(0x521d1a6b830ec4ab), 1 },
    /* 021 */ { "{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\", \"namespace\":\"x.y\"}",
               "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}",
               UINT64_C(0xbfefe5be5021e2b2), 1 },
    /* 022 */ { "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful info\"}",
               "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
               UINT64_C(0xbd0c50c84319be7e), 1 },
    /* 023 */ { "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"aliases\":[\"foo\",\"bar\"]}",
               "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
               UINT64_C(0xbd0c50c84319be7e), 1 },
    /* 024 */ { "{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"foo\", \"aliases\":[\"foo\",\"bar\"]}",
               "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
               UINT64_C(0xbd0c50c84319be7e), 1 },
    /* 025 */ { "{\"fields\":[{\"type\":{\"type\":\"boolean\"}, \"name\":\"f1\"}], \"type\":\"record\", \"name\":\"foo\"}",
               "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
               UINT64_C(0x6cd8eaf1c968a33b), 1 },
    /* 026 */ { "{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\", \"default\":true},\n            {\"order\":\"descending\",\"name\":\"f2\",\"doc\":\"Hello\",\"type\":\"int\"}],\n  \"type\":\"record\", \"name\":\"foo\"\n}",
               "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"},{\"name\":\"f2\",\"type\":\"int\"}]}",
               UINT64_C(0xbc8d05bd57f4934a), 1 },
    /* 027 */ { "{\"type\":\"enum\", \"name\":\"foo\", \"symbols\":[\"A1\"]}",
               "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A1\"]}",
               UINT64_C(0xa7fc039e15aa3169), 1 },
    /* 028 */ { "{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"foo bar\", \"symbols\":[\"A1\", \"A2\"]}",
               "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}",
               UINT64_C(0xc2433ae5f4999d8b), 1 },
    /* 029 */ { "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
               "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
               UINT64_C(0x18602ec3ed31a504), 1 },
    /* 030 */ { "{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"doc\":\"foo bar\", \"size\":32}",
               "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}",
               UINT64_C(0xd579d47693a6171e), 1 },
    /* 031 */ { "{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
               "{\"type\":\"array\",\"items\":\"null\"}",
               UINT64_C(0xf7d13f2f68170a6d), 1 },
    /* 032 */ { "{ \"values\":\"string\", \"type\":\"map\"}",
               "{\"type\":\"map\",\"values\":\"string\"}",
               UINT64_C(0x86ce965d92864572), 1 },
    /* 033 */ { "  {\"name\":\"PigValue\",\"type\":\"record\",\n   \"fields\":[{\"name\":\"value\", \"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
               "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\",\"type\":[\"null\",\"int\",\"long\",\"PigValue\"]}]}",
               UINT64_C(0xe795dc6656b7e95b), 1 },
};

typedef struct more_case {
    const char *input;
    const char *canonical;
    uint64_t fingerprint;
} more_case_t;

static const more_case_t more_cases[] = {
    { "{\"type\":\"record\",\"name\":\"Outer\",\"namespace\":\"a.b\",\"doc\":\"d\",\"fields\":[\n   {\"name\":\"in\",\"type\":{\"type\":\"record\",\"name\":\"Inner\",\"fields\":[{\"name\":\"x\",\"type\":\"int\",\"default\":1}]}},\n   {\"name\":\"again\",\"type\":\"Inner\"},\n   {\"name\":\"full\",\"type\":\"a.b.Inner\"},\n   {\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"namespace\":\"c\",\"symbols\":[\"X\",\"Y\"],\"default\":\"X\"}},\n   {\"name\":\"e2\",\"type\":\"c.E\"},\n   {\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":4}},\n   {\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"F\"}},\n   {\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"Inner\"]}}]}",
      "{\"name\":\"a.b.Outer\",\"type\":\"record\",\"fields\":[{\"name\":\"in\",\"type\":{\"name\":\"a.b.Inner\",\"type\":\"record\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}},{\"name\":\"again\",\"type\":\"a.b.Inner\"},{\"name\":\"full\",\"type\":\"a.b.Inner\"},{\"name\":\"e\",\"type\":{\"name\":\"c.E\",\"type\":\"enum\",\"symbols\":[\"X\",\"Y\"]}},{\"name\":\"e2\",\"type\":\"c.E\"},{\"name\":\"f\",\"type\":{\"name\":\"a.b.F\",\"type\":\"fixed\",\"size\":4}},{\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"a.b.F\"}},{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"a.b.Inner\"]}}]}",
      UINT64_C(0x08b453a92e91c3c3) },
    { "{\"type\":\"record\",\"name\":\"x.y.R\",\"namespace\":\"ignored\",\"fields\":[\n   {\"name\":\"s\",\"type\":{\"type\":\"record\",\"name\":\"S\",\"fields\":[]}},\n   {\"name\":\"t\",\"type\":{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"\",\"fields\":[{\"name\":\"back\",\"type\":\"x.y.S\"}]}}]}",
      "{\"name\":\"x.y.R\",\"type\":\"record\",\"fields\":[{\"name\":\"s\",\"type\":{\"name\":\"x.y.S\",\"type\":\"record\",\"fields\":[]}},{\"name\":\"t\",\"type\":{\"name\":\"T\",\"type\":\"record\",\"fields\":[{\"name\":\"back\",\"type\":\"x.y.S\"}]}}]}",
      UINT64_C(0xc0045d0682fc30d0) },
    { "{\"type\":\"record\",\"name\":\"\\u0066oo\",\"fields\":[\n   {\"name\":\"b\\u0061r\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"},\"pii\":true},\n   {\"name\":\"u\",\"type\":{\"type\":\"string\",\"logicalType\":\"uuid\"}},\n   {\"name\":\"en\",\"type\":{\"type\":\"enum\",\"name\":\"Sy\",\"symbols\":[\"\\u0041\",\"B\"]}}]}",
      "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"bar\",\"type\":\"long\"},{\"name\":\"u\",\"type\":\"string\"},{\"name\":\"en\",\"type\":{\"name\":\"Sy\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}}]}",
      UINT64_C(0x5aae15568929930e) },
    { "{\"type\":\"record\",\"name\":\"Node\",\"namespace\":\"t\",\"fields\":[{\"name\":\"next\",\"type\":[\"null\",\"Node\"]},{\"name\":\"kids\",\"type\":{\"type\":\"array\",\"items\":\"t.Node\"}}]}",
      "{\"name\":\"t.Node\",\"type\":\"record\",\"fields\":[{\"name\":\"next\",\"type\":[\"null\",\"t.Node\"]},{\"name\":\"kids\",\"type\":{\"type\":\"array\",\"items\":\"t.Node\"}}]}",
      UINT64_C(0x26d3f4bc047b7ef9) },
    { "{\"type\":\"error\",\"name\":\"Oops\",\"fields\":[{\"name\":\"msg\",\"type\":\"string\"}]}",
      "{\"name\":\"Oops\",\"type\":\"record\",\"fields\":[{\"name\":\"msg\",\"type\":\"string\"}]}",
      UINT64_C(0x89ba26aa83b344f9) },
    { "[\"null\",{\"type\":\"string\"},{\"type\":\"map\",\"values\":{\"type\":\"bytes\"}},{\"type\":\"fixed\",\"name\":\"md5\",\"namespace\":\"h\",\"size\":16,\"aliases\":[\"x\"]}]",
      "[\"null\",\"string\",{\"type\":\"map\",\"values\":\"bytes\"},{\"name\":\"h.md5\",\"type\":\"fixed\",\"size\":16}]",
      UINT64_C(0x64cfdd0d0c655e9d) },
};

/* Canonical form of s, or fails the test. */
static const char *form(tl_buf_t *b, const char *s) {
    tl_buf_reset(b);
    int rc = tl_canon_form(s, b);
    ck_assert_msg(rc == TL_OK, "%s: %s", s, tl_err_name(rc));
    return b->data;
}

START_TEST(canon_matches_avro_spec_test_cases) {
    tl_buf_t b;
    tl_buf_init(&b);
    const spec_case_t *t = &spec_cases[_i];
    ck_assert_str_eq(form(&b, t->input), t->canonical);
    if (t->has_fingerprint) {
        uint64_t fp = 0;
        ck_assert_int_eq(tl_canon_fingerprint(t->input, &fp), TL_OK);
        ck_assert_msg(fp == t->fingerprint, "case %d: 0x%016" PRIx64 " != 0x%016" PRIx64,
                      _i, fp, t->fingerprint);
    }
    tl_buf_close(&b);
}
END_TEST

START_TEST(canon_primitive_fingerprints_match_published_values) {
    static const struct { const char *schema; uint64_t fp; } v[] = {
        { "\"null\"", UINT64_C(0x63dd24e7cc258f8a) },
        { "\"boolean\"", UINT64_C(0x9f42fc78a4d4f764) },
        { "\"int\"", UINT64_C(0x7275d51a3f395c8f) },
        { "\"long\"", UINT64_C(0xd054e14493f41db7) },
        { "\"float\"", UINT64_C(0x4d7c02cb3ea8d790) },
        { "\"double\"", UINT64_C(0x8e7535c032ab957e) },
        { "\"bytes\"", UINT64_C(0x4fc016dac3201965) },
        { "\"string\"", UINT64_C(0x8f014872634503c7) },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint64_t fp = 0;
        ck_assert_int_eq(tl_canon_fingerprint(v[i].schema, &fp), TL_OK);
        ck_assert_msg(fp == v[i].fp, "%s", v[i].schema);
        /* The bare primitive is its own canonical form. */
        ck_assert(tl_canon_crc64(v[i].schema, strlen(v[i].schema)) == v[i].fp);
    }
}
END_TEST

START_TEST(canon_crc64_of_nothing_is_empty_constant) {
    ck_assert(tl_canon_crc64(NULL, 0) == TL_CANON_CRC64_EMPTY);
    ck_assert(tl_canon_crc64("", 0) == UINT64_C(0xc15d213aa4d7a795));
}
END_TEST

START_TEST(canon_qualifies_names_strips_attributes_and_decodes_escapes) {
    tl_buf_t b;
    tl_buf_init(&b);
    const more_case_t *t = &more_cases[_i];
    ck_assert_str_eq(form(&b, t->input), t->canonical);
    uint64_t fp = 0;
    ck_assert_int_eq(tl_canon_fingerprint(t->input, &fp), TL_OK);
    ck_assert_msg(fp == t->fingerprint, "case %d: 0x%016" PRIx64, _i, fp);
    tl_buf_close(&b);
}
END_TEST

START_TEST(canon_ignores_pii_doc_default_and_layout) {
    /* What the PII marking relies on: "pii" never changes the fingerprint. */
    const char *plain = "{\"type\":\"record\",\"name\":\"P\",\"namespace\":\"n\",\"fields\":["
                        "{\"name\":\"phone\",\"type\":\"string\"}]}";
    const char *marked = "{ \"namespace\" : \"n\", \"fields\" : [ { \"pii\" : true, "
                         "\"type\" : \"string\", \"doc\" : \"\\u624b\\u673a\", \"name\" : "
                         "\"phone\", \"default\" : \"\" } ], \"name\" : \"P\", "
                         "\"type\" : \"record\", \"aliases\": [\"Q\"] }";
    uint64_t a = 0, b = 1;
    ck_assert_int_eq(tl_canon_fingerprint(plain, &a), TL_OK);
    ck_assert_int_eq(tl_canon_fingerprint(marked, &b), TL_OK);
    ck_assert(a == b);
}
END_TEST

START_TEST(canon_event_schema_fingerprint_matches_fastavro) {
    /* fastavro 1.13 on schemas/event.avsc and schemas/change.avsc.  When a
     * schema changes on purpose, this number changes with it; the old
     * schema must then be kept so its records still resolve. */
    uint64_t fp = 0;
    ck_assert_int_eq(tl_canon_fingerprint(tl_schema_event, &fp), TL_OK);
    ck_assert_msg(fp == UINT64_C(0xd69a75ccaac609eb), "event.avsc: 0x%016" PRIx64, fp);
    ck_assert_int_eq(tl_canon_fingerprint(tl_schema_change, &fp), TL_OK);
    ck_assert_msg(fp == UINT64_C(0xe8e9551cfef7c770), "change.avsc: 0x%016" PRIx64, fp);
    /* Version 1 of Change, kept in schemas/history, keeps its fingerprint. */
    ck_assert_int_eq(tl_canon_fingerprint(tl_schema_change_v1, &fp), TL_OK);
    ck_assert_msg(fp == UINT64_C(0x2828d7d937b0e952), "history/change.v1.avsc: 0x%016" PRIx64, fp);
}
END_TEST

START_TEST(canon_appends_to_the_buffer) {
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_buf_puts(&b, "x="), TL_OK);
    ck_assert_int_eq(tl_canon_form("{\"type\":\"array\",\"items\":{\"type\":\"int\"}}", &b), TL_OK);
    ck_assert_str_eq(b.data, "x={\"type\":\"array\",\"items\":\"int\"}");
    tl_buf_close(&b);
}
END_TEST

START_TEST(canon_rejects_invalid_json_and_invalid_schemas) {
    static const struct { const char *schema; int err; } bad[] = {
        { "", TL_EJSON },
        { "{\"type\":", TL_EJSON },
        { "{\"type\":\"record\",\"name\":\"a\",\"name\":\"b\",\"fields\":[]}", TL_EJSON },
        { "\"nosuchtype\"", TL_ESCHEMA },
        { "42", TL_ESCHEMA },
        { "{}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"fields\":[]}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"R\"}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\"}]}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"1a\",\"type\":\"int\"}]}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"bad-name\",\"fields\":[]}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a..b\",\"fields\":[]}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"S\"}]}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":"
          "{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}}]}", TL_ESCHEMA },
        { "{\"type\":\"record\",\"name\":\"int\",\"fields\":[]}", TL_ESCHEMA },
        { "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"A\"]}", TL_ESCHEMA },
        { "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A-1\"]}", TL_ESCHEMA },
        { "{\"type\":\"enum\",\"name\":\"E\"}", TL_ESCHEMA },
        { "{\"type\":\"fixed\",\"name\":\"F\",\"size\":-1}", TL_ESCHEMA },
        { "{\"type\":\"fixed\",\"name\":\"F\",\"size\":1.5}", TL_ESCHEMA },
        { "{\"type\":\"fixed\",\"name\":\"F\"}", TL_ESCHEMA },
        { "{\"type\":\"array\"}", TL_ESCHEMA },
        { "{\"type\":\"map\",\"values\":\"nope\"}", TL_ESCHEMA },
        { "[\"int\",[\"null\"]]", TL_ESCHEMA },
    };
    tl_buf_t b;
    tl_buf_init(&b);
    ck_assert_int_eq(tl_buf_puts(&b, "kept"), TL_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tl_canon_form(bad[i].schema, &b);
        ck_assert_msg(rc == bad[i].err, "%s: %s", bad[i].schema, tl_err_name(rc));
        ck_assert_str_eq(b.data, "kept");
        uint64_t fp = 7;
        ck_assert_int_eq(tl_canon_fingerprint(bad[i].schema, &fp), bad[i].err);
        ck_assert(fp == 7);
    }
    tl_buf_close(&b);
}
END_TEST

Suite *tl_canon_suite(void) {
    Suite *s = suite_create("canon");
    TCase *tc = tcase_create("canon");
    tcase_add_loop_test(tc, canon_matches_avro_spec_test_cases, 0,
                        (int)(sizeof spec_cases / sizeof spec_cases[0]));
    tcase_add_test(tc, canon_primitive_fingerprints_match_published_values);
    tcase_add_test(tc, canon_crc64_of_nothing_is_empty_constant);
    tcase_add_loop_test(tc, canon_qualifies_names_strips_attributes_and_decodes_escapes, 0,
                        (int)(sizeof more_cases / sizeof more_cases[0]));
    tcase_add_test(tc, canon_ignores_pii_doc_default_and_layout);
    tcase_add_test(tc, canon_event_schema_fingerprint_matches_fastavro);
    tcase_add_test(tc, canon_appends_to_the_buffer);
    tcase_add_test(tc, canon_rejects_invalid_json_and_invalid_schemas);
    suite_add_tcase(s, tc);
    return s;
}
