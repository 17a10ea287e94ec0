/*
 * log.c -- stderr logging (see log.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static tl_log_level_t min_level = TL_LOG_INFO;
static int level_from_env = -1;

void tl_log_set_level(tl_log_level_t lvl) { min_level = lvl; }

void tl_log(tl_log_level_t lvl, const char *module, const char *fmt, ...) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level_from_env < 0) {
        const char *e = getenv("TL_LOG");
        level_from_env = e && strcmp(e, "debug") == 0 ? 1 : 0;
        if (level_from_env) min_level = TL_LOG_DEBUG;
    }
    if (lvl < min_level) return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %-10s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), names[lvl], module);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
