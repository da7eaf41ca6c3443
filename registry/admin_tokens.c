/*
 * Named admin tokens: the admin API's bearer credentials. Only the SHA-256 of a token is
 * stored; its name is the "who" of the audit log. HUBMETER_ADMIN_TOKEN bootstraps the
 * token named "bootstrap"; more are created (and revoked) through the API.
 */
#include "registry/registry_int.h"

#include <stdlib.h>
#include <string.h>

#define TOKEN_JSON                                                                         \
    "json_build_object('name', name, 'created_at', to_char(created_at AT TIME ZONE 'UTC',"  \
    " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'revoked_at', to_char(revoked_at AT TIME ZONE 'UTC'," \
    " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"

static void hash_hex(const char *secret, char hex[65])
{
    uint8_t hash[32];
    cm_sha256(secret, strlen(secret), hash);
    cm_hex(hash, 32, hex);
}

int reg_admin_bootstrap(PGconn *db, const char *secret, char *err, size_t errlen)
{
    if (secret[0] == '\0')
        return CM_OK;
    char hex[65];
    hash_hex(secret, hex);
    const char *params[] = {hex};
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    /* A changed HUBMETER_ADMIN_TOKEN replaces the bootstrap token, unless it was revoked. */
    json_t *row = NULL;
    int rc = reg_json_row(db,
                      "INSERT INTO admin_tokens (name, secret_sha256) VALUES ('bootstrap',"
                      " decode($1, 'hex')) ON CONFLICT (name) DO UPDATE SET secret_sha256 ="
                      " EXCLUDED.secret_sha256, created_at = now() WHERE admin_tokens.revoked_at"
                      " IS NULL AND admin_tokens.secret_sha256 <> EXCLUDED.secret_sha256"
                      " RETURNING " TOKEN_JSON,
                      1, params, &row, err, errlen);
    if (rc == CM_OK)
        rc = reg_audit(db, "config", "admin_token.bootstrap", "admin_token:bootstrap", NULL, row,
                       err, errlen);
    else
        json_decref(row);
    if (rc == CM_NOTFOUND) /* already in place (or revoked): nothing changed */
        rc = CM_OK;
    if (rc == CM_EXISTS)
        cm_fmt(err, errlen, "HUBMETER_ADMIN_TOKEN is already the secret of another admin token");
    return reg_finish(db, rc, err, errlen);
}

int reg_admin_check(PGconn *db, const uint8_t sha256[32], char *name, size_t namelen,
                    char *err, size_t errlen)
{
    char hex[65];
    cm_hex(sha256, 32, hex);
    const char *params[] = {hex};
    PGresult *res = PQexecParams(db,
                                 "SELECT name, revoked_at IS NOT NULL FROM admin_tokens"
                                 " WHERE secret_sha256 = decode($1, 'hex')",
                                 1, NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    } else if (PQntuples(res) == 0) {
        rc = CM_NOTFOUND;
    } else {
        cm_copy(name, namelen, PQgetvalue(res, 0, 0));
        rc = PQgetvalue(res, 0, 1)[0] == 't' ? CM_DENIED : CM_OK;
    }
    PQclear(res);
    return rc;
}

int reg_admin_token_create(PGconn *db, const char *actor, const char *name, char *secret,
                           size_t secretlen, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!reg_valid_plan_name(name))
        return cm_fmt(err, errlen, "token name must be 1-63 of a-z 0-9 _ . - starting with a "
                                   "letter or digit"), CM_INVALID;
    if (reg_key_generate(REG_ADMIN_PREFIX, secret, secretlen) != CM_OK)
        return cm_fmt(err, errlen, "cannot generate a token (getrandom failed)"), CM_ERR;
    char hex[65];
    hash_hex(secret, hex);
    const char *params[] = {name, hex};
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = reg_json_row(db,
                      "INSERT INTO admin_tokens (name, secret_sha256)"
                      " VALUES ($1, decode($2, 'hex'))"
                      " RETURNING " TOKEN_JSON,
                      2, params, out, err, errlen);
    if (rc == CM_EXISTS)
        cm_fmt(err, errlen, "an admin token named %s already exists", name);
    if (rc == CM_OK) {
        char target[96];
        cm_fmt(target, sizeof target, "admin_token:%s", name);
        rc = reg_audit(db, actor, "admin_token.create", target, NULL, json_incref(*out), err,
                       errlen);
    }
    rc = reg_finish(db, rc, err, errlen);
    if (rc != CM_OK) {
        memset(secret, 0, secretlen);
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int reg_admin_token_list(PGconn *db, json_t **out, char *err, size_t errlen)
{
    int rc = reg_json_row(db,
                      "SELECT coalesce(json_agg(" TOKEN_JSON " ORDER BY name), '[]')"
                      " FROM admin_tokens",
                      0, NULL, out, err, errlen);
    return rc;
}

int reg_admin_token_revoke(PGconn *db, const char *actor, const char *name, json_t **out,
                           char *err, size_t errlen)
{
    const char *params[] = {name};
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = reg_json_row(db,
                      "UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, now())"
                      " WHERE name = $1 RETURNING " TOKEN_JSON,
                      1, params, out, err, errlen);
    if (rc == CM_NOTFOUND)
        cm_fmt(err, errlen, "no admin token named %.64s", name);
    if (rc == CM_OK) {
        char target[96];
        cm_fmt(target, sizeof target, "admin_token:%s", name);
        rc = reg_audit(db, actor, "admin_token.revoke", target, NULL, json_incref(*out), err,
                       errlen);
    }
    rc = reg_finish(db, rc, err, errlen);
    if (rc != CM_OK) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}
