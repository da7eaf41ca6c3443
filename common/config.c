/*
 * Configuration: defaults, then a KEY=value file, then the environment, each value
 * validated once into struct hm_config, which is read-only afterwards. Errors name the
 * key and the reason; values of secret keys are never echoed.
 */
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_kind {
    OPT_STRING,
    OPT_HOSTPORT,
    OPT_UINT,
    OPT_BOOL,
    OPT_UPSTREAM,
    OPT_PREFIX,
    OPT_LEVEL,
    OPT_FSYNC,
    OPT_U64,
    OPT_LOGFORMAT
};

struct opt {
    const char *key;
    enum opt_kind kind;
    size_t offset; /* of the field (the host field for OPT_HOSTPORT) */
    size_t size;
    unsigned min, max; /* for OPT_UINT */
    bool secret;
};

#define F(field) offsetof(struct hm_config, field), sizeof(((struct hm_config *)0)->field)

static const struct opt options[] = {
    {"HUBMETER_LISTEN", OPT_HOSTPORT, F(listen_host), 0, 0, false},
    {"HUBMETER_ADMIN_LISTEN", OPT_HOSTPORT, F(admin_host), 0, 0, false},
    {"HUBMETER_UPSTREAM", OPT_UPSTREAM, F(upstream), 0, 0, false},
    {"HUBMETER_REDIS_URL", OPT_STRING, F(redis_url), 0, 0, true},
    {"HUBMETER_DATABASE_URL", OPT_STRING, F(database_url), 0, 0, true},
    {"HUBMETER_ADMIN_TOKEN", OPT_STRING, F(admin_token), 0, 0, true},
    {"HUBMETER_JOURNAL_DIR", OPT_STRING, F(journal_dir), 0, 0, false},
    {"HUBMETER_JOURNAL_FSYNC", OPT_FSYNC, F(journal_fsync_always), 0, 0, false},
    {"HUBMETER_JOURNAL_MAX_BYTES", OPT_U64, F(journal_max_bytes), 0, 0, false},
    {"HUBMETER_KEY_PREFIX", OPT_PREFIX, F(key_prefix), 0, 0, false},
    {"HUBMETER_INSTANCE_ID", OPT_PREFIX, F(instance_id), 0, 0, false},
    {"HUBMETER_LOG_LEVEL", OPT_LEVEL, F(log_level), 0, 0, false},
    {"HUBMETER_MAX_CONNECTIONS", OPT_UINT, F(max_connections), 1, 100000, false},
    {"HUBMETER_MAX_CONNECTIONS_PER_IP", OPT_UINT, F(max_connections_per_ip), 1, 100000, false},
    {"HUBMETER_CONNECTION_MEMORY", OPT_UINT, F(connection_memory), 8192, 1048576, false},
    {"HUBMETER_CLIENT_TIMEOUT_S", OPT_UINT, F(client_timeout_s), 1, 86400, false},
    {"HUBMETER_UPSTREAM_CONNECT_TIMEOUT_MS", OPT_UINT, F(upstream_connect_timeout_ms), 10,
     600000, false},
    {"HUBMETER_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", OPT_UINT, F(upstream_first_byte_timeout_ms), 10,
     3600000, false},
    {"HUBMETER_UPSTREAM_AUTHORIZATION", OPT_STRING, F(upstream_authorization), 0, 0, true},
    {"HUBMETER_FOLLOW_REDIRECTS", OPT_STRING, F(follow_redirects), 0, 0, false},
    {"HUBMETER_REPO_PATTERNS", OPT_STRING, F(repo_patterns), 0, 0, false},
    {"HUBMETER_CHALLENGE_PATHS", OPT_STRING, F(challenge_paths), 0, 0, false},
    {"HUBMETER_HEADER_TIMEOUT_S", OPT_UINT, F(header_timeout_s), 1, 3600, false},
    {"HUBMETER_SHUTDOWN_GRACE_S", OPT_UINT, F(shutdown_grace_s), 0, 86400, false},
    {"HUBMETER_UPSTREAM_IDLE_TIMEOUT_MS", OPT_UINT, F(upstream_idle_timeout_ms), 10, 3600000,
     false},
    {"HUBMETER_SHIP_INTERVAL_MS", OPT_UINT, F(ship_interval_ms), 10, 60000, false},
    {"HUBMETER_FLUSHER", OPT_BOOL, F(run_flusher), 0, 0, false},
    {"HUBMETER_MINUTE_RETENTION_DAYS", OPT_UINT, F(minute_retention_days), 0, 36600, false},
    {"HUBMETER_MONTH_CLOSE_GRACE_H", OPT_UINT, F(month_close_grace_h), 0, 24 * 366, false},
    {"HUBMETER_QUOTAS", OPT_BOOL, F(quotas), 0, 0, false},
    {"HUBMETER_UPSTREAM_BUILTIN_CLIENT", OPT_BOOL, F(upstream_builtin_client), 0, 0, false},
    {"HUBMETER_WORKERS", OPT_UINT, F(workers), 0, 64, false},
    {"HUBMETER_REDIS_TIMEOUT_MS", OPT_UINT, F(redis_timeout_ms), 1, 10000, false},
    {"HUBMETER_ANONYMOUS_PLAN", OPT_STRING, F(anonymous_plan), 0, 0, false},
    {"HUBMETER_FLUSH_CLAIM_IDLE_MS", OPT_UINT, F(flush_claim_idle_ms), 100, 86400000, false},
    {"HUBMETER_WEBHOOK_INTERVAL_MS", OPT_UINT, F(webhook_interval_ms), 100, 3600000, false},
    {"HUBMETER_ACCESS_LOG_FORMAT", OPT_LOGFORMAT, F(access_log_json), 0, 0, false},
    {"HUBMETER_ADMIN_TLS", OPT_BOOL, F(admin_tls), 0, 0, false},
    {"HUBMETER_DASHBOARD_SESSION_S", OPT_UINT, F(dashboard_session_s), 5, 7 * 86400, false},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static void set_defaults(struct hm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cm_copy(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    cm_copy(cfg->admin_host, sizeof cfg->admin_host, "127.0.0.1");
    cfg->admin_port = 8081;
    cm_copy(cfg->journal_dir, sizeof cfg->journal_dir, "var/journal");
    cm_copy(cfg->key_prefix, sizeof cfg->key_prefix, "hm_");
    char host[64] = "gateway";
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        cm_copy(host, sizeof host, "gateway");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++) /* instance ids are [A-Za-z0-9_.-] */
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            *p = '-';
    cm_copy(cfg->instance_id, sizeof cfg->instance_id, host);
    cfg->log_level = CM_LOG_INFO;
    cfg->max_connections = 1024;
    cfg->max_connections_per_ip = 64;
    cfg->client_timeout_s = 60;
    cfg->connection_memory = 16 * 1024;
    cfg->upstream_connect_timeout_ms = 5000;
    cfg->upstream_idle_timeout_ms = 60000;
    cfg->upstream_first_byte_timeout_ms = 30000;
    cm_copy(cfg->follow_redirects, sizeof cfg->follow_redirects, "*/resolve/*");
    cfg->shutdown_grace_s = 30;
    cfg->header_timeout_s = 20;
    cm_copy(cfg->repo_patterns, sizeof cfg->repo_patterns,
            "/api/models/{ns}/{repo}*,datasets/=/api/datasets/{ns}/{repo}*,"
            "spaces/=/api/spaces/{ns}/{repo}*,datasets/=/datasets/{ns}/{repo}/*,"
            "spaces/=/spaces/{ns}/{repo}/*,/{ns}/{repo}.git/*,/{ns}/{repo}/resolve/*,"
            "/{ns}/{repo}/raw/*,/{ns}/{repo}/blob/*");
    cfg->ship_interval_ms = 1000;
    cfg->flush_claim_idle_ms = 60000;
    cfg->webhook_interval_ms = 10000;
    cfg->journal_max_bytes = 1ull << 30;
    cfg->month_close_grace_h = 72;
    cfg->minute_retention_days = 90;
    cfg->run_flusher = true;
    cfg->quotas = true;
    cfg->upstream_builtin_client = true;
    cfg->dashboard_session_s = 8 * 3600;
    cfg->redis_timeout_ms = 25;
    cm_copy(cfg->anonymous_plan, sizeof cfg->anonymous_plan, "anonymous");
}

static int parse_hostport(const char *v, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v)
        return CM_INVALID;
    const char *h = v;
    size_t hl = (size_t)(colon - v);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [::1]:8080 */
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostlen)
        return CM_INVALID;
    uint64_t p;
    if (cm_parse_u64(colon + 1, &p) != CM_OK || p == 0 || p > 65535)
        return CM_INVALID;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return CM_OK;
}

