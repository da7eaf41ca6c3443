/*
 * The gateway server: one listening socket served by the workers' libmicrohttpd daemons
 * (event loops, worker.c; connections capped in total and per client address, with an
 * idle timeout), request routing (/-/ to the gateway's endpoints, everything else to the
 * upstream untouched), and the completion callback that hands every proxied request to
 * the meter. Owns start-up and shutdown.
 */
#include "gateway/gw_int.h"

#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define URL_MAX 8192

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cm_log(CM_LOG_WARN, "http_server", "message=\"%s\"", msg);
}

/* Keep paths and query strings exactly as the client sent them: the upstream must see
 * the same bytes (MHD would otherwise percent-decode them in place). */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

struct query_builder {
    char *buf;
    size_t len, cap;
    bool overflow, has_args;
};

static enum MHD_Result append_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    struct query_builder *q = cls;
    int n = snprintf(q->buf + q->len, q->cap - q->len, "%s%s%s%s", q->has_args ? "&" : "?",
                     key, value ? "=" : "", value ? value : "");
    if (n < 0 || (size_t)n >= q->cap - q->len) {
        q->overflow = true;
        return MHD_NO;
    }
    /* MHD turned '+' into ' ' (a literal space cannot be in a request line): undo it. */
    for (size_t i = q->len; i < q->len + (size_t)n; i++)
        if (q->buf[i] == ' ')
            q->buf[i] = '+';
    q->len += (size_t)n;
    q->has_args = true;
    return MHD_YES;
}

static bool method_with_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0 ||
           strcmp(m, "DELETE") == 0;
}

/* Routes a request to the upstream: identity, then the file tree or the HTTP upstream. */
static enum MHD_Result proxy(struct gw_req *req, struct MHD_Connection *c, const char *url)
{
    const struct hm_config *cfg = req->gw->cfg;
    req->metered = true;
    gw_metrics_download_started(&req->gw->metrics);
    int64_t admit_start = cm_now_us();
    gw_repo_from_path(cfg->repo_patterns, url, req->repo, sizeof req->repo);
    bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    bool body = method_with_body(req->method);
    if (!get && (cfg->upstream_is_file || (!body && strcmp(req->method, "OPTIONS") != 0)))
        return gw_reply_error(req, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                              cfg->upstream_is_file
                                  ? "a file:// upstream serves GET and HEAD"
                                  : "the gateway forwards GET, HEAD, OPTIONS, POST, PUT, PATCH "
                                    "and DELETE");
    enum MHD_Result mhd;
    if (gw_identify(req, c, &mhd) != CM_OK)
        return mhd;
    /* git, git-lfs, docker and pip send credentials only after a challenge. */
    if (req->id.org_id == 0 && cfg->challenge_paths[0] != '\0' &&
        gw_path_matches(cfg->challenge_paths, url))
        return gw_reply_challenge(req, c);
    int admitted = gw_admit(req, c, &mhd);
    gw_metrics_admission_latency(&req->gw->metrics, cm_now_us() - admit_start);
    if (admitted != CM_OK)
        return mhd;
    if (cfg->upstream_is_file)
        return gw_upstream_file(req, c, url);
    char target[URL_MAX + CM_URL_MAX];
    struct query_builder q = {.buf = target, .cap = sizeof target};
    struct cm_buf t;
    cm_buf_init(&t, target, sizeof target);
    cm_buf_str(&t, cfg->upstream);
    cm_buf_str(&t, url);
    q.len = t.len;
    q.overflow = t.overflow;
    if (!q.overflow)
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, append_arg, &q);
    if (q.overflow)
        return gw_reply_error(req, c, MHD_HTTP_URI_TOO_LONG, "uri_too_long",
                              "the request URI is longer than 8 KiB");
    req->uploading = body;
    return gw_upstream_http(req, c, target, body,
                            get && gw_path_matches(cfg->follow_redirects, url));
}

