/*
 * The cost model: its defaults (CDN list prices), the KEY=value file operators write
 * (the --config style), validation of every field, and its JSON form (integers only),
 * which is stored with each report snapshot so the figures can be reproduced.
 */
#include "billing/billing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TB 1000000000000ull
#define MAX_PRICE 1000000000000ll /* 1,000,000 a unit: anything above is a typo */

void bill_model_default(struct bill_model *m)
{
    static const uint64_t upto[] = {10 * TB, 50 * TB, 150 * TB, BILL_UNBOUNDED};
    static const int64_t price[] = {85000, 80000, 60000, 40000};
    static const int64_t sponsor[] = {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000};
    memset(m, 0, sizeof *m);
    cm_copy(m->currency, sizeof m->currency, "USD");
    m->n_tiers = 4;
    for (size_t i = 0; i < 4; i++) {
        m->tier_upto[i] = upto[i];
        m->tier_price[i] = price[i];
    }
    m->request_price = 750000;
    m->free_bytes = 1 * TB;
    m->free_requests = 10000000;
    m->fixed_cost = 0;
    m->fixed_share_bp = 10000;
    m->margin_bp = 2000;
    m->n_sponsor = sizeof sponsor / sizeof sponsor[0];
    for (size_t i = 0; i < m->n_sponsor; i++)
        m->sponsor_tiers[i] = sponsor[i] * 1000000ll;
    m->ask_min_cost = 100 * 1000000ll;
    m->ask_min_share_bp = 500;
    m->org_floor = 0;
    m->redundancy_ratio = 10;
    m->top_repositories = 3;
}

/* "1TB", "500GB", "123" (bytes), SI units only (1 kB = 1000 B). */
static int parse_bytes(const char *s, uint64_t *out)
{
    static const struct { const char *suffix; uint64_t mul; } units[] = {
        {"PB", 1000 * TB}, {"TB", TB}, {"GB", 1000000000ull}, {"MB", 1000000ull},
        {"kB", 1000ull},   {"KB", 1000ull}, {"B", 1ull}};
    char num[32];
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n >= sizeof num)
        return CM_INVALID;
    memcpy(num, s, n);
    num[n] = '\0';
    uint64_t v, mul = 1;
    if (cm_parse_u64(num, &v) != CM_OK)
        return CM_INVALID;
    if (s[n] != '\0') {
        size_t i = 0;
        while (i < sizeof units / sizeof units[0] && strcmp(s + n, units[i].suffix) != 0)
            i++;
        if (i == sizeof units / sizeof units[0])
            return CM_INVALID;
        mul = units[i].mul;
    }
    return __builtin_mul_overflow(v, mul, out) ? CM_INVALID : CM_OK;
}

/* A percentage with up to two decimals ("12.5") as basis points, at most max_bp. */
static int parse_percent(const char *s, int64_t max_bp, int32_t *out)
{
    int64_t micros;
    if (bill_parse_money(s, &micros) != CM_OK || micros % 10000 != 0 ||
        micros / 10000 > max_bp)
        return CM_INVALID;
    *out = (int32_t)(micros / 10000);
    return CM_OK;
}

static int parse_price(const char *s, int64_t *out)
{
    return bill_parse_money(s, out) == CM_OK && *out <= MAX_PRICE ? CM_OK : CM_INVALID;
}

/* The next comma-separated item of *cursor (cut in place), or NULL at the end. */
static char *next_item(char **cursor)
{
    char *item = *cursor;
    if (item == NULL)
        return NULL;
    char *comma = strchr(item, ',');
    if (comma != NULL)
        *comma++ = '\0';
    *cursor = comma;
    return item;
}

/* "10TB:0.085,50TB:0.080,*:0.040" */
static int parse_tiers(struct bill_model *m, const char *v, char *err, size_t errlen)
{
    char buf[512];
    if (cm_copy(buf, sizeof buf, v) != CM_OK)
        return cm_fmt(err, errlen, "EGRESS_PER_GB is too long"), CM_INVALID;
    size_t n = 0;
    for (char *cursor = buf, *item; (item = next_item(&cursor)) != NULL;) {
        char *colon = strchr(item, ':');
        if (colon == NULL || n == BILL_MAX_TIERS)
            return cm_fmt(err, errlen, "EGRESS_PER_GB must be up to %d tiers BYTES:PRICE "
                                       "separated by commas, the last *:PRICE "
                                       "(e.g. 10TB:0.085,*:0.040)", BILL_MAX_TIERS),
                   CM_INVALID;
        *colon = '\0';
        if (strcmp(item, "*") == 0)
            m->tier_upto[n] = BILL_UNBOUNDED;
        else if (parse_bytes(item, &m->tier_upto[n]) != CM_OK || m->tier_upto[n] == 0)
            return cm_fmt(err, errlen, "EGRESS_PER_GB: tier bound \"%.40s\" is not a size "
                                       "such as 10TB", item), CM_INVALID;
        if (parse_price(colon + 1, &m->tier_price[n]) != CM_OK)
            return cm_fmt(err, errlen, "EGRESS_PER_GB: price \"%.40s\" must be a "
                                       "non-negative amount with at most 6 decimals",
                          colon + 1), CM_INVALID;
        n++;
    }
    m->n_tiers = n;
    return CM_OK;
}

