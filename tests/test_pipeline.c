/*
 * Integration tests of the usage path against real Redis and PostgreSQL: records go
 * through the shipper (batches with source-derived ids) into the Redis stream, and the
 * flusher applies each batch exactly once; usage queries read the result.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <string.h>
#include <unistd.h>

#include "meter/meter_int.h"
#include "tests/harness.h"

static struct hm_config cfg;

static void setup(void)
{
    char err[256];
    unsetenv("HUBMETER_DATABASE_URL");
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_OK);
    th_db_new(cfg.database_url, sizeof cfg.database_url);
    th_redis_new(cfg.redis_url, sizeof cfg.redis_url);
    cfg.ship_interval_ms = 100;
    char dir[] = "/tmp/hm-journal-XXXXXX";
    cr_assert(mkdtemp(dir) != NULL);
    cm_copy(cfg.journal_dir, sizeof cfg.journal_dir, dir);
    cm_copy(cfg.instance_id, sizeof cfg.instance_id, "test-gw");
}

/* Runs flusher steps until pred holds for the database, at most timeout_ms. */
static void flush_until(struct meter_flusher *f, PGconn *db, const char *sql, const char *want,
                        int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        int applied;
        char err[512];
        meter_flusher_step(f, 100, &applied, err, sizeof err);
        char *v = th_db_value(db, sql, 0, NULL);
        bool ok = v != NULL && strcmp(v, want) == 0;
        if (!ok && th_now_ms() > deadline)
            cr_assert_fail("%s gave %s, wanted %s", sql, v ? v : "NULL", want);
        free(v);
        if (ok)
            return;
    }
}

static void record(struct meter *m, int64_t org, int64_t key, const char *net, uint64_t bytes,
                   uint8_t sc)
{
    struct meter_record r = {.org_id = org, .key_id = key, .bytes = bytes, .status_class = sc};
    cm_copy(r.network, sizeof r.network, net);
    cm_copy(r.repo, sizeof r.repo, "acme/model");
    cm_copy(r.method, sizeof r.method, "GET");
    meter_record(m, &r);
}

Test(pipeline, every_recorded_byte_reaches_postgresql_exactly_once, .init = setup)
{
    char err[256];
    struct meter *m = meter_new(&cfg, err, sizeof err);
    cr_assert(m != NULL, "%s", err);
    uint64_t want = 0;
    for (int i = 0; i < 500; i++) {
        record(m, 1, 1, "", 1000003ull * (uint64_t)i, 2);
        want += 1000003ull * (uint64_t)i;
        if (i % 100 == 0)
            usleep(150 * 1000); /* spread over several batches */
    }
    record(m, 0, 0, "192.0.2.0/24", 77, 2);
    record(m, 1, 1, "", 0, 4);
    meter_free(m);

    PGconn *db = th_db_connect(cfg.database_url);
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    char sql[256], expect[64];
    snprintf(expect, sizeof expect, "%llu|501", (unsigned long long)want);
    snprintf(sql, sizeof sql, "SELECT sum(bytes) || '|' || sum(requests) FROM usage_minute"
                              " WHERE org_id = 1");
    flush_until(f, db, sql, expect, 10000);
    char *anon = th_db_value(db, "SELECT bytes::text FROM usage_minute WHERE org_id IS NULL"
                                 " AND network = '192.0.2.0/24'", 0, NULL);
    cr_assert_str_eq(anon, "77");
    free(anon);
    char *refused = th_db_value(db, "SELECT requests::text FROM usage_minute WHERE"
                                    " status_class = 4", 0, NULL);
    cr_assert_str_eq(refused, "1");
    free(refused);
    /* Batch ids are derived at the source: instance, boot, sequence. */
    char *ids = th_db_value(db, "SELECT count(*) FILTER (WHERE batch_id LIKE 'test-gw:%:%')"
                                " = count(*) AND count(*) >= 2 FROM applied_batches", 0, NULL);
    cr_assert_str_eq(ids, "t");
    free(ids);
    /* The gateway stopped cleanly: its watermark says so. */
    flush_until(f, db, "SELECT bool_or(running)::text FROM gateway_watermarks", "false", 5000);
    meter_flusher_free(f);
    PQfinish(db);
}

static redisContext *redis_for(const char *url)
{
    char err[256];
    redisContext *c = meter_redis_connect(url, 2000, err, sizeof err);
    cr_assert(c != NULL, "%s", err);
    return c;
}

