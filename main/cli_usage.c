/*
 * hubmeter usage show|top|export|adjust|reconcile — an org's usage (the org API's figures,
 * read straight from PostgreSQL), the top consumers, the monthly per-hour export,
 * corrections, and the check that PostgreSQL's usage equals its applied batches.
 */
#include "main/cli.h"
#include "meter/meter.h"
#include "registry/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE_USAGE[] =
    "usage: hubmeter usage show ORG_SLUG [--from RFC3339] [--to RFC3339]\n"
    "                             [--granularity minute|hour|day|month] [--tz ZONE]\n"
    "                             [--group-by repo,key,status] [--limit N] [--json]\n"
    "       hubmeter usage top [--from RFC3339] [--to RFC3339] [--limit N] [--json]\n"
    "       hubmeter usage export ORG_SLUG [--month YYYY-MM] [--json]\n"
    "       hubmeter usage reconcile [--from RFC3339] [--to RFC3339] [--json]\n"
    "       hubmeter usage adjust ORG_SLUG [--bytes N] [--requests N] [--at RFC3339]\n"
    "                             [--repo REPO] --reason TEXT --author NAME\n"
    "       (N may be negative; the adjustment counts in every total from then on)\n"
    "Exit status: 0 consistent, 1 PostgreSQL's usage differs from its applied batches,\n"
    "2 bad usage, 3 a store could not be read.\n";

/* Parses a signed 63-bit integer (a correction may subtract). */
static int signed_value(const char *name, const char *v, int64_t *out)
{
    bool neg = v != NULL && v[0] == '-';
    uint64_t n;
    if (v == NULL || cm_parse_u64(v + (neg || v[0] == '+'), &n) != CM_OK || n > INT64_MAX) {
        fprintf(stderr, "hubmeter: %s needs a whole number (may be negative)\n", name);
        return CM_INVALID;
    }
    *out = neg ? -(int64_t)n : (int64_t)n;
    return CM_OK;
}

static int adjust(const struct hm_config *cfg, int argc, char **argv)
{
    struct meter_adjustment a = {.at = cm_now_us() / 1000000};
    if (argc < 2 || argv[1][0] == '-')
        return fputs(USAGE_USAGE, stderr), EXIT_USAGE;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        if (cli_opt(argc, argv, &i, "--bytes", &v)) {
            if (signed_value("--bytes", v, &a.bytes) != CM_OK)
                return EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--requests", &v)) {
            if (signed_value("--requests", v, &a.requests) != CM_OK)
                return EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--at", &v)) {
            if (v == NULL || cm_time_parse(v, strlen(v), &a.at) != CM_OK)
                return fputs("hubmeter: --at needs an RFC 3339 time\n", stderr), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--reason", &v)) {
            if (v == NULL || cm_copy(a.reason, sizeof a.reason, v) != CM_OK)
                return fputs("hubmeter: --reason needs 1-500 characters\n", stderr), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--author", &v)) {
            if (v == NULL || cm_copy(a.author, sizeof a.author, v) != CM_OK)
                return fputs("hubmeter: --author needs 1-200 characters\n", stderr), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--repo", &v)) {
            if (v == NULL || cm_copy(a.repo, sizeof a.repo, v) != CM_OK)
                return fputs("hubmeter: --repo is too long\n", stderr), EXIT_USAGE;
        } else {
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], USAGE_USAGE),
                   EXIT_USAGE;
        }
    }
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    struct reg_org org;
    char err[512];
    int64_t id = 0;
    int rc = reg_org_get(db, argv[1], &org, err, sizeof err);
    if (rc == CM_OK) {
        a.org_id = org.id;
        rc = meter_usage_adjust(db, &a, &id, err, sizeof err);
    }
    PQfinish(db);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    printf("adjustment %lld: org %s, %+lld bytes, %+lld requests\n", (long long)id, org.slug,
           (long long)a.bytes, (long long)a.requests);
    return 0;
}

