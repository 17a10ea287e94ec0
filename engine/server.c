/*
 * server.c -- the serve composition (see server.h).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "rest.h"
#include "auth.h"
#include "stream.h"
#include "writes.h"
#include "error.h"
#include "fold_worker.h"
#include "http.h"
#include "identity.h"
#include "ingest.h"
#include "kafka.h"
#include "log.h"
#include "projection.h"
#include "server.h"

typedef struct server {
    const tl_config_t *cfg;
    tl_kafka_t *kafka;
    uv_work_t topics;           /* ensures the topics, off the loop */
    int topics_rc, topics_pending;
    atomic_int stopping;
    tl_projection_t *proj[TL_PLATFORM__COUNT];
    int nproj;
    tl_identity_writer_t *identity;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t watchdog;
    tl_http_t *http;
    tl_ingest_t *ingest;
    tl_rest_t *rest;
    tl_auth_t *auth;
    tl_writes_t *writes;
    tl_stream_t *stream;
    tl_fold_worker_t *fold;
    int exit_status;
} server_t;

static void stop_loop(server_t *s) {
    atomic_store(&s->stopping, 1);
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    uv_timer_stop(&s->watchdog);
    tl_http_close(s->http);
    uv_stop(&s->loop);
}

static void on_signal(uv_signal_t *h, int signum) {
    tl_info("serve", "signal %d: stopping", signum);
    stop_loop(h->data);
}

static void on_watchdog(uv_timer_t *h) {
    server_t *s = h->data;
    if (s->fold && tl_fold_worker_failed(s->fold)) {
        tl_error("serve", "the fold worker stopped on a fatal error; exiting so a supervisor restarts us");
        s->exit_status = 1;
        stop_loop(s);
    }
}

/* Thread pool: creates or checks the topics, retrying while Kafka is
 * unreachable.  Serving does not wait for it: until Kafka answers, ingest
 * says 503 and /readyz says not ready, which is what an operator and a
 * load balancer need to see. */
static void topics_work(uv_work_t *w) {
    server_t *s = w->data;
    int warned = 0;
    while (!atomic_load(&s->stopping)) {
        s->topics_rc = tl_kafka_ensure_topics(s->kafka, (int)s->cfg->partitions, 5000);
        if (s->topics_rc != TL_EKAFKA_DOWN) return;
        if (!warned++)
            tl_warn("serve", "Kafka at %s not reachable; serving 503 and retrying",
                    tl_kafka_brokers(s->kafka));
    }
}

/* Loads and frees every profile of --views: a bad one stops the start
 * before anything listens, with an error naming its file and key. */
static int check_profiles(const tl_config_t *cfg) {
    tl_platform_t views[TL_PLATFORM__COUNT];
    size_t n = 0;
    char err[512];
    int rc = tl_projection_parse_views(cfg->views, views, &n, err, sizeof err);
    for (size_t i = 0; i < n && rc == TL_OK; i++) {
        tl_profile_t *pf = NULL;
        rc = tl_profile_load(cfg->profiles, views[i], &pf, err, sizeof err);
        tl_profile_free(pf);
    }
    if (rc) tl_error("serve", "%s", err);
    return rc;
}

/* One projection worker per view of --views.  Every profile is loaded and
 * checked before any worker starts: a bad profile stops the start with an
 * error naming its file and key. */
static int start_projections(server_t *s) {
    tl_platform_t views[TL_PLATFORM__COUNT];
    tl_profile_t *pf[TL_PLATFORM__COUNT] = {0};
    size_t n = 0;
    char err[512];
    int rc = tl_projection_parse_views(s->cfg->views, views, &n, err, sizeof err);
    for (size_t i = 0; i < n && rc == TL_OK; i++)
        rc = tl_profile_load(s->cfg->profiles, views[i], &pf[i], err, sizeof err);
    if (rc) {
        tl_error("serve", "%s", err);
        for (size_t i = 0; i < n; i++) tl_profile_free(pf[i]);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        tl_projection_spec_t spec = {views[i], NULL, NULL, views[i] == TL_PLATFORM_AGENT};
        if (rc == TL_OK) rc = tl_projection_start(s->kafka, s->cfg, &spec, pf[i], &s->proj[s->nproj]);
        else tl_profile_free(pf[i]);
        if (rc == TL_OK) s->nproj++;
    }
    return rc;
}

