/*
 * The file:// upstream: serves a local directory laid out like a repository (for the demo
 * and for tests). GET and HEAD, a strong ETag from size and mtime, Last-Modified,
 * If-None-Match (304) and a single byte Range (206/416). Files are read in blocks through
 * the same content-reader path as HTTP upstreams, so delivered bytes are counted alike.
 */
#include "gateway/gw_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct file_body {
    int fd;
    uint64_t offset; /* of the first byte served (Range) */
    struct gw_req *req;
};

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

static ssize_t read_file(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct file_body *fb = cls;
    ssize_t n = pread(fb->fd, buf, max, (off_t)(fb->offset + pos));
    if (n < 0 && errno == EINTR)
        return 0; /* MHD calls again */
    if (n <= 0) { /* the file shrank or failed under us: close, never a short "success" */
        fb->req->stream_failed = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    fb->req->bytes_sent += (uint64_t)n;
    return n;
}

static void free_file(void *cls)
{
    struct file_body *fb = cls;
    close(fb->fd);
    free(fb);
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
        uint64_t n = strtoull(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0')
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

enum MHD_Result gw_upstream_file(struct gw_req *req, struct MHD_Connection *c, const char *path)
{
    char rel[2048], full[CM_URL_MAX + 2048];
    if (safe_path(path, rel, sizeof rel) != CM_OK)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_path",
                              "the path is not a valid repository path");
    cm_fmt(full, sizeof full, "%s%s", req->gw->cfg->upstream_dir, rel);
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return gw_reply_error(req, c, MHD_HTTP_NOT_FOUND, "not_found",
                              "no such file in the repository");
    }
    char etag[64], lastmod[64], range_hdr[96];
    cm_fmt(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_size,
           (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    http_date(st.st_mtime, lastmod, sizeof lastmod);
    uint64_t size = (uint64_t)st.st_size, first = 0, last = size ? size - 1 : 0;
    unsigned status = MHD_HTTP_OK;
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    const char *if_range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Range");
    if (inm != NULL && (strstr(inm, etag) != NULL || strcmp(inm, "*") == 0)) {
        status = MHD_HTTP_NOT_MODIFIED;
    } else if (range != NULL && (if_range == NULL || strcmp(if_range, etag) == 0)) {
        int rc = parse_range(range, size, &first, &last);
        if (rc == CM_NOTFOUND) {
            close(fd);
            struct MHD_Response *r =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            cm_fmt(range_hdr, sizeof range_hdr, "bytes */%" PRIu64, size);
            if (r != NULL)
                MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, range_hdr);
            return gw_reply(req, c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
        }
        if (rc == CM_OK)
            status = MHD_HTTP_PARTIAL_CONTENT;
    }
    struct file_body *fb = NULL;
    if (status != MHD_HTTP_NOT_MODIFIED && (fb = malloc(sizeof *fb)) == NULL) {
        close(fd);
        return MHD_NO;
    }
    struct MHD_Response *resp;
    if (fb != NULL) {
        *fb = (struct file_body){.fd = fd, .offset = first, .req = req};
        uint64_t n = size == 0 ? 0 : last - first + 1;
        resp = MHD_create_response_from_callback(n, 64 * 1024, read_file, fb, free_file);
        if (resp == NULL)
            free_file(fb);
    } else {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, lastmod);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (status != MHD_HTTP_NOT_MODIFIED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(rel));
    if (status == MHD_HTTP_PARTIAL_CONTENT) {
        cm_fmt(range_hdr, sizeof range_hdr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first,
               last, size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, range_hdr);
    }
    return gw_reply(req, c, status, resp);
}
