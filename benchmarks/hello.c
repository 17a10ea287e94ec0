/*
 * hello.c -- the ceiling for bench_ingest: threadline's HTTP front (h2o on a
 * libuv loop, the same tl_http_* glue as `threadline serve`) with nothing
 * behind it.
 *
 *   hello HOST:PORT
 *
 * Every POST /v1/ingest/{platform} answers 200 "ok" at once, without
 * looking at the body, and GET /readyz answers 200 "ok", so bench_ingest
 * drives it with exactly the requests it sends the real gateway: the
 * difference between the two is what ingest itself costs (adapters,
 * encoding, the producer and the broker's acknowledgement).  Runs until
 * SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "http.h"

static void answer_ok(void *ud, h2o_req_t *req, const tl_http_params_t *params) {
    (void)ud;
    (void)params;
    tl_http_send(req, 200, "text/plain", "ok", 2);
}

static void on_signal(uv_signal_t *h, int signum) {
    (void)signum;
    tl_http_close(h->data);
    uv_stop(h->loop);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: hello HOST:PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    tl_http_t *h = tl_http_new(&loop, 1 << 20);
    if (!h || tl_http_route(h, "POST", "/v1/ingest/{}", answer_ok, NULL) ||
        tl_http_route(h, "GET", "/readyz", answer_ok, NULL) || tl_http_listen(h, argv[1])) {
        fprintf(stderr, "hello: cannot serve on %s\n", argv[1]);
        return 1;
    }
    uv_signal_t sigterm, sigint;
    uv_signal_init(&loop, &sigterm);
    uv_signal_init(&loop, &sigint);
    sigterm.data = sigint.data = h;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* Idle keep-alive connections keep h2o timers on the loop: give the
     * close callbacks a few turns and exit. */
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    for (int i = 0; i < 8; i++) uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
