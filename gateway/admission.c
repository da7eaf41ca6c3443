/*
 * Admission: which plan holds a request (the org's, or the anonymous plan per client
 * network), the quota decision before the upstream is touched, the rate-limit headers on
 * every response (IETF draft -10 in the form DESIGN.md gives, plus GitHub's X-RateLimit-*),
 * 429 refusals with Retry-After and a JSON body, the bytes charged as downloads flow (how
 * long a stream must pause while its org's byte bucket is in debt), and the end of each
 * request's quota state.
 * Plans are cached from PostgreSQL and reloaded every PLAN_TTL_MS, so plan changes reach
 * every gateway within seconds; a plan not yet known triggers an early reload.
 */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_TTL_MS 2000
#define PLAN_MISS_RELOAD_MS 200

struct gw_plans {
    pthread_mutex_t mu;      /* guards list, n, loaded_ms */
    pthread_mutex_t load_mu; /* held by the thread loading from PostgreSQL */
    struct reg_plan *list;
    size_t n;
    int64_t loaded_ms; /* 0: never loaded */
};

struct gw_plans *gw_plans_new(void)
{
    struct gw_plans *p = calloc(1, sizeof *p);
    if (p != NULL) {
        pthread_mutex_init(&p->mu, NULL);
        pthread_mutex_init(&p->load_mu, NULL);
    }
    return p;
}

void gw_plans_free(struct gw_plans *p)
{
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->load_mu);
    free(p->list);
    free(p);
}

static int64_t plans_age_ms(struct gw_plans *p)
{
    pthread_mutex_lock(&p->mu);
    int64_t age = p->loaded_ms ? cm_mono_ms() - p->loaded_ms : INT64_MAX;
    pthread_mutex_unlock(&p->mu);
    return age;
}

/* Reloads the plans if they are older than max_age_ms. A stale cache is refreshed by one
 * thread while the others go on with it; when wait is set (nothing loaded yet, or a plan
 * is missing) the caller waits for the load in progress. PostgreSQL away: the last plans
 * stay in force. */
static void plans_refresh(struct gw *gw, int64_t max_age_ms, bool wait)
{
    struct gw_plans *p = gw->plans;
    if (plans_age_ms(p) < max_age_ms)
        return;
    if (wait)
        pthread_mutex_lock(&p->load_mu);
    else if (pthread_mutex_trylock(&p->load_mu) != 0)
        return;
    if (plans_age_ms(p) < max_age_ms) { /* another thread just loaded them */
        pthread_mutex_unlock(&p->load_mu);
        return;
    }
    struct reg_plan *list = NULL;
    size_t n = 0;
    char err[256];
    PGconn *db = cm_pg_pool_get(gw->pg, 500);
    int rc = db ? reg_plan_list(db, &list, &n, err, sizeof err) : CM_UNAVAIL;
    if (db != NULL)
        cm_pg_pool_put(gw->pg, db);
    pthread_mutex_lock(&p->mu);
    if (rc == CM_OK) {
        free(p->list);
        p->list = list;
        p->n = n;
    }
    p->loaded_ms = cm_mono_ms();
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->load_mu);
    if (rc != CM_OK)
        cm_log(CM_LOG_WARN, "plans_reload_failed", "error=\"%s\"",
               db ? err : "no database connection");
}

void gw_plan_to_meter(const struct reg_plan *r, struct meter_plan *m)
{
    memset(m, 0, sizeof *m);
    m->id = r->id;
    cm_copy(m->name, sizeof m->name, r->name);
    m->requests_per_minute = r->requests_per_minute;
    m->request_burst = r->request_burst;
    m->bytes_per_second = r->bytes_per_second;
    m->byte_burst = r->byte_burst;
    m->monthly_bytes = r->monthly_bytes;
    m->max_concurrent = r->max_concurrent;
    m->fail_closed = strcmp(r->failure_policy, "closed") == 0;
    m->shadow = r->shadow;
}

/* The plan by id (id > 0) or by name; false when there is none. */
static bool plan_lookup(struct gw *gw, int64_t id, const char *name, struct meter_plan *out)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        plans_refresh(gw, attempt == 0 ? PLAN_TTL_MS : PLAN_MISS_RELOAD_MS, attempt > 0);
        struct gw_plans *p = gw->plans;
        bool found = false;
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < p->n && !found; i++)
            if (id > 0 ? p->list[i].id == id
                       : name != NULL && strcmp(p->list[i].name, name) == 0) {
                gw_plan_to_meter(&p->list[i], out);
                found = true;
            }
        pthread_mutex_unlock(&p->mu);
        if (found)
            return true;
    }
    return false;
}

