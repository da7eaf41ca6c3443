/*
 * billing — funding-ask reports: a cost model (list prices by default), the period's cost
 * on the repository's totals, its exact attribution to consumers (orgs, and anonymous
 * networks nobody claims), asks for heavy commercial orgs, stored snapshots, and the
 * renderers (JSON, CSV, table, HTML). Reads and writes PostgreSQL only; never Redis.
 * Money is int64 micro-units of the model's currency; bytes are 64-bit; no floating point.
 */
#ifndef HM_BILLING_H
#define HM_BILLING_H

#include <jansson.h>

#include "common/common.h"

#define BILL_MAX_TIERS 16
#define BILL_UNBOUNDED UINT64_MAX /* the last egress tier's upper bound */

/* A cost model: what a period costs and how asks are made. Validated when parsed
 * (bill_model_parse_file / bill_model_from_json); read-only afterwards. */
struct bill_model {
    char currency[4];                        /* ISO 4217 code, "USD" */
    size_t n_tiers;                          /* egress tiers, ascending bounds */
    uint64_t tier_upto[BILL_MAX_TIERS];      /* bytes of the month's total; last = UNBOUNDED */
    int64_t tier_price[BILL_MAX_TIERS];      /* micro-units per GB (10^9 bytes) */
    int64_t request_price;                   /* micro-units per million requests */
    uint64_t free_bytes, free_requests;      /* per org and month: lower the ask only */
    int64_t fixed_cost;                      /* micro-units per month */
    int32_t fixed_share_bp;                  /* share of fixed_cost attributed by usage, 1/100 % */
    int32_t margin_bp;                       /* stewardship margin on the ask, 1/100 % */
    size_t n_sponsor;                        /* sponsorship tiers, ascending, > 0 */
    int64_t sponsor_tiers[BILL_MAX_TIERS];   /* micro-units */
    int64_t ask_min_cost;                    /* ask when the attributed cost reaches this… */
    int32_t ask_min_share_bp;                /* …or its share of the period's cost reaches this */
    int64_t org_floor;                       /* minimum monthly ask of an asked org (0: off) */
    uint32_t redundancy_ratio;               /* flag bytes >= ratio × unique bytes (0: off) */
    uint32_t top_repositories;               /* repositories listed per consumer */
};

/* ---- cost model (billing/cost_model.c) --------------------------------------------------- */
/* The documented defaults (CDN list prices, see README "Funding reports"). */
void bill_model_default(struct bill_model *m);
/* Reads a cost model file: the defaults, then the KEY=value lines of path. CM_INVALID with
 * err naming the file, line and key for anything malformed or out of range. */
int bill_model_parse_file(const char *path, struct bill_model *m, char *err, size_t errlen);
/* Applies one KEY=value setting to m (the file parser's step): CM_INVALID naming key. */
int bill_model_set(struct bill_model *m, const char *key, const char *value, char *err,
                   size_t errlen);
/* Checks the cross-field rules (ascending tiers, last tier unbounded…): CM_INVALID + err. */
int bill_model_validate(const struct bill_model *m, char *err, size_t errlen);
/* The model as a JSON object of integers (new reference), and back (validated). */
json_t *bill_model_to_json(const struct bill_model *m);
int bill_model_from_json(const json_t *j, struct bill_model *m, char *err, size_t errlen);

/* ---- arithmetic (billing/money.c, pure) -------------------------------------------------- */
/* Egress cost of bytes (the month's total) over the tiers, rounded half up to micro-units. */
int64_t bill_egress_cost(const struct bill_model *m, uint64_t bytes);
/* Cost of requests at micro-units per million, rounded half up. */
int64_t bill_request_cost(int64_t price_per_million, uint64_t requests);
/* Splits total (>= 0) over n weights exactly by largest remainder: out[i] =
 * floor(total × w[i] / W) plus one micro-unit for the largest remainders (ties: lower
 * index first) until the parts sum to total. W = 0 gives all zeros. CM_ERR on overflow. */
int bill_allocate(int64_t total, const uint64_t *w, size_t n, int64_t *out);
/* The smallest sponsorship tier >= amount; above the largest, the next multiple of it.
 * 0 stays 0. */
int64_t bill_round_up_tier(const struct bill_model *m, int64_t amount);
/* Parses a decimal amount with up to 6 fractional digits ("0.085", "2000") into micro-units;
 * CM_INVALID for a sign, junk or overflow. */
int bill_parse_money(const char *s, int64_t *out);
/* Formats micro-units as "1234.567890" (exact) into buf. */
void bill_format_micros(int64_t micros, char *buf, size_t len);
/* Formats micro-units for people: "$1,234.57" (rounded half up to cents; other currencies
 * as "EUR 1,234.57"). */
void bill_format_money(const char *currency, int64_t micros, char *buf, size_t len);
/* Formats basis points (1/100 %) as "12.34%". */
void bill_format_bp(int64_t bp, char *buf, size_t len);
/* Formats a count with thousands separators: "53,520,000". */
void bill_format_count(uint64_t n, char *buf, size_t len);
/* Formats bytes in SI units for people: "1.23 TB". */
void bill_format_bytes(uint64_t bytes, char *buf, size_t len);

/* ---- reports (billing/report.c) ---------------------------------------------------------- */
enum bill_format { BILL_TABLE, BILL_JSON, BILL_CSV, BILL_HTML };
/* "table" | "json" | "csv" | "html" → CM_OK, else CM_INVALID. */
int bill_format_parse(const char *s, enum bill_format *out);

struct bill_request {
    const char *period;             /* "YYYY-MM", a UTC calendar month (validated here) */
    const struct bill_model *model; /* NULL: the period's last snapshot's model, else defaults */
    bool regenerate;                /* compute anew even when a snapshot could be shown */
    int64_t now;                    /* unix seconds (0: the clock); tests pin it */
};

/* The report document for req (new reference in *doc). The latest snapshot of a period is
 * shown when it was taken after the month closed (closed_months) and neither another cost
 * model nor regenerate is asked for; anything else is computed from PostgreSQL, stored as a
 * new snapshot, and compared with the period's previous snapshot ("changes"). The current
 * month is allowed (month to date, with a projection). Errors: CM_INVALID (malformed or
 * future period, bad model), CM_NOTFOUND (a period ending before the first recorded
 * usage), CM_ERR (database). */
int bill_report(PGconn *db, const struct bill_request *req, json_t **doc, char *err,
                size_t errlen);

struct bill_output {
    char *body;               /* malloc'd, NUL-terminated; caller frees with bill_output_free */
    size_t len;
    const char *content_type; /* static string */
};
/* Renders a report document (billing/render_*.c). CM_ERR only when out of memory. */
int bill_render(const json_t *doc, enum bill_format fmt, struct bill_output *out);
void bill_output_free(struct bill_output *out);

/* What the admin API's GET /admin/v1/reports/funding?period=… calls: bill_report then
 * bill_render. Error codes map to HTTP: CM_INVALID 400 (err is the message, *code a stable
 * error code such as "bad_period"), CM_NOTFOUND 404 ("unknown_period"), CM_ERR 500. */
int bill_report_generate(PGconn *db, const struct bill_request *req, enum bill_format fmt,
                         struct bill_output *out, const char **code, char *err,
                         size_t errlen);

#endif
