/*
 * Funding reports against the real PostgreSQL: the seeded month (tests/billing_fixture.c:
 * rolled-up hours, minute rows past the rollup cursor, a dirty hour, a correction, keyed and
 * anonymous traffic from mapped and unmapped networks, the month before) and every figure
 * of the report checked exactly against values worked out independently; thresholds,
 * allowances, snapshots, open months, the month to date and the CLI's errors.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "billing/billing.h"
#include "tests/billing_fixture.h"
#include "tests/harness.h"

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

Test(billing, a_seeded_month_is_attributed_to_the_micro_unit, .init = bf_seed, .fini = bf_scrub)
{
    json_t *doc = bf_report("2026-10", bf_model_path, NULL);
    const json_t *t = json_object_get(doc, "totals");
    cr_assert_eq(bf_jint(t, "bytes"), 200 * TB + 123456789);
    cr_assert_eq(bf_jint(t, "requests"), 53520000);
    cr_assert_eq(bf_jint(t, "refused"), 5000);
    cr_assert_eq(bf_jint(t, "egress_cost_micros"), 12050004938ll);
    cr_assert_eq(bf_jint(t, "request_cost_micros"), 40140000);
    cr_assert_eq(bf_jint(t, "fixed_cost_micros"), 1500000000);
    cr_assert_eq(bf_jint(t, "fixed_cost_unattributed_micros"), 1500000000);
    cr_assert_eq(bf_jint(t, "period_cost_micros"), 13590144938ll);
    cr_assert_eq(bf_jint(t, "commercial_cost_micros"), 10910622251ll);
    cr_assert_eq(bf_jint(t, "commercial_share_bp"), 8028);
    cr_assert_eq(bf_jint(t, "asks_micros"), 15000000000ll, "acme $10,000 + bigco $5,000");
    cr_assert_eq(bf_jint(t, "asked_orgs"), 2);
    cr_assert_eq(bf_jint(t, "review_asks_micros"), 2500000000ll, "mystery, to classify");
    cr_assert_eq(bf_jint(t, "review_orgs"), 1);
    cr_assert(json_is_false(json_object_get(doc, "month_to_date")));
    cr_assert(strstr(bf_jstr(doc, "basis"), "List-price estimate") != NULL);

    const json_t *list = json_object_get(doc, "consumers");
    cr_assert_eq(json_array_size(list), N_EXPECT, "mapped networks merge into their orgs");
    long long sum = 0;
    for (size_t i = 0; i < N_EXPECT; i++) {
        const struct expect *e = &EXPECT[i];
        const json_t *c = json_array_get(list, i);
        cr_assert_str_eq(bf_jstr(c, "consumer"), e->name, "rank %zu", i + 1);
        cr_assert_eq(bf_jint(c, "rank"), (long long)i + 1);
        cr_assert_str_eq(bf_jstr(c, "kind"), e->kind);
        cr_assert_str_eq(bf_jstr(c, "ask_status"), e->status, "%s", e->name);
        cr_assert_eq(bf_jint(c, "bytes"), e->bytes, "%s", e->name);
        cr_assert_eq(bf_jint(c, "requests"), e->requests, "%s", e->name);
        cr_assert_eq(bf_jint(c, "egress_cost_micros"), e->egress, "%s", e->name);
        cr_assert_eq(bf_jint(c, "request_cost_micros"), e->req, "%s", e->name);
        cr_assert_eq(bf_jint(c, "fixed_cost_micros"), e->fixed, "%s", e->name);
        cr_assert_eq(bf_jint(c, "cost_micros"), e->cost, "%s", e->name);
        cr_assert_eq(bf_jint(c, "allowance_micros"), e->allowance, "%s", e->name);
        cr_assert_eq(bf_jint(c, "ask_micros"), e->ask, "%s", e->name);
        cr_assert_eq(bf_jint(c, "cost_share_bp"), e->share_bp, "%s", e->name);
        sum += bf_jint(c, "cost_micros");
    }
    cr_assert_eq(sum, 13590144938ll, "attributed costs sum to the period cost exactly");
    cr_assert(json_is_true(json_object_get(bf_consumer(doc, "mystery"), "review")));
    cr_assert_str_eq(bf_jstr(bf_consumer(doc, "bigco"), "name"), "BigCo <Ltd> & \"Sons\"");
    json_decref(doc);
}

Test(billing, rows_carry_their_evidence, .init = bf_seed, .fini = bf_scrub)
{
    json_t *doc = bf_report("2026-10", bf_model_path, NULL);
    /* Trends: acme 100 → 120 TB, bigco 50 → 40 TB, opensci flat, the unmapped /24 1 TB →
     * 1.300123456789 TB (+30.01 %), mystery had nothing (null, shown as new). */
    cr_assert_eq(bf_jint(bf_consumer(doc, "acme"), "trend_percent"), 20);
    cr_assert_eq(bf_jint(bf_consumer(doc, "acme"), "previous_bytes"), 100 * TB);
    cr_assert_eq(bf_jint(bf_consumer(doc, "bigco"), "trend_percent"), -20);
    cr_assert_eq(bf_jint(bf_consumer(doc, "opensci"), "trend_percent"), 0);
    cr_assert_eq(bf_jint(bf_consumer(doc, "203.0.113.0/24"), "trend_percent"), 30);
    cr_assert(json_is_null(json_object_get(bf_consumer(doc, "mystery"), "trend_percent")));
    /* 429 refusals and the busiest hour. */
    cr_assert_eq(bf_jint(bf_consumer(doc, "bigco"), "refused"), 5000);
    cr_assert_eq(bf_jint(bf_consumer(doc, "acme"), "refused"), 0);
    const json_t *peak = json_object_get(bf_consumer(doc, "acme"), "peak");
    cr_assert_str_eq(bf_jstr(peak, "hour"), "2026-10-05T10:00:00Z");
    cr_assert_eq(bf_jint(peak, "bytes"), 60 * TB);
    cr_assert_eq(bf_jint(peak, "requests"), 15000000);
    cr_assert_eq(bf_jint(peak, "bytes_per_second"), 16666666666ll);
    /* The dirty hour is read by minute: 30 TB, not the stale 29 TB. */
    peak = json_object_get(bf_consumer(doc, "mystery"), "peak");
    cr_assert_eq(bf_jint(peak, "bytes"), 30 * TB);
    /* Top repositories, keyed and mapped anonymous traffic together. */
    const json_t *repos = json_object_get(bf_consumer(doc, "acme"), "top_repositories");
    cr_assert_eq(json_array_size(repos), 2);
    cr_assert_str_eq(bf_jstr(json_array_get(repos, 0), "repo"), "acme/llm");
    cr_assert_eq(bf_jint(json_array_get(repos, 0), "bytes"), 105 * TB);
    cr_assert_str_eq(bf_jstr(json_array_get(repos, 1), "repo"), "acme/tokenizer");
    /* Redundancy: 60.015 TB fetched of two objects whose sizes are 10 GB and 13 GB / 3
     * (4,333,333,333 B: the larger daily bytes per download): 4187.09×; a cache would
     * save acme's egress cost × (60.015 TB − 14.333333333 GB) / 120 TB. */
    const json_t *red = json_object_get(bf_consumer(doc, "acme"), "redundancy");
    cr_assert_eq(bf_jint(red, "bytes"), 60015000000000ll);
    cr_assert_eq(bf_jint(red, "unique_bytes"), 14333333333ll);
    cr_assert_eq(bf_jint(red, "ratio_x100"), 418709);
    cr_assert(json_is_true(json_object_get(red, "flagged")));
    cr_assert_eq(bf_jint(red, "savings_micros"), 3615039416ll);
    red = json_object_get(bf_consumer(doc, "bigco"), "redundancy");
    cr_assert_eq(bf_jint(red, "ratio_x100"), 400);
    cr_assert(json_is_false(json_object_get(red, "flagged")));
    cr_assert(json_is_null(json_object_get(bf_consumer(doc, "opensci"), "redundancy")));
    json_decref(doc);
}

