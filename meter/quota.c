/*
 * Quota decisions: admission (request bucket, monthly byte quota, concurrency) in one
 * Redis script call, byte leases while a download streams (the byte bucket may go into
 * debt, and the caller paces its stream until the debt is repaid, so every stream of an
 * org on every gateway shares the plan's rate), and the end of a request (unused lease
 * back, concurrency entry released, a 304's request token refunded).
 * While Redis is unavailable (timeout, error, breaker open) decisions are local: request
 * and byte buckets at the plan's rates divided by the live gateways; the monthly quota
 * (last known usage plus local bytes) and concurrency (max ÷ live) are enforced only
 * under the "closed" failure policy. The local table also remembers per subject what
 * Redis last said, for those budgets.
 */
#include "meter/quota_int.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOCAL_SLOTS 4096
#define LEASE_MAX (8u << 20)
#define LEASE_MIN (4u << 10)
#define MEMBER_TTL_MS 60000
#define MEMBER_REFRESH_MS 20000
#define BUSY_RPS 50      /* admissions a second at this gateway that make a subject busy */
#define POOL_TTL_MS 200  /* a pool's unused tokens and bytes go back to Redis after this */

/* What this gateway knows of one subject: its local buckets (used while degraded), the
 * monthly usage Redis last reported plus what was leased locally since, and downloads. */
struct admit_facts { /* what either Redis or the local budgets found */
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
     * is left then goes back to Redis (see sweep). */
    int64_t rate_window_ms;
    unsigned rate_count, rate_last;
    int64_t pool_plan;        /* the plan the pools were taken under */
    int64_t req_pool;         /* request tokens already taken from Redis */
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

#define SEED_RETRY_MS 10000

void meter_quota_set_seeder(struct meter_quota *q, meter_quota_seed_fn fn, void *arg)
{
    q->seed = fn;
    q->seed_arg = arg;
}

static void sweep(void *arg);

const char *meter_policy_name(enum meter_policy p)
{
    switch (p) {
    case MQ_REQUESTS: return "requests";
    case MQ_BYTES: return "bytes";
    case MQ_MONTHLY: return "monthly_bytes";
    case MQ_CONCURRENCY: return "concurrency";
    default: return "";
    }
}

static enum meter_policy policy_from_name(const char *s)
{
    for (int p = MQ_REQUESTS; p <= MQ_CONCURRENCY; p++)
        if (strcmp(s, meter_policy_name((enum meter_policy)p)) == 0)
            return (enum meter_policy)p;
    return MQ_NONE;
}

struct meter_quota *meter_quota_new(const struct hm_config *cfg, char *err, size_t errlen)
{
    struct meter_quota *q = calloc(1, sizeof *q);
    if (q == NULL || (q->local = calloc(LOCAL_SLOTS, sizeof *q->local)) == NULL) {
        free(q);
        cm_fmt(err, errlen, "out of memory");
        return NULL;
    }
    q->cfg = cfg;
    pthread_mutex_init(&q->mu, NULL);
    q->client = quota_client_new(cfg->redis_url, cfg->redis_timeout_ms, cfg->instance_id, sweep, q);
    if (q->client == NULL) {
        cm_fmt(err, errlen, "cannot start the quota client thread");
        meter_quota_free(q);
        return NULL;
    }
    return q;
}

void meter_quota_free(struct meter_quota *q)
{
    if (q == NULL)
        return;
    if (q->client != NULL) { /* pools go back to Redis before the client's last round */
        pthread_mutex_lock(&q->mu);
        for (int i = 0; i < LOCAL_SLOTS; i++)
            if (q->local[i].pool_exp_ms != 0)
                q->local[i].pool_exp_ms = 1;
        pthread_mutex_unlock(&q->mu);
        for (int i = 0; i < LOCAL_SLOTS / 64 + 1; i++)
            sweep(q);
    }
    quota_client_free(q->client);
    pthread_mutex_destroy(&q->mu);
    free(q->local);
    free(q);
}

/* ---- periods ------------------------------------------------------------------------------ */

static int64_t month_start(int year, int mon, int day)
{
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon, .tm_mday = day};
    return (int64_t)timegm(&tm);
}

/* The monthly period holding now_s for an anchor day: [start, end), and the next end.
 * Names are the start dates (YYYYMMDD). */
static void period_of(int64_t now_s, int anchor, int64_t *start, int64_t *end, int64_t *next_end,
                      char *name, char *next_name, size_t namelen)
{
    time_t t = (time_t)now_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    int year = tm.tm_year + 1900, mon = tm.tm_mon;
    if (tm.tm_mday < anchor)
        mon--;
    *start = month_start(year, mon, anchor);
    *end = month_start(year, mon + 1, anchor);
    *next_end = month_start(year, mon + 2, anchor);
    struct tm a, b;
    time_t ts = (time_t)*start, te = (time_t)*end;
    gmtime_r(&ts, &a);
    gmtime_r(&te, &b);
    cm_fmt(name, namelen, "m:%04d%02d%02d", a.tm_year + 1900, a.tm_mon + 1, a.tm_mday);
    cm_fmt(next_name, namelen, "m:%04d%02d%02d", b.tm_year + 1900, b.tm_mon + 1, b.tm_mday);
}

