/*
 * Operations: what an operator's tooling reads from a running hubmeter and from the
 * checkout's deployment files. /-/metrics after real traffic passes `promtool check
 * metrics` and holds every documented family; the access log is one structured line per
 * request (JSON or logfmt) with the documented fields and never the key;
 * docker-compose.yml, the Dockerfile and the systemd unit have the production shape and
 * set only configuration keys hubmeter knows, with secrets from the environment.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "registry/registry.h"
#include "tests/harness.h"
#include "tests/opsfiles.h"

static struct th_stack stack; /* its database, Redis and their environment entries */
static char key[128], auth[200];
static struct th_gateway gw;

/* A database with plan "pro", org "acme" on it with a key, and a gateway serving the test
 * mirror with extra (NULL-terminated, may be NULL) environment entries. */
static void start_with(const char *extra)
{
    th_stack_new(&stack, NULL);
    const char *env[] = {stack.env_db, stack.env_redis, stack.env_up, extra, NULL};
    struct th_run r;
    th_hubmeter(&r, env, (const char *[]){"plans", "create", "pro", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env,
                (const char *[]){"orgs", "create", "acme", "--class", "commercial", "--plan",
                                 "pro", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env, (const char *[]){"keys", "create", "acme", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_last_line(r.out, key, sizeof key);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    th_gateway_start(&gw, env);
}

static void start(void) { start_with(NULL); }
static void start_json(void) { start_with("HUBMETER_ACCESS_LOG_FORMAT=json"); }
static void start_two_loops(void) { start_with("HUBMETER_WORKERS=2"); }

static void stop(void)
{
    th_gateway_stop(&gw);
    cr_assert(!th_log_contains(&gw, key), "the API key must never appear in the log");
}

static long get(const char *path, const char *header)
{
    char u[512];
    snprintf(u, sizeof u, "%s%s", gw.base, path);
    struct th_response r;
    th_http("GET", u, (const char *[]){header, NULL}, &r);
    long status = r.status;
    th_response_free(&r);
    return status;
}

/* Some traffic: anonymous and keyed downloads, a missing file, a bad key. */
static void traffic(void)
{
    cr_assert_eq(get("/acme/model/resolve/main/config.json", NULL), 200);
    cr_assert_eq(get("/acme/model/resolve/main/config.json", auth), 200);
    cr_assert_eq(get("/acme/model/resolve/main/one.bin", auth), 200);
    cr_assert_eq(get("/acme/model/resolve/main/missing.bin", NULL), 404);
    cr_assert_eq(get("/acme/model/resolve/main/one.bin", "Authorization: Bearer hm_nonsense"),
                 401);
}

/* The value of the sample line "name value" in text, or -1 when there is none. */
static long long sample(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(text, name); p != NULL; p = strstr(p + 1, name))
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
    return -1;
}

/* /-/metrics once it shows every text of want and a positive sample for every name of
 * positive (both NULL-terminated); fails after 15 s. Caller frees. */
static char *metrics_when(const char *const *want, const char *const *positive)
{
    char u[256];
    snprintf(u, sizeof u, "%s/-/metrics", gw.base);
    int64_t deadline = th_now_ms() + 15000;
    for (;;) {
        struct th_response r;
        th_http("GET", u, NULL, &r);
        cr_assert_eq(r.status, 200);
        bool all = true;
        for (size_t i = 0; want[i] != NULL && all; i++)
            all = strstr(r.body, want[i]) != NULL;
        for (size_t i = 0; positive[i] != NULL && all; i++)
            all = sample(r.body, positive[i]) > 0;
        if (all)
            return r.body;
        cr_assert(th_now_ms() < deadline, "metrics never showed everything expected:\n%s",
                  r.body);
        th_response_free(&r);
        usleep(100 * 1000);
    }
}

Test(ops, metrics_pass_promtool_and_hold_every_documented_family, .init = start, .fini = stop)
{
    traffic();
    /* Keyed traffic is labelled with its org's plan, by name. */
    const char *keyed = "hubmeter_requests_total{plan=\"pro\",status_class=\"2xx\"} 2\n";
    /* The shipper's heartbeat reads the stream and the in-process flusher applies batches:
     * wait for both, so every family has its samples. */
    char *text = metrics_when((const char *[]){
        keyed, "hubmeter_requests_total{plan=\"anonymous\",status_class=\"2xx\"} 1\n",
        "hubmeter_requests_total{plan=\"anonymous\",status_class=\"4xx\"} 2\n",
        "hubmeter_response_bytes_total{plan=\"anonymous\",status_class=\"2xx\"} 22\n",
        "hubmeter_redis_up 1\n", "hubmeter_stream_pending_entries ", NULL},
        (const char *[]){"hubmeter_flusher_batches_total", "hubmeter_shipper_batches_total",
                         "hubmeter_stream_entries", "hubmeter_admission_latency_seconds_count",
                         NULL});
    char path[256];
    snprintf(path, sizeof path, "/tmp/hm-ops-metrics-%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
    char cmd[512], out[8192];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int status = ops_sh(cmd, out, sizeof out);
    unlink(path);
    cr_assert_eq(status, 0, "promtool check metrics failed (%d):\n%s\n--- metrics:\n%s", status,
                 out, text);
    for (size_t i = 0; ops_metrics[i].name != NULL; i++) {
        char type[160];
        snprintf(type, sizeof type, "# TYPE %s %s\n", ops_metrics[i].name, ops_metrics[i].type);
        cr_assert(strstr(text, type) != NULL, "missing %s", type);
    }
    /* Every sample is a hubmeter_ family, and no label can name an org, key or repo. */
    for (char *line = text; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        if (*line != '#' && *line != '\0') {
            cr_assert(strncmp(line, "hubmeter_", 9) == 0, "%s", line);
            cr_assert(strstr(line, "org=") == NULL && strstr(line, "key=") == NULL &&
                          strstr(line, "repo=") == NULL && strstr(line, "acme") == NULL,
                      "a per-org/key/repo label: %s", line);
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
}

Test(ops, redis_and_postgresql_errors_are_counted)
{
    /* Nothing listens on these ports: every Redis shipment and every key lookup fails. */
    char redis[64], pg[160], up[600];
    snprintf(redis, sizeof redis, "HUBMETER_REDIS_URL=redis://127.0.0.1:%d/0", th_free_port());
    snprintf(pg, sizeof pg, "HUBMETER_DATABASE_URL=postgresql://hm:x@127.0.0.1:%d/hm",
             th_free_port());
    snprintf(up, sizeof up, "HUBMETER_UPSTREAM=file://%s", th_env("HM_TEST_WWW"));
    th_gateway_start(&gw, (const char *[]){redis, pg, up, "HUBMETER_FLUSHER=off", NULL});
    /* A well-formed key (valid checksum) is looked up in PostgreSQL, which is not there. */
    char fresh[128], header[200];
    cr_assert_eq(reg_key_generate("hm_", fresh, sizeof fresh), CM_OK);
    snprintf(header, sizeof header, "Authorization: Bearer %s", fresh);
    cr_assert_eq(get("/acme/model/resolve/main/one.bin", header), 503);
    char *text = metrics_when((const char *[]){"hubmeter_redis_up 0\n", NULL},
                              (const char *[]){"hubmeter_redis_errors_total",
                                               "hubmeter_postgresql_errors_total", NULL});
    free(text);
    th_gateway_stop(&gw);
    cr_assert(!th_log_contains(&gw, fresh), "the key is never logged");
}

/* The lines of the gateway log that contain event "request" (as text). */
static size_t request_lines(char lines[][2048], size_t max)
{
    FILE *f = fopen(gw.log, "r");
    cr_assert(f != NULL);
    size_t n = 0;
    char line[4096];
    while (n < max && fgets(line, sizeof line, f) != NULL)
        if (strstr(line, "\"event\":\"request\"") || strstr(line, " event=request "))
            snprintf(lines[n++], 2048, "%.2000s", line);
    fclose(f);
    return n;
}

/* Waits until the gateway's log holds text (the last request of traffic() is logged when
 * it completes, a moment after its client has the answer). */
static void wait_logged(const char *text)
{
    int64_t deadline = th_now_ms() + 5000;
    while (!th_log_contains(&gw, text)) {
        cr_assert(th_now_ms() < deadline, "never logged: %s", text);
        usleep(50 * 1000);
    }
}

Test(ops, json_access_log_is_one_object_per_request_with_the_documented_fields,
     .init = start_json, .fini = stop)
{
    traffic();
    wait_logged("\"status\":401");
    static char lines[32][2048];
    size_t n = request_lines(lines, 32);
    bool keyed_ok = false, refused_ok = false;
    for (size_t i = 0; i < n; i++) {
        json_error_t e;
        json_t *o = json_loads(lines[i], 0, &e);
        cr_assert(json_is_object(o), "not one JSON object: %s (%s)", lines[i], e.text);
        const char *fields[] = {"ts", "level", "event", "method", "status", "bytes", "complete",
                                "org", "key", "client", "repo", "duration_ms", "upstream_status",
                                "upstream_ms", "decision", NULL};
        for (size_t k = 0; fields[k] != NULL; k++)
            cr_assert(json_object_get(o, fields[k]) != NULL, "no %s in %s", fields[k], lines[i]);
        int64_t ts;
        const char *t = json_string_value(json_object_get(o, "ts"));
        cr_assert(t != NULL && cm_time_parse(t, strlen(t), &ts) == CM_OK, "ts %s", lines[i]);
        cr_assert(json_is_integer(json_object_get(o, "duration_ms")));
        const char *org = json_string_value(json_object_get(o, "org"));
        long status = (long)json_integer_value(json_object_get(o, "status"));
        if (org != NULL && strcmp(org, "acme") == 0 && status == 200) {
            const char *kp = json_string_value(json_object_get(o, "key"));
            cr_assert(kp != NULL && strncmp(kp, key, strlen(kp)) == 0 && strlen(kp) < 16,
                      "the key's display prefix, never the key: %s", lines[i]);
            cr_assert_str_eq(json_string_value(json_object_get(o, "repo")), "acme/model");
            cr_assert_str_eq(json_string_value(json_object_get(o, "method")), "GET");
            cr_assert_str_eq(json_string_value(json_object_get(o, "decision")), "allow");
            cr_assert(json_is_boolean(json_object_get(o, "complete")));
            cr_assert(json_is_integer(json_object_get(o, "bytes")));
            keyed_ok = true;
        }
        if (status == 401) {
            cr_assert_str_eq(json_string_value(json_object_get(o, "decision")), "invalid_key");
            cr_assert(json_is_null(json_object_get(o, "org")));
            refused_ok = true;
        }
        json_decref(o);
    }
    cr_assert(keyed_ok && refused_ok, "the keyed download (%d) and the refused key (%d) were "
              "logged (%zu lines)", keyed_ok, refused_ok, n);
}

/* Parses one logfmt line into doc (key → string); values may be "quoted" with \" escapes. */
static json_t *logfmt_parse(const char *line)
{
    json_t *doc = json_object();
    const char *p = line;
    while (*p != '\0' && *p != '\n') {
        while (*p == ' ')
            p++;
        const char *k = p;
        while (*p != '\0' && *p != '=' && *p != ' ' && *p != '\n')
            p++;
        cr_assert_eq(*p, '=', "not key=value at \"%s\" in %s", k, line);
        char name[64], value[1024];
        snprintf(name, sizeof name, "%.*s", (int)(p - k), k);
        p++;
        size_t n = 0;
        if (*p == '"') {
            for (p++; *p != '\0' && *p != '"' && n < sizeof value - 1; p++)
                value[n++] = (*p == '\\' && p[1] != '\0') ? *++p : *p;
            cr_assert_eq(*p, '"', "unterminated quote in %s", line);
            p++;
        } else {
            while (*p != '\0' && *p != ' ' && *p != '\n' && n < sizeof value - 1)
                value[n++] = *p++;
        }
        value[n] = '\0';
        json_object_set_new(doc, name, json_string(value));
    }
    return doc;
}

Test(ops, logfmt_access_log_has_the_same_fields, .init = start, .fini = stop)
{
    traffic();
    wait_logged(" status=401 ");
    static char lines[32][2048];
    size_t n = request_lines(lines, 32);
    bool keyed_ok = false;
    for (size_t i = 0; i < n; i++) {
        json_t *o = logfmt_parse(lines[i]);
        const char *fields[] = {"ts", "level", "event", "method", "status", "bytes", "complete",
                                "org", "key", "client", "repo", "duration_ms", "upstream_status",
                                "upstream_ms", "decision", NULL};
        for (size_t k = 0; fields[k] != NULL; k++)
            cr_assert(json_object_get(o, fields[k]) != NULL, "no %s in %s", fields[k], lines[i]);
        const char *org = json_string_value(json_object_get(o, "org"));
        if (strcmp(org, "acme") == 0 &&
            strcmp(json_string_value(json_object_get(o, "status")), "200") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(o, "repo")), "acme/model");
            cr_assert_str_eq(json_string_value(json_object_get(o, "decision")), "allow");
            cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "200");
            keyed_ok = true;
        }
        json_decref(o);
    }
    cr_assert(keyed_ok, "the keyed download was logged");
}

Test(ops, an_unknown_access_log_format_is_refused_naming_the_key)
{
    struct th_run r;
    th_hubmeter(&r, (const char *[]){"HUBMETER_ACCESS_LOG_FORMAT=xml", NULL},
                (const char *[]){"serve", "--check-config", NULL});
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "HUBMETER_ACCESS_LOG_FORMAT") != NULL, "%s", r.err);
    cr_assert(strstr(r.err, "logfmt or json") != NULL, "%s", r.err);
}

Test(ops, config_keys_lists_the_configuration_table)
{
    struct th_run r;
    th_hubmeter(&r, NULL, (const char *[]){"config", "keys", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *expect[] = {"HUBMETER_LISTEN\n", "HUBMETER_DATABASE_URL\n",
                            "HUBMETER_ACCESS_LOG_FORMAT\n", "HUBMETER_FLUSHER\n", NULL};
    for (size_t i = 0; expect[i] != NULL; i++)
        cr_assert(strstr(r.out, expect[i]) != NULL, "%s", r.out);
    json_t *keys = ops_config_keys();
    int secret = 0;
    cr_assert(ops_key_known(keys, "HUBMETER_ADMIN_TOKEN", &secret) && secret);
    cr_assert(ops_key_known(keys, "HUBMETER_LISTEN", &secret) && !secret);
    cr_assert(!ops_key_known(keys, "HUBMETER_NO_SUCH_KEY", NULL));
    json_decref(keys);
    th_hubmeter(&r, NULL, (const char *[]){"config", "values", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "usage: hubmeter config keys") != NULL, "%s", r.err);
}

/* ---- the production stack: docker-compose.yml, Dockerfile, systemd unit ------------------- */

static bool list_has_prefix(json_t *list, const char *prefix)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strncmp(json_string_value(v), prefix, strlen(prefix)) == 0)
            return true;
    }
    return false;
}

