/*
 * Bytes: randomness from getrandom(2), SHA-256 and HMAC-SHA256 from OpenSSL's libcrypto,
 * CRC-32 (for key checksums), hex encoding and strict number parsing. No secrets are
 * kept here.
 */
#include "common/common.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int cm_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return CM_ERR;
        }
        p += r;
        n -= (size_t)r;
    }
    return CM_OK;
}

void cm_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int outlen = 32;
    EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL);
}

uint32_t cm_crc32(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

void cm_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int cm_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return CM_INVALID;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return CM_INVALID;
    *out = v;
    return CM_OK;
}

void cm_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    uint8_t out[32])
{
    unsigned n = 32;
    if (HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &n) == NULL)
        memset(out, 0, 32);
}
