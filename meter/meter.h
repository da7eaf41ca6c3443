/*
 * meter — usage recording and the path to PostgreSQL: the gateway hands each finished
 * request to meter_record(); the shipper aggregates records per minute and ships them as
 * batches with source-derived ids to a Redis stream; the flusher reads the stream in a
 * consumer group and applies each batch exactly once to PostgreSQL. Also answers usage
 * queries. Only this module talks to Redis (hiredis).
 */
#ifndef HM_METER_H
#define HM_METER_H

#include <jansson.h>

#include "common/common.h"

#define METER_STREAM "hm:usage"
#define METER_GROUP "flushers"

/* One finished (completed or aborted) request. */
struct meter_record {
    int64_t org_id;      /* 0 for anonymous traffic */
    int64_t key_id;      /* 0 when no key */
    char network[48];    /* client network (IPv4 /24, IPv6 /48) for anonymous, else "" */
    char repo[160];      /* "owner/name" (or "datasets/owner/name"), "" when none */
    char method[8];
    uint8_t status_class; /* 1..5 */
    char refused_by[24];  /* "" when admitted, else the policy that refused */
    uint64_t bytes;       /* body bytes delivered to the client */
    bool partial;         /* a progress checkpoint of a running download: counts no request */
    char client[48];      /* the client's address (distinct clients per hour) */
    char etag[96];        /* the response's ETag, "" when none (bytes per object per day) */
};

/* ---- shipper (meter/shipper.c) --------------------------------------------------------------- */
struct meter;
/* Starts the shipper thread for cfg (borrowed for the meter's lifetime). NULL + err on failure;
 * Redis need not be reachable yet (records wait and are shipped when it is). */
struct meter *meter_new(const struct hm_config *cfg, char *err, size_t errlen);
/* Adds one record; thread-safe, never blocks on the network. */
void meter_record(struct meter *m, const struct meter_record *rec);
/* True when the last ship attempt reached Redis. */
bool meter_redis_ok(struct meter *m);
/* The journal's size on disk and how many records could not be journaled (full/failing). */
void meter_journal_state(struct meter *m, uint64_t *bytes, uint64_t *unjournaled);
/* Ships what is left (bounded wait), sends a final heartbeat, stops the thread, frees. */
void meter_free(struct meter *m);

/* ---- pipeline statistics (meter/stats.c), for /-/metrics ------------------------------------ */
/* Process-wide: what this process's shipper and flusher saw. -1: not known (yet). */
struct meter_stats {
    uint64_t redis_errors;       /* failed Redis connections and commands */
    uint64_t batches_shipped;    /* batches XADDed to the usage stream */
    int64_t outbox_batches;      /* batches in the journal not yet known applied */
    int64_t stream_length;       /* XLEN of the usage stream (at the last heartbeat) */
    int64_t stream_pending;      /* entries delivered to flushers, not acknowledged */
    int64_t stream_lag;          /* entries not yet delivered to any flusher */
    uint64_t flusher_batches;    /* batches this process's flusher applied */
    uint64_t flusher_duplicates; /* batches it found applied already (no-ops) */
    uint64_t flusher_errors;     /* rounds that failed (Redis or PostgreSQL away) */
    int64_t flusher_last_batch;  /* unix seconds of its last applied batch, 0 none */
    int64_t watermark_lag_s;     /* now - complete_until, as its flusher last read it */
};
void meter_stats_read(struct meter_stats *out);

/* ---- flusher (meter/flusher.c) --------------------------------------------------------------- */
struct meter_flusher;
struct meter_flusher *meter_flusher_new(const struct hm_config *cfg, char *err, size_t errlen);
/* One round: claims/reads up to a few dozen entries (waiting up to block_ms for new ones),
 * applies each to PostgreSQL and acknowledges it. *applied counts new batches. CM_OK,
 * CM_UNAVAIL (Redis or PostgreSQL down: nothing acknowledged, retried next round). */
int meter_flusher_step(struct meter_flusher *f, unsigned block_ms, int *applied, char *err,
                       size_t errlen);
/* Runs steps on a thread until meter_flusher_free. */
int meter_flusher_start(struct meter_flusher *f);
void meter_flusher_free(struct meter_flusher *f);

/* ---- usage queries (meter/usage_query.c) ----------------------------------------------------- */
struct meter_usage_query {
    int64_t org_id;
    int64_t from, to;       /* unix seconds, from inclusive, to exclusive, aligned */
    char granularity[8];    /* minute | hour | day | month */
    unsigned minute_retention_days; /* minute series reach back this far (0: no limit) */
};
/* Validates q (CM_INVALID + err for a bad range or granularity) and answers the usage
 * document of DESIGN.md (without "org"). *out is a new reference the caller decrefs. */
int meter_usage_query(PGconn *db, const struct meter_usage_query *q, json_t **out, char *err,
                      size_t errlen);
/* A correction: signed bytes and requests for an org at a time, with a reason and an
 * author. Every total includes adjustments; history is never rewritten. */
struct meter_adjustment {
    int64_t org_id;
    int64_t at; /* unix seconds */
    int64_t bytes, requests;
    char repo[160];
    char reason[501];
    char author[201];
};
/* Stores a; *id is the new row's. CM_INVALID (err) for a missing reason/author or no change. */
int meter_usage_adjust(PGconn *db, const struct meter_adjustment *a, int64_t *id, char *err,
                       size_t errlen);
/* Reconciles the pipeline (see meter/reconcile.c) into *out (new reference): CM_OK when
 * PostgreSQL's usage rows equal its applied batches, CM_DENIED when they differ, CM_ERR or
 * CM_UNAVAIL (err) when it cannot tell. from/to bound the period totals reported. */
int meter_reconcile(const struct hm_config *cfg, int64_t from, int64_t to, json_t **out,
                    char *err, size_t errlen);
/* The pipeline watermark: every request that ended before *unix_s is in PostgreSQL. */
int meter_complete_until(PGconn *db, int64_t *unix_s, char *err, size_t errlen);

#endif
