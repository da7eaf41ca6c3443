/*
 * Funding reports (billing/) against the real PostgreSQL: a month of usage is seeded
 * straight into the usage tables (rolled-up hours, minute rows past the rollup cursor, a
 * dirty hour, a correction, keyed and anonymous traffic from mapped and unmapped networks,
 * the month before for trends) and every figure of the report is checked exactly against
 * values worked out independently (see the comments). Also the arithmetic and the cost
 * model alone, snapshots, the month to date, the CLI's errors, and the HTML in Chromium.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "billing/billing.h"
#include "tests/harness.h"

#define TB 1000000000000ll
#define GB 1000000000ll

/* ---- arithmetic and the cost model, no servers ----------------------------------------- */

Test(billing_math, largest_remainder_sums_exactly_and_breaks_ties_by_order)
{
    int64_t out[4];
    uint64_t w3[] = {1, 1, 1};
    cr_assert_eq(bill_allocate(100, w3, 3, out), CM_OK);
    cr_assert(out[0] == 34 && out[1] == 33 && out[2] == 33);
    uint64_t w4[] = {1, 1, 1, 1};
    bill_allocate(7, w4, 4, out);
    cr_assert(out[0] == 2 && out[1] == 2 && out[2] == 2 && out[3] == 1);
    /* 10 × 0.15 = 1.5, 10 × 0.35 = 3.5, 10 × 0.5 = 5: the leftover goes to the larger
     * remainder, equal remainders to the first. */
    uint64_t w[] = {15, 35, 50};
    bill_allocate(10, w, 3, out);
    cr_assert(out[0] == 2 && out[1] == 3 && out[2] == 5, "%lld %lld %lld", (long long)out[0],
              (long long)out[1], (long long)out[2]);
    /* Products past 64 bits: 9e18 micro-units over weights near 2^64. */
    uint64_t big[] = {UINT64_MAX / 2, UINT64_MAX / 3, UINT64_MAX / 7};
    bill_allocate(9000000000000000000ll, big, 3, out);
    cr_assert_eq(out[0] + out[1] + out[2], 9000000000000000000ll);
    uint64_t none[] = {0, 0};
    bill_allocate(0, none, 2, out);
    cr_assert(out[0] == 0 && out[1] == 0);
}

Test(billing_math, egress_tiers_apply_to_the_month_total_and_round_once_half_up)
{
    struct bill_model m;
    bill_model_default(&m);
    /* 10 TB at $0.085 = $850; + 40 TB at $0.080 = $3,200; + 100 TB at $0.060 = $6,000;
     * + 50 TB at $0.040 = $2,000; + 0.123456789 GB at $0.040 = 4938.27 micro-units. */
    cr_assert_eq(bill_egress_cost(&m, 10 * TB), 850000000ll);
    cr_assert_eq(bill_egress_cost(&m, 50 * TB), 4050000000ll);
    cr_assert_eq(bill_egress_cost(&m, 200 * TB + 123456789), 12050004938ll);
    cr_assert_eq(bill_egress_cost(&m, 5882), 0);  /* 0.49997 micro-units */
    cr_assert_eq(bill_egress_cost(&m, 5883), 1);  /* 0.500055 → 1 */
    cr_assert_eq(bill_request_cost(750000, 53520000), 40140000);
    cr_assert_eq(bill_request_cost(750000, 1), 1); /* 0.75 → 1 */
}

Test(billing_math, asks_round_up_to_sponsorship_tiers)
{
    struct bill_model m;
    bill_model_default(&m);
    cr_assert_eq(bill_round_up_tier(&m, 0), 0);
    cr_assert_eq(bill_round_up_tier(&m, 1), 100000000);
    cr_assert_eq(bill_round_up_tier(&m, 100000000), 100000000);
    cr_assert_eq(bill_round_up_tier(&m, 100000001), 250000000);
    cr_assert_eq(bill_round_up_tier(&m, 50000000001ll), 100000000000ll);
    cr_assert_eq(bill_round_up_tier(&m, 120000000000ll), 150000000000ll);
}

