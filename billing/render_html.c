/*
 * The printable HTML report: one self-contained page (inline CSS and SVG, no external
 * assets) with the period's cost and the commercial share, a chart of the top consumers'
 * share, the ranked table, and for each asked org a one-page letter an operator can send.
 * Every string from the database is escaped. Amounts are shown to the cent.
 */
#include "billing/billing_int.h"

#include <stdlib.h>
#include <string.h>

#define CHART_BARS 8

static const char STYLE[] =
    "<style>\n"
    "body{font-family:'DejaVu Sans',Arial,sans-serif;color:#1d2330;margin:2em;font-size:13px}\n"
    "h1{font-size:22px;margin:0 0 .2em}h2{font-size:17px;margin:1.4em 0 .5em}\n"
    ".basis{color:#8a4b00;background:#fff4e0;border:1px solid #f0c27a;padding:.5em .8em}\n"
    ".cards{display:flex;gap:1em;margin:1em 0}.card{border:1px solid #ccd3e0;padding:.6em 1em;"
    "border-radius:6px;min-width:10em}.card b{display:block;font-size:18px}\n"
    "table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #dde2ec;"
    "padding:3px 6px;text-align:right}th{background:#eef1f7}td.l,th.l{text-align:left}\n"
    "tr.ask td{background:#fdf1f1}tr.review td{background:#fff8e6}\n"
    ".letter{page-break-before:always;max-width:42em;margin-top:3em;border-top:2px solid #1d2330;"
    "padding-top:1em}.letter p{line-height:1.5}\n"
    "@media print{body{margin:1cm}.cards{flex-wrap:wrap}}\n"
    "</style>\n";

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

static void card(struct bill_buf *b, const char *label, const char *value)
{
    bill_buf_put(b, "<div class=\"card\">");
    bill_buf_html(b, label);
    bill_buf_put(b, "<b>");
    bill_buf_html(b, value);
    bill_buf_put(b, "</b></div>\n");
}

static void summary(struct bill_buf *b, const json_t *doc)
{
    const json_t *t = json_object_get(doc, "totals"), *proj = json_object_get(doc, "projection");
    char v[64];
    bill_buf_put(b, "<h1>Funding report ");
    bill_buf_html(b, bill_jstr(doc, "period"));
    bill_buf_put(b, json_is_true(json_object_get(doc, "month_to_date")) ? " (month to date)" : "");
    bill_buf_put(b, "</h1>\n<p class=\"basis\">");
    bill_buf_html(b, bill_jstr(doc, "basis"));
    bill_buf_put(b, "</p>\n<div class=\"cards\">\n");
    money(doc, t, "period_cost_micros", v, sizeof v);
    card(b, "Period cost", v);
    money(doc, t, "commercial_cost_micros", v, sizeof v);
    card(b, "Driven by commercial consumers", v);
    bill_format_bp(bill_jint(t, "commercial_share_bp"), v, sizeof v);
    card(b, "Commercial share", v);
    bill_format_bytes((uint64_t)bill_jint(t, "bytes"), v, sizeof v);
    card(b, "Served", v);
    money(doc, t, "asks_micros", v, sizeof v);
    card(b, "Funding asked", v);
    money(doc, t, "review_asks_micros", v, sizeof v);
    card(b, "To review (unclassified orgs)", v);
    if (json_is_object(proj)) {
        money(doc, proj, "period_cost_micros", v, sizeof v);
        card(b, "Projected to month end", v);
    }
    bill_buf_put(b, "</div>\n<p>");
    char eg[48], rq[48], fx[48], n1[32], n2[32];
    money(doc, t, "egress_cost_micros", eg, sizeof eg);
    money(doc, t, "request_cost_micros", rq, sizeof rq);
    money(doc, t, "fixed_cost_micros", fx, sizeof fx);
    bill_buf_printf(b, "Egress %s, requests %s, fixed costs attributed by usage %s. "
                       "%s requests, %s refused with 429. Period ",
                    eg, rq, fx, count(t, "requests", n1, sizeof n1),
                    count(t, "refused", n2, sizeof n2));
    bill_buf_html(b, bill_jstr(doc, "from"));
    bill_buf_put(b, " to ");
    bill_buf_html(b, bill_jstr(doc, "as_of"));
    bill_buf_put(b, ".</p>\n");
}

