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
/* Adds one record (journaled before it returns); thread-safe, never blocks on the network. */
void meter_record(struct meter *m, const struct meter_record *rec);
/* Records one thread collects and hands over together: one journal write and one lock for
 * all of them (a gateway worker collects the requests that end in one loop round and
 * flushes at the round's end). Owned by one thread. meter_record_later keeps a copy
 * of rec (p NULL: meter_record), flushing first when METER_PENDING_MAX wait; meter_flush
 * journals and aggregates what waits; meter_pending_free flushes, then frees (NULL: no-op).
 * A record waiting here is lost to a kill -9, as a request still running is. */
#define METER_PENDING_MAX 64
struct meter_pending;
struct meter_pending *meter_pending_new(void);
void meter_record_later(struct meter *m, struct meter_pending *p, const struct meter_record *rec);
void meter_flush(struct meter *m, struct meter_pending *p);
void meter_pending_free(struct meter *m, struct meter_pending *p);
/* True when the last ship attempt reached Redis. */
bool meter_redis_ok(struct meter *m);
/* True when the last new Redis connection found the database claimed by another
 * installation (see meter/installation.c): nothing is shipped there. */
bool meter_redis_foreign(struct meter *m);
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
 * CM_UNAVAIL (Redis or PostgreSQL down: nothing acknowledged, retried next round),
 * CM_DENIED (the Redis database belongs to another installation, or this database is not
 * migrated: nothing read; err says which). */
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
/* All traffic (keyed and anonymous, corrections included) in [from, to), both whole UTC
 * units of granularity ("hour" | "day", at most 1000 of them): {from, to, granularity,
 * totals:{bytes, requests, refused}, series:[{start, bytes, requests, refused}]} with every
 * bucket present. CM_INVALID (err) for a bad range or granularity. *out: new reference. */
int meter_usage_summary(PGconn *db, int64_t from, int64_t to, const char *granularity,
                        json_t **out, char *err, size_t errlen);
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
/* Bytes delivered to an org (org_id > 0) or to the anonymous traffic of a client network
 * in [from, to) (unix seconds), corrections included: what a monthly quota counter is
 * rebuilt from when Redis lost it. */
int meter_usage_bytes(PGconn *db, int64_t org_id, const char *network, int64_t from, int64_t to,
                      uint64_t *bytes, char *err, size_t errlen);
/* The pipeline watermark: every request that ended before *unix_s is in PostgreSQL. */
int meter_complete_until(PGconn *db, int64_t *unix_s, char *err, size_t errlen);

/* ---- quotas (meter/quota.c, quota_client.c, quota_lua.c) ------------------------------------- */
/* What a decision needs of a plan; 0 means unlimited for every limit. */
struct meter_plan {
    int64_t id;
    char name[64];
    int64_t requests_per_minute, request_burst, bytes_per_second, byte_burst, monthly_bytes;
    int32_t max_concurrent;
    bool fail_closed; /* failure policy "closed" (else "open") */
    bool shadow;      /* evaluate and report, never refuse */
};

enum meter_policy { MQ_NONE, MQ_REQUESTS, MQ_BYTES, MQ_MONTHLY, MQ_CONCURRENCY };
/* The policy names of the rate-limit headers and refusals. */
const char *meter_policy_name(enum meter_policy p);

/* One policy's state as the response headers report it. */
struct meter_policy_state {
    enum meter_policy policy;
    uint64_t limit;     /* q: per window */
    uint64_t remaining; /* r */
    int64_t reset_s;    /* t: seconds until the quota is whole again (or, refused, admits) */
    int64_t window_s;   /* w */
};

/* An admission decision: admitted or refused (429), and what the headers say. */
struct meter_decision {
    bool admitted;
    bool would_refuse;           /* shadow mode: refused on paper, admitted */
    enum meter_policy refused_by; /* the policy that refused (or would have) */
    int64_t retry_after_s;       /* whole seconds, >= 1, on a refusal */
    bool degraded;               /* decided locally: Redis unavailable */
    int n;                       /* states, the policy nearest its limit first */
    struct meter_policy_state st[4];
    int64_t now_s;               /* the deciding clock (Redis TIME, or local when degraded) */
};

