/*
 * Quota decisions (the meter_quota_* face of meter.h): admission (request bucket, monthly
 * byte quota, concurrency) in one Redis script call, byte leases while a download streams
 * (the byte bucket may go into debt, and the caller paces its stream until the debt is
 * repaid, so every stream of an org on every gateway shares the plan's rate), the end of
 * a request (unused lease back, concurrency entry released, a 304's request token
 * refunded), and a month counter Redis lost rebuilt from PostgreSQL. Busy subjects are
 * served from pools (quota_pool.c); while Redis is unavailable decisions come from local
 * budgets (quota_fallback.c).
 */
#include "meter/quota_int.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEED_RETRY_MS 10000

void meter_quota_set_seeder(struct meter_quota *q, meter_quota_seed_fn fn, void *arg)
{
    q->seed = fn;
    q->seed_arg = arg;
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
    q->client = quota_client_new(cfg->redis_url, cfg->redis_timeout_ms, cfg->instance_id, quota_sweep, q);
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
            quota_sweep(q);
    }
    quota_client_free(q->client);
    pthread_mutex_destroy(&q->mu);
    free(q->local);
    free(q);
}

/* ---- periods ------------------------------------------------------------------------------ */



/* ---- local state ---------------------------------------------------------------------------- */



/* ---- decisions -------------------------------------------------------------------------------- */





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
    quota_subject_keys(j, f->subject, mname, mnext);
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
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && quota_reply_int(r, 0) == -1) {
        rc = CM_AGAIN;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 12) {
        a->admitted = quota_reply_int(r, 0) == 1;
        a->refused = r->element[1]->type == REDIS_REPLY_STRING
                         ? quota_policy_from_name(r->element[1]->str)
                         : MQ_NONE;
        a->retry_us = (double)quota_reply_int(r, 2);
        a->rtok = (double)quota_reply_int(r, 3);
        a->rfill_us = (double)quota_reply_int(r, 4);
        a->btok = (double)quota_reply_int(r, 5);
        a->bfill_us = (double)quota_reply_int(r, 6);
        int64_t used = quota_reply_int(r, 7);
        a->month_used = used > 0 ? (uint64_t)used : 0;
        a->month_end_us = quota_reply_int(r, 8);
        a->running = quota_reply_int(r, 9);
        a->now_us = quota_reply_int(r, 10);
        a->lease_wait_us = quota_reply_int(r, 11);
        a->granted = r->elements >= 13 ? quota_reply_int(r, 12) : 0;
        rc = CM_OK;
    }
    quota_job_free(j);
    return rc;
}

/* Adds PostgreSQL's usage of the period to a month counter Redis does not have (it lost
 * its data); each gateway tries at most every SEED_RETRY_MS per subject. */
