/*
 * hubmeter's own HTTP/1.1 client, for GET and HEAD requests without a body to a plain
 * http:// upstream named by an IP address, on routes that do not follow redirects: libcurl's
 * per-transfer work (a 512 KiB buffer allocated and freed, the URL parsed again, headers
 * matched one by one, two polls) was most of a small request's cost (BENCH.md). Everything
 * else (TLS, redirects followed to a CDN, request bodies, host names) stays with libcurl.
 *
 * Per worker, kept-alive connections wait in a pool, registered in the worker's epoll set.
 * A request takes one (or connects), sends its head, and reads the response into its
 * stream exactly as curl's callbacks would fill it: the head line by line through
 * gw_up_on_header; the body, once its response is being sent, straight into
 * libmicrohttpd's buffer when the reader asks for it (read_body), else into the stream's
 * buffer. A body that cannot be read there stops the reading (the socket turns
 * edge-triggered, so its bytes do not wake the loop again) until read_body asks. A kept-alive
 * connection that the upstream closed before answering is retried once on a new one (GET
 * and HEAD are idempotent). Bodies: Content-Length, chunked, or until the upstream closes;
 * none for HEAD, 1xx, 204 and 304.
 */
#include "gateway/upstream_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define POOL_MAX 64
#define HEAD_MAX (64 * 1024) /* an upstream's response head longer than this is a 502 */
#define REQUEST_MAX (32 * 1024)

enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };

struct h1conn {
    struct gw_watch watch; /* kind GW_W_H1, obj: this */
    int fd, epfd;
    uint32_t events; /* what it is registered for (0: no interest, still registered) */
    struct stream *s;
    bool connecting, reused, got_response_bytes, keep_alive, head_parsed, paused;
    char *out;
    size_t out_len, out_off;
    char *head; /* the response head while it arrives (grown up to HEAD_MAX, then freed) */
    size_t head_len, head_cap;
    enum body_kind body;
    uint64_t left; /* BODY_LENGTH: bytes left; BODY_CHUNKED: of the current chunk */
    enum chunk_state chunk;
    char line[128];
    size_t line_len;
    int retries;
};

static struct sockaddr_storage up_addr;
static socklen_t up_addr_len;
static char up_hostport[300];
static size_t up_prefix_len; /* of "http://host:port" in a target URL */
static bool up_usable;       /* set once at start (gw_h1_init), before the workers run */

static _Thread_local struct h1conn *pool[POOL_MAX];
static _Thread_local int pool_n;
/* Head buffers of HEAD_FIRST bytes kept for the next responses (one malloc and free fewer
 * per request); a connection holds one only while a head arrives. */
#define HEAD_FIRST 8192
#define SPARE_MAX 8
static _Thread_local char *spare_heads[SPARE_MAX];
static _Thread_local int spare_n;

/* c's head buffer goes back to the spares (or is freed). */
static void head_release(struct h1conn *c)
{
    if (c->head != NULL && c->head_cap == HEAD_FIRST && spare_n < SPARE_MAX &&
        gw_worker_self() != NULL) /* (freed when the worker's loop ends) */
        spare_heads[spare_n++] = c->head;
    else
        free(c->head);
    c->head = NULL;
    c->head_cap = c->head_len = 0;
}

/* Whether the configured upstream is one this client serves: http:// and a numeric host. */
static bool upstream_usable(const char *upstream)
{
    if (strncmp(upstream, "http://", 7) != 0)
        return false;
    const char *h = upstream + 7;
    size_t hl = strcspn(h, "/");
    if (hl == 0 || hl >= sizeof up_hostport)
        return false;
    memcpy(up_hostport, h, hl);
    up_hostport[hl] = '\0';
    up_prefix_len = 7 + hl;
    char host[256];
    const char *port = "80";
    if (up_hostport[0] == '[') { /* [v6]:port */
        const char *close = strchr(up_hostport, ']');
        if (close == NULL || (size_t)(close - up_hostport - 1) >= sizeof host)
            return false;
        memcpy(host, up_hostport + 1, (size_t)(close - up_hostport - 1));
        host[close - up_hostport - 1] = '\0';
        if (close[1] == ':')
            port = close + 2;
    } else {
        const char *colon = strchr(up_hostport, ':');
        size_t n = colon ? (size_t)(colon - up_hostport) : strlen(up_hostport);
        if (n >= sizeof host)
            return false;
        memcpy(host, up_hostport, n);
        host[n] = '\0';
        if (colon != NULL)
            port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535)
        return false;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&up_addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&up_addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p);
        up_addr_len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        up_addr_len = sizeof *a6;
    } else {
        return false; /* a host name: libcurl resolves it without blocking the loop */
    }
    return true;
}

