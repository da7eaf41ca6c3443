/*
 * The operator page /dashboard on the real gateway's admin listener: the login form, the
 * session cookie (attributes, logout, revocation of the token behind it), bad tokens never
 * echoed; and headless Chromium (Debian's) logging in through a one-time ticket link,
 * whose DOM must show the same figures as the admin API (totals, top consumers and their
 * quota, funding asks) and whose screenshot is saved (HM_DASHBOARD_SCREENSHOT=path copies
 * it there: that is how dashboards/operator-page.png is made).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/apicheck.h"

#define BOOTSTRAP "adm-secret-dash-0123456789-bootstrap"

static struct th_stack stack; /* its database, Redis and their environment entries */
static const char *env[6];
static struct th_gateway gw;
static const char bearer[] = "Authorization: Bearer " BOOTSTRAP;

static void setup(void)
{
    th_stack_new(&stack, NULL);
    env[0] = stack.env_db;
    env[1] = stack.env_redis;
    env[2] = stack.env_up;
    env[3] = "HUBMETER_ADMIN_TOKEN=" BOOTSTRAP;
    env[4] = "HUBMETER_SHIP_INTERVAL_MS=100";
    env[5] = NULL;
    th_gateway_start(&gw, env);
}

static void teardown(void)
{
    th_gateway_stop(&gw);
    cr_assert(!th_log_contains(&gw, BOOTSTRAP), "the admin token appeared in the log");
    cr_assert(!th_log_contains(&gw, "hmadm_"), "an admin token appeared in the log");
    cr_assert(!th_log_contains(&gw, "ticket="), "a login ticket appeared in the log");
}

TestSuite(dashboard_page, .init = setup, .fini = teardown, .timeout = 240);

