/*
 * The quota client: one thread owns a Redis connection and sends every queued script
 * call in one pipeline per round, so many concurrent admissions cost one round trip.
 * Callers wait for their answer at most the configured timeout, then decide locally.
 * The circuit breaker opens after two failed rounds in a row (error or timeout) and
 * for one second answers every call "unavailable" at once; then one round tries again.
 * Every two seconds the thread also announces this gateway and learns how many are live
 * (for the local budgets used while Redis is unavailable).
 */
#include "meter/quota_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BREAKER_FAILURES 2
#define BREAKER_OPEN_MS 1000
#define LIVE_EVERY_MS 2000
#define LIVE_HORIZON_MS 10000
#define LIVE_KEY "hm:gateways"
#define ROUND_MAX 2048
#define TICK_MS 100

struct quota_client {
    pthread_mutex_t mu;
    pthread_cond_t work;
    struct quota_job *head, *tail;
    bool stop;
    pthread_t thread;
    char url[CM_URL_MAX];
    unsigned timeout_ms;
    char instance[64];
    redisContext *ctx; /* the thread's only */
    char sha[QS_COUNT][48];
    int failures;
    _Atomic int64_t open_until_ms;
    _Atomic unsigned live;
    int64_t next_live_ms;
    _Atomic uint64_t calls, sends, errors, timeouts;
    void (*tick)(void *arg); /* called every TICK_MS from the thread */
    void *tick_arg;
    int64_t next_tick_ms;
};

static const char *const script_text[QS_COUNT] = {quota_lua_admit, quota_lua_lease, quota_lua_end,
                                                  quota_lua_live, quota_lua_seed,
                                                  quota_lua_peek};

struct quota_job *quota_job_new(enum quota_script script)
{
    struct quota_job *j = calloc(1, sizeof *j);
    if (j != NULL)
        j->script = script;
    return j;
}

static void job_wait_init(struct quota_job *j)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->done, &ca);
    pthread_condattr_destroy(&ca);
    j->waited = true;
}

void quota_job_key(struct quota_job *j, const char *subject, const char *suffix)
{
    if (j->nkeys >= QJ_MAX_KEYS)
        abort(); /* as for arguments */
    /* "{org:42}:r": every key of a subject in one hash slot */
    cm_fmt(j->keys[j->nkeys++], sizeof j->keys[0], "{%s}:%s", subject, suffix);
}

void quota_job_arg(struct quota_job *j, const char *fmt, ...)
{
    if (j->nargs >= QJ_MAX_ARGS)
        abort(); /* a script's arguments are fixed at compile time: a programming error */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->args[j->nargs++], sizeof j->args[0], fmt, ap);
    va_end(ap);
}

