/*
 * Replies made by the gateway itself: JSON bodies and the stable error shape
 * {"error":{"code","message"}}. Every gateway-made response goes through gw_reply so the
 * status the meter records is the status the client saw.
 */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    *(uint64_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* A body the gateway refuses is read and dropped up to this size before the answer goes
 * out (libmicrohttpd can answer only before a body or after it); a longer one is not
 * worth reading: the connection is closed. */
#define DROP_MAX (16 * 1024 * 1024)

bool gw_body_follows(struct MHD_Connection *c, bool *expects_continue)
{
    const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect");
    *expects_continue = expect != NULL && strcasecmp(expect, "100-continue") == 0;
    if (*expects_continue)
        return false; /* the client waits: an answer before the body spares it the body */
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
    uint64_t n = 0;
    return te != NULL || (cl != NULL && cm_parse_u64(cl, &n) == CM_OK && n > 0);
}

static enum MHD_Result queue(struct gw_req *req, struct MHD_Connection *c, unsigned status,
                             struct MHD_Response *resp)
{
    enum MHD_Result r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    req->deferred = NULL;
    return r;
}

enum MHD_Result gw_reply(struct gw_req *req, struct MHD_Connection *c, unsigned status,
                         struct MHD_Response *resp)
{
    if (resp == NULL)
        return MHD_NO;
    req->status = status;
    gw_quota_headers(req, resp);
    /* The head MHD sends: our headers plus its status line, Date, Content-Length or
     * Transfer-Encoding and Connection (about 100 bytes). */
    req->header_bytes = 100;
    MHD_get_response_headers(resp, add_header_size, &req->header_bytes);
    /* libmicrohttpd builds the head in the connection's memory, after the request head
     * (and its index, counted here as 1 KiB): a head that cannot fit would close the
     * connection with no answer at all. */
    size_t memory = req->gw->cfg->connection_memory;
    if (req->head_size + req->header_bytes + 1024 > memory && !req->head_refused) {
        req->live_stream = NULL; /* the response's reader goes with it */
        req->bytes_sent = 0;     /* none of its body is sent */
        MHD_destroy_response(resp);
        req->head_refused = true;
        cm_log(CM_LOG_WARN, "response_head_too_large", "status=%u head_bytes=%llu", status,
               (unsigned long long)req->header_bytes);
        return gw_reply_error(req, c, MHD_HTTP_BAD_GATEWAY, "response_head_too_large",
                              "the response head does not fit in the connection's memory "
                              "(HUBMETER_CONNECTION_MEMORY)");
    }
    /* What the client's TCP acknowledged before this response, to count an aborted one
     * (delivered_bytes). Not read when nothing is counted (the gateway's own answers) or
     * when a small body leaves with its head from memory: that is counted whole. */
    if (req->live_stream != NULL || req->bytes_sent > GW_COUNTED_WHOLE_MAX)
        req->acked_known = gw_tcp_bytes_acked(req->fd, &req->acked_at_start) == CM_OK;
    if (req->body_unread && !req->uploading && req->deferred == NULL) {
        /* Answered before its body arrived: libmicrohttpd would send this and close with
         * the body unread, and the client's kernel would drop the answer on the reset. */
        req->deferred = resp;
        req->deferred_status = status;
        return MHD_YES;
    }
    return queue(req, c, status, resp);
}

enum MHD_Result gw_reply_held(struct gw_req *req, struct MHD_Connection *c,
                              size_t *upload_data_size)
{
    req->body_dropped += *upload_data_size;
    bool complete = *upload_data_size == 0;
    *upload_data_size = 0;
    if (complete) {
        req->body_unread = false;
        return queue(req, c, req->deferred_status, req->deferred);
    }
    if (req->body_dropped <= DROP_MAX)
        return MHD_YES;
    cm_log(CM_LOG_WARN, "request_body_refused", "status=%u dropped=%llu",
           req->deferred_status, (unsigned long long)req->body_dropped);
    req->stream_failed = true; /* the client gets no answer: its connection is closed */
    return MHD_NO;
}

/* A response holding body (stolen) as one line of JSON; NULL when out of memory. */
static struct MHD_Response *json_response(json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room for the NUL: reuse it for a final newline */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n + 1, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return resp;
}

enum MHD_Result gw_reply_json(struct gw_req *req, struct MHD_Connection *c, unsigned status,
                              json_t *body)
{
    return gw_reply(req, c, status, json_response(body));
}

enum MHD_Result gw_reply_error(struct gw_req *req, struct MHD_Connection *c, unsigned status,
                               const char *code, const char *message)
{
    cm_copy(req->error_code, sizeof req->error_code, code); /* the access log's decision */
    struct MHD_Response *resp =
        json_response(json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message));
    if (resp != NULL && status == MHD_HTTP_UNAUTHORIZED) /* RFC 9110 §11.6.1 */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"hubmeter\"");
    if (resp != NULL && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    return gw_reply(req, c, status, resp);
}

enum MHD_Result gw_reply_challenge(struct gw_req *req, struct MHD_Connection *c)
{
    struct MHD_Response *resp = json_response(
        json_pack("{s:{s:s, s:s}}", "error", "code", "authentication_required", "message",
                  "send the API key as the password (any user name)"));
    if (resp != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Basic realm=\"hubmeter\", charset=\"UTF-8\"");
    cm_copy(req->error_code, sizeof req->error_code, "authentication_required");
    return gw_reply(req, c, MHD_HTTP_UNAUTHORIZED, resp);
}
