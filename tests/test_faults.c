/*
 * The fault suite: a known workload whose client counts every byte it received, real
 * processes killed on purpose (kill -9, or HUBMETER_FAULT points that make a process
 * kill itself at a named place), real Redis restarted empty, and afterwards PostgreSQL
 * must hold exactly the bytes and requests the client saw — no loss, no double count.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

static char db_url[512], redis_url[256], journal[128];
static char env_db[600], env_redis[300], env_up[600], env_journal[200];
static char auth[200]; /* "Authorization: Bearer <acme's key>" */
static struct th_gateway gw;

/* Creates the org acme with a key in the database named by database ("HUBMETER_DATABASE_URL=…")
 * and writes the key's Authorization header into header. */
static void acme_with_key(const char *database, char *header, size_t len)
{
    const char *env[] = {database, NULL};
    struct th_run r;
    th_hubmeter(&r, env, (const char *[]){"orgs", "create", "acme", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env, (const char *[]){"keys", "create", "acme", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    char k[128];
    th_last_line(r.out, k, sizeof k);
    snprintf(header, len, "Authorization: Bearer %s", k);
}

/* A database, a Redis, an org with a key and a journal directory; no gateway yet. */
static void setup(void)
{
    th_db_new(db_url, sizeof db_url);
    th_redis_new(redis_url, sizeof redis_url);
    snprintf(journal, sizeof journal, "/tmp/hm-fault-journal-%d", (int)getpid());
    snprintf(env_db, sizeof env_db, "HUBMETER_DATABASE_URL=%s", db_url);
    snprintf(env_redis, sizeof env_redis, "HUBMETER_REDIS_URL=%s", redis_url);
    snprintf(env_up, sizeof env_up, "HUBMETER_UPSTREAM=file://%s", th_env("HM_TEST_WWW"));
    snprintf(env_journal, sizeof env_journal, "HUBMETER_JOURNAL_DIR=%s", journal);
    acme_with_key(env_db, auth, sizeof auth);
}

static void start_gateway(const char *flusher)
{
    const char *env[] = {env_db, env_redis, env_up, env_journal, flusher, NULL};
    th_gateway_start(&gw, env);
}

/* n keyed downloads of config.json; returns the body bytes the client received. */
static uint64_t workload(int n)
{
    char u[256];
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/config.json", gw.base);
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++) {
        struct th_response r;
        th_http("GET", u, (const char *[]){auth, NULL}, &r);
        cr_assert_eq(r.status, 200);
        bytes += r.body_len;
        th_response_free(&r);
    }
    return bytes;
}

/* Waits until the gateway has logged (and so journaled) n downloads of acme/model. */
static void wait_logged(int n)
{
    int64_t deadline = th_now_ms() + 10000;
    for (;;) {
        static char log[1 << 20];
        FILE *f = fopen(gw.log, "r");
        size_t len = f ? fread(log, 1, sizeof log - 1, f) : 0;
        if (f)
            fclose(f);
        log[len] = '\0';
        int count = 0;
        for (char *p = log; (p = strstr(p, "repo=acme/model ")) != NULL; p++)
            count++;
        if (count >= n)
            return;
        cr_assert(th_now_ms() < deadline, "only %d of %d requests logged", count, n);
        usleep(20 * 1000);
    }
}

/* "bytes|requests" of the usage db holds (a new string). */
static char *usage_in(PGconn *db)
{
    return th_db_value(db, "SELECT coalesce(sum(bytes), 0) || '|' || coalesce(sum(requests), 0)"
                           " FROM usage_minute WHERE org_id IS NOT NULL", 0, NULL);
}

/* Runs `hubmeter flush` processes until PostgreSQL holds exactly bytes/requests. */
static void assert_exact(uint64_t bytes, int requests, bool run_flusher)
{
    pid_t flusher = 0;
    char log[128];
    snprintf(log, sizeof log, "/tmp/hm-flush-%d.log", (int)getpid());
    if (run_flusher) {
        const char *env[] = {env_db, env_redis, "HUBMETER_FLUSH_CLAIM_IDLE_MS=300", NULL};
        flusher = th_spawn((const char *[]){"flush", NULL}, env, log);
    }
    PGconn *db = th_db_connect(db_url);
    char want[64];
    snprintf(want, sizeof want, "%llu|%d", (unsigned long long)bytes, requests);
    int64_t deadline = th_now_ms() + 20000;
    char *v = NULL;
    for (;;) {
        free(v);
        v = usage_in(db);
        if (strcmp(v, want) == 0 || th_now_ms() > deadline)
            break;
        usleep(100 * 1000);
    }
    /* Hold on a little: a double count would show up now. */
    usleep(1500 * 1000);
    free(v);
    v = usage_in(db);
    cr_assert_str_eq(v, want, "PostgreSQL holds bytes|requests %s, the client saw %s", v, want);
    free(v);
    PQfinish(db);
    if (flusher > 0) {
        kill(flusher, SIGTERM);
        cr_assert_eq(th_wait(flusher, 15000), 0, "the flusher did not stop cleanly");
        cr_assert(!th_file_contains(log, "Sanitizer"), "sanitizer report from the flusher");
    }
}

Test(faults, a_gateway_killed_mid_workload_loses_no_finished_request, .init = setup,
     .timeout = 120)
{
    start_gateway(NULL);
    uint64_t bytes = workload(60);
    wait_logged(60);
    kill(gw.pid, SIGKILL); /* no shutdown, no final shipment */
    cr_assert_eq(th_wait(gw.pid, 5000), 128 + SIGKILL);
    gw.pid = 0;
    start_gateway(NULL); /* the same journal: what was not applied is shipped again */
    bytes += workload(40);
    assert_exact(bytes, 100, false);
    th_gateway_stop(&gw);
    cr_assert(th_log_contains(&gw, "journal_recovered"), "the restart replayed the journal");
    /* The reconciliation agrees, and notices a row changed behind its back. */
    const char *env[] = {env_db, env_redis, env_journal, NULL};
    struct th_run r;
    th_hubmeter(&r, env, (const char *[]){"usage", "reconcile", "--json", NULL});
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    json_t *doc = json_loads(r.out, 0, NULL);
    cr_assert(json_is_true(json_object_get(doc, "consistent")), "%s", r.out);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "journal"),
                                                    "bytes_not_yet_applied")), 0, "%s", r.out);
    json_decref(doc);
    PGconn *db = th_db_connect(db_url);
    /* A row no batch accounts for (written behind the pipeline's back). */
    PQclear(PQexec(db, "INSERT INTO usage_minute (bucket, org_id, method, status_class,"
                       " requests, bytes) VALUES (date_trunc('minute', now()), 1, 'GET', 2, 0, 1)"));
    PQfinish(db);
    th_hubmeter(&r, env, (const char *[]){"usage", "reconcile", NULL});
    cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
    cr_assert(strstr(r.out, "DIFFERENT") != NULL, "%s", r.out);
}

