/*
 * hubmeter plans create|list|show|update|delete — plans straight in PostgreSQL, so
 * operators can work with no gateway running. 0 means unlimited for every limit.
 */
#include "main/cli.h"
#include "registry/registry.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char PLANS_USAGE[] =
    "usage: hubmeter plans create NAME [--requests-per-minute N] [--request-burst N]\n"
    "                                  [--bytes-per-second N] [--byte-burst N]\n"
    "                                  [--monthly-bytes N] [--max-concurrent N]\n"
    "                                  [--failure open|closed] [--shadow] [--json]\n"
    "       hubmeter plans update NAME [the options of create; --no-shadow] [--json]\n"
    "       hubmeter plans delete NAME          (only when no org uses it)\n"
    "       hubmeter plans list [--json]\n"
    "       hubmeter plans show NAME [--json]\n"
    "Limits are whole numbers; 0 means unlimited.\n";

static void print_plan_row(const struct reg_plan *p)
{
    printf("%-20s %12lld %8lld %14lld %14lld %16lld %6d %-6s %s\n", p->name,
           (long long)p->requests_per_minute, (long long)p->request_burst,
           (long long)p->bytes_per_second, (long long)p->byte_burst,
           (long long)p->monthly_bytes, (int)p->max_concurrent, p->failure_policy,
           p->shadow ? "shadow" : "-");
}

static void print_plan_header(void)
{
    printf("%-20s %12s %8s %14s %14s %16s %6s %-6s %s\n", "NAME", "REQ/MIN", "BURST", "BYTES/S",
           "BYTE_BURST", "MONTHLY_BYTES", "CONC", "FAIL", "MODE");
}

/* Parses the options of create and update into p; *mask says which were given. */
static int parse_options(int argc, char **argv, struct reg_plan *p, unsigned *mask, bool *json)
{
    static const struct {
        const char *name;
        size_t offset;
        unsigned bit;
    } limits[] = {
        {"--requests-per-minute", offsetof(struct reg_plan, requests_per_minute), REG_PLAN_RPM},
        {"--request-burst", offsetof(struct reg_plan, request_burst), REG_PLAN_REQUEST_BURST},
        {"--bytes-per-second", offsetof(struct reg_plan, bytes_per_second), REG_PLAN_BPS},
        {"--byte-burst", offsetof(struct reg_plan, byte_burst), REG_PLAN_BYTE_BURST},
        {"--monthly-bytes", offsetof(struct reg_plan, monthly_bytes), REG_PLAN_MONTHLY},
    };
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool matched = false;
        for (size_t k = 0; !matched && k < sizeof limits / sizeof limits[0]; k++) {
            if (cli_opt(argc, argv, &i, limits[k].name, &v)) {
                matched = true;
                *mask |= limits[k].bit;
                if (cli_int(limits[k].name, v, (int64_t *)((char *)p + limits[k].offset)) !=
                    CM_OK)
                    return EXIT_USAGE;
            }
        }
        if (matched)
            continue;
        if (cli_opt(argc, argv, &i, "--max-concurrent", &v)) {
            int64_t n;
            if (cli_int("--max-concurrent", v, &n) != CM_OK || n > INT32_MAX)
                return EXIT_USAGE;
            p->max_concurrent = (int32_t)n;
            *mask |= REG_PLAN_CONCURRENT;
        } else if (cli_opt(argc, argv, &i, "--failure", &v)) {
            if (v == NULL || cm_copy(p->failure_policy, sizeof p->failure_policy, v) != CM_OK)
                return fputs("hubmeter: --failure must be open or closed\n", stderr), EXIT_USAGE;
            *mask |= REG_PLAN_FAILURE;
        } else if (strcmp(argv[i], "--shadow") == 0 || strcmp(argv[i], "--no-shadow") == 0) {
            p->shadow = strcmp(argv[i], "--shadow") == 0;
            *mask |= REG_PLAN_SHADOW;
        } else if (strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else {
            fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], PLANS_USAGE);
            return EXIT_USAGE;
        }
    }
    return 0;
}

