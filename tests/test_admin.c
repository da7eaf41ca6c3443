/*
 * The admin API through the real gateway's admin listener, and the same operations from
 * the CLI: named admin tokens, orgs, plans, keys (revocation and rotation on the running
 * gateway), CIDR networks attributing anonymous downloads, usage and top consumers, the
 * audit log written with every change, and bad input leaving the database unchanged.
 */
#include <criterion/criterion.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/apicheck.h"

#define BOOTSTRAP "adm-secret-0123456789-bootstrap"

static struct th_stack stack; /* its database, Redis and their environment entries */
static const char *env[6];
static struct th_gateway gw;
static char bearer[300] = "Authorization: Bearer " BOOTSTRAP;

static void setup(void)
{
    th_stack_new(&stack, NULL);
    env[0] = stack.env_db;
    env[1] = stack.env_redis;
    env[2] = stack.env_up;
    env[3] = "HUBMETER_ADMIN_TOKEN=" BOOTSTRAP;
    env[4] = "HUBMETER_WEBHOOK_INTERVAL_MS=200";
    env[5] = NULL;
    th_gateway_start(&gw, env);
}

static void teardown(void)
{
    th_gateway_stop(&gw);
    cr_assert(!th_log_contains(&gw, BOOTSTRAP), "the admin token appeared in the log");
    cr_assert(!th_log_contains(&gw, "hmadm_"), "an admin token appeared in the log");
}

/* An admin call with the bootstrap token (or auth, when given). */
static json_t *adm_as(const char *auth, const char *method, const char *path, const char *body,
                      long *status)
{
    char u[1024];
    snprintf(u, sizeof u, "%s/admin/v1/%s", gw.admin_base, path);
    const char *h[] = {auth, NULL};
    return ac_call(method, u, auth ? h : NULL, body, status);
}

static json_t *adm(const char *method, const char *path, const char *body, long *status)
{
    return adm_as(bearer, method, path, body, status);
}

/* Asserts a successful admin call with status want; returns its answer. */
static json_t *ok(long want, const char *method, const char *path, const char *body)
{
    long st;
    json_t *doc = adm(method, path, body, &st);
    char *text = doc ? json_dumps(doc, 0) : NULL;
    cr_assert_eq(st, want, "%s %s: %ld %s", method, path, st, text ? text : "");
    free(text);
    return doc;
}

static void fails(long status, const char *code, const char *method, const char *path,
                  const char *body)
{
    long st;
    json_t *doc = adm(method, path, body, &st);
    cr_assert_eq(st, status, "%s %s %s: %ld", method, path, body ? body : "", st);
    ac_assert_error(doc, st, status, code);
}

static char *db_value(const char *sql)
{
    PGconn *db = th_db_connect(stack.db_url);
    char *v = th_db_value(db, sql, 0, NULL);
    PQfinish(db);
    return v;
}

static long long db_count(const char *sql)
{
    char *v = db_value(sql);
    long long n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

/* Downloads config.json through the gateway with key (NULL: anonymous); returns status. */
static long download(const char *key)
{
    char u[512], auth[200];
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/config.json", gw.base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key ? key : "");
    struct th_response r;
    th_http("GET", u, key ? (const char *[]){auth, NULL} : NULL, &r);
    long st = r.status;
    th_response_free(&r);
    return st;
}

/* Polls until a download with key answers want (the key cache expires within 10 s). */
static void download_becomes(const char *key, long want, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    long st;
    while ((st = download(key)) != want) {
        cr_assert(th_now_ms() < deadline, "download answered %ld, wanted %ld", st, want);
        usleep(200 * 1000);
    }
}

static void new_key(const char *org, char *secret, size_t len, json_int_t *id)
{
    char path[128];
    snprintf(path, sizeof path, "orgs/%s/keys", org);
    json_t *doc = ok(201, "POST", path, "{\"name\":\"ci\"}");
    snprintf(secret, len, "%s", json_string_value(json_object_get(doc, "secret")));
    *id = json_integer_value(json_object_get(json_object_get(doc, "key"), "id"));
    json_decref(doc);
}

TestSuite(admin, .init = setup, .fini = teardown, .timeout = 120);

Test(admin, only_a_valid_named_admin_token_opens_the_api)
{
    long st;
    json_t *doc = adm_as(NULL, "GET", "orgs", NULL, &st);
    ac_assert_error(doc, st, 401, "authentication_required");
    doc = adm_as("Authorization: Bearer wrong-token", "GET", "orgs", NULL, &st);
    ac_assert_error(doc, st, 401, "invalid_admin_token");
    doc = adm_as("Authorization: Basic YWRtaW46YWRtaW4=", "GET", "orgs", NULL, &st);
    ac_assert_error(doc, st, 401, "invalid_admin_token");
    /* Only the hash of the bootstrap token is stored. */
    cr_assert_eq(db_count("SELECT count(*) FROM admin_tokens WHERE name = 'bootstrap' AND"
                          " secret_sha256 = sha256('" BOOTSTRAP "'::bytea)"), 1);
    cr_assert_eq(db_count("SELECT count(*) FROM admin_tokens WHERE encode(secret_sha256, 'escape')"
                          " LIKE '%adm-secret%'"), 0);
    /* The public listener does not serve the admin API. */
    char u[256];
    snprintf(u, sizeof u, "%s/admin/v1/orgs", gw.base);
    doc = ac_call("GET", u, (const char *[]){bearer, NULL}, NULL, &st);
    cr_assert_neq(st, 200);
    json_decref(doc);
    /* A second named token: its name is the audit log's "who"; revoked, it stops working. */
    doc = ok(201, "POST", "tokens", "{\"name\":\"ops-alice\"}");
    char alice[300];
    snprintf(alice, sizeof alice, "Authorization: Bearer %s",
             json_string_value(json_object_get(doc, "secret")));
    cr_assert(strncmp(json_string_value(json_object_get(doc, "secret")), "hmadm_", 6) == 0);
    json_decref(doc);
    fails(409, "already_exists", "POST", "tokens", "{\"name\":\"ops-alice\"}");
    fails(400, "invalid_value", "POST", "tokens", "{\"name\":\"Robert'); DROP TABLE x;--\"}");
    doc = adm_as(alice, "POST", "orgs", "{\"slug\":\"acme\"}", &st);
    cr_assert_eq(st, 201);
    json_decref(doc);
    doc = ok(200, "GET", "audit?target=org:acme", NULL);
    json_t *e = json_array_get(json_object_get(doc, "entries"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "actor")), "ops-alice");
    cr_assert_str_eq(json_string_value(json_object_get(e, "action")), "org.create");
    cr_assert(json_is_null(json_object_get(e, "before")));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "after"), "slug")), "acme");
    json_decref(doc);
    doc = ok(200, "GET", "tokens", NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "tokens")), 2);
    char *listed = json_dumps(json_object_get(doc, "tokens"), 0);
    cr_assert(listed != NULL && strstr(listed, "hmadm_") == NULL, "a token secret was listed");
    free(listed);
    json_decref(doc);
    json_decref(ok(200, "POST", "tokens/ops-alice/revoke", NULL));
    doc = adm_as(alice, "GET", "orgs", NULL, &st);
    ac_assert_error(doc, st, 401, "revoked_admin_token");
    fails(404, "not_found", "POST", "tokens/nobody/revoke", NULL);
}