Test(pipeline, a_batch_delivered_twice_is_applied_once, .init = setup)
{
    const char *body = "{\"v\":1,\"id\":\"gw-x:1:1\",\"source\":\"gw-x:1\",\"cutoff\":1793491300000,"
                       "\"rows\":[{\"m\":1793491200,\"org\":5,\"key\":9,\"net\":null,"
                       "\"repo\":\"a/b\",\"method\":\"GET\",\"sc\":2,\"refused\":\"\","
                       "\"req\":3,\"bytes\":4096}]}";
    redisContext *c = redis_for(cfg.redis_url);
    for (int i = 0; i < 2; i++) /* a re-ship after a lost reply looks exactly like this */
        freeReplyObject(redisCommand(c, "XADD " METER_STREAM " * type batch id gw-x:1:1 body %s",
                                     body));
    char err[256];
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    PGconn *db = th_db_connect(cfg.database_url);
    flush_until(f, db, "SELECT count(*)::text FROM applied_batches", "1", 5000);
    int applied = 0;
    for (int i = 0; i < 3; i++)
        meter_flusher_step(f, 50, &applied, err, sizeof err);
    char *v = th_db_value(db, "SELECT bytes || '|' || requests FROM usage_minute", 0, NULL);
    cr_assert_str_eq(v, "4096|3");
    free(v);
    redisReply *p = redisCommand(c, "XPENDING " METER_STREAM " " METER_GROUP);
    cr_assert_eq(p->element[0]->integer, 0, "both entries are acknowledged");
    freeReplyObject(p);
    redisFree(c);
    meter_flusher_free(f);
    PQfinish(db);
}

Test(pipeline, a_malformed_entry_is_set_aside_not_lost_and_does_not_block, .init = setup)
{
    redisContext *c = redis_for(cfg.redis_url);
    freeReplyObject(redisCommand(c, "XADD " METER_STREAM " * type batch id bad body %s", "{nope"));
    freeReplyObject(redisCommand(
        c, "XADD " METER_STREAM " * type batch id gw-y:1:1 body %s",
        "{\"v\":1,\"id\":\"gw-y:1:1\",\"source\":\"gw-y:1\",\"cutoff\":1,\"rows\":[]}"));
    char err[256];
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    PGconn *db = th_db_connect(cfg.database_url);
    flush_until(f, db, "SELECT count(*)::text FROM applied_batches", "1", 5000);
    redisReply *r = redisCommand(c, "XLEN " METER_STREAM ":dead");
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);
    meter_flusher_free(f);
    PQfinish(db);
}

Test(pipeline, the_flusher_waits_for_redis_and_reports_it_unavailable, .init = setup)
{
    cm_copy(cfg.redis_url, sizeof cfg.redis_url, "redis://127.0.0.1:1/0");
    char err[256];
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    int applied;
    cr_assert_eq(meter_flusher_step(f, 10, &applied, err, sizeof err), CM_UNAVAIL);
    cr_assert(strstr(err, "Redis") != NULL, "%s", err);
    meter_flusher_free(f);
}

/* A database without the installation's id (not migrated to 011): the flusher reads
 * nothing and says what to run; the Redis database is not claimed for anyone. */
Test(pipeline, the_flusher_of_an_unmigrated_database_reads_nothing_and_says_to_migrate,
     .init = setup)
{
    PGconn *db = th_db_connect(cfg.database_url);
    char err[512];
    cr_assert_eq(cm_pg_command(db, "DROP TABLE installation", err, sizeof err), CM_OK, "%s", err);
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    int applied;
    cr_assert_eq(meter_flusher_step(f, 10, &applied, err, sizeof err), CM_DENIED);
    cr_assert(strstr(err, "hubmeter migrate") != NULL, "%s", err);
    meter_flusher_free(f);
    redisContext *c = meter_redis_connect(cfg.redis_url, 1000, err, sizeof err);
    cr_assert(c != NULL, "%s", err);
    redisReply *r = redisCommand(c, "EXISTS hm:installation");
    cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
    freeReplyObject(r);
    r = redisCommand(c, "EXISTS " METER_STREAM);
    cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0,
              "no consumer group (nor stream) made for an unknown installation");
    freeReplyObject(r);
    redisFree(c);
    PQfinish(db);
}

