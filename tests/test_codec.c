/*
 * test_codec.c -- single-object encoding, schema resolution and the event
 * mapping (engine/codec.c).
 *
 * Hostile input gets the most attention: every decode of a damaged record
 * must end in one of the documented errors, never in a crash, a hang or a
 * read past the buffer (run under valgrind or ASan to see the last one).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <jansson.h>

#include "canon.h"
#include "codec.h"
#include "event_cmp.h"
#include "error.h"
#include "event.h"
#include "schemas.h"
#include "suites.h"

/* ---- sample events ---------------------------------------------------- */

static const tl_attachment_t sample_attachments[] = {
    { TL_STR("https://img.example.cn/u/7781/屏幕截图.png"), TL_STR("image/png"), 482113,
      1080, 2340, 1, 1 },
    { TL_STR("https://files.example.cn/invoice.pdf"), TL_STR("application/pdf"), 90210,
      0, 612, 0, 1 },
};
static const tl_str_t sample_added[] = { TL_STR("vip"), TL_STR("物流延迟"), TL_STR("") };
static const tl_str_t sample_removed[] = { TL_STR("新客户") };

static const char chinese_text[] =
    "您好，我在小程序里下的订单（订单号 TL20240518001）三天了还没发货，"
    "客服说今天会处理，请问现在物流到哪里了？如果今天还不能发货，我想申请退款。";

/* An event of the given kind; full = every optional field present and
 * every array non-empty, otherwise optional fields absent and arrays empty. */
static tl_event_t sample_event(tl_event_kind_t kind, int full) {
    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.event_id = TL_STR("01890a5d-ac96-774b-bcce-b302099a8057");
    ev.tenant_id = TL_STR("tenant-hz-01");
    ev.customer_id = TL_STR("c-5f2a9e");
    ev.platform = (tl_platform_t)(kind % TL_PLATFORM__COUNT);
    ev.platform_user_id = TL_STR("oX9a_mini_7781");
    ev.idempotency_key = TL_STR("wechat:msg-20240518-0001");
    ev.occurred_at = 1716019200123;
    ev.received_at = full ? -1 : INT64_MAX;
    ev.trace_id = full ? TL_STR("4bf92f3577b34da6a3ce929d0e0e4736") : TL_STR("");
    ev.kind = kind;
    tl_attachments_t atts = { full ? sample_attachments : NULL, full ? 2 : 0 };
    tl_str_t opt = full ? TL_STR("可选值") : TL_STR_NULL;
    switch (kind) {
    case TL_EV_MESSAGE_RECEIVED:
        ev.u.message.text = TL_STR(chinese_text);
        ev.u.message.attachments = atts;
        ev.u.message.entry_point = full ? TL_STR("product-detail:SKU123") : TL_STR_NULL;
        ev.u.message.device_id = full ? TL_STR("") : TL_STR_NULL;   /* present but empty */
        break;
    case TL_EV_AGENT_REPLIED:
        ev.u.reply.agent_id = TL_STR("agent-42");
        ev.u.reply.conversation_id = opt;
        ev.u.reply.text = TL_STR("已为您加急处理，预计今天18:00前发出。");
        ev.u.reply.attachments = atts;
        ev.u.reply.target_platform = TL_PLATFORM_SYSTEM;
        break;
    case TL_EV_TRANSCRIPT_SEGMENT:
        ev.u.transcript.call_id = TL_STR("call-778");
        ev.u.transcript.start_ms = 0;
        ev.u.transcript.end_ms = 15320;
        ev.u.transcript.speaker = full ? TL_SPEAKER_UNKNOWN : TL_SPEAKER_CUSTOMER;
        ev.u.transcript.text = TL_STR("喂，你好，我想问一下退款的事情。");
        ev.u.transcript.confidence = 0.875f;
        ev.u.transcript.caller_number = full ? TL_STR("+86 138 0013 8000") : TL_STR_NULL;
        break;
    case TL_EV_BEHAVIOR_TRACKED:
        ev.u.behavior.page = TL_STR("pages/order/detail");
        ev.u.behavior.action = TL_STR("tap:contact-service");
        ev.u.behavior.device_id = opt;
        break;
    case TL_EV_FIELD_ASSERTED:
        ev.u.field.field = TL_STR("address");
        ev.u.field.value = TL_STR("浙江省杭州市西湖区文三路 90 号");
        break;
    case TL_EV_IDENTITY_LINKED:
        ev.u.link.linked_customer_id = TL_STR("c-0001");
        ev.u.link.platform = TL_PLATFORM_WECHAT;
        ev.u.link.platform_user_id = TL_STR("oUnion_123");
        ev.u.link.evidence = full ? TL_EVIDENCE_OTHER : TL_EVIDENCE_UNIONID;
        ev.u.link.evidence_value = opt;
        break;
    case TL_EV_IDENTITY_UNLINKED:
        ev.u.unlink.linked_customer_id = TL_STR("c-0001");
        ev.u.unlink.platform = TL_PLATFORM_DOUYIN;
        ev.u.unlink.platform_user_id = TL_STR("dy_99");
        ev.u.unlink.reason = TL_STR("wrong merge");
        break;
    case TL_EV_CONVERSATION_ASSIGNED:
        ev.u.assign.conversation_id = TL_STR("conv-1");
        ev.u.assign.agent_id = opt;
        ev.u.assign.team_id = full ? TL_STR("team-售后") : TL_STR_NULL;
        break;
    case TL_EV_CONVERSATION_TAGGED:
        ev.u.tag.conversation_id = TL_STR("conv-1");
        ev.u.tag.added = (tl_strs_t){ full ? sample_added : NULL, full ? 3 : 0 };
        ev.u.tag.removed = (tl_strs_t){ full ? sample_removed : NULL, full ? 1 : 0 };
        break;
    case TL_EV_CONVERSATION_CLOSED:
        ev.u.close.conversation_id = TL_STR("conv-1");
        ev.u.close.reason = TL_STR("resolved");
        ev.u.close.closed_by = opt;
        break;
    case TL_EV_CONFLICT_RESOLVED:
        ev.u.resolve.conflict_id = TL_STR("cf-9");
        ev.u.resolve.field = TL_STR("phone");
        ev.u.resolve.chosen_value = TL_STR("13800138000");
        ev.u.resolve.agent_id = TL_STR("agent-42");
        break;
    default:
        break;
    }
    return ev;
}

/* ---- comparing -------------------------------------------------------- */

#define STR_EQ(a, b) str_eq((a), (b), #a, __LINE__)

static void str_eq(tl_str_t a, tl_str_t b, const char *what, int line) {
    ck_assert_msg((a.ptr == NULL) == (b.ptr == NULL), "line %d: %s: absent vs present", line, what);
    ck_assert_msg(a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0),
                  "line %d: %s: \"%.*s\" != \"%.*s\"", line, what, (int)a.len,
                  a.ptr ? a.ptr : "", (int)b.len, b.ptr ? b.ptr : "");
}

/* a and b the same event, field by field (tests/event_cmp.c). */
static void event_eq(const tl_event_t *a, const tl_event_t *b) {
    char why[256];
    const char *d = tl_event_diff(a, b, 0, why, sizeof why);
    ck_assert_msg(d == NULL, "events differ: %s", d);
}

/* ---- helpers ---------------------------------------------------------- */

static tl_codec_t *event_codec(void) {
    int err = 0;
    tl_codec_t *c = tl_codec_new_event(&err);
    ck_assert_msg(c != NULL, "tl_codec_new_event: %s", tl_err_name(err));
    return c;
}

static tl_codec_t *codec_for(const char *schema) {
    int err = 0;
    tl_codec_t *c = tl_codec_new(schema, &err);
    ck_assert_msg(c != NULL, "tl_codec_new: %s", tl_err_name(err));
    return c;
}

static char *read_text(const char *name) {
    FILE *f = fopen(tl_test_data(name), "rb");
    ck_assert_msg(f != NULL, "cannot open %s", tl_test_data(name));
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* Frames datum bytes with c's header into out. */
static void frame(const tl_codec_t *c, const void *datum, size_t n, tl_buf_t *out) {
    uint64_t fp = tl_codec_fingerprint(c);
    unsigned char h[10] = { 0xc3, 0x01 };
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)(fp >> (8 * i));
    tl_buf_reset(out);
    ck_assert_int_eq(tl_buf_append(out, h, sizeof h), TL_OK);
    ck_assert_int_eq(tl_buf_append(out, datum, n), TL_OK);
}

/* The errors a damaged record may produce. */
static int is_decode_error(int rc) {
    return rc == TL_ETRUNCATED || rc == TL_ECORRUPT || rc == TL_EBADMAGIC ||
           rc == TL_EUNKNOWNSCHEMA || rc == TL_ETOOBIG;
}

/* A field of a record value by name (test code only; the codec uses
 * cached indexes). */
static avro_value_t field(avro_value_t *rec, const char *name) {
    avro_value_t v;
    ck_assert_msg(avro_value_get_by_name(rec, name, &v, NULL) == 0, "no field %s", name);
    return v;
}

static void set_str(avro_value_t *rec, const char *name, const char *s) {
    avro_value_t v = field(rec, name);
    ck_assert_int_eq(avro_value_set_string(&v, s), 0);
}

static void assert_str(avro_value_t *v, const char *want) {
    const char *s;
    size_t n;
    ck_assert_int_eq(avro_value_get_string(v, &s, &n), 0);
    ck_assert_str_eq(s, want);
    ck_assert_uint_eq(n, strlen(want) + 1);
}

