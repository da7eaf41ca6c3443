/*
 * Transactions and the audit log: every change the registry makes runs in one transaction
 * that also appends an audit row (who, what, which object, before and after as JSON), so
 * a change and its record commit or vanish together. Reading the log is paged by id.
 */
#include "registry/registry_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int reg_begin(PGconn *db, char *err, size_t errlen)
{
    return cm_pg_command(db, "BEGIN", err, errlen);
}

int reg_finish(PGconn *db, int rc, char *err, size_t errlen)
{
    if (rc == CM_OK)
        return cm_pg_command(db, "COMMIT", err, errlen) == CM_OK ? CM_OK : CM_ERR;
    char ignored[128];
    cm_pg_command(db, "ROLLBACK", ignored, sizeof ignored);
    return rc;
}

int reg_audit(PGconn *db, const char *actor, const char *action, const char *target,
              json_t *before, json_t *after, char *err, size_t errlen)
{
    char *b = before ? json_dumps(before, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *a = after ? json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(before);
    json_decref(after);
    const char *params[] = {actor, action, target, b, a};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO audit_log (actor, action, target, before, after)"
                                 " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)",
                                 5, NULL, params, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? CM_OK : CM_ERR;
    if (rc != CM_OK)
        cm_pg_error(db, res, err, errlen);
    PQclear(res);
    free(b);
    free(a);
    return rc;
}

int reg_audit_list(PGconn *db, int64_t before_id, int limit, const char *target,
                   json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    char before[24], lim[16];
    cm_fmt(before, sizeof before, "%" PRId64, before_id > 0 ? before_id : INT64_MAX);
    cm_fmt(lim, sizeof lim, "%d", limit);
    const char *params[] = {before, lim, target};
    /* The whole page is built by PostgreSQL as one JSON array, before/after kept as JSON. */
    PGresult *res = PQexecParams(
        db,
        "SELECT coalesce(json_agg(json_build_object('id', id, 'at',"
        " to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'actor', actor,"
        " 'action', action, 'target', target, 'before', before, 'after', after)"
        " ORDER BY id DESC), '[]') FROM (SELECT * FROM audit_log WHERE id < $1::bigint"
        " AND starts_with(target, $3) ORDER BY id DESC LIMIT $2::int) a",
        3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    *out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (*out == NULL)
        return cm_fmt(err, errlen, "out of memory"), CM_ERR;
    return CM_OK;
}