/* Parses the options of show/top/export into q (and *month, *json). */
static int read_options(int argc, char **argv, int first, struct meter_usage_query *q,
                        int64_t *month, bool *json)
{
    for (int i = first; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else if (cli_opt(argc, argv, &i, "--from", &v) || cli_opt(argc, argv, &i, "--to", &v)) {
            int64_t *dst = strcmp(argv[i - 1], "--from") == 0 ? &q->from : &q->to;
            if (v == NULL || cm_time_parse(v, strlen(v), dst) != CM_OK)
                return fprintf(stderr, "hubmeter: %s needs an RFC 3339 time\n", argv[i - 1]),
                       EXIT_USAGE;
            if (dst == &q->from)
                q->to = cm_month_next(cm_month_start(q->from));
        } else if (cli_opt(argc, argv, &i, "--granularity", &v)) {
            if (v == NULL || cm_copy(q->granularity, sizeof q->granularity, v) != CM_OK)
                return fputs("hubmeter: --granularity is minute, hour, day or month\n", stderr),
                       EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--tz", &v)) {
            if (v == NULL || cm_copy(q->tz, sizeof q->tz, v) != CM_OK)
                return fputs("hubmeter: --tz needs an IANA zone name\n", stderr), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--group-by", &v)) {
            for (const char *p = v ? v : ""; *p;) {
                size_t n = strcspn(p, ",");
                unsigned bit = n == 4 && !strncmp(p, "repo", 4)     ? METER_GROUP_REPO
                               : n == 3 && !strncmp(p, "key", 3)    ? METER_GROUP_KEY
                               : n == 6 && !strncmp(p, "status", 6) ? METER_GROUP_STATUS
                                                                    : 0;
                if (bit == 0)
                    return fputs("hubmeter: --group-by takes repo, key, status\n", stderr),
                           EXIT_USAGE;
                q->group |= bit;
                p += n + (p[n] == ',');
            }
            if (q->group == 0)
                return fputs("hubmeter: --group-by takes repo, key, status\n", stderr), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--limit", &v)) {
            int64_t n;
            if (cli_int("--limit", v, &n) != CM_OK || n < 1 || n > 1000)
                return fputs("hubmeter: --limit must be 1-1000\n", stderr), EXIT_USAGE;
            q->limit = (unsigned)n;
        } else if (cli_opt(argc, argv, &i, "--month", &v)) {
            char t[40];
            if (v == NULL || strlen(v) != 7 || cm_fmt(t, sizeof t, "%s-01T00:00:00Z", v) != CM_OK ||
                cm_time_parse(t, strlen(t), month) != CM_OK)
                return fputs("hubmeter: --month needs YYYY-MM\n", stderr), EXIT_USAGE;
        } else {
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], USAGE_USAGE),
                   EXIT_USAGE;
        }
    }
    return 0;
}

static const char *str(const json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    return s != NULL ? s : "";
}

static void print_usage_table(json_t *doc, const struct meter_usage_query *q)
{
    json_t *t = json_object_get(doc, "totals");
    printf("org %s, %s .. %s by %s (%s); complete until %s\n",
           json_string_value(json_object_get(doc, "org")),
           json_string_value(json_object_get(doc, "from")),
           json_string_value(json_object_get(doc, "to")), q->granularity,
           json_string_value(json_object_get(doc, "tz")),
           json_string_value(json_object_get(doc, "complete_until")));
    printf("%-28s %16s %12s %10s\n", q->group ? "GROUP" : "START", "BYTES", "REQUESTS",
           "REFUSED");
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(doc, q->group ? "groups" : "series"), i, row) {
        char label[200] = "";
        if (q->group == 0)
            cm_copy(label, sizeof label, json_string_value(json_object_get(row, "start")));
        else
            cm_fmt(label, sizeof label, "%s %s %s",
                   str(row, "repo"), str(row, "key"), str(row, "status"));
        printf("%-28s %16lld %12lld %10lld\n", label,
               (long long)json_integer_value(json_object_get(row, "bytes")),
               (long long)json_integer_value(json_object_get(row, "requests")),
               (long long)json_integer_value(json_object_get(row, "refused")));
    }
    printf("%-28s %16lld %12lld %10lld\n", "TOTAL",
           (long long)json_integer_value(json_object_get(t, "bytes")),
           (long long)json_integer_value(json_object_get(t, "requests")),
           (long long)json_integer_value(json_object_get(t, "refused")));
}