static void seed_month(struct meter_quota *q, const struct meter_flow *f, const char *mname,
                       int64_t start, int64_t end)
{
    int slot;
    int64_t now = cm_mono_ms();
    pthread_mutex_lock(&q->mu);
    struct local_state *e = quota_local_get(q, f->subject, &slot);
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





/* A download admitted from the pool takes its first bytes from the byte pool; under q->mu. */
static void first_from_pool(struct local_state *e, const struct meter_plan *p,
                            struct meter_flow *f, uint64_t *first, int64_t now_ms)
{
    if (*first == 0)
        return;
    f->lease_left = quota_take_from_pool(e, p, *first, now_ms, &f->first_wait_us);
    f->leased = f->lease_left;
    *first = 0;
}

/* An early refill of the pool that Redis refused for want of request tokens (other gateways
 * took them), or could not answer, still admits from what is left in the pool: it was asked
 * for before the pool ran out. Under q->mu; true when it admitted. */
static bool admit_from_rest(struct local_state *e, const struct meter_plan *p, struct meter_flow *f,
                            bool charge, bool download, uint64_t *first, struct admit_facts *a)
{
    int64_t now_ms = cm_mono_ms();
    struct admit_facts rest;
    if (!quota_admit_from_pool(e, p, charge, download, now_ms, &rest))
        return false;
    *a = rest;
    first_from_pool(e, p, f, first, now_ms);
    return true;
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
    f->bytes_tracked = download && quota_tracks_bytes(plan);
    if (download && plan->max_concurrent > 0)
        cm_fmt(f->member, sizeof f->member, "%s:%llu", q->cfg->instance_id,
               (unsigned long long)atomic_fetch_add(&q->seq, 1));
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    quota_period(cm_now_us() / 1000000, f->anchor_day, &start, &end, &next_end, mname, mnext,
              sizeof mname);
    struct admit_facts a = {0};
    uint64_t first = f->bytes_tracked ? quota_lease_size(plan) : 0;
    int64_t now_ms = cm_mono_ms();
    int slot;
    /* A busy subject is admitted from its pool when it can be: no round trip. */
    pthread_mutex_lock(&q->mu);
    struct local_state *e = quota_local_get(q, f->subject, &slot);
    quota_count_rate(e, now_ms);
    bool poolable = quota_busy(e, now_ms) && charge && !plan->shadow &&
                    !(download && plan->max_concurrent > 0);
    /* A pool running low, or about to expire, is refilled by one admission (in a round trip
     * of its own) while the others go on drawing from it: refilled only once empty or
     * expired, every admission arriving during the refill's round trip would wait for Redis
     * too. */
    bool refill = poolable && !e->refilling && plan->requests_per_minute > 0 &&
                  quota_pool_live(e, plan, now_ms) &&
                  (e->req_pool < e->req_low || e->pool_exp_ms - now_ms < POOL_TTL_MS / 4);
    bool pooled = !refill && quota_admit_from_pool(e, plan, charge, download, now_ms, &a);
    bool want_pool = !pooled && poolable;
    if (refill)
        e->refilling = true;
    int64_t extra = 0;
    if (want_pool && plan->requests_per_minute > 0) {
        /* A tenth of a second of this gateway's rate, at most a quarter of its share. */
        int64_t cap = plan->request_burst > 0 ? plan->request_burst : plan->requests_per_minute;
        int64_t share = cap / 4 / (int64_t)quota_client_live(q->client);
        extra = (int64_t)quota_rate_of(e, now_ms) / 10;
        extra = extra > share ? share : extra;
    }
    if (pooled)
        first_from_pool(e, plan, f, &first, now_ms);
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
    e = quota_local_get(q, f->subject, &slot);
    if (refill) {
        e->refilling = false;
        if (remote)
            e->month_used = a.month_used;
        if ((!remote || (!a.admitted && a.refused == MQ_REQUESTS)) &&
            admit_from_rest(e, plan, f, charge, download, &first, &a)) {
            pooled = true;
            remote = false;
        }
    }
    if (remote) {
        e->month_used = a.month_used;
        if (want_pool && a.admitted) {
            quota_pool_fill(e, plan, f->anchor_day, &a, cm_mono_ms());
            a.rtok += (double)e->req_pool;
        }
    } else if (!pooled) {
        quota_admit_local(q, e, f, charge, end, &a);
        d->degraded = true;
        atomic_fetch_add(&q->degraded, 1);
        if (a.admitted && first > 0)
            quota_lease_local(q, e, f, first, &a.lease_wait_us);
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
    quota_fill_decision(plan, end - start, &a, d);
    if (!a.admitted)
        atomic_fetch_add(&q->refused[a.refused], 1);
    else if (a.refused != MQ_NONE)
        atomic_fetch_add(&q->would_refuse, 1);
}

static int lease_redis(struct meter_quota *q, struct meter_flow *f, uint64_t amount,
                       int64_t *wait_us)
{
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    quota_period(cm_now_us() / 1000000, f->anchor_day, &start, &end, &next_end, mname, mnext,
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
        *wait_us = quota_reply_int(j->reply, 0);
        rc = CM_OK;
    }
    quota_job_free(j);
    return rc;
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
        amount = quota_next_lease(&f->plan, f->leased);
        if (amount < n - f->lease_left)
            amount = n - f->lease_left;
        /* The subject's byte pool on this gateway first (what ended downloads left). */
        int slot;
        int64_t pool_wait = 0;
        pthread_mutex_lock(&q->mu);
        uint64_t got = quota_take_from_pool(quota_local_get(q, f->subject, &slot), &f->plan, amount,
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
    struct local_state *e = quota_local_get(q, f->subject, &slot);
    if (!remote) {
        quota_lease_local(q, e, f, amount, wait_us);
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
    e = quota_local_get(q, f->subject, &slot);
    if (quota_pool_live(e, &f->plan, now_ms)) { /* back to the pool, not to Redis */
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
    quota_give_back(q, &f->plan, f->subject, f->anchor_day, unused, refund_token ? 1 : 0, f->member);
    f->lease_left = 0;
    f->member[0] = '\0';
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

