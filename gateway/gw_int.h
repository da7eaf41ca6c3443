/*
 * gateway internals shared by the files of gateway/ only: the server handle, the
 * per-request context, and the functions each file offers the others.
 */
#ifndef HM_GW_INT_H
#define HM_GW_INT_H

#include <curl/curl.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <pthread.h>

#include "gateway/gateway.h"
#include "meter/meter.h"
#include "registry/registry.h"

#define GW_REQ_MAGIC 0x68726571u /* "hreq": checked whenever a request comes back as void * */

/* What an epoll event of a worker is about (worker.c). */
enum gw_watch_kind { GW_W_MHD, GW_W_WAKE, GW_W_CURL, GW_W_CLIENT, GW_W_GONE, GW_W_LISTEN, GW_W_H1 };
struct gw_watch {
    enum gw_watch_kind kind;
    int fd;
    void *obj; /* GW_W_CLIENT: the struct gw_req; GW_W_GONE: the next freed watch */
};

/* hubmeter's own HTTP/1.1 client (upstream_h1.c): an event of its socket, and a worker's end. */
void gw_h1_event(struct gw_watch *wt, uint32_t events);
void gw_h1_worker_exit(void);
struct gw_idcache;
struct gw_watchdog;
struct gw_plans;
struct gw_admin;
struct gw_webhooks;

#define GW_LATENCY_BUCKETS 12
#define GW_LABEL_SLOTS 16 /* distinct plan (or policy) label values kept; more become "other" */

/* A latency histogram in atomics (bounds in gw_metrics.c, seconds). */
struct gw_histogram {
    _Atomic uint64_t le[GW_LATENCY_BUCKETS];
    _Atomic uint64_t count, sum_us;
};

/* A small, bounded set of label values (plans, refusal policies: operator-defined and
 * few). Slots are added under lock and never removed; finding a slot needs no lock. A slot
 * may later get a display name (a plan's name for "#<id>"), kept once set. */
struct gw_label_set {
    pthread_mutex_t lock; /* serialises adding a value and setting or reading a display */
    char names[GW_LABEL_SLOTS][32];
    char display[GW_LABEL_SLOTS][64]; /* "" until known */
    _Atomic int used;
};

/* Counters for /-/metrics; every field is an atomic, written from request threads.
 * Index [GW_LABEL_SLOTS] of a labelled counter is the overflow value "other". */
struct gw_metrics {
    struct gw_label_set plans;
    _Atomic uint64_t requests[GW_LABEL_SLOTS + 1][5]; /* by plan and status class 1xx..5xx */
    _Atomic uint64_t bytes[GW_LABEL_SLOTS + 1][5];
    struct gw_label_set policies;
    _Atomic uint64_t refused[GW_LABEL_SLOTS + 1]; /* 429s by policy */
    _Atomic int64_t in_flight;           /* every request being served */
    _Atomic int64_t downloads_in_flight; /* proxied (metered) requests being served */
    _Atomic uint64_t slow_clients_cut;
    struct gw_histogram upstream;  /* time to the upstream's response head */
    struct gw_histogram admission; /* identify + admit, before the upstream is asked */
    _Atomic uint64_t paced_us; /* time downloads were held back by byte buckets */
};

#define GW_MAX_WORKERS 64
struct gw_worker;
struct gw_acceptor;

struct gw {
    const struct hm_config *cfg;
    struct gw_worker *workers[GW_MAX_WORKERS]; /* the event loops (worker.c) */
    int n_workers;
    struct gw_acceptor *acceptor; /* deals new connections to the workers (acceptor.c) */
    int listen_fd;                /* the public listening socket */
    struct cm_pg_pool *pg;
    struct meter *meter;
    struct gw_idcache *ids;
    struct gw_plans *plans;
    struct meter_quota *quota; /* NULL when quotas are off */
    char upstream_root[PATH_MAX]; /* realpath of a file:// upstream's directory */
    struct gw_metrics metrics;
    struct gw_watchdog *watchdog;
    struct gw_admin *admin; /* the admin API's listener (admin.c) */
    struct gw_webhooks *webhooks; /* the quota webhook sender (webhooks.c) */
    _Atomic bool stopping; /* set at shutdown: waits for upstream data give up */
};

