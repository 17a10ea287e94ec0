/*
 * error.h -- the one error type of threadline.
 *
 * Every fallible function returns a tl_err_t: 0 is success, failures are
 * negative.  The list below is an X-macro so that the enum, tl_strerror() and
 * tl_err_name() can never drift apart (libuv's UV_ERRNO_MAP).  Errors from
 * librdkafka, libpq, avro-c and libuv are converted once, where they enter
 * threadline; nothing above that layer sees a foreign error code.
 */
#ifndef TL_ERROR_H
#define TL_ERROR_H

#define TL_ERR_MAP(XX)                                                        \
    XX(NOMEM,       -1,  "out of memory")                                     \
    XX(INVAL,       -2,  "invalid argument")                                  \
    XX(IO,          -3,  "I/O error")                                         \
    XX(NOTFOUND,    -4,  "not found")                                         \
    XX(EXISTS,      -5,  "already exists")                                    \
    XX(TRUNCATED,   -6,  "input truncated")                                   \
    XX(CORRUPT,     -7,  "input corrupt")                                     \
    XX(BADMAGIC,    -8,  "not an Avro single-object encoding (bad magic)")    \
    XX(UNKNOWNSCHEMA, -9, "unknown schema fingerprint")                      \
    XX(SCHEMA,      -10, "invalid or incompatible schema")                    \
    XX(TOOBIG,      -11, "value too large")                                   \
    XX(UTF8,        -12, "invalid UTF-8")                                     \
    XX(KAFKA,       -13, "Kafka error")                                       \
    XX(KAFKA_DOWN,  -14, "Kafka unreachable")                                 \
    XX(TIMEOUT,     -15, "timed out")                                         \
    XX(PG,          -16, "PostgreSQL error")                                  \
    XX(PG_DOWN,     -17, "PostgreSQL unreachable")                            \
    XX(HTTP,        -18, "HTTP server error")                                 \
    XX(CONFIG,      -19, "invalid configuration")                             \
    XX(FENCED,      -20, "producer fenced by a newer instance")               \
    XX(AGAIN,       -21, "try again")                                         \
    XX(SHUTDOWN,    -22, "shutting down")                                     \
    XX(JSON,        -23, "invalid JSON")

typedef enum tl_err {
    TL_OK = 0,
#define TL_ERR_ENUM(name, code, msg) TL_E##name = (code),
    TL_ERR_MAP(TL_ERR_ENUM)
#undef TL_ERR_ENUM
} tl_err_t;

/* Human-readable text for an error, e.g. "input truncated".  Unknown codes
 * give "unknown error".  Returns a static string.  Any thread; cannot fail. */
const char *tl_strerror(int err);

/* The symbolic name of an error, e.g. "TL_ETRUNCATED".  Returns a static
 * string.  Any thread; cannot fail. */
const char *tl_err_name(int err);

#endif
