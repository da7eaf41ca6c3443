/*
 * Decisions while Redis is unavailable (timeout, error, breaker open): request and byte
 * buckets local to this gateway at the plan's rates divided by the live gateways; the
 * monthly quota (last usage Redis reported plus what was leased here since) and
 * concurrency (max ÷ live gateways) are enforced only under the "closed" failure policy.
 */
#include "meter/quota_int.h"

#include <math.h>
#include <string.h>

/* The same decision from local budgets (plan ÷ live gateways); under q->mu. */
void quota_admit_local(struct meter_quota *q, struct local_state *e, const struct meter_flow *f,
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
        e->rtok = quota_bucket_refill(e->rtok, &e->rts_us, &e->rinit, rcap, rrate, now);
        a->rtok = e->rtok;
        if (charge && e->rtok < 1) {
            a->refused = MQ_REQUESTS;
            a->retry_us = (1 - e->rtok) / rrate;
        }
    }
    if (p->bytes_per_second > 0) {
        double bcap = (double)(p->byte_burst > 0 ? p->byte_burst : p->bytes_per_second) / live;
        double brate = (double)p->bytes_per_second / live / 1e6;
        e->btok = quota_bucket_refill(e->btok, &e->bts_us, &e->binit, bcap, brate, now);
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

/* A lease from the local byte bucket (rate ÷ live gateways), in debt like Redis's. */
void quota_lease_local(struct meter_quota *q, struct local_state *e, const struct meter_flow *f,
                        uint64_t amount, int64_t *wait_us)
{
    *wait_us = 0;
    if (f->plan.bytes_per_second <= 0)
        return;
    double live = (double)quota_client_live(q->client);
    double cap = (double)(f->plan.byte_burst > 0 ? f->plan.byte_burst : f->plan.bytes_per_second) / live;
    double rate = (double)f->plan.bytes_per_second / live / 1e6;
    e->btok = quota_bucket_refill(e->btok, &e->bts_us, &e->binit, cap, rate, cm_now_us()) - (double)amount;
    if (e->btok < 0)
        *wait_us = (int64_t)ceil(-e->btok / rate);
}