static void flusher_killed_at(const char *point)
{
    start_gateway("HUBMETER_FLUSHER=off");
    uint64_t bytes = workload(50);
    char log[128], fault[64];
    snprintf(log, sizeof log, "/tmp/hm-faulty-flush-%d.log", (int)getpid());
    snprintf(fault, sizeof fault, "HUBMETER_FAULT=%s", point);
    const char *env[] = {env_db, env_redis, fault, NULL};
    /* Batches reach the stream within the ship interval; the flusher dies on the first. */
    pid_t f = th_spawn((const char *[]){"flush", NULL}, env, log);
    int status = th_wait(f, 20000);
    char shipped[64] = "?";
    if (status == -1) { /* not left running when the test fails; what the gateway shipped */
        kill(f, SIGKILL);
        th_wait(f, 5000);
        char u[256];
        snprintf(u, sizeof u, "%s/-/metrics", gw.base);
        struct th_response m;
        th_http("GET", u, NULL, &m);
        const char *at = m.body ? strstr(m.body, "\nhubmeter_shipper_batches_total ") : NULL;
        if (at != NULL)
            snprintf(shipped, sizeof shipped, "%.20s", at + 32);
        th_response_free(&m);
    }
    cr_assert_eq(status, 128 + SIGKILL, "the flusher did not reach %s (batches shipped: %s)",
                 point, shipped);
    char reached[96];
    snprintf(reached, sizeof reached, "point=%s", point);
    cr_assert(th_file_contains(log, reached));
    assert_exact(bytes, 50, true); /* a new flusher claims the dead one's pending batch */
    th_gateway_stop(&gw);
}

