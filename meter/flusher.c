/*
 * The flusher: reads the usage stream as a member of a consumer group, applies each batch
 * to PostgreSQL in one transaction that also inserts the batch id into applied_batches
 * (a batch seen twice changes nothing), and only then XACKs it. Its own pending entries
 * are re-read first after a failure; entries left idle by a dead flusher are claimed.
 * The stream is trimmed with XTRIM MINID below the oldest unacknowledged entry.
 */
#include "meter/meter_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_COUNT 64
#define HOUSEKEEPING_MS 1000

struct meter_flusher {
    const struct hm_config *cfg;
    redisContext *redis;
    PGconn *db;
    char consumer[128];
    char installation[64]; /* its UUID, learned from PostgreSQL once */
    int claim_rc;          /* the last claim's result (meter/installation.c) */
    bool pending_first; /* re-read our own pending entries before new ones */
    int64_t housekeeping_at_ms;
    int64_t partitions_at_ms; /* next check that this and next month's partitions exist */
    int64_t rollup_at_ms;     /* next rollup of complete hours */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    unsigned failures;
};

/* Rows of open months become usage; rows of closed months (late usage) become signed
 * adjustment rows naming the batch, never rewrites of a closed month. */
static const char APPLY_ROWS_SQL[] =
    "WITH r AS (SELECT * FROM jsonb_to_recordset($1::jsonb -> 'rows') AS r(m bigint,"
    " org bigint, key bigint, net text, repo text, method text, sc smallint, refused text,"
    " req bigint, bytes bigint)),"
    " late AS (INSERT INTO usage_adjustments (bucket, org_id, key_id, network, repo,"
    " status_class, requests, bytes, reason, author, source)"
    " SELECT to_timestamp(r.m), r.org, r.key, r.net::cidr, r.repo, r.sc, r.req, r.bytes,"
    " 'late usage for a closed month', 'hubmeter-flusher', $1::jsonb ->> 'id' FROM r"
    " WHERE date_trunc('month', to_timestamp(r.m)) IN (SELECT month FROM closed_months))"
    " INSERT INTO usage_minute (bucket, org_id, key_id, network, repo, method, status_class,"
    " refused_by, requests, bytes)"
    " SELECT to_timestamp(r.m), r.org, r.key, r.net::cidr, r.repo, r.method, r.sc,"
    " r.refused, sum(r.req), sum(r.bytes) FROM r"
    " WHERE date_trunc('month', to_timestamp(r.m)) NOT IN (SELECT month FROM closed_months)"
    " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
    " ON CONFLICT ON CONSTRAINT usage_minute_key DO UPDATE SET"
    " requests = usage_minute.requests + EXCLUDED.requests,"
    " bytes = usage_minute.bytes + EXCLUDED.bytes";

/* What reports need beyond the usage rows: distinct client addresses per hour (a set:
 * replays add nothing) and bytes per object ETag per day (added once per fresh batch). */
static const char APPLY_CLIENTS_SQL[] =
    "INSERT INTO usage_clients_hourly (hour, org_id, key_id, address)"
    " SELECT to_timestamp(c.h), c.org, c.key, c.addr::inet"
    " FROM jsonb_to_recordset(coalesce($1::jsonb -> 'clients', '[]')) AS c(h bigint, org bigint,"
    " key bigint, addr text)"
    " ON CONFLICT DO NOTHING";

static const char APPLY_OBJECTS_SQL[] =
    "INSERT INTO usage_objects_daily (day, org_id, repo, etag, requests, bytes)"
    " SELECT to_timestamp(o.d), o.org, o.repo, o.etag, sum(o.req), sum(o.bytes)"
    " FROM jsonb_to_recordset(coalesce($1::jsonb -> 'objects', '[]')) AS o(d bigint, org bigint,"
    " repo text, etag text, req bigint, bytes bigint) GROUP BY 1, 2, 3, 4"
    " ON CONFLICT ON CONSTRAINT usage_objects_daily_key DO UPDATE SET"
    " requests = usage_objects_daily.requests + EXCLUDED.requests,"
    " bytes = usage_objects_daily.bytes + EXCLUDED.bytes";

/* Hours already rolled up that this batch changes are recomputed by the next rollup. */
static const char DIRTY_HOURS_SQL[] =
    "INSERT INTO rollup_dirty (hour)"
    " SELECT DISTINCT date_trunc('hour', to_timestamp((r ->> 'm')::bigint))"
    " FROM jsonb_array_elements($1::jsonb -> 'rows') r"
    " WHERE date_trunc('hour', to_timestamp((r ->> 'm')::bigint)) <"
    " (SELECT hour FROM rollup_cursor)"
    " ON CONFLICT DO NOTHING";