Test(billing, thresholds_floors_and_margins_change_only_the_ask, .init = bf_seed, .fini = bf_scrub)
{
    char path[200];
    snprintf(path, sizeof path, "%s/strict.model", bf_work);
    /* Only a consumer with ≥ 50 % of the cost (or ≥ $10,000) is asked; a $12,000 floor;
     * no margin. Attribution is unchanged. */
    bf_write_text(path, "FIXED_MONTHLY_COST=3000\nFIXED_SHARE_PERCENT=50\nASK_MIN_COST=10000\n"
                     "ASK_MIN_SHARE_PERCENT=50\nORG_FLOOR_MONTHLY=12000\n"
                     "STEWARDSHIP_MARGIN_PERCENT=0\nFREE_BYTES_PER_ORG=0\n");
    json_t *doc = bf_report("2026-10", path, NULL);
    const json_t *acme = bf_consumer(doc, "acme");
    cr_assert_eq(bf_jint(acme, "cost_micros"), 8159997944ll);
    cr_assert_str_eq(bf_jstr(acme, "ask_status"), "ask");
    /* max(cost − request allowance, floor) = $12,000 → tier $25,000. */
    cr_assert_eq(bf_jint(acme, "allowance_micros"), 7500000);
    cr_assert_eq(bf_jint(acme, "ask_micros"), 25000000000ll);
    cr_assert_str_eq(bf_jstr(bf_consumer(doc, "bigco"), "ask_status"), "below_threshold");
    cr_assert_eq(bf_jint(bf_consumer(doc, "bigco"), "cost_micros"), 2715999315ll);
    cr_assert_eq(bf_jint(json_object_get(doc, "totals"), "period_cost_micros"), 13590144938ll);
    json_decref(doc);
}

