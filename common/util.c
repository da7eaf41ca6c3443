/*
 * Bounded string helpers used instead of the banned sprintf/strcpy family:
 * every call reports truncation instead of silently cutting. cm_buf appends text and
 * numbers without printf, for the per-request hot path.
 */
#include "common/common.h"

#include <stdio.h>
#include <string.h>

int cm_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= len) ? CM_ERR : CM_OK;
}

int cm_copy(char *dst, size_t dstlen, const char *src)
{
    if (dstlen == 0)
        return CM_ERR;
    size_t n = strlen(src);
    if (n >= dstlen) {
        memcpy(dst, src, dstlen - 1);
        dst[dstlen - 1] = '\0';
        return CM_ERR;
    }
    memcpy(dst, src, n + 1);
    return CM_OK;
}

void cm_buf_init(struct cm_buf *b, char *s, size_t cap)
{
    *b = (struct cm_buf){.s = s, .cap = cap, .overflow = cap == 0};
    if (cap > 0)
        s[0] = '\0';
}

static void buf_put(struct cm_buf *b, const char *str, size_t n)
{
    if (b->overflow || b->len + n >= b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->s + b->len, str, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void cm_buf_str(struct cm_buf *b, const char *str) { buf_put(b, str, strlen(str)); }

void cm_buf_u64(struct cm_buf *b, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    buf_put(b, digits + sizeof digits - n, n);
}

void cm_buf_i64(struct cm_buf *b, int64_t v)
{
    if (v < 0) {
        buf_put(b, "-", 1);
        cm_buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        cm_buf_u64(b, (uint64_t)v);
    }
}
