/*
 * hubmeter orgs create|list|show|update|suspend|resume — organisations straight in
 * PostgreSQL. Changes are audited with the actor "cli:<login name>".
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
    "       hubmeter orgs list [--search TEXT] [--after SLUG] [--limit N] [--json]\n"
    "       hubmeter orgs show SLUG [--json]\n"
    "       hubmeter orgs update SLUG [--name NAME] [--class CLASS] [--contact TEXT]\n"
    "                    [--plan PLAN|--no-plan] [--anchor-day 1-28] [--json]\n"
    "       hubmeter orgs suspend|resume SLUG\n";

static void print_header(void)
{
    printf("%-24s %-12s %-16s %-10s %s\n", "SLUG", "CLASS", "PLAN", "STATUS", "NAME");
}

static void print_row(const struct reg_org *o)
{
    printf("%-24s %-12s %-16s %-10s %s\n", o->slug, o->class_, o->plan[0] ? o->plan : "-",
           o->status, o->name);
}

static void print_org(const struct reg_org *o, bool json)
{
    if (json) {
        cli_print_json(reg_org_json(o));
    } else {
        print_header();
        print_row(o);
    }
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
    int rc = reg_org_create(db, cli_actor(), &o, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json)
        cli_print_json(reg_org_json(&o));
    else
        printf("created org %s\n", o.slug);
    return 0;
}

static int list(PGconn *db, int argc, char **argv)
{
    const char *search = "", *after = "";
    int64_t limit = 1000;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (cli_opt(argc, argv, &i, "--search", &v) || cli_opt(argc, argv, &i, "--after", &v)) {
            if (v == NULL || strlen(v) > 200)
                return fprintf(stderr, "hubmeter: %s needs a value\n", argv[i - 1]), EXIT_USAGE;
            *(strcmp(argv[i - 1], "--search") == 0 ? &search : &after) = v;
        } else if (cli_opt(argc, argv, &i, "--limit", &v)) {
            if (cli_int("--limit", v, &limit) != CM_OK || limit < 1 || limit > 1000)
                return fputs("hubmeter: --limit must be 1-1000\n", stderr), EXIT_USAGE;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], ORGS_USAGE),
                   EXIT_USAGE;
        }
    }
    struct reg_org *orgs;
    size_t n;
    char err[512];
    int rc = reg_org_list(db, search, after, (int)limit, &orgs, &n, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, reg_org_json(&orgs[i]));
        cli_print_json(arr);
    } else {
        print_header();
        for (size_t i = 0; i < n; i++)
            print_row(&orgs[i]);
    }
    free(orgs);
    return 0;
}

static int update(PGconn *db, int argc, char **argv)
{
    struct reg_org_change ch = {0};
    bool json = false;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        const char **dst = NULL;
        if (cli_opt(argc, argv, &i, "--name", &v))
            dst = &ch.name;
        else if (cli_opt(argc, argv, &i, "--class", &v))
            dst = &ch.class_;
        else if (cli_opt(argc, argv, &i, "--contact", &v))
            dst = &ch.contact;
        else if (cli_opt(argc, argv, &i, "--plan", &v))
            dst = &ch.plan;
        else if (strcmp(argv[i], "--no-plan") == 0) {
            ch.plan = "";
            continue;
        } else if (cli_opt(argc, argv, &i, "--anchor-day", &v)) {
            int64_t d;
            if (cli_int("--anchor-day", v, &d) != CM_OK || d < 1 || d > 28)
                return fputs("hubmeter: --anchor-day must be 1-28\n", stderr), EXIT_USAGE;
            ch.anchor_day = (int)d;
            continue;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        } else {
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], ORGS_USAGE),
                   EXIT_USAGE;
        }
        if (v == NULL)
            return fprintf(stderr, "hubmeter: %s needs a value\n", argv[i]), EXIT_USAGE;
        *dst = v;
    }
    if (!ch.name && !ch.class_ && !ch.contact && !ch.plan && !ch.anchor_day)
        return fputs("hubmeter: orgs update needs at least one option to change\n", stderr),
               EXIT_USAGE;
    struct reg_org o;
    char err[512];
    int rc = reg_org_update(db, cli_actor(), argv[1], &ch, &o, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    if (json)
        cli_print_json(reg_org_json(&o));
    else
        printf("updated org %s\n", o.slug);
    return 0;
}

int cli_orgs(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return fputs(ORGS_USAGE, argc < 1 ? stderr : stdout), argc < 1 ? EXIT_USAGE : 0;
    const char *cmd = argv[0];
    bool json = argc >= 2 && strcmp(argv[argc - 1], "--json") == 0;
    bool is_show = strcmp(cmd, "show") == 0;
    bool is_status = strcmp(cmd, "suspend") == 0 || strcmp(cmd, "resume") == 0;
    bool with_slug = is_show || is_status || strcmp(cmd, "update") == 0;
    if (strcmp(cmd, "create") != 0 && strcmp(cmd, "list") != 0 && !with_slug)
        return fprintf(stderr, "hubmeter: unknown orgs command %s\n%s", cmd, ORGS_USAGE),
               EXIT_USAGE;
    if ((with_slug && (argc < 2 || argv[1][0] == '-')) ||
        (is_show && argc != (json ? 3 : 2)) || (is_status && argc != 2))
        return fputs(ORGS_USAGE, stderr), EXIT_USAGE;
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    char err[512];
    int rc = 0;
    struct reg_org o;
    if (strcmp(cmd, "create") == 0) {
        rc = create(db, argc - 1, argv + 1);
    } else if (strcmp(cmd, "list") == 0) {
        rc = list(db, argc, argv);
    } else if (strcmp(cmd, "update") == 0) {
        rc = update(db, argc, argv);
    } else if (is_status) {
        int r = reg_org_set_suspended(db, cli_actor(), argv[1], strcmp(cmd, "suspend") == 0, &o,
                                      err, sizeof err);
        if (r != CM_OK)
            rc = cli_fail(r, err);
        else
            printf("org %s is now %s\n", o.slug, o.status);
    } else {
        int r = reg_org_get(db, argv[1], &o, err, sizeof err);
        if (r != CM_OK)
            rc = cli_fail(r, err);
        else
            print_org(&o, json);
    }
    PQfinish(db);
    return rc;
}