/* ---- metrics (metrics.c) ---------------------------------------------------------------------- */
void gw_metrics_init(struct gw_metrics *m);
void gw_metrics_destroy(struct gw_metrics *m);
/* The plan label of an identity: "anonymous", "none" (an org without a plan), or
 * "#<plan id>", which /-/metrics shows as the plan's name once it has read it. */
void gw_metrics_plan_label(const struct reg_identity *id, char *out, size_t len);
/* A proxied request started (in-flight downloads). */
void gw_metrics_download_started(struct gw_metrics *m);
/* A proxied request ended with status after delivering bytes; plan as above. */
void gw_metrics_request_done(struct gw_metrics *m, const char *plan, unsigned status,
                             uint64_t bytes);
/* A 429 by policy ("requests", "bytes", "monthly_bytes", ...: a bounded set). */
void gw_metrics_refused(struct gw_metrics *m, const char *policy);
void gw_metrics_upstream_latency(struct gw_metrics *m, int64_t ms);
/* Admission latency (identify + admit), microseconds. */
void gw_metrics_admission_latency(struct gw_metrics *m, int64_t us);
void gw_histogram_observe(struct gw_histogram *h, int64_t us);
/* Prometheus text for gw (its counters, its meter's state, the process's Redis and
 * PostgreSQL errors, the flusher's progress); caller frees. NULL when out of memory. */
char *gw_metrics_render(struct gw *gw);

/* ---- slow clients (watchdog.c) ------------------------------------------------------------------ */
/* Tracks connections and cuts those whose request head takes longer than timeout_s. */
struct gw_watchdog *gw_watchdog_new(struct gw *gw, unsigned timeout_s);
void gw_watchdog_free(struct gw_watchdog *w);
/* libmicrohttpd's connection notification (MHD_OPTION_NOTIFY_CONNECTION). */
void gw_watchdog_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
/* The connection's request head has arrived (true) or it waits for the next one (false). */
void gw_watchdog_head(struct MHD_Connection *c, bool seen);
/* A request starts on c: its head has arrived (as gw_watchdog_head(c, true)); copies its
 * client's address and network (formatted once per connection) to ip and net, and
 * returns the connection's socket (-1 when unknown). */
int gw_watchdog_request(struct MHD_Connection *c, char *ip, size_t iplen, char *net,
                        size_t netlen);

/* Per-request state: allocated on the first call of the access handler, freed in the
 * completion callback. Everything the meter needs is filled in before the response. */
struct gw_req {
    uint32_t magic;
    struct gw *gw;
    int64_t start_us;
    char method[8];
    char client_ip[48];
    char network[48];    /* IPv4 /24 or IPv6 /48 of the client */
    char repo[160];
    char key_display[32]; /* "" for anonymous */
    char etag[96];        /* the response's ETag, for per-object usage ("" when none) */
    char error_code[40];  /* the code of a gateway-made error reply ("" when none) */
    struct reg_identity id; /* org_id 0 = anonymous */
    unsigned status;
    bool metered;         /* proxied requests are metered; /-/ endpoints are not */
    uint64_t bytes_sent;  /* body bytes handed to libmicrohttpd (or the file's length) */
    bool stream_failed;   /* the body ended early (upstream error): connection closed */
    int fd;               /* the client socket, for TCP_INFO */
    bool acked_known;     /* acked_at_start was read */
    uint64_t acked_at_start; /* tcpi_bytes_acked when the response was queued */
    uint64_t header_bytes; /* estimated size of the response head */
    size_t head_size;      /* of the request head, as libmicrohttpd read it */
    bool head_refused;     /* refused for a head's size: the refusal is not checked again */
    unsigned upstream_status;
    int64_t upstream_ms;  /* time to the upstream's response head, -1 when none */
    uint64_t checkpoint_handed; /* bytes_sent at the last checkpoint */
    uint64_t checkpointed;      /* bytes already handed to the meter by checkpoints */
    bool request_counted;       /* a record of this request has counted it */
    bool dispatched;      /* routed (identity checked, upstream started or answered) */
    bool uploading;       /* the request body streams to the upstream */
    /* A request body the gateway does not forward (its answer is the gateway's own): the
     * answer waits until the body is read and dropped (reply.c), so the client reads it
     * instead of a connection reset, and the connection stays alive. */
    bool body_unread;
    struct MHD_Response *deferred;
    unsigned deferred_status;
    uint64_t body_dropped;
    void *stream;         /* an upstream transfer not yet owned by a response */
    bool quota_decided;   /* an admission decision was made (headers follow it) */
    struct meter_decision quota;
    struct meter_flow qflow;
    char refused_by[24];  /* the policy of a 429, "" otherwise */
    /* Event loop state (worker.c): a request waiting on its upstream, its upload buffer or
     * its org's byte bucket suspends its connection until woken or its timer is due. */
    struct MHD_Connection *conn;
    bool suspended, wake_queued, timer_fired, client_watched, client_hung_up;
    int64_t timer_due_ms;       /* 0: no timer */
    int64_t suspend_due_ms;     /* when the current suspension ends at the latest */
    int early_polls;            /* loop rounds left to find the upstream's head before the
                                 * connection is suspended (upstream_http.c) */
    struct gw_req *timer_next, *ready_next;
    struct gw_req **timer_pprev; /* where its worker's timer list points at it (NULL: none) */
    struct gw_watch client_watch;
    void *live_stream;          /* the stream its response reads (told when req ends) */
};

