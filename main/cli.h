/*
 * The command-line entry points, one function per subcommand group. Each returns the
 * process exit code (0 ok, 1 failed, 2 usage error) and reports errors on stderr once.
 */
#ifndef HM_CLI_H
#define HM_CLI_H

#include <jansson.h>

#include "common/common.h"

#define EXIT_USAGE 2

int cli_plans(const struct hm_config *cfg, int argc, char **argv);
int cli_orgs(const struct hm_config *cfg, int argc, char **argv);
int cli_keys(const struct hm_config *cfg, int argc, char **argv);
int cli_usage(const struct hm_config *cfg, int argc, char **argv);
int cli_quota(const struct hm_config *cfg, int argc, char **argv);
int cli_report(const struct hm_config *cfg, int argc, char **argv);
int cli_networks(const struct hm_config *cfg, int argc, char **argv);
/* Needs no configuration: runs before it is loaded. */
int cli_config(int argc, char **argv);

/* Shared helpers (cli_util.c). */
/* Connects to PostgreSQL for a CLI command; prints the reason and returns NULL on failure. */
PGconn *cli_db(const struct hm_config *cfg);
/* True when argv[i] is name and a value follows; advances *i past the value. */
bool cli_opt(int argc, char **argv, int *i, const char *name, const char **value);
/* Parses a non-negative 63-bit integer option value; prints and returns CM_INVALID. */
int cli_int(const char *name, const char *value, int64_t *out);
/* Prints doc (stolen reference) as indented JSON on stdout. */
void cli_print_json(json_t *doc);
/* The audit log's "who" for changes made from the CLI: "cli:<login name>". Static. */
const char *cli_actor(void);
/* Maps a registry return code to an exit code, printing err. */
int cli_fail(int rc, const char *err);

#endif
