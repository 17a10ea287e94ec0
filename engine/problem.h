/*
 * problem.h -- an error to show a client, as RFC 9457 problem details.
 *
 * Adapters and handlers fill a tl_problem_t; only the HTTP layer turns it
 * into `application/problem+json`.  Keeping it a plain struct lets adapters
 * be tested without a server, and lets a test assert on the exact status,
 * type and field.
 */
#ifndef TL_PROBLEM_H
#define TL_PROBLEM_H

#include "buf.h"

typedef struct tl_problem {
    int status;             /* 400, 413, 422, 503, ... */
    const char *type;       /* short slug, e.g. "missing-field" (static) */
    const char *title;      /* static, e.g. "Missing field" */
    char field[96];         /* JSON path of the offending field, or "" */
    char detail[256];       /* what exactly was wrong, for a person */
    int retry_after;        /* seconds, for 429/503; 0 = none */
} tl_problem_t;

/* Fills p and returns p->status (so handlers can `return tl_problem_set(...)`).
 * field may be NULL.  Cannot fail (long texts are cut). */
int tl_problem_set(tl_problem_t *p, int status, const char *type, const char *title,
                   const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Appends the problem as JSON to out: type, title, status, detail, field.
 * TL_ENOMEM on allocation failure. */
int tl_problem_json(const tl_problem_t *p, tl_buf_t *out);

#endif
