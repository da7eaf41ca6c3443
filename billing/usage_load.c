/*
 * Loads what a funding report needs from PostgreSQL: per consumer the period's bytes,
 * requests and 429 refusals, its top repositories, its busiest hour, the previous month's
 * bytes (trend) and, for keyed orgs, bytes against unique bytes per object (redundancy).
 * Usage rows come from hm_funding_rows() (sql/008), which combines minute, hourly and
 * adjustment rows the way the usage API does. All reads share one snapshot (REPEATABLE
 * READ). The queries of billing/ live here.
 */
#include "billing/billing_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char ROWS_SQL[] =
    "CREATE TEMP TABLE bill_rows ON COMMIT DROP AS"
    " SELECT * FROM hm_funding_rows(to_timestamp($1::bigint), to_timestamp($2::bigint))";

/* Consumers with their totals and org facts. Negative sums (corrections) clamp at 0. */
static const char CONSUMERS_SQL[] =
    "SELECT coalesce(r.org_id, 0), coalesce(r.network::text, ''),"
    " greatest(sum(r.bytes), 0), greatest(sum(r.requests), 0),"
    " greatest(coalesce(sum(r.requests) FILTER (WHERE r.refused), 0), 0),"
    " coalesce(o.slug, ''), coalesce(o.name, ''), coalesce(o.class, '')"
    " FROM bill_rows r LEFT JOIN orgs o ON o.id = r.org_id"
    " GROUP BY r.org_id, r.network, o.slug, o.name, o.class"
    " HAVING sum(r.bytes) > 0 OR sum(r.requests) > 0";

static const char REPOS_SQL[] =
    "SELECT coalesce(org_id, 0), coalesce(network::text, ''), repo, b FROM"
    " (SELECT org_id, network, repo, sum(bytes) AS b, row_number() OVER (PARTITION BY"
    " org_id, network ORDER BY sum(bytes) DESC, repo) AS rn FROM bill_rows WHERE repo <> ''"
    " GROUP BY org_id, network, repo) t WHERE rn <= $1::int AND b > 0 ORDER BY 1, 2, rn";

static const char PEAK_SQL[] =
    "SELECT DISTINCT ON (org_id, network) coalesce(org_id, 0), coalesce(network::text, ''),"
    " extract(epoch FROM hour)::bigint, greatest(b, 0), greatest(r, 0) FROM"
    " (SELECT org_id, network, date_trunc('hour', bucket) AS hour, sum(bytes) AS b,"
    " sum(requests) AS r FROM bill_rows GROUP BY 1, 2, 3) t"
    " ORDER BY org_id, network, b DESC, hour";

static const char PREVIOUS_SQL[] =
    "SELECT coalesce(org_id, 0), coalesce(network::text, ''), greatest(sum(bytes), 0),"
    " greatest(sum(requests), 0)"
    " FROM hm_funding_rows(to_timestamp($1::bigint), to_timestamp($2::bigint))"
    " GROUP BY org_id, network";

/* Unique bytes: per distinct object (repo, ETag) its size estimate, the largest daily
 * bytes-per-download (days with only partial downloads count their bytes), never more
 * than the bytes fetched of it. Keyed traffic only: object rows carry no network. */
static const char OBJECTS_SQL[] =
    "SELECT org_id, sum(b), sum(size) FROM (SELECT org_id, repo, etag, sum(bytes) AS b,"
    " least(sum(bytes), max(CASE WHEN requests > 0 THEN bytes / requests ELSE bytes END))"
    " AS size FROM usage_objects_daily WHERE day >= to_timestamp($1::bigint)"
    " AND day < to_timestamp($2::bigint) AND org_id IS NOT NULL GROUP BY 1, 2, 3) t"
    " GROUP BY 1";

static int by_key(const void *a, const void *b)
{
    const struct bill_consumer *x = a, *y = b;
    if (x->org_id != y->org_id)
        return x->org_id < y->org_id ? -1 : 1;
    return strcmp(x->network, y->network);
}

/* The consumer of row (org column c, network column c + 1) of res, or NULL. */
static struct bill_consumer *find(struct bill_period *p, const PGresult *res, int row, int c)
{
    struct bill_consumer key = {.org_id = strtoll(PQgetvalue(res, row, c), NULL, 10)};
    cm_copy(key.network, sizeof key.network, PQgetvalue(res, row, c + 1));
    return bsearch(&key, p->c, p->n, sizeof *p->c, by_key);
}

