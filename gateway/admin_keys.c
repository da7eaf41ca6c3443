/*
 * Admin API handlers for API keys (create — the secret in that answer only —, list,
 * show, revoke, rotate with a grace period), CIDR networks (add, list with the traffic
 * each range carried, remove), and usage (any org's usage and export in the org API's
 * shape, top consumers, the all-traffic summary, an org's quota state). The data model is registry/'s, the figures meter/'s.
 */
#include "gateway/admin_int.h"

#include <stdlib.h>
#include <string.h>

static enum MHD_Result key_create(struct adm_req *a, struct MHD_Connection *c, const char *slug)
{
    enum MHD_Result r;
    json_t *body = adm_body(a, c, "name", &r);
    if (body == NULL)
        return r;
    const char *name = "";
    if (adm_str(body, "name", 200, &name) != CM_OK) {
        json_decref(body);
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "invalid_value",
                         "name is a string of at most 200 bytes");
    }
    struct reg_key k;
    char secret[REG_KEY_MAX], err[512];
    int rc = reg_key_create(a->db, a->actor, a->base.gw->cfg->key_prefix, slug, name, &k, secret,
                            sizeof secret, err, sizeof err);
    json_decref(body);
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, NULL);
    json_t *doc = json_pack("{s:o, s:s}", "key", reg_key_json(&k), "secret", secret);
    memset(secret, 0, sizeof secret);
    return adm_json(a, c, MHD_HTTP_CREATED, doc);
}

static enum MHD_Result key_list(struct adm_req *a, struct MHD_Connection *c, const char *slug)
{
    struct reg_key *keys;
    size_t n;
    char err[512];
    int rc = reg_key_list(a->db, slug, &keys, &n, err, sizeof err);
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, NULL);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, reg_key_json(&keys[i]));
    free(keys);
    return adm_json(a, c, MHD_HTTP_OK, json_pack("{s:o}", "keys", arr));
}

static enum MHD_Result key_rotate(struct adm_req *a, struct MHD_Connection *c, const char *id)
{
    enum MHD_Result r;
    json_t *body = adm_body(a, c, "grace_seconds", &r);
    if (body == NULL)
        return r;
    int64_t grace = 86400;
    bool set;
    int ok = adm_int(body, "grace_seconds", 30 * 86400, &grace, &set);
    json_decref(body);
    if (ok != CM_OK)
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "invalid_value",
                         "grace_seconds must be 0-2592000 (30 days)");
    struct reg_key fresh, old;
    char secret[REG_KEY_MAX], err[512];
    int rc = reg_key_rotate(a->db, a->actor, a->base.gw->cfg->key_prefix, id, grace, &fresh, &old,
                            secret, sizeof secret, err, sizeof err);
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, "key_inactive");
    gw_idcache_clear(a->base.gw->ids);
    json_t *doc = json_pack("{s:o, s:o, s:s}", "old", reg_key_json(&old), "key",
                            reg_key_json(&fresh), "secret", secret);
    memset(secret, 0, sizeof secret);
    return adm_json(a, c, MHD_HTTP_OK, doc);
}

bool adm_keys(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    char err[512];
    struct reg_key k;
    if (adm_route(a, "GET", "orgs/*/keys")) {
        *r = key_list(a, c, a->seg[1]);
    } else if (adm_route(a, "POST", "orgs/*/keys")) {
        *r = key_create(a, c, a->seg[1]);
    } else if (adm_route(a, "GET", "keys/*")) {
        int rc = reg_key_get(a->db, a->seg[1], &k, err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_key_json(&k))
                         : adm_fail(a, c, rc, err, NULL);
    } else if (adm_route(a, "POST", "keys/*/revoke")) {
        int rc = reg_key_revoke(a->db, a->actor, a->seg[1], &k, err, sizeof err);
        /* This gateway forgets its cached keys at once; others within the cache TTL. */
        if (rc == CM_OK)
            gw_idcache_clear(a->base.gw->ids);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_key_json(&k))
                         : adm_fail(a, c, rc, err, NULL);
    } else if (adm_route(a, "POST", "keys/*/rotate")) {
        *r = key_rotate(a, c, a->seg[1]);
    } else {
        return false;
    }
    return true;
}

