/*
 * Rendering entry point and the machine formats: JSON (the document itself) and CSV (one
 * row per consumer plus a TOTAL row, amounts as exact decimals of the currency). Also the
 * growable text buffer the renderers share. Every renderer reads only the report
 * document, so a stored snapshot renders exactly as it did when generated.
 */
#include "billing/billing_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t bill_jint(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

const char *bill_jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

void bill_row_text(const json_t *doc, const json_t *c, struct bill_row_text *t)
{
    const char *cur = bill_jstr(doc, "currency");
    bill_format_bytes((uint64_t)bill_jint(c, "bytes"), t->bytes, sizeof t->bytes);
    bill_format_count((uint64_t)bill_jint(c, "requests"), t->requests, sizeof t->requests);
    bill_format_count((uint64_t)bill_jint(c, "refused"), t->refused, sizeof t->refused);
    bill_format_bp(bill_jint(c, "cost_share_bp"), t->share, sizeof t->share);
    bill_format_money(cur, bill_jint(c, "cost_micros"), t->cost, sizeof t->cost);
    bill_format_money(cur, bill_jint(c, "ask_micros"), t->ask, sizeof t->ask);
    const json_t *tr = json_object_get(c, "trend_percent");
    if (json_is_integer(tr))
        cm_fmt(t->trend, sizeof t->trend, "%+lld%%", (long long)json_integer_value(tr));
    else
        cm_copy(t->trend, sizeof t->trend, "new");
    t->class_ = bill_jstr(c, "class")[0] ? bill_jstr(c, "class") : bill_jstr(c, "kind");
}

