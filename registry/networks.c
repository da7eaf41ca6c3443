/*
 * CIDR ranges mapped to orgs (org_networks, sql/005): add, list with the anonymous traffic
 * each range carried, remove. Attribution happens when usage is read (hm_network_org, the
 * most specific range wins), never at enforcement. Every change is audited.
 */
#include "registry/registry_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NET_COLS                                                                           \
    "n.id, o.slug, n.network::text, n.note, "                                              \
    "to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static void read_network(const PGresult *res, int row, void *out)
{
    struct reg_network *n = out;
    memset(n, 0, sizeof *n);
    n->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    cm_copy(n->org_slug, sizeof n->org_slug, PQgetvalue(res, row, 1));
    cm_copy(n->cidr, sizeof n->cidr, PQgetvalue(res, row, 2));
    cm_copy(n->note, sizeof n->note, PQgetvalue(res, row, 3));
    cm_copy(n->created_at, sizeof n->created_at, PQgetvalue(res, row, 4));
    if (PQnfields(res) > 6) {
        n->requests = strtoll(PQgetvalue(res, row, 5), NULL, 10);
        n->bytes = strtoll(PQgetvalue(res, row, 6), NULL, 10);
    }
}

static void audit_target(const struct reg_network *n, char *target, size_t len)
{
    cm_fmt(target, len, "network:%s", n->cidr);
}

/* Checks the text form before PostgreSQL sees it: digits, hex, '.', ':' and one '/'. */
static bool plausible_cidr(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 49 || strspn(s, "0123456789abcdefABCDEF.:/") != n)
        return false;
    const char *slash = strchr(s, '/');
    return slash == NULL || (strchr(slash + 1, '/') == NULL && slash[1] != '\0');
}

int reg_network_add(PGconn *db, const char *actor, const char *org_slug, const char *cidr,
                    const char *note, struct reg_network *out, char *err, size_t errlen)
{
    static const char bad[] = "network must be a CIDR range such as 192.0.2.0/24 or "
                              "2001:db8::/32, with no bits set after the prefix";
    if (!plausible_cidr(cidr))
        return cm_fmt(err, errlen, "%s", bad), CM_INVALID;
    if (strlen(note) > 200)
        return cm_fmt(err, errlen, "note must be at most 200 characters"), CM_INVALID;
    struct reg_org org;
    int rc = reg_org_get(db, org_slug, &org, err, errlen);
    if (rc != CM_OK)
        return rc;
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    char org_id[24];
    cm_fmt(org_id, sizeof org_id, "%" PRId64, org.id);
    const char *params[] = {org_id, cidr, note};
    PGresult *res = PQexecParams(db,
                                 "WITH n AS (INSERT INTO org_networks (org_id, network, note)"
                                 " VALUES ($1::bigint, $2::cidr, $3) RETURNING *)"
                                 " SELECT " NET_COLS " FROM n JOIN orgs o ON o.id = n.org_id",
                                 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        read_network(res, 0, out);
    } else if (cm_pg_state_is(res, "23505")) {
        rc = CM_EXISTS;
        cm_fmt(err, errlen, "%s is already mapped to an org", cidr);
    } else if (cm_pg_state_is(res, "22P02") || cm_pg_state_is(res, "22023")) {
        rc = CM_INVALID; /* malformed, or host bits set ("invalid cidr value") */
        cm_fmt(err, errlen, "%s", bad);
    } else {
        rc = CM_ERR;
        cm_pg_error(db, res, err, errlen);
    }
    PQclear(res);
    if (rc == CM_OK) {
        char target[96];
        audit_target(out, target, sizeof target);
        rc = reg_audit(db, actor, "network.add", target, NULL, reg_network_json(out), err, errlen);
    }
    return reg_finish(db, rc, err, errlen);
}

int reg_network_list(PGconn *db, const char *org_slug, int64_t from, int64_t to,
                     struct reg_network **out, size_t *n, char *err, size_t errlen)
{
    char lo[24], hi[24];
    cm_fmt(lo, sizeof lo, "%" PRId64, from);
    cm_fmt(hi, sizeof hi, "%" PRId64, to);
    const char *params[] = {org_slug, lo, hi};
    /* An anonymous network counts for the most specific range that holds it. */
    return reg_query_rows(
        db,
        "WITH u AS (SELECT network, sum(requests) AS r, sum(bytes) AS b"
        " FROM hm_usage_rows(to_timestamp($2::bigint), to_timestamp($3::bigint), false)"
        " WHERE org_id IS NULL AND network IS NOT NULL GROUP BY network),"
        " best AS (SELECT u.r, u.b, (SELECT m.id FROM org_networks m WHERE m.network >>= u.network"
        " ORDER BY masklen(m.network) DESC LIMIT 1) AS id FROM u)"
        " SELECT " NET_COLS ", coalesce(sum(best.r), 0), coalesce(sum(best.b), 0)"
        " FROM org_networks n JOIN orgs o ON o.id = n.org_id LEFT JOIN best ON best.id = n.id"
        " WHERE $1 = '' OR o.slug = $1 GROUP BY n.id, o.slug ORDER BY o.slug, n.network",
        3, params, sizeof **out, read_network, (void **)out, n, err, errlen);
}

int reg_network_remove(PGconn *db, const char *actor, int64_t id, struct reg_network *out,
                       char *err, size_t errlen)
{
    char idtext[24];
    cm_fmt(idtext, sizeof idtext, "%" PRId64, id);
    const char *params[] = {idtext};
    char notfound[64];
    cm_fmt(notfound, sizeof notfound, "no network range %" PRId64, id);
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = reg_query_one(db,
                           "WITH n AS (DELETE FROM org_networks WHERE id = $1::bigint RETURNING *)"
                           " SELECT " NET_COLS " FROM n JOIN orgs o ON o.id = n.org_id",
                           1, params, read_network, out, notfound, err, errlen);
    if (rc == CM_OK) {
        char target[96];
        audit_target(out, target, sizeof target);
        rc = reg_audit(db, actor, "network.remove", target, reg_network_json(out), NULL, err,
                       errlen);
    }
    return reg_finish(db, rc, err, errlen);
}