Test(billing_math, money_parses_to_micro_units_and_formats_back)
{
    int64_t v;
    cr_assert_eq(bill_parse_money("0.085", &v), CM_OK);
    cr_assert_eq(v, 85000);
    cr_assert_eq(bill_parse_money("2000", &v), CM_OK);
    cr_assert_eq(v, 2000000000);
    const char *bad[] = {"-1", "1.1234567", "1.", ".5", "abc", "", "1e3", "99999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(bill_parse_money(bad[i], &v), CM_INVALID, "%s", bad[i]);
    char buf[48];
    bill_format_micros(8159997944, buf, sizeof buf);
    cr_assert_str_eq(buf, "8159.997944");
    bill_format_money("USD", 8159997944, buf, sizeof buf);
    cr_assert_str_eq(buf, "$8,160.00");
    bill_format_money("EUR", 1234565000, buf, sizeof buf);
    cr_assert_str_eq(buf, "EUR 1,234.57");
    bill_format_bp(6004, buf, sizeof buf);
    cr_assert_str_eq(buf, "60.04%");
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* Parses text as a cost model file; returns its rc and the message in err. */
static int parse_model(const char *text, struct bill_model *m, char *err, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/hm-billing-%d.model", (int)getpid());
    write_text(path, text);
    int rc = bill_model_parse_file(path, m, err, len);
    unlink(path);
    return rc;
}

Test(billing_model, every_field_is_validated_and_the_error_names_it)
{
    static const struct { const char *text, *field; } cases[] = {
        {"EGRESS_PER_GB=10TB:-0.085,*:0.04\n", "EGRESS_PER_GB"},
        {"EGRESS_PER_GB=50TB:0.08,10TB:0.085,*:0.04\n", "EGRESS_PER_GB"},
        {"EGRESS_PER_GB=10TB:0.085,50TB:0.08\n", "EGRESS_PER_GB"},
        {"EGRESS_PER_GB=ten:0.085,*:0.04\n", "EGRESS_PER_GB"},
        {"REQUESTS_PER_MILLION=-0.75\n", "REQUESTS_PER_MILLION"},
        {"REQUESTS_PER_MILLION=abc\n", "REQUESTS_PER_MILLION"},
        {"FREE_BYTES_PER_ORG=1XB\n", "FREE_BYTES_PER_ORG"},
        {"FREE_REQUESTS_PER_ORG=-5\n", "FREE_REQUESTS_PER_ORG"},
        {"FIXED_MONTHLY_COST=-3000\n", "FIXED_MONTHLY_COST"},
        {"FIXED_SHARE_PERCENT=150\n", "FIXED_SHARE_PERCENT"},
        {"STEWARDSHIP_MARGIN_PERCENT=12.345\n", "STEWARDSHIP_MARGIN_PERCENT"},
        {"SPONSORSHIP_TIERS=500,100\n", "SPONSORSHIP_TIERS"},
        {"SPONSORSHIP_TIERS=100,0\n", "SPONSORSHIP_TIERS"},
        {"ASK_MIN_COST=1,000\n", "ASK_MIN_COST"},
        {"ASK_MIN_SHARE_PERCENT=x\n", "ASK_MIN_SHARE_PERCENT"},
        {"ORG_FLOOR_MONTHLY=-1\n", "ORG_FLOOR_MONTHLY"},
        {"REDUNDANCY_RATIO=1.5\n", "REDUNDANCY_RATIO"},
        {"TOP_REPOSITORIES=0\n", "TOP_REPOSITORIES"},
        {"CURRENCY=dollars\n", "CURRENCY"},
        {"EGRESS_PRICE=0.1\n", "EGRESS_PRICE"},
        {"just words\n", "KEY=value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bill_model m;
        char err[512];
        cr_assert_eq(parse_model(cases[i].text, &m, err, sizeof err), CM_INVALID, "%s",
                     cases[i].text);
        cr_assert(strstr(err, cases[i].field) != NULL, "%s -> %s", cases[i].text, err);
    }
}

Test(billing_model, a_model_file_overrides_defaults_and_survives_a_json_round_trip)
{
    struct bill_model m, back;
    char err[512];
    cr_assert_eq(parse_model("# operator prices\nCURRENCY=EUR\nEGRESS_PER_GB=1TB:0.1,*:0.05\n"
                             "FREE_BYTES_PER_ORG=500GB\nFIXED_MONTHLY_COST=3000\n"
                             "FIXED_SHARE_PERCENT=50\nORG_FLOOR_MONTHLY=1000\n",
                             &m, err, sizeof err),
                 CM_OK, "%s", err);
    cr_assert_str_eq(m.currency, "EUR");
    cr_assert_eq(m.n_tiers, 2);
    cr_assert_eq(m.tier_upto[0], 1000000000000ull);
    cr_assert_eq(m.tier_price[1], 50000);
    cr_assert_eq(m.free_bytes, 500000000000ull);
    cr_assert_eq(m.free_requests, 10000000); /* default kept */
    cr_assert_eq(m.fixed_share_bp, 5000);
    cr_assert_eq(m.org_floor, 1000000000);
    json_t *j = bill_model_to_json(&m);
    cr_assert_eq(bill_model_from_json(j, &back, err, sizeof err), CM_OK, "%s", err);
    json_t *j2 = bill_model_to_json(&back);
    cr_assert(json_equal(j, j2));
    json_decref(j);
    json_decref(j2);
}

/* ---- a seeded month ---------------------------------------------------------------------- */

/* October 2026, worked out by hand (SI units, default list prices, FIXED_MONTHLY_COST=3000
 * with FIXED_SHARE_PERCENT=50):
 *   consumer            class        bytes                 requests
 *   acme                commercial   120 TB (20 TB anon.)  40,000,000
 *   bigco               commercial    40 TB (1 TB anon.)    8,000,000 (5,000 refused)
 *   smallco             commercial   0.5 TB                 1,000,000
 *   mystery             unknown       30 TB                 1,000,000
 *   tinyunk             unknown        1 GB                     1,000
 *   opensci             nonprofit      5 TB                 2,000,000
 *   uni                 academic       3 TB                 1,000,000
 *   jdoe                individual   0.1 TB                    10,000
 *   203.0.113.0/24      (unmapped)   1.3 TB + 123,456,789 B   500,000
 *   2001:db8:1::/48     (unmapped)   0.099 TB                   9,000
 *   total                            200 TB + 123,456,789 B  53,520,000
 * Egress $12,050.004938, requests $40.14, fixed $1,500: period $13,590.144938. */
static const char SEED[] =
    "SELECT hm_usage_partition('2026-09-15Z'), hm_usage_partition('2026-10-15Z');"
    "INSERT INTO orgs (id, slug, name, class) VALUES (1, 'acme', 'Acme Cloud', 'commercial'),"
    " (2, 'bigco', 'BigCo <Ltd> & \"Sons\"', 'commercial'), (3, 'smallco', 'SmallCo', 'commercial'),"
    " (4, 'mystery', 'Mystery Labs', 'unknown'), (5, 'tinyunk', 'Tiny', 'unknown'),"
    " (6, 'opensci', 'Open Science Foundation', 'nonprofit'), (7, 'uni', 'State University',"
    " 'academic'), (8, 'jdoe', 'J. Doe', 'individual');"
    "SELECT setval('orgs_id_seq', 8);"
    /* Most specific range wins: the /24 belongs to acme, the rest of the /16 to bigco. */
    "INSERT INTO org_networks (org_id, network) VALUES (1, '198.51.100.0/24'),"
    " (2, '198.51.0.0/16');"
    "INSERT INTO rollup_cursor (hour) VALUES ('2026-10-20T00:00Z');"
    /* October has closed (its snapshots are final); September, oddly, has not. */
    "INSERT INTO closed_months (month) VALUES ('2026-10-01Z');"
    "INSERT INTO rollup_dirty (hour) VALUES ('2026-10-10T07:00Z');"
    "INSERT INTO usage_hourly (bucket, org_id, key_id, network, repo, method, status_class,"
    " refused_by, requests, bytes) VALUES"
    " ('2026-09-15T10:00Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 30000000, 100000000000000),"
    " ('2026-09-15T10:00Z', 2, 21, NULL, 'big/data', 'GET', 2, '', 9000000, 50000000000000),"
    " ('2026-09-15T10:00Z', 6, 61, NULL, 'sci/atlas', 'GET', 2, '', 2000000, 5000000000000),"
    " ('2026-09-15T10:00Z', NULL, NULL, '203.0.113.0/24', 'acme/llm', 'GET', 2, '', 1000, 1000000000000),"
    " ('2026-10-05T10:00Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 15000000, 60000000000000),"
    " ('2026-10-12T14:00Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 10000000, 25000000000000),"
    " ('2026-10-08T09:00Z', 2, 21, NULL, 'big/data', 'GET', 2, '', 7000000, 38000000000000),"
    " ('2026-10-08T09:00Z', 2, 21, NULL, 'big/data', 'GET', 4, 'requests', 5000, 0),"
    " ('2026-10-09T11:00Z', NULL, NULL, '198.51.7.0/24', 'big/data', 'GET', 2, '', 995000, 1000000000000),"
    " ('2026-10-03T08:00Z', 3, 31, NULL, 'small/x', 'GET', 2, '', 1000000, 500000000000),"
    /* A stale hourly row of a dirty hour: its minute rows count instead. */
    " ('2026-10-10T07:00Z', 4, 41, NULL, 'mys/model', 'GET', 2, '', 900000, 29000000000000),"
    " ('2026-10-02T12:00Z', 6, 61, NULL, 'sci/atlas', 'GET', 2, '', 2000000, 5000000000000),"
    " ('2026-10-04T12:00Z', 7, 71, NULL, 'uni/corpus', 'GET', 2, '', 1000000, 3000000000000),"
    " ('2026-10-06T12:00Z', NULL, NULL, '203.0.113.0/24', 'acme/llm', 'GET', 2, '', 500000, 1300123456789);"
    "INSERT INTO usage_minute (bucket, org_id, key_id, network, repo, method, status_class,"
    " refused_by, requests, bytes) VALUES"
    /* Minute rows of a rolled-up hour: already in usage_hourly, never counted twice. */
    " ('2026-10-12T14:07Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 10000000, 25000000000000),"
    " ('2026-10-10T07:05Z', 4, 41, NULL, 'mys/model', 'GET', 2, '', 600000, 20000000000000),"
    " ('2026-10-10T07:45Z', 4, 41, NULL, 'mys/model', 'GET', 2, '', 400000, 10000000000000),"
    " ('2026-10-25T08:30Z', 1, 11, NULL, 'acme/tokenizer', 'GET', 2, '', 5000000, 15000000000000),"
    " ('2026-10-26T09:00Z', NULL, NULL, '198.51.100.0/24', 'acme/llm', 'GET', 2, '', 10000000, 20000000000000),"
    " ('2026-10-28T09:00Z', 5, 51, NULL, 'tiny/t', 'GET', 2, '', 1000, 1000000000),"
    " ('2026-10-21T09:00Z', 8, 81, NULL, 'jd/notes', 'GET', 2, '', 10000, 100000000000),"
    " ('2026-10-22T09:00Z', NULL, NULL, '2001:db8:1::/48', 'uni/corpus', 'GET', 2, '', 9000, 99000000000);"
    /* A correction for the closed month: +1 TB for bigco. */
    "INSERT INTO usage_adjustments (bucket, org_id, repo, requests, bytes, reason, author)"
    " VALUES ('2026-10-15T00:00Z', 2, 'big/data', 0, 1000000000000, 'late batch', 'ops');"
    /* Objects: acme pulls a 10 GB file 200 times a day for 30 days; a tokenizer twice. */
    "INSERT INTO usage_objects_daily (day, org_id, repo, etag, requests, bytes)"
    " SELECT d, 1, 'acme/llm', 'e1', 200, 2000000000000 FROM generate_series("
    " '2026-10-01Z'::timestamptz, '2026-10-30Z', '1 day') d;"
    "INSERT INTO usage_objects_daily (day, org_id, repo, etag, requests, bytes) VALUES"
    " ('2026-10-25Z', 1, 'acme/tokenizer', 't1', 3, 13000000000),"
    " ('2026-10-26Z', 1, 'acme/tokenizer', 't1', 0, 2000000000),"
    " ('2026-10-08Z', 2, 'big/data', 'b1', 4, 100000000000),"
    " ('2026-10-08Z', NULL, 'acme/llm', 'e1', 50, 500000000000);";

static const char TEST_MODEL[] = "FIXED_MONTHLY_COST=3000\nFIXED_SHARE_PERCENT=50\n";

static char db_url[512], db_env[600], model_path[200], work[128];

static void seed(void)
{
    th_db_new(db_url, sizeof db_url);
    snprintf(db_env, sizeof db_env, "HUBMETER_DATABASE_URL=%s", db_url);
    PGconn *db = th_db_connect(db_url);
    PGresult *res = PQexec(db, SEED);
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK,
              "seed: %s", PQerrorMessage(db));
    PQclear(res);
    PQfinish(db);
    snprintf(work, sizeof work, "/tmp/hm-billing-%d", (int)getpid());
    mkdir(work, 0755);
    snprintf(model_path, sizeof model_path, "%s/test.model", work);
    write_text(model_path, TEST_MODEL);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the suite's scratch folder (reports, models, Chromium's profile). */
static void scrub(void)
{
    if (work[0] != '\0')
        nftw(work, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cli(struct th_run *r, const char *const *args)
{
    const char *env[] = {db_env, NULL};
    th_hubmeter(r, env, args);
}

/* Runs `report funding` with extra args and returns the JSON document. */
static json_t *report_json(const char *period, const char *model, const char *extra)
{
    struct th_run r;
    const char *args[12] = {"report", "funding", "--period", period, "--format", "json"};
    int n = 6;
    if (model != NULL) {
        args[n++] = "--cost-model";
        args[n++] = model;
    }
    if (extra != NULL)
        args[n++] = extra;
    args[n] = NULL;
    cli(&r, args);
    cr_assert_eq(r.status, 0, "report failed: %s", r.err);
    json_error_t je;
    json_t *doc = json_loads(r.out, 0, &je);
    cr_assert(doc != NULL, "not JSON (%s): %.300s", je.text, r.out);
    return doc;
}

static const json_t *consumer(const json_t *doc, const char *name)
{
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(doc, "consumers"), i, c)
        if (strcmp(json_string_value(json_object_get(c, "consumer")), name) == 0)
            return c;
    cr_assert_fail("no consumer %s in the report", name);
    return NULL;
}

static long long jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "%s is not an integer", key);
    return (long long)json_integer_value(v);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert(s != NULL, "%s is not a string", key);
    return s;
}

/* Expected per consumer, worked out with exact fractions (largest remainder, consumers in
 * the order networks, then orgs by id); the allowance is the org's attributed egress cost
 * × min(1 TB, bytes) / bytes plus its request cost × min(10M, requests) / requests; the ask
 * is (cost − allowance) + 20 % rounded up, then up to the next sponsorship tier. */
static const struct expect {
    const char *name, *kind, *status;
    long long bytes, requests, egress, req, fixed, cost, allowance, ask, share_bp;
} EXPECT[] = {
    {"acme", "org", "ask", 120 * TB, 40000000, 7229998500, 30000000, 899999444, 8159997944,
     67749988, 10000000000, 6004},
    {"bigco", "org", "ask", 40 * TB, 8000000, 2409999500, 6000000, 299999815, 2715999315,
     66249988, 5000000000, 1999},
    {"mystery", "org", "review", 30 * TB, 1000000, 1807499625, 750000, 224999861, 2033249486,
     60999988, 2500000000, 1496},
    {"opensci", "org", "exempt", 5 * TB, 2000000, 301249937, 1500000, 37499977, 340249914,
     61749987, 0, 250},
    {"uni", "org", "exempt", 3 * TB, 1000000, 180749962, 750000, 22499986, 203999948, 60999987,
     0, 150},
    {"203.0.113.0/24", "network", "unattributed", 1300123456789, 500000, 78332422, 375000,
     9750920, 88458342, 0, 0, 65},
    {"smallco", "org", "below_threshold", TB / 2, 1000000, 30124994, 750000, 3749998, 34624992,
     30874994, 0, 25},
    {"jdoe", "org", "exempt", TB / 10, 10000, 6024999, 7500, 749999, 6782498, 6032499, 0, 5},
    {"2001:db8:1::/48", "network", "unattributed", 99 * GB, 9000, 5964749, 6750, 742500,
     6713999, 0, 0, 5},
    {"tinyunk", "org", "below_threshold", GB, 1000, 60250, 750, 7500, 68500, 61000, 0, 0},
};
#define N_EXPECT (sizeof EXPECT / sizeof EXPECT[0])

Test(billing, a_seeded_month_is_attributed_to_the_micro_unit, .init = seed, .fini = scrub)
{
    json_t *doc = report_json("2026-10", model_path, NULL);
    const json_t *t = json_object_get(doc, "totals");
    cr_assert_eq(jint(t, "bytes"), 200 * TB + 123456789);
    cr_assert_eq(jint(t, "requests"), 53520000);
    cr_assert_eq(jint(t, "refused"), 5000);
    cr_assert_eq(jint(t, "egress_cost_micros"), 12050004938ll);
    cr_assert_eq(jint(t, "request_cost_micros"), 40140000);
    cr_assert_eq(jint(t, "fixed_cost_micros"), 1500000000);
    cr_assert_eq(jint(t, "fixed_cost_unattributed_micros"), 1500000000);
    cr_assert_eq(jint(t, "period_cost_micros"), 13590144938ll);
    cr_assert_eq(jint(t, "commercial_cost_micros"), 10910622251ll);
    cr_assert_eq(jint(t, "commercial_share_bp"), 8028);
    cr_assert_eq(jint(t, "asks_micros"), 17500000000ll);
    cr_assert_eq(jint(t, "asked_orgs"), 3);
    cr_assert(json_is_false(json_object_get(doc, "month_to_date")));
    cr_assert(strstr(jstr(doc, "basis"), "List-price estimate") != NULL);

    const json_t *list = json_object_get(doc, "consumers");
    cr_assert_eq(json_array_size(list), N_EXPECT, "mapped networks merge into their orgs");
    long long sum = 0;
    for (size_t i = 0; i < N_EXPECT; i++) {
        const struct expect *e = &EXPECT[i];
        const json_t *c = json_array_get(list, i);
        cr_assert_str_eq(jstr(c, "consumer"), e->name, "rank %zu", i + 1);
        cr_assert_eq(jint(c, "rank"), (long long)i + 1);
        cr_assert_str_eq(jstr(c, "kind"), e->kind);
        cr_assert_str_eq(jstr(c, "ask_status"), e->status, "%s", e->name);
        cr_assert_eq(jint(c, "bytes"), e->bytes, "%s", e->name);
        cr_assert_eq(jint(c, "requests"), e->requests, "%s", e->name);
        cr_assert_eq(jint(c, "egress_cost_micros"), e->egress, "%s", e->name);
        cr_assert_eq(jint(c, "request_cost_micros"), e->req, "%s", e->name);
        cr_assert_eq(jint(c, "fixed_cost_micros"), e->fixed, "%s", e->name);
        cr_assert_eq(jint(c, "cost_micros"), e->cost, "%s", e->name);
        cr_assert_eq(jint(c, "allowance_micros"), e->allowance, "%s", e->name);
        cr_assert_eq(jint(c, "ask_micros"), e->ask, "%s", e->name);
        cr_assert_eq(jint(c, "cost_share_bp"), e->share_bp, "%s", e->name);
        sum += jint(c, "cost_micros");
    }
    cr_assert_eq(sum, 13590144938ll, "attributed costs sum to the period cost exactly");
    cr_assert(json_is_true(json_object_get(consumer(doc, "mystery"), "review")));
    cr_assert_str_eq(jstr(consumer(doc, "bigco"), "name"), "BigCo <Ltd> & \"Sons\"");
    json_decref(doc);
}

Test(billing, rows_carry_their_evidence, .init = seed, .fini = scrub)
{
    json_t *doc = report_json("2026-10", model_path, NULL);
    /* Trends: acme 100 → 120 TB, bigco 50 → 40 TB, opensci flat, the unmapped /24 1 TB →
     * 1.300123456789 TB (+30.01 %), mystery had nothing (null, shown as new). */
    cr_assert_eq(jint(consumer(doc, "acme"), "trend_percent"), 20);
    cr_assert_eq(jint(consumer(doc, "acme"), "previous_bytes"), 100 * TB);
    cr_assert_eq(jint(consumer(doc, "bigco"), "trend_percent"), -20);
    cr_assert_eq(jint(consumer(doc, "opensci"), "trend_percent"), 0);
    cr_assert_eq(jint(consumer(doc, "203.0.113.0/24"), "trend_percent"), 30);
    cr_assert(json_is_null(json_object_get(consumer(doc, "mystery"), "trend_percent")));
    /* 429 refusals and the busiest hour. */
    cr_assert_eq(jint(consumer(doc, "bigco"), "refused"), 5000);
    cr_assert_eq(jint(consumer(doc, "acme"), "refused"), 0);
    const json_t *peak = json_object_get(consumer(doc, "acme"), "peak");
    cr_assert_str_eq(jstr(peak, "hour"), "2026-10-05T10:00:00Z");
    cr_assert_eq(jint(peak, "bytes"), 60 * TB);
    cr_assert_eq(jint(peak, "requests"), 15000000);
    cr_assert_eq(jint(peak, "bytes_per_second"), 16666666666ll);
    /* The dirty hour is read by minute: 30 TB, not the stale 29 TB. */
    peak = json_object_get(consumer(doc, "mystery"), "peak");
    cr_assert_eq(jint(peak, "bytes"), 30 * TB);
    /* Top repositories, keyed and mapped anonymous traffic together. */
    const json_t *repos = json_object_get(consumer(doc, "acme"), "top_repositories");
    cr_assert_eq(json_array_size(repos), 2);
    cr_assert_str_eq(jstr(json_array_get(repos, 0), "repo"), "acme/llm");
    cr_assert_eq(jint(json_array_get(repos, 0), "bytes"), 105 * TB);
    cr_assert_str_eq(jstr(json_array_get(repos, 1), "repo"), "acme/tokenizer");
    /* Redundancy: 60.015 TB fetched of two objects whose sizes are 10 GB and 13 GB / 3
     * (4,333,333,333 B: the larger daily bytes per download): 4187.09×; a cache would
     * save acme's egress cost × (60.015 TB − 14.333333333 GB) / 120 TB. */
    const json_t *red = json_object_get(consumer(doc, "acme"), "redundancy");
    cr_assert_eq(jint(red, "bytes"), 60015000000000ll);
    cr_assert_eq(jint(red, "unique_bytes"), 14333333333ll);
    cr_assert_eq(jint(red, "ratio_x100"), 418709);
    cr_assert(json_is_true(json_object_get(red, "flagged")));
    cr_assert_eq(jint(red, "savings_micros"), 3615039416ll);
    red = json_object_get(consumer(doc, "bigco"), "redundancy");
    cr_assert_eq(jint(red, "ratio_x100"), 400);
    cr_assert(json_is_false(json_object_get(red, "flagged")));
    cr_assert(json_is_null(json_object_get(consumer(doc, "opensci"), "redundancy")));
    json_decref(doc);
}

Test(billing, thresholds_floors_and_margins_change_only_the_ask, .init = seed, .fini = scrub)
{
    char path[200];
    snprintf(path, sizeof path, "%s/strict.model", work);
    /* Only a consumer with ≥ 50 % of the cost (or ≥ $10,000) is asked; a $12,000 floor;
     * no margin. Attribution is unchanged. */
    write_text(path, "FIXED_MONTHLY_COST=3000\nFIXED_SHARE_PERCENT=50\nASK_MIN_COST=10000\n"
                     "ASK_MIN_SHARE_PERCENT=50\nORG_FLOOR_MONTHLY=12000\n"
                     "STEWARDSHIP_MARGIN_PERCENT=0\nFREE_BYTES_PER_ORG=0\n");
    json_t *doc = report_json("2026-10", path, NULL);
    const json_t *acme = consumer(doc, "acme");
    cr_assert_eq(jint(acme, "cost_micros"), 8159997944ll);
    cr_assert_str_eq(jstr(acme, "ask_status"), "ask");
    /* max(cost − request allowance, floor) = $12,000 → tier $25,000. */
    cr_assert_eq(jint(acme, "allowance_micros"), 7500000);
    cr_assert_eq(jint(acme, "ask_micros"), 25000000000ll);
    cr_assert_str_eq(jstr(consumer(doc, "bigco"), "ask_status"), "below_threshold");
    cr_assert_eq(jint(consumer(doc, "bigco"), "cost_micros"), 2715999315ll);
    cr_assert_eq(jint(json_object_get(doc, "totals"), "period_cost_micros"), 13590144938ll);
    json_decref(doc);
}

Test(billing, free_allowances_cover_small_orgs_even_when_every_org_is_asked, .init = seed,
     .fini = scrub)
{
    char path[200];
    snprintf(path, sizeof path, "%s/everyone.model", work);
    /* No thresholds, no fixed cost: smallco (0.5 TB, 1 M requests) and tinyunk (1 GB)
     * stay within their free 1 TB and 10 M requests, so their asks are 0 although their
     * attributed costs are not. */
    write_text(path, "ASK_MIN_COST=0\nASK_MIN_SHARE_PERCENT=0\n");
    json_t *doc = report_json("2026-10", path, NULL);
    cr_assert_eq(jint(json_object_get(doc, "totals"), "period_cost_micros"), 12090144938ll);
    const json_t *small = consumer(doc, "smallco"), *tiny = consumer(doc, "tinyunk");
    cr_assert_eq(jint(small, "cost_micros"), 30874994);
    cr_assert_eq(jint(small, "allowance_micros"), 30874994);
    cr_assert_eq(jint(small, "ask_micros"), 0);
    cr_assert_str_eq(jstr(small, "ask_status"), "within_allowance");
    cr_assert_eq(jint(tiny, "cost_micros"), 61000);
    cr_assert_str_eq(jstr(tiny, "ask_status"), "within_allowance");
    cr_assert_str_eq(jstr(consumer(doc, "jdoe"), "ask_status"), "exempt");
    cr_assert_str_eq(jstr(consumer(doc, "acme"), "ask_status"), "ask");
    json_decref(doc);
}

/* Field of a CSV line (no quoted commas in the fields read here). */
static void csv_col(const char *line, int col, char *out, size_t len)
{
    for (int i = 0; i < col && line != NULL; i++)
        line = strchr(line, ',') ? strchr(line, ',') + 1 : NULL;
    cr_assert(line != NULL);
    size_t n = strcspn(line, ",\r\n");
    snprintf(out, len, "%.*s", (int)n, line);
}

Test(billing, json_csv_table_and_html_show_the_same_figures, .init = seed, .fini = scrub)
{
    json_t *doc = report_json("2026-10", model_path, NULL);
    struct th_run r;
    char csv_path[200], html_path[200];
    snprintf(csv_path, sizeof csv_path, "%s/report.csv", work);
    snprintf(html_path, sizeof html_path, "%s/report.html", work);
    cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", "--format", "csv",
                             "--out", csv_path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", "--format", "html",
                             "--out", html_path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *table = r.out;
    cr_assert(strstr(table, "List-price estimate") != NULL);
    cr_assert(strstr(table, "$13,590.14") != NULL, "%s", table);

    FILE *f = fopen(csv_path, "r");
    cr_assert(f != NULL);
    char line[2048], v[64], want[64];
    cr_assert(fgets(line, sizeof line, f) != NULL);
    cr_assert(strncmp(line, "period,rank,consumer,", 21) == 0);
    size_t rows = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        csv_col(line, 2, v, sizeof v);
        if (strcmp(v, "TOTAL") == 0) {
            csv_col(line, 14, v, sizeof v);
            cr_assert_str_eq(v, "13590.144938");
            continue;
        }
        const json_t *c = json_array_get(json_object_get(doc, "consumers"), rows++);
        cr_assert_str_eq(v, jstr(c, "consumer"));
        csv_col(line, 5, v, sizeof v);
        snprintf(want, sizeof want, "%lld", jint(c, "bytes"));
        cr_assert_str_eq(v, want);
        csv_col(line, 14, v, sizeof v);
        bill_format_micros(jint(c, "cost_micros"), want, sizeof want);
        cr_assert_str_eq(v, want, "cost of %s", jstr(c, "consumer"));
        csv_col(line, 16, v, sizeof v);
        bill_format_micros(jint(c, "ask_micros"), want, sizeof want);
        cr_assert_str_eq(v, want, "ask of %s", jstr(c, "consumer"));
        csv_col(line, 17, v, sizeof v);
        cr_assert_str_eq(v, jstr(c, "ask_status"));
        /* The table and the HTML show the same cost to the cent. */
        bill_format_money("USD", jint(c, "cost_micros"), want, sizeof want);
        cr_assert(strstr(table, want) != NULL, "table lacks %s", want);
        cr_assert(th_file_contains(html_path, want), "html lacks %s", want);
    }
    fclose(f);
    cr_assert_eq(rows, N_EXPECT);
    cr_assert(th_file_contains(html_path, "$13,590.14"));
    cr_assert(th_file_contains(html_path, "$10,000.00"), "acme's ask");
    cr_assert(th_file_contains(html_path, "BigCo &lt;Ltd&gt; &amp; &quot;Sons&quot;"),
              "names are escaped");
    cr_assert(!th_file_contains(html_path, "<Ltd>"));
    cr_assert(th_file_contains(html_path, "<svg"));
    cr_assert(!th_file_contains(html_path, "src=\"http"), "no external assets");
    cr_assert(!th_file_contains(html_path, "href=\"http"), "no external assets");
    cr_assert(th_file_contains(html_path, "caching proxy"), "acme's redundancy advice");
    cr_assert(th_file_contains(html_path, "For review"), "mystery's letter is flagged");
    json_decref(doc);
}

