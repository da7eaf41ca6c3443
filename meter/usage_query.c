/*
 * Usage queries for the org API: a dense time series of requests, bytes and refusals per
 * bucket over [from, to) (day and month buckets in a time zone, PostgreSQL doing the
 * zone arithmetic), the totals, and the pipeline watermark (complete_until). Reads
 * PostgreSQL only; ranges are validated here so every caller gets the same rules.
 * Grouped breakdowns live in usage_groups.c.
 */
#include "meter/meter.h"
#include "meter/usage_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 10000

static int64_t bucket_seconds(const char *g)
{
    if (strcmp(g, "minute") == 0)
        return 60;
    if (strcmp(g, "hour") == 0)
        return 3600;
    if (strcmp(g, "day") == 0)
        return 86400;
    return strcmp(g, "month") == 0 ? -1 : 0;
}

/* Characters of IANA zone names ("America/Argentina/Buenos_Aires", "Etc/GMT+5"). */
static bool plausible_zone(const char *tz)
{
    size_t n = strlen(tz);
    return n > 0 && n < 64 &&
           strspn(tz, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-/") == n;
}

/* PostgreSQL's side of validation: the zone exists, and from/to start buckets there. */
static int validate_in_db(PGconn *db, const struct meter_usage_query *q, const char *tz,
                          char *err, size_t errlen)
{
    char from[24], to[24];
    cm_fmt(from, sizeof from, "%" PRId64, q->from);
    cm_fmt(to, sizeof to, "%" PRId64, q->to);
    const char *params[] = {tz, from, to, q->granularity};
    PGresult *res = PQexecParams(db,
                                 "SELECT z, z AND date_trunc($4, to_timestamp($2::bigint), $1)"
                                 " = to_timestamp($2::bigint) AND date_trunc($4,"
                                 " to_timestamp($3::bigint), $1) = to_timestamp($3::bigint)"
                                 " FROM (SELECT $1 = 'UTC' OR EXISTS (SELECT 1 FROM"
                                 " pg_timezone_names WHERE name = $1) AS z) t",
                                 4, NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    } else if (PQgetvalue(res, 0, 0)[0] != 't') {
        cm_fmt(err, errlen, "tz must be an IANA time zone name such as Europe/Paris");
        rc = CM_NOTFOUND;
    } else if (PQgetvalue(res, 0, 1)[0] != 't') {
        cm_fmt(err, errlen, "from and to must be aligned to the granularity (%s) in time zone %s",
               q->granularity, tz);
        rc = CM_INVALID;
    }
    PQclear(res);
    return rc;
}

static int validate(const struct meter_usage_query *q, char *err, size_t errlen)
{
    if (q->tz[0] != '\0' && !plausible_zone(q->tz))
        return cm_fmt(err, errlen, "tz must be an IANA time zone name such as Europe/Paris"),
               CM_NOTFOUND;
    int64_t step = bucket_seconds(q->granularity);
    if (step == 0)
        return cm_fmt(err, errlen, "granularity must be minute, hour, day or month"), CM_INVALID;
    if (q->from >= q->to)
        return cm_fmt(err, errlen, "from must be before to"), CM_INVALID;
    int64_t oldest = cm_now_us() / 1000000 - (int64_t)q->minute_retention_days * 86400;
    if (step == 60 && q->minute_retention_days > 0 && q->from < oldest)
        return cm_fmt(err, errlen, "minute data is kept for %u days: use granularity hour or "
                                   "coarser for older periods", q->minute_retention_days),
               CM_INVALID;
    int64_t buckets = step > 0 ? (q->to - q->from) / step : (q->to - q->from) / (28 * 86400);
    if (buckets > MAX_BUCKETS)
        return cm_fmt(err, errlen, "the range holds more than %d %s buckets: use a coarser "
                                   "granularity or a shorter range", MAX_BUCKETS,
                      q->granularity), CM_INVALID;
    return CM_OK;
}

int meter_complete_until(PGconn *db, int64_t *unix_s, char *err, size_t errlen)
{
    /* The least cutoff of the gateways still running (seen within a minute); with none
     * running, everything has been applied up to now. */
    PGresult *res = PQexecParams(db,
                                 "SELECT extract(epoch FROM least(now(), (SELECT min(cutoff)"
                                 " FROM gateway_watermarks WHERE running AND"
                                 " seen_at > now() - interval '60 seconds')))::bigint",
                                 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    *unix_s = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return CM_OK;
}

/* Minute and hour buckets are instants; day and month buckets are local calendar ones,
 * generated in local time and converted back (days of 23 or 25 hours included). */
static const char SERIES_SQL[] =
    "WITH s AS (SELECT g AS start FROM generate_series(to_timestamp($2::bigint),"
    " to_timestamp($3::bigint) - interval '1 microsecond', ('1 ' || $4)::interval) g"
    " WHERE $4 IN ('minute', 'hour')"
    " UNION ALL SELECT g AT TIME ZONE $5 FROM generate_series(to_timestamp($2::bigint) AT TIME"
    " ZONE $5, (to_timestamp($3::bigint) AT TIME ZONE $5) - interval '1 microsecond',"
    " ('1 ' || $4)::interval) g WHERE $4 IN ('day', 'month')),"
    " u AS (SELECT date_trunc($4, bucket, $5) AS start, sum(requests) AS r, sum(bytes) AS b,"
    " sum(requests) FILTER (WHERE refused) AS x FROM hm_usage_org($1::bigint,"
    " to_timestamp($2::bigint), to_timestamp($3::bigint), $4 = 'minute') GROUP BY 1)"
    " SELECT extract(epoch FROM s.start)::bigint, coalesce(u.r, 0), coalesce(u.b, 0),"
    " coalesce(u.x, 0) FROM s LEFT JOIN u USING (start) ORDER BY 1";

/* One point of the series; adds it to totals. Values are signed: a correction (an
 * adjustment row) may take bytes away. CM_ERR would be an overflow of 64 bits. */
static json_t *series_point(const PGresult *res, int row, int64_t totals[3])
{
    char start[32];
    int64_t v[3];
    for (int c = 0; c < 3; c++) {
        v[c] = strtoll(PQgetvalue(res, row, c + 1), NULL, 10);
        if (__builtin_add_overflow(totals[c], v[c], &totals[c]))
            return NULL;
    }
    cm_time_format(strtoll(PQgetvalue(res, row, 0), NULL, 10), start, sizeof start);
    return json_pack("{s:s, s:I, s:I, s:I}", "start", start, "bytes", (json_int_t)v[1],
                     "requests", (json_int_t)v[0], "refused", (json_int_t)v[2]);
}

int meter_usage_query(PGconn *db, const struct meter_usage_query *q, json_t **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    int rc = validate(q, err, errlen);
    const char *tz = q->tz[0] ? q->tz : "UTC";
    if (rc == CM_OK)
        rc = validate_in_db(db, q, tz, err, errlen);
    if (rc != CM_OK)
        return rc;
    char org[24], from[24], to[24];
    cm_fmt(org, sizeof org, "%" PRId64, q->org_id);
    cm_fmt(from, sizeof from, "%" PRId64, q->from);
    cm_fmt(to, sizeof to, "%" PRId64, q->to);
    const char *params[] = {org, from, to, q->granularity, tz};
    PGresult *res = PQexecParams(db, SERIES_SQL, 5, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    int64_t complete;
    if (meter_complete_until(db, &complete, err, errlen) != CM_OK) {
        PQclear(res);
        return CM_ERR;
    }
    int64_t totals[3] = {0, 0, 0}; /* requests, bytes, refused */
    json_t *series = json_array();
    for (int i = 0; series != NULL && i < PQntuples(res); i++)
        if (json_array_append_new(series, series_point(res, i, totals)) != 0) {
            json_decref(series);
            series = NULL;
        }
    PQclear(res);
    char f[32], t[32], c[32];
    cm_time_format(q->from, f, sizeof f);
    cm_time_format(q->to, t, sizeof t);
    cm_time_format(complete, c, sizeof c);
    *out = series ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I, s:I}, s:o}", "from", f,
                              "to", t, "granularity", q->granularity, "tz", tz, "complete_until",
                              c, "totals", "bytes", (json_int_t)totals[1], "requests",
                              (json_int_t)totals[0], "refused", (json_int_t)totals[2], "series",
                              series)
                  : NULL;
    if (*out == NULL)
        return cm_fmt(err, errlen, "out of memory"), CM_ERR;
    if (q->group != 0 && (rc = meter_usage_groups(db, q, *out, err, errlen)) != CM_OK) {
        json_decref(*out);
        *out = NULL;
        return rc;
    }
    return CM_OK;
}

