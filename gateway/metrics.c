/*
 * The gateway's Prometheus metrics: counters, gauges and latency histograms kept in
 * atomics (no lock on the request path), rendered as text format 0.0.4 for /-/metrics.
 * Names carry the hubmeter_ prefix and base units (seconds, bytes); counters end in
 * _total. No per-org, per-key or per-repo labels (unbounded): per-org figures come from
 * PostgreSQL. The only open-ended labels, plan and policy, are capped at GW_LABEL_SLOTS
 * values (operators define a handful); further values are counted as "other".
 */
#include "gateway/gw_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in seconds, shared by both histograms: sub-millisecond admission up to a
 * slow upstream's first byte. */
static const double latency_bounds[GW_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                          0.025,  0.05,  0.1,    0.25,  1,
                                                          2.5,    10};

void gw_metrics_init(struct gw_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->plans.lock, NULL);
    pthread_mutex_init(&m->policies.lock, NULL);
}

void gw_metrics_destroy(struct gw_metrics *m)
{
    pthread_mutex_destroy(&m->plans.lock);
    pthread_mutex_destroy(&m->policies.lock);
}

/* The slot of value in s, adding it when new and there is room; GW_LABEL_SLOTS ("other")
 * when full. Values are copied truncated to 31 bytes and made safe for a label. */
static int label_slot(struct gw_label_set *s, const char *value)
{
    char v[32];
    size_t n = 0;
    for (; n < sizeof v - 1 && value[n] != '\0'; n++) /* no quotes, backslashes, controls */
        v[n] = (value[n] == '"' || value[n] == '\\' || (unsigned char)value[n] < 0x20)
                   ? '_' : value[n];
    v[n] = '\0';
    int used = atomic_load(&s->used);
    for (int i = 0; i < used; i++)
        if (strcmp(s->names[i], v) == 0)
            return i;
    pthread_mutex_lock(&s->lock);
    int slot = GW_LABEL_SLOTS;
    used = atomic_load(&s->used);
    for (int i = 0; i < used && slot == GW_LABEL_SLOTS; i++)
        if (strcmp(s->names[i], v) == 0)
            slot = i;
    if (slot == GW_LABEL_SLOTS && used < GW_LABEL_SLOTS) {
        memcpy(s->names[used], v, n + 1);
        atomic_store(&s->used, used + 1); /* publishes the name written above */
        slot = used;
    }
    pthread_mutex_unlock(&s->lock);
    return slot;
}

/* The label value of slot: its display name when set, else its value ("other" past the
 * last slot), copied into buf. */
static const char *label_name(struct gw_label_set *s, int slot, char *buf, size_t len)
{
    if (slot >= GW_LABEL_SLOTS)
        return "other";
    pthread_mutex_lock(&s->lock);
    cm_copy(buf, len, s->display[slot][0] ? s->display[slot] : s->names[slot]);
    pthread_mutex_unlock(&s->lock);
    return buf;
}

/* Plan slots are recorded as "#<id>" (the request path has the plan's id, not its name):
 * names those not named yet from PostgreSQL's plans. A name, once set, is kept (a series
 * must not change its labels; a renamed plan shows its new name after a restart). A name
 * that is also a fixed value (anonymous, none, other) stays "#<id>". Without PostgreSQL
 * within 200 ms the slots wait for the next scrape. */
static void name_plans(struct gw *gw)
{
    struct gw_label_set *s = &gw->metrics.plans;
    int used = atomic_load(&s->used);
    bool pending = false;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < used; i++)
        pending |= s->names[i][0] == '#' && s->display[i][0] == '\0';
    pthread_mutex_unlock(&s->lock);
    PGconn *db = pending ? cm_pg_pool_get(gw->pg, 200) : NULL;
    if (db == NULL)
        return;
    PGresult *res = PQexecParams(db, "SELECT '#' || id, name FROM plans", 0, NULL, NULL, NULL,
                                 NULL, 0);
    pthread_mutex_lock(&s->lock);
    for (int r = 0; PQresultStatus(res) == PGRES_TUPLES_OK && r < PQntuples(res); r++) {
        const char *name = PQgetvalue(res, r, 1);
        if (strcmp(name, "anonymous") == 0 || strcmp(name, "none") == 0 ||
            strcmp(name, "other") == 0)
            continue;
        for (int i = 0; i < used; i++)
            if (s->display[i][0] == '\0' && strcmp(s->names[i], PQgetvalue(res, r, 0)) == 0)
                cm_copy(s->display[i], sizeof s->display[i], name);
    }
    pthread_mutex_unlock(&s->lock);
    PQclear(res);
    cm_pg_pool_put(gw->pg, db);
}

void gw_metrics_plan_label(const struct reg_identity *id, char *out, size_t len)
{
    if (id->org_id == 0)
        cm_copy(out, len, "anonymous");
    else if (id->plan_id == 0)
        cm_copy(out, len, "none");
    else { /* every request's: no printf */
        struct cm_buf b;
        cm_buf_init(&b, out, len);
        cm_buf_str(&b, "#");
        cm_buf_i64(&b, id->plan_id);
    }
}

