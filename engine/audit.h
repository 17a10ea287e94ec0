/*
 * audit.h -- what the log proves about one customer: its state at a moment
 * with the provenance of every field (`threadline state`), the account of
 * everything that happened to it (`threadline audit`), and everything held
 * about it (`threadline export`, a data-subject access request).
 *
 * Shape.  A tl_audit_t watches a replay (tl_audit_observe is a
 * tl_replay_cb) restricted to a set of customers and keeps one record per
 * folded event: the event rendered as JSON once (the codec's storage is
 * reused by the next record), who acted (the customer on a channel, an
 * agent, or the system handing values over between linked customers), and
 * what the fold did (tl_fold_result_t: versions, conversation, duplicate,
 * ignored and why, every field/conflict/link change).  The renderers build
 * jansson documents from those records and the fold's final states, so
 * text output and --json show the same facts.
 *
 * Linked identities live on other keys and partitions: tl_audit_linked
 * names every customer the watched ones were linked with (IdentityLinked /
 * IdentityUnlinked events and the fold's link changes), so a caller
 * replays again with those added until the set stops growing.
 *
 * Threads: a tl_audit_t belongs to one thread.
 */
#ifndef TL_AUDIT_H
#define TL_AUDIT_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "event.h"
#include "fold.h"

typedef struct tl_audit tl_audit_t;

/* An empty audit.  NULL on allocation failure.  Any thread. */
tl_audit_t *tl_audit_new(void);

/* Frees it.  NULL does nothing. */
void tl_audit_free(tl_audit_t *a);

/* Forgets every record (before a replay with a larger customer set).
 * Cannot fail. */
void tl_audit_clear(tl_audit_t *a);

/* The replay callback (opaque = the audit): records one folded event.
 * TL_ENOMEM.  Owner thread. */
int tl_audit_observe(void *a, const tl_event_t *ev, const tl_fold_result_t *res,
                     int32_t partition, int64_t offset);

/* Number of events recorded.  Cannot fail. */
size_t tl_audit_count(const tl_audit_t *a);

/* Customer ids (NUL-terminated, owned by a, valid until its next
 * non-const call) that the recorded events link with, the watched ones
 * included; *n gets the count.  Cannot fail. */
const char *const *tl_audit_linked(const tl_audit_t *a, size_t *n);

/* The tenant of the first event of customer, or NULL if none was seen. */
const char *tl_audit_tenant(const tl_audit_t *a, const char *customer);

/* {"tenant_id", "customer_id", "as_of", "version", "last_event_ts",
 * "merged_into", "state_sha256", "fields": [{name, key, value, provenance:
 * {event_id, platform, actor, role, effective_ts, customer_version, via},
 * history}], "conflicts", "links", "conversations"} for customer, whose
 * state fold holds.  as_of_ms TL_REPLAY_NO_LIMIT (INT64_MAX): "as_of" null.
 * NULL with TL_ENOTFOUND in *err when fold holds no state for it, or
 * TL_ENOMEM.  Owner thread. */
json_t *tl_audit_state(const tl_audit_t *a, tl_fold_t *fold, const char *customer,
                       int64_t as_of_ms, int *err);

/* The chronological account: {"customer_id" or "conversation_id",
 * "events": [record...]} where a record is {position, event_id, kind,
 * platform, customer_id, actor, role, occurred_at, received_at,
 * effective_ts, customer_version, conversation_id, conversation_version,
 * conversation_opened, duplicate, ignored, changes, summary}.  Records are
 * in effective_ts order (ties: log order).  conversation NULL: every
 * recorded event of customer (NULL: of all watched customers); else only
 * that conversation's.  NULL on allocation failure. */
json_t *tl_audit_account(const tl_audit_t *a, const char *customer, const char *conversation);

/* The access request for customer and everyone linked with it:
 * {"customer_id", "linked_customers", "customers": [{customer_id,
 * tenant_id, identities, state, conversations, events: [event...]}]}, the
 * events complete, as connectors sent them.  NULL with *err set
 * (TL_ENOTFOUND: no state for customer; TL_ENOMEM). */
json_t *tl_audit_export(const tl_audit_t *a, tl_fold_t *fold, const char *customer, int *err);

/* The event as JSON: the envelope and its payload by name.  New
 * reference; NULL on allocation failure.  Any thread. */
json_t *tl_audit_event_json(const tl_event_t *ev);

/* Text renderings for a terminal of tl_audit_state and tl_audit_account
 * documents.  Cannot fail (writes what it can). */
void tl_audit_print_state(FILE *out, const json_t *state);
void tl_audit_print_account(FILE *out, const json_t *account);

#endif
