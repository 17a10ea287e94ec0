/*
 * support.h -- helpers for the integration suites: the real services and the
 * real `threadline` binary, driven from outside as a connector would.
 *
 * A test owns a tl_test_serve_t (one `threadline serve` child process whose
 * output goes to a log file under /tmp), talks to it over HTTP with libcurl,
 * and checks what reached PostgreSQL with libpq.  Nothing here calls Check's
 * assertions: every helper reports failure by its return value, with a
 * message in a caller-supplied buffer, so a test can clean up (kill its
 * child, drop its database) and print the serve log before it fails.
 *
 * Thread rules: the HTTP helpers may be called from any thread, each thread
 * with its own CURL handle; everything else from the test's main thread.
 * The serve child is forked from the calling thread and is killed by the
 * kernel if that thread dies (PR_SET_PDEATHSIG), so a test process killed on
 * timeout does not leave a server behind: start it from the main thread.
 */
#ifndef TL_TEST_SUPPORT_H
#define TL_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <libpq-fe.h>

/* ------------------------------------------------------------ environment */

/* getenv(name), but NULL when unset or empty.  Cannot fail. */
const char *tl_test_env(const char *name);

/* Wall-clock milliseconds since the epoch.  Cannot fail. */
int64_t tl_test_now_ms(void);

/* Monotonic milliseconds, for deadlines.  Cannot fail. */
int64_t tl_test_mono_ms(void);

/* Sleeps ms milliseconds (restarting on EINTR).  Cannot fail. */
void tl_test_sleep_ms(int64_t ms);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
 * released).  Returns the port, or -1 with errno set. */
int tl_test_free_port(void);

/* ------------------------------------------------------------------ Kafka */

/* Asks the cluster at brokers for its metadata (librdkafka, one request,
 * up to timeout_ms).  Returns 0 if at least one broker answered; -1 with a
 * message in err otherwise. */
int tl_test_kafka_ping(const char *brokers, int timeout_ms, char *err, size_t errlen);

/* Deletes every topic whose name starts with prefix (admin API, best effort,
 * up to timeout_ms).  Returns the number of topics asked to be deleted, or
 * -1 with a message in err. */
int tl_test_kafka_delete_topics(const char *brokers, const char *prefix, int timeout_ms,
                                char *err, size_t errlen);

/* Sums the high watermarks of topic's partitions into *out: how many
 * offsets the log holds (records, plus transaction markers if transactional
 * producers wrote to it).  Returns 0, or -1 with a message in err. */
int tl_test_kafka_topic_size(const char *brokers, const char *topic, int timeout_ms,
                             int64_t *out, char *err, size_t errlen);

/* Counts the records of topic that a read_committed consumer sees: reads
 * every partition from the beginning to its end (the last stable offset),
 * so records of aborted transactions and transaction markers are not
 * counted, and neither are records of a transaction still open.  Up to
 * timeout_ms.  Returns 0 with the count in *out, or -1 with a message in
 * err. */
int tl_test_kafka_count_committed(const char *brokers, const char *topic, int timeout_ms,
                                  int64_t *out, char *err, size_t errlen);

/* -------------------------------------------------------------- processes */

/* Runs argv (argv[0] is a path, argv NULL-terminated) with stdout and
 * stderr appended to log_path, and waits up to timeout_ms.  Returns the exit
 * status (0..255), 128+signal if it was killed by one, or -1 with a message
 * in err if it could not be started or did not finish in time (it is then
 * killed). */
int tl_test_run(char *const argv[], const char *log_path, int timeout_ms, char *err, size_t errlen);

/* One `threadline serve` child. */
typedef struct tl_test_serve {
    pid_t pid;               /* 0 when not running */
    int port;                /* HTTP port on 127.0.0.1 */
    char exe[1024];          /* the threadline binary */
    char log_path[512];      /* stdout+stderr of every start, appended */
    char base_url[64];       /* "http://127.0.0.1:<port>" */
    char *argv[48];          /* serve's argv, owned (strdup'ed) */
    int argc;
} tl_test_serve_t;

/* Prepares s for `exe serve --http 127.0.0.1:<port> --kafka-brokers brokers
 * --pg-dsn dsn --prefix prefix --partitions partitions --auth off` followed
 * by the NULL-terminated extra arguments (may be NULL; `--auth required`
 * there turns keys on).  Picks a free port, names
 * the log /tmp/tl-it-<prefix>.log and truncates it.  Starts nothing.
 * Returns 0, or -1 with a message in err (s is then as after
 * tl_test_serve_close). */
int tl_test_serve_init(tl_test_serve_t *s, const char *exe, const char *brokers, const char *dsn,
                       const char *prefix, int partitions, const char *const *extra,
                       char *err, size_t errlen);

/* Forks and execs serve with the prepared arguments (same port and log on
 * every start; a marker line goes to the log first).  Returns 0, or -1 with
 * a message in err.  Main thread (see above). */
int tl_test_serve_start(tl_test_serve_t *s, char *err, size_t errlen);

/* Polls GET /readyz until it answers 200, up to timeout_ms.  Fails early if
 * the child exits.  Returns 0, or -1 with a message in err. */
int tl_test_serve_wait_ready(tl_test_serve_t *s, int timeout_ms, char *err, size_t errlen);

/* Sends sig to the child and reaps it; for SIGTERM waits up to grace_ms,
 * then SIGKILLs.  Returns its wait status, or -1 if it was not running.
 * Afterwards s->pid is 0.  Cannot fail otherwise. */
int tl_test_serve_stop(tl_test_serve_t *s, int sig, int grace_ms);