/* A streaming download hands its progress to the meter every GW_CHECKPOINT_BYTES, so a
 * kill -9 of the gateway loses at most about that much of it (README). */
#define GW_CHECKPOINT_BYTES (1u << 20)
/* Records req's progress if GW_CHECKPOINT_BYTES more were handed since the last one. */
void gw_checkpoint(struct gw_req *req);

/* ---- access log (accesslog.c) --------------------------------------------------------------- */
/* Writes req's one structured line (HUBMETER_ACCESS_LOG_FORMAT: logfmt or json) with the
 * final status, the body bytes delivered, and whether the response completed. */
void gw_access_log(const struct gw_req *req, unsigned status, uint64_t delivered, bool complete);

/* ---- delivered bytes (delivered.c) ----------------------------------------------------------- */
/* The bytes the peer has acknowledged on TCP socket fd so far. CM_ERR when unknown. */
int gw_tcp_bytes_acked(int fd, uint64_t *acked);
/* What a request head leaves of the connection's memory for the response head. */
#define GW_RESPONSE_HEAD_ROOM 4096
/* A body up to this size that leaves from memory with its head is counted whole, even if
 * the client hangs up before reading it (no TCP_INFO for it: see README, What is counted). */
#define GW_COUNTED_WHOLE_MAX (16 * 1024)

/* ---- replies (reply.c) -------------------------------------------------------------------- */
/* Queues a JSON error {"error":{"code","message"}} with status; records it in req. */
enum MHD_Result gw_reply_error(struct gw_req *req, struct MHD_Connection *c, unsigned status,
                               const char *code, const char *message);
/* Queues a 401 with WWW-Authenticate: Basic (for clients that wait for a challenge). */
enum MHD_Result gw_reply_challenge(struct gw_req *req, struct MHD_Connection *c);
/* Queues body (stolen reference) as JSON with status. */
enum MHD_Result gw_reply_json(struct gw_req *req, struct MHD_Connection *c, unsigned status,
                              json_t *body);
/* Queues resp with status, records status in req, and drops our reference to resp. While
 * req->body_unread (and not uploading), the answer is held until the body is dropped. */
enum MHD_Result gw_reply(struct gw_req *req, struct MHD_Connection *c, unsigned status,
                         struct MHD_Response *resp);
/* Called with each later piece of a request whose answer is held: drops the piece, and
 * queues the answer once the body is complete; MHD_NO (close) when the body is longer
 * than it is worth reading. */
enum MHD_Result gw_reply_held(struct gw_req *req, struct MHD_Connection *c,
                              size_t *upload_data_size);
/* True when c's request announces a body that will arrive without a 100-continue;
 * *expects_continue: its client waits for 100 Continue before it sends its body. */
bool gw_body_follows(struct MHD_Connection *c, bool *expects_continue);

/* ---- identity (identity.c) ----------------------------------------------------------------- */
enum gw_cred { GW_CRED_NONE, GW_CRED_KEY, GW_CRED_MALFORMED };
/* Extracts the API key from Authorization (Bearer, or Basic with the key as password)
 * or X-Api-Key. Pure: key is copied into keybuf; *why explains GW_CRED_MALFORMED. */