static struct gw_req *req_new(struct gw *gw, struct MHD_Connection *c, const char *method)
{
    struct gw_req *req = gw_worker_mem(gw_worker_self(), GW_MEM_REQ, sizeof *req);
    if (req == NULL)
        return NULL;
    memset(req, 0, sizeof *req);
    req->magic = GW_REQ_MAGIC;
    req->gw = gw;
    req->start_us = cm_now_us();
    if (cm_copy(req->method, sizeof req->method, method) != CM_OK)
        cm_copy(req->method, sizeof req->method, "OTHER");
    req->fd = gw_watchdog_request(c, req->client_ip, sizeof req->client_ip, req->network,
                                  sizeof req->network); /* (its TCP_INFO is read in gw_reply) */
    req->upstream_ms = -1;
    atomic_fetch_add(&gw->metrics.in_flight, 1);
    return req;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct gw_req *req = *con_cls;
    bool first = req == NULL;
    if (first) {
        req = req_new(cls, c, method);
        *con_cls = req;
        if (req == NULL)
            return MHD_NO;
        bool expects_continue;
        req->body_unread = gw_body_follows(c, &expects_continue);
        /* Routed on the next call (an answer queued now would close the connection) —
         * unless the client waits for 100 Continue: then a refusal must come instead. */
        if (!expects_continue)
            return MHD_YES;
    }
    if (req->magic != GW_REQ_MAGIC)
        abort(); /* a stale or foreign pointer: stop before doing damage */
    req->conn = c;
    if (!req->dispatched) {
        req->dispatched = true;
        enum MHD_Result r;
        const union MHD_ConnectionInfo *hi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        req->head_size = hi ? hi->header_size : 0;
        /* A head too large for the response head to follow it: this answer goes as it is. */
        req->head_refused = req->head_size + GW_RESPONSE_HEAD_ROOM > req->gw->cfg->connection_memory;
        if (req->head_refused)
            r = gw_reply_error(req, c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                               "request_head_too_large",
                               "the request head does not fit in the connection's memory "
                               "(HUBMETER_CONNECTION_MEMORY less 4 KiB for the response head)");
        else if (strlen(url) > URL_MAX)
            r = gw_reply_error(req, c, MHD_HTTP_URI_TOO_LONG, "uri_too_long",
                               "the request URI is longer than 8 KiB");
        else if (strncmp(url, "/-/", 3) == 0 || strcmp(url, "/-") == 0)
            r = gw_api(req, c, url);
        else
            r = proxy(req, c, url);
        if (req->deferred != NULL && r == MHD_YES) /* this call brought the body's start */
            return gw_reply_held(req, c, upload_data_size);
        if (first || !req->uploading || r != MHD_YES)
            return r; /* (on the first call, the body has not started) */
    }
    if (req->uploading) /* the body streams on to the upstream as it arrives */
        return *upload_data_size != 0 ? gw_upstream_http_feed(req, upload_data, upload_data_size)
                                      : gw_upstream_http_finish(req, c);
    if (req->deferred != NULL) /* the gateway's own answer waits for the body to end */
        return gw_reply_held(req, c, upload_data_size);
    if (req->stream != NULL) /* resumed: the upstream's head (or its failure) is there */
        return gw_upstream_http_resume(req, c);
    *upload_data_size = 0; /* a body nobody asked for (an answer is already queued) */
    return MHD_YES;
}

/* Body bytes the client received. A completed response counts whole; an aborted one
 * counts what the client's TCP acknowledged, minus the response head, never more than
 * was handed over (see README: within the head's size, no buffered bytes counted). */
static uint64_t delivered_bytes(const struct gw_req *req, bool complete)
{
    uint64_t acked;
    if (complete || !req->acked_known || gw_tcp_bytes_acked(req->fd, &acked) != CM_OK)
        return req->bytes_sent;
    uint64_t body = acked - req->acked_at_start;
    body = body > req->header_bytes ? body - req->header_bytes : 0;
    return body < req->bytes_sent ? body : req->bytes_sent;
}

