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



void cm_buf_u64(struct cm_buf *b, uint64_t v)
{
    /* Two digits a step: a 19-digit quota limit in 10 divisions, not 19. */
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    char digits[20];
    size_t at = sizeof digits;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        digits[--at] = pairs[d + 1];
        digits[--at] = pairs[d];
    }
    if (v >= 10) {
        digits[--at] = pairs[v * 2 + 1];
        digits[--at] = pairs[v * 2];
    } else {
        digits[--at] = (char)('0' + v);
    }
    cm_buf_put(b, digits + at, sizeof digits - at);
}

void cm_buf_i64(struct cm_buf *b, int64_t v)
{
    if (v < 0) {
        cm_buf_put(b, "-", 1);
        cm_buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        cm_buf_u64(b, (uint64_t)v);
    }
}
