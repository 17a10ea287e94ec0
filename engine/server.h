/*
 * server.h -- `threadline serve`: every stage in one process.
 *
 * The loop thread runs HTTP (ingest and reads); a fold worker thread and a
 * projection worker thread run beside it.  Each stage can be switched off
 * (--fold 0, --project 0) so that the same binary scales out by running
 * more processes in the same consumer groups.  SIGINT/SIGTERM stop it
 * cleanly: stop accepting, answer what is in flight, leave the groups.
 */
#ifndef TL_SERVER_H
#define TL_SERVER_H

#include "config.h"

/* Runs until a signal; returns a process exit status (0 after a clean stop,
 * 1 if start-up failed or a worker died).  Main thread. */
int tl_server_run(const tl_config_t *cfg);

#endif