Test(admin, orgs_are_created_listed_by_page_updated_and_audited)
{
    json_decref(ok(201, "POST", "plans", "{\"name\":\"pro\",\"monthly_bytes\":1000000}"));
    json_t *doc = ok(201, "POST", "orgs",
                     "{\"slug\":\"alpha\",\"name\":\"Alpha Inc\",\"class\":\"commercial\"}");
    cr_assert_str_eq(json_string_value(json_object_get(doc, "status")), "active");
    json_decref(doc);
    for (int i = 1; i <= 5; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"slug\":\"org-%d\"}", i);
        json_decref(ok(201, "POST", "orgs", body));
    }
    /* Pages of two by cursor cover the six orgs once each, in slug order. */
    char path[256] = "orgs?limit=2";
    int seen = 0;
    char last[64] = "";
    for (int page = 0; page < 4; page++) {
        doc = ok(200, "GET", path, NULL);
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(doc, "orgs"), i, o) {
            const char *slug = json_string_value(json_object_get(o, "slug"));
            cr_assert_gt(strcmp(slug, last), 0, "%s after %s", slug, last);
            snprintf(last, sizeof last, "%s", slug);
            seen++;
        }
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        if (next == NULL) {
            json_decref(doc);
            break;
        }
        snprintf(path, sizeof path, "orgs?limit=2&cursor=%s", next);
        json_decref(doc);
    }
    cr_assert_eq(seen, 6);
    doc = ok(200, "GET", "orgs?search=ALPHA", NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "orgs")), 1, "search matches names too");
    json_decref(doc);
    doc = ok(200, "GET", "orgs?search=%25", NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "orgs")), 0, "%% is not a wildcard");
    json_decref(doc);
    /* Update every field; the audit row holds before and after. */
    doc = ok(200, "PATCH", "orgs/alpha",
             "{\"name\":\"Alpha GmbH\",\"class\":\"nonprofit\",\"contact\":\"ops@alpha.example\","
             "\"plan\":\"pro\",\"anchor_day\":15}");
    cr_assert_str_eq(json_string_value(json_object_get(doc, "plan")), "pro");
    cr_assert_eq(json_integer_value(json_object_get(doc, "anchor_day")), 15);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "contact")), "ops@alpha.example");
    json_decref(doc);
    doc = ok(200, "GET", "orgs/alpha", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "class")), "nonprofit");
    json_decref(doc);
    doc = ok(200, "GET", "audit?target=org:alpha&limit=1", NULL);
    json_t *e = json_array_get(json_object_get(doc, "entries"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "action")), "org.update");
    cr_assert_str_eq(json_string_value(json_object_get(e, "actor")), "bootstrap");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "before"), "name")),
                     "Alpha Inc");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(e, "after"), "name")),
                     "Alpha GmbH");
    cr_assert(json_is_string(json_object_get(doc, "next_cursor")), "more entries follow");
    json_decref(doc);
    doc = ok(200, "PATCH", "orgs/alpha", "{\"plan\":null}");
    cr_assert(json_is_null(json_object_get(doc, "plan")));
    json_decref(doc);
    /* 1 plan + 6 orgs + 2 updates: one audit row per change, none for reads. */
    cr_assert_eq(db_count("SELECT count(*) FROM audit_log WHERE actor = 'bootstrap'"), 9);
}