Test(faults, a_flusher_killed_before_commit_loses_nothing, .init = setup, .timeout = 120)
{
    flusher_killed_at("flush:before_commit");
}

Test(faults, a_flusher_killed_after_commit_before_ack_counts_nothing_twice, .init = setup,
     .timeout = 120)
{
    flusher_killed_at("flush:after_commit");
}

Test(faults, two_flushers_at_once_apply_each_batch_once, .init = setup, .timeout = 120)
{
    start_gateway("HUBMETER_FLUSHER=off");
    char log[128];
    snprintf(log, sizeof log, "/tmp/hm-flush2-%d.log", (int)getpid());
    const char *env[] = {env_db, env_redis, "HUBMETER_FLUSH_CLAIM_IDLE_MS=300", NULL};
    pid_t other = th_spawn((const char *[]){"flush", NULL}, env, log);
    uint64_t bytes = workload(80);
    assert_exact(bytes, 80, true);
    kill(other, SIGTERM);
    cr_assert_eq(th_wait(other, 15000), 0);
    th_gateway_stop(&gw);
}

/* Redis away for 30 s mid-workload (downloads go on), then back with or without its data. */
static void redis_outage(bool keep_data)
{
    int port = th_free_port();
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/hm-fault-redis-%d", (int)getpid());
    pid_t redis = th_redis_private(port, dir, false); /* clean, then with an append-only file */
    th_redis_kill(redis);
    redis = th_redis_private(port, dir, true);
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d/0", port);
    snprintf(env_redis, sizeof env_redis, "HUBMETER_REDIS_URL=%s", redis_url);
    /* No flusher yet: what is shipped sits in the stream only. */
    start_gateway("HUBMETER_FLUSHER=off");
    uint64_t bytes = workload(30);
    wait_logged(30);
    usleep(800 * 1000); /* shipped to Redis */
    th_redis_kill(redis);
    int requests = 30;
    int64_t until = th_now_ms() + 30000;
    while (th_now_ms() < until) { /* served while Redis is away: kept in the journal */
        bytes += workload(5);
        requests += 5;
        usleep(500 * 1000);
    }
    redis = th_redis_private(port, dir, keep_data);
    bytes += workload(10);
    assert_exact(bytes, requests + 10, true);
    th_gateway_stop(&gw);
    cr_assert(th_log_contains(&gw, "redis_unavailable"));
    if (!keep_data)
        cr_assert(th_log_contains(&gw, "redis_restarted"));
    th_redis_kill(redis);
}

Test(faults, redis_away_30_s_and_back_empty_loses_nothing_the_journal_holds, .init = setup,
     .timeout = 180)
{
    redis_outage(false);
}

Test(faults, redis_away_30_s_and_back_with_its_data_counts_nothing_twice, .init = setup,
     .timeout = 180)
{
    redis_outage(true);
}

struct slow_download {
    char url[256];
    _Atomic uint64_t received;
};

static void *download(void *arg)
{
    struct slow_download *d = arg;
    th_http_slow(d->url, (const char *[]){auth, NULL}, 4 << 20, &d->received);
    return NULL;
}

static void start_gateway_nginx(void)
{
    setup();
    snprintf(env_up, sizeof env_up, "HUBMETER_UPSTREAM=%s", th_env("HM_TEST_NGINX_URL"));
}

