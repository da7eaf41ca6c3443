/*
 * The admin API: a second libmicrohttpd daemon on HUBMETER_ADMIN_LISTEN (never the public
 * address) serving /admin/v1/… to operators. Every request carries a named admin token
 * (Authorization: Bearer); its name is the audit log's "who". Owns the listener, the
 * request lifecycle (JSON bodies capped at 64 KiB), authentication, the router, the
 * reply/parsing helpers, admin tokens and the audit listing. Handlers of orgs and plans
 * live in admin_orgs.c, of keys, networks and usage in admin_keys.c; /dashboard (the
 * operator page, with its own login) in dashboard*.c.
 */
#include "gateway/admin_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct gw_admin {
    struct gw *gw;
    struct MHD_Daemon *daemon;
    _Atomic bool bootstrapped; /* HUBMETER_ADMIN_TOKEN is in admin_tokens */
    struct adm_sessions *sessions; /* the operator page's (dashboard_session.c) */
};

struct adm_sessions *adm_sessions_of(struct gw_admin *adm)
{
    return adm->sessions;
}

enum MHD_Result adm_error(struct adm_req *a, struct MHD_Connection *c, unsigned status,
                          const char *code, const char *message)
{
    return gw_reply_error(&a->base, c, status, code, message);
}

enum MHD_Result adm_json(struct adm_req *a, struct MHD_Connection *c, unsigned status,
                         json_t *body)
{
    return gw_reply_json(&a->base, c, status, body);
}

enum MHD_Result adm_fail(struct adm_req *a, struct MHD_Connection *c, int rc, const char *err,
                         const char *denied_code)
{
    switch (rc) {
    case CM_INVALID:
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "invalid_value", err);
    case CM_NOTFOUND:
        return adm_error(a, c, MHD_HTTP_NOT_FOUND, "not_found", err);
    case CM_EXISTS:
        return adm_error(a, c, MHD_HTTP_CONFLICT, "already_exists", err);
    case CM_DENIED:
        return adm_error(a, c, MHD_HTTP_CONFLICT, denied_code ? denied_code : "conflict", err);
    default:
        cm_log(CM_LOG_ERROR, "admin_failed", "actor=%s error=\"%s\"", a->actor, err);
        return adm_error(a, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                         "the database could not complete the request: retry shortly");
    }
}

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t m = strcspn(p, ",");
        if (m == n && strncmp(p, name, n) == 0)
            return true;
        p += m + (p[m] == ',');
    }
    return false;
}

json_t *adm_body(struct adm_req *a, struct MHD_Connection *c, const char *allowed,
                 enum MHD_Result *mhd)
{
    json_error_t jerr;
    json_t *obj = a->body ? json_loadb(a->body, a->body_len, JSON_REJECT_DUPLICATES, &jerr)
                          : json_object();
    if (obj == NULL || !json_is_object(obj)) {
        json_decref(obj);
        *mhd = adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_json",
                         "the body must be one JSON object (Content-Type: application/json)");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!in_list(allowed, key)) {
            char msg[300];
            cm_fmt(msg, sizeof msg, "unknown field \"%.40s\" (known: %s)", key, allowed);
            json_decref(obj);
            *mhd = adm_error(a, c, MHD_HTTP_BAD_REQUEST, "unknown_field", msg);
            return NULL;
        }
    }
    return obj;
}

int adm_str(const json_t *obj, const char *name, size_t max, const char **out)
{
    const json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return CM_OK;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return CM_INVALID;
    *out = json_string_value(v);
    return CM_OK;
}

int adm_int(const json_t *obj, const char *name, int64_t max, int64_t *out, bool *set)
{
    const json_t *v = json_object_get(obj, name);
    *set = v != NULL;
    if (v == NULL)
        return CM_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return CM_INVALID;
    *out = (int64_t)json_integer_value(v);
    return CM_OK;
}

struct arg_check {
    const char *allowed;
    const char *bad;
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    (void)value;
    struct arg_check *ac = cls;
    if (ac->bad == NULL && !in_list(ac->allowed, key))
        ac->bad = key;
    return MHD_YES;
}

int adm_args_only(struct adm_req *a, struct MHD_Connection *c, const char *allowed,
                  enum MHD_Result *mhd)
{
    struct arg_check ac = {.allowed = allowed};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, check_arg, &ac);
    if (ac.bad == NULL)
        return CM_OK;
    char msg[300];
    cm_fmt(msg, sizeof msg, "unknown parameter \"%.40s\" (known: %s)", ac.bad,
           allowed[0] ? allowed : "none");
    *mhd = adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter", msg);
    return CM_ERR;
}

