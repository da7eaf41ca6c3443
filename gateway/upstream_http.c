/*
 * The HTTP upstream: forwards a request with libcurl and streams the response back
 * through libmicrohttpd with a bounded buffer. MHD pulls (content reader) and curl is
 * pumped only when the buffer is empty, pausing when it is full, so a slow client slows
 * the upstream read instead of filling memory. The client's credential is never
 * forwarded; hop-by-hop headers are dropped both ways.
 */
#include "gateway/gw_int.h"
#include "gateway/transfer.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STREAM_BUFFER (512 * 1024)
#define HEADER_MAX 100

struct header {
    char *name, *value;
    bool carried; /* from a redirect the gateway followed */
};

struct stream {
    struct gw_req *req; /* valid while MHD may call the reader (until completion) */
    CURLM *multi;
    CURL *easy;
    struct curl_slist *out_headers;
    char *buf;
    size_t start, len; /* unread bytes are buf[start .. start+len) */
    bool head_done, done, paused;
    bool watch_client; /* the client's socket is polled while waiting on the upstream */
    CURLcode result;
    long status;
    struct header headers[HEADER_MAX];
    size_t n_headers;
    bool has_length;
    uint64_t length, delivered;
    int64_t idle_ms, first_byte_ms;
    bool follow; /* redirects are followed inside the gateway (metered route) */
    /* Request body (POST, PUT, …): the chunk libmicrohttpd gave us, fed to curl's reader. */
    const char *in_ptr;
    size_t in_len;
    bool uploading, in_eof, read_paused, upload_dropped;
    /* While MHD waits in read_body, curl writes straight into MHD's buffer (one copy
     * fewer); what does not fit goes to buf. */
    char *direct;
    size_t direct_max, direct_len;
};

/* What pump() waits for. */
enum want { WANT_HEAD, WANT_BODY, WANT_INPUT_TAKEN };

void gw_upstream_http_global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void gw_upstream_http_global_cleanup(void) { curl_global_cleanup(); }

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

static void free_headers(struct stream *s)
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

static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
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
        if (s->status >= 200 && !(s->follow && redirect)) /* curl fetches the target next */
            s->head_done = true;
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

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct stream *s = userdata;
    size_t n = size * nmemb;
    if (s->direct != NULL && s->len == 0 && s->direct_len < s->direct_max) {
        size_t k = n < s->direct_max - s->direct_len ? n : s->direct_max - s->direct_len;
        memcpy(s->direct + s->direct_len, data, k);
        s->direct_len += k;
        if (k == n)
            return n;
        if (n - k > STREAM_BUFFER) { /* cannot happen: curl's buffer is smaller */
            s->direct_len -= k;
            s->paused = true;
            return CURL_WRITEFUNC_PAUSE;
        }
        memcpy(s->buf, data + k, n - k);
        s->start = 0;
        s->len = n - k;
        return n;
    }
    if (s->start > 0 && s->len > 0 && s->start + s->len + n > STREAM_BUFFER) {
        memmove(s->buf, s->buf + s->start, s->len);
        s->start = 0;
    } else if (s->len == 0) {
        s->start = 0;
    }
    if (s->start + s->len + n > STREAM_BUFFER) {
        s->paused = true; /* curl keeps this chunk and offers it again after unpause */
        return CURL_WRITEFUNC_PAUSE;
    }
    memcpy(s->buf + s->start + s->len, data, n);
    s->len += n;
    return n;
}

/* True when the client at fd has hung up (or its socket failed). */
static bool client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Runs curl until what is wanted happened (or the transfer ended): the response head,
 * body bytes to read, or the current request-body chunk taken. CM_OK then, CM_AGAIN
 * after the idle (or, before the head, the first-byte) timeout without progress, CM_ERR
 * when the client hung up meanwhile (its socket is watched too, so a gone client does
 * not keep the transfer waiting on a slow upstream). */
static int pump(struct stream *s, enum want want)
{
    int64_t deadline = cm_mono_ms() + (s->head_done ? s->idle_ms : s->first_byte_ms);
    for (;;) {
        int running = 0;
        curl_multi_perform(s->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(s->multi, &left)) != NULL)
            if (msg->msg == CURLMSG_DONE) {
                s->done = true;
                s->result = msg->data.result;
            }
        if (s->done || (want == WANT_HEAD && s->head_done) ||
            (want == WANT_BODY && (s->len > 0 || s->direct_len > 0)) ||
            (want == WANT_INPUT_TAKEN && (s->in_len == 0 || s->head_done)))
            return CM_OK;
        int64_t left_ms = deadline - cm_mono_ms();
        if (left_ms <= 0 || atomic_load(&s->req->gw->stopping))
            return CM_AGAIN;
        struct curl_waitfd client = {.fd = s->req->fd, .events = CURL_WAIT_POLLIN};
        bool watch = s->watch_client && s->req->fd >= 0;
        curl_multi_poll(s->multi, watch ? &client : NULL, watch ? 1 : 0,
                        (int)(left_ms < 1000 ? left_ms : 1000), NULL);
        if (watch && (client.revents & CURL_WAIT_POLLIN)) {
            if (client_gone(s->req->fd))
                return CM_ERR;
            s->watch_client = false; /* pipelined or body bytes: read after this, not now */
        }
    }
}

