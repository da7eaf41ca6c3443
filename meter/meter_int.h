/*
 * meter internals shared by the files of meter/ only: the Redis connection helper and
 * the per-minute aggregation table. Nothing outside meter/ includes this header.
 */
#ifndef HM_METER_INT_H
#define HM_METER_INT_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "meter/meter.h"

/* Parses redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N], connects with
 * a timeout, authenticates and selects the database. NULL + err (no password) on failure.
 * Caller frees with redisFree. */
redisContext *meter_redis_connect(const char *url, unsigned timeout_ms, char *err,
                                  size_t errlen);

/* Claims the Redis database for this installation (meter/installation.c): learns the
 * installation's UUID from db into uuid when uuid is empty, then sets hm:installation to
 * it unless it is set (db may be NULL once uuid is known). CM_OK when the database is (now) ours; CM_DENIED + err when another
 * installation holds it; CM_UNAVAIL when Redis or PostgreSQL failed; CM_ERR when the
 * schema has no installation (not migrated). */
int meter_claim_redis(redisContext *redis, PGconn *db, char *uuid, size_t len, char *err,
                      size_t errlen);
/* The log event for a failed claim's result code. */
const char *meter_claim_event(int rc);

/* Process-wide pipeline statistics (meter/stats.c): atomics written by the shipper and
 * flusher threads, read by meter_stats_read(). */
enum meter_counter {
    METER_REDIS_ERRORS,
    METER_BATCHES_SHIPPED,
    METER_FLUSHER_BATCHES,
    METER_FLUSHER_DUPLICATES,
    METER_FLUSHER_ERRORS,
    METER_N_COUNTERS
};
enum meter_gauge {
    METER_OUTBOX_BATCHES,
    METER_STREAM_LENGTH,
    METER_STREAM_PENDING,
    METER_STREAM_LAG,
    METER_FLUSHER_LAST_BATCH,
    METER_WATERMARK_LAG,
    METER_N_GAUGES
};
void meter_stats_add(enum meter_counter c, uint64_t n);
void meter_stats_set(enum meter_gauge g, int64_t v);

/* Aggregation of records into rows keyed by (minute, org, key, network, repo, method,
 * status class, refusal). Not thread-safe: the shipper guards it with its lock. */
struct meter_agg;
struct meter_agg *meter_agg_new(void);
void meter_agg_free(struct meter_agg *a);
/* Adds rec ending at end_s (unix seconds). CM_ERR only when out of memory. */
int meter_agg_add(struct meter_agg *a, const struct meter_record *rec, int64_t end_s);
size_t meter_agg_rows(const struct meter_agg *a);
/* The usage rows as a JSON array of {"m","org","key","net","repo","method","sc","refused",
 * "req","bytes"}; new reference, NULL when out of memory. */
json_t *meter_agg_to_json(const struct meter_agg *a);
/* The client addresses seen, [{"h","org","key","addr"}], per hour. */
json_t *meter_agg_clients_json(const struct meter_agg *a);
/* Bytes per object, [{"d","org","repo","etag","req","bytes"}], per day. */
json_t *meter_agg_objects_json(const struct meter_agg *a);

/* The local journal (meter/journal.c). */
struct meter_journal;
/* Opens (creating) dir and locks it for this process; appends stop at max_bytes (0: no
 * limit). NULL + err on failure. */
struct meter_journal *meter_journal_open(const char *dir, uint64_t max_bytes, char *err,
                                         size_t errlen);
/* Bytes the journal holds on disk. */
uint64_t meter_journal_bytes(const struct meter_journal *j);
void meter_journal_close(struct meter_journal *j);
/* Appends n records ending at end_s with one write; sync: fdatasync now ("always" policy).
 * CM_AGAIN when the journal is full; CM_ERR when a write failed or a record could not be
 * encoded. *unjournaled: how many of the n are not in the journal. */
int meter_journal_append(struct meter_journal *j, const struct meter_record *recs, size_t n,
                         int64_t end_s, bool sync, size_t *unjournaled);
/* fdatasync of the current segment if anything was appended since the last sync. */
int meter_journal_sync(struct meter_journal *j);
/* Starts a new record segment (cheap: no disk sync, safe under the meter's lock);
 * *old_segment and *old_fd are the previous one, which the caller then passes to
 * meter_journal_close_segment outside the lock. */
int meter_journal_rotate(struct meter_journal *j, uint64_t *old_segment, int *old_fd,
                         char *err, size_t errlen);
/* Syncs and closes a rotated-out segment. */
void meter_journal_close_segment(int fd);
/* Durably writes a batch body as the next batch file; *number names it. */
int meter_journal_write_batch(struct meter_journal *j, const char *body, uint64_t *number);
void meter_journal_drop_segment(struct meter_journal *j, uint64_t segment);
void meter_journal_drop_batch(struct meter_journal *j, uint64_t number, size_t len);
/* Deletes the record segments of earlier processes (after their records were batched). */
void meter_journal_drop_old_segments(struct meter_journal *j);
/* Receives a leftover batch file's number and body (malloc'd; the callee owns it). */
typedef void (*meter_journal_batch_fn)(void *arg, uint64_t number, char *body);
/* Replays what a previous process left: batch files in order to on_batch, records of
 * leftover segments into agg (*records of them). */
int meter_journal_recover(struct meter_journal *j, meter_journal_batch_fn on_batch, void *arg,
                          struct meter_agg *agg, size_t *records);

#endif
