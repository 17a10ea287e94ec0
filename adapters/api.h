/*
 * api.h -- the canonical JSON adapter, for third-party connectors.
 *
 * POST /v1/ingest/api takes the event model of schemas/event.avsc as JSON,
 * so a connector for a platform threadline has no adapter for can still
 * write well-formed events:
 *
 *   {"tenant_id": "acme", "platform": "douyin", "platform_user_id": "u-1",
 *    "message_id": "dm-77", "occurred_at": 1700000000000,
 *    "customer_id": "<uuid>",            (optional: else derived)
 *    "payload": {"type": "MessageReceived", "text": "...", ...}}
 *
 * `platform` is any platform slug but "agent" and "system" (those events
 * come from agents and the engine, not from connectors).  The payload
 * fields are those of the Avro record named by "type", with the same names;
 * optional fields may be omitted.  The idempotency key is
 * "<platform>:<message_id>", exactly as a native adapter would make it, so
 * a message ingested both ways is still applied once.
 *
 * Links by evidence.  An IdentityLinked may leave out `customer_id` and
 * `payload.linked_customer_id`.  Then the survivor is the customer the
 * evidence belongs to -- for UNIONID, VERIFIED_PHONE and LOGIN with an
 * evidence_value, the identity ("unionid" | "phone" | "account", value) --
 * and the absorbed customer is the one (payload.platform,
 * payload.platform_user_id) belongs to.  The adapter fills both with the
 * deterministic ids; ingest replaces them with what the identity index
 * resolves (engine/identity.h).  This is how a connector tells threadline
 * that an Official Account follower has a given unionid.
 */
#ifndef TL_API_ADAPTER_H
#define TL_API_ADAPTER_H

#include "adapter.h"

/* Parses body into ev (strings point into out).  Returns 0, or a 4xx with
 * pb filled (field names use dots: "payload.text").  Always call
 * tl_adapter_out_close(out).  Any thread. */
int tl_api_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                 tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb);

#endif