int adm_arg(struct MHD_Connection *c, const char *name, char *out, size_t len)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    out[0] = '\0';
    if (v == NULL)
        return CM_OK;
    return gw_percent_decode(v, out, len) == CM_OK ? CM_OK : CM_INVALID;
}

int adm_time_arg(struct MHD_Connection *c, const char *name, int64_t dflt, int64_t *out)
{
    char v[64];
    if (adm_arg(c, name, v, sizeof v) != CM_OK)
        return CM_INVALID;
    *out = dflt;
    return v[0] == '\0' || cm_time_parse(v, strlen(v), out) == CM_OK ? CM_OK : CM_INVALID;
}

bool adm_route(const struct adm_req *a, const char *method, const char *pattern)
{
    if (strcmp(a->base.method, method) != 0)
        return false;
    int i = 0;
    for (const char *p = pattern; *p; i++) {
        size_t n = strcspn(p, "/");
        if (i >= a->nseg || (!(n == 1 && *p == '*') &&
                             (strlen(a->seg[i]) != n || strncmp(a->seg[i], p, n) != 0)))
            return false;
        p += n + (p[n] == '/');
    }
    return i == a->nseg;
}

/* Splits url after /admin/v1/ into decoded segments. CM_INVALID when malformed. */
static int split_path(struct adm_req *a, const char *url)
{
    static const char prefix[] = "/admin/v1/";
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return CM_INVALID;
    const char *p = url + sizeof prefix - 1;
    size_t used = 0;
    a->nseg = 0;
    while (*p) {
        size_t n = strcspn(p, "/");
        char raw[256];
        if (n == 0 || n >= sizeof raw || a->nseg >= ADM_SEGMENTS)
            return CM_INVALID;
        memcpy(raw, p, n);
        raw[n] = '\0';
        char *dst = a->path + used;
        if (gw_percent_decode(raw, dst, sizeof a->path - used) != CM_OK)
            return CM_INVALID;
        a->seg[a->nseg++] = dst;
        used += strlen(dst) + 1;
        p += n + (p[n] == '/');
        if (p[-1] == '/' && *p == '\0')
            return CM_INVALID; /* a trailing slash names nothing */
    }
    return a->nseg > 0 ? CM_OK : CM_INVALID;
}

/* ---- admin tokens and the audit log ---------------------------------------------------------- */

static bool adm_tokens(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    char err[512];
    json_t *out = NULL;
    if (adm_route(a, "GET", "tokens")) {
        int rc = reg_admin_token_list(a->db, &out, err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, json_pack("{s:o}", "tokens", out))
                         : adm_fail(a, c, rc, err, NULL);
    } else if (adm_route(a, "POST", "tokens")) {
        json_t *body = adm_body(a, c, "name", r);
        const char *name = "";
        if (body == NULL)
            return true;
        if (adm_str(body, "name", 63, &name) != CM_OK || name[0] == '\0') {
            json_decref(body);
            *r = adm_error(a, c, MHD_HTTP_BAD_REQUEST, "invalid_value", "name is required");
            return true;
        }
        char secret[REG_KEY_MAX];
        int rc = reg_admin_token_create(a->db, a->actor, name, secret, sizeof secret, &out, err,
                                        sizeof err);
        json_decref(body);
        if (rc == CM_OK)
            json_object_set_new(out, "secret", json_string(secret));
        memset(secret, 0, sizeof secret);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_CREATED, out) : adm_fail(a, c, rc, err, NULL);
    } else if (adm_route(a, "POST", "tokens/*/revoke")) {
        int rc = reg_admin_token_revoke(a->db, a->actor, a->seg[1], &out, err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, out) : adm_fail(a, c, rc, err, NULL);
    } else {
        return false;
    }
    return true;
}