Test(billing, a_closed_month_keeps_its_figures_until_regenerated, .init = seed, .fini = scrub)
{
    json_t *first = report_json("2026-10", model_path, NULL);
    const json_t *snap = json_object_get(first, "snapshot");
    cr_assert(json_is_false(json_object_get(snap, "reused")));
    cr_assert(json_is_true(json_object_get(first, "month_closed")));
    long long id = jint(snap, "id");
    /* A late correction arrives: the stored report does not move. */
    PGconn *db = th_db_connect(db_url);
    PQclear(PQexec(db, "INSERT INTO usage_adjustments (bucket, org_id, repo, requests, bytes,"
                       " reason, author) VALUES ('2026-10-20Z', 2, 'big/data', 0,"
                       " 10000000000000, 'late', 'ops')"));
    json_t *again = report_json("2026-10", NULL, NULL);
    cr_assert(json_is_true(json_object_get(json_object_get(again, "snapshot"), "reused")));
    cr_assert_eq(jint(json_object_get(again, "snapshot"), "id"), id);
    cr_assert(json_equal(json_object_get(first, "consumers"), json_object_get(again, "consumers")));
    /* Regenerated (with the stored cost model): the changes are listed. */
    json_t *regen = report_json("2026-10", NULL, "--regenerate");
    cr_assert_gt(jint(json_object_get(regen, "snapshot"), "id"), id);
    cr_assert_eq(jint(json_object_get(regen, "totals"), "bytes"), 210 * TB + 123456789);
    cr_assert_eq(jint(json_object_get(regen, "totals"), "fixed_cost_micros"), 1500000000,
                 "the stored model (fixed cost) was used");
    const json_t *ch = json_object_get(regen, "changes");
    cr_assert(json_is_false(json_object_get(ch, "unchanged")));
    cr_assert_eq(jint(ch, "previous_snapshot"), id);
    cr_assert_eq(json_array_size(json_object_get(ch, "cost_model")), 0);
    const json_t *bytes = json_object_get(json_object_get(ch, "totals"), "bytes");
    cr_assert_eq(jint(bytes, "before"), 200 * TB + 123456789);
    cr_assert_eq(jint(bytes, "after"), 210 * TB + 123456789);
    bool bigco = false;
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(ch, "consumers"), i, c)
        if (strcmp(jstr(c, "consumer"), "bigco") == 0) {
            bigco = true;
            cr_assert_eq(jint(json_object_get(c, "bytes"), "after"), 50 * TB);
        }
    cr_assert(bigco, "bigco's change is listed");
    /* Another cost model stores another snapshot that names the changed fields. */
    json_t *dflt;
    char path[200];
    snprintf(path, sizeof path, "%s/default.model", work);
    write_text(path, "# the defaults\n");
    dflt = report_json("2026-10", path, NULL);
    cr_assert_eq(jint(json_object_get(dflt, "totals"), "fixed_cost_micros"), 0);
    const json_t *fields = json_object_get(json_object_get(dflt, "changes"), "cost_model");
    cr_assert_eq(json_array_size(fields), 2);
    cr_assert_str_eq(json_string_value(json_array_get(fields, 0)), "fixed_monthly_cost_micros");
    cr_assert_str_eq(json_string_value(json_array_get(fields, 1)), "fixed_share_bp");
    char *n = th_db_value(db, "SELECT count(*)::text FROM funding_reports", 0, NULL);
    cr_assert_str_eq(n, "3");
    free(n);
    PQfinish(db);
    json_decref(first);
    json_decref(again);
    json_decref(regen);
    json_decref(dflt);
}