/* event.avsc after edit(root), as text (free()). */
static char *event_schema_variant(void (*edit)(json_t *root)) {
    json_t *root = json_loads(tl_schema_event, 0, NULL);
    ck_assert(root != NULL);
    edit(root);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static json_t *payload_record(json_t *root, const char *name) {
    json_t *fields = json_object_get(root, "fields"), *f;
    size_t i, j;
    json_array_foreach(fields, i, f) {
        if (strcmp(json_string_value(json_object_get(f, "name")), "payload") != 0) continue;
        json_t *branch;
        json_array_foreach(json_object_get(f, "type"), j, branch)
            if (strcmp(json_string_value(json_object_get(branch, "name")), name) == 0) return branch;
    }
    ck_abort_msg("no payload record %s", name);
    return NULL;
}

static json_t *envelope_field(json_t *root, const char *name) {
    json_t *f;
    size_t i;
    json_array_foreach(json_object_get(root, "fields"), i, f)
        if (strcmp(json_string_value(json_object_get(f, "name")), name) == 0) return f;
    ck_abort_msg("no field %s", name);
    return NULL;
}

/* ---- round trips ------------------------------------------------------ */

START_TEST(codec_roundtrip_every_event_kind) {
    tl_codec_t *enc = event_codec(), *dec = event_codec();
    tl_buf_t out;
    tl_buf_init(&out);
    for (int full = 0; full <= 1; full++) {
        for (int k = 0; k < TL_EV__COUNT; k++) {
            tl_event_t ev = sample_event((tl_event_kind_t)k, full), got;
            tl_buf_reset(&out);
            ck_assert_int_eq(tl_codec_encode_event(enc, &ev, &out), TL_OK);
            memset(&got, 0xa5, sizeof got);
            int rc = tl_codec_decode_event(dec, out.data, out.len, &got);
            ck_assert_msg(rc == TL_OK, "%s full=%d: %s %s", tl_event_kind_name(ev.kind), full,
                          tl_err_name(rc), tl_codec_errmsg(dec));
            event_eq(&ev, &got);
        }
    }
    tl_buf_close(&out);
    tl_codec_free(enc);
    tl_codec_free(dec);
}
END_TEST

START_TEST(codec_roundtrip_on_one_codec_reuses_it) {
    /* Encoding and decoding alternately on the same codec, kinds changing
     * every time: the reused value must never carry anything over. */
    tl_codec_t *c = event_codec();
    tl_buf_t out;
    tl_buf_init(&out);
    for (int round = 0; round < 3 * TL_EV__COUNT * 2; round++) {
        tl_event_t ev = sample_event((tl_event_kind_t)(round % TL_EV__COUNT), round % 3 != 0), got;
        tl_buf_reset(&out);
        ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
        ck_assert_int_eq(tl_codec_decode_event(c, out.data, out.len, &got), TL_OK);
        event_eq(&ev, &got);
    }
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_reuses_arrays_as_they_grow_and_shrink) {
    /* The codec keeps array elements from one record to the next; counts
     * going up and down (and attachments that are named-type references,
     * as in AgentReplied) must still give exactly the record's items. */
    static const size_t counts[] = { 1, 3, 2, 0, 3, 1, 1, 0, 2 };
    tl_attachment_t many[3];
    tl_str_t tags[3] = { TL_STR("甲"), TL_STR("乙乙"), TL_STR("") };
    for (int i = 0; i < 3; i++) {
        many[i] = sample_attachments[i % 2];
        many[i].bytes = 1000 * (i + 1);
        many[i].has_width = i != 1;
    }
    tl_codec_t *enc = event_codec(), *dec = event_codec();
    tl_buf_t out;
    tl_buf_init(&out);
    for (size_t round = 0; round < 3 * sizeof counts / sizeof counts[0]; round++) {
        size_t n = counts[round % (sizeof counts / sizeof counts[0])];
        static const tl_event_kind_t kinds[] = { TL_EV_MESSAGE_RECEIVED, TL_EV_AGENT_REPLIED,
                                                 TL_EV_CONVERSATION_TAGGED };
        tl_event_t ev = sample_event(kinds[round % 3], 1), got;
        tl_attachments_t atts = { many, n };
        if (ev.kind == TL_EV_MESSAGE_RECEIVED) ev.u.message.attachments = atts;
        if (ev.kind == TL_EV_AGENT_REPLIED) ev.u.reply.attachments = atts;
        if (ev.kind == TL_EV_CONVERSATION_TAGGED) {
            ev.u.tag.added = (tl_strs_t){ tags, n };
            ev.u.tag.removed = (tl_strs_t){ tags + (3 - n), n };
        }
        tl_buf_reset(&out);
        ck_assert_int_eq(tl_codec_encode_event(enc, &ev, &out), TL_OK);
        ck_assert_int_eq(tl_codec_decode_event(dec, out.data, out.len, &got), TL_OK);
        event_eq(&ev, &got);
    }
    tl_buf_close(&out);
    tl_codec_free(enc);
    tl_codec_free(dec);
}
END_TEST

/* Counts what avro-c allocates and frees, through its allocator hook. */
typedef struct avro_count {
    struct avro_allocator_state prev;
    long allocs, frees;
} avro_count_t;

static void *avro_counting(void *ud, void *ptr, size_t osize, size_t nsize) {
    avro_count_t *n = ud;
    if (nsize == 0) {
        if (ptr) n->frees++;
    } else if (!ptr || nsize > osize) {
        n->allocs++;
    }
    return n->prev.alloc(n->prev.user_data, ptr, osize, nsize);
}

START_TEST(codec_direct_decode_leaves_the_encoders_value_alone) {
    /* The encoder keeps its value's array elements and string buffers for
     * the next record.  The direct decoder does not use the value, so a
     * decode -- even the first, which sizes the arena, or one that grows
     * it -- must not throw them away: encoding the same event again then
     * allocates nothing in avro-c, and frees nothing.  (Resetting the
     * value when the arena grew freed every attachment's strings, and the
     * next encode allocated them again; under the fuzzers, LeakSanitizer
     * cannot see avro-c's unaligned record fields and reported the new
     * buffers as leaked.) */
    static char url[3000];
    memcpy(url, "https://", 8);
    memset(url + 8, 'u', sizeof url - 9);
    tl_attachment_t big = sample_attachments[0];
    big.url = (tl_str_t){ url, strlen(url) };
    tl_codec_t *c = event_codec();
    tl_buf_t out;
    tl_buf_init(&out);
    avro_count_t n = { AVRO_CURRENT_ALLOCATOR, 0, 0 };
    for (int round = 0; round < 4; round++) {
        tl_event_t ev = sample_event(round % 2 ? TL_EV_AGENT_REPLIED : TL_EV_MESSAGE_RECEIVED, 1);
        tl_event_t got;
        if (round >= 2) {
            /* A longer datum: the decode grows the arena. */
            tl_attachments_t one = { &big, 1 };
            if (ev.kind == TL_EV_MESSAGE_RECEIVED) ev.u.message.attachments = one;
            else ev.u.reply.attachments = one;
        }
        for (int again = 0; again < 2; again++) {
            tl_buf_reset(&out);
            n.allocs = n.frees = 0;
            avro_set_allocator(avro_counting, &n);
            int rc = tl_codec_encode_event(c, &ev, &out);
            avro_set_allocator(n.prev.alloc, n.prev.user_data);
            ck_assert_int_eq(rc, TL_OK);
            if (again)
                ck_assert_msg(n.allocs == 0 && n.frees == 0,
                              "round %d: encoding the same event again allocated %ld and freed %ld",
                              round, n.allocs, n.frees);
            ck_assert_int_eq(tl_codec_decode_event(c, out.data, out.len, &got), TL_OK);
            event_eq(&ev, &got);
        }
    }
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_encoding_starts_with_marker_and_schema_fingerprint) {
    tl_codec_t *c = event_codec();
    uint64_t fp = 0;
    ck_assert_int_eq(tl_canon_fingerprint(tl_schema_event, &fp), TL_OK);
    ck_assert(tl_codec_fingerprint(c) == fp);
    tl_event_t ev = sample_event(TL_EV_MESSAGE_RECEIVED, 1);
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_buf_puts(&out, "prefix"), TL_OK);
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
    const unsigned char *p = (const unsigned char *)out.data + 6;
    ck_assert_int_eq(memcmp(out.data, "prefix", 6), 0);     /* appended */
    ck_assert_uint_eq(p[0], 0xc3);
    ck_assert_uint_eq(p[1], 0x01);
    uint64_t got = 0;
    for (int i = 0; i < 8; i++) got |= (uint64_t)p[2 + i] << (8 * i);
    ck_assert(got == fp);
    /* The first datum byte is the zigzag length of event_id. */
    ck_assert_uint_eq(p[10], 2 * ev.event_id.len);
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_event_enums_match_event_h) {
    json_t *root = json_loads(tl_schema_event, 0, NULL);
    ck_assert(root != NULL);
    json_t *platform = json_object_get(json_object_get(envelope_field(root, "platform"), "type"), "symbols");
    static const char *const platforms[] = {
#define PLATFORM_NAME(name, slug) #name,
        TL_PLATFORM_MAP(PLATFORM_NAME)
#undef PLATFORM_NAME
    };
    ck_assert_uint_eq(json_array_size(platform), TL_PLATFORM__COUNT);
    for (size_t i = 0; i < TL_PLATFORM__COUNT; i++)
        ck_assert_str_eq(json_string_value(json_array_get(platform, i)), platforms[i]);

    json_t *seg = json_object_get(payload_record(root, "TranscriptSegment"), "fields");
    json_t *speaker = json_object_get(json_object_get(json_array_get(seg, 3), "type"), "symbols");
    ck_assert_uint_eq(json_array_size(speaker), TL_SPEAKER_UNKNOWN + 1);
    ck_assert_str_eq(json_string_value(json_array_get(speaker, TL_SPEAKER_CUSTOMER)), "CUSTOMER");
    ck_assert_str_eq(json_string_value(json_array_get(speaker, TL_SPEAKER_AGENT)), "AGENT");
    ck_assert_str_eq(json_string_value(json_array_get(speaker, TL_SPEAKER_UNKNOWN)), "UNKNOWN");

    json_t *link = json_object_get(payload_record(root, "IdentityLinked"), "fields");
    json_t *evidence = json_object_get(json_object_get(json_array_get(link, 3), "type"), "symbols");
    static const char *const evidences[] = { "UNIONID", "VERIFIED_PHONE", "LOGIN", "AGENT", "OTHER" };
    ck_assert_uint_eq(json_array_size(evidence), TL_EVIDENCE_OTHER + 1);
    for (size_t i = 0; i <= TL_EVIDENCE_OTHER; i++)
        ck_assert_str_eq(json_string_value(json_array_get(evidence, i)), evidences[i]);

    json_t *payload = json_object_get(envelope_field(root, "payload"), "type");
    ck_assert_uint_eq(json_array_size(payload), TL_EV__COUNT);
    for (int k = 0; k < TL_EV__COUNT; k++)
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(payload, k), "name")),
                         tl_event_kind_name((tl_event_kind_t)k));
    json_decref(root);
}
END_TEST

