/*
 * Spreads new client connections over the workers. Every worker watches the listening
 * socket (its own dup, EPOLLEXCLUSIVE); the worker woken accepts what is waiting and deals
 * the connections round-robin, so 8 parallel range streams or 2,000 slow clients are
 * shared by every core (libmicrohttpd's own accept let the first worker woken take a
 * whole burst: all 8 range streams of one client ended on one core). A connection dealt
 * to another worker waits in that worker's inbox until its loop, woken, hands it to its
 * daemon. Connections go to every worker unless all of them may run only on the same
 * CPUs and those are fewer than the workers (the process pinned with taskset, a
 * container's cpuset): then only to as many workers as there are CPUs, since loops that
 * share a CPU only take turns on it, each turn a context switch. The connection limits
 * still apply: libmicrohttpd runs the accept policy (watchdog.c) for every connection
 * added. Owns the workers' dups of the listening socket and the inboxes.
 */
#include "gateway/gw_int.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 16     /* connections accepted per wake-up of one worker */
#define FD_LIMIT_PAUSE_MS 100 /* out of descriptors: listening pauses this long */
#define CPU_CHECK_MS 1000     /* the workers' CPU sets are looked at this often, at most */

struct pending {
    int fd;
    socklen_t len;
    struct sockaddr_storage addr;
};

struct inbox {
    pthread_mutex_t lock;
    struct pending *items;
    size_t n, cap;
};

struct gw_acceptor {
    _Atomic int n;                  /* workers attached (0 .. n-1) */
    struct gw_worker *workers[GW_MAX_WORKERS];
    int fds[GW_MAX_WORKERS];        /* each worker's dup of the listening socket, or -1 */
    bool watched[GW_MAX_WORKERS];   /* in that worker's epoll set */
    int64_t paused_until_ms[GW_MAX_WORKERS]; /* out of descriptors: retry then */
    int64_t logged_ms[GW_MAX_WORKERS];
    struct gw_watch watches[GW_MAX_WORKERS];
    struct inbox inbox[GW_MAX_WORKERS];
    _Atomic unsigned next; /* round-robin */
    _Atomic pid_t tids[GW_MAX_WORKERS]; /* each worker's thread, once its loop runs */
    /* Connections go to workers 0 .. d-1, d found for `of` workers: (of << 32) | d; 0 until
     * first found. One thread at a time looks at the CPU sets (cpus_lock). */
    _Atomic uint64_t dealing;
    _Atomic int64_t cpus_checked_ms;
    pthread_mutex_t cpus_lock;
};

static bool watch(struct gw_acceptor *a, int i, bool on)
{
    if (a->fds[i] < 0 || a->watched[i] == on)
        return true;
    int epfd = gw_worker_epfd(a->workers[i]);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &a->watches[i]};
    if (epoll_ctl(epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, a->fds[i], &ev) != 0 && on)
        return false;
    a->watched[i] = on;
    return true;
}

struct gw_acceptor *gw_acceptor_new(void)
{
    struct gw_acceptor *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    for (int i = 0; i < GW_MAX_WORKERS; i++) {
        a->fds[i] = -1;
        pthread_mutex_init(&a->inbox[i].lock, NULL);
    }
    pthread_mutex_init(&a->cpus_lock, NULL);
    return a;
}

int gw_acceptor_attach(struct gw_acceptor *a, struct gw_worker *w, int index, int listen_fd)
{
    a->workers[index] = w;
    a->fds[index] = dup(listen_fd);
    a->watches[index] = (struct gw_watch){.kind = GW_W_LISTEN, .fd = a->fds[index], .obj = a};
    if (a->fds[index] < 0 || !watch(a, index, true)) {
        if (a->fds[index] >= 0)
            close(a->fds[index]);
        a->fds[index] = -1;
        return CM_ERR;
    }
    atomic_store(&a->n, index + 1); /* workers attach in order */
    return CM_OK;
}

/* Hands fd to worker i's daemon (which closes it if it refuses: limits, memory). */
static void add(struct gw_acceptor *a, int i, const struct pending *p)
{
    MHD_add_connection(gw_worker_daemon(a->workers[i]), p->fd,
                       (const struct sockaddr *)&p->addr, p->len);
}

void gw_acceptor_running(struct gw_acceptor *a, int self)
{
    atomic_store(&a->tids[self], gettid());
}

/* How many of the n workers get connections (see the header): n, or the number of CPUs
 * when every worker has the same, smaller CPU set. Looks at the sets again at most every
 * CPU_CHECK_MS (a process can be pinned after it started), or at once when n changed (the
 * workers attach one by one), and logs when dealing becomes restricted or stops being. */
