/*
 * Per-gateway pools for busy subjects: once a subject reaches BUSY_RPS admissions a
 * second here, request tokens are taken from Redis in batches and the unused part of its
 * downloads' byte leases is kept for its next downloads, so most admissions need no round
 * trip. Nothing is lost: pools live POOL_TTL_MS after they were last filled and what is
 * left then goes back to Redis (quota_sweep, run by the quota client's thread), and every
 * pooled token or byte was taken from the shared buckets first.
 */
#include "meter/quota_int.h"

#include <string.h>

/* Counts an admission in the subject's rate window; under q->mu. */
void quota_count_rate(struct local_state *e, int64_t now_ms)
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
unsigned quota_rate_of(const struct local_state *e, int64_t now_ms)
{
    int64_t span = now_ms - e->rate_window_ms;
    unsigned now_rate = e->rate_count >= 5 ? (unsigned)(e->rate_count * 1000 / (span > 100 ? span : 100))
                                           : 0;
    return now_rate > e->rate_last ? now_rate : e->rate_last;
}

bool quota_busy(const struct local_state *e, int64_t now_ms)
{
    return quota_rate_of(e, now_ms) >= BUSY_RPS;
}

bool quota_pool_live(const struct local_state *e, const struct meter_plan *p, int64_t now_ms)
{
    return e->pool_exp_ms != 0 && now_ms < e->pool_exp_ms && e->pool_plan == p->id;
}

/* Admits from the subject's pool when the decision needs nothing shared that the pool
 * does not hold: a request token (or no request limit), no concurrency slot, and a month
 * not known to be spent. Under q->mu. */
bool quota_admit_from_pool(struct local_state *e, const struct meter_plan *p, bool charge,
                            bool download, int64_t now_ms, struct admit_facts *a)
{
    if (!quota_pool_live(e, p, now_ms) || (download && p->max_concurrent > 0))
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
uint64_t quota_take_from_pool(struct local_state *e, const struct meter_plan *p, uint64_t want,
                               int64_t now_ms, int64_t *wait_us)
{
    *wait_us = 0;
    if (!quota_pool_live(e, p, now_ms) || e->byte_pool == 0)
        return 0;
    uint64_t n = e->byte_pool < want ? e->byte_pool : want;
    e->byte_pool -= n;
    if (e->byte_due_ms > now_ms)
        *wait_us = (e->byte_due_ms - now_ms) * 1000;
    return n;
}

/* Starts or refills the subject's pools after a Redis answer; under q->mu. */
void quota_pool_fill(struct local_state *e, const struct meter_plan *p, int anchor,
                      const struct admit_facts *a, int64_t now_ms)
{
    e->pool_anchor = anchor;
    if (!quota_pool_live(e, p, now_ms) && (e->req_pool > 0 || e->byte_pool > 0))
        return; /* an expired pool is returned by the sweep first */
    e->pool_plan = p->id;
    e->pool_p = *p;
    e->req_pool += a->granted;
    e->req_low = a->granted / 4; /* a quarter of a grant lasts far longer than a round trip */
    e->snap = *a;
    e->snap_ms = now_ms;
    e->pool_exp_ms = now_ms + POOL_TTL_MS;
}

/* Gives back to Redis: unused bytes, request tokens, a concurrency entry. Never waits. */
void quota_give_back(struct meter_quota *q, const struct meter_plan *p, const char *subject,
                      int anchor, uint64_t bytes, int64_t tokens, const char *member)
{
    if (bytes == 0 && tokens == 0 && (member == NULL || member[0] == '\0'))
        return;
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    quota_period(cm_now_us() / 1000000, anchor, &start, &end, &next_end, mname, mnext, sizeof mname);
    struct quota_job *j = quota_job_new(QS_END);
    if (j == NULL)
        return;
    quota_subject_keys(j, subject, mname, mnext);
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

/* Returns expired pools to Redis (called by the quota client thread every 100 ms). */
void quota_sweep(void *arg)
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
        quota_give_back(q, &back[i].plan, back[i].subject, back[i].anchor,
                  back[i].plan.bytes_per_second > 0 || back[i].plan.monthly_bytes > 0
                      ? back[i].bytes
                      : 0,
                  back[i].tokens, NULL);
}