void gw_metrics_download_started(struct gw_metrics *m)
{
    atomic_fetch_add(&m->downloads_in_flight, 1);
}

void gw_metrics_request_done(struct gw_metrics *m, const char *plan, unsigned status,
                             uint64_t bytes)
{
    unsigned cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    int p = label_slot(&m->plans, plan);
    atomic_fetch_add(&m->requests[p][cls - 1], 1);
    atomic_fetch_add(&m->bytes[p][cls - 1], bytes);
    atomic_fetch_sub(&m->downloads_in_flight, 1);
}

void gw_metrics_refused(struct gw_metrics *m, const char *policy)
{
    atomic_fetch_add(&m->refused[label_slot(&m->policies, policy)], 1);
}

void gw_histogram_observe(struct gw_histogram *h, int64_t us)
{
    if (us < 0)
        us = 0;
    double s = (double)us / 1e6;
    for (int i = 0; i < GW_LATENCY_BUCKETS; i++)
        if (s <= latency_bounds[i])
            atomic_fetch_add(&h->le[i], 1);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum_us, (uint64_t)us);
}

void gw_metrics_upstream_latency(struct gw_metrics *m, int64_t ms)
{
    gw_histogram_observe(&m->upstream, ms * 1000);
}

void gw_metrics_admission_latency(struct gw_metrics *m, int64_t us)
{
    gw_histogram_observe(&m->admission, us);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(FILE *f, const char *name, const char *help, struct gw_histogram *h)
{
    family(f, name, "histogram", help);
    /* Read the count first: buckets observed later can only be larger, never below it
     * by more than the observations in progress. */
    unsigned long long count = atomic_load(&h->count);
    for (int i = 0; i < GW_LATENCY_BUCKETS; i++) {
        unsigned long long le = atomic_load(&h->le[i]);
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, latency_bounds[i],
                le < count ? le : count);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, count, name,
            (double)atomic_load(&h->sum_us) / 1e6, name, count);
}

static void simple(FILE *f, const char *name, const char *type, const char *help, int64_t v)
{
    family(f, name, type, help);
    fprintf(f, "%s %" PRId64 "\n", name, v);
}

/* A gauge the meter may not know yet (-1): its sample is left out until it does. */
static void maybe(FILE *f, const char *name, const char *help, int64_t v)
{
    family(f, name, "gauge", help);
    if (v >= 0)
        fprintf(f, "%s %" PRId64 "\n", name, v);
}

static void traffic(FILE *f, struct gw_metrics *m)
{
    char name[64];
    int plans = atomic_load(&m->plans.used);
    family(f, "hubmeter_requests_total", "counter",
           "Proxied requests by plan and response status class.");
    for (int p = 0; p <= GW_LABEL_SLOTS; p++)
        for (int c = 0; (p < plans || p == GW_LABEL_SLOTS) && c < 5; c++)
            if (p < plans || atomic_load(&m->requests[p][c]) > 0)
                fprintf(f, "hubmeter_requests_total{plan=\"%s\",status_class=\"%dxx\"} %" PRIu64
                           "\n", label_name(&m->plans, p, name, sizeof name), c + 1,
                        (uint64_t)atomic_load(&m->requests[p][c]));
    family(f, "hubmeter_response_bytes_total", "counter",
           "Body bytes delivered to clients by plan and response status class.");
    for (int p = 0; p <= GW_LABEL_SLOTS; p++)
        for (int c = 0; (p < plans || p == GW_LABEL_SLOTS) && c < 5; c++)
            if (p < plans || atomic_load(&m->requests[p][c]) > 0)
                fprintf(f, "hubmeter_response_bytes_total{plan=\"%s\",status_class=\"%dxx\"} %"
                           PRIu64 "\n", label_name(&m->plans, p, name, sizeof name), c + 1,
                        (uint64_t)atomic_load(&m->bytes[p][c]));
    int policies = atomic_load(&m->policies.used);
    family(f, "hubmeter_refused_requests_total", "counter",
           "Requests refused with 429, by the refusing policy.");
    for (int p = 0; p <= GW_LABEL_SLOTS; p++)
        if (p < policies || (p == GW_LABEL_SLOTS && atomic_load(&m->refused[p]) > 0))
            fprintf(f, "hubmeter_refused_requests_total{policy=\"%s\"} %" PRIu64 "\n",
                    label_name(&m->policies, p, name, sizeof name),
                    (uint64_t)atomic_load(&m->refused[p]));
    simple(f, "hubmeter_requests_in_flight", "gauge", "Requests being served now.",
           atomic_load(&m->in_flight));
    simple(f, "hubmeter_downloads_in_flight", "gauge",
           "Proxied (metered) requests being served now.", atomic_load(&m->downloads_in_flight));
    simple(f, "hubmeter_slow_clients_cut_total", "counter",
           "Connections closed for sending their request head too slowly.",
           (int64_t)atomic_load(&m->slow_clients_cut));
    histogram(f, "hubmeter_upstream_latency_seconds", "Time to the upstream's response head.",
              &m->upstream);
    histogram(f, "hubmeter_admission_latency_seconds",
              "Time to identify and admit a request before the upstream is asked.",
              &m->admission);
}

