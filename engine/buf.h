/*
 * buf.h -- a growable byte buffer.
 *
 * The hot paths (encoding events, building SQL and JSON) reuse one buffer per
 * worker: tl_buf_reset() keeps the capacity, so steady state allocates
 * nothing.  Growth doubles, so appends are amortised O(1).
 */
#ifndef TL_BUF_H
#define TL_BUF_H

#include <stddef.h>

typedef struct tl_buf {
    char *data;     /* NUL-terminated when len < cap; may be NULL when cap == 0 */
    size_t len;
    size_t cap;
} tl_buf_t;

/* Caller-allocated; init cannot fail (allocation is deferred). */
void tl_buf_init(tl_buf_t *b);
/* Frees the storage; the buffer may be initialised again. */
void tl_buf_close(tl_buf_t *b);
/* Empties the buffer, keeping its capacity.  Cannot fail. */
static inline void tl_buf_reset(tl_buf_t *b) { b->len = 0; if (b->cap) b->data[0] = 0; }
/* Ensures room for n more bytes (+ a NUL).  TL_ENOMEM leaves b unchanged. */
int tl_buf_reserve(tl_buf_t *b, size_t n);
/* Appends n bytes.  TL_ENOMEM leaves b unchanged. */
int tl_buf_append(tl_buf_t *b, const void *p, size_t n);
/* Appends a NUL-terminated string. */
int tl_buf_puts(tl_buf_t *b, const char *s);
/* Appends printf-formatted text. */
int tl_buf_printf(tl_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