static const char APPLY_BATCH_SQL[] =
    "INSERT INTO applied_batches (batch_id, instance, rows, requests, bytes, stream_id)"
    " SELECT $1::jsonb ->> 'id', $1::jsonb ->> 'source', jsonb_array_length($1::jsonb -> 'rows'),"
    " coalesce(sum((r ->> 'req')::bigint), 0), coalesce(sum((r ->> 'bytes')::bigint), 0), $2"
    " FROM jsonb_array_elements($1::jsonb -> 'rows') r"
    " ON CONFLICT (batch_id) DO NOTHING";

static const char PARTITIONS_SQL[] =
    "SELECT hm_usage_partition(m) FROM (SELECT DISTINCT date_trunc('month',"
    " to_timestamp((r ->> 'm')::bigint)) AS m"
    " FROM jsonb_array_elements($1::jsonb -> 'rows') r) months";

static const char WATERMARK_SQL[] =
    "INSERT INTO gateway_watermarks (instance, cutoff, running, seen_at)"
    " VALUES ($1, to_timestamp($2::bigint / 1000.0), $3::boolean IS NOT TRUE, now())"
    " ON CONFLICT (instance) DO UPDATE SET"
    " cutoff = GREATEST(gateway_watermarks.cutoff, EXCLUDED.cutoff),"
    " running = EXCLUDED.running, seen_at = now()";

static int exec_params(PGconn *db, const char *sql, int n, const char *const *params,
                       PGresult **keep, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        cm_pg_error(db, res, err, errlen);
        PQclear(res);
        return CM_ERR;
    }
    if (keep != NULL)
        *keep = res;
    else
        PQclear(res);
    return CM_OK;
}

/* Applies one batch in one transaction. *fresh is true when it was not applied before. */
static int apply_batch(PGconn *db, const char *body, const char *stream_id, bool *fresh,
                       char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    const char *source = json_string_value(json_object_get(doc, "source"));
    json_t *cutoff = json_object_get(doc, "cutoff");
    if (doc == NULL || source == NULL || !json_is_integer(cutoff) ||
        !json_is_string(json_object_get(doc, "id")) ||
        !json_is_array(json_object_get(doc, "rows"))) {
        json_decref(doc);
        cm_fmt(err, errlen, "malformed batch");
        return CM_INVALID;
    }
    char cutoff_ms[24];
    cm_fmt(cutoff_ms, sizeof cutoff_ms, "%lld", (long long)json_integer_value(cutoff));
    const char *wm[] = {source, cutoff_ms, "false"};
    const char *p2[] = {body, stream_id};
    PGresult *res = NULL;
    char msg[512];
    int rc = cm_pg_command(db, "BEGIN", msg, sizeof msg);
    if (rc == CM_OK)
        rc = exec_params(db, PARTITIONS_SQL, 1, p2, NULL, msg, sizeof msg);
    if (rc == CM_OK)
        rc = exec_params(db, APPLY_BATCH_SQL, 2, p2, &res, msg, sizeof msg);
    if (rc == CM_OK) {
        *fresh = strcmp(PQcmdTuples(res), "1") == 0;
        PQclear(res);
        if (*fresh)
            rc = exec_params(db, APPLY_ROWS_SQL, 1, p2, NULL, msg, sizeof msg);
        if (*fresh && rc == CM_OK)
            rc = exec_params(db, DIRTY_HOURS_SQL, 1, p2, NULL, msg, sizeof msg);
        if (*fresh && rc == CM_OK)
            rc = exec_params(db, APPLY_CLIENTS_SQL, 1, p2, NULL, msg, sizeof msg);
        if (*fresh && rc == CM_OK)
            rc = exec_params(db, APPLY_OBJECTS_SQL, 1, p2, NULL, msg, sizeof msg);
    }
    if (rc == CM_OK)
        rc = exec_params(db, WATERMARK_SQL, 3, wm, NULL, msg, sizeof msg);
    if (rc == CM_OK) {
        cm_fault("flush:before_commit");
        rc = cm_pg_command(db, "COMMIT", msg, sizeof msg);
    }
    if (rc == CM_OK)
        cm_fault("flush:after_commit"); /* applied, not yet acknowledged */
    json_decref(doc);
    if (rc != CM_OK) {
        char ignored[64];
        cm_pg_command(db, "ROLLBACK", ignored, sizeof ignored);
        cm_fmt(err, errlen, "%s", msg);
    }
    return rc;
}

