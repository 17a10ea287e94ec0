/* test_auth.c -- engine/auth.c: key format, hashing, and the role and scope
 * decisions, table-driven.  No database: verification with a store is
 * covered by the rest integration suite. */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "error.h"
#include "suites.h"

static const char good_id[] = "0123456789ab";
static const char good_secret[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

START_TEST(auth_parses_well_formed_token) {
    char tok[TL_AUTH_TOKEN_LEN + 1], id[TL_AUTH_KEY_ID_LEN + 1], sec[TL_AUTH_SECRET_LEN + 1];
    snprintf(tok, sizeof tok, "tl_%s_%s", good_id, good_secret);
    ck_assert_int_eq(tl_auth_parse_token(tok, strlen(tok), id, sec), TL_OK);
    ck_assert_str_eq(id, good_id);
    ck_assert_str_eq(sec, good_secret);
}
END_TEST

START_TEST(auth_refuses_malformed_tokens) {
    static const char *const bad[] = {
        "",
        "tl_",
        "tl_0123456789ab_",
        "xx_0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "tl-0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "tl_0123456789ab-00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "tl_0123456789AB_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "tl_0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg",
        "tl_0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0",
        "tl_0123456789a_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0",
    };
    char id[TL_AUTH_KEY_ID_LEN + 1], sec[TL_AUTH_SECRET_LEN + 1];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(tl_auth_parse_token(bad[i], strlen(bad[i]), id, sec) == TL_EINVAL,
                      "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(auth_hash_is_sha256) {
    unsigned char d[32];
    tl_auth_hash("abc", 3, d);
    static const unsigned char want[4] = {0xba, 0x78, 0x16, 0xbf};
    ck_assert_mem_eq(d, want, 4);
    ck_assert_uint_eq(d[31], 0xad);
}
END_TEST

START_TEST(auth_generated_keys_parse_and_differ) {
    char id1[TL_AUTH_KEY_ID_LEN + 1], s1[TL_AUTH_SECRET_LEN + 1];
    char id2[TL_AUTH_KEY_ID_LEN + 1], s2[TL_AUTH_SECRET_LEN + 1];
    ck_assert_int_eq(tl_auth_generate(id1, s1), TL_OK);
    ck_assert_int_eq(tl_auth_generate(id2, s2), TL_OK);
    ck_assert_str_ne(s1, s2);
    ck_assert_str_ne(id1, id2);
    char tok[TL_AUTH_TOKEN_LEN + 1], id[TL_AUTH_KEY_ID_LEN + 1], sec[TL_AUTH_SECRET_LEN + 1];
    snprintf(tok, sizeof tok, "tl_%s_%s", id1, s1);
    ck_assert_int_eq(tl_auth_parse_token(tok, strlen(tok), id, sec), TL_OK);
    ck_assert_str_eq(sec, s1);
}
END_TEST

START_TEST(auth_role_names_round_trip) {
    for (int r = 0; r < TL_ROLE__COUNT; r++) {
        tl_auth_role_t back;
        ck_assert_int_eq(tl_auth_role_from_name(tl_auth_role_name((tl_auth_role_t)r), &back), TL_OK);
        ck_assert_int_eq(back, r);
    }
    tl_auth_role_t x;
    ck_assert_int_eq(tl_auth_role_from_name("root", &x), TL_ENOTFOUND);
}
END_TEST

/* The whole decision table: every role against every operation. */
START_TEST(auth_allow_table) {
    static const struct { tl_auth_role_t role; tl_auth_op_t op; int allowed; } rows[] = {
        {TL_ROLE_CONNECTOR, TL_OP_INGEST, 1}, {TL_ROLE_CONNECTOR, TL_OP_READ, 0},
        {TL_ROLE_CONNECTOR, TL_OP_WRITE, 0},  {TL_ROLE_CONNECTOR, TL_OP_STREAM, 0},
        {TL_ROLE_AGENT, TL_OP_INGEST, 0},     {TL_ROLE_AGENT, TL_OP_READ, 1},
        {TL_ROLE_AGENT, TL_OP_WRITE, 1},      {TL_ROLE_AGENT, TL_OP_STREAM, 1},
        {TL_ROLE_ADMIN, TL_OP_INGEST, 1},     {TL_ROLE_ADMIN, TL_OP_READ, 1},
        {TL_ROLE_ADMIN, TL_OP_WRITE, 1},      {TL_ROLE_ADMIN, TL_OP_STREAM, 1},
        {TL_ROLE_AUDITOR, TL_OP_INGEST, 0},   {TL_ROLE_AUDITOR, TL_OP_READ, 1},
        {TL_ROLE_AUDITOR, TL_OP_WRITE, 0},    {TL_ROLE_AUDITOR, TL_OP_STREAM, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        tl_auth_key_t key = {.role = rows[i].role, .platforms = 1u << TL_PLATFORM_WEB};
        tl_problem_t pb = {0};
        int got = tl_auth_allow(&key, rows[i].op, TL_PLATFORM_WEB, &pb);
        ck_assert_msg(got == rows[i].allowed, "%s op %d: got %d", tl_auth_role_name(rows[i].role),
                      (int)rows[i].op, got);
        if (!got) ck_assert_int_eq(pb.status, 403);
    }
}
END_TEST

START_TEST(auth_connector_ingests_only_its_platforms) {
    tl_auth_key_t key = {.role = TL_ROLE_CONNECTOR,
                         .platforms = (1u << TL_PLATFORM_WEB) | (1u << TL_PLATFORM_API)};
    tl_problem_t pb = {0};
    ck_assert_int_eq(tl_auth_allow(&key, TL_OP_INGEST, TL_PLATFORM_WEB, &pb), 1);
    ck_assert_int_eq(tl_auth_allow(&key, TL_OP_INGEST, TL_PLATFORM_API, &pb), 1);
    ck_assert_int_eq(tl_auth_allow(&key, TL_OP_INGEST, TL_PLATFORM_PHONE, &pb), 0);
    ck_assert_int_eq(pb.status, 403);
    ck_assert_str_eq(pb.field, "platform");
}
END_TEST

START_TEST(auth_scope_table) {
    static const struct {
        tl_auth_role_t role;
        const char *agent, *team;       /* the key's */
        const char *assignee, *cteam;   /* the conversation's */
        int sees;
    } rows[] = {
        {TL_ROLE_ADMIN, "", "", NULL, NULL, 1},
        {TL_ROLE_AUDITOR, "", "", "bob", "red", 1},
        {TL_ROLE_CONNECTOR, "", "", NULL, NULL, 0},
        {TL_ROLE_AGENT, "alice", "blue", "alice", NULL, 1},
        {TL_ROLE_AGENT, "alice", "blue", NULL, "blue", 1},
        {TL_ROLE_AGENT, "alice", "blue", "bob", "red", 0},
        {TL_ROLE_AGENT, "alice", "blue", NULL, NULL, 0},
        {TL_ROLE_AGENT, "alice", "", NULL, "", 0},          /* no team never matches "" */
        {TL_ROLE_AGENT, "alice", "", "alice", "red", 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        tl_auth_key_t key = {.role = rows[i].role};
        snprintf(key.agent_id, sizeof key.agent_id, "%s", rows[i].agent);
        snprintf(key.team, sizeof key.team, "%s", rows[i].team);
        ck_assert_msg(tl_auth_sees(&key, rows[i].assignee, rows[i].cteam) == rows[i].sees, "row %zu", i);
    }
}
END_TEST

static tl_auth_t *auth_with(const char *mode, tl_config_t *cfg) {
    ck_assert_int_eq(tl_config_init(cfg), TL_OK);
    cfg->auth = mode;
    tl_auth_t *a = NULL;
    ck_assert_int_eq(tl_auth_new(cfg, &a), TL_OK);
    return a;
}

START_TEST(auth_verify_refuses_missing_and_malformed_headers) {
    tl_config_t cfg;
    tl_auth_t *a = auth_with("required", &cfg);
    static const char *const headers[] = {
        NULL, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer tl_nothex_x",
    };
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
        tl_auth_key_t key;
        tl_problem_t pb = {0};
        int st = tl_auth_verify(a, NULL, headers[i], headers[i] ? strlen(headers[i]) : 0, NULL, &key, &pb);
        ck_assert_msg(st == 401, "header %zu: %d", i, st);
        ck_assert_str_eq(pb.field, "Authorization");
    }
    /* Well formed, but no key store to ask: 503, never a pass. */
    char h[128];
    snprintf(h, sizeof h, "Bearer tl_%s_%s", good_id, good_secret);
    tl_auth_key_t key;
    tl_problem_t pb = {0};
    ck_assert_int_eq(tl_auth_verify(a, NULL, h, strlen(h), NULL, &key, &pb), 503);
    ck_assert_int_gt(pb.retry_after, 0);
    tl_auth_free(a);
}
END_TEST

START_TEST(auth_off_makes_an_admin_of_the_named_tenant) {
    tl_config_t cfg;
    tl_auth_t *a = auth_with("off", &cfg);
    ck_assert_int_eq(tl_auth_is_off(a), 1);
    tl_auth_key_t key;
    tl_problem_t pb = {0};
    ck_assert_int_eq(tl_auth_verify(a, NULL, NULL, 0, "acme", &key, &pb), 0);
    ck_assert_int_eq(key.role, TL_ROLE_ADMIN);
    ck_assert_str_eq(key.tenant, "acme");
    ck_assert_int_eq(tl_auth_verify(a, NULL, NULL, 0, NULL, &key, &pb), 0);
    ck_assert_str_eq(key.tenant, "");
    tl_auth_free(a);
}
END_TEST

START_TEST(auth_mode_must_be_known) {
    tl_config_t cfg;
    ck_assert_int_eq(tl_config_init(&cfg), TL_OK);
    cfg.auth = "maybe";
    tl_auth_t *a = NULL;
    ck_assert_int_eq(tl_auth_new(&cfg, &a), TL_ECONFIG);
    ck_assert_ptr_null(a);
}
END_TEST

Suite *tl_auth_suite(void) {
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, auth_parses_well_formed_token);
    tcase_add_test(tc, auth_refuses_malformed_tokens);
    tcase_add_test(tc, auth_hash_is_sha256);
    tcase_add_test(tc, auth_generated_keys_parse_and_differ);
    tcase_add_test(tc, auth_role_names_round_trip);
    tcase_add_test(tc, auth_allow_table);
    tcase_add_test(tc, auth_connector_ingests_only_its_platforms);
    tcase_add_test(tc, auth_scope_table);
    tcase_add_test(tc, auth_verify_refuses_missing_and_malformed_headers);
    tcase_add_test(tc, auth_off_makes_an_admin_of_the_named_tenant);
    tcase_add_test(tc, auth_mode_must_be_known);
    suite_add_tcase(s, tc);
    return s;
}