static enum MHD_Result refuse(struct gw_req *req, struct MHD_Connection *c)
{
    const struct meter_decision *d = &req->quota;
    const struct meter_policy_state *s = &d->st[0]; /* the refusing policy comes first */
    const char *policy = meter_policy_name(d->refused_by);
    const char *code = d->refused_by == MQ_MONTHLY       ? "monthly_quota_exceeded"
                       : d->refused_by == MQ_CONCURRENCY ? "too_many_downloads"
                                                         : "rate_limited";
    char message[256], reset[40];
    if (d->refused_by == MQ_MONTHLY)
        cm_fmt(message, sizeof message,
               "the monthly download quota of %llu bytes is used up; it renews at %s",
               (unsigned long long)s->limit,
               cm_time_format(d->now_s + d->retry_after_s, reset, sizeof reset) == CM_OK ? reset
                                                                                       : "?");
    else if (d->refused_by == MQ_CONCURRENCY)
        cm_fmt(message, sizeof message, "at most %llu downloads may run at once; retry when one "
               "ends", (unsigned long long)s->limit);
    else
        cm_fmt(message, sizeof message, "more than %llu requests per %lld s; retry in %lld s",
               (unsigned long long)s->limit, (long long)s->window_s,
               (long long)d->retry_after_s);
    cm_time_format(d->now_s + d->retry_after_s, reset, sizeof reset);
    json_t *body = json_pack("{s:{s:s, s:s, s:s, s:I, s:I, s:I, s:s}}", "error", "code", code,
                             "message", message, "policy", policy, "limit",
                             (json_int_t)s->limit, "window_s", (json_int_t)s->window_s,
                             "retry_after_s", (json_int_t)d->retry_after_s, "reset", reset);
    cm_copy(req->refused_by, sizeof req->refused_by, policy);
    cm_copy(req->error_code, sizeof req->error_code, code); /* the access log's decision */
    gw_metrics_refused(&req->gw->metrics, policy);
    return gw_reply_json(req, c, MHD_HTTP_TOO_MANY_REQUESTS, body);
}

int gw_quota_seed(void *arg, const char *subject, int64_t from, int64_t to, uint64_t *bytes)
{
    struct gw *gw = arg;
    int64_t org = 0;
    const char *network = NULL;
    if (strncmp(subject, "org:", 4) == 0)
        org = strtoll(subject + 4, NULL, 10);
    else if (strncmp(subject, "anon:", 5) == 0)
        network = subject + 5;
    if (org <= 0 && network == NULL)
        return CM_INVALID;
    PGconn *db = cm_pg_pool_get(gw->pg, 200);
    if (db == NULL)
        return CM_UNAVAIL;
    char err[256];
    int rc = meter_usage_bytes(db, org, network, from, to, bytes, err, sizeof err);
    cm_pg_pool_put(gw->pg, db);
    if (rc != CM_OK)
        cm_log(CM_LOG_WARN, "quota_seed_failed", "subject=%s error=\"%s\"", subject, err);
    return rc;
}

bool gw_plan_of(struct gw_req *req, struct meter_plan *plan, char *subject, size_t len,
                int *anchor)
{
    struct gw *gw = req->gw;
    *anchor = 1;
    if (req->id.org_id != 0) {
        if (req->id.plan_id == 0 || !plan_lookup(gw, req->id.plan_id, NULL, plan))
            return false; /* an org without a plan is not limited */
        struct cm_buf b; /* every admission makes it: no printf */
        cm_buf_init(&b, subject, len);
        cm_buf_str(&b, "org:");
        cm_buf_i64(&b, req->id.org_id);
        *anchor = req->id.anchor_day;
        return true;
    }
    if (!plan_lookup(gw, 0, gw->cfg->anonymous_plan, plan))
        return false;
    struct cm_buf b;
    cm_buf_init(&b, subject, len);
    cm_buf_str(&b, "anon:");
    cm_buf_str(&b, req->network);
    return true;
}

bool gw_plan_named(struct gw *gw, const char *name, struct meter_plan *plan)
{
    return name[0] != '\0' && plan_lookup(gw, 0, name, plan);
}

json_t *gw_quota_doc(struct gw *gw, const struct meter_plan *plan, const char *subject,
                     int anchor)
{
    if (gw->quota == NULL || plan == NULL)
        return json_pack("{s:n, s:[], s:s}", "plan", "policies", "source",
                         gw->quota == NULL ? "quotas_off" : "no_plan");
    struct meter_decision d;
    struct meter_quota_view v;
    meter_quota_peek(gw->quota, plan, subject, anchor, &d, &v);
    return meter_quota_json(plan, &d, &v);
}

