/*
 * Migration runner: applies the numbered files of sql/ (embedded at build time) in order,
 * each in its own transaction together with its schema_migrations row, under an advisory
 * lock. Landed migrations are never edited; a new change is a new file.
 */
#include "common/common.h"

#include <stdio.h>
#include <string.h>

#define MIGRATE_LOCK_KEY "7238411"

static int applied_version(PGconn *conn, int version, bool *applied, char *err, size_t errlen)
{
    char v[16];
    cm_fmt(v, sizeof v, "%d", version);
    const char *params[] = {v};
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
                                 NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(conn, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    *applied = PQntuples(res) > 0;
    PQclear(res);
    return CM_OK;
}

static int apply_one(PGconn *conn, const struct cm_migration *m, char *err, size_t errlen)
{
    char msg[512];
    if (cm_pg_command(conn, "BEGIN", msg, sizeof msg) != CM_OK)
        goto fail;
    if (cm_pg_command(conn, m->sql, msg, sizeof msg) != CM_OK)
        goto fail;
    char v[16];
    cm_fmt(v, sizeof v, "%d", m->version);
    const char *params[] = {v, m->name};
    PGresult *res = PQexecParams(conn,
                                 "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                 2, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        cm_pg_error(conn, res, msg, sizeof msg);
    PQclear(res);
    if (!ok || cm_pg_command(conn, "COMMIT", msg, sizeof msg) != CM_OK)
        goto fail;
    return CM_OK;
fail:
    cm_fmt(err, errlen, "migration %s failed: %s", m->name, msg);
    cm_pg_command(conn, "ROLLBACK", msg, sizeof msg);
    return CM_ERR;
}

int cm_migrate(PGconn *conn, int *applied, char *err, size_t errlen)
{
    *applied = 0;
    if (cm_pg_command(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen) != CM_OK)
        return CM_ERR;
    int rc = cm_pg_command(conn,
                           "CREATE TABLE IF NOT EXISTS schema_migrations ("
                           " version integer PRIMARY KEY,"
                           " name text NOT NULL,"
                           " applied_at timestamptz NOT NULL DEFAULT now())",
                           err, errlen);
    for (const struct cm_migration *m = cm_migrations; rc == CM_OK && m->sql != NULL; m++) {
        bool done = false;
        rc = applied_version(conn, m->version, &done, err, errlen);
        if (rc == CM_OK && !done) {
            rc = apply_one(conn, m, err, errlen);
            if (rc == CM_OK) {
                (*applied)++;
                cm_log(CM_LOG_INFO, "migration_applied", "version=%d name=%s", m->version,
                       m->name);
            }
        }
    }
    char ignored[128];
    cm_pg_command(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignored,
                  sizeof ignored);
    return rc;
}
