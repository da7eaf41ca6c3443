/*
 * Helpers shared by the CLI subcommands: database connection, option parsing, and the
 * one place where a registry error becomes a message on stderr and an exit code.
 */
#include "main/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PGconn *cli_db(const struct hm_config *cfg)
{
    char err[512];
    if (cm_config_require(cfg, CM_NEED_DATABASE, err, sizeof err) != CM_OK) {
        fprintf(stderr, "hubmeter: %s\n", err);
        return NULL;
    }
    PGconn *db = cm_pg_connect(cfg->database_url, err, sizeof err);
    if (db == NULL)
        fprintf(stderr, "hubmeter: %s\n", err);
    return db;
}

bool cli_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    if (strcmp(argv[*i], name) != 0)
        return false;
    if (*i + 1 >= argc) {
        *value = NULL;
        return true;
    }
    *value = argv[++*i];
    return true;
}

int cli_int(const char *name, const char *value, int64_t *out)
{
    uint64_t v;
    if (value == NULL || cm_parse_u64(value, &v) != CM_OK || v > INT64_MAX) {
        fprintf(stderr, "hubmeter: %s needs a whole number >= 0\n", name);
        return CM_INVALID;
    }
    *out = (int64_t)v;
    return CM_OK;
}

int cli_fail(int rc, const char *err)
{
    fprintf(stderr, "hubmeter: %s\n", err);
    return rc == CM_INVALID ? EXIT_USAGE : 1;
}

void cli_print_json(json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    if (s != NULL)
        puts(s);
    free(s);
    json_decref(doc);
}

const char *cli_actor(void)
{
    static char actor[80];
    const char *user = getenv("USER");
    if (user == NULL || user[0] == '\0' || strlen(user) > 64)
        user = "unknown";
    cm_fmt(actor, sizeof actor, "cli:%s", user);
    return actor;
}
