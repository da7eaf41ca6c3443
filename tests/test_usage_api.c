/*
 * The org API through the real gateway: usage series in UTC and in a time zone, grouped
 * breakdowns with order, limit and cursor pages, CSV that parses back to the JSON totals,
 * the monthly export, the org's webhooks, isolation between orgs, every bad parameter as a
 * 400 with a stable code, and the OpenAPI document checked against every documented
 * operation's answers.
 * Usage rows are written to the real PostgreSQL before the gateway starts (the figures
 * are exact and known); the download path itself is covered by test_e2e.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/apicheck.h"

static struct th_stack stack; /* its database, Redis and their environment entries */
static char key_a[128], key_a2[128], key_b[128], auth_a[200], auth_b[200];
static char org_a[24], org_b[24], kid_a1[24], kid_a2[24], kid_b[24];
static struct th_gateway gw;

static void cli_key(const char *const *env, const char *org, char *key, size_t len)
{
    struct th_run r;
    th_hubmeter(&r, env, (const char *[]){"keys", "create", org, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_last_line(r.out, key, len);
}

static void key_id(PGconn *db, const char *key, char *out, size_t len)
{
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%.11s", key);
    const char *p[] = {prefix};
    char *v = th_db_value(db, "SELECT id::text FROM api_keys WHERE display = $1", 1, p);
    cr_assert(v != NULL);
    snprintf(out, len, "%s", v);
    free(v);
}

/* One usage row as the flusher would have written it. */
static void row(PGconn *db, const char *bucket, const char *org, const char *key,
                const char *repo, const char *status, const char *refused, const char *requests,
                const char *bytes)
{
    const char *p[] = {bucket, org, key, repo, status, refused, requests, bytes};
    free(th_db_value(db, "SELECT hm_usage_partition($1::timestamptz)::text", 1, p));
    char *v = th_db_value(db,
                          "INSERT INTO usage_minute (bucket, org_id, key_id, repo, method,"
                          " status_class, refused_by, requests, bytes) VALUES ($1::timestamptz,"
                          " $2::bigint, $3::bigint, $4, 'GET', $5::smallint, $6, $7::bigint,"
                          " $8::bigint) RETURNING 'ok'",
                          8, p);
    free(v);
}

static void setup(void)
{
    th_stack_new(&stack, NULL);
    const char *env[] = {stack.env_db, stack.env_redis, stack.env_up, NULL};
    struct th_run r;
    /* alpha's plan is roomy: nothing is refused, but /-/v1/quota has every field. */
    th_hubmeter(&r, env, (const char *[]){"plans", "create", "roomy", "--requests-per-minute",
                                          "100000", "--monthly-bytes", "1000000000000000", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env, (const char *[]){"orgs", "create", "alpha", "--plan", "roomy", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env, (const char *[]){"orgs", "create", "beta", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli_key(env, "alpha", key_a, sizeof key_a);
    cli_key(env, "alpha", key_a2, sizeof key_a2);
    cli_key(env, "beta", key_b, sizeof key_b);
    snprintf(auth_a, sizeof auth_a, "Authorization: Bearer %s", key_a);
    snprintf(auth_b, sizeof auth_b, "Authorization: Bearer %s", key_b);
    PGconn *db = th_db_connect(stack.db_url);
    char *v = th_db_value(db, "SELECT id::text FROM orgs WHERE slug = 'alpha'", 0, NULL);
    snprintf(org_a, sizeof org_a, "%s", v);
    free(v);
    v = th_db_value(db, "SELECT id::text FROM orgs WHERE slug = 'beta'", 0, NULL);
    snprintf(org_b, sizeof org_b, "%s", v);
    free(v);
    key_id(db, key_a, kid_a1, sizeof kid_a1);
    key_id(db, key_a2, kid_a2, sizeof kid_a2);
    key_id(db, key_b, kid_b, sizeof kid_b);
    /* alpha in October 2026: 7 requests, 6007 bytes, 2 refused. */
    row(db, "2026-10-15T23:30:00Z", org_a, kid_a1, "acme/model", "2", "", "3", "1000");
    row(db, "2026-10-15T10:00:00Z", org_a, kid_a2, "acme/data", "2", "", "1", "5000");
    row(db, "2026-10-16T01:00:00Z", org_a, kid_a1, "acme/data", "4", "requests", "2", "0");
    row(db, "2026-10-20T12:00:00Z", org_a, kid_a1, "acme/model", "2", "", "1", "7");
    /* beta's traffic that alpha must never see. */
    row(db, "2026-10-15T12:00:00Z", org_b, kid_b, "beta/secret", "2", "", "9", "999999");
    const char *c1[] = {org_a, kid_a1, "10.0.0.1"}, *c2[] = {org_a, kid_a1, "10.0.0.2"};
    const char *ins = "INSERT INTO usage_clients_hourly (hour, org_id, key_id, address) VALUES"
                      " ('2026-10-15T23:00:00Z', $1::bigint, $2::bigint, $3::inet) RETURNING 'ok'";
    free(th_db_value(db, ins, 3, c1));
    free(th_db_value(db, ins, 3, c2));
    PQfinish(db);
    th_gateway_start(&gw, env);
}

static void teardown(void)
{
    th_gateway_stop(&gw);
    cr_assert(!th_log_contains(&gw, key_a), "an API key appeared in the log");
}

static json_t *get(const char *path_query, const char *auth, long *status)
{
    char u[1024];
    snprintf(u, sizeof u, "%s%s", gw.base, path_query);
    const char *h[] = {auth, NULL};
    return ac_call("GET", u, auth ? h : NULL, NULL, status);
}

static json_t *call(const char *method, const char *path_query, const char *auth, long *status)
{
    char u[1024];
    snprintf(u, sizeof u, "%s%s", gw.base, path_query);
    const char *h[] = {auth, NULL};
    return ac_call(method, u, auth ? h : NULL, NULL, status);
}

#define HOOK_URL "url=http%3A%2F%2F127.0.0.1%3A9%2Fhook"

/* A webhook of alpha's, for the operations that need one; its id. */
static json_int_t alpha_webhook(void)
{
    long st;
    json_t *doc = call("POST", "/-/v1/webhooks?" HOOK_URL, auth_a, &st);
    cr_assert_eq(st, 201);
    json_int_t id = json_integer_value(json_object_get(doc, "id"));
    json_decref(doc);
    return id;
}

static json_int_t num(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    cr_assert(json_is_integer(v), "%s is not an integer", name);
    return json_integer_value(v);
}

#define OCT "from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z"

TestSuite(usage_api, .init = setup, .fini = teardown, .timeout = 90);

Test(usage_api, a_day_series_and_totals_are_exact_and_complete_until_is_given)
{
    long st;
    json_t *doc = get("/-/v1/usage?" OCT "&granularity=day", auth_a, &st);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "org")), "alpha");
    json_t *t = json_object_get(doc, "totals");
    cr_assert_eq(num(t, "requests"), 7);
    cr_assert_eq(num(t, "bytes"), 6007);
    cr_assert_eq(num(t, "refused"), 2);
    json_t *series = json_object_get(doc, "series");
    cr_assert_eq(json_array_size(series), 31, "one bucket per day of October");
    json_t *d15 = json_array_get(series, 14), *d16 = json_array_get(series, 15);
    cr_assert_str_eq(json_string_value(json_object_get(d15, "start")), "2026-10-15T00:00:00Z");
    cr_assert_eq(num(d15, "requests"), 4);
    cr_assert_eq(num(d15, "bytes"), 6000);
    cr_assert_eq(num(d16, "refused"), 2);
    cr_assert(json_is_string(json_object_get(doc, "complete_until")));
    json_decref(doc);
}

Test(usage_api, a_time_zone_moves_day_and_month_buckets_to_local_calendar_days)
{
    long st;
    /* 23:30Z on the 15th is 01:30 on the 16th in Paris (UTC+2 in October). */
    json_t *doc = get("/-/v1/usage?from=2026-10-15T00:00:00%2B02:00&to=2026-10-17T00:00:00%2B02:00"
                      "&granularity=day&tz=Europe/Paris", auth_a, &st);
    cr_assert_eq(st, 200);
    json_t *s = json_object_get(doc, "series");
    cr_assert_eq(json_array_size(s), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(s, 0), "start")),
                     "2026-10-14T22:00:00Z");
    cr_assert_eq(num(json_array_get(s, 0), "bytes"), 5000);
    cr_assert_eq(num(json_array_get(s, 1), "requests"), 5);
    cr_assert_eq(num(json_array_get(s, 1), "bytes"), 1000);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "tz")), "Europe/Paris");
    json_decref(doc);
    /* A local month across the end of summer time (25 October) is one bucket. */
    doc = get("/-/v1/usage?from=2026-10-01T00:00:00%2B02:00&to=2026-11-01T00:00:00%2B01:00"
              "&granularity=month&tz=Europe/Paris", auth_a, &st);
    cr_assert_eq(st, 200);
    s = json_object_get(doc, "series");
    cr_assert_eq(json_array_size(s), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(s, 0), "start")),
                     "2026-09-30T22:00:00Z");
    cr_assert_eq(num(json_object_get(doc, "totals"), "bytes"), 6007);
    json_decref(doc);
    /* UTC midnight is not a Paris day start. */
    doc = get("/-/v1/usage?" OCT "&granularity=day&tz=Europe/Paris", auth_a, &st);
    ac_assert_error(doc, st, 400, "bad_range");
}