START_TEST(codec_encode_rejects_bad_event_and_leaves_output) {
    tl_codec_t *c = event_codec();
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_buf_puts(&out, "kept"), TL_OK);

    tl_event_t ev = sample_event(TL_EV_AGENT_REPLIED, 1);
    ev.u.reply.target_platform = TL_PLATFORM__COUNT;
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_EINVAL);
    ck_assert_msg(strstr(tl_codec_errmsg(c), "target_platform") != NULL, "%s", tl_codec_errmsg(c));

    ev = sample_event(TL_EV_MESSAGE_RECEIVED, 1);
    ev.platform = (tl_platform_t)-1;
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_EINVAL);

    ev = sample_event(TL_EV_MESSAGE_RECEIVED, 1);
    ev.kind = TL_EV__COUNT;
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_EINVAL);

    ev = sample_event(TL_EV_FIELD_ASSERTED, 1);
    ev.u.field.value = TL_STR_NULL;                 /* required */
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_EINVAL);

    ev = sample_event(TL_EV_CONVERSATION_TAGGED, 1);
    ev.u.tag.removed.v = NULL;
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_EINVAL);

    ev = sample_event(TL_EV_TRANSCRIPT_SEGMENT, 1);
    ev.u.transcript.speaker = (tl_speaker_t)3;
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_EINVAL);

    ck_assert_uint_eq(out.len, 4);
    ck_assert_str_eq(out.data, "kept");

    tl_codec_t *generic = codec_for(tl_schema_change);
    ev = sample_event(TL_EV_MESSAGE_RECEIVED, 1);
    ck_assert_int_eq(tl_codec_encode_event(generic, &ev, &out), TL_EINVAL);
    tl_event_t got;
    ck_assert_int_eq(tl_codec_decode_event(generic, "x", 1, &got), TL_EINVAL);
    tl_codec_free(generic);
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_generic_layer_carries_a_change_record) {
    /* threadline.Change is mapped with the generic layer only. */
    tl_codec_t *ec = event_codec(), *cc = codec_for(tl_schema_change);
    tl_buf_t evbuf, out;
    tl_buf_init(&evbuf);
    tl_buf_init(&out);
    tl_event_t ev = sample_event(TL_EV_MESSAGE_RECEIVED, 1);
    ck_assert_int_eq(tl_codec_encode_event(ec, &ev, &evbuf), TL_OK);

    avro_value_t *v = tl_codec_value(cc), f, br;
    set_str(v, "event_id", "01890a5d-ac96-774b-bcce-b302099a8057");
    set_str(v, "tenant_id", "tenant-hz-01");
    set_str(v, "customer_id", "c-5f2a9e");
    f = field(v, "source_partition");
    ck_assert_int_eq(avro_value_set_int(&f, 7), 0);
    f = field(v, "source_offset");
    ck_assert_int_eq(avro_value_set_long(&f, 123456789012LL), 0);
    f = field(v, "customer_version");
    ck_assert_int_eq(avro_value_set_long(&f, 42), 0);
    f = field(v, "conversation_id");
    ck_assert_int_eq(avro_value_set_branch(&f, 1, &br), 0);
    ck_assert_int_eq(avro_value_set_string(&br, "conv-1"), 0);
    f = field(v, "conversation_version");
    ck_assert_int_eq(avro_value_set_long(&f, 3), 0);
    f = field(v, "conversation_opened");
    ck_assert_int_eq(avro_value_set_boolean(&f, 1), 0);
    f = field(v, "effective_ts");
    ck_assert_int_eq(avro_value_set_long(&f, 1716019200123), 0);
    f = field(v, "duplicate");
    ck_assert_int_eq(avro_value_set_boolean(&f, 0), 0);
    f = field(v, "event");
    ck_assert_int_eq(avro_value_set_bytes(&f, evbuf.data, evbuf.len), 0);
    f = field(v, "ignored");
    ck_assert_int_eq(avro_value_set_branch(&f, 0, &br), 0);
    ck_assert_int_eq(avro_value_set_null(&br), 0);
    ck_assert_int_eq(tl_codec_write(cc, &out), TL_OK);

    avro_value_t *got;
    ck_assert_int_eq(tl_codec_read(cc, out.data, out.len, &got), TL_OK);
    f = field(got, "customer_id");
    assert_str(&f, "c-5f2a9e");
    int32_t part;
    int64_t off;
    int flag;
    f = field(got, "source_partition");
    ck_assert_int_eq(avro_value_get_int(&f, &part), 0);
    ck_assert_int_eq(part, 7);
    f = field(got, "source_offset");
    ck_assert_int_eq(avro_value_get_long(&f, &off), 0);
    ck_assert(off == 123456789012LL);
    f = field(got, "conversation_opened");
    ck_assert_int_eq(avro_value_get_boolean(&f, &flag), 0);
    ck_assert_int_eq(flag, 1);
    f = field(got, "conversation_id");
    ck_assert_int_eq(avro_value_get_current_branch(&f, &br), 0);
    assert_str(&br, "conv-1");

    /* The embedded event travels byte for byte and still decodes. */
    const void *bytes;
    size_t n;
    f = field(got, "event");
    ck_assert_int_eq(avro_value_get_bytes(&f, &bytes, &n), 0);
    ck_assert_uint_eq(n, evbuf.len);
    ck_assert_int_eq(memcmp(bytes, evbuf.data, n), 0);
    tl_event_t back;
    ck_assert_int_eq(tl_codec_decode_event(ec, bytes, n, &back), TL_OK);
    event_eq(&ev, &back);

    tl_buf_close(&evbuf);
    tl_buf_close(&out);
    tl_codec_free(ec);
    tl_codec_free(cc);
}
END_TEST

START_TEST(codec_write_rejects_incomplete_value) {
    /* A union left without a branch cannot be encoded. */
    tl_codec_t *c = codec_for("{\"type\":\"record\",\"name\":\"U\",\"fields\":["
                              "{\"name\":\"u\",\"type\":[\"null\",\"string\"]}]}");
    tl_buf_t out;
    tl_buf_init(&out);
    tl_codec_value(c);
    ck_assert_int_eq(tl_codec_write(c, &out), TL_EINVAL);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_str_ne(tl_codec_errmsg(c), "");
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_write_grows_output_for_large_records) {
    tl_codec_t *c = event_codec(), *d = event_codec();
    size_t big = 3 * 1024 * 1024;
    char *text = malloc(big);
    for (size_t i = 0; i < big; i++) text[i] = (char)('a' + i % 26);
    tl_event_t ev = sample_event(TL_EV_FIELD_ASSERTED, 1), got;
    ev.u.field.value = (tl_str_t){ text, big };
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
    ck_assert_int_eq(tl_codec_decode_event(d, out.data, out.len, &got), TL_OK);
    event_eq(&ev, &got);
    free(text);
    tl_buf_close(&out);
    tl_codec_free(c);
    tl_codec_free(d);
}
END_TEST

/* ---- interoperability ------------------------------------------------- */

START_TEST(codec_reads_record_written_by_fastavro) {
    /* tests/data/message_received.bin comes from tests/data/make_golden.py
     * (fastavro), which holds the same values. */
    FILE *f = fopen(tl_test_data("message_received.bin"), "rb");
    ck_assert_msg(f != NULL, "%s", tl_test_data("message_received.bin"));
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);

    tl_codec_t *c = event_codec();
    tl_event_t ev;
    int rc = tl_codec_decode_event(c, buf, n, &ev);
    ck_assert_msg(rc == TL_OK, "%s: %s", tl_err_name(rc), tl_codec_errmsg(c));
    STR_EQ(ev.event_id, TL_STR("01890a5d-ac96-774b-bcce-b302099a8057"));
    STR_EQ(ev.tenant_id, TL_STR("tenant-hz-01"));
    STR_EQ(ev.customer_id, TL_STR("c-5f2a9e"));
    ck_assert_int_eq(ev.platform, TL_PLATFORM_MINI_PROGRAM);
    STR_EQ(ev.platform_user_id, TL_STR("oX9a_mini_7781"));
    STR_EQ(ev.idempotency_key, TL_STR("mini_program:msg-20240518-0001"));
    ck_assert(ev.occurred_at == 1716019200123);
    ck_assert(ev.received_at == 1716019200456);
    STR_EQ(ev.trace_id, TL_STR("4bf92f3577b34da6a3ce929d0e0e4736"));
    ck_assert_int_eq(ev.kind, TL_EV_MESSAGE_RECEIVED);
    STR_EQ(ev.u.message.text, TL_STR("你好，我昨天下的订单还没有发货，订单号是 TL20240518001，请帮我查一下物流。"));
    ck_assert_uint_eq(ev.u.message.attachments.n, 1);
    const tl_attachment_t *a = &ev.u.message.attachments.v[0];
    STR_EQ(a->url, TL_STR("https://img.example.cn/u/7781/screenshot.png"));
    STR_EQ(a->mime, TL_STR("image/png"));
    ck_assert(a->bytes == 482113);
    ck_assert(a->has_width && a->width == 1080);
    ck_assert(!a->has_height);
    STR_EQ(ev.u.message.entry_point, TL_STR("product-detail:SKU123"));
    ck_assert(ev.u.message.device_id.ptr == NULL);

    /* Our encoding of the same event is byte-identical to fastavro's. */
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
    ck_assert_uint_eq(out.len, n);
    ck_assert_int_eq(memcmp(out.data, buf, n), 0);
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

/* ---- schema resolution ------------------------------------------------ */

