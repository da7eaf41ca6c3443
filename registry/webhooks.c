/*
 * Quota webhooks (sql/007): registration (an org's, or the operator's for every org), the
 * outbox of threshold crossings (hm_webhook_scan queues each webhook × org × month ×
 * threshold once), and the sender's side: claiming due events with SKIP LOCKED inside a
 * transaction and recording each attempt. HTTP itself is the gateway's (gateway/webhooks.c).
 */
#include "registry/registry_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_JSON                                                                          \
    "json_build_object('id', w.id, 'org', o.slug, 'url', w.url, 'thresholds', w.thresholds," \
    " 'created_at', to_char(w.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"

/* "{80,100}" from thresholds; CM_INVALID unless 1-10 values of 1-1000. */
static int threshold_array(const int *t, size_t n, char *out, size_t len)
{
    if (n < 1 || n > 10)
        return CM_INVALID;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < 1 || t[i] > 1000 ||
            cm_fmt(out + used, len - used, "%s%d", i ? "," : "{", t[i]) != CM_OK)
            return CM_INVALID;
        used += strlen(out + used);
    }
    return cm_fmt(out + used, len - used, "}");
}

int reg_webhook_create(PGconn *db, const char *actor, const char *org_slug, const char *url,
                       const int *thresholds, size_t n, char *secret, size_t secretlen,
                       json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    char arr[128];
    if (threshold_array(thresholds, n, arr, sizeof arr) != CM_OK)
        return cm_fmt(err, errlen, "thresholds are 1-10 percentages of 1-1000"), CM_INVALID;
    size_t ulen = strlen(url);
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || ulen > 1000 ||
        strpbrk(url, " \t\r\n\"") != NULL || ulen < 10)
        return cm_fmt(err, errlen, "url must be an http:// or https:// URL"), CM_INVALID;
    int64_t org_id = 0;
    if (org_slug[0] != '\0') {
        struct reg_org org;
        int rc = reg_org_get(db, org_slug, &org, err, errlen);
        if (rc != CM_OK)
            return rc;
        org_id = org.id;
    }
    if (reg_key_generate("whsec_", secret, secretlen) != CM_OK)
        return cm_fmt(err, errlen, "cannot generate a secret (getrandom failed)"), CM_ERR;
    char org[24];
    cm_fmt(org, sizeof org, "%" PRId64, org_id);
    const char *params[] = {org, url, secret, arr};
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = reg_json_row(db,
                      "WITH w AS (INSERT INTO webhooks (org_id, url, secret, thresholds)"
                      " VALUES (nullif($1::bigint, 0), $2, $3, $4::smallint[]) RETURNING *)"
                      " SELECT " HOOK_JSON " FROM w LEFT JOIN orgs o ON o.id = w.org_id",
                      4, params, out, err, errlen);
    if (rc == CM_OK) {
        char target[48];
        cm_fmt(target, sizeof target, "webhook:%" JSON_INTEGER_FORMAT,
               json_integer_value(json_object_get(*out, "id")));
        rc = reg_audit(db, actor, "webhook.create", target, NULL, json_incref(*out), err, errlen);
    }
    rc = reg_finish(db, rc, err, errlen);
    if (rc != CM_OK) {
        json_decref(*out);
        *out = NULL;
        memset(secret, 0, secretlen);
    }
    return rc;
}

int reg_webhook_list(PGconn *db, int64_t org_id, json_t **out, char *err, size_t errlen)
{
    char org[24];
    cm_fmt(org, sizeof org, "%" PRId64, org_id);
    const char *params[] = {org};
    return reg_json_row(db,
                    "SELECT coalesce(json_agg(" HOOK_JSON " ORDER BY w.id), '[]')"
                    " FROM webhooks w LEFT JOIN orgs o ON o.id = w.org_id"
                    " WHERE $1::bigint = 0 OR w.org_id = $1::bigint",
                    1, params, out, err, errlen);
}