static int parse_upstream(struct hm_config *cfg, const char *v, const char **why)
{
    size_t len = strlen(v);
    if (len == 0 || len >= sizeof cfg->upstream) {
        *why = "must be http://, https:// or file:///dir";
        return CM_INVALID;
    }
    while (len > 1 && v[len - 1] == '/')
        len--; /* no trailing slash: request paths start with one */
    memcpy(cfg->upstream, v, len);
    cfg->upstream[len] = '\0';
    if (strncmp(cfg->upstream, "file://", 7) == 0) {
        const char *dir = cfg->upstream + 7;
        if (dir[0] != '/') {
            *why = "a file:// upstream needs an absolute directory (file:///srv/repo)";
            return CM_INVALID;
        }
        cfg->upstream_is_file = true;
        return cm_copy(cfg->upstream_dir, sizeof cfg->upstream_dir, dir);
    }
    cfg->upstream_is_file = false;
    if (strncmp(cfg->upstream, "http://", 7) != 0 && strncmp(cfg->upstream, "https://", 8) != 0) {
        *why = "must be http://, https:// or file:///dir";
        return CM_INVALID;
    }
    const char *host = strstr(cfg->upstream, "://") + 3;
    if (*host == '\0' || *host == '/') {
        *why = "has no host";
        return CM_INVALID;
    }
    return CM_OK;
}