Test(usage_api, groups_are_ordered_and_paged_by_cursor_and_add_up_to_the_totals)
{
    long st;
    json_t *doc = get("/-/v1/usage?" OCT "&group_by=repo&order_by=-bytes&limit=1", auth_a, &st);
    cr_assert_eq(st, 200);
    json_t *g = json_object_get(doc, "groups");
    cr_assert_eq(json_array_size(g), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(g, 0), "repo")), "acme/data");
    cr_assert_eq(num(json_array_get(g, 0), "bytes"), 5000);
    cr_assert_eq(num(json_array_get(g, 0), "refused"), 2);
    const char *cursor = json_string_value(json_object_get(doc, "next_cursor"));
    cr_assert(cursor != NULL, "a second page exists");
    char q[512];
    snprintf(q, sizeof q, "/-/v1/usage?" OCT "&group_by=repo&order_by=-bytes&limit=1&cursor=%s",
             cursor);
    json_t *page2 = get(q, auth_a, &st);
    cr_assert_eq(st, 200);
    g = json_object_get(page2, "groups");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(g, 0), "repo")), "acme/model");
    cr_assert_eq(num(json_array_get(g, 0), "bytes"), 1007);
    cr_assert(json_is_null(json_object_get(page2, "next_cursor")), "the last page");
    json_decref(page2);
    json_decref(doc);
    /* By key and status, ascending by requests. */
    doc = get("/-/v1/usage?" OCT "&group_by=key,status&order_by=requests", auth_a, &st);
    cr_assert_eq(st, 200);
    g = json_object_get(doc, "groups");
    cr_assert_eq(json_array_size(g), 3);
    json_int_t sum = 0, last = -1;
    size_t i;
    json_t *e;
    json_array_foreach(g, i, e) {
        cr_assert_geq(num(e, "requests"), last);
        last = num(e, "requests");
        sum += num(e, "bytes");
        cr_assert(strncmp(json_string_value(json_object_get(e, "key")), "hm_", 3) == 0);
        cr_assert(json_object_get(e, "repo") == NULL, "not grouped by repo");
    }
    cr_assert_eq(sum, 6007);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(g, 0), "status")), "2xx");
    json_decref(doc);
}