static void reserve(struct bill_buf *b, size_t more)
{
    if (b->failed || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (s == NULL) {
        b->failed = true;
        return;
    }
    b->s = s;
    b->cap = cap;
}

void bill_buf_printf(struct bill_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    reserve(b, (size_t)n);
    if (b->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void bill_buf_put(struct bill_buf *b, const char *s)
{
    size_t n = strlen(s);
    reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

void bill_buf_html(struct bill_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': bill_buf_put(b, "&amp;"); break;
        case '<': bill_buf_put(b, "&lt;"); break;
        case '>': bill_buf_put(b, "&gt;"); break;
        case '"': bill_buf_put(b, "&quot;"); break;
        case '\'': bill_buf_put(b, "&#39;"); break;
        default: {
            char c[2] = {*s, '\0'};
            bill_buf_put(b, c);
        }
        }
    }
}

char *bill_buf_finish(struct bill_buf *b)
{
    if (b->failed || b->s == NULL) {
        free(b->s);
        return NULL;
    }
    return b->s;
}

/* A CSV field: quoted when it holds a comma, quote or line break; a leading = + - @ is
 * prefixed with ' so spreadsheets do not run it as a formula. */
static void csv_field(struct bill_buf *b, const char *s, bool last)
{
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        bill_buf_put(b, "\"");
    if (strchr("=+-@", s[0]) != NULL && s[0] != '\0')
        bill_buf_put(b, "'");
    for (; *s; s++) {
        char c[3] = {*s, '\0', '\0'};
        if (*s == '"')
            c[1] = '"';
        bill_buf_put(b, c);
    }
    bill_buf_put(b, quote ? "\"" : "");
    bill_buf_put(b, last ? "\r\n" : ",");
}

static void csv_int(struct bill_buf *b, const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        bill_buf_printf(b, "%lld,", (long long)json_integer_value(v));
    else
        bill_buf_put(b, ",");
}

static void csv_money(struct bill_buf *b, const json_t *o, const char *key)
{
    char m[40];
    bill_format_micros(bill_jint(o, key), m, sizeof m);
    bill_buf_printf(b, "%s,", m);
}

static void csv_percent(struct bill_buf *b, const json_t *o, const char *key)
{
    int64_t bp = bill_jint(o, key);
    bill_buf_printf(b, "%lld.%02lld,", (long long)(bp / 100), (long long)(bp % 100));
}

static const char CSV_HEADER[] =
    "period,rank,consumer,kind,class,bytes,requests,refused,byte_share_percent,"
    "request_share_percent,cost_share_percent,egress_cost,request_cost,fixed_cost,cost,"
    "allowance,ask,ask_status,previous_bytes,trend_percent,peak_hour,peak_bytes_per_second,"
    "redundancy_ratio,redundancy_savings,top_repositories,currency,basis\r\n";

static void csv_consumer(struct bill_buf *b, const json_t *doc, const json_t *c)
{
    bill_buf_printf(b, "%s,", bill_jstr(doc, "period"));
    csv_int(b, c, "rank");
    csv_field(b, bill_jstr(c, "consumer"), false);
    csv_field(b, bill_jstr(c, "kind"), false);
    csv_field(b, bill_jstr(c, "class"), false);
    csv_int(b, c, "bytes");
    csv_int(b, c, "requests");
    csv_int(b, c, "refused");
    csv_percent(b, c, "byte_share_bp");
    csv_percent(b, c, "request_share_bp");
    csv_percent(b, c, "cost_share_bp");
    static const char *const money[] = {"egress_cost_micros", "request_cost_micros",
                                        "fixed_cost_micros", "cost_micros", "allowance_micros",
                                        "ask_micros"};
    for (size_t i = 0; i < sizeof money / sizeof money[0]; i++)
        csv_money(b, c, money[i]);
    csv_field(b, bill_jstr(c, "ask_status"), false);
    csv_int(b, c, "previous_bytes");
    csv_int(b, c, "trend_percent");
    const json_t *peak = json_object_get(c, "peak"), *red = json_object_get(c, "redundancy");
    csv_field(b, bill_jstr(peak, "hour"), false);
    csv_int(b, peak, "bytes_per_second");
    if (json_is_object(red)) {
        int64_t r = bill_jint(red, "ratio_x100");
        bill_buf_printf(b, "%lld.%02lld,", (long long)(r / 100), (long long)(r % 100));
        csv_money(b, red, "savings_micros");
    } else {
        bill_buf_put(b, ",,");
    }
    struct bill_buf repos = {0};
    size_t i;
    const json_t *r;
    for (i = 0; (r = json_array_get(json_object_get(c, "top_repositories"), i)) != NULL; i++)
        bill_buf_printf(&repos, "%s%s=%lld", i ? ";" : "", bill_jstr(r, "repo"),
                        (long long)bill_jint(r, "bytes"));
    char *list = bill_buf_finish(&repos);
    csv_field(b, list ? list : "", false);
    free(list);
    csv_field(b, bill_jstr(doc, "currency"), false);
    csv_field(b, "list-price estimate", true);
}

char *bill_render_csv(const json_t *doc)
{
    struct bill_buf b = {0};
    bill_buf_put(&b, CSV_HEADER);
    size_t i;
    const json_t *c;
    for (i = 0; (c = json_array_get(json_object_get(doc, "consumers"), i)) != NULL; i++)
        csv_consumer(&b, doc, c);
    const json_t *t = json_object_get(doc, "totals");
    char e[40], r[40], f[40], cost[40], asks[40];
    bill_format_micros(bill_jint(t, "egress_cost_micros"), e, sizeof e);
    bill_format_micros(bill_jint(t, "request_cost_micros"), r, sizeof r);
    bill_format_micros(bill_jint(t, "fixed_cost_micros"), f, sizeof f);
    bill_format_micros(bill_jint(t, "period_cost_micros"), cost, sizeof cost);
    /* The TOTAL row sums its columns: the asks to send and those to review. */
    bill_format_micros(bill_jint(t, "asks_micros") + bill_jint(t, "review_asks_micros"), asks,
                       sizeof asks);
    bill_buf_printf(&b, "%s,,TOTAL,,,%lld,%lld,%lld,100.00,100.00,100.00,%s,%s,%s,%s,,%s,,,,,,,,,"
                        "%s,list-price estimate\r\n",
                    bill_jstr(doc, "period"), (long long)bill_jint(t, "bytes"),
                    (long long)bill_jint(t, "requests"), (long long)bill_jint(t, "refused"), e,
                    r, f, cost, asks, bill_jstr(doc, "currency"));
    return bill_buf_finish(&b);
}

int bill_render(const json_t *doc, enum bill_format fmt, struct bill_output *out)
{
    memset(out, 0, sizeof *out);
    switch (fmt) {
    case BILL_JSON:
        out->body = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        out->content_type = "application/json";
        break;
    case BILL_CSV:
        out->body = bill_render_csv(doc);
        out->content_type = "text/csv; charset=utf-8";
        break;
    case BILL_TABLE:
        out->body = bill_render_table(doc);
        out->content_type = "text/plain; charset=utf-8";
        break;
    case BILL_HTML:
        out->body = bill_render_html(doc);
        out->content_type = "text/html; charset=utf-8";
        break;
    }
    if (out->body == NULL)
        return CM_ERR;
    out->len = strlen(out->body);
    return CM_OK;
}

void bill_output_free(struct bill_output *out)
{
    if (out == NULL)
        return;
    free(out->body);
    out->body = NULL;
    out->len = 0;
}