Test(billing, a_month_not_yet_closed_is_computed_again_on_every_run, .init = seed, .fini = scrub)
{
    json_t *first = report_json("2026-09", NULL, NULL);
    cr_assert(json_is_false(json_object_get(first, "month_closed")));
    cr_assert_eq(jint(json_object_get(first, "totals"), "bytes"), 156 * TB);
    json_t *second = report_json("2026-09", NULL, NULL);
    const json_t *snap = json_object_get(second, "snapshot");
    cr_assert(json_is_false(json_object_get(snap, "reused")));
    cr_assert_gt(jint(snap, "id"), jint(json_object_get(first, "snapshot"), "id"));
    const json_t *ch = json_object_get(second, "changes");
    cr_assert(json_is_true(json_object_get(ch, "unchanged")), "nothing moved in between");
    cr_assert_eq(json_array_size(json_object_get(ch, "consumers")), 0);
    json_decref(first);
    json_decref(second);
}

Test(billing, the_current_month_is_reported_month_to_date_with_a_projection, .init = seed, .fini = scrub)
{
    PGconn *db = th_db_connect(db_url);
    PGresult *res = PQexec(db,
                           "SELECT hm_usage_partition(now());"
                           "INSERT INTO usage_minute (bucket, org_id, key_id, network, repo,"
                           " method, status_class, refused_by, requests, bytes) VALUES"
                           " (date_trunc('minute', now()) - interval '1 minute', 1, 11, NULL,"
                           " 'acme/llm', 'GET', 2, '', 1000, 7000000000000)");
    cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(db));
    PQclear(res);
    PQfinish(db);
    char period[8], now[32];
    cm_time_format(cm_now_us() / 1000000, now, sizeof now);
    snprintf(period, sizeof period, "%.7s", now);
    json_t *doc = report_json(period, model_path, NULL);
    cr_assert(json_is_true(json_object_get(doc, "month_to_date")));
    const json_t *t = json_object_get(doc, "totals");
    cr_assert_eq(jint(t, "bytes"), 7 * TB);
    /* 7 TB at $0.085 + 1000 requests + the attributed fixed cost. */
    cr_assert_eq(jint(t, "period_cost_micros"), 595000000 + 750 + 1500000000);
    int64_t lo, hi, as_of;
    cr_assert_eq(cm_time_parse(jstr(doc, "from"), strlen(jstr(doc, "from")), &lo), CM_OK);
    cr_assert_eq(cm_time_parse(jstr(doc, "to"), strlen(jstr(doc, "to")), &hi), CM_OK);
    cr_assert_eq(cm_time_parse(jstr(doc, "as_of"), strlen(jstr(doc, "as_of")), &as_of), CM_OK);
    cr_assert(as_of > lo && as_of <= hi);
    __int128 n = (__int128)jint(t, "period_cost_micros") * (hi - lo), d = as_of - lo;
    long long want = (long long)((n + d / 2) / d);
    cr_assert_eq(jint(json_object_get(doc, "projection"), "period_cost_micros"), want);
    /* A month to date is computed afresh each time (and stored). */
    json_t *again = report_json(period, model_path, NULL);
    cr_assert(json_is_false(json_object_get(json_object_get(again, "snapshot"), "reused")));
    json_decref(again);
    json_decref(doc);
}

