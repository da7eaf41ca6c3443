/*
 * The HTTP upstream: forwards a request with libcurl (on the worker's multi handle, driven
 * by its event loop) — or, for plain GET and HEAD to an http:// upstream, with hubmeter's
 * own client (upstream_h1.c), which fills the same stream — and streams the response back
 * through libmicrohttpd with a bounded buffer. curl fills the buffer and pauses when it is full; MHD drains it (content
 * reader) and unpauses curl when it is empty, so a slow client slows the upstream read
 * instead of filling memory. A connection waiting for the upstream's head, for body
 * bytes, for room in its upload buffer or for its org's byte bucket is suspended and
 * woken by curl's callbacks or its timer. The heads (what is forwarded, what comes back)
 * are upstream_head.c's.
 */
#include "gateway/upstream_int.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void gw_upstream_http_global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void gw_upstream_http_global_cleanup(void) { curl_global_cleanup(); }

/* Stops curl reading once buf could not take a whole next chunk (a chunk refused with
 * CURL_WRITEFUNC_PAUSE is copied, into a fresh allocation, inside curl); read_body lets
 * it go on when buf is drained. Not before the head is answered: a small body must be
 * able to arrive whole first (it then goes out with the head, or is held back whole
 * while the org's byte bucket is in debt). */
