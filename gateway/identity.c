/*
 * Identity: which org a request belongs to. Parses the credential (Bearer, Basic with the
 * key as password for git and pip, or X-Api-Key), checks the key's checksum before any
 * lookup, and resolves key → org through a small direct-mapped cache (positive and
 * negative entries expire after a few seconds, so revocation takes effect quickly; while
 * PostgreSQL is unreachable an expired entry's answer still stands).
 */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CACHE_SLOTS 4096
#define CACHE_TTL_MS 10000
#define CACHE_NEGATIVE_TTL_MS 5000

struct cache_entry {
    uint8_t hash[32];
    int rc; /* CM_OK, CM_NOTFOUND or CM_DENIED */
    struct reg_identity id;
    int64_t expires_ms;
};

struct gw_idcache {
    pthread_mutex_t lock; /* protects slots */
    struct cache_entry slots[CACHE_SLOTS];
};

struct gw_idcache *gw_idcache_new(void)
{
    struct gw_idcache *c = calloc(1, sizeof *c);
    if (c != NULL)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

void gw_idcache_free(struct gw_idcache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int b64val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Standard base64 with optional padding into out; -1 when malformed or too long. */
static long b64decode(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in), o = 0;
    while (n > 0 && in[n - 1] == '=')
        n--;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= outlen)
                return -1;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return (long)o;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static enum gw_cred take_key(const char *key, size_t n, char *keybuf, size_t keylen,
                             const char **why)
{
    if (n == 0) {
        *why = "the credential is empty";
        return GW_CRED_MALFORMED;
    }
    /* Longer than any key: keep a truncated copy, the checksum will reject it. */
    if (n >= keylen)
        n = keylen - 1;
    memcpy(keybuf, key, n);
    keybuf[n] = '\0';
    return GW_CRED_KEY;
}

enum gw_cred gw_credential_parse(const char *authorization, const char *x_api_key,
                                 char *keybuf, size_t keylen, const char **why)
{
    *why = "";
    if (authorization == NULL) {
        if (x_api_key == NULL)
            return GW_CRED_NONE;
        const char *k = skip_spaces(x_api_key);
        size_t n = strcspn(k, " \t");
        if (k[n] != '\0') {
            *why = "X-Api-Key must hold exactly one key";
            return GW_CRED_MALFORMED;
        }
        return take_key(k, n, keybuf, keylen, why);
    }
    const char *p = skip_spaces(authorization);
    if (strncasecmp(p, "Bearer", 6) == 0 && (p[6] == ' ' || p[6] == '\t' || p[6] == '\0')) {
        const char *k = skip_spaces(p + 6);
        size_t n = strcspn(k, " \t");
        if (n == 0 || k[n] != '\0') {
            *why = "Authorization must be \"Bearer <key>\"";
            return GW_CRED_MALFORMED;
        }
        return take_key(k, n, keybuf, keylen, why);
    }
    if (strncasecmp(p, "Basic", 5) == 0 && (p[5] == ' ' || p[5] == '\t')) {
        char decoded[256];
        const char *enc = skip_spaces(p + 5);
        if (strlen(enc) > 340 || b64decode(enc, decoded, sizeof decoded) < 0 ||
            strchr(decoded, ':') == NULL) {
            *why = "Authorization Basic must be base64 of \"user:key\"";
            return GW_CRED_MALFORMED;
        }
        /* Empty user and password: a client without credentials answering a Basic challenge
         * (docker and skopeo do this), which is no credential at all, not a malformed one. */
        if (strcmp(decoded, ":") == 0)
            return GW_CRED_NONE;
        /* git and pip send the key as the password; some tools put it in the user name. */
        char *colon = strchr(decoded, ':');
        const char *k = colon[1] != '\0' ? colon + 1 : decoded;
        size_t n = colon[1] != '\0' ? strlen(colon + 1) : (size_t)(colon - decoded);
        enum gw_cred r = take_key(k, n, keybuf, keylen, why);
        memset(decoded, 0, sizeof decoded);
        return r;
    }
    *why = "unsupported Authorization scheme: use \"Bearer <key>\"";
    return GW_CRED_MALFORMED;
}

/* Cache lookup then database: CM_OK, CM_NOTFOUND, CM_DENIED or CM_UNAVAIL. */
static int resolve(struct gw *gw, const uint8_t hash[32], struct reg_identity *out)
{
    struct gw_idcache *cache = gw->ids;
    uint32_t slot;
    memcpy(&slot, hash, sizeof slot);
    struct cache_entry *e = &cache->slots[slot % CACHE_SLOTS];
    int64_t now = cm_mono_ms();
    pthread_mutex_lock(&cache->lock);
    if (e->expires_ms > now && memcmp(e->hash, hash, 32) == 0) {
        int rc = e->rc;
        *out = e->id;
        pthread_mutex_unlock(&cache->lock);
        return rc;
    }
    pthread_mutex_unlock(&cache->lock);

    PGconn *db = cm_pg_pool_get(gw->pg, 2000);
    char err[256] = "no connection";
    int rc = db != NULL ? reg_key_lookup(db, hash, out, err, sizeof err) : CM_ERR;
    cm_pg_pool_put(gw->pg, db);
    if (rc == CM_ERR) {
        /* PostgreSQL is away: a key this gateway knew keeps its last answer (stale),
         * so known clients keep downloading through a database outage. */
        pthread_mutex_lock(&cache->lock);
        bool stale = e->expires_ms != 0 && memcmp(e->hash, hash, 32) == 0;
        int stale_rc = e->rc;
        if (stale)
            *out = e->id;
        pthread_mutex_unlock(&cache->lock);
        cm_log(CM_LOG_WARN, "key_lookup_failed", "error=\"%s\" served_stale=%s", err,
               stale ? "yes" : "no");
        return stale ? stale_rc : CM_UNAVAIL;
    }
    pthread_mutex_lock(&cache->lock);
    memcpy(e->hash, hash, 32);
    e->rc = rc;
    e->id = *out;
    e->expires_ms = now + (rc == CM_OK ? CACHE_TTL_MS : CACHE_NEGATIVE_TTL_MS);
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

int gw_identify(struct gw_req *req, struct MHD_Connection *c, enum MHD_Result *mhd)
{
    const char *authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *xkey = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key");
    char key[REG_KEY_MAX + 8];
    const char *why;
    memset(&req->id, 0, sizeof req->id);
    switch (gw_credential_parse(authz, xkey, key, sizeof key, &why)) {
    case GW_CRED_NONE:
        return CM_OK; /* anonymous */
    case GW_CRED_MALFORMED:
        *mhd = gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "malformed_authorization", why);
        return CM_ERR;
    case GW_CRED_KEY:
        break;
    }
    const char *prefix = req->gw->cfg->key_prefix;
    if (reg_key_check(prefix, key, strlen(key)) != CM_OK) {
        memset(key, 0, sizeof key);
        *mhd = gw_reply_error(req, c, MHD_HTTP_UNAUTHORIZED, "invalid_key",
                              "the API key is malformed or mistyped (its checksum does not "
                              "match): copy it again");
        return CM_ERR;
    }
    reg_key_display(prefix, key, req->key_display, sizeof req->key_display);
    uint8_t hash[32];
    cm_sha256(key, strlen(key), hash);
    memset(key, 0, sizeof key);
    int rc = resolve(req->gw, hash, &req->id);
    if (rc == CM_OK && !req->id.org_suspended)
        return CM_OK;
    memset(&req->id, 0, sizeof req->id);
    if (rc == CM_OK)
        *mhd = gw_reply_error(req, c, MHD_HTTP_FORBIDDEN, "org_suspended",
                              "the organisation of this API key is suspended");
    else if (rc == CM_NOTFOUND)
        *mhd = gw_reply_error(req, c, MHD_HTTP_UNAUTHORIZED, "unknown_key",
                              "no such API key");
    else if (rc == CM_DENIED)
        *mhd = gw_reply_error(req, c, MHD_HTTP_UNAUTHORIZED, "revoked_key",
                              "this API key has been revoked");
    else
        *mhd = gw_reply_error(req, c, MHD_HTTP_SERVICE_UNAVAILABLE, "identity_unavailable",
                              "the key store is unreachable: retry shortly");
    return CM_ERR;
}

void gw_idcache_clear(struct gw_idcache *c)
{
    pthread_mutex_lock(&c->lock);
    memset(c->slots, 0, sizeof c->slots);
    pthread_mutex_unlock(&c->lock);
}
