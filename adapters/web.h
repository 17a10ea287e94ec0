/*
 * web.h -- the website chat widget adapter.
 *
 * Request (POST /v1/ingest/web, application/json):
 *   tenant_id    string, required
 *   visitor_id   string, required: the widget's stable visitor id
 *   message_id   string, required: unique per visitor; resends reuse it
 *   sent_at      integer ms since the epoch (browser clock), required
 *   text         string up to 16 KiB; may be empty only with attachments
 *   attachments  optional array of {url, mime, bytes, width?, height?}
 *   entry_point  optional string: the page the chat began on
 *   device_id    optional string
 * Produces one MessageReceived event.
 */
#ifndef TL_WEB_H
#define TL_WEB_H

#include "adapter.h"

#define TL_WEB_TEXT_MAX (16 * 1024)

/* Parses body into ev (strings point into out).  Returns 0, or a 4xx status
 * with pb filled.  On error out may still hold a tree: always call
 * tl_adapter_out_close(out).  Any thread. */
int tl_web_parse(const tl_adapter_ctx_t *ctx, const char *body, size_t len,
                 tl_adapter_out_t *out, tl_event_t *ev, tl_problem_t *pb);

#endif