enum gw_cred gw_credential_parse(const char *authorization, const char *x_api_key,
                                 char *keybuf, size_t keylen, const char **why);
struct gw_idcache *gw_idcache_new(void);
void gw_idcache_free(struct gw_idcache *cache);
/* Forgets every cached key (after a reload). */
void gw_idcache_clear(struct gw_idcache *cache);
/* Identifies req from its headers. CM_OK: req->id filled (org_id 0 = anonymous).
 * Otherwise an error reply has been queued and the handler returns its result in *mhd. */
int gw_identify(struct gw_req *req, struct MHD_Connection *c, enum MHD_Result *mhd);

/* ---- request facts (reqinfo.c, pure) -------------------------------------------------------- */
/* The client's address and network (IPv4 /24, IPv6 /48) as text. */
void gw_client_network(const struct sockaddr *sa, char *ip, size_t iplen, char *net,
                       size_t netlen);
/* Percent-decodes in into out (NUL-terminated); CM_INVALID for a bad escape, an encoded
 * NUL, or when out is too small. */
int gw_percent_decode(const char *in, char *out, size_t outlen);
/* Accept value without its Xet media types ("application/vnd.xet-…"), into out ("" when
 * nothing is left): a metered route asks the upstream for the file, never for Xet file
 * info (whose Xet headers the gateway strips). */
void gw_accept_without_xet(const char *value, char *out, size_t len);
/* True when path matches one of the comma-separated shell patterns ('*' crosses '/'). */
bool gw_path_matches(const char *patterns, const char *path);
/* The repository a request path refers to, by the first matching pattern of the
 * comma-separated list ("[label=]/{ns}/{repo}/resolve/…": {ns} and {repo} are one path
 * segment, a final * matches the rest); "label" + "ns/repo", or "" when none matches. */
void gw_repo_from_path(const char *patterns, const char *path, char *repo, size_t len);
/* Checks a pattern list; CM_INVALID with err naming the bad pattern. */
int gw_repo_patterns_check(const char *patterns, char *err, size_t errlen);

/* ---- event loops (worker.c) ---------------------------------------------------------------------- */
#define GW_STREAM_BUFFER (512 * 1024) /* an upstream response's buffer per connection */
/* Allocations from this size up come from mmap, always (mallopt at start): see serve. */
#define GW_MMAP_THRESHOLD (1024 * 1024)
typedef struct MHD_Daemon *(*gw_daemon_starter)(struct gw *gw, struct gw_worker *w);
/* Starts a worker whose daemon start() makes (external epoll mode, no listening socket
 * of its own), then attaches it to gw->acceptor. NULL on failure. */
struct gw_worker *gw_worker_start(struct gw *gw, int index, gw_daemon_starter start);
/* Stops accepting connections (running requests go on). Thread-safe. */
void gw_worker_quiesce(struct gw_worker *w);
/* Stops the loop (resuming what is suspended), then the daemon; frees. */
void gw_worker_free(struct gw_worker *w);
/* The worker whose thread this is (NULL elsewhere). */
struct gw_worker *gw_worker_self(void);
int gw_worker_epfd(struct gw_worker *w);
struct MHD_Daemon *gw_worker_daemon(struct gw_worker *w);
/* Memory for a request (struct gw_req), a stream, a block of its response head or a small
 * body handed to libmicrohttpd, kept by the worker between requests (each kind always of one
 * size):
 * the caller initialises it; gw_worker_mem_give takes it back on w's thread (elsewhere, or
 * beyond what is kept, it is freed). Both malloc-compatible. */
enum gw_mem { GW_MEM_REQ, GW_MEM_STREAM, GW_MEM_HEAD_BLOCK, GW_MEM_SMALL_BODY, GW_MEM_KINDS };
void *gw_worker_mem(struct gw_worker *w, enum gw_mem kind, size_t size);
void gw_worker_mem_give(struct gw_worker *w, enum gw_mem kind, void *p);
/* The usage records w collects in its loop round (flushed at the round's end), on w's own
 * thread; NULL elsewhere (then a record is journaled at once). */