void quota_job_free(struct quota_job *j)
{
    if (j == NULL)
        return;
    if (j->waited)
        pthread_cond_destroy(&j->done);
    if (j->reply != NULL)
        freeReplyObject(j->reply);
    free(j);
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

bool quota_client_open(struct quota_client *c)
{
    return cm_mono_ms() < atomic_load(&c->open_until_ms);
}

static void enqueue(struct quota_client *c, struct quota_job *j)
{
    j->next = NULL;
    if (c->tail != NULL)
        c->tail->next = j;
    else
        c->head = j;
    c->tail = j;
    pthread_cond_signal(&c->work);
}

int quota_client_call(struct quota_client *c, struct quota_job *j)
{
    atomic_fetch_add(&c->calls, 1);
    if (quota_client_open(c)) {
        quota_job_free(j);
        return CM_UNAVAIL;
    }
    struct timespec deadline;
    deadline_after(&deadline, c->timeout_ms);
    job_wait_init(j);
    pthread_mutex_lock(&c->mu);
    j->state = QJ_QUEUED;
    enqueue(c, j);
    while (j->state == QJ_QUEUED)
        if (pthread_cond_timedwait(&j->done, &c->mu, &deadline) == ETIMEDOUT &&
            j->state == QJ_QUEUED) {
            j->abandoned = true; /* the client thread frees it when its round ends */
            pthread_mutex_unlock(&c->mu);
            atomic_fetch_add(&c->timeouts, 1);
            return CM_UNAVAIL;
        }
    pthread_mutex_unlock(&c->mu);
    if (j->state == QJ_DONE)
        return CM_OK;
    quota_job_free(j);
    return CM_UNAVAIL;
}

void quota_client_send(struct quota_client *c, struct quota_job *j)
{
    atomic_fetch_add(&c->sends, 1);
    if (quota_client_open(c)) {
        quota_job_free(j);
        return;
    }
    pthread_mutex_lock(&c->mu);
    j->state = QJ_QUEUED;
    j->abandoned = true;
    enqueue(c, j);
    pthread_mutex_unlock(&c->mu);
}

unsigned quota_client_live(struct quota_client *c)
{
    unsigned n = atomic_load(&c->live);
    return n ? n : 1;
}

void quota_client_counts(struct quota_client *c, uint64_t *calls, uint64_t *sends,
                         uint64_t *errors, uint64_t *timeouts)
{
    *calls = atomic_load(&c->calls);
    *sends = atomic_load(&c->sends);
    *errors = atomic_load(&c->errors);
    *timeouts = atomic_load(&c->timeouts);
}

/* Connects and loads the scripts (their SHA1s come back from SCRIPT LOAD). */
static int connect_redis(struct quota_client *c)
{
    char err[256];
    c->ctx = meter_redis_connect(c->url, c->timeout_ms, err, sizeof err);
    if (c->ctx == NULL)
        return CM_UNAVAIL;
    for (int s = 0; s < QS_COUNT; s++) {
        redisReply *r = redisCommand(c->ctx, "SCRIPT LOAD %s", script_text[s]);
        bool ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len < sizeof c->sha[s];
        if (ok)
            memcpy(c->sha[s], r->str, r->len + 1);
        else if (r != NULL && r->type == REDIS_REPLY_ERROR)
            cm_log(CM_LOG_ERROR, "quota_script_load_failed", "error=\"%.200s\"", r->str);
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c->ctx);
            c->ctx = NULL;
            return CM_UNAVAIL;
        }
    }
    return CM_OK;
}

static int append_job(struct quota_client *c, struct quota_job *j)
{
    const char *argv[3 + QJ_MAX_KEYS + QJ_MAX_ARGS];
    char nkeys[8];
    int argc = 0;
    snprintf(nkeys, sizeof nkeys, "%d", j->nkeys);
    argv[argc++] = "EVALSHA";
    argv[argc++] = c->sha[j->script];
    argv[argc++] = nkeys;
    for (int i = 0; i < j->nkeys; i++)
        argv[argc++] = j->keys[i];
    for (int i = 0; i < j->nargs; i++)
        argv[argc++] = j->args[i];
    return redisAppendCommandArgv(c->ctx, argc, argv, NULL) == REDIS_OK ? CM_OK : CM_ERR;
}

static void note_failure(struct quota_client *c, const char *why)
{
    atomic_fetch_add(&c->errors, 1);
    if (c->ctx != NULL) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    if (++c->failures >= BREAKER_FAILURES) {
        if (!quota_client_open(c))
            cm_log(CM_LOG_WARN, "quota_breaker_open", "reason=\"%s\" open_ms=%d", why,
                   BREAKER_OPEN_MS);
        atomic_store(&c->open_until_ms, cm_mono_ms() + BREAKER_OPEN_MS);
    }
}

/* Sends one round and collects its replies; jobs keep state QJ_QUEUED until published. */
static void run_round(struct quota_client *c, struct quota_job *round)
{
    if (quota_client_open(c))
        return;
    if (c->ctx == NULL && connect_redis(c) != CM_OK) {
        note_failure(c, "connect");
        return;
    }
    for (struct quota_job *j = round; j != NULL; j = j->next)
        if (append_job(c, j) != CM_OK) {
            note_failure(c, "out of memory");
            return;
        }
    for (struct quota_job *j = round; j != NULL; j = j->next) {
        void *reply = NULL;
        if (redisGetReply(c->ctx, &reply) != REDIS_OK) {
            note_failure(c, c->ctx->errstr);
            return; /* the rest stay unanswered: failed below */
        }
        j->reply = reply;
        if (j->reply->type == REDIS_REPLY_ERROR) {
            cm_log(CM_LOG_WARN, "quota_script_error", "error=\"%.200s\"", j->reply->str);
            if (strncmp(j->reply->str, "NOSCRIPT", 8) == 0) { /* flushed: reload */
                redisFree(c->ctx);
                c->ctx = NULL;
            }
        }
    }
    if (c->failures > 0 && quota_client_open(c) == false)
        cm_log(CM_LOG_INFO, "quota_redis_back", "after_failures=%d", c->failures);
    c->failures = 0;
}