Test(billing, free_allowances_cover_small_orgs_even_when_every_org_is_asked, .init = bf_seed,
     .fini = bf_scrub)
{
    char path[200];
    snprintf(path, sizeof path, "%s/everyone.model", bf_work);
    /* No thresholds, no fixed cost: smallco (0.5 TB, 1 M requests) and tinyunk (1 GB)
     * stay within their free 1 TB and 10 M requests, so their asks are 0 although their
     * attributed costs are not. */
    bf_write_text(path, "ASK_MIN_COST=0\nASK_MIN_SHARE_PERCENT=0\n");
    json_t *doc = bf_report("2026-10", path, NULL);
    cr_assert_eq(bf_jint(json_object_get(doc, "totals"), "period_cost_micros"), 12090144938ll);
    const json_t *small = bf_consumer(doc, "smallco"), *tiny = bf_consumer(doc, "tinyunk");
    cr_assert_eq(bf_jint(small, "cost_micros"), 30874994);
    cr_assert_eq(bf_jint(small, "allowance_micros"), 30874994);
    cr_assert_eq(bf_jint(small, "ask_micros"), 0);
    cr_assert_str_eq(bf_jstr(small, "ask_status"), "within_allowance");
    cr_assert_eq(bf_jint(tiny, "cost_micros"), 61000);
    cr_assert_str_eq(bf_jstr(tiny, "ask_status"), "within_allowance");
    cr_assert_str_eq(bf_jstr(bf_consumer(doc, "jdoe"), "ask_status"), "exempt");
    cr_assert_str_eq(bf_jstr(bf_consumer(doc, "acme"), "ask_status"), "ask");
    json_decref(doc);
}

