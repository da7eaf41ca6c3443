/*
 * Slow-client watchdog: libmicrohttpd's timeout is reset by every byte, so a client that
 * trickles its request head (slowloris) would hold a connection forever. Each connection
 * is tracked from accept (and again after each response) until its next request head is
 * complete; a thread shuts down the sockets that exceed the head timeout.
 */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct tracked {
    int fd;
    _Atomic int64_t waiting_since_ms; /* 0 while a request is being served */
    struct tracked *prev, *next;
};

struct gw_watchdog {
    struct gw *gw;
    pthread_mutex_t lock; /* protects the list and each entry's membership */
    pthread_cond_t wake;
    struct tracked *head;
    unsigned timeout_s;
    bool stop;
    pthread_t thread;
};

static struct gw_watchdog *the_watchdog; /* one gateway per process */

static void *watch(void *arg)
{
    struct gw_watchdog *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->wake, &w->lock, &ts);
        int64_t now = cm_mono_ms(), limit = (int64_t)w->timeout_s * 1000;
        for (struct tracked *t = w->head; t != NULL; t = t->next) {
            int64_t since = atomic_load(&t->waiting_since_ms);
            if (since != 0 && now - since > limit) {
                /* The fd stays open (MHD owns it) until the CLOSED notification, which
                 * needs this lock: shutting it down here cannot hit a reused number. */
                shutdown(t->fd, SHUT_RDWR);
                atomic_store(&t->waiting_since_ms, 0);
                atomic_fetch_add(&w->gw->metrics.slow_clients_cut, 1);
                cm_log(CM_LOG_INFO, "slow_client_cut", "timeout_s=%u", w->timeout_s);
            }
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

struct gw_watchdog *gw_watchdog_new(struct gw *gw, unsigned timeout_s)
{
    struct gw_watchdog *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->gw = gw;
    w->timeout_s = timeout_s;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, watch, w) != 0) {
        free(w);
        return NULL;
    }
    the_watchdog = w;
    return w;
}

void gw_watchdog_free(struct gw_watchdog *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    while (w->head != NULL) { /* connections MHD never reported closed */
        struct tracked *t = w->head;
        w->head = t->next;
        free(t);
    }
    the_watchdog = NULL;
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}

void gw_watchdog_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    struct gw_watchdog *w = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct tracked *t = calloc(1, sizeof *t);
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (t == NULL || fi == NULL) {
            free(t);
            return;
        }
        t->fd = fi->connect_fd;
        atomic_store(&t->waiting_since_ms, cm_mono_ms());
        pthread_mutex_lock(&w->lock);
        t->next = w->head;
        if (w->head != NULL)
            w->head->prev = t;
        w->head = t;
        pthread_mutex_unlock(&w->lock);
        *socket_context = t;
    } else if (*socket_context != NULL) {
        struct tracked *t = *socket_context;
        pthread_mutex_lock(&w->lock);
        if (t->prev != NULL)
            t->prev->next = t->next;
        else
            w->head = t->next;
        if (t->next != NULL)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&w->lock);
        free(t);
        *socket_context = NULL;
    }
}

void gw_watchdog_head(struct MHD_Connection *c, bool seen)
{
    if (the_watchdog == NULL)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct tracked *t = ci != NULL ? ci->socket_context : NULL;
    if (t != NULL)
        atomic_store(&t->waiting_since_ms, seen ? 0 : cm_mono_ms());
}
