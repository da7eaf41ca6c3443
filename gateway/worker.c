/*
 * The gateway's event loops: HUBMETER_WORKERS threads (default: one per CPU), each owning
 * a libmicrohttpd daemon in external-epoll mode fed with the connections acceptor.c deals
 * it (round-robin over the workers), a libcurl multi handle driven by curl's socket and
 * timer callbacks (its connection cache keeps upstream connections alive across
 * requests), and the timers of its requests. A request waiting on its upstream, on its
 * upload buffer or on its org's byte bucket suspends its connection; the loop resumes it
 * when curl delivers, when a timer is due, or when the client hangs up (its socket is
 * watched while suspended, since libmicrohttpd does not watch suspended connections).
 * Everything of a connection happens on its worker's thread: no locks on the data path.
 */
#include "gateway/gw_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define BUFFER_POOL 64
#define EASY_POOL 64
#define MEM_POOL 64
/* A connection suspended longer than this has its client's socket watched for a hang-up
 * (shorter waits are not worth two epoll_ctl calls). */
#define WATCH_AFTER_MS 50
/* When libmicrohttpd has work at once only because handlers are looking for their
 * upstream's head (gw_worker_polling), the loop waits up to this long for events instead
 * of turning at once: the head wakes it as soon as it comes, and until then the core goes
 * to whoever produces it (with the upstream on the same core, spinning delayed it). */
#define POLLING_WAIT_US 50

struct gw_worker {
    struct gw *gw;
    int index;
    pthread_t thread;
    struct MHD_Daemon *daemon;
    CURLM *multi;
    int epfd, wakefd;
    struct gw_watch mhd_watch, wake_watch;
    int64_t curl_due_ms; /* curl's timer (-1: none) */
    _Atomic bool quiesce, stop;
    bool quiesced;
    struct gw_req *timers; /* suspended requests (each has a timer): timer_next/_pprev */
    struct gw_req *ready;  /* requests to resume after this round, linked through ready_next */
    struct gw_watch *gone; /* curl socket watches removed during a round: freed after it
                            * (an event for them may still be in the round's batch) */
    bool thread_started;
    char *buffers[BUFFER_POOL]; /* stream buffers kept for the next requests */
    int n_buffers;
    CURL *easies[EASY_POOL];    /* reset easy handles kept for the next requests */
    int n_easies;
    struct meter_pending *pending; /* usage records of the round, flushed at its end */
    bool polling;                  /* a handler of this round will look again (see above) */
    void *mem[GW_MEM_KINDS][MEM_POOL]; /* requests' and streams' memory for the next ones */
    int n_mem[GW_MEM_KINDS];
};

static _Thread_local struct gw_worker *current;

struct gw_worker *gw_worker_self(void) { return current; }

CURLM *gw_worker_multi(struct gw_worker *w) { return w->multi; }

int gw_worker_epfd(struct gw_worker *w) { return w->epfd; }

struct MHD_Daemon *gw_worker_daemon(struct gw_worker *w) { return w->daemon; }

void gw_worker_polling(struct gw_worker *w)
{
    if (w != NULL)
        w->polling = true;
}

struct meter_pending *gw_worker_pending(struct gw_worker *w)
{
    return w != NULL && w == current ? w->pending : NULL;
}

char *gw_worker_buffer(struct gw_worker *w)
{
    if (w != NULL && w->n_buffers > 0)
        return w->buffers[--w->n_buffers];
    return malloc(GW_STREAM_BUFFER);
}

CURL *gw_worker_easy(struct gw_worker *w)
{
    if (w != NULL && w == current && w->n_easies > 0)
        return w->easies[--w->n_easies];
    return curl_easy_init();
}

