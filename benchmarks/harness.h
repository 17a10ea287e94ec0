/*
 * harness.h -- what a benchmark needs around the code it measures: its
 * command-line numbers, the threadline binary, a child process (threadline
 * serve, or the bare HTTP front) on a free loopback port, and a wait until
 * that child answers /readyz.
 *
 * The benchmarks that drive `threadline serve` over HTTP start, watch and
 * stop it the same way; only their clients differ (paced threads in
 * bench_api, an epoll loop in bench_ingest), so the clients stay in their
 * benchmarks and this module holds the rest.  None of it is timed: it runs
 * before and after the measured phases, and prints nothing on stdout (the
 * bench_NAME lines are the benchmarks' own).
 */
#ifndef TL_BENCH_HARNESS_H
#define TL_BENCH_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

/* Parses s as a whole number from 1 to max into *out.  0, or -1 with
 * "<prog>: <what>: want a number from 1 to <max>, got ..." on stderr. */
int tl_harness_parse_arg(const char *prog, const char *s, const char *what, long max, int *out);

/* The directory of this executable + "/" + rel into out.  0, or -1 when
 * it does not fit or /proc/self/exe is unreadable. */
int tl_harness_beside_me(const char *rel, char *out, size_t n);

/* The threadline binary into out: $TL_THREADLINE, else
 * ../tools/threadline beside this executable.  0 or -1. */
int tl_harness_threadline(char *out, size_t n);

/* A TCP port of 127.0.0.1 free a moment ago, or -1. */
int tl_harness_free_port(void);

/* A blocking TCP_NODELAY connection to 127.0.0.1:port, or -1. */
int tl_harness_connect(int port);

/* Forks argv[0] with argv, stdout and stderr appended to log; the child
 * dies with this process.  The child's pid, or -1. */
pid_t tl_harness_spawn(char *const argv[], const char *log);

/* Runs argv to completion with its output in log: its exit status, or
 * -1. */
int tl_harness_run(char *const argv[], const char *log);

/* SIGTERM to pid, SIGKILL after 5 s, and reaps it.  pid <= 0: nothing. */
void tl_harness_stop(pid_t pid);

/* GET /readyz on 127.0.0.1:port until it answers 200, for up to
 * seconds.  0 when ready, -1 when pid exited first, -2 when time ran
 * out.  Prints nothing. */
int tl_harness_wait_ready(pid_t pid, int port, double seconds);

#endif
