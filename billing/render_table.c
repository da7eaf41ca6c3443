/*
 * The terminal rendering of a funding report: a summary of the period's cost and the
 * commercial share, then one line per consumer (ranked by attributed cost) and the
 * redundancy recommendations. Amounts are rounded to cents for reading; the JSON and CSV
 * carry them to the micro-unit.
 */
#include "billing/billing_int.h"

#include <stdlib.h>
#include <string.h>

static void money(const json_t *doc, const json_t *o, const char *key, char *buf, size_t len)
{
    bill_format_money(bill_jstr(doc, "currency"), bill_jint(o, key), buf, len);
}

/* An integer member with thousands separators, in buf. */
static const char *count(const json_t *o, const char *key, char *buf, size_t len)
{
    bill_format_count((uint64_t)bill_jint(o, key), buf, len);
    return buf;
}

static void summary(struct bill_buf *b, const json_t *doc)
{
    const json_t *t = json_object_get(doc, "totals"), *proj = json_object_get(doc, "projection");
    char cost[48], eg[48], rq[48], fx[48], com[48], share[16], bytes[32], asks[48], n1[32], n2[32];
    money(doc, t, "period_cost_micros", cost, sizeof cost);
    money(doc, t, "egress_cost_micros", eg, sizeof eg);
    money(doc, t, "request_cost_micros", rq, sizeof rq);
    money(doc, t, "fixed_cost_micros", fx, sizeof fx);
    money(doc, t, "commercial_cost_micros", com, sizeof com);
    money(doc, t, "asks_micros", asks, sizeof asks);
    bill_format_bp(bill_jint(t, "commercial_share_bp"), share, sizeof share);
    bill_format_bytes((uint64_t)bill_jint(t, "bytes"), bytes, sizeof bytes);
    bill_buf_printf(b, "Funding report %s%s\n%s\n\n", bill_jstr(doc, "period"),
                    json_is_true(json_object_get(doc, "month_to_date")) ? " (month to date)" : "",
                    bill_jstr(doc, "basis"));
    bill_buf_printf(b, "period cost    %s  (egress %s, requests %s, fixed share %s)\n", cost, eg,
                    rq, fx);
    bill_buf_printf(b, "served         %s in %s requests (%s refused with 429)\n", bytes,
                    count(t, "requests", n1, sizeof n1), count(t, "refused", n2, sizeof n2));
    bill_buf_printf(b, "commercial     %s of it (%s)\n", com, share);
    money(doc, t, "review_asks_micros", com, sizeof com);
    bill_buf_printf(b, "asks           %s from %lld orgs, and %s from %lld to review first\n",
                    asks, (long long)bill_jint(t, "asked_orgs"), com,
                    (long long)bill_jint(t, "review_orgs"));
    if (json_is_object(proj)) {
        money(doc, proj, "period_cost_micros", cost, sizeof cost);
        bill_buf_printf(b, "projection     %s by the end of the month (as of %s)\n", cost,
                        bill_jstr(doc, "as_of"));
    }
    const json_t *snap = json_object_get(doc, "snapshot"), *ch = json_object_get(doc, "changes");
    if (json_is_object(snap))
        bill_buf_printf(b, "snapshot       #%lld generated %s%s\n",
                        (long long)bill_jint(snap, "id"),
                        bill_jstr(snap, "generated_at"),
                        json_is_true(json_object_get(snap, "reused")) ? " (stored figures)" : "");
    if (json_is_object(ch))
        bill_buf_printf(b, "changes        %s since snapshot #%lld (%zu consumers changed)\n",
                        json_is_true(json_object_get(ch, "unchanged")) ? "none" : "some",
                        (long long)bill_jint(ch, "previous_snapshot"),
                        json_array_size(json_object_get(ch, "consumers")));
    bill_buf_put(b, "\n");
}

static void row(struct bill_buf *b, const json_t *c, const struct bill_row_text *t)
{
    bill_buf_printf(b, "%4lld  %-24.24s %-11.11s %12s %13s %8s %14s %14s %-16s %7s %8s\n",
                    (long long)bill_jint(c, "rank"), bill_jstr(c, "consumer"), t->class_,
                    t->bytes, t->requests, t->share, t->cost, t->ask, bill_jstr(c, "ask_status"),
                    t->trend, t->refused);
}

char *bill_render_table(const json_t *doc)
{
    struct bill_buf b = {0};
    summary(&b, doc);
    bill_buf_printf(&b, "%4s  %-24s %-11s %12s %13s %8s %14s %14s %-16s %7s %8s\n", "rank",
                    "consumer", "class", "bytes", "requests", "share", "cost", "ask", "status",
                    "trend", "refused");
    size_t i;
    const json_t *c;
    for (i = 0; (c = json_array_get(json_object_get(doc, "consumers"), i)) != NULL; i++) {
        struct bill_row_text t;
        bill_row_text(doc, c, &t);
        row(&b, c, &t);
    }
    for (i = 0; (c = json_array_get(json_object_get(doc, "consumers"), i)) != NULL; i++) {
        const json_t *red = json_object_get(c, "redundancy");
        if (!json_is_true(json_object_get(red, "flagged")))
            continue;
        char save[48];
        money(doc, red, "savings_micros", save, sizeof save);
        int64_t r = bill_jint(red, "ratio_x100");
        bill_buf_printf(&b, "\n%s fetched %lld.%02lldx the unique bytes it needed: a caching "
                            "proxy in front of its fleet would save about %s of egress.",
                        bill_jstr(c, "consumer"), (long long)(r / 100), (long long)(r % 100), save);
    }
    bill_buf_put(&b, "\n");
    return bill_buf_finish(&b);
}
