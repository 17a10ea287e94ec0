/*
 * support.c -- integration-test helpers: processes, HTTP, Kafka, PostgreSQL.
 *
 * Why child processes and not the engine in-process: the integration suites
 * test what a connector and an operator see -- the real binary, its flags,
 * its exit codes, a SIGKILL in the middle of a stream -- so the server runs
 * exactly as it would in production, and the test only talks to it over
 * HTTP and reads PostgreSQL behind it.
 *
 * Forking from a process that may have threads (test clients keep posting
 * while the server is restarted) is safe here because everything the child
 * needs (argv, log path) is prepared before fork(), and the child calls only
 * async-signal-safe functions (open, dup2, prctl, execv, _exit).
 */
#include "support.h"

#include <check.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <librdkafka/rdkafka.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ environment */

const char *tl_test_env(const char *name) {
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

int64_t tl_test_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tl_test_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tl_test_sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int tl_test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* ------------------------------------------------------------------ Kafka */

typedef struct kerr {
    char msg[512];
} kerr_t;

/* librdkafka's error callback (its background thread): keep the last one so
 * a failed metadata request can say why (refused, resolve, auth). */
static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    kerr_t *ke = opaque;
    snprintf(ke->msg, sizeof ke->msg, "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
             reason);
}

static rd_kafka_t *kafka_client(const char *brokers, kerr_t *ke, char *err, size_t errlen) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        seterr(err, errlen, "kafka config: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    ke->msg[0] = '\0';
    rd_kafka_conf_set_opaque(conf, ke);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        seterr(err, errlen, "kafka client: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

int tl_test_kafka_ping(const char *brokers, int timeout_ms, char *err, size_t errlen) {
    kerr_t ke;
    rd_kafka_t *rk = kafka_client(brokers, &ke, err, errlen);
    if (rk == NULL)
        return -1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rc = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    int ret = 0;
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_poll(rk, 0); /* serves the error callback */
        seterr(err, errlen, "no metadata from %s within %d ms: %s%s%s", brokers, timeout_ms,
               rd_kafka_err2str(rc), ke.msg[0] ? "; last error: " : "", ke.msg);
        ret = -1;
    } else if (md->broker_cnt < 1) {
        seterr(err, errlen, "metadata from %s lists no broker", brokers);
        ret = -1;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return ret;
}

int tl_test_kafka_delete_topics(const char *brokers, const char *prefix, int timeout_ms,
                                char *err, size_t errlen) {
    kerr_t ke;
    rd_kafka_t *rk = kafka_client(brokers, &ke, err, errlen);
    if (rk == NULL)
        return -1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rc = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        seterr(err, errlen, "topic list from %s: %s", brokers, rd_kafka_err2str(rc));
        rd_kafka_destroy(rk);
        return -1;
    }
    size_t plen = strlen(prefix);
    int n = 0;
    rd_kafka_DeleteTopic_t **del = calloc((size_t)md->topic_cnt + 1, sizeof *del);
    for (int i = 0; del != NULL && i < md->topic_cnt; i++)
        if (strncmp(md->topics[i].topic, prefix, plen) == 0)
            del[n++] = rd_kafka_DeleteTopic_new(md->topics[i].topic);
    rd_kafka_metadata_destroy(md);
    int ret = n;
    if (del == NULL) {
        seterr(err, errlen, "out of memory");
        ret = -1;
    } else if (n > 0) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
        char errstr[256];
        rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, errstr, sizeof errstr);
        rd_kafka_DeleteTopics(rk, del, (size_t)n, opt, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
        if (ev == NULL) {
            seterr(err, errlen, "deleting %d topics: no answer", n);
            ret = -1;
        } else {
            if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                seterr(err, errlen, "deleting %d topics: %s", n, rd_kafka_event_error_string(ev));
                ret = -1;
            }
            rd_kafka_event_destroy(ev);
        }
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_queue_destroy(q);
    }
    if (del != NULL) {
        rd_kafka_DeleteTopic_destroy_array(del, (size_t)n);
        free(del);
    }
    rd_kafka_destroy(rk);
    return ret;
}