static bool valid_ident(const char *v, size_t max)
{
    size_t n = strlen(v);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!(c == '_' || c == '-' || c == '.' || (c >= '0' && c <= '9') ||
              (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

static int apply(struct hm_config *cfg, const struct opt *o, const char *v, char *err,
                 size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    const char *why = NULL;
    switch (o->kind) {
    case OPT_STRING:
        if (strlen(v) >= o->size)
            why = "is too long";
        else
            cm_copy(field, o->size, v);
        break;
    case OPT_HOSTPORT: {
        uint16_t *port = o->offset == offsetof(struct hm_config, listen_host) ? &cfg->listen_port
                                                                              : &cfg->admin_port;
        if (parse_hostport(v, field, o->size, port) != CM_OK)
            why = "must be HOST:PORT (port 1-65535), e.g. 127.0.0.1:8080";
        break;
    }
    case OPT_UINT: {
        uint64_t n;
        if (cm_parse_u64(v, &n) != CM_OK || n < o->min || n > o->max)
            why = "is not a whole number in range";
        else
            *(unsigned *)field = (unsigned)n;
        break;
    }
    case OPT_BOOL:
        if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
            *(bool *)field = true;
        else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
            *(bool *)field = false;
        else
            why = "must be on or off";
        break;
    case OPT_UPSTREAM:
        parse_upstream(cfg, v, &why);
        break;
    case OPT_PREFIX:
        if (!valid_ident(v, o->size - 1))
            why = "must be 1-16 (prefix) or 1-63 (instance) characters of A-Z a-z 0-9 _ - .";
        else
            cm_copy(field, o->size, v);
        break;
    case OPT_U64: {
        uint64_t n;
        if (cm_parse_u64(v, &n) != CM_OK)
            why = "is not a whole number of bytes";
        else
            *(uint64_t *)field = n;
        break;
    }
    case OPT_FSYNC:
        if (strcmp(v, "always") == 0 || strcmp(v, "everysec") == 0)
            *(bool *)field = strcmp(v, "always") == 0;
        else
            why = "must be everysec or always";
        break;
    case OPT_LOGFORMAT:
        if (strcmp(v, "json") == 0 || strcmp(v, "logfmt") == 0)
            *(bool *)field = strcmp(v, "json") == 0;
        else
            why = "must be logfmt or json";
        break;
    case OPT_LEVEL:
        if (cm_log_parse_level(v, (enum cm_log_level *)field) != CM_OK)
            why = "must be debug, info, warn or error";
        break;
    }
    if (why == NULL)
        return CM_OK;
    if (o->secret || o->kind == OPT_UINT || o->kind == OPT_BOOL || o->kind == OPT_U64)
        cm_fmt(err, errlen, "%s %s", o->key, why);
    else
        cm_fmt(err, errlen, "%s=\"%.200s\" %s", o->key, v, why);
    return CM_INVALID;
}

static const struct opt *find_opt(const char *key, size_t keylen)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].key) == keylen && memcmp(options[i].key, key, keylen) == 0)
            return &options[i];
    return NULL;
}

