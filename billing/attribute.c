/*
 * Attribution and asks: the period's cost on the repository's totals (tiers on the whole
 * egress), split exactly by largest remainder (egress by bytes, requests by requests, the
 * attributed fixed cost by bytes) so consumers' costs add up to the period's cost to the
 * micro-unit; then per consumer its shares, the ask (classes, thresholds, free allowance,
 * margin, floor, sponsorship tier) and the evidence. Builds the report document that
 * every renderer reads. Integers only.
 */
#include "billing/billing_int.h"

#include <stdlib.h>
#include <string.h>

#define BASIS "List-price estimate: costs are computed from published CDN list prices and " \
              "this repository's metered usage, not from its actual bill."

static int64_t half_up(__int128 n, __int128 d)
{
    if (d <= 0)
        return 0;
    __int128 q = n >= 0 ? (n + d / 2) / d : -((-n + d / 2) / d);
    return q > INT64_MAX ? INT64_MAX : q < INT64_MIN ? INT64_MIN : (int64_t)q;
}

static __int128 ceil_div(__int128 n, __int128 d) { return d > 0 ? (n + d - 1) / d : 0; }

/* The splits of the three cost pools; sets the period totals in t[]. */
enum { T_BYTES, T_REQ, T_EGRESS, T_REQCOST, T_FIXED, T_FIXED_OUT, T_COST, T_N };

static int allocate(struct bill_period *p, const struct bill_model *m, int64_t t[T_N])
{
    uint64_t bytes = 0, reqs = 0;
    uint64_t *wb = calloc(p->n + 1, sizeof *wb), *wr = calloc(p->n + 1, sizeof *wr);
    int64_t *out = calloc(p->n + 1, sizeof *out);
    int rc = wb && wr && out ? CM_OK : CM_ERR;
    for (size_t i = 0; rc == CM_OK && i < p->n; i++) {
        wb[i] = p->c[i].bytes;
        wr[i] = p->c[i].requests;
        if (__builtin_add_overflow(bytes, wb[i], &bytes) ||
            __builtin_add_overflow(reqs, wr[i], &reqs) || bytes > INT64_MAX || reqs > INT64_MAX)
            rc = CM_ERR;
    }
    if (rc == CM_OK) {
        t[T_BYTES] = (int64_t)bytes;
        t[T_REQ] = (int64_t)reqs;
        t[T_EGRESS] = bill_egress_cost(m, bytes);
        t[T_REQCOST] = bill_request_cost(m->request_price, reqs);
        /* With no bytes there is nothing to attribute the fixed cost by. */
        t[T_FIXED] = bytes > 0 ? half_up((__int128)m->fixed_cost * m->fixed_share_bp, 10000) : 0;
        t[T_FIXED_OUT] = m->fixed_cost - t[T_FIXED];
        /* Every consumer's cost is at most the period's: one check covers them all. */
        if (__builtin_add_overflow(t[T_EGRESS], t[T_REQCOST], &t[T_COST]) ||
            __builtin_add_overflow(t[T_COST], t[T_FIXED], &t[T_COST]))
            rc = CM_ERR;
    }
    if (rc == CM_OK) {
        rc = bill_allocate(t[T_EGRESS], wb, p->n, out);
        for (size_t i = 0; rc == CM_OK && i < p->n; i++)
            p->c[i].egress_cost = out[i];
        if (rc == CM_OK)
            rc = bill_allocate(t[T_REQCOST], wr, p->n, out);
        for (size_t i = 0; rc == CM_OK && i < p->n; i++)
            p->c[i].request_cost = out[i];
        if (rc == CM_OK)
            rc = bill_allocate(t[T_FIXED], wb, p->n, out);
        for (size_t i = 0; rc == CM_OK && i < p->n; i++) {
            p->c[i].fixed_cost = out[i];
            p->c[i].cost = p->c[i].egress_cost + p->c[i].request_cost + out[i];
        }
    }
    free(wb);
    free(wr);
    free(out);
    return rc;
}

static bool exempt_class(const char *c)
{
    return strcmp(c, "nonprofit") == 0 || strcmp(c, "academic") == 0 ||
           strcmp(c, "individual") == 0;
}

/* The free allowance, valued at the org's own attributed unit prices: its egress cost
 * times min(free bytes, bytes) / bytes, plus the same for requests (half up). */
static int64_t allowance(const struct bill_consumer *c, const struct bill_model *m)
{
    uint64_t free_b = m->free_bytes < c->bytes ? m->free_bytes : c->bytes;
    uint64_t free_r = m->free_requests < c->requests ? m->free_requests : c->requests;
    int64_t a = 0;
    if (c->bytes > 0)
        a += half_up((__int128)c->egress_cost * free_b, c->bytes);
    if (c->requests > 0)
        a += half_up((__int128)c->request_cost * free_r, c->requests);
    return a;
}

