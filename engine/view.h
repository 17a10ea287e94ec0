/*
 * view.h -- one Change rendered for one target platform: the rows of
 * view_<platform>.
 *
 * tl_view_render is a pure function of (profile, Change, event): no clock,
 * no I/O, no state between calls, nothing global.  The projection workers
 * call it to write view_<platform>, `threadline rebuild` calls it to refill
 * a shadow table, and replay/verify call it to recompute a view from the
 * log and compare -- the same inputs always give the same rows, byte for
 * byte (bodies are compact JSON with keys in a fixed order).
 *
 * The row of view_<platform> (schemas/postgres/002_views.sql) is
 *
 *   COLUMN            FROM
 *   tenant_id         ev->tenant_id
 *   event_id          ev->event_id
 *   part              row.part
 *   conversation_id   ch->conversation_id
 *   customer_id       ev->customer_id
 *   kind              row.kind
 *   platform          row.platform (the platform the item came from)
 *   source_label      row.source_label
 *   effective_ts      ch->effective_ts  (ms; timestamptz in PostgreSQL)
 *   occurred_at       ev->occurred_at
 *   received_at       ev->received_at
 *   source_partition  ch->source_partition
 *   source_offset     ch->source_offset
 *   idempotency_key   ev->idempotency_key
 *   body              row.body (jsonb)
 *
 * so only the columns a profile shapes are in tl_view_row_t; the others
 * are the Change's and the event's own fields.
 *
 * Rules, in order (docs/projections.md has the profile keys):
 *   1. no rows for a duplicate, an ignored event (ch->ignored set), an
 *      event outside any conversation, or a kind the profile does not list;
 *   2. masks apply to the text and the masked fields first;
 *   3. a transcript segment's text gets its time marker "[m:ss–m:ss] "
 *      when transcript_markers is on (body.time_marker has it either way);
 *   4. text longer than max_bytes is split into parts of at most max_bytes
 *      at UTF-8 character boundaries (split), or cut at one and followed by
 *      "… " and the link to the whole (cut); body.part / body.parts number
 *      the pieces, attachments ride on part 0;
 *   5. attachments follow the media mode;
 *   6. the source label is the platform's label, then the separator and a
 *      topic: the first keyword rule with a keyword in the text, else the
 *      first entry-point rule whose prefix starts the entry point, else the
 *      entry point itself (raw_entry_point); no topic: the label alone.
 */
#ifndef TL_VIEW_H
#define TL_VIEW_H

#include <stddef.h>

#include "change.h"
#include "event.h"
#include "profile.h"

typedef struct tl_view_row {
    int part;                   /* 0 when whole; 0..n-1 when split */
    const char *kind;           /* static: tl_event_kind_name() */
    const char *platform;       /* static: tl_platform_slug() of the event's platform */
    char *source_label;         /* owned by the rows */
    char *body;                 /* owned: compact JSON object */
} tl_view_row_t;

typedef struct tl_view_rows {
    tl_view_row_t *v;
    size_t n;
} tl_view_rows_t;

/* Renders ev (the event carried by ch, decoded) for the profile pf into
 * out, which must be zeroed or previously closed; zero rows is a normal
 * outcome (rule 1).  On success the caller owns out (tl_view_rows_close).
 * Errors: TL_ENOMEM (out is then empty).  Any thread; pure. */
int tl_view_render(const tl_profile_t *pf, const tl_change_t *ch, const tl_event_t *ev,
                   tl_view_rows_t *out);

/* Frees the rows' strings and array and empties out.  NULL-safe. */
void tl_view_rows_close(tl_view_rows_t *out);

/* Byte length of the longest prefix of s[0..len) of at most max bytes that
 * ends on a UTF-8 character boundary (never inside a multi-byte sequence;
 * at least one character when max >= 4 and len > 0).  Cannot fail. */
size_t tl_view_utf8_cut(const char *s, size_t len, size_t max);

#endif
