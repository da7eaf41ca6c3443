/*
 * A subject's quota state read without changing it, and its JSON document — what
 * GET /-/v1/quota and `hubmeter quota show` answer.
 */
#include "meter/quota_int.h"

#include <string.h>

void meter_quota_peek(struct meter_quota *q, const struct meter_plan *plan, const char *subject,
                      int anchor_day, struct meter_decision *d, struct meter_quota_view *v)
{
    memset(d, 0, sizeof *d);
    memset(v, 0, sizeof *v);
    int anchor = anchor_day >= 1 && anchor_day <= 28 ? anchor_day : 1;
    int64_t start, end, next_end;
    char mname[48], mnext[48];
    quota_period(cm_now_us() / 1000000, anchor, &start, &end, &next_end, mname, mnext, sizeof mname);
    v->period_start = start;
    v->period_end = end;
    struct admit_facts a = {.admitted = true, .month_end_us = end * 1000000,
                            .now_us = cm_now_us()};
    struct quota_job *j = quota_job_new(QS_PEEK);
    bool remote = false;
    if (j != NULL) {
        quota_subject_keys(j, subject, mname, mnext);
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
                a.rtok = (double)quota_reply_int(r, 0);
                a.rfill_us = (double)quota_reply_int(r, 1);
                a.btok = (double)quota_reply_int(r, 2);
                a.bfill_us = (double)quota_reply_int(r, 3);
                a.month_used = quota_reply_int(r, 4) > 0 ? (uint64_t)quota_reply_int(r, 4) : 0;
                a.month_end_us = quota_reply_int(r, 5);
                a.running = quota_reply_int(r, 6);
                a.now_us = quota_reply_int(r, 7);
                v->near_limit = (uint64_t)quota_reply_int(r, 8);
                v->refused[MQ_REQUESTS] = (uint64_t)quota_reply_int(r, 9);
                v->refused[MQ_MONTHLY] = (uint64_t)quota_reply_int(r, 10);
                v->refused[MQ_CONCURRENCY] = (uint64_t)quota_reply_int(r, 11);
                remote = true;
            }
            quota_job_free(j);
        }
    }
    if (!remote) { /* what this gateway knows */
        int slot;
        pthread_mutex_lock(&q->mu);
        struct local_state *e = quota_local_get(q, subject, &slot);
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
    quota_fill_decision(plan, end - start, &a, d);
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
