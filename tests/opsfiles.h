/*
 * Helpers of the operations suites (test_ops.c, test_dashboards.c): the checkout's files
 * (compose, provisioning, dashboards), read as JSON — the YAML files are written in the
 * JSON subset of YAML plus whole-line '#' comments, which are dropped before parsing —
 * and commands run through the shell with their output captured.
 */
#ifndef HM_TEST_OPSFILES_H
#define HM_TEST_OPSFILES_H

#include <jansson.h>
#include <stddef.h>

/* The checkout's root (derived from HM_TEST_BIN, .../build/san/hubmeter). */
const char *ops_root(void);
/* The file at rel (relative to the root), NUL-terminated; caller frees. Fails the test
 * when it cannot be read. */
char *ops_read(const char *rel, size_t *len);
/* The file at rel parsed as JSON after dropping whole-line '#' comments; new reference.
 * Fails the test (with jansson's line and column) when it does not parse. */
json_t *ops_load(const char *rel);
/* Runs cmd with sh -c in the root, stdout and stderr into out (truncated); exit status. */
int ops_sh(const char *cmd, char *out, size_t len);
/* The configuration keys hubmeter knows (`hubmeter config keys --json`); new reference. */
json_t *ops_config_keys(void);
/* True when key is in keys (as returned by ops_config_keys); *secret its secrecy. */
int ops_key_known(json_t *keys, const char *key, int *secret);

/* The metric families /-/metrics documents (README "Metrics"), name and type;
 * terminated by {NULL, NULL}. */
struct ops_metric {
    const char *name, *type;
};
extern const struct ops_metric ops_metrics[];

#endif
