/*
 * End-to-end tests: the real (sanitized) hubmeter binary serving downloads from a file://
 * tree and from a real nginx, with real Redis and PostgreSQL behind it. What a client
 * sees (bytes, headers, JSON errors) and what the usage API reports afterwards.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

static struct th_stack stack; /* its database, Redis and their environment entries */
static char key[128], auth[200];
static struct th_gateway gw;

/* A fresh database and Redis, an org "acme" with a key, and a gateway for upstream. */
static void start(const char *upstream)
{
    th_stack_new(&stack, upstream);
    const char *env[] = {stack.env_db, stack.env_redis, stack.env_up, NULL};
    struct th_run r;
    th_hubmeter(&r, env, (const char *[]){"orgs", "create", "acme", "--class", "commercial", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env, (const char *[]){"keys", "create", "acme", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_last_line(r.out, key, sizeof key);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    th_gateway_start(&gw, env);
}

static void start_file(void)
{
    char up[512];
    snprintf(up, sizeof up, "file://%s", th_env("HM_TEST_WWW"));
    start(up);
}

static void start_nginx(void) { start(th_env("HM_TEST_NGINX_URL")); }

static void stop(void)
{
    th_gateway_stop(&gw);
    cr_assert(!th_log_contains(&gw, key), "the API key must never appear in the log");
}

static char *read_file(const char *rel, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", th_env("HM_TEST_WWW"), rel);
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len + 1);
    cr_assert_eq(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void url(char *out, size_t len, const char *path)
{
    snprintf(out, len, "%s%s", gw.base, path);
}

/* Asserts resp is a JSON error with status and code. */
static void assert_error(struct th_response *resp, long status, const char *code)
{
    cr_assert_eq(resp->status, status, "status %ld, body %s", resp->status, resp->body);
    char ct[128];
    cr_assert(th_header(resp, "Content-Type", ct, sizeof ct));
    cr_assert_str_eq(ct, "application/json");
    json_t *doc = json_loads(resp->body, 0, NULL);
    cr_assert(doc != NULL, "not JSON: %s", resp->body);
    json_t *err = json_object_get(doc, "error");
    cr_assert_str_eq(json_string_value(json_object_get(err, "code")), code);
    cr_assert(json_string_length(json_object_get(err, "message")) > 0);
    json_decref(doc);
}

/* Polls the usage API with the key until acme's totals match, at most 15 s. */
static void assert_usage_becomes(long long bytes, long long requests)
{
    th_usage_becomes(gw.base, auth, "acme", bytes, requests);
}

#define MODEL "acme/model/resolve/main/model.bin"

Test(e2e_file, a_keyed_download_is_exact_and_its_bytes_show_in_usage, .init = start_file,
     .fini = stop)
{
    size_t len;
    char *want = read_file(MODEL, &len);
    char u[256];
    url(u, sizeof u, "/" MODEL);
    const char *h[] = {auth, NULL};
    struct th_response r;
    th_http("GET", u, h, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, len);
    cr_assert(memcmp(r.body, want, len) == 0, "the body differs from the file");
    th_response_free(&r);
    url(u, sizeof u, "/acme/model/resolve/main/config.json");
    th_http("GET", u, h, &r);
    cr_assert_eq(r.status, 200);
    size_t config_len = r.body_len;
    char etag[128];
    th_response_free(&r);
    url(u, sizeof u, "/" MODEL);
    th_http("GET", u, h, &r); /* the same object again: a re-download */
    cr_assert(th_header(&r, "ETag", etag, sizeof etag));
    th_response_free(&r);
    assert_usage_becomes((long long)(2 * len + config_len), 3);
    free(want);
    /* What reports need: the distinct clients per hour, and bytes per object per day. */
    PGconn *db = th_db_connect(stack.db_url);
    char *v = th_db_value(db, "SELECT count(*) || '|' || min(host(address))"
                              " FROM usage_clients_hourly WHERE org_id IS NOT NULL", 0, NULL);
    cr_assert_str_eq(v, "1|127.0.0.1");
    free(v);
    const char *params[] = {etag};
    v = th_db_value(db, "SELECT requests || '|' || bytes FROM usage_objects_daily"
                        " WHERE repo = 'acme/model' AND etag = $1", 1, params);
    char expect[64];
    snprintf(expect, sizeof expect, "2|%zu", 2 * len);
    cr_assert(v != NULL, "no per-object row for %s", etag);
    cr_assert_str_eq(v, expect);
    free(v);
    PQfinish(db);
}

Test(e2e_file, anonymous_downloads_work_and_are_recorded_by_network, .init = start_file,
     .fini = stop)
{
    char u[256];
    url(u, sizeof u, "/acme/model/resolve/main/one.bin");
    struct th_response r;
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "x");
    th_response_free(&r);
    PGconn *db = th_db_connect(stack.db_url);
    int64_t deadline = th_now_ms() + 15000;
    char *v = NULL;
    while (th_now_ms() < deadline) {
        free(v);
        v = th_db_value(db, "SELECT sum(bytes) || '|' || sum(requests) FROM usage_minute"
                            " WHERE org_id IS NULL AND network = '127.0.0.0/24'"
                            " AND repo = 'acme/model'", 0, NULL);
        if (v != NULL && strcmp(v, "1|1") == 0)
            break;
        usleep(100 * 1000);
    }
    cr_assert(v != NULL && strcmp(v, "1|1") == 0, "anonymous usage: %s", v ? v : "none");
    free(v);
    PQfinish(db);
}

Test(e2e_file, bad_credentials_and_paths_get_json_errors, .init = start_file, .fini = stop)
{
    char u[256];
    struct th_response r;
    url(u, sizeof u, "/" MODEL);
    char typo[200];
    snprintf(typo, sizeof typo, "%s", auth);
    typo[strlen(typo) - 1] = typo[strlen(typo) - 1] == 'A' ? 'B' : 'A';
    th_http("GET", u, (const char *[]){typo, NULL}, &r);
    assert_error(&r, 401, "invalid_key");
    char www[128];
    cr_assert(th_header(&r, "WWW-Authenticate", www, sizeof www));
    th_response_free(&r);
    /* A well-formed key that does not exist. */
    th_http("GET", u, (const char *[]){"X-Api-Key: hm_00000000000000000000000000000000000000", NULL},
            &r);
    cr_assert_eq(r.status, 401);
    th_response_free(&r);
    th_http("GET", u, (const char *[]){"Authorization: Bearer", NULL}, &r);
    assert_error(&r, 400, "malformed_authorization");
    th_response_free(&r);
    th_http("GET", u, (const char *[]){"Authorization: Digest abc", NULL}, &r);
    assert_error(&r, 400, "malformed_authorization");
    th_response_free(&r);
    url(u, sizeof u, "/-/v1/nothing");
    th_http("GET", u, NULL, &r);
    assert_error(&r, 404, "not_found");
    th_response_free(&r);
    url(u, sizeof u, "/-/v1/usage");
    th_http("GET", u, NULL, &r);
    assert_error(&r, 401, "authentication_required");
    th_response_free(&r);
    const char *h[] = {auth, NULL};
    url(u, sizeof u, "/-/v1/usage?granularity=fortnight");
    th_http("GET", u, h, &r);
    assert_error(&r, 400, "bad_range");
    th_response_free(&r);
    url(u, sizeof u, "/-/v1/usage?from=yesterday");
    th_http("GET", u, h, &r);
    assert_error(&r, 400, "bad_parameter");
    th_response_free(&r);
    url(u, sizeof u, "/acme/model/resolve/main/missing.bin");
    th_http("GET", u, h, &r);
    assert_error(&r, 404, "not_found");
    th_response_free(&r);
    url(u, sizeof u, "/acme/../../etc/passwd");
    th_http("GET", u, h, &r);
    cr_assert(r.status == 400 || r.status == 404, "%ld", r.status);
    th_response_free(&r);
    url(u, sizeof u, "/" MODEL);
    th_http("DELETE", u, h, &r);
    assert_error(&r, 405, "method_not_allowed");
    th_response_free(&r);
}

Test(e2e_file, a_revoked_key_is_refused_within_seconds, .init = start_file, .fini = stop)
{
    char u[256];
    url(u, sizeof u, "/acme/model/resolve/main/one.bin");
    const char *h[] = {auth, NULL};
    struct th_response r;
    th_http("GET", u, h, &r);
    cr_assert_eq(r.status, 200);
    th_response_free(&r);
    const char *env[] = {stack.env_db, NULL};
    struct th_run run;
    char display[16];
    snprintf(display, sizeof display, "%.11s", key);
    th_hubmeter(&run, env, (const char *[]){"keys", "revoke", display, NULL});
    cr_assert_eq(run.status, 0, "%s", run.err);
    int64_t deadline = th_now_ms() + 15000;
    long status = 200;
    while (status == 200 && th_now_ms() < deadline) {
        th_http("GET", u, h, &r);
        status = r.status;
        if (status != 200)
            assert_error(&r, 401, "revoked_key");
        th_response_free(&r);
        usleep(200 * 1000);
    }
    cr_assert_eq(status, 401, "the revoked key still works after 15 s");
}

Test(e2e_file, range_head_and_revalidation_behave_like_a_file_server, .init = start_file,
     .fini = stop)
{
    char u[256], v[128];
    url(u, sizeof u, "/" MODEL);
    struct th_response r;
    th_http("HEAD", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(th_header(&r, "Content-Length", v, sizeof v));
    cr_assert_str_eq(v, "3145739");
    char etag[128];
    cr_assert(th_header(&r, "ETag", etag, sizeof etag));
    th_response_free(&r);
    th_http("GET", u, (const char *[]){"Range: bytes=100-199", NULL}, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.body_len, 100);
    cr_assert(th_header(&r, "Content-Range", v, sizeof v));
    cr_assert_str_eq(v, "bytes 100-199/3145739");
    th_response_free(&r);
    char inm[200];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    th_http("GET", u, (const char *[]){inm, NULL}, &r);
    cr_assert_eq(r.status, 304);
    cr_assert_eq(r.body_len, 0);
    th_response_free(&r);
    th_http("GET", u, (const char *[]){"Range: bytes=9999999-", NULL}, &r);
    cr_assert_eq(r.status, 416);
    th_response_free(&r);
}

Test(e2e_nginx, downloads_stream_from_nginx_with_its_headers_and_without_the_key,
     .init = start_nginx, .fini = stop)
{
    size_t len;
    char *want = read_file(MODEL, &len);
    char marker[64], u[512], direct[512];
    snprintf(marker, sizeof marker, "probe=%d", (int)getpid());
    snprintf(u, sizeof u, "%s/%s?%s&x=a+b", gw.base, MODEL, marker);
    snprintf(direct, sizeof direct, "%s/%s", th_env("HM_TEST_NGINX_URL"), MODEL);
    struct th_response r, d;
    th_http("GET", u, (const char *[]){auth, NULL}, &r);
    th_http("HEAD", direct, NULL, &d);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, len);
    cr_assert(memcmp(r.body, want, len) == 0);
    char e1[128], e2[128], lm1[128], lm2[128], via[64];
    cr_assert(th_header(&r, "ETag", e1, sizeof e1) && th_header(&d, "ETag", e2, sizeof e2));
    cr_assert_str_eq(e1, e2, "the upstream's ETag passes through");
    cr_assert(th_header(&r, "Last-Modified", lm1, sizeof lm1) &&
              th_header(&d, "Last-Modified", lm2, sizeof lm2));
    cr_assert_str_eq(lm1, lm2);
    cr_assert(th_header(&r, "Via", via, sizeof via));
    th_response_free(&r);
    th_response_free(&d);
    free(want);
    char line[1024];
    cr_assert(th_upstream_saw(marker, line, sizeof line), "nginx never saw the request");
    cr_assert(strstr(line, "x=a+b") != NULL, "the query string arrives unchanged: %s", line);
    cr_assert(strstr(line, "auth=\"-\"") != NULL, "the key was forwarded: %s", line);
    cr_assert(strstr(line, "xff=\"127.0.0.1\"") != NULL, "%s", line);
    assert_usage_becomes((long long)len, 1);
}

Test(e2e_nginx, range_head_304_and_upstream_errors_pass_through, .init = start_nginx,
     .fini = stop)
{
    char u[512], v[128];
    snprintf(u, sizeof u, "%s/%s", gw.base, MODEL);
    struct th_response r;
    th_http("GET", u, (const char *[]){"Range: bytes=0-9", NULL}, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.body_len, 10);
    cr_assert(th_header(&r, "Content-Range", v, sizeof v));
    cr_assert_str_eq(v, "bytes 0-9/3145739");
    th_response_free(&r);
    th_http("HEAD", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0);
    cr_assert(th_header(&r, "Content-Length", v, sizeof v));
    cr_assert_str_eq(v, "3145739");
    char etag[128], inm[160];
    cr_assert(th_header(&r, "ETag", etag, sizeof etag));
    th_response_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    th_http("GET", u, (const char *[]){inm, NULL}, &r);
    cr_assert_eq(r.status, 304);
    th_response_free(&r);
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/absent.bin", gw.base);
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 404, "the upstream's own 404 passes through");
    th_response_free(&r);
    /* Only the 10-byte range carried a body; HEAD and 304 count as requests, 0 bytes. */
    assert_usage_becomes(0, 0); /* all anonymous: nothing for acme */
}

static void start_unreachable(void) { start("http://127.0.0.1:1"); }

Test(e2e_nginx, an_unreachable_upstream_is_a_502_json_error, .init = start_unreachable,
     .fini = stop)
{
    char u[256];
    url(u, sizeof u, "/" MODEL);
    struct th_response r;
    th_http("GET", u, (const char *[]){auth, NULL}, &r);
    assert_error(&r, 502, "upstream_unreachable");
    th_response_free(&r);
}

static uint64_t anonymous_sum(PGconn *db)
{
    char *v = th_db_value(db, "SELECT sum(bytes)::text FROM usage_minute WHERE org_id IS NULL", 0,
                          NULL);
    uint64_t bytes = v != NULL ? strtoull(v, NULL, 10) : 0;
    free(v);
    return bytes;
}

/* The anonymous bytes in PostgreSQL once they settle: polled until they reach at_least (a
 * download's progress checkpoints and its final record may land in different batches),
 * then read again a ship interval later, so a late over-count shows too. */
static uint64_t anonymous_bytes(uint64_t at_least)
{
    PGconn *db = th_db_connect(stack.db_url);
    int64_t deadline = th_now_ms() + 15000;
    while (anonymous_sum(db) < at_least && th_now_ms() < deadline)
        usleep(100 * 1000);
    usleep(1500 * 1000);
    uint64_t bytes = anonymous_sum(db);
    PQfinish(db);
    cr_assert(bytes > 0, "no anonymous usage was recorded");
    return bytes;
}

static void assert_abort_counted(void)
{
    char u[512];
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/big.bin", gw.base);
    uint64_t received = th_http_abort_after(u, NULL, 10u << 20);
    uint64_t counted = anonymous_bytes(received - (64u << 10));
    cr_assert(counted >= received - (64u << 10) && counted <= received + (64u << 10),
              "the client received %llu bytes of 64 MiB; the meter counted %llu",
              (unsigned long long)received, (unsigned long long)counted);
}

Test(e2e_file, an_aborted_download_is_counted_within_64_kib, .init = start_file, .fini = stop)
{
    assert_abort_counted();
}

Test(e2e_nginx, an_aborted_proxied_download_is_counted_within_64_kib, .init = start_nginx,
     .fini = stop)
{
    assert_abort_counted();
}

Test(e2e_file, traversal_and_symlinks_out_of_the_root_are_refused, .init = start_file,
     .fini = stop)
{
    const char *bad[] = {"/acme/model/resolve/main/escape.txt", "/acme/%2e%2e/%2e%2e/etc/passwd",
                         "/acme/model/resolve/main/..%2F..%2F..%2Fconfig.json",
                         "/acme/model/%2E%2E/model/resolve/main/config.json",
                         "/acme/model/resolve/main/config.json%00.txt"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char u[512];
        url(u, sizeof u, bad[i]);
        struct th_response r;
        th_http("GET", u, NULL, &r);
        cr_assert(r.status == 400 || r.status == 404, "%s answered %ld", bad[i], r.status);
        cr_assert(strstr(r.body, "error") != NULL);
        th_response_free(&r);
    }
    char u[256];
    url(u, sizeof u, "/acme/model/resolve/main/link.json");
    struct th_response r;
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 200, "a symlink inside the mirror is served");
    cr_assert(strstr(r.body, "model_type") != NULL);
    th_response_free(&r);
}

Test(e2e_file, if_modified_since_and_if_range_follow_rfc_9110, .init = start_file, .fini = stop)
{
    char u[256], lm[128], hdr[200];
    url(u, sizeof u, "/" MODEL);
    struct th_response r;
    th_http("HEAD", u, NULL, &r);
    cr_assert(th_header(&r, "Last-Modified", lm, sizeof lm));
    th_response_free(&r);
    snprintf(hdr, sizeof hdr, "If-Modified-Since: %s", lm);
    th_http("GET", u, (const char *[]){hdr, NULL}, &r);
    cr_assert_eq(r.status, 304);
    th_response_free(&r);
    th_http("GET", u, (const char *[]){"If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT", NULL},
            &r);
    cr_assert_eq(r.status, 200);
    th_response_free(&r);
    /* If-Range with a stale validator: the whole file, not the range. */
    th_http("GET", u, (const char *[]){"Range: bytes=0-9", "If-Range: \"stale\"", NULL}, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 3145739);
    th_response_free(&r);
    snprintf(hdr, sizeof hdr, "If-Range: %s", lm);
    th_http("GET", u, (const char *[]){"Range: bytes=0-9", hdr, NULL}, &r);
    cr_assert_eq(r.status, 206);
    th_response_free(&r);
    /* Several ranges: the whole file (allowed by RFC 9110 §14.2). */
    th_http("GET", u, (const char *[]){"Range: bytes=0-1,5-6", NULL}, &r);
    cr_assert_eq(r.status, 200);
    th_response_free(&r);
}

static void assert_huge_tail(void)
{
    char u[512], v[128];
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/huge.bin", gw.base);
    struct th_response r;
    th_http("GET", u, (const char *[]){"Range: bytes=5368709104-", NULL}, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.body_len, 16);
    cr_assert_str_eq(r.body, "END-OF-HUGE-FILE");
    cr_assert(th_header(&r, "Content-Range", v, sizeof v));
    cr_assert_str_eq(v, "bytes 5368709104-5368709119/5368709120");
    th_response_free(&r);
    th_http("HEAD", u, NULL, &r);
    cr_assert(th_header(&r, "Content-Length", v, sizeof v));
    cr_assert_str_eq(v, "5368709120");
    th_response_free(&r);
}

Test(e2e_file, a_file_past_4_gib_is_served_by_range_near_its_end, .init = start_file,
     .fini = stop)
{
    assert_huge_tail();
}

Test(e2e_nginx, a_proxied_file_past_4_gib_is_served_by_range_near_its_end, .init = start_nginx,
     .fini = stop)
{
    assert_huge_tail();
}

/* Runs curl(1) as a user would: a partial file, then `curl -C -` to resume it. */
static void assert_resume_is_byte_identical(void)
{
    char part[128], cmd[1024];
    snprintf(part, sizeof part, "/tmp/hm-resume-%d.bin", (int)getpid());
    size_t len;
    char *want = read_file(MODEL, &len);
    FILE *f = fopen(part, "wb");
    cr_assert_eq(fwrite(want, 1, 1000000, f), 1000000); /* the first megabyte */
    fclose(f);
    snprintf(cmd, sizeof cmd, "curl -fsS -C - -o %s -H '%s' %s/%s", part, auth, gw.base, MODEL);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    size_t got_len;
    f = fopen(part, "rb");
    fseek(f, 0, SEEK_END);
    got_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *got = malloc(got_len);
    cr_assert_eq(fread(got, 1, got_len, f), got_len);
    fclose(f);
    unlink(part);
    cr_assert_eq(got_len, len);
    cr_assert(memcmp(got, want, len) == 0, "the resumed file differs");
    free(got);
    free(want);
    assert_usage_becomes((long long)(len - 1000000), 1);
}

Test(e2e_file, a_resumed_download_is_byte_identical, .init = start_file, .fini = stop)
{
    assert_resume_is_byte_identical();
}

Test(e2e_nginx, a_resumed_proxied_download_is_byte_identical, .init = start_nginx, .fini = stop)
{
    assert_resume_is_byte_identical();
}

/* The body bytes the gateway's access log reports for acme's downloads. */
static long long logged_bytes(void)
{
    FILE *f = fopen(gw.log, "r");
    cr_assert(f != NULL, "%s", gw.log);
    char line[4096];
    long long sum = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *b = strstr(line, " bytes=");
        if (strstr(line, "event=request") != NULL && strstr(line, " org=acme ") != NULL &&
            b != NULL)
            sum += strtoll(b + 7, NULL, 10);
    }
    fclose(f);
    return sum;
}

