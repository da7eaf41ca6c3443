/*
 * Quota internals shared by meter/quota*.c only: the Lua scripts, and the quota client
 * that pipelines script calls to Redis from one thread, with a per-call timeout and a
 * circuit breaker, so no request waits on Redis longer than the configured budget.
 */
#ifndef HM_QUOTA_INT_H
#define HM_QUOTA_INT_H

#include <pthread.h>

#include "meter/meter_int.h"

extern const char quota_lua_admit[], quota_lua_lease[], quota_lua_end[], quota_lua_live[],
    quota_lua_seed[], quota_lua_peek[];
enum quota_script { QS_ADMIT, QS_LEASE, QS_END, QS_LIVE, QS_SEED, QS_PEEK, QS_COUNT };

#define QJ_MAX_KEYS 8
#define QJ_MAX_ARGS 16

/* One script call. Built by the caller, then owned by the client until answered. */
struct quota_job {
    enum quota_script script;
    int nkeys, nargs;
    char keys[QJ_MAX_KEYS][96];
    char args[QJ_MAX_ARGS][96];
    redisReply *reply; /* set when state is QJ_DONE */
    int state;
    bool abandoned;    /* nobody waits (fire and forget, or the waiter timed out) */
    bool waited;       /* a caller waits on done (its own: no thundering herd) */
    pthread_cond_t done;
    struct quota_job *next;
};
enum { QJ_QUEUED, QJ_DONE, QJ_FAILED };

/* A new job for script; NULL when out of memory. Keys before arguments. */
struct quota_job *quota_job_new(enum quota_script script);
void quota_job_key(struct quota_job *j, const char *subject, const char *suffix);
void quota_job_arg(struct quota_job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void quota_job_free(struct quota_job *j);

struct quota_client;
/* tick (may be NULL) is called from the client's thread every 100 ms. */
struct quota_client *quota_client_new(const char *url, unsigned timeout_ms, const char *instance,
                                      void (*tick)(void *arg), void *tick_arg);
void quota_client_free(struct quota_client *c);
/* Runs j and waits for its answer up to the timeout. CM_OK: j->reply is the script's
 * reply (the caller frees j). CM_UNAVAIL: breaker open, Redis error or timeout; j is
 * owned by the client (never touch it again). */
int quota_client_call(struct quota_client *c, struct quota_job *j);
/* Queues j without waiting (dropped while Redis is unavailable). */
void quota_client_send(struct quota_client *c, struct quota_job *j);
bool quota_client_open(struct quota_client *c); /* the breaker is open */
unsigned quota_client_live(struct quota_client *c); /* gateways alive (last known, >= 1) */
void quota_client_counts(struct quota_client *c, uint64_t *calls, uint64_t *sends,
                         uint64_t *errors, uint64_t *timeouts);

#endif
