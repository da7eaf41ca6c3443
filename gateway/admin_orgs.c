/*
 * Admin API handlers for orgs and plans: create, list (search and cursor pages), show,
 * update, suspend/resume; plans create, list, show, update, delete when unused. The data
 * model and its audit rows are registry/'s; this file maps HTTP to it and back.
 */
#include "gateway/admin_int.h"

#include <stdlib.h>
#include <string.h>

static enum MHD_Result bad_field(struct adm_req *a, struct MHD_Connection *c, const char *msg)
{
    return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "invalid_value", msg);
}

static enum MHD_Result org_list(struct adm_req *a, struct MHD_Connection *c)
{
    enum MHD_Result r;
    if (adm_args_only(a, c, "search,cursor,limit", &r) != CM_OK)
        return r;
    char search[201], cursor[64], lim[16];
    uint64_t limit = 100;
    if (adm_arg(c, "search", search, sizeof search) != CM_OK ||
        adm_arg(c, "cursor", cursor, sizeof cursor) != CM_OK ||
        adm_arg(c, "limit", lim, sizeof lim) != CM_OK ||
        (lim[0] && (cm_parse_u64(lim, &limit) != CM_OK || limit < 1 || limit > 1000)))
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                         "search is at most 200 bytes, limit 1-1000, cursor a next_cursor");
    struct reg_org *orgs;
    size_t n;
    char err[512];
    /* One more than asked tells whether another page follows; the cursor is the last slug. */
    int rc = reg_org_list(a->db, search, cursor, (int)limit + 1, &orgs, &n, err, sizeof err);
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, NULL);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && i < limit; i++)
        json_array_append_new(arr, reg_org_json(&orgs[i]));
    json_t *next = n > limit ? json_string(orgs[limit - 1].slug) : json_null();
    free(orgs);
    return adm_json(a, c, MHD_HTTP_OK, json_pack("{s:o, s:o}", "orgs", arr, "next_cursor", next));
}

static enum MHD_Result org_create(struct adm_req *a, struct MHD_Connection *c)
{
    enum MHD_Result r;
    json_t *body = adm_body(a, c, "slug,name,class,plan", &r);
    if (body == NULL)
        return r;
    const char *slug = "", *name = "", *class_ = "", *plan = "";
    struct reg_org o = {0};
    if (adm_str(body, "slug", 63, &slug) != CM_OK || adm_str(body, "name", 200, &name) != CM_OK ||
        adm_str(body, "class", 15, &class_) != CM_OK || adm_str(body, "plan", 63, &plan) != CM_OK) {
        json_decref(body);
        return bad_field(a, c, "slug (1-63), name (1-200), class and plan are strings");
    }
    cm_copy(o.slug, sizeof o.slug, slug);
    cm_copy(o.name, sizeof o.name, name);
    cm_copy(o.class_, sizeof o.class_, class_);
    cm_copy(o.plan, sizeof o.plan, plan);
    json_decref(body);
    char err[512];
    int rc = reg_org_create(a->db, a->actor, &o, err, sizeof err);
    return rc == CM_OK ? adm_json(a, c, MHD_HTTP_CREATED, reg_org_json(&o))
                       : adm_fail(a, c, rc, err, NULL);
}

static enum MHD_Result org_update(struct adm_req *a, struct MHD_Connection *c, const char *slug)
{
    enum MHD_Result r;
    json_t *body = adm_body(a, c, "name,class,contact,plan,anchor_day", &r);
    if (body == NULL)
        return r;
    struct reg_org_change ch = {0};
    int64_t anchor = 0;
    bool anchor_set;
    bool ok = adm_str(body, "name", 200, &ch.name) == CM_OK &&
              adm_str(body, "class", 15, &ch.class_) == CM_OK &&
              adm_str(body, "contact", 200, &ch.contact) == CM_OK &&
              adm_int(body, "anchor_day", 28, &anchor, &anchor_set) == CM_OK &&
              (!anchor_set || anchor >= 1);
    /* plan: a name, or null to take the plan away. */
    json_t *plan = json_object_get(body, "plan");
    if (ok && json_is_null(plan))
        ch.plan = "";
    else if (ok)
        ok = adm_str(body, "plan", 63, &ch.plan) == CM_OK && (ch.plan == NULL || ch.plan[0]);
    ch.anchor_day = (int)anchor;
    if (!ok) {
        json_decref(body);
        return bad_field(a, c, "name, class, contact are strings, plan a plan name or null, "
                               "anchor_day 1-28");
    }
    if (json_object_size(body) == 0) {
        json_decref(body);
        return bad_field(a, c, "nothing to change: give name, class, contact, plan or anchor_day");
    }
    struct reg_org o;
    char err[512];
    int rc = reg_org_update(a->db, a->actor, slug, &ch, &o, err, sizeof err);
    json_decref(body); /* ch's strings borrowed from it until here */
    return rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_org_json(&o))
                       : adm_fail(a, c, rc, err, NULL);
}

bool adm_orgs(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    char err[512];
    struct reg_org o;
    if (adm_route(a, "GET", "orgs")) {
        *r = org_list(a, c);
    } else if (adm_route(a, "POST", "orgs")) {
        *r = org_create(a, c);
    } else if (adm_route(a, "GET", "orgs/*")) {
        int rc = reg_org_get(a->db, a->seg[1], &o, err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_org_json(&o))
                         : adm_fail(a, c, rc, err, NULL);
    } else if (adm_route(a, "PATCH", "orgs/*")) {
        *r = org_update(a, c, a->seg[1]);
    } else if (adm_route(a, "POST", "orgs/*/suspend") || adm_route(a, "POST", "orgs/*/resume")) {
        bool suspend = strcmp(a->seg[2], "suspend") == 0;
        int rc = reg_org_set_suspended(a->db, a->actor, a->seg[1], suspend, &o, err, sizeof err);
        /* This gateway forgets its cached keys at once; others within the cache TTL. */
        if (rc == CM_OK)
            gw_idcache_clear(a->base.gw->ids);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_org_json(&o))
                         : adm_fail(a, c, rc, err, NULL);
    } else {
        return false;
    }
    return true;
}

