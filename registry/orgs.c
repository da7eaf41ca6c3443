/*
 * Orgs in PostgreSQL: create, list, get. An org has a slug (its public name in URLs and
 * CLIs), a class used by funding reports, an optional plan and a status.
 */
#include "registry/registry_int.h"

#include <stdlib.h>
#include <string.h>

#define ORG_COLS                                                                           \
    "o.id, o.slug, o.name, o.class, coalesce(p.name, ''), o.anchor_day, o.status, "        \
    "to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define ORG_FROM " FROM orgs o LEFT JOIN plans p ON p.id = o.plan_id"

static void read_org(const PGresult *res, int row, void *out)
{
    struct reg_org *o = out;
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
    char slug[64];
    cm_copy(slug, sizeof slug, o->slug);
    int rc = reg_query_one(db,
                           "WITH ins AS (INSERT INTO orgs (slug, name, class, plan_id)"
                           " VALUES ($1, $2, $3, (SELECT id FROM plans WHERE name = $4))"
                           " RETURNING *)"
                           " SELECT " ORG_COLS " FROM ins o LEFT JOIN plans p ON p.id = o.plan_id",
                           4, params, read_org, o, "", err, errlen);
    if (rc == CM_EXISTS)
        cm_fmt(err, errlen, "org %s already exists", slug);
    return rc;
}

int reg_org_list(PGconn *db, struct reg_org **out, size_t *n, char *err, size_t errlen)
{
    return reg_query_rows(db, "SELECT " ORG_COLS ORG_FROM " ORDER BY o.slug", 0, NULL,
                          sizeof **out, read_org, (void **)out, n, err, errlen);
}

int reg_org_get(PGconn *db, const char *slug, struct reg_org *out, char *err, size_t errlen)
{
    const char *params[] = {slug};
    char notfound[96];
    cm_fmt(notfound, sizeof notfound, "no org named %.64s", slug);
    return reg_query_one(db, "SELECT " ORG_COLS ORG_FROM " WHERE o.slug = $1", 1, params,
                         read_org, out, notfound, err, errlen);
}
