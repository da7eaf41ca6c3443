/*
 * Usage broken down and exported: one page of an org's usage grouped by repository, key
 * and/or status class (ordered, with an opaque cursor), the monthly per-hour export that
 * orgs download as CSV, the top consumers across orgs, and all traffic summed by hour or day
 * (the operator page's totals and chart). Reads PostgreSQL only; every
 * figure comes from hm_usage_org / hm_usage_rows (sql/007), like the series.
 */
#include "meter/usage_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CURSOR_TAG "g1."

void meter_cursor_encode(uint64_t offset, char *out, size_t len)
{
    cm_fmt(out, len, CURSOR_TAG "%" PRIu64, offset);
}

int meter_cursor_decode(const char *cursor, uint64_t *offset)
{
    size_t tag = strlen(CURSOR_TAG);
    if (strncmp(cursor, CURSOR_TAG, tag) != 0 || cm_parse_u64(cursor + tag, offset) != CM_OK ||
        *offset > INT64_MAX)
        return CM_INVALID;
    return CM_OK;
}

/* ORDER BY of the groups query: a fixed string per (column, direction), never user text. */
static const char *order_clause(const struct meter_usage_query *q)
{
    bool req = strcmp(q->order_by, "requests") == 0, ref = strcmp(q->order_by, "refused") == 0;
    if (q->order_asc)
        return req ? " ORDER BY 5 ASC, 1, 2, 4" : ref ? " ORDER BY 7 ASC, 1, 2, 4"
                                                     : " ORDER BY 6 ASC, 1, 2, 4";
    return req ? " ORDER BY 5 DESC, 1, 2, 4" : ref ? " ORDER BY 7 DESC, 1, 2, 4"
                                                  : " ORDER BY 6 DESC, 1, 2, 4";
}

static json_t *group_row(const PGresult *res, int row, unsigned group)
{
    json_t *g = json_object();
    if (g == NULL)
        return NULL;
    if (group & METER_GROUP_REPO)
        json_object_set_new(g, "repo", json_string(PQgetvalue(res, row, 0)));
    if (group & METER_GROUP_KEY)
        json_object_set_new(g, "key", PQgetisnull(res, row, 2)
                                          ? json_null()
                                          : json_string(PQgetvalue(res, row, 2)));
    if (group & METER_GROUP_STATUS) {
        char status[8];
        cm_fmt(status, sizeof status, "%sxx", PQgetvalue(res, row, 3));
        json_object_set_new(g, "status", json_string(status));
    }
    json_object_set_new(g, "requests", json_integer(strtoll(PQgetvalue(res, row, 4), NULL, 10)));
    json_object_set_new(g, "bytes", json_integer(strtoll(PQgetvalue(res, row, 5), NULL, 10)));
    json_object_set_new(g, "refused", json_integer(strtoll(PQgetvalue(res, row, 6), NULL, 10)));
    return g;
}