static void decide_ask(struct bill_consumer *c, const struct bill_model *m, int64_t period_cost)
{
    c->allowance = 0;
    c->ask = 0;
    if (c->org_id == 0) {
        c->status = "unattributed";
        return;
    }
    c->allowance = allowance(c, m);
    if (exempt_class(c->class_)) {
        c->status = "exempt";
        return;
    }
    int64_t share = half_up((__int128)c->cost * 10000, period_cost);
    if (c->cost <= 0 || (c->cost < m->ask_min_cost && share < m->ask_min_share_bp)) {
        c->status = "below_threshold";
        return;
    }
    int64_t base = c->cost - c->allowance;
    if (base <= 0) {
        c->status = "within_allowance";
        return;
    }
    __int128 with_margin = (__int128)base + ceil_div((__int128)base * m->margin_bp, 10000);
    int64_t amount = with_margin > INT64_MAX ? INT64_MAX : (int64_t)with_margin;
    if (m->org_floor > amount)
        amount = m->org_floor;
    c->ask = bill_round_up_tier(m, amount);
    c->status = strcmp(c->class_, "commercial") == 0 ? "ask" : "review";
}

/* Cost descending, then bytes, then the consumer's key: a stable ranking. */
static int by_rank(const void *a, const void *b)
{
    const struct bill_consumer *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost > y->cost ? -1 : 1;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->org_id != y->org_id)
        return x->org_id < y->org_id ? -1 : 1;
    return strcmp(x->network, y->network);
}

static json_t *redundancy_json(const struct bill_consumer *c, const struct bill_model *m)
{
    if (c->object_bytes == 0 || c->unique_bytes == 0)
        return json_null();
    uint64_t redundant = c->object_bytes - c->unique_bytes;
    if (redundant > c->bytes)
        redundant = c->bytes;
    bool flagged = m->redundancy_ratio > 0 &&
                   (unsigned __int128)c->object_bytes >=
                       (unsigned __int128)m->redundancy_ratio * c->unique_bytes;
    /* What a caching proxy would save: its egress cost of the bytes fetched again. */
    int64_t savings = c->bytes > 0 ? (int64_t)((__int128)c->egress_cost * redundant / c->bytes) : 0;
    return json_pack("{s:I, s:I, s:I, s:b, s:I}", "bytes", (json_int_t)c->object_bytes,
                     "unique_bytes", (json_int_t)c->unique_bytes, "ratio_x100",
                     (json_int_t)((unsigned __int128)c->object_bytes * 100 / c->unique_bytes),
                     "flagged", flagged, "savings_micros", (json_int_t)savings);
}

static json_t *consumer_json(const struct bill_consumer *c, const struct bill_model *m,
                             const struct bill_period *p, const int64_t t[T_N], size_t rank)
{
    const char *kind = c->org_id ? "org" : c->network[0] ? "network" : "unidentified";
    const char *name = c->org_id ? c->slug : c->network[0] ? c->network : "(unidentified)";
    char peak[32] = "";
    if (c->peak_hour >= 0)
        cm_time_format(c->peak_hour, peak, sizeof peak);
    int64_t span = p->hi - p->lo, elapsed = p->as_of - p->lo;
    uint64_t compare = c->bytes; /* month to date: the projection is compared */
    if (p->month_to_date)
        compare = (uint64_t)half_up((__int128)c->bytes * span, elapsed);
    json_t *trend = c->prev_bytes > 0
                        ? json_integer(half_up(((__int128)compare - c->prev_bytes) * 100,
                                               c->prev_bytes))
                        : json_null();
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
        " s:I, s:I, s:s, s:b, s:I, s:o, s:O, s:o}",
        "rank", (json_int_t)rank, "consumer", name,
        "kind", kind, "org", c->slug, "name", c->name, "class", c->org_id ? c->class_ : "",
        "network", c->network, "bytes", (json_int_t)c->bytes, "requests", (json_int_t)c->requests,
        "refused", (json_int_t)c->refused, "byte_share_bp",
        (json_int_t)half_up((__int128)c->bytes * 10000, t[T_BYTES]), "request_share_bp",
        (json_int_t)half_up((__int128)c->requests * 10000, t[T_REQ]), "cost_share_bp",
        (json_int_t)half_up((__int128)c->cost * 10000, t[T_COST]), "egress_cost_micros",
        (json_int_t)c->egress_cost, "request_cost_micros", (json_int_t)c->request_cost,
        "fixed_cost_micros", (json_int_t)c->fixed_cost, "cost_micros", (json_int_t)c->cost,
        "allowance_micros", (json_int_t)c->allowance, "ask_micros", (json_int_t)c->ask,
        "ask_status", c->status, "review", strcmp(c->status, "review") == 0,
        "previous_bytes", (json_int_t)c->prev_bytes, "trend_percent", trend,
        "top_repositories", c->top_repos, "redundancy", redundancy_json(c, m));
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "projected_cost_micros",
                        p->month_to_date ? json_integer(half_up((__int128)c->cost * span, elapsed))
                                         : json_null());
    json_object_set_new(o, "peak",
                        c->peak_hour < 0 ? json_null()
                                         : json_pack("{s:s, s:I, s:I, s:I}", "hour", peak,
                                                     "bytes", (json_int_t)c->peak_bytes,
                                                     "requests", (json_int_t)c->peak_requests,
                                                     "bytes_per_second",
                                                     (json_int_t)(c->peak_bytes / 3600)));
    return o;
}

