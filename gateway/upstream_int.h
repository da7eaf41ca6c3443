/*
 * Inside the HTTP upstream (upstream_http.c: the transfer and the body; upstream_head.c:
 * the heads): the per-transfer state both share. Not for the rest of the gateway.
 */
#ifndef GATEWAY_UPSTREAM_INT_H
#define GATEWAY_UPSTREAM_INT_H

#include "gateway/gw_int.h"

#define STREAM_BUFFER GW_STREAM_BUFFER
#define UPSTREAM_READ (512 * 1024) /* curl's receive buffer: bytes per recv from the upstream */
#define HEAD_READ (16 * 1024)      /* the same for a HEAD request, which reads a head only */
#define SEND_BLOCK (512 * 1024)    /* libmicrohttpd's buffer of a streamed response: bytes per send */
/* A body larger than LARGE_BODY (or of unknown length) gets a LARGE_BLOCK buffer: a quarter of
 * the system calls per GiB. A read fills at most SLOW_READ of it unless the client took the
 * last one within FAST_DRAIN_MS, so a slow client's buffer stays mostly memory never touched
 * (calloc'd by libmicrohttpd from mmap: GW_MMAP_THRESHOLD). */
#define LARGE_BODY (4 * 1024 * 1024)
#define LARGE_BLOCK (2 * 1024 * 1024)
#define SLOW_READ (256 * 1024)
#define FAST_DRAIN_MS 10
#define UPLOAD_BUFFER (256 * 1024)
#define EARLY_POLLS 3 /* loop rounds a request looks for its upstream's head before suspending */
/* A response whose whole body is already here (up to this size) is handed to MHD as one
 * buffer: head and body go out together, without a content reader. */
#define WHOLE_MAX (64 * 1024)
/* Whole bodies up to this size are copied into a block the worker keeps for the next one
 * (GW_MEM_SMALL_BODY) instead of a fresh malloc: a malloc from 1 KiB up made glibc
 * consolidate the small chunks the previous response's headers had freed, every request. */
#define SMALL_BODY (4 * 1024)
#define HEADER_MAX 100

struct h1conn;

/* What a header name is to the gateway (upstream_head.c classifies it once). */
enum header_kind {
    HK_OTHER, HK_HOP, HK_CONTENT_LENGTH, HK_DATE, HK_AUTHORIZATION, HK_API_KEY, HK_HOST,
    HK_EXPECT, HK_VIA, HK_ACCEPT, HK_ETAG, HK_LINK, HK_FORWARDED, HK_XET
};

struct head_block;

struct header {
    char *name, *value; /* in the stream's head blocks */
    enum header_kind kind;
    bool carried; /* from a redirect the gateway followed */
};

struct stream {
    struct gw_req *req; /* until the request ends (gw_upstream_http_detach) */
    struct gw_worker *worker;
    CURL *easy;
    bool in_multi;
    struct curl_slist *out_headers;
    char *buf;
    size_t start, len; /* unread bytes are buf[start .. start+len) */
    bool head_done, done, paused;
    CURLcode result;
    long status;
    bool has_length;
    uint64_t length, delivered;
    int64_t idle_ms, first_byte_ms;
    int64_t head_deadline_ms;  /* the first-byte timeout (CLOCK_MONOTONIC ms) */
    int64_t last_data_ms;      /* when the upstream last sent body bytes */
    int64_t gave_ms;           /* when read_body last handed body bytes to libmicrohttpd */
    int64_t paced_until_ms;    /* the org's byte bucket holds the stream until then */
    uint64_t charged_ahead;    /* bytes already charged to the org before they were read */
    bool follow; /* redirects are followed inside the gateway (metered route) */
    /* Request body (POST, PUT, …): copied from libmicrohttpd, taken by curl's reader. */
    char *up;
    size_t up_start, up_len;
    bool uploading, in_eof, read_paused, upload_dropped;
    /* While MHD waits for body bytes, curl writes straight into MHD's buffer (one copy
     * fewer); what does not fit goes to buf. Set inside read_body while it unpauses curl,
     * or parked there while the connection is suspended waiting for the upstream (MHD
     * hands the same buffer back when it resumes: it asks for more only once everything
     * it had is sent). */
    char *direct;
    size_t direct_max, direct_len;
    bool direct_parked;
    bool streaming; /* the client's response reads from this stream (read_body) */
    /* hubmeter's own client (upstream_h1.c) instead of curl: its connection while the
     * answer comes, and whether the request is a HEAD. */
    struct h1conn *h1;
    bool h1_head;
    int64_t h1_first_byte_by; /* while connecting: the first-byte deadline to return to */
    size_t n_headers;
    struct head_block *head_blocks; /* the text of headers[] */
    /* Last: a new stream is zeroed up to here (gw_upstream_http); entries from n_headers
     * on are never read. */
    struct header headers[HEADER_MAX];
};

/* ---- hubmeter's own HTTP/1.1 client (upstream_h1.c) --------------------------------------- */
/* Whether it serves this request (else libcurl does). */
bool gw_h1_serves(const char *method, bool with_body, bool follow);
/* Sends the request of mc (its head made as gw_up_request_text makes it) for target, a URL
 * under the configured upstream. The answer fills s as curl's callbacks would. */
int gw_h1_start(struct stream *s, struct MHD_Connection *mc, const char *method,
                const char *target);
/* read_body drained the stream: the client reads on. */
void gw_h1_resume(struct stream *s);
/* The stream ends before the answer did. */
void gw_h1_abandon(struct stream *s);

/* ---- heads (upstream_head.c) ------------------------------------------------------------------ */
/* curl's header callback: collects the upstream's response head (see the file). */
size_t gw_up_on_header(char *data, size_t size, size_t nitems, void *userdata);
void gw_up_free_headers(struct stream *s);
/* The request head for the upstream: the client's headers without its credential and
 * hop-by-hop ones, plus X-Forwarded-*, Via and the gateway's own credential: as curl's
 * header list (s->out_headers), or appended to text as "Name: value" lines for hubmeter's
 * own client (*accept: whether an Accept header is among them). CM_ERR: out of memory,
 * or text too small. */
int gw_up_request_headers(struct stream *s, struct MHD_Connection *c);
int gw_up_request_text(struct stream *s, struct MHD_Connection *c, struct cm_buf *text,
                       bool *accept);
/* The response head for the client: the upstream's headers (and those a followed redirect
 * carried) without hop-by-hop ones and, on metered routes, Xet hints; plus Via. */
void gw_up_response_headers(struct stream *s, struct MHD_Response *resp);

#endif
