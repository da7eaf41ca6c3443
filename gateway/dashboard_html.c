/*
 * The operator page's HTML, drawn on the server from the view of dashboard_view.c: totals
 * cards, an inline SVG bar chart of bytes per day, the top consumers with class and quota
 * pressure, the funding asks and the gateway's health; and the login form. One document,
 * inline CSS, no script, no external asset: it works offline. Every figure also carries its
 * exact value in a data-* attribute (what tests and scrapers read). Text is HTML-escaped.
 */
#include "gateway/admin_int.h"
#include "billing/billing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char STYLE[] =
    "<style>body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}"
    "header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;align-items:center;"
    "gap:16px}header h1{font-size:18px;margin:0}header .who{flex:1;opacity:.8}"
    "main{padding:16px 24px;display:grid;grid-template-columns:1fr 1fr;gap:16px}"
    "section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px #0002}"
    "section.wide{grid-column:1/3}h2{font-size:15px;margin:0 0 8px}"
    ".big{font-size:28px;font-weight:600;margin:4px 0}.muted{color:#667}"
    "table{border-collapse:collapse;width:100%}td,th{padding:4px 6px;border-bottom:1px solid #eee;"
    "text-align:right}td.l,th.l{text-align:left}.bar{background:#e8ebf0;height:8px;width:120px;"
    "display:inline-block;vertical-align:middle}.bar i{display:block;height:8px;background:#2e7d32}"
    ".bar i.hot{background:#c62828}.bar i.warm{background:#ef6c00}.ok{color:#2e7d32}"
    ".bad{color:#c62828}.error{color:#c62828}button{cursor:pointer}"
    "form.login{max-width:360px;margin:80px auto;background:#fff;padding:24px;border-radius:6px;"
    "box-shadow:0 1px 2px #0002}form.login input{width:100%;box-sizing:border-box;padding:8px;"
    "margin:8px 0}</style>";

static void esc(FILE *f, const char *s)
{
    for (; s != NULL && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void bytes_text(long long b, char *out, size_t len)
{
    bill_format_bytes(b < 0 ? 0 : (uint64_t)b, out, len);
}

static void count_text(long long n, char *out, size_t len)
{
    bill_format_count(n < 0 ? 0 : (uint64_t)n, out, len);
}

/* A section that could not be read says so instead of showing figures. */
static bool failed(FILE *f, const json_t *part)
{
    if (part != NULL && json_object_get(part, "error") == NULL)
        return false;
    fputs("<p class=\"error\">", f);
    esc(f, part ? jstr(part, "error") : "not available");
    fputs("</p>", f);
    return true;
}

static void totals_card(FILE *f, const json_t *view, const char *key, const char *title)
{
    const json_t *part = json_object_get(view, key);
    fprintf(f, "<section id=\"%s\"><h2>%s</h2>", key, title);
    if (!failed(f, part)) {
        const json_t *t = json_object_get(part, "totals");
        char b[32], r[32], x[32];
        bytes_text(jint(t, "bytes"), b, sizeof b);
        count_text(jint(t, "requests"), r, sizeof r);
        count_text(jint(t, "refused"), x, sizeof x);
        fprintf(f,
                "<p class=\"big\" id=\"%s-bytes\" data-value=\"%lld\">%s</p><p>"
                "<span id=\"%s-requests\" data-value=\"%lld\">%s requests</span> · "
                "<span id=\"%s-refused\" data-value=\"%lld\">%s refused</span></p>"
                "<p class=\"muted\">%s – %s</p>",
                key, jint(t, "bytes"), b, key, jint(t, "requests"), r, key, jint(t, "refused"),
                x, jstr(part, "from"), jstr(part, "to"));
    }
    fputs("</section>", f);
}

static void chart(FILE *f, const json_t *view)
{
    const json_t *part = json_object_get(view, "series");
    fprintf(f, "<section class=\"wide\" id=\"chart\"><h2>Bytes per day, last %lld days (UTC)</h2>",
            jint(view, "days"));
    if (failed(f, part)) {
        fputs("</section>", f);
        return;
    }
    const json_t *series = json_object_get(part, "series");
    size_t n = json_array_size(series), i;
    long long max = 1;
    const json_t *e;
    json_array_foreach(series, i, e)
        if (jint(e, "bytes") > max)
            max = jint(e, "bytes");
    const int W = 960, H = 220, left = 70, bottom = 24, top = 10;
    double slot = n ? (double)(W - left) / (double)n : 1;
    char label[32];
    fprintf(f, "<svg viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
               "aria-label=\"bytes per day\" xmlns=\"http://www.w3.org/2000/svg\">", W, H);
    bytes_text(max, label, sizeof label);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%s</text>"
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ccc\"/>"
               "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">0</text>",
            left - 6, top + 10, label, left, top, W, top, left - 6, H - bottom);
    json_array_foreach(series, i, e) {
        long long b = jint(e, "bytes");
        /* Heights in exact integer arithmetic, drawn to the pixel. */
        long long h = (long long)((__int128)b * (H - bottom - top) / max);
        char day[11];
        cm_fmt(day, sizeof day, "%.10s", jstr(e, "start"));
        bytes_text(b, label, sizeof label);
        fprintf(f, "<rect class=\"day\" data-start=\"%s\" data-bytes=\"%lld\" x=\"%.1f\" "
                   "y=\"%lld\" width=\"%.1f\" height=\"%lld\" fill=\"#3f6fb5\">"
                   "<title>%s: %s</title></rect>",
                jstr(e, "start"), b, left + slot * (double)i + 1, H - bottom - h,
                slot > 3 ? slot - 2 : slot, h, day, label);
        if (i % 5 == 0 || i + 1 == n)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%.5s"
                       "</text>", left + slot * ((double)i + 0.5), H - 8, day + 5);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/></svg></section>",
            left, H - bottom, W, H - bottom);
}