/* The keys most scripts take, in their order: requests, bytes, month, next month,
 * concurrency (all in the subject's hash slot). */
static void subject_keys(struct quota_job *j, const char *subject, const char *mname,
                         const char *mnext)
{
    quota_job_key(j, subject, "r");
    quota_job_key(j, subject, "b");
    quota_job_key(j, subject, mname);
    quota_job_key(j, subject, mnext);
    quota_job_key(j, subject, "c");
}

/* ---- local state ---------------------------------------------------------------------------- */

static int local_slot(const char *subject)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = subject; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (int)(h % LOCAL_SLOTS);
}

/* The entry of subject (taking over its slot if another subject held it); under q->mu. */
static struct local_state *local_get(struct meter_quota *q, const char *subject, int *slot)
{
    *slot = local_slot(subject);
    struct local_state *e = &q->local[*slot];
    if (strcmp(e->subject, subject) != 0) {
        memset(e, 0, sizeof *e);
        cm_copy(e->subject, sizeof e->subject, subject);
    }
    return e;
}

static double bucket_refill(double tok, int64_t *ts_us, bool *init, double cap, double per_us,
                            int64_t now_us)
{
    if (!*init) {
        *init = true;
        *ts_us = now_us;
        return cap;
    }
    if (now_us > *ts_us)
        tok = fmin(cap, tok + (double)(now_us - *ts_us) * per_us);
    *ts_us = now_us;
    return tok;
}

/* ---- decisions -------------------------------------------------------------------------------- */

static int64_t ceil_s(double us)
{
    return us <= 0 ? 0 : (int64_t)ceil(us / 1e6);
}

static void add_state(struct meter_decision *d, enum meter_policy p, uint64_t limit,
                      double remaining, int64_t reset_s, int64_t window_s)
{
    struct meter_policy_state *s = &d->st[d->n++];
    s->policy = p;
    s->limit = limit;
    s->remaining = remaining <= 0 ? 0 : remaining >= (double)limit ? limit : (uint64_t)remaining;
    s->reset_s = reset_s;
    s->window_s = window_s;
}

/* Orders the states: the refusing policy first, then the smallest remaining share. */
static void sort_states(struct meter_decision *d)
{
    for (int i = 1; i < d->n; i++)
        for (int k = i; k > 0; k--) {
            struct meter_policy_state *a = &d->st[k - 1], *b = &d->st[k];
            bool b_first = b->policy == d->refused_by && d->refused_by != MQ_NONE;
            bool a_first = a->policy == d->refused_by && d->refused_by != MQ_NONE;
            double sa = a->limit ? (double)a->remaining / (double)a->limit : 1;
            double sb = b->limit ? (double)b->remaining / (double)b->limit : 1;
            if (!(b_first || (!a_first && sb < sa)))
                break;
            struct meter_policy_state t = *a;
            *a = *b;
            *b = t;
        }
}

static void fill_decision(const struct meter_plan *p, int64_t period_s, const struct admit_facts *a,
                          struct meter_decision *d)
{
    d->admitted = a->admitted;
    d->would_refuse = a->admitted && a->refused != MQ_NONE;
    d->refused_by = a->refused;
    d->now_s = a->now_us / 1000000;
    int64_t retry_s = ceil_s(a->retry_us);
    if (a->refused != MQ_NONE && retry_s < 1)
        retry_s = 1;
    d->retry_after_s = a->refused != MQ_NONE ? retry_s : 0;
    if (p->requests_per_minute > 0) {
        int64_t cap = p->request_burst > 0 ? p->request_burst : p->requests_per_minute;
        int64_t w = (cap * 60 + p->requests_per_minute - 1) / p->requests_per_minute;
        add_state(d, MQ_REQUESTS, (uint64_t)cap, floor(a->rtok),
                  a->refused == MQ_REQUESTS ? retry_s : ceil_s(a->rfill_us), w);
    }
    if (p->bytes_per_second > 0) {
        int64_t cap = p->byte_burst > 0 ? p->byte_burst : p->bytes_per_second;
        add_state(d, MQ_BYTES, (uint64_t)cap, floor(a->btok), ceil_s(a->bfill_us),
                  (cap + p->bytes_per_second - 1) / p->bytes_per_second);
    }
    if (p->monthly_bytes > 0)
        add_state(d, MQ_MONTHLY, (uint64_t)p->monthly_bytes,
                  (double)p->monthly_bytes - (double)a->month_used,
                  ceil_s((double)(a->month_end_us - a->now_us)), period_s);
    if (p->max_concurrent > 0)
        add_state(d, MQ_CONCURRENCY, (uint64_t)p->max_concurrent,
                  (double)(p->max_concurrent - a->running),
                  a->refused == MQ_CONCURRENCY ? retry_s : 0, 0);
    sort_states(d);
}

static uint64_t lease_size(const struct meter_plan *p);
static void lease_local(struct meter_quota *q, struct local_state *e, const struct meter_flow *f,
                        uint64_t amount, int64_t *wait_us);

static bool tracks_bytes(const struct meter_plan *p)
{
    return p->bytes_per_second > 0 || p->monthly_bytes > 0 || p->max_concurrent > 0;
}