/* Loop thread: topics exist, so the workers can subscribe. */
static void topics_done(uv_work_t *w, int status) {
    server_t *s = w->data;
    int rc = s->topics_rc;
    s->topics_pending = 0;
    if (status == UV_ECANCELED || atomic_load(&s->stopping)) return;
    if (rc == TL_OK && s->cfg->fold) rc = tl_fold_worker_start(s->kafka, s->cfg, &s->fold);
    if (rc == TL_OK && s->cfg->project) rc = start_projections(s);
    if (rc == TL_OK && s->cfg->identity) rc = tl_identity_writer_start(s->kafka, s->cfg, &s->identity);
    if (rc != TL_OK) {
        tl_error("serve", "cannot start the workers: %s", tl_strerror(rc));
        s->exit_status = 1;
        stop_loop(s);
        return;
    }
    tl_info("serve", "workers started (fold %s, %d projection workers)", s->fold ? "on" : "off",
            s->nproj);
}

int tl_server_run(const tl_config_t *cfg) {
    server_t s = {0};
    tl_kafka_t *kafka = NULL;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    s.cfg = cfg;
    if (cfg->project && (rc = check_profiles(cfg))) goto fail;
    atomic_init(&s.stopping, 0);
    if ((rc = tl_kafka_new(cfg, &kafka))) goto fail;
    s.kafka = kafka;

    uv_loop_init(&s.loop);
    rc = TL_ENOMEM;
    if (!(s.http = tl_http_new(&s.loop, (size_t)cfg->max_body))) goto fail_loop;
    if ((rc = tl_auth_new(cfg, &s.auth))) goto fail_http;
    if ((rc = tl_ingest_new(&s.loop, s.http, kafka, s.auth, cfg, &s.ingest))) goto fail_auth;
    if ((rc = tl_writes_new(&s.loop, kafka, cfg, &s.writes))) goto fail_ingest;
    if ((rc = tl_rest_new(&s.loop, s.http, s.ingest, s.writes, s.auth, cfg, &s.rest))) goto fail_writes;
    if ((rc = tl_stream_new(&s.loop, s.http, kafka, s.auth, cfg, &s.stream))) goto fail_rest;
    if ((rc = tl_http_listen(s.http, cfg->http))) goto fail_stream;
    s.topics.data = &s;
    s.topics_pending = 1;
    uv_queue_work(&s.loop, &s.topics, topics_work, topics_done);

    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_timer_init(&s.loop, &s.watchdog);
    s.watchdog.data = &s;
    uv_timer_start(&s.watchdog, on_watchdog, 1000, 1000);
    tl_info("serve", "ready: kafka %s, prefix %s, http %s", tl_kafka_brokers(kafka), cfg->prefix, cfg->http);

    uv_run(&s.loop, UV_RUN_DEFAULT);

    /* Answer in-flight ingest requests, then let the loop finish closing. */
    tl_ingest_close(s.ingest, 5000);
    tl_writes_close(s.writes, 5000);
    tl_stream_close(s.stream);
    uv_close((uv_handle_t *)&s.sigint, NULL);
    uv_close((uv_handle_t *)&s.sigterm, NULL);
    uv_close((uv_handle_t *)&s.watchdog, NULL);
    /* h2o keeps timers and idle keep-alive connections on the loop, so a
     * blocking run would never return: give the close callbacks a few turns
     * and move on; the process is exiting. */
    for (int i = 0; i < 8; i++) uv_run(&s.loop, UV_RUN_NOWAIT);
    /* The topic check notices `stopping` within one attempt. */
    while (s.topics_pending) uv_run(&s.loop, UV_RUN_ONCE);
    for (int i = 0; i < s.nproj; i++) tl_projection_stop(s.proj[i]);
    tl_identity_writer_stop(s.identity);
    tl_fold_worker_stop(s.fold);
    tl_stream_free(s.stream);
    tl_rest_free(s.rest);
    tl_writes_free(s.writes);
    tl_ingest_free(s.ingest);
    tl_auth_free(s.auth);
    tl_kafka_free(kafka);
    tl_info("serve", "stopped");
    return s.exit_status;

fail_stream:
    tl_stream_close(s.stream);
    uv_run(&s.loop, UV_RUN_NOWAIT);
    tl_stream_free(s.stream);
fail_rest:
    tl_rest_free(s.rest);
fail_writes:
    tl_writes_close(s.writes, 0);
    uv_run(&s.loop, UV_RUN_NOWAIT);
    tl_writes_free(s.writes);
fail_ingest:
    tl_ingest_close(s.ingest, 0);
    uv_run(&s.loop, UV_RUN_NOWAIT);
    tl_ingest_free(s.ingest);
fail_auth:
    tl_auth_free(s.auth);
fail_http:
    tl_http_free(s.http);
fail_loop:
    uv_loop_close(&s.loop);
    tl_kafka_free(kafka);
fail:
    tl_error("serve", "start-up failed: %s", tl_strerror(rc));
    return 1;
}