Test(admin, bad_input_is_refused_with_a_stable_code_and_changes_nothing)
{
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"alpha\"}"));
    long long orgs = db_count("SELECT count(*) FROM orgs");
    long long audit = db_count("SELECT count(*) FROM audit_log");
    fails(409, "already_exists", "POST", "orgs", "{\"slug\":\"alpha\"}");
    fails(400, "invalid_value", "POST", "orgs", "{\"slug\":\"a'; DROP TABLE orgs;--\"}");
    fails(400, "invalid_value", "POST", "orgs", "{\"slug\":\"Alpha\"}");
    fails(400, "invalid_value", "POST", "orgs", "{\"slug\":\"\"}");
    fails(400, "invalid_value", "POST", "orgs", "{\"slug\":42}");
    fails(400, "invalid_value", "POST", "orgs", "{\"slug\":\"beta\",\"class\":\"evil\"}");
    fails(404, "not_found", "POST", "orgs", "{\"slug\":\"beta\",\"plan\":\"nope\"}");
    fails(400, "bad_json", "POST", "orgs", "{\"slug\":");
    fails(400, "bad_json", "POST", "orgs", "[1,2]");
    fails(400, "bad_json", "POST", "orgs", "{\"slug\":\"x\",\"slug\":\"y\"}");
    fails(400, "unknown_field", "POST", "orgs", "{\"slug\":\"beta\",\"admin\":true}");
    fails(400, "invalid_value", "PATCH", "orgs/alpha", "{\"anchor_day\":31}");
    fails(400, "invalid_value", "PATCH", "orgs/alpha", "{\"anchor_day\":0}");
    fails(400, "invalid_value", "PATCH", "orgs/alpha", "{\"name\":\"\"}");
    fails(400, "invalid_value", "PATCH", "orgs/alpha", "{}");
    fails(404, "not_found", "PATCH", "orgs/nobody", "{\"name\":\"x\"}");
    fails(404, "not_found", "GET", "orgs/a'%20OR%20'1'='1", NULL);
    fails(404, "not_found", "GET", "orgs/alpha/nothing", NULL);
    fails(404, "not_found", "DELETE", "orgs/alpha", NULL);
    fails(404, "not_found", "GET", "nothing", NULL);
    fails(400, "bad_parameter", "GET", "orgs?limit=0", NULL);
    fails(400, "bad_parameter", "GET", "orgs?sort=slug", NULL);
    fails(400, "bad_parameter", "GET", "audit?cursor=abc", NULL);
    fails(400, "invalid_value", "POST", "plans", "{\"name\":\"x\",\"monthly_bytes\":-1}");
    fails(400, "invalid_value", "POST", "plans", "{\"name\":\"x\",\"failure_policy\":\"maybe\"}");
    fails(400, "invalid_value", "POST", "plans", "{\"name\":\"x\",\"max_concurrent\":3000000000}");
    fails(400, "invalid_value", "POST", "plans", "{\"name\":\"x y\"}");
    fails(404, "not_found", "POST", "keys/999999/revoke", NULL);
    fails(404, "not_found", "POST", "keys/hm_nothing1/rotate", NULL);
    fails(404, "not_found", "POST", "orgs/nobody/keys", "{}");
    fails(400, "invalid_value", "POST", "orgs/alpha/keys", "{\"name\":7}");
    /* A body over 64 KiB. */
    size_t big = 70 * 1024;
    char *body = malloc(big + 32);
    snprintf(body, 32, "{\"slug\":\"beta\",\"name\":\"");
    memset(body + strlen(body), 'x', big);
    memcpy(body + big, "\"}", 3);
    fails(413, "body_too_large", "POST", "orgs", body);
    free(body);
    cr_assert_eq(db_count("SELECT count(*) FROM orgs"), orgs, "no org was created");
    cr_assert_eq(db_count("SELECT count(*) FROM audit_log"), audit, "no change was audited");
    cr_assert_eq(db_count("SELECT count(*) FROM plans"), 0);
}

