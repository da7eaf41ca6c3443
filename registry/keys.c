/*
 * API keys in PostgreSQL: create (the secret leaves this file once, to the caller, and
 * only its SHA-256 is stored), list, revoke, and the gateway's lookup by hash.
 */
#include "registry/registry_int.h"

#include <stdlib.h>
#include <string.h>

#define KEY_COLS                                                                           \
    "k.id, o.slug, k.name, k.display, "                                                    \
    "to_char(k.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "         \
    "coalesce(to_char(k.last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), " \
    "coalesce(to_char(k.revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"

static void read_key(const PGresult *res, int row, void *out)
{
    struct reg_key *k = out;
    memset(k, 0, sizeof *k);
    k->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    cm_copy(k->org_slug, sizeof k->org_slug, PQgetvalue(res, row, 1));
    cm_copy(k->name, sizeof k->name, PQgetvalue(res, row, 2));
    cm_copy(k->display, sizeof k->display, PQgetvalue(res, row, 3));
    cm_copy(k->created_at, sizeof k->created_at, PQgetvalue(res, row, 4));
    cm_copy(k->last_used_at, sizeof k->last_used_at, PQgetvalue(res, row, 5));
    cm_copy(k->revoked_at, sizeof k->revoked_at, PQgetvalue(res, row, 6));
}

int reg_key_create(PGconn *db, const char *prefix, const char *org_slug, const char *name,
                   struct reg_key *out, char *secret, size_t secretlen, char *err,
                   size_t errlen)
{
    if (strlen(name) > 200)
        return cm_fmt(err, errlen, "key name is longer than 200 characters"), CM_INVALID;
    struct reg_org org;
    int rc = reg_org_get(db, org_slug, &org, err, errlen);
    if (rc != CM_OK)
        return rc;
    if (reg_key_generate(prefix, secret, secretlen) != CM_OK)
        return cm_fmt(err, errlen, "cannot generate a key (getrandom failed)"), CM_ERR;
    uint8_t hash[32];
    char hash_hex[65], display[32];
    cm_sha256(secret, strlen(secret), hash);
    cm_hex(hash, 32, hash_hex);
    reg_key_display(prefix, secret, display, sizeof display);
    const char *params[] = {org.slug, name, display, hash_hex};
    rc = reg_query_one(db,
                       "WITH k AS (INSERT INTO api_keys (org_id, name, display, secret_sha256)"
                       " SELECT id, $2, $3, decode($4, 'hex') FROM orgs WHERE slug = $1"
                       " RETURNING *)"
                       " SELECT " KEY_COLS " FROM k JOIN orgs o ON o.id = k.org_id",
                       4, params, read_key, out, "the org disappeared", err, errlen);
    if (rc != CM_OK)
        memset(secret, 0, secretlen);
    return rc;
}

int reg_key_list(PGconn *db, const char *org_slug, struct reg_key **out, size_t *n, char *err,
                 size_t errlen)
{
    *out = NULL;
    *n = 0;
    struct reg_org org;
    int rc = reg_org_get(db, org_slug, &org, err, errlen);
    if (rc != CM_OK)
        return rc;
    const char *params[] = {org_slug};
    return reg_query_rows(db,
                          "SELECT " KEY_COLS " FROM api_keys k JOIN orgs o ON o.id = k.org_id"
                          " WHERE o.slug = $1 ORDER BY k.id",
                          1, params, sizeof **out, read_key, (void **)out, n, err, errlen);
}

/* Resolves a display prefix to one key id: CM_NOTFOUND, CM_INVALID (ambiguous), CM_ERR. */
static int key_id_by_display(PGconn *db, const char *display, char *id, size_t idlen, char *err,
                             size_t errlen)
{
    const char *params[] = {display};
    PGresult *res = PQexecParams(db, "SELECT id FROM api_keys WHERE display = $1 LIMIT 2", 1,
                                 NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    } else if (PQntuples(res) == 0) {
        cm_fmt(err, errlen, "no key %.40s", display);
        rc = CM_NOTFOUND;
    } else if (PQntuples(res) > 1) {
        cm_fmt(err, errlen, "%.40s matches several keys: revoke by id", display);
        rc = CM_INVALID;
    } else {
        cm_copy(id, idlen, PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return rc;
}

int reg_key_revoke(PGconn *db, const char *id_or_display, struct reg_key *out, char *err,
                   size_t errlen)
{
    char id[24];
    uint64_t n;
    if (cm_parse_u64(id_or_display, &n) == CM_OK) {
        if (cm_copy(id, sizeof id, id_or_display) != CM_OK || n > INT64_MAX)
            return cm_fmt(err, errlen, "no key %.40s", id_or_display), CM_NOTFOUND;
    } else {
        int rc = key_id_by_display(db, id_or_display, id, sizeof id, err, errlen);
        if (rc != CM_OK)
            return rc;
    }
    const char *params[] = {id};
    char notfound[64];
    cm_fmt(notfound, sizeof notfound, "no key %.40s", id_or_display);
    return reg_query_one(db,
                         "WITH k AS (UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                         " WHERE id = $1::bigint RETURNING *)"
                         " SELECT " KEY_COLS " FROM k JOIN orgs o ON o.id = k.org_id",
                         1, params, read_key, out, notfound, err, errlen);
}

int reg_key_lookup(PGconn *db, const uint8_t sha256[32], struct reg_identity *out, char *err,
                   size_t errlen)
{
    char hex[65];
    cm_hex(sha256, 32, hex);
    const char *params[] = {hex};
    PGresult *res = PQexecParams(db,
                                 "SELECT k.id, o.id, coalesce(o.plan_id, 0), o.slug,"
                                 " o.status = 'suspended', k.revoked_at IS NOT NULL, o.anchor_day"
                                 " FROM api_keys k JOIN orgs o ON o.id = k.org_id"
                                 " WHERE k.secret_sha256 = decode($1, 'hex')",
                                 1, NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    } else if (PQntuples(res) == 0) {
        rc = CM_NOTFOUND;
    } else {
        memset(out, 0, sizeof *out);
        out->key_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        out->org_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        out->plan_id = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        cm_copy(out->org_slug, sizeof out->org_slug, PQgetvalue(res, 0, 3));
        out->org_suspended = PQgetvalue(res, 0, 4)[0] == 't';
        out->anchor_day = (int)strtol(PQgetvalue(res, 0, 6), NULL, 10);
        rc = PQgetvalue(res, 0, 5)[0] == 't' ? CM_DENIED : CM_OK;
    }
    PQclear(res);
    return rc;
}
