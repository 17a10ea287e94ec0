/*
 * buf.c -- growable byte buffer (see buf.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"

void tl_buf_init(tl_buf_t *b) { b->data = NULL; b->len = 0; b->cap = 0; }

void tl_buf_close(tl_buf_t *b) { free(b->data); tl_buf_init(b); }

int tl_buf_reserve(tl_buf_t *b, size_t n) {
    if (b->len + n + 1 <= b->cap) return TL_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return TL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return TL_OK;
}

int tl_buf_append(tl_buf_t *b, const void *p, size_t n) {
    if (tl_buf_reserve(b, n)) return TL_ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return TL_OK;
}

int tl_buf_puts(tl_buf_t *b, const char *s) { return tl_buf_append(b, s, strlen(s)); }

int tl_buf_printf(tl_buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return TL_EINVAL;
    if (tl_buf_reserve(b, (size_t)n)) return TL_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return TL_OK;
}