void gw_h1_init(const struct hm_config *cfg)
{
    up_usable = cfg->upstream_builtin_client && upstream_usable(cfg->upstream);
}

bool gw_h1_serves(const char *method, bool with_body, bool follow)
{
    return up_usable && !with_body && !follow &&
           (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
}

static void interest(struct h1conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = &c->watch};
    if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->events = events;
}

static void conn_close(struct h1conn *c)
{
    close(c->fd); /* leaves the epoll set with it */
    free(c->out);
    head_release(c);
    free(c);
}

static struct h1conn *conn_new(int epfd)
{
    int fd = socket(up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct h1conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->epfd = epfd;
    c->watch = (struct gw_watch){.kind = GW_W_H1, .fd = fd, .obj = c};
    if (connect(fd, (struct sockaddr *)&up_addr, up_addr_len) != 0) {
        if (errno != EINPROGRESS) {
            close(fd);
            free(c);
            return NULL;
        }
        c->connecting = true;
    }
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = c->events, .data.ptr = &c->watch};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        free(c);
        return NULL;
    }
    return c;
}

/* The request head: request line, Host, the headers gw_up_request_text makes, and curl's
 * default Accept when the client sent none. */
static int build(struct h1conn *c, struct stream *s, struct MHD_Connection *mc,
                 const char *method, const char *target)
{
    const char *path = target + up_prefix_len;
    if (*path == '\0')
        path = "/";
    if (c->out == NULL && (c->out = malloc(REQUEST_MAX)) == NULL)
        return CM_ERR; /* kept with the connection for its next requests */
    struct cm_buf b;
    cm_buf_init(&b, c->out, REQUEST_MAX);
    cm_buf_str(&b, method);
    cm_buf_str(&b, " ");
    cm_buf_str(&b, path);
    cm_buf_str(&b, " HTTP/1.1\r\nHost: ");
    cm_buf_str(&b, up_hostport);
    cm_buf_str(&b, "\r\n");
    bool accept = false;
    if (gw_up_request_text(s, mc, &b, &accept) != CM_OK)
        return CM_ERR;
    if (!accept)
        cm_buf_str(&b, "Accept: */*\r\n");
    cm_buf_str(&b, "\r\n");
    if (b.overflow)
        return CM_ERR;
    c->out_len = b.len;
    c->out_off = 0;
    return CM_OK;
}

/* Ends c's transfer: the stream learns the result and is woken; c goes back to the pool
 * when it can carry another request, else it is closed. */
static void finish(struct h1conn *c, CURLcode result)
{
    struct stream *s = c->s;
    head_release(c); /* a kept-alive connection keeps no buffer while it waits */
    c->s = NULL;
    if (s != NULL) {
        s->h1 = NULL;
        s->done = true;
        s->result = result;
        if (s->req != NULL)
            gw_req_wake(s->req);
    }
    if (result == CURLE_OK && c->keep_alive && pool_n < POOL_MAX) {
        interest(c, EPOLLIN); /* an idle connection the upstream closes is noticed */
        pool[pool_n++] = c;
    } else {
        conn_close(c);
    }
}

static void start_reading(struct h1conn *c)
{
    c->head_len = 0;
    c->head_parsed = false;
    c->got_response_bytes = false;
    c->paused = false;
    c->line_len = 0;
    interest(c, EPOLLIN);
}

static void fail(struct h1conn *c, CURLcode result);

