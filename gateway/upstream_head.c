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

static bool named(const char *name, const char *want) { return strcasecmp(name, want) == 0; }

/* What a header name is to the gateway, from its length first (every request and every
 * response goes through here, header by header): hop-by-hop (RFC 9110 §7.6.1) and the
 * names the gateway reads, drops or sets itself. */
static enum header_kind classify(const char *name, size_t n)
{
    switch (n) {
    case 2: if (named(name, "TE")) return HK_HOP; break;
    case 3: if (named(name, "Via")) return HK_VIA; break;
    case 4:
        if (named(name, "Date")) return HK_DATE;
        if (named(name, "Host")) return HK_HOST;
        if (named(name, "ETag")) return HK_ETAG;
        if (named(name, "Link")) return HK_LINK;
        break;
    case 6:
        if (named(name, "Accept")) return HK_ACCEPT;
        if (named(name, "Expect")) return HK_EXPECT;
        break;
    case 7: if (named(name, "Trailer") || named(name, "Upgrade")) return HK_HOP; break;
    case 9: if (named(name, "X-Api-Key")) return HK_API_KEY; break;
    case 10: if (named(name, "Connection") || named(name, "Keep-Alive")) return HK_HOP; break;
    case 13: if (named(name, "Authorization")) return HK_AUTHORIZATION; break;
    case 14: if (named(name, "Content-Length")) return HK_CONTENT_LENGTH; break;
    case 16: if (named(name, "Proxy-Connection")) return HK_HOP; break;
    case 17: if (named(name, "Transfer-Encoding")) return HK_HOP; break;
    case 18: if (named(name, "Proxy-Authenticate")) return HK_HOP; break;
    case 19: if (named(name, "Proxy-Authorization")) return HK_HOP; break;
    default: break;
    }
    if (n >= 12 && strncasecmp(name, "X-Forwarded-", 12) == 0)
        return HK_FORWARDED;
    if (n >= 6 && strncasecmp(name, "X-Xet-", 6) == 0)
        return HK_XET;
    return HK_OTHER;
}

/* The response head's text lives in blocks owned by the stream, freed with it: one
 * allocation for a typical head instead of two per header. */
#define HEAD_BLOCK 4000

struct head_block {
    struct head_block *next;
    size_t used, cap;
    char data[];
};

/* A NUL-terminated copy of p[0..n) in the stream's blocks; NULL when out of memory. */
static char *keep(struct stream *s, const char *p, size_t n)
{
    struct head_block *b = s->head_blocks;
    if (b == NULL || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > HEAD_BLOCK ? n + 1 : HEAD_BLOCK;
        b = cap == HEAD_BLOCK ? gw_worker_mem(s->worker, GW_MEM_HEAD_BLOCK, sizeof *b + cap)
                              : malloc(sizeof *b + cap);
        if (b == NULL)
            return NULL;
        b->next = s->head_blocks;
        b->used = 0;
        b->cap = cap;
        s->head_blocks = b;
    }
    char *out = b->data + b->used;
    memcpy(out, p, n);
    out[n] = '\0';
    b->used += n + 1;
    return out;
}

void gw_up_free_headers(struct stream *s)
{
    while (s->head_blocks != NULL) {
        struct head_block *b = s->head_blocks;
        s->head_blocks = b->next;
        if (b->cap == HEAD_BLOCK)
            gw_worker_mem_give(s->worker, GW_MEM_HEAD_BLOCK, b);
        else
            free(b);
    }
    s->n_headers = 0;
}

/* A new response starts. After a followed redirect the hub's own headers of the redirect
 * (X-Repo-Commit, X-Linked-Size, X-Linked-Etag…) are kept: clients such as huggingface_hub
 * need them, and the storage host that answers next does not send them. (The text of the
 * others stays in the blocks until the stream ends: at most 5 redirects.) */
