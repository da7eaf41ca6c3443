/*
 * The shipper: every finished request is appended to the local journal and added to the
 * per-minute aggregate under one lock. Each ship interval a thread swaps the aggregate
 * out (rotating the journal segment in the same critical section), turns it into a batch
 * whose id is derived at the source ("<instance>:<boot>:<seq>", never re-minted), writes
 * the batch durably to the journal, and XADDs it to the usage stream. A batch leaves the
 * journal only when its id is in PostgreSQL's applied_batches; until then it is shipped
 * again whenever the Redis connection is new or Redis restarted (its run_id changed),
 * which the flusher's deduplication makes harmless. Heartbeats carry the cutoff (every
 * request that ended before it has been shipped) when nothing is waiting.
 */
#include "meter/meter_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define OUTBOX_MAX 100000 /* batches waiting before new ones stop forming */
#define HEARTBEAT_MS 5000
#define RELEASE_CHECK_MS 2000
#define FINAL_SHIP_MS 5000

struct batch {
    uint64_t number; /* journal file b-<number>.json */
    char id[128];
    char *body;      /* JSON text, malloc'd */
    bool shipped;    /* XADDed on the current Redis connection */
};

struct meter {
    const struct hm_config *cfg;
    pthread_mutex_t lock; /* protects agg, the journal's appends and rotation, stopping */
    pthread_cond_t wake;
    struct meter_agg *agg;
    struct meter_journal *journal;
    bool stopping;
    pthread_t thread;
    atomic_bool redis_ok;
    atomic_bool redis_foreign; /* the Redis database is another installation's */
    _Atomic uint64_t unjournaled; /* records kept in memory only (journal full or failing) */
    _Atomic uint64_t journal_bytes;
    int64_t alarm_at_ms;          /* last journal alarm (under lock) */
    /* Owned by the shipper thread. */
    redisContext *redis;
    char run_id[64]; /* of the Redis the outbox was shipped to */
    PGconn *db;      /* to learn which batches were applied, and the installation */
    char installation[64]; /* its UUID, learned from PostgreSQL once */
    char source[128]; /* "<instance>:<boot>" */
    uint64_t seq;
    struct batch *outbox;
    size_t n_out, cap_out;
    int64_t last_heartbeat_ms, retry_at_ms, release_at_ms;
    unsigned failures;
};

