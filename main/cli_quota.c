/*
 * hubmeter quota show ORG_SLUG — an org's quota state as the gateways see it: its plan,
 * each policy's limit, remaining and reset, the month against its quota, downloads
 * running, and the near-limit and refusal events counted in Redis. Reads PostgreSQL for
 * the org and plan, and Redis for the state; changes nothing.
 */
#include "gateway/gateway.h"
#include "main/cli.h"
#include "meter/meter.h"
#include "registry/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char QUOTA_USAGE[] = "usage: hubmeter quota show ORG_SLUG [--json]\n";

/* An operator's command starts cold (connect, load the scripts) and nobody is waiting on it
 * the way a download waits on admission: it gives Redis at least this long. */
enum { CLI_REDIS_TIMEOUT_MS = 2000 };

static void print_quota(const char *slug, json_t *doc)
{
    printf("org %s, plan %s (source: %s)\n", slug,
           json_string_value(json_object_get(json_object_get(doc, "plan"), "name")),
           json_string_value(json_object_get(doc, "source")));
    printf("%-15s %20s %20s %10s %10s\n", "POLICY", "LIMIT", "REMAINING", "RESET_S", "WINDOW_S");
    json_t *policies = json_object_get(doc, "policies");
    for (size_t i = 0; i < json_array_size(policies); i++) {
        json_t *p = json_array_get(policies, i);
        printf("%-15s %20lld %20lld %10lld %10lld\n",
               json_string_value(json_object_get(p, "name")),
               (long long)json_integer_value(json_object_get(p, "limit")),
               (long long)json_integer_value(json_object_get(p, "remaining")),
               (long long)json_integer_value(json_object_get(p, "reset_s")),
               (long long)json_integer_value(json_object_get(p, "window_s")));
    }
    json_t *m = json_object_get(doc, "month"), *ev = json_object_get(doc, "events");
    json_t *refused = json_object_get(ev, "refused");
    printf("month %s .. %s: %lld bytes used of %lld (0 = unlimited)\n",
           json_string_value(json_object_get(m, "start")),
           json_string_value(json_object_get(m, "end")),
           (long long)json_integer_value(json_object_get(m, "used")),
           (long long)json_integer_value(json_object_get(m, "limit")));
    printf("downloads running: %lld; near-limit events: %lld; refused: requests %lld, "
           "monthly_bytes %lld, concurrency %lld\n",
           (long long)json_integer_value(
               json_object_get(json_object_get(doc, "concurrency"), "in_use")),
           (long long)json_integer_value(json_object_get(ev, "near_limit")),
           (long long)json_integer_value(json_object_get(refused, "requests")),
           (long long)json_integer_value(json_object_get(refused, "monthly_bytes")),
           (long long)json_integer_value(json_object_get(refused, "concurrency")));
}

static int show(const struct hm_config *cfg, int argc, char **argv)
{
    const char *slug = NULL;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (argv[i][0] != '-' && slug == NULL)
            slug = argv[i];
        else
            return fputs(QUOTA_USAGE, stderr), EXIT_USAGE;
    }
    if (slug == NULL)
        return fputs(QUOTA_USAGE, stderr), EXIT_USAGE;
    char err[512];
    if (cm_config_require(cfg, CM_NEED_REDIS, err, sizeof err) != CM_OK)
        return fprintf(stderr, "hubmeter: %s\n", err), 1;
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    struct reg_org org;
    struct reg_plan plan;
    int rc = reg_org_get(db, slug, &org, err, sizeof err);
    if (rc == CM_OK && org.plan[0] == '\0') {
        PQfinish(db);
        return fprintf(stderr, "hubmeter: org %s has no plan: it is not limited\n", slug), 1;
    }
    if (rc == CM_OK)
        rc = reg_plan_get(db, org.plan, &plan, err, sizeof err);
    PQfinish(db);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    struct hm_config patient = *cfg;
    if (patient.redis_timeout_ms < CLI_REDIS_TIMEOUT_MS)
        patient.redis_timeout_ms = CLI_REDIS_TIMEOUT_MS;
    struct meter_quota *q = meter_quota_new(&patient, err, sizeof err);
    if (q == NULL)
        return fprintf(stderr, "hubmeter: %s\n", err), 1;
    struct meter_plan mp;
    gw_plan_to_meter(&plan, &mp);
    char subject[72];
    cm_fmt(subject, sizeof subject, "org:%lld", (long long)org.id);
    struct meter_decision d;
    struct meter_quota_view v;
    meter_quota_peek(q, &mp, subject, org.anchor_day, &d, &v);
    meter_quota_free(q);
    json_t *doc = meter_quota_json(&mp, &d, &v);
    if (doc == NULL)
        return fprintf(stderr, "hubmeter: out of memory\n"), 1;
    json_object_set_new(doc, "org", json_string(slug));
    if (v.degraded)
        fprintf(stderr, "hubmeter: Redis did not answer: figures are this process's (none)\n");
    if (json) {
        cli_print_json(doc);
    } else {
        print_quota(slug, doc);
        json_decref(doc);
    }
    return v.degraded ? 3 : 0;
}

int cli_quota(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "show") == 0)
        return show(cfg, argc - 1, argv + 1);
    fputs(QUOTA_USAGE, stderr);
    return argc >= 1 && strcmp(argv[0], "--help") == 0 ? 0 : EXIT_USAGE;
}
