/*
 * audit_cmd.h -- the read-only commands of `threadline`: replay, verify,
 * state, audit and export (docs/audit.md).
 *
 * Each takes the parsed configuration (the usual --kafka-brokers, --prefix,
 * --pg-dsn, fold options, and --customer, --conversation, --as-of, --from,
 * --json), prints to stdout (progress and errors to stderr) and returns
 * the process exit code:
 *
 *   0  done (verify: every copy agrees)
 *   1  verify: a difference; state/audit/export: the customer or
 *      conversation is not in the log
 *   2  usage (a missing or bad flag, a bad time) or a service unreachable
 *
 * None of them writes anywhere: the log is read without a consumer group
 * and PostgreSQL inside a READ ONLY transaction.  Main thread.
 */
#ifndef TL_AUDIT_CMD_H
#define TL_AUDIT_CMD_H

#include "config.h"

int tl_audit_cmd_replay(const tl_config_t *cfg);
int tl_audit_cmd_verify(const tl_config_t *cfg);
int tl_audit_cmd_state(const tl_config_t *cfg);
int tl_audit_cmd_audit(const tl_config_t *cfg);
int tl_audit_cmd_export(const tl_config_t *cfg);

#endif