/* 1 if the child is running (reaping it if it has exited; then *status, if
 * not NULL, gets its wait status).  Cannot fail. */
int tl_test_serve_alive(tl_test_serve_t *s, int *status);

/* Prints the last `lines` lines of the serve log to stderr, framed.  Cannot
 * fail (says so if the log cannot be read). */
void tl_test_serve_log_tail(const tl_test_serve_t *s, int lines);

/* Stops the child if running (SIGTERM, then SIGKILL) and frees the argv.
 * Removes the log if remove_log.  NULL-safe and idempotent. */
void tl_test_serve_close(tl_test_serve_t *s, int remove_log);

/* ------------------------------------------------------------------- HTTP */

/* One HTTP answer.  body is NUL-terminated and owned by the response. */
typedef struct tl_test_resp {
    long status;                  /* 0 when no HTTP answer came */
    char *body;
    size_t len;
    char content_type[128];       /* "" if none; parameters kept */
    char retry_after[32];         /* "" if none */
    char error[CURL_ERROR_SIZE];  /* transport error text when status is 0 */
} tl_test_resp_t;

/* Sends one request on curl (kept-alive connections are reused): method
 * "GET" or "POST"; for POST, body/len with Content-Type: application/json
 * and no Expect: 100-continue.  Waits up to timeout_ms.  Returns 0 when an
 * HTTP answer came (resp->status set), -1 on a transport error (refused,
 * reset, timeout: resp->status 0, resp->error says why).  Either way resp
 * must be released with tl_test_resp_close.  Any thread, one handle per
 * thread; curl_global_init must have been called. */
int tl_test_http(CURL *curl, const char *method, const char *url, const char *body, size_t len,
                 long timeout_ms, tl_test_resp_t *resp);

/* Like tl_test_http, with extra request headers ("Name: value", NULL-
 * terminated list, may be NULL) and any method; every method but GET sends
 * body as application/json.  Same returns and thread rules. */
int tl_test_http_h(CURL *curl, const char *method, const char *url, const char *const *headers,
                   const char *body, size_t len, long timeout_ms, tl_test_resp_t *resp);

/* Frees resp's body and clears it.  NULL-safe. */
void tl_test_resp_close(tl_test_resp_t *resp);

/* 1 if resp's Content-Type is mime (case-insensitive, parameters ignored). */
int tl_test_resp_is(const tl_test_resp_t *resp, const char *mime);

/* ------------------------------------------------------------- PostgreSQL */

/* Connects to dsn.  Returns the connection, or NULL with a message in err. */
PGconn *tl_test_pg_connect(const char *dsn, char *err, size_t errlen);

/* Runs one command without results.  Returns 0, or -1 with a message. */
int tl_test_pg_exec(PGconn *pg, const char *sql, char *err, size_t errlen);

/* Runs sql with nparams text parameters; the first column of the first row
 * as a number into *out.  Returns 0, or -1 with a message (also when no row
 * or NULL). */
int tl_test_pg_int(PGconn *pg, const char *sql, int nparams, const char *const *params,
                   int64_t *out, char *err, size_t errlen);

/* Runs sql with nparams text parameters.  Returns the PGRES_TUPLES_OK
 * result (caller PQclear()s it), or NULL with a message. */
PGresult *tl_test_pg_query(PGconn *pg, const char *sql, int nparams, const char *const *params,
                           char *err, size_t errlen);

/* CREATE DATABASE name on the server of base_dsn.  name must be a plain
 * lower-case identifier.  Returns 0, or -1 with a message. */
int tl_test_pg_create_db(const char *base_dsn, const char *name, char *err, size_t errlen);

/* DROP DATABASE IF EXISTS name WITH (FORCE).  Returns 0, or -1. */
int tl_test_pg_drop_db(const char *base_dsn, const char *name, char *err, size_t errlen);

/* Drops every database whose name starts with prefix (LIKE prefix%, with
 * prefix a plain identifier).  Returns how many, or -1 with a message. */
int tl_test_pg_drop_dbs_like(const char *base_dsn, const char *prefix, char *err, size_t errlen);

/* base_dsn with " dbname=<name>" appended (libpq uses the last occurrence
 * of a keyword) into out.  Returns 0, or -1 if it does not fit. */
int tl_test_pg_dsn_for(const char *base_dsn, const char *name, char *out, size_t outlen);

/* ------------------------------------------------------------- reports */

/* A list of problems a check found, keeping the first dozen lines, so one
 * assertion can name several. */
typedef struct tl_test_report {
    char text[2048];
    int count;                  /* problems found, including ones not kept */
} tl_test_report_t;

/* Appends one problem line.  Cannot fail (long text is cut). */
void tl_test_report(tl_test_report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------- the services */

/* What every integration suite runs against. */
typedef struct tl_test_services {
    const char *brokers;        /* TL_KAFKA_BROKERS */
    const char *version;        /* TL_KAFKA_VERSION */
    const char *pg_dsn;         /* TL_PG_DSN */
    const char *exe;            /* TL_THREADLINE */
} tl_test_services_t;

/* Checks that the real Kafka broker and PostgreSQL are configured and
 * answer, and that the threadline binary exists; fails the calling test
 * (ck_assert) naming what is missing -- never falls back to the embedded
 * mock.  The first call prints the line "kafka: Apache Kafka <version> at
 * <brokers>" and initialises libcurl.  `suite` names the suite in messages.  Runner
 * process, in an unchecked fixture. */
void tl_test_services_require(const char *suite, tl_test_services_t *out);

#endif
