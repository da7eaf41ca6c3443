/*
 * hubmeter's entry point: parses the global options, loads and validates the
 * configuration once, and dispatches to a subcommand. Wires the modules together;
 * owns no behaviour of its own.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "gateway/gateway.h"
#include "main/cli.h"
#include "meter/meter.h"

static const char USAGE[] =
    "usage: hubmeter [--config FILE] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  serve [--check-config]  run the gateway (and the flusher, unless HUBMETER_FLUSHER=off)\n"
    "  flush                   run the flusher alone (usage stream -> PostgreSQL)\n"
    "  migrate                 apply the SQL migrations (idempotent)\n"
    "  plans create|list|show|update|delete        manage plans\n"
    "  orgs create|list|show|update|suspend|resume manage organisations\n"
    "  keys create|list|revoke|rotate              manage API keys\n"
    "  networks add|list|remove                    map CIDR ranges to organisations\n"
    "  usage show|top|export|adjust|reconcile      usage of an org, top consumers, checks\n"
    "  quota show ORG                              an org's quota state (limits, remaining, month)\n"
    "  report funding                              funding-ask report for a month\n"

    "  config keys [--json]                        list the configuration keys hubmeter knows\n"
    "\n"
    "Configuration comes from HUBMETER_* environment variables (see README.md); --config\n"
    "FILE adds KEY=value lines, which the environment overrides. COMMAND --help for more.\n";

static int cmd_migrate(const struct hm_config *cfg)
{
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    char err[512];
    int applied;
    int rc = cm_migrate(db, &applied, err, sizeof err);
    PQfinish(db);
    if (rc != CM_OK) {
        fprintf(stderr, "hubmeter: %s\n", err);
        return 1;
    }
    printf("migrations: %d applied, schema up to date\n", applied);
    return 0;
}

static int cmd_serve(const struct hm_config *cfg, int argc, char **argv)
{
    bool check_only = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--check-config") == 0)
            check_only = true;
        else
            return fprintf(stderr, "usage: hubmeter serve [--check-config]\n"), EXIT_USAGE;
    }
    char err[512];
    if (cm_config_require(cfg, CM_NEED_DATABASE | CM_NEED_REDIS | CM_NEED_UPSTREAM, err,
                          sizeof err) != CM_OK) {
        fprintf(stderr, "hubmeter: %s\n", err);
        return EXIT_USAGE;
    }
    if (cfg->upstream_is_file && access(cfg->upstream_dir, R_OK | X_OK) != 0) {
        fprintf(stderr, "hubmeter: HUBMETER_UPSTREAM directory %s is not readable\n",
                cfg->upstream_dir);
        return EXIT_USAGE;
    }
    if (check_only) {
        printf("configuration ok\n");
        return 0;
    }
    return gw_serve(cfg);
}

static int cmd_flush(const struct hm_config *cfg, int argc)
{
    char err[512];
    if (argc > 0)
        return fprintf(stderr, "usage: hubmeter flush\n"), EXIT_USAGE;
    if (cm_config_require(cfg, CM_NEED_DATABASE | CM_NEED_REDIS, err, sizeof err) != CM_OK) {
        fprintf(stderr, "hubmeter: %s\n", err);
        return EXIT_USAGE;
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    struct meter_flusher *f = meter_flusher_new(cfg, err, sizeof err);
    if (f == NULL || meter_flusher_start(f) != CM_OK) {
        fprintf(stderr, "hubmeter: cannot start the flusher: %s\n", err);
        meter_flusher_free(f);
        return 1;
    }
    int sig;
    sigwait(&stop, &sig);
    meter_flusher_free(f);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_file = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_file = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], USAGE);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (sub_argc > 0 && strcmp(sub_argv[0], "--help") == 0 &&
        (strcmp(cmd, "serve") == 0 || strcmp(cmd, "flush") == 0 || strcmp(cmd, "migrate") == 0)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "config") == 0)
        return cli_config(sub_argc, sub_argv);
    struct hm_config cfg;
    char err[512];
    if (cm_config_load(&cfg, config_file, err, sizeof err) != CM_OK) {
        fprintf(stderr, "hubmeter: invalid configuration: %s\n", err);
        return EXIT_USAGE;
    }
    cm_log_set_level(cfg.log_level);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(&cfg, sub_argc, sub_argv);
    if (strcmp(cmd, "flush") == 0)
        return cmd_flush(&cfg, sub_argc);
    if (strcmp(cmd, "migrate") == 0)
        return sub_argc == 0 ? cmd_migrate(&cfg)
                             : (fprintf(stderr, "usage: hubmeter migrate\n"), EXIT_USAGE);
    if (strcmp(cmd, "plans") == 0)
        return cli_plans(&cfg, sub_argc, sub_argv);
    if (strcmp(cmd, "orgs") == 0)
        return cli_orgs(&cfg, sub_argc, sub_argv);
    if (strcmp(cmd, "keys") == 0)
        return cli_keys(&cfg, sub_argc, sub_argv);
    if (strcmp(cmd, "networks") == 0)
        return cli_networks(&cfg, sub_argc, sub_argv);
    if (strcmp(cmd, "usage") == 0)
        return cli_usage(&cfg, sub_argc, sub_argv);
    if (strcmp(cmd, "quota") == 0)
        return cli_quota(&cfg, sub_argc, sub_argv);
    if (strcmp(cmd, "report") == 0)
        return cli_report(&cfg, sub_argc, sub_argv);
    fprintf(stderr, "hubmeter: unknown command %s\n%s", cmd, USAGE);
    return EXIT_USAGE;
}