/* Sums column col of CSV text (header row first); checks the header names it. */
static long long csv_sum(const char *csv, const char *header, int col, int *rows)
{
    cr_assert(strncmp(csv, header, strlen(header)) == 0, "header: %.80s", csv);
    long long sum = 0;
    *rows = 0;
    for (const char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        const char *f = line + 1;
        for (int c = 0; c < col; c++)
            f = strchr(f, ',') + 1;
        sum += strtoll(f, NULL, 10);
        (*rows)++;
    }
    return sum;
}

Test(usage_api, csv_parses_back_to_the_same_totals_as_json)
{
    char u[512];
    snprintf(u, sizeof u, "%s/-/v1/usage?" OCT "&granularity=hour", gw.base);
    struct th_response r;
    th_http("GET", u, (const char *[]){auth_a, "Accept: text/csv", NULL}, &r);
    cr_assert_eq(r.status, 200);
    char ct[128];
    cr_assert(th_header(&r, "Content-Type", ct, sizeof ct));
    cr_assert(strncmp(ct, "text/csv", 8) == 0, "%s", ct);
    int rows;
    cr_assert_eq(csv_sum(r.body, "start,requests,bytes,refused\r\n", 2, &rows), 6007);
    cr_assert_eq(rows, 31 * 24);
    th_response_free(&r);
    snprintf(u, sizeof u, "%s/-/v1/usage?" OCT "&group_by=repo,key&format=csv", gw.base);
    th_http("GET", u, (const char *[]){auth_a, NULL}, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(csv_sum(r.body, "repo,key,requests,bytes,refused\r\n", 2, &rows), 7);
    cr_assert_eq(rows, 3);
    th_response_free(&r);
}

Test(usage_api, the_monthly_export_has_a_row_per_hour_key_and_repo_with_clients)
{
    char u[512];
    snprintf(u, sizeof u, "%s/-/v1/usage/export?month=2026-10", gw.base);
    struct th_response r;
    th_http("GET", u, (const char *[]){auth_a, NULL}, &r);
    cr_assert_eq(r.status, 200);
    int rows;
    cr_assert_eq(csv_sum(r.body, "hour,key,repo,requests,bytes,refused,clients\r\n", 4, &rows),
                 6007);
    cr_assert_eq(rows, 4);
    char want[160];
    snprintf(want, sizeof want, "2026-10-15T23:00:00Z,%.11s,acme/model,3,1000,0,2\r\n", key_a);
    cr_assert(strstr(r.body, want) != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "beta/secret") == NULL, "another org's rows");
    th_response_free(&r);
    long st;
    json_t *doc = get("/-/v1/usage/export?month=2026-10&format=json", auth_a, &st);
    cr_assert_eq(st, 200);
    cr_assert_eq(json_array_size(doc), 4);
    json_decref(doc);
}