/* The quota cell: used of the monthly limit, as a bar and a percentage (integer, floor). */
static void quota_cell(FILE *f, const json_t *quota)
{
    const json_t *m = json_object_get(quota, "month");
    long long used = jint(m, "used"), limit = jint(m, "limit");
    if (quota == NULL || m == NULL || limit <= 0) {
        fprintf(f, "<td class=\"l quota\" data-quota-used=\"%lld\" data-quota-limit=\"0\">%s</td>",
                used, quota == NULL                       ? "—"
                             : strcmp(jstr(quota, "source"), "quotas_off") == 0 ? "quotas off"
                             : m == NULL                                         ? "no plan"
                                                                                 : "unlimited");
        return;
    }
    long long pct = (long long)((__int128)used * 100 / limit);
    char u[32], l[32];
    bytes_text(used, u, sizeof u);
    bytes_text(limit, l, sizeof l);
    fprintf(f, "<td class=\"l quota\" data-quota-used=\"%lld\" data-quota-limit=\"%lld\" "
               "data-quota-percent=\"%lld\"><span class=\"bar\"><i class=\"%s\" "
               "style=\"width:%lld%%\"></i></span> %lld%% <span class=\"muted\">%s of %s</span></td>",
            used, limit, pct, pct >= 100 ? "hot" : pct >= 80 ? "warm" : "", pct > 100 ? 100 : pct,
            pct, u, l);
}