static bool adm_audit(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    if (!adm_route(a, "GET", "audit"))
        return false;
    if (adm_args_only(a, c, "limit,cursor,target", r) != CM_OK)
        return true;
    char lim[16], cur[32], target[128];
    uint64_t limit = 100, before = 0;
    if (adm_arg(c, "limit", lim, sizeof lim) != CM_OK || adm_arg(c, "cursor", cur, sizeof cur) ||
        adm_arg(c, "target", target, sizeof target) != CM_OK ||
        (lim[0] && (cm_parse_u64(lim, &limit) != CM_OK || limit < 1 || limit > 1000)) ||
        (cur[0] && (cm_parse_u64(cur, &before) != CM_OK || before > INT64_MAX))) {
        *r = adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                       "limit must be 1-1000, cursor a next_cursor, target at most 127 bytes");
        return true;
    }
    json_t *entries = NULL;
    char err[512];
    int rc = reg_audit_list(a->db, (int64_t)before, (int)limit, target, &entries, err, sizeof err);
    if (rc != CM_OK) {
        *r = adm_fail(a, c, rc, err, NULL);
        return true;
    }
    size_t n = json_array_size(entries);
    json_t *next = json_null();
    if (n == limit) {
        char id[24];
        cm_fmt(id, sizeof id, "%" JSON_INTEGER_FORMAT,
               json_integer_value(json_object_get(json_array_get(entries, n - 1), "id")));
        next = json_string(id);
    }
    *r = adm_json(a, c, MHD_HTTP_OK,
                  json_pack("{s:o, s:o}", "entries", entries, "next_cursor", next));
    return true;
}

/* ---- the request lifecycle ------------------------------------------------------------------- */

int adm_token_check(struct adm_req *a, const uint8_t hash[32], char *err, size_t errlen)
{
    struct gw_admin *adm = a->adm;
    if (!atomic_load(&adm->bootstrapped)) {
        char berr[256];
        if (reg_admin_bootstrap(a->db, adm->gw->cfg->admin_token, berr, sizeof berr) == CM_OK)
            atomic_store(&adm->bootstrapped, true);
        else
            cm_log(CM_LOG_ERROR, "admin_bootstrap_failed", "error=\"%s\"", berr);
    }
    int rc = reg_admin_check(a->db, hash, a->actor, sizeof a->actor, err, errlen);
    if (rc == CM_OK)
        memcpy(a->token_hash, hash, 32);
    return rc;
}

int adm_bearer(struct MHD_Connection *c, uint8_t hash[32])
{
    const char *authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (authz == NULL)
        return CM_NOTFOUND;
    const char *tok = authz + strspn(authz, " \t");
    if (strncasecmp(tok, "Bearer ", 7) != 0 || strlen(tok + 7) > 200)
        return CM_INVALID;
    tok += 7 + strspn(tok + 7, " \t");
    cm_sha256(tok, strlen(tok), hash);
    return CM_OK;
}

/* Authenticates a's bearer token: CM_OK with a->actor set, or an error queued in *r. */
static int authenticate(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    uint8_t hash[32];
    int rc = adm_bearer(c, hash);
    if (rc == CM_NOTFOUND) {
        *r = adm_error(a, c, MHD_HTTP_UNAUTHORIZED, "authentication_required",
                       "send Authorization: Bearer <admin token>");
        return CM_ERR;
    }
    if (rc != CM_OK) {
        *r = adm_error(a, c, MHD_HTTP_UNAUTHORIZED, "invalid_admin_token",
                       "Authorization must be \"Bearer <admin token>\"");
        return CM_ERR;
    }
    char err[256];
    rc = adm_token_check(a, hash, err, sizeof err);
    if (rc == CM_OK)
        return CM_OK;
    if (rc == CM_NOTFOUND)
        *r = adm_error(a, c, MHD_HTTP_UNAUTHORIZED, "invalid_admin_token",
                       "no such admin token");
    else if (rc == CM_DENIED)
        *r = adm_error(a, c, MHD_HTTP_UNAUTHORIZED, "revoked_admin_token",
                       "this admin token has been revoked");
    else
        *r = adm_fail(a, c, rc, err, NULL);
    return CM_ERR;
}

