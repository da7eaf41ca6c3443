/*
 * The funding report's entry points: the period (a past UTC month, or the current one
 * month to date), whether a stored snapshot answers or a new one is computed and stored,
 * and the admin API's one call (document + rendering + a stable error code).
 */
#include "billing/billing_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int bill_format_parse(const char *s, enum bill_format *out)
{
    static const char *const names[] = {"table", "json", "csv", "html"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum bill_format)i;
            return CM_OK;
        }
    return CM_INVALID;
}

/* "YYYY-MM" → the month's first second (unix). */
static int parse_period(const char *s, int64_t *lo)
{
    char ts[32];
    if (s == NULL || strlen(s) != 7 || s[4] != '-' || strspn(s, "0123456789") != 4 ||
        strspn(s + 5, "0123456789") != 2 || strncmp(s, "2000", 4) < 0)
        return CM_INVALID;
    if (cm_fmt(ts, sizeof ts, "%s-01T00:00:00Z", s) != CM_OK)
        return CM_INVALID;
    return cm_time_parse(ts, strlen(ts), lo);
}

static void month_name(int64_t t, char *buf, size_t len)
{
    char ts[32];
    cm_time_format(t, ts, sizeof ts);
    cm_fmt(buf, len, "%.7s", ts);
}

/* Seconds of a query answering one bigint (NULL → -1). */
static int query_time(PGconn *db, const char *sql, const char *arg, int64_t *out, char *err,
                      size_t errlen)
{
    const char *params[] = {arg};
    PGresult *res = PQexecParams(db, sql, arg ? 1 : 0, NULL, arg ? params : NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    *out = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return CM_OK;
}

/* Validates the period against the clock and the data; fills p's bounds. */
static int check_period(PGconn *db, const struct bill_request *req, struct bill_period *p,
                        const char **code, char *err, size_t errlen)
{
    int64_t now = req->now > 0 ? req->now : cm_now_us() / 1000000;
    char cur[8], first_m[8];
    month_name(now, cur, sizeof cur);
    if (parse_period(req->period, &p->lo) != CM_OK)
        return *code = "bad_period",
               cm_fmt(err, errlen, "period \"%.20s\" is not a month YYYY-MM (e.g. %s)",
                      req->period ? req->period : "", cur), CM_INVALID;
    p->hi = cm_month_next(p->lo);
    if (p->lo > cm_month_start(now))
        return *code = "future_period",
               cm_fmt(err, errlen, "period %s is in the future (the current month is %s)",
                      req->period, cur), CM_INVALID;
    p->month_to_date = p->lo == cm_month_start(now);
    p->as_of = p->hi;
    char arg[24];
    cm_fmt(arg, sizeof arg, "%" PRId64, now);
    if (p->month_to_date) {
        /* Usage is complete up to the slowest running gateway's watermark. */
        int64_t asof;
        if (query_time(db, "SELECT extract(epoch FROM least(to_timestamp($1::bigint),"
                           " (SELECT min(cutoff) FROM gateway_watermarks WHERE running AND"
                           " seen_at > now() - interval '60 seconds')))::bigint",
                       arg, &asof, err, errlen) != CM_OK)
            return *code = "database_error", CM_ERR;
        p->as_of = asof > p->lo ? asof : p->lo + 1;
        return CM_OK;
    }
    int64_t first, closed;
    cm_fmt(arg, sizeof arg, "%" PRId64, p->lo);
    if (query_time(db, "SELECT extract(epoch FROM hm_usage_first())::bigint", NULL, &first,
                   err, errlen) != CM_OK ||
        query_time(db, "SELECT count(*) FROM closed_months WHERE month = to_timestamp($1::bigint)",
                   arg, &closed, err, errlen) != CM_OK)
        return *code = "database_error", CM_ERR;
    p->closed = closed > 0;
    if (first < 0 || first >= p->hi) {
        if (first < 0)
            cm_fmt(err, errlen, "no usage is recorded yet: period %s is unknown", req->period);
        else {
            month_name(first, first_m, sizeof first_m);
            cm_fmt(err, errlen, "no usage is recorded for %s or before it (the earliest is in "
                                "%s)", req->period, first_m);
        }
        return *code = "unknown_period", CM_NOTFOUND;
    }
    return CM_OK;
}

static void mark_snapshot(json_t *doc, int64_t id, const char *at, bool reused)
{
    json_object_set_new(doc, "snapshot", json_pack("{s:I, s:s, s:b}", "id", (json_int_t)id,
                                                   "generated_at", at, "reused", reused));
}

/* Computes the report with model, compares it with the previous snapshot, stores it. */
static int generate(PGconn *db, struct bill_period *p, const struct bill_model *m,
                    const char *period, const json_t *prev, int64_t prev_id,
                    const char *prev_at, json_t **doc, char *err, size_t errlen)
{
    if (bill_load(db, p, m->top_repositories, err, errlen) != CM_OK)
        return CM_ERR;
    *doc = bill_build(p, m, period, err, errlen);
    bill_period_release(p);
    if (*doc == NULL)
        return CM_ERR;
    if (prev != NULL)
        json_object_set_new(*doc, "changes", bill_snapshot_diff(prev, prev_id, prev_at, *doc));
    int64_t id;
    char at[40];
    if (bill_snapshot_store(db, p->lo, p->month_to_date, *doc, &id, at, sizeof at, err,
                            errlen) != CM_OK) {
        json_decref(*doc);
        *doc = NULL;
        return CM_ERR;
    }
    mark_snapshot(*doc, id, at, false);
    return CM_OK;
}

static int report(PGconn *db, const struct bill_request *req, json_t **doc, const char **code,
                  char *err, size_t errlen)
{
    *doc = NULL;
    *code = "database_error";
    struct bill_period p = {0};
    char model_err[256];
    if (req->model != NULL && bill_model_validate(req->model, model_err, sizeof model_err) != CM_OK)
        return *code = "bad_cost_model", cm_fmt(err, errlen, "cost model: %s", model_err),
               CM_INVALID;
    int rc = check_period(db, req, &p, code, err, errlen);
    if (rc != CM_OK)
        return rc;
    json_t *prev = NULL, *prev_model = NULL;
    int64_t prev_id = 0;
    char prev_at[40] = "";
    rc = bill_snapshot_latest(db, p.lo, &prev, &prev_model, &prev_id, prev_at, sizeof prev_at,
                              err, errlen);
    if (rc == CM_ERR)
        return CM_ERR;
    json_t *want = req->model ? bill_model_to_json(req->model) : NULL;
    struct bill_model m;
    /* Only a snapshot taken after its month closed is final: before, usage may still come. */
    if (prev != NULL && json_is_true(json_object_get(prev, "month_closed")) && !req->regenerate &&
        (want == NULL || json_equal(want, prev_model))) {
        *doc = json_incref(prev);
        mark_snapshot(*doc, prev_id, prev_at, true);
        rc = CM_OK;
    } else if (req->model == NULL && prev_model != NULL &&
               bill_model_from_json(prev_model, &m, model_err, sizeof model_err) != CM_OK) {
        cm_fmt(err, errlen, "the stored cost model of %s is invalid: %s", req->period, model_err);
        rc = CM_ERR;
    } else {
        if (req->model != NULL)
            m = *req->model;
        else if (prev_model == NULL)
            bill_model_default(&m);
        rc = generate(db, &p, &m, req->period, prev, prev_id, prev_at, doc, err, errlen);
    }
    json_decref(want);
    json_decref(prev);
    json_decref(prev_model);
    return rc;
}

int bill_report(PGconn *db, const struct bill_request *req, json_t **doc, char *err,
                size_t errlen)
{
    const char *code;
    return report(db, req, doc, &code, err, errlen);
}

int bill_report_generate(PGconn *db, const struct bill_request *req, enum bill_format fmt,
                         struct bill_output *out, const char **code, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *doc = NULL;
    int rc = report(db, req, &doc, code, err, errlen);
    if (rc != CM_OK)
        return rc;
    rc = bill_render(doc, fmt, out);
    json_decref(doc);
    if (rc != CM_OK)
        return *code = "internal_error", cm_fmt(err, errlen, "out of memory rendering"), CM_ERR;
    *code = "";
    return CM_OK;
}
