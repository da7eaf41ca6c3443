/*
 * Funding-report arithmetic and the cost model on their own (billing/money.c,
 * billing/cost_model.c): tiers, rounding, largest remainder, sponsorship tiers, amounts,
 * and the validation of every cost-model field. No servers needed.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "billing/billing.h"
#include "tests/billing_fixture.h"

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

/* Parses text as a cost model file; returns its rc and the message in err. */
static int parse_model(const char *text, struct bill_model *m, char *err, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/hm-billing-%d.model", (int)getpid());
    bf_write_text(path, text);
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