struct meter_pending *gw_worker_pending(struct gw_worker *w);
/* Wakes w's loop (thread-safe): it then takes the connections dealt to it. */
void gw_worker_wake(struct gw_worker *w);

/* ---- dealing connections to workers (acceptor.c) ----------------------------------------------- */
struct gw_acceptor *gw_acceptor_new(void);
/* Worker index (w, running) watches its own dup of listen_fd and is dealt connections
 * from then on; called in order 0, 1, … */
int gw_acceptor_attach(struct gw_acceptor *a, struct gw_worker *w, int index, int listen_fd);
/* On worker self's thread: accepts what waits and deals it round-robin. */
void gw_acceptor_accept(struct gw_acceptor *a, int self);
/* Called by worker self's loop thread when it starts (its CPU set is then known). */
void gw_acceptor_running(struct gw_acceptor *a, int self);
/* On worker self's thread: hands the connections dealt to it to its daemon. */
void gw_acceptor_take(struct gw_acceptor *a, int self);
/* On worker self's thread: resumes listening after a pause for want of descriptors;
 * returns when to call again (0: nothing paused). */
int64_t gw_acceptor_due(struct gw_acceptor *a, int self, int64_t now);
/* On worker self's thread: it stops accepting (shutdown). */
void gw_acceptor_stop(struct gw_acceptor *a, int self);
/* After every worker stopped: closes what is left. */
void gw_acceptor_free(struct gw_acceptor *a);
CURLM *gw_worker_multi(struct gw_worker *w);
/* A stream buffer (GW_STREAM_BUFFER bytes) from the worker's pool, or malloc'd; and back. */
char *gw_worker_buffer(struct gw_worker *w);
void gw_worker_buffer_give(struct gw_worker *w, char *buf);
/* A curl easy handle from the worker's pool (reset), or a new one; and back. */
CURL *gw_worker_easy(struct gw_worker *w);
void gw_worker_easy_give(struct gw_worker *w, CURL *easy);
/* On w's thread: a handler returned without an answer and without suspending (it looks for
 * its upstream's head again next round): the loop then waits briefly for events instead of
 * turning at once (worker.c). */
void gw_worker_polling(struct gw_worker *w);
/* Suspends req's connection (from its handler or content reader) until it is woken or
 * due_ms (CLOCK_MONOTONIC ms) comes; its client's hang-up also wakes it. */
void gw_req_suspend(struct gw_req *req, int64_t due_ms);
/* Resumes req (if suspended) at the end of the worker's current round. */
void gw_req_wake(struct gw_req *req);
/* Sets (or moves) req's timer. */
void gw_req_timer(struct gw_req *req, int64_t due_ms);
/* Removes req from its worker's timers and wake-ups (it ends). */
void gw_req_forget(struct gw_req *req);
/* Connection limits, total and per client address (watchdog.c): libmicrohttpd's accept
 * policy callback (cls: the watchdog). */
enum MHD_Result gw_conn_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);

/* ---- upstreams (upstream_http.c, upstream_file.c) -------------------------------------------- */
/* Forwards req to the HTTP upstream. Without a body: waits for the response head and
 * queues the streamed response (or a JSON error). With a body: starts the transfer, which
 * gw_upstream_http_feed feeds chunk by chunk and gw_upstream_http_finish answers. follow:
 * redirects are followed here (metered) and Xet hints stripped. */
enum MHD_Result gw_upstream_http(struct gw_req *req, struct MHD_Connection *c, const char *url,
                                 bool with_body, bool follow);
enum MHD_Result gw_upstream_http_feed(struct gw_req *req, const char *data, size_t *size);
enum MHD_Result gw_upstream_http_finish(struct gw_req *req, struct MHD_Connection *c);
/* Frees a transfer that never became a response (client gone); no-op when none. */
void gw_upstream_http_abandon(struct gw_req *req);
/* Serves the file under the configured directory for path (or a JSON error). */
enum MHD_Result gw_upstream_file(struct gw_req *req, struct MHD_Connection *c, const char *path);
/* curl finished easy (called by the worker loop). */
void gw_upstream_http_done(CURL *easy, CURLcode result);
/* The handler is called again for req after a resume: answers when the upstream's head
 * (or its failure, or the first-byte timeout) is there, else suspends again. */
