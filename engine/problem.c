/*
 * problem.c -- RFC 9457 problem details (see problem.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "problem.h"

int tl_problem_set(tl_problem_t *p, int status, const char *type, const char *title,
                   const char *field, const char *fmt, ...) {
    va_list ap;
    p->status = status;
    p->type = type;
    p->title = title;
    p->retry_after = 0;
    snprintf(p->field, sizeof p->field, "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
    return status;
}

int tl_problem_json(const tl_problem_t *p, tl_buf_t *out) {
    char type[128];
    snprintf(type, sizeof type, "urn:threadline:problem:%s", p->type);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", p->title,
                          "status", p->status, "detail", p->detail);
    if (!o) return TL_ENOMEM;
    if (p->field[0]) json_object_set_new(o, "field", json_string(p->field));
    if (p->retry_after) json_object_set_new(o, "retry_after", json_integer(p->retry_after));
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!s) return TL_ENOMEM;
    int rc = tl_buf_puts(out, s);
    free(s);
    return rc;
}