/* "100,250,500" (amounts, ascending). */
static int parse_sponsor(struct bill_model *m, const char *v, char *err, size_t errlen)
{
    char buf[512];
    if (cm_copy(buf, sizeof buf, v) != CM_OK)
        return cm_fmt(err, errlen, "SPONSORSHIP_TIERS is too long"), CM_INVALID;
    size_t n = 0;
    for (char *cursor = buf, *item; (item = next_item(&cursor)) != NULL;) {
        if (n == BILL_MAX_TIERS || parse_price(item, &m->sponsor_tiers[n]) != CM_OK ||
            m->sponsor_tiers[n] == 0)
            return cm_fmt(err, errlen, "SPONSORSHIP_TIERS must be up to %d positive amounts "
                                       "separated by commas (\"%.40s\" is not)",
                          BILL_MAX_TIERS, item), CM_INVALID;
        n++;
    }
    m->n_sponsor = n;
    return CM_OK;
}

int bill_model_set(struct bill_model *m, const char *key, const char *v, char *err,
                   size_t errlen)
{
    const char *why = NULL;
    int32_t bp;
    uint64_t u;
    if (strcmp(key, "CURRENCY") == 0) {
        if (strlen(v) != 3 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
            why = "must be a three-letter ISO 4217 code such as USD";
        else
            cm_copy(m->currency, sizeof m->currency, v);
    } else if (strcmp(key, "EGRESS_PER_GB") == 0) {
        return parse_tiers(m, v, err, errlen);
    } else if (strcmp(key, "SPONSORSHIP_TIERS") == 0) {
        return parse_sponsor(m, v, err, errlen);
    } else if (strcmp(key, "REQUESTS_PER_MILLION") == 0) {
        if (parse_price(v, &m->request_price) != CM_OK)
            why = "must be a non-negative amount with at most 6 decimals";
    } else if (strcmp(key, "FIXED_MONTHLY_COST") == 0 || strcmp(key, "ASK_MIN_COST") == 0 ||
               strcmp(key, "ORG_FLOOR_MONTHLY") == 0) {
        int64_t *dst = key[0] == 'F' ? &m->fixed_cost : key[0] == 'A' ? &m->ask_min_cost
                                                                       : &m->org_floor;
        if (bill_parse_money(v, dst) != CM_OK || *dst > 1000000 * MAX_PRICE)
            why = "must be a non-negative amount with at most 6 decimals";
    } else if (strcmp(key, "FREE_BYTES_PER_ORG") == 0) {
        if (parse_bytes(v, &m->free_bytes) != CM_OK)
            why = "must be a size in bytes, optionally with an SI unit (1TB, 500GB)";
    } else if (strcmp(key, "FREE_REQUESTS_PER_ORG") == 0) {
        if (cm_parse_u64(v, &m->free_requests) != CM_OK)
            why = "must be a whole number of requests";
    } else if (strcmp(key, "FIXED_SHARE_PERCENT") == 0 ||
               strcmp(key, "ASK_MIN_SHARE_PERCENT") == 0) {
        if (parse_percent(v, 10000, &bp) != CM_OK)
            why = "must be a percentage from 0 to 100 with at most 2 decimals";
        else
            *(key[0] == 'F' ? &m->fixed_share_bp : &m->ask_min_share_bp) = bp;
    } else if (strcmp(key, "STEWARDSHIP_MARGIN_PERCENT") == 0) {
        if (parse_percent(v, 1000000, &m->margin_bp) != CM_OK)
            why = "must be a percentage from 0 to 10000 with at most 2 decimals";
    } else if (strcmp(key, "REDUNDANCY_RATIO") == 0 || strcmp(key, "TOP_REPOSITORIES") == 0) {
        bool ratio = key[0] == 'R';
        if (cm_parse_u64(v, &u) != CM_OK || u > (ratio ? 1000000 : 20) || (!ratio && u == 0))
            why = ratio ? "must be a whole number from 0 (off) to 1000000"
                        : "must be a whole number from 1 to 20";
        else
            *(ratio ? &m->redundancy_ratio : &m->top_repositories) = (uint32_t)u;
    } else {
        return cm_fmt(err, errlen, "unknown key %.60s", key), CM_INVALID;
    }
    if (why != NULL)
        return cm_fmt(err, errlen, "%s=\"%.60s\" %s", key, v, why), CM_INVALID;
    return CM_OK;
}

int bill_model_validate(const struct bill_model *m, char *err, size_t errlen)
{
    if (m->n_tiers == 0 || m->tier_upto[m->n_tiers - 1] != BILL_UNBOUNDED)
        return cm_fmt(err, errlen, "EGRESS_PER_GB: the last tier must be unbounded (*:PRICE)"),
               CM_INVALID;
    for (size_t i = 0; i < m->n_tiers; i++) {
        if (m->tier_price[i] < 0 || m->tier_price[i] > MAX_PRICE)
            return cm_fmt(err, errlen, "EGRESS_PER_GB: prices must not be negative"), CM_INVALID;
        if (i > 0 && m->tier_upto[i] <= m->tier_upto[i - 1])
            return cm_fmt(err, errlen, "EGRESS_PER_GB: tier bounds must be in ascending order"),
                   CM_INVALID;
    }
    for (size_t i = 0; i < m->n_sponsor; i++)
        if (m->sponsor_tiers[i] <= 0 || (i > 0 && m->sponsor_tiers[i] <= m->sponsor_tiers[i - 1]))
            return cm_fmt(err, errlen, "SPONSORSHIP_TIERS must be positive and ascending"),
                   CM_INVALID;
    if (m->request_price < 0 || m->request_price > MAX_PRICE)
        return cm_fmt(err, errlen, "REQUESTS_PER_MILLION must not be negative"), CM_INVALID;
    if (m->fixed_cost < 0 || m->ask_min_cost < 0 || m->org_floor < 0)
        return cm_fmt(err, errlen, "FIXED_MONTHLY_COST, ASK_MIN_COST and ORG_FLOOR_MONTHLY "
                                   "must not be negative"), CM_INVALID;
    if (m->fixed_share_bp < 0 || m->fixed_share_bp > 10000 || m->ask_min_share_bp < 0 ||
        m->ask_min_share_bp > 10000 || m->margin_bp < 0 || m->margin_bp > 1000000)
        return cm_fmt(err, errlen, "percentages out of range (FIXED_SHARE_PERCENT, "
                                   "ASK_MIN_SHARE_PERCENT 0-100, STEWARDSHIP_MARGIN_PERCENT "
                                   "0-10000)"), CM_INVALID;
    if (m->top_repositories == 0 || m->top_repositories > 20 || m->redundancy_ratio > 1000000)
        return cm_fmt(err, errlen, "TOP_REPOSITORIES (1-20) or REDUNDANCY_RATIO out of range"),
               CM_INVALID;
    if (strlen(m->currency) != 3)
        return cm_fmt(err, errlen, "CURRENCY must be a three-letter code"), CM_INVALID;
    return CM_OK;
}

int bill_model_parse_file(const char *path, struct bill_model *m, char *err, size_t errlen)
{
    bill_model_default(m);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return cm_fmt(err, errlen, "cannot read cost model %s: %s", path, strerror(errno)),
               CM_INVALID;
    char line[1024], why[400];
    int lineno = 0, rc = CM_OK;
    while (rc == CM_OK && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            rc = CM_INVALID;
            cm_fmt(err, errlen, "cost model %s:%d: line too long", path, lineno);
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                         line[n - 1] == '\t'))
            line[--n] = '\0';
        char *s = line + strspn(line, " \t");
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = CM_INVALID;
            cm_fmt(err, errlen, "cost model %s:%d: expected KEY=value", path, lineno);
            break;
        }
        *eq = '\0';
        rc = bill_model_set(m, s, eq + 1, why, sizeof why);
        if (rc != CM_OK)
            cm_fmt(err, errlen, "cost model %s:%d: %s", path, lineno, why);
    }
    fclose(f);
    if (rc == CM_OK && bill_model_validate(m, why, sizeof why) != CM_OK) {
        cm_fmt(err, errlen, "cost model %s: %s", path, why);
        rc = CM_INVALID;
    }
    return rc;
}