/* Hands bytes of req to the meter. The first record of a request (its first checkpoint,
 * or its final record) counts the request; later ones add bytes only. */
static void record_usage(struct gw_req *req, unsigned status, uint64_t bytes)
{
    struct meter_record rec = {.org_id = req->id.org_id,
                               .key_id = req->id.key_id,
                               .status_class = (uint8_t)(status / 100),
                               .bytes = bytes,
                               .partial = req->request_counted};
    cm_copy(rec.refused_by, sizeof rec.refused_by, req->refused_by);
    req->request_counted = true;
    if (rec.status_class < 1 || rec.status_class > 5)
        rec.status_class = 5;
    if (rec.org_id == 0) /* anonymous traffic is known by its network */
        cm_copy(rec.network, sizeof rec.network, req->network);
    cm_copy(rec.repo, sizeof rec.repo, req->repo);
    cm_copy(rec.method, sizeof rec.method, req->method);
    cm_copy(rec.client, sizeof rec.client, req->client_ip);
    cm_copy(rec.etag, sizeof rec.etag, req->etag);
    /* Journaled with the other requests that end in this loop round (worker.c). */
    meter_record_later(req->gw->meter, gw_worker_pending(gw_worker_self()), &rec);
}

void gw_checkpoint(struct gw_req *req)
{
    if (!req->metered || req->bytes_sent - req->checkpoint_handed < GW_CHECKPOINT_BYTES)
        return;
    req->checkpoint_handed = req->bytes_sent;
    /* What the client acknowledged so far: never more than the final figure. */
    uint64_t delivered = delivered_bytes(req, false);
    if (delivered > req->checkpointed) {
        record_usage(req, req->status, delivered - req->checkpointed);
        req->checkpointed = delivered;
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct gw *gw = cls;
    struct gw_req *req = *con_cls;
    if (req == NULL)
        return;
    if (req->magic != GW_REQ_MAGIC)
        abort();
    bool complete = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->stream_failed;
    unsigned status = req->status ? req->status : 500;
    uint64_t delivered = delivered_bytes(req, complete);
    if (req->metered) {
        record_usage(req, status, delivered > req->checkpointed ? delivered - req->checkpointed : 0);
        char plan[32];
        gw_metrics_plan_label(&req->id, plan, sizeof plan);
        gw_metrics_request_done(&gw->metrics, plan, status, delivered);
        if (req->upstream_ms >= 0)
            gw_metrics_upstream_latency(&gw->metrics, req->upstream_ms);
    }
    gw_quota_end(req, status);
    atomic_fetch_sub(&gw->metrics.in_flight, 1);
    gw_watchdog_head(c, false); /* a kept-alive connection now waits for its next head */
    gw_access_log(req, status, delivered, complete);
    gw_req_forget(req);
    gw_upstream_http_detach(req);
    gw_upstream_http_abandon(req);
    if (req->deferred != NULL) /* the client left before its body ended */
        MHD_destroy_response(req->deferred);
    req->magic = 0;
    gw_worker_mem_give(gw_worker_self(), GW_MEM_REQ, req);
    *con_cls = NULL;
}

static int resolve_listen(const struct hm_config *cfg, struct sockaddr_storage *ss,
                          socklen_t *len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[8];
    cm_fmt(port, sizeof port, "%u", (unsigned)cfg->listen_port);
    if (getaddrinfo(cfg->listen_host, port, &hints, &ai) != 0 || ai == NULL)
        return CM_ERR;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return CM_OK;
}

/* The gateway's listening socket, shared by every worker's daemon (each gets a dup). */
static int open_listener(const struct hm_config *cfg, int *family)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve_listen(cfg, &ss, &len) != CM_OK) {
        fprintf(stderr, "hubmeter: HUBMETER_LISTEN host %s does not resolve\n", cfg->listen_host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0) {
        fprintf(stderr, "hubmeter: cannot listen on %s:%u (in use, or not allowed)\n",
                cfg->listen_host, (unsigned)cfg->listen_port);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *family = ss.ss_family;
    return fd;
}

static int listen_family = AF_INET;

/* A worker's daemon: external epoll mode (the worker runs it), connections added by the
 * acceptor (acceptor.c), suspend/resume for connections waiting on their upstream, accept
 * policy for the connection limits. */
static struct MHD_Daemon *start_daemon(struct gw *gw, struct gw_worker *w)
{
    (void)w;
    const struct hm_config *cfg = gw->cfg;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     MHD_USE_NO_LISTEN_SOCKET |
                     (listen_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    return MHD_start_daemon(
        flags, 0, gw_conn_accept, gw->watchdog, on_request, gw, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, gw,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_CONNECTION_LIMIT,
        cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, cfg->client_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->connection_memory, MHD_OPTION_NOTIFY_CONNECTION,
        gw_watchdog_notify, gw->watchdog, MHD_OPTION_END);
}

/* SIGHUP reloads what can change without a restart: the log level (from the environment
 * and the config file given at start), and the key cache is emptied so key changes apply
 * at once. Everything else needs a restart, and the log line says so. */
static void reload(struct gw *gw)
{
    struct hm_config fresh;
    char err[512];
    if (cm_config_load(&fresh, gw->cfg->config_file[0] ? gw->cfg->config_file : NULL, err,
                       sizeof err) != CM_OK) {
        cm_log(CM_LOG_ERROR, "reload_failed", "error=\"%s\"", err);
        return;
    }
    cm_log_set_level(fresh.log_level);
    gw_idcache_clear(gw->ids);
    cm_log(CM_LOG_INFO, "reloaded", "applied=\"log level, key cache\" restart_needed_for=\"other keys\"");
}

/* Waits for SIGINT/SIGTERM (reloading on SIGHUP), then stops accepting connections and
 * lets running requests finish for up to the shutdown grace period. */
static void wait_for_stop(struct gw *gw, const struct hm_config *cfg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
        reload(gw);
    for (int i = 0; i < gw->n_workers; i++)
        gw_worker_quiesce(gw->workers[i]);
    if (gw->listen_fd >= 0) {
        close(gw->listen_fd); /* the workers' dups are closed as they quiesce */
        gw->listen_fd = -1;
    }
    int64_t deadline = cm_mono_ms() + (int64_t)cfg->shutdown_grace_s * 1000;
    cm_log(CM_LOG_INFO, "stopping", "signal=%d in_flight=%lld grace_s=%u", sig,
           (long long)atomic_load(&gw->metrics.in_flight), cfg->shutdown_grace_s);
    while (atomic_load(&gw->metrics.in_flight) > 0 && cm_mono_ms() < deadline)
        usleep(50 * 1000);
    if (atomic_load(&gw->metrics.in_flight) > 0)
        cm_log(CM_LOG_WARN, "grace_expired", "in_flight=%lld",
               (long long)atomic_load(&gw->metrics.in_flight));
}

/* The CPUs this process may run on (its affinity: taskset, a container's cpuset). */
static int usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)cpus : 1;
}

