/*
 * The org API's quota webhooks (/-/v1/webhooks), with the org's own key: list its
 * webhooks, register one (POST with url= and thresholds= in the query string; the signing
 * secret is in that answer only), delete one of its own. An org never sees or touches
 * another org's webhooks, nor the operator's. Sending is webhooks.c's.
 */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>

struct hook_args {
    char url[1001], thresholds[64];
    const char *bad;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    (void)kind;
    struct hook_args *a = cls;
    char *dst = strcmp(key, "url") == 0 ? a->url : strcmp(key, "thresholds") == 0 ? a->thresholds
                                                                                    : NULL;
    size_t len = dst == a->url ? sizeof a->url : sizeof a->thresholds;
    if ((dst == NULL || value == NULL || gw_percent_decode(value, dst, len) != CM_OK) &&
        a->bad == NULL)
        a->bad = key;
    return MHD_YES;
}

/* "80,100" into t (at most 10); CM_INVALID for anything else. */
static int parse_thresholds(const char *s, int *t, size_t *n)
{
    *n = 0;
    for (const char *p = s; *p;) {
        char one[8];
        size_t len = strcspn(p, ",");
        uint64_t v;
        if (len == 0 || len >= sizeof one || *n >= 10)
            return CM_INVALID;
        memcpy(one, p, len);
        one[len] = '\0';
        if (cm_parse_u64(one, &v) != CM_OK || v < 1 || v > 1000)
            return CM_INVALID;
        t[(*n)++] = (int)v;
        p += len + (p[len] == ',');
    }
    return *n > 0 ? CM_OK : CM_INVALID;
}

static enum MHD_Result fail(struct gw_req *req, struct MHD_Connection *c, int rc,
                            const char *err)
{
    if (rc == CM_INVALID)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter", err);
    if (rc == CM_NOTFOUND)
        return gw_reply_error(req, c, MHD_HTTP_NOT_FOUND, "not_found", "no such webhook");
    cm_log(CM_LOG_ERROR, "org_webhooks_failed", "error=\"%s\"", err);
    return gw_reply_error(req, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                          "the database could not complete the request: retry shortly");
}

static enum MHD_Result create(struct gw_req *req, struct MHD_Connection *c, PGconn *db,
                              const char *actor)
{
    struct hook_args a = {0};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect, &a);
    int t[10] = {80, 100};
    size_t n = 2;
    if (a.bad != NULL || a.url[0] == '\0' ||
        (a.thresholds[0] && parse_thresholds(a.thresholds, t, &n) != CM_OK))
        return fail(req, c, CM_INVALID,
                    "give url=http(s)://… and optionally thresholds=80,100 (1-10 percentages "
                    "of 1-1000); no other parameters");
    char secret[REG_KEY_MAX], err[512];
    json_t *out = NULL;
    int rc = reg_webhook_create(db, actor, req->id.org_slug, a.url, t, n, secret, sizeof secret,
                                &out, err, sizeof err);
    if (rc != CM_OK)
        return fail(req, c, rc, err);
    json_object_set_new(out, "secret", json_string(secret));
    memset(secret, 0, sizeof secret);
    return gw_reply_json(req, c, MHD_HTTP_CREATED, out);
}

enum MHD_Result gw_org_webhooks(struct gw_req *req, struct MHD_Connection *c, const char *url)
{
    static const char base[] = "/-/v1/webhooks";
    const char *rest = url + sizeof base - 1; /* "" or "/{id}" */
    bool collection = rest[0] == '\0';
    uint64_t id = 0;
    if (!collection && (cm_parse_u64(rest + 1, &id) != CM_OK || id > INT64_MAX))
        return gw_reply_error(req, c, MHD_HTTP_NOT_FOUND, "not_found", "no such webhook");
    bool get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0,
         del = strcmp(req->method, "DELETE") == 0;
    if ((collection && !get && !post) || (!collection && !del))
        return gw_reply_error(req, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                              "/-/v1/webhooks answers GET and POST, /-/v1/webhooks/{id} DELETE");
    enum MHD_Result mhd;
    if (gw_identify(req, c, &mhd) != CM_OK)
        return mhd;
    if (req->id.org_id == 0)
        return gw_reply_error(req, c, MHD_HTTP_UNAUTHORIZED, "authentication_required",
                              "webhooks are per organisation: send Authorization: Bearer <key>");
    PGconn *db = cm_pg_pool_get(req->gw->pg, 3000);
    if (db == NULL)
        return fail(req, c, CM_UNAVAIL, "no database connection");
    char actor[128], err[512];
    cm_fmt(actor, sizeof actor, "org:%s/%s", req->id.org_slug, req->key_display);
    json_t *out = NULL;
    int rc = CM_OK;
    if (post) {
        mhd = create(req, c, db, actor);
    } else if (get) {
        rc = reg_webhook_list(db, req->id.org_id, &out, err, sizeof err);
        mhd = rc == CM_OK ? gw_reply_json(req, c, MHD_HTTP_OK, json_pack("{s:o}", "webhooks", out))
                          : fail(req, c, rc, err);
    } else {
        rc = reg_webhook_delete(db, actor, req->id.org_id, (int64_t)id, &out, err, sizeof err);
        mhd = rc == CM_OK ? gw_reply_json(req, c, MHD_HTTP_OK, out) : fail(req, c, rc, err);
    }
    cm_pg_pool_put(req->gw->pg, db);
    return mhd;
}