static int load_file(struct hm_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        cm_fmt(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
        return CM_INVALID;
    }
    char line[CM_URL_MAX + 128];
    int lineno = 0, rc = CM_OK;
    while (rc == CM_OK && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            cm_fmt(err, errlen, "%s:%d: line too long", path, lineno);
            rc = CM_INVALID;
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        const struct opt *o = eq ? find_opt(s, (size_t)(eq - s)) : NULL;
        if (o == NULL) {
            cm_fmt(err, errlen, "%s:%d: unknown key (expected KEY=value with a HUBMETER_ key)",
                   path, lineno);
            rc = CM_INVALID;
            break;
        }
        char prefix[96];
        rc = apply(cfg, o, eq + 1, prefix, sizeof prefix);
        if (rc != CM_OK)
            cm_fmt(err, errlen, "%s:%d: %s", path, lineno, prefix);
    }
    fclose(f);
    return rc;
}

int cm_config_load(struct hm_config *cfg, const char *file, char *err, size_t errlen)
{
    set_defaults(cfg);
    if (file != NULL && (cm_copy(cfg->config_file, sizeof cfg->config_file, file) != CM_OK ||
                         load_file(cfg, file, err, errlen) != CM_OK))
        return CM_INVALID;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv(options[i].key);
        if (v != NULL && apply(cfg, &options[i], v, err, errlen) != CM_OK)
            return CM_INVALID;
    }
    return CM_OK;
}

const char *cm_config_key(size_t i, bool *secret)
{
    if (i >= N_OPTIONS)
        return NULL;
    if (secret != NULL)
        *secret = options[i].secret;
    return options[i].key;
}

int cm_config_require(const struct hm_config *cfg, unsigned needs, char *err, size_t errlen)
{
    if ((needs & CM_NEED_DATABASE) && cfg->database_url[0] == '\0')
        return cm_fmt(err, errlen, "HUBMETER_DATABASE_URL is not set"), CM_INVALID;
    if ((needs & CM_NEED_REDIS) && cfg->redis_url[0] == '\0')
        return cm_fmt(err, errlen, "HUBMETER_REDIS_URL is not set"), CM_INVALID;
    if ((needs & CM_NEED_UPSTREAM) && cfg->upstream[0] == '\0')
        return cm_fmt(err, errlen, "HUBMETER_UPSTREAM is not set"), CM_INVALID;
    return CM_OK;
}
