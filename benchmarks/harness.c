/*
 * harness.c -- a benchmark's child processes and loopback port (see
 * harness.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "workload.h"

int tl_harness_parse_arg(const char *prog, const char *s, const char *what, long max, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > max) {
        fprintf(stderr, "%s: %s: want a number from 1 to %ld, got \"%s\"\n", prog, what, max, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int tl_harness_beside_me(const char *rel, char *out, size_t n) {
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) return -1;
    self[k] = 0;
    char *slash = strrchr(self, '/');
    if (!slash) return -1;
    *slash = 0;
    int w = snprintf(out, n, "%s/%s", self, rel);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

int tl_harness_threadline(char *out, size_t n) {
    const char *env_exe = getenv("TL_THREADLINE");
    if (env_exe && *env_exe) {
        int w = snprintf(out, n, "%s", env_exe);
        return w < 0 || (size_t)w >= n ? -1 : 0;
    }
    return tl_harness_beside_me("../tools/threadline", out, n);
}

int tl_harness_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

int tl_harness_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

pid_t tl_harness_spawn(char *const argv[], const char *log) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    execv(argv[0], argv);
    /* Into the log: the benchmark sees the child exit early. */
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int tl_harness_run(char *const argv[], const char *log) {
    pid_t pid = tl_harness_spawn(argv, log);
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void tl_harness_stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int tl_harness_wait_ready(pid_t pid, int port, double seconds) {
    double deadline = tl_workload_now() + seconds;
    char req[128], resp[4096];
    int n = snprintf(req, sizeof req,
                     "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", port);
    while (tl_workload_now() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return -1;
        int fd = tl_harness_connect(port);
        if (fd >= 0) {
            struct timeval tv = {2, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ssize_t got = 0;
            if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) got = recv(fd, resp, sizeof resp - 1, 0);
            close(fd);
            if (got >= 12 && memcmp(resp, "HTTP/1.1 200", 12) == 0) return 0;
        }
        usleep(200 * 1000);
    }
    return -2;
}