Test(admin, plans_are_updated_and_deleted_only_when_unused)
{
    json_t *doc = ok(201, "POST", "plans",
                     "{\"name\":\"team\",\"requests_per_minute\":600,\"monthly_bytes\":5000000000,"
                     "\"failure_policy\":\"closed\",\"shadow\":true}");
    cr_assert_eq(json_integer_value(json_object_get(doc, "requests_per_minute")), 600);
    json_decref(doc);
    fails(409, "already_exists", "POST", "plans", "{\"name\":\"team\"}");
    doc = ok(200, "PATCH", "plans/team", "{\"requests_per_minute\":1200,\"shadow\":false}");
    cr_assert_eq(json_integer_value(json_object_get(doc, "requests_per_minute")), 1200);
    cr_assert_eq(json_integer_value(json_object_get(doc, "monthly_bytes")), 5000000000LL);
    cr_assert(json_is_false(json_object_get(doc, "shadow")));
    json_decref(doc);
    doc = ok(200, "GET", "plans", NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "plans")), 1);
    json_decref(doc);
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"alpha\",\"plan\":\"team\"}"));
    fails(409, "plan_in_use", "DELETE", "plans/team", NULL);
    cr_assert_eq(db_count("SELECT count(*) FROM plans"), 1);
    json_decref(ok(200, "PATCH", "orgs/alpha", "{\"plan\":null}"));
    json_decref(ok(200, "DELETE", "plans/team", NULL));
    fails(404, "not_found", "GET", "plans/team", NULL);
    fails(404, "not_found", "DELETE", "plans/team", NULL);
    doc = ok(200, "GET", "audit?target=plan:team", NULL);
    json_t *e = json_array_get(json_object_get(doc, "entries"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "action")), "plan.delete");
    cr_assert(json_is_null(json_object_get(e, "after")));
    cr_assert_eq(json_array_size(json_object_get(doc, "entries")), 3);
    json_decref(doc);
}

Test(admin, a_suspended_orgs_keys_get_403_and_work_again_after_resume)
{
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"alpha\"}"));
    char key[128];
    json_int_t id;
    new_key("alpha", key, sizeof key, &id);
    cr_assert_eq(download(key), 200);
    json_t *doc = ok(200, "POST", "orgs/alpha/suspend", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "status")), "suspended");
    json_decref(doc);
    char u[512], auth[200];
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/config.json", gw.base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    long st;
    doc = ac_call("GET", u, (const char *[]){auth, NULL}, NULL, &st);
    ac_assert_error(doc, st, 403, "org_suspended");
    json_decref(ok(200, "POST", "orgs/alpha/resume", NULL));
    cr_assert_eq(download(key), 200);
    fails(404, "not_found", "POST", "orgs/nobody/suspend", NULL);
}

Test(admin, keys_show_once_revoke_at_once_and_rotate_with_a_grace_period)
{
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"alpha\"}"));
    char key1[128], key2[128];
    json_int_t id1, id2;
    new_key("alpha", key1, sizeof key1, &id1);
    new_key("alpha", key2, sizeof key2, &id2);
    json_t *doc = ok(200, "GET", "orgs/alpha/keys", NULL);
    char *text = json_dumps(doc, 0);
    cr_assert(strstr(text, key1) == NULL && strstr(text, key2) == NULL, "a secret was listed");
    cr_assert(strstr(text, "\"secret\"") == NULL);
    free(text);
    json_t *k = json_array_get(json_object_get(doc, "keys"), 0);
    cr_assert_eq(strncmp(json_string_value(json_object_get(k, "prefix")), key1, 11), 0);
    cr_assert(json_object_get(k, "last_used_at") != NULL);
    json_decref(doc);
    /* Revocation: this gateway refuses the key at once. */
    cr_assert_eq(download(key1), 200);
    char path[128];
    snprintf(path, sizeof path, "keys/%lld/revoke", (long long)id1);
    doc = ok(200, "POST", path, NULL);
    cr_assert(json_is_string(json_object_get(doc, "revoked_at")));
    json_decref(doc);
    download_becomes(key1, 401, 1000);
    snprintf(path, sizeof path, "keys/%lld", (long long)id1);
    doc = ok(200, "GET", path, NULL);
    cr_assert(json_is_string(json_object_get(doc, "last_used_at")), "the download was seen");
    json_decref(doc);
    /* Rotation: a new key at once, the old one until the grace period ends. */
    snprintf(path, sizeof path, "keys/%lld/rotate", (long long)id2);
    doc = ok(200, "POST", path, "{\"grace_seconds\":3}");
    char key3[128];
    snprintf(key3, sizeof key3, "%s", json_string_value(json_object_get(doc, "secret")));
    cr_assert(json_is_string(json_object_get(json_object_get(doc, "old"), "expires_at")));
    json_decref(doc);
    cr_assert_eq(download(key3), 200);
    cr_assert_eq(download(key2), 200, "the old key works during the grace period");
    download_becomes(key2, 401, 16000); /* 3 s grace + at most the 10 s key cache */
    cr_assert_eq(download(key3), 200);
    fails(409, "key_inactive", "POST", path, "{}");
    snprintf(path, sizeof path, "keys/%lld/rotate", (long long)id1);
    fails(409, "key_inactive", "POST", path, "{}");
    fails(400, "invalid_value", "POST", "keys/1/rotate", "{\"grace_seconds\":-5}");
    cr_assert_eq(db_count("SELECT count(*) FROM audit_log WHERE action LIKE 'key.%'"), 4);
}

