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

/* ---- usage queries (meter/usage_query.c, meter/usage_groups.c) -------------------------------- */
/* Which dimensions grouped usage is broken down by (group_by=repo,key,status). */
enum meter_group { METER_GROUP_REPO = 1 << 0, METER_GROUP_KEY = 1 << 1, METER_GROUP_STATUS = 1 << 2 };
#define METER_GROUPS_MAX_PAGE 1000

struct meter_usage_query {
    int64_t org_id;
    int64_t from, to;       /* unix seconds, from inclusive, to exclusive, aligned */
    char granularity[8];    /* minute | hour | day | month */
    unsigned minute_retention_days; /* minute series reach back this far (0: no limit) */
    char tz[64];            /* IANA zone whose days and months bucket the series ("" = UTC) */
    unsigned group;         /* meter_group bits; 0: no "groups" in the answer */
    char order_by[16];      /* bytes | requests | refused (groups' order; "" = bytes) */
    bool order_asc;         /* default descending (order_by=-bytes) */
    unsigned limit;         /* groups per page, 1..METER_GROUPS_MAX_PAGE (0 = 100) */
    uint64_t offset;        /* groups already returned (decoded from the cursor) */
};
/* Validates q (CM_INVALID + err for a bad range or granularity, CM_NOTFOUND for an unknown
 * time zone) and answers the
 * usage document of DESIGN.md (without "org"): from, to, granularity, tz, complete_until,
 * totals, series; with q->group also "groups" (one page, ordered) and "next_cursor".
 * The org's usage includes anonymous traffic of its CIDR ranges (hm_usage_org).
 * *out is a new reference the caller decrefs. */
int meter_usage_query(PGconn *db, const struct meter_usage_query *q, json_t **out, char *err,
                      size_t errlen);
/* Encodes / decodes the opaque cursor of a groups page. CM_INVALID for a bad cursor. */
void meter_cursor_encode(uint64_t offset, char *out, size_t len);
int meter_cursor_decode(const char *cursor, uint64_t *offset);
/* The monthly export of org: one object per hour x key x repository with requests, bytes,
 * refused (429s) and clients (distinct client addresses of that hour and key), for the
 * UTC month starting at month_start. *out: new reference, an array ordered by hour. */
int meter_usage_export(PGconn *db, int64_t org_id, int64_t month_start, json_t **out,
                       char *err, size_t errlen);
/* The orgs that used the most bytes in [from, to) (anonymous traffic attributed through
 * CIDR ranges), at most limit: [{org, name, class, bytes, requests, refused}]. */
int meter_usage_top(PGconn *db, int64_t from, int64_t to, unsigned limit, json_t **out,
                    char *err, size_t errlen);
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
