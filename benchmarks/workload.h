/*
 * workload.h -- the message stream the benchmarks share.
 *
 * A fixed pseudo-random stream of realistic MessageReceived events: Chinese
 * customer-service texts of a few to ~300 bytes, a platform mix (web, app,
 * mini-program, WeChat, Douyin), an image on one message in ten, an entry
 * point on one in five, device ids on mobile platforms, client clocks a few
 * seconds behind (one in fifty up to ten minutes), and WeChat resending 3%
 * of its messages.  The same seed gives the same stream on every run, so
 * figures compare across runs and machines.
 */
#ifndef TL_BENCH_WORKLOAD_H
#define TL_BENCH_WORKLOAD_H

#include <stdint.h>

#include "event.h"
#include "uuid.h"

#define TL_WORKLOAD_MAX_CUSTOMERS 100000

typedef struct tl_workload {
    int customers;
    int step_ms;                    /* average gap between events is step_ms / 2 */
    const char *id_prefix;          /* event ids: UUIDv5(id_prefix, index) */
    int64_t clock;
    int index;
    char (*customer_ids)[TL_UUID_STRLEN + 1];
    int64_t *last_wechat_msg;
    /* storage the event returned by tl_workload_next points into */
    char event_id[TL_UUID_STRLEN + 1], key[64], puid[32], device[32];
} tl_workload_t;

/* Prepares a stream over `customers` customers.  Returns 0, or -1 when out
 * of memory or customers is out of range. */
int tl_workload_init(tl_workload_t *w, int customers, int step_ms, const char *id_prefix);
void tl_workload_close(tl_workload_t *w);

/* The next event; its strings point into w (valid until the next call).
 * Cannot fail. */
void tl_workload_next(tl_workload_t *w, tl_event_t *ev);

/* Monotonic seconds, for timing. */
double tl_workload_now(void);

#endif
