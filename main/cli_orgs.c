/*
 * hubmeter orgs create|list|show — organisations straight in PostgreSQL.
 */
#include "main/cli.h"
#include "registry/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ORGS_USAGE[] =
    "usage: hubmeter orgs create SLUG [--name NAME]\n"
    "                    [--class commercial|nonprofit|academic|individual|unknown]\n"
    "                    [--plan PLAN] [--json]\n"
    "       hubmeter orgs list [--json]\n"
    "       hubmeter orgs show SLUG [--json]\n";

static json_t *org_json(const struct reg_org *o)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s?, s:i, s:s, s:s}", "id", (json_int_t)o->id,
                     "slug", o->slug, "name", o->name, "class", o->class_, "plan",
                     o->plan[0] ? o->plan : NULL, "anchor_day", o->anchor_day, "status",
                     o->status, "created_at", o->created_at);
}

static void print_header(void)
{
    printf("%-24s %-12s %-16s %-10s %s\n", "SLUG", "CLASS", "PLAN", "STATUS", "NAME");
}

static void print_row(const struct reg_org *o)
{
    printf("%-24s %-12s %-16s %-10s %s\n", o->slug, o->class_, o->plan[0] ? o->plan : "-",
           o->status, o->name);
}

static int create(PGconn *db, int argc, char **argv)
{
    struct reg_org o = {0};
    bool json = false;
    if (argc < 1 || argv[0][0] == '-' || cm_copy(o.slug, sizeof o.slug, argv[0]) != CM_OK)
        return fputs(ORGS_USAGE, stderr), EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        char *dst = NULL;
        size_t len = 0;
        if (cli_opt(argc, argv, &i, "--name", &v))
            dst = o.name, len = sizeof o.name;
        else if (cli_opt(argc, argv, &i, "--class", &v))
            dst = o.class_, len = sizeof o.class_;
        else if (cli_opt(argc, argv, &i, "--plan", &v))
            dst = o.plan, len = sizeof o.plan;
        else if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        } else {
            fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], ORGS_USAGE);
            return EXIT_USAGE;
        }
        if (v == NULL || v[0] == '\0' || cm_copy(dst, len, v) != CM_OK) {
            fprintf(stderr, "hubmeter: %s needs a value (at most %zu characters)\n", argv[i - 1],
                    len - 1);
            return EXIT_USAGE;
        }
    }
    char err[512];
    int rc = reg_org_create(db, &o, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json)
        cli_print_json(org_json(&o));
    else
        printf("created org %s\n", o.slug);
    return 0;
}

int cli_orgs(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return fputs(ORGS_USAGE, argc < 1 ? stderr : stdout), argc < 1 ? EXIT_USAGE : 0;
    bool json = argc >= 2 && strcmp(argv[argc - 1], "--json") == 0;
    const char *cmd = argv[0];
    bool is_create = strcmp(cmd, "create") == 0, is_list = strcmp(cmd, "list") == 0,
         is_show = strcmp(cmd, "show") == 0;
    if ((!is_create && !is_list && !is_show) || (is_list && argc > (json ? 2 : 1)) ||
        (is_show && (argc != (json ? 3 : 2) || argv[1][0] == '-')))
        return fputs(ORGS_USAGE, stderr), EXIT_USAGE;
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    char err[512];
    int rc = 0;
    if (is_create) {
        rc = create(db, argc - 1, argv + 1);
    } else if (is_list) {
        struct reg_org *orgs;
        size_t n;
        int r = reg_org_list(db, &orgs, &n, err, sizeof err);
        if (r != CM_OK) {
            rc = cli_fail(r, err);
        } else if (json) {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, org_json(&orgs[i]));
            cli_print_json(arr);
        } else {
            print_header();
            for (size_t i = 0; i < n; i++)
                print_row(&orgs[i]);
        }
        free(r == CM_OK ? orgs : NULL);
    } else {
        struct reg_org o;
        int r = reg_org_get(db, argv[1], &o, err, sizeof err);
        if (r != CM_OK)
            rc = cli_fail(r, err);
        else if (json)
            cli_print_json(org_json(&o));
        else
            print_header(), print_row(&o);
    }
    PQfinish(db);
    return rc;
}