Test(usage_api, an_org_sees_only_itself_and_anonymous_callers_get_401)
{
    long st;
    json_t *doc = get("/-/v1/usage?" OCT "&group_by=repo", auth_b, &st);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "org")), "beta");
    cr_assert_eq(num(json_object_get(doc, "totals"), "bytes"), 999999);
    cr_assert_eq(json_array_size(json_object_get(doc, "groups")), 1);
    json_decref(doc);
    doc = get("/-/v1/usage?" OCT "&group_by=repo", auth_a, &st);
    char *text = json_dumps(doc, 0);
    cr_assert(strstr(text, "beta/secret") == NULL);
    free(text);
    json_decref(doc);
    /* There is no way to name another org. */
    doc = get("/-/v1/usage?" OCT "&org=beta", auth_a, &st);
    ac_assert_error(doc, st, 400, "bad_parameter");
    doc = get("/-/v1/usage/export?month=2026-10&org_id=2", auth_a, &st);
    ac_assert_error(doc, st, 400, "bad_parameter");
    doc = get("/-/v1/usage", NULL, &st);
    ac_assert_error(doc, st, 401, "authentication_required");
    /* Webhooks: beta neither sees nor deletes alpha's. */
    json_int_t hook = alpha_webhook();
    doc = call("GET", "/-/v1/webhooks", auth_b, &st);
    cr_assert_eq(st, 200);
    cr_assert_eq(json_array_size(json_object_get(doc, "webhooks")), 0);
    json_decref(doc);
    char path[64];
    snprintf(path, sizeof path, "/-/v1/webhooks/%lld", (long long)hook);
    doc = call("DELETE", path, auth_b, &st);
    ac_assert_error(doc, st, 404, "not_found");
    doc = call("GET", "/-/v1/webhooks", auth_a, &st);
    cr_assert_eq(json_array_size(json_object_get(doc, "webhooks")), 1);
    char *listed = json_dumps(doc, 0);
    cr_assert(listed != NULL && strstr(listed, "whsec_") == NULL, "a signing secret was listed");
    free(listed);
    json_decref(doc);
    doc = call("DELETE", path, NULL, &st);
    ac_assert_error(doc, st, 401, "authentication_required");
    doc = call("PUT", "/-/v1/webhooks", auth_a, &st);
    ac_assert_error(doc, st, 405, "method_not_allowed");
    doc = get("/-/v1/usage/export", NULL, &st);
    ac_assert_error(doc, st, 401, "authentication_required");
}

