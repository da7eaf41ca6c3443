/*
 * hubmeter keys create|list|revoke|rotate — API keys. create and rotate print the new
 * secret alone on the last line of stdout (for scripts); it is shown once, never stored.
 */
#include "main/cli.h"
#include "registry/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char KEYS_USAGE[] =
    "usage: hubmeter keys create ORG_SLUG [--name NAME]\n"
    "       hubmeter keys list ORG_SLUG [--json]\n"
    "       hubmeter keys revoke KEY_ID|KEY_PREFIX\n"
    "       hubmeter keys rotate KEY_ID|KEY_PREFIX [--grace SECONDS]   (default 86400)\n";

static int create(const struct hm_config *cfg, PGconn *db, int argc, char **argv)
{
    const char *name = "";
    for (int i = 1; i < argc; i++) {
        if (!cli_opt(argc, argv, &i, "--name", &name) || name == NULL) {
            fprintf(stderr, "hubmeter: unknown or incomplete option %s\n%s", argv[i],
                    KEYS_USAGE);
            return EXIT_USAGE;
        }
    }
    struct reg_key k;
    char secret[REG_KEY_MAX], err[512];
    int rc = reg_key_create(db, cli_actor(), cfg->key_prefix, argv[0], name, &k, secret, sizeof secret, err,
                            sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    printf("created key %lld (prefix %s) for org %s; it is shown once, store it now:\n%s\n",
           (long long)k.id, k.display, k.org_slug, secret);
    memset(secret, 0, sizeof secret);
    return 0;
}

static int rotate(const struct hm_config *cfg, PGconn *db, int argc, char **argv)
{
    int64_t grace = 86400;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        if (!cli_opt(argc, argv, &i, "--grace", &v))
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], KEYS_USAGE),
                   EXIT_USAGE;
        if (cli_int("--grace", v, &grace) != CM_OK)
            return EXIT_USAGE;
    }
    struct reg_key fresh, old;
    char secret[REG_KEY_MAX], err[512];
    int rc = reg_key_rotate(db, cli_actor(), cfg->key_prefix, argv[1], grace, &fresh, &old,
                            secret, sizeof secret, err, sizeof err);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    printf("rotated key %lld (prefix %s): it stays valid until %s; new key %lld (prefix %s) "
           "for org %s, shown once:\n%s\n",
           (long long)old.id, old.display, old.expires_at, (long long)fresh.id, fresh.display,
           fresh.org_slug, secret);
    memset(secret, 0, sizeof secret);
    return 0;
}

int cli_keys(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)
        return fputs(KEYS_USAGE, argc < 1 ? stderr : stdout), argc < 1 ? EXIT_USAGE : 0;
    const char *cmd = argv[0];
    bool json = argc >= 3 && strcmp(argv[argc - 1], "--json") == 0;
    bool is_create = strcmp(cmd, "create") == 0, is_list = strcmp(cmd, "list") == 0,
         is_revoke = strcmp(cmd, "revoke") == 0, is_rotate = strcmp(cmd, "rotate") == 0;
    if ((!is_create && !is_list && !is_revoke && !is_rotate) || argc < 2 || argv[1][0] == '-' ||
        (is_list && argc != (json ? 3 : 2)) || (is_revoke && argc != 2))
        return fputs(KEYS_USAGE, stderr), EXIT_USAGE;
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    char err[512];
    int rc = 0;
    if (is_create) {
        rc = create(cfg, db, argc - 1, argv + 1);
    } else if (is_rotate) {
        rc = rotate(cfg, db, argc, argv);
    } else if (is_revoke) {
        struct reg_key k;
        int r = reg_key_revoke(db, cli_actor(), argv[1], &k, err, sizeof err);
        if (r != CM_OK)
            rc = cli_fail(r, err);
        else
            printf("revoked key %lld (prefix %s) of org %s\n", (long long)k.id, k.display,
                   k.org_slug);
    } else {
        struct reg_key *keys;
        size_t n;
        int r = reg_key_list(db, argv[1], &keys, &n, err, sizeof err);
        if (r != CM_OK) {
            rc = cli_fail(r, err);
        } else if (json) {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, reg_key_json(&keys[i]));
            cli_print_json(arr);
        } else {
            printf("%-6s %-16s %-20s %-20s %-20s %-20s %s\n", "ID", "PREFIX", "CREATED",
                   "LAST_USED", "REVOKED", "EXPIRES", "NAME");
            for (size_t i = 0; i < n; i++)
                printf("%-6lld %-16s %-20s %-20s %-20s %-20s %s\n", (long long)keys[i].id,
                       keys[i].display, keys[i].created_at,
                       keys[i].last_used_at[0] ? keys[i].last_used_at : "-",
                       keys[i].revoked_at[0] ? keys[i].revoked_at : "-",
                       keys[i].expires_at[0] ? keys[i].expires_at : "-", keys[i].name);
        }
        free(r == CM_OK ? keys : NULL);
    }
    PQfinish(db);
    return rc;
}