static json_t *api(const char *method, const char *path, const char *body, long want)
{
    char u[1024];
    long st;
    snprintf(u, sizeof u, "%s/admin/v1/%s", gw.admin_base, path);
    json_t *doc = ac_call(method, u, (const char *[]){bearer, NULL}, body, &st);
    cr_assert_eq(st, want, "%s %s: %ld", method, path, st);
    return doc;
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* A page request: method on /dashboard…, with an optional header and form body. */
static void page(const char *method, const char *path, const char *header, const char *form,
                 struct th_response *r)
{
    char u[512];
    snprintf(u, sizeof u, "%s%s", gw.admin_base, path);
    const char *h[] = {header, form ? "Content-Type: application/x-www-form-urlencoded" : NULL,
                       NULL};
    if (header == NULL) {
        h[0] = h[1];
        h[1] = NULL;
    }
    th_http_body(method, u, h, form ? form : "", form ? strlen(form) : 0, false, r);
}

/* Logs in with the form; returns the cookie header ("Cookie: hm_session=…"). */
static void form_login(const char *token, char *cookie, size_t len, char *set_cookie,
                       size_t set_len)
{
    char form[300];
    snprintf(form, sizeof form, "token=%s", token);
    struct th_response r;
    page("POST", "/dashboard/login", NULL, form, &r);
    cr_assert_eq(r.status, 303, "login answered %ld", r.status);
    char loc[64];
    cr_assert(th_header(&r, "Location", loc, sizeof loc));
    cr_assert_str_eq(loc, "/dashboard");
    cr_assert(th_header(&r, "Set-Cookie", set_cookie, set_len));
    th_response_free(&r);
    size_t n = strcspn(set_cookie, ";");
    snprintf(cookie, len, "Cookie: %.*s", (int)n, set_cookie);
}

Test(dashboard_page, a_login_opens_a_cookie_session_that_logout_and_revocation_end)
{
    struct th_response r;
    page("GET", "/dashboard", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "name=\"token\"") != NULL, "the login form");
    cr_assert(strstr(r.body, "today-bytes") == NULL, "no figures before a login");
    th_response_free(&r);

    page("POST", "/dashboard/login", NULL, "token=not-a-real-token-42", &r);
    cr_assert_eq(r.status, 401);
    cr_assert(strstr(r.body, "id=\"login-error\"") != NULL);
    cr_assert(strstr(r.body, "not-a-real-token-42") == NULL, "the token is never echoed");
    th_response_free(&r);
    page("POST", "/dashboard/login", NULL, "nothing=here", &r);
    cr_assert_eq(r.status, 400);
    th_response_free(&r);

    char cookie[200], set[300];
    form_login(BOOTSTRAP, cookie, sizeof cookie, set, sizeof set);
    cr_assert(strstr(set, "HttpOnly") && strstr(set, "SameSite=Strict") &&
              strstr(set, "Path=/") && strstr(set, "Max-Age=28800"), "%s", set);
    cr_assert(strstr(set, "Secure") == NULL, "plain HTTP unless HUBMETER_ADMIN_TLS=on");
    cr_assert_eq(strlen(cookie), strlen("Cookie: hm_session=") + 64);
    page("GET", "/dashboard", cookie, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "id=\"today-bytes\"") != NULL);
    cr_assert(strstr(r.body, "<b id=\"actor\">bootstrap</b>") != NULL);
    cr_assert(strstr(r.body, "<svg") != NULL, "the chart is drawn on the server");
    cr_assert(strstr(r.body, "src=\"http") == NULL && strstr(r.body, "href=\"http") == NULL,
              "no external assets");
    cr_assert(strstr(r.body, cookie + 19) == NULL, "the session id is not in the page");
    th_response_free(&r);

    /* The bearer header works as well; a wrong one is the form with an error. */
    page("GET", "/dashboard", bearer, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "id=\"month-bytes\"") != NULL);
    th_response_free(&r);
    page("GET", "/dashboard", "Authorization: Bearer hmadm_wrong", NULL, &r);
    cr_assert_eq(r.status, 401);
    cr_assert(strstr(r.body, "hmadm_wrong") == NULL);
    th_response_free(&r);
    page("GET", "/dashboard", "Cookie: hm_session=0123", NULL, &r);
    cr_assert_eq(r.status, 401, "a forged cookie");
    th_response_free(&r);

    /* Logout ends the session on the server, not just in the browser. */
    page("POST", "/dashboard/logout", cookie, NULL, &r);
    cr_assert_eq(r.status, 200);
    char cleared[300];
    cr_assert(th_header(&r, "Set-Cookie", cleared, sizeof cleared));
    cr_assert(strstr(cleared, "Max-Age=0") != NULL);
    th_response_free(&r);
    page("GET", "/dashboard", cookie, NULL, &r);
    cr_assert_eq(r.status, 401);
    cr_assert(strstr(r.body, "session has ended") != NULL);
    th_response_free(&r);

    /* A session opened with a named token ends when that token is revoked. */
    json_t *tok = api("POST", "tokens", "{\"name\":\"ops\"}", 201);
    char secret[200];
    snprintf(secret, sizeof secret, "%s", json_string_value(json_object_get(tok, "secret")));
    json_decref(tok);
    form_login(secret, cookie, sizeof cookie, set, sizeof set);
    page("GET", "/dashboard", cookie, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "<b id=\"actor\">ops</b>") != NULL);
    th_response_free(&r);
    json_decref(api("POST", "tokens/ops/revoke", NULL, 200));
    page("GET", "/dashboard", cookie, NULL, &r);
    cr_assert_eq(r.status, 401);
    cr_assert(strstr(r.body, "revoked") != NULL);
    th_response_free(&r);
    memset(secret, 0, sizeof secret);
}

Test(dashboard_page, https_deployments_get_secure_cookies_and_sessions_expire)
{
    th_gateway_stop(&gw);
    const char *tls_env[] = {env[0], env[1], env[2], env[3], "HUBMETER_ADMIN_TLS=on",
                             "HUBMETER_DASHBOARD_SESSION_S=5", NULL};
    th_gateway_start(&gw, tls_env);
    char cookie[200], set[300];
    int64_t opened = th_now_ms();
    form_login(BOOTSTRAP, cookie, sizeof cookie, set, sizeof set);
    cr_assert(strstr(set, "; Secure") != NULL && strstr(set, "Max-Age=5") != NULL, "%s", set);
    /* The server ends the session itself, whatever the browser keeps sending. */
    struct th_response r;
    for (;;) {
        page("GET", "/dashboard", cookie, NULL, &r);
        long st = r.status;
        bool ended = st == 401 && strstr(r.body, "session has ended") != NULL;
        th_response_free(&r);
        if (ended)
            break;
        cr_assert_eq(st, 200);
        cr_assert(th_now_ms() - opened < 12000, "the session outlived its 5 s");
        usleep(250 * 1000);
    }
    cr_assert_geq(th_now_ms() - opened, 3900, "the session ended early");
}