static void consumers(FILE *f, const json_t *view)
{
    const json_t *top = json_object_get(view, "top");
    fputs("<section class=\"wide\" id=\"consumers\"><h2>Top consumers this month</h2>", f);
    if (!json_is_array(top)) {
        failed(f, top);
        fputs("</section>", f);
        return;
    }
    fputs("<table><tr><th>#</th><th class=\"l\">org</th><th class=\"l\">class</th>"
          "<th class=\"l\">plan</th><th>bytes</th><th>requests</th><th>refused</th>"
          "<th class=\"l\">monthly quota</th></tr>", f);
    size_t i;
    const json_t *o;
    json_array_foreach(top, i, o) {
        char b[32], r[32], x[32];
        bytes_text(jint(o, "bytes"), b, sizeof b);
        count_text(jint(o, "requests"), r, sizeof r);
        count_text(jint(o, "refused"), x, sizeof x);
        fputs("<tr class=\"consumer\" data-org=\"", f);
        esc(f, jstr(o, "org"));
        fputs("\" data-class=\"", f);
        esc(f, jstr(o, "class"));
        fprintf(f, "\" data-bytes=\"%lld\" data-requests=\"%lld\"><td>%zu</td><td class=\"l\">",
                jint(o, "bytes"), jint(o, "requests"), i + 1);
        esc(f, jstr(o, "org"));
        fputs(" <span class=\"muted\">", f);
        esc(f, jstr(o, "name"));
        fputs("</span></td><td class=\"l\">", f);
        esc(f, jstr(o, "class"));
        fputs("</td><td class=\"l\">", f);
        esc(f, jstr(o, "plan")[0] ? jstr(o, "plan") : "—");
        fprintf(f, "</td><td>%s</td><td>%s</td><td>%s</td>", b, r, x);
        quota_cell(f, json_object_get(o, "quota"));
        fputs("</tr>", f);
    }
    if (json_array_size(top) == 0)
        fputs("<tr><td class=\"l\" colspan=\"8\">no usage this month yet</td></tr>", f);
    fputs("</table></section>", f);
}

static void funding(FILE *f, const json_t *view)
{
    const json_t *fu = json_object_get(view, "funding");
    fputs("<section id=\"funding\"", f);
    if (json_object_get(fu, "period") == NULL) {
        fputs("><h2>Funding asks</h2>", f);
        if (json_object_get(fu, "none") != NULL)
            fprintf(f, "<p class=\"muted\">%s</p>", jstr(fu, "none"));
        else
            failed(f, fu);
        fputs("</section>", f);
        return;
    }
    const json_t *t = json_object_get(fu, "totals");
    const char *cur = jstr(fu, "currency");
    char asks[48], review[48];
    bill_format_money(cur, jint(t, "asks_micros"), asks, sizeof asks);
    bill_format_money(cur, jint(t, "review_asks_micros"), review, sizeof review);
    fprintf(f, " data-period=\"%s\" data-asks-micros=\"%lld\" data-review-asks-micros=\"%lld\">"
               "<h2>Funding asks — %s%s</h2><p><span class=\"big\">%s</span> to ask of %lld "
               "commercial org(s) · %s to review (%lld unclassified)</p>",
            jstr(fu, "period"), jint(t, "asks_micros"), jint(t, "review_asks_micros"),
            jstr(fu, "period"), json_is_true(json_object_get(fu, "month_to_date"))
                                    ? " (month to date)" : "",
            asks, jint(t, "asked_orgs"), review, jint(t, "review_orgs"));
    fputs("<table><tr><th class=\"l\">consumer</th><th class=\"l\">class</th><th>ask</th>"
          "<th class=\"l\">status</th></tr>", f);
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(fu, "asks"), i, c) {
        char ask[48];
        bill_format_money(cur, jint(c, "ask_micros"), ask, sizeof ask);
        fputs("<tr class=\"ask\" data-consumer=\"", f);
        esc(f, jstr(c, "consumer"));
        fprintf(f, "\" data-ask-micros=\"%lld\"><td class=\"l\">", jint(c, "ask_micros"));
        esc(f, jstr(c, "consumer"));
        fputs("</td><td class=\"l\">", f);
        esc(f, jstr(c, "class"));
        fprintf(f, "</td><td>%s</td><td class=\"l\">", ask);
        esc(f, jstr(c, "ask_status"));
        fputs("</td></tr>", f);
    }
    fputs("</table><p class=\"muted\">List-price estimate; the full report: "
          "GET /admin/v1/reports/funding?period=", f);
    esc(f, jstr(fu, "period"));
    fputs("&amp;format=html</p></section>", f);
}

static void check_row(FILE *f, const char *id, const char *label, const char *state, bool good)
{
    fprintf(f, "<tr><td class=\"l\">%s</td><td class=\"l %s\" id=\"health-%s\" "
               "data-state=\"%s\">%s</td></tr>", label, good ? "ok" : "bad", id, state, state);
}