/* A request's quota state from admission to its end; zero-initialise. */
struct meter_flow {
    struct meter_plan plan;
    char subject[72];  /* "org:<id>" or "anon:<network>" */
    int anchor_day;    /* 1..28: the monthly period starts on this day (UTC) */
    char member[48];   /* concurrency entry ("" when none) */
    bool admitted, charged, download;
    bool bytes_tracked; /* byte rate, monthly quota or concurrency limits apply */
    uint64_t lease_left, leased;
    int local_slot;    /* the local state entry holding this download (-1 none) */
    int64_t lease_ts_ms; /* when the concurrency entry was last refreshed */
    int64_t first_wait_us; /* pacing owed for the lease taken at admission */
    bool pooled;           /* admitted from this gateway's pool (no round trip) */
    int64_t lease_due_ms;  /* when the lease held is paid (its bytes may flow) */
};

struct meter_quota;
/* Starts the quota client (a thread pipelining the scripts to Redis with a timeout of
 * cfg->redis_timeout_ms per call and a circuit breaker). Redis need not be up. */
struct meter_quota *meter_quota_new(const struct hm_config *cfg, char *err, size_t errlen);
void meter_quota_free(struct meter_quota *q);
/* Where monthly usage comes from when Redis lost a month's counter (a restart without its
 * data): fn answers the bytes of subject ("org:<id>" or "anon:<network>") in [from, to),
 * from PostgreSQL. Set once, before requests arrive. */
typedef int (*meter_quota_seed_fn)(void *arg, const char *subject, int64_t from, int64_t to,
                                   uint64_t *bytes);
void meter_quota_set_seeder(struct meter_quota *q, meter_quota_seed_fn fn, void *arg);
/* Decides whether a request of subject (see struct meter_flow) may start. charge: spends a
 * request token (false for HEAD); download: joins the concurrency set and is refused when
 * the month is spent. Never waits longer than the Redis timeout. */
void meter_quota_admit(struct meter_quota *q, const struct meter_plan *plan, const char *subject,
                       int anchor_day, bool charge, bool download, struct meter_flow *f,
                       struct meter_decision *d);
/* Charges n more bytes of a download; *wait_us is how long to hold them back (pacing). */
void meter_quota_bytes(struct meter_quota *q, struct meter_flow *f, uint64_t n,
                       int64_t *wait_us);
/* Ends f: returns unused lease, leaves the concurrency set, refunds the request token when
 * refund (a 304). Never blocks. */
void meter_quota_end(struct meter_quota *q, struct meter_flow *f, bool refund);
/* A subject's quota state, read without changing it. */
struct meter_quota_view {
    int64_t period_start, period_end; /* the monthly period (unix seconds) */
    uint64_t month_used;
    int64_t running;                  /* downloads running (when concurrency is limited) */
    uint64_t near_limit, refused[5];  /* events of the last 40 days, refusals by policy */
    bool degraded;                    /* Redis unavailable: local figures */
};
/* Reads subject's state under plan into d (as the headers would say, nothing refused) and
 * v; never waits longer than the Redis timeout. */
void meter_quota_peek(struct meter_quota *q, const struct meter_plan *plan, const char *subject,
                      int anchor_day, struct meter_decision *d, struct meter_quota_view *v);
/* The quota document of /-/v1/quota and `hubmeter quota show` (new reference). */
json_t *meter_quota_json(const struct meter_plan *plan, const struct meter_decision *d,
                         const struct meter_quota_view *v);
/* Counters for /-/metrics. */
struct meter_quota_stats {
    uint64_t redis_calls;  /* calls a request waited for (admission, leases) */
    uint64_t redis_sends;  /* calls nobody waits for (end of a request) */
    uint64_t redis_errors, redis_timeouts, degraded_decisions;
    uint64_t refused[5], would_refuse; /* by enum meter_policy */
    bool breaker_open;
    unsigned live_gateways;
};
void meter_quota_stats(struct meter_quota *q, struct meter_quota_stats *out);
/* True unless the breaker is open (Redis considered down). */
bool meter_quota_redis_ok(struct meter_quota *q);

#endif
