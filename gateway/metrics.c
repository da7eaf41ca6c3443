/*
 * The gateway's Prometheus metrics: counters and a latency histogram kept in atomics
 * (no lock on the request path), rendered as text format 0.0.4 for /-/metrics. No
 * per-org, per-key or per-repo labels: per-org figures come from PostgreSQL.
 */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double latency_bounds[GW_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                          0.5,   1,    2.5,   5,    10};

void gw_metrics_request_done(struct gw_metrics *m, unsigned status, uint64_t bytes)
{
    unsigned cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    atomic_fetch_add(&m->requests[cls - 1], 1);
    atomic_fetch_add(&m->bytes, bytes);
}

void gw_metrics_upstream_latency(struct gw_metrics *m, int64_t ms)
{
    double s = (double)ms / 1000.0;
    for (int i = 0; i < GW_LATENCY_BUCKETS; i++)
        if (s <= latency_bounds[i])
            atomic_fetch_add(&m->latency_le[i], 1);
    atomic_fetch_add(&m->latency_count, 1);
    atomic_fetch_add(&m->latency_sum_ms, (uint64_t)(ms > 0 ? ms : 0));
}

char *gw_metrics_render(struct gw_metrics *m, bool redis_ok, uint64_t journal_bytes,
                        uint64_t unjournaled)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    fprintf(f, "# HELP hubmeter_requests_total Proxied requests by response status class.\n"
               "# TYPE hubmeter_requests_total counter\n");
    for (int i = 0; i < 5; i++)
        fprintf(f, "hubmeter_requests_total{status_class=\"%dxx\"} %llu\n", i + 1,
                (unsigned long long)atomic_load(&m->requests[i]));
    fprintf(f,
            "# HELP hubmeter_response_bytes_total Body bytes delivered to clients.\n"
            "# TYPE hubmeter_response_bytes_total counter\n"
            "hubmeter_response_bytes_total %llu\n"
            "# HELP hubmeter_requests_in_flight Requests being served now.\n"
            "# TYPE hubmeter_requests_in_flight gauge\n"
            "hubmeter_requests_in_flight %lld\n"
            "# HELP hubmeter_slow_clients_cut_total Connections closed for sending their request "
            "head too slowly.\n"
            "# TYPE hubmeter_slow_clients_cut_total counter\n"
            "hubmeter_slow_clients_cut_total %llu\n"
            "# HELP hubmeter_redis_up Whether the last usage shipment reached Redis.\n"
            "# TYPE hubmeter_redis_up gauge\n"
            "hubmeter_redis_up %d\n",
            (unsigned long long)atomic_load(&m->bytes), (long long)atomic_load(&m->in_flight),
            (unsigned long long)atomic_load(&m->slow_clients_cut), redis_ok ? 1 : 0);
    fprintf(f,
            "# HELP hubmeter_journal_bytes Size of the local usage journal on disk.\n"
            "# TYPE hubmeter_journal_bytes gauge\n"
            "hubmeter_journal_bytes %llu\n"
            "# HELP hubmeter_journal_skipped_records_total Records kept in memory only because "
            "the journal was full or failing.\n"
            "# TYPE hubmeter_journal_skipped_records_total counter\n"
            "hubmeter_journal_skipped_records_total %llu\n",
            (unsigned long long)journal_bytes, (unsigned long long)unjournaled);
    fprintf(f, "# HELP hubmeter_upstream_latency_seconds Time to the upstream's response head.\n"
               "# TYPE hubmeter_upstream_latency_seconds histogram\n");
    for (int i = 0; i < GW_LATENCY_BUCKETS; i++)
        fprintf(f, "hubmeter_upstream_latency_seconds_bucket{le=\"%g\"} %llu\n",
                latency_bounds[i], (unsigned long long)atomic_load(&m->latency_le[i]));
    unsigned long long count = atomic_load(&m->latency_count);
    fprintf(f,
            "hubmeter_upstream_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
            "hubmeter_upstream_latency_seconds_sum %.3f\n"
            "hubmeter_upstream_latency_seconds_count %llu\n",
            count, (double)atomic_load(&m->latency_sum_ms) / 1000.0, count);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static const double admission_bounds[GW_LATENCY_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01,
                                                            0.02,   0.05,  0.1,   0.25,  0.5, 1};

void gw_metrics_admission(struct gw_metrics *m, int64_t us)
{
    double s = (double)us / 1e6;
    for (int i = 0; i < GW_LATENCY_BUCKETS; i++)
        if (s <= admission_bounds[i])
            atomic_fetch_add(&m->admission_le[i], 1);
    atomic_fetch_add(&m->admission_count, 1);
    atomic_fetch_add(&m->admission_sum_us, (uint64_t)(us > 0 ? us : 0));
}