START_TEST(codec_resolves_v1_writer_against_v2_reader) {
    char *v1 = read_text("resolution_v1.avsc"), *v2 = read_text("resolution_v2.avsc");
    tl_codec_t *w = codec_for(v1), *r = codec_for(v2);
    tl_buf_t out;
    tl_buf_init(&out);

    avro_value_t *v = tl_codec_value(w), f, item;
    set_str(v, "id", "T-1");
    f = field(v, "priority");
    ck_assert_int_eq(avro_value_set_int(&f, -7), 0);
    f = field(v, "labels");
    ck_assert_int_eq(avro_value_append(&f, &item, NULL), 0);
    ck_assert_int_eq(avro_value_set_string(&item, "退款"), 0);
    ck_assert_int_eq(avro_value_append(&f, &item, NULL), 0);
    ck_assert_int_eq(avro_value_set_string(&item, "urgent"), 0);
    set_str(v, "legacy_note", "dropped by v2");
    ck_assert_int_eq(tl_codec_write(w, &out), TL_OK);

    /* Not registered yet: the fingerprint is unknown to the v2 reader. */
    avro_value_t *got;
    ck_assert_int_eq(tl_codec_read(r, out.data, out.len, &got), TL_EUNKNOWNSCHEMA);
    ck_assert_int_eq(tl_codec_add_writer(r, v1), TL_OK);
    int rc = tl_codec_read(r, out.data, out.len, &got);
    ck_assert_msg(rc == TL_OK, "%s: %s", tl_err_name(rc), tl_codec_errmsg(r));

    f = field(got, "id");
    assert_str(&f, "T-1");
    int64_t prio = 0;
    f = field(got, "priority");                     /* int promoted to long */
    ck_assert_int_eq(avro_value_get_long(&f, &prio), 0);
    ck_assert(prio == -7);
    size_t n = 0;
    f = field(got, "labels");
    ck_assert_int_eq(avro_value_get_size(&f, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(avro_value_get_by_index(&f, 0, &item, NULL), 0);
    assert_str(&item, "退款");
    f = field(got, "channel");                      /* defaults */
    assert_str(&f, "web");
    int disc = -1;
    f = field(got, "score");
    ck_assert_int_eq(avro_value_get_discriminant(&f, &disc), 0);
    ck_assert_int_eq(disc, 0);
    avro_value_t meta = field(got, "meta");
    f = field(&meta, "source");                     /* from Meta's own default */
    assert_str(&f, "import");
    int32_t retries = 0;
    f = field(&meta, "retries");                    /* from the field default */
    ck_assert_int_eq(avro_value_get_int(&f, &retries), 0);
    ck_assert_int_eq(retries, 5);

    /* v2's own records still read, through the identity plan. */
    v = tl_codec_value(r);
    set_str(v, "id", "T-2");
    f = field(v, "priority");
    ck_assert_int_eq(avro_value_set_long(&f, 1LL << 40), 0);
    set_str(v, "channel", "app");
    f = field(v, "score");
    ck_assert_int_eq(avro_value_set_branch(&f, 1, &item), 0);
    ck_assert_int_eq(avro_value_set_double(&item, 0.5), 0);
    meta = field(v, "meta");
    set_str(&meta, "source", "api");
    f = field(&meta, "retries");
    ck_assert_int_eq(avro_value_set_int(&f, 0), 0);
    tl_buf_reset(&out);
    ck_assert_int_eq(tl_codec_write(r, &out), TL_OK);
    ck_assert_int_eq(tl_codec_read(r, out.data, out.len, &got), TL_OK);
    f = field(got, "channel");
    assert_str(&f, "app");

    tl_buf_close(&out);
    tl_codec_free(w);
    tl_codec_free(r);
    free(v1);
    free(v2);
}
END_TEST

START_TEST(codec_rejects_incompatible_writer_schemas) {
    char *v1 = read_text("resolution_v1.avsc"), *v2 = read_text("resolution_v2.avsc");
    tl_codec_t *r1 = codec_for(v1);
    /* v2 -> v1: long cannot narrow to int, legacy_note has no default. */
    ck_assert_int_eq(tl_codec_add_writer(r1, v2), TL_ESCHEMA);
    ck_assert_msg(strstr(tl_codec_errmsg(r1), "priority") != NULL, "%s", tl_codec_errmsg(r1));

    static const struct { const char *writer; const char *mention; } bad[] = {
        { "{\"type\":\"record\",\"name\":\"Ticket\",\"namespace\":\"threadline.test\",\"fields\":["
          "{\"name\":\"id\",\"type\":\"string\"},{\"name\":\"priority\",\"type\":\"int\"},"
          "{\"name\":\"labels\",\"type\":{\"type\":\"array\",\"items\":\"string\"}}]}",
          "legacy_note" },
        { "{\"type\":\"record\",\"name\":\"Ticket\",\"namespace\":\"threadline.test\",\"fields\":["
          "{\"name\":\"id\",\"type\":\"int\"},{\"name\":\"priority\",\"type\":\"int\"},"
          "{\"name\":\"labels\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
          "{\"name\":\"legacy_note\",\"type\":\"string\"}]}",
          "id" },
        { "{\"type\":\"record\",\"name\":\"Other\",\"fields\":[]}", "Other" },
        { "{\"type\":\"record\",\"name\":\"Ticket\",\"namespace\":\"threadline.test\",\"fields\":[",
          "" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tl_codec_add_writer(r1, bad[i].writer);
        ck_assert_msg(rc == (i == 3 ? TL_EJSON : TL_ESCHEMA), "%zu: %s", i, tl_err_name(rc));
        ck_assert_msg(strstr(tl_codec_errmsg(r1), bad[i].mention) != NULL, "%zu: %s", i,
                      tl_codec_errmsg(r1));
    }

    /* A default that does not fit its type is caught when registering. */
    tl_codec_t *r = codec_for("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                              "{\"name\":\"a\",\"type\":\"int\"},"
                              "{\"name\":\"b\",\"type\":\"int\",\"default\":\"seven\"}]}");
    ck_assert_int_eq(tl_codec_add_writer(r, "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                            "{\"name\":\"a\",\"type\":\"int\"}]}"),
                     TL_ESCHEMA);
    ck_assert_msg(strstr(tl_codec_errmsg(r), "R.b") != NULL, "%s", tl_codec_errmsg(r));
    /* The same writer schema again, or the reader's own: nothing to do. */
    ck_assert_int_eq(tl_codec_add_writer(r, "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                            "{\"name\":\"a\",\"type\":\"int\"},"
                                            "{\"name\":\"b\",\"type\":\"int\"}]}"),
                     TL_OK);
    tl_codec_free(r);
    tl_codec_free(r1);
    free(v1);
    free(v2);
}
END_TEST

static void strip_docs(json_t *j) {
    if (json_is_object(j)) {
        json_object_del(j, "doc");
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) strip_docs(v);
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) strip_docs(v);
    }
}

START_TEST(codec_event_schema_resolves_against_itself) {
    /* The same schema in another layout (keys sorted, indented, no docs) is
     * the same schema: same fingerprint, nothing new to register, and an
     * independent parse of it reads the event codec's records. */
    json_t *root = json_loads(tl_schema_event, 0, NULL);
    strip_docs(root);
    char *relaid = json_dumps(root, JSON_INDENT(3) | JSON_SORT_KEYS);
    json_decref(root);
    ck_assert_str_ne(relaid, tl_schema_event);

    tl_codec_t *ev_codec = event_codec(), *generic = codec_for(relaid);
    ck_assert(tl_codec_fingerprint(generic) == tl_codec_fingerprint(ev_codec));
    ck_assert_int_eq(tl_codec_add_writer(ev_codec, tl_schema_event), TL_OK);
    ck_assert_int_eq(tl_codec_add_writer(ev_codec, relaid), TL_OK);
    ck_assert_int_eq(tl_codec_add_writer(generic, tl_schema_event), TL_OK);

    tl_buf_t out;
    tl_buf_init(&out);
    for (int k = 0; k < TL_EV__COUNT; k++) {
        tl_event_t ev = sample_event((tl_event_kind_t)k, k % 2), got;
        tl_buf_reset(&out);
        ck_assert_int_eq(tl_codec_encode_event(ev_codec, &ev, &out), TL_OK);
        avro_value_t *v, payload;
        ck_assert_int_eq(tl_codec_read(generic, out.data, out.len, &v), TL_OK);
        avro_value_t f = field(v, "customer_id");
        assert_str(&f, "c-5f2a9e");
        int disc = -1;
        payload = field(v, "payload");
        ck_assert_int_eq(avro_value_get_discriminant(&payload, &disc), 0);
        ck_assert_int_eq(disc, k);
        ck_assert_int_eq(tl_codec_decode_event(ev_codec, out.data, out.len, &got), TL_OK);
        event_eq(&ev, &got);
    }
    tl_buf_close(&out);
    tl_codec_free(ev_codec);
    tl_codec_free(generic);
    free(relaid);
}
END_TEST

static void add_locale_and_sentiment(json_t *root) {
    json_t *locale = json_pack("{s:s, s:s, s:s}", "name", "locale", "type", "string", "default", "zh-CN");
    json_array_insert_new(json_object_get(root, "fields"), 3, locale);
    json_t *msg = payload_record(root, "MessageReceived");
    json_t *sentiment = json_pack("{s:s, s:[s,s], s:n}", "name", "sentiment", "type", "null", "float",
                                  "default");
    json_array_insert_new(json_object_get(msg, "fields"), 0, sentiment);
    /* A newer reader knows one more platform. */
    json_t *symbols = json_object_get(json_object_get(envelope_field(root, "platform"), "type"), "symbols");
    json_array_append_new(symbols, json_string("KUAISHOU"));
}

START_TEST(codec_resolves_current_event_writer_against_evolved_reader) {
    /* Today's event schema as the writer, a later one (a field added in
     * the envelope and in MessageReceived, a platform added) as the reader:
     * every record, every nested type, goes through resolution. */
    char *evolved = event_schema_variant(add_locale_and_sentiment);
    tl_codec_t *w = event_codec(), *r = codec_for(evolved);
    ck_assert_int_eq(tl_codec_add_writer(r, tl_schema_event), TL_OK);
    tl_buf_t out;
    tl_buf_init(&out);
    for (int k = 0; k < TL_EV__COUNT; k++) {
        tl_event_t ev = sample_event((tl_event_kind_t)k, 1);
        tl_buf_reset(&out);
        ck_assert_int_eq(tl_codec_encode_event(w, &ev, &out), TL_OK);
        avro_value_t *got, f, payload, body;
        int rc = tl_codec_read(r, out.data, out.len, &got);
        ck_assert_msg(rc == TL_OK, "%s: %s", tl_err_name(rc), tl_codec_errmsg(r));
        f = field(got, "event_id");
        assert_str(&f, "01890a5d-ac96-774b-bcce-b302099a8057");
        f = field(got, "locale");
        assert_str(&f, "zh-CN");
        int sym = -1;
        f = field(got, "platform");
        ck_assert_int_eq(avro_value_get_enum(&f, &sym), 0);
        ck_assert_int_eq(sym, (int)ev.platform);
        f = field(got, "trace_id");
        assert_str(&f, "4bf92f3577b34da6a3ce929d0e0e4736");
        payload = field(got, "payload");
        int disc = -1;
        ck_assert_int_eq(avro_value_get_discriminant(&payload, &disc), 0);
        ck_assert_int_eq(disc, k);
        ck_assert_int_eq(avro_value_get_current_branch(&payload, &body), 0);
        if (k == TL_EV_MESSAGE_RECEIVED) {
            f = field(&body, "sentiment");
            ck_assert_int_eq(avro_value_get_discriminant(&f, &disc), 0);
            ck_assert_int_eq(disc, 0);
            f = field(&body, "text");
            assert_str(&f, chinese_text);
            avro_value_t atts = field(&body, "attachments"), a;
            size_t n = 0;
            ck_assert_int_eq(avro_value_get_size(&atts, &n), 0);
            ck_assert_uint_eq(n, 2);
            ck_assert_int_eq(avro_value_get_by_index(&atts, 1, &a, NULL), 0);
            f = field(&a, "mime");
            assert_str(&f, "application/pdf");
        }
        if (k == TL_EV_AGENT_REPLIED) {
            f = field(&body, "target_platform");
            ck_assert_int_eq(avro_value_get_enum(&f, &sym), 0);
            ck_assert_int_eq(sym, TL_PLATFORM_SYSTEM);
        }
    }
    tl_buf_close(&out);
    tl_codec_free(w);
    tl_codec_free(r);
    free(evolved);
}
END_TEST

static void add_writer_only_fields(json_t *root) {
    json_t *dbg = json_pack("{s:s, s:s}", "name", "x_debug", "type", "string");
    json_array_insert_new(json_object_get(root, "fields"), 0, dbg);
    json_t *msg = payload_record(root, "MessageReceived");
    json_t *lang = json_pack("{s:s, s:{s:s, s:s}}", "name", "lang", "type", "type", "map", "values", "int");
    json_array_append_new(json_object_get(msg, "fields"), lang);
}

START_TEST(codec_event_reader_skips_fields_of_newer_writer) {
    char *newer = event_schema_variant(add_writer_only_fields);
    tl_codec_t *w = codec_for(newer), *r = event_codec();
    tl_buf_t out;
    tl_buf_init(&out);

    avro_value_t *v = tl_codec_value(w), f, payload, body, item;
    set_str(v, "x_debug", "writer-only text that the reader skips");
    set_str(v, "event_id", "e-1");
    set_str(v, "tenant_id", "t");
    set_str(v, "customer_id", "c");
    f = field(v, "platform");
    ck_assert_int_eq(avro_value_set_enum(&f, TL_PLATFORM_APP), 0);
    set_str(v, "platform_user_id", "u");
    set_str(v, "idempotency_key", "app:1");
    f = field(v, "occurred_at");
    ck_assert_int_eq(avro_value_set_long(&f, 10), 0);
    f = field(v, "received_at");
    ck_assert_int_eq(avro_value_set_long(&f, 20), 0);
    set_str(v, "trace_id", "tr");
    payload = field(v, "payload");
    ck_assert_int_eq(avro_value_set_branch(&payload, TL_EV_MESSAGE_RECEIVED, &body), 0);
    set_str(&body, "text", "新版本写的消息");
    f = field(&body, "entry_point");
    ck_assert_int_eq(avro_value_set_branch(&f, 0, &item), 0);
    ck_assert_int_eq(avro_value_set_null(&item), 0);
    f = field(&body, "device_id");
    ck_assert_int_eq(avro_value_set_branch(&f, 1, &item), 0);
    ck_assert_int_eq(avro_value_set_string(&item, "dev-1"), 0);
    f = field(&body, "lang");
    ck_assert_int_eq(avro_value_add(&f, "zh", &item, NULL, NULL), 0);
    ck_assert_int_eq(avro_value_set_int(&item, 90), 0);
    ck_assert_int_eq(avro_value_add(&f, "en", &item, NULL, NULL), 0);
    ck_assert_int_eq(avro_value_set_int(&item, 10), 0);
    ck_assert_int_eq(tl_codec_write(w, &out), TL_OK);

    ck_assert_int_eq(tl_codec_add_writer(r, newer), TL_OK);
    tl_event_t ev;
    int rc = tl_codec_decode_event(r, out.data, out.len, &ev);
    ck_assert_msg(rc == TL_OK, "%s: %s", tl_err_name(rc), tl_codec_errmsg(r));
    STR_EQ(ev.event_id, TL_STR("e-1"));
    ck_assert_int_eq(ev.platform, TL_PLATFORM_APP);
    ck_assert(ev.received_at == 20);
    ck_assert_int_eq(ev.kind, TL_EV_MESSAGE_RECEIVED);
    STR_EQ(ev.u.message.text, TL_STR("新版本写的消息"));
    ck_assert_uint_eq(ev.u.message.attachments.n, 0);
    ck_assert(ev.u.message.entry_point.ptr == NULL);
    STR_EQ(ev.u.message.device_id, TL_STR("dev-1"));

    /* A writer with a platform the reader does not know is refused. */
    char *evolved = event_schema_variant(add_locale_and_sentiment);
    ck_assert_int_eq(tl_codec_add_writer(r, evolved), TL_ESCHEMA);
    ck_assert_msg(strstr(tl_codec_errmsg(r), "KUAISHOU") != NULL, "%s", tl_codec_errmsg(r));

    tl_buf_close(&out);
    tl_codec_free(w);
    tl_codec_free(r);
    free(newer);
    free(evolved);
}
END_TEST

START_TEST(codec_resolves_unions_and_promotions) {
    /* Writer plain -> reader union, writer union -> reader plain, numeric
     * promotions, string <-> bytes, enum symbols reordered. */
    tl_codec_t *w = codec_for(
        "{\"type\":\"record\",\"name\":\"P\",\"fields\":["
        "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"b\",\"type\":\"long\"},"
        "{\"name\":\"c\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"string\"},"
        "{\"name\":\"e\",\"type\":\"bytes\"},{\"name\":\"f\",\"type\":[\"null\",\"int\"]},"
        "{\"name\":\"g\",\"type\":{\"type\":\"enum\",\"name\":\"G\",\"symbols\":[\"X\",\"Y\",\"Z\"]}},"
        "{\"name\":\"h\",\"type\":\"string\"}]}");
    tl_codec_t *r = codec_for(
        "{\"type\":\"record\",\"name\":\"P\",\"fields\":["
        "{\"name\":\"h\",\"type\":[\"null\",\"string\"]},"
        "{\"name\":\"a\",\"type\":\"double\"},{\"name\":\"b\",\"type\":\"float\"},"
        "{\"name\":\"c\",\"type\":\"double\"},{\"name\":\"d\",\"type\":\"bytes\"},"
        "{\"name\":\"e\",\"type\":\"string\"},{\"name\":\"f\",\"type\":[\"null\",\"long\"]},"
        "{\"name\":\"g\",\"type\":{\"type\":\"enum\",\"name\":\"G\",\"symbols\":[\"Z\",\"Y\",\"X\"]}}]}");
    ck_assert_int_eq(tl_codec_add_writer(r, "{\"type\":\"record\",\"name\":\"P\",\"fields\":["
        "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"b\",\"type\":\"long\"},"
        "{\"name\":\"c\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"string\"},"
        "{\"name\":\"e\",\"type\":\"bytes\"},{\"name\":\"f\",\"type\":[\"null\",\"int\"]},"
        "{\"name\":\"g\",\"type\":{\"type\":\"enum\",\"name\":\"G\",\"symbols\":[\"X\",\"Y\",\"Z\"]}},"
        "{\"name\":\"h\",\"type\":\"string\"}]}"), TL_OK);

    avro_value_t *v = tl_codec_value(w), f, br;
    f = field(v, "a");
    ck_assert_int_eq(avro_value_set_int(&f, 3), 0);
    f = field(v, "b");
    ck_assert_int_eq(avro_value_set_long(&f, 1LL << 40), 0);
    f = field(v, "c");
    ck_assert_int_eq(avro_value_set_float(&f, 1.5f), 0);
    set_str(v, "d", "文本");
    f = field(v, "e");
    ck_assert_int_eq(avro_value_set_bytes(&f, "raw", 3), 0);
    f = field(v, "f");
    ck_assert_int_eq(avro_value_set_branch(&f, 1, &br), 0);
    ck_assert_int_eq(avro_value_set_int(&br, -9), 0);
    f = field(v, "g");
    ck_assert_int_eq(avro_value_set_enum(&f, 0), 0);
    set_str(v, "h", "now optional");
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_codec_write(w, &out), TL_OK);

    avro_value_t *got;
    int rc = tl_codec_read(r, out.data, out.len, &got);
    ck_assert_msg(rc == TL_OK, "%s: %s", tl_err_name(rc), tl_codec_errmsg(r));
    double dbl;
    float flt;
    int64_t lng;
    int sym, disc;
    const void *bytes;
    size_t n;
    f = field(got, "a");
    ck_assert_int_eq(avro_value_get_double(&f, &dbl), 0);
    ck_assert(dbl == 3.0);
    f = field(got, "b");
    ck_assert_int_eq(avro_value_get_float(&f, &flt), 0);
    ck_assert(flt == (float)(1LL << 40));
    f = field(got, "c");
    ck_assert_int_eq(avro_value_get_double(&f, &dbl), 0);
    ck_assert(dbl == 1.5);
    f = field(got, "d");
    ck_assert_int_eq(avro_value_get_bytes(&f, &bytes, &n), 0);
    ck_assert_uint_eq(n, strlen("文本"));
    ck_assert_int_eq(memcmp(bytes, "文本", n), 0);
    f = field(got, "e");
    assert_str(&f, "raw");
    f = field(got, "f");
    ck_assert_int_eq(avro_value_get_discriminant(&f, &disc), 0);
    ck_assert_int_eq(disc, 1);
    ck_assert_int_eq(avro_value_get_current_branch(&f, &br), 0);
    ck_assert_int_eq(avro_value_get_long(&br, &lng), 0);
    ck_assert(lng == -9);
    f = field(got, "g");
    ck_assert_int_eq(avro_value_get_enum(&f, &sym), 0);
    ck_assert_int_eq(sym, 2);                       /* X is last in the reader */
    f = field(got, "h");
    ck_assert_int_eq(avro_value_get_discriminant(&f, &disc), 0);
    ck_assert_int_eq(disc, 1);
    ck_assert_int_eq(avro_value_get_current_branch(&f, &br), 0);
    assert_str(&br, "now optional");

    tl_buf_close(&out);
    tl_codec_free(w);
    tl_codec_free(r);
}
END_TEST

START_TEST(codec_applies_defaults_of_named_and_compound_types) {
    /* Defaults whose type is a reference to a named type defined earlier,
     * a record, an array and a map; applied again on every record, never
     * accumulated. */
    const char *w = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                    "{\"name\":\"a\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\",\"Y\"]}},"
                    "{\"name\":\"s\",\"type\":{\"type\":\"record\",\"name\":\"S\",\"fields\":["
                    "{\"name\":\"q\",\"type\":\"int\"},{\"name\":\"e\",\"type\":\"E\"}]}}]}";
    const char *r = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                    "{\"name\":\"a\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\",\"Y\"]}},"
                    "{\"name\":\"s\",\"type\":{\"type\":\"record\",\"name\":\"S\",\"fields\":["
                    "{\"name\":\"q\",\"type\":\"int\"},{\"name\":\"e\",\"type\":\"E\"}]}},"
                    "{\"name\":\"b\",\"type\":\"E\",\"default\":\"Y\"},"
                    "{\"name\":\"t\",\"type\":\"S\",\"default\":{\"q\":42,\"e\":\"Y\"}},"
                    "{\"name\":\"l\",\"type\":{\"type\":\"array\",\"items\":\"string\"},"
                    "\"default\":[\"一\",\"二\"]},"
                    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"bytes\"},"
                    "\"default\":{\"k\":\"\\u00ff\\u0001\"}},"
                    "{\"name\":\"o\",\"type\":[\"int\",\"null\"],\"default\":7}]}";
    tl_codec_t *cw = codec_for(w), *cr = codec_for(r);
    ck_assert_int_eq(tl_codec_add_writer(cr, w), TL_OK);
    avro_value_t *v = tl_codec_value(cw), f, s, q;
    f = field(v, "a");
    ck_assert_int_eq(avro_value_set_enum(&f, 0), 0);
    s = field(v, "s");
    f = field(&s, "q");
    ck_assert_int_eq(avro_value_set_int(&f, 1), 0);
    f = field(&s, "e");
    ck_assert_int_eq(avro_value_set_enum(&f, 0), 0);
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_codec_write(cw, &out), TL_OK);
    for (int round = 0; round < 3; round++) {
        avro_value_t *got;
        int rc = tl_codec_read(cr, out.data, out.len, &got);
        ck_assert_msg(rc == TL_OK, "%s: %s", tl_err_name(rc), tl_codec_errmsg(cr));
        int sym = -1, disc = -1;
        int32_t qi = 0;
        f = field(got, "b");
        ck_assert_int_eq(avro_value_get_enum(&f, &sym), 0);
        ck_assert_int_eq(sym, 1);
        avro_value_t t = field(got, "t");
        q = field(&t, "q");
        ck_assert_int_eq(avro_value_get_int(&q, &qi), 0);
        ck_assert_int_eq(qi, 42);
        q = field(&t, "e");
        ck_assert_int_eq(avro_value_get_enum(&q, &sym), 0);
        ck_assert_int_eq(sym, 1);
        size_t n = 0;
        f = field(got, "l");
        ck_assert_int_eq(avro_value_get_size(&f, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(avro_value_get_by_index(&f, 1, &q, NULL), 0);
        assert_str(&q, "二");
        f = field(got, "m");
        ck_assert_int_eq(avro_value_get_size(&f, &n), 0);
        ck_assert_uint_eq(n, 1);
        const void *bytes;
        ck_assert_int_eq(avro_value_get_by_name(&f, "k", &q, NULL), 0);
        ck_assert_int_eq(avro_value_get_bytes(&q, &bytes, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(memcmp(bytes, "\xff\x01", 2), 0);
        f = field(got, "o");
        ck_assert_int_eq(avro_value_get_discriminant(&f, &disc), 0);
        ck_assert_int_eq(disc, 0);
    }
    tl_buf_close(&out);
    tl_codec_free(cw);
    tl_codec_free(cr);
}
END_TEST

/* ---- errors ----------------------------------------------------------- */

START_TEST(codec_rejects_unknown_fingerprint) {
    tl_codec_t *c = event_codec();
    tl_event_t ev = sample_event(TL_EV_BEHAVIOR_TRACKED, 1), before, got;
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
    out.data[2] ^= 0x01;
    memset(&got, 0x5a, sizeof got);
    before = got;
    ck_assert_int_eq(tl_codec_decode_event(c, out.data, out.len, &got), TL_EUNKNOWNSCHEMA);
    ck_assert_int_eq(memcmp(&got, &before, sizeof got), 0);     /* unchanged */
    char want[64];
    snprintf(want, sizeof want, "fingerprint 0x%016" PRIx64 " not known", tl_codec_fingerprint(c) ^ 1);
    ck_assert_str_eq(tl_codec_errmsg(c), want);
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_rejects_bad_magic) {
    tl_codec_t *c = event_codec();
    tl_event_t ev = sample_event(TL_EV_FIELD_ASSERTED, 1), got;
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
    out.data[0] = 0x00;                             /* Confluent's magic byte */
    ck_assert_int_eq(tl_codec_decode_event(c, out.data, out.len, &got), TL_EBADMAGIC);
    out.data[0] = (char)0xc3;
    out.data[1] = 0x02;
    ck_assert_int_eq(tl_codec_decode_event(c, out.data, out.len, &got), TL_EBADMAGIC);
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_truncated_at_every_length_is_truncated) {
    tl_codec_t *c = event_codec();
    tl_buf_t out;
    tl_buf_init(&out);
    for (int full = 0; full <= 1; full++) {
        for (int k = 0; k < TL_EV__COUNT; k++) {
            tl_event_t ev = sample_event((tl_event_kind_t)k, full), got;
            tl_buf_reset(&out);
            ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
            /* A copy of exactly n bytes, so that reading past it is caught
             * by valgrind or ASan. */
            for (size_t n = 0; n < out.len; n++) {
                char *cut = malloc(n ? n : 1);
                memcpy(cut, out.data, n);
                int rc = tl_codec_decode_event(c, cut, n, &got);
                ck_assert_msg(rc == TL_ETRUNCATED, "%s cut at %zu of %zu: %s (%s)",
                              tl_event_kind_name(ev.kind), n, out.len, tl_err_name(rc),
                              tl_codec_errmsg(c));
                free(cut);
            }
            ck_assert_int_eq(tl_codec_decode_event(c, out.data, out.len, &got), TL_OK);
            event_eq(&ev, &got);
        }
    }
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_trailing_garbage_is_corrupt) {
    tl_codec_t *c = event_codec();
    tl_event_t ev = sample_event(TL_EV_CONVERSATION_CLOSED, 1), got;
    tl_buf_t out;
    tl_buf_init(&out);
    ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
    ck_assert_int_eq(tl_buf_append(&out, "\0", 1), TL_OK);
    ck_assert_int_eq(tl_codec_decode_event(c, out.data, out.len, &got), TL_ECORRUPT);
    ck_assert_msg(strstr(tl_codec_errmsg(c), "1 bytes after the datum") != NULL, "%s",
                  tl_codec_errmsg(c));
    tl_buf_close(&out);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_bit_flips_never_crash) {
    /* Every single-bit flip of every kind of event: a precise error or a
     * record that decodes (a flipped character is still a string). */
    tl_codec_t *c = event_codec(), *again = event_codec();
    tl_buf_t out, re;
    tl_buf_init(&out);
    tl_buf_init(&re);
    int ok = 0, failed = 0;
    for (int k = 0; k < TL_EV__COUNT; k++) {
        tl_event_t ev = sample_event((tl_event_kind_t)k, 1), got;
        tl_buf_reset(&out);
        ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
        char *copy = malloc(out.len);
        for (size_t bit = 0; bit < out.len * 8; bit++) {
            memcpy(copy, out.data, out.len);
            copy[bit / 8] ^= (char)(1 << (bit % 8));
            int rc = tl_codec_decode_event(c, copy, out.len, &got);
            ck_assert_msg(rc == TL_OK || is_decode_error(rc), "bit %zu: %s", bit, tl_err_name(rc));
            if (rc == TL_OK) {
                /* Whatever decoded must encode and decode again. */
                ok++;
                tl_buf_reset(&re);
                ck_assert_int_eq(tl_codec_encode_event(again, &got, &re), TL_OK);
                ck_assert_int_eq(tl_codec_decode_event(again, re.data, re.len, &ev), TL_OK);
                ev = sample_event((tl_event_kind_t)k, 1);
            } else {
                failed++;
                ck_assert_str_ne(tl_codec_errmsg(c), "");
            }
        }
        free(copy);
    }
    ck_assert_int_gt(ok, 0);
    ck_assert_int_gt(failed, 0);
    tl_buf_close(&out);
    tl_buf_close(&re);
    tl_codec_free(c);
    tl_codec_free(again);
}
END_TEST

START_TEST(codec_random_input_never_crashes) {
    /* Random datums behind a valid header, and random mutations (byte
     * overwrites, insertions, deletions) of real records. */
    tl_codec_t *c = event_codec();
    tl_buf_t out, in;
    tl_buf_init(&out);
    tl_buf_init(&in);
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
#define RND() (seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17, seed)
    unsigned char datum[512];
    for (int i = 0; i < 4000; i++) {
        size_t n = RND() % sizeof datum;
        for (size_t j = 0; j < n; j++) datum[j] = (unsigned char)RND();
        frame(c, datum, n, &in);
        tl_event_t got;
        int rc = tl_codec_decode_event(c, in.data, in.len, &got);
        ck_assert_msg(rc == TL_OK || is_decode_error(rc), "%s", tl_err_name(rc));
    }
    for (int i = 0; i < 4000; i++) {
        tl_event_t ev = sample_event((tl_event_kind_t)(i % TL_EV__COUNT), i & 1), got;
        tl_buf_reset(&out);
        ck_assert_int_eq(tl_codec_encode_event(c, &ev, &out), TL_OK);
        tl_buf_reset(&in);
        ck_assert_int_eq(tl_buf_append(&in, out.data, out.len), TL_OK);
        for (int m = 0, edits = 1 + (int)(RND() % 4); m < edits; m++) {
            size_t at = TL_CODEC_HEADER_SIZE + RND() % (in.len - TL_CODEC_HEADER_SIZE);
            switch (RND() % 3) {
            case 0: in.data[at] = (char)RND(); break;
            case 1:
                if (in.len > TL_CODEC_HEADER_SIZE + 1) {
                    memmove(in.data + at, in.data + at + 1, in.len - at - 1);
                    in.len--;
                }
                break;
            default:
                ck_assert_int_eq(tl_buf_reserve(&in, 1), TL_OK);
                memmove(in.data + at + 1, in.data + at, in.len - at);
                in.data[at] = (char)RND();
                in.len++;
            }
        }
        char *exact = malloc(in.len);
        memcpy(exact, in.data, in.len);
        int rc = tl_codec_decode_event(c, exact, in.len, &got);
        ck_assert_msg(rc == TL_OK || is_decode_error(rc), "%s", tl_err_name(rc));
        free(exact);
    }
#undef RND
    tl_buf_close(&out);
    tl_buf_close(&in);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_rejects_hostile_lengths_counts_and_indexes) {
    tl_codec_t *c = codec_for(
        "{\"type\":\"record\",\"name\":\"H\",\"fields\":["
        "{\"name\":\"s\",\"type\":\"string\"},"
        "{\"name\":\"i\",\"type\":\"int\"},"
        "{\"name\":\"b\",\"type\":\"boolean\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
        "{\"name\":\"u\",\"type\":[\"null\",\"string\"]},"
        "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
        "{\"name\":\"n\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"long\"}}]}");
    static const struct {
        const char *what;
        unsigned char bytes[24];
        size_t n;
        int err;
    } cases[] = {
        /*  s       i     b     e     u     a     n     m */
        { "valid", { 0x02, 'x', 0x04, 0x01, 0x02, 0x02, 0x02, 'y', 0x00, 0x03, 0x00, 0x00, 0x00 }, 13,
          TL_OK },
        { "valid blocks", { 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x02, 'z', 0x00, 0x00,
                            0x02, 0x02, 'k', 0x08, 0x00 }, 16, TL_OK },
        { "negative string length", { 0x01, 'x' }, 2, TL_ECORRUPT },
        { "string length past the end", { 0x80, 0x80, 0x80, 0x80, 0x10, 'x' }, 6, TL_ETRUNCATED },
        { "huge string length", { 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 },
          10, TL_ETRUNCATED },
        { "varint longer than 10 bytes", { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                           0x80, 0x01 }, 11, TL_ECORRUPT },
        { "varint over 64 bits", { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
          10, TL_ECORRUPT },
        { "int out of range", { 0x00, 0x80, 0x80, 0x80, 0x80, 0x20 }, 6, TL_ECORRUPT },
        { "boolean 2", { 0x00, 0x00, 0x02 }, 3, TL_ECORRUPT },
        { "enum index out of range", { 0x00, 0x00, 0x00, 0x04 }, 4, TL_ECORRUPT },
        { "negative enum index", { 0x00, 0x00, 0x00, 0x01 }, 4, TL_ECORRUPT },
        { "union branch out of range", { 0x00, 0x00, 0x00, 0x00, 0x04 }, 5, TL_ECORRUPT },
        { "negative union branch", { 0x00, 0x00, 0x00, 0x00, 0x01 }, 5, TL_ECORRUPT },
        { "array count that cannot fit", { 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80,
                                           0x80, 0x80, 0x01, 0x02, 'q' }, 14, TL_ETRUNCATED },
        { "array count INT64_MIN", { 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0x01 }, 15, TL_ECORRUPT },
        { "negative block size", { 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00 }, 9,
          TL_ECORRUPT },
        { "2^40 nulls", { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
                          0x00, 0x00 }, 14, TL_ETOOBIG },
        { "map count that cannot fit", { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40 }, 8,
          TL_ETRUNCATED },
        { "map key length negative", { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 'k',
                                       0x00, 0x00 }, 12, TL_ECORRUPT },
        { "trailing byte", { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 }, 9, TL_ECORRUPT },
        { "empty datum", { 0 }, 0, TL_ETRUNCATED },
    };
    tl_buf_t in;
    tl_buf_init(&in);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        frame(c, cases[i].bytes, cases[i].n, &in);
        char *exact = malloc(in.len);
        memcpy(exact, in.data, in.len);
        avro_value_t *got;
        int rc = tl_codec_read(c, exact, in.len, &got);
        ck_assert_msg(rc == cases[i].err, "%s: %s, want %s (%s)", cases[i].what, tl_err_name(rc),
                      tl_err_name(cases[i].err), tl_codec_errmsg(c));
        free(exact);
    }
    /* Header-only failures. */
    avro_value_t *got;
    ck_assert_int_eq(tl_codec_read(c, "\xc3\x01", 2, &got), TL_ETRUNCATED);
    ck_assert_int_eq(tl_codec_read(c, "", 0, &got), TL_ETRUNCATED);
    tl_buf_close(&in);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_deep_recursion_is_too_big_not_a_stack_overflow) {
    tl_codec_t *c = codec_for("{\"type\":\"record\",\"name\":\"Node\",\"fields\":["
                              "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}");
    size_t depth = 100000;
    unsigned char *datum = malloc(depth + 1);
    memset(datum, 0x02, depth);                     /* branch 1: another Node */
    datum[depth] = 0x00;                            /* branch 0: null */
    tl_buf_t in;
    tl_buf_init(&in);
    frame(c, datum, depth + 1, &in);
    avro_value_t *got;
    ck_assert_int_eq(tl_codec_read(c, in.data, in.len, &got), TL_ETOOBIG);
    /* A shallow list is fine. */
    frame(c, datum + depth - 5, 6, &in);
    ck_assert_int_eq(tl_codec_read(c, in.data, in.len, &got), TL_OK);
    free(datum);
    tl_buf_close(&in);
    tl_codec_free(c);
}
END_TEST

START_TEST(codec_new_rejects_bad_schemas) {
    int err = 0;
    ck_assert_ptr_null(tl_codec_new("{", &err));
    ck_assert_int_eq(err, TL_EJSON);
    ck_assert_ptr_null(tl_codec_new("{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\"}]}", &err));
    ck_assert_int_eq(err, TL_ESCHEMA);
    ck_assert_ptr_null(tl_codec_new("\"nosuch\"", NULL));
    tl_codec_free(NULL);
}
END_TEST

/* A shorter array after a longer one makes the decoder walk the array's
 * bytes twice; the second walk must reuse the arena the first one filled
 * (the fuzzer found an event whose strings then overran it). */
START_TEST(codec_shorter_array_after_longer_stays_within_arena) {
    int err;
    tl_codec_t *enc = tl_codec_new_event(&err), *dec = tl_codec_new_event(&err);
    ck_assert_ptr_nonnull(enc);
    ck_assert_ptr_nonnull(dec);
    static char url[4000];
    memcpy(url, "https://", 8);
    memset(url + 8, 'u', sizeof url - 9);
    tl_attachment_t two[2] = {
        {TL_STR("https://a/1"), TL_STR("image/png"), 1, 0, 0, 0, 0},
        {TL_STR("https://a/2"), TL_STR("image/png"), 2, 0, 0, 0, 0},
    };
    tl_attachment_t one = {{url, strlen(url)}, TL_STR("image/png"), 3, 0, 0, 0, 0};
    tl_event_t ev = sample_event(TL_EV_MESSAGE_RECEIVED, 0);
    tl_buf_t b;
    tl_buf_init(&b);
    tl_event_t out;
    for (int round = 0; round < 3; round++) {
        ev.u.message.attachments = (tl_attachments_t){two, 2};
        tl_buf_reset(&b);
        ck_assert_int_eq(tl_codec_encode_event(enc, &ev, &b), 0);
        ck_assert_int_eq(tl_codec_decode_event(dec, b.data, b.len, &out), 0);
        ck_assert_uint_eq(out.u.message.attachments.n, 2);
        ev.u.message.attachments = (tl_attachments_t){&one, 1};
        tl_buf_reset(&b);
        ck_assert_int_eq(tl_codec_encode_event(enc, &ev, &b), 0);
        ck_assert_int_eq(tl_codec_decode_event(dec, b.data, b.len, &out), 0);
        ck_assert_uint_eq(out.u.message.attachments.n, 1);
        ck_assert_uint_eq(out.u.message.attachments.v[0].url.len, strlen(url));
        ck_assert(memcmp(out.u.message.attachments.v[0].url.ptr, url, strlen(url)) == 0);
    }
    tl_buf_close(&b);
    tl_codec_free(enc);
    tl_codec_free(dec);
}
END_TEST

/* ---- the direct decoder against the general path ----------------------- */

/* Random events for the differential tests: every kind, strings empty,
 * short, Chinese and emoji, long, with NUL bytes inside; optional fields
 * absent or present (and present but empty); arrays empty, short and long;
 * integers and floats at their extremes.  The strings live in pool, which
 * the caller frees. */
typedef struct gen {
    uint64_t seed;
    char *pool;
    size_t used, cap;
    tl_attachment_t att[300];
    tl_str_t added[64], removed[64];
} gen_t;

static uint64_t gen_rnd(gen_t *g) {
    g->seed ^= g->seed << 13;
    g->seed ^= g->seed >> 7;
    g->seed ^= g->seed << 17;
    return g->seed;
}

static tl_str_t gen_str(gen_t *g) {
    static const char *const samples[] = {
        "", "a", "vip", "物流延迟", "退款😀🎉", "wechat:msg-20240518-0001", "\xe2\x80\x8b",
        "01890a5d-ac96-774b-bcce-b302099a8057",
    };
    size_t pick = gen_rnd(g) % 12, n;
    if (pick < sizeof samples / sizeof samples[0]) {
        const char *s = samples[pick];
        n = strlen(s);
        ck_assert(g->used + n <= g->cap);
        memcpy(g->pool + g->used, s, n);
    } else {
        /* Random bytes (NUL included), now and then long. */
        n = pick == 11 ? 200 + gen_rnd(g) % 3000 : gen_rnd(g) % 40;
        ck_assert(g->used + n <= g->cap);
        for (size_t i = 0; i < n; i++) g->pool[g->used + i] = (char)gen_rnd(g);
    }
    tl_str_t s = { g->pool + g->used, n };
    g->used += n;
    return s;
}

static tl_str_t gen_opt(gen_t *g) {
    return gen_rnd(g) % 3 == 0 ? TL_STR_NULL : gen_str(g);
}

static int64_t gen_long(gen_t *g) {
    static const int64_t edges[] = { 0, 1, -1, 63, 64, -64, -65, INT64_MAX, INT64_MIN, 1716019200123 };
    return gen_rnd(g) % 2 ? edges[gen_rnd(g) % 10] : (int64_t)gen_rnd(g) >> (gen_rnd(g) % 64);
}

static int32_t gen_int(gen_t *g) {
    static const int32_t edges[] = { 0, 1, -1, 1080, INT32_MAX, INT32_MIN };
    return gen_rnd(g) % 2 ? edges[gen_rnd(g) % 6] : (int32_t)(uint32_t)gen_rnd(g);
}

static float gen_float(gen_t *g) {
    static const float edges[] = { 0.0f, -0.0f, 0.875f, 1e-45f, 3.4028235e38f, -1.0f };
    uint64_t r = gen_rnd(g) % 10;
    if (r < 6) return edges[r];
    if (r == 6) return (float)INFINITY;
    if (r == 7) return (float)NAN;
    return (float)(int32_t)gen_rnd(g) / 1000.0f;
}

static size_t gen_count(gen_t *g, size_t max) {
    uint64_t r = gen_rnd(g) % 8;
    return r < 3 ? 0 : r < 7 ? 1 + gen_rnd(g) % 4 : gen_rnd(g) % (max + 1);
}

static tl_attachments_t gen_attachments(gen_t *g) {
    size_t n = gen_count(g, sizeof g->att / sizeof g->att[0]);
    for (size_t i = 0; i < n; i++) {
        tl_attachment_t *a = &g->att[i];
        a->url = gen_str(g);
        a->mime = gen_str(g);
        a->bytes = gen_long(g);
        a->has_width = (int)(gen_rnd(g) % 2);
        a->has_height = (int)(gen_rnd(g) % 2);
        a->width = a->has_width ? gen_int(g) : 0;
        a->height = a->has_height ? gen_int(g) : 0;
    }
    return (tl_attachments_t){ g->att, n };
}

static tl_strs_t gen_strs(gen_t *g, tl_str_t *v) {
    size_t n = gen_count(g, 64);
    for (size_t i = 0; i < n; i++) v[i] = gen_str(g);
    return (tl_strs_t){ v, n };
}

static tl_event_t gen_event(gen_t *g, tl_event_kind_t kind) {
    tl_event_t ev;
    memset(&ev, 0, sizeof ev);
    g->used = 0;
    ev.event_id = gen_str(g);
    ev.tenant_id = gen_str(g);
    ev.customer_id = gen_str(g);
    ev.platform = (tl_platform_t)(gen_rnd(g) % TL_PLATFORM__COUNT);
    ev.platform_user_id = gen_str(g);
    ev.idempotency_key = gen_str(g);
    ev.occurred_at = gen_long(g);
    ev.received_at = gen_long(g);
    ev.trace_id = gen_str(g);
    ev.kind = kind;
    switch (kind) {
    case TL_EV_MESSAGE_RECEIVED:
        ev.u.message = (tl_message_received_t){ gen_str(g), gen_attachments(g), gen_opt(g), gen_opt(g) };
        break;
    case TL_EV_AGENT_REPLIED:
        ev.u.reply.agent_id = gen_str(g);
        ev.u.reply.conversation_id = gen_opt(g);
        ev.u.reply.text = gen_str(g);
        ev.u.reply.attachments = gen_attachments(g);
        ev.u.reply.target_platform = (tl_platform_t)(gen_rnd(g) % TL_PLATFORM__COUNT);
        break;
    case TL_EV_TRANSCRIPT_SEGMENT:
        ev.u.transcript.call_id = gen_str(g);
        ev.u.transcript.start_ms = gen_long(g);
        ev.u.transcript.end_ms = gen_long(g);
        ev.u.transcript.speaker = (tl_speaker_t)(gen_rnd(g) % (TL_SPEAKER_UNKNOWN + 1));
        ev.u.transcript.text = gen_str(g);
        ev.u.transcript.confidence = gen_float(g);
        ev.u.transcript.caller_number = gen_opt(g);
        break;
    case TL_EV_BEHAVIOR_TRACKED:
        ev.u.behavior = (tl_behavior_tracked_t){ gen_str(g), gen_str(g), gen_opt(g) };
        break;
    case TL_EV_FIELD_ASSERTED:
        ev.u.field = (tl_field_asserted_t){ gen_str(g), gen_str(g) };
        break;
    case TL_EV_IDENTITY_LINKED:
        ev.u.link.linked_customer_id = gen_str(g);
        ev.u.link.platform = (tl_platform_t)(gen_rnd(g) % TL_PLATFORM__COUNT);
        ev.u.link.platform_user_id = gen_str(g);
        ev.u.link.evidence = (tl_evidence_t)(gen_rnd(g) % (TL_EVIDENCE_OTHER + 1));
        ev.u.link.evidence_value = gen_opt(g);
        break;
    case TL_EV_IDENTITY_UNLINKED:
        ev.u.unlink.linked_customer_id = gen_str(g);
        ev.u.unlink.platform = (tl_platform_t)(gen_rnd(g) % TL_PLATFORM__COUNT);
        ev.u.unlink.platform_user_id = gen_str(g);
        ev.u.unlink.reason = gen_str(g);
        break;
    case TL_EV_CONVERSATION_ASSIGNED:
        ev.u.assign = (tl_conversation_assigned_t){ gen_str(g), gen_opt(g), gen_opt(g) };
        break;
    case TL_EV_CONVERSATION_TAGGED:
        ev.u.tag.conversation_id = gen_str(g);
        ev.u.tag.added = gen_strs(g, g->added);
        ev.u.tag.removed = gen_strs(g, g->removed);
        break;
    case TL_EV_CONVERSATION_CLOSED:
        ev.u.close = (tl_conversation_closed_t){ gen_str(g), gen_str(g), gen_opt(g) };
        break;
    default:
        ev.u.resolve = (tl_conflict_resolved_t){ gen_str(g), gen_str(g), gen_str(g), gen_str(g) };
    }
    return ev;
}

/* a and b the same, float bits included (event_eq compares with ==, which
 * NaN never passes), and every decoded string NUL-terminated as the
 * walker's are. */
static void event_same(const tl_event_t *a, const tl_event_t *b) {
    char why[256];
    const char *d = tl_event_diff(a, b, TL_EVCMP_BITS, why, sizeof why);
    ck_assert_msg(d == NULL, "events differ: %s", d);
    const tl_str_t *env[] = { &b->event_id, &b->tenant_id, &b->customer_id, &b->platform_user_id,
                              &b->idempotency_key, &b->trace_id };
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        ck_assert(env[i]->ptr != NULL && env[i]->ptr[env[i]->len] == 0);
}

/* Decodes data[0..len) with the direct decoder (on direct) and the general
 * path (on general) and asserts the same outcome: the same error and
 * message, or the same event.  Returns the error. */
static int decode_both(tl_codec_t *direct, tl_codec_t *general, const void *data, size_t len,
                       tl_event_t *out) {
    /* An exact-size copy, so that ASan sees any read past the end. */
    char *exact = malloc(len ? len : 1);
    memcpy(exact, data, len);
    tl_event_t d, g;
    memset(&d, 0xa5, sizeof d);
    memset(&g, 0xa5, sizeof g);
    int rd = tl_codec_decode_event(direct, exact, len, &d);
    int rg = tl_codec_decode_event_general(general, exact, len, &g);
    ck_assert_msg(rd == rg, "direct %s (%s), general %s (%s)", tl_err_name(rd),
                  tl_codec_errmsg(direct), tl_err_name(rg), tl_codec_errmsg(general));
    ck_assert_str_eq(tl_codec_errmsg(direct), tl_codec_errmsg(general));
    if (rd == TL_OK) {
        event_same(&d, &g);
        if (out) *out = d;
    } else {
        ck_assert_msg(is_decode_error(rd), "%s", tl_err_name(rd));
        /* On failure *ev is unchanged. */
        unsigned char untouched[sizeof d];
        memset(untouched, 0xa5, sizeof untouched);
        ck_assert(memcmp(&d, untouched, sizeof d) == 0);
    }
    free(exact);
    return rd;
}

START_TEST(codec_direct_decoder_matches_general_path) {
    tl_codec_t *enc = event_codec(), *direct = event_codec(), *general = event_codec(),
               *mixed = event_codec();
    gen_t g = { .seed = 0x2545f4914f6cdd1dULL, .cap = 1 << 20 };
    g.pool = malloc(g.cap);
    tl_buf_t out, in;
    tl_buf_init(&out);
    tl_buf_init(&in);
    size_t kinds[TL_EV__COUNT] = { 0 };
    for (int i = 0; i < 2200; i++) {
        tl_event_t ev = gen_event(&g, (tl_event_kind_t)(i % TL_EV__COUNT)), got, m;
        tl_buf_reset(&out);
        ck_assert_int_eq(tl_codec_encode_event(enc, &ev, &out), TL_OK);
        ck_assert_int_eq(decode_both(direct, general, out.data, out.len, &got), TL_OK);
        event_same(&ev, &got);
        kinds[got.kind]++;
        /* One codec taking both paths by turns shares its arena and
         * arrays between them. */
        int rc = i % 2 ? tl_codec_decode_event(mixed, out.data, out.len, &m)
                       : tl_codec_decode_event_general(mixed, out.data, out.len, &m);
        ck_assert_int_eq(rc, TL_OK);
        event_same(&ev, &m);

        /* Every prefix of short records, a sample of long ones'. */
        size_t step = out.len < 400 ? 1 : out.len / 97;
        for (size_t n = 0; n < out.len; n += step)
            ck_assert_int_ne(decode_both(direct, general, out.data, n, NULL), TL_OK);
        /* Damage: bytes overwritten, bits flipped, bytes inserted or
         * dropped (some of these still decode: then the events agree). */
        for (int k = 0; k < 12; k++) {
            tl_buf_reset(&in);
            ck_assert_int_eq(tl_buf_append(&in, out.data, out.len), TL_OK);
            for (int e = 0, edits = 1 + (int)(gen_rnd(&g) % 3); e < edits; e++) {
                size_t at = TL_CODEC_HEADER_SIZE + gen_rnd(&g) % (in.len - TL_CODEC_HEADER_SIZE);
                switch (gen_rnd(&g) % 4) {
                case 0: in.data[at] = (char)gen_rnd(&g); break;
                case 1: in.data[at] ^= (char)(1u << (gen_rnd(&g) % 8)); break;
                case 2:
                    if (in.len > TL_CODEC_HEADER_SIZE + 1) {
                        memmove(in.data + at, in.data + at + 1, in.len - at - 1);
                        in.len--;
                    }
                    break;
                default:
                    ck_assert_int_eq(tl_buf_reserve(&in, 1), TL_OK);
                    memmove(in.data + at + 1, in.data + at, in.len - at);
                    in.data[at] = (char)gen_rnd(&g);
                    in.len++;
                }
            }
            decode_both(direct, general, in.data, in.len, NULL);
        }
    }
    for (int k = 0; k < TL_EV__COUNT; k++) ck_assert_uint_gt(kinds[k], 0);
    tl_buf_close(&out);
    tl_buf_close(&in);
    free(g.pool);
    tl_codec_free(enc);
    tl_codec_free(direct);
    tl_codec_free(general);
    tl_codec_free(mixed);
}
END_TEST

START_TEST(codec_direct_decoder_refuses_hostile_datums_as_general_path_does) {
    tl_codec_t *direct = event_codec(), *general = event_codec();
    /* The envelope with every string empty, platform WEB, times 0. */
#define ENV "\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
        int err;
    } cases[] = {
#define CASE(what, lit, err) { what, lit, sizeof(lit) - 1, err }
        CASE("empty FieldAsserted", ENV "\x08\x00\x00", TL_OK),
        CASE("payload branch 11", ENV "\x16", TL_ECORRUPT),
        CASE("negative payload branch", ENV "\x01", TL_ECORRUPT),
        CASE("platform 9", "\x00\x00\x00\x12", TL_ECORRUPT),
        CASE("negative string length", "\x01", TL_ECORRUPT),
        CASE("string past the end", "\x02", TL_ETRUNCATED),
        CASE("huge string length", "\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01", TL_ETRUNCATED),
        CASE("varint over 64 bits", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", TL_ECORRUPT),
        CASE("varint of 11 bytes", "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", TL_ECORRUPT),
        CASE("attachments that cannot fit", ENV "\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00", TL_ETRUNCATED),
        CASE("attachment count INT64_MIN", ENV "\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
             TL_ECORRUPT),
        CASE("negative block size", ENV "\x00\x00\x01\x01", TL_ECORRUPT),
        CASE("attachments in a sized block", ENV "\x00\x00\x01\x0a\x00\x00\x00\x02\x02\x00\x00\x00\x00",
             TL_OK),
        CASE("attachment width branch 2", ENV "\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00\x00", TL_ECORRUPT),
        CASE("attachment width over INT32_MAX",
             ENV "\x00\x00\x02\x00\x00\x00\x02\x80\x80\x80\x80\x10\x00\x00\x00\x00", TL_ECORRUPT),
        CASE("entry_point branch 2", ENV "\x00\x00\x00\x04\x00", TL_ECORRUPT),
        CASE("target_platform 9", ENV "\x02\x00\x00\x00\x00\x12", TL_ECORRUPT),
        CASE("speaker 3", ENV "\x04\x00\x00\x00\x06", TL_ECORRUPT),
        CASE("confidence cut short", ENV "\x04\x00\x00\x00\x02\x00\x00\x00", TL_ETRUNCATED),
        CASE("evidence -1", ENV "\x0a\x00\x00\x00\x01", TL_ECORRUPT),
        CASE("tags that cannot fit", ENV "\x10\x00\x08\x00\x00", TL_ETRUNCATED),
        CASE("tag string past the end", ENV "\x10\x00\x02\x04\x00", TL_ETRUNCATED),
        CASE("tags in two blocks", ENV "\x10\x00\x02\x00\x02\x02x\x00\x00", TL_OK),
        CASE("trailing byte", ENV "\x08\x00\x00\x00", TL_ECORRUPT),
#undef CASE
    };
#undef ENV
    tl_buf_t in;
    tl_buf_init(&in);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        frame(direct, cases[i].bytes, cases[i].n, &in);
        int rc = decode_both(direct, general, in.data, in.len, NULL);
        ck_assert_msg(rc == cases[i].err, "%s: %s, want %s (%s)", cases[i].what, tl_err_name(rc),
                      tl_err_name(cases[i].err), tl_codec_errmsg(direct));
    }
    /* The framing: short, bad marker, unknown fingerprint. */
    ck_assert_int_eq(decode_both(direct, general, "", 0, NULL), TL_ETRUNCATED);
    ck_assert_int_eq(decode_both(direct, general, "\xc3\x01\x00", 3, NULL), TL_ETRUNCATED);
    ck_assert_int_eq(decode_both(direct, general, "\xc3\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00", 11, NULL),
                     TL_EBADMAGIC);
    ck_assert_int_eq(decode_both(direct, general, "\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00", 11, NULL),
                     TL_EUNKNOWNSCHEMA);
    tl_buf_close(&in);
    tl_codec_free(direct);
    tl_codec_free(general);
}
END_TEST

Suite *tl_codec_suite(void) {
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, codec_roundtrip_every_event_kind);
    tcase_add_test(tc, codec_roundtrip_on_one_codec_reuses_it);
    tcase_add_test(tc, codec_reuses_arrays_as_they_grow_and_shrink);
    tcase_add_test(tc, codec_shorter_array_after_longer_stays_within_arena);
    tcase_add_test(tc, codec_direct_decode_leaves_the_encoders_value_alone);
    tcase_add_test(tc, codec_encoding_starts_with_marker_and_schema_fingerprint);
    tcase_add_test(tc, codec_event_enums_match_event_h);
    tcase_add_test(tc, codec_encode_rejects_bad_event_and_leaves_output);
    tcase_add_test(tc, codec_generic_layer_carries_a_change_record);
    tcase_add_test(tc, codec_write_rejects_incomplete_value);
    tcase_add_test(tc, codec_write_grows_output_for_large_records);
    tcase_add_test(tc, codec_reads_record_written_by_fastavro);
    tcase_add_test(tc, codec_resolves_v1_writer_against_v2_reader);
    tcase_add_test(tc, codec_rejects_incompatible_writer_schemas);
    tcase_add_test(tc, codec_event_schema_resolves_against_itself);
    tcase_add_test(tc, codec_resolves_current_event_writer_against_evolved_reader);
    tcase_add_test(tc, codec_event_reader_skips_fields_of_newer_writer);
    tcase_add_test(tc, codec_resolves_unions_and_promotions);
    tcase_add_test(tc, codec_applies_defaults_of_named_and_compound_types);
    tcase_add_test(tc, codec_rejects_unknown_fingerprint);
    tcase_add_test(tc, codec_rejects_bad_magic);
    tcase_add_test(tc, codec_truncated_at_every_length_is_truncated);
    tcase_add_test(tc, codec_trailing_garbage_is_corrupt);
    tcase_add_test(tc, codec_bit_flips_never_crash);
    tcase_add_test(tc, codec_random_input_never_crashes);
    tcase_add_test(tc, codec_rejects_hostile_lengths_counts_and_indexes);
    tcase_add_test(tc, codec_deep_recursion_is_too_big_not_a_stack_overflow);
    tcase_add_test(tc, codec_new_rejects_bad_schemas);
    tcase_add_test(tc, codec_direct_decoder_matches_general_path);
    tcase_add_test(tc, codec_direct_decoder_refuses_hostile_datums_as_general_path_does);
    suite_add_tcase(s, tc);
    return s;
}
