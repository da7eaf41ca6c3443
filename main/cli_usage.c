/*
 * hubmeter usage reconcile — checks that PostgreSQL's usage equals its applied batches
 * and reports what is still on its way (this host's journal, the Redis stream).
 */
#include "main/cli.h"
#include "meter/meter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE_USAGE[] =
    "usage: hubmeter usage reconcile [--from RFC3339] [--to RFC3339] [--json]\n"
    "Exit status: 0 consistent, 1 PostgreSQL's usage differs from its applied batches,\n"
    "2 bad usage, 3 a store could not be read.\n";

int cli_usage(const struct hm_config *cfg, int argc, char **argv)
{
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
