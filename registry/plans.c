/*
 * Plans in PostgreSQL: create, list, get. A plan's limits are 64-bit counts where 0 means
 * unlimited; the gateway (issue 4) enforces them, this file only stores them.
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

int reg_plan_create(PGconn *db, struct reg_plan *p, char *err, size_t errlen)
{
    if (!reg_valid_plan_name(p->name))
        return cm_fmt(err, errlen, "plan name must be 1-63 of a-z 0-9 _ . - starting with a "
                                   "letter or digit"), CM_INVALID;
    if (strcmp(p->failure_policy, "open") != 0 && strcmp(p->failure_policy, "closed") != 0)
        return cm_fmt(err, errlen, "failure policy must be open or closed"), CM_INVALID;
    if (p->requests_per_minute < 0 || p->request_burst < 0 || p->bytes_per_second < 0 ||
        p->byte_burst < 0 || p->monthly_bytes < 0 || p->max_concurrent < 0)
        return cm_fmt(err, errlen, "limits must not be negative"), CM_INVALID;
    char v[7][24];
    snprintf(v[0], sizeof v[0], "%" PRId64, p->requests_per_minute);
    snprintf(v[1], sizeof v[1], "%" PRId64, p->request_burst);
    snprintf(v[2], sizeof v[2], "%" PRId64, p->bytes_per_second);
    snprintf(v[3], sizeof v[3], "%" PRId64, p->byte_burst);
    snprintf(v[4], sizeof v[4], "%" PRId64, p->monthly_bytes);
    snprintf(v[5], sizeof v[5], "%" PRId32, p->max_concurrent);
    const char *params[] = {p->name, v[0], v[1], v[2], v[3], v[4], v[5], p->failure_policy,
                            p->shadow ? "true" : "false"};
    char name[64];
    cm_copy(name, sizeof name, p->name);
    int rc = reg_query_one(db,
                           "INSERT INTO plans (name, requests_per_minute, request_burst,"
                           " bytes_per_second, byte_burst, monthly_bytes, max_concurrent,"
                           " failure_policy, shadow)"
                           " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING " PLAN_COLS,
                           9, params, read_plan, p, "", err, errlen);
    if (rc == CM_EXISTS)
        cm_fmt(err, errlen, "plan %s already exists", name);
    return rc;
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