static void insert_usage(PGconn *db, const char *bucket, const char *org, const char *bytes,
                         const char *refused)
{
    const char *params[] = {bucket, org, bytes, refused};
    PQclear(PQexecParams(db, "SELECT hm_usage_partition($1::timestamptz)", 1, NULL, params, NULL,
                         NULL, 0));
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO usage_minute (bucket, org_id, key_id, repo, method,"
                                 " status_class, refused_by, requests, bytes) VALUES ($1, $2, 1,"
                                 " 'a/b', 'GET', 2, $4, 2, $3)",
                                 4, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(db));
    PQclear(res);
}

Test(usage_query, series_and_totals_cover_the_range_by_granularity, .init = setup)
{
    PGconn *db = th_db_connect(cfg.database_url);
    insert_usage(db, "2026-10-31T23:59:00Z", "3", "1", ""); /* before the range */
    insert_usage(db, "2026-11-01T00:00:00Z", "3", "100", "");
    insert_usage(db, "2026-11-01T13:07:00Z", "3", "200", "");
    insert_usage(db, "2026-11-03T08:00:00Z", "3", "0", "requests");
    insert_usage(db, "2026-11-03T09:00:00Z", "4", "999", ""); /* another org */
    insert_usage(db, "2026-12-01T00:00:00Z", "3", "1", "");   /* after the range */
    struct meter_usage_query q = {.org_id = 3, .granularity = "day"};
    cm_time_parse("2026-11-01T00:00:00Z", 20, &q.from);
    cm_time_parse("2026-12-01T00:00:00Z", 20, &q.to);
    json_t *doc;
    char err[256];
    cr_assert_eq(meter_usage_query(db, &q, &doc, err, sizeof err), CM_OK, "%s", err);
    json_t *totals = json_object_get(doc, "totals");
    cr_assert_eq(json_integer_value(json_object_get(totals, "bytes")), 300);
    cr_assert_eq(json_integer_value(json_object_get(totals, "requests")), 6);
    cr_assert_eq(json_integer_value(json_object_get(totals, "refused")), 2);
    json_t *series = json_object_get(doc, "series");
    cr_assert_eq(json_array_size(series), 30, "one point per day of November");
    json_t *d1 = json_array_get(series, 0), *d3 = json_array_get(series, 2);
    cr_assert_str_eq(json_string_value(json_object_get(d1, "start")), "2026-11-01T00:00:00Z");
    cr_assert_eq(json_integer_value(json_object_get(d1, "bytes")), 300);
    cr_assert_eq(json_integer_value(json_object_get(d3, "refused")), 2);
    cr_assert(json_is_string(json_object_get(doc, "complete_until")));
    json_decref(doc);

    cm_copy(q.granularity, sizeof q.granularity, "month");
    cr_assert_eq(meter_usage_query(db, &q, &doc, err, sizeof err), CM_OK, "%s", err);
    cr_assert_eq(json_array_size(json_object_get(doc, "series")), 1);
    json_decref(doc);
    PQfinish(db);
}

Test(usage_query, bad_ranges_are_refused_with_a_reason, .init = setup)
{
    PGconn *db = th_db_connect(cfg.database_url);
    json_t *doc;
    char err[256];
    struct meter_usage_query q = {.org_id = 1, .granularity = "week"};
    cm_time_parse("2026-11-01T00:00:00Z", 20, &q.from);
    cm_time_parse("2026-12-01T00:00:00Z", 20, &q.to);
    cr_assert_eq(meter_usage_query(db, &q, &doc, err, sizeof err), CM_INVALID);
    cm_copy(q.granularity, sizeof q.granularity, "minute"); /* 43200 buckets */
    cr_assert_eq(meter_usage_query(db, &q, &doc, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, "buckets") != NULL, "%s", err);
    cm_copy(q.granularity, sizeof q.granularity, "hour");
    q.from += 30;
    cr_assert_eq(meter_usage_query(db, &q, &doc, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, "aligned") != NULL, "%s", err);
    q.from = q.to;
    cr_assert_eq(meter_usage_query(db, &q, &doc, err, sizeof err), CM_INVALID);
    PQfinish(db);
}

