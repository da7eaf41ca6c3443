/*
 * The gateway's own endpoints under the reserved prefix /-/: health, readiness, metrics,
 * the org usage API (answered by usage_api.c for the key's own org) and its OpenAPI
 * document. Every bad input is a 4xx JSON error with a stable code.
 */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>

static enum MHD_Result usage(struct gw_req *req, struct MHD_Connection *c, bool export)
{
    enum MHD_Result mhd;
    if (gw_identify(req, c, &mhd) != CM_OK)
        return mhd;
    if (req->id.org_id == 0)
        return gw_reply_error(req, c, MHD_HTTP_UNAUTHORIZED, "authentication_required",
                              "usage is per organisation: send Authorization: Bearer <key>");
    /* The key's own org, never one named by the caller: an org sees only itself. */
    return export ? gw_usage_export_reply(req, c, req->id.org_id)
                  : gw_usage_reply(req, c, req->id.org_id, req->id.org_slug);
}

static enum MHD_Result openapi(struct gw_req *req, struct MHD_Connection *c)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(gw_openapi_json), (void *)gw_openapi_json, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return gw_reply(req, c, MHD_HTTP_OK, resp);
}

/* GET /-/v1/quota: the org's plan, each policy's limit, remaining and reset (what the
 * rate-limit headers carry), the month against its quota, downloads running, and the
 * near-limit and refusal events. Reading it spends nothing. */
static enum MHD_Result quota(struct gw_req *req, struct MHD_Connection *c)
{
    enum MHD_Result mhd;
    if (gw_identify(req, c, &mhd) != CM_OK)
        return mhd;
    if (req->id.org_id == 0)
        return gw_reply_error(req, c, MHD_HTTP_UNAUTHORIZED, "authentication_required",
                              "quotas are per organisation: send Authorization: Bearer <key>");
    struct meter_plan plan;
    char subject[72] = "";
    int anchor = 1;
    bool planned = req->gw->quota != NULL && gw_plan_of(req, &plan, subject, sizeof subject,
                                                        &anchor);
    json_t *doc = gw_quota_doc(req->gw, planned ? &plan : NULL, subject, anchor);
    if (doc == NULL)
        return MHD_NO;
    json_object_set_new(doc, "org", json_string(req->id.org_slug));
    return gw_reply_json(req, c, MHD_HTTP_OK, doc);
}

static enum MHD_Result ready(struct gw_req *req, struct MHD_Connection *c)
{
    PGconn *db = cm_pg_pool_get(req->gw->pg, 1000);
    bool pg_ok = db != NULL;
    if (db != NULL) {
        char err[128];
        pg_ok = cm_pg_command(db, "SELECT 1", err, sizeof err) == CM_OK;
        cm_pg_pool_put(req->gw->pg, db);
    }
    bool redis_ok = meter_redis_ok(req->gw->meter);
    const char *quotas = req->gw->quota == NULL                  ? "off"
                         : meter_quota_redis_ok(req->gw->quota) ? "redis"
                                                                : "local_budgets";
    json_t *body = json_pack("{s:s, s:{s:s, s:s, s:s}}", "status", pg_ok ? "ready" : "not_ready",
                             "checks", "postgresql", pg_ok ? "ok" : "unreachable", "redis",
                             redis_ok                                 ? "ok"
                             : meter_redis_foreign(req->gw->meter) ? "other_installation"
                                                                   : "unreachable",
                             "quotas", quotas);
    /* Redis being away does not stop downloads (usage waits in the outbox, quotas fall
     * back to local budgets, so the gateway stays ready), PostgreSQL
     * being away does (keys cannot be checked). */
    return gw_reply_json(req, c, pg_ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

static enum MHD_Result metrics(struct gw_req *req, struct MHD_Connection *c)
{
    char *text = gw_metrics_render(req->gw);
    if (text == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    return gw_reply(req, c, MHD_HTTP_OK, resp);
}

enum MHD_Result gw_api(struct gw_req *req, struct MHD_Connection *c, const char *url)
{
    bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    if (strcmp(url, "/-/v1/webhooks") == 0 || strncmp(url, "/-/v1/webhooks/", 15) == 0)
        return gw_org_webhooks(req, c, url);
    if (strcmp(url, "/-/healthz") == 0 || strcmp(url, "/-/readyz") == 0 ||
        strcmp(url, "/-/v1/usage") == 0 || strcmp(url, "/-/metrics") == 0 ||
        strcmp(url, "/-/v1/usage/export") == 0 || strcmp(url, "/-/v1/openapi.json") == 0 ||
        strcmp(url, "/-/v1/quota") == 0) {
        if (!get)
            return gw_reply_error(req, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                  "this endpoint answers GET and HEAD only");
        if (strcmp(url, "/-/healthz") == 0)
            return gw_reply_json(req, c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
        if (strcmp(url, "/-/readyz") == 0)
            return ready(req, c);
        if (strcmp(url, "/-/metrics") == 0)
            return metrics(req, c);
        if (strcmp(url, "/-/v1/openapi.json") == 0)
            return openapi(req, c);
        if (strcmp(url, "/-/v1/quota") == 0)
            return quota(req, c);
        return usage(req, c, strcmp(url, "/-/v1/usage/export") == 0);
    }
    return gw_reply_error(req, c, MHD_HTTP_NOT_FOUND, "not_found",
                          "no such gateway endpoint (known: /-/healthz, /-/readyz, "
                          "/-/metrics, /-/v1/usage, /-/v1/usage/export, /-/v1/quota, "
                          "/-/v1/webhooks, /-/v1/openapi.json)");
}
