/*
 * log.h -- one line per log record on stderr: time, level, module, message.
 *
 * Logging is for operators reading a terminal or a journal; metrics are for
 * machines.  Lines are written with a single write() so records from
 * different threads never interleave.
 */
#ifndef TL_LOG_H
#define TL_LOG_H

typedef enum { TL_LOG_DEBUG, TL_LOG_INFO, TL_LOG_WARN, TL_LOG_ERROR } tl_log_level_t;

/* Sets the minimum level printed (default INFO; TL_LOG=debug lowers it).
 * Call before starting threads. */
void tl_log_set_level(tl_log_level_t lvl);

/* Prints one record.  Any thread; cannot fail (drops the record if stderr is
 * gone). */
void tl_log(tl_log_level_t lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tl_debug(mod, ...) tl_log(TL_LOG_DEBUG, mod, __VA_ARGS__)
#define tl_info(mod, ...)  tl_log(TL_LOG_INFO, mod, __VA_ARGS__)
#define tl_warn(mod, ...)  tl_log(TL_LOG_WARN, mod, __VA_ARGS__)
#define tl_error(mod, ...) tl_log(TL_LOG_ERROR, mod, __VA_ARGS__)

#endif
