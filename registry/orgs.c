/*
 * Orgs in PostgreSQL: create, list (search, pages by slug), get, update, suspend and
 * resume. An org has a slug (its public name in URLs and CLIs), a class used by funding
 * reports, an optional plan, a contact, a monthly anchor day and a status.
 */
#include "registry/registry_int.h"

#include <stdlib.h>
#include <string.h>

#define ORG_COLS                                                                           \
    "o.id, o.slug, o.name, o.class, coalesce(p.name, ''), o.anchor_day, o.status, "        \
    "to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), o.contact"
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
    cm_copy(o->contact, sizeof o->contact, PQgetvalue(res, row, 8));
}

static int org_insert(PGconn *db, struct reg_org *o, char *err, size_t errlen)
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
                           " VALUES ($1, $2, $3, (SELECT id FROM plans WHERE name = $4 FOR SHARE))"
                           " RETURNING *)"
                           " SELECT " ORG_COLS " FROM ins o LEFT JOIN plans p ON p.id = o.plan_id",
                           4, params, read_org, o, "", err, errlen);
    if (rc == CM_EXISTS)
        cm_fmt(err, errlen, "org %s already exists", slug);
    return rc;
}

int reg_org_create(PGconn *db, const char *actor, struct reg_org *o, char *err, size_t errlen)
{
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = org_insert(db, o, err, errlen);
    if (rc == CM_OK) {
        char target[80];
        cm_fmt(target, sizeof target, "org:%s", o->slug);
        rc = reg_audit(db, actor, "org.create", target, NULL, reg_org_json(o), err, errlen);
    }
    return reg_finish(db, rc, err, errlen);
}

int reg_org_list(PGconn *db, const char *search, const char *after, int limit,
                 struct reg_org **out, size_t *n, char *err, size_t errlen)
{
    char lim[16];
    cm_fmt(lim, sizeof lim, "%d", limit < 1 ? 1 : limit > 1000 ? 1000 : limit);
    const char *params[] = {search, after, lim};
    /* strpos, not LIKE: a search for "%" or "_" means those characters. */
    return reg_query_rows(db,
                          "SELECT " ORG_COLS ORG_FROM " WHERE o.slug > $2 AND ($1 = '' OR"
                          " strpos(o.slug, lower($1)) > 0 OR strpos(lower(o.name), lower($1)) > 0)"
                          " ORDER BY o.slug LIMIT $3::int",
                          3, params, sizeof **out, read_org, (void **)out, n, err, errlen);
}

int reg_org_get(PGconn *db, const char *slug, struct reg_org *out, char *err, size_t errlen)
{
    const char *params[] = {slug};
    char notfound[96];
    cm_fmt(notfound, sizeof notfound, "no org named %.64s", slug);
    return reg_query_one(db, "SELECT " ORG_COLS ORG_FROM " WHERE o.slug = $1", 1, params,
                         read_org, out, notfound, err, errlen);
}

/* The update statement's parameters: every column, NULL where unchanged. */
static int validate_change(const struct reg_org_change *ch, char *err, size_t errlen)
{
    if (ch->name != NULL && (ch->name[0] == '\0' || strlen(ch->name) > 200))
        return cm_fmt(err, errlen, "name must be 1-200 characters"), CM_INVALID;
    if (ch->class_ != NULL && !reg_valid_class(ch->class_))
        return cm_fmt(err, errlen, "class must be commercial, nonprofit, academic, individual "
                                   "or unknown"), CM_INVALID;
    if (ch->contact != NULL && strlen(ch->contact) > 200)
        return cm_fmt(err, errlen, "contact must be at most 200 characters"), CM_INVALID;
    if (ch->anchor_day != 0 && (ch->anchor_day < 1 || ch->anchor_day > 28))
        return cm_fmt(err, errlen, "anchor_day must be 1-28"), CM_INVALID;
    return CM_OK;
}

/* Runs update (params: slug, then its own) for slug inside an audited transaction. */
static int org_change(PGconn *db, const char *actor, const char *action, const char *slug,
                      const char *update, int nparams, const char *const *params,
                      struct reg_org *out, char *err, size_t errlen)
{
    struct reg_org before;
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    const char *p1[] = {slug};
    char notfound[96];
    cm_fmt(notfound, sizeof notfound, "no org named %.64s", slug);
    int rc = reg_query_one(db, "SELECT " ORG_COLS ORG_FROM " WHERE o.slug = $1 FOR UPDATE OF o",
                           1, p1, read_org, &before, notfound, err, errlen);
    if (rc == CM_OK) {
        PGresult *res = PQexecParams(db, update, nparams, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            cm_pg_error(db, res, err, errlen);
            rc = CM_ERR;
        }
        PQclear(res);
    }
    if (rc == CM_OK)
        rc = reg_query_one(db, "SELECT " ORG_COLS ORG_FROM " WHERE o.slug = $1", 1, p1,
                           read_org, out, notfound, err, errlen);
    if (rc == CM_OK) {
        char target[80];
        cm_fmt(target, sizeof target, "org:%s", slug);
        rc = reg_audit(db, actor, action, target, reg_org_json(&before), reg_org_json(out), err,
                       errlen);
    }
    return reg_finish(db, rc, err, errlen);
}

int reg_org_update(PGconn *db, const char *actor, const char *slug,
                   const struct reg_org_change *ch, struct reg_org *out, char *err,
                   size_t errlen)
{
    int rc = validate_change(ch, err, errlen);
    if (rc != CM_OK)
        return rc;
    if (ch->plan != NULL && ch->plan[0] != '\0') {
        struct reg_plan plan;
        if ((rc = reg_plan_get(db, ch->plan, &plan, err, errlen)) != CM_OK)
            return rc;
    }
    char anchor[8];
    cm_fmt(anchor, sizeof anchor, "%d", ch->anchor_day);
    const char *params[] = {slug, ch->name, ch->class_, ch->contact, ch->plan,
                            ch->anchor_day ? anchor : NULL};
    return org_change(db, actor, "org.update", slug,
                      "UPDATE orgs SET name = coalesce($2, name), class = coalesce($3, class),"
                      " contact = coalesce($4, contact), plan_id = CASE WHEN $5::text IS NULL THEN"
                      " plan_id ELSE (SELECT id FROM plans WHERE name = $5 FOR SHARE) END,"
                      " anchor_day = coalesce($6::smallint, anchor_day), updated_at = now()"
                      " WHERE slug = $1",
                      6, params, out, err, errlen);
}

int reg_org_set_suspended(PGconn *db, const char *actor, const char *slug, bool suspended,
                          struct reg_org *out, char *err, size_t errlen)
{
    const char *params[] = {slug, suspended ? "suspended" : "active"};
    return org_change(db, actor, suspended ? "org.suspend" : "org.resume", slug,
                      "UPDATE orgs SET status = $2, updated_at = now() WHERE slug = $1", 2,
                      params, out, err, errlen);
}