static void hold_if_full(struct stream *s)
{
    if (s->streaming && !s->paused && STREAM_BUFFER - s->len < UPSTREAM_READ) {
        s->paused = true;
        curl_easy_pause(s->easy, s->read_paused ? CURLPAUSE_ALL : CURLPAUSE_RECV);
    }
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct stream *s = userdata;
    size_t n = size * nmemb;
    s->last_data_ms = cm_mono_ms();
    if (s->direct != NULL && s->len == 0 && s->direct_len < s->direct_max) {
        size_t k = n < s->direct_max - s->direct_len ? n : s->direct_max - s->direct_len;
        memcpy(s->direct + s->direct_len, data, k);
        s->direct_len += k;
        if (s->direct_parked && s->req != NULL)
            gw_req_wake(s->req); /* its reader waits for these bytes */
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
        hold_if_full(s);
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
    hold_if_full(s);
    if (s->req != NULL)
        gw_req_wake(s->req); /* its reader waits for these bytes */
    return n;
}

static size_t on_read(char *out, size_t size, size_t nitems, void *userdata)
{
    struct stream *s = userdata;
    size_t n = size * nitems < s->up_len ? size * nitems : s->up_len;
    if (n > 0) {
        memcpy(out, s->up + s->up_start, n);
        s->up_start += n;
        s->up_len -= n;
        if (s->up_len == 0)
            s->up_start = 0;
        if (s->req != NULL)
            gw_req_wake(s->req); /* the handler waits for room for the client's next bytes */
        return n;
    }
    if (s->in_eof)
        return 0;
    s->read_paused = true; /* resumed when the next chunk arrives */
    return CURL_READFUNC_PAUSE;
}

/* n bytes go to the client: counted, checkpointed, charged (the org's byte bucket may
 * then hold the stream for a while: see read_body). */
static ssize_t deliver(struct stream *s, size_t n)
{
    struct gw_req *req = s->req;
    s->delivered += n;
    s->gave_ms = cm_mono_ms();
    req->bytes_sent += n;
    gw_checkpoint(req);
    uint64_t ahead = s->charged_ahead < n ? s->charged_ahead : n;
    s->charged_ahead -= ahead;
    int64_t wait_us = gw_quota_charge(req, n - ahead);
    if (wait_us > 0)
        s->paced_until_ms = cm_mono_ms() + (wait_us + 999) / 1000;
    return (ssize_t)n;
}

static ssize_t fail(struct stream *s)
{
    s->req->stream_failed = true; /* close: never a truncated "success" */
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* How much of libmicrohttpd's free buffer (max) the upstream's next bytes may fill: all
 * of it for a client that took the last bytes at once (libmicrohttpd asks again only once
 * it sent everything it had), SLOW_READ for the first read and for a slow client. */
static size_t reader_room(const struct stream *s, size_t max)
{
    bool fast = s->gave_ms != 0 && cm_mono_ms() - s->gave_ms <= FAST_DRAIN_MS;
    return fast || max <= SLOW_READ ? max : SLOW_READ;
}

static ssize_t read_body(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct stream *s = cls;
    struct gw_req *req = s->req;
    if (req == NULL)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (req->client_hung_up)
        return fail(s);
    if (s->direct_parked) { /* curl may have written into out while the connection waited */
        size_t got = s->direct_len;
        bool same = s->direct == out && got <= max;
        s->direct_parked = false;
        s->direct = NULL;
        s->direct_len = 0;
        if (got > 0 && !same) { /* not how libmicrohttpd works: never send a wrong byte */
            cm_log(CM_LOG_ERROR, "stream_buffer_moved", "delivered=%llu",
                   (unsigned long long)s->delivered);
            return fail(s);
        }
        if (got > 0)
            return deliver(s, got);
    }
    int64_t now = cm_mono_ms();
    if (s->paced_until_ms > now) { /* the org's byte bucket is in debt: wait, never spin */
        gw_req_suspend(req, s->paced_until_ms);
        return 0;
    }
    if (s->h1 != NULL && s->len == 0 && !s->done) { /* drained: hubmeter's client reads on */
        s->direct = out;
        s->direct_max = reader_room(s, max);
        s->direct_len = 0;
        gw_h1_resume(s); /* may deliver right here, into out */
        s->direct = NULL;
        if (s->direct_len > 0)
            return deliver(s, s->direct_len);
    }
    if (s->len == 0 && !s->done && s->paused) { /* drained: let curl go on */
        s->paused = false;
        s->direct = out;
        s->direct_max = reader_room(s, max);
        s->direct_len = 0;
        curl_easy_pause(s->easy, CURLPAUSE_CONT); /* may deliver right here, into out */
        s->direct = NULL;
        if (s->direct_len > 0)
            return deliver(s, s->direct_len);
    }
    if (s->len > 0) {
        size_t n = s->len < max ? s->len : max;
        memcpy(out, s->buf + s->start, n);
        s->start += n;
        s->len -= n;
        return deliver(s, n);
    }
    if (s->done) {
        if (s->result == CURLE_OK && (!s->has_length || s->delivered == s->length))
            return MHD_CONTENT_READER_END_OF_STREAM;
        cm_log(CM_LOG_WARN, "upstream_body_failed", "error=\"%s\" delivered=%llu",
               curl_easy_strerror(s->result), (unsigned long long)s->delivered);
        return fail(s);
    }
    if (now - s->last_data_ms >= s->idle_ms) {
        cm_log(CM_LOG_WARN, "upstream_idle_timeout", "delivered=%llu",
               (unsigned long long)s->delivered);
        return fail(s);
    }
    s->direct = out; /* curl's next bytes go straight there and wake it */
    s->direct_max = reader_room(s, max);
    s->direct_len = 0;
    s->direct_parked = true;
    gw_req_suspend(req, s->last_data_ms + s->idle_ms);
    return 0;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    if (s == NULL)
        return;
    if (s->in_multi) /* the upstream connection stays in the worker's cache for reuse */
        curl_multi_remove_handle(gw_worker_multi(s->worker), s->easy);
    gw_worker_easy_give(s->worker, s->easy);
    gw_h1_abandon(s);
    gw_worker_buffer_give(s->worker, s->buf);
    free(s->up);
    curl_slist_free_all(s->out_headers);
    gw_up_free_headers(s);
    gw_worker_mem_give(s->worker, GW_MEM_STREAM, s);
}

static int build_request(struct stream *s, struct MHD_Connection *c, const char *url)
{
    const struct hm_config *cfg = s->req->gw->cfg;
    if (gw_up_request_headers(s, c) != CM_OK)
        return CM_ERR;
    CURL *e = s->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->out_headers);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->upstream_connect_timeout_ms);
    /* curl allocates this buffer for every transfer and frees it after: a HEAD (clients
     * ask one per file for its metadata) reads only a head, and needs no 512 KiB. */
    bool head = strcmp(s->req->method, "HEAD") == 0;
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)(head ? HEAD_READ : UPSTREAM_READ));
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, gw_up_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    if (head) {
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

/* libmicrohttpd is done with a small body's block (on the worker's thread: it is kept). */
static void small_body_done(void *block)
{
    gw_worker_mem_give(gw_worker_self(), GW_MEM_SMALL_BODY, block);
}

static struct MHD_Response *whole_response(struct stream *s)
{
    void *block = s->len <= SMALL_BODY
                      ? gw_worker_mem(s->worker, GW_MEM_SMALL_BODY, SMALL_BODY)
                      : NULL;
    if (block == NULL)
        return MHD_create_response_from_buffer(s->len, s->buf + s->start,
                                               MHD_RESPMEM_MUST_COPY);
    memcpy(block, s->buf + s->start, s->len);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        s->len, block, small_body_done, block);
    if (resp == NULL)
        small_body_done(block);
    return resp;
}

