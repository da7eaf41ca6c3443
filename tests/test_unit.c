/*
 * Unit tests for pure code: configuration, time, key format, credentials, request facts
 * and per-minute aggregation. No servers needed.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "gateway/gw_int.h"
#include "meter/meter_int.h"
#include "meter/quota_int.h"
#include "registry/registry.h"

static void clear_env(void)
{
    static const char *const keys[] = {"HUBMETER_LISTEN", "HUBMETER_UPSTREAM",
                                       "HUBMETER_KEY_PREFIX", "HUBMETER_FLUSHER",
                                       "HUBMETER_MAX_CONNECTIONS", "HUBMETER_DATABASE_URL"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        unsetenv(keys[i]);
}

Test(config, defaults_match_the_documented_contract, .init = clear_env)
{
    struct hm_config cfg;
    char err[256];
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_OK);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 8080);
    cr_assert_eq(cfg.admin_port, 8081);
    cr_assert_str_eq(cfg.key_prefix, "hm_");
    cr_assert(cfg.run_flusher);
}

Test(config, a_bad_value_is_rejected_with_the_key_named, .init = clear_env)
{
    struct hm_config cfg;
    char err[256];
    setenv("HUBMETER_LISTEN", "localhost", 1);
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, "HUBMETER_LISTEN") != NULL, "%s", err);
    setenv("HUBMETER_LISTEN", "127.0.0.1:99999", 1);
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_INVALID);
    unsetenv("HUBMETER_LISTEN");
    setenv("HUBMETER_UPSTREAM", "ftp://example", 1);
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, "HUBMETER_UPSTREAM") != NULL, "%s", err);
    setenv("HUBMETER_UPSTREAM", "file://relative", 1);
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_INVALID);
    unsetenv("HUBMETER_UPSTREAM");
    setenv("HUBMETER_MAX_CONNECTIONS", "12abc", 1);
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, "HUBMETER_MAX_CONNECTIONS") != NULL, "%s", err);
}

Test(config, secret_values_never_appear_in_errors, .init = clear_env)
{
    struct hm_config cfg;
    char err[4096];
    char big[2000];
    memset(big, 'S', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    setenv("HUBMETER_DATABASE_URL", big, 1);
    cr_assert_eq(cm_config_load(&cfg, NULL, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, "SSSS") == NULL, "%s", err);
}

Test(config, a_config_file_adds_keys_and_the_environment_wins, .init = clear_env)
{
    char path[] = "/tmp/hm-config-XXXXXX";
    int fd = mkstemp(path);
    const char text[] = "# comment\nHUBMETER_UPSTREAM=http://127.0.0.1:9/base/\n"
                        "HUBMETER_LISTEN=127.0.0.1:9000\nHUBMETER_FLUSHER=off\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    setenv("HUBMETER_LISTEN", "[::1]:9001", 1);
    struct hm_config cfg;
    char err[256];
    cr_assert_eq(cm_config_load(&cfg, path, err, sizeof err), CM_OK, "%s", err);
    cr_assert_str_eq(cfg.upstream, "http://127.0.0.1:9/base");
    cr_assert_str_eq(cfg.listen_host, "::1");
    cr_assert_eq(cfg.listen_port, 9001);
    cr_assert(!cfg.run_flusher);
    FILE *f = fopen(path, "a");
    fputs("HUBMETER_NOPE=1\n", f);
    fclose(f);
    cr_assert_eq(cm_config_load(&cfg, path, err, sizeof err), CM_INVALID);
    cr_assert(strstr(err, ":5:") != NULL, "the error names the line: %s", err);
    unlink(path);
}

Test(time, rfc3339_round_trips_and_rejects_garbage)
{
    int64_t t;
    cr_assert_eq(cm_time_parse("2026-11-01T00:00:00Z", 20, &t), CM_OK);
    cr_assert_eq(t, 1793491200);
    char buf[32];
    cm_time_format(t, buf, sizeof buf);
    cr_assert_str_eq(buf, "2026-11-01T00:00:00Z");
    cr_assert_eq(cm_time_parse("2026-11-01T02:00:00+02:00", 25, &t), CM_OK);
    cr_assert_eq(t, 1793491200);
    cr_assert_eq(cm_time_parse("2026-11-01T00:00:00.123Z", 24, &t), CM_OK);
    cr_assert_eq(cm_time_parse("2026-02-29T00:00:00Z", 20, &t), CM_INVALID);
    cr_assert_eq(cm_time_parse("2026-13-01T00:00:00Z", 20, &t), CM_INVALID);
    cr_assert_eq(cm_time_parse("yesterday", 9, &t), CM_INVALID);
    cr_assert_eq(cm_time_parse("2026-11-01T00:00:00", 19, &t), CM_INVALID);
}

Test(time, month_boundaries_are_utc_calendar_months)
{
    int64_t t;
    cm_time_parse("2026-12-31T23:59:59Z", 20, &t);
    int64_t start = cm_month_start(t);
    char buf[32];
    cm_time_format(start, buf, sizeof buf);
    cr_assert_str_eq(buf, "2026-12-01T00:00:00Z");
    cm_time_format(cm_month_next(start), buf, sizeof buf);
    cr_assert_str_eq(buf, "2027-01-01T00:00:00Z");
}

/* Monthly quota periods with an anchor day, asked in an order that crosses the remembered
 * period both ways (a thread remembers the last one it computed). */