Test(admin, a_revocation_reaches_another_running_gateway_within_seconds)
{
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"alpha\"}"));
    char key[128];
    json_int_t id;
    new_key("alpha", key, sizeof key, &id);
    struct th_gateway other;
    th_gateway_start(&other, env); /* same database, its own key cache */
    char u[512], auth[200];
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/config.json", other.base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    struct th_response r;
    th_http("GET", u, (const char *[]){auth, NULL}, &r);
    cr_assert_eq(r.status, 200, "the other gateway knows (and caches) the key");
    th_response_free(&r);
    char path[64];
    snprintf(path, sizeof path, "keys/%lld/revoke", (long long)id);
    json_decref(ok(200, "POST", path, NULL));
    int64_t start = th_now_ms();
    for (;;) {
        th_http("GET", u, (const char *[]){auth, NULL}, &r);
        long st = r.status;
        th_response_free(&r);
        if (st == 401)
            break;
        cr_assert_eq(st, 200);
        cr_assert(th_now_ms() - start < 12000, "still accepted 12 s after the revocation");
        usleep(250 * 1000);
    }
    th_gateway_stop(&other);
}

/* Polls the admin usage of org until its month's bytes reach at least want. */
static json_int_t usage_bytes(const char *org)
{
    char path[128];
    snprintf(path, sizeof path, "orgs/%s/usage", org);
    json_t *doc = ok(200, "GET", path, NULL);
    json_int_t b = json_integer_value(json_object_get(json_object_get(doc, "totals"), "bytes"));
    json_decref(doc);
    return b;
}

Test(admin, cidr_ranges_attribute_anonymous_downloads_to_the_most_specific_org)
{
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"alpha\"}"));
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"beta\"}"));
    json_decref(ok(201, "POST", "orgs/alpha/networks", "{\"cidr\":\"127.0.0.0/8\"}"));
    json_t *doc = ok(201, "POST", "networks",
                     "{\"org\":\"beta\",\"cidr\":\"127.0.0.0/16\",\"note\":\"lab\"}");
    json_int_t beta_range = json_integer_value(json_object_get(doc, "id"));
    json_decref(doc);
    json_decref(ok(201, "POST", "orgs/alpha/networks", "{\"cidr\":\"2001:db8::/32\"}"));
    fails(409, "already_exists", "POST", "orgs/beta/networks", "{\"cidr\":\"127.0.0.0/8\"}");
    static const char *const bad[] = {"300.1.2.3/8", "10.0.0.1/8", "fe80::/200", "abc",
                                      "10.0.0.0/8/8", "10.0.0.0/", "", "'; DROP TABLE orgs;--"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"cidr\":\"%s\"}", bad[i]);
        fails(400, "invalid_value", "POST", "orgs/alpha/networks", body);
    }
    fails(404, "not_found", "POST", "orgs/nobody/networks", "{\"cidr\":\"10.0.0.0/8\"}");
    cr_assert_eq(db_count("SELECT count(*) FROM org_networks"), 3);
    /* An anonymous download from 127.0.0.1 (network 127.0.0.0/24) counts for beta. */
    cr_assert_eq(download(NULL), 200);
    int64_t deadline = th_now_ms() + 15000;
    while (usage_bytes("beta") == 0) {
        cr_assert(th_now_ms() < deadline, "the anonymous download never reached beta's usage");
        usleep(200 * 1000);
    }
    cr_assert_eq(usage_bytes("alpha"), 0, "the less specific range does not count it");
    json_int_t beta_bytes = usage_bytes("beta");
    doc = ok(200, "GET", "networks", NULL);
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(doc, "networks"), i, n) {
        bool is_beta = strcmp(json_string_value(json_object_get(n, "org")), "beta") == 0;
        cr_assert_eq(json_integer_value(json_object_get(n, "bytes")), is_beta ? beta_bytes : 0,
                     "%s", json_string_value(json_object_get(n, "cidr")));
    }
    json_decref(doc);
    doc = ok(200, "GET", "usage/top?limit=1", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "orgs"), 0),
                                                       "org")), "beta");
    json_decref(doc);
    /* Removing beta's range attributes the same past traffic to alpha (read-time). */
    char path[64];
    snprintf(path, sizeof path, "networks/%lld", (long long)beta_range);
    json_decref(ok(200, "DELETE", path, NULL));
    fails(404, "not_found", "DELETE", path, NULL);
    cr_assert_eq(usage_bytes("alpha"), beta_bytes);
    cr_assert_eq(usage_bytes("beta"), 0);
    doc = ok(200, "GET", "orgs/alpha/usage?group_by=key&format=json", NULL);
    cr_assert(json_is_null(json_object_get(json_array_get(json_object_get(doc, "groups"), 0), "key")),
              "anonymous traffic has no key");
    json_decref(doc);
    fails(400, "bad_parameter", "GET", "orgs/alpha/usage?from=bad", NULL);
    fails(404, "not_found", "GET", "orgs/nobody/usage", NULL);
    fails(400, "bad_range", "GET", "usage/top?from=2026-11-01T00:00:00Z&to=2026-10-01T00:00:00Z", NULL);
}

/* ---- quota webhooks: a receiver that fails its first call, then accepts ---------------------- */

#define HOOK_MAX 16
static struct {
    pthread_mutex_t lock;
    int calls;
    int accepted;
    char body[HOOK_MAX][512];
    char signature[HOOK_MAX][96];
} hook = {.lock = PTHREAD_MUTEX_INITIALIZER};