/* Sends what is left of the request head; then waits for the answer. */
static void send_head(struct h1conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            interest(c, EPOLLOUT);
            return;
        }
        if (n <= 0) {
            fail(c, CURLE_SEND_ERROR); /* a closed kept-alive connection: retried */
            return;
        }
        c->out_off += (size_t)n;
    }
    start_reading(c);
}

static void begin(struct h1conn *c, struct stream *s)
{
    c->s = s;
    s->h1 = c;
    c->keep_alive = true;
    if (c->connecting)
        interest(c, EPOLLOUT);
    else
        send_head(c);
}

int gw_h1_start(struct stream *s, struct MHD_Connection *mc, const char *method,
                const char *target)
{
    struct gw_worker *w = s->worker;
    if (w == NULL)
        return CM_ERR;
    struct h1conn *c = NULL;
    bool reused = false;
    if (pool_n > 0) {
        c = pool[--pool_n];
        reused = true;
    }
    if (c == NULL && (c = conn_new(gw_worker_epfd(w))) == NULL)
        return CM_ERR;
    c->reused = reused;
    c->retries = 0;
    if (build(c, s, mc, method, target) != CM_OK) {
        conn_close(c);
        return CM_ERR;
    }
    s->h1_head = strcmp(method, "HEAD") == 0;
    if (c->connecting) { /* until connected, the connect timeout is the first deadline */
        int64_t connect_by = cm_mono_ms() + s->req->gw->cfg->upstream_connect_timeout_ms;
        if (connect_by < s->head_deadline_ms) {
            s->h1_first_byte_by = s->head_deadline_ms;
            s->head_deadline_ms = connect_by;
        }
    }
    begin(c, s);
    return CM_OK;
}

/* A kept-alive connection closed under the request before any byte of the answer: once,
 * the request goes again on a new connection. Returns whether it did. */
static bool retry(struct h1conn *c)
{
    struct stream *s = c->s;
    if (s == NULL || !c->reused || c->got_response_bytes || c->retries > 0)
        return false;
    struct h1conn *n = conn_new(c->epfd);
    if (n == NULL)
        return false;
    n->out = c->out;
    n->out_len = c->out_len;
    n->out_off = 0;
    c->out = NULL;
    n->retries = c->retries + 1;
    c->s = NULL;
    conn_close(c);
    begin(n, s);
    return true;
}

static void fail(struct h1conn *c, CURLcode result)
{
    if (retry(c))
        return;
    finish(c, result);
}

/* Whether the head line p[0..n) is header name (with its colon) and its value holds word. */
static bool header_says(const char *p, size_t n, const char *name, const char *word)
{
    size_t nl = strlen(name);
    if (n < nl || (p[0] | 0x20) != (name[0] | 0x20) || strncasecmp(p, name, nl) != 0)
        return false;
    char v[512];
    size_t k = n - nl < sizeof v - 1 ? n - nl : sizeof v - 1;
    memcpy(v, p + nl, k);
    v[k] = '\0';
    return strcasestr(v, word) != NULL;
}

/* The status and framing of a complete head, after gw_up_on_header saw every line. */
static void framing(struct h1conn *c, const char *head, size_t len)
{
    struct stream *s = c->s;
    c->body = BODY_CLOSE;
    bool http10 = len > 8 && strncmp(head, "HTTP/1.0", 8) == 0;
    c->keep_alive = !http10;
    const char *p = head;
    const char *end = head + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        size_t n = (size_t)(nl - p);
        if (header_says(p, n, "Transfer-Encoding:", "chunked"))
            c->body = BODY_CHUNKED;
        else if (header_says(p, n, "Connection:", "close"))
            c->keep_alive = false;
        else if (http10 && header_says(p, n, "Connection:", "keep-alive"))
            c->keep_alive = true;
        p = nl + 1;
    }
    if (s->h1_head || s->status == 204 || s->status == 304) {
        c->body = BODY_NONE;
    } else if (c->body != BODY_CHUNKED && s->has_length) {
        c->body = BODY_LENGTH;
        c->left = s->length;
    }
    if (c->body == BODY_CLOSE)
        c->keep_alive = false;
    c->chunk = CH_SIZE;
    c->line_len = 0;
}

