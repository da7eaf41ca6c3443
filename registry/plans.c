/*
 * Plans in PostgreSQL: create, list, get, update, delete (only when no org uses it). A
 * plan's limits are 64-bit counts where 0 means unlimited; the gateway enforces them,
 * this file only stores them.
 */
#include "registry/registry_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_COLS                                                                          \
    "id, name, requests_per_minute, request_burst, bytes_per_second, byte_burst, "         \
    "monthly_bytes, max_concurrent, failure_policy, shadow, "                              \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static void read_plan(const PGresult *res, int row, void *out)
{
    struct reg_plan *p = out;
    memset(p, 0, sizeof *p);
    p->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    cm_copy(p->name, sizeof p->name, PQgetvalue(res, row, 1));
    p->requests_per_minute = strtoll(PQgetvalue(res, row, 2), NULL, 10);
    p->request_burst = strtoll(PQgetvalue(res, row, 3), NULL, 10);
    p->bytes_per_second = strtoll(PQgetvalue(res, row, 4), NULL, 10);
    p->byte_burst = strtoll(PQgetvalue(res, row, 5), NULL, 10);
    p->monthly_bytes = strtoll(PQgetvalue(res, row, 6), NULL, 10);
    p->max_concurrent = (int32_t)strtol(PQgetvalue(res, row, 7), NULL, 10);
    cm_copy(p->failure_policy, sizeof p->failure_policy, PQgetvalue(res, row, 8));
    p->shadow = PQgetvalue(res, row, 9)[0] == 't';
    cm_copy(p->created_at, sizeof p->created_at, PQgetvalue(res, row, 10));
}

static int validate(const struct reg_plan *p, char *err, size_t errlen)
{
    if (!reg_valid_plan_name(p->name))
        return cm_fmt(err, errlen, "plan name must be 1-63 of a-z 0-9 _ . - starting with a "
                                   "letter or digit"), CM_INVALID;
    if (strcmp(p->failure_policy, "open") != 0 && strcmp(p->failure_policy, "closed") != 0)
        return cm_fmt(err, errlen, "failure policy must be open or closed"), CM_INVALID;
    if (p->requests_per_minute < 0 || p->request_burst < 0 || p->bytes_per_second < 0 ||
        p->byte_burst < 0 || p->monthly_bytes < 0 || p->max_concurrent < 0)
        return cm_fmt(err, errlen, "limits must not be negative"), CM_INVALID;
    return CM_OK;
}

/* The statement's parameters $2..$9 (limits, policy, shadow) from p into v. */
static void limit_params(const struct reg_plan *p, char v[6][24], const char *params[9])
{
    snprintf(v[0], sizeof v[0], "%" PRId64, p->requests_per_minute);
    snprintf(v[1], sizeof v[1], "%" PRId64, p->request_burst);
    snprintf(v[2], sizeof v[2], "%" PRId64, p->bytes_per_second);
    snprintf(v[3], sizeof v[3], "%" PRId64, p->byte_burst);
    snprintf(v[4], sizeof v[4], "%" PRId64, p->monthly_bytes);
    snprintf(v[5], sizeof v[5], "%" PRId32, p->max_concurrent);
    params[0] = p->name;
    for (int i = 0; i < 6; i++)
        params[i + 1] = v[i];
    params[7] = p->failure_policy;
    params[8] = p->shadow ? "true" : "false";
}

static void audit_target(const char *name, char *target, size_t len)
{
    cm_fmt(target, len, "plan:%s", name);
}

int reg_plan_create(PGconn *db, const char *actor, struct reg_plan *p, char *err,
                    size_t errlen)
{
    int rc = validate(p, err, errlen);
    if (rc != CM_OK)
        return rc;
    char v[6][24];
    const char *params[9];
    limit_params(p, v, params);
    char name[64];
    cm_copy(name, sizeof name, p->name);
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    rc = reg_query_one(db,
                           "INSERT INTO plans (name, requests_per_minute, request_burst,"
                           " bytes_per_second, byte_burst, monthly_bytes, max_concurrent,"
                           " failure_policy, shadow)"
                           " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING " PLAN_COLS,
                           9, params, read_plan, p, "", err, errlen);
    if (rc == CM_EXISTS)
        cm_fmt(err, errlen, "plan %s already exists", name);
    if (rc == CM_OK) {
        char target[80];
        audit_target(name, target, sizeof target);
        rc = reg_audit(db, actor, "plan.create", target, NULL, reg_plan_json(p), err, errlen);
    }
    return reg_finish(db, rc, err, errlen);
}

int reg_plan_list(PGconn *db, struct reg_plan **out, size_t *n, char *err, size_t errlen)
{
    return reg_query_rows(db, "SELECT " PLAN_COLS " FROM plans ORDER BY name", 0, NULL,
                          sizeof **out, read_plan, (void **)out, n, err, errlen);
}