static int64_t num(const redisReply *r, size_t i)
{
    if (i >= r->elements)
        return 0;
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_INTEGER ? e->integer
           : e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

/* CM_OK with a decision, CM_AGAIN when the month counter must be seeded first (only asked
 * when require_seeded), CM_UNAVAIL when Redis could not answer. */
static int admit_redis(struct meter_quota *q, const struct meter_flow *f, bool charge,
                       uint64_t first_lease, int64_t extra, bool require_seeded,
                       const char *mname, const char *mnext, int64_t end_s, int64_t next_end_s,
                       struct admit_facts *a)
{
    const struct meter_plan *p = &f->plan;
    struct quota_job *j = quota_job_new(QS_ADMIT);
    if (j == NULL)
        return CM_UNAVAIL;
    subject_keys(j, f->subject, mname, mnext);
    quota_job_key(j, f->subject, "ev");
    char seeded[64];
    cm_fmt(seeded, sizeof seeded, "%s:s", mname);
    quota_job_key(j, f->subject, seeded);
    cm_fmt(seeded, sizeof seeded, "%s:s", mnext);
    quota_job_key(j, f->subject, seeded);
    quota_job_arg(j, "%lld", (long long)p->requests_per_minute);
    quota_job_arg(j, "%lld", (long long)p->request_burst);
    quota_job_arg(j, "%lld", (long long)p->bytes_per_second);
    quota_job_arg(j, "%lld", (long long)p->byte_burst);
    quota_job_arg(j, "%lld", (long long)p->monthly_bytes);
    quota_job_arg(j, "%d", (int)p->max_concurrent);
    quota_job_arg(j, "%d", charge ? 1 : 0);
    quota_job_arg(j, "%d", f->download ? 1 : 0);
    quota_job_arg(j, "%s", f->member);
    quota_job_arg(j, "%d", MEMBER_TTL_MS);
    quota_job_arg(j, "%lld", (long long)end_s * 1000000);
    quota_job_arg(j, "%lld", (long long)next_end_s * 1000000);
    quota_job_arg(j, "%d", p->shadow ? 1 : 0);
    quota_job_arg(j, "%llu", (unsigned long long)first_lease);
    quota_job_arg(j, "%d", require_seeded ? 1 : 0);
    quota_job_arg(j, "%lld", (long long)extra);
    if (quota_client_call(q->client, j) != CM_OK)
        return CM_UNAVAIL;
    const redisReply *r = j->reply;
    int rc = CM_UNAVAIL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && num(r, 0) == -1) {
        rc = CM_AGAIN;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 12) {
        a->admitted = num(r, 0) == 1;
        a->refused = r->element[1]->type == REDIS_REPLY_STRING
                         ? policy_from_name(r->element[1]->str)
                         : MQ_NONE;
        a->retry_us = (double)num(r, 2);
        a->rtok = (double)num(r, 3);
        a->rfill_us = (double)num(r, 4);
        a->btok = (double)num(r, 5);
        a->bfill_us = (double)num(r, 6);
        int64_t used = num(r, 7);
        a->month_used = used > 0 ? (uint64_t)used : 0;
        a->month_end_us = num(r, 8);
        a->running = num(r, 9);
        a->now_us = num(r, 10);
        a->lease_wait_us = num(r, 11);
        a->granted = r->elements >= 13 ? num(r, 12) : 0;
        rc = CM_OK;
    }
    quota_job_free(j);
    return rc;
}

/* The same decision from local budgets (plan ÷ live gateways); under q->mu. */
static void admit_local(struct meter_quota *q, struct local_state *e, const struct meter_flow *f,
                        bool charge, int64_t end_s, struct admit_facts *a)
{
    const struct meter_plan *p = &f->plan;
    double live = (double)quota_client_live(q->client);
    int64_t now = cm_now_us();
    memset(a, 0, sizeof *a);
    a->now_us = now;
    a->month_end_us = end_s * 1000000;
    double rcap = 0, rrate = 0;
    if (p->requests_per_minute > 0) {
        rcap = fmax(1, (double)(p->request_burst > 0 ? p->request_burst : p->requests_per_minute) / live);
        rrate = (double)p->requests_per_minute / live / 60e6;
        e->rtok = bucket_refill(e->rtok, &e->rts_us, &e->rinit, rcap, rrate, now);
        a->rtok = e->rtok;
        if (charge && e->rtok < 1) {
            a->refused = MQ_REQUESTS;
            a->retry_us = (1 - e->rtok) / rrate;
        }
    }
    if (p->bytes_per_second > 0) {
        double bcap = (double)(p->byte_burst > 0 ? p->byte_burst : p->bytes_per_second) / live;
        double brate = (double)p->bytes_per_second / live / 1e6;
        e->btok = bucket_refill(e->btok, &e->bts_us, &e->binit, bcap, brate, now);
        a->btok = e->btok;
        a->bfill_us = (bcap - e->btok) / brate;
    }
    a->month_used = e->month_used;
    a->running = e->active;
    if (p->fail_closed && f->download && a->refused == MQ_NONE) {
        if (p->monthly_bytes > 0 && charge && e->month_used >= (uint64_t)p->monthly_bytes) {
            a->refused = MQ_MONTHLY;
            a->retry_us = (double)(a->month_end_us - now);
        } else if (p->max_concurrent > 0 &&
                   e->active >= (int)fmax(1, floor(p->max_concurrent / live))) {
            a->refused = MQ_CONCURRENCY;
            a->retry_us = 1e6;
        }
    }
    a->admitted = a->refused == MQ_NONE || p->shadow;
    if (a->admitted && rrate > 0 && charge)
        e->rtok = fmax(0, e->rtok - 1);
    if (rrate > 0)
        a->rfill_us = (rcap - e->rtok) / rrate;
    a->rtok = e->rtok;
}