static void number_row(FILE *f, const char *id, const char *label, long long v, bool bytes)
{
    char t[32];
    if (bytes)
        bytes_text(v, t, sizeof t);
    else if (v < 0)
        cm_fmt(t, sizeof t, "not known yet");
    else
        count_text(v, t, sizeof t);
    fprintf(f, "<tr><td class=\"l\">%s</td><td class=\"l\" id=\"health-%s\" data-value=\"%lld\">"
               "%s</td></tr>", label, id, v, t);
}

static void health(FILE *f, const json_t *view)
{
    const json_t *h = json_object_get(view, "health");
    fputs("<section id=\"health\"><h2>Gateway health</h2><table>", f);
    check_row(f, "postgresql", "PostgreSQL", jstr(h, "postgresql"),
              strcmp(jstr(h, "postgresql"), "ok") == 0);
    check_row(f, "redis", "Redis (usage shipping)", jstr(h, "redis"),
              strcmp(jstr(h, "redis"), "ok") == 0);
    check_row(f, "quotas", "quota decisions", jstr(h, "quotas"),
              strcmp(jstr(h, "quotas"), "local_budgets") != 0);
    number_row(f, "journal-bytes", "journal on disk", jint(h, "journal_bytes"), true);
    number_row(f, "unjournaled", "records not journaled", jint(h, "unjournaled_records"), false);
    number_row(f, "outbox", "batches not yet applied", jint(h, "outbox_batches"), false);
    number_row(f, "stream-lag", "stream entries not delivered", jint(h, "stream_lag_entries"),
               false);
    number_row(f, "stream-pending", "stream entries pending", jint(h, "stream_pending_entries"),
               false);
    number_row(f, "watermark-lag", "watermark lag (s)", jint(h, "watermark_lag_s"), false);
    fputs("<tr><td class=\"l\">complete until</td><td class=\"l\" id=\"health-complete-until\">", f);
    esc(f, jstr(h, "complete_until")[0] ? jstr(h, "complete_until") : "no usage applied yet");
    fputs("</td></tr></table></section>", f);
}

/* Closes the memory stream; its buffer (which fclose updates) or NULL on failure. */
static char *finish(FILE *f, char **buf)
{
    if (fclose(f) != 0) {
        free(*buf);
        return NULL;
    }
    return *buf;
}

/* Opens a memory stream on *buf holding the document's head up to <body>. */
static FILE *open_page(char **buf, size_t *len, const char *title)
{
    *buf = NULL;
    FILE *f = open_memstream(buf, len);
    if (f != NULL)
        fprintf(f, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<title>hubmeter — %s</title>%s</head><body>", title, STYLE);
    return f;
}

char *adm_dash_page_html(const json_t *view)
{
    char *buf;
    size_t len;
    FILE *f = open_page(&buf, &len, "operator page");
    if (f == NULL)
        return NULL;
    fputs("<header><h1>hubmeter</h1><span class=\"who\">signed in as <b id=\"actor\">",
          f);
    esc(f, jstr(view, "actor"));
    fputs("</b> · figures as of <span id=\"generated-at\">", f);
    esc(f, jstr(view, "generated_at"));
    fputs("</span></span><form method=\"post\" action=\"/dashboard/logout\">"
          "<button type=\"submit\">Sign out</button></form></header><main>", f);
    totals_card(f, view, "today", "Today (UTC)");
    totals_card(f, view, "month", "This month (UTC)");
    chart(f, view);
    consumers(f, view);
    funding(f, view);
    health(f, view);
    fputs("</main></body></html>\n", f);
    return finish(f, &buf);
}

char *adm_dash_login_html(const char *message)
{
    char *buf;
    size_t len;
    FILE *f = open_page(&buf, &len, "sign in");
    if (f == NULL)
        return NULL;
    fputs("<form class=\"login\" method=\"post\" action=\"/dashboard/login\">"
          "<h1>hubmeter operator page</h1>", f);
    if (message != NULL) {
        fputs("<p class=\"error\" id=\"login-error\">", f);
        esc(f, message);
        fputs("</p>", f);
    }
    fputs("<label for=\"token\">Admin token</label><input id=\"token\" name=\"token\" "
          "type=\"password\" autocomplete=\"off\" required autofocus>"
          "<button type=\"submit\">Sign in</button></form></body></html>\n", f);
    return finish(f, &buf);
}