int meter_usage_adjust(PGconn *db, const struct meter_adjustment *a, int64_t *id, char *err,
                       size_t errlen)
{
    if (a->reason[0] == '\0' || a->author[0] == '\0')
        return cm_fmt(err, errlen, "an adjustment needs a reason and an author"), CM_INVALID;
    if (a->bytes == 0 && a->requests == 0)
        return cm_fmt(err, errlen, "an adjustment changes bytes or requests"), CM_INVALID;
    char org[24], at[24], bytes[24], reqs[24];
    cm_fmt(org, sizeof org, "%" PRId64, a->org_id);
    cm_fmt(at, sizeof at, "%" PRId64, a->at);
    cm_fmt(bytes, sizeof bytes, "%" PRId64, a->bytes);
    cm_fmt(reqs, sizeof reqs, "%" PRId64, a->requests);
    const char *params[] = {org, at, reqs, bytes, a->reason, a->author, a->repo};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO usage_adjustments (bucket, org_id, repo, requests,"
                                 " bytes, reason, author) VALUES (to_timestamp($2::bigint),"
                                 " $1::bigint, $7, $3::bigint, $4::bigint, $5, $6) RETURNING id",
                                 7, NULL, params, NULL, NULL, 0);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    } else {
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return rc;
}

/* Who: an org ($1 > 0), or the anonymous traffic of one client network ($2). */
#define WHO_SQL                                                                                  \
    " (CASE WHEN $1::bigint > 0 THEN org_id = $1::bigint"                                       \
    " ELSE org_id IS NULL AND network = $2::cidr END)"