Test(time, quota_periods_follow_the_anchor_day_across_months)
{
    struct {
        const char *now;
        int anchor;
        const char *start, *end, *next_end, *name, *next_name;
    } cases[] = {
        {"2026-11-23T17:00:00Z", 1, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z",
         "2027-01-01T00:00:00Z", "m:20261101", "m:20261201"},
        {"2026-11-30T23:59:59Z", 1, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z",
         "2027-01-01T00:00:00Z", "m:20261101", "m:20261201"},
        {"2026-12-01T00:00:00Z", 1, "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z",
         "2027-02-01T00:00:00Z", "m:20261201", "m:20270101"},
        {"2026-10-31T23:59:59Z", 1, "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z",
         "2026-12-01T00:00:00Z", "m:20261001", "m:20261101"},
        {"2026-10-31T23:59:59Z", 15, "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z",
         "2026-12-15T00:00:00Z", "m:20261015", "m:20261115"},
        {"2026-11-14T23:59:59Z", 15, "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z",
         "2026-12-15T00:00:00Z", "m:20261015", "m:20261115"},
        {"2026-11-15T00:00:00Z", 15, "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z",
         "2027-01-15T00:00:00Z", "m:20261115", "m:20261215"},
        {"2027-01-10T08:00:00Z", 28, "2026-12-28T00:00:00Z", "2027-01-28T00:00:00Z",
         "2027-02-28T00:00:00Z", "m:20261228", "m:20270128"},
        {"2026-11-23T17:00:00Z", 1, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z",
         "2027-01-01T00:00:00Z", "m:20261101", "m:20261201"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *when[4] = {cases[i].now, cases[i].start, cases[i].end, cases[i].next_end};
        int64_t t[4];
        for (int k = 0; k < 4; k++)
            cr_assert_eq(cm_time_parse(when[k], strlen(when[k]), &t[k]), CM_OK);
        int64_t start, end, next_end;
        char name[48], next_name[48];
        quota_period(t[0], cases[i].anchor, &start, &end, &next_end, name, next_name,
                     sizeof name);
        cr_assert_eq(start, t[1], "case %zu: start", i);
        cr_assert_eq(end, t[2], "case %zu: end", i);
        cr_assert_eq(next_end, t[3], "case %zu: next end", i);
        cr_assert_str_eq(name, cases[i].name, "case %zu", i);
        cr_assert_str_eq(next_name, cases[i].next_name, "case %zu", i);
    }
}

/* Known answers: the check value of CRC-32 (IEEE) and SHA-256's test vectors, the second
 * hash of a run on the same thread (which reuses its digest context) included. */
Test(bytes, crc32_and_sha256_give_the_standard_answers)
{
    cr_assert_eq(cm_crc32("123456789", 9), 0xcbf43926u);
    cr_assert_eq(cm_crc32("", 0), 0u);
    uint8_t h[32];
    char hex[65];
    cm_sha256("abc", 3, h);
    cm_hex(h, 32, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cm_sha256("", 0, h);
    cm_hex(h, 32, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(bytes, cm_buf_appends_numbers_as_printf_would_and_stops_when_full)
{
    char s[64], want[64];
    struct cm_buf b;
    cm_buf_init(&b, s, sizeof s);
    cm_buf_str(&b, "q=");
    cm_buf_u64(&b, UINT64_MAX);
    cm_buf_str(&b, ";t=");
    cm_buf_i64(&b, INT64_MIN);
    cm_buf_str(&b, ",");
    cm_buf_u64(&b, 0);
    cm_buf_i64(&b, -7);
    snprintf(want, sizeof want, "q=%llu;t=%lld,0-7", (unsigned long long)UINT64_MAX,
             (long long)INT64_MIN);
    cr_assert_str_eq(s, want);
    cr_assert(!b.overflow);
    char small[6];
    cm_buf_init(&b, small, sizeof small);
    cm_buf_str(&b, "ab");
    cm_buf_u64(&b, 12345); /* does not fit: nothing of it, and nothing after */
    cm_buf_str(&b, "c");
    cr_assert(b.overflow);
    cr_assert_str_eq(small, "ab");
}

Test(bytes, cm_buf_numbers_of_every_length_match_printf)
{
    /* Every digit count (odd and even: the digits go two at a time), and each power of ten
     * with its neighbours. */
    uint64_t p = 1;
    for (int k = 0; k < 20; k++) {
        uint64_t vs[] = {p - 1, p, p + 1, p * 9 + (p - 1), p * 5 + 3};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
            char s[32], want[32];
            struct cm_buf b;
            cm_buf_init(&b, s, sizeof s);
            cm_buf_u64(&b, vs[i]);
            snprintf(want, sizeof want, "%llu", (unsigned long long)vs[i]);
            cr_assert_str_eq(s, want);
            cm_buf_init(&b, s, sizeof s);
            cm_buf_i64(&b, -(int64_t)(vs[i] % INT64_MAX));
            snprintf(want, sizeof want, "%lld", -(long long)(vs[i] % INT64_MAX));
            cr_assert_str_eq(s, want);
        }
        if (k < 19)
            p *= 10;
    }
}

Test(keys, generated_keys_carry_the_prefix_and_pass_their_checksum)
{
    char a[REG_KEY_MAX], b[REG_KEY_MAX];
    cr_assert_eq(reg_key_generate("hf_", a, sizeof a), CM_OK);
    cr_assert_eq(reg_key_generate("hf_", b, sizeof b), CM_OK);
    cr_assert_eq(strncmp(a, "hf_", 3), 0);
    cr_assert_eq(strlen(a), 3 + REG_KEY_BODY + REG_KEY_CHECK);
    cr_assert_str_neq(a, b);
    cr_assert_eq(reg_key_check("hf_", a, strlen(a)), CM_OK);
    cr_assert_eq(reg_key_check("hm_", a, strlen(a)), CM_INVALID);
}

Test(keys, a_typo_or_truncation_is_caught_without_a_lookup)
{
    char k[REG_KEY_MAX];
    reg_key_generate("hm_", k, sizeof k);
    size_t n = strlen(k);
    cr_assert_eq(reg_key_check("hm_", k, n - 1), CM_INVALID);
    for (size_t i = 3; i < n; i++) {
        char typo[REG_KEY_MAX];
        memcpy(typo, k, n + 1);
        typo[i] = typo[i] == 'a' ? 'b' : 'a';
        cr_assert_eq(reg_key_check("hm_", typo, n), CM_INVALID, "typo at %zu accepted", i);
    }
    char display[32];
    reg_key_display("hm_", k, display, sizeof display);
    cr_assert_eq(strlen(display), 3 + REG_KEY_DISPLAY);
    cr_assert_eq(strncmp(display, k, strlen(display)), 0);
}

Test(credentials, bearer_basic_and_x_api_key_yield_the_key)
{
    char key[80];
    const char *why;
    cr_assert_eq(gw_credential_parse("Bearer hm_abc", NULL, key, sizeof key, &why), GW_CRED_KEY);
    cr_assert_str_eq(key, "hm_abc");
    cr_assert_eq(gw_credential_parse("bearer   hm_abc", NULL, key, sizeof key, &why),
                 GW_CRED_KEY);
    /* base64("git:hm_abc") */
    cr_assert_eq(gw_credential_parse("Basic Z2l0OmhtX2FiYw==", NULL, key, sizeof key, &why),
                 GW_CRED_KEY);
    cr_assert_str_eq(key, "hm_abc");
    /* base64("hm_abc:") — the key as user name, empty password */
    cr_assert_eq(gw_credential_parse("Basic aG1fYWJjOg==", NULL, key, sizeof key, &why),
                 GW_CRED_KEY);
    cr_assert_str_eq(key, "hm_abc");
    cr_assert_eq(gw_credential_parse(NULL, "hm_xyz", key, sizeof key, &why), GW_CRED_KEY);
    cr_assert_str_eq(key, "hm_xyz");
    cr_assert_eq(gw_credential_parse(NULL, NULL, key, sizeof key, &why), GW_CRED_NONE);
    /* base64(":") — what docker and skopeo answer a Basic challenge with when they have no
     * credentials: anonymous, so a challenge route asks again instead of answering 400 */
    cr_assert_eq(gw_credential_parse("Basic Og==", NULL, key, sizeof key, &why), GW_CRED_NONE);
}

Test(credentials, malformed_headers_are_reported_not_ignored)
{
    char key[80];
    const char *why = NULL;
    const char *bad[] = {"Bearer", "Bearer ", "Bearer a b", "Digest abc", "Basic !!!",
                         "Basic aGVsbG8=" /* no colon */, "Token x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(gw_credential_parse(bad[i], NULL, key, sizeof key, &why),
                     GW_CRED_MALFORMED, "%s accepted", bad[i]);
        cr_assert(why != NULL && *why != '\0');
    }
}

Test(request_facts, client_networks_are_slash24_and_slash48)
{
    char ip[64], net[64];
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "203.0.113.77", &s4.sin_addr);
    gw_client_network((struct sockaddr *)&s4, ip, sizeof ip, net, sizeof net);
    cr_assert_str_eq(ip, "203.0.113.77");
    cr_assert_str_eq(net, "203.0.113.0/24");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8:abcd:12::1", &s6.sin6_addr);
    gw_client_network((struct sockaddr *)&s6, ip, sizeof ip, net, sizeof net);
    cr_assert_str_eq(net, "2001:db8:abcd::/48");
    inet_pton(AF_INET6, "::ffff:198.51.100.9", &s6.sin6_addr);
    gw_client_network((struct sockaddr *)&s6, ip, sizeof ip, net, sizeof net);
    cr_assert_str_eq(net, "198.51.100.0/24");
}

Test(request_facts, repositories_are_found_in_hub_paths, .init = clear_env)
{
    struct hm_config cfg;
    char err[256], repo[160];
    cm_config_load(&cfg, NULL, err, sizeof err);
    const char *P = cfg.repo_patterns;
    cr_assert_eq(gw_repo_patterns_check(P, err, sizeof err), CM_OK, "%s", err);
    static const char *const cases[][2] = {
        {"/acme/llm-7b/resolve/main/model.safetensors", "acme/llm-7b"},
        {"/api/models/acme/llm-7b/revision/main", "acme/llm-7b"},
        {"/api/models/acme/llm-7b", "acme/llm-7b"},
        {"/datasets/org/data.v2/resolve/main/x.parquet", "datasets/org/data.v2"},
        {"/api/datasets/org/data.v2/tree/main", "datasets/org/data.v2"},
        {"/acme/model.git/info/lfs/objects/batch", "acme/model"},
        {"/api/whoami-v2", ""},
        {"/../etc/passwd", ""},
        {"/a%20b/c/resolve/x", ""},
        {"/acme/llm-7b", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_repo_from_path(P, cases[i][0], repo, sizeof repo);
        cr_assert_str_eq(repo, cases[i][1], "%s", cases[i][0]);
    }
    gw_repo_from_path("pypi/=/simple/{repo}/*", "/simple/numpy/", repo, sizeof repo);
    cr_assert_str_eq(repo, "pypi/numpy");
    cr_assert_eq(gw_repo_patterns_check("/simple/{name}/*", err, sizeof err), CM_INVALID);
    cr_assert_eq(gw_repo_patterns_check("simple/{repo}", err, sizeof err), CM_INVALID);
    cr_assert_eq(gw_repo_patterns_check("/a/*/{repo}", err, sizeof err), CM_INVALID);
}

Test(request_facts, percent_decoding_refuses_bad_escapes_and_nul)
{
    char out[32];
    cr_assert_eq(gw_percent_decode("a%2Fb%20c", out, sizeof out), CM_OK);
    cr_assert_str_eq(out, "a/b c");
    cr_assert_eq(gw_percent_decode("a%2", out, sizeof out), CM_INVALID);
    cr_assert_eq(gw_percent_decode("a%00b", out, sizeof out), CM_INVALID);
    cr_assert_eq(gw_percent_decode("%zz", out, sizeof out), CM_INVALID);
}

Test(aggregate, records_of_one_minute_and_identity_add_up)
{
    struct meter_agg *a = meter_agg_new();
    struct meter_record r = {.org_id = 7, .key_id = 3, .repo = "acme/m", .method = "GET",
                             .status_class = 2, .bytes = 100};
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(meter_agg_add(a, &r, 1793491200 + (i % 60)), CM_OK);
    r.status_class = 4;
    r.bytes = 0;
    meter_agg_add(a, &r, 1793491200);
    struct meter_record anon = {.network = "10.1.2.0/24", .method = "GET", .status_class = 2,
                                .bytes = 5};
    meter_agg_add(a, &anon, 1793491260); /* next minute */
    cr_assert_eq(meter_agg_rows(a), 3);
    json_t *rows = meter_agg_to_json(a);
    json_int_t bytes = 0, reqs = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        bytes += json_integer_value(json_object_get(row, "bytes"));
        reqs += json_integer_value(json_object_get(row, "req"));
        if (json_is_null(json_object_get(row, "org")))
            cr_assert_str_eq(json_string_value(json_object_get(row, "net")), "10.1.2.0/24");
    }
    cr_assert_eq(bytes, 100005);
    cr_assert_eq(reqs, 1002);
    json_decref(rows);
    meter_agg_free(a);
}

Test(aggregate, many_distinct_rows_grow_the_table)
{
    struct meter_agg *a = meter_agg_new();
    for (int i = 0; i < 5000; i++) {
        struct meter_record r = {.org_id = i + 1, .method = "GET", .status_class = 2, .bytes = 1};
        cr_assert_eq(meter_agg_add(a, &r, 1793491200), CM_OK);
        cr_assert_eq(meter_agg_add(a, &r, 1793491200), CM_OK);
    }
    cr_assert_eq(meter_agg_rows(a), 5000);
    meter_agg_free(a);
}

/* Journal lines are written without jansson on the hot path: whatever a record holds
 * (quotes, backslashes, control characters, UTF-8), the replay after a crash reads back
 * exactly the records that were appended. */
Test(journal, every_record_reads_back_exactly_as_appended)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/hm-unit-journal-%d", (int)getpid());
    char err[256];
    struct meter_journal *j = meter_journal_open(dir, 0, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    struct meter_record recs[] = {
        {.org_id = 7, .key_id = 3, .repo = "acme/m", .method = "GET", .status_class = 2,
         .bytes = 1048576, .client = "10.0.0.1", .etag = "\"abc\""},
        {.network = "10.1.2.0/24", .repo = "a\\b/\"q\"", .method = "HEAD", .status_class = 4,
         .refused_by = "requests", .client = "10.1.2.3", .etag = "W/\"x\ty\x01\x7f\""},
        {.org_id = 9, .repo = "acme/mod\xc3\xa8le", .method = "PUT", .status_class = 5,
         .bytes = UINT64_C(5000000000), .partial = true, .client = "::1"},
    };
    struct meter_agg *want = meter_agg_new();
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        size_t unjournaled = 1;
        cr_assert_eq(meter_journal_append(j, &recs[i], 1, 1793491200 + (int64_t)i, false, &unjournaled), CM_OK);
        cr_assert_eq(unjournaled, 0);
        cr_assert_eq(meter_agg_add(want, &recs[i], 1793491200 + (int64_t)i), CM_OK);
    }
    meter_journal_close(j);
    j = meter_journal_open(dir, 0, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    struct meter_agg *got = meter_agg_new();
    size_t records = 0;
    cr_assert_eq(meter_journal_recover(j, NULL, NULL, got, &records), CM_OK);
    cr_assert_eq(records, 3);
    json_t *a = meter_agg_to_json(want), *b = meter_agg_to_json(got);
    char *sa = json_dumps(a, JSON_SORT_KEYS), *sb = json_dumps(b, JSON_SORT_KEYS);
    cr_assert_str_eq(sb, sa);
    free(sa);
    free(sb);
    json_decref(a);
    json_decref(b);
    meter_agg_free(want);
    meter_agg_free(got);
    meter_journal_drop_old_segments(j);
    meter_journal_close(j);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(request_facts, a_metered_route_forwards_accept_without_xet_media_types)
{
    char out[256];
    gw_accept_without_xet("application/vnd.xet-fileinfo+json, */*", out, sizeof out);
    cr_assert_str_eq(out, "*/*");
    gw_accept_without_xet("text/html,APPLICATION/VND.XET-fileinfo+json;q=0.9,\t*/*;q=0.1", out,
                          sizeof out);
    cr_assert_str_eq(out, "text/html, */*;q=0.1");
    gw_accept_without_xet("application/vnd.xet-fileinfo+json", out, sizeof out);
    cr_assert_str_eq(out, "", "nothing left: no Accept is forwarded");
    gw_accept_without_xet("application/json", out, sizeof out);
    cr_assert_str_eq(out, "application/json");
}