/* Where the next body bytes go: straight into libmicrohttpd's buffer while its reader
 * waits for them (read_body set s->direct), else the free end of the stream's buffer.
 * 0 when both are full (the reading pauses). */
static char *room(struct stream *s, size_t *cap)
{
    if (s->direct != NULL && s->len == 0 && s->direct_len < s->direct_max) {
        *cap = s->direct_max - s->direct_len;
        return s->direct + s->direct_len;
    }
    if (s->len == 0)
        s->start = 0;
    else if (s->start > 0 && s->start + s->len == STREAM_BUFFER) {
        memmove(s->buf, s->buf + s->start, s->len);
        s->start = 0;
    }
    *cap = STREAM_BUFFER - s->start - s->len;
    return s->buf + s->start + s->len;
}

/* n body bytes were written at dst (from room()). */
static void took(struct stream *s, const char *dst, size_t n)
{
    if (n == 0)
        return;
    if (s->direct != NULL && dst == s->direct + s->direct_len)
        s->direct_len += n;
    else
        s->len += n;
    s->last_data_ms = cm_mono_ms();
    if (s->req != NULL)
        gw_req_wake(s->req); /* its reader (or its handler) waits for these bytes */
}

/* Copies decoded body bytes (chunked, or leftovers after the head) into the stream.
 * Returns how many it took (less when the stream is full). */
static size_t put(struct stream *s, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        size_t cap;
        char *dst = room(s, &cap);
        if (cap == 0)
            break;
        size_t k = n - done < cap ? n - done : cap;
        memcpy(dst, p + done, k);
        took(s, dst, k);
        done += k;
    }
    return done;
}

/* Decodes chunked bytes in p[0..n): body bytes go to the stream. Returns bytes consumed
 * (fewer when the stream is full), or -1 on malformed framing; sets *end at the last chunk. */
static ssize_t dechunk(struct h1conn *c, const char *p, size_t n, bool *end)
{
    size_t i = 0;
    while (i < n && !*end) {
        if (c->chunk == CH_DATA) {
            size_t k = n - i < c->left ? n - i : (size_t)c->left;
            size_t t = put(c->s, p + i, k);
            i += t;
            c->left -= t;
            if (t < k)
                return (ssize_t)i; /* the stream is full */
            if (c->left == 0)
                c->chunk = CH_DATA_END;
            continue;
        }
        char ch = p[i++];
        if (ch != '\n') {
            if (c->line_len + 1 >= sizeof c->line)
                return -1;
            c->line[c->line_len++] = ch;
            continue;
        }
        while (c->line_len > 0 && c->line[c->line_len - 1] == '\r')
            c->line_len--;
        c->line[c->line_len] = '\0';
        c->line_len = 0;
        if (c->chunk == CH_SIZE) {
            char *e;
            errno = 0;
            unsigned long long size = strtoull(c->line, &e, 16);
            if (e == c->line || errno != 0 || (*e != '\0' && *e != ';' && *e != ' '))
                return -1;
            c->left = size;
            c->chunk = size == 0 ? CH_TRAILER : CH_DATA;
        } else if (c->chunk == CH_DATA_END) {
            if (c->line[0] != '\0')
                return -1;
            c->chunk = CH_SIZE;
        } else if (c->line[0] == '\0') { /* CH_TRAILER: the empty line ends the body */
            *end = true;
        }
    }
    return (ssize_t)i;
}