json_t *bill_model_to_json(const struct bill_model *m)
{
    json_t *tiers = json_array(), *sponsor = json_array();
    for (size_t i = 0; i < m->n_tiers; i++)
        json_array_append_new(
            tiers, json_pack("{s:o, s:I}", "up_to_bytes",
                             m->tier_upto[i] == BILL_UNBOUNDED
                                 ? json_null()
                                 : json_integer((json_int_t)m->tier_upto[i]),
                             "price_per_gb_micros", (json_int_t)m->tier_price[i]));
    for (size_t i = 0; i < m->n_sponsor; i++)
        json_array_append_new(sponsor, json_integer(m->sponsor_tiers[i]));
    return json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:i, s:i, s:o, s:I, s:i, s:I, s:i, s:i}",
                     "currency", m->currency, "egress_tiers", tiers,
                     "request_price_per_million_micros", (json_int_t)m->request_price,
                     "free_bytes_per_org", (json_int_t)m->free_bytes,
                     "free_requests_per_org", (json_int_t)m->free_requests,
                     "fixed_monthly_cost_micros", (json_int_t)m->fixed_cost,
                     "fixed_share_bp", (int)m->fixed_share_bp,
                     "stewardship_margin_bp", (int)m->margin_bp,
                     "sponsorship_tiers_micros", sponsor,
                     "ask_min_cost_micros", (json_int_t)m->ask_min_cost,
                     "ask_min_share_bp", (int)m->ask_min_share_bp,
                     "org_floor_micros", (json_int_t)m->org_floor,
                     "redundancy_ratio", (int)m->redundancy_ratio,
                     "top_repositories", (int)m->top_repositories);
}

