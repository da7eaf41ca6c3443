/*
 * Pipeline statistics for /-/metrics: process-wide atomics that the shipper and the
 * flusher threads write as they work (Redis errors, batches shipped and applied, the
 * usage stream's length, pending entries and lag, the watermark's lag). Gauges start
 * at -1, "not known yet"; the metrics page leaves those out.
 */
#include "meter/meter_int.h"

#include <stdatomic.h>

static _Atomic uint64_t counters[METER_N_COUNTERS];
static _Atomic int64_t gauges[METER_N_GAUGES] = {-1, -1, -1, -1, 0, -1};

void meter_stats_add(enum meter_counter c, uint64_t n) { atomic_fetch_add(&counters[c], n); }

void meter_stats_set(enum meter_gauge g, int64_t v) { atomic_store(&gauges[g], v); }

void meter_stats_read(struct meter_stats *out)
{
    out->redis_errors = atomic_load(&counters[METER_REDIS_ERRORS]);
    out->batches_shipped = atomic_load(&counters[METER_BATCHES_SHIPPED]);
    out->flusher_batches = atomic_load(&counters[METER_FLUSHER_BATCHES]);
    out->flusher_duplicates = atomic_load(&counters[METER_FLUSHER_DUPLICATES]);
    out->flusher_errors = atomic_load(&counters[METER_FLUSHER_ERRORS]);
    out->outbox_batches = atomic_load(&gauges[METER_OUTBOX_BATCHES]);
    out->stream_length = atomic_load(&gauges[METER_STREAM_LENGTH]);
    out->stream_pending = atomic_load(&gauges[METER_STREAM_PENDING]);
    out->stream_lag = atomic_load(&gauges[METER_STREAM_LAG]);
    out->flusher_last_batch = atomic_load(&gauges[METER_FLUSHER_LAST_BATCH]);
    out->watermark_lag_s = atomic_load(&gauges[METER_WATERMARK_LAG]);
}