/* Builds the client response from the upstream's head; NULL when out of memory. */
static struct MHD_Response *make_response(struct stream *s, bool whole)
{
    bool bodyless = s->status == 204 || s->status == 304;
    uint64_t size = bodyless ? 0 : s->has_length ? s->length : MHD_SIZE_UNKNOWN;
    struct MHD_Response *resp =
        bodyless ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
        : whole  ? whole_response(s)
                 : MHD_create_response_from_callback(
                       size, size > LARGE_BODY ? LARGE_BLOCK : SEND_BLOCK, read_body, s,
                       stream_free);
    if (resp != NULL)
        gw_up_response_headers(s, resp);
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
    /* A small body that is all here goes out with the head in one buffer — unless the
     * org's byte bucket makes it wait (then the reader paces it; it is charged now). */
    bool whole = !bodyless && s->done && s->result == CURLE_OK && s->len <= WHOLE_MAX &&
                 s->has_length && s->len == s->length && strcmp(req->method, "HEAD") != 0;
    if (whole) {
        int64_t wait_us = gw_quota_charge(req, s->len);
        if (wait_us > 0) {
            s->charged_ahead = s->len;
            s->paced_until_ms = cm_mono_ms() + (wait_us + 999) / 1000;
            whole = false;
        }
    }
    struct MHD_Response *resp = make_response(s, whole);
    if (resp != NULL && whole) {
        s->delivered = s->len;
        req->bytes_sent = s->len;
    }
    if (resp == NULL || bodyless || whole)
        stream_free(s); /* the response does not read from the stream */
    else {
        req->live_stream = s; /* told when req ends, before the response is destroyed */
        s->streaming = true;
    }
    if (resp == NULL)
        return MHD_NO;
    return gw_reply(req, c, status, resp);
}

/* req's handler returns without an answer and looks for the upstream's head in the next
 * EARLY_POLLS rounds before suspending (see the end of gw_upstream_http). */
static enum MHD_Result look_in_next_rounds(struct gw_req *req, struct stream *s)
{
    req->early_polls = EARLY_POLLS;
    gw_worker_polling(s->worker);
    return MHD_YES;
}

enum MHD_Result gw_upstream_http(struct gw_req *req, struct MHD_Connection *c, const char *url,
                                 bool with_body, bool follow)
{
    /* Zeroed up to its header table, which is filled from the start (n_headers): a table
     * of 100 zeroed for every request was a tenth of a small request's allocations. */
    struct stream *s = gw_worker_mem(gw_worker_self(), GW_MEM_STREAM, sizeof *s);
    if (s == NULL)
        return MHD_NO;
    memset(s, 0, offsetof(struct stream, headers));
    s->req = req;
    s->worker = gw_worker_self();
    s->idle_ms = req->gw->cfg->upstream_idle_timeout_ms;
    s->first_byte_ms = req->gw->cfg->upstream_first_byte_timeout_ms;
    s->head_deadline_ms = cm_mono_ms() + s->first_byte_ms;
    s->uploading = with_body;
    s->follow = follow && !with_body;
    if (gw_h1_serves(req->method, with_body, s->follow)) {
        s->buf = gw_worker_buffer(s->worker);
        if (s->buf == NULL || gw_h1_start(s, c, req->method, url) != CM_OK) {
            stream_free(s);
            return gw_reply_error(req, c, MHD_HTTP_BAD_GATEWAY, "upstream_unreachable",
                                  "the upstream could not be reached");
        }
        req->stream = s;
        return look_in_next_rounds(req, s);
    }
    s->easy = gw_worker_easy(s->worker);
    s->buf = gw_worker_buffer(s->worker);
    if (s->easy == NULL || s->buf == NULL || (with_body && (s->up = malloc(UPLOAD_BUFFER)) == NULL)) {
        stream_free(s);
        return MHD_NO;
    }
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    if (build_request(s, c, url) != CM_OK ||
        curl_multi_add_handle(gw_worker_multi(s->worker), s->easy) != CURLM_OK) {
        stream_free(s);
        return gw_reply_error(req, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                              "cannot set up the upstream request");
    }
    s->in_multi = true;
    req->stream = s;
    if (with_body)
        return MHD_YES; /* the body arrives in the next calls */
    /* Not suspended at once: the handler is called again in the next loop rounds (the
     * connection stays on libmicrohttpd's ready list), and under load the upstream's head
     * has mostly come by then. A suspension costs two epoll_ctl calls (out of libmicrohttpd's
     * epoll set and, after the answer, back in) and a read that finds nothing; ~7 % more
     * small requests per second on this machine with 2 rounds (BENCH.md), and since the
     * loop waits up to 50 µs for events between them rather than turning at once
     * (gw_worker_polling), 3 rounds (EARLY_POLLS) use ~10 % less CPU per request than 2.
     * After them the connection is suspended until the head, a failure or the first-byte
     * timeout: the wait is bounded, never a spin. */
    return look_in_next_rounds(req, s);
}