int tl_test_kafka_topic_size(const char *brokers, const char *topic, int timeout_ms,
                             int64_t *out, char *err, size_t errlen) {
    kerr_t ke;
    rd_kafka_t *rk = kafka_client(brokers, &ke, err, errlen);
    if (rk == NULL)
        return -1;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rc = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms)
                                 : RD_KAFKA_RESP_ERR__INVALID_ARG;
    int ret = -1;
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) {
        seterr(err, errlen, "metadata of %s: %s", topic,
               rd_kafka_err2str(rc ? rc : md->topic_cnt ? md->topics[0].err
                                                        : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    } else {
        int64_t sum = 0;
        ret = 0;
        for (int i = 0; i < md->topics[0].partition_cnt && ret == 0; i++) {
            int64_t lo, hi;
            rc = rd_kafka_query_watermark_offsets(rk, topic, md->topics[0].partitions[i].id, &lo,
                                                  &hi, timeout_ms);
            if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
                seterr(err, errlen, "watermarks of %s [%d]: %s", topic,
                       md->topics[0].partitions[i].id, rd_kafka_err2str(rc));
                ret = -1;
            }
            sum += hi;
        }
        *out = sum;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return ret;
}

int tl_test_kafka_count_committed(const char *brokers, const char *topic, int timeout_ms,
                                  int64_t *out, char *err, size_t errlen) {
    char errstr[512];
    kerr_t ke = {.msg = ""};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const settings[][2] = {
        {"bootstrap.servers", brokers},     {"log_level", "3"},
        {"group.id", "threadline-test-counter"}, {"isolation.level", "read_committed"},
        {"enable.partition.eof", "true"},   {"enable.auto.commit", "false"},
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            seterr(err, errlen, "kafka config: %s", errstr);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    rd_kafka_conf_set_opaque(conf, &ke);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        seterr(err, errlen, "kafka consumer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    int64_t deadline = tl_test_mono_ms() + timeout_ms;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rc = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms)
                                 : RD_KAFKA_RESP_ERR__INVALID_ARG;
    int ret = -1;
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) {
        seterr(err, errlen, "metadata of %s: %s", topic,
               rd_kafka_err2str(rc ? rc : md->topic_cnt ? md->topics[0].err
                                                        : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    } else {
        int nparts = md->topics[0].partition_cnt;
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(nparts);
        for (int i = 0; i < nparts; i++)
            rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)
                ->offset = RD_KAFKA_OFFSET_BEGINNING;
        rc = rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        int64_t n = 0;
        int eofs = 0;
        if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
            seterr(err, errlen, "assign %s: %s", topic, rd_kafka_err2str(rc));
        else
            ret = 0;
        /* One end-of-partition event per partition: nothing new arrives
         * after it on a partition nobody writes to while we read. */
        while (ret == 0 && eofs < nparts) {
            if (tl_test_mono_ms() > deadline) {
                seterr(err, errlen, "reading %s: %d of %d partitions read to the end within %d ms",
                       topic, eofs, nparts, timeout_ms);
                ret = -1;
                break;
            }
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
            if (m == NULL)
                continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                eofs++;
            else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                n++;
            else if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT) {
                seterr(err, errlen, "reading %s: %s", topic, rd_kafka_message_errstr(m));
                ret = -1;
            }
            rd_kafka_message_destroy(m);
        }
        if (ret == 0)
            *out = n;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return ret;
}

/* -------------------------------------------------------------- processes */

/* The child half of a spawn: only async-signal-safe calls from here on. */
static void __attribute__((noreturn))
child_exec(char *const argv[], const char *log_path, pid_t parent) {
    /* The server must not outlive the test, whichever way the test ends. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int in = open("/dev/null", O_RDONLY);
    int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0)
        _exit(127);
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    if (in > STDERR_FILENO)
        close(in);
    if (out > STDERR_FILENO)
        close(out);
    execv(argv[0], argv);
    static const char msg[] = "exec failed\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

static void log_marker(const char *log_path, char *const argv[]) {
    FILE *f = fopen(log_path, "a");
    if (f == NULL)
        return;
    fprintf(f, "==== %lld ms:", (long long)tl_test_now_ms());
    for (int i = 0; argv[i] != NULL; i++)
        fprintf(f, " %s", argv[i]);
    fputs("\n", f);
    fclose(f);
}

static pid_t spawn(char *const argv[], const char *log_path, char *err, size_t errlen) {
    if (access(argv[0], X_OK) != 0) {
        seterr(err, errlen, "%s: %s", argv[0], strerror(errno));
        return -1;
    }
    log_marker(log_path, argv);
    fflush(NULL); /* a buffered line must not be written twice */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        seterr(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0)
        child_exec(argv, log_path, parent);
    return pid;
}

static int decode_status(int st) {
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int tl_test_run(char *const argv[], const char *log_path, int timeout_ms, char *err, size_t errlen) {
    pid_t pid = spawn(argv, log_path, err, errlen);
    if (pid < 0)
        return -1;
    int64_t deadline = tl_test_mono_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return decode_status(st);
        if (r < 0 && errno != EINTR) {
            seterr(err, errlen, "waitpid: %s", strerror(errno));
            return -1;
        }
        if (tl_test_mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            seterr(err, errlen, "%s did not finish within %d ms (killed)", argv[0], timeout_ms);
            return -1;
        }
        tl_test_sleep_ms(20);
    }
}

static int serve_add(tl_test_serve_t *s, const char *arg) {
    if (s->argc + 1 >= (int)(sizeof s->argv / sizeof s->argv[0]))
        return -1;
    char *a = strdup(arg);
    if (a == NULL)
        return -1;
    s->argv[s->argc++] = a;
    s->argv[s->argc] = NULL;
    return 0;
}

int tl_test_serve_init(tl_test_serve_t *s, const char *exe, const char *brokers, const char *dsn,
                       const char *prefix, int partitions, const char *const *extra,
                       char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->port = tl_test_free_port();
    if (s->port < 0) {
        seterr(err, errlen, "no free port: %s", strerror(errno));
        return -1;
    }
    snprintf(s->exe, sizeof s->exe, "%s", exe);
    snprintf(s->log_path, sizeof s->log_path, "/tmp/tl-it-%s.log", prefix);
    snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d", s->port);
    char http[64], parts[16];
    snprintf(http, sizeof http, "127.0.0.1:%d", s->port);
    snprintf(parts, sizeof parts, "%d", partitions);
    /* Keys are off unless a test asks for them (`--auth required` in
     * extra: a later flag wins): only the rest and openapi suites are
     * about keys, the others post and read as any trusted caller. */
    const char *fixed[] = {exe,         "serve",  "--http", http,     "--kafka-brokers",
                           brokers,     "--pg-dsn", dsn,    "--prefix", prefix,
                           "--partitions", parts, "--auth", "off"};
    int bad = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        bad |= serve_add(s, fixed[i]);
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        bad |= serve_add(s, extra[i]);
    if (bad) {
        seterr(err, errlen, "too many serve arguments or out of memory");
        tl_test_serve_close(s, 1);
        return -1;
    }
    int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        seterr(err, errlen, "%s: %s", s->log_path, strerror(errno));
        tl_test_serve_close(s, 0);
        return -1;
    }
    close(fd);
    return 0;
}

int tl_test_serve_start(tl_test_serve_t *s, char *err, size_t errlen) {
    if (s->pid > 0) {
        seterr(err, errlen, "serve already running (pid %d)", (int)s->pid);
        return -1;
    }
    pid_t pid = spawn(s->argv, s->log_path, err, errlen);
    if (pid < 0)
        return -1;
    s->pid = pid;
    return 0;
}

int tl_test_serve_alive(tl_test_serve_t *s, int *status) {
    if (s->pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    if (r == s->pid && status != NULL)
        *status = st;
    s->pid = 0;
    return 0;
}

int tl_test_serve_wait_ready(tl_test_serve_t *s, int timeout_ms, char *err, size_t errlen) {
    char url[128];
    snprintf(url, sizeof url, "%s/readyz", s->base_url);
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        seterr(err, errlen, "curl_easy_init failed");
        return -1;
    }
    int64_t deadline = tl_test_mono_ms() + timeout_ms;
    long last_status = 0;
    char last_error[CURL_ERROR_SIZE] = "";
    int ret = -1;
    for (;;) {
        int st = 0;
        if (!tl_test_serve_alive(s, &st)) {
            seterr(err, errlen, "serve exited before it was ready (status %d)", decode_status(st));
            break;
        }
        tl_test_resp_t resp;
        tl_test_http(curl, "GET", url, NULL, 0, 1000, &resp);
        last_status = resp.status;
        snprintf(last_error, sizeof last_error, "%s", resp.error);
        tl_test_resp_close(&resp);
        if (last_status == 200) {
            ret = 0;
            break;
        }
        if (tl_test_mono_ms() > deadline) {
            seterr(err, errlen, "GET %s not 200 within %d ms (last: %ld %s)", url, timeout_ms,
                   last_status, last_error);
            break;
        }
        tl_test_sleep_ms(100);
    }
    curl_easy_cleanup(curl);
    return ret;
}

int tl_test_serve_stop(tl_test_serve_t *s, int sig, int grace_ms) {
    if (s->pid <= 0)
        return -1;
    pid_t pid = s->pid;
    int st = 0;
    kill(pid, sig);
    if (sig != SIGKILL) {
        int64_t deadline = tl_test_mono_ms() + grace_ms;
        for (;;) {
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid || (r < 0 && errno == ECHILD)) {
                s->pid = 0;
                return st;
            }
            if (tl_test_mono_ms() > deadline)
                break;
            tl_test_sleep_ms(20);
        }
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    s->pid = 0;
    return st;
}

void tl_test_serve_log_tail(const tl_test_serve_t *s, int lines) {
    FILE *f = fopen(s->log_path, "r");
    if (f == NULL) {
        fprintf(stderr, "(cannot read serve log %s: %s)\n", s->log_path, strerror(errno));
        return;
    }
    /* The last 64 KiB is plenty for the last few dozen lines. */
    static char buf[64 * 1024 + 1];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - (long)(sizeof buf - 1) : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = buf + n;
    int seen = 0;
    while (p > buf) {
        if (p[-1] == '\n' && p != buf + n && ++seen >= lines)
            break;
        p--;
    }
    fprintf(stderr, "---- last %d lines of %s ----\n%s%s---- end of serve log ----\n", lines,
            s->log_path, p, (n > 0 && buf[n - 1] != '\n') ? "\n" : "");
    fflush(stderr);
}

void tl_test_serve_close(tl_test_serve_t *s, int remove_log) {
    if (s == NULL)
        return;
    if (s->pid > 0)
        tl_test_serve_stop(s, SIGTERM, 10000);
    for (int i = 0; i < s->argc; i++) {
        free(s->argv[i]);
        s->argv[i] = NULL;
    }
    s->argc = 0;
    if (remove_log && s->log_path[0] != '\0')
        unlink(s->log_path);
}

/* ------------------------------------------------------------------- HTTP */

static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque) {
    tl_test_resp_t *resp = opaque;
    size_t n = size * nmemb;
    char *b = realloc(resp->body, resp->len + n + 1);
    if (b == NULL)
        return 0; /* curl reports a write error */
    memcpy(b + resp->len, data, n);
    resp->len += n;
    b[resp->len] = '\0';
    resp->body = b;
    return n;
}

/* Copies the value of header `name` (case-insensitive) from line into out,
 * trimmed, if line is that header. */
static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen) {
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    snprintf(out, outlen, "%.*s", (int)(end - v), v);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *opaque) {
    tl_test_resp_t *resp = opaque;
    size_t n = size * nmemb;
    /* A new status line (after a 100 Continue, say) starts a new header set. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        resp->content_type[0] = '\0';
        resp->retry_after[0] = '\0';
    }
    header_value(data, n, "Content-Type", resp->content_type, sizeof resp->content_type);
    header_value(data, n, "Retry-After", resp->retry_after, sizeof resp->retry_after);
    return n;
}

int tl_test_http(CURL *curl, const char *method, const char *url, const char *body, size_t len,
                 long timeout_ms, tl_test_resp_t *resp) {
    return tl_test_http_h(curl, method, url, NULL, body, len, timeout_ms, resp);
}

int tl_test_http_h(CURL *curl, const char *method, const char *url, const char *const *headers,
                   const char *body, size_t len, long timeout_ms, tl_test_resp_t *resp) {
    memset(resp, 0, sizeof *resp);
    /* Reset keeps live connections, so a client keeps its keep-alive one. */
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, resp->error);
    struct curl_slist *hdrs = NULL;
    for (int i = 0; headers != NULL && headers[i] != NULL; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (resp->body == NULL) {
        resp->body = calloc(1, 1);
        resp->len = 0;
    }
    if (rc != CURLE_OK) {
        if (resp->error[0] == '\0')
            snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(rc));
        resp->status = 0;
        return -1;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    return 0;
}

