/*
 * Dashboards and the views they read (sql/009): every dashboard JSON parses, refers to
 * the provisioned datasources by uid (never ${DS_...}), its Prometheus queries name
 * metrics /-/metrics serves, and every SQL query of its PostgreSQL panels runs against the
 * real migrated schema as the read-only Grafana role, with Grafana's macros expanded as
 * Grafana would (below). The views' figures are checked against rows written here.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/opsfiles.h"

#define DASHBOARDS "dashboards/grafana/dashboards"

/* The dashboards' time range in the test: the last 40 days up to tomorrow (set in seed). */
static char range_from[32], range_to[32];

/* ---- Grafana's PostgreSQL macros --------------------------------------------------------- */

/* The argument list of a macro call starting at p (just after its '('), up to the matching
 * ')': copied into args; returns the position after ')'. */
static const char *macro_args(const char *p, char *args, size_t len)
{
    int depth = 1;
    size_t n = 0;
    for (; *p != '\0'; p++) {
        depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
        if (depth == 0)
            break;
        cr_assert(n + 1 < len, "macro arguments too long");
        args[n++] = *p;
    }
    cr_assert_eq(*p, ')', "unterminated macro call");
    args[n] = '\0';
    return p + 1;
}

/* Seconds of a Grafana interval such as 30s, 5m, 1h, 1d. */
static long interval_seconds(const char *s)
{
    while (*s == ' ')
        s++;
    char *end;
    long n = strtol(s, &end, 10);
    long unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : *end == 'd' ? 86400 : 0;
    cr_assert(n > 0 && unit > 0, "bad interval \"%s\"", s);
    return n * unit;
}

/* Expands the macros the dashboards use, as Grafana's PostgreSQL datasource does, for the
 * range [range_from, range_to] and $__interval = 1h:
 *   $__timeFilter(c)         c BETWEEN 'from' AND 'to'
 *   $__timeFrom(), $__timeTo()  'from', 'to' (timestamptz literals)
 *   $__timeGroupAlias(c, i)  floor(extract(epoch FROM c)/s)*s AS "time" (s: i in seconds)
 *   $__timeGroup(c, i)       the same without the alias
 *   $__interval              1h
 * Any other $ (a template variable, an unknown macro) fails the test: a panel must not
 * depend on something Grafana would not expand. Caller frees. */
static char *grafana_expand(const char *sql)
{
    size_t cap = strlen(sql) * 4 + 1024, n = 0;
    char *out = malloc(cap);
    const char *p = sql;
    while (*p != '\0') {
        char args[512], piece[1200] = "";
        if (strncmp(p, "$__interval", 11) == 0) {
            snprintf(piece, sizeof piece, "1h");
            p += 11;
        } else if (strncmp(p, "$__timeFilter(", 14) == 0) {
            p = macro_args(p + 14, args, sizeof args);
            snprintf(piece, sizeof piece, "%s BETWEEN '%s' AND '%s'", args, range_from, range_to);
        } else if (strncmp(p, "$__timeFrom()", 13) == 0) {
            snprintf(piece, sizeof piece, "'%s'::timestamptz", range_from);
            p += 13;
        } else if (strncmp(p, "$__timeTo()", 11) == 0) {
            snprintf(piece, sizeof piece, "'%s'::timestamptz", range_to);
            p += 11;
        } else if (strncmp(p, "$__timeGroupAlias(", 18) == 0 ||
                   strncmp(p, "$__timeGroup(", 13) == 0) {
            bool alias = p[12] == 'A';
            p = macro_args(p + (alias ? 18 : 13), args, sizeof args);
            char *comma = strrchr(args, ',');
            cr_assert(comma != NULL, "$__timeGroup needs a column and an interval");
            *comma = '\0';
            char expanded[256];
            snprintf(expanded, sizeof expanded, "%s", comma + 1);
            if (strstr(expanded, "$__interval") != NULL)
                snprintf(expanded, sizeof expanded, "1h");
            long s = interval_seconds(expanded);
            snprintf(piece, sizeof piece, "floor(extract(epoch FROM %s) / %ld) * %ld%s", args, s, s,
                     alias ? " AS \"time\"" : "");
        } else {
            cr_assert(*p != '$', "unexpanded Grafana variable or macro at: %.40s", p);
            piece[0] = *p++;
            piece[1] = '\0';
        }
        size_t k = strlen(piece);
        cr_assert(n + k + 1 < cap);
        memcpy(out + n, piece, k);
        n += k;
    }
    out[n] = '\0';
    return out;
}

