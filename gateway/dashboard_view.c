/*
 * What the operator page shows, as one JSON document gathered through the calls the admin
 * API answers with — so the page's figures equal the API's: totals of today and this month
 * and 30 days by day (meter_usage_summary: GET /admin/v1/usage/summary), the month's top
 * consumers (meter_usage_top: …/usage/top) each with its quota document (…/orgs/{slug}/quota),
 * the funding asks of the previous month's report, or this month's while the previous one
 * has no usage (bill_report: …/reports/funding), and the readiness checks and pipeline
 * state (/-/readyz, /-/metrics). Drawing is dashboard_html.c's.
 */
#include "gateway/admin_int.h"
#include "billing/billing.h"

#include <string.h>

#define TOP_N 10
#define DAYS 30

static void put_error(json_t *view, const char *section, const char *err)
{
    cm_log(CM_LOG_ERROR, "dashboard_source_failed", "section=%s error=\"%s\"", section, err);
    json_object_set_new(view, section, json_pack("{s:s}", "error", "could not be read: see the log"));
}

static void summary(struct adm_req *a, json_t *view, const char *name, int64_t from, int64_t to,
                    const char *granularity)
{
    json_t *doc = NULL;
    char err[512];
    if (meter_usage_summary(a->db, from, to, granularity, &doc, err, sizeof err) == CM_OK)
        json_object_set_new(view, name, doc);
    else
        put_error(view, name, err);
}

static void top(struct adm_req *a, json_t *view, int64_t from, int64_t to)
{
    json_t *orgs = NULL;
    char err[512];
    if (meter_usage_top(a->db, from, to, TOP_N, &orgs, err, sizeof err) != CM_OK) {
        put_error(view, "top", err);
        return;
    }
    size_t i;
    json_t *o;
    json_array_foreach(orgs, i, o) {
        struct reg_org org;
        const char *slug = json_string_value(json_object_get(o, "org"));
        if (slug != NULL && reg_org_get(a->db, slug, &org, err, sizeof err) == CM_OK) {
            json_object_set_new(o, "plan", json_string(org.plan));
            json_t *q = adm_org_quota(a->base.gw, &org);
            if (q != NULL)
                json_object_set_new(o, "quota", q);
        }
    }
    json_object_set_new(view, "top", orgs);
}

/* The asks of the report of period (YYYY-MM): CM_NOTFOUND when the period has no usage. */
static int funding_of(struct adm_req *a, json_t *view, const char *period, char *err,
                      size_t errlen)
{
    struct bill_request req = {.period = period};
    json_t *doc = NULL;
    int rc = bill_report(a->db, &req, &doc, err, errlen);
    if (rc != CM_OK)
        return rc;
    json_t *asks = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "consumers"), i, c)
        if (json_integer_value(json_object_get(c, "ask_micros")) > 0)
            json_array_append(asks, c);
    json_object_set_new(
        view, "funding",
        json_pack("{s:s, s:O, s:O, s:O, s:O, s:o}", "period", period, "month_to_date",
                  json_object_get(doc, "month_to_date"), "as_of", json_object_get(doc, "as_of"),
                  "currency", json_object_get(doc, "currency"), "totals",
                  json_object_get(doc, "totals"), "asks", asks));
    json_decref(doc);
    return CM_OK;
}

static void funding(struct adm_req *a, json_t *view, int64_t month)
{
    char prev[32], cur[32], err[512];
    cm_time_format(cm_month_start(month - 1), prev, sizeof prev);
    cm_time_format(month, cur, sizeof cur);
    prev[7] = cur[7] = '\0';
    int rc = funding_of(a, view, prev, err, sizeof err);
    if (rc == CM_NOTFOUND)
        rc = funding_of(a, view, cur, err, sizeof err);
    if (rc == CM_NOTFOUND)
        json_object_set_new(view, "funding", json_pack("{s:s}", "none", "no usage recorded yet"));
    else if (rc != CM_OK)
        put_error(view, "funding", err);
}

static void health(struct adm_req *a, json_t *view, int64_t now)
{
    struct gw *gw = a->base.gw;
    char err[256];
    bool pg_ok = cm_pg_command(a->db, "SELECT 1", err, sizeof err) == CM_OK;
    int64_t until = 0;
    bool until_ok = pg_ok && meter_complete_until(a->db, &until, err, sizeof err) == CM_OK;
    uint64_t journal = 0, unjournaled = 0;
    meter_journal_state(gw->meter, &journal, &unjournaled);
    struct meter_stats st;
    meter_stats_read(&st);
    char cu[32] = "";
    if (until_ok && until > 0)
        cm_time_format(until, cu, sizeof cu);
    const char *quotas = gw->quota == NULL                  ? "off"
                         : meter_quota_redis_ok(gw->quota) ? "redis"
                                                           : "local_budgets";
    json_object_set_new(
        view, "health",
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I}", "postgresql",
                  pg_ok ? "ok" : "unreachable", "redis",
                  meter_redis_ok(gw->meter) ? "ok" : "unreachable", "quotas", quotas,
                  "journal_bytes", (json_int_t)journal, "unjournaled_records",
                  (json_int_t)unjournaled, "stream_entries", (json_int_t)st.stream_length,
                  "stream_pending_entries", (json_int_t)st.stream_pending, "stream_lag_entries",
                  (json_int_t)st.stream_lag, "outbox_batches", (json_int_t)st.outbox_batches,
                  "complete_until", cu, "watermark_lag_s",
                  (json_int_t)(until_ok && until > 0 ? (now > until ? now - until : 0) : -1)));
}

json_t *adm_dash_view(struct adm_req *a)
{
    int64_t now = cm_now_us() / 1000000, day = now - now % 86400, month = cm_month_start(now);
    char at[32];
    cm_time_format(now, at, sizeof at);
    json_t *view = json_pack("{s:s, s:s, s:I}", "actor", a->actor, "generated_at", at, "days",
                             (json_int_t)DAYS);
    if (view == NULL)
        return NULL;
    summary(a, view, "today", day, day + 86400, "hour");
    summary(a, view, "month", month, cm_month_next(month), "day");
    summary(a, view, "series", day - (DAYS - 1) * 86400, day + 86400, "day");
    top(a, view, month, cm_month_next(month));
    funding(a, view, month);
    health(a, view, now);
    return view;
}