void gw_worker_easy_give(struct gw_worker *w, CURL *easy)
{
    if (easy == NULL)
        return;
    if (w != NULL && w == current && w->n_easies < EASY_POOL) {
        curl_easy_reset(easy);
        w->easies[w->n_easies++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

/* Under AddressSanitizer the memory goes back to malloc at once, so that a use after the
 * end of a request is caught. */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_KEPT 0
#else
#define MEM_KEPT 1
#endif

void *gw_worker_mem(struct gw_worker *w, enum gw_mem kind, size_t size)
{
    if (MEM_KEPT && w != NULL && w == current && w->n_mem[kind] > 0)
        return w->mem[kind][--w->n_mem[kind]];
    return malloc(size);
}

void gw_worker_mem_give(struct gw_worker *w, enum gw_mem kind, void *p)
{
    if (MEM_KEPT && p != NULL && w != NULL && w == current && w->n_mem[kind] < MEM_POOL)
        w->mem[kind][w->n_mem[kind]++] = p;
    else
        free(p);
}

void gw_worker_buffer_give(struct gw_worker *w, char *buf)
{
    if (buf != NULL && w != NULL && w == current && w->n_buffers < BUFFER_POOL)
        w->buffers[w->n_buffers++] = buf;
    else
        free(buf);
}

/* ---- suspending and resuming ---------------------------------------------------------------- */

static void watch_client(struct gw_worker *w, struct gw_req *req, bool on)
{
    if (req->fd < 0 || req->client_watched == on)
        return;
    req->client_watch = (struct gw_watch){.kind = GW_W_CLIENT, .fd = req->fd, .obj = req};
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = &req->client_watch};
    if (epoll_ctl(w->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, req->fd, &ev) == 0 || !on)
        req->client_watched = on;
}

void gw_req_suspend(struct gw_req *req, int64_t due_ms)
{
    /* The timer first comes after WATCH_AFTER_MS to start watching the client's socket
     * (run_timers), then at due_ms. */
    int64_t watch_at = cm_mono_ms() + WATCH_AFTER_MS;
    req->suspend_due_ms = due_ms;
    gw_req_timer(req, !req->client_watched && watch_at < due_ms ? watch_at : due_ms);
    if (req->suspended)
        return;
    req->suspended = true;
    req->timer_fired = false;
    MHD_suspend_connection(req->conn);
}

/* Queues req to be resumed at the end of the current loop round (at most once). */
void gw_req_wake(struct gw_req *req)
{
    struct gw_worker *w = current;
    if (!req->suspended || req->wake_queued || w == NULL)
        return;
    req->wake_queued = true;
    req->ready_next = w->ready;
    w->ready = req;
}

/* Takes req's timer off its worker's list (O(1): the list is doubly linked). */
static void timer_unlink(struct gw_req *req)
{
    if (req->timer_pprev == NULL)
        return;
    *req->timer_pprev = req->timer_next;
    if (req->timer_next != NULL)
        req->timer_next->timer_pprev = req->timer_pprev;
    req->timer_pprev = NULL;
    req->timer_next = NULL;
    req->timer_due_ms = 0;
}

/* Resumes req; its timer goes (a suspended request is the only kind that has one, so the
 * list stays as short as the number of waiting requests). */
static void resume(struct gw_worker *w, struct gw_req *req)
{
    timer_unlink(req);
    req->wake_queued = false;
    if (!req->suspended)
        return;
    req->suspended = false;
    watch_client(w, req, false);
    MHD_resume_connection(req->conn);
}

void gw_req_timer(struct gw_req *req, int64_t due_ms)
{
    struct gw_worker *w = current;
    if (w == NULL)
        return;
    if (req->timer_pprev == NULL) { /* not linked yet */
        req->timer_next = w->timers;
        if (w->timers != NULL)
            w->timers->timer_pprev = &req->timer_next;
        w->timers = req;
        req->timer_pprev = &w->timers;
    }
    req->timer_due_ms = due_ms;
}

void gw_req_forget(struct gw_req *req)
{
    struct gw_worker *w = current;
    if (w == NULL)
        return;
    timer_unlink(req);
    for (struct gw_req **p = &w->ready; req->wake_queued && *p != NULL; p = &(*p)->ready_next)
        if (*p == req) {
            *p = req->ready_next;
            break;
        }
    req->wake_queued = false;
    watch_client(w, req, false);
}

/* Fires the due timers: their requests are resumed (the handler or content reader then
 * sees why: a deadline passed, pacing is over). Returns the next due time (0: none). */
static int64_t run_timers(struct gw_worker *w, int64_t now)
{
    int64_t next = 0;
    for (struct gw_req *req = w->timers, *after; req != NULL; req = after) {
        after = req->timer_next; /* resume() unlinks req */
        if (req->timer_due_ms <= now && req->suspended && req->suspend_due_ms > now) {
            watch_client(w, req, true); /* a long wait: its client's hang-up must wake it */
            req->timer_due_ms = req->suspend_due_ms;
        }
        if (req->timer_due_ms <= now) {
            req->timer_fired = true;
            resume(w, req);
            continue;
        }
        if (next == 0 || req->timer_due_ms < next)
            next = req->timer_due_ms;
    }
    return next;
}

static void run_ready(struct gw_worker *w)
{
    while (w->ready != NULL) {
        struct gw_req *req = w->ready;
        w->ready = req->ready_next;
        resume(w, req);
    }
}

/* ---- libcurl's callbacks ----------------------------------------------------------------------- */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct gw_worker *w = userp;
    struct gw_watch *wt = socketp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
        if (wt != NULL) {
            wt->kind = GW_W_GONE;
            wt->obj = w->gone;
            w->gone = wt;
        }
        curl_multi_assign(w->multi, fd, NULL);
        return 0;
    }
    bool add = wt == NULL;
    if (add) {
        wt = calloc(1, sizeof *wt);
        if (wt == NULL)
            return -1;
        *wt = (struct gw_watch){.kind = GW_W_CURL, .fd = fd};
        curl_multi_assign(w->multi, fd, wt);
    }
    struct epoll_event ev = {.data.ptr = wt,
                             .events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
                                       (what & CURL_POLL_OUT ? EPOLLOUT : 0u)};
    if (epoll_ctl(w->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0 && add &&
        errno == EEXIST)
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct gw_worker *w = userp;
    w->curl_due_ms = timeout_ms < 0 ? -1 : cm_mono_ms() + timeout_ms;
    return 0;
}

/* Transfers curl finished: their streams learn the result and are resumed. */
static void reap(struct gw_worker *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            gw_upstream_http_done(msg->easy_handle, msg->data.result);
}

static void free_gone(struct gw_worker *w)
{
    while (w->gone != NULL) {
        struct gw_watch *wt = w->gone;
        w->gone = wt->obj;
        free(wt);
    }
}

static void curl_action(struct gw_worker *w, curl_socket_t fd, int flags)
{
    int running = 0;
    curl_multi_socket_action(w->multi, fd, flags, &running);
    reap(w);
}

/* ---- the loop -------------------------------------------------------------------------------- */

static int mhd_timeout_ms(struct gw_worker *w)
{
    MHD_UNSIGNED_LONG_LONG t;
    if (MHD_get_timeout(w->daemon, &t) != MHD_YES)
        return 1000;
    return t > 1000 ? 1000 : (int)t;
}

/* Resumes every suspended connection (libmicrohttpd must not stop with one suspended);
 * a suspended request always has a timer (its deadline), so the timer list holds them. */
static void resume_all(struct gw_worker *w)
{
    while (w->timers != NULL)
        resume(w, w->timers); /* unlinks it */
    run_ready(w);
}

static void *loop(void *arg)
{
    struct gw_worker *w = arg;
    current = w;
    gw_acceptor_running(w->gw->acceptor, w->index);
    struct epoll_event ev[64];
    while (!atomic_load(&w->stop)) {
        if (atomic_load(&w->quiesce) && !w->quiesced) {
            gw_acceptor_stop(w->gw->acceptor, w->index);
            w->quiesced = true;
        }
        int64_t now = cm_mono_ms();
        int64_t next_timer = run_timers(w, now);
        int64_t listen_due = gw_acceptor_due(w->gw->acceptor, w->index, now);
        if (listen_due != 0 && (next_timer == 0 || listen_due < next_timer))
            next_timer = listen_due;
        int timeout = 1000; /* ms, for everything but libmicrohttpd */
        if (w->curl_due_ms >= 0 && w->curl_due_ms - now < timeout)
            timeout = (int)(w->curl_due_ms > now ? w->curl_due_ms - now : 0);
        if (next_timer != 0 && next_timer - now < timeout)
            timeout = (int)(next_timer > now ? next_timer - now : 0);
        if (w->ready != NULL)
            timeout = 0;
        int mhd_timeout = mhd_timeout_ms(w);
        bool brief = mhd_timeout == 0 && timeout != 0 && w->polling;
        if (mhd_timeout < timeout)
            timeout = mhd_timeout;
        int n;
        if (brief) {
            struct timespec wait = {0, POLLING_WAIT_US * 1000};
            n = epoll_pwait2(w->epfd, ev, 64, &wait, NULL);
        } else {
            n = epoll_wait(w->epfd, ev, 64, timeout);
        }
        for (int i = 0; i < n; i++) {
            struct gw_watch *wt = ev[i].data.ptr;
            if (wt->kind == GW_W_GONE) {
                continue; /* curl closed that socket earlier in this round */
            } else if (wt->kind == GW_W_CURL) {
                int flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                            (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                            (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
                curl_action(w, wt->fd, flags);
            } else if (wt->kind == GW_W_CLIENT) {
                struct gw_req *req = wt->obj;
                req->client_hung_up = true; /* MHD sees it once the connection resumes */
                watch_client(w, req, false);
                gw_req_wake(req);
            } else if (wt->kind == GW_W_H1) {
                gw_h1_event(wt, ev[i].events);
            } else if (wt->kind == GW_W_LISTEN) {
                gw_acceptor_accept(wt->obj, w->index);
            } else if (wt->kind == GW_W_WAKE) {
                uint64_t v;
                if (read(w->wakefd, &v, sizeof v) < 0 && errno != EAGAIN)
                    cm_log(CM_LOG_WARN, "worker_wake_failed", "errno=%d", errno);
                gw_acceptor_take(w->gw->acceptor, w->index);
            }
        }
        if (w->curl_due_ms >= 0 && cm_mono_ms() >= w->curl_due_ms) {
            w->curl_due_ms = -1;
            curl_action(w, CURL_SOCKET_TIMEOUT, 0);
        }
        free_gone(w);
        run_ready(w);
        w->polling = false;
        MHD_run(w->daemon);
        run_ready(w); /* what the handlers and readers asked for during MHD_run */
        /* The requests that ended in this round: one journal write for all of them,
         * before the loop can wait again (a kill -9 then loses no finished request: the
         * faults suite caught a 1 ms deferral losing the last one). */
        meter_flush(w->gw->meter, w->pending);
    }
    resume_all(w);
    MHD_run(w->daemon);
    meter_flush(w->gw->meter, w->pending);
    free_gone(w);
    gw_h1_worker_exit();
    current = NULL;
    return NULL;
}

void gw_worker_wake(struct gw_worker *w)
{
    uint64_t one = 1;
    if (write(w->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        cm_log(CM_LOG_WARN, "worker_wake_failed", "errno=%d", errno);
}

struct gw_worker *gw_worker_start(struct gw *gw, int index, gw_daemon_starter start)
{
    struct gw_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->gw = gw;
    w->index = index;
    w->curl_due_ms = -1;
    w->epfd = -1;
    w->wakefd = -1;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->multi = curl_multi_init();
    w->pending = meter_pending_new(); /* NULL: each record is journaled on its own */
    w->daemon = start(gw, w);
    const union MHD_DaemonInfo *di =
        w->daemon ? MHD_get_daemon_info(w->daemon, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (w->epfd < 0 || w->wakefd < 0 || w->multi == NULL || di == NULL) {
        gw_worker_free(w);
        return NULL;
    }
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, 256L);
    w->mhd_watch = (struct gw_watch){.kind = GW_W_MHD, .fd = di->epoll_fd};
    w->wake_watch = (struct gw_watch){.kind = GW_W_WAKE, .fd = w->wakefd};
    struct epoll_event a = {.events = EPOLLIN, .data.ptr = &w->mhd_watch};
    struct epoll_event b = {.events = EPOLLIN, .data.ptr = &w->wake_watch};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, di->epoll_fd, &a) != 0 ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &b) != 0 ||
        pthread_create(&w->thread, NULL, loop, w) != 0) {
        gw_worker_free(w);
        return NULL;
    }
    w->thread_started = true;
    /* Connections come once the loop runs: a worker that failed never gets one. */
    if (gw_acceptor_attach(gw->acceptor, w, index, gw->listen_fd) != CM_OK) {
        gw_worker_free(w);
        return NULL;
    }
    return w;
}

void gw_worker_quiesce(struct gw_worker *w)
{
    atomic_store(&w->quiesce, true);
    gw_worker_wake(w);
}

void gw_worker_free(struct gw_worker *w)
{
    if (w == NULL)
        return;
    if (w->thread_started) {
        atomic_store(&w->stop, true);
        gw_worker_wake(w);
        pthread_join(w->thread, NULL);
    }
    if (w->daemon != NULL)
        MHD_stop_daemon(w->daemon); /* closes what is left; completions free requests */
    meter_pending_free(w->gw->meter, w->pending);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    free_gone(w);
    for (int i = 0; i < w->n_buffers; i++)
        free(w->buffers[i]);
    for (int i = 0; i < w->n_easies; i++)
        curl_easy_cleanup(w->easies[i]);
    for (int k = 0; k < GW_MEM_KINDS; k++)
        for (int i = 0; i < w->n_mem[k]; i++)
            free(w->mem[k][i]);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wakefd >= 0)
        close(w->wakefd);
    free(w);
}
