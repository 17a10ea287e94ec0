/*
 * metrics.h -- process-wide counters, rendered in Prometheus text format at
 * GET /metrics.
 *
 * A fixed X-macro list rather than a registry: every counter threadline has
 * is visible in one place, costs one relaxed atomic add, and cannot be
 * misspelt at the call site.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "buf.h"

/* XX(name, help) */
#define TL_METRICS_MAP(XX)                                                    \
    XX(ingest_accepted_total, "events acknowledged by the broker and answered 202") \
    XX(ingest_duplicate_total, "ingest requests answered from the recent-key cache") \
    XX(ingest_rejected_total, "ingest requests refused with a 4xx")            \
    XX(ingest_throttled_total, "ingest requests refused with 429 (platform over its quota)") \
    XX(ingest_unavailable_total, "ingest requests answered 503 (broker did not acknowledge)") \
    XX(fold_events_total, "events folded")                                    \
    XX(fold_duplicates_total, "events recognised as duplicates by idempotency key") \
    XX(fold_dlq_total, "events sent to the dead-letter topic")                \
    XX(fold_transactions_total, "fold transactions committed")                \
    XX(fold_aborts_total, "fold transactions aborted")                        \
    XX(fold_evictions_total, "idle customer states dropped from memory")      \
    XX(fold_restores_total, "evicted customer states read back from the state topic") \
    XX(projection_rows_total, "change records applied to PostgreSQL")         \
    XX(projection_batches_total, "projection transactions committed")         \
    XX(projection_errors_total, "projection batches rolled back and retried") \
    XX(identity_cache_hits_total, "identity lookups answered from the resolver cache") \
    XX(identity_cache_misses_total, "identity lookups sent to PostgreSQL")    \
    XX(identity_degraded_total, "identity lookups answered with the deterministic id because PostgreSQL was unreachable") \
    XX(identity_rows_total, "identity index rows written by the identity writer") \
    XX(ingest_links_total, "IdentityLinked events ingest produced for a login or a unionid") \
    XX(http_requests_total, "HTTP requests answered")

typedef enum tl_metric {
#define TL_METRIC_ENUM(name, help) TL_M_##name,
    TL_METRICS_MAP(TL_METRIC_ENUM)
#undef TL_METRIC_ENUM
    TL_M__COUNT
} tl_metric_t;

extern _Atomic uint64_t tl_metrics[TL_M__COUNT];

/* Adds n to a counter.  Any thread; cannot fail. */
static inline void tl_metric_add(tl_metric_t m, uint64_t n) {
    atomic_fetch_add_explicit(&tl_metrics[m], n, memory_order_relaxed);
}

/* Appends every counter in Prometheus text format (prefix threadline_). */
int tl_metrics_render(tl_buf_t *out);

#endif
