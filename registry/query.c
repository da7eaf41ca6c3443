/*
 * The query shapes every registry file uses: "rows into an array of records", "one
 * record or not found" and "one JSON document or not found". Queries stay with the file
 * that owns the table.
 */
#include "registry/registry_int.h"

#include <stdlib.h>

int reg_query_rows(PGconn *db, const char *sql, int nparams, const char *const *params,
                   size_t size, reg_read_row read, void **out, size_t *n, char *err,
                   size_t errlen)
{
    *out = NULL;
    *n = 0;
    PGresult *res = PQexecParams(db, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    int rows = PQntuples(res);
    char *array = calloc(rows > 0 ? (size_t)rows : 1, size);
    if (array == NULL) {
        PQclear(res);
        return cm_fmt(err, errlen, "out of memory"), CM_ERR;
    }
    for (int i = 0; i < rows; i++)
        read(res, i, array + (size_t)i * size);
    PQclear(res);
    *out = array;
    *n = (size_t)rows;
    return CM_OK;
}

int reg_query_one(PGconn *db, const char *sql, int nparams, const char *const *params,
                  reg_read_row read, void *out, const char *notfound, char *err,
                  size_t errlen)
{
    PGresult *res = PQexecParams(db, sql, nparams, NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
        read(res, 0, out);
    } else if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        cm_copy(err, errlen, notfound);
        rc = CM_NOTFOUND;
    } else if (cm_pg_state_is(res, "23505")) {
        rc = CM_EXISTS;
    } else {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    }
    PQclear(res);
    return rc;
}

int reg_json_row(PGconn *db, const char *sql, int nparams, const char *const *params,
                 json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    PGresult *res = PQexecParams(db, sql, nparams, NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cm_pg_state_is(res, "23505")   ? CM_EXISTS
             : cm_pg_state_is(res, "23514") ? CM_INVALID
                                            : CM_ERR;
        cm_pg_error(db, res, err, errlen);
    } else if (PQntuples(res) == 0) {
        rc = CM_NOTFOUND;
    } else if ((*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL)) == NULL) {
        rc = CM_ERR;
        cm_fmt(err, errlen, "out of memory");
    }
    PQclear(res);
    return rc;
}