static int apply_heartbeat(PGconn *db, const char *source, const char *cutoff, bool final,
                           char *err, size_t errlen)
{
    uint64_t v;
    if (cm_parse_u64(cutoff, &v) != CM_OK)
        return cm_fmt(err, errlen, "malformed heartbeat"), CM_INVALID;
    const char *params[] = {source, cutoff, final ? "true" : "false"};
    return exec_params(db, WATERMARK_SQL, 3, params, NULL, err, errlen);
}

static const char *field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; fields != NULL && i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1]->str;
    return NULL;
}

static redisReply *command(struct meter_flusher *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->redis, fmt, ap);
    va_end(ap);
    if (r == NULL) {
        meter_stats_add(METER_REDIS_ERRORS, 1);
        redisFree(f->redis);
        f->redis = NULL;
    }
    return r;
}

/* Moves an entry the flusher can never apply aside (kept, not lost) and acknowledges it. */
static void dead_letter(struct meter_flusher *f, const char *id, const redisReply *fields,
                        const char *why)
{
    cm_log(CM_LOG_ERROR, "usage_entry_rejected", "stream_id=%s reason=\"%s\"", id, why);
    const char *body = field(fields, "body");
    redisReply *r = command(f, "XADD " METER_STREAM ":dead * stream_id %s reason %s body %s", id,
                            why, body ? body : "");
    if (r != NULL && r->type != REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        freeReplyObject(command(f, "XACK " METER_STREAM " " METER_GROUP " %s", id));
        return;
    }
    freeReplyObject(r);
}

/* Applies one stream entry and acknowledges it. CM_OK or CM_UNAVAIL. */
static int handle_entry(struct meter_flusher *f, const redisReply *entry, int *applied,
                        char *err, size_t errlen)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
        return CM_OK;
    const char *id = entry->element[0]->str;
    const redisReply *fields = entry->element[1];
    if (fields->type != REDIS_REPLY_ARRAY) /* deleted entry still pending: just ack it */
        return freeReplyObject(command(f, "XACK " METER_STREAM " " METER_GROUP " %s", id)),
               CM_OK;
    const char *type = field(fields, "type");
    char msg[512] = "";
    bool fresh = false;
    int rc;
    if (type != NULL && strcmp(type, "batch") == 0 && field(fields, "body") != NULL) {
        rc = apply_batch(f->db, field(fields, "body"), id, &fresh, msg, sizeof msg);
    } else if (type != NULL && strcmp(type, "hb") == 0 && field(fields, "source") &&
               field(fields, "cutoff")) {
        const char *fin = field(fields, "final");
        rc = apply_heartbeat(f->db, field(fields, "source"), field(fields, "cutoff"),
                             fin != NULL && strcmp(fin, "1") == 0, msg, sizeof msg);
    } else {
        rc = CM_INVALID;
        cm_copy(msg, sizeof msg, "unknown entry type");
    }
    if (rc == CM_INVALID) {
        dead_letter(f, id, fields, msg);
        return CM_OK;
    }
    if (rc != CM_OK) {
        cm_fmt(err, errlen, "PostgreSQL: %s", msg);
        return CM_UNAVAIL;
    }
    if (fresh) {
        (*applied)++;
        meter_stats_add(METER_FLUSHER_BATCHES, 1);
        meter_stats_set(METER_FLUSHER_LAST_BATCH, cm_now_us() / 1000000);
        cm_log(CM_LOG_DEBUG, "batch_applied", "stream_id=%s", id);
    } else if (type != NULL && strcmp(type, "batch") == 0) {
        meter_stats_add(METER_FLUSHER_DUPLICATES, 1);
    }
    redisReply *r = command(f, "XACK " METER_STREAM " " METER_GROUP " %s", id);
    freeReplyObject(r);
    return r != NULL ? CM_OK : CM_UNAVAIL; /* unacked: re-read later, applies as a no-op */
}

