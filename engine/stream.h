/*
 * stream.h -- GET /v1/stream: server-sent events of changes in the caller's
 * scope.
 *
 * One consumer per serve process reads <prefix>.changes (read_committed,
 * every partition assigned by hand, no group commits: the stream keeps no
 * position of its own and starts at the end), on its own thread.  Each
 * change becomes a small note -- ids, kind, the event's log position, no
 * message bodies -- that the thread hands to the loop through a uv_async;
 * the loop fans it out to the connected clients whose scope covers it (the
 * tenant; for agents, conversations assigned to them or their team, which
 * the thread looks up in PostgreSQL and keeps briefly).  A client that needs
 * the content reads it with `?after=<position>`.
 *
 * SSE `id:` is the stream's position vector "P:O,P:O,..." on .changes after
 * that note.  A client reconnecting with Last-Event-ID gets the notes it
 * missed from a bounded in-memory ring; if the ring no longer reaches back
 * that far it gets `event: reset` and should re-read what it shows.
 *
 * Every client has a bounded buffer (--stream-buffer, default
 * TL_STREAM_CLIENT_BUFFER): a client that falls that far behind
 * gets a final `event: dropped` and is disconnected, so a slow reader never
 * holds up the others or grows memory.  The socket's kernel send buffer is
 * kept small (TL_STREAM_SOCKET_BUFFER) so that it cannot hide megabytes of
 * backlog from that bound.  A comment line every
 * TL_STREAM_HEARTBEAT_MS keeps proxies from closing an idle stream.
 */
#ifndef TL_STREAM_H
#define TL_STREAM_H

#include <uv.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "kafka.h"

#define TL_STREAM_HEARTBEAT_MS 15000
#define TL_STREAM_CLIENT_BUFFER (256 * 1024)
#define TL_STREAM_RING 4096
#define TL_STREAM_SOCKET_BUFFER (32 * 1024)   /* SO_SNDBUF of a stream's socket */

typedef struct tl_stream tl_stream_t;

/* Registers GET /v1/stream on http and starts the consumer thread, which
 * waits for the changes topic to exist.  kafka, auth and cfg must outlive
 * it.  Errors: TL_ENOMEM, TL_EKAFKA (consumer could not be created).  Loop
 * thread. */
int tl_stream_new(uv_loop_t *loop, tl_http_t *http, tl_kafka_t *kafka, tl_auth_t *auth,
                  const tl_config_t *cfg, tl_stream_t **out);

/* Stops the consumer thread and closes the loop handles (the loop must run
 * once more before tl_stream_free).  Connected clients are ended.  Loop
 * thread. */
void tl_stream_close(tl_stream_t *s);
/* NULL ok. */
void tl_stream_free(tl_stream_t *s);

#endif