Test(billing, bad_periods_and_cost_models_are_refused_and_store_nothing, .init = seed, .fini = scrub)
{
    struct th_run r;
    char neg[200], unsorted[200], junk[200];
    snprintf(neg, sizeof neg, "%s/neg.model", work);
    snprintf(unsorted, sizeof unsorted, "%s/unsorted.model", work);
    snprintf(junk, sizeof junk, "%s/junk.model", work);
    write_text(neg, "REQUESTS_PER_MILLION=-0.75\n");
    write_text(unsorted, "EGRESS_PER_GB=50TB:0.08,10TB:0.085,*:0.04\n");
    write_text(junk, "{\"egress\": 0.085}\n");
    static const struct { const char *period, *model, *message; int status; } cases[] = {
        {"2099-01", NULL, "in the future", 2},
        {"2020-01", NULL, "no usage is recorded for 2020-01", 1},
        {"2026-13", NULL, "not a month YYYY-MM", 2},
        {"october", NULL, "not a month YYYY-MM", 2},
        {"2026-10", "NEG", "REQUESTS_PER_MILLION", 2},
        {"2026-10", "UNSORTED", "EGRESS_PER_GB: tier bounds must be in ascending order", 2},
        {"2026-10", "JUNK", "expected KEY=value", 2},
        {"2026-10", "/nonexistent/model", "cannot read cost model", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *model = cases[i].model == NULL                    ? NULL
                            : strcmp(cases[i].model, "NEG") == 0      ? neg
                            : strcmp(cases[i].model, "UNSORTED") == 0 ? unsorted
                            : strcmp(cases[i].model, "JUNK") == 0     ? junk
                                                                      : cases[i].model;
        const char *args[] = {"report", "funding", "--period", cases[i].period,
                              model ? "--cost-model" : NULL, model, NULL};
        cli(&r, args);
        cr_assert_eq(r.status, cases[i].status, "%s: %s", cases[i].period, r.err);
        cr_assert(strstr(r.err, cases[i].message) != NULL, "%s", r.err);
        cr_assert(strchr(r.err, '\n') == strrchr(r.err, '\n'), "one line: %s", r.err);
    }
    cli(&r, (const char *[]){"report", "funding", NULL});
    cr_assert_eq(r.status, 2);
    cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", "--format", "pdf", NULL});
    cr_assert_eq(r.status, 2);
    cli(&r, (const char *[]){"report", "funding", "--help", NULL});
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "--cost-model") != NULL);
    PGconn *db = th_db_connect(db_url);
    char *n = th_db_value(db, "SELECT count(*)::text FROM funding_reports", 0, NULL);
    cr_assert_str_eq(n, "0", "refused requests store no snapshot");
    free(n);
    /* The admin API's entry point: stable error codes, CSV with its content type. */
    struct bill_request req = {.period = "2099-01"};
    struct bill_output out;
    const char *code;
    char err[256];
    cr_assert_eq(bill_report_generate(db, &req, BILL_CSV, &out, &code, err, sizeof err),
                 CM_INVALID);
    cr_assert_str_eq(code, "future_period");
    cm_copy(req.period, sizeof req.period, "2019-12");
    cr_assert_eq(bill_report_generate(db, &req, BILL_JSON, &out, &code, err, sizeof err),
                 CM_NOTFOUND);
    cr_assert_str_eq(code, "unknown_period");
    cm_copy(req.period, sizeof req.period, "2026-10");
    cr_assert_eq(bill_report_generate(db, &req, BILL_CSV, &out, &code, err, sizeof err), CM_OK,
                 "%s", err);
    cr_assert_str_eq(out.content_type, "text/csv; charset=utf-8");
    cr_assert(strstr(out.body, "\r\n2026-10,1,acme,org,commercial,") != NULL, "%s", out.body);
    bill_output_free(&out);
    PQfinish(db);
}