static uint64_t u64(const PGresult *res, int row, int col)
{
    return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static PGresult *query(PGconn *db, const char *sql, int n, const char *const *params,
                       char *err, size_t errlen)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int load_consumers(PGconn *db, struct bill_period *p, char *err, size_t errlen)
{
    PGresult *res = query(db, CONSUMERS_SQL, 0, NULL, err, errlen);
    if (res == NULL)
        return CM_ERR;
    int rows = PQntuples(res);
    p->c = calloc(rows > 0 ? (size_t)rows : 1, sizeof *p->c);
    if (p->c == NULL) {
        PQclear(res);
        return cm_fmt(err, errlen, "out of memory"), CM_ERR;
    }
    for (int i = 0; i < rows; i++) {
        struct bill_consumer *c = &p->c[p->n++];
        c->org_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        cm_copy(c->network, sizeof c->network, PQgetvalue(res, i, 1));
        c->bytes = u64(res, i, 2);
        c->requests = u64(res, i, 3);
        c->refused = u64(res, i, 4);
        cm_copy(c->slug, sizeof c->slug, PQgetvalue(res, i, 5));
        cm_copy(c->name, sizeof c->name, PQgetvalue(res, i, 6));
        cm_copy(c->class_, sizeof c->class_, PQgetvalue(res, i, 7));
        if (c->org_id != 0 && c->slug[0] == '\0') { /* usage of an org id with no org row */
            cm_fmt(c->slug, sizeof c->slug, "org-%" PRId64, c->org_id);
            cm_copy(c->class_, sizeof c->class_, "unknown");
        }
        c->top_repos = json_array();
        c->peak_hour = -1;
    }
    PQclear(res);
    qsort(p->c, p->n, sizeof *p->c, by_key);
    return CM_OK;
}

static int load_evidence(PGconn *db, struct bill_period *p, unsigned top, char *err,
                         size_t errlen)
{
    char topn[16];
    cm_fmt(topn, sizeof topn, "%u", top);
    const char *tp[] = {topn};
    PGresult *res = query(db, REPOS_SQL, 1, tp, err, errlen);
    if (res == NULL)
        return CM_ERR;
    for (int i = 0; i < PQntuples(res); i++) {
        struct bill_consumer *c = find(p, res, i, 0);
        if (c != NULL)
            json_array_append_new(c->top_repos,
                                  json_pack("{s:s, s:I}", "repo", PQgetvalue(res, i, 2),
                                            "bytes", (json_int_t)u64(res, i, 3)));
    }
    PQclear(res);
    if ((res = query(db, PEAK_SQL, 0, NULL, err, errlen)) == NULL)
        return CM_ERR;
    for (int i = 0; i < PQntuples(res); i++) {
        struct bill_consumer *c = find(p, res, i, 0);
        if (c != NULL) {
            c->peak_hour = strtoll(PQgetvalue(res, i, 2), NULL, 10);
            c->peak_bytes = u64(res, i, 3);
            c->peak_requests = u64(res, i, 4);
        }
    }
    PQclear(res);
    return CM_OK;
}

static int load_history(PGconn *db, struct bill_period *p, char *err, size_t errlen)
{
    char lo[24], hi[24], prev[24];
    cm_fmt(lo, sizeof lo, "%" PRId64, p->lo);
    cm_fmt(hi, sizeof hi, "%" PRId64, p->hi);
    cm_fmt(prev, sizeof prev, "%" PRId64, cm_month_start(p->lo - 1));
    const char *pp[] = {prev, lo};
    PGresult *res = query(db, PREVIOUS_SQL, 2, pp, err, errlen);
    if (res == NULL)
        return CM_ERR;
    p->prev_known = PQntuples(res) > 0;
    for (int i = 0; i < PQntuples(res); i++) {
        struct bill_consumer *c = find(p, res, i, 0);
        if (c != NULL) {
            c->prev_bytes = u64(res, i, 2);
            c->prev_requests = u64(res, i, 3);
        }
    }
    PQclear(res);
    const char *op[] = {lo, hi};
    if ((res = query(db, OBJECTS_SQL, 2, op, err, errlen)) == NULL)
        return CM_ERR;
    for (int i = 0; i < PQntuples(res); i++) {
        struct bill_consumer key = {.org_id = strtoll(PQgetvalue(res, i, 0), NULL, 10)};
        struct bill_consumer *c = bsearch(&key, p->c, p->n, sizeof *p->c, by_key);
        if (c != NULL) {
            c->object_bytes = u64(res, i, 1);
            c->unique_bytes = u64(res, i, 2);
        }
    }
    PQclear(res);
    return CM_OK;
}

int bill_load(PGconn *db, struct bill_period *p, unsigned top_repos, char *err, size_t errlen)
{
    char lo[24], hi[24];
    cm_fmt(lo, sizeof lo, "%" PRId64, p->lo);
    cm_fmt(hi, sizeof hi, "%" PRId64, p->hi);
    const char *params[] = {lo, hi};
    if (cm_pg_command(db, "BEGIN ISOLATION LEVEL REPEATABLE READ", err, errlen) != CM_OK)
        return CM_ERR;
    PGresult *res = query(db, ROWS_SQL, 2, params, err, errlen);
    int rc = res != NULL ? CM_OK : CM_ERR;
    PQclear(res);
    if (rc == CM_OK)
        rc = load_consumers(db, p, err, errlen);
    if (rc == CM_OK)
        rc = load_evidence(db, p, top_repos, err, errlen);
    if (rc == CM_OK)
        rc = load_history(db, p, err, errlen);
    char ignored[128];
    cm_pg_command(db, rc == CM_OK ? "COMMIT" : "ROLLBACK", rc == CM_OK ? err : ignored,
                  rc == CM_OK ? errlen : sizeof ignored);
    return rc;
}

void bill_period_release(struct bill_period *p)
{
    for (size_t i = 0; p->c != NULL && i < p->n; i++)
        json_decref(p->c[i].top_repos);
    free(p->c);
    p->c = NULL;
    p->n = 0;
}
