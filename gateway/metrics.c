/*
 * The gateway's Prometheus metrics: counters and a latency histogram kept in atomics
 * (no lock on the request path), rendered as text format 0.0.4 for /-/metrics. No
 * per-org, per-key or per-repo labels: per-org figures come from PostgreSQL.
 */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>

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