/* Field of a CSV line (no quoted commas in the fields read here). */
Test(billing, a_closed_month_keeps_its_figures_until_regenerated, .init = bf_seed, .fini = bf_scrub)
{
    json_t *first = bf_report("2026-10", bf_model_path, NULL);
    const json_t *snap = json_object_get(first, "snapshot");
    cr_assert(json_is_false(json_object_get(snap, "reused")));
    cr_assert(json_is_true(json_object_get(first, "month_closed")));
    long long id = bf_jint(snap, "id");
    /* A late correction arrives: the stored report does not move. */
    PGconn *db = th_db_connect(bf_db_url);
    PQclear(PQexec(db, "INSERT INTO usage_adjustments (bucket, org_id, repo, requests, bytes,"
                       " reason, author) VALUES ('2026-10-20Z', 2, 'big/data', 0,"
                       " 10000000000000, 'late', 'ops')"));
    json_t *again = bf_report("2026-10", NULL, NULL);
    cr_assert(json_is_true(json_object_get(json_object_get(again, "snapshot"), "reused")));
    cr_assert_eq(bf_jint(json_object_get(again, "snapshot"), "id"), id);
    cr_assert(json_equal(json_object_get(first, "consumers"), json_object_get(again, "consumers")));
    /* Regenerated (with the stored cost model): the changes are listed. */
    json_t *regen = bf_report("2026-10", NULL, "--regenerate");
    cr_assert_gt(bf_jint(json_object_get(regen, "snapshot"), "id"), id);
    cr_assert_eq(bf_jint(json_object_get(regen, "totals"), "bytes"), 210 * TB + 123456789);
    cr_assert_eq(bf_jint(json_object_get(regen, "totals"), "fixed_cost_micros"), 1500000000,
                 "the stored model (fixed cost) was used");
    const json_t *ch = json_object_get(regen, "changes");
    cr_assert(json_is_false(json_object_get(ch, "unchanged")));
    cr_assert_eq(bf_jint(ch, "previous_snapshot"), id);
    cr_assert_eq(json_array_size(json_object_get(ch, "cost_model")), 0);
    const json_t *bytes = json_object_get(json_object_get(ch, "totals"), "bytes");
    cr_assert_eq(bf_jint(bytes, "before"), 200 * TB + 123456789);
    cr_assert_eq(bf_jint(bytes, "after"), 210 * TB + 123456789);
    bool bigco = false;
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(ch, "consumers"), i, c)
        if (strcmp(bf_jstr(c, "consumer"), "bigco") == 0) {
            bigco = true;
            cr_assert_eq(bf_jint(json_object_get(c, "bytes"), "after"), 50 * TB);
        }
    cr_assert(bigco, "bigco's change is listed");
    /* Another cost model stores another snapshot that names the changed fields. */
    json_t *dflt;
    char path[200];
    snprintf(path, sizeof path, "%s/default.model", bf_work);
    bf_write_text(path, "# the defaults\n");
    dflt = bf_report("2026-10", path, NULL);
    cr_assert_eq(bf_jint(json_object_get(dflt, "totals"), "fixed_cost_micros"), 0);
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

Test(billing, a_month_not_yet_closed_is_computed_again_on_every_run,
    .init = bf_seed, .fini = bf_scrub)
{
    json_t *first = bf_report("2026-09", NULL, NULL);
    cr_assert(json_is_false(json_object_get(first, "month_closed")));
    cr_assert_eq(bf_jint(json_object_get(first, "totals"), "bytes"), 156 * TB);
    json_t *second = bf_report("2026-09", NULL, NULL);
    const json_t *snap = json_object_get(second, "snapshot");
    cr_assert(json_is_false(json_object_get(snap, "reused")));
    cr_assert_gt(bf_jint(snap, "id"), bf_jint(json_object_get(first, "snapshot"), "id"));
    const json_t *ch = json_object_get(second, "changes");
    cr_assert(json_is_true(json_object_get(ch, "unchanged")), "nothing moved in between");
    cr_assert_eq(json_array_size(json_object_get(ch, "consumers")), 0);
    json_decref(first);
    json_decref(second);
}

Test(billing, the_current_month_is_reported_month_to_date_with_a_projection,
    .init = bf_seed, .fini = bf_scrub)
{
    PGconn *db = th_db_connect(bf_db_url);
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
    json_t *doc = bf_report(period, bf_model_path, NULL);
    cr_assert(json_is_true(json_object_get(doc, "month_to_date")));
    const json_t *t = json_object_get(doc, "totals");
    cr_assert_eq(bf_jint(t, "bytes"), 7 * TB);
    /* 7 TB at $0.085 + 1000 requests + the attributed fixed cost. */
    cr_assert_eq(bf_jint(t, "period_cost_micros"), 595000000 + 750 + 1500000000);
    int64_t lo, hi, as_of;
    cr_assert_eq(cm_time_parse(bf_jstr(doc, "from"), strlen(bf_jstr(doc, "from")), &lo), CM_OK);
    cr_assert_eq(cm_time_parse(bf_jstr(doc, "to"), strlen(bf_jstr(doc, "to")), &hi), CM_OK);
    const char *at = bf_jstr(doc, "as_of");
    cr_assert_eq(cm_time_parse(at, strlen(at), &as_of), CM_OK);
    cr_assert(as_of > lo && as_of <= hi);
    __int128 n = (__int128)bf_jint(t, "period_cost_micros") * (hi - lo), d = as_of - lo;
    long long want = (long long)((n + d / 2) / d);
    cr_assert_eq(bf_jint(json_object_get(doc, "projection"), "period_cost_micros"), want);
    /* A month to date is computed afresh each time (and stored). */
    json_t *again = bf_report(period, bf_model_path, NULL);
    cr_assert(json_is_false(json_object_get(json_object_get(again, "snapshot"), "reused")));
    json_decref(again);
    json_decref(doc);
}

