/*
 * API keys in PostgreSQL: create (the secret leaves this file once, to the caller, and
 * only its SHA-256 is stored), list, revoke, rotate (the old key expires after a grace
 * period), and the gateway's lookup by hash. Every change is audited.
 */
#include "registry/registry_int.h"

#include <stdlib.h>
#include <string.h>

#define KEY_COLS                                                                           \
    "k.id, o.slug, k.name, k.display, "                                                    \
    "to_char(k.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "         \
    "coalesce(to_char(k.last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), " \
    "coalesce(to_char(k.revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), " \
    "coalesce(to_char(k.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), " \
    "k.org_id"

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
    cm_copy(k->expires_at, sizeof k->expires_at, PQgetvalue(res, row, 7));
    k->org_id = strtoll(PQgetvalue(res, row, 8), NULL, 10);
}

static void audit_target(const struct reg_key *k, char *target, size_t len)
{
    cm_fmt(target, len, "key:%lld", (long long)k->id);
}

/* Inserts a new key for org_slug inside the caller's transaction. */
static int key_insert(PGconn *db, const char *prefix, const char *org_slug, const char *name,
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

int reg_key_create(PGconn *db, const char *actor, const char *prefix, const char *org_slug,
                   const char *name, struct reg_key *out, char *secret, size_t secretlen,
                   char *err, size_t errlen)
{
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = key_insert(db, prefix, org_slug, name, out, secret, secretlen, err, errlen);
    if (rc == CM_OK) {
        char target[48];
        audit_target(out, target, sizeof target);
        rc = reg_audit(db, actor, "key.create", target, NULL, reg_key_json(out), err, errlen);
    }
    rc = reg_finish(db, rc, err, errlen);
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

/* The key id (decimal text) named by an id or a display prefix. */
static int key_id(PGconn *db, const char *id_or_display, char *id, size_t idlen, char *err,
                  size_t errlen)
{
    uint64_t n;
    if (cm_parse_u64(id_or_display, &n) == CM_OK) {
        if (cm_copy(id, idlen, id_or_display) != CM_OK || n > INT64_MAX)
            return cm_fmt(err, errlen, "no key %.40s", id_or_display), CM_NOTFOUND;
        return CM_OK;
    }
    return key_id_by_display(db, id_or_display, id, idlen, err, errlen);
}

/* Reads the key named by id_or_display; lock: FOR UPDATE in the caller's transaction. */
static int key_read(PGconn *db, const char *id_or_display, bool lock, struct reg_key *out,
                    char *err, size_t errlen)
{
    char id[24];
    int rc = key_id(db, id_or_display, id, sizeof id, err, errlen);
    if (rc != CM_OK)
        return rc;
    const char *params[] = {id};
    char notfound[64];
    cm_fmt(notfound, sizeof notfound, "no key %.40s", id_or_display);
    return reg_query_one(db,
                         lock ? "SELECT " KEY_COLS " FROM api_keys k JOIN orgs o ON o.id = k.org_id"
                                " WHERE k.id = $1::bigint FOR UPDATE OF k"
                              : "SELECT " KEY_COLS " FROM api_keys k JOIN orgs o ON o.id = k.org_id"
                                " WHERE k.id = $1::bigint",
                         1, params, read_key, out, notfound, err, errlen);
}

int reg_key_get(PGconn *db, const char *id_or_display, struct reg_key *out, char *err,
                size_t errlen)
{
    return key_read(db, id_or_display, false, out, err, errlen);
}

int reg_key_revoke(PGconn *db, const char *actor, const char *id_or_display,
                   struct reg_key *out, char *err, size_t errlen)
{
    struct reg_key before;
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = key_read(db, id_or_display, true, &before, err, errlen);
    if (rc == CM_OK) {
        char id[24];
        cm_fmt(id, sizeof id, "%lld", (long long)before.id);
        const char *params[] = {id};
        rc = reg_query_one(db,
                           "WITH k AS (UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                           " WHERE id = $1::bigint RETURNING *)"
                           " SELECT " KEY_COLS " FROM k JOIN orgs o ON o.id = k.org_id",
                           1, params, read_key, out, "the key disappeared", err, errlen);
    }
    if (rc == CM_OK) {
        char target[48];
        audit_target(out, target, sizeof target);
        rc = reg_audit(db, actor, "key.revoke", target, reg_key_json(&before), reg_key_json(out),
                       err, errlen);
    }
    return reg_finish(db, rc, err, errlen);
}

/* Sets the old key's expiry to now + grace_s (never later than an earlier expiry). */
static int key_expire(PGconn *db, const struct reg_key *old, int64_t grace_s,
                      struct reg_key *out, char *err, size_t errlen)
{
    char id[24], grace[24];
    cm_fmt(id, sizeof id, "%lld", (long long)old->id);
    cm_fmt(grace, sizeof grace, "%lld", (long long)grace_s);
    const char *params[] = {id, grace};
    return reg_query_one(db,
                         "WITH k AS (UPDATE api_keys SET expires_at = least(expires_at,"
                         " now() + make_interval(secs => $2::bigint)) WHERE id = $1::bigint"
                         " RETURNING *) SELECT " KEY_COLS " FROM k JOIN orgs o ON o.id = k.org_id",
                         2, params, read_key, out, "the key disappeared", err, errlen);
}

int reg_key_rotate(PGconn *db, const char *actor, const char *prefix, const char *id_or_display,
                   int64_t grace_s, struct reg_key *fresh, struct reg_key *old, char *secret,
                   size_t secretlen, char *err, size_t errlen)
{
    if (grace_s < 0 || grace_s > 30 * 86400)
        return cm_fmt(err, errlen, "the grace period must be 0-2592000 seconds (30 days)"),
               CM_INVALID;
    struct reg_key before;
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = key_read(db, id_or_display, true, &before, err, errlen);
    if (rc == CM_OK && before.revoked_at[0] != '\0')
        rc = CM_DENIED, cm_fmt(err, errlen, "key %lld is revoked", (long long)before.id);
    if (rc == CM_OK && before.expires_at[0] != '\0')
        rc = CM_DENIED, cm_fmt(err, errlen, "key %lld has already been rotated",
                               (long long)before.id);
    if (rc == CM_OK)
        rc = key_insert(db, prefix, before.org_slug, before.name, fresh, secret, secretlen, err,
                        errlen);
    if (rc == CM_OK)
        rc = key_expire(db, &before, grace_s, old, err, errlen);
    if (rc == CM_OK) {
        char target[48];
        audit_target(old, target, sizeof target);
        json_t *b = reg_key_json(&before);
        json_t *a = json_pack("{s:o, s:o}", "old", reg_key_json(old), "new", reg_key_json(fresh));
        rc = reg_audit(db, actor, "key.rotate", target, b, a, err, errlen);
    }
    rc = reg_finish(db, rc, err, errlen);
    if (rc != CM_OK)
        memset(secret, 0, secretlen);
    return rc;
}

int reg_key_lookup(PGconn *db, const uint8_t sha256[32], struct reg_identity *out, char *err,
                   size_t errlen)
{
    char hex[65];
    cm_hex(sha256, 32, hex);
    const char *params[] = {hex};
    PGresult *res = PQexecParams(db,
                                 "SELECT k.id, o.id, coalesce(o.plan_id, 0), o.slug,"
                                 " o.status = 'suspended', k.revoked_at IS NOT NULL"
                                 " OR k.expires_at <= now(), o.anchor_day"
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
    if (rc == CM_OK) {
        /* "Last used" to the minute: one write per key per minute at most (the gateway
         * looks a key up again only when its cache entry expires). Best effort. */
        PGresult *up = PQexecParams(db,
                                    "UPDATE api_keys SET last_used_at = now()"
                                    " WHERE secret_sha256 = decode($1, 'hex') AND"
                                    " (last_used_at IS NULL OR"
                                    " last_used_at < now() - interval '1 minute')",
                                    1, NULL, params, NULL, NULL, 0);
        PQclear(up);
    }
    return rc;
}