static const char BYTES_SQL[] =
    "WITH c AS (SELECT coalesce((SELECT hour FROM rollup_cursor), '-infinity') AS hour)"
    " SELECT coalesce(sum(b), 0)::bigint FROM ("
    " SELECT bytes AS b FROM usage_minute WHERE" WHO_SQL
    " AND bucket >= to_timestamp($3::bigint) AND bucket < to_timestamp($4::bigint)"
    " AND (bucket >= (SELECT hour FROM c)"
    " OR date_trunc('hour', bucket) IN (SELECT hour FROM rollup_dirty))"
    " UNION ALL SELECT bytes FROM usage_hourly WHERE" WHO_SQL
    " AND bucket >= to_timestamp($3::bigint) AND bucket < to_timestamp($4::bigint)"
    " AND bucket < (SELECT hour FROM c) AND bucket NOT IN (SELECT hour FROM rollup_dirty)"
    " UNION ALL SELECT bytes FROM usage_adjustments WHERE" WHO_SQL
    " AND bucket >= to_timestamp($3::bigint) AND bucket < to_timestamp($4::bigint)) t";

int meter_usage_bytes(PGconn *db, int64_t org_id, const char *network, int64_t from, int64_t to,
                      uint64_t *bytes, char *err, size_t errlen)
{
    char org[24], lo[24], hi[24];
    cm_fmt(org, sizeof org, "%lld", (long long)org_id);
    cm_fmt(lo, sizeof lo, "%lld", (long long)from);
    cm_fmt(hi, sizeof hi, "%lld", (long long)to);
    const char *params[] = {org, org_id > 0 ? NULL : network, lo, hi};
    PGresult *res = PQexecParams(db, BYTES_SQL, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    long long v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    *bytes = v > 0 ? (uint64_t)v : 0;
    PQclear(res);
    return CM_OK;
}
