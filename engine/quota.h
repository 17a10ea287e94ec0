/*
 * quota.h -- per-platform ingest quotas with priorities.
 *
 * A promotion day on one platform must not starve the others.  Each
 * platform may get a rate (events per second, a token bucket holding one
 * second of burst) and a priority.  Optionally the gateway as a whole gets a
 * capacity; as that shared bucket drains, lower priorities are refused
 * first: low platforms need it more than half full, normal ones more than a
 * fifth, high ones only need a token.  A refused request is told when to
 * come back (429 with Retry-After); nothing is queued, so a refusal costs
 * nothing.
 *
 * Configuration text (flag --quotas): comma-separated
 *   <platform>=<events per second>[:high|:normal|:low]
 * e.g. "douyin=500:low,web=2000:high".  Unlisted platforms have no rate of
 * their own and normal priority.  --ingest-capacity sets the shared rate
 * (0: none).
 */
#ifndef TL_QUOTA_H
#define TL_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef enum tl_priority { TL_PRIORITY_LOW, TL_PRIORITY_NORMAL, TL_PRIORITY_HIGH } tl_priority_t;

typedef struct tl_bucket {
    double rate;        /* tokens per second; 0 = unlimited */
    double tokens;
    int64_t at_us;      /* when tokens was computed */
} tl_bucket_t;

typedef struct tl_quota {
    tl_bucket_t platform[TL_PLATFORM__COUNT];
    tl_priority_t priority[TL_PLATFORM__COUNT];
    tl_bucket_t total;
} tl_quota_t;

/* Parses the configuration; capacity is the shared rate (0: none).  Returns
 * 0, or TL_ECONFIG with a sentence naming the bad item in err.  q is only
 * written on success.  Any thread. */
int tl_quota_init(tl_quota_t *q, const char *spec, int64_t capacity, char *err, size_t errlen);

/* Takes one event's worth of quota for platform at time now_us (monotonic
 * microseconds).  Returns 0 when admitted, else the seconds after which to
 * retry (>= 1) and takes nothing.  One thread (the loop); cannot fail. */
int tl_quota_take(tl_quota_t *q, tl_platform_t platform, int64_t now_us);

#endif
