/*
 * `hubmeter usage reconcile`: checks the usage path end to end. PostgreSQL's usage rows
 * must add up to the applied batches (every row comes from exactly one applied batch);
 * the report adds what is still on its way — batches and records in this host's journal
 * (and whether PostgreSQL already has each batch) and entries in the Redis stream.
 */
#include "meter/meter_int.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static int pg_pair(PGconn *db, const char *sql, int n, const char *const *params, int64_t out[2],
                   char *err, size_t errlen)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    out[0] = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    out[1] = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    return CM_OK;
}

/* Batches in the journal: how many PostgreSQL already applied (awaiting release) and the
 * bytes of the others, still on their way. */
static json_t *journal_report(PGconn *db, const char *dir)
{
    json_t *ids = json_array();
    int64_t waiting[2] = {0, 0}; /* batches, bytes */
    DIR *d = opendir(dir);
    if (d == NULL) {
        json_decref(ids);
        return json_pack("{s:s, s:b}", "dir", dir, "present", 0);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[CM_URL_MAX + 300];
        cm_fmt(p, sizeof p, "%s/%s", dir, e->d_name);
        if (strncmp(e->d_name, "b-", 2) == 0) {
            json_t *doc = json_load_file(p, 0, NULL);
            const char *id = json_string_value(json_object_get(doc, "id"));
            if (id != NULL) {
                json_array_append_new(ids, json_string(id));
                size_t i;
                json_t *row;
                json_array_foreach(json_object_get(doc, "rows"), i, row)
                    waiting[1] += json_integer_value(json_object_get(row, "bytes"));
                waiting[0]++;
            }
            json_decref(doc);
        }
    }
    closedir(d);
    char *text = json_dumps(ids, JSON_COMPACT);
    const char *params[] = {text};
    int64_t applied[2] = {0, 0};
    char err[256];
    pg_pair(db,
            "SELECT count(*), coalesce(sum(bytes), 0) FROM applied_batches WHERE batch_id IN"
            " (SELECT jsonb_array_elements_text($1::jsonb))",
            1, params, applied, err, sizeof err);
    free(text);
    json_decref(ids);
    return json_pack("{s:s, s:b, s:I, s:I, s:I}", "dir", dir, "present", 1, "batches",
                     (json_int_t)waiting[0], "batches_already_applied", (json_int_t)applied[0],
                     "bytes_not_yet_applied", (json_int_t)(waiting[1] - applied[1]));
}

static json_t *stream_report(const char *url)
{
    char err[256];
    redisContext *c = meter_redis_connect(url, 2000, err, sizeof err);
    if (c == NULL)
        return json_pack("{s:s}", "error", err);
    redisReply *len = redisCommand(c, "XLEN " METER_STREAM);
    redisReply *pending = redisCommand(c, "XPENDING " METER_STREAM " " METER_GROUP);
    redisReply *dead = redisCommand(c, "XLEN " METER_STREAM ":dead");
    json_t *out = json_pack(
        "{s:I, s:I, s:I}", "length",
        (json_int_t)(len && len->type == REDIS_REPLY_INTEGER ? len->integer : 0), "pending",
        (json_int_t)(pending && pending->type == REDIS_REPLY_ARRAY && pending->elements > 0
                         ? pending->element[0]->integer
                         : 0),
        "dead_letters", (json_int_t)(dead && dead->type == REDIS_REPLY_INTEGER ? dead->integer : 0));
    freeReplyObject(len);
    freeReplyObject(pending);
    freeReplyObject(dead);
    redisFree(c);
    return out;
}

int meter_reconcile(const struct hm_config *cfg, int64_t from, int64_t to, json_t **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    PGconn *db = cm_pg_connect(cfg->database_url, err, errlen);
    if (db == NULL)
        return CM_UNAVAIL;
    int64_t rows[2], batches[2], period[2];
    char f[24], t[24];
    cm_fmt(f, sizeof f, "%lld", (long long)from);
    cm_fmt(t, sizeof t, "%lld", (long long)to);
    const char *params[] = {f, t};
    /* Every applied batch row is either a usage row or, for a closed month, an adjustment
     * the flusher wrote (source = the batch); operators' corrections are not batches. */
    /* Rolled-up hours count from usage_hourly (minute data may be gone past retention). */
    int rc = pg_pair(db, "WITH c AS (SELECT coalesce((SELECT hour FROM rollup_cursor),"
                         " '-infinity') AS hour)"
                         " SELECT coalesce(sum(r), 0), coalesce(sum(b), 0) FROM"
                         " (SELECT requests AS r, bytes AS b FROM usage_minute"
                         " WHERE bucket >= (SELECT hour FROM c)"
                         " OR date_trunc('hour', bucket) IN (SELECT hour FROM rollup_dirty)"
                         " UNION ALL SELECT requests, bytes FROM usage_hourly"
                         " WHERE bucket < (SELECT hour FROM c)"
                         " AND bucket NOT IN (SELECT hour FROM rollup_dirty)"
                         " UNION ALL SELECT requests, bytes FROM usage_adjustments"
                         " WHERE source IS NOT NULL) t",
                         0, NULL, rows, err, errlen);
    if (rc == CM_OK)
        rc = pg_pair(db, "SELECT coalesce(sum(requests), 0), coalesce(sum(bytes), 0)"
                         " FROM applied_batches", 0, NULL, batches, err, errlen);
    if (rc == CM_OK)
        rc = pg_pair(db, "SELECT coalesce(sum(requests), 0), coalesce(sum(bytes), 0)"
                         " FROM usage_minute WHERE bucket >= to_timestamp($1::bigint)"
                         " AND bucket < to_timestamp($2::bigint)", 2, params, period, err, errlen);
    if (rc != CM_OK) {
        PQfinish(db);
        return CM_ERR;
    }
    bool consistent = rows[0] == batches[0] && rows[1] == batches[1];
    char fs[32], ts[32];
    cm_time_format(from, fs, sizeof fs);
    cm_time_format(to, ts, sizeof ts);
    *out = json_pack("{s:b, s:{s:s, s:s, s:I, s:I}, s:{s:I, s:I, s:I, s:I}, s:o, s:o}",
                     "consistent", consistent, "period", "from", fs, "to", ts, "requests",
                     (json_int_t)period[0], "bytes", (json_int_t)period[1], "postgresql",
                     "usage_requests", (json_int_t)rows[0], "usage_bytes", (json_int_t)rows[1],
                     "applied_batch_requests", (json_int_t)batches[0], "applied_batch_bytes",
                     (json_int_t)batches[1], "journal", journal_report(db, cfg->journal_dir),
                     "stream", cfg->redis_url[0] ? stream_report(cfg->redis_url)
                                                 : json_pack("{s:s}", "error", "no Redis URL"));
    PQfinish(db);
    return consistent ? CM_OK : CM_DENIED;
}
