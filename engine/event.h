/*
 * event.h -- the canonical event, as C sees it.
 *
 * schemas/event.avsc is the contract; this struct is its in-memory mirror so
 * that the fold, the adapters and the projections work with plain C fields
 * instead of walking avro_value_t trees.  The struct never owns memory:
 * every tl_str_t points into storage owned by someone else (the codec's
 * decode buffers, an adapter's request body, a test's literals), and the
 * owner says how long it stays valid.  That is what lets the codec decode
 * without allocating per record.
 *
 * Optional Avro fields (["null", T]) are tl_str_t with ptr == NULL, or an
 * int with the matching has_ flag clear.
 */
#ifndef TL_EVENT_H
#define TL_EVENT_H

#include <stddef.h>
#include <stdint.h>

/* A borrowed byte string; not NUL-terminated in general.  ptr == NULL means
 * "absent" (Avro null); ptr != NULL && len == 0 is the empty string. */
typedef struct tl_str {
    const char *ptr;
    size_t len;
} tl_str_t;

#define TL_STR(lit) ((tl_str_t){ (lit), sizeof(lit) - 1 })
#define TL_STR_NULL ((tl_str_t){ NULL, 0 })

/* Order matches the symbols of threadline.Platform in event.avsc. */
#define TL_PLATFORM_MAP(XX)                                                   \
    XX(WEB, "web")                                                            \
    XX(APP, "app")                                                            \
    XX(MINI_PROGRAM, "mini_program")                                          \
    XX(WECHAT, "wechat")                                                      \
    XX(DOUYIN, "douyin")                                                      \
    XX(PHONE, "phone")                                                        \
    XX(API, "api")                                                            \
    XX(AGENT, "agent")                                                        \
    XX(SYSTEM, "system")

typedef enum tl_platform {
#define TL_PLATFORM_ENUM(name, slug) TL_PLATFORM_##name,
    TL_PLATFORM_MAP(TL_PLATFORM_ENUM)
#undef TL_PLATFORM_ENUM
    TL_PLATFORM__COUNT
} tl_platform_t;

/* Order matches the branches of Event.payload in event.avsc. */
#define TL_EVENT_KIND_MAP(XX)                                                 \
    XX(MESSAGE_RECEIVED, "MessageReceived")                                   \
    XX(AGENT_REPLIED, "AgentReplied")                                         \
    XX(TRANSCRIPT_SEGMENT, "TranscriptSegment")                               \
    XX(BEHAVIOR_TRACKED, "BehaviorTracked")                                   \
    XX(FIELD_ASSERTED, "FieldAsserted")                                       \
    XX(IDENTITY_LINKED, "IdentityLinked")                                     \
    XX(IDENTITY_UNLINKED, "IdentityUnlinked")                                 \
    XX(CONVERSATION_ASSIGNED, "ConversationAssigned")                         \
    XX(CONVERSATION_TAGGED, "ConversationTagged")                             \
    XX(CONVERSATION_CLOSED, "ConversationClosed")                             \
    XX(CONFLICT_RESOLVED, "ConflictResolved")

typedef enum tl_event_kind {
#define TL_EVENT_KIND_ENUM(name, avro) TL_EV_##name,
    TL_EVENT_KIND_MAP(TL_EVENT_KIND_ENUM)
#undef TL_EVENT_KIND_ENUM
    TL_EV__COUNT
} tl_event_kind_t;

typedef enum tl_speaker {
    TL_SPEAKER_CUSTOMER, TL_SPEAKER_AGENT, TL_SPEAKER_UNKNOWN
} tl_speaker_t;

typedef enum tl_evidence {
    TL_EVIDENCE_UNIONID, TL_EVIDENCE_VERIFIED_PHONE, TL_EVIDENCE_LOGIN,
    TL_EVIDENCE_AGENT, TL_EVIDENCE_OTHER
} tl_evidence_t;

typedef struct tl_attachment {
    tl_str_t url;
    tl_str_t mime;
    int64_t bytes;
    int32_t width, height;      /* meaningful only when has_width/has_height */
    int has_width, has_height;
} tl_attachment_t;