int reg_webhook_delete(PGconn *db, const char *actor, int64_t org_id, int64_t id, json_t **out,
                       char *err, size_t errlen)
{
    char idtext[24], org[24];
    cm_fmt(idtext, sizeof idtext, "%" PRId64, id);
    cm_fmt(org, sizeof org, "%" PRId64, org_id);
    const char *params[] = {idtext, org};
    if (reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    int rc = reg_json_row(db,
                      "WITH w AS (DELETE FROM webhooks WHERE id = $1::bigint AND ($2::bigint = 0"
                      " OR org_id = $2::bigint) RETURNING *)"
                      " SELECT " HOOK_JSON " FROM w LEFT JOIN orgs o ON o.id = w.org_id",
                      2, params, out, err, errlen);
    if (rc == CM_NOTFOUND)
        cm_fmt(err, errlen, "no webhook %" PRId64, id);
    if (rc == CM_OK) {
        char target[48];
        cm_fmt(target, sizeof target, "webhook:%" PRId64, id);
        rc = reg_audit(db, actor, "webhook.delete", target, json_incref(*out), NULL, err, errlen);
    }
    rc = reg_finish(db, rc, err, errlen);
    if (rc != CM_OK) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int reg_webhook_deliveries(PGconn *db, int64_t id, json_t **out, char *err, size_t errlen)
{
    char idtext[24];
    cm_fmt(idtext, sizeof idtext, "%" PRId64, id);
    const char *params[] = {idtext};
    int rc = reg_json_row(db,
                      "SELECT coalesce(json_agg(json_build_object('id', x.id, 'org', o.slug,"
                      " 'threshold', x.threshold, 'period', to_char(x.period AT TIME ZONE 'UTC',"
                      " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'attempts', x.attempts,"
                      " 'delivered', x.delivered_at IS NOT NULL, 'failed', x.failed_at IS NOT NULL,"
                      " 'last_error', x.last_error) ORDER BY x.id), '[]')"
                      " FROM webhook_outbox x JOIN orgs o ON o.id = x.org_id"
                      " WHERE x.webhook_id = $1::bigint HAVING EXISTS (SELECT 1 FROM webhooks"
                      " WHERE id = $1::bigint)",
                      1, params, out, err, errlen);
    if (rc == CM_NOTFOUND)
        cm_fmt(err, errlen, "no webhook %" PRId64, id);
    return rc;
}

int reg_webhook_claim(PGconn *db, int max, struct reg_webhook_event **events, size_t *n,
                      char *err, size_t errlen)
{
    *events = NULL;
    *n = 0;
    if (cm_pg_command(db, "SELECT hm_webhook_scan(now())", err, errlen) != CM_OK ||
        reg_begin(db, err, errlen) != CM_OK)
        return CM_ERR;
    char lim[16];
    cm_fmt(lim, sizeof lim, "%d", max);
    const char *params[] = {lim};
    PGresult *res = PQexecParams(db,
                                 "SELECT x.id, w.url, w.secret, (x.payload || jsonb_build_object("
                                 "'id', x.id))::text, x.attempts FROM webhook_outbox x"
                                 " JOIN webhooks w ON w.id = x.webhook_id"
                                 " WHERE x.delivered_at IS NULL AND x.failed_at IS NULL"
                                 " AND x.next_attempt_at <= now() ORDER BY x.id"
                                 " LIMIT $1::int FOR UPDATE OF x SKIP LOCKED",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return reg_finish(db, CM_ERR, err, errlen);
    }
    int rows = PQntuples(res);
    *events = calloc(rows > 0 ? (size_t)rows : 1, sizeof **events);
    for (int i = 0; *events != NULL && i < rows; i++) {
        struct reg_webhook_event *e = &(*events)[i];
        e->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        cm_copy(e->url, sizeof e->url, PQgetvalue(res, i, 1));
        cm_copy(e->secret, sizeof e->secret, PQgetvalue(res, i, 2));
        e->payload = strdup(PQgetvalue(res, i, 3));
        e->attempts = (int)strtol(PQgetvalue(res, i, 4), NULL, 10);
        (*n)++;
    }
    PQclear(res);
    if (*events == NULL)
        return reg_finish(db, CM_ERR, err, errlen);
    return CM_OK; /* the transaction stays open: reg_webhook_done ends it */
}

int reg_webhook_attempt(PGconn *db, const struct reg_webhook_event *e, bool delivered,
                        const char *error, char *err, size_t errlen)
{
    char id[24];
    cm_fmt(id, sizeof id, "%" PRId64, e->id);
    const char *params[] = {id, delivered ? "t" : "f", error};
    /* Backoff 2^attempts seconds (at most an hour); given up after 12 attempts. */
    PGresult *res = PQexecParams(db,
                                 "UPDATE webhook_outbox SET attempts = attempts + 1,"
                                 " delivered_at = CASE WHEN $2::bool THEN now() END,"
                                 " last_error = CASE WHEN $2::bool THEN NULL ELSE $3 END,"
                                 " next_attempt_at = now() + make_interval(secs =>"
                                 " least(power(2, attempts + 1), 3600)),"
                                 " failed_at = CASE WHEN NOT $2::bool AND attempts + 1 >= 12"
                                 " THEN now() END WHERE id = $1::bigint",
                                 3, NULL, params, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? CM_OK : CM_ERR;
    if (rc != CM_OK)
        cm_pg_error(db, res, err, errlen);
    PQclear(res);
    return rc;
}

void reg_webhook_events_free(struct reg_webhook_event *events, size_t n)
{
    for (size_t i = 0; events != NULL && i < n; i++) {
        free(events[i].payload);
        memset(events[i].secret, 0, sizeof events[i].secret);
    }
    free(events);
}