/* Reads the plan fields of body into p, with mask saying which were given. */
static int plan_fields(const json_t *body, struct reg_plan *p, unsigned *mask)
{
    static const struct {
        const char *name;
        size_t offset;
        unsigned bit;
    } limits[] = {
        {"requests_per_minute", offsetof(struct reg_plan, requests_per_minute), REG_PLAN_RPM},
        {"request_burst", offsetof(struct reg_plan, request_burst), REG_PLAN_REQUEST_BURST},
        {"bytes_per_second", offsetof(struct reg_plan, bytes_per_second), REG_PLAN_BPS},
        {"byte_burst", offsetof(struct reg_plan, byte_burst), REG_PLAN_BYTE_BURST},
        {"monthly_bytes", offsetof(struct reg_plan, monthly_bytes), REG_PLAN_MONTHLY},
    };
    bool set;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (adm_int(body, limits[i].name, INT64_MAX, (int64_t *)((char *)p + limits[i].offset),
                    &set) != CM_OK)
            return CM_INVALID;
        *mask |= set ? limits[i].bit : 0;
    }
    int64_t conc = 0;
    if (adm_int(body, "max_concurrent", INT32_MAX, &conc, &set) != CM_OK)
        return CM_INVALID;
    p->max_concurrent = (int32_t)conc;
    *mask |= set ? REG_PLAN_CONCURRENT : 0;
    const char *failure = NULL;
    if (adm_str(body, "failure_policy", 7, &failure) != CM_OK)
        return CM_INVALID;
    if (failure != NULL) {
        cm_copy(p->failure_policy, sizeof p->failure_policy, failure);
        *mask |= REG_PLAN_FAILURE;
    }
    const json_t *shadow = json_object_get(body, "shadow");
    if (shadow != NULL && !json_is_boolean(shadow))
        return CM_INVALID;
    p->shadow = json_is_true(shadow);
    *mask |= shadow ? REG_PLAN_SHADOW : 0;
    return CM_OK;
}

#define PLAN_FIELDS                                                                        \
    "requests_per_minute,request_burst,bytes_per_second,byte_burst,monthly_bytes,"           \
    "max_concurrent,failure_policy,shadow"

static enum MHD_Result plan_write(struct adm_req *a, struct MHD_Connection *c, const char *name)
{
    enum MHD_Result r;
    json_t *body = adm_body(a, c, name ? PLAN_FIELDS : "name," PLAN_FIELDS, &r);
    if (body == NULL)
        return r;
    struct reg_plan p = {.failure_policy = "open"}, out;
    unsigned mask = 0;
    const char *new_name = "";
    int rc = plan_fields(body, &p, &mask);
    if (rc == CM_OK && name == NULL && adm_str(body, "name", 63, &new_name) != CM_OK)
        rc = CM_INVALID;
    cm_copy(p.name, sizeof p.name, new_name);
    json_decref(body);
    if (rc != CM_OK)
        return bad_field(a, c, "limits are whole numbers >= 0 (0 = unlimited), failure_policy "
                               "open or closed, shadow true or false, name a string");
    if (name != NULL && mask == 0)
        return bad_field(a, c, "nothing to change: give at least one field");
    char err[512];
    if (name == NULL) {
        rc = reg_plan_create(a->db, a->actor, &p, err, sizeof err);
        return rc == CM_OK ? adm_json(a, c, MHD_HTTP_CREATED, reg_plan_json(&p))
                           : adm_fail(a, c, rc, err, NULL);
    }
    rc = reg_plan_update(a->db, a->actor, name, &p, mask, &out, err, sizeof err);
    return rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_plan_json(&out))
                       : adm_fail(a, c, rc, err, NULL);
}

bool adm_plans(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    char err[512];
    if (adm_route(a, "GET", "plans")) {
        struct reg_plan *plans;
        size_t n;
        int rc = reg_plan_list(a->db, &plans, &n, err, sizeof err);
        if (rc != CM_OK) {
            *r = adm_fail(a, c, rc, err, NULL);
            return true;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, reg_plan_json(&plans[i]));
        free(plans);
        *r = adm_json(a, c, MHD_HTTP_OK, json_pack("{s:o}", "plans", arr));
    } else if (adm_route(a, "POST", "plans")) {
        *r = plan_write(a, c, NULL);
    } else if (adm_route(a, "GET", "plans/*")) {
        struct reg_plan p;
        int rc = reg_plan_get(a->db, a->seg[1], &p, err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, reg_plan_json(&p))
                         : adm_fail(a, c, rc, err, NULL);
    } else if (adm_route(a, "PATCH", "plans/*")) {
        *r = plan_write(a, c, a->seg[1]);
    } else if (adm_route(a, "DELETE", "plans/*")) {
        int rc = reg_plan_delete(a->db, a->actor, a->seg[1], err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, json_pack("{s:s}", "deleted", a->seg[1]))
                         : adm_fail(a, c, rc, err, "plan_in_use");
    } else {
        return false;
    }
    return true;
}