/* Adds PostgreSQL's usage of the period to a month counter Redis does not have (it lost
 * its data); each gateway tries at most every SEED_RETRY_MS per subject. */
static void seed_month(struct meter_quota *q, const struct meter_flow *f, const char *mname,
                       int64_t start, int64_t end)
{
    int slot;
    int64_t now = cm_mono_ms();
    pthread_mutex_lock(&q->mu);
    struct local_state *e = local_get(q, f->subject, &slot);
    /* A failed seed (PostgreSQL away) is retried later; meanwhile decisions go on. */
    bool due = e->seed_tried_ms == 0 || now - e->seed_tried_ms >= SEED_RETRY_MS;
    if (due)
        e->seed_tried_ms = now;
    pthread_mutex_unlock(&q->mu);
    uint64_t bytes = 0;
    if (!due || q->seed == NULL || q->seed(q->seed_arg, f->subject, start, end, &bytes) != CM_OK)
        return;
    struct quota_job *j = quota_job_new(QS_SEED);
    if (j == NULL)
        return;
    char flag[64];
    cm_fmt(flag, sizeof flag, "%s:s", mname);
    quota_job_key(j, f->subject, mname);
    quota_job_key(j, f->subject, flag);
    quota_job_arg(j, "%llu", (unsigned long long)bytes);
    if (quota_client_call(q->client, j) == CM_OK) {
        if (j->reply->type == REDIS_REPLY_INTEGER && j->reply->integer == 1)
            cm_log(CM_LOG_INFO, "quota_month_seeded", "subject=%s bytes=%llu", f->subject,
                   (unsigned long long)bytes);
        quota_job_free(j);
    }
}

/* Counts an admission in the subject's rate window; under q->mu. */
static void count_rate(struct local_state *e, int64_t now_ms)
{
    if (now_ms - e->rate_window_ms >= 1000) {
        e->rate_last = now_ms - e->rate_window_ms < 2000 ? e->rate_count : 0;
        e->rate_count = 0;
        e->rate_window_ms = now_ms;
    }
    e->rate_count++;
}

/* Admissions a second at this gateway: the last full window's, or the current one's
 * projected once it has a few. */
static unsigned rate_of(const struct local_state *e, int64_t now_ms)
{
    int64_t span = now_ms - e->rate_window_ms;
    unsigned now_rate = e->rate_count >= 5 ? (unsigned)(e->rate_count * 1000 / (span > 100 ? span : 100))
                                           : 0;
    return now_rate > e->rate_last ? now_rate : e->rate_last;
}

static bool busy(const struct local_state *e, int64_t now_ms)
{
    return rate_of(e, now_ms) >= BUSY_RPS;
}

static bool pool_live(const struct local_state *e, const struct meter_plan *p, int64_t now_ms)
{
    return e->pool_exp_ms != 0 && now_ms < e->pool_exp_ms && e->pool_plan == p->id;
}

/* Admits from the subject's pool when the decision needs nothing shared that the pool
 * does not hold: a request token (or no request limit), no concurrency slot, and a month
 * not known to be spent. Under q->mu. */
static bool admit_from_pool(struct local_state *e, const struct meter_plan *p, bool charge,
                            bool download, int64_t now_ms, struct admit_facts *a)
{
    if (!pool_live(e, p, now_ms) || (download && p->max_concurrent > 0))
        return false;
    if (charge && p->requests_per_minute > 0 && e->req_pool < 1)
        return false;
    if (download && charge && p->monthly_bytes > 0 && e->month_used >= (uint64_t)p->monthly_bytes)
        return false; /* refusals are decided in Redis */
    if (charge && p->requests_per_minute > 0)
        e->req_pool--;
    *a = e->snap; /* what Redis said last, with the pool's tokens already taken */
    a->admitted = true;
    a->refused = MQ_NONE;
    a->retry_us = 0;
    a->lease_wait_us = 0;
    a->granted = 0;
    a->now_us = e->snap.now_us + (now_ms - e->snap_ms) * 1000;
    a->month_used = e->month_used;
    a->rtok = e->snap.rtok + (double)e->req_pool; /* the pool's tokens are still the org's */
    return true;
}

/* Takes up to want bytes of the subject's byte pool for a download; *wait_us is how long
 * until they may flow. Under q->mu. */
static uint64_t take_from_pool(struct local_state *e, const struct meter_plan *p, uint64_t want,
                               int64_t now_ms, int64_t *wait_us)
{
    *wait_us = 0;
    if (!pool_live(e, p, now_ms) || e->byte_pool == 0)
        return 0;
    uint64_t n = e->byte_pool < want ? e->byte_pool : want;
    e->byte_pool -= n;
    if (e->byte_due_ms > now_ms)
        *wait_us = (e->byte_due_ms - now_ms) * 1000;
    return n;
}

