/*
 * Integer money arithmetic for funding reports: tiered egress and request prices (one
 * rounding, half up, at the end), exact largest-remainder allocation, sponsorship-tier
 * rounding, and the parsing and formatting of amounts. Pure: no I/O, no floating point;
 * products go through __int128.
 */
#include "billing/billing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GB 1000000000ll
#define MICRO 1000000ll

/* n / d rounded half up, for n >= 0, d > 0. */
static __int128 div_half_up(__int128 n, __int128 d) { return (n + d / 2) / d; }

int64_t bill_egress_cost(const struct bill_model *m, uint64_t bytes)
{
    /* Sum of bytes × micro-units/GB over the tiers, in units of 10^-9 micro-units; a
     * single rounding at the end so splitting tiers never loses a micro-unit. */
    __int128 sum = 0;
    uint64_t lo = 0;
    for (size_t i = 0; i < m->n_tiers && bytes > lo; i++) {
        uint64_t hi = m->tier_upto[i] < bytes ? m->tier_upto[i] : bytes;
        sum += (__int128)(hi - lo) * m->tier_price[i];
        lo = hi;
    }
    __int128 micros = div_half_up(sum, GB);
    return micros > INT64_MAX ? INT64_MAX : (int64_t)micros;
}

int64_t bill_request_cost(int64_t price_per_million, uint64_t requests)
{
    __int128 micros = div_half_up((__int128)requests * price_per_million, MICRO);
    return micros > INT64_MAX ? INT64_MAX : (int64_t)micros;
}

int bill_allocate(int64_t total, const uint64_t *w, size_t n, int64_t *out)
{
    __int128 sum_w = 0;
    for (size_t i = 0; i < n; i++)
        sum_w += w[i];
    memset(out, 0, n * sizeof *out);
    if (sum_w == 0 || total <= 0 || n == 0)
        return total == 0 || sum_w == 0 ? CM_OK : CM_ERR;
    __int128 *rem = malloc(n * sizeof *rem);
    if (rem == NULL)
        return CM_ERR;
    int64_t given = 0;
    for (size_t i = 0; i < n; i++) {
        __int128 p = (__int128)total * w[i];
        out[i] = (int64_t)(p / sum_w);
        rem[i] = p % sum_w;
        given += out[i];
    }
    /* The leftover is below n: one micro-unit each to the largest remainders. */
    for (int64_t left = total - given; left > 0; left--) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (rem[i] >= 0 && (best == n || rem[i] > rem[best]))
                best = i;
        out[best]++;
        rem[best] = -1; /* each consumer gains at most one */
    }
    free(rem);
    return CM_OK;
}

int64_t bill_round_up_tier(const struct bill_model *m, int64_t amount)
{
    if (amount <= 0 || m->n_sponsor == 0)
        return amount < 0 ? 0 : amount;
    for (size_t i = 0; i < m->n_sponsor; i++)
        if (amount <= m->sponsor_tiers[i])
            return m->sponsor_tiers[i];
    int64_t top = m->sponsor_tiers[m->n_sponsor - 1];
    __int128 up = ((__int128)amount + top - 1) / top * top;
    return up > INT64_MAX ? INT64_MAX : (int64_t)up;
}

int bill_parse_money(const char *s, int64_t *out)
{
    int64_t whole = 0, frac = 0;
    int digits = 0, fdigits = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        if (__builtin_mul_overflow(whole, 10, &whole) ||
            __builtin_add_overflow(whole, *p - '0', &whole))
            return CM_INVALID;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, fdigits++) {
            if (fdigits == 6)
                return CM_INVALID; /* finer than a micro-unit */
            frac = frac * 10 + (*p - '0');
        }
        if (fdigits == 0)
            return CM_INVALID;
    }
    if (*p != '\0' || digits == 0)
        return CM_INVALID;
    for (int i = fdigits; i < 6; i++)
        frac *= 10;
    int64_t v;
    if (__builtin_mul_overflow(whole, MICRO, &v) || __builtin_add_overflow(v, frac, &v))
        return CM_INVALID;
    *out = v;
    return CM_OK;
}

void bill_format_micros(int64_t micros, char *buf, size_t len)
{
    const char *sign = micros < 0 ? "-" : "";
    uint64_t a = micros < 0 ? (uint64_t)0 - (uint64_t)micros : (uint64_t)micros;
    snprintf(buf, len, "%s%llu.%06llu", sign, (unsigned long long)(a / MICRO),
             (unsigned long long)(a % MICRO));
}

/* Writes v with thousands separators. */
static void group_digits(uint64_t v, char *buf, size_t len)
{
    char raw[32], tmp[48];
    snprintf(raw, sizeof raw, "%llu", (unsigned long long)v);
    size_t n = strlen(raw), j = 0;
    for (size_t i = 0; i < n && j + 2 < sizeof tmp; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            tmp[j++] = ',';
        tmp[j++] = raw[i];
    }
    tmp[j] = '\0';
    cm_copy(buf, len, tmp);
}

void bill_format_count(uint64_t n, char *buf, size_t len) { group_digits(n, buf, len); }

void bill_format_money(const char *currency, int64_t micros, char *buf, size_t len)
{
    uint64_t a = micros < 0 ? (uint64_t)0 - (uint64_t)micros : (uint64_t)micros;
    uint64_t cents = (a + 5000) / 10000; /* half up */
    char whole[40];
    group_digits(cents / 100, whole, sizeof whole);
    bool usd = strcmp(currency, "USD") == 0;
    snprintf(buf, len, "%s%s%s%s.%02llu", micros < 0 ? "-" : "", usd ? "$" : currency,
             usd ? "" : " ", whole, (unsigned long long)(cents % 100));
}

void bill_format_bp(int64_t bp, char *buf, size_t len)
{
    uint64_t a = bp < 0 ? (uint64_t)0 - (uint64_t)bp : (uint64_t)bp;
    snprintf(buf, len, "%s%llu.%02llu%%", bp < 0 ? "-" : "", (unsigned long long)(a / 100),
             (unsigned long long)(a % 100));
}

void bill_format_bytes(uint64_t bytes, char *buf, size_t len)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    uint64_t scale = 1;
    int u = 0;
    while (u < 6 && bytes / scale >= 1000) {
        scale *= 1000;
        u++;
    }
    if (u == 0) {
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
        return;
    }
    /* Two decimals, rounded half up. */
    unsigned __int128 hundredths = ((unsigned __int128)bytes * 100 + scale / 2) / scale;
    snprintf(buf, len, "%llu.%02llu %s", (unsigned long long)(hundredths / 100),
             (unsigned long long)(hundredths % 100), unit[u]);
}