/* A 64 MiB download at 4 MiB/s, the gateway killed after about 10 MiB. */
static void assert_kill_mid_download(void)
{
    start_gateway(NULL);
    static struct slow_download d;
    snprintf(d.url, sizeof d.url, "%s/acme/model/resolve/main/big.bin", gw.base);
    pthread_t t;
    pthread_create(&t, NULL, download, &d);
    usleep(2500 * 1000); /* about 10 MiB at 4 MiB/s */
    kill(gw.pid, SIGKILL);
    cr_assert_eq(th_wait(gw.pid, 5000), 128 + SIGKILL);
    gw.pid = 0;
    pthread_join(t, NULL);
    uint64_t received = atomic_load(&d.received);
    cr_assert(received > (4u << 20) && received < (64u << 20), "received %llu",
              (unsigned long long)received);
    start_gateway(NULL); /* replays the journal: the checkpoints are in it */
    PGconn *db = th_db_connect(db_url);
    int64_t deadline = th_now_ms() + 15000;
    uint64_t counted = 0;
    char *reqs = NULL;
    while (th_now_ms() < deadline) {
        char *v = th_db_value(db, "SELECT coalesce(sum(bytes), 0)::text FROM usage_minute", 0,
                              NULL);
        counted = strtoull(v, NULL, 10);
        free(v);
        if (counted + (5u << 20) + (64u << 10) >= received)
            break;
        usleep(100 * 1000);
    }
    reqs = th_db_value(db, "SELECT coalesce(sum(requests), 0)::text FROM usage_minute", 0, NULL);
    PQfinish(db);
    /* Bound (README): never more than received; at most one checkpoint interval (1 MiB)
     * plus what sat unacknowledged in the kernel's send buffer (which the kernel still
     * delivered after the process died; tcp_wmem max here: 4 MiB) below it. */
    cr_assert(counted + (5u << 20) + (64u << 10) >= received && counted <= received + (64u << 10),
              "the client received %llu bytes; the meter counted %llu",
              (unsigned long long)received, (unsigned long long)counted);
    cr_assert_str_eq(reqs, "1", "the interrupted download counts as one request");
    free(reqs);
    th_gateway_stop(&gw);
}

Test(faults, a_download_cut_by_a_gateway_kill_is_counted_to_its_last_checkpoint,
     .init = start_gateway_nginx, .timeout = 120)
{
    assert_kill_mid_download();
}

Test(faults, a_file_download_cut_by_a_gateway_kill_is_counted_to_its_last_checkpoint,
     .init = setup, .timeout = 120)
{
    assert_kill_mid_download();
}

Test(faults, a_full_journal_raises_the_alarm_and_keeps_counting, .init = setup, .timeout = 60)
{
    start_gateway("HUBMETER_JOURNAL_MAX_BYTES=1");
    uint64_t bytes = workload(10);
    assert_exact(bytes, 10, false);
    char u[256];
    snprintf(u, sizeof u, "%s/-/metrics", gw.base);
    struct th_response r;
    th_http("GET", u, NULL, &r);
    cr_assert(strstr(r.body, "hubmeter_journal_skipped_records_total 9\n") != NULL, "%s", r.body);
    th_response_free(&r);
    cr_assert(th_log_contains(&gw, "event=journal_full"));
    th_gateway_stop(&gw);
}

static void database_connections(const char *allow)
{
    PGconn *admin = th_db_connect(th_env("HM_TEST_PG_URL"));
    const char *name = strrchr(db_url, '/') + 1;
    char sql[256];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS %s", name, allow);
    PQclear(PQexec(admin, sql));
    if (strcmp(allow, "false") == 0) {
        const char *params[] = {name};
        PQclear(PQexecParams(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                    " WHERE datname = $1", 1, NULL, params, NULL, NULL, 0));
    }
    PQfinish(admin);
}

Test(faults, a_30_second_postgresql_outage_loses_nothing, .init = setup, .timeout = 180)
{
    start_gateway(NULL);
    uint64_t bytes = workload(20);
    database_connections("false"); /* the database is gone for every client */
    int64_t until = th_now_ms() + 30000;
    int requests = 20;
    while (th_now_ms() < until) { /* known keys keep working meanwhile */
        bytes += workload(5);
        requests += 5;
        usleep(500 * 1000);
    }
    cr_assert(th_log_contains(&gw, "served_stale=yes"));
    database_connections("true");
    bytes += workload(10);
    assert_exact(bytes, requests + 10, false);
    th_gateway_stop(&gw);
}

