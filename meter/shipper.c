/*
 * The shipper: records from request threads are aggregated per minute under one lock;
 * a thread swaps the aggregate out every ship interval, turns it into a batch with an id
 * derived at the source ("<instance>:<boot>:<seq>", never re-minted on retry), keeps it
 * in an outbox until XADD to the usage stream succeeds, and sends heartbeats carrying the
 * cutoff (every request that ended before it has been shipped) when the outbox is empty.
 * Durability across a gateway crash (the local journal) is the next layer (issue 5).
 */
#include "meter/meter_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define OUTBOX_MAX 100000       /* batches waiting for Redis before new ones stop forming */
#define HEARTBEAT_MS 5000
#define FINAL_SHIP_MS 5000

struct batch {
    char id[128];
    char *body; /* JSON text, malloc'd */
};

struct meter {
    const struct hm_config *cfg;
    pthread_mutex_t lock; /* protects agg, stopping */
    pthread_cond_t wake;
    struct meter_agg *agg;
    bool stopping;
    pthread_t thread;
    atomic_bool redis_ok;
    /* Owned by the shipper thread. */
    redisContext *redis;
    char source[128]; /* "<instance>:<boot>" */
    uint64_t seq;
    struct batch *outbox;
    size_t n_out, cap_out;
    int64_t last_heartbeat_ms, retry_at_ms;
    unsigned failures;
};

void meter_record(struct meter *m, const struct meter_record *rec)
{
    pthread_mutex_lock(&m->lock);
    /* Stamped under the lock, so a record is either before a swap's cutoff or after it. */
    int64_t end_s = cm_now_us() / 1000000;
    if (meter_agg_add(m->agg, rec, end_s) != CM_OK)
        cm_log(CM_LOG_ERROR, "usage_record_lost", "reason=out_of_memory bytes=%" PRIu64,
               rec->bytes);
    pthread_mutex_unlock(&m->lock);
}

bool meter_redis_ok(struct meter *m) { return atomic_load(&m->redis_ok); }

/* Turns agg into an outbox batch; takes ownership of agg. */
static void enqueue_batch(struct meter *m, struct meter_agg *agg, int64_t cutoff_ms)
{
    json_t *rows = meter_agg_to_json(agg);
    struct batch b;
    cm_fmt(b.id, sizeof b.id, "%s:%" PRIu64, m->source, ++m->seq);
    json_t *doc = rows ? json_pack("{s:i, s:s, s:s, s:I, s:o}", "v", 1, "id", b.id, "source",
                                   m->source, "cutoff", (json_int_t)cutoff_ms, "rows", rows)
                       : NULL;
    b.body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (b.body == NULL) {
        cm_log(CM_LOG_ERROR, "usage_batch_lost", "id=%s reason=out_of_memory", b.id);
        meter_agg_free(agg);
        return;
    }
    meter_agg_free(agg);
    if (m->n_out == m->cap_out) {
        size_t cap = m->cap_out ? m->cap_out * 2 : 16;
        struct batch *ob = realloc(m->outbox, cap * sizeof *ob);
        if (ob == NULL) {
            cm_log(CM_LOG_ERROR, "usage_batch_lost", "id=%s reason=out_of_memory", b.id);
            free(b.body);
            return;
        }
        m->outbox = ob;
        m->cap_out = cap;
    }
    m->outbox[m->n_out++] = b;
}