static enum MHD_Result hook_request(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *data,
                                    size_t *size, void **state)
{
    (void)cls, (void)url, (void)method, (void)version;
    static int marker;
    if (*state == NULL) { /* first call: headers only */
        *state = &marker;
        pthread_mutex_lock(&hook.lock);
        hook.body[hook.calls % HOOK_MAX][0] = '\0';
        pthread_mutex_unlock(&hook.lock);
        return MHD_YES;
    }
    pthread_mutex_lock(&hook.lock);
    int i = hook.calls % HOOK_MAX;
    if (*size != 0) {
        size_t have = strlen(hook.body[i]), room = sizeof hook.body[i] - 1 - have;
        size_t n = *size < room ? *size : room;
        memcpy(hook.body[i] + have, data, n);
        hook.body[i][have + n] = '\0';
        *size = 0;
        pthread_mutex_unlock(&hook.lock);
        return MHD_YES;
    }
    const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hubmeter-Signature");
    snprintf(hook.signature[i], sizeof hook.signature[i], "%s", sig ? sig : "");
    unsigned status = hook.calls == 0 ? 500 : 200; /* the first delivery fails */
    hook.accepted += status == 200;
    hook.calls++;
    pthread_mutex_unlock(&hook.lock);
    struct MHD_Response *resp = MHD_create_response_from_buffer(2, (void *)"ok",
                                                                MHD_RESPMEM_PERSISTENT);
    enum MHD_Result r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static void use_bytes(const char *org, const char *bytes)
{
    PGconn *db = th_db_connect(stack.db_url);
    const char *p[] = {org, bytes};
    free(th_db_value(db, "SELECT hm_usage_partition(now())::text", 0, NULL));
    free(th_db_value(db,
                     "INSERT INTO usage_minute (bucket, org_id, key_id, repo, method, status_class,"
                     " requests, bytes) SELECT date_trunc('minute', now()), id, NULL, 'r' || $2, 'GET', 2,"
                     " 1, $2::bigint FROM orgs WHERE slug = $1 RETURNING 'ok'",
                     2, p));
    PQfinish(db);
}

static void wait_accepted(int n)
{
    int64_t deadline = th_now_ms() + 20000;
    for (;;) {
        pthread_mutex_lock(&hook.lock);
        int got = hook.accepted;
        pthread_mutex_unlock(&hook.lock);
        if (got >= n)
            return;
        cr_assert(th_now_ms() < deadline, "%d webhook deliveries accepted, wanted %d", got, n);
        usleep(100 * 1000);
    }
}

Test(admin, quota_webhooks_fire_once_per_threshold_signed_and_retried)
{
    int port = th_free_port();
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL,
                                            NULL, hook_request, NULL, MHD_OPTION_END);
    cr_assert(d != NULL);
    json_decref(ok(201, "POST", "plans", "{\"name\":\"small\",\"monthly_bytes\":1000}"));
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"alpha\",\"plan\":\"small\"}"));
    fails(400, "invalid_value", "POST", "webhooks", "{\"url\":\"ftp://example.com/x\"}");
    fails(400, "invalid_value", "POST", "webhooks",
          "{\"url\":\"http://example.com/x\",\"thresholds\":[0]}");
    fails(400, "invalid_value", "POST", "webhooks", "{\"thresholds\":[80]}");
    fails(404, "not_found", "POST", "webhooks", "{\"org\":\"nobody\",\"url\":\"http://a.example/\"}");
    char body[256];
    snprintf(body, sizeof body, "{\"org\":\"alpha\",\"url\":\"http://127.0.0.1:%d/hook\"}", port);
    json_t *doc = ok(201, "POST", "webhooks", body);
    char secret[128], path[96], hook_path[64];
    snprintf(secret, sizeof secret, "%s", json_string_value(json_object_get(doc, "secret")));
    snprintf(hook_path, sizeof hook_path, "webhooks/%lld",
             (long long)json_integer_value(json_object_get(doc, "id")));
    snprintf(path, sizeof path, "%s/deliveries", hook_path);
    json_decref(doc);
    doc = ok(200, "GET", "webhooks", NULL);
    char *listed = json_dumps(doc, 0);
    cr_assert(strstr(listed, secret) == NULL, "the signing secret was listed");
    free(listed);
    json_decref(doc);

    use_bytes("alpha", "850"); /* 85 %: crosses 80 */
    wait_accepted(1);
    use_bytes("alpha", "200"); /* 105 %: crosses 100 */
    wait_accepted(2);
    usleep(1500 * 1000); /* several more rounds: nothing is sent again */
    pthread_mutex_lock(&hook.lock);
    cr_assert_eq(hook.accepted, 2, "each threshold is delivered once");
    cr_assert_eq(hook.calls, 3, "one failed attempt, then one delivery per threshold");
    for (int i = 1; i < 3; i++) {
        uint8_t mac[32];
        char hex[65], want[96];
        cm_hmac_sha256(secret, strlen(secret), hook.body[i], strlen(hook.body[i]), mac);
        cm_hex(mac, 32, hex);
        snprintf(want, sizeof want, "sha256=%s", hex);
        cr_assert_str_eq(hook.signature[i], want, "the signature covers the body");
        json_t *event = json_loads(hook.body[i], 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(event, "org")), "alpha");
        cr_assert_eq(json_integer_value(json_object_get(event, "threshold_percent")),
                     i == 1 ? 80 : 100);
        json_decref(event);
    }
    cr_assert_str_eq(hook.body[0], hook.body[1], "the retry sends the same event");
    pthread_mutex_unlock(&hook.lock);
    doc = ok(200, "GET", path, NULL);
    json_t *first = json_array_get(json_object_get(doc, "deliveries"), 0);
    cr_assert_eq(json_integer_value(json_object_get(first, "attempts")), 2);
    cr_assert(json_is_true(json_object_get(first, "delivered")));
    cr_assert_eq(json_array_size(json_object_get(doc, "deliveries")), 2);
    json_decref(doc);
    MHD_stop_daemon(d);
    json_decref(ok(200, "DELETE", hook_path, NULL));
    fails(404, "not_found", "DELETE", hook_path, NULL);
    fails(404, "not_found", "GET", path, NULL);
}

