/*
 * The file:// upstream: serves a local mirror laid out like a repository. GET and HEAD,
 * zero-copy bodies up to 4 MiB (sendfile through libmicrohttpd; larger ones are read in
 * blocks so their progress is checkpointed every MiB), a strong ETag from size and mtime,
 * Last-Modified, If-None-Match / If-Modified-Since (304), If-Range and a single byte Range
 * (206/416; several ranges get the whole file). Nothing outside the root is ever served:
 * "." and ".." segments (also percent-encoded) are refused, and the opened file's real
 * path must lie under the root's, so symlinks may stay inside the mirror but not leave it.
 */
#include "gateway/gw_int.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Percent-decodes path into out and refuses anything that could leave the directory:
 * NUL bytes, "." or ".." segments, and backslashes. */
static int safe_path(const char *path, char *out, size_t outlen)
{
    if (gw_percent_decode(path, out, outlen) != CM_OK || out[0] != '/' ||
        strchr(out, '\\') != NULL)
        return CM_INVALID;
    for (const char *seg = out; seg != NULL; seg = strchr(seg + 1, '/')) {
        const char *s = seg + 1;
        size_t n = strcspn(s, "/");
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return CM_INVALID;
    }
    return CM_OK;
}

/* True when the file open as fd really lies under root (a resolved absolute path). */
static bool inside_root(int fd, const char *root)
{
    char link[64], real[PATH_MAX];
    cm_fmt(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    if (n <= 0)
        return false;
    real[n] = '\0';
    size_t rl = strlen(root);
    return strncmp(real, root, rl) == 0 && real[rl] == '/';
}

/* A body read with pread for files larger than a checkpoint interval, so that progress
 * reaches the meter every MiB as for HTTP upstreams (sendfile gives no such hook). */
struct file_body {
    struct gw_req *req; /* first: gw_upstream_http_detach clears it when req ends */
    int fd;
    uint64_t offset;
    int64_t paced_until_ms; /* the org's byte bucket holds the body until then */
};

static ssize_t read_file(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct file_body *fb = cls;
    struct gw_req *req = fb->req;
    if (req == NULL)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    int64_t now = cm_mono_ms();
    if (req->client_hung_up) {
        req->stream_failed = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (fb->paced_until_ms > now) { /* the org's byte bucket is in debt: wait, never spin */
        gw_req_suspend(req, fb->paced_until_ms);
        return 0;
    }
    ssize_t n = pread(fb->fd, buf, max, (off_t)(fb->offset + pos));
    if (n <= 0) { /* the file shrank or failed under us: close, never a short "success" */
        req->stream_failed = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    req->bytes_sent += (uint64_t)n;
    gw_checkpoint(req);
    int64_t wait_us = gw_quota_charge(req, (uint64_t)n);
    if (wait_us > 0)
        fb->paced_until_ms = now + (wait_us + 999) / 1000;
    return n;
}

static void free_file(void *cls)
{
    struct file_body *fb = cls;
    close(fb->fd);
    free(fb);
}

/* The response body for bytes [first, first + n) of fd (which it takes over). */
static struct MHD_Response *file_response(struct gw_req *req, int fd, uint64_t first, uint64_t n)
{
    bool paced = req->quota_decided && req->qflow.bytes_tracked;
    if ((n <= 4 * (uint64_t)GW_CHECKPOINT_BYTES && !paced) || strcmp(req->method, "HEAD") == 0) {
        /* Zero-copy: MHD sends from the descriptor (sendfile) and closes it. A download
         * whose bytes its org's plan meters goes through the reader, which can pace. */
        struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(n, fd, first);
        if (resp == NULL)
            close(fd);
        else
            req->bytes_sent = strcmp(req->method, "HEAD") == 0 ? 0 : n;
        return resp;
    }
    struct file_body *fb = malloc(sizeof *fb);
    if (fb == NULL) {
        close(fd);
        return NULL;
    }
    *fb = (struct file_body){.fd = fd, .offset = first, .req = req};
    struct MHD_Response *resp =
        MHD_create_response_from_callback(n, 256 * 1024, read_file, fb, free_file);
    if (resp == NULL)
        free_file(fb);
    else
        req->live_stream = fb;
    return resp;
}

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {".json", "application/json"}, {".txt", "text/plain; charset=utf-8"},
        {".md", "text/markdown; charset=utf-8"}, {".html", "text/html; charset=utf-8"},
        {".safetensors", "application/octet-stream"}, {".bin", "application/octet-stream"},
        {".gz", "application/gzip"}, {".tar", "application/x-tar"},
        {".zip", "application/zip"}, {".whl", "application/zip"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

/* Parses "bytes=a-b", "bytes=a-" or "bytes=-n" against size. CM_OK with [*first, *last],
 * CM_NOTFOUND when unsatisfiable, CM_INVALID when not a single byte range (ignored). */
static int parse_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ',') != NULL)
        return CM_INVALID;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        if (p[1] < '0' || p[1] > '9')
            return CM_INVALID;
        uint64_t n = strtoull(p + 1, &end, 10);
        if (*end != '\0')
            return CM_INVALID;
        if (n == 0 || size == 0)
            return CM_NOTFOUND;
        *first = n >= size ? 0 : size - n;
        *last = size - 1;
        return CM_OK;
    }
    if (*p < '0' || *p > '9')
        return CM_INVALID;
    *first = strtoull(p, &end, 10);
    if (*end != '-')
        return CM_INVALID;
    p = end + 1;
    *last = size > 0 ? size - 1 : 0;
    if (*p != '\0') {
        if (*p < '0' || *p > '9')
            return CM_INVALID;
        uint64_t l = strtoull(p, &end, 10);
        if (*end != '\0' || l < *first)
            return CM_INVALID;
        if (l < *last)
            *last = l;
    }
    return *first >= size ? CM_NOTFOUND : CM_OK;
}