static enum MHD_Result dispatch(struct gw_admin *adm, struct adm_req *a, struct MHD_Connection *c,
                                const char *url)
{
    a->db = cm_pg_pool_get(adm->gw->pg, 3000);
    if (strcmp(url, "/dashboard") == 0 || strncmp(url, "/dashboard/", 11) == 0)
        return adm_dashboard(a, c, url); /* HTML answers, its own login */
    if (a->db == NULL)
        return adm_error(a, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                         "the database is unreachable: retry shortly");
    enum MHD_Result r;
    if (authenticate(a, c, &r) != CM_OK)
        return r;
    if (a->body_too_big)
        return adm_error(a, c, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                         "the request body is larger than 64 KiB");
    if (split_path(a, url) != CM_OK)
        return adm_error(a, c, MHD_HTTP_NOT_FOUND, "not_found", "no such admin endpoint");
    if (adm_orgs(a, c, &r) || adm_plans(a, c, &r) || adm_keys(a, c, &r) ||
        adm_networks(a, c, &r) || adm_usage(a, c, &r) || adm_tokens(a, c, &r) ||
        adm_webhooks(a, c, &r) || adm_reports(a, c, &r) || adm_audit(a, c, &r) ||
        adm_dashboard_tickets(a, c, &r))
        return r;
    return adm_error(a, c, MHD_HTTP_NOT_FOUND, "not_found",
                     "no such admin endpoint (or not with this method): see README.md");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct gw_admin *adm = cls;
    struct adm_req *a = *con_cls;
    if (a == NULL) {
        a = calloc(1, sizeof *a);
        if (a == NULL)
            return MHD_NO;
        a->magic = ADM_MAGIC;
        a->base.magic = GW_REQ_MAGIC;
        a->base.gw = adm->gw;
        a->base.fd = -1;
        a->adm = adm;
        if (cm_copy(a->base.method, sizeof a->base.method, method) != CM_OK)
            cm_copy(a->base.method, sizeof a->base.method, "OTHER");
        *con_cls = a;
        return MHD_YES;
    }
    if (a->magic != ADM_MAGIC)
        abort();
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (a->body_too_big || a->body_len + n > ADM_BODY_MAX) {
            a->body_too_big = true;
            return MHD_YES;
        }
        char *grown = realloc(a->body, a->body_len + n + 1);
        if (grown == NULL)
            return MHD_NO;
        a->body = grown;
        memcpy(a->body + a->body_len, upload_data, n);
        a->body_len += n;
        a->body[a->body_len] = '\0';
        return MHD_YES;
    }
    if (a->base.status != 0)
        return MHD_YES; /* answered already */
    enum MHD_Result r = dispatch(adm, a, c, url);
    cm_pg_pool_put(adm->gw->pg, a->db);
    a->db = NULL;
    cm_log(CM_LOG_INFO, "admin_request", "method=%s path=\"%.200s\" status=%u actor=%s",
           a->base.method, url, a->base.status, a->actor[0] ? a->actor : "-");
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct adm_req *a = *con_cls;
    if (a == NULL)
        return;
    if (a->magic != ADM_MAGIC)
        abort();
    a->magic = 0;
    free(a->body);
    free(a);
    *con_cls = NULL;
}

/* Paths and query strings stay escaped; split_path and adm_arg decode each piece once. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

struct gw_admin *gw_admin_start(struct gw *gw)
{
    const struct hm_config *cfg = gw->cfg;
    struct gw_admin *adm = calloc(1, sizeof *adm);
    if (adm == NULL)
        return NULL;
    adm->gw = gw;
    adm->sessions = adm_sessions_new(cfg->dashboard_session_s, 120);
    if (adm->sessions == NULL) {
        adm_sessions_free(adm->sessions);
        free(adm);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[8];
    cm_fmt(port, sizeof port, "%u", (unsigned)cfg->admin_port);
    if (getaddrinfo(cfg->admin_host, port, &hints, &ai) != 0 || ai == NULL) {
        fprintf(stderr, "hubmeter: HUBMETER_ADMIN_LISTEN host %s does not resolve\n",
                cfg->admin_host);
        adm_sessions_free(adm->sessions);
        free(adm);
        return NULL;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    PGconn *db = cm_pg_pool_get(gw->pg, 3000);
    char err[256] = "no connection";
    if (db != NULL && reg_admin_bootstrap(db, cfg->admin_token, err, sizeof err) == CM_OK)
        atomic_store(&adm->bootstrapped, true);
    else /* retried on the first admin request */
        cm_log(CM_LOG_WARN, "admin_bootstrap_failed", "error=\"%s\"", err);
    cm_pg_pool_put(gw->pg, db);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG |
                     (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    adm->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, adm, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, adm, MHD_OPTION_UNESCAPE_CALLBACK,
        keep_escaped, NULL, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT,
        30u, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (adm->daemon == NULL) {
        fprintf(stderr, "hubmeter: cannot listen on the admin address %s:%u (in use, or not "
                        "allowed)\n", cfg->admin_host, (unsigned)cfg->admin_port);
        adm_sessions_free(adm->sessions);
        free(adm);
        return NULL;
    }
    cm_log(CM_LOG_INFO, "admin_listening", "address=%s:%u", cfg->admin_host,
           (unsigned)cfg->admin_port);
    return adm;
}

void gw_admin_stop(struct gw_admin *adm)
{
    if (adm == NULL)
        return;
    MHD_stop_daemon(adm->daemon);
    adm_sessions_free(adm->sessions);
    free(adm);
}