/* ---- seeded figures, seen by Chromium ------------------------------------------------------- */

static void download(const char *key, const char *file, int times)
{
    char u[512], auth[200];
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/%s", gw.base, file);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    for (int i = 0; i < times; i++) {
        struct th_response r;
        th_http("GET", u, (const char *[]){auth, NULL}, &r);
        long st = r.status;
        char body[200];
        snprintf(body, sizeof body, "%.199s", r.body ? r.body : "");
        th_response_free(&r);
        cr_assert_eq(st, 200, "%s: %ld %s", file, st, body);
    }
}

static void new_org(const char *slug, const char *name, const char *class_, const char *plan,
                    char *key, size_t len)
{
    char body[300], path[100];
    snprintf(body, sizeof body, "{\"slug\":\"%s\",\"name\":\"%s\",\"class\":\"%s\"%s%s%s}", slug,
             name, class_, plan ? ",\"plan\":\"" : "", plan ? plan : "", plan ? "\"" : "");
    json_decref(api("POST", "orgs", body, 201));
    snprintf(path, sizeof path, "orgs/%s/keys", slug);
    json_t *doc = api("POST", path, "{\"name\":\"ci\"}", 201);
    snprintf(key, len, "%s", json_string_value(json_object_get(doc, "secret")));
    json_decref(doc);
}

static long long adjusted_requests;

/* `hubmeter usage adjust` of org by bytes and requests at unix time at (0: now). */
static void adjust(const char *org, long long bytes, long long requests, int64_t at)
{
    char b[32], r[32], t[32];
    snprintf(b, sizeof b, "%lld", bytes);
    snprintf(r, sizeof r, "%lld", requests);
    cm_time_format(at ? at : cm_now_us() / 1000000, t, sizeof t);
    struct th_run run;
    th_hubmeter(&run, env, (const char *[]){"usage", "adjust", org, "--bytes", b, "--requests", r,
                                            "--at", t, "--reason", "backfill", "--author",
                                            "test", NULL});
    cr_assert_eq(run.status, 0, "%s", run.err);
}