/* Starts or refills the subject's pools after a Redis answer; under q->mu. */
static void pool_fill(struct local_state *e, const struct meter_plan *p, int anchor,
                      const struct admit_facts *a, int64_t now_ms)
{
    e->pool_anchor = anchor;
    if (!pool_live(e, p, now_ms) && (e->req_pool > 0 || e->byte_pool > 0))
        return; /* an expired pool is returned by the sweep first */
    e->pool_plan = p->id;
    e->pool_p = *p;
    e->req_pool += a->granted;
    e->snap = *a;
    e->snap_ms = now_ms;
    e->pool_exp_ms = now_ms + POOL_TTL_MS;
}

void meter_quota_admit(struct meter_quota *q, const struct meter_plan *plan, const char *subject,
                       int anchor_day, bool charge, bool download, struct meter_flow *f,
                       struct meter_decision *d)
{
    memset(d, 0, sizeof *d);
    memset(f, 0, sizeof *f);
    f->plan = *plan;
    f->local_slot = -1;
    cm_copy(f->subject, sizeof f->subject, subject);
    f->anchor_day = anchor_day >= 1 && anchor_day <= 28 ? anchor_day : 1;
    f->download = download;
    f->bytes_tracked = download && tracks_bytes(plan);
    if (download && plan->max_concurrent > 0)
        cm_fmt(f->member, sizeof f->member, "%s:%llu", q->cfg->instance_id,
               (unsigned long long)atomic_fetch_add(&q->seq, 1));
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    period_of(cm_now_us() / 1000000, f->anchor_day, &start, &end, &next_end, mname, mnext,
              sizeof mname);
    struct admit_facts a = {0};
    uint64_t first = f->bytes_tracked ? lease_size(plan) : 0;
    int64_t now_ms = cm_mono_ms();
    int slot;
    /* A busy subject is admitted from its pool when it can be: no round trip. */
    pthread_mutex_lock(&q->mu);
    struct local_state *e = local_get(q, f->subject, &slot);
    count_rate(e, now_ms);
    bool pooled = admit_from_pool(e, plan, charge, download, now_ms, &a);
    bool want_pool = !pooled && busy(e, now_ms) && charge && !plan->shadow &&
                     !(download && plan->max_concurrent > 0);
    int64_t extra = 0;
    if (want_pool && plan->requests_per_minute > 0) {
        /* A tenth of a second of this gateway's rate, at most a quarter of its share. */
        int64_t cap = plan->request_burst > 0 ? plan->request_burst : plan->requests_per_minute;
        int64_t share = cap / 4 / (int64_t)quota_client_live(q->client);
        extra = (int64_t)rate_of(e, now_ms) / 10;
        extra = extra > share ? share : extra;
    }
    if (pooled && first > 0) { /* the download's first bytes from the byte pool */
        f->lease_left = take_from_pool(e, plan, first, now_ms, &f->first_wait_us);
        f->leased = f->lease_left;
        first = 0;
    }
    pthread_mutex_unlock(&q->mu);
    bool remote = false;
    if (!pooled) {
        /* An admitted download takes its first lease with the decision: one round trip for
         * a small file. */
        int rrc = admit_redis(q, f, charge, first, extra, true, mname, mnext, end, next_end, &a);
        if (rrc == CM_AGAIN) { /* Redis lost the month's counter: rebuild it, then decide */
            seed_month(q, f, mname, start, end);
            rrc = admit_redis(q, f, charge, first, extra, false, mname, mnext, end, next_end, &a);
        }
        remote = rrc == CM_OK;
    }
    pthread_mutex_lock(&q->mu);
    e = local_get(q, f->subject, &slot);
    if (remote) {
        e->month_used = a.month_used;
        if (want_pool && a.admitted) {
            pool_fill(e, plan, f->anchor_day, &a, cm_mono_ms());
            a.rtok += (double)e->req_pool;
        }
    } else if (!pooled) {
        admit_local(q, e, f, charge, end, &a);
        d->degraded = true;
        atomic_fetch_add(&q->degraded, 1);
        if (a.admitted && first > 0)
            lease_local(q, e, f, first, &a.lease_wait_us);
    }
    if (a.admitted && first > 0) {
        e->month_used += first;
        f->lease_left = first;
        f->leased = first;
        f->first_wait_us = a.lease_wait_us;
    }
    if (a.admitted && download) {
        e->active++;
        f->local_slot = slot;
    }
    pthread_mutex_unlock(&q->mu);
    if (!a.admitted || !download)
        f->member[0] = '\0'; /* no concurrency entry was taken */
    f->admitted = a.admitted;
    f->charged = a.admitted && charge;
    f->pooled = pooled;
    f->lease_ts_ms = cm_mono_ms();
    fill_decision(plan, end - start, &a, d);
    if (!a.admitted)
        atomic_fetch_add(&q->refused[a.refused], 1);
    else if (a.refused != MQ_NONE)
        atomic_fetch_add(&q->would_refuse, 1);
}