static int ensure_connections(struct meter_flusher *f, char *err, size_t errlen)
{
    if (f->db != NULL && PQstatus(f->db) != CONNECTION_OK) {
        PQfinish(f->db);
        f->db = NULL;
    }
    if (f->db == NULL && (f->db = cm_pg_connect(f->cfg->database_url, err, errlen)) == NULL)
        return CM_UNAVAIL;
    if (f->redis != NULL)
        return CM_OK;
    f->redis = meter_redis_connect(f->cfg->redis_url, 3000, err, errlen);
    if (f->redis == NULL)
        return CM_UNAVAIL;
    /* Never read another installation's usage: the Redis database must be ours. */
    f->claim_rc = meter_claim_redis(f->redis, f->db, f->installation, sizeof f->installation,
                                    err, errlen);
    if (f->claim_rc != CM_OK) {
        redisFree(f->redis);
        f->redis = NULL;
        return f->claim_rc == CM_UNAVAIL ? CM_UNAVAIL : CM_DENIED;
    }
    redisReply *r = command(f, "XGROUP CREATE " METER_STREAM " " METER_GROUP " 0 MKSTREAM");
    bool ok = r != NULL && (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "BUSYGROUP", 9) == 0);
    if (!ok)
        cm_fmt(err, errlen, "cannot create the consumer group: %s",
               r ? r->str : "connection lost");
    freeReplyObject(r);
    f->pending_first = true; /* a new connection may follow a crash mid-batch */
    return ok ? CM_OK : CM_UNAVAIL;
}

/* Claims entries idle too long in other (dead) consumers and trims acknowledged entries. */
/* Creates this month's and the next month's usage partitions ahead of the data (hourly
 * check), so applying a batch at a month's turn never waits on DDL. */
static void partitions_ahead(struct meter_flusher *f)
{
    if (cm_mono_ms() < f->partitions_at_ms)
        return;
    char err[256];
    if (cm_pg_command(f->db,
                      "SELECT hm_usage_partition(now()),"
                      " hm_usage_partition(now() + interval '1 month')",
                      err, sizeof err) != CM_OK) {
        cm_log(CM_LOG_WARN, "partition_create_failed", "error=\"%s\"", err);
        return;
    }
    f->partitions_at_ms = cm_mono_ms() + 3600 * 1000;
}

/* Rolls up the hours the watermark has passed (and hours late batches touched), and
 * closes the months the watermark passed by more than the grace period. */
static void rollup(struct meter_flusher *f)
{
    if (cm_mono_ms() < f->rollup_at_ms)
        return;
    f->rollup_at_ms = cm_mono_ms() + 60 * 1000;
    char err[256], wm[24], grace[24];
    int64_t complete;
    if (meter_complete_until(f->db, &complete, err, sizeof err) != CM_OK)
        return;
    int64_t lag = cm_now_us() / 1000000 - complete;
    meter_stats_set(METER_WATERMARK_LAG, lag > 0 ? lag : 0);
    cm_fmt(wm, sizeof wm, "%lld", (long long)complete);
    cm_fmt(grace, sizeof grace, "%u hours", f->cfg->month_close_grace_h);
    const char *params[] = {wm, grace};
    if (exec_params(f->db, "SELECT hm_rollup(to_timestamp($1::bigint), $2::interval)", 2, params,
                    NULL, err, sizeof err) != CM_OK)
        cm_log(CM_LOG_WARN, "rollup_failed", "error=\"%s\"", err);
    if (f->cfg->minute_retention_days == 0)
        return;
    char keep[32];
    cm_fmt(keep, sizeof keep, "%u days", f->cfg->minute_retention_days);
    const char *kp[] = {keep};
    if (exec_params(f->db, "SELECT hm_drop_old_minutes($1::interval)", 1, kp, NULL, err,
                    sizeof err) != CM_OK)
        cm_log(CM_LOG_WARN, "retention_failed", "error=\"%s\"", err);
}

static void housekeeping(struct meter_flusher *f)
{
    partitions_ahead(f);
    rollup(f);
    redisReply *r = command(f, "XAUTOCLAIM " METER_STREAM " " METER_GROUP " %s %u 0-0 COUNT %d",
                            f->consumer, f->cfg->flush_claim_idle_ms, READ_COUNT);
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[1]->elements > 0)
        f->pending_first = true;
    freeReplyObject(r);
    /* Oldest pending entry, or else the last delivered one: everything below is acked. */
    const char *min_id = NULL;
    redisReply *p = command(f, "XPENDING " METER_STREAM " " METER_GROUP);
    redisReply *g = NULL;
    if (p != NULL && p->type == REDIS_REPLY_ARRAY && p->elements >= 2 &&
        p->element[1]->type == REDIS_REPLY_STRING) {
        min_id = p->element[1]->str;
    } else if (p != NULL) {
        g = command(f, "XINFO GROUPS " METER_STREAM);
        for (size_t i = 0; g != NULL && g->type == REDIS_REPLY_ARRAY && i < g->elements; i++) {
            redisReply *grp = g->element[i];
            if (grp->type == REDIS_REPLY_ARRAY && field(grp, "name") &&
                strcmp(field(grp, "name"), METER_GROUP) == 0)
                min_id = field(grp, "last-delivered-id");
        }
    }
    if (min_id != NULL && strcmp(min_id, "0-0") != 0)
        freeReplyObject(command(f, "XTRIM " METER_STREAM " MINID %s", min_id));
    freeReplyObject(g);
    freeReplyObject(p);
}