Test(pipeline, the_flusher_creates_this_and_next_months_partitions_ahead, .init = setup)
{
    char err[256];
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    int applied;
    cr_assert_eq(meter_flusher_step(f, 10, &applied, err, sizeof err), CM_OK, "%s", err);
    PGconn *db = th_db_connect(cfg.database_url);
    char *v = th_db_value(db, "SELECT count(*)::text FROM pg_inherits WHERE inhparent ="
                              " 'usage_minute'::regclass AND inhrelid::regclass::text IN ("
                              " 'usage_minute_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM'),"
                              " 'usage_minute_' || to_char((now() + interval '1 month')"
                              " AT TIME ZONE 'UTC', 'YYYYMM'))", 0, NULL);
    cr_assert_str_eq(v, "2");
    free(v);
    PQfinish(db);
    meter_flusher_free(f);
}

static char *q(PGconn *db, const char *sql) { return th_db_value(db, sql, 0, NULL); }

Test(history, rollups_recompute_and_replace_and_follow_late_batches, .init = setup)
{
    /* The flusher also rolls up by the real clock: keep October 2026 open for this test. */
    cfg.month_close_grace_h = 24 * 366;
    PGconn *db = th_db_connect(cfg.database_url);
    insert_usage(db, "2026-10-05T10:01:00Z", "3", "100", "");
    insert_usage(db, "2026-10-05T10:59:00Z", "3", "50", "");
    insert_usage(db, "2026-10-06T08:00:00Z", "3", "7", "");
    const char *roll = "SELECT hm_rollup('2026-10-07T00:00:00Z', '72 hours')::text";
    char *v = q(db, roll);
    free(v);
    v = q(db, "SELECT bytes::text FROM usage_hourly WHERE bucket = '2026-10-05T10:00:00Z'");
    cr_assert_str_eq(v, "150");
    free(v);
    v = q(db, "SELECT sum(bytes)::text FROM usage_monthly WHERE bucket = '2026-10-01T00:00:00Z'");
    cr_assert_str_eq(v, "157");
    free(v);
    v = q(db, roll); /* nothing new: a rerun changes nothing */
    cr_assert_str_eq(v, "0");
    free(v);
    v = q(db, "SELECT sum(bytes)::text FROM usage_daily");
    cr_assert_str_eq(v, "157");
    free(v);
    /* A late batch for an hour already rolled up marks it; the next rollup recomputes it. */
    redisContext *c = redis_for(cfg.redis_url);
    freeReplyObject(redisCommand(
        c, "XADD " METER_STREAM " * type batch id late:1:1 body %s",
        "{\"v\":1,\"id\":\"late:1:1\",\"source\":\"late:1\",\"cutoff\":1,\"rows\":[{\"m\":"
        "1791194460,\"org\":3,\"key\":1,\"net\":null,\"repo\":\"a/b\",\"method\":\"GET\","
        "\"sc\":2,\"refused\":\"\",\"req\":1,\"bytes\":1000}]}"));
    redisFree(c);
    char err[256];
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    flush_until(f, db, "SELECT count(*)::text FROM rollup_dirty", "1", 5000);
    meter_flusher_free(f);
    v = q(db, roll);
    free(v);
    v = q(db, "SELECT sum(bytes)::text FROM usage_monthly WHERE bucket = '2026-10-01T00:00:00Z'");
    cr_assert_str_eq(v, "1157");
    free(v);
    PQfinish(db);
}

Test(history, late_usage_for_a_closed_month_becomes_an_adjustment, .init = setup)
{
    PGconn *db = th_db_connect(cfg.database_url);
    insert_usage(db, "2026-09-10T00:00:00Z", "4", "10", "");
    /* The watermark is 72 h past the end of September: September closes. */
    free(q(db, "SELECT hm_rollup('2026-10-04T01:00:00Z', '72 hours')"));
    char *v = q(db, "SELECT count(*)::text FROM closed_months WHERE month = '2026-09-01T00:00:00Z'");
    cr_assert_str_eq(v, "1");
    free(v);
    redisContext *c = redis_for(cfg.redis_url);
    freeReplyObject(redisCommand(
        c, "XADD " METER_STREAM " * type batch id late:2:1 body %s",
        "{\"v\":1,\"id\":\"late:2:1\",\"source\":\"late:2\",\"cutoff\":1,\"rows\":[{\"m\":"
        "1789603200,\"org\":4,\"key\":1,\"net\":null,\"repo\":\"a/b\",\"method\":\"GET\","
        "\"sc\":2,\"refused\":\"\",\"req\":1,\"bytes\":500}]}"));
    redisFree(c);
    char err[256];
    struct meter_flusher *f = meter_flusher_new(&cfg, err, sizeof err);
    flush_until(f, db, "SELECT count(*)::text FROM applied_batches", "1", 5000);
    meter_flusher_free(f);
    v = q(db, "SELECT bytes || '|' || reason || '|' || source FROM usage_adjustments");
    cr_assert_str_eq(v, "500|late usage for a closed month|late:2:1");
    free(v);
    v = q(db, "SELECT sum(bytes)::text FROM usage_minute WHERE org_id = 4");
    cr_assert_str_eq(v, "10", "a closed month is never rewritten");
    free(v);
    struct meter_usage_query uq = {.org_id = 4, .granularity = "month"};
    cm_time_parse("2026-09-01T00:00:00Z", 20, &uq.from);
    cm_time_parse("2026-10-01T00:00:00Z", 20, &uq.to);
    json_t *doc;
    cr_assert_eq(meter_usage_query(db, &uq, &doc, err, sizeof err), CM_OK, "%s", err);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "totals"), "bytes")), 510);
    json_decref(doc);
    PQfinish(db);
}

