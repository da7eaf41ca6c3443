/*
 * Redis connections for the meter: URL parsing (redis:// and unix://), connect with a
 * timeout, AUTH and SELECT. The password is used only here and never logged.
 */
#include "meter/meter_int.h"

#include <stdlib.h>
#include <string.h>

struct redis_target {
    char host[256];
    char path[256];
    int port;
    char user[128];
    char pass[256];
    unsigned db;
};

static int parse_db(const char *s, unsigned *db)
{
    uint64_t v;
    if (cm_parse_u64(s, &v) != CM_OK || v > 10000)
        return CM_INVALID;
    *db = (unsigned)v;
    return CM_OK;
}

static int parse_userinfo(const char *s, size_t n, struct redis_target *t)
{
    const char *colon = memchr(s, ':', n);
    size_t ul = colon ? (size_t)(colon - s) : 0;
    const char *pw = colon ? colon + 1 : s;
    size_t pl = colon ? n - ul - 1 : n;
    if (ul >= sizeof t->user || pl >= sizeof t->pass)
        return CM_INVALID;
    memcpy(t->user, s, ul);
    t->user[ul] = '\0';
    memcpy(t->pass, pw, pl);
    t->pass[pl] = '\0';
    return CM_OK;
}

static int parse_url(const char *url, struct redis_target *t)
{
    memset(t, 0, sizeof *t);
    t->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        char buf[CM_URL_MAX];
        if (cm_copy(buf, sizeof buf, url + 7) != CM_OK)
            return CM_INVALID;
        char *q = strchr(buf, '?');
        if (q != NULL) {
            *q++ = '\0';
            if (strncmp(q, "db=", 3) != 0 || parse_db(q + 3, &t->db) != CM_OK)
                return CM_INVALID;
        }
        return buf[0] == '/' && cm_copy(t->path, sizeof t->path, buf) == CM_OK ? CM_OK
                                                                                : CM_INVALID;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return CM_INVALID;
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    if (at != NULL) {
        if (parse_userinfo(p, (size_t)(at - p), t) != CM_OK)
            return CM_INVALID;
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hl);
    if (colon != NULL) {
        char port[8];
        size_t pl = hl - (size_t)(colon - p) - 1;
        uint64_t v;
        if (pl == 0 || pl >= sizeof port)
            return CM_INVALID;
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
        if (cm_parse_u64(port, &v) != CM_OK || v == 0 || v > 65535)
            return CM_INVALID;
        t->port = (int)v;
        hl = (size_t)(colon - p);
    }
    if (hl == 0 || hl >= sizeof t->host)
        return CM_INVALID;
    memcpy(t->host, p, hl);
    t->host[hl] = '\0';
    if (slash != NULL && slash[1] != '\0' && parse_db(slash + 1, &t->db) != CM_OK)
        return CM_INVALID;
    return CM_OK;
}

static int expect_ok(redisContext *c, redisReply *r, const char *what, char *err, size_t errlen)
{
    int rc = CM_OK;
    if (r == NULL) {
        cm_fmt(err, errlen, "Redis %s failed: %s", what, c->errstr);
        rc = CM_UNAVAIL;
    } else if (r->type == REDIS_REPLY_ERROR) {
        cm_fmt(err, errlen, "Redis %s refused: %.200s", what, r->str);
        rc = CM_ERR;
    }
    freeReplyObject(r);
    return rc;
}

redisContext *meter_redis_connect(const char *url, unsigned timeout_ms, char *err,
                                  size_t errlen)
{
    struct redis_target t;
    if (parse_url(url, &t) != CM_OK) {
        cm_fmt(err, errlen, "HUBMETER_REDIS_URL must be redis://[:password@]host[:port][/db] "
                            "or unix:///path[?db=N]");
        return NULL;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = t.path[0] ? redisConnectUnixWithTimeout(t.path, tv)
                                : redisConnectWithTimeout(t.host, t.port, tv);
    if (c == NULL || c->err) {
        cm_fmt(err, errlen, "cannot connect to Redis at %s: %s", t.path[0] ? t.path : t.host,
               c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    int rc = CM_OK;
    if (t.pass[0] != '\0') {
        redisReply *r = t.user[0] ? redisCommand(c, "AUTH %s %s", t.user, t.pass)
                                  : redisCommand(c, "AUTH %s", t.pass);
        rc = expect_ok(c, r, "AUTH", err, errlen);
    }
    if (rc == CM_OK && t.db != 0)
        rc = expect_ok(c, redisCommand(c, "SELECT %u", t.db), "SELECT", err, errlen);
    memset(t.pass, 0, sizeof t.pass);
    if (rc != CM_OK) {
        redisFree(c);
        return NULL;
    }
    return c;
}
