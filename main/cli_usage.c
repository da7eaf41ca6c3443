/*
 * hubmeter usage reconcile — checks that PostgreSQL's usage equals its applied batches
 * and reports what is still on its way (this host's journal, the Redis stream).
 */
#include "main/cli.h"
#include "meter/meter.h"
#include "registry/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE_USAGE[] =
    "usage: hubmeter usage reconcile [--from RFC3339] [--to RFC3339] [--json]\n"
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

int cli_usage(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "adjust") == 0)
        return adjust(cfg, argc, argv);
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