Test(history, an_operators_correction_counts_in_every_total, .init = setup)
{
    char env_db[CM_URL_MAX + 32];
    snprintf(env_db, sizeof env_db, "HUBMETER_DATABASE_URL=%s", cfg.database_url);
    const char *env[] = {env_db, NULL};
    struct th_run r;
    th_hubmeter(&r, env, (const char *[]){"orgs", "create", "acme", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    PGconn *db = th_db_connect(cfg.database_url);
    char *org = q(db, "SELECT id::text FROM orgs WHERE slug = 'acme'");
    insert_usage(db, "2026-11-02T00:00:00Z", org, "1000", "");
    th_hubmeter(&r, env, (const char *[]){"usage", "adjust", "acme", "--bytes", "-300", "--at",
                                          "2026-11-02T12:00:00Z", "--reason",
                                          "refund: mirror outage", "--author", "ops@hub", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env, (const char *[]){"usage", "adjust", "acme", "--bytes", "5", NULL});
    cr_assert_eq(r.status, 2, "a correction without reason and author is refused");
    struct meter_usage_query uq = {.org_id = strtoll(org, NULL, 10), .granularity = "day"};
    cm_time_parse("2026-11-01T00:00:00Z", 20, &uq.from);
    cm_time_parse("2026-12-01T00:00:00Z", 20, &uq.to);
    json_t *doc;
    char err[256];
    cr_assert_eq(meter_usage_query(db, &uq, &doc, err, sizeof err), CM_OK, "%s", err);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "totals"), "bytes")), 700);
    json_decref(doc);
    free(org);
    PQfinish(db);
}

Test(history, old_minute_partitions_go_and_their_usage_stays_readable, .init = setup)
{
    PGconn *db = th_db_connect(cfg.database_url);
    insert_usage(db, "2026-10-30T10:00:00Z", "9", "42", "");
    free(q(db, "SELECT hm_rollup(now(), '72 hours')"));
    char *v = q(db, "SELECT hm_drop_old_minutes('1 day')::text");
    cr_assert_str_eq(v, "1", "October's minute partition is dropped");
    free(v);
    v = q(db, "SELECT count(*)::text FROM pg_class WHERE relname = 'usage_minute_202610'");
    cr_assert_str_eq(v, "0");
    free(v);
    v = q(db, "SELECT hm_drop_old_minutes('1 day')::text"); /* this month stays */
    cr_assert_str_eq(v, "0");
    free(v);
    struct meter_usage_query uq = {.org_id = 9, .granularity = "day", .minute_retention_days = 1};
    cm_time_parse("2026-10-01T00:00:00Z", 20, &uq.from);
    cm_time_parse("2026-11-01T00:00:00Z", 20, &uq.to);
    json_t *doc;
    char err[256];
    cr_assert_eq(meter_usage_query(db, &uq, &doc, err, sizeof err), CM_OK, "%s", err);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "totals"), "bytes")), 42,
                 "read from the hourly rollup");
    json_decref(doc);
    cm_copy(uq.granularity, sizeof uq.granularity, "minute");
    uq.to = uq.from + 86400;
    cr_assert_eq(meter_usage_query(db, &uq, &doc, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, "kept for 1 days") != NULL, "%s", err);
    PQfinish(db);
}