/* ---- the same operations from the CLI ------------------------------------------------------- */

static void cli(struct th_run *r, int want, const char *const *args)
{
    th_hubmeter(r, env, args);
    cr_assert_eq(r->status, want, "%s: exit %d\n%s%s", args[1], r->status, r->out, r->err);
    if (want == 1) /* a failure is one line on stderr */
        cr_assert(strncmp(r->err, "hubmeter: ", 10) == 0 &&
                      strchr(r->err, '\n') == r->err + strlen(r->err) - 1,
                  "not one line: %s", r->err);
    if (want == 2) /* a usage error starts with the reason (or the usage text) */
        cr_assert(strncmp(r->err, "hubmeter: ", 10) == 0 || strncmp(r->err, "usage:", 6) == 0,
                  "%s", r->err);
}

Test(admin_cli, orgs_plans_keys_networks_and_usage_from_the_terminal)
{
    struct th_run r;
    cli(&r, 0, (const char *[]){"plans", "create", "pro", "--monthly-bytes", "100", NULL});
    cli(&r, 0, (const char *[]){"plans", "update", "pro", "--monthly-bytes", "200", "--json", NULL});
    json_t *doc = json_loads(r.out, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(doc, "monthly_bytes")), 200);
    json_decref(doc);
    cli(&r, 0, (const char *[]){"orgs", "create", "acme", "--plan", "pro", NULL});
    cli(&r, 0, (const char *[]){"orgs", "update", "acme", "--contact", "x@acme.example",
                                "--anchor-day", "3", "--class", "academic", NULL});
    cli(&r, 0, (const char *[]){"orgs", "show", "acme", "--json", NULL});
    doc = json_loads(r.out, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "contact")), "x@acme.example");
    cr_assert_eq(json_integer_value(json_object_get(doc, "anchor_day")), 3);
    json_decref(doc);
    cli(&r, 1, (const char *[]){"plans", "delete", "pro", NULL});
    cr_assert(strstr(r.err, "used by") != NULL, "%s", r.err);
    cli(&r, 0, (const char *[]){"orgs", "update", "acme", "--no-plan", NULL});
    cli(&r, 0, (const char *[]){"plans", "delete", "pro", NULL});
    cli(&r, 0, (const char *[]){"orgs", "list", "--search", "acm", NULL});
    cr_assert(strstr(r.out, "acme") != NULL && strstr(r.out, "SLUG") != NULL, "a table: %s", r.out);
    /* Keys: rotate prints the new secret last; the old one keeps working for the grace. */
    cli(&r, 0, (const char *[]){"keys", "create", "acme", NULL});
    char key[128], fresh[128];
    th_last_line(r.out, key, sizeof key);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%.11s", key);
    cli(&r, 0, (const char *[]){"keys", "rotate", prefix, "--grace", "600", NULL});
    th_last_line(r.out, fresh, sizeof fresh);
    cr_assert(strncmp(fresh, "hm_", 3) == 0 && strcmp(fresh, key) != 0);
    cr_assert_eq(download(fresh), 200);
    cr_assert_eq(download(key), 200);
    cli(&r, 0, (const char *[]){"orgs", "suspend", "acme", NULL});
    cli(&r, 0, (const char *[]){"orgs", "show", "acme", NULL});
    cr_assert(strstr(r.out, "suspended") != NULL);
    cli(&r, 0, (const char *[]){"orgs", "resume", "acme", NULL});
    /* Networks. */
    cli(&r, 0, (const char *[]){"networks", "add", "acme", "192.0.2.0/24", "--note", "office", NULL});
    cli(&r, 2, (const char *[]){"networks", "add", "acme", "192.0.2.1/24", NULL});
    cli(&r, 1, (const char *[]){"networks", "add", "acme", "192.0.2.0/24", NULL});
    cli(&r, 1, (const char *[]){"networks", "add", "nobody", "198.51.100.0/24", NULL});
    cli(&r, 0, (const char *[]){"networks", "list", "acme", "--json", NULL});
    doc = json_loads(r.out, 0, NULL);
    cr_assert_eq(json_array_size(doc), 1);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(json_array_get(doc, 0), "id")));
    json_decref(doc);
    cli(&r, 0, (const char *[]){"networks", "remove", id, NULL});
    cli(&r, 1, (const char *[]){"networks", "remove", id, NULL});
    /* Usage: the org API's document; top; export. */
    cli(&r, 0, (const char *[]){"usage", "show", "acme", "--json", NULL});
    doc = json_loads(r.out, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "org")), "acme");
    cr_assert(json_object_get(json_object_get(doc, "totals"), "bytes") != NULL);
    json_decref(doc);
    cli(&r, 0, (const char *[]){"usage", "show", "acme", "--group-by", "repo,key", NULL});
    cr_assert(strstr(r.out, "TOTAL") != NULL);
    cli(&r, 0, (const char *[]){"usage", "top", "--json", NULL});
    cli(&r, 0, (const char *[]){"usage", "export", "acme", "--month", "2026-10", "--json", NULL});
    cli(&r, 2, (const char *[]){"usage", "show", "acme", "--granularity", "fortnight", NULL});
    cli(&r, 2, (const char *[]){"usage", "show", "acme", "--tz", "Mars/Base", NULL});
    cli(&r, 2, (const char *[]){"usage", "show", "acme", "--group-by", "colour", NULL});
    cli(&r, 1, (const char *[]){"usage", "show", "nobody", NULL});
    cli(&r, 2, (const char *[]){"orgs", "update", "acme", "--anchor-day", "40", NULL});
    cli(&r, 2, (const char *[]){"orgs", "update", "acme", NULL});
    cli(&r, 1, (const char *[]){"orgs", "suspend", "nobody", NULL});
    cli(&r, 1, (const char *[]){"keys", "rotate", "999999", NULL});
    /* Every change above is in the audit log with the CLI as its actor. */
    cr_assert_geq(db_count("SELECT count(*) FROM audit_log WHERE actor LIKE 'cli:%'"), 12);
}