static enum MHD_Result network_list(struct adm_req *a, struct MHD_Connection *c, const char *org)
{
    enum MHD_Result r;
    if (adm_args_only(a, c, org[0] ? "from,to" : "org,from,to", &r) != CM_OK)
        return r;
    char slug[64];
    int64_t now = cm_now_us() / 1000000, from, to;
    if ((org[0] == '\0' && adm_arg(c, "org", slug, sizeof slug) != CM_OK) ||
        adm_time_arg(c, "from", cm_month_start(now), &from) != CM_OK ||
        adm_time_arg(c, "to", cm_month_next(cm_month_start(from)), &to) != CM_OK || from >= to)
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                         "from and to are RFC 3339 times with from before to; org a slug");
    if (org[0] == '\0')
        org = slug;
    char err[512];
    struct reg_org o;
    int rc = org[0] ? reg_org_get(a->db, org, &o, err, sizeof err) : CM_OK;
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, NULL);
    struct reg_network *nets;
    size_t n;
    rc = reg_network_list(a->db, org, from, to, &nets, &n, err, sizeof err);
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, NULL);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, reg_network_json(&nets[i]));
    free(nets);
    char f[32], t[32];
    cm_time_format(from, f, sizeof f);
    cm_time_format(to, t, sizeof t);
    return adm_json(a, c, MHD_HTTP_OK,
                    json_pack("{s:s, s:s, s:o}", "from", f, "to", t, "networks", arr));
}

static enum MHD_Result network_add(struct adm_req *a, struct MHD_Connection *c, const char *org)
{
    enum MHD_Result r;
    json_t *body = adm_body(a, c, org ? "cidr,note" : "org,cidr,note", &r);
    if (body == NULL)
        return r;
    const char *cidr = "", *note = "";
    if ((org == NULL && (adm_str(body, "org", 63, &org) != CM_OK || org == NULL)) ||
        adm_str(body, "cidr", 64, &cidr) != CM_OK || adm_str(body, "note", 200, &note) != CM_OK) {
        json_decref(body);
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "invalid_value",
                         "org (a slug), cidr and note are strings");
    }
    struct reg_network n;
    char err[512];
    int rc = reg_network_add(a->db, a->actor, org, cidr, note, &n, err, sizeof err);
    json_decref(body);
    return rc == CM_OK ? adm_json(a, c, MHD_HTTP_CREATED, reg_network_json(&n))
                       : adm_fail(a, c, rc, err, NULL);
}

bool adm_networks(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    if (adm_route(a, "GET", "networks")) {
        *r = network_list(a, c, "");
    } else if (adm_route(a, "GET", "orgs/*/networks")) {
        *r = network_list(a, c, a->seg[1]);
    } else if (adm_route(a, "POST", "networks")) {
        *r = network_add(a, c, NULL);
    } else if (adm_route(a, "POST", "orgs/*/networks")) {
        *r = network_add(a, c, a->seg[1]);
    } else if (adm_route(a, "DELETE", "networks/*")) {
        uint64_t id;
        struct reg_network n;
        char err[512];
        if (cm_parse_u64(a->seg[1], &id) != CM_OK || id > INT64_MAX) {
            *r = adm_error(a, c, MHD_HTTP_NOT_FOUND, "not_found", "no such network range");
            return true;
        }
        int rc = reg_network_remove(a->db, a->actor, (int64_t)id, &n, err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_network_json(&n))
                         : adm_fail(a, c, rc, err, NULL);
    } else {
        return false;
    }
    return true;
}