/* Runs argv with a time limit; returns the exit status (-1 when killed). */
static int run_bounded(char *const argv[], const char *out_path, int seconds)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *o = freopen(out_path, "w", stdout);
        FILE *e = freopen("/dev/null", "w", stderr);
        (void)o;
        (void)e;
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < seconds * 10; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        usleep(100 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

Test(billing, the_html_report_renders_in_headless_chromium, .init = seed, .fini = scrub, .timeout = 180)
{
    cr_assert(access("/usr/bin/chromium", X_OK) == 0,
              "chromium is not installed (scripts/deps.sh installs it)");
    struct th_run r;
    char html[200], blank[200], png[200], blank_png[200], url[260], blank_url[260], dom[200],
        shot[260], blank_shot[260], profile[260], profile_arg[300];
    snprintf(html, sizeof html, "%s/print.html", work);
    snprintf(blank, sizeof blank, "%s/blank.html", work);
    snprintf(png, sizeof png, "%s/report.png", work);
    snprintf(blank_png, sizeof blank_png, "%s/blank.png", work);
    snprintf(dom, sizeof dom, "%s/dom.txt", work);
    snprintf(profile, sizeof profile, "%s/chromium-profile", work);
    snprintf(profile_arg, sizeof profile_arg, "--user-data-dir=%s", profile);
    cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", "--format", "html",
                             "--cost-model", model_path, "--out", html, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    write_text(blank, "<!DOCTYPE html><html><body></body></html>\n");
    snprintf(url, sizeof url, "file://%s", html);
    snprintf(blank_url, sizeof blank_url, "file://%s", blank);
    snprintf(shot, sizeof shot, "--screenshot=%s", png);
    snprintf(blank_shot, sizeof blank_shot, "--screenshot=%s", blank_png);
    char *dump[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", profile_arg, "--dump-dom", url, NULL};
    cr_assert_eq(run_bounded(dump, dom, 60), 0, "chromium --dump-dom failed or hung");
    cr_assert(th_file_contains(dom, "Funding report 2026-10"));
    cr_assert(th_file_contains(dom, "$13,590.14"));
    cr_assert(th_file_contains(dom, "List-price estimate"));
    cr_assert(th_file_contains(dom, "Dear Acme Cloud team"));
    char *shoot[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", profile_arg, "--hide-scrollbars",
                     "--window-size=1100,1400", shot, url, NULL};
    char *shoot_blank[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", profile_arg, "--hide-scrollbars",
                           "--window-size=1100,1400", blank_shot, blank_url, NULL};
    cr_assert_eq(run_bounded(shoot, "/dev/null", 60), 0, "chromium --screenshot failed or hung");
    cr_assert_eq(run_bounded(shoot_blank, "/dev/null", 60), 0);
    long size = file_size(png), blank_size = file_size(blank_png);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8] = {0};
    FILE *f = fopen(png, "rb");
    cr_assert(f != NULL && fread(head, 1, 8, f) == 8);
    fclose(f);
    cr_assert(memcmp(head, sig, 8) == 0, "a PNG");
    /* A blank page of the same size compresses to a few kB; text, a table and a chart
     * make the screenshot many times larger. */
    cr_assert_gt(size, 10 * blank_size, "report %ld bytes, blank page %ld", size, blank_size);
}
