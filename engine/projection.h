/*
 * projection.h -- materialising <prefix>.changes into PostgreSQL, one
 * target platform per worker, exactly once in effect.
 *
 * There is one worker per target platform (web, app, mini_program, wechat,
 * douyin, phone, and agent, the unified view of the agent console).  Each
 * is its own consumer group on .changes and renders every Change with its
 * platform's profile (profile.h, view.h) into view_<platform>.  The agent
 * worker also maintains the unified tables: customers, conversations
 * (status, assignee, team, tags, closed_at from the Conversation* events),
 * customer_fields and conflicts (from the Change's fold changes).  The
 * identities table is not written here: engine/identity.c owns it.
 *
 * Names, so that operators and other modules find a worker's traces:
 *
 *   consumer group      <prefix>-project-<platform>
 *   consumer            <platform>   (the slug: "agent", "wechat", ...)
 *     projection_offsets.consumer   where it is in .changes
 *     projection_positions.consumer how far it has got in .events; REST's
 *                                   read-your-writes waits on "agent"
 *   rebuild consumer    rebuild:<platform> (rebuild.h)
 *
 * Each batch is one PostgreSQL transaction holding the rows and the
 * consumer's offsets; on assignment the worker seeks to the offsets stored
 * there, never to Kafka's committed offsets.  So a crash at any point
 * replays at most the batch that did not commit.  View rows are idempotent
 * besides (ON CONFLICT DO NOTHING on (tenant_id, event_id, part)), which is
 * what lets a rebuild and a live worker overlap; the unified tables'
 * aggregates (item counts) rely on the offsets alone, so only the agent
 * worker's own transactions may write them.  When PostgreSQL is
 * unreachable the worker pauses its partitions, retries with backoff, and
 * once connected again seeks to the stored offsets and resumes; the log
 * keeps everything meanwhile.
 */
#ifndef TL_PROJECTION_H
#define TL_PROJECTION_H

#include <stdatomic.h>

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>

#include "config.h"
#include "event.h"
#include "kafka.h"
#include "profile.h"

typedef struct tl_projection tl_projection_t;

/* What a projector writes. */
typedef struct tl_projection_spec {
    tl_platform_t platform;     /* whose profile and view */
    const char *table;          /* NULL: "view_<slug>" */
    const char *consumer;       /* NULL: "<slug>" */
    int unified;                /* also the unified tables (the live agent worker) */
} tl_projection_spec_t;

/* The platforms that have a view, in the order `--views` lists them by
 * default; *n gets their number.  Static.  Cannot fail. */
const tl_platform_t *tl_projection_platforms(size_t *n);

/* Parses a --views list ("agent,wechat"; "all" or "" = every view) into
 * out[] (capacity TL_PLATFORM__COUNT); *n gets the count.  TL_ECONFIG with
 * a message in err naming the unknown or repeated entry.  Any thread. */
int tl_projection_parse_views(const char *list, tl_platform_t *out, size_t *n, char *err,
                              size_t errlen);

/* A projector without a thread or a consumer: what `threadline rebuild`
 * drives.  Takes ownership of pf (freed by tl_projection_free, also on
 * failure).  Connects to PostgreSQL lazily.  Errors: TL_ENOMEM.  Any
 * thread; the projector then belongs to that thread. */
int tl_projection_new(tl_kafka_t *kafka, const tl_config_t *cfg, const tl_projection_spec_t *spec,
                      tl_profile_t *pf, tl_projection_t **out);

/* Writes msgs[0..n) (records of .changes) in one transaction: their rows
 * and, for each partition, the next offset under the spec's consumer.
 * Messages stay the caller's.  Errors: TL_EPG_DOWN (connection lost: call
 * again later), TL_EPG, TL_ENOMEM; the transaction is rolled back.
 * Projector's thread. */
int tl_projection_apply(tl_projection_t *p, rd_kafka_message_t **msgs, int n);

/* The projector's connection, (re)connecting with backoff until it works
 * or *stop becomes non-zero (then NULL).  Projector's thread. */
PGconn *tl_projection_pg(tl_projection_t *p, const atomic_int *stop);

/* Frees a projector made by tl_projection_new.  NULL does nothing. */
void tl_projection_free(tl_projection_t *p);

/* Starts the worker thread of spec->platform (normally spec = {platform,
 * NULL, NULL, platform == TL_PLATFORM_AGENT}), rendering with pf (owned
 * from now on, also on failure).  On success *out is owned by the caller
 * (tl_projection_stop).  Errors: TL_ENOMEM, TL_EKAFKA.  Any thread. */
int tl_projection_start(tl_kafka_t *kafka, const tl_config_t *cfg, const tl_projection_spec_t *spec,
                        tl_profile_t *pf, tl_projection_t **out);

/* Stops after the current batch, leaves the group, joins, frees.  NULL ok. */
void tl_projection_stop(tl_projection_t *p);

#endif
