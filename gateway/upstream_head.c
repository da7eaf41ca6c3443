/*
 * The HTTP upstream's heads. Out: the client's request headers go to the upstream without
 * its credential (Authorization, X-Api-Key), without hop-by-hop headers and, on a metered
 * route, without Xet media types in Accept; X-Forwarded-For/-Proto/-Host, Via and the
 * gateway's own upstream credential (when configured) are added. In: the upstream's
 * response head is collected as curl reads it (status, headers, Content-Length; a
 * followed redirect's hub headers are carried to the final response) and handed to the
 * client without hop-by-hop headers and, on a metered route, without Xet hints.
 */
#include "gateway/upstream_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway itself owns. */
static bool hop_by_hop(const char *name)
{
    static const char *const names[] = {"Connection", "Keep-Alive", "Proxy-Connection",
                                        "Proxy-Authenticate", "Proxy-Authorization", "TE",
                                        "Trailer", "Transfer-Encoding", "Upgrade"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

void gw_up_free_headers(struct stream *s)
{
    for (size_t i = 0; i < s->n_headers; i++) {
        free(s->headers[i].name);
        free(s->headers[i].value);
    }
    s->n_headers = 0;
}

/* A new response starts. After a followed redirect the hub's own headers of the redirect
 * (X-Repo-Commit, X-Linked-Size, X-Linked-Etag…) are kept: clients such as huggingface_hub
 * need them, and the storage host that answers next does not send them. */
static void next_response(struct stream *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->n_headers; i++) {
        struct header *h = &s->headers[i];
        if (s->follow &&
            (strncasecmp(h->name, "X-Repo-", 7) == 0 || strncasecmp(h->name, "X-Linked-", 9) == 0)) {
            h->carried = true;
            s->headers[kept++] = *h;
        } else {
            free(h->name);
            free(h->value);
        }
    }
    s->n_headers = kept;
}

/* True when the final response has its own header of that name. */
static bool answered_itself(const struct stream *s, const char *name)
{
    for (size_t i = 0; i < s->n_headers; i++)
        if (!s->headers[i].carried && strcasecmp(s->headers[i].name, name) == 0)
            return true;
    return false;
}

size_t gw_up_on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct stream *s = userdata;
    size_t n = size * nitems, len = n;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new response (1xx, redirect) */
        next_response(s);
        const char *sp = memchr(data, ' ', len);
        s->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        s->has_length = false;
        return n;
    }
    if (len == 0) {
        bool redirect = s->status == 301 || s->status == 302 || s->status == 303 ||
                        s->status == 307 || s->status == 308;
        if (s->status >= 200 && !(s->follow && redirect)) { /* else curl fetches the target */
            s->head_done = true;
            s->last_data_ms = cm_mono_ms();
            if (s->req != NULL)
                gw_req_wake(s->req);
        }
        return n;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL || s->n_headers == HEADER_MAX)
        return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1;
    while (v < data + len && (*v == ' ' || *v == '\t'))
        v++;
    struct header *h = &s->headers[s->n_headers];
    h->carried = false;
    h->name = strndup(data, nl);
    h->value = strndup(v, (size_t)(data + len - v));
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return 0; /* out of memory: abort the transfer */
    }
    s->n_headers++;
    if (strcasecmp(h->name, "Content-Length") == 0) {
        uint64_t cl;
        s->has_length = cm_parse_u64(h->value, &cl) == CM_OK;
        s->length = cl;
    }
    return n;
}

struct forward_ctx {
    struct stream *s;
    bool oom;
};

static enum MHD_Result forward_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    struct forward_ctx *fc = cls;
    /* Never forward the client's credential, nor what the gateway sets itself. */
    if (hop_by_hop(key) || strcasecmp(key, "Authorization") == 0 ||
        strcasecmp(key, "X-Api-Key") == 0 || strcasecmp(key, "Host") == 0 ||
        strcasecmp(key, "Content-Length") == 0 || strcasecmp(key, "Expect") == 0 ||
        strncasecmp(key, "X-Forwarded-", 12) == 0 || strcasecmp(key, "Via") == 0)
        return MHD_YES;
    /* A hub answers a client that accepts Xet file info with that info instead of the
     * file; on a metered route the gateway strips the Xet headers it needs. */
    char accept[4096];
    if (fc->s->follow && value != NULL && strcasecmp(key, "Accept") == 0 &&
        strcasestr(value, "application/vnd.xet-") != NULL) {
        gw_accept_without_xet(value, accept, sizeof accept);
        if (accept[0] == '\0')
            return MHD_YES;
        value = accept;
    }
    char line[8192];
    if (cm_fmt(line, sizeof line, "%s: %s", key, value ? value : "") != CM_OK)
        return MHD_YES;
    struct curl_slist *l = curl_slist_append(fc->s->out_headers, line);
    if (l == NULL)
        fc->oom = true;
    else
        fc->s->out_headers = l;
    return MHD_YES;
}

/* Adds "name: value", or "name:" (which tells curl to send no such header) for NULL. */
static int add_header(struct stream *s, const char *name, const char *value)
{
    char line[1024];
    if (cm_fmt(line, sizeof line, value ? "%s: %s" : "%s:", name, value ? value : "") != CM_OK)
        return CM_ERR;
    struct curl_slist *l = curl_slist_append(s->out_headers, line);
    if (l == NULL)
        return CM_ERR;
    s->out_headers = l;
    return CM_OK;
}

int gw_up_request_headers(struct stream *s, struct MHD_Connection *c)
{
    const struct hm_config *cfg = s->req->gw->cfg;
    struct forward_ctx fc = {.s = s};
    MHD_get_connection_values(c, MHD_HEADER_KIND, forward_header, &fc);
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (fc.oom || add_header(s, "X-Forwarded-For", s->req->client_ip) != CM_OK ||
        add_header(s, "X-Forwarded-Proto", "http") != CM_OK ||
        (host != NULL && add_header(s, "X-Forwarded-Host", host) != CM_OK) ||
        add_header(s, "Via", "1.1 hubmeter") != CM_OK || add_header(s, "Expect", NULL) != CM_OK ||
        (cfg->upstream_authorization[0] != '\0' &&
         add_header(s, "Authorization", cfg->upstream_authorization) != CM_OK))
        return CM_ERR;
    return CM_OK;
}

void gw_up_response_headers(struct stream *s, struct MHD_Response *resp)
{
    for (size_t i = 0; i < s->n_headers; i++) {
        const struct header *h = &s->headers[i];
        if (hop_by_hop(h->name) || strcasecmp(h->name, "Content-Length") == 0 ||
            strcasecmp(h->name, "Date") == 0 || (h->carried && answered_itself(s, h->name)))
            continue;
        /* On a metered route, Xet hints would send clients around the gateway. */
        if (s->follow && (strncasecmp(h->name, "X-Xet-", 6) == 0 ||
                          (strcasecmp(h->name, "Link") == 0 && strstr(h->value, "xet-") != NULL)))
            continue;
        MHD_add_response_header(resp, h->name, h->value);
        if (strcasecmp(h->name, "ETag") == 0)
            cm_copy(s->req->etag, sizeof s->req->etag, h->value);
    }
    MHD_add_response_header(resp, "Via", "1.1 hubmeter");
}