static int create(PGconn *db, int argc, char **argv)
{
    struct reg_plan p = {.failure_policy = "open"};
    bool json = false;
    unsigned mask = 0;
    if (argc < 1 || argv[0][0] == '-' || cm_copy(p.name, sizeof p.name, argv[0]) != CM_OK)
        return fputs(PLANS_USAGE, stderr), EXIT_USAGE;
    int rc = parse_options(argc, argv, &p, &mask, &json);
    if (rc != 0)
        return rc;
    char err[512];
    rc = reg_plan_create(db, cli_actor(), &p, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json)
        cli_print_json(reg_plan_json(&p));
    else
        printf("created plan %s\n", p.name);
    return 0;
}

static int update(PGconn *db, int argc, char **argv)
{
    struct reg_plan p = {0}, out;
    bool json = false;
    unsigned mask = 0;
    if (argc < 1 || argv[0][0] == '-')
        return fputs(PLANS_USAGE, stderr), EXIT_USAGE;
    int rc = parse_options(argc, argv, &p, &mask, &json);
    if (rc != 0)
        return rc;
    if (mask == 0)
        return fputs("hubmeter: plans update needs at least one option to change\n", stderr),
               EXIT_USAGE;
    char err[512];
    rc = reg_plan_update(db, cli_actor(), argv[0], &p, mask, &out, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json)
        cli_print_json(reg_plan_json(&out));
    else
        printf("updated plan %s\n", out.name);
    return 0;
}

static int delete(PGconn *db, int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-')
        return fputs(PLANS_USAGE, stderr), EXIT_USAGE;
    char err[512];
    int rc = reg_plan_delete(db, cli_actor(), argv[0], err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    printf("deleted plan %s\n", argv[0]);
    return 0;
}

static int list(PGconn *db, bool json)
{
    struct reg_plan *plans;
    size_t n;
    char err[512];
    int rc = reg_plan_list(db, &plans, &n, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, reg_plan_json(&plans[i]));
        cli_print_json(arr);
    } else {
        print_plan_header();
        for (size_t i = 0; i < n; i++)
            print_plan_row(&plans[i]);
    }
    free(plans);
    return 0;
}

static int show(PGconn *db, const char *name, bool json)
{
    struct reg_plan p;
    char err[512];
    int rc = reg_plan_get(db, name, &p, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json) {
        cli_print_json(reg_plan_json(&p));
    } else {
        print_plan_header();
        print_plan_row(&p);
    }
    return 0;
}

int cli_plans(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return fputs(PLANS_USAGE, argc < 1 ? stderr : stdout), argc < 1 ? EXIT_USAGE : 0;
    bool json = argc >= 2 && strcmp(argv[argc - 1], "--json") == 0;
    const char *cmd = argv[0];
    if (strcmp(cmd, "create") != 0 && strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0 &&
        strcmp(cmd, "update") != 0 && strcmp(cmd, "delete") != 0)
        return fprintf(stderr, "hubmeter: unknown plans command %s\n%s", cmd, PLANS_USAGE),
               EXIT_USAGE;
    if (strcmp(cmd, "list") == 0 && argc > (json ? 2 : 1))
        return fputs(PLANS_USAGE, stderr), EXIT_USAGE;
    if (strcmp(cmd, "show") == 0 && (argc != (json ? 3 : 2) || argv[1][0] == '-'))
        return fputs(PLANS_USAGE, stderr), EXIT_USAGE;
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    int rc = strcmp(cmd, "create") == 0   ? create(db, argc - 1, argv + 1)
             : strcmp(cmd, "update") == 0 ? update(db, argc - 1, argv + 1)
             : strcmp(cmd, "delete") == 0 ? delete(db, argc - 1, argv + 1)
             : strcmp(cmd, "list") == 0   ? list(db, json)
                                          : show(db, argv[1], json);
    PQfinish(db);
    return rc;
}
