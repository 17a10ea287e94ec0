/*
 * metrics.c -- counters (see metrics.h).
 */
#include <inttypes.h>

#include "error.h"
#include "metrics.h"

_Atomic uint64_t tl_metrics[TL_M__COUNT];

int tl_metrics_render(tl_buf_t *out) {
    int rc = TL_OK;
#define TL_METRIC_RENDER(name, help)                                          \
    rc |= tl_buf_printf(out, "# HELP threadline_" #name " " help "\n"         \
                        "# TYPE threadline_" #name " counter\n"               \
                        "threadline_" #name " %" PRIu64 "\n",                 \
                        atomic_load_explicit(&tl_metrics[TL_M_##name], memory_order_relaxed));
    TL_METRICS_MAP(TL_METRIC_RENDER)
#undef TL_METRIC_RENDER
    return rc ? TL_ENOMEM : TL_OK;
}