/* Horizontal bars of the top consumers' share of the period's cost. */
static void chart(struct bill_buf *b, const json_t *doc)
{
    const json_t *list = json_object_get(doc, "consumers");
    size_t n = json_array_size(list) < CHART_BARS ? json_array_size(list) : CHART_BARS;
    int64_t max = 1;
    for (size_t i = 0; i < n; i++)
        if (bill_jint(json_array_get(list, i), "cost_share_bp") > max)
            max = bill_jint(json_array_get(list, i), "cost_share_bp");
    bill_buf_put(b, "<h2>Top consumers' share of the period's cost</h2>\n");
    bill_buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"%zu\" "
                       "role=\"img\" aria-label=\"share of cost by consumer\">\n",
                    n * 28 + 10);
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(list, i);
        int64_t bp = bill_jint(c, "cost_share_bp");
        char share[16];
        bill_format_bp(bp, share, sizeof share);
        const char *st = bill_jstr(c, "ask_status");
        const char *color = strcmp(st, "ask") == 0 ? "#c0392b"
                            : strcmp(st, "review") == 0 ? "#d68910" : "#5d6d7e";
        bill_buf_printf(b, "<text x=\"0\" y=\"%zu\" font-size=\"12\">", i * 28 + 20);
        bill_buf_html(b, bill_jstr(c, "consumer"));
        bill_buf_printf(b, "</text><rect x=\"200\" y=\"%zu\" width=\"%lld\" height=\"20\" "
                           "fill=\"%s\"/><text x=\"%lld\" y=\"%zu\" font-size=\"12\">%s</text>\n",
                        i * 28 + 6, (long long)(bp * 420 / max + 1), color,
                        (long long)(bp * 420 / max + 208), i * 28 + 20, share);
    }
    bill_buf_put(b, "</svg>\n");
}

static void table_row(struct bill_buf *b, const json_t *doc, const json_t *c)
{
    struct bill_row_text t;
    bill_row_text(doc, c, &t);
    bill_buf_printf(b, "<tr class=\"%s\"><td>%lld</td><td class=\"l\">", bill_jstr(c, "ask_status"),
                    (long long)bill_jint(c, "rank"));
    bill_buf_html(b, bill_jstr(c, "consumer"));
    bill_buf_put(b, "</td><td class=\"l\">");
    bill_buf_html(b, t.class_);
    bill_buf_printf(b, "</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                       "<td class=\"l\">%s</td><td>%s</td><td>%s</td></tr>\n",
                    t.bytes, t.requests, t.share, t.cost, t.ask, bill_jstr(c, "ask_status"),
                    t.trend, t.refused);
}

static void table(struct bill_buf *b, const json_t *doc)
{
    bill_buf_put(b, "<h2>Consumers, ranked by attributed cost</h2>\n<table>\n<tr><th>#</th>"
                    "<th class=\"l\">consumer</th><th class=\"l\">class</th><th>bytes</th>"
                    "<th>requests</th><th>share</th><th>cost</th><th>ask</th>"
                    "<th class=\"l\">status</th><th>trend</th><th>429s</th></tr>\n");
    size_t i;
    const json_t *c;
    for (i = 0; (c = json_array_get(json_object_get(doc, "consumers"), i)) != NULL; i++)
        table_row(b, doc, c);
    bill_buf_put(b, "</table>\n");
}