/* Two installations (say staging and production) given the same Redis database: the
 * second one must neither ship its usage into the first one's stream nor apply the first
 * one's usage to its own database. It says why, keeps its usage in its journal, and ships
 * it all once it has a Redis database of its own. */
Test(faults, a_second_installation_on_the_same_redis_database_mixes_no_usage, .init = setup,
     .timeout = 120)
{
    start_gateway(NULL);
    uint64_t bytes = workload(10);
    assert_exact(bytes, 10, false);
    /* Installation B: its own database (a new installation id), the same Redis database. */
    char db_b[512], env_db_b[600], journal_b[160], env_journal_b[200], auth_a[200];
    th_db_new(db_b, sizeof db_b);
    PGconn *b = th_db_connect(db_b);
    free(th_db_value(b, "UPDATE installation SET id = gen_random_uuid() RETURNING id", 0, NULL));
    snprintf(env_db_b, sizeof env_db_b, "HUBMETER_DATABASE_URL=%s", db_b);
    snprintf(journal_b, sizeof journal_b, "%s-b", journal);
    snprintf(env_journal_b, sizeof env_journal_b, "HUBMETER_JOURNAL_DIR=%s", journal_b);
    memcpy(auth_a, auth, sizeof auth);
    acme_with_key(env_db_b, auth, sizeof auth); /* workload() now runs as B's acme */
    struct th_gateway a = gw;
    const char *env_b[] = {env_db_b, env_redis, env_up, env_journal_b, NULL};
    th_gateway_start(&gw, env_b);
    uint64_t bytes_b = workload(7);
    sleep(4); /* several ship intervals: anything B shipped or flushed would show now */
    PGconn *db_a = th_db_connect(db_url);
    char want_a[64];
    snprintf(want_a, sizeof want_a, "%llu|10", (unsigned long long)bytes);
    char *v = usage_in(db_a);
    cr_assert_str_eq(v, want_a, "installation A holds %s, its own usage is %s", v, want_a);
    free(v);
    v = usage_in(b);
    cr_assert_str_eq(v, "0|0", "installation B's database holds %s from a foreign stream", v);
    free(v);
    cr_assert(th_log_contains(&gw, "redis_claimed_by_other_installation"),
              "installation B must say why it does not ship");
    cr_assert(th_log_contains(&gw, "component=flusher error=\"this Redis database belongs to"),
              "installation B must say why it does not flush");
    char ready_url[300];
    snprintf(ready_url, sizeof ready_url, "%s/-/readyz", gw.base);
    struct th_response ready;
    th_http("GET", ready_url, NULL, &ready);
    cr_assert(ready.status == 200 && strstr(ready.body, "\"other_installation\"") != NULL,
              "B's readiness names the cause: %ld %s", (long)ready.status, ready.body);
    th_response_free(&ready);
    th_gateway_stop(&gw); /* its last batch cannot be shipped either: kept in its journal */
    /* B gets a Redis database of its own and ships everything it served, once. */
    char redis_b[256], env_redis_b[300];
    th_redis_new(redis_b, sizeof redis_b);
    snprintf(env_redis_b, sizeof env_redis_b, "HUBMETER_REDIS_URL=%s", redis_b);
    const char *env_b2[] = {env_db_b, env_redis_b, env_up, env_journal_b, NULL};
    th_gateway_start(&gw, env_b2);
    char want_b[64];
    snprintf(want_b, sizeof want_b, "%llu|7", (unsigned long long)bytes_b);
    int64_t deadline = th_now_ms() + 20000;
    for (v = usage_in(b); strcmp(v, want_b) != 0 && th_now_ms() < deadline; v = usage_in(b)) {
        free(v);
        usleep(100 * 1000);
    }
    cr_assert_str_eq(v, want_b, "installation B holds %s, it served %s", v, want_b);
    free(v);
    th_gateway_stop(&gw);
    v = usage_in(db_a);
    cr_assert_str_eq(v, want_a, "installation A holds %s, its own usage is %s", v, want_a);
    free(v);
    PQfinish(b);
    PQfinish(db_a);
    gw = a;
    memcpy(auth, auth_a, sizeof auth);
    th_gateway_stop(&gw);
}