static enum MHD_Result top(struct adm_req *a, struct MHD_Connection *c)
{
    enum MHD_Result r;
    if (adm_args_only(a, c, "from,to,limit", &r) != CM_OK)
        return r;
    int64_t now = cm_now_us() / 1000000, from, to;
    char lim[16];
    uint64_t limit = 20;
    if (adm_time_arg(c, "from", cm_month_start(now), &from) != CM_OK ||
        adm_time_arg(c, "to", cm_month_next(cm_month_start(from)), &to) != CM_OK ||
        adm_arg(c, "limit", lim, sizeof lim) != CM_OK ||
        (lim[0] && (cm_parse_u64(lim, &limit) != CM_OK || limit > 1000)))
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                         "from and to are RFC 3339 times, limit 1-1000");
    json_t *orgs = NULL;
    char err[512];
    int rc = meter_usage_top(a->db, from, to, (unsigned)limit, &orgs, err, sizeof err);
    if (rc == CM_INVALID)
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_range", err);
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, NULL);
    char f[32], t[32];
    cm_time_format(from, f, sizeof f);
    cm_time_format(to, t, sizeof t);
    return adm_json(a, c, MHD_HTTP_OK,
                    json_pack("{s:s, s:s, s:o}", "from", f, "to", t, "orgs", orgs));
}

static enum MHD_Result summary(struct adm_req *a, struct MHD_Connection *c)
{
    enum MHD_Result r;
    if (adm_args_only(a, c, "from,to,granularity", &r) != CM_OK)
        return r;
    int64_t now = cm_now_us() / 1000000, from, to;
    char gran[8];
    if (adm_arg(c, "granularity", gran, sizeof gran) != CM_OK ||
        adm_time_arg(c, "from", now - now % 86400, &from) != CM_OK ||
        adm_time_arg(c, "to", from - from % 86400 + 86400, &to) != CM_OK)
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                         "from and to are RFC 3339 times, granularity hour or day");
    json_t *doc = NULL;
    char err[512];
    int rc = meter_usage_summary(a->db, from, to, gran[0] ? gran : "hour", &doc, err, sizeof err);
    if (rc == CM_INVALID)
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_range", err);
    return rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, doc) : adm_fail(a, c, rc, err, NULL);
}

json_t *adm_org_quota(struct gw *gw, const struct reg_org *o)
{
    struct meter_plan plan;
    char subject[72];
    cm_fmt(subject, sizeof subject, "org:%lld", (long long)o->id);
    bool planned = gw_plan_named(gw, o->plan, &plan);
    json_t *doc = gw_quota_doc(gw, planned ? &plan : NULL, subject, o->anchor_day);
    if (doc != NULL)
        json_object_set_new(doc, "org", json_string(o->slug));
    return doc;
}

bool adm_usage(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    if (adm_route(a, "GET", "usage/summary")) {
        *r = summary(a, c);
        return true;
    }
    if (adm_route(a, "GET", "orgs/*/quota")) {
        struct reg_org o;
        char err[512];
        int rc = reg_org_get(a->db, a->seg[1], &o, err, sizeof err);
        json_t *doc = rc == CM_OK ? adm_org_quota(a->base.gw, &o) : NULL;
        *r = rc != CM_OK     ? adm_fail(a, c, rc, err, NULL)
             : doc == NULL   ? MHD_NO
                             : adm_json(a, c, MHD_HTTP_OK, doc);
        return true;
    }
    bool usage = adm_route(a, "GET", "orgs/*/usage");
    bool export = adm_route(a, "GET", "orgs/*/usage/export");
    if (adm_route(a, "GET", "usage/top")) {
        *r = top(a, c);
        return true;
    }
    if (!usage && !export)
        return false;
    struct reg_org o;
    char err[512];
    int rc = reg_org_get(a->db, a->seg[1], &o, err, sizeof err);
    if (rc != CM_OK)
        *r = adm_fail(a, c, rc, err, NULL);
    else
        *r = usage ? gw_usage_reply(&a->base, c, o.id, o.slug)
                   : gw_usage_export_reply(&a->base, c, o.id);
    return true;
}
