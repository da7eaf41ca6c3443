/*
 * Quota building blocks shared by the meter/quota*.c files: policy names, monthly periods
 * (with an org's anchor day), the keys of a subject, this gateway's table of per-subject
 * state, token-bucket refills, and the decision (policy states ordered nearest their
 * limit first) that the rate-limit headers report.
 */
#include "meter/quota_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

enum meter_policy quota_policy_from_name(const char *s)
{
    for (int p = MQ_REQUESTS; p <= MQ_CONCURRENCY; p++)
        if (strcmp(s, meter_policy_name((enum meter_policy)p)) == 0)
            return (enum meter_policy)p;
    return MQ_NONE;
}

static int64_t month_start(int year, int mon, int day)
{
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon, .tm_mday = day};
    return (int64_t)timegm(&tm);
}

/* The last period a thread computed: it holds for a whole month, and every admission asks. */
struct period_memo {
    int anchor;
    int64_t start, end, next_end;
    char name[24], next_name[24];
};
static _Thread_local struct period_memo memo;

/* The monthly period holding now_s for an anchor day: [start, end), and the next end.
 * Names are the start dates (YYYYMMDD). */
void quota_period(int64_t now_s, int anchor, int64_t *start, int64_t *end, int64_t *next_end,
                      char *name, char *next_name, size_t namelen)
{
    if (memo.anchor == anchor && now_s >= memo.start && now_s < memo.end &&
        namelen > sizeof memo.name) {
        *start = memo.start;
        *end = memo.end;
        *next_end = memo.next_end;
        memcpy(name, memo.name, sizeof memo.name);
        memcpy(next_name, memo.next_name, sizeof memo.next_name);
        return;
    }
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
    if (strlen(name) < sizeof memo.name && strlen(next_name) < sizeof memo.next_name) {
        memo = (struct period_memo){.anchor = anchor, .start = *start, .end = *end,
                                    .next_end = *next_end};
        memcpy(memo.name, name, strlen(name) + 1);
        memcpy(memo.next_name, next_name, strlen(next_name) + 1);
    }
}

/* The keys most scripts take, in their order: requests, bytes, month, next month,
 * concurrency (all in the subject's hash slot). */
void quota_subject_keys(struct quota_job *j, const char *subject, const char *mname,
                         const char *mnext)
{
    quota_job_key(j, subject, "r");
    quota_job_key(j, subject, "b");
    quota_job_key(j, subject, mname);
    quota_job_key(j, subject, mnext);
    quota_job_key(j, subject, "c");
}

static int local_slot(const char *subject)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = subject; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (int)(h % LOCAL_SLOTS);
}

/* The entry of subject (taking over its slot if another subject held it); under q->mu. */
struct local_state *quota_local_get(struct meter_quota *q, const char *subject, int *slot)
{
    *slot = local_slot(subject);
    struct local_state *e = &q->local[*slot];
    if (strcmp(e->subject, subject) != 0) {
        memset(e, 0, sizeof *e);
        cm_copy(e->subject, sizeof e->subject, subject);
    }
    return e;
}

double quota_bucket_refill(double tok, int64_t *ts_us, bool *init, double cap, double per_us,
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

/* Orders the states: the refusing policy first, then the smallest remaining share
 * (concurrency last). */
static void sort_states(struct meter_decision *d)
{
    for (int i = 1; i < d->n; i++)
        for (int k = i; k > 0; k--) {
            struct meter_policy_state *a = &d->st[k - 1], *b = &d->st[k];
            bool b_first = b->policy == d->refused_by && d->refused_by != MQ_NONE;
            bool a_first = a->policy == d->refused_by && d->refused_by != MQ_NONE;
            /* Concurrency is not a rate (it has no window), and clients that read the
             * first policy as "q per w" would misread it: it comes last unless it refused. */
            double sa = a->policy == MQ_CONCURRENCY ? 2
                        : a->limit                  ? (double)a->remaining / (double)a->limit
                                                    : 1;
            double sb = b->policy == MQ_CONCURRENCY ? 2
                        : b->limit                  ? (double)b->remaining / (double)b->limit
                                                    : 1;
            if (!(b_first || (!a_first && sb < sa)))
                break;
            struct meter_policy_state t = *a;
            *a = *b;
            *b = t;
        }
}

void quota_fill_decision(const struct meter_plan *p, int64_t period_s, const struct admit_facts *a,
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

bool quota_tracks_bytes(const struct meter_plan *p)
{
    return p->bytes_per_second > 0 || p->monthly_bytes > 0 || p->max_concurrent > 0;
}

int64_t quota_reply_int(const redisReply *r, size_t i)
{
    if (i >= r->elements)
        return 0;
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_INTEGER ? e->integer
           : e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

/* The lease a download takes at a time: a quarter second of the plan's rate, between
 * 4 KiB and 8 MiB, so slow plans shape smoothly and fast ones rarely call Redis. */
uint64_t quota_lease_size(const struct meter_plan *p)
{
    if (p->bytes_per_second <= 0)
        return LEASE_MAX;
    uint64_t l = (uint64_t)p->bytes_per_second / 4;
    return l < LEASE_MIN ? LEASE_MIN : l > LEASE_MAX ? LEASE_MAX : l;
}

/* A long download's next lease: as much as it has leased so far (so leases double), from
 * quota_lease_size up to LEASE_LONG_MAX and never above a quarter second of the plan's
 * rate. Each lease is a Redis round trip the stream waits for (~1 ms when both cores are
 * busy, measured): a 1 GiB download makes 19 instead of 128. */
uint64_t quota_next_lease(const struct meter_plan *p, uint64_t leased)
{
    uint64_t base = quota_lease_size(p);
    uint64_t cap = p->bytes_per_second > 0 ? (uint64_t)p->bytes_per_second / 4 : LEASE_LONG_MAX;
    cap = cap < LEASE_LONG_MAX ? cap : LEASE_LONG_MAX;
    return leased <= base || cap <= base ? base : leased < cap ? leased : cap;
}