/* The lease a download takes at a time: a quarter second of the plan's rate, between
 * 4 KiB and 8 MiB, so slow plans shape smoothly and fast ones rarely call Redis. */
static uint64_t lease_size(const struct meter_plan *p)
{
    if (p->bytes_per_second <= 0)
        return LEASE_MAX;
    uint64_t l = (uint64_t)p->bytes_per_second / 4;
    return l < LEASE_MIN ? LEASE_MIN : l > LEASE_MAX ? LEASE_MAX : l;
}

static int lease_redis(struct meter_quota *q, struct meter_flow *f, uint64_t amount,
                       int64_t *wait_us)
{
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    period_of(cm_now_us() / 1000000, f->anchor_day, &start, &end, &next_end, mname, mnext,
              sizeof mname);
    struct quota_job *j = quota_job_new(QS_LEASE);
    if (j == NULL)
        return CM_UNAVAIL;
    quota_job_key(j, f->subject, "b");
    quota_job_key(j, f->subject, mname);
    quota_job_key(j, f->subject, mnext);
    quota_job_key(j, f->subject, "c");
    quota_job_arg(j, "%lld", (long long)f->plan.bytes_per_second);
    quota_job_arg(j, "%lld", (long long)f->plan.byte_burst);
    quota_job_arg(j, "%llu", (unsigned long long)amount);
    quota_job_arg(j, "%d", f->plan.monthly_bytes > 0 ? 1 : 0);
    quota_job_arg(j, "%lld", (long long)end * 1000000);
    quota_job_arg(j, "%s", f->member);
    quota_job_arg(j, "%d", MEMBER_TTL_MS);
    if (quota_client_call(q->client, j) != CM_OK)
        return CM_UNAVAIL;
    int rc = CM_UNAVAIL;
    if (j->reply->type == REDIS_REPLY_ARRAY && j->reply->elements >= 3) {
        *wait_us = num(j->reply, 0);
        rc = CM_OK;
    }
    quota_job_free(j);
    return rc;
}

/* A lease from the local byte bucket (rate ÷ live gateways), in debt like Redis's. */
static void lease_local(struct meter_quota *q, struct local_state *e, const struct meter_flow *f,
                        uint64_t amount, int64_t *wait_us)
{
    *wait_us = 0;
    if (f->plan.bytes_per_second <= 0)
        return;
    double live = (double)quota_client_live(q->client);
    double cap = (double)(f->plan.byte_burst > 0 ? f->plan.byte_burst : f->plan.bytes_per_second) / live;
    double rate = (double)f->plan.bytes_per_second / live / 1e6;
    e->btok = bucket_refill(e->btok, &e->bts_us, &e->binit, cap, rate, cm_now_us()) - (double)amount;
    if (e->btok < 0)
        *wait_us = (int64_t)ceil(-e->btok / rate);
}

void meter_quota_bytes(struct meter_quota *q, struct meter_flow *f, uint64_t n, int64_t *wait_us)
{
    *wait_us = 0;
    if (!f->bytes_tracked || !f->admitted)
        return;
    if (f->first_wait_us > 0) { /* the admission's lease is paid before its bytes flow */
        *wait_us = f->first_wait_us;
        f->first_wait_us = 0;
    }
    bool refresh = f->member[0] != '\0' && cm_mono_ms() - f->lease_ts_ms > MEMBER_REFRESH_MS;
    if (f->lease_left >= n && !refresh) {
        f->lease_left -= n;
        return;
    }
    int64_t owed = *wait_us;
    uint64_t amount = 0;
    if (f->lease_left < n) {
        amount = lease_size(&f->plan);
        if (amount < n - f->lease_left)
            amount = n - f->lease_left;
        /* The subject's byte pool on this gateway first (what ended downloads left). */
        int slot;
        int64_t pool_wait = 0;
        pthread_mutex_lock(&q->mu);
        uint64_t got = take_from_pool(local_get(q, f->subject, &slot), &f->plan, amount,
                                      cm_mono_ms(), &pool_wait);
        pthread_mutex_unlock(&q->mu);
        f->lease_left += got;
        f->leased += got;
        owed = owed > pool_wait ? owed : pool_wait;
        if (f->lease_left >= n && !refresh) {
            f->lease_left -= n;
            *wait_us = owed;
            f->lease_due_ms = cm_mono_ms() + owed / 1000;
            return;
        }
        amount = f->lease_left >= n ? 0 : amount - got < n - f->lease_left ? n - f->lease_left
                                                                            : amount - got;
    }
    bool remote = lease_redis(q, f, amount, wait_us) == CM_OK;
    int slot;
    pthread_mutex_lock(&q->mu);
    struct local_state *e = local_get(q, f->subject, &slot);
    if (!remote) {
        lease_local(q, e, f, amount, wait_us);
        atomic_fetch_add(&q->degraded, 1);
    }
    e->month_used += amount;
    pthread_mutex_unlock(&q->mu);
    f->lease_ts_ms = cm_mono_ms();
    f->leased += amount;
    f->lease_left = f->lease_left + amount - n;
    *wait_us = *wait_us > owed ? *wait_us : owed;
    f->lease_due_ms = cm_mono_ms() + *wait_us / 1000;
}

