/*
 * Orgs in PostgreSQL: create, list, get. An org has a slug (its public name in URLs and
 * CLIs), a class used by funding reports, an optional plan and a status.
 */
#include "registry/registry.h"

#include <stdlib.h>
#include <string.h>

#define ORG_COLS                                                                           \
    "o.id, o.slug, o.name, o.class, coalesce(p.name, ''), o.anchor_day, o.status, "        \
    "to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define ORG_FROM " FROM orgs o LEFT JOIN plans p ON p.id = o.plan_id"

static void read_org(const PGresult *res, int row, struct reg_org *o)
{
    memset(o, 0, sizeof *o);
    o->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    cm_copy(o->slug, sizeof o->slug, PQgetvalue(res, row, 1));
    cm_copy(o->name, sizeof o->name, PQgetvalue(res, row, 2));
    cm_copy(o->class_, sizeof o->class_, PQgetvalue(res, row, 3));
    cm_copy(o->plan, sizeof o->plan, PQgetvalue(res, row, 4));
    o->anchor_day = (int)strtol(PQgetvalue(res, row, 5), NULL, 10);
    cm_copy(o->status, sizeof o->status, PQgetvalue(res, row, 6));
    cm_copy(o->created_at, sizeof o->created_at, PQgetvalue(res, row, 7));
}

int reg_org_create(PGconn *db, struct reg_org *o, char *err, size_t errlen)
{
    if (!reg_valid_slug(o->slug))
        return cm_fmt(err, errlen, "org slug must be 1-63 of a-z 0-9 - starting with a letter "
                                   "or digit"), CM_INVALID;
    if (o->name[0] == '\0')
        cm_copy(o->name, sizeof o->name, o->slug);
    if (o->class_[0] == '\0')
        cm_copy(o->class_, sizeof o->class_, "unknown");
    if (!reg_valid_class(o->class_))
        return cm_fmt(err, errlen, "class must be commercial, nonprofit, academic, individual "
                                   "or unknown"), CM_INVALID;
    if (o->plan[0] != '\0') {
        struct reg_plan plan;
        int rc = reg_plan_get(db, o->plan, &plan, err, errlen);
        if (rc != CM_OK)
            return rc;
    }
    const char *params[] = {o->slug, o->name, o->class_, o->plan};
    PGresult *res = PQexecParams(db,
                                 "WITH ins AS (INSERT INTO orgs (slug, name, class, plan_id)"
                                 " VALUES ($1, $2, $3, (SELECT id FROM plans WHERE name = $4))"
                                 " RETURNING *)"
                                 " SELECT " ORG_COLS " FROM ins o LEFT JOIN plans p"
                                 " ON p.id = o.plan_id",
                                 4, NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        read_org(res, 0, o);
    } else if (cm_pg_state_is(res, "23505")) {
        cm_fmt(err, errlen, "org %s already exists", o->slug);
        rc = CM_EXISTS;
    } else {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    }
    PQclear(res);
    return rc;
}

int reg_org_list(PGconn *db, struct reg_org **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    PGresult *res = PQexecParams(db, "SELECT " ORG_COLS ORG_FROM " ORDER BY o.slug", 0, NULL,
                                 NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    int rows = PQntuples(res);
    *out = calloc(rows > 0 ? (size_t)rows : 1, sizeof **out);
    if (*out == NULL) {
        PQclear(res);
        return cm_fmt(err, errlen, "out of memory"), CM_ERR;
    }
    for (int i = 0; i < rows; i++)
        read_org(res, i, &(*out)[i]);
    *n = (size_t)rows;
    PQclear(res);
    return CM_OK;
}

int reg_org_get(PGconn *db, const char *slug, struct reg_org *out, char *err, size_t errlen)
{
    const char *params[] = {slug};
    PGresult *res = PQexecParams(db, "SELECT " ORG_COLS ORG_FROM " WHERE o.slug = $1", 1, NULL,
                                 params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    } else if (PQntuples(res) == 0) {
        cm_fmt(err, errlen, "no org named %.64s", slug);
        rc = CM_NOTFOUND;
    } else {
        read_org(res, 0, out);
    }
    PQclear(res);
    return rc;
}
