/*
 * threadline.c -- the one binary: `threadline <command> [flags]`.
 *
 * Commands are a table so that `threadline --help` lists exactly what
 * exists.  Every command takes the configuration flags of config.h.
 */
#include <stdio.h>
#include <string.h>

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
     "Serves HTTP on --http: POST /v1/ingest/{platform}, GET /v1/conversations/{id}/timeline,\n"
     "GET /v1/customers/{id}, /healthz, /readyz, /metrics.  --kafka embedded uses librdkafka's\n"
     "in-process mock cluster (memory only; never for durability claims).", cmd_serve},
    {"migrate", "apply the PostgreSQL migrations of schemas/postgres once each",
     "Applies every migration not yet recorded in schema_migrations, each in its own\n"
     "transaction.  Safe to run repeatedly and concurrently.", cmd_migrate},
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