int meter_flusher_step(struct meter_flusher *f, unsigned block_ms, int *applied, char *err,
                       size_t errlen)
{
    *applied = 0;
    int rc = ensure_connections(f, err, errlen);
    if (rc != CM_OK)
        return rc;
    if (cm_mono_ms() >= f->housekeeping_at_ms) {
        housekeeping(f);
        f->housekeeping_at_ms = cm_mono_ms() + HOUSEKEEPING_MS;
        if (f->redis == NULL)
            return cm_fmt(err, errlen, "Redis connection lost"), CM_UNAVAIL;
    }
    redisReply *r = f->pending_first
                        ? command(f, "XREADGROUP GROUP " METER_GROUP " %s COUNT %d STREAMS "
                                     METER_STREAM " 0", f->consumer, READ_COUNT)
                        : command(f, "XREADGROUP GROUP " METER_GROUP " %s COUNT %d BLOCK %u "
                                     "STREAMS " METER_STREAM " >", f->consumer, READ_COUNT,
                                  block_ms);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        cm_fmt(err, errlen, "Redis XREADGROUP: %s", r ? r->str : "connection lost");
        if (r != NULL && strncmp(r->str, "NOGROUP", 7) == 0) { /* stream deleted: recreate */
            redisFree(f->redis);
            f->redis = NULL;
        }
        freeReplyObject(r);
        return CM_UNAVAIL;
    }
    rc = CM_OK;
    size_t seen = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        redisReply *entries = r->element[0]->element[1];
        for (size_t i = 0; rc == CM_OK && i < entries->elements; i++, seen++)
            rc = handle_entry(f, entries->element[i], applied, err, errlen);
    }
    if (f->pending_first && rc == CM_OK && seen == 0)
        f->pending_first = false;
    if (rc != CM_OK)
        f->pending_first = true;
    freeReplyObject(r);
    return rc;
}

static void *flusher_main(void *arg)
{
    struct meter_flusher *f = arg;
    while (!atomic_load(&f->stop)) {
        char err[512];
        int applied;
        int rc = meter_flusher_step(f, 500, &applied, err, sizeof err);
        if (rc != CM_OK) {
            meter_stats_add(METER_FLUSHER_ERRORS, 1);
            bool due = f->failures++ % 30 == 0;
            if (due && rc == CM_DENIED) /* another installation's Redis, or not migrated */
                cm_log(CM_LOG_ERROR, meter_claim_event(f->claim_rc),
                       "component=flusher error=\"%s\"", err);
            else if (due)
                cm_log(CM_LOG_WARN, "flusher_unavailable", "error=\"%s\"", err);
            for (int i = 0; i < 10 && !atomic_load(&f->stop); i++)
                usleep(100 * 1000);
        } else if (f->failures > 0) {
            cm_log(CM_LOG_INFO, "flusher_available", "after_failures=%u", f->failures);
            f->failures = 0;
        }
    }
    /* Stopping: apply what is already in the stream (such as the gateway's last batch). */
    for (int i = 0; i < 20; i++) {
        char err[512];
        int applied;
        if (meter_flusher_step(f, 1, &applied, err, sizeof err) != CM_OK || applied == 0)
            break;
    }
    return NULL;
}

struct meter_flusher *meter_flusher_new(const struct hm_config *cfg, char *err, size_t errlen)
{
    struct meter_flusher *f = calloc(1, sizeof *f);
    if (f == NULL) {
        cm_fmt(err, errlen, "out of memory");
        return NULL;
    }
    f->cfg = cfg;
    f->pending_first = true;
    cm_fmt(f->consumer, sizeof f->consumer, "%s-%d", cfg->instance_id, (int)getpid());
    return f;
}

int meter_flusher_start(struct meter_flusher *f)
{
    if (pthread_create(&f->thread, NULL, flusher_main, f) != 0)
        return CM_ERR;
    f->started = true;
    cm_log(CM_LOG_INFO, "flusher_started", "consumer=%s", f->consumer);
    return CM_OK;
}

void meter_flusher_free(struct meter_flusher *f)
{
    if (f == NULL)
        return;
    atomic_store(&f->stop, true);
    if (f->started)
        pthread_join(f->thread, NULL);
    redisFree(f->redis);
    PQfinish(f->db);
    free(f);
}