static json_t *totals_json(const struct bill_period *p, const int64_t t[T_N])
{
    int64_t commercial = 0, unknown = 0, asks = 0, asked = 0, review = 0, reviewed = 0;
    int64_t refused = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct bill_consumer *c = &p->c[i];
        if (c->org_id && strcmp(c->class_, "commercial") == 0)
            commercial += c->cost;
        if (c->org_id && strcmp(c->class_, "unknown") == 0)
            unknown += c->cost;
        bool to_review = strcmp(c->status, "review") == 0;
        *(to_review ? &review : &asks) += c->ask;
        *(to_review ? &reviewed : &asked) += c->ask > 0;
        refused += (int64_t)c->refused;
    }
    /* asks: commercial orgs' (to send); review_asks: unknown orgs' (to classify first). */
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                     " s:I, s:I}",
                     "bytes", (json_int_t)t[T_BYTES], "requests", (json_int_t)t[T_REQ],
                     "refused", (json_int_t)refused, "egress_cost_micros",
                     (json_int_t)t[T_EGRESS], "request_cost_micros", (json_int_t)t[T_REQCOST],
                     "fixed_cost_micros", (json_int_t)t[T_FIXED],
                     "fixed_cost_unattributed_micros", (json_int_t)t[T_FIXED_OUT],
                     "period_cost_micros", (json_int_t)t[T_COST], "commercial_cost_micros",
                     (json_int_t)commercial, "commercial_share_bp",
                     (json_int_t)half_up((__int128)commercial * 10000, t[T_COST]),
                     "unknown_cost_micros", (json_int_t)unknown, "asks_micros",
                     (json_int_t)asks, "asked_orgs", (json_int_t)asked, "review_asks_micros",
                     (json_int_t)review, "review_orgs", (json_int_t)reviewed, "consumers",
                     (json_int_t)p->n);
}

static json_t *projection_json(const struct bill_period *p, const int64_t t[T_N])
{
    if (!p->month_to_date)
        return json_null();
    int64_t span = p->hi - p->lo, elapsed = p->as_of - p->lo;
    return json_pack("{s:I, s:I, s:I, s:s}", "bytes",
                     (json_int_t)half_up((__int128)t[T_BYTES] * span, elapsed), "requests",
                     (json_int_t)half_up((__int128)t[T_REQ] * span, elapsed),
                     "period_cost_micros", (json_int_t)half_up((__int128)t[T_COST] * span, elapsed),
                     "method", "linear: month-to-date figures × month length ÷ time elapsed");
}

json_t *bill_build(struct bill_period *p, const struct bill_model *m, const char *period,
                   char *err, size_t errlen)
{
    int64_t t[T_N] = {0};
    if (p->as_of <= p->lo)
        p->as_of = p->lo + 1; /* a month to date has at least a second behind it */
    if (allocate(p, m, t) != CM_OK)
        return cm_fmt(err, errlen, "the period's totals overflow 63 bits"), NULL;
    for (size_t i = 0; i < p->n; i++)
        decide_ask(&p->c[i], m, t[T_COST]);
    qsort(p->c, p->n, sizeof *p->c, by_rank);
    json_t *consumers = json_array();
    for (size_t i = 0; consumers != NULL && i < p->n; i++)
        if (json_array_append_new(consumers, consumer_json(&p->c[i], m, p, t, i + 1)) != 0) {
            json_decref(consumers);
            consumers = NULL;
        }
    char from[32], to[32], asof[32];
    cm_time_format(p->lo, from, sizeof from);
    cm_time_format(p->hi, to, sizeof to);
    cm_time_format(p->month_to_date ? p->as_of : p->hi, asof, sizeof asof);
    json_t *doc = consumers == NULL ? NULL
                  : json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:s, s:o, s:o, s:o, s:o,"
                              " s:n}",
                              "report", "funding", "basis", BASIS, "period", period, "from",
                              from, "to", to, "month_to_date", p->month_to_date, "month_closed",
                              p->closed, "as_of", asof,
                              "currency", m->currency, "cost_model", bill_model_to_json(m),
                              "totals", totals_json(p, t), "projection", projection_json(p, t),
                              "consumers", consumers, "changes");
    if (doc == NULL)
        cm_fmt(err, errlen, "out of memory building the report");
    return doc;
}