enum MHD_Result gw_upstream_http_resume(struct gw_req *req, struct MHD_Connection *c);
/* req ends: its response's stream must not touch it any more. */
void gw_upstream_http_detach(struct gw_req *req);
void gw_upstream_http_global_init(void);
/* Decides once, before the workers start, whether hubmeter's own client serves the
 * configured upstream (upstream_h1.c). */
void gw_h1_init(const struct hm_config *cfg);
void gw_upstream_http_global_cleanup(void);

/* ---- admission (admission.c) ------------------------------------------------------------------- */
struct gw_plans *gw_plans_new(void);
void gw_plans_free(struct gw_plans *p);
/* The monthly usage of a quota subject from PostgreSQL (meter_quota_seed_fn; arg: struct gw). */
int gw_quota_seed(void *arg, const char *subject, int64_t from, int64_t to, uint64_t *bytes);
/* The plan holding req (its org's, or the anonymous plan for its network) and the quota
 * subject; false when none applies (not limited). */
/* The plan called name from the plan cache (reloaded when unknown); false when none is. */
bool gw_plan_named(struct gw *gw, const char *name, struct meter_plan *plan);
/* The quota document of /-/v1/quota (meter_quota_json) for subject under plan, read without
 * spending anything; {"plan":null,"policies":[],"source":"quotas_off"|"no_plan"} when quotas
 * are off or plan is NULL. New reference (NULL: out of memory). */
json_t *gw_quota_doc(struct gw *gw, const struct meter_plan *plan, const char *subject,
                     int anchor);
bool gw_plan_of(struct gw_req *req, struct meter_plan *plan, char *subject, size_t len,
                int *anchor);
/* Decides req against its plan. CM_OK: go on. Otherwise a 429 is queued, *mhd says. */
int gw_admit(struct gw_req *req, struct MHD_Connection *c, enum MHD_Result *mhd);
/* Adds the rate-limit headers of req's decision (and Retry-After on a refusal) to resp. */
void gw_quota_headers(struct gw_req *req, struct MHD_Response *resp);
/* Charges n bytes being sent; returns how long (µs) the stream must then pause while the
 * org's byte bucket is in debt (0: none). Never waits itself. */
int64_t gw_quota_charge(struct gw_req *req, uint64_t n);
/* Ends req's quota state (status 304 refunds the request token). */
void gw_quota_end(struct gw_req *req, unsigned status);

/* ---- the gateway's own endpoints (api.c) ------------------------------------------------------ */
enum MHD_Result gw_api(struct gw_req *req, struct MHD_Connection *c, const char *url);

/* ---- usage answers shared by the org and admin APIs (usage_api.c) ------------------------------- */
/* Answers GET …/usage for org_id from the query string (JSON, or CSV when asked). */
enum MHD_Result gw_usage_reply(struct gw_req *req, struct MHD_Connection *c, int64_t org_id,
                               const char *org_slug);
/* Answers GET …/usage/export?month=YYYY-MM[&format=csv|json] for org_id. */
enum MHD_Result gw_usage_export_reply(struct gw_req *req, struct MHD_Connection *c,
                                      int64_t org_id);
/* /-/v1/webhooks[/{id}]: the key's org's quota webhooks (org_webhooks.c). */
enum MHD_Result gw_org_webhooks(struct gw_req *req, struct MHD_Connection *c, const char *url);
/* The OpenAPI document of the org API (gateway/openapi.json, embedded at build time). */
extern const char gw_openapi_json[];

/* ---- the admin API (admin.c) -------------------------------------------------------------------- */
/* Starts the admin listener on cfg's admin address (bootstrapping HUBMETER_ADMIN_TOKEN).
 * NULL (message on stderr) when it cannot listen. */
struct gw_admin *gw_admin_start(struct gw *gw);
/* Stops the listener and waits for its requests; no-op for NULL. */
void gw_admin_stop(struct gw_admin *admin);

/* ---- quota webhooks (webhooks.c) ------------------------------------------------------------ */
/* Starts the sender thread; NULL when it cannot. Stop (and free) with gw_webhooks_stop. */
struct gw_webhooks *gw_webhooks_start(struct gw *gw);
void gw_webhooks_stop(struct gw_webhooks *w);

#endif