/* Journals and aggregates n records under the lock, with one journal write. */
static void record_many(struct meter *m, const struct meter_record *recs, size_t n)
{
    pthread_mutex_lock(&m->lock);
    /* Stamped under the lock, so a record is either before a swap's cutoff or after it. */
    int64_t end_s = cm_now_us() / 1000000;
    size_t unjournaled = 0;
    int rc = meter_journal_append(m->journal, recs, n, end_s, m->cfg->journal_fsync_always,
                                  &unjournaled);
    if (unjournaled > 0) {
        /* Kept in memory and shipped as usual; only a crash before that would lose them. */
        atomic_fetch_add(&m->unjournaled, unjournaled);
        int64_t now = cm_mono_ms();
        if (now - m->alarm_at_ms >= 10000) {
            m->alarm_at_ms = now;
            cm_log(CM_LOG_ERROR, rc == CM_AGAIN ? "journal_full" : "journal_write_failed",
                   "journal_bytes=%" PRIu64 " limit=%" PRIu64 " dir=%s",
                   meter_journal_bytes(m->journal), m->cfg->journal_max_bytes,
                   m->cfg->journal_dir);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (meter_agg_add(m->agg, &recs[i], end_s) != CM_OK)
            cm_log(CM_LOG_ERROR, "usage_record_lost", "reason=out_of_memory bytes=%" PRIu64,
                   recs[i].bytes);
    pthread_mutex_unlock(&m->lock);
}

void meter_record(struct meter *m, const struct meter_record *rec) { record_many(m, rec, 1); }

/* Records of one thread waiting to be handed over together. */
struct meter_pending {
    size_t n;
    struct meter_record recs[METER_PENDING_MAX];
};

struct meter_pending *meter_pending_new(void) { return calloc(1, sizeof(struct meter_pending)); }

void meter_record_later(struct meter *m, struct meter_pending *p, const struct meter_record *rec)
{
    if (p == NULL) {
        meter_record(m, rec);
        return;
    }
    if (p->n == METER_PENDING_MAX)
        meter_flush(m, p);
    p->recs[p->n++] = *rec;
}

void meter_flush(struct meter *m, struct meter_pending *p)
{
    if (p == NULL || p->n == 0)
        return;
    record_many(m, p->recs, p->n);
    p->n = 0;
}

void meter_pending_free(struct meter *m, struct meter_pending *p)
{
    meter_flush(m, p);
    free(p);
}

bool meter_redis_ok(struct meter *m) { return atomic_load(&m->redis_ok); }

bool meter_redis_foreign(struct meter *m) { return atomic_load(&m->redis_foreign); }

void meter_journal_state(struct meter *m, uint64_t *bytes, uint64_t *unjournaled)
{
    *bytes = atomic_load(&m->journal_bytes);
    *unjournaled = atomic_load(&m->unjournaled);
}

static int outbox_add(struct meter *m, uint64_t number, const char *id, char *body)
{
    if (m->n_out == m->cap_out) {
        size_t cap = m->cap_out ? m->cap_out * 2 : 16;
        struct batch *ob = realloc(m->outbox, cap * sizeof *ob);
        if (ob == NULL)
            return CM_ERR;
        m->outbox = ob;
        m->cap_out = cap;
    }
    struct batch *b = &m->outbox[m->n_out++];
    b->number = number;
    cm_copy(b->id, sizeof b->id, id);
    b->body = body;
    b->shipped = false;
    return CM_OK;
}

/* Turns agg into a durable batch in the journal and the outbox. Takes agg. CM_ERR leaves
 * the records in the journal's segment (they are replayed at the next start). */
static int make_batch(struct meter *m, struct meter_agg *agg, int64_t cutoff_ms)
{
    json_t *rows = meter_agg_to_json(agg), *clients = meter_agg_clients_json(agg),
           *objects = meter_agg_objects_json(agg);
    meter_agg_free(agg);
    char id[128];
    cm_fmt(id, sizeof id, "%s:%" PRIu64, m->source, ++m->seq);
    json_t *doc = rows && clients && objects
                      ? json_pack("{s:i, s:s, s:s, s:I, s:o, s:o, s:o}", "v", 1, "id", id,
                                  "source", m->source, "cutoff", (json_int_t)cutoff_ms, "rows",
                                  rows, "clients", clients, "objects", objects)
                      : NULL;
    if (doc == NULL) {
        json_decref(rows);
        json_decref(clients);
        json_decref(objects);
    }
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    uint64_t number;
    if (body == NULL || meter_journal_write_batch(m->journal, body, &number) != CM_OK) {
        cm_log(CM_LOG_ERROR, "journal_batch_failed", "id=%s", id);
        free(body);
        return CM_ERR;
    }
    if (outbox_add(m, number, id, body) != CM_OK) {
        free(body); /* still in the journal: shipped after a restart */
        return CM_ERR;
    }
    return CM_OK;
}

/* The shipper's PostgreSQL connection, (re)connected; NULL while PostgreSQL is away. */
static PGconn *shipper_db(struct meter *m, char *err, size_t errlen)
{
    if (m->db != NULL && PQstatus(m->db) != CONNECTION_OK) {
        PQfinish(m->db);
        m->db = NULL;
    }
    if (m->db == NULL)
        m->db = cm_pg_connect(m->cfg->database_url, err, errlen);
    return m->db;
}

/* A new Redis connection is used only once the database is claimed for this installation
 * (meter/installation.c): nothing is shipped into another installation's stream. */
static int claim(struct meter *m)
{
    char err[512] = "";
    PGconn *db = m->installation[0] == '\0' ? shipper_db(m, err, sizeof err) : NULL;
    int rc = meter_claim_redis(m->redis, db, m->installation, sizeof m->installation, err,
                               sizeof err);
    atomic_store(&m->redis_foreign, rc == CM_DENIED);
    if (rc == CM_OK)
        return CM_OK;
    redisFree(m->redis);
    m->redis = NULL;
    if (m->failures++ % 30 == 0)
        cm_log(rc == CM_UNAVAIL ? CM_LOG_WARN : CM_LOG_ERROR, meter_claim_event(rc),
               "component=shipper error=\"%s\"", err);
    return rc == CM_UNAVAIL ? CM_UNAVAIL : CM_DENIED;
}

static int redis_call(struct meter *m, redisReply **reply, const char *fmt, ...)
{
    char err[256];
    if (m->redis == NULL) {
        m->redis = meter_redis_connect(m->cfg->redis_url, 2000, err, sizeof err);
        if (m->redis == NULL) {
            meter_stats_add(METER_REDIS_ERRORS, 1);
            if (m->failures++ % 30 == 0)
                cm_log(CM_LOG_WARN, "redis_unavailable", "component=shipper error=\"%s\"", err);
            return CM_UNAVAIL;
        }
        int claimed = claim(m);
        if (claimed != CM_OK)
            return claimed;
        /* A new connection: ship everything that is not known applied again, since what
         * was shipped may not have reached a Redis that restarted (check its run_id). */
        redisReply *info = redisCommand(m->redis, "INFO server");
        const char *rid = info && info->type == REDIS_REPLY_STRING
                              ? strstr(info->str, "run_id:") : NULL;
        char run_id[64] = "";
        if (rid != NULL)
            cm_fmt(run_id, sizeof run_id, "%.40s", rid + 7);
        if (run_id[0] != '\0' && m->run_id[0] != '\0' && strcmp(run_id, m->run_id) != 0)
            cm_log(CM_LOG_WARN, "redis_restarted", "unapplied_batches=%zu", m->n_out);
        cm_copy(m->run_id, sizeof m->run_id, run_id);
        freeReplyObject(info);
        for (size_t i = 0; i < m->n_out; i++)
            m->outbox[i].shipped = false;
    }
    va_list ap;
    va_start(ap, fmt);
    *reply = redisvCommand(m->redis, fmt, ap);
    va_end(ap);
    if (*reply == NULL) {
        meter_stats_add(METER_REDIS_ERRORS, 1);
        if (m->failures++ % 30 == 0)
            cm_log(CM_LOG_WARN, "redis_unavailable", "component=shipper error=\"%s\"",
                   m->redis->errstr);
        redisFree(m->redis);
        m->redis = NULL;
        return CM_UNAVAIL;
    }
    if ((*reply)->type == REDIS_REPLY_ERROR) {
        meter_stats_add(METER_REDIS_ERRORS, 1);
        cm_log(CM_LOG_ERROR, "redis_error", "component=shipper error=\"%.200s\"", (*reply)->str);
        freeReplyObject(*reply);
        *reply = NULL;
        return CM_ERR;
    }
    if (m->failures > 0)
        cm_log(CM_LOG_INFO, "redis_available", "component=shipper");
    m->failures = 0;
    return CM_OK;
}

/* Ships the unshipped batches in order; stops at the first failure. */
static size_t ship_outbox(struct meter *m)
{
    size_t waiting = 0;
    for (size_t i = 0; i < m->n_out; i++) {
        struct batch *b = &m->outbox[i];
        if (b->shipped)
            continue;
        redisReply *r = NULL;
        if (waiting == 0 && redis_call(m, &r, "XADD " METER_STREAM " * type batch id %s body %s",
                                       b->id, b->body) == CM_OK) {
            freeReplyObject(r);
            b->shipped = true;
            meter_stats_add(METER_BATCHES_SHIPPED, 1);
            cm_fault("ship:after_xadd");
        } else {
            waiting++;
        }
    }
    atomic_store(&m->redis_ok, waiting == 0);
    return waiting;
}

/* Drops from the journal and the outbox the shipped batches PostgreSQL has applied. */
static void release_applied(struct meter *m)
{
    size_t shipped = 0;
    for (size_t i = 0; i < m->n_out; i++)
        shipped += m->outbox[i].shipped;
    if (shipped == 0)
        return;
    char err[256];
    if (shipper_db(m, err, sizeof err) == NULL)
        return; /* later: the batches stay in the journal meanwhile */
    json_t *ids = json_array();
    for (size_t i = 0; i < m->n_out; i++)
        if (m->outbox[i].shipped)
            json_array_append_new(ids, json_string(m->outbox[i].id));
    char *text = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    const char *params[] = {text};
    PGresult *res = text ? PQexecParams(m->db,
                                        "SELECT batch_id FROM applied_batches WHERE batch_id IN"
                                        " (SELECT jsonb_array_elements_text($1::jsonb))",
                                        1, NULL, params, NULL, NULL, 0)
                         : NULL;
    free(text);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        size_t kept = 0;
        for (size_t i = 0; i < m->n_out; i++) {
            struct batch *b = &m->outbox[i];
            bool applied = false;
            for (int r = 0; b->shipped && !applied && r < PQntuples(res); r++)
                applied = strcmp(PQgetvalue(res, r, 0), b->id) == 0;
            if (applied) {
                meter_journal_drop_batch(m->journal, b->number, strlen(b->body));
                free(b->body);
            } else {
                m->outbox[kept++] = *b;
            }
        }
        m->n_out = kept;
    }
    PQclear(res);
}

/* Reads the usage stream's length, and the flushers' group's pending entries and lag
 * (Redis 7 XINFO GROUPS), into the pipeline statistics. */
static void stream_state(struct meter *m)
{
    redisReply *r = NULL;
    if (redis_call(m, &r, "XLEN " METER_STREAM) == CM_OK && r->type == REDIS_REPLY_INTEGER)
        meter_stats_set(METER_STREAM_LENGTH, r->integer);
    freeReplyObject(r);
    r = NULL;
    if (redis_call(m, &r, "XINFO GROUPS " METER_STREAM) != CM_OK)
        return;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *g = r->element[i];
        bool ours = false;
        long long pending = -1, lag = -1;
        for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2) {
            const char *name = g->element[k]->type == REDIS_REPLY_STRING ? g->element[k]->str : "";
            const redisReply *v = g->element[k + 1];
            if (strcmp(name, "name") == 0 && v->type == REDIS_REPLY_STRING)
                ours = strcmp(v->str, METER_GROUP) == 0;
            else if (strcmp(name, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(name, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                lag = v->integer; /* nil when Redis cannot tell */
        }
        if (ours) {
            meter_stats_set(METER_STREAM_PENDING, pending);
            meter_stats_set(METER_STREAM_LAG, lag);
        }
    }
    freeReplyObject(r);
}

static void heartbeat(struct meter *m, int64_t cutoff_ms, bool final)
{
    redisReply *r = NULL;
    char cutoff[24];
    cm_fmt(cutoff, sizeof cutoff, "%" PRId64, cutoff_ms);
    if (redis_call(m, &r, "XADD " METER_STREAM " * type hb source %s cutoff %s final %s",
                   m->source, cutoff, final ? "1" : "0") == CM_OK) {
        freeReplyObject(r);
        m->last_heartbeat_ms = cm_mono_ms();
        stream_state(m);
    }
}

/* One round: swap the aggregate (and the journal segment), batch it, ship, release.
 * Returns the number of batches still waiting to be shipped; *cutoff_ms is the swap time. */
static size_t round_trip(struct meter *m, int64_t *cutoff_ms)
{
    struct meter_agg *fresh = meter_agg_new();
    uint64_t old_segment = 0;
    int old_fd = -1;
    bool rotated = false;
    char err[256];
    pthread_mutex_lock(&m->lock);
    struct meter_agg *full = m->agg;
    *cutoff_ms = cm_now_us() / 1000;
    /* With a full outbox (Redis away for long) records keep adding up in the live
     * aggregate and the journal segment; memory grows with distinct rows only. */
    if (fresh != NULL && meter_agg_rows(full) > 0 && m->n_out < OUTBOX_MAX &&
        meter_journal_rotate(m->journal, &old_segment, &old_fd, err, sizeof err) == CM_OK) {
        m->agg = fresh;
        rotated = true;
    } else {
        full = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    if (rotated)
        meter_journal_close_segment(old_fd); /* its records are durable before the batch is */
    else
        meter_agg_free(fresh);
    if (full != NULL && make_batch(m, full, *cutoff_ms) == CM_OK)
        meter_journal_drop_segment(m->journal, old_segment); /* now covered by the batch */
    if (!m->cfg->journal_fsync_always)
        meter_journal_sync(m->journal); /* everysec: lose at most a second to a power cut */
    pthread_mutex_lock(&m->lock);
    atomic_store(&m->journal_bytes, meter_journal_bytes(m->journal));
    pthread_mutex_unlock(&m->lock);
    size_t waiting = m->n_out;
    meter_stats_set(METER_OUTBOX_BATCHES, (int64_t)m->n_out);
    if (cm_mono_ms() >= m->retry_at_ms) {
        waiting = ship_outbox(m);
        if (waiting > 0)
            m->retry_at_ms = cm_mono_ms() + 1000; /* back off while Redis is away */
        else if (cm_mono_ms() - m->last_heartbeat_ms >= HEARTBEAT_MS)
            heartbeat(m, *cutoff_ms, false);
    }
    if (cm_mono_ms() >= m->release_at_ms) {
        release_applied(m);
        m->release_at_ms = cm_mono_ms() + RELEASE_CHECK_MS;
    }
    return waiting;
}

static void *shipper_main(void *arg)
{
    struct meter *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (int64_t)m->cfg->ship_interval_ms * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&m->wake, &m->lock, &ts);
        if (m->stopping)
            break;
        pthread_mutex_unlock(&m->lock);
        int64_t cutoff;
        round_trip(m, &cutoff);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    /* Final: ship what is left, retrying for a bounded time, then say we stopped. What is
     * not shipped (or not yet applied) stays in the journal for the next start. */
    int64_t deadline = cm_mono_ms() + FINAL_SHIP_MS, cutoff = 0;
    size_t waiting;
    do {
        m->retry_at_ms = 0;
        waiting = round_trip(m, &cutoff);
        if (waiting == 0)
            break;
        usleep(200 * 1000);
    } while (cm_mono_ms() < deadline);
    if (waiting == 0)
        heartbeat(m, cutoff, true);
    else
        cm_log(CM_LOG_WARN, "usage_kept_in_journal", "batches=%zu dir=%s", waiting,
               m->cfg->journal_dir);
    return NULL;
}

/* Collects a batch left in the journal by an earlier process (journal recovery). */
static void recovered_batch(void *arg, uint64_t number, char *body)
{
    struct meter *m = arg;
    json_t *doc = json_loads(body, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (id == NULL || outbox_add(m, number, id, body) != CM_OK) {
        cm_log(CM_LOG_ERROR, "journal_batch_unreadable", "file=b-%020" PRIu64 ".json", number);
        free(body);
    }
    json_decref(doc);
}

/* Replays the journal: earlier batches go back to the outbox, and records of segments an
 * earlier process did not batch (it died) become one new batch. */
static int recover(struct meter *m, char *err, size_t errlen)
{
    struct meter_agg *left = meter_agg_new();
    size_t records = 0;
    if (left == NULL ||
        meter_journal_recover(m->journal, recovered_batch, m, left, &records) != CM_OK) {
        meter_agg_free(left);
        return cm_fmt(err, errlen, "cannot read the journal in %s", m->cfg->journal_dir),
               CM_ERR;
    }
    size_t batches = m->n_out;
    if (records > 0 && make_batch(m, left, cm_now_us() / 1000) != CM_OK)
        return cm_fmt(err, errlen, "cannot batch the journal's records in %s",
                      m->cfg->journal_dir), CM_ERR;
    if (records == 0)
        meter_agg_free(left);
    meter_journal_drop_old_segments(m->journal);
    if (records > 0 || batches > 0)
        cm_log(CM_LOG_INFO, "journal_recovered", "batches=%zu records=%zu", batches, records);
    return CM_OK;
}

struct meter *meter_new(const struct hm_config *cfg, char *err, size_t errlen)
{
    struct meter *m = calloc(1, sizeof *m);
    if (m == NULL || (m->agg = meter_agg_new()) == NULL) {
        free(m);
        cm_fmt(err, errlen, "out of memory");
        return NULL;
    }
    m->cfg = cfg;
    /* boot: start time in microseconds and the pid, so two processes of one instance
     * (or a restart within a second) never share batch ids. */
    cm_fmt(m->source, sizeof m->source, "%s:%" PRIx64 "-%x", cfg->instance_id,
           (uint64_t)cm_now_us(), (unsigned)getpid());
    m->journal = meter_journal_open(cfg->journal_dir, cfg->journal_max_bytes, err, errlen);
    if (m->journal == NULL || recover(m, err, errlen) != CM_OK)
        goto fail;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    int e = pthread_create(&m->thread, NULL, shipper_main, m);
    if (e != 0) {
        cm_fmt(err, errlen, "cannot start the shipper thread: %s", strerror(e));
        goto fail;
    }
    cm_log(CM_LOG_INFO, "shipper_started", "source=%s journal=%s", m->source, cfg->journal_dir);
    return m;
fail:
    for (size_t i = 0; i < m->n_out; i++)
        free(m->outbox[i].body);
    free(m->outbox);
    meter_journal_close(m->journal);
    meter_agg_free(m->agg);
    free(m);
    return NULL;
}

void meter_free(struct meter *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    for (size_t i = 0; i < m->n_out; i++)
        free(m->outbox[i].body);
    free(m->outbox);
    meter_agg_free(m->agg);
    meter_journal_close(m->journal);
    redisFree(m->redis);
    PQfinish(m->db);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->wake);
    free(m);
}