/* A real parallel-range client: aria2c with 8 connections (as `aria2c -x8` users run it)
 * gets a byte-identical 64 MiB file. aria2c asks open-ended ranges and hangs up when a
 * segment is done, so what its connections received (their TCP acknowledged it) may
 * exceed the file: the usage is at least the file and exactly what the gateway logged
 * as delivered. */
static void aria2c_download(void)
{
    char dir[128], u[256], cmd[2048];
    snprintf(dir, sizeof dir, "/tmp/hm-aria-%d", (int)getpid());
    url(u, sizeof u, "/acme/model/resolve/main/big.bin");
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s && timeout 90 aria2c -q -x8 -s8 -k1M"
             " --allow-overwrite=true --auto-file-renaming=false --header='%s' -d %s -o big.bin"
             " '%s' >%s.log 2>&1 && cmp -s %s/big.bin %s/acme/model/resolve/main/big.bin",
             dir, dir, auth, dir, u, dir, dir, th_env("HM_TEST_WWW"));
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd, "%s tail -n 20 %s.log >&2; rm -rf %s %s.log",
             rc != 0 ? "" : ":", dir, dir, dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
    cr_assert_eq(rc, 0, "aria2c -x8 through the gateway must produce the same file (its "
                        "output, if it failed, is above)");
    char uu[256];
    url(uu, sizeof uu, "/-/v1/usage");
    const char *h[] = {auth, NULL};
    int64_t deadline = th_now_ms() + 15000;
    json_int_t bytes = 0, requests = 0;
    long long logged = -1;
    while (th_now_ms() < deadline) {
        struct th_response r;
        th_http("GET", uu, h, &r);
        json_t *doc = json_loads(r.body, 0, NULL);
        json_t *totals = json_object_get(doc, "totals");
        bytes = json_integer_value(json_object_get(totals, "bytes"));
        requests = json_integer_value(json_object_get(totals, "requests"));
        json_decref(doc);
        th_response_free(&r);
        logged = logged_bytes();
        if (bytes >= (64 << 20) && bytes == logged)
            break;
        usleep(100 * 1000);
    }
    cr_assert(bytes >= (64 << 20), "usage counts %lld bytes for a 64 MiB file", (long long)bytes);
    cr_assert_eq(bytes, logged, "usage %lld bytes, the gateway logged %lld delivered",
                 (long long)bytes, logged);
    cr_assert(requests >= 2 && requests <= 64, "%lld requests", (long long)requests);
}

Test(e2e_file, aria2c_with_8_connections_gets_a_byte_identical_file, .init = start_file,
     .fini = stop, .timeout = 120)
{
    aria2c_download();
}

Test(e2e_nginx, aria2c_with_8_connections_gets_a_byte_identical_file, .init = start_nginx,
     .fini = stop, .timeout = 120)
{
    aria2c_download();
}