static void next_response(struct stream *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->n_headers; i++) {
        struct header *h = &s->headers[i];
        if (s->follow &&
            (strncasecmp(h->name, "X-Repo-", 7) == 0 || strncasecmp(h->name, "X-Linked-", 9) == 0)) {
            h->carried = true;
            s->headers[kept++] = *h;
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
    h->name = keep(s, data, nl);
    h->value = h->name ? keep(s, v, (size_t)(data + len - v)) : NULL;
    if (h->value == NULL)
        return 0; /* out of memory: abort the transfer */
    h->kind = classify(h->name, nl);
    s->n_headers++;
    if (h->kind == HK_CONTENT_LENGTH) {
        uint64_t cl;
        s->has_length = cm_parse_u64(h->value, &cl) == CM_OK;
        s->length = cl;
    }
    return n;
}

/* Where the request head for the upstream goes: curl's header list, or the text of
 * hubmeter's own client. */
struct head_out {
    struct stream *s;
    struct cm_buf *text; /* NULL: curl's list (s->out_headers) */
    bool oom, accept;
};

/* Adds "name: value"; for curl, value NULL adds "name:" (which tells it to send no such
 * header), and the text simply leaves it out. */
static void emit(struct head_out *o, const char *name, const char *value)
{
    if (o->text != NULL) {
        if (value == NULL)
            return;
        cm_buf_str(o->text, name);
        cm_buf_str(o->text, ": ");
        cm_buf_str(o->text, value);
        cm_buf_str(o->text, "\r\n");
        return;
    }
    size_t n = strlen(name) + 3 + (value ? strlen(value) : 0);
    char small[1024];
    char *line = n <= sizeof small ? small : malloc(n);
    if (line == NULL) {
        o->oom = true;
        return;
    }
    cm_fmt(line, n, value ? "%s: %s" : "%s:", name, value ? value : "");
    struct curl_slist *l = curl_slist_append(o->s->out_headers, line); /* (copies it) */
    if (line != small)
        free(line);
    if (l == NULL)
        o->oom = true;
    else
        o->s->out_headers = l;
}

static enum MHD_Result forward_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    struct head_out *o = cls;
    /* Never forward the client's credential, nor what the gateway sets itself. */
    switch (classify(key, strlen(key))) {
    case HK_HOP: case HK_AUTHORIZATION: case HK_API_KEY: case HK_HOST: case HK_CONTENT_LENGTH:
    case HK_EXPECT: case HK_FORWARDED: case HK_VIA:
        return MHD_YES;
    case HK_ACCEPT: {
        /* A hub answers a client that accepts Xet file info with that info instead of the
         * file; on a metered route the gateway strips the Xet media types. */
        char accept[4096];
        if (o->s->follow && value != NULL && strcasestr(value, "application/vnd.xet-") != NULL) {
            gw_accept_without_xet(value, accept, sizeof accept);
            if (accept[0] == '\0')
                return MHD_YES;
            value = accept;
        }
        o->accept = true;
        emit(o, key, value ? value : "");
        return MHD_YES;
    }
    default:
        emit(o, key, value ? value : "");
        return MHD_YES;
    }
}

static int request_headers(struct stream *s, struct MHD_Connection *c, struct head_out *o)
{
    const struct hm_config *cfg = s->req->gw->cfg;
    MHD_get_connection_values(c, MHD_HEADER_KIND, forward_header, o);
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    emit(o, "X-Forwarded-For", s->req->client_ip);
    emit(o, "X-Forwarded-Proto", "http");
    if (host != NULL)
        emit(o, "X-Forwarded-Host", host);
    emit(o, "Via", "1.1 hubmeter");
    emit(o, "Expect", NULL);
    if (cfg->upstream_authorization[0] != '\0')
        emit(o, "Authorization", cfg->upstream_authorization);
    return o->oom || (o->text != NULL && o->text->overflow) ? CM_ERR : CM_OK;
}

int gw_up_request_headers(struct stream *s, struct MHD_Connection *c)
{
    struct head_out o = {.s = s};
    return request_headers(s, c, &o);
}

int gw_up_request_text(struct stream *s, struct MHD_Connection *c, struct cm_buf *text,
                       bool *accept)
{
    struct head_out o = {.s = s, .text = text};
    int rc = request_headers(s, c, &o);
    *accept = o.accept;
    return rc;
}

void gw_up_response_headers(struct stream *s, struct MHD_Response *resp)
{
    for (size_t i = 0; i < s->n_headers; i++) {
        const struct header *h = &s->headers[i];
        enum header_kind k = h->kind;
        if (k == HK_HOP || k == HK_CONTENT_LENGTH || k == HK_DATE ||
            (h->carried && answered_itself(s, h->name)))
            continue;
        /* On a metered route, Xet hints would send clients around the gateway. */
        if (s->follow && (k == HK_XET || (k == HK_LINK && strstr(h->value, "xet-") != NULL)))
            continue;
        MHD_add_response_header(resp, h->name, h->value);
        if (k == HK_ETAG)
            cm_copy(s->req->etag, sizeof s->req->etag, h->value);
    }
    MHD_add_response_header(resp, "Via", "1.1 hubmeter");
}