/* ---- the dashboards' files ---------------------------------------------------------------- */

/* uid → type of the provisioned datasources; new reference. */
static json_t *datasources(void)
{
    json_t *doc = ops_load("dashboards/grafana/provisioning/datasources/hubmeter.yml");
    json_t *map = json_object();
    size_t i;
    json_t *ds;
    json_array_foreach(json_object_get(doc, "datasources"), i, ds)
    {
        const char *uid = json_string_value(json_object_get(ds, "uid"));
        const char *type = json_string_value(json_object_get(ds, "type"));
        cr_assert(uid != NULL && type != NULL, "a datasource without uid or type");
        cr_assert(json_object_get(map, uid) == NULL, "datasource uid %s twice", uid);
        json_object_set_new(map, uid, json_string(type));
        const char *pw = json_string_value(
            json_object_get(json_object_get(ds, "secureJsonData"), "password"));
        cr_assert(pw == NULL || strncmp(pw, "${", 2) == 0, "a password in the provisioning file");
    }
    json_decref(doc);
    cr_assert_eq(json_object_size(map), 2);
    return map;
}

/* The dashboards as one array of parsed documents; new reference. Checks the raw text. */
static json_t *dashboards(void)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/" DASHBOARDS, ops_root());
    DIR *d = opendir(dir);
    cr_assert(d != NULL, "%s", dir);
    json_t *all = json_array();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        char rel[600];
        snprintf(rel, sizeof rel, DASHBOARDS "/%s", e->d_name);
        char *text = ops_read(rel, NULL);
        cr_assert(strstr(text, "${DS_") == NULL && strstr(text, "__inputs") == NULL,
                  "%s refers to an exported datasource input, not a uid", rel);
        free(text);
        json_t *doc = ops_load(rel);
        json_object_set_new(doc, "_file", json_string(e->d_name));
        json_array_append_new(all, doc);
    }
    closedir(d);
    return all;
}

/* True when name (from a PromQL expression) is a documented family or a histogram's
 * _bucket/_sum/_count series. */
static bool documented_metric(const char *name)
{
    for (size_t i = 0; ops_metrics[i].name != NULL; i++) {
        size_t n = strlen(ops_metrics[i].name);
        if (strcmp(name, ops_metrics[i].name) == 0)
            return true;
        if (strcmp(ops_metrics[i].type, "histogram") == 0 &&
            strncmp(name, ops_metrics[i].name, n) == 0 &&
            (strcmp(name + n, "_bucket") == 0 || strcmp(name + n, "_sum") == 0 ||
             strcmp(name + n, "_count") == 0))
            return true;
    }
    return false;
}

static void check_promql(const char *where, const char *expr)
{
    cr_assert(expr != NULL && expr[0] != '\0', "%s: empty expression", where);
    for (const char *p = strstr(expr, "hubmeter_"); p != NULL; p = strstr(p + 1, "hubmeter_")) {
        char name[96];
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        cr_assert(documented_metric(name), "%s: %s is not a metric /-/metrics serves", where,
                  name);
        p += n - 1;
    }
}

/* Calls fn for every target of every panel, with the panel's effective datasource. */
typedef void (*target_fn)(void *arg, const char *where, const char *type, json_t *target);