static void read_head(struct h1conn *c)
{
    struct stream *s = c->s;
    for (;;) {
        if (c->head_len + 1 >= c->head_cap) {
            if (c->head_cap == HEAD_MAX) {
                cm_log(CM_LOG_WARN, "upstream_head_too_large", "limit=%d", HEAD_MAX);
                finish(c, CURLE_WEIRD_SERVER_REPLY);
                return;
            }
            size_t cap = c->head_cap == 0 ? HEAD_FIRST : c->head_cap * 2;
            char *h = c->head_cap == 0 && spare_n > 0 ? spare_heads[--spare_n]
                                                       : realloc(c->head, cap);
            if (h == NULL) {
                finish(c, CURLE_OUT_OF_MEMORY);
                return;
            }
            c->head = h;
            c->head_cap = cap;
        }
        /* one byte stays for a NUL: the head is parsed with string functions */
        ssize_t n = recv(c->fd, c->head + c->head_len, c->head_cap - 1 - c->head_len, 0);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            fail(c, c->got_response_bytes ? CURLE_RECV_ERROR : CURLE_GOT_NOTHING);
            return;
        }
        c->got_response_bytes = true;
        c->head_len += (size_t)n;
        c->head[c->head_len] = '\0';
        for (;;) { /* one or more heads: 1xx interim answers come before the final one */
            char *end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
            size_t term = 4;
            if (end == NULL) {
                end = memmem(c->head, c->head_len, "\n\n", 2);
                term = 2;
            }
            if (end == NULL)
                break;
            size_t head_len = (size_t)(end - c->head) + term;
            for (char *line = c->head; line < c->head + head_len;) {
                char *nl = memchr(line, '\n', (size_t)(c->head + head_len - line));
                size_t l = (size_t)(nl - line) + 1;
                gw_up_on_header(line, 1, l, s);
                line += l;
            }
            if (s->status < 200 && s->status >= 100 && s->status != 101) { /* interim */
                memmove(c->head, c->head + head_len, c->head_len - head_len);
                c->head_len -= head_len;
                c->head[c->head_len] = '\0';
                continue;
            }
            if (s->status < 100 || s->status > 999 || s->status == 101) {
                finish(c, CURLE_WEIRD_SERVER_REPLY);
                return;
            }
            framing(c, c->head, head_len);
            c->head_parsed = true;
            size_t rest = c->head_len - head_len;
            const char *p = c->head + head_len;
            c->head_len = 0;
            if (c->body == BODY_NONE) {
                if (rest > 0)
                    c->keep_alive = false; /* bytes nobody asked for: do not reuse */
                finish(c, CURLE_OK);
                return;
            }
            if (rest > 0) { /* body bytes that came with the head: the stream takes them */
                if (c->body == BODY_CHUNKED) {
                    bool last = false;
                    ssize_t used = dechunk(c, p, rest, &last);
                    if (used < 0) {
                        finish(c, CURLE_RECV_ERROR);
                        return;
                    }
                    if (last) {
                        if ((size_t)used < rest)
                            c->keep_alive = false;
                        finish(c, CURLE_OK);
                        return;
                    }
                    if ((size_t)used < rest) { /* cannot happen: the buffer holds a head */
                        finish(c, CURLE_WRITE_ERROR);
                        return;
                    }
                } else {
                    size_t k = c->body == BODY_LENGTH && rest > c->left ? (size_t)c->left : rest;
                    if (put(s, p, k) < k) {
                        finish(c, CURLE_WRITE_ERROR);
                        return;
                    }
                    if (c->body == BODY_LENGTH) {
                        c->left -= k;
                        if (k < rest)
                            c->keep_alive = false;
                    }
                }
            }
            if (c->body == BODY_LENGTH && c->left == 0) {
                finish(c, CURLE_OK);
                return;
            }
            return;
        }
    }
}

