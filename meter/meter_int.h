/*
 * meter internals shared by the files of meter/ only: the Redis connection helper and
 * the per-minute aggregation table. Nothing outside meter/ includes this header.
 */
#ifndef HM_METER_INT_H
#define HM_METER_INT_H

#include <hiredis/hiredis.h>

#include "meter/meter.h"

/* Parses redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N], connects with
 * a timeout, authenticates and selects the database. NULL + err (no password) on failure.
 * Caller frees with redisFree. */
redisContext *meter_redis_connect(const char *url, unsigned timeout_ms, char *err,
                                  size_t errlen);

/* Aggregation of records into rows keyed by (minute, org, key, network, repo, method,
 * status class, refusal). Not thread-safe: the shipper guards it with its lock. */
struct meter_agg;
struct meter_agg *meter_agg_new(void);
void meter_agg_free(struct meter_agg *a);
/* Adds rec ending at end_s (unix seconds). CM_ERR only when out of memory. */
int meter_agg_add(struct meter_agg *a, const struct meter_record *rec, int64_t end_s);
size_t meter_agg_rows(const struct meter_agg *a);
/* The rows as a JSON array of {"m","org","key","net","repo","method","sc","refused","req",
 * "bytes"}; new reference, NULL when out of memory. */
json_t *meter_agg_to_json(const struct meter_agg *a);

#endif
