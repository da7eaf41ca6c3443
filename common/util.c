/*
 * Bounded string helpers used instead of the banned sprintf/strcpy family:
 * every call reports truncation instead of silently cutting.
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