static void each_target(json_t *boards, json_t *sources, target_fn fn, void *arg)
{
    size_t i, j, k;
    json_t *b, *panel, *target;
    json_array_foreach(boards, i, b)
    {
        const char *file = json_string_value(json_object_get(b, "_file"));
        json_array_foreach(json_object_get(b, "panels"), j, panel)
        {
            char where[300];
            snprintf(where, sizeof where, "%s: \"%s\"", file,
                     json_string_value(json_object_get(panel, "title")));
            json_t *pds = json_object_get(panel, "datasource");
            json_t *targets = json_object_get(panel, "targets");
            cr_assert(json_array_size(targets) > 0, "%s has no query", where);
            json_array_foreach(targets, k, target)
            {
                json_t *ds = json_object_get(target, "datasource");
                if (ds == NULL)
                    ds = pds;
                const char *uid = json_string_value(json_object_get(ds, "uid"));
                const char *type = json_string_value(json_object_get(ds, "type"));
                cr_assert(uid != NULL, "%s: a query without a datasource uid", where);
                const char *known = json_string_value(json_object_get(sources, uid));
                cr_assert(known != NULL, "%s: datasource uid %s is not provisioned", where, uid);
                cr_assert(type == NULL || strcmp(type, known) == 0,
                          "%s: datasource %s is a %s, not a %s", where, uid, known, type);
                fn(arg, where, known, target);
            }
        }
    }
}

static void check_target(void *arg, const char *where, const char *type, json_t *target)
{
    int *counts = arg;
    if (strcmp(type, "prometheus") == 0) {
        check_promql(where, json_string_value(json_object_get(target, "expr")));
        counts[0]++;
    } else {
        const char *sql = json_string_value(json_object_get(target, "rawSql"));
        cr_assert(sql != NULL && sql[0] != '\0', "%s: no rawSql", where);
        cr_assert(strstr(sql, "dash_") != NULL, "%s: panels read the dash_ views", where);
        counts[1]++;
    }
}

Test(dashboards, every_dashboard_parses_and_uses_provisioned_datasources_by_uid)
{
    json_t *sources = datasources();
    json_t *boards = dashboards();
    const char *need[] = {"hubmeter-traffic", "hubmeter-usage",    "hubmeter-quota",
                          "hubmeter-consumers", "hubmeter-share", "hubmeter-forecast",
                          "hubmeter-pipeline", "hubmeter-funding", NULL};
    for (size_t n = 0; need[n] != NULL; n++) {
        int seen = 0;
        size_t i;
        json_t *b;
        json_array_foreach(boards, i, b)
        {
            seen += strcmp(json_string_value(json_object_get(b, "uid")), need[n]) == 0;
            cr_assert(json_string_length(json_object_get(b, "title")) > 0);
            cr_assert(json_array_size(json_object_get(b, "panels")) > 0);
        }
        cr_assert_eq(seen, 1, "dashboard uid %s: %d found", need[n], seen);
    }
    int counts[2] = {0, 0}; /* Prometheus, PostgreSQL queries */
    each_target(boards, sources, check_target, counts);
    cr_assert_gt(counts[0], 10);
    cr_assert_gt(counts[1], 15);
    /* The provider loads the folder the compose file mounts. */
    json_t *prov = ops_load("dashboards/grafana/provisioning/dashboards/hubmeter.yml");
    const char *path = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(prov, "providers"), 0), "options"), "path"));
    cr_assert_str_eq(path, "/var/lib/grafana/dashboards/hubmeter");
    json_decref(prov);
    json_decref(boards);
    json_decref(sources);
}