static void pipeline(FILE *f, struct gw *gw)
{
    uint64_t journal_bytes, unjournaled;
    meter_journal_state(gw->meter, &journal_bytes, &unjournaled);
    struct meter_stats st;
    meter_stats_read(&st);
    simple(f, "hubmeter_redis_up", "gauge", "Whether the last usage shipment reached Redis.",
           meter_redis_ok(gw->meter) ? 1 : 0);
    simple(f, "hubmeter_redis_errors_total", "counter",
           "Failed Redis connections and commands (shipper and flusher).",
           (int64_t)st.redis_errors);
    simple(f, "hubmeter_postgresql_errors_total", "counter",
           "Failed PostgreSQL connections and statements.", (int64_t)cm_pg_errors());
    simple(f, "hubmeter_journal_bytes", "gauge", "Size of the local usage journal on disk.",
           (int64_t)journal_bytes);
    simple(f, "hubmeter_journal_skipped_records_total", "counter",
           "Records kept in memory only because the journal was full or failing.",
           (int64_t)unjournaled);
    simple(f, "hubmeter_shipper_batches_total", "counter",
           "Usage batches shipped to the Redis stream.", (int64_t)st.batches_shipped);
    maybe(f, "hubmeter_shipper_unapplied_batches",
          "Batches in the journal that PostgreSQL has not been seen to apply.", st.outbox_batches);
    maybe(f, "hubmeter_stream_entries", "Entries in the usage stream (XLEN).", st.stream_length);
    maybe(f, "hubmeter_stream_pending_entries",
          "Usage stream entries delivered to flushers and not yet acknowledged.",
          st.stream_pending);
    maybe(f, "hubmeter_stream_lag_entries",
          "Usage stream entries not yet delivered to any flusher.", st.stream_lag);
    simple(f, "hubmeter_flusher_batches_total", "counter",
           "Batches this process's flusher applied to PostgreSQL.", (int64_t)st.flusher_batches);
    simple(f, "hubmeter_flusher_duplicate_batches_total", "counter",
           "Batches this process's flusher found applied already (no-ops).",
           (int64_t)st.flusher_duplicates);
    simple(f, "hubmeter_flusher_errors_total", "counter",
           "Flusher rounds that failed because Redis or PostgreSQL was unreachable.",
           (int64_t)st.flusher_errors);
    simple(f, "hubmeter_flusher_last_batch_timestamp_seconds", "gauge",
           "When this process's flusher last applied a batch (0: never).", st.flusher_last_batch);
    maybe(f, "hubmeter_watermark_lag_seconds",
          "How far the pipeline watermark (complete_until) trails now, as the flusher last "
          "read it.", st.watermark_lag_s);
}

static void quota(FILE *f, struct gw *gw);

char *gw_metrics_render(struct gw *gw)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    name_plans(gw);
    traffic(f, &gw->metrics);
    pipeline(f, gw);
    quota(f, gw);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* The quota client's state: Redis health as the quota path sees it, local decisions,
 * shadow refusals, live gateways, pacing. (Refusals by policy: traffic above.) */
static void quota(FILE *f, struct gw *gw)
{
    struct meter_quota_stats s;
    if (gw->quota == NULL)
        return;
    meter_quota_stats(gw->quota, &s);
    simple(f, "hubmeter_quota_shadow_refusals_total", "counter",
           "Refusals that shadow-mode plans evaluated but did not make.",
           (int64_t)s.would_refuse);
    simple(f, "hubmeter_quota_degraded_decisions_total", "counter",
           "Quota decisions made from local budgets because Redis was unavailable.",
           (int64_t)s.degraded_decisions);
    simple(f, "hubmeter_quota_redis_calls_total", "counter",
           "Quota script calls to Redis that a request waited for (admissions, byte leases).",
           (int64_t)s.redis_calls);
    simple(f, "hubmeter_quota_redis_sends_total", "counter",
           "Quota script calls nobody waits for (unused leases and tokens given back, "
           "concurrency slots freed).",
           (int64_t)s.redis_sends);
    simple(f, "hubmeter_quota_redis_errors_total", "counter",
           "Failed quota rounds (errors, lost connections).", (int64_t)s.redis_errors);
    simple(f, "hubmeter_quota_redis_timeouts_total", "counter",
           "Quota calls that gave up waiting for Redis.", (int64_t)s.redis_timeouts);
    simple(f, "hubmeter_quota_breaker_open", "gauge",
           "Whether the quota path's circuit breaker to Redis is open.", s.breaker_open ? 1 : 0);
    simple(f, "hubmeter_live_gateways", "gauge", "Gateways alive, as last seen in Redis.",
           (int64_t)s.live_gateways);
    family(f, "hubmeter_paced_seconds_total", "counter",
           "Time downloads were held back by their org's byte bucket.");
    fprintf(f, "hubmeter_paced_seconds_total %.3f\n",
            (double)atomic_load(&gw->metrics.paced_us) / 1e6);
}

