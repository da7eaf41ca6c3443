/*
 * Admin API handlers for quota webhooks: register (an org's, or the operator's for every
 * org; the signing secret is in that answer only), list, delete, and the delivery state of
 * one webhook's events. Sending is gateway/webhooks.c's.
 */
#include "gateway/admin_int.h"

#include <string.h>

static enum MHD_Result create(struct adm_req *a, struct MHD_Connection *c)
{
    enum MHD_Result r;
    json_t *body = adm_body(a, c, "org,url,thresholds", &r);
    if (body == NULL)
        return r;
    const char *org = "", *url = NULL;
    int thresholds[10] = {80, 100};
    size_t n = 2;
    json_t *t = json_object_get(body, "thresholds");
    bool ok = adm_str(body, "org", 63, &org) == CM_OK && adm_str(body, "url", 1000, &url) == CM_OK &&
              url != NULL && (t == NULL || (json_is_array(t) && json_array_size(t) >= 1 &&
                                            json_array_size(t) <= 10));
    if (ok && t != NULL) {
        n = json_array_size(t);
        for (size_t i = 0; ok && i < n; i++) {
            json_t *v = json_array_get(t, i);
            ok = json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 1000;
            thresholds[i] = ok ? (int)json_integer_value(v) : 0;
        }
    }
    if (!ok) {
        json_decref(body);
        return adm_error(a, c, MHD_HTTP_BAD_REQUEST, "invalid_value",
                         "url is required; org a slug; thresholds 1-10 percentages of 1-1000");
    }
    char secret[REG_KEY_MAX], err[512];
    json_t *out = NULL;
    int rc = reg_webhook_create(a->db, a->actor, org, url, thresholds, n, secret, sizeof secret,
                                &out, err, sizeof err);
    json_decref(body);
    if (rc != CM_OK)
        return adm_fail(a, c, rc, err, NULL);
    json_object_set_new(out, "secret", json_string(secret));
    memset(secret, 0, sizeof secret);
    return adm_json(a, c, MHD_HTTP_CREATED, out);
}

bool adm_webhooks(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    char err[512];
    json_t *out = NULL;
    bool del = adm_route(a, "DELETE", "webhooks/*");
    bool deliveries = adm_route(a, "GET", "webhooks/*/deliveries");
    if (adm_route(a, "GET", "webhooks")) {
        int rc = reg_webhook_list(a->db, 0, &out, err, sizeof err);
        *r = rc == CM_OK ? adm_json(a, c, MHD_HTTP_OK, json_pack("{s:o}", "webhooks", out))
                         : adm_fail(a, c, rc, err, NULL);
    } else if (adm_route(a, "POST", "webhooks")) {
        *r = create(a, c);
    } else if (del || deliveries) {
        uint64_t id;
        if (cm_parse_u64(a->seg[1], &id) != CM_OK || id > INT64_MAX) {
            *r = adm_error(a, c, MHD_HTTP_NOT_FOUND, "not_found", "no such webhook");
            return true;
        }
        int rc = del ? reg_webhook_delete(a->db, a->actor, 0, (int64_t)id, &out, err,
                                        sizeof err)
                     : reg_webhook_deliveries(a->db, (int64_t)id, &out, err, sizeof err);
        *r = rc != CM_OK ? adm_fail(a, c, rc, err, NULL)
             : del       ? adm_json(a, c, MHD_HTTP_OK, out)
                         : adm_json(a, c, MHD_HTTP_OK, json_pack("{s:o}", "deliveries", out));
    } else {
        return false;
    }
    return true;
}