int gw_admit(struct gw_req *req, struct MHD_Connection *c, enum MHD_Result *mhd)
{
    struct gw *gw = req->gw;
    if (gw->quota == NULL)
        return CM_OK;
    struct meter_plan plan;
    char subject[72];
    int anchor;
    if (!gw_plan_of(req, &plan, subject, sizeof subject, &anchor))
        return CM_OK;
    bool head = strcmp(req->method, "HEAD") == 0;
    bool download = !head && strcmp(req->method, "OPTIONS") != 0;
    meter_quota_admit(gw->quota, &plan, subject, anchor, !head, download, &req->qflow,
                      &req->quota);
    req->quota_decided = true;
    if (req->quota.admitted)
        return CM_OK;
    *mhd = refuse(req, c);
    return CM_ERR;
}

void gw_quota_headers(struct gw_req *req, struct MHD_Response *resp)
{
    const struct meter_decision *d = &req->quota;
    if (!req->quota_decided || d->n == 0)
        return;
    /* Every response carries these: built without printf (cm_buf). */
    char policy[512], state[512];
    struct cm_buf pb, sb;
    cm_buf_init(&pb, policy, sizeof policy);
    cm_buf_init(&sb, state, sizeof state);
    for (int i = 0; i < d->n; i++) {
        const struct meter_policy_state *s = &d->st[i];
        const char *name = meter_policy_name(s->policy);
        const char *unit = s->policy == MQ_REQUESTS      ? ""
                           : s->policy == MQ_CONCURRENCY ? ";qu=\"concurrent-requests\""
                                                         : ";qu=\"content-bytes\"";
        cm_buf_str(&pb, i ? ", \"" : "\"");
        cm_buf_str(&pb, name);
        cm_buf_str(&pb, "\";q=");
        cm_buf_u64(&pb, s->limit);
        cm_buf_str(&pb, unit);
        if (s->window_s > 0) {
            cm_buf_str(&pb, ";w=");
            cm_buf_i64(&pb, s->window_s);
        }
        cm_buf_str(&sb, i ? ", \"" : "\"");
        cm_buf_str(&sb, name);
        cm_buf_str(&sb, "\";r=");
        cm_buf_u64(&sb, s->remaining);
        cm_buf_str(&sb, ";t=");
        cm_buf_i64(&sb, s->reset_s);
    }
    MHD_add_response_header(resp, "RateLimit-Policy", policy);
    MHD_add_response_header(resp, "RateLimit", state);
    const struct meter_policy_state *s = &d->st[0];
    char v[32];
    struct cm_buf vb;
    cm_buf_init(&vb, v, sizeof v);
    cm_buf_u64(&vb, s->limit);
    MHD_add_response_header(resp, "X-RateLimit-Limit", v);
    cm_buf_init(&vb, v, sizeof v);
    cm_buf_u64(&vb, s->remaining);
    MHD_add_response_header(resp, "X-RateLimit-Remaining", v);
    cm_buf_init(&vb, v, sizeof v);
    cm_buf_u64(&vb, s->limit - s->remaining);
    MHD_add_response_header(resp, "X-RateLimit-Used", v);
    cm_buf_init(&vb, v, sizeof v);
    cm_buf_i64(&vb, d->now_s + s->reset_s);
    MHD_add_response_header(resp, "X-RateLimit-Reset", v);
    MHD_add_response_header(resp, "X-RateLimit-Resource", meter_policy_name(s->policy));
    if (!d->admitted) {
        cm_buf_init(&vb, v, sizeof v);
        cm_buf_i64(&vb, d->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
}

int64_t gw_quota_charge(struct gw_req *req, uint64_t n)
{
    if (!req->quota_decided || !req->qflow.bytes_tracked || n == 0)
        return 0;
    int64_t wait_us = 0;
    meter_quota_bytes(req->gw->quota, &req->qflow, n, &wait_us);
    if (wait_us > 0)
        atomic_fetch_add(&req->gw->metrics.paced_us, (uint64_t)wait_us);
    return wait_us > 0 ? wait_us : 0;
}

void gw_quota_end(struct gw_req *req, unsigned status)
{
    if (req->quota_decided)
        meter_quota_end(req->gw->quota, &req->qflow, status == MHD_HTTP_NOT_MODIFIED);
}