/* Gives back to Redis: unused bytes, request tokens, a concurrency entry. Never waits. */
static void give_back(struct meter_quota *q, const struct meter_plan *p, const char *subject,
                      int anchor, uint64_t bytes, int64_t tokens, const char *member)
{
    if (bytes == 0 && tokens == 0 && (member == NULL || member[0] == '\0'))
        return;
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    period_of(cm_now_us() / 1000000, anchor, &start, &end, &next_end, mname, mnext, sizeof mname);
    struct quota_job *j = quota_job_new(QS_END);
    if (j == NULL)
        return;
    subject_keys(j, subject, mname, mnext);
    quota_job_arg(j, "%lld", (long long)p->requests_per_minute);
    quota_job_arg(j, "%lld", (long long)p->request_burst);
    quota_job_arg(j, "%lld", (long long)p->bytes_per_second);
    quota_job_arg(j, "%lld", (long long)p->byte_burst);
    quota_job_arg(j, "%llu", (unsigned long long)bytes);
    quota_job_arg(j, "%d", p->monthly_bytes > 0 ? 1 : 0);
    quota_job_arg(j, "%lld", (long long)end * 1000000);
    quota_job_arg(j, "%s", member ? member : "");
    quota_job_arg(j, "%lld", (long long)tokens);
    quota_client_send(q->client, j);
}

void meter_quota_end(struct meter_quota *q, struct meter_flow *f, bool refund)
{
    if (!f->admitted)
        return;
    bool refund_token = refund && f->charged && f->plan.requests_per_minute > 0;
    uint64_t unused = f->bytes_tracked ? f->lease_left : 0;
    int64_t now_ms = cm_mono_ms();
    pthread_mutex_lock(&q->mu);
    int slot;
    struct local_state *e = f->local_slot >= 0 ? &q->local[f->local_slot] : NULL;
    if (e != NULL && strcmp(e->subject, f->subject) == 0 && e->active > 0)
        e->active--;
    e = local_get(q, f->subject, &slot);
    if (pool_live(e, &f->plan, now_ms)) { /* back to the pool, not to Redis */
        e->byte_pool += unused;
        if (f->lease_due_ms > e->byte_due_ms)
            e->byte_due_ms = f->lease_due_ms;
        unused = 0;
        if (refund_token) {
            e->req_pool++;
            refund_token = false;
        }
    } else {
        e->month_used -= unused < e->month_used ? unused : e->month_used;
    }
    pthread_mutex_unlock(&q->mu);
    give_back(q, &f->plan, f->subject, f->anchor_day, unused, refund_token ? 1 : 0, f->member);
    f->lease_left = 0;
    f->member[0] = '\0';
}

/* Returns expired pools to Redis (called by the quota client thread every 100 ms). */
static void sweep(void *arg)
{
    struct meter_quota *q = arg;
    struct returned {
        char subject[72];
        struct meter_plan plan;
        int anchor;
        uint64_t bytes;
        int64_t tokens;
    } back[64];
    int n = 0;
    int64_t now_ms = cm_mono_ms();
    pthread_mutex_lock(&q->mu);
    for (int i = 0; i < LOCAL_SLOTS && n < 64; i++) {
        struct local_state *e = &q->local[i];
        if (e->pool_exp_ms == 0 || now_ms < e->pool_exp_ms)
            continue;
        if (e->req_pool > 0 || e->byte_pool > 0) {
            struct returned *r = &back[n++];
            cm_copy(r->subject, sizeof r->subject, e->subject);
            r->plan = e->pool_p;
            r->anchor = e->pool_anchor;
            r->bytes = e->byte_pool;
            r->tokens = e->req_pool;
            e->month_used -= e->byte_pool < e->month_used ? e->byte_pool : e->month_used;
        }
        e->req_pool = 0;
        e->byte_pool = 0;
        e->byte_due_ms = 0;
        e->pool_exp_ms = 0;
    }
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < n; i++)
        give_back(q, &back[i].plan, back[i].subject, back[i].anchor,
                  back[i].plan.bytes_per_second > 0 || back[i].plan.monthly_bytes > 0
                      ? back[i].bytes
                      : 0,
                  back[i].tokens, NULL);
}

void meter_quota_stats(struct meter_quota *q, struct meter_quota_stats *out)
{
    memset(out, 0, sizeof *out);
    quota_client_counts(q->client, &out->redis_calls, &out->redis_sends, &out->redis_errors,
                        &out->redis_timeouts);
    out->degraded_decisions = atomic_load(&q->degraded);
    out->would_refuse = atomic_load(&q->would_refuse);
    for (int i = 0; i < 5; i++)
        out->refused[i] = atomic_load(&q->refused[i]);
    out->breaker_open = quota_client_open(q->client);
    out->live_gateways = quota_client_live(q->client);
}

bool meter_quota_redis_ok(struct meter_quota *q)
{
    return !quota_client_open(q->client);
}