int reg_plan_get(PGconn *db, const char *name, struct reg_plan *out, char *err, size_t errlen)
{
    const char *params[] = {name};
    char notfound[96];
    cm_fmt(notfound, sizeof notfound, "no plan named %.64s", name);
    return reg_query_one(db, "SELECT " PLAN_COLS " FROM plans WHERE name = $1", 1, params,
                         read_plan, out, notfound, err, errlen);
}

/* Reads and locks plan name in the caller's transaction: CM_OK, CM_NOTFOUND, CM_ERR. */
static int plan_lock(PGconn *db, const char *name, struct reg_plan *out, char *err,
                     size_t errlen)
{
    const char *params[] = {name};
    char notfound[96];
    cm_fmt(notfound, sizeof notfound, "no plan named %.64s", name);
    return reg_query_one(db, "SELECT " PLAN_COLS " FROM plans WHERE name = $1 FOR UPDATE", 1,
                         params, read_plan, out, notfound, err, errlen);
}

/* Copies the fields of p named by mask onto out. */
static void apply_mask(struct reg_plan *out, const struct reg_plan *p, unsigned mask)
{
    if (mask & REG_PLAN_RPM)
        out->requests_per_minute = p->requests_per_minute;
    if (mask & REG_PLAN_REQUEST_BURST)
        out->request_burst = p->request_burst;
    if (mask & REG_PLAN_BPS)
        out->bytes_per_second = p->bytes_per_second;
    if (mask & REG_PLAN_BYTE_BURST)
        out->byte_burst = p->byte_burst;
    if (mask & REG_PLAN_MONTHLY)
        out->monthly_bytes = p->monthly_bytes;
    if (mask & REG_PLAN_CONCURRENT)
        out->max_concurrent = p->max_concurrent;
    if (mask & REG_PLAN_FAILURE)
        cm_copy(out->failure_policy, sizeof out->failure_policy, p->failure_policy);
    if (mask & REG_PLAN_SHADOW)
        out->shadow = p->shadow;
}

int reg_plan_update(PGconn *db, const char *actor, const char *name, const struct reg_plan *p,
                    unsigned mask, struct reg_plan *out, char *err, size_t errlen)
{
    struct reg_plan before;
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = plan_lock(db, name, &before, err, errlen);
    if (rc == CM_OK) {
        *out = before;
        apply_mask(out, p, mask);
        rc = validate(out, err, errlen);
    }
    if (rc == CM_OK) {
        char v[6][24];
        const char *params[9];
        limit_params(out, v, params);
        rc = reg_query_one(db,
                           "UPDATE plans SET requests_per_minute = $2, request_burst = $3,"
                           " bytes_per_second = $4, byte_burst = $5, monthly_bytes = $6,"
                           " max_concurrent = $7, failure_policy = $8, shadow = $9,"
                           " updated_at = now() WHERE name = $1 RETURNING " PLAN_COLS,
                           9, params, read_plan, out, "the plan disappeared", err, errlen);
    }
    if (rc == CM_OK) {
        char target[80];
        audit_target(name, target, sizeof target);
        rc = reg_audit(db, actor, "plan.update", target, reg_plan_json(&before),
                       reg_plan_json(out), err, errlen);
    }
    return reg_finish(db, rc, err, errlen);
}

int reg_plan_delete(PGconn *db, const char *actor, const char *name, char *err, size_t errlen)
{
    struct reg_plan before;
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = plan_lock(db, name, &before, err, errlen);
    if (rc == CM_OK) {
        /* Orgs that take the plan meanwhile wait for this lock (FOR SHARE on plans). */
        const char *p1[] = {name};
        PGresult *res = PQexecParams(db,
                                     "SELECT count(*) FROM orgs o JOIN plans p ON p.id = o.plan_id"
                                     " WHERE p.name = $1",
                                     1, NULL, p1, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            cm_pg_error(db, res, err, errlen);
            rc = CM_ERR;
        } else if (strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
            cm_fmt(err, errlen, "plan %.64s is used by %s org(s): move them to another plan first",
                   name, PQgetvalue(res, 0, 0));
            rc = CM_DENIED;
        }
        PQclear(res);
    }
    if (rc == CM_OK) {
        const char *p1[] = {name};
        PGresult *res = PQexecParams(db, "DELETE FROM plans WHERE name = $1", 1, NULL, p1, NULL,
                                     NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            cm_pg_error(db, res, err, errlen);
            rc = CM_ERR;
        }
        PQclear(res);
    }
    if (rc == CM_OK) {
        char target[80];
        audit_target(name, target, sizeof target);
        rc = reg_audit(db, actor, "plan.delete", target, reg_plan_json(&before), NULL, err, errlen);
    }
    return reg_finish(db, rc, err, errlen);
}