Test(usage_api, every_bad_parameter_is_a_400_with_a_stable_code)
{
    static const struct {
        const char *query, *code;
    } cases[] = {
        {"/-/v1/usage?from=yesterday", "bad_parameter"},
        {"/-/v1/usage?to=2026-13-01T00:00:00Z", "bad_parameter"},
        {"/-/v1/usage?from=2026-11-01T00:00:00Z&to=2026-10-01T00:00:00Z", "bad_range"},
        {"/-/v1/usage?from=2026-10-01T00:00:00Z&to=2026-10-01T00:00:00Z", "bad_range"},
        {"/-/v1/usage?" OCT "&granularity=fortnight", "bad_range"},
        {"/-/v1/usage?" OCT "&granularity=minute", "bad_range"}, /* 44640 buckets */
        {"/-/v1/usage?from=2001-01-01T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=hour",
         "bad_range"},
        {"/-/v1/usage?from=2026-10-01T00:30:00Z&to=2026-11-01T00:00:00Z&granularity=hour",
         "bad_range"},
        {"/-/v1/usage?" OCT "&group_by=colour", "bad_parameter"},
        {"/-/v1/usage?" OCT "&group_by=repo,repo", "bad_parameter"},
        {"/-/v1/usage?" OCT "&group_by=repo&order_by=-size", "bad_parameter"},
        {"/-/v1/usage?" OCT "&group_by=repo&limit=0", "bad_parameter"},
        {"/-/v1/usage?" OCT "&group_by=repo&limit=1001", "bad_parameter"},
        {"/-/v1/usage?" OCT "&group_by=repo&cursor=abc", "bad_parameter"},
        {"/-/v1/usage?" OCT "&limit=5", "bad_parameter"},
        {"/-/v1/usage?" OCT "&tz=Mars/Olympus", "bad_parameter"},
        {"/-/v1/usage?" OCT "&tz=UTC%27%3B%20DROP%20TABLE%20orgs%3B--", "bad_parameter"},
        {"/-/v1/usage?" OCT "&group_by=repo%27%3B%20DROP%20TABLE%20orgs%3B--", "bad_parameter"},
        {"/-/v1/usage?" OCT "&format=xml", "bad_parameter"},
        {"/-/v1/usage?" OCT "&granularity=day%00", "bad_parameter"},
        {"/-/v1/usage?colour=blue", "bad_parameter"},
        {"/-/v1/usage/export?month=2026-13", "bad_parameter"},
        {"/-/v1/usage/export?month=October", "bad_parameter"},
        {"/-/v1/usage/export?month=2026-10&format=pdf", "bad_parameter"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long st;
        json_t *doc = get(cases[i].query, auth_a, &st);
        cr_assert_eq(st, 400, "%s: %ld", cases[i].query, st);
        ac_assert_error(doc, st, 400, cases[i].code);
    }
    /* The database is untouched by the attempts. */
    PGconn *db = th_db_connect(stack.db_url);
    char *v = th_db_value(db, "SELECT count(*)::text FROM orgs", 0, NULL);
    cr_assert_str_eq(v, "2");
    free(v);
    PQfinish(db);
}

/* The request (into out) that makes operation method path answer status; false if none. */
static bool recipe(const char *path, const char *method, const char *status, const char **auth,
                   char *out, size_t len)
{
    bool ok200 = status[0] == '2';
    *auth = strcmp(status, "401") == 0 ? NULL : strcmp(status, "403") == 0 ? auth_b : auth_a;
    if (strcmp(path, "/-/v1/webhooks/{id}") == 0 && strcmp(method, "delete") == 0) {
        json_int_t id = ok200 ? alpha_webhook() : 999999;
        snprintf(out, len, "/-/v1/webhooks/%lld", (long long)id);
        return true;
    }
    if (*auth != auth_a || strcmp(path, "/-/v1/openapi.json") == 0) { /* 401, 403 */
        snprintf(out, len, "%s", path);
        return ok200 || strcmp(path, "/-/v1/openapi.json") != 0;
    }
    const char *q = NULL;
    if (strcmp(path, "/-/v1/usage") == 0)
        q = ok200 ? "/-/v1/usage?" OCT "&group_by=repo,key,status" : "/-/v1/usage?from=never";
    else if (strcmp(path, "/-/v1/usage/export") == 0)
        q = ok200 ? "/-/v1/usage/export?month=2026-10&format=json"
                  : "/-/v1/usage/export?month=never";
    else if (strcmp(path, "/-/v1/quota") == 0)
        q = ok200 ? "/-/v1/quota" : NULL;
    else if (strcmp(path, "/-/v1/webhooks") == 0 && strcmp(method, "get") == 0)
        q = "/-/v1/webhooks";
    else if (strcmp(path, "/-/v1/webhooks") == 0)
        q = ok200 ? "/-/v1/webhooks?" HOOK_URL : "/-/v1/webhooks?url=ftp%3A%2F%2Fexample.com";
    if (q != NULL)
        snprintf(out, len, "%s", q);
    return q != NULL;
}

Test(usage_api, every_documented_operation_answers_as_its_schema_says)
{
    long st;
    json_t *spec = get("/-/v1/openapi.json", NULL, &st);
    cr_assert_eq(st, 200);
    cr_assert(spec != NULL, "the document is JSON");
    cr_assert(strncmp(json_string_value(json_object_get(spec, "openapi")), "3.", 2) == 0);
    PGconn *db = th_db_connect(stack.db_url);
    free(th_db_value(db, "UPDATE orgs SET status = 'suspended' WHERE slug = 'beta' RETURNING 'ok'",
                     0, NULL));
    PQfinish(db);
    int checked = 0;
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(spec, "paths"), path, item) {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op) {
            char upper[16];
            size_t m = 0;
            for (; method[m] && m < sizeof upper - 1; m++)
                upper[m] = (char)(method[m] - 'a' + 'A');
            upper[m] = '\0';
            const char *status;
            json_t *resp;
            json_object_foreach(json_object_get(op, "responses"), status, resp) {
                const char *ref = json_string_value(json_object_get(resp, "$ref"));
                const json_t *r = ref ? ac_ref(spec, ref) : resp;
                const json_t *schema = json_object_get(
                    json_object_get(json_object_get(r, "content"), "application/json"), "schema");
                const char *auth;
                char q[512];
                cr_assert(recipe(path, method, status, &auth, q, sizeof q),
                          "%s %s %s: documented, but the test cannot produce it", method, path,
                          status);
                json_t *doc = call(upper, q, auth, &st);
                cr_assert_eq(st, strtol(status, NULL, 10), "%s: %ld", q, st);
                cr_assert(schema != NULL, "%s %s documents no JSON schema", path, status);
                char *bad = ac_schema_check(spec, schema, doc, "$");
                cr_assert(bad == NULL, "%s %s: %s", path, status, bad);
                json_decref(doc);
                checked++;
            }
        }
    }
    cr_assert_eq(checked, 23, "operations x statuses checked: %d", checked);
    /* The checker itself catches a wrong document. */
    json_t *wrong = json_pack("{s:s}", "org", "alpha");
    char *bad = ac_schema_check(spec, ac_ref(spec, "#/components/schemas/Usage"), wrong, "$");
    cr_assert(bad != NULL && strstr(bad, "required") != NULL);
    free(bad);
    json_decref(wrong);
    json_decref(spec);
}