Test(dashboards, prometheus_config_scrapes_the_gateway_metrics_and_passes_promtool)
{
    char out[4096];
    int status = ops_sh("promtool check config dashboards/prometheus.yml", out, sizeof out);
    cr_assert_eq(status, 0, "%s", out);
    json_t *doc = ops_load("dashboards/prometheus.yml");
    json_t *job = json_array_get(json_object_get(doc, "scrape_configs"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(job, "job_name")), "hubmeter");
    cr_assert_str_eq(json_string_value(json_object_get(job, "metrics_path")), "/-/metrics");
    json_t *targets =
        json_object_get(json_array_get(json_object_get(job, "static_configs"), 0), "targets");
    cr_assert_str_eq(json_string_value(json_array_get(targets, 0)), "gateway:8080");
    json_decref(doc);
}

/* ---- the views, on the real schema --------------------------------------------------------- */

static char db_url[512];
static PGconn *db;
static char period[16];         /* this UTC month, YYYY-MM */
static struct th_run report_run; /* `hubmeter report funding` of it, as JSON */

static void exec_ok(const char *sql)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(res);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQerrorMessage(db));
    PQclear(res);
}

/* Known usage: acme (commercial, plan pro with 1 MB a month) downloads with its key,
 * two hours ago (then rolled up, so minute and hourly rows both exist) and now, and was
 * refused once; uni (academic, no plan) with its key; anonymous networks of bigco
 * (commercial), of uni, and of nobody; an operator's correction of +1000 bytes for acme;
 * an applied batch equal to the usage rows; a running gateway 30 s behind. */