/* True when value takes everything secret from the environment (${VAR...}). */
static bool from_environment(const char *value) { return strstr(value, "${") != NULL; }

/* Checks one service's environment: the HUBMETER_ keys of a hubmeter service are known to
 * hubmeter, secrets (and URLs with credentials) are never literal, and every ${VAR} is
 * documented in .env.example (dotenv: its text after a newline). */
static void check_environment(const char *name, bool hubmeter, json_t *env, json_t *keys,
                              const char *dotenv)
{
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v)
    {
        cr_assert(json_is_string(v), "%s: %s must be a string", name, k);
        const char *value = json_string_value(v);
        int secret = 0;
        if (hubmeter && strncmp(k, "HUBMETER_", 9) == 0)
            cr_assert(ops_key_known(keys, k, &secret), "%s sets %s, which hubmeter does not know",
                      name, k);
        /* A URL is secret when it holds credentials (redis://redis:6379 holds none). */
        bool url = strstr(value, "://") != NULL;
        bool sensitive = url ? strchr(value, '@') != NULL
                             : secret || strstr(k, "PASSWORD") != NULL || strstr(k, "TOKEN") != NULL;
        if (sensitive)
            cr_assert(from_environment(value), "%s: %s must come from the environment", name, k);
        for (const char *p = strstr(value, "${"); p != NULL; p = strstr(p + 2, "${")) {
            char var[80];
            size_t n = strcspn(p + 2, ":}-?");
            snprintf(var, sizeof var, "\n%.*s=", (int)n, p + 2);
            cr_assert(strstr(dotenv, var) != NULL, "%s: ${%s} is not in .env.example", name,
                      var + 1);
        }
    }
}

