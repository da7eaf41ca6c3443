/*
 * The gateway's own endpoints under the reserved prefix /-/: health, readiness and the
 * org usage API. Every answer is JSON; every bad input is a 4xx with a stable code.
 */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>

struct usage_args {
    char from[64], to[64], granularity[16];
    const char *bad; /* first unknown or malformed parameter */
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct usage_args *a = cls;
    char *dst = strcmp(key, "from") == 0          ? a->from
                : strcmp(key, "to") == 0          ? a->to
                : strcmp(key, "granularity") == 0 ? a->granularity
                                                  : NULL;
    size_t len = dst == a->granularity ? sizeof a->granularity : sizeof a->from;
    if (dst == NULL || value == NULL || gw_percent_decode(value, dst, len) != CM_OK) {
        if (a->bad == NULL)
            a->bad = key;
    }
    return MHD_YES;
}

/* Fills q from the query string; on a bad parameter queues a 400 and returns CM_ERR. */
static int usage_query_from_args(struct gw_req *req, struct MHD_Connection *c,
                                 struct meter_usage_query *q, enum MHD_Result *mhd)
{
    struct usage_args a = {.granularity = "day"};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &a);
    char msg[256];
    if (a.bad != NULL) {
        cm_fmt(msg, sizeof msg, "unknown or malformed parameter \"%.40s\" (known: from, to, "
                                "granularity)", a.bad);
        *mhd = gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter", msg);
        return CM_ERR;
    }
    int64_t now = cm_now_us() / 1000000;
    q->from = cm_month_start(now);
    if (a.from[0] && cm_time_parse(a.from, strlen(a.from), &q->from) != CM_OK) {
        *mhd = gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                              "from must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z");
        return CM_ERR;
    }
    q->to = cm_month_next(cm_month_start(q->from));
    if (a.to[0] && cm_time_parse(a.to, strlen(a.to), &q->to) != CM_OK) {
        *mhd = gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                              "to must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z");
        return CM_ERR;
    }
    cm_copy(q->granularity, sizeof q->granularity, a.granularity);
    return CM_OK;
}

static enum MHD_Result usage(struct gw_req *req, struct MHD_Connection *c)
{
    enum MHD_Result mhd;
    if (gw_identify(req, c, &mhd) != CM_OK)
        return mhd;
    if (req->id.org_id == 0)
        return gw_reply_error(req, c, MHD_HTTP_UNAUTHORIZED, "authentication_required",
                              "usage is per organisation: send Authorization: Bearer <key>");
    struct meter_usage_query q = {.org_id = req->id.org_id,
                                  .minute_retention_days = req->gw->cfg->minute_retention_days};
    if (usage_query_from_args(req, c, &q, &mhd) != CM_OK)
        return mhd;
    PGconn *db = cm_pg_pool_get(req->gw->pg, 3000);
    if (db == NULL)
        return gw_reply_error(req, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                              "usage data is unreachable: retry shortly");
    json_t *doc = NULL;
    char err[512];
    int rc = meter_usage_query(db, &q, &doc, err, sizeof err);
    cm_pg_pool_put(req->gw->pg, db);
    if (rc == CM_INVALID)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_range", err);
    if (rc != CM_OK) {
        cm_log(CM_LOG_ERROR, "usage_query_failed", "error=\"%s\"", err);
        return gw_reply_error(req, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                              "usage data is unreachable: retry shortly");
    }
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
    json_t *body = json_pack("{s:s, s:{s:s, s:s}}", "status", pg_ok ? "ready" : "not_ready",
                             "checks", "postgresql", pg_ok ? "ok" : "unreachable", "redis",
                             redis_ok ? "ok" : "unreachable");
    /* Redis being away does not stop downloads (usage waits in the outbox), PostgreSQL
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
    if (strcmp(url, "/-/healthz") == 0 || strcmp(url, "/-/readyz") == 0 ||
        strcmp(url, "/-/v1/usage") == 0 || strcmp(url, "/-/metrics") == 0) {
        if (!get)
            return gw_reply_error(req, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                  "this endpoint answers GET and HEAD only");
        if (strcmp(url, "/-/healthz") == 0)
            return gw_reply_json(req, c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
        if (strcmp(url, "/-/readyz") == 0)
            return ready(req, c);
        if (strcmp(url, "/-/metrics") == 0)
            return metrics(req, c);
        return usage(req, c);
    }
    return gw_reply_error(req, c, MHD_HTTP_NOT_FOUND, "not_found",
                          "no such gateway endpoint (known: /-/healthz, /-/readyz, "
                          "/-/metrics, /-/v1/usage)");
}