static void publish(struct quota_client *c, struct quota_job *round, struct quota_job *live)
{
    if (live != NULL && live->reply != NULL && live->reply->type == REDIS_REPLY_INTEGER &&
        live->reply->integer > 0)
        atomic_store(&c->live, (unsigned)live->reply->integer);
    quota_job_free(live);
    pthread_mutex_lock(&c->mu);
    while (round != NULL) {
        struct quota_job *next = round->next;
        bool ok = round->reply != NULL && round->reply->type != REDIS_REPLY_ERROR;
        if (round->abandoned) {
            quota_job_free(round);
        } else {
            round->state = ok ? QJ_DONE : QJ_FAILED;
            pthread_cond_signal(&round->done); /* wakes its caller only */
        }
        round = next;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Calls whose caller gave up before they were sent are not sent: the caller decided
 * locally, and a late debit in Redis would charge the request twice. */
static struct quota_job *drop_stale(struct quota_job *round)
{
    struct quota_job *keep = NULL, **tail = &keep;
    while (round != NULL) {
        struct quota_job *next = round->next;
        if (round->abandoned && (round->script == QS_ADMIT || round->script == QS_LEASE)) {
            quota_job_free(round);
        } else {
            *tail = round;
            tail = &round->next;
        }
        round = next;
    }
    *tail = NULL;
    return keep;
}

static void *client_main(void *arg)
{
    struct quota_client *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->head == NULL && !c->stop && cm_mono_ms() < c->next_live_ms &&
               cm_mono_ms() < c->next_tick_ms) {
            int64_t until = c->next_live_ms < c->next_tick_ms ? c->next_live_ms : c->next_tick_ms;
            struct timespec ts;
            deadline_after(&ts, (unsigned)(until - cm_mono_ms()));
            pthread_cond_timedwait(&c->work, &c->mu, &ts);
        }
        if (c->tick != NULL && cm_mono_ms() >= c->next_tick_ms) {
            c->next_tick_ms = cm_mono_ms() + TICK_MS;
            pthread_mutex_unlock(&c->mu);
            c->tick(c->tick_arg); /* may queue calls: taken below or in the next round */
            pthread_mutex_lock(&c->mu);
        }
        if (c->stop && c->head == NULL)
            break;
        struct quota_job *round = c->head, *last = round;
        for (int n = 1; last != NULL && last->next != NULL && n < ROUND_MAX; n++)
            last = last->next;
        if (last != NULL) {
            c->head = last->next;
            if (c->head == NULL)
                c->tail = NULL;
            last->next = NULL;
        }
        round = drop_stale(round);
        pthread_mutex_unlock(&c->mu);
        struct quota_job *live = NULL;
        if (cm_mono_ms() >= c->next_live_ms) {
            c->next_live_ms = cm_mono_ms() + LIVE_EVERY_MS;
            live = quota_job_new(QS_LIVE);
            if (live != NULL) {
                cm_copy(live->keys[live->nkeys++], sizeof live->keys[0], LIVE_KEY);
                quota_job_arg(live, "%s", c->instance);
                quota_job_arg(live, "%d", LIVE_HORIZON_MS);
                live->next = round;
                round = live;
            }
        }
        run_round(c, round);
        if (live != NULL)
            round = live->next;
        publish(c, round, live);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct quota_client *quota_client_new(const char *url, unsigned timeout_ms, const char *instance,
                                      void (*tick)(void *arg), void *tick_arg)
{
    struct quota_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work, &ca);
    pthread_condattr_destroy(&ca);
    cm_copy(c->url, sizeof c->url, url);
    cm_copy(c->instance, sizeof c->instance, instance);
    c->timeout_ms = timeout_ms;
    c->tick = tick;
    c->tick_arg = tick_arg;
    c->next_tick_ms = tick != NULL ? 0 : INT64_MAX;
    if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->work);
        free(c);
        return NULL;
    }
    return c;
}

void quota_client_free(struct quota_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    if (c->ctx != NULL)
        redisFree(c->ctx);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->work);
    free(c);
}
