/*
 * pg.h -- PostgreSQL: connections and migrations.
 *
 * libpq errors are converted here, once: a lost or refused connection is
 * TL_EPG_DOWN (callers pause and retry), anything else TL_EPG.  Migrations
 * are compiled in from schemas/postgres/NNN_name.sql and applied in name
 * order, each once, inside its own transaction, under an advisory lock so
 * two processes starting together do not race.
 */
#ifndef TL_PG_H
#define TL_PG_H

#include <libpq-fe.h>

typedef struct tl_migration {
    const char *name;       /* "001_init" */
    const char *sql;
} tl_migration_t;

extern const tl_migration_t tl_migrations[];
extern const int tl_migrations_count;

/* Connects; on failure logs why and returns NULL with *err = TL_EPG_DOWN.
 * Caller owns the connection (PQfinish).  Any thread. */
PGconn *tl_pg_connect(const char *dsn, int *err);

/* Applies pending migrations; *applied counts those applied now.  Errors:
 * TL_EPG_DOWN, TL_EPG (the failing migration is named in the log and
 * rolled back).  Any thread. */
int tl_pg_migrate(PGconn *pg, int *applied);

/* Converts the state of a failed result/connection to TL_EPG_DOWN or
 * TL_EPG.  Cannot fail. */
int tl_pg_err(PGconn *pg, const PGresult *res);

/* Runs a command without parameters; 0 or tl_pg_err().  Logs failures. */
int tl_pg_exec(PGconn *pg, const char *sql);

#endif