Test(ops, compose_file_has_the_production_shape_and_only_known_keys)
{
    json_t *doc = ops_load("docker-compose.yml");
    json_t *services = json_object_get(doc, "services");
    const char *need[] = {"gateway", "flusher", "migrate", "redis", "postgres", "prometheus",
                          "grafana", "upstream", NULL};
    for (size_t i = 0; need[i] != NULL; i++)
        cr_assert(json_is_object(json_object_get(services, need[i])), "no service %s", need[i]);
    json_t *keys = ops_config_keys();
    char *dotenv_raw = ops_read(".env.example", NULL);
    char dotenv[4096];
    snprintf(dotenv, sizeof dotenv, "\n%s", dotenv_raw);
    free(dotenv_raw);
    json_t *declared = json_object_get(doc, "volumes");
    const char *name;
    json_t *svc;
    json_object_foreach(services, name, svc)
    {
        cr_assert(json_is_string(json_object_get(svc, "image")), "%s has no image", name);
        json_t *env = json_object_get(svc, "environment");
        bool hubmeter = strncmp(json_string_value(json_object_get(svc, "image")), "hubmeter:", 9) == 0;
        if (env != NULL)
            check_environment(name, hubmeter, env, keys, dotenv);
        size_t i;
        json_t *vol;
        json_array_foreach(json_object_get(svc, "volumes"), i, vol)
        {
            const char *spec = json_string_value(vol);
            cr_assert(spec != NULL && strchr(spec, ':') != NULL, "%s: volume %s", name, spec);
            if (strncmp(spec, "./", 2) == 0) { /* a bind mount of the checkout: must exist */
                char rel[512];
                snprintf(rel, sizeof rel, "%.*s", (int)(strchr(spec, ':') - spec - 2), spec + 2);
                char cmd[1200], out[256];
                snprintf(cmd, sizeof cmd, "test -e '%s' || test '%s' = var/compose-www", rel, rel);
                cr_assert_eq(ops_sh(cmd, out, sizeof out), 0, "%s mounts missing %s", name, rel);
            } else {
                char vname[128];
                snprintf(vname, sizeof vname, "%.*s", (int)strcspn(spec, ":"), spec);
                cr_assert(json_object_get(declared, vname) != NULL,
                          "%s uses volume %s, not declared", name, vname);
            }
        }
        /* Redis and PostgreSQL stay on the private network. */
        if (strcmp(name, "redis") == 0 || strcmp(name, "postgres") == 0)
            cr_assert(json_object_get(svc, "ports") == NULL, "%s publishes a port", name);
    }
    json_t *gwsvc = json_object_get(services, "gateway");
    cr_assert(list_has_prefix(json_object_get(gwsvc, "ports"), "127.0.0.1:8080:8080"));
    json_t *genv = json_object_get(gwsvc, "environment");
    cr_assert_str_eq(json_string_value(json_object_get(genv, "HUBMETER_FLUSHER")), "off");
    cr_assert(strncmp(json_string_value(json_object_get(genv, "HUBMETER_UPSTREAM")),
                      "http://upstream", 15) == 0);
    json_t *fl = json_object_get(json_object_get(services, "flusher"), "command");
    cr_assert_str_eq(json_string_value(json_array_get(fl, 0)), "flush");
    json_t *redis_cmd = json_object_get(json_object_get(services, "redis"), "command");
    bool aof = false;
    for (size_t i = 0; i + 1 < json_array_size(redis_cmd); i++)
        aof |= strcmp(json_string_value(json_array_get(redis_cmd, i)), "--appendonly") == 0 &&
               strcmp(json_string_value(json_array_get(redis_cmd, i + 1)), "yes") == 0;
    cr_assert(aof, "Redis runs with persistence (appendonly yes)");
    cr_assert(list_has_prefix(json_object_get(json_object_get(services, "postgres"), "volumes"),
                              "pg-data:/var/lib/postgresql/data"));
    json_t *gf = json_object_get(json_object_get(services, "grafana"), "volumes");
    cr_assert(list_has_prefix(gf, "./dashboards/grafana/provisioning:/etc/grafana/provisioning"));
    cr_assert(list_has_prefix(gf, "./dashboards/grafana/dashboards:/var/lib/grafana/dashboards/"));
    cr_assert(list_has_prefix(json_object_get(json_object_get(services, "prometheus"), "volumes"),
                              "./dashboards/prometheus.yml:/etc/prometheus/prometheus.yml"));
    json_decref(keys);
    json_decref(doc);
}