static void seed(void)
{
    th_db_new(db_url, sizeof db_url);
    db = th_db_connect(db_url);
    exec_ok("SET TimeZone = 'UTC'");
    exec_ok("INSERT INTO plans (name, monthly_bytes) VALUES ('pro', 1000000);"
            "INSERT INTO orgs (slug, name, class, plan_id) VALUES"
            " ('acme', 'Acme', 'commercial', (SELECT id FROM plans WHERE name = 'pro')),"
            " ('uni', 'Uni', 'academic', NULL), ('bigco', 'BigCo', 'commercial', NULL);"
            "INSERT INTO api_keys (org_id, display, secret_sha256) VALUES"
            " ((SELECT id FROM orgs WHERE slug = 'acme'), 'hm_acme', sha256('a')),"
            " ((SELECT id FROM orgs WHERE slug = 'uni'), 'hm_uni', sha256('u'));"
            "INSERT INTO org_networks (org_id, network) VALUES"
            " ((SELECT id FROM orgs WHERE slug = 'bigco'), '10.1.0.0/16'),"
            " ((SELECT id FROM orgs WHERE slug = 'uni'), '10.2.0.0/16'),"
            " ((SELECT id FROM orgs WHERE slug = 'uni'), '10.1.5.0/24')");
    /* 10.1.5.0/24 lies inside bigco's /16 but uni's /24 is more specific: the anonymous
     * 30000 bytes below come from 10.1.6.0/24, bigco's. */
    exec_ok("CREATE TEMP TABLE t AS SELECT"
            " greatest(date_trunc('hour', now()) - interval '2 hours',"
            "          date_trunc('month', now())) AS t0,"
            " date_trunc('minute', now()) AS t1;"
            "SELECT hm_usage_partition(t0), hm_usage_partition(t1) FROM t;"
            "INSERT INTO usage_minute (bucket, org_id, key_id, network, repo, method,"
            " status_class, refused_by, requests, bytes)"
            " SELECT t0 + interval '5 minutes', 1, 1, NULL::cidr, 'acme/model', 'GET', 2, '', 2, 100000 FROM t"
            " UNION ALL SELECT t0 + interval '10 minutes', 1, 1, NULL, 'acme/model', 'GET', 4,"
            "   'monthly_bytes', 1, 0 FROM t"
            " UNION ALL SELECT t1, 1, 1, NULL, 'acme/model', 'GET', 2, '', 1, 50000 FROM t"
            " UNION ALL SELECT t1, 2, 2, NULL, 'uni/data', 'GET', 2, '', 1, 7000 FROM t"
            " UNION ALL SELECT t1, NULL, NULL, '10.1.6.0/24', 'acme/model', 'GET', 2, '', 1, 30000 FROM t"
            " UNION ALL SELECT t1, NULL, NULL, '10.2.5.0/24', 'uni/data', 'GET', 2, '', 1, 2000 FROM t"
            " UNION ALL SELECT t1, NULL, NULL, '192.0.2.0/24', 'uni/data', 'GET', 2, '', 1, 900 FROM t;"
            "INSERT INTO usage_adjustments (bucket, org_id, repo, requests, bytes, reason, author)"
            " SELECT t1, 1, 'acme/model', 0, 1000, 'correction', 'test' FROM t;"
            "SELECT hm_rollup(now(), interval '72 hours');"
            "INSERT INTO applied_batches (batch_id, instance, rows, requests, bytes, stream_id)"
            " VALUES ('gw-1:1:1', 'gw-1', 7, 8, 189900, '1-0');"
            "INSERT INTO gateway_watermarks (instance, cutoff, running, seen_at)"
            " VALUES ('gw-1', now() - interval '30 seconds', true, now())");
    PGresult *res = PQexec(db, "SELECT to_char(now() - interval '40 days', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                               " to_char(now() + interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    snprintf(range_from, sizeof range_from, "%s", PQgetvalue(res, 0, 0));
    snprintf(range_to, sizeof range_to, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    /* A funding report of this month, stored as billing/ stores every one (funding_reports). */
    res = PQexec(db, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    snprintf(period, sizeof period, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    char env[600];
    snprintf(env, sizeof env, "HUBMETER_DATABASE_URL=%s", db_url);
    th_hubmeter(&report_run, (const char *[]){env, NULL},
                (const char *[]){"report", "funding", "--period", period, "--format", "json", NULL});
    cr_assert_eq(report_run.status, 0, "%s", report_run.err);
}

static void unseed(void)
{
    PQfinish(db);
    db = NULL;
}

/* The first row of sql (run as the Grafana role) as "a|b|c"; caller frees. */
static char *row_as_grafana(const char *sql)
{
    exec_ok("SET ROLE hubmeter_grafana");
    PGresult *res = PQexec(db, sql);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(db));
    cr_assert_eq(PQntuples(res), 1, "%s: %d rows", sql, PQntuples(res));
    char *out = calloc(1, 1024);
    for (int c = 0; c < PQnfields(res); c++)
        snprintf(out + strlen(out), 1024 - strlen(out), "%s%s", c ? "|" : "",
                 PQgetisnull(res, 0, c) ? "NULL" : PQgetvalue(res, 0, c));
    PQclear(res);
    exec_ok("RESET ROLE");
    return out;
}

static void expect_row(const char *sql, const char *want)
{
    char *got = row_as_grafana(sql);
    cr_assert_str_eq(got, want, "%s", sql);
    free(got);
}

Test(dashboards, views_count_every_byte_once_and_attribute_it, .init = seed, .fini = unseed)
{
    /* Each byte once although hour t0 is in both usage_minute and usage_hourly; adjustments in. */
    expect_row("SELECT sum(bytes), sum(requests) FROM dash_usage", "190900|8");
    expect_row("SELECT string_agg(traffic || '=' || bytes, ',' ORDER BY traffic) FROM"
               " (SELECT traffic, sum(bytes) AS bytes FROM dash_traffic_share GROUP BY 1) s",
               "anonymous=2900,commercial=181000,keyed=7000");
    expect_row("SELECT org, class, plan, bytes, keyed_bytes, requests, refused FROM dash_org_month"
               " WHERE org = 'acme' AND month = date_trunc('month', now(), 'UTC')",
               "acme|commercial|pro|151000|151000|4|1");
    expect_row("SELECT bytes, keyed_bytes FROM dash_org_month WHERE org = 'uni'", "9000|7000");
    expect_row("SELECT bytes, keyed_bytes FROM dash_org_month WHERE org = 'bigco'", "30000|0");
    expect_row("SELECT org, share_pct FROM dash_top_consumers LIMIT 1", "acme|79.10");
    expect_row("SELECT org, monthly_bytes, used_bytes, used_pct, refused, policies"
               " FROM dash_quota_pressure", "acme|1000000|151000|15.10|1|monthly_bytes");
    expect_row("SELECT org, policy, sum(requests) FROM dash_refusals GROUP BY 1, 2",
               "acme|monthly_bytes|1");
    expect_row("SELECT count(*) FILTER (WHERE forecast_bytes >= bytes_so_far), count(*)"
               " FROM dash_forecast", "3|3");
    expect_row("SELECT org, bytes_so_far FROM dash_forecast WHERE org = 'acme'", "acme|151000");
    expect_row("SELECT drift_requests, drift_bytes, complete_until < now() FROM dash_reconciliation",
               "0|0|t");
    expect_row("SELECT instance, lag_seconds BETWEEN 25 AND 120 FROM dash_pipeline_gateways",
               "gw-1|t");
    expect_row("SELECT sum(batches), sum(bytes) FROM dash_pipeline_batches", "1|189900");
    expect_row("SELECT sum(bytes) FROM dash_usage_hourly WHERE org = '(anonymous)'", "900");
}

Test(dashboards, funding_views_show_the_latest_report_of_each_period, .init = seed, .fini = unseed)
{
    json_t *doc = json_loads(report_run.out, 0, NULL);
    cr_assert(doc != NULL, "the report is JSON: %s", report_run.out);
    const json_t *t = json_object_get(doc, "totals");
    char want[512], sql[512];
    snprintf(want, sizeof want, "%s|t|%lld|%lld|%lld|%lld|%lld",
             period, (long long)json_integer_value(json_object_get(t, "bytes")),
             (long long)json_integer_value(json_object_get(t, "period_cost_micros")),
             (long long)json_integer_value(json_object_get(t, "asks_micros")),
             (long long)json_integer_value(json_object_get(t, "review_asks_micros")),
             (long long)json_integer_value(json_object_get(t, "consumers")));
    cr_assert_eq(json_integer_value(json_object_get(t, "bytes")), 190900, "the seeded bytes");
    expect_row("SELECT to_char(period AT TIME ZONE 'UTC', 'YYYY-MM'), month_to_date, bytes,"
               " period_cost_micros, asks_micros, review_asks_micros, consumers"
               " FROM dash_funding_reports", want);
    /* The consumers of the report, in its order, with its costs and asks. */
    const json_t *c = json_array_get(json_object_get(doc, "consumers"), 0);
    snprintf(want, sizeof want, "%lld|%s|%lld|%lld|%lld|%s|%lld",
             (long long)json_array_size(json_object_get(doc, "consumers")),
             json_string_value(json_object_get(c, "consumer")),
             (long long)json_integer_value(json_object_get(c, "bytes")),
             (long long)json_integer_value(json_object_get(c, "cost_micros")),
             (long long)json_integer_value(json_object_get(c, "ask_micros")),
             json_string_value(json_object_get(c, "ask_status")),
             (long long)json_integer_value(json_object_get(c, "rank")));
    snprintf(sql, sizeof sql, "SELECT (SELECT count(*) FROM dash_funding_consumers), consumer,"
             " bytes, cost_micros, ask_micros, ask_status, rank FROM dash_funding_consumers"
             " ORDER BY rank LIMIT 1");
    expect_row(sql, want);
    json_decref(doc);
    /* A regenerated report is a new snapshot: the views show the latest, the history both. */
    char env[600];
    snprintf(env, sizeof env, "HUBMETER_DATABASE_URL=%s", db_url);
    struct th_run r;
    exec_ok("INSERT INTO usage_adjustments (bucket, org_id, repo, requests, bytes, reason, author)"
            " VALUES (now(), 1, 'acme/model', 0, 5000, 'late', 'test')");
    th_hubmeter(&r, (const char *[]){env, NULL},
                (const char *[]){"report", "funding", "--period", period, "--format", "json", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    expect_row("SELECT bytes FROM dash_funding_reports", "195900");
    expect_row("SELECT count(*), count(DISTINCT period) FROM dash_funding_snapshots", "2|1");
}

Test(dashboards, the_grafana_role_reads_the_views_and_nothing_else, .init = seed, .fini = unseed)
{
    exec_ok("SET ROLE hubmeter_grafana");
    const char *denied[] = {"SELECT 1 FROM api_keys", "SELECT 1 FROM orgs", "SELECT 1 FROM usage_minute",
                            "SELECT 1 FROM org_networks", "SELECT 1 FROM funding_reports",
                            "INSERT INTO usage_adjustments (bucket,"
                            " requests, bytes, reason, author) VALUES (now(), 1, 1, 'x', 'y')",
                            NULL};
    for (size_t i = 0; denied[i] != NULL; i++) {
        PGresult *res = PQexec(db, denied[i]);
        cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "the Grafana role may not: %s",
                     denied[i]);
        cr_assert(strstr(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501") != NULL, "%s",
                  denied[i]);
        PQclear(res);
    }
    exec_ok("RESET ROLE");
}

struct sql_run {
    int ran;
};

static void run_sql_target(void *arg, const char *where, const char *type, json_t *target)
{
    if (strcmp(type, "postgres") != 0)
        return;
    struct sql_run *run = arg;
    char *sql = grafana_expand(json_string_value(json_object_get(target, "rawSql")));
    exec_ok("SET ROLE hubmeter_grafana");
    PGresult *res = PQexec(db, sql);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s:\n%s\n%s", where, sql,
                 PQerrorMessage(db));
    cr_assert_gt(PQntuples(res), 0, "%s returns no row on the seeded data:\n%s", where, sql);
    const char *format = json_string_value(json_object_get(target, "format"));
    if (format != NULL && strcmp(format, "time_series") == 0)
        cr_assert_geq(PQfnumber(res, "time"), 0, "%s: a time series needs a \"time\" column",
                      where);
    PQclear(res);
    exec_ok("RESET ROLE");
    free(sql);
    run->ran++;
}

Test(dashboards, every_panel_query_runs_on_the_migrated_schema_as_the_grafana_role,
     .init = seed, .fini = unseed)
{
    json_t *sources = datasources();
    json_t *boards = dashboards();
    struct sql_run run = {0};
    each_target(boards, sources, run_sql_target, &run);
    cr_assert_gt(run.ran, 15);
    json_decref(boards);
    json_decref(sources);
}

Test(dashboards, migrating_another_database_reuses_the_existing_role)
{
    /* The role exists already (the template's migration made it): a new, empty database
     * migrates cleanly and grants the role its views there too. */
    PGconn *admin = th_db_connect(th_env("HM_TEST_PG_URL"));
    char name[64], sql[160];
    snprintf(name, sizeof name, "hm_t_%d_fresh", (int)getpid());
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
    PQclear(PQexec(admin, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *res = PQexec(admin, sql);
    cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(admin));
    PQclear(res);
    const char *base = th_env("HM_TEST_PG_URL");
    snprintf(db_url, sizeof db_url, "%.*s/%s", (int)(strrchr(base, '/') - base), base, name);
    char env[600];
    snprintf(env, sizeof env, "HUBMETER_DATABASE_URL=%s", db_url);
    struct th_run r;
    th_hubmeter(&r, (const char *[]){env, NULL}, (const char *[]){"migrate", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    db = th_db_connect(db_url);
    expect_row("SELECT count(*) FROM dash_usage", "0");
    expect_row("SELECT drift_bytes FROM dash_reconciliation", "0");
    PQfinish(db);
    db = NULL;
    snprintf(sql, sizeof sql, "DROP DATABASE %s", name);
    PQclear(PQexec(admin, sql));
    PQfinish(admin);
}