static void read_more(struct h1conn *c)
{
    struct stream *s = c->s;
    if (c->head != NULL) /* the head is parsed: its buffer goes */
        head_release(c);
    char scratch[64 * 1024];
    for (;;) {
        size_t cap;
        char *dst;
        if (c->body == BODY_CHUNKED) {
            dst = scratch;
            cap = sizeof scratch;
            size_t free_cap;
            (void)room(s, &free_cap);
            if (free_cap == 0) {
                c->paused = true; /* (edge-triggered if the socket stirs: gw_h1_event) */
                return;
            }
            if (cap > free_cap)
                cap = free_cap; /* never more than the stream can take at once */
        } else {
            /* While its response is being sent, a body is read only straight into
             * libmicrohttpd's buffer, when the reader asks for more (read_body ->
             * gw_h1_resume): the upstream's bytes wait in the kernel's socket buffer
             * meanwhile, as nginx lets them, instead of being copied twice. A reader's
             * buffer that is full stops the reading too (it used to go on into the stream's
             * buffer: a quarter of a large download was copied twice). */
            bool reader_waits = s->direct != NULL && s->direct_len < s->direct_max;
            dst = s->streaming && !reader_waits ? NULL : room(s, &cap);
            if (dst == NULL || cap == 0) {
                /* read_body (the reader's) lets it go on: gw_h1_resume. If the socket stirs
                 * meanwhile, it turns edge-triggered (gw_h1_event), so it neither spins the
                 * loop nor costs two epoll_ctl calls per block. */
                c->paused = true;
                return;
            }
            if (c->body == BODY_LENGTH && cap > c->left)
                cap = (size_t)c->left;
        }
        ssize_t n = recv(c->fd, dst, cap, 0);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            finish(c, CURLE_RECV_ERROR);
            return;
        }
        if (n == 0) {
            finish(c, c->body == BODY_CLOSE ? CURLE_OK : CURLE_PARTIAL_FILE);
            return;
        }
        if (c->body == BODY_CHUNKED) {
            bool last = false;
            ssize_t used = dechunk(c, dst, (size_t)n, &last);
            if (used < 0 || (size_t)used < (size_t)n) {
                if (used >= 0 && last)
                    c->keep_alive = false; /* bytes after the body: do not reuse */
                finish(c, used < 0 ? CURLE_RECV_ERROR : last ? CURLE_OK : CURLE_WRITE_ERROR);
                return;
            }
            if (last) {
                finish(c, CURLE_OK);
                return;
            }
            continue;
        }
        took(s, dst, (size_t)n);
        if (c->body == BODY_LENGTH) {
            c->left -= (uint64_t)n;
            if (c->left == 0) {
                finish(c, CURLE_OK);
                return;
            }
        }
    }
}

void gw_h1_event(struct gw_watch *wt, uint32_t events)
{
    struct h1conn *c = wt->obj;
    if (c->s == NULL) { /* idle: the upstream closed it (or sent what nobody asked for) */
        for (int i = 0; i < pool_n; i++)
            if (pool[i] == c) {
                pool[i] = pool[--pool_n];
                break;
            }
        conn_close(c);
        return;
    }
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            finish(c, CURLE_COULDNT_CONNECT);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        c->connecting = false;
        if (c->s->h1_first_byte_by != 0) { /* connected: the first-byte timeout again */
            c->s->head_deadline_ms = c->s->h1_first_byte_by;
            c->s->h1_first_byte_by = 0;
        }
    }
    if (c->out_off < c->out_len) {
        send_head(c);
        if (c->out_off < c->out_len) {
            if (events & (EPOLLERR | EPOLLHUP))
                fail(c, CURLE_SEND_ERROR);
            return;
        }
    }
    if (c->paused) {
        /* Nothing can be taken now, and gw_h1_resume reads what waits when the reader asks.
         * Edge-triggered from here to the transfer's end: the waiting bytes wake the loop
         * once, not on every round, and no block costs two epoll_ctl calls (taking the
         * interest away here and giving it back in gw_h1_resume did). */
        interest(c, EPOLLIN | EPOLLET);
        return;
    }
    if (!c->head_parsed)
        read_head(c);
    else
        read_more(c);
}

/* The reader drained the stream: reading goes on (and may fill out at once, as curl's
 * unpause could). */
void gw_h1_resume(struct stream *s)
{
    struct h1conn *c = s->h1;
    if (c == NULL || !c->paused)
        return;
    c->paused = false;
    if (c->events != (EPOLLIN | EPOLLET)) /* edge-triggered: read_more reads until EAGAIN */
        interest(c, EPOLLIN);
    read_more(c);
}

/* The request ended before its answer did: the connection cannot carry another. */
void gw_h1_abandon(struct stream *s)
{
    struct h1conn *c = s->h1;
    if (c == NULL)
        return;
    c->s = NULL;
    s->h1 = NULL;
    conn_close(c);
}

/* The worker's loop ends: its idle connections close. */
void gw_h1_worker_exit(void)
{
    while (pool_n > 0)
        conn_close(pool[--pool_n]);
    while (spare_n > 0)
        free(spare_heads[--spare_n]);
}
