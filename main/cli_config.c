/*
 * `hubmeter config keys [--json]`: the configuration keys hubmeter knows, from the table
 * in common/config.c, one a line (or a JSON array of {"key","secret"}), so deployment
 * files (docker-compose.yml, systemd EnvironmentFile) can be checked against them.
 */
#include <stdio.h>
#include <string.h>

#include "main/cli.h"

static const char CONFIG_USAGE[] = "usage: hubmeter config keys [--json]\n";

int cli_config(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "--help") == 0)
        return fputs(CONFIG_USAGE, stdout), 0;
    bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc < 1 || strcmp(argv[0], "keys") != 0 || (argc == 2 && !json) || argc > 2)
        return fputs(CONFIG_USAGE, stderr), EXIT_USAGE;
    json_t *list = json ? json_array() : NULL;
    bool secret;
    const char *key;
    for (size_t i = 0; (key = cm_config_key(i, &secret)) != NULL; i++) {
        if (list != NULL)
            json_array_append_new(list, json_pack("{s:s, s:b}", "key", key, "secret", secret));
        else if (!json)
            printf("%s\n", key);
    }
    if (json) {
        if (list == NULL)
            return fputs("hubmeter: out of memory\n", stderr), 1;
        cli_print_json(list);
    }
    return 0;
}
