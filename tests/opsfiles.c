/*
 * Helpers of the operations suites: the checkout's deployment files read as JSON, shell
 * commands with captured output, and the configuration keys hubmeter reports knowing.
 */
#include "tests/opsfiles.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/harness.h"

const char *ops_root(void)
{
    static char root[1024];
    if (root[0] == '\0') {
        const char *bin = th_env("HM_TEST_BIN");
        const char *tail = strstr(bin, "/build/san/hubmeter");
        cr_assert(tail != NULL, "HM_TEST_BIN %s is not .../build/san/hubmeter", bin);
        snprintf(root, sizeof root, "%.*s", (int)(tail - bin), bin);
    }
    return root;
}

char *ops_read(const char *rel, size_t *len)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", ops_root(), rel);
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

json_t *ops_load(const char *rel)
{
    char *text = ops_read(rel, NULL);
    /* Blank out whole-line comments (keeping the newlines, so line numbers stay right). */
    for (char *line = text; *line != '\0';) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        char *end = strchr(line, '\n');
        if (*p == '#')
            for (; *p != '\0' && *p != '\n'; p++)
                *p = ' ';
        if (end == NULL)
            break;
        line = end + 1;
    }
    json_error_t e;
    json_t *doc = json_loads(text, 0, &e);
    free(text);
    cr_assert(doc != NULL, "%s does not parse as JSON-subset YAML: line %d column %d: %s", rel,
              e.line, e.column, e.text);
    return doc;
}

int ops_sh(const char *cmd, char *out, size_t len)
{
    char full[4096];
    snprintf(full, sizeof full, "cd '%s' && ( %s ) 2>&1", ops_root(), cmd);
    FILE *p = popen(full, "r");
    cr_assert(p != NULL, "popen %s", cmd);
    size_t n = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) {
        size_t room = len > n + 1 ? len - n - 1 : 0;
        size_t take = got < room ? got : room;
        memcpy(out + n, chunk, take);
        n += take;
    }
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

json_t *ops_config_keys(void)
{
    struct th_run r;
    th_hubmeter(&r, NULL, (const char *[]){"config", "keys", "--json", NULL});
    cr_assert_eq(r.status, 0, "hubmeter config keys --json: %s", r.err);
    json_error_t e;
    json_t *keys = json_loads(r.out, 0, &e);
    cr_assert(json_is_array(keys) && json_array_size(keys) > 10, "%s", r.out);
    return keys;
}

int ops_key_known(json_t *keys, const char *key, int *secret)
{
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        if (strcmp(json_string_value(json_object_get(k, "key")), key) == 0) {
            if (secret != NULL)
                *secret = json_is_true(json_object_get(k, "secret"));
            return 1;
        }
    }
    return 0;
}

const struct ops_metric ops_metrics[] = {
    {"hubmeter_requests_total", "counter"},
    {"hubmeter_response_bytes_total", "counter"},
    {"hubmeter_refused_requests_total", "counter"},
    {"hubmeter_requests_in_flight", "gauge"},
    {"hubmeter_downloads_in_flight", "gauge"},
    {"hubmeter_slow_clients_cut_total", "counter"},
    {"hubmeter_upstream_latency_seconds", "histogram"},
    {"hubmeter_admission_latency_seconds", "histogram"},
    {"hubmeter_redis_up", "gauge"},
    {"hubmeter_redis_errors_total", "counter"},
    {"hubmeter_postgresql_errors_total", "counter"},
    {"hubmeter_journal_bytes", "gauge"},
    {"hubmeter_journal_skipped_records_total", "counter"},
    {"hubmeter_shipper_batches_total", "counter"},
    {"hubmeter_shipper_unapplied_batches", "gauge"},
    {"hubmeter_stream_entries", "gauge"},
    {"hubmeter_stream_pending_entries", "gauge"},
    {"hubmeter_stream_lag_entries", "gauge"},
    {"hubmeter_flusher_batches_total", "counter"},
    {"hubmeter_flusher_duplicate_batches_total", "counter"},
    {"hubmeter_flusher_errors_total", "counter"},
    {"hubmeter_flusher_last_batch_timestamp_seconds", "gauge"},
    {"hubmeter_watermark_lag_seconds", "gauge"},
    {NULL, NULL},
};