Test(ops, dockerfile_is_multi_stage_non_root_and_carries_no_secret)
{
    char *text = ops_read("Dockerfile", NULL);
    /* Blank out comment lines: only instructions count. */
    for (char *line = text; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (*line == '#')
            memset(line, ' ', end != NULL ? (size_t)(end - line) : strlen(line));
        line = end != NULL ? end + 1 : NULL;
    }
    int froms = 0;
    const char *user = NULL;
    for (const char *p = text; (p = strstr(p, "\nFROM ")) != NULL; p++) {
        froms++;
        user = NULL; /* USER counts in the last stage only */
        const char *u = strstr(p, "\nUSER ");
        const char *next = strstr(p + 1, "\nFROM ");
        if (u != NULL && (next == NULL || u < next))
            user = u + 6;
    }
    if (strncmp(text, "FROM ", 5) == 0)
        froms++;
    cr_assert_geq(froms, 2, "multi-stage: a build stage and a runtime stage");
    cr_assert(user != NULL && strncmp(user, "root", 4) != 0 && strncmp(user, "0", 1) != 0,
              "the runtime stage runs as a non-root user");
    cr_assert(strstr(text, "debian:12") != NULL);
    const char *banned[] = {"HUBMETER_DATABASE_URL", "HUBMETER_REDIS_URL", "HUBMETER_ADMIN_TOKEN",
                            "HUBMETER_UPSTREAM_AUTHORIZATION", "PASSWORD", "COPY .env", NULL};
    for (size_t i = 0; banned[i] != NULL; i++)
        cr_assert(strstr(text, banned[i]) == NULL, "the image must not carry %s", banned[i]);
    /* The runtime stage installs the package of every library the binary links directly. */
    char pkgs[4096];
    int status = ops_sh("for lib in $(objdump -p bin/hubmeter | awk '/NEEDED/ {print $2}'); do"
                        " path=$(ldconfig -p | awk -v l=\"$lib\" '$1 == l {print $NF; exit}');"
                        " real=$(readlink -f \"$path\");" /* Debian 12 merged /usr: dpkg may know either path */
                        " { dpkg -S \"$real\" 2>/dev/null || dpkg -S \"${real#/usr}\"; } | cut -d: -f1;"
                        " done | sort -u",
                        pkgs, sizeof pkgs);
    cr_assert_eq(status, 0, "%s", pkgs);
    int checked = 0;
    for (char *line = pkgs; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        char word[96];
        snprintf(word, sizeof word, " %.80s ", line);
        if (strcmp(line, "libc6") != 0 && line[0] != '\0') {
            cr_assert(strstr(text, word) != NULL, "the runtime image lacks %s", line);
            checked++;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    cr_assert_geq(checked, 6, "libraries found: %s", pkgs);
    free(text);
    char *ignore = ops_read(".dockerignore", NULL);
    cr_assert(strstr(ignore, ".env") != NULL, ".env never enters the build context");
    free(ignore);
}

Test(ops, systemd_unit_runs_serve_with_an_environment_file_of_known_keys)
{
    char *unit = ops_read("scripts/systemd/hubmeter.service", NULL);
    const char *need[] = {"[Unit]\n", "[Service]\n", "[Install]\n",
                          "\nExecStart=/usr/local/bin/hubmeter serve\n",
                          "\nEnvironmentFile=/etc/hubmeter/hubmeter.env\n", "\nUser=hubmeter\n",
                          "\nExecReload=/bin/kill -HUP $MAINPID\n", NULL};
    for (size_t i = 0; need[i] != NULL; i++)
        cr_assert(strstr(unit, need[i]) != NULL, "the unit lacks %s", need[i]);
    free(unit);
    json_t *keys = ops_config_keys();
    char *env = ops_read("scripts/systemd/hubmeter.env.example", NULL);
    int n = 0;
    for (char *line = env; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        if (line[0] != '#' && line[0] != '\0') {
            char k[96];
            snprintf(k, sizeof k, "%.*s", (int)strcspn(line, "="), line);
            cr_assert(ops_key_known(keys, k, NULL), "hubmeter.env.example sets unknown %s", k);
            n++;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    cr_assert_geq(n, 4);
    free(env);
    json_decref(keys);
}

/* Sets the CPU set of every thread of pid (as `taskset -a -p` does; a thread that ended
 * meanwhile is skipped). */
static void pin_all_threads(pid_t pid, const cpu_set_t *set)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            cr_assert(sched_setaffinity((pid_t)strtol(e->d_name, NULL, 10), sizeof *set, set) == 0 ||
                      errno == ESRCH);
    closedir(d);
}

/* Keyed downloads on fresh connections until the log shows text (or 5 s pass). */
static bool dealt_within_5s(const char *text)
{
    for (int64_t until = th_now_ms() + 5000; th_now_ms() < until;) {
        cr_assert_eq(get("/acme/model/resolve/main/config.json", auth), 200);
        if (th_log_contains(&gw, text))
            return true;
        usleep(100 * 1000);
    }
    return false;
}

Test(ops, a_gateway_pinned_to_fewer_cpus_than_loops_deals_connections_to_that_many,
     .init = start_two_loops, .fini = stop)
{
    cpu_set_t all, one;
    cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &one);
            break;
        }
    pin_all_threads(gw.pid, &one);
    cr_assert(dealt_within_5s("event=connections_dealt workers=1 of=2 cpus=1"),
              "pinned to one CPU, the gateway deals new connections to one of its two loops");
    if (CPU_COUNT(&all) < 2)
        return; /* a one-CPU machine: the two loops always share it */
    pin_all_threads(gw.pid, &all);
    cr_assert(dealt_within_5s("event=connections_dealt workers=2 of=2"),
              "given its CPUs back, the gateway deals to both loops again");
}