/* An array of borrowed elements. */
typedef struct tl_attachments { const tl_attachment_t *v; size_t n; } tl_attachments_t;
typedef struct tl_strs { const tl_str_t *v; size_t n; } tl_strs_t;

typedef struct tl_message_received {
    tl_str_t text;                      /* pii */
    tl_attachments_t attachments;
    tl_str_t entry_point;               /* optional */
    tl_str_t device_id;                 /* optional */
} tl_message_received_t;

typedef struct tl_agent_replied {
    tl_str_t agent_id;
    tl_str_t conversation_id;           /* optional: null = current */
    tl_str_t text;                      /* pii */
    tl_attachments_t attachments;
    tl_platform_t target_platform;
} tl_agent_replied_t;

typedef struct tl_transcript_segment {
    tl_str_t call_id;
    int64_t start_ms, end_ms;
    tl_speaker_t speaker;
    tl_str_t text;                      /* pii */
    float confidence;
    tl_str_t caller_number;             /* optional, pii */
} tl_transcript_segment_t;

typedef struct tl_behavior_tracked {
    tl_str_t page;
    tl_str_t action;
    tl_str_t device_id;                 /* optional */
} tl_behavior_tracked_t;

typedef struct tl_field_asserted {
    tl_str_t field;
    tl_str_t value;                     /* pii */
} tl_field_asserted_t;

typedef struct tl_identity_linked {
    tl_str_t linked_customer_id;
    tl_platform_t platform;
    tl_str_t platform_user_id;          /* pii */
    tl_evidence_t evidence;
    tl_str_t evidence_value;            /* optional, pii */
} tl_identity_linked_t;

typedef struct tl_identity_unlinked {
    tl_str_t linked_customer_id;
    tl_platform_t platform;
    tl_str_t platform_user_id;          /* pii */
    tl_str_t reason;
} tl_identity_unlinked_t;

typedef struct tl_conversation_assigned {
    tl_str_t conversation_id;
    tl_str_t agent_id;                  /* optional */
    tl_str_t team_id;                   /* optional */
} tl_conversation_assigned_t;

typedef struct tl_conversation_tagged {
    tl_str_t conversation_id;
    tl_strs_t added;
    tl_strs_t removed;
} tl_conversation_tagged_t;

typedef struct tl_conversation_closed {
    tl_str_t conversation_id;
    tl_str_t reason;
    tl_str_t closed_by;                 /* optional */
} tl_conversation_closed_t;

typedef struct tl_conflict_resolved {
    tl_str_t conflict_id;
    tl_str_t field;
    tl_str_t chosen_value;              /* pii */
    tl_str_t agent_id;
} tl_conflict_resolved_t;

typedef struct tl_event {
    tl_str_t event_id;
    tl_str_t tenant_id;
    tl_str_t customer_id;
    tl_platform_t platform;
    tl_str_t platform_user_id;          /* pii */
    tl_str_t idempotency_key;
    int64_t occurred_at;                /* ms since epoch, client clock */
    int64_t received_at;                /* ms since epoch, gateway clock */
    tl_str_t trace_id;
    tl_event_kind_t kind;
    union {
        tl_message_received_t message;
        tl_agent_replied_t reply;
        tl_transcript_segment_t transcript;
        tl_behavior_tracked_t behavior;
        tl_field_asserted_t field;
        tl_identity_linked_t link;
        tl_identity_unlinked_t unlink;
        tl_conversation_assigned_t assign;
        tl_conversation_tagged_t tag;
        tl_conversation_closed_t close;
        tl_conflict_resolved_t resolve;
    } u;
} tl_event_t;

/* Lower-case slug of a platform ("mini_program"), as used in URLs and in
 * schemas/platforms/.  Static string; "unknown" out of range.  Cannot fail. */
const char *tl_platform_slug(tl_platform_t p);

/* Parses a slug; returns 0 and sets *out, or TL_ENOTFOUND.  Any thread. */
int tl_platform_from_slug(const char *s, size_t len, tl_platform_t *out);

/* Avro branch name of a kind ("MessageReceived").  Static; cannot fail. */
const char *tl_event_kind_name(tl_event_kind_t k);

#endif