Test(billing, an_empty_repository_reports_zeros_for_the_current_month)
{
    char url[512], env[600];
    th_db_new(url, sizeof url);
    snprintf(env, sizeof env, "HUBMETER_DATABASE_URL=%s", url);
    char period[8], now[32];
    cm_time_format(cm_now_us() / 1000000, now, sizeof now);
    snprintf(period, sizeof period, "%.7s", now);
    const char *envp[] = {env, NULL};
    static const char *const formats[] = {"json", "csv", "table", "html"};
    for (size_t i = 0; i < 4; i++) {
        struct th_run r;
        th_hubmeter(&r, envp,
                    (const char *[]){"report", "funding", "--period", period, "--format",
                                     formats[i], NULL});
        cr_assert_eq(r.status, 0, "%s: %s", formats[i], r.err);
        if (i == 0) {
            json_t *doc = json_loads(r.out, 0, NULL);
            cr_assert(doc != NULL);
            cr_assert_eq(bf_jint(json_object_get(doc, "totals"), "period_cost_micros"), 0);
            cr_assert_eq(json_array_size(json_object_get(doc, "consumers")), 0);
            json_decref(doc);
        }
    }
    /* With no usage at all, every past month is unknown. */
    struct th_run r;
    th_hubmeter(&r, envp, (const char *[]){"report", "funding", "--period", "2026-01", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "no usage is recorded yet") != NULL, "%s", r.err);
}

Test(billing, bad_periods_and_cost_models_are_refused_and_store_nothing,
    .init = bf_seed, .fini = bf_scrub)
{
    struct th_run r;
    char neg[200], unsorted[200], junk[200];
    snprintf(neg, sizeof neg, "%s/neg.model", bf_work);
    snprintf(unsorted, sizeof unsorted, "%s/unsorted.model", bf_work);
    snprintf(junk, sizeof junk, "%s/junk.model", bf_work);
    bf_write_text(neg, "REQUESTS_PER_MILLION=-0.75\n");
    bf_write_text(unsorted, "EGRESS_PER_GB=50TB:0.08,10TB:0.085,*:0.04\n");
    bf_write_text(junk, "{\"egress\": 0.085}\n");
    static const struct { const char *period, *model, *message; int status; } cases[] = {
        {"2099-01", NULL, "in the future", 2},
        {"2020-01", NULL, "no usage is recorded for 2020-01", 1},
        {"2026-13", NULL, "not a month YYYY-MM", 2},
        {"october", NULL, "not a month YYYY-MM", 2},
        {"2026-100", NULL, "not a month YYYY-MM", 2},
        {"1999-12", NULL, "not a month YYYY-MM", 2},
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
        bf_cli(&r, args);
        cr_assert_eq(r.status, cases[i].status, "%s: %s", cases[i].period, r.err);
        cr_assert(strstr(r.err, cases[i].message) != NULL, "%s", r.err);
        cr_assert(strchr(r.err, '\n') == strrchr(r.err, '\n'), "one line: %s", r.err);
    }
    bf_cli(&r, (const char *[]){"report", "funding", NULL});
    cr_assert_eq(r.status, 2);
    bf_cli(&r,
           (const char *[]){"report", "funding", "--period", "2026-10", "--format", "pdf", NULL});
    cr_assert_eq(r.status, 2);
    bf_cli(&r, (const char *[]){"report", "funding", "--help", NULL});
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "--cost-model") != NULL);
    PGconn *db = th_db_connect(bf_db_url);
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
    req.period = "2019-12";
    cr_assert_eq(bill_report_generate(db, &req, BILL_JSON, &out, &code, err, sizeof err),
                 CM_NOTFOUND);
    cr_assert_str_eq(code, "unknown_period");
    req.period = "2026-10";
    cr_assert_eq(bill_report_generate(db, &req, BILL_CSV, &out, &code, err, sizeof err), CM_OK,
                 "%s", err);
    cr_assert_str_eq(out.content_type, "text/csv; charset=utf-8");
    cr_assert(strstr(out.body, "\r\n2026-10,1,acme,org,commercial,") != NULL, "%s", out.body);
    bill_output_free(&out);
    PQfinish(db);
}

/* Runs argv with a time limit; returns the exit status (-1 when killed). */