char *gw_metrics_render_quota(struct gw_metrics *m, struct meter_quota *q)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    struct meter_quota_stats s;
    if (q != NULL)
        meter_quota_stats(q, &s);
    else
        memset(&s, 0, sizeof s);
    fprintf(f, "# HELP hubmeter_quota_refusals_total Requests refused (429) by policy.\n"
               "# TYPE hubmeter_quota_refusals_total counter\n");
    for (int p = MQ_REQUESTS; p <= MQ_CONCURRENCY; p++)
        if (p != MQ_BYTES) /* bytes are shaped, never refused */
            fprintf(f, "hubmeter_quota_refusals_total{policy=\"%s\"} %llu\n",
                    meter_policy_name((enum meter_policy)p), (unsigned long long)s.refused[p]);
    fprintf(f,
            "# HELP hubmeter_quota_shadow_refusals_total Refusals shadow-mode plans did not make.\n"
            "# TYPE hubmeter_quota_shadow_refusals_total counter\n"
            "hubmeter_quota_shadow_refusals_total %llu\n"
            "# HELP hubmeter_quota_degraded_decisions_total Quota decisions made from local "
            "budgets because Redis was unavailable.\n"
            "# TYPE hubmeter_quota_degraded_decisions_total counter\n"
            "hubmeter_quota_degraded_decisions_total %llu\n"
            "# HELP hubmeter_quota_redis_calls_total Quota script calls to Redis that a request "
            "waited for (admissions, byte leases).\n"
            "# TYPE hubmeter_quota_redis_calls_total counter\n"
            "hubmeter_quota_redis_calls_total %llu\n"
            "# HELP hubmeter_quota_redis_sends_total Quota script calls nobody waits for (the end "
            "of a request: unused lease back, concurrency slot freed).\n"
            "# TYPE hubmeter_quota_redis_sends_total counter\n"
            "hubmeter_quota_redis_sends_total %llu\n"
            "# HELP hubmeter_quota_redis_errors_total Failed quota rounds (errors, lost "
            "connections).\n"
            "# TYPE hubmeter_quota_redis_errors_total counter\n"
            "hubmeter_quota_redis_errors_total %llu\n"
            "# HELP hubmeter_quota_redis_timeouts_total Quota calls that gave up waiting for "
            "Redis.\n"
            "# TYPE hubmeter_quota_redis_timeouts_total counter\n"
            "hubmeter_quota_redis_timeouts_total %llu\n"
            "# HELP hubmeter_quota_breaker_open Whether the Redis circuit breaker is open.\n"
            "# TYPE hubmeter_quota_breaker_open gauge\n"
            "hubmeter_quota_breaker_open %d\n"
            "# HELP hubmeter_live_gateways Gateways alive, as last seen in Redis.\n"
            "# TYPE hubmeter_live_gateways gauge\n"
            "hubmeter_live_gateways %u\n"
            "# HELP hubmeter_paced_seconds_total Time downloads were held back by byte "
            "buckets.\n"
            "# TYPE hubmeter_paced_seconds_total counter\n"
            "hubmeter_paced_seconds_total %.3f\n",
            (unsigned long long)s.would_refuse, (unsigned long long)s.degraded_decisions,
            (unsigned long long)s.redis_calls, (unsigned long long)s.redis_sends,
            (unsigned long long)s.redis_errors,
            (unsigned long long)s.redis_timeouts, s.breaker_open ? 1 : 0, s.live_gateways,
            (double)atomic_load(&m->paced_us) / 1e6);
    fprintf(f, "# HELP hubmeter_admission_seconds Time to decide a request's quota.\n"
               "# TYPE hubmeter_admission_seconds histogram\n");
    for (int i = 0; i < GW_LATENCY_BUCKETS; i++)
        fprintf(f, "hubmeter_admission_seconds_bucket{le=\"%g\"} %llu\n", admission_bounds[i],
                (unsigned long long)atomic_load(&m->admission_le[i]));
    unsigned long long count = atomic_load(&m->admission_count);
    fprintf(f,
            "hubmeter_admission_seconds_bucket{le=\"+Inf\"} %llu\n"
            "hubmeter_admission_seconds_sum %.6f\n"
            "hubmeter_admission_seconds_count %llu\n",
            count, (double)atomic_load(&m->admission_sum_us) / 1e6, count);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