void tl_test_resp_close(tl_test_resp_t *resp) {
    if (resp == NULL)
        return;
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

int tl_test_resp_is(const tl_test_resp_t *resp, const char *mime) {
    size_t n = strlen(mime);
    const char *ct = resp->content_type;
    return strncasecmp(ct, mime, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* ------------------------------------------------------------- PostgreSQL */

PGconn *tl_test_pg_connect(const char *dsn, char *err, size_t errlen) {
    PGconn *pg = PQconnectdb(dsn);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        seterr(err, errlen, "connect \"%s\": %s", dsn, pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

int tl_test_pg_exec(PGconn *pg, const char *sql, char *err, size_t errlen) {
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        seterr(err, errlen, "%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

PGresult *tl_test_pg_query(PGconn *pg, const char *sql, int nparams, const char *const *params,
                           char *err, size_t errlen) {
    PGresult *r = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        seterr(err, errlen, "%s: %s", sql, PQerrorMessage(pg));
        PQclear(r);
        return NULL;
    }
    return r;
}

int tl_test_pg_int(PGconn *pg, const char *sql, int nparams, const char *const *params,
                   int64_t *out, char *err, size_t errlen) {
    PGresult *r = tl_test_pg_query(pg, sql, nparams, params, err, errlen);
    if (r == NULL)
        return -1;
    int ret = -1;
    if (PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0))
        seterr(err, errlen, "%s: no value", sql);
    else {
        *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        ret = 0;
    }
    PQclear(r);
    return ret;
}

/* Runs "<verb> <quoted name><tail>" on the server of base_dsn. */
static int pg_db_command(const char *base_dsn, const char *verb, const char *name,
                         const char *tail, char *err, size_t errlen) {
    PGconn *pg = tl_test_pg_connect(base_dsn, err, errlen);
    if (pg == NULL)
        return -1;
    int ret = -1;
    char *id = PQescapeIdentifier(pg, name, strlen(name));
    if (id == NULL) {
        seterr(err, errlen, "bad database name %s", name);
    } else {
        char sql[512];
        snprintf(sql, sizeof sql, "%s %s%s", verb, id, tail);
        /* CREATE DATABASE fails while another session uses template1 (an
         * operator's psql, a parallel run): that passes, so retry a little. */
        for (int attempt = 0; attempt < 20; attempt++) {
            ret = tl_test_pg_exec(pg, sql, err, errlen);
            if (ret == 0 || strstr(err, "being accessed by other users") == NULL)
                break;
            tl_test_sleep_ms(250);
        }
        PQfreemem(id);
    }
    PQfinish(pg);
    return ret;
}

int tl_test_pg_create_db(const char *base_dsn, const char *name, char *err, size_t errlen) {
    return pg_db_command(base_dsn, "CREATE DATABASE", name, "", err, errlen);
}

int tl_test_pg_drop_db(const char *base_dsn, const char *name, char *err, size_t errlen) {
    return pg_db_command(base_dsn, "DROP DATABASE IF EXISTS", name, " WITH (FORCE)", err, errlen);
}

int tl_test_pg_drop_dbs_like(const char *base_dsn, const char *prefix, char *err, size_t errlen) {
    PGconn *pg = tl_test_pg_connect(base_dsn, err, errlen);
    if (pg == NULL)
        return -1;
    const char *params[] = {prefix};
    PGresult *r = tl_test_pg_query(
        pg, "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", 1,
        params, err, errlen);
    PQfinish(pg);
    if (r == NULL)
        return -1;
    int n = 0;
    for (int i = 0; i < PQntuples(r); i++)
        if (tl_test_pg_drop_db(base_dsn, PQgetvalue(r, i, 0), err, errlen) == 0)
            n++;
    PQclear(r);
    return n;
}

int tl_test_pg_dsn_for(const char *base_dsn, const char *name, char *out, size_t outlen) {
    int n = snprintf(out, outlen, "%s dbname=%s", base_dsn, name);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* ---------------------------------------------------------- the services */

void tl_test_services_require(const char *suite, tl_test_services_t *out) {
    const char *brokers = tl_test_env("TL_KAFKA_BROKERS");
    ck_assert_msg(brokers != NULL && strcmp(brokers, "embedded") != 0,
                  "TL_KAFKA_BROKERS is %s: the %s suite needs the real Kafka broker (run "
                  "tools/services up, then source .run/env); the embedded mock is memory-only and "
                  "does not honour transactions, so it never falls back to it",
                  brokers ? "\"embedded\"" : "unset or empty", suite);
    const char *version = tl_test_env("TL_KAFKA_VERSION");
    ck_assert_msg(version != NULL, "TL_KAFKA_VERSION is unset (source .run/env)");
    const char *pg_dsn = tl_test_env("TL_PG_DSN");
    ck_assert_msg(pg_dsn != NULL, "TL_PG_DSN is unset (source .run/env)");
    const char *exe = tl_test_env("TL_THREADLINE");
    ck_assert_msg(exe != NULL, "TL_THREADLINE is unset: the path of the threadline binary");
    ck_assert_msg(access(exe, X_OK) == 0, "TL_THREADLINE=%s is not an executable", exe);

    char err[1024];
    ck_assert_msg(tl_test_kafka_ping(brokers, 10000, err, sizeof err) == 0,
                  "Kafka at TL_KAFKA_BROKERS=%s does not answer: %s", brokers, err);
    PGconn *pg = tl_test_pg_connect(pg_dsn, err, sizeof err);
    ck_assert_msg(pg != NULL, "PostgreSQL at TL_PG_DSN does not answer: %s", err);
    PQfinish(pg);

    /* One line per run, however many suites ask. */
    static int said;
    if (!said++) {
        printf("kafka: Apache Kafka %s at %s\n", version, brokers);
        fflush(stdout);
        curl_global_init(CURL_GLOBAL_DEFAULT);
    }
    *out = (tl_test_services_t){brokers, version, pg_dsn, exe};
}

/* ------------------------------------------------------------- reports */

void tl_test_report(tl_test_report_t *r, const char *fmt, ...) {
    if (r->count++ >= 12) return;
    size_t used = strlen(r->text);
    if (used + 2 >= sizeof r->text) return;
    r->text[used++] = '\n';
    r->text[used] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text + used, sizeof r->text - used, fmt, ap);
    va_end(ap);
}
