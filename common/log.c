/*
 * Logging: the one function that writes log lines. Format is logfmt-like
 * "ts=<RFC3339.ms> level=<l> event=<e> <caller's key=value pairs>" on stderr, one line
 * per event, written with a single write(2) so lines from threads never interleave.
 */
#include "common/common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_min_level = CM_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cm_log_set_level(enum cm_log_level level) { atomic_store(&log_min_level, (int)level); }

int cm_log_parse_level(const char *s, enum cm_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum cm_log_level)i;
            return CM_OK;
        }
    }
    return CM_INVALID;
}

/* Neutralises newlines in line[0..used), appends one, and writes it with one write(2).
 * line holds cap bytes; a line that fills it is cut to leave room for the newline. */
static void emit(char *line, size_t used, size_t cap)
{
    /* Neutralise newlines from the caller so one event stays one line. */
    for (size_t i = 0; i < used; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    if (used >= cap - 1)
        used = cap - 2;
    line[used++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, used);
    (void)w;
}

void cm_log_line(enum cm_log_level level, const char *text)
{
    if ((int)level < atomic_load(&log_min_level))
        return;
    char line[4096];
    size_t n = strlen(text);
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    memcpy(line, text, n);
    emit(line, n, sizeof line);
}

void cm_log(enum cm_log_level level, const char *event, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_min_level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], event);
    if (n < 0)
        return;
    size_t used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + used, sizeof line - used, fmt, ap);
    va_end(ap);
    if (m > 0)
        used += (size_t)m < sizeof line - used ? (size_t)m : sizeof line - used - 1;
    emit(line, used, sizeof line);
}
