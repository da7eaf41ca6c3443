/*
 * hubmeter networks add|list|remove — CIDR ranges whose anonymous traffic is attributed
 * to an org when usage is read (the most specific range wins). Changes are audited.
 */
#include "main/cli.h"
#include "registry/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char NETWORKS_USAGE[] =
    "usage: hubmeter networks add ORG_SLUG CIDR [--note TEXT] [--json]\n"
    "       hubmeter networks list [ORG_SLUG] [--from RFC3339] [--to RFC3339] [--json]\n"
    "                 (with the anonymous traffic each range carried; default: this month)\n"
    "       hubmeter networks remove ID\n";

static int add(PGconn *db, int argc, char **argv)
{
    const char *note = "";
    bool json = false;
    if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-')
        return fputs(NETWORKS_USAGE, stderr), EXIT_USAGE;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (!cli_opt(argc, argv, &i, "--note", &note) || note == NULL)
            return fprintf(stderr, "hubmeter: unknown or incomplete option %s\n%s", argv[i],
                           NETWORKS_USAGE), EXIT_USAGE;
    }
    struct reg_network n;
    char err[512];
    int rc = reg_network_add(db, cli_actor(), argv[1], argv[2], note, &n, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json)
        cli_print_json(reg_network_json(&n));
    else
        printf("added network %lld: %s -> %s\n", (long long)n.id, n.cidr, n.org_slug);
    return 0;
}

static int list(PGconn *db, int argc, char **argv)
{
    const char *org = "";
    int64_t now = cm_now_us() / 1000000, from = cm_month_start(now), to = cm_month_next(from);
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (cli_opt(argc, argv, &i, "--from", &v) || cli_opt(argc, argv, &i, "--to", &v)) {
            int64_t *dst = strcmp(argv[i - 1], "--from") == 0 ? &from : &to;
            if (v == NULL || cm_time_parse(v, strlen(v), dst) != CM_OK)
                return fprintf(stderr, "hubmeter: %s needs an RFC 3339 time\n", argv[i - 1]),
                       EXIT_USAGE;
        } else if (argv[i][0] != '-' && org[0] == '\0') {
            org = argv[i];
        } else {
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], NETWORKS_USAGE),
                   EXIT_USAGE;
        }
    }
    if (from >= to)
        return fputs("hubmeter: --from must be before --to\n", stderr), EXIT_USAGE;
    char err[512];
    struct reg_org o;
    if (org[0] != '\0' && reg_org_get(db, org, &o, err, sizeof err) != CM_OK)
        return cli_fail(CM_NOTFOUND, err);
    struct reg_network *nets;
    size_t n;
    int rc = reg_network_list(db, org, from, to, &nets, &n, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, reg_network_json(&nets[i]));
        cli_print_json(arr);
    } else {
        printf("%-6s %-24s %-44s %12s %16s %s\n", "ID", "ORG", "CIDR", "REQUESTS", "BYTES",
               "NOTE");
        for (size_t i = 0; i < n; i++)
            printf("%-6lld %-24s %-44s %12lld %16lld %s\n", (long long)nets[i].id,
                   nets[i].org_slug, nets[i].cidr, (long long)nets[i].requests,
                   (long long)nets[i].bytes, nets[i].note);
    }
    free(nets);
    return 0;
}

static int remove_range(PGconn *db, int argc, char **argv)
{
    int64_t id;
    if (argc != 2)
        return fputs(NETWORKS_USAGE, stderr), EXIT_USAGE;
    if (cli_int("ID", argv[1], &id) != CM_OK)
        return EXIT_USAGE;
    struct reg_network n;
    char err[512];
    int rc = reg_network_remove(db, cli_actor(), id, &n, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    printf("removed network %lld: %s (was %s)\n", (long long)n.id, n.cidr, n.org_slug);
    return 0;
}

int cli_networks(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return fputs(NETWORKS_USAGE, argc < 1 ? stderr : stdout), argc < 1 ? EXIT_USAGE : 0;
    const char *cmd = argv[0];
    if (strcmp(cmd, "add") != 0 && strcmp(cmd, "list") != 0 && strcmp(cmd, "remove") != 0)
        return fprintf(stderr, "hubmeter: unknown networks command %s\n%s", cmd,
                       NETWORKS_USAGE), EXIT_USAGE;
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    int rc = strcmp(cmd, "add") == 0    ? add(db, argc, argv)
             : strcmp(cmd, "list") == 0 ? list(db, argc, argv)
                                        : remove_range(db, argc, argv);
    PQfinish(db);
    return rc;
}