void gw_upstream_http_done(CURL *easy, CURLcode result)
{
    struct stream *s = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&s);
    if (s == NULL)
        return;
    s->done = true;
    s->result = result;
    if (s->req != NULL)
        gw_req_wake(s->req);
}

/* True once the handler can answer: the head is there, the transfer ended, or the
 * first-byte timeout passed. */
static bool answerable(const struct stream *s)
{
    return s->head_done || s->done || cm_mono_ms() >= s->head_deadline_ms;
}

enum MHD_Result gw_upstream_http_resume(struct gw_req *req, struct MHD_Connection *c)
{
    struct stream *s = req->stream;
    if (req->client_hung_up)
        return MHD_NO; /* the client hung up while the upstream was thinking */
    if (s == NULL)
        return MHD_YES;
    if (answerable(s))
        return respond(req, c, s);
    if (req->early_polls > 0 && !req->suspended) {
        req->early_polls--;
        gw_worker_polling(s->worker);
        return MHD_YES;
    }
    req->early_polls = 0;
    gw_req_suspend(req, s->head_deadline_ms);
    return MHD_YES;
}

enum MHD_Result gw_upstream_http_feed(struct gw_req *req, const char *data, size_t *size)
{
    struct stream *s = req->stream;
    if (req->client_hung_up)
        return MHD_NO;
    /* The upstream may answer (or fail) before taking the whole body: the rest of the
     * client's body is then read and dropped, and the answer is what the client gets. */
    if (s == NULL || s->upload_dropped || s->done || s->head_done) {
        if (s != NULL)
            s->upload_dropped = true;
        *size = 0;
        return MHD_YES;
    }
    if (s->up_start > 0 && s->up_len > 0) {
        memmove(s->up, s->up + s->up_start, s->up_len);
        s->up_start = 0;
    }
    size_t room = UPLOAD_BUFFER - s->up_start - s->up_len;
    size_t take = *size < room ? *size : room;
    memcpy(s->up + s->up_start + s->up_len, data, take);
    s->up_len += take;
    *size -= take;
    if (take > 0)
        s->last_data_ms = cm_mono_ms();
    if (s->read_paused && s->up_len > 0) {
        s->read_paused = false;
        curl_easy_pause(s->easy, CURLPAUSE_CONT);
    }
    if (*size > 0) { /* full: the rest is offered again once curl has taken some */
        if (cm_mono_ms() - s->last_data_ms >= s->idle_ms) {
            s->upload_dropped = true; /* the upstream stopped reading: answer at the end */
            *size = 0;
            return MHD_YES;
        }
        gw_req_suspend(req, s->last_data_ms + s->idle_ms);
    }
    return MHD_YES;
}

enum MHD_Result gw_upstream_http_finish(struct gw_req *req, struct MHD_Connection *c)
{
    struct stream *s = req->stream;
    if (req->client_hung_up)
        return MHD_NO;
    if (s == NULL)
        return MHD_YES; /* already answered */
    if (!s->in_eof) {
        s->in_eof = true;
        s->head_deadline_ms = cm_mono_ms() + s->first_byte_ms;
    }
    if (s->read_paused) {
        s->read_paused = false;
        curl_easy_pause(s->easy, CURLPAUSE_CONT);
    }
    if (answerable(s))
        return respond(req, c, s);
    gw_req_suspend(req, s->head_deadline_ms);
    return MHD_YES;
}

void gw_upstream_http_abandon(struct gw_req *req)
{
    stream_free(req->stream);
    req->stream = NULL;
}

void gw_upstream_http_detach(struct gw_req *req)
{
    /* A response's reader state (struct stream, or upstream_file.c's body) starts with
     * its request pointer. */
    if (req->live_stream != NULL)
        *(struct gw_req **)req->live_stream = NULL;
    req->live_stream = NULL;
}