int gw_serve(const struct hm_config *cfg)
{
    /* Block the stop signals in every thread; this thread waits for them below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Each download holds two descriptors (client and upstream): allow as many as the
     * hard limit permits, as nginx's worker_rlimit_nofile does. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    gw_upstream_http_global_init();
    gw_h1_init(cfg);

    char err[512];
    struct gw gw = {.cfg = cfg, .listen_fd = -1};
    gw_metrics_init(&gw.metrics);
    struct meter_flusher *flusher = NULL;
    int rc = 1;
    if (cfg->upstream_is_file && realpath(cfg->upstream_dir, gw.upstream_root) == NULL) {
        fprintf(stderr, "hubmeter: HUBMETER_UPSTREAM directory %s does not exist\n",
                cfg->upstream_dir);
        return 1;
    }
    if (gw_repo_patterns_check(cfg->repo_patterns, err, sizeof err) != CM_OK) {
        fprintf(stderr, "hubmeter: invalid configuration: %s\n", err);
        return 2;
    }
    gw.pg = cm_pg_pool_new(cfg->database_url, 16);
    gw.ids = gw_idcache_new();
    gw.plans = gw_plans_new();
    gw.meter = meter_new(cfg, err, sizeof err);
    if (gw.pg == NULL || gw.ids == NULL || gw.plans == NULL || gw.meter == NULL) {
        fprintf(stderr, "hubmeter: cannot start: %s\n", gw.meter ? "out of memory" : err);
        goto fail;
    }
    if (cfg->quotas && (gw.quota = meter_quota_new(cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "hubmeter: cannot start quotas: %s\n", err);
        goto fail;
    }
    if (gw.quota != NULL)
        meter_quota_set_seeder(gw.quota, gw_quota_seed, &gw);
    if (cfg->run_flusher) {
        flusher = meter_flusher_new(cfg, err, sizeof err);
        if (flusher == NULL || meter_flusher_start(flusher) != CM_OK) {
            fprintf(stderr, "hubmeter: cannot start the flusher: %s\n", err);
            goto fail;
        }
    }
    gw.watchdog = gw_watchdog_new(&gw, cfg->header_timeout_s);
    if (gw.watchdog == NULL) {
        fprintf(stderr, "hubmeter: cannot start the slow-client watchdog\n");
        goto fail;
    }
    gw.admin = gw_admin_start(&gw); /* before the public listener: healthy means both */
    gw.webhooks = gw.admin ? gw_webhooks_start(&gw) : NULL;
    if (gw.admin == NULL || gw.webhooks == NULL)
        goto fail;
    gw.listen_fd = open_listener(cfg, &listen_family);
    gw.acceptor = gw_acceptor_new();
    if (gw.listen_fd < 0 || gw.acceptor == NULL)
        goto fail;
    /* libmicrohttpd callocs a large response's buffer (LARGE_BLOCK) whole. From mmap, its
     * pages become memory only as bytes are read into them (a slow client's stay untouched);
     * glibc's moving threshold would serve it from the heap once the first one is freed,
     * and calloc would zero all of it. */
    mallopt(M_MMAP_THRESHOLD, GW_MMAP_THRESHOLD);
    int n = cfg->workers ? (int)cfg->workers : usable_cpus();
    for (gw.n_workers = 0; gw.n_workers < n && gw.n_workers < GW_MAX_WORKERS; gw.n_workers++)
        if ((gw.workers[gw.n_workers] = gw_worker_start(&gw, gw.n_workers, start_daemon)) ==
            NULL) {
            fprintf(stderr, "hubmeter: cannot start the gateway's event loops\n");
            goto fail;
        }
    cm_log(CM_LOG_INFO, "listening",
           "address=%s:%u upstream=%s flusher=%s quotas=%s workers=%d", cfg->listen_host,
           (unsigned)cfg->listen_port, cfg->upstream, cfg->run_flusher ? "on" : "off",
           cfg->quotas ? "on" : "off", gw.n_workers);
    wait_for_stop(&gw, cfg);
    rc = 0;
fail:
    atomic_store(&gw.stopping, true);
    gw_webhooks_stop(gw.webhooks);
    gw_admin_stop(gw.admin);
    for (int i = 0; i < gw.n_workers; i++)
        gw_worker_free(gw.workers[i]); /* resumes, closes what is left, stops */
    gw_acceptor_free(gw.acceptor);
    if (gw.listen_fd >= 0) {
        close(gw.listen_fd);
        gw.listen_fd = -1;
    }
    gw_watchdog_free(gw.watchdog);
    meter_free(gw.meter);           /* ships what is left */
    meter_flusher_free(flusher);
    meter_quota_free(gw.quota);
    gw_plans_free(gw.plans);
    gw_idcache_free(gw.ids);
    cm_pg_pool_free(gw.pg);
    gw_upstream_http_global_cleanup();
    gw_metrics_destroy(&gw.metrics);
    return rc;
}