static size_t on_read(char *out, size_t size, size_t nitems, void *userdata)
{
    struct stream *s = userdata;
    size_t n = size * nitems < s->in_len ? size * nitems : s->in_len;
    if (n > 0) {
        memcpy(out, s->in_ptr, n);
        s->in_ptr += n;
        s->in_len -= n;
        return n;
    }
    if (s->in_eof)
        return 0;
    s->read_paused = true; /* resumed when the next chunk arrives */
    return CURL_READFUNC_PAUSE;
}

/* Hands n bytes to MHD once the org's byte bucket allows them (see admission.c). */
static ssize_t paced(struct stream *s, size_t n)
{
    if (gw_quota_flow(s->req, n) == CM_OK)
        return (ssize_t)n;
    s->req->stream_failed = true; /* the client hung up while the stream was held back */
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t read_body(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct stream *s = cls;
    for (;;) {
        if (s->len > 0) {
            size_t n = s->len < max ? s->len : max;
            memcpy(out, s->buf + s->start, n);
            s->start += n;
            s->len -= n;
            s->delivered += n;
            s->req->bytes_sent += n;
            gw_checkpoint(s->req);
            return paced(s, n);
        }
        if (s->done) {
            if (s->result == CURLE_OK && (!s->has_length || s->delivered == s->length))
                return MHD_CONTENT_READER_END_OF_STREAM;
            cm_log(CM_LOG_WARN, "upstream_body_failed", "error=\"%s\" delivered=%llu",
                   curl_easy_strerror(s->result), (unsigned long long)s->delivered);
            s->req->stream_failed = true;
            return MHD_CONTENT_READER_END_WITH_ERROR; /* close: never a truncated "success" */
        }
        s->direct = out;
        s->direct_max = max;
        s->direct_len = 0;
        int rc = CM_OK;
        if (s->paused) {
            s->paused = false;
            curl_easy_pause(s->easy, CURLPAUSE_CONT); /* may deliver data right here */
        } else {
            rc = pump(s, WANT_BODY);
        }
        s->direct = NULL;
        if (s->direct_len > 0) {
            s->delivered += s->direct_len;
            s->req->bytes_sent += s->direct_len;
            gw_checkpoint(s->req);
            return paced(s, s->direct_len);
        }
        if (rc == CM_ERR) {
            cm_log(CM_LOG_INFO, "client_gone", "delivered=%llu",
                   (unsigned long long)s->delivered);
            s->req->stream_failed = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (rc == CM_AGAIN) {
            cm_log(CM_LOG_WARN, "upstream_idle_timeout", "delivered=%llu",
                   (unsigned long long)s->delivered);
            s->req->stream_failed = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    if (s == NULL)
        return;
    /* The handles go back to this thread's cache; the upstream connection stays open
     * for the client's next request unless curl judged it unusable. */
    struct gw_transfer t = {.multi = s->multi, .easy = s->easy, .buf = s->buf};
    gw_transfer_give(&t);
    curl_slist_free_all(s->out_headers);
    free_headers(s);
    free(s);
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

static int build_request(struct stream *s, struct MHD_Connection *c, const char *url)
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
    CURL *e = s->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->out_headers);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->upstream_connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    if (strcmp(s->req->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (s->uploading) {
        /* The body streams from the client as it arrives; chunked when its size is unknown.
         * The gateway's own credential (if any) is never sent to another host: curl keeps
         * a custom Authorization header for the original host only. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        uint64_t size;
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, s->req->method);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, s);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                         cl != NULL && cm_parse_u64(cl, &size) == CM_OK ? (curl_off_t)size
                                                                         : (curl_off_t)-1);
    } else if (strcmp(s->req->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, s->req->method);
    }
    if (s->follow) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    }
    return CM_OK;
}

/* Builds the client response from the upstream's head; NULL when out of memory. */
static struct MHD_Response *make_response(struct stream *s)
{
    bool bodyless = s->status == 204 || s->status == 304;
    uint64_t size = bodyless ? 0 : s->has_length ? s->length : MHD_SIZE_UNKNOWN;
    struct MHD_Response *resp =
        bodyless ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
                 : MHD_create_response_from_callback(size, 64 * 1024, read_body, s, stream_free);
    if (resp == NULL)
        return NULL;
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
    return resp;
}

/* Queues the response whose head has arrived, or the JSON error of a failed transfer. */
static enum MHD_Result respond(struct gw_req *req, struct MHD_Connection *c, struct stream *s)
{
    req->stream = NULL;
    if (!s->head_done) {
        CURLcode r = s->done ? s->result : CURLE_OPERATION_TIMEDOUT;
        cm_log(CM_LOG_WARN, "upstream_failed", "error=\"%s\"", curl_easy_strerror(r));
        stream_free(s);
        if (r == CURLE_OPERATION_TIMEDOUT)
            return gw_reply_error(req, c, MHD_HTTP_GATEWAY_TIMEOUT, "upstream_timeout",
                                  "the upstream did not answer in time");
        if (r == CURLE_TOO_MANY_REDIRECTS)
            return gw_reply_error(req, c, MHD_HTTP_BAD_GATEWAY, "upstream_redirect_loop",
                                  "the upstream redirected too many times");
        return gw_reply_error(req, c, MHD_HTTP_BAD_GATEWAY, "upstream_unreachable",
                              "the upstream could not be reached");
    }
    req->upstream_status = (unsigned)s->status;
    req->upstream_ms = (cm_now_us() - req->start_us) / 1000;
    unsigned status = (unsigned)s->status;
    bool bodyless = status == 204 || status == 304;
    struct MHD_Response *resp = make_response(s);
    if (resp == NULL || bodyless)
        stream_free(s); /* a bodyless response does not own the stream */
    if (resp == NULL)
        return MHD_NO;
    return gw_reply(req, c, status, resp);
}

enum MHD_Result gw_upstream_http(struct gw_req *req, struct MHD_Connection *c, const char *url,
                                 bool with_body, bool follow)
{
    struct stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return MHD_NO;
    s->req = req;
    s->watch_client = true;
    s->idle_ms = req->gw->cfg->upstream_idle_timeout_ms;
    s->first_byte_ms = req->gw->cfg->upstream_first_byte_timeout_ms;
    s->uploading = with_body;
    s->follow = follow && !with_body;
    struct gw_transfer t;
    if (gw_transfer_take(&t, STREAM_BUFFER) != CM_OK) {
        free(s);
        return MHD_NO;
    }
    s->multi = t.multi, s->easy = t.easy, s->buf = t.buf;
    if (build_request(s, c, url) != CM_OK ||
        curl_multi_add_handle(s->multi, s->easy) != CURLM_OK) {
        stream_free(s);
        return gw_reply_error(req, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                              "cannot set up the upstream request");
    }
    req->stream = s;
    if (with_body)
        return MHD_YES; /* the body arrives in the next calls */
    if (pump(s, WANT_HEAD) == CM_ERR)
        return MHD_NO; /* the client hung up while the upstream was thinking */
    return respond(req, c, s);
}

enum MHD_Result gw_upstream_http_feed(struct gw_req *req, const char *data, size_t *size)
{
    struct stream *s = req->stream;
    if (s != NULL && !s->upload_dropped) {
        s->in_ptr = data;
        s->in_len = *size;
        if (s->read_paused) {
            s->read_paused = false;
            curl_easy_pause(s->easy, CURLPAUSE_CONT);
        }
        /* The upstream may answer (or fail) before taking the whole body: the rest of the
         * client's body is then read and dropped, and the answer is what the client gets. */
        int rc = pump(s, WANT_INPUT_TAKEN);
        if (rc == CM_ERR)
            return MHD_NO;
        if (rc != CM_OK || s->done || s->head_done)
            s->upload_dropped = s->in_len > 0 || s->done;
        s->in_len = 0;
    }
    *size = 0;
    return MHD_YES;
}

enum MHD_Result gw_upstream_http_finish(struct gw_req *req, struct MHD_Connection *c)
{
    struct stream *s = req->stream;
    if (s == NULL)
        return MHD_YES; /* already answered */
    s->in_eof = true;
    if (s->read_paused) {
        s->read_paused = false;
        curl_easy_pause(s->easy, CURLPAUSE_CONT);
    }
    if (pump(s, WANT_HEAD) == CM_ERR)
        return MHD_NO;
    return respond(req, c, s);
}

void gw_upstream_http_abandon(struct gw_req *req)
{
    stream_free(req->stream);
    req->stream = NULL;
}
