/*
 * billing internals shared by the files of billing/ only: one consumer's usage and
 * computed figures, the loaded period, and the steps between loading and rendering.
 */
#ifndef HM_BILLING_INT_H
#define HM_BILLING_INT_H

#include "billing/billing.h"

/* One consumer of the period: an org (keyed traffic plus anonymous traffic from networks
 * mapped to it), an anonymous network no org claims, or usage with neither (a correction
 * row without an org): org_id 0 and network "". */
struct bill_consumer {
    int64_t org_id;
    char network[48];
    char slug[64], name[204], class_[16];
    uint64_t bytes, requests, refused; /* period sums (a negative correction clamps at 0) */
    uint64_t prev_bytes, prev_requests; /* the month before */
    int64_t peak_hour;                  /* unix seconds of the busiest hour by bytes */
    uint64_t peak_bytes, peak_requests;
    uint64_t object_bytes, unique_bytes; /* keyed downloads with an ETag (usage_objects_daily) */
    json_t *top_repos;                   /* [{"repo","bytes"}], owned */
    /* computed by billing/attribute.c */
    int64_t egress_cost, request_cost, fixed_cost, cost, allowance, ask;
    const char *status;
};

struct bill_period {
    int64_t lo, hi;         /* [lo, hi) unix seconds: the month */
    int64_t as_of;          /* lo..hi: how far a month to date reaches */
    bool month_to_date;
    bool closed;            /* in closed_months: late usage only comes as adjustments */
    struct bill_consumer *c;
    size_t n;
    bool prev_known;        /* the previous month has usage at all */
};

/* Loads the period's usage, evidence and the previous month (billing/usage_load.c) into p
 * (lo, hi, as_of, month_to_date set by the caller). CM_OK or CM_ERR + err. */
int bill_load(PGconn *db, struct bill_period *p, unsigned top_repos, char *err, size_t errlen);
void bill_period_release(struct bill_period *p);

/* Computes costs, shares, asks and evidence and builds the report document (billing/
 * attribute.c). New reference, or NULL with err (overflow, out of memory). */
json_t *bill_build(struct bill_period *p, const struct bill_model *m, const char *period,
                   char *err, size_t errlen);

/* Snapshots (billing/snapshot.c). The latest snapshot of period (month start lo): *doc and
 * *model_json new references, *id; CM_NOTFOUND when there is none. */
int bill_snapshot_latest(PGconn *db, int64_t lo, json_t **doc, json_t **model_json,
                         int64_t *id, char *generated_at, size_t galen, char *err,
                         size_t errlen);
/* Stores doc as a new snapshot of period lo; *id and generated_at filled. */
int bill_snapshot_store(PGconn *db, int64_t lo, bool mtd, const json_t *doc, int64_t *id,
                        char *generated_at, size_t galen, char *err, size_t errlen);
/* What changed from before to after (two report documents): a new reference. */
json_t *bill_snapshot_diff(const json_t *before, int64_t before_id, const char *before_at,
                           const json_t *after);

/* Renderers over the report document (billing/render_*.c): malloc'd text or NULL. */
char *bill_render_csv(const json_t *doc);
char *bill_render_table(const json_t *doc);
char *bill_render_html(const json_t *doc);

/* A growable text buffer for the renderers (billing/render.c). */
struct bill_buf {
    char *s;
    size_t len, cap;
    bool failed;
};
void bill_buf_printf(struct bill_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bill_buf_put(struct bill_buf *b, const char *s);
/* Appends s with & < > " ' escaped for HTML. */
void bill_buf_html(struct bill_buf *b, const char *s);
/* The finished text (caller frees), or NULL when an allocation failed. */
char *bill_buf_finish(struct bill_buf *b);

/* A consumer row's figures as people read them (the table and the HTML share these). */
struct bill_row_text {
    char bytes[32], requests[32], refused[32], share[16], cost[48], ask[48], trend[16];
    const char *class_; /* the org's class, else the consumer's kind */
};
void bill_row_text(const json_t *doc, const json_t *c, struct bill_row_text *t);

/* Reads an integer member of a document object (0 when absent). */
int64_t bill_jint(const json_t *o, const char *key);
const char *bill_jstr(const json_t *o, const char *key);

#endif
