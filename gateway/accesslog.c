/*
 * The access log: one structured line per request, for any log pipeline, as logfmt
 * (ts=… level=info event=request key=value…, the default) or as one JSON object
 * (HUBMETER_ACCESS_LOG_FORMAT=json). Fields: time, method, status, body bytes delivered,
 * whether the response completed, org, key prefix (never the key), client, repo,
 * duration, upstream status and latency, and the gateway's decision. Owns nothing else.
 */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "allow" for a request sent upstream ("allow_local" when its quota was decided from
 * local budgets, "shadow_refused" when a shadow plan would have refused it), the error
 * code of a gateway-made answer ("invalid_key", "upstream_timeout", a quota refusal's
 * code…), "endpoint" for /-/. */
static const char *decision(const struct gw_req *req)
{
    if (req->error_code[0] != '\0')
        return req->error_code;
    if (!req->metered)
        return "endpoint";
    if (req->quota_decided && req->quota.would_refuse)
        return "shadow_refused"; /* a shadow plan's refusal, not made */
    if (req->quota_decided && req->quota.degraded)
        return "allow_local"; /* decided from local budgets: Redis unavailable */
    return "allow";
}

static void now_rfc3339_ms(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    cm_fmt(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* A logfmt value: "-" when empty, quoted (with \" and \\) when it holds a space, a quote,
 * '=' or a control character, else as is. */
static void logfmt_value(char *out, size_t len, const char *v)
{
    if (v == NULL || v[0] == '\0') {
        cm_copy(out, len, "-");
        return;
    }
    bool quote = false;
    for (const char *p = v; *p && !quote; p++)
        quote = *p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20;
    if (!quote) {
        cm_copy(out, len, v);
        return;
    }
    size_t o = 0;
    out[o++] = '"';
    for (const char *p = v; *p && o + 4 < len; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = (unsigned char)*p < 0x20 ? ' ' : *p;
    }
    out[o++] = '"';
    out[o] = '\0';
}

static void log_json(const struct gw_req *req, unsigned status, uint64_t delivered,
                     bool complete, long long ms)
{
    char ts[32];
    now_rfc3339_ms(ts, sizeof ts);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:b, s:s?, s:s?, s:s, s:s?, s:I, "
                          "s:o, s:o, s:s}",
                          "ts", ts, "level", "info", "event", "request", "method", req->method,
                          "status", (int)status, "bytes", (json_int_t)delivered, "complete",
                          complete, "org", req->id.org_id ? req->id.org_slug : NULL, "key",
                          req->key_display[0] ? req->key_display : NULL, "client",
                          req->client_ip, "repo", req->repo[0] ? req->repo : NULL,
                          "duration_ms", (json_int_t)ms, "upstream_status",
                          req->upstream_status ? json_integer(req->upstream_status) : json_null(),
                          "upstream_ms",
                          req->upstream_ms >= 0 ? json_integer(req->upstream_ms) : json_null(),
                          "decision", decision(req));
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    if (text != NULL)
        cm_log_line(CM_LOG_INFO, text);
    free(text);
}

void gw_access_log(const struct gw_req *req, unsigned status, uint64_t delivered, bool complete)
{
    long long ms = (long long)((cm_now_us() - req->start_us) / 1000);
    if (ms < 0)
        ms = 0;
    if (req->gw->cfg->access_log_json) {
        log_json(req, status, delivered, complete, ms);
        return;
    }
    char org[140], repo[340], method[20];
    logfmt_value(org, sizeof org, req->id.org_id ? req->id.org_slug : NULL);
    logfmt_value(repo, sizeof repo, req->repo);
    logfmt_value(method, sizeof method, req->method);
    cm_log(CM_LOG_INFO, "request",
           "method=%s status=%u bytes=%llu complete=%s org=%s key=%s client=%s repo=%s "
           "duration_ms=%lld upstream_status=%u upstream_ms=%lld decision=%s",
           method, status, (unsigned long long)delivered, complete ? "yes" : "no", org,
           req->key_display[0] ? req->key_display : "-", req->client_ip, repo, ms,
           req->upstream_status, (long long)req->upstream_ms, decision(req));
}
