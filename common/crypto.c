/*
 * Bytes: randomness from getrandom(2), SHA-256 and HMAC-SHA256 from OpenSSL's libcrypto,
 * CRC-32 (for key checksums), hex encoding and strict number parsing. No secrets are
 * kept here.
 */
#include "common/common.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
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

/* SHA-256 is fetched from the provider once, and each thread keeps a digest context: an
 * implicit fetch and a fresh context per call cost more than hashing a key (every request
 * with a key hashes it). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

static _Thread_local EVP_MD_CTX *sha256_ctx;

static void sha256_ctx_free(void *ctx) { EVP_MD_CTX_free(ctx); }

static pthread_key_t sha256_ctx_key;
static pthread_once_t sha256_ctx_key_once = PTHREAD_ONCE_INIT;

static void sha256_ctx_key_make(void) { (void)pthread_key_create(&sha256_ctx_key, sha256_ctx_free); }

void cm_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int outlen = 32;
    pthread_once(&sha256_once, sha256_fetch);
    if (sha256_ctx == NULL && sha256_md != NULL) {
        pthread_once(&sha256_ctx_key_once, sha256_ctx_key_make);
        sha256_ctx = EVP_MD_CTX_new();
        if (sha256_ctx != NULL)
            (void)pthread_setspecific(sha256_ctx_key, sha256_ctx); /* freed at thread exit */
    }
    if (sha256_ctx == NULL || EVP_DigestInit_ex2(sha256_ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(sha256_ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(sha256_ctx, out, &outlen) != 1)
        EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL); /* the plain way */
}

/* CRC-32 (IEEE 802.3, as zlib's), a byte at a time from a table made once. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_make(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
        crc_table[b] = c;
    }
}

uint32_t cm_crc32(const void *data, size_t len)
{
    pthread_once(&crc_once, crc_table_make);
    const uint8_t *p = data;
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        crc = (crc >> 8) ^ crc_table[(crc ^ p[i]) & 0xffu];
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