static void seed(void)
{
    char acme[128], uni[128], mystery[128];
    json_decref(api("POST", "plans", "{\"name\":\"team\",\"monthly_bytes\":6000000}", 201));
    json_decref(api("POST", "plans", "{\"name\":\"research\",\"monthly_bytes\":200000000}", 201));
    new_org("acme", "Acme Cloud", "commercial", "team", acme, sizeof acme);
    new_org("uni", "State University", "academic", "research", uni, sizeof uni);
    new_org("mystery", "Mystery <Labs>", "unknown", NULL, mystery, sizeof mystery);
    download(acme, "model.bin", 1);
    download(uni, "config.json", 12);
    download(mystery, "config.json", 3);
    /* Large traffic of today and of earlier days of this month, as corrections (what
     * `hubmeter usage adjust` records), so the chart has a shape and the month asks. */
    adjust("acme", 6000000000000LL, 400000, 0);
    adjust("mystery", 1500000000000LL, 20000, 0);
    int64_t now = cm_now_us() / 1000000, month = cm_month_start(now);
    static const long long acme_tb[] = {5, 7, 4, 8, 6, 3, 9, 5, 6, 4, 7, 5};
    adjusted_requests = 420000;
    for (int d = 1; d <= 12 && now - d * 86400 >= month; d++) {
        adjust("acme", acme_tb[d - 1] * 1000000000000LL, 50000, now - d * 86400);
        adjusted_requests += 50000;
        if (d % 3 == 0) {
            adjust("mystery", 2000000000000LL, 10000, now - d * 86400);
            adjusted_requests += 10000;
        }
    }
    char from[32], to[32], month_query[160];
    cm_time_format(month, from, sizeof from);
    cm_time_format(cm_month_next(month), to, sizeof to);
    snprintf(month_query, sizeof month_query, "usage/summary?from=%s&to=%s&granularity=day",
             from, to);
    /* Bounded wait until every download is in PostgreSQL. */
    int64_t deadline = th_now_ms() + 20000;
    for (;;) {
        json_t *s = api("GET", month_query, NULL, 200);
        long long got = jint(json_object_get(s, "totals"), "requests");
        json_decref(s);
        json_t *q = api("GET", "orgs/uni/quota", NULL, 200);
        long long used = jint(json_object_get(q, "month"), "used");
        json_decref(q);
        /* …and every download's unused byte lease is back in the quota counter. */
        if (got >= 16 + adjusted_requests && used == 12 * 22)
            break;
        cr_assert(th_now_ms() < deadline, "the downloads never reached PostgreSQL (%lld)", got);
        usleep(200 * 1000);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert(s != NULL && fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* The integer of attribute attr in the element that starts at the last '<' before anchor. */
static long long attr_near(const char *dom, const char *anchor, const char *attr)
{
    const char *a = strstr(dom, anchor);
    cr_assert(a != NULL, "the page lacks %s", anchor);
    const char *end = strchr(a, '>');
    char pat[64];
    snprintf(pat, sizeof pat, "%s=\"", attr);
    const char *start = a;
    while (start > dom && *start != '<')
        start--;
    const char *v = strstr(start, pat);
    cr_assert(v != NULL && v < end, "%s has no %s", anchor, attr);
    return strtoll(v + strlen(pat), NULL, 10);
}

/* A one-time login link for Chromium: the cookie it sets lives in the browser only. */
static void ticket_url(char *url, size_t len)
{
    json_t *t = api("POST", "dashboard/tickets", NULL, 201);
    snprintf(url, len, "%s%s", gw.admin_base, json_string_value(json_object_get(t, "url")));
    json_decref(t);
}

static void check_totals(const char *dom, const char *key, const char *query)
{
    char path[200], anchor[64];
    snprintf(path, sizeof path, "usage/summary?%s", query);
    json_t *s = api("GET", path, NULL, 200);
    const json_t *t = json_object_get(s, "totals");
    snprintf(anchor, sizeof anchor, "id=\"%s-bytes\"", key);
    cr_assert_eq(attr_near(dom, anchor, "data-value"), jint(t, "bytes"), "%s bytes", key);
    snprintf(anchor, sizeof anchor, "id=\"%s-requests\"", key);
    cr_assert_eq(attr_near(dom, anchor, "data-value"), jint(t, "requests"), "%s requests", key);
    cr_assert_gt(jint(t, "bytes"), 0);
    json_decref(s);
}

Test(dashboard_page, chromium_logs_in_and_shows_the_admin_api_figures)
{
    cr_assert(access("/usr/bin/chromium", X_OK) == 0,
              "chromium is not installed (scripts/deps.sh installs it)");
    seed();
    char dir[300], dom_path[400], png[400], profile[400], url[400], shot[420];
    snprintf(dir, sizeof dir, "%s.dashboard", gw.log);
    mkdir(dir, 0700);
    snprintf(dom_path, sizeof dom_path, "%s/dom.html", dir);
    snprintf(png, sizeof png, "%s/operator-page.png", dir);
    snprintf(profile, sizeof profile, "--user-data-dir=%s/profile", dir);
    snprintf(shot, sizeof shot, "--screenshot=%s", png);

    ticket_url(url, sizeof url);
    char *dump[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", profile, "--dump-dom", url, NULL};
    cr_assert_eq(th_run_bounded(dump, dom_path, 90), 0, "chromium --dump-dom failed or hung");
    char *dom = slurp(dom_path);
    cr_assert(strstr(dom, "<b id=\"actor\">bootstrap</b>") != NULL,
              "Chromium followed the login link into the page: %.300s", dom);

    /* A used ticket does not open another session. */
    struct th_response r;
    th_http("GET", url, NULL, &r);
    cr_assert_eq(r.status, 401);
    th_response_free(&r);

    /* Totals: exactly what GET /admin/v1/usage/summary answers for today and the month. */
    int64_t now = cm_now_us() / 1000000, day = now - now % 86400, month = cm_month_start(now);
    char q[200], a[32], b[32];
    cm_time_format(day, a, sizeof a);
    cm_time_format(day + 86400, b, sizeof b);
    snprintf(q, sizeof q, "from=%s&to=%s&granularity=hour", a, b);
    check_totals(dom, "today", q);
    cm_time_format(month, a, sizeof a);
    cm_time_format(cm_month_next(month), b, sizeof b);
    snprintf(q, sizeof q, "from=%s&to=%s&granularity=day", a, b);
    check_totals(dom, "month", q);

    /* Top consumers: usage/top's orgs in its order, with class and the quota documents. */
    snprintf(q, sizeof q, "usage/top?limit=10");
    json_t *top = api("GET", q, NULL, 200);
    const json_t *orgs = json_object_get(top, "orgs");
    cr_assert_eq(json_array_size(orgs), 3);
    const char *p = dom;
    size_t i;
    const json_t *o;
    json_array_foreach(orgs, i, o) {
        const char *slug = json_string_value(json_object_get(o, "org"));
        char anchor[100], path[100];
        snprintf(anchor, sizeof anchor, "data-org=\"%s\"", slug);
        const char *row = strstr(p, anchor);
        cr_assert(row != NULL, "%s is not shown in the API's order", slug);
        p = row;
        cr_assert_eq(attr_near(row, anchor, "data-bytes"), jint(o, "bytes"), "%s bytes", slug);
        snprintf(anchor, sizeof anchor, "data-org=\"%s\" data-class=\"%s\"", slug,
                 json_string_value(json_object_get(o, "class")));
        cr_assert(strstr(dom, anchor) != NULL, "%s's class", slug);
        snprintf(path, sizeof path, "orgs/%s/quota", slug);
        json_t *quota = api("GET", path, NULL, 200);
        const json_t *m = json_object_get(quota, "month");
        const char *cell = strstr(row, "data-quota-used=");
        cr_assert(cell != NULL);
        cr_assert_eq(attr_near(cell, "data-quota-used=", "data-quota-used"), jint(m, "used"),
                     "%s quota used", slug);
        cr_assert_eq(attr_near(cell, "data-quota-used=", "data-quota-limit"), jint(m, "limit"),
                     "%s quota limit", slug);
        json_decref(quota);
    }
    cr_assert(strstr(dom, "Mystery &lt;Labs&gt;") != NULL, "names are escaped");
    const json_t *first = json_array_get(orgs, 0);
    cr_assert_str_eq(json_string_value(json_object_get(first, "org")), "acme");
    json_decref(top);
    json_t *acme_quota = api("GET", "orgs/acme/quota", NULL, 200);
    cr_assert_eq(jint(json_object_get(acme_quota, "month"), "used"), 3145739,
                 "acme's monthly quota counts its download");
    json_decref(acme_quota);

    /* Funding asks: the report the admin API serves for the period the page names. */
    long long asks = attr_near(dom, "id=\"funding\"", "data-asks-micros");
    const char *per = strstr(dom, "data-period=\"");
    cr_assert(per != NULL);
    char period[8];
    snprintf(period, sizeof period, "%.7s", per + 13);
    snprintf(q, sizeof q, "reports/funding?period=%s", period);
    json_t *rep = api("GET", q, NULL, 200);
    const json_t *totals = json_object_get(rep, "totals");
    cr_assert_eq(asks, jint(totals, "asks_micros"));
    cr_assert_eq(attr_near(dom, "id=\"funding\"", "data-review-asks-micros"),
                 jint(totals, "review_asks_micros"));
    cr_assert_gt(asks, 0, "acme is asked to contribute");
    json_array_foreach(json_object_get(rep, "consumers"), i, o) {
        char anchor[120];
        snprintf(anchor, sizeof anchor, "data-consumer=\"%s\"",
                 json_string_value(json_object_get(o, "consumer")));
        if (jint(o, "ask_micros") > 0)
            cr_assert_eq(attr_near(dom, anchor, "data-ask-micros"), jint(o, "ask_micros"));
        else
            cr_assert(strstr(dom, anchor) == NULL, "no ask row for a zero ask");
    }
    json_decref(rep);

    /* Health: the readiness checks of this gateway. */
    cr_assert(strstr(dom, "id=\"health-postgresql\" data-state=\"ok\"") != NULL);
    cr_assert(strstr(dom, "id=\"health-redis\" data-state=\"ok\"") != NULL);
    cr_assert(strstr(dom, "id=\"health-quotas\" data-state=\"redis\"") != NULL);
    free(dom);

    /* The screenshot, through a second login link. */
    ticket_url(url, sizeof url);
    char *shoot[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", profile, "--hide-scrollbars",
                     "--window-size=1280,1180", shot, url, NULL};
    cr_assert_eq(th_run_bounded(shoot, "/dev/null", 90), 0, "chromium --screenshot failed or hung");
    char *img = slurp(png);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    cr_assert(memcmp(img, sig, 8) == 0, "a PNG");
    struct stat sb;
    cr_assert(stat(png, &sb) == 0 && sb.st_size > 40000, "a page with figures, not a blank one");
    const char *keep = getenv("HM_DASHBOARD_SCREENSHOT");
    if (keep != NULL && keep[0]) {
        FILE *f = fopen(keep, "wb");
        cr_assert(f != NULL && fwrite(img, 1, (size_t)sb.st_size, f) == (size_t)sb.st_size);
        fclose(f);
    }
    free(img);
}

static void api_fails(const char *method, const char *path, const char *auth, long status,
                      const char *code)
{
    char u[1024];
    long st;
    snprintf(u, sizeof u, "%s/admin/v1/%s", gw.admin_base, path);
    json_t *doc = ac_call(method, u, auth ? (const char *[]){auth, NULL} : NULL, NULL, &st);
    ac_assert_error(doc, st, status, code);
}

Test(dashboard_page, the_page_s_admin_endpoints_refuse_bad_input)
{
    api_fails("GET", "usage/summary?granularity=week", bearer, 400, "bad_range");
    api_fails("GET", "usage/summary?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", bearer,
              400, "bad_range");
    api_fails("GET", "usage/summary?from=2026-11-01T00:30:00Z&to=2026-11-02T00:00:00Z", bearer,
              400, "bad_range");
    api_fails("GET", "usage/summary?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"
                     "&granularity=day", bearer, 400, "bad_range");
    api_fails("GET", "usage/summary?from=yesterday", bearer, 400, "bad_parameter");
    api_fails("GET", "usage/summary?org=acme", bearer, 400, "bad_parameter");
    api_fails("GET", "orgs/nobody/quota", bearer, 404, "not_found");
    api_fails("POST", "dashboard/tickets", NULL, 401, "authentication_required");
    api_fails("POST", "dashboard/tickets", "Authorization: Bearer hmadm_nope", 401,
              "invalid_admin_token");
    /* An empty day is all zeros, each hour present. */
    json_t *s = api("GET", "usage/summary?from=2026-01-05T00:00:00Z&to=2026-01-06T00:00:00Z",
                    NULL, 200);
    cr_assert_eq(json_array_size(json_object_get(s, "series")), 24);
    cr_assert_eq(jint(json_object_get(s, "totals"), "bytes"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(s, "granularity")), "hour");
    json_decref(s);
    /* An org without a plan has no quota; a planned one its plan's. */
    json_decref(api("POST", "plans", "{\"name\":\"small\",\"monthly_bytes\":1000}", 201));
    json_decref(api("POST", "orgs", "{\"slug\":\"free\"}", 201));
    json_decref(api("POST", "orgs", "{\"slug\":\"paid\",\"plan\":\"small\"}", 201));
    json_t *q = api("GET", "orgs/free/quota", NULL, 200);
    cr_assert_str_eq(json_string_value(json_object_get(q, "source")), "no_plan");
    json_decref(q);
    q = api("GET", "orgs/paid/quota", NULL, 200);
    cr_assert_str_eq(json_string_value(json_object_get(q, "org")), "paid");
    cr_assert_eq(jint(json_object_get(q, "month"), "limit"), 1000);
    cr_assert_eq(jint(json_object_get(q, "month"), "used"), 0);
    json_decref(q);
    /* Unknown page paths and methods answer the form, not the API's JSON. */
    struct th_response r;
    page("GET", "/dashboard/nothing", NULL, NULL, &r);
    cr_assert_eq(r.status, 404);
    th_response_free(&r);
    page("POST", "/dashboard", NULL, "x=1", &r);
    cr_assert_eq(r.status, 405);
    th_response_free(&r);
    page("GET", "/dashboard/login?ticket=0000", NULL, NULL, &r);
    cr_assert_eq(r.status, 401);
    th_response_free(&r);
}