static void http_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Parses an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); CM_INVALID otherwise. */
static int parse_http_date(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL || *end != '\0')
        return CM_INVALID;
    *out = timegm(&tm);
    return CM_OK;
}

static bool etag_listed(const char *list, const char *etag)
{
    return strcmp(list, "*") == 0 || strstr(list, etag) != NULL;
}

struct file_view {
    uint64_t size, first, last;
    char etag[64], lastmod[64];
    time_t mtime;
};

/* Decides 200, 206, 304 or 416 from the conditional and range headers. */
static unsigned choose_status(struct MHD_Connection *c, struct file_view *v)
{
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    const char *ims = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Modified-Since");
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    const char *if_range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Range");
    time_t t;
    if (inm != NULL ? etag_listed(inm, v->etag)
                    : ims != NULL && parse_http_date(ims, &t) == CM_OK && v->mtime <= t)
        return MHD_HTTP_NOT_MODIFIED;
    if (range == NULL)
        return MHD_HTTP_OK;
    /* If-Range: an ETag, or a date that must equal Last-Modified; else the whole file. */
    if (if_range != NULL && strcmp(if_range, v->etag) != 0 && strcmp(if_range, v->lastmod) != 0)
        return MHD_HTTP_OK;
    switch (parse_range(range, v->size, &v->first, &v->last)) {
    case CM_OK:
        return MHD_HTTP_PARTIAL_CONTENT;
    case CM_NOTFOUND:
        return MHD_HTTP_RANGE_NOT_SATISFIABLE;
    default:
        return MHD_HTTP_OK;
    }
}

/* Opens rel under the root; -1 when missing, not a regular file, or outside the root. */
static int open_inside(const struct gw *gw, const char *rel, struct stat *st)
{
    char full[CM_URL_MAX + 2048];
    if (cm_fmt(full, sizeof full, "%s%s", gw->cfg->upstream_dir, rel) != CM_OK)
        return -1;
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || !inside_root(fd, gw->upstream_root)) {
        close(fd);
        return -1;
    }
    return fd;
}

enum MHD_Result gw_upstream_file(struct gw_req *req, struct MHD_Connection *c, const char *path)
{
    char rel[2048], range_hdr[96];
    if (safe_path(path, rel, sizeof rel) != CM_OK)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_path",
                              "the path is not a valid repository path");
    struct stat st;
    int fd = open_inside(req->gw, rel, &st);
    if (fd < 0)
        return gw_reply_error(req, c, MHD_HTTP_NOT_FOUND, "not_found",
                              "no such file in the repository");
    struct file_view v = {.size = (uint64_t)st.st_size, .mtime = st.st_mtime};
    v.last = v.size ? v.size - 1 : 0;
    cm_fmt(v.etag, sizeof v.etag, "\"%" PRIx64 "-%" PRIx64 "\"", v.size,
           (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    http_date(st.st_mtime, v.lastmod, sizeof v.lastmod);
    unsigned status = choose_status(c, &v);
    struct MHD_Response *resp;
    if (status == MHD_HTTP_OK || status == MHD_HTTP_PARTIAL_CONTENT) {
        uint64_t n = v.size == 0 ? 0 : v.last - v.first + 1;
        resp = file_response(req, fd, v.first, n);
        if (resp == NULL)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(rel));
    } else {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp == NULL)
            return MHD_NO;
    }
    if (status == MHD_HTTP_PARTIAL_CONTENT || status == MHD_HTTP_RANGE_NOT_SATISFIABLE) {
        if (status == MHD_HTTP_PARTIAL_CONTENT)
            cm_fmt(range_hdr, sizeof range_hdr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
                   v.first, v.last, v.size);
        else
            cm_fmt(range_hdr, sizeof range_hdr, "bytes */%" PRIu64, v.size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, range_hdr);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, v.etag);
    cm_copy(req->etag, sizeof req->etag, v.etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, v.lastmod);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    return gw_reply(req, c, status, resp);
}
