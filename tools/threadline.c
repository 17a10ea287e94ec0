/*
 * threadline.c -- the one binary: `threadline <command> [flags]`.
 *
 * Commands are a table so that `threadline --help` lists exactly what
 * exists.  Every command takes the configuration flags of config.h.
 */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "audit_cmd.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "pg.h"
#include "rebuild.h"
#include "server.h"

typedef struct command {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(const tl_config_t *cfg);
    /* Commands with arguments of their own parse argv themselves. */
    int (*main)(tl_config_t *cfg, int argc, char **argv);
} command_t;

static int cmd_serve(const tl_config_t *cfg) { return tl_server_run(cfg); }

static int cmd_migrate(const tl_config_t *cfg) {
    int err, applied = 0;
    PGconn *pg = tl_pg_connect(cfg->pg_dsn, &err);
    if (!pg) {
        fprintf(stderr, "threadline migrate: cannot reach PostgreSQL (%s)\n", cfg->pg_dsn);
        return 1;
    }
    err = tl_pg_migrate(pg, &applied);
    PQfinish(pg);
    if (err) {
        fprintf(stderr, "threadline migrate: failed: %s\n", tl_strerror(err));
        return 1;
    }
    printf("threadline migrate: %d applied, %d known\n", applied, tl_migrations_count);
    return 0;
}

static int cmd_rebuild(const tl_config_t *cfg) {
    tl_platform_t p;
    if (tl_platform_from_slug(cfg->platform, strlen(cfg->platform), &p)) {
        fprintf(stderr, "threadline rebuild: --platform \"%s\" is not a platform (see --help)\n",
                cfg->platform);
        return 2;
    }
    return tl_rebuild_run(cfg, p) ? 1 : 0;
}

static const command_t commands[] = {
    {"serve", "run ingest, fold, projection and the REST API in one process",
     "Serves HTTP on --http: POST /v1/ingest/{platform}, the agent REST API of docs/api.md\n"
     "(bearer keys; --auth off only for local trials), /healthz, /readyz, /metrics.  --kafka embedded uses librdkafka's\n"
     "in-process mock cluster (memory only; never for durability claims).", cmd_serve},
    {"migrate", "apply the PostgreSQL migrations of schemas/postgres once each",
     "Applies every migration not yet recorded in schema_migrations, each in its own\n"
     "transaction.  Safe to run repeatedly and concurrently.", cmd_migrate},
    {"keys", "create, list and revoke API keys (create prints the key once)",
     "threadline keys create --tenant T --role connector|agent|admin|auditor [--agent-id A]\n"
     "  [--team T] [--platforms web,api] [--label L]; keys list [--tenant T]; keys revoke KEY_ID",
     NULL, tl_auth_keys_command},
    {"replay", "re-fold <prefix>.events from the log alone, read-only",
     "Reads .events read_committed without a consumer group (nothing is committed) up to the\n"
     "end offsets seen at start and folds every record with the fold workers' code, into\n"
     "memory.  --customer C: only C's key and partition; --as-of T: only events received at\n"
     "or before T; --from P:O,...: start offsets.  Progress on a terminal; events/s at the end.\n"
     "--scratch-schema S: also writes the result to a new PostgreSQL schema S.",
     tl_audit_cmd_replay},
    {"verify", "compare a replay with .state and every PostgreSQL view; exit 1 on a difference",
     "Replays everything, then compares per customer the latest .state record (byte for\n"
     "byte) and customers, and per conversation conversations, view_agent and the view_<p>\n"
     "tables, by SHA-256 digest; lists each differing conversation or customer with the\n"
     "first differing field and where.  Exit 0 all agree, 1 differences, 2 usage or a\n"
     "service unreachable.  --views: the views serve runs (default all seven); --profiles:\n"
     "the profiles it renders with.  --json for tooling.  See docs/audit.md.", tl_audit_cmd_verify},
    {"state", "a customer's state at a time, with the provenance of every field",
     "--customer C [--as-of T] [--json]: folds C's events received at or before T (RFC 3339\n"
     "or epoch ms; default: all) and shows its fields, each with the event that last set it\n"
     "(platform, agent or customer, when), open conflicts, links and conversations.",
     tl_audit_cmd_state},
    {"audit", "a chronological account of a customer's or a conversation's events",
     "--customer C | --conversation X [--json]: every event in effective_ts order with who\n"
     "acted, what the fold did (fields set, conflicts opened/resolved, links, duplicates,\n"
     "ignored events and why), assignments, tags, closes and replies.  Follows identity\n"
     "links to the linked customers' events.", tl_audit_cmd_audit},
    {"export", "everything held about a customer and its linked identities, as JSON",
     "--customer C: a data-subject access request: for C and every customer linked with it,\n"
     "its identities, state, conversations and every event as sent.", tl_audit_cmd_export},
    {"rebuild", "rebuild one platform's view from the log and swap it in",
     "Reads <prefix>.changes from the beginning into view_<platform>_shadow, then swaps it\n"
     "for view_<platform> in one transaction while the live view keeps serving.  Needs\n"
     "--platform (agent, web, app, mini_program, wechat, douyin, phone).  Progress on a\n"
     "terminal.  See docs/projections.md.", cmd_rebuild},
};

static void usage(FILE *out) {
    fprintf(out, "usage: threadline <command> [flags]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`threadline <command> --help` for its flags.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    const command_t *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "threadline: unknown command \"%s\"\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    tl_config_t cfg;
    if (tl_config_init(&cfg)) return 2;
    if (cmd->main) return cmd->main(&cfg, argc - 1, argv + 1);
    for (int i = 2; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: threadline %s [flags]\n\n%s\n\n%s\n\nflags:\n", cmd->name, cmd->summary, cmd->usage);
            tl_config_usage(stdout);
            return 0;
        }
        int r = tl_config_flag(&cfg, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "threadline %s: unknown argument \"%s\" (see --help)\n", cmd->name, argv[i]);
            return 2;
        }
    }
    return cmd->run(&cfg);
}
