/*
 * Time: wall and monotonic clocks, RFC 3339 formatting and parsing, UTC month
 * arithmetic. Pure functions (no locale, no TZ database): months are UTC calendar months.
 */
#include "common/common.h"

#include <string.h>
#include <time.h>

int64_t cm_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cm_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cm_time_format(int64_t unix_s, char *buf, size_t len)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return CM_ERR;
    return cm_fmt(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

int cm_time_parse(const char *s, size_t len, int64_t *unix_s)
{
    unsigned y, mo, d, h, mi, se;
    /* YYYY-MM-DDTHH:MM:SS is 19 characters, then fraction, then Z or ±HH:MM. */
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return CM_INVALID;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
        return CM_INVALID;
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
        mi > 59 || se > 60)
        return CM_INVALID;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return CM_INVALID;
    size_t i = 19;
    if (i < len && s[i] == '.') {
        i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start || i - start > 9)
            return CM_INVALID;
    }
    int64_t offset = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
        offset = 0;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        unsigned oh, om;
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return CM_INVALID;
        offset = (int64_t)(oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
    } else {
        return CM_INVALID;
    }
    int64_t days = days_from_civil(y, mo, d);
    *unix_s = days * 86400 + h * 3600 + mi * 60 + (se == 60 ? 59 : se) - offset;
    return CM_OK;
}

int64_t cm_month_start(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    return days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, 1) * 86400;
}

int64_t cm_month_next(int64_t month_start)
{
    time_t t = (time_t)month_start;
    struct tm tm;
    gmtime_r(&t, &tm);
    int64_t y = tm.tm_year + 1900;
    unsigned m = (unsigned)tm.tm_mon + 2;
    if (m == 13) {
        m = 1;
        y++;
    }
    return days_from_civil(y, m, 1) * 86400;
}