/* usage show / top / export: the same figures as the org and admin APIs. */
static int report(const struct hm_config *cfg, int argc, char **argv)
{
    bool show = strcmp(argv[0], "show") == 0, export = strcmp(argv[0], "export") == 0;
    int64_t now = cm_now_us() / 1000000, month = cm_month_start(now);
    struct meter_usage_query q = {.from = cm_month_start(now), .granularity = "day",
                                  .minute_retention_days = cfg->minute_retention_days};
    q.to = cm_month_next(q.from);
    bool json = false;
    if ((show || export) && (argc < 2 || argv[1][0] == '-'))
        return fputs(USAGE_USAGE, stderr), EXIT_USAGE;
    int rc = read_options(argc, argv, show || export ? 2 : 1, &q, &month, &json);
    if (rc != 0)
        return rc;
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    char err[512];
    struct reg_org org = {0};
    json_t *doc = NULL;
    rc = show || export ? reg_org_get(db, argv[1], &org, err, sizeof err) : CM_OK;
    q.org_id = org.id;
    if (rc != CM_OK) {
        PQfinish(db);
        return cli_fail(rc, err);
    }
    rc = show     ? meter_usage_query(db, &q, &doc, err, sizeof err)
         : export ? meter_usage_export(db, org.id, month, &doc, err, sizeof err)
                  : meter_usage_top(db, q.from, q.to, q.limit ? q.limit : 20, &doc, err,
                                    sizeof err);
    PQfinish(db);
    if (rc != CM_OK) /* an unknown time zone is bad usage too */
        return cli_fail(rc == CM_NOTFOUND ? CM_INVALID : rc, err);
    if (show)
        json_object_set_new(doc, "org", json_string(org.slug));
    if (json) {
        cli_print_json(doc);
        return 0;
    }
    if (show) {
        print_usage_table(doc, &q);
    } else {
        printf("%-20s %-24s %16s %12s %10s %s\n", export ? "HOUR" : "ORG",
               export ? "KEY / REPO" : "CLASS", "BYTES", "REQUESTS", "REFUSED",
               export ? "CLIENTS" : "");
        size_t i;
        json_t *row;
        json_array_foreach(doc, i, row) {
            char second[200];
            cm_fmt(second, sizeof second, "%s%s%s",
                   json_string_value(json_object_get(row, export ? "key" : "class")),
                   export ? " " : "", export ? str(row, "repo") : "");
            char clients[24] = "";
            if (export)
                cm_fmt(clients, sizeof clients, "%lld",
                       (long long)json_integer_value(json_object_get(row, "clients")));
            printf("%-20s %-24s %16lld %12lld %10lld %s\n",
                   json_string_value(json_object_get(row, export ? "hour" : "org")), second,
                   (long long)json_integer_value(json_object_get(row, "bytes")),
                   (long long)json_integer_value(json_object_get(row, "requests")),
                   (long long)json_integer_value(json_object_get(row, "refused")), clients);
        }
    }
    json_decref(doc);
    return 0;
}

int cli_usage(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "adjust") == 0)
        return adjust(cfg, argc, argv);
    if (argc >= 1 && (strcmp(argv[0], "show") == 0 || strcmp(argv[0], "top") == 0 ||
                      strcmp(argv[0], "export") == 0))
        return report(cfg, argc, argv);
    if (argc < 1 || strcmp(argv[0], "reconcile") != 0)
        return fputs(USAGE_USAGE, argc >= 1 && strcmp(argv[0], "--help") == 0 ? stdout : stderr),
               argc >= 1 && strcmp(argv[0], "--help") == 0 ? 0 : EXIT_USAGE;
    int64_t now = cm_now_us() / 1000000, from = cm_month_start(now), to = now + 1;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int64_t *dst = NULL;
        if (cli_opt(argc, argv, &i, "--from", &v))
            dst = &from;
        else if (cli_opt(argc, argv, &i, "--to", &v))
            dst = &to;
        else if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        } else {
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], USAGE_USAGE),
                   EXIT_USAGE;
        }
        if (v == NULL || cm_time_parse(v, strlen(v), dst) != CM_OK)
            return fprintf(stderr, "hubmeter: %s needs an RFC 3339 time\n", argv[i - 1]),
                   EXIT_USAGE;
    }
    char err[512];
    if (cm_config_require(cfg, CM_NEED_DATABASE, err, sizeof err) != CM_OK)
        return fprintf(stderr, "hubmeter: %s\n", err), EXIT_USAGE;
    json_t *report = NULL;
    int rc = meter_reconcile(cfg, from, to, &report, err, sizeof err);
    if (report == NULL)
        return fprintf(stderr, "hubmeter: %s\n", err), 3;
    if (json) {
        cli_print_json(report);
    } else {
        json_t *pg = json_object_get(report, "postgresql");
        json_t *period = json_object_get(report, "period");
        printf("period %s .. %s: %lld requests, %lld bytes\n",
               json_string_value(json_object_get(period, "from")),
               json_string_value(json_object_get(period, "to")),
               (long long)json_integer_value(json_object_get(period, "requests")),
               (long long)json_integer_value(json_object_get(period, "bytes")));
        printf("usage rows: %lld requests, %lld bytes; applied batches: %lld requests, %lld "
               "bytes: %s\n",
               (long long)json_integer_value(json_object_get(pg, "usage_requests")),
               (long long)json_integer_value(json_object_get(pg, "usage_bytes")),
               (long long)json_integer_value(json_object_get(pg, "applied_batch_requests")),
               (long long)json_integer_value(json_object_get(pg, "applied_batch_bytes")),
               rc == CM_OK ? "consistent" : "DIFFERENT");
        char *rest = json_dumps(json_object_get(report, "journal"), JSON_COMPACT);
        printf("journal: %s\n", rest ? rest : "?");
        free(rest);
        rest = json_dumps(json_object_get(report, "stream"), JSON_COMPACT);
        printf("stream: %s\n", rest ? rest : "?");
        free(rest);
        json_decref(report);
    }
    return rc == CM_OK ? 0 : 1;
}