/* Reads a non-negative integer member; false when absent or not one. */
static bool member(const json_t *j, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = json_integer_value(v);
    return true;
}

int bill_model_from_json(const json_t *j, struct bill_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    int64_t v[12];
    static const char *const keys[] = {
        "request_price_per_million_micros", "free_bytes_per_org", "free_requests_per_org",
        "fixed_monthly_cost_micros", "fixed_share_bp", "stewardship_margin_bp",
        "ask_min_cost_micros", "ask_min_share_bp", "org_floor_micros", "redundancy_ratio",
        "top_repositories"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!member(j, keys[i], &v[i]))
            return cm_fmt(err, errlen, "cost model: %s is missing or negative", keys[i]),
                   CM_INVALID;
    const char *cur = json_string_value(json_object_get(j, "currency"));
    const json_t *tiers = json_object_get(j, "egress_tiers");
    const json_t *sponsor = json_object_get(j, "sponsorship_tiers_micros");
    if (cur == NULL || cm_copy(m->currency, sizeof m->currency, cur) != CM_OK ||
        json_array_size(tiers) > BILL_MAX_TIERS || json_array_size(sponsor) > BILL_MAX_TIERS)
        return cm_fmt(err, errlen, "cost model: bad currency or tier lists"), CM_INVALID;
    m->n_tiers = json_array_size(tiers);
    for (size_t i = 0; i < m->n_tiers; i++) {
        const json_t *t = json_array_get(tiers, i), *up = json_object_get(t, "up_to_bytes");
        int64_t upto = 0;
        if (!member(t, "price_per_gb_micros", &m->tier_price[i]) ||
            (!json_is_null(up) && !member(t, "up_to_bytes", &upto)))
            return cm_fmt(err, errlen, "cost model: egress tier %zu is malformed", i),
                   CM_INVALID;
        m->tier_upto[i] = json_is_null(up) ? BILL_UNBOUNDED : (uint64_t)upto;
    }
    m->n_sponsor = json_array_size(sponsor);
    for (size_t i = 0; i < m->n_sponsor; i++)
        if (!json_is_integer(json_array_get(sponsor, i)) ||
            (m->sponsor_tiers[i] = json_integer_value(json_array_get(sponsor, i))) <= 0)
            return cm_fmt(err, errlen, "cost model: sponsorship tier %zu is malformed", i),
                   CM_INVALID;
    m->request_price = v[0];
    m->free_bytes = (uint64_t)v[1];
    m->free_requests = (uint64_t)v[2];
    m->fixed_cost = v[3];
    m->fixed_share_bp = (int32_t)(v[4] > 10000 ? -1 : v[4]);
    m->margin_bp = (int32_t)(v[5] > 1000000 ? -1 : v[5]);
    m->ask_min_cost = v[6];
    m->ask_min_share_bp = (int32_t)(v[7] > 10000 ? -1 : v[7]);
    m->org_floor = v[8];
    m->redundancy_ratio = (uint32_t)(v[9] > 1000000 ? 2000000 : v[9]);
    m->top_repositories = (uint32_t)(v[10] > 20 ? 0 : v[10]);
    return bill_model_validate(m, err, errlen);
}