void meter_quota_peek(struct meter_quota *q, const struct meter_plan *plan, const char *subject,
                      int anchor_day, struct meter_decision *d, struct meter_quota_view *v)
{
    memset(d, 0, sizeof *d);
    memset(v, 0, sizeof *v);
    int anchor = anchor_day >= 1 && anchor_day <= 28 ? anchor_day : 1;
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    period_of(cm_now_us() / 1000000, anchor, &start, &end, &next_end, mname, mnext, sizeof mname);
    v->period_start = start;
    v->period_end = end;
    struct admit_facts a = {.admitted = true, .month_end_us = end * 1000000,
                            .now_us = cm_now_us()};
    struct quota_job *j = quota_job_new(QS_PEEK);
    bool remote = false;
    if (j != NULL) {
        subject_keys(j, subject, mname, mnext);
        quota_job_key(j, subject, "ev");
        quota_job_arg(j, "%lld", (long long)plan->requests_per_minute);
        quota_job_arg(j, "%lld", (long long)plan->request_burst);
        quota_job_arg(j, "%lld", (long long)plan->bytes_per_second);
        quota_job_arg(j, "%lld", (long long)plan->byte_burst);
        quota_job_arg(j, "%d", (int)plan->max_concurrent);
        quota_job_arg(j, "%lld", (long long)end * 1000000);
        quota_job_arg(j, "%lld", (long long)next_end * 1000000);
        if (quota_client_call(q->client, j) == CM_OK) {
            const redisReply *r = j->reply;
            if (r->type == REDIS_REPLY_ARRAY && r->elements >= 12) {
                a.rtok = (double)num(r, 0);
                a.rfill_us = (double)num(r, 1);
                a.btok = (double)num(r, 2);
                a.bfill_us = (double)num(r, 3);
                a.month_used = num(r, 4) > 0 ? (uint64_t)num(r, 4) : 0;
                a.month_end_us = num(r, 5);
                a.running = num(r, 6);
                a.now_us = num(r, 7);
                v->near_limit = (uint64_t)num(r, 8);
                v->refused[MQ_REQUESTS] = (uint64_t)num(r, 9);
                v->refused[MQ_MONTHLY] = (uint64_t)num(r, 10);
                v->refused[MQ_CONCURRENCY] = (uint64_t)num(r, 11);
                remote = true;
            }
            quota_job_free(j);
        }
    }
    if (!remote) { /* what this gateway knows */
        int slot;
        pthread_mutex_lock(&q->mu);
        struct local_state *e = local_get(q, subject, &slot);
        a.rtok = e->rinit ? e->rtok : (double)(plan->request_burst > 0 ? plan->request_burst
                                                                       : plan->requests_per_minute);
        a.btok = e->binit ? e->btok : (double)(plan->byte_burst > 0 ? plan->byte_burst
                                                                    : plan->bytes_per_second);
        a.month_used = e->month_used;
        a.running = e->active;
        pthread_mutex_unlock(&q->mu);
        v->degraded = d->degraded = true;
    }
    v->month_used = a.month_used;
    v->running = a.running;
    fill_decision(plan, end - start, &a, d);
}

json_t *meter_quota_json(const struct meter_plan *plan, const struct meter_decision *d,
                         const struct meter_quota_view *v)
{
    char from[32], to[32];
    cm_time_format(v->period_start, from, sizeof from);
    cm_time_format(v->period_end, to, sizeof to);
    json_t *policies = json_array();
    for (int i = 0; i < d->n; i++) {
        const struct meter_policy_state *s = &d->st[i];
        json_array_append_new(
            policies,
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "name", meter_policy_name(s->policy),
                      "limit", (json_int_t)s->limit, "remaining", (json_int_t)s->remaining,
                      "reset_s", (json_int_t)s->reset_s, "window_s", (json_int_t)s->window_s,
                      "unit", s->policy == MQ_REQUESTS ? "requests"
                              : s->policy == MQ_CONCURRENCY ? "concurrent-requests"
                                                            : "content-bytes"));
    }
    uint64_t limit = (uint64_t)plan->monthly_bytes;
    return json_pack(
        "{s:{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:b}, s:o,"
        " s:{s:s, s:s, s:I, s:I, s:o}, s:{s:I, s:I}, s:{s:I, s:{s:I, s:I, s:I}}, s:s}",
        "plan", "name", plan->name, "requests_per_minute", (json_int_t)plan->requests_per_minute,
        "request_burst", (json_int_t)plan->request_burst, "bytes_per_second",
        (json_int_t)plan->bytes_per_second, "byte_burst", (json_int_t)plan->byte_burst,
        "monthly_bytes", (json_int_t)plan->monthly_bytes, "max_concurrent",
        (json_int_t)plan->max_concurrent, "failure_policy", plan->fail_closed ? "closed" : "open",
        "shadow", plan->shadow, "policies", policies, "month", "start", from, "end", to, "used",
        (json_int_t)v->month_used, "limit", (json_int_t)limit, "remaining",
        limit == 0 ? json_null()
                   : json_integer(v->month_used >= limit ? 0 : (json_int_t)(limit - v->month_used)),
        "concurrency", "in_use", (json_int_t)v->running, "limit",
        (json_int_t)plan->max_concurrent, "events", "near_limit", (json_int_t)v->near_limit,
        "refused", "requests", (json_int_t)v->refused[MQ_REQUESTS], "monthly_bytes",
        (json_int_t)v->refused[MQ_MONTHLY], "concurrency", (json_int_t)v->refused[MQ_CONCURRENCY],
        "source", v->degraded ? "local_budgets" : "redis");
}