static int xadd(struct meter *m, redisReply **reply, const char *fmt, ...)
{
    char err[256];
    if (m->redis == NULL) {
        m->redis = meter_redis_connect(m->cfg->redis_url, 2000, err, sizeof err);
        if (m->redis == NULL) {
            if (m->failures++ % 30 == 0)
                cm_log(CM_LOG_WARN, "redis_unavailable", "component=shipper error=\"%s\"", err);
            return CM_UNAVAIL;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    *reply = redisvCommand(m->redis, fmt, ap);
    va_end(ap);
    if (*reply == NULL) {
        if (m->failures++ % 30 == 0)
            cm_log(CM_LOG_WARN, "redis_unavailable", "component=shipper error=\"%s\"",
                   m->redis->errstr);
        redisFree(m->redis);
        m->redis = NULL;
        return CM_UNAVAIL;
    }
    if ((*reply)->type == REDIS_REPLY_ERROR) {
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

/* Ships the outbox in order; stops at the first failure. */
static void ship_outbox(struct meter *m)
{
    size_t done = 0;
    while (done < m->n_out) {
        struct batch *b = &m->outbox[done];
        redisReply *r = NULL;
        if (xadd(m, &r, "XADD " METER_STREAM " * type batch id %s body %s", b->id, b->body) !=
            CM_OK)
            break;
        freeReplyObject(r);
        free(b->body);
        done++;
    }
    if (done > 0) {
        memmove(m->outbox, m->outbox + done, (m->n_out - done) * sizeof *m->outbox);
        m->n_out -= done;
    }
    atomic_store(&m->redis_ok, m->n_out == 0);
}

static void heartbeat(struct meter *m, int64_t cutoff_ms, bool final)
{
    redisReply *r = NULL;
    char cutoff[24];
    cm_fmt(cutoff, sizeof cutoff, "%" PRId64, cutoff_ms);
    if (xadd(m, &r, "XADD " METER_STREAM " * type hb source %s cutoff %s final %s", m->source,
             cutoff, final ? "1" : "0") == CM_OK) {
        freeReplyObject(r);
        m->last_heartbeat_ms = cm_mono_ms();
        atomic_store(&m->redis_ok, true);
    } else {
        atomic_store(&m->redis_ok, false);
    }
}

/* One round: swap the aggregate, batch it, ship. Returns the cutoff used. */
static int64_t round_trip(struct meter *m)
{
    struct meter_agg *fresh = meter_agg_new();
    pthread_mutex_lock(&m->lock);
    struct meter_agg *full = m->agg;
    int64_t cutoff_ms = cm_now_us() / 1000;
    /* With a full outbox (Redis away for a long time) records keep adding up in the live
     * aggregate, whose size grows with distinct rows, not with traffic. */
    if (fresh != NULL && meter_agg_rows(full) > 0 && m->n_out < OUTBOX_MAX)
        m->agg = fresh;
    else
        full = NULL;
    pthread_mutex_unlock(&m->lock);
    if (full == NULL && m->n_out >= OUTBOX_MAX && cm_mono_ms() >= m->retry_at_ms)
        cm_log(CM_LOG_ERROR, "usage_outbox_full", "batches=%zu", m->n_out);
    if (full != NULL)
        enqueue_batch(m, full, cutoff_ms);
    else
        meter_agg_free(fresh);
    if (cm_mono_ms() >= m->retry_at_ms) {
        ship_outbox(m);
        if (m->n_out > 0)
            m->retry_at_ms = cm_mono_ms() + 1000; /* back off while Redis is away */
        else if (cm_mono_ms() - m->last_heartbeat_ms >= HEARTBEAT_MS)
            heartbeat(m, cutoff_ms, false);
    }
    return cutoff_ms;
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
        round_trip(m);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    /* Final: ship what is left, retrying for a bounded time, then say we stopped. */
    int64_t deadline = cm_mono_ms() + FINAL_SHIP_MS;
    int64_t cutoff;
    do {
        m->retry_at_ms = 0;
        cutoff = round_trip(m);
        if (m->n_out == 0)
            break;
        usleep(200 * 1000);
    } while (cm_mono_ms() < deadline);
    if (m->n_out == 0)
        heartbeat(m, cutoff, true);
    else
        cm_log(CM_LOG_ERROR, "usage_unshipped_at_exit", "batches=%zu", m->n_out);
    return NULL;
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
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    int e = pthread_create(&m->thread, NULL, shipper_main, m);
    if (e != 0) {
        cm_fmt(err, errlen, "cannot start the shipper thread: %s", strerror(e));
        meter_agg_free(m->agg);
        free(m);
        return NULL;
    }
    cm_log(CM_LOG_INFO, "shipper_started", "source=%s", m->source);
    return m;
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
    redisFree(m->redis);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->wake);
    free(m);
}