TestSuite(admin_cli, .init = setup, .fini = teardown, .timeout = 120);

/* GET /admin/v1/reports/funding: the CLI's report, as JSON, CSV and HTML, with the
 * billing module's error codes. */
Test(admin, the_funding_report_is_served_as_json_csv_and_html)
{
    /* Last month: 2 TB pulled by a commercial org (keyed). */
    free(db_value("SELECT hm_usage_partition(date_trunc('month', now()) - interval '1 month')::text"));
    long st;
    json_decref(ok(201, "POST", "orgs", "{\"slug\":\"bigco\",\"name\":\"Big Co\","
                                        "\"class\":\"commercial\"}"));
    free(db_value("INSERT INTO usage_minute (bucket, org_id, repo, method, status_class,"
                  " requests, bytes) SELECT date_trunc('month', now()) - interval '1 month'"
                  " + interval '3 days', id, 'acme/model', 'GET', 2, 1000, 2000000000000"
                  " FROM orgs WHERE slug = 'bigco' RETURNING 1::text"));
    /* As a late batch would: its hour is rolled up again (until then read by minute). */
    free(db_value("INSERT INTO rollup_dirty SELECT date_trunc('month', now()) - interval"
                  " '1 month' + interval '3 days' ON CONFLICT DO NOTHING RETURNING 1::text"));
    char period[16];
    char *p = db_value("SELECT to_char(date_trunc('month', now()) - interval '1 month', 'YYYY-MM')");
    cm_copy(period, sizeof period, p);
    free(p);
    char path[128];
    snprintf(path, sizeof path, "reports/funding?period=%s", period);
    json_t *doc = ok(200, "GET", path, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "period")), period);
    json_t *totals = json_object_get(doc, "totals");
    cr_assert_eq(json_integer_value(json_object_get(totals, "bytes")), 2000000000000LL);
    json_t *first = json_array_get(json_object_get(doc, "consumers"), 0);
    json_int_t cost = json_integer_value(json_object_get(totals, "period_cost_micros"));
    cr_assert_gt(cost, 0);
    json_decref(doc);
    /* CSV and HTML: the same report, other renderings. */
    const char *formats[][2] = {{"csv", "text/csv"}, {"html", "text/html"}};
    for (int i = 0; i < 2; i++) {
        char u[512];
        snprintf(u, sizeof u, "%s/admin/v1/reports/funding?period=%s&format=%s", gw.admin_base,
                 period, formats[i][0]);
        struct th_response r;
        th_http("GET", u, (const char *[]){bearer, NULL}, &r);
        cr_assert_eq(r.status, 200, "%s", r.body);
        char ct[128];
        cr_assert(th_header(&r, "Content-Type", ct, sizeof ct));
        cr_assert(strncmp(ct, formats[i][1], strlen(formats[i][1])) == 0, "%s", ct);
        cr_assert(strstr(r.body, "bigco") != NULL, "the consumer is in the %s", formats[i][0]);
        th_response_free(&r);
    }
    (void)first;
    fails(400, "bad_period", "GET", "reports/funding?period=2026-13", NULL);
    fails(400, "bad_parameter", "GET", "reports/funding", NULL);
    fails(400, "bad_parameter", "GET", "reports/funding?period=2026-10&format=pdf", NULL);
    fails(400, "future_period", "GET", "reports/funding?period=2999-01", NULL);
    fails(404, "unknown_period", "GET", "reports/funding?period=2001-01", NULL);
    json_t *e = adm_as(NULL, "GET", path, NULL, &st);
    cr_assert_eq(st, 401);
    json_decref(e);
}
