/*
 * Report snapshots (funding_reports, sql/008): storing a generated report with its cost
 * model, reading a period's latest one back, and saying what changed between two
 * reports of the same period (totals, the cost model, each consumer's cost and ask).
 */
#include "billing/billing_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int bill_snapshot_latest(PGconn *db, int64_t lo, json_t **doc, json_t **model_json,
                         int64_t *id, char *generated_at, size_t galen, char *err,
                         size_t errlen)
{
    *doc = *model_json = NULL;
    char p[24];
    cm_fmt(p, sizeof p, "%" PRId64, lo);
    const char *params[] = {p};
    PGresult *res = PQexecParams(db,
                                 "SELECT id, to_char(generated_at,"
                                 " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), cost_model, report"
                                 " FROM funding_reports WHERE period = to_timestamp($1::bigint)"
                                 " ORDER BY id DESC LIMIT 1",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        return CM_NOTFOUND;
    }
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    cm_copy(generated_at, galen, PQgetvalue(res, 0, 1));
    json_error_t je;
    *model_json = json_loads(PQgetvalue(res, 0, 2), 0, &je);
    *doc = json_loads(PQgetvalue(res, 0, 3), 0, &je);
    PQclear(res);
    if (*doc == NULL || *model_json == NULL) {
        json_decref(*doc);
        json_decref(*model_json);
        *doc = *model_json = NULL;
        return cm_fmt(err, errlen, "snapshot %" PRId64 " is unreadable: %s", *id, je.text),
               CM_ERR;
    }
    return CM_OK;
}

int bill_snapshot_store(PGconn *db, int64_t lo, bool mtd, const json_t *doc, int64_t *id,
                        char *generated_at, size_t galen, char *err, size_t errlen)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    char *report = json_dumps(doc, flags);
    char *model = json_dumps(json_object_get(doc, "cost_model"), flags);
    if (report == NULL || model == NULL) {
        free(report);
        free(model);
        return cm_fmt(err, errlen, "out of memory"), CM_ERR;
    }
    char p[24];
    cm_fmt(p, sizeof p, "%" PRId64, lo);
    const char *params[] = {p, mtd ? "true" : "false", model, report};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO funding_reports (period, month_to_date, cost_model,"
                                 " report) VALUES (to_timestamp($1::bigint), $2::boolean, $3, $4)"
                                 " RETURNING id, to_char(generated_at,"
                                 " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                                 4, NULL, params, NULL, NULL, 0);
    free(report);
    free(model);
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        rc = CM_ERR;
    } else {
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        cm_copy(generated_at, galen, PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return rc;
}

/* {"before":a,"after":b} for a member that differs, else NULL. */
static json_t *change(const json_t *a, const json_t *b, const char *key)
{
    const json_t *x = json_object_get(a, key), *y = json_object_get(b, key);
    if (json_equal(x, y))
        return NULL;
    return json_pack("{s:O?, s:O?}", "before", x, "after", y);
}

static const json_t *find_consumer(const json_t *doc, const char *kind, const char *name)
{
    size_t i;
    const json_t *c;
    for (i = 0; (c = json_array_get(json_object_get(doc, "consumers"), i)) != NULL; i++)
        if (strcmp(bill_jstr(c, "kind"), kind) == 0 && strcmp(bill_jstr(c, "consumer"), name) == 0)
            return c;
    return NULL;
}

/* Consumers whose bytes, cost, ask or status changed, or that came or went. */
static json_t *consumer_changes(const json_t *before, const json_t *after)
{
    static const char *const keys[] = {"bytes", "requests", "cost_micros", "ask_micros",
                                       "ask_status"};
    json_t *out = json_array();
    size_t i;
    const json_t *c;
    for (i = 0; (c = json_array_get(json_object_get(after, "consumers"), i)) != NULL; i++) {
        const json_t *old = find_consumer(before, bill_jstr(c, "kind"), bill_jstr(c, "consumer"));
        json_t *row = json_pack("{s:s, s:s}", "consumer", bill_jstr(c, "consumer"), "kind",
                                bill_jstr(c, "kind"));
        if (old == NULL)
            json_object_set_new(row, "added", json_true());
        for (size_t k = 0; old != NULL && k < sizeof keys / sizeof keys[0]; k++) {
            json_t *d = change(old, c, keys[k]);
            if (d != NULL)
                json_object_set_new(row, keys[k], d);
        }
        if (json_object_size(row) > 2)
            json_array_append(out, row);
        json_decref(row);
    }
    for (i = 0; (c = json_array_get(json_object_get(before, "consumers"), i)) != NULL; i++)
        if (find_consumer(after, bill_jstr(c, "kind"), bill_jstr(c, "consumer")) == NULL)
            json_array_append_new(out, json_pack("{s:s, s:s, s:b}", "consumer",
                                                 bill_jstr(c, "consumer"), "kind",
                                                 bill_jstr(c, "kind"), "removed", 1));
    return out;
}

json_t *bill_snapshot_diff(const json_t *before, int64_t before_id, const char *before_at,
                           const json_t *after)
{
    json_t *totals = json_object();
    const char *const keys[] = {"bytes", "requests", "period_cost_micros", "asks_micros",
                                "review_asks_micros", "commercial_cost_micros"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        json_t *d = change(json_object_get(before, "totals"), json_object_get(after, "totals"),
                           keys[k]);
        if (d != NULL)
            json_object_set_new(totals, keys[k], d);
    }
    json_t *model = json_array();
    const json_t *old_model = json_object_get(before, "cost_model");
    json_t *new_model = json_object_get(after, "cost_model");
    for (void *it = json_object_iter(new_model); it != NULL;
         it = json_object_iter_next(new_model, it))
        if (!json_equal(json_object_iter_value(it),
                        json_object_get(old_model, json_object_iter_key(it))))
            json_array_append_new(model, json_string(json_object_iter_key(it)));
    json_t *consumers = consumer_changes(before, after);
    bool same = json_object_size(totals) == 0 && json_array_size(model) == 0 &&
                json_array_size(consumers) == 0;
    return json_pack("{s:I, s:s, s:b, s:o, s:o, s:o}", "previous_snapshot",
                     (json_int_t)before_id, "previous_generated_at", before_at, "unchanged",
                     same, "totals", totals, "cost_model", model, "consumers", consumers);
}