/* The evidence paragraph of a letter: usage, share, repositories, trend, pressure. */
static void evidence(struct bill_buf *b, const json_t *doc, const json_t *c)
{
    char bytes[32], share[16], peak[32], n[32];
    bill_format_bytes((uint64_t)bill_jint(c, "bytes"), bytes, sizeof bytes);
    bill_format_bp(bill_jint(c, "cost_share_bp"), share, sizeof share);
    bill_buf_printf(b, "<p>In %s your organisation downloaded <b>%s</b> in %s requests, "
                       "%s of what serving this repository cost",
                    bill_jstr(doc, "period"), bytes, count(c, "requests", n, sizeof n), share);
    const json_t *tr = json_object_get(c, "trend_percent");
    if (json_is_integer(tr))
        bill_buf_printf(b, " (%+lld%% on the month before)", (long long)json_integer_value(tr));
    bill_buf_put(b, ". Most of it came from ");
    size_t i;
    const json_t *r;
    for (i = 0; (r = json_array_get(json_object_get(c, "top_repositories"), i)) != NULL; i++) {
        bill_format_bytes((uint64_t)bill_jint(r, "bytes"), peak, sizeof peak);
        bill_buf_put(b, i ? ", " : "");
        bill_buf_html(b, bill_jstr(r, "repo"));
        bill_buf_printf(b, " (%s)", peak);
    }
    const json_t *pk = json_object_get(c, "peak");
    bill_format_bytes((uint64_t)bill_jint(pk, "bytes_per_second"), peak, sizeof peak);
    bill_buf_printf(b, "%s. Its busiest hour averaged %s/s", i ? "" : "many repositories", peak);
    if (bill_jint(c, "refused") > 0)
        bill_buf_printf(b, ", and %s of its requests were refused by rate limits (429)",
                        count(c, "refused", n, sizeof n));
    bill_buf_put(b, ".</p>\n");
}

static void letter(struct bill_buf *b, const json_t *doc, const json_t *c)
{
    char cost[48], ask[48], allow[48], save[48];
    money(doc, c, "cost_micros", cost, sizeof cost);
    money(doc, c, "ask_micros", ask, sizeof ask);
    money(doc, c, "allowance_micros", allow, sizeof allow);
    bill_buf_put(b, "<section class=\"letter\">\n<h2>To ");
    bill_buf_html(b, bill_jstr(c, "name")[0] ? bill_jstr(c, "name") : bill_jstr(c, "consumer"));
    bill_buf_put(b, "</h2>\n");
    if (json_is_true(json_object_get(c, "review")))
        bill_buf_put(b, "<p class=\"basis\">For review: this organisation is not yet classified; "
                        "confirm it is commercial before sending.</p>\n");
    bill_buf_put(b, "<p>Dear ");
    bill_buf_html(b, bill_jstr(c, "name")[0] ? bill_jstr(c, "name") : bill_jstr(c, "consumer"));
    bill_buf_put(b, " team,</p>\n<p>This repository is free to use, but not free to operate. "
                    "We measure what each organisation downloads so that the heaviest users can "
                    "help carry the cost fairly.</p>\n");
    evidence(b, doc, c);
    bill_buf_printf(b, "<p>At published list prices, serving your organisation cost an estimated "
                       "<b>%s</b> this month. After the free allowance every organisation gets "
                       "(worth %s to you) and a stewardship margin for operations, we ask for a "
                       "monthly contribution of <b>%s</b>.</p>\n", cost, allow, ask);
    const json_t *red = json_object_get(c, "redundancy");
    if (json_is_true(json_object_get(red, "flagged"))) {
        money(doc, red, "savings_micros", save, sizeof save);
        int64_t r = bill_jint(red, "ratio_x100");
        bill_buf_printf(b, "<p>Your fleet fetched %lld.%02ld times the unique data it needed: the "
                           "same files again and again. A caching proxy in front of it would "
                           "save about <b>%s</b> of egress a month and make your builds faster; "
                           "that may matter more than a payment.</p>\n",
                        (long long)(r / 100), (long)(r % 100), save);
    }
    bill_buf_put(b, "<p>These figures are list-price estimates, not our actual bill. We are "
                    "glad to walk through them with you.</p>\n<p>With thanks,<br>The maintainers"
                    "</p>\n</section>\n");
}

char *bill_render_html(const json_t *doc)
{
    struct bill_buf b = {0};
    bill_buf_put(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<title>Funding report ");
    bill_buf_html(&b, bill_jstr(doc, "period"));
    bill_buf_put(&b, "</title>\n");
    bill_buf_put(&b, STYLE);
    bill_buf_put(&b, "</head><body>\n");
    summary(&b, doc);
    chart(&b, doc);
    table(&b, doc);
    size_t i;
    const json_t *c;
    for (i = 0; (c = json_array_get(json_object_get(doc, "consumers"), i)) != NULL; i++)
        if (bill_jint(c, "ask_micros") > 0)
            letter(&b, doc, c);
    bill_buf_put(&b, "</body></html>\n");
    return bill_buf_finish(&b);
}
