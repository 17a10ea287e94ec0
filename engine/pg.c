/*
 * pg.c -- connections and migrations (see pg.h).
 */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "pg.h"

PGconn *tl_pg_connect(const char *dsn, int *err) {
    PGconn *pg = PQconnectdb(dsn);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        tl_warn("pg", "cannot connect: %s", pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        *err = TL_EPG_DOWN;
        return NULL;
    }
    PQsetErrorVerbosity(pg, PQERRORS_DEFAULT);
    return pg;
}

int tl_pg_err(PGconn *pg, const PGresult *res) {
    if (!pg || PQstatus(pg) != CONNECTION_OK) return TL_EPG_DOWN;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* Class 08: connection exception; 57P01..03: admin shutdown, crash. */
    if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)) return TL_EPG_DOWN;
    return TL_EPG;
}

int tl_pg_exec(PGconn *pg, const char *sql) {
    PGresult *r = PQexec(pg, sql);
    int rc = TL_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = tl_pg_err(pg, r);
        tl_warn("pg", "%.60s...: %s", sql, PQerrorMessage(pg));
    }
    PQclear(r);
    return rc;
}

int tl_pg_migrate(PGconn *pg, int *applied) {
    int rc;
    *applied = 0;
    if ((rc = tl_pg_exec(pg, "SET client_min_messages = warning")) ||
        (rc = tl_pg_exec(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                             " name text PRIMARY KEY,"
                             " applied_at timestamptz NOT NULL DEFAULT now())")) ||
        (rc = tl_pg_exec(pg, "SELECT pg_advisory_lock(7467162)")))
        return rc;
    for (int i = 0; i < tl_migrations_count && !rc; i++) {
        const tl_migration_t *mg = &tl_migrations[i];
        const char *params[] = {mg->name};
        if ((rc = tl_pg_exec(pg, "BEGIN"))) break;
        PGresult *r = PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, NULL,
                                   params, NULL, NULL, 0);
        int done = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) rc = tl_pg_err(pg, r);
        PQclear(r);
        if (rc || done) {
            tl_pg_exec(pg, "ROLLBACK");
            continue;
        }
        if ((rc = tl_pg_exec(pg, mg->sql))) {
            tl_error("pg", "migration %s failed; rolled back", mg->name);
            tl_pg_exec(pg, "ROLLBACK");
            break;
        }
        r = PQexecParams(pg, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, NULL, params,
                         NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = tl_pg_err(pg, r);
        PQclear(r);
        if (rc || (rc = tl_pg_exec(pg, "COMMIT"))) {
            tl_pg_exec(pg, "ROLLBACK");
            break;
        }
        tl_info("pg", "applied migration %s", mg->name);
        (*applied)++;
    }
    tl_pg_exec(pg, "SELECT pg_advisory_unlock(7467162)");
    return rc;
}
