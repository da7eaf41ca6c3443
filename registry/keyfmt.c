/*
 * API key format: "<prefix><32 base62 random chars><6 base62 chars of CRC-32>", where the
 * CRC covers prefix and body. The checksum lets the gateway reject a mistyped or
 * truncated key without a database lookup (as GitHub's token format does).
 */
#include "registry/registry.h"

#include <string.h>

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void checksum(const char *prefix, size_t plen, const char *body, char out[REG_KEY_CHECK])
{
    char buf[REG_KEY_MAX];
    memcpy(buf, prefix, plen);
    memcpy(buf + plen, body, REG_KEY_BODY);
    uint32_t crc = cm_crc32(buf, plen + REG_KEY_BODY);
    for (int i = REG_KEY_CHECK - 1; i >= 0; i--) {
        out[i] = b62[crc % 62];
        crc /= 62;
    }
}

int reg_key_generate(const char *prefix, char *out, size_t outlen)
{
    size_t plen = strlen(prefix);
    if (plen > 16 || plen + REG_KEY_BODY + REG_KEY_CHECK + 1 > outlen)
        return CM_ERR;
    memcpy(out, prefix, plen);
    char *body = out + plen;
    size_t filled = 0;
    while (filled < REG_KEY_BODY) {
        uint8_t rnd[64];
        if (cm_random(rnd, sizeof rnd) != CM_OK)
            return CM_ERR;
        /* Rejection sampling: 248 = 4 * 62 keeps every character equally likely. */
        for (size_t i = 0; i < sizeof rnd && filled < REG_KEY_BODY; i++)
            if (rnd[i] < 248)
                body[filled++] = b62[rnd[i] % 62];
    }
    checksum(prefix, plen, body, body + REG_KEY_BODY);
    out[plen + REG_KEY_BODY + REG_KEY_CHECK] = '\0';
    return CM_OK;
}

int reg_key_check(const char *prefix, const char *key, size_t len)
{
    size_t plen = strlen(prefix);
    if (len != plen + REG_KEY_BODY + REG_KEY_CHECK || memcmp(key, prefix, plen) != 0)
        return CM_INVALID;
    for (size_t i = plen; i < len; i++)
        if (strchr(b62, key[i]) == NULL || key[i] == '\0')
            return CM_INVALID;
    char want[REG_KEY_CHECK];
    checksum(prefix, plen, key + plen, want);
    return memcmp(want, key + plen + REG_KEY_BODY, REG_KEY_CHECK) == 0 ? CM_OK : CM_INVALID;
}

void reg_key_display(const char *prefix, const char *key, char *out, size_t outlen)
{
    size_t plen = strlen(prefix);
    size_t n = plen + REG_KEY_DISPLAY;
    if (n >= outlen || strlen(key) < n) {
        cm_copy(out, outlen, prefix);
        return;
    }
    memcpy(out, key, n);
    out[n] = '\0';
}

static bool match(const char *s, size_t max, const char *first, const char *rest)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || strchr(first, s[0]) == NULL)
        return false;
    for (size_t i = 1; i < n; i++)
        if (strchr(rest, s[i]) == NULL)
            return false;
    return true;
}

#define LOWER_DIGITS "abcdefghijklmnopqrstuvwxyz0123456789"

bool reg_valid_slug(const char *s) { return match(s, 63, LOWER_DIGITS, LOWER_DIGITS "-"); }

bool reg_valid_plan_name(const char *s) { return match(s, 63, LOWER_DIGITS, LOWER_DIGITS "_.-"); }

bool reg_valid_class(const char *s)
{
    static const char *const classes[] = {"commercial", "nonprofit", "academic", "individual",
                                          "unknown"};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strcmp(s, classes[i]) == 0)
            return true;
    return false;
}