int meter_usage_groups(PGconn *db, const struct meter_usage_query *q, json_t *doc, char *err,
                       size_t errlen)
{
    unsigned limit = q->limit == 0 ? 100 : q->limit;
    char sql[2048], org[24], from[24], to[24], lim[16], off[24];
    cm_fmt(org, sizeof org, "%" PRId64, q->org_id);
    cm_fmt(from, sizeof from, "%" PRId64, q->from);
    cm_fmt(to, sizeof to, "%" PRId64, q->to);
    cm_fmt(lim, sizeof lim, "%u", limit + 1); /* one more tells whether a next page exists */
    cm_fmt(off, sizeof off, "%" PRIu64, q->offset);
    const char *params[] = {org, from, to, q->granularity,
                            (q->group & METER_GROUP_REPO) ? "t" : "f",
                            (q->group & METER_GROUP_KEY) ? "t" : "f",
                            (q->group & METER_GROUP_STATUS) ? "t" : "f", lim, off};
    /* Columns: repo, key id, key prefix, status class, requests, bytes, refused. */
    if (cm_fmt(sql, sizeof sql,
               "SELECT g.repo, g.key_id, k.display, g.status_class, g.r, g.b, g.x FROM"
               " (SELECT CASE WHEN $5::bool THEN repo END AS repo, CASE WHEN $6::bool THEN"
               " key_id END AS key_id, CASE WHEN $7::bool THEN status_class END AS status_class,"
               " sum(requests) AS r, sum(bytes) AS b,"
               " coalesce(sum(requests) FILTER (WHERE refused), 0) AS x"
               " FROM hm_usage_org($1::bigint, to_timestamp($2::bigint),"
               " to_timestamp($3::bigint), $4 = 'minute') GROUP BY 1, 2, 3) g"
               " LEFT JOIN api_keys k ON k.id = g.key_id%s LIMIT $8::bigint OFFSET $9::bigint",
               order_clause(q)) != CM_OK)
        return cm_fmt(err, errlen, "query too long"), CM_ERR;
    PGresult *res = PQexecParams(db, sql, 9, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    int rows = PQntuples(res);
    json_t *groups = json_array();
    for (int i = 0; groups != NULL && i < rows && (unsigned)i < limit; i++)
        json_array_append_new(groups, group_row(res, i, q->group));
    PQclear(res);
    char next[40];
    meter_cursor_encode(q->offset + limit, next, sizeof next);
    if (groups == NULL || json_object_set_new(doc, "groups", groups) != 0 ||
        json_object_set_new(doc, "next_cursor",
                            (unsigned)rows > limit ? json_string(next) : json_null()) != 0)
        return cm_fmt(err, errlen, "out of memory"), CM_ERR;
    return CM_OK;
}

/* Runs sql, whose one row holds one JSON text, into *out. */
static int json_query(PGconn *db, const char *sql, int n, const char *const *params,
                      json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    *out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    return *out != NULL ? CM_OK : (cm_fmt(err, errlen, "out of memory"), CM_ERR);
}

int meter_usage_export(PGconn *db, int64_t org_id, int64_t month_start, json_t **out,
                       char *err, size_t errlen)
{
    char org[24], lo[24], hi[24];
    cm_fmt(org, sizeof org, "%" PRId64, org_id);
    cm_fmt(lo, sizeof lo, "%" PRId64, month_start);
    cm_fmt(hi, sizeof hi, "%" PRId64, cm_month_next(month_start));
    const char *params[] = {org, lo, hi};
    return json_query(
        db,
        "WITH u AS (SELECT date_trunc('hour', bucket) AS hour, key_id, repo,"
        " sum(requests) AS r, sum(bytes) AS b, coalesce(sum(requests) FILTER (WHERE refused), 0)"
        " AS x FROM hm_usage_org($1::bigint, to_timestamp($2::bigint), to_timestamp($3::bigint),"
        " false) GROUP BY 1, 2, 3),"
        " c AS (SELECT hour, key_id, count(DISTINCT address) AS n FROM usage_clients_hourly"
        " WHERE org_id = $1::bigint AND hour >= to_timestamp($2::bigint)"
        " AND hour < to_timestamp($3::bigint) GROUP BY 1, 2)"
        " SELECT coalesce(json_agg(json_build_object('hour', to_char(u.hour AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'key', coalesce(k.display, ''), 'repo', u.repo,"
        " 'requests', u.r, 'bytes', u.b, 'refused', u.x, 'clients', coalesce(c.n, 0))"
        " ORDER BY u.hour, k.display, u.repo), '[]')"
        " FROM u LEFT JOIN api_keys k ON k.id = u.key_id"
        " LEFT JOIN c ON c.hour = u.hour AND c.key_id IS NOT DISTINCT FROM u.key_id",
        3, params, out, err, errlen);
}

int meter_usage_top(PGconn *db, int64_t from, int64_t to, unsigned limit, json_t **out,
                    char *err, size_t errlen)
{
    if (from >= to)
        return cm_fmt(err, errlen, "from must be before to"), CM_INVALID;
    if (limit < 1 || limit > 1000)
        return cm_fmt(err, errlen, "limit must be 1-1000"), CM_INVALID;
    char lo[24], hi[24], lim[16];
    cm_fmt(lo, sizeof lo, "%" PRId64, from);
    cm_fmt(hi, sizeof hi, "%" PRId64, to);
    cm_fmt(lim, sizeof lim, "%u", limit);
    const char *params[] = {lo, hi, lim};
    return json_query(
        db,
        "WITH u AS (SELECT coalesce(org_id, hm_network_org(network)) AS org, requests, bytes,"
        " refused FROM hm_usage_rows(to_timestamp($1::bigint), to_timestamp($2::bigint), false)),"
        " t AS (SELECT o.slug, o.name, o.class, sum(u.bytes) AS b, sum(u.requests) AS r,"
        " coalesce(sum(u.requests) FILTER (WHERE u.refused), 0) AS x FROM u JOIN orgs o"
        " ON o.id = u.org GROUP BY o.id ORDER BY b DESC, o.slug LIMIT $3::int)"
        " SELECT coalesce(json_agg(json_build_object('org', slug, 'name', name, 'class', class,"
        " 'bytes', b, 'requests', r, 'refused', x) ORDER BY b DESC, slug), '[]') FROM t",
        3, params, out, err, errlen);
}

int meter_usage_summary(PGconn *db, int64_t from, int64_t to, const char *granularity,
                        json_t **out, char *err, size_t errlen)
{
    int64_t step = strcmp(granularity, "hour") == 0  ? 3600
                   : strcmp(granularity, "day") == 0 ? 86400
                                                     : 0;
    if (step == 0)
        return cm_fmt(err, errlen, "granularity must be hour or day"), CM_INVALID;
    if (from >= to || from % step != 0 || to % step != 0)
        return cm_fmt(err, errlen, "from must be before to, both whole %ss (UTC)", granularity),
               CM_INVALID;
    if ((to - from) / step > 1000)
        return cm_fmt(err, errlen, "at most 1000 %ss per summary", granularity), CM_INVALID;
    char lo[24], hi[24];
    cm_fmt(lo, sizeof lo, "%" PRId64, from);
    cm_fmt(hi, sizeof hi, "%" PRId64, to);
    const char *params[] = {lo, hi, granularity};
    /* Every bucket of the range appears, empty ones with zeros, so a chart has no gaps. */
    return json_query(
        db,
        "WITH u AS (SELECT date_trunc($3::text, bucket AT TIME ZONE 'UTC') AS b, requests,"
        " bytes, refused FROM hm_usage_rows(to_timestamp($1::bigint), to_timestamp($2::bigint),"
        " false)),"
        " s AS (SELECT g.b, coalesce(sum(u.bytes), 0) AS bytes,"
        " coalesce(sum(u.requests), 0) AS requests,"
        " coalesce(sum(u.requests) FILTER (WHERE u.refused), 0) AS refused"
        " FROM generate_series(to_timestamp($1::bigint) AT TIME ZONE 'UTC',"
        " to_timestamp($2::bigint) AT TIME ZONE 'UTC' - ('1 ' || $3::text)::interval,"
        " ('1 ' || $3::text)::interval) AS g(b) LEFT JOIN u ON u.b = g.b GROUP BY g.b)"
        " SELECT json_build_object('from', to_char(to_timestamp($1::bigint) AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'to', to_char(to_timestamp($2::bigint) AT TIME ZONE"
        " 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'granularity', $3::text,"
        " 'totals', json_build_object('bytes', coalesce(sum(bytes), 0), 'requests',"
        " coalesce(sum(requests), 0), 'refused', coalesce(sum(refused), 0)),"
        " 'series', coalesce(json_agg(json_build_object('start', to_char(b,"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'bytes', bytes, 'requests', requests, 'refused',"
        " refused) ORDER BY b), '[]')) FROM s",
        3, params, out, err, errlen);
}