static unsigned dealt_to(struct gw_acceptor *a, unsigned n)
{
    uint64_t v = atomic_load(&a->dealing);
    unsigned d = (unsigned)v, of = (unsigned)(v >> 32);
    int64_t now = cm_mono_ms();
    if ((of == n && now - atomic_load(&a->cpus_checked_ms) < CPU_CHECK_MS) ||
        pthread_mutex_trylock(&a->cpus_lock) != 0) /* another worker is looking */
        return of == n ? d : n;
    cpu_set_t first, set;
    bool same = true;
    CPU_ZERO(&first);
    for (unsigned i = 0; i < n && same; i++) {
        pid_t tid = atomic_load(&a->tids[i]);
        cpu_set_t *into = i == 0 ? &first : &set;
        same = tid != 0 && sched_getaffinity(tid, sizeof *into, into) == 0 &&
               (i == 0 || CPU_EQUAL(&first, &set));
    }
    int cpus = CPU_COUNT(&first);
    unsigned fresh = same && cpus >= 1 && (unsigned)cpus < n ? (unsigned)cpus : n;
    bool was_restricted = v != 0 && d < of, restricted = fresh < n;
    if (restricted != was_restricted || (restricted && fresh != d))
        cm_log(CM_LOG_INFO, "connections_dealt", "workers=%u of=%u cpus=%d", fresh, n, cpus);
    atomic_store(&a->dealing, (uint64_t)n << 32 | fresh);
    atomic_store(&a->cpus_checked_ms, now);
    pthread_mutex_unlock(&a->cpus_lock);
    return fresh;
}

static void deal(struct gw_acceptor *a, int self, const struct pending *p)
{
    /* Workers attach in order, each before its count is stored: self is attached. */
    unsigned n = (unsigned)atomic_load(&a->n);
    if ((unsigned)self >= n)
        n = (unsigned)self + 1;
    int i = (int)(atomic_fetch_add(&a->next, 1) % dealt_to(a, n));
    if (i == self) {
        add(a, i, p);
        return;
    }
    struct inbox *box = &a->inbox[i];
    pthread_mutex_lock(&box->lock);
    bool was_empty = box->n == 0, ok = true;
    if (box->n == box->cap) {
        size_t cap = box->cap ? box->cap * 2 : 64;
        struct pending *items = realloc(box->items, cap * sizeof *items);
        if (items != NULL) {
            box->items = items;
            box->cap = cap;
        } else {
            ok = false;
        }
    }
    if (ok)
        box->items[box->n++] = *p;
    pthread_mutex_unlock(&box->lock);
    if (!ok)
        add(a, self, p); /* out of memory for the inbox: this worker takes it */
    else if (was_empty)
        gw_worker_wake(a->workers[i]);
}

void gw_acceptor_accept(struct gw_acceptor *a, int self)
{
    for (int k = 0; k < ACCEPT_BATCH && a->fds[self] >= 0; k++) {
        struct pending p = {.len = sizeof p.addr};
        p.fd = accept4(a->fds[self], (struct sockaddr *)&p.addr, &p.len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (p.fd >= 0) {
            deal(a, self, &p);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Level-triggered: waiting on would spin. Listening pauses; clients queue. */
            int64_t now = cm_mono_ms();
            watch(a, self, false);
            a->paused_until_ms[self] = now + FD_LIMIT_PAUSE_MS;
            if (now - a->logged_ms[self] >= 10000) {
                a->logged_ms[self] = now;
                cm_log(CM_LOG_ERROR, "accept_failed", "errno=%d pause_ms=%d", errno,
                       FD_LIMIT_PAUSE_MS);
            }
        }
        return; /* EAGAIN: nothing more waits (another worker may have taken it) */
    }
}

int64_t gw_acceptor_due(struct gw_acceptor *a, int self, int64_t now)
{
    if (a->paused_until_ms[self] == 0)
        return 0;
    if (now < a->paused_until_ms[self])
        return a->paused_until_ms[self];
    a->paused_until_ms[self] = 0;
    if (!watch(a, self, true))
        a->paused_until_ms[self] = now + FD_LIMIT_PAUSE_MS;
    return a->paused_until_ms[self];
}

void gw_acceptor_take(struct gw_acceptor *a, int self)
{
    struct inbox *box = &a->inbox[self];
    pthread_mutex_lock(&box->lock);
    struct pending *items = box->items;
    size_t n = box->n;
    box->items = NULL;
    box->n = box->cap = 0;
    pthread_mutex_unlock(&box->lock);
    for (size_t k = 0; k < n; k++) /* in the order they were accepted */
        add(a, self, &items[k]);
    free(items);
}

void gw_acceptor_stop(struct gw_acceptor *a, int self)
{
    if (a->fds[self] < 0)
        return;
    watch(a, self, false);
    close(a->fds[self]);
    a->fds[self] = -1;
    a->paused_until_ms[self] = 0;
}

void gw_acceptor_free(struct gw_acceptor *a)
{
    if (a == NULL)
        return;
    for (int i = 0; i < GW_MAX_WORKERS; i++) {
        if (a->fds[i] >= 0)
            close(a->fds[i]); /* the workers have stopped: no epoll set holds it any more */
        for (size_t k = 0; k < a->inbox[i].n; k++)
            close(a->inbox[i].items[k].fd); /* dealt to a worker that stopped first */
        free(a->inbox[i].items);
        pthread_mutex_destroy(&a->inbox[i].lock);
    }
    pthread_mutex_destroy(&a->cpus_lock);
    free(a);
}
