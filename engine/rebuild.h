/*
 * rebuild.h -- `threadline rebuild --platform P`: view_P again from the
 * log, swapped in while the live view keeps serving.
 *
 * A view is derived data; when a profile changes, or a view is in doubt,
 * it is rebuilt from <prefix>.changes (which carries every event byte for
 * byte).  The rebuild never writes the live table:
 *
 *   1. view_P_shadow is created like view_P (LIKE ... INCLUDING ALL);
 *   2. a projector (projection.h) with its own consumer "rebuild:P" reads
 *      every partition of .changes from the beginning up to the end offset
 *      seen at the start (a partition that reaches it is paused there, not
 *      read past, so that step 3 can resume it), rendering into the shadow
 *      table in
 *      ordinary batches (rows + the rebuild consumer's offsets in one
 *      transaction); progress goes to stderr when it is a terminal;
 *   3. one transaction swaps: LOCK view_P (readers wait only for the
 *      rename), lock the live consumer "P"'s stored offsets, bring the
 *      shadow up to them if the live worker got further meanwhile, rename
 *      view_P away and the shadow to view_P, drop the old one, and set the
 *      live consumer's stored offsets to where the shadow ends when it got
 *      further than the live worker -- so a live worker restarted later
 *      continues exactly where the rebuilt view ends.
 *
 * For agent, only view_agent is rebuilt.  The unified tables (customers,
 * conversations, customer_fields, conflicts) are aggregates that the live
 * agent worker maintains in the same transactions as its offsets; moving
 * those offsets forward for a rebuilt copy would make the live worker skip
 * aggregate updates, and swapping four tables at once while REST joins
 * them is a larger lock than a view's.  They are checked by `threadline
 * verify` instead, and are rebuilt by projecting into a fresh database.
 * For the same reason the agent consumer's offsets are never moved by a
 * rebuild (rows the shadow already has are inserted again as no-ops).
 */
#ifndef TL_REBUILD_H
#define TL_REBUILD_H

#include "config.h"
#include "event.h"

/* Rebuilds the view of platform (one of tl_projection_platforms) as above,
 * using cfg's Kafka, PostgreSQL, prefix, batch and profiles.  Blocks until
 * done.  Returns TL_OK, or an error after logging why (TL_ECONFIG for a bad
 * profile, TL_EKAFKA, TL_EPG_DOWN, TL_EPG, TL_ETIMEOUT when the live view
 * could not be locked within 30 s); on error the live view is unchanged.
 * Main thread. */
int tl_rebuild_run(const tl_config_t *cfg, tl_platform_t platform);

#endif
