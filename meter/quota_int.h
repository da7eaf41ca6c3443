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

/* ---- the quota state (meter/quota*.c) ------------------------------------------------------ */
#define LOCAL_SLOTS 4096
#define LEASE_MAX (8u << 20)
#define LEASE_LONG_MAX (64u << 20) /* a long download's leases grow up to this */
#define LEASE_MIN (4u << 10)
#define MEMBER_TTL_MS 60000
#define MEMBER_REFRESH_MS 20000
#define BUSY_RPS 50      /* admissions a second at this gateway that make a subject busy */
#define POOL_TTL_MS 200  /* a pool's unused tokens and bytes go back to Redis after this */

/* What a decision found, in Redis or in the local budgets. */
struct admit_facts {
    bool admitted;
    enum meter_policy refused;
    double retry_us;
    double rtok, rfill_us, btok, bfill_us;
    uint64_t month_used;
    int64_t month_end_us;
    int64_t running;
    int64_t now_us;
    int64_t lease_wait_us; /* for the first lease, taken with the admission */
    int64_t granted;       /* extra request tokens taken for the pool */
};

/* What this gateway knows of one subject: its local buckets (used while degraded), the
 * monthly usage Redis last reported plus what was leased locally since, and downloads. */
struct local_state {
    char subject[72];
    double rtok, btok;
    int64_t rts_us, bts_us;
    bool rinit, binit;
    uint64_t month_used;  /* from Redis, plus leases since */
    int active;           /* downloads of this subject running here */
    int64_t seed_tried_ms; /* when this gateway last tried to seed the month from PostgreSQL */
    /* Busy subjects (at least BUSY_RPS admissions a second here) are served from pools:
     * request tokens taken from Redis in batches, and byte leases shared by their
     * downloads on this gateway. A pool lives POOL_TTL_MS after it was last filled; what
     * is left then goes back to Redis (see quota_sweep). */
    int64_t rate_window_ms;
    unsigned rate_count, rate_last;
    int64_t pool_plan;        /* the plan the pools were taken under */
    int64_t req_pool;         /* request tokens already taken from Redis */
    int64_t req_low;          /* below this many, one admission refills the pool early */
    bool refilling;           /* that admission is waiting for Redis */
    uint64_t byte_pool;       /* bytes already leased from Redis (and counted in the month) */
    int64_t byte_due_ms;      /* the pool's bytes may flow from then (the lease's wait) */
    int64_t pool_exp_ms;      /* 0: no pool */
    struct admit_facts snap;  /* Redis's last answer for this subject, for the headers */
    int64_t snap_ms;
    struct meter_plan pool_p; /* that plan, to give the pools back */
    int pool_anchor;
};

struct meter_quota {
    const struct hm_config *cfg;
    struct quota_client *client;
    pthread_mutex_t mu;
    struct local_state *local;
    _Atomic uint64_t seq;
    _Atomic uint64_t degraded, would_refuse, refused[5];
    meter_quota_seed_fn seed;
    void *seed_arg;
};


/* ---- building blocks (quota_state.c) ------------------------------------------------------- */
enum meter_policy quota_policy_from_name(const char *s);
/* The monthly period holding now_s for an anchor day: [start, end), and the next end; the
 * month keys' names ("m:YYYYMMDD" of the period's start and of the next one's). */
void quota_period(int64_t now_s, int anchor, int64_t *start, int64_t *end, int64_t *next_end,
                  char *name, char *next_name, size_t namelen);
/* Adds the keys most scripts take, in order: requests, bytes, month, next month,
 * concurrency (all in the subject's hash slot). */
void quota_subject_keys(struct quota_job *j, const char *subject, const char *mname,
                        const char *mnext);
/* The entry of subject (taking over its slot if another subject held it); under q->mu. */
struct local_state *quota_local_get(struct meter_quota *q, const char *subject, int *slot);
double quota_bucket_refill(double tok, int64_t *ts_us, bool *init, double cap, double per_us,
                           int64_t now_us);
/* The decision (and header states, nearest their limit first) of facts a under plan p. */
void quota_fill_decision(const struct meter_plan *p, int64_t period_s,
                         const struct admit_facts *a, struct meter_decision *d);
bool quota_tracks_bytes(const struct meter_plan *p);
/* Element i of an array reply as an integer (0 when absent). */
int64_t quota_reply_int(const redisReply *r, size_t i);
/* The lease a download takes at a time: a quarter second of the plan's rate, 4 KiB-8 MiB. */
uint64_t quota_lease_size(const struct meter_plan *p);
/* The next lease of a download that has leased `leased` bytes: doubling from
 * quota_lease_size up to 64 MiB, never above a quarter second of the plan's rate. */
uint64_t quota_next_lease(const struct meter_plan *p, uint64_t leased);

/* ---- pools of busy subjects (quota_pool.c; all but give_back/sweep under q->mu) ------------ */
void quota_count_rate(struct local_state *e, int64_t now_ms);
unsigned quota_rate_of(const struct local_state *e, int64_t now_ms);
bool quota_busy(const struct local_state *e, int64_t now_ms);
bool quota_pool_live(const struct local_state *e, const struct meter_plan *p, int64_t now_ms);
bool quota_admit_from_pool(struct local_state *e, const struct meter_plan *p, bool charge,
                           bool download, int64_t now_ms, struct admit_facts *a);
uint64_t quota_take_from_pool(struct local_state *e, const struct meter_plan *p, uint64_t want,
                              int64_t now_ms, int64_t *wait_us);
void quota_pool_fill(struct local_state *e, const struct meter_plan *p, int anchor,
                     const struct admit_facts *a, int64_t now_ms);
/* Gives back to Redis unused bytes, request tokens and a concurrency entry; never waits. */
void quota_give_back(struct meter_quota *q, const struct meter_plan *p, const char *subject,
                     int anchor, uint64_t bytes, int64_t tokens, const char *member);
/* Returns expired pools to Redis (the quota client's tick; arg: struct meter_quota). */
void quota_sweep(void *arg);

/* ---- local budgets while Redis is unavailable (quota_fallback.c; under q->mu) --------------- */
void quota_admit_local(struct meter_quota *q, struct local_state *e, const struct meter_flow *f,
                       bool charge, int64_t end_s, struct admit_facts *a);
void quota_lease_local(struct meter_quota *q, struct local_state *e, const struct meter_flow *f,
                       uint64_t amount, int64_t *wait_us);

#endif
