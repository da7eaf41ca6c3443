/*
 * Connections across all workers: the limits on connections in total and per client
 * address (checked at accept, for every worker's daemon at once), and the slow-client
 * watchdog: libmicrohttpd's timeout is reset by every byte, so a client that trickles its
 * request head (slowloris) would hold a connection forever. Each connection is tracked
 * from accept (and again after each response) until its next request head is complete;
 * a thread shuts down the sockets that exceed the head timeout.
 */
#include "gateway/gw_int.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IP_BUCKETS 1024

/* Open connections of one client address. */
struct ip_count {
    uint8_t key[17]; /* family, then the IPv4 or IPv6 address */
    unsigned n;
    struct ip_count *next;
};

struct tracked {
    int fd;
    uint8_t key[17]; /* its client address, counted in ips */
    char client_ip[48], network[48]; /* formatted once, for each of its requests */
    _Atomic int64_t waiting_since_ms; /* 0 while a request is being served */
    struct tracked *prev, *next;
};

struct gw_watchdog {
    struct gw *gw;
    pthread_mutex_t lock; /* protects the list and each entry's membership */
    pthread_cond_t wake;
    struct tracked *head;
    unsigned timeout_s;
    struct ip_count *ips[IP_BUCKETS];
    unsigned total; /* connections accepted and not closed */
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
    for (int i = 0; i < IP_BUCKETS; i++)
        while (w->ips[i] != NULL) {
            struct ip_count *c = w->ips[i];
            w->ips[i] = c->next;
            free(c);
        }
    the_watchdog = NULL;
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}

static void addr_key(const struct sockaddr *sa, uint8_t key[17])
{
    memset(key, 0, 17);
    if (sa == NULL)
        return;
    key[0] = (uint8_t)sa->sa_family;
    if (sa->sa_family == AF_INET)
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6)
        memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

static struct ip_count **ip_slot(struct gw_watchdog *w, const uint8_t key[17])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 16777619u;
    struct ip_count **p = &w->ips[h % IP_BUCKETS];
    while (*p != NULL && memcmp((*p)->key, key, 17) != 0)
        p = &(*p)->next;
    return p;
}

/* One connection of key fewer; under w->lock. */
static void ip_release(struct gw_watchdog *w, const uint8_t key[17])
{
    struct ip_count **p = ip_slot(w, key);
    if (*p != NULL && --(*p)->n == 0) {
        struct ip_count *gone = *p;
        *p = gone->next;
        free(gone);
    }
    if (w->total > 0)
        w->total--;
}

enum MHD_Result gw_conn_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    struct gw_watchdog *w = cls;
    const struct hm_config *cfg = w->gw->cfg;
    uint8_t key[17];
    addr_key(addr, key);
    enum MHD_Result ok = MHD_NO;
    pthread_mutex_lock(&w->lock);
    struct ip_count **p = ip_slot(w, key);
    unsigned mine = *p != NULL ? (*p)->n : 0;
    if (w->total < cfg->max_connections && mine < cfg->max_connections_per_ip) {
        if (*p == NULL && (*p = calloc(1, sizeof **p)) != NULL)
            memcpy((*p)->key, key, 17);
        if (*p != NULL) { /* counted now: STARTED/CLOSED of this connection settle it */
            (*p)->n++;
            w->total++;
            ok = MHD_YES;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return ok;
}

void gw_watchdog_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    struct gw_watchdog *w = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct tracked *t = calloc(1, sizeof *t);
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (t == NULL || fi == NULL) { /* untracked: its accept-time count goes now */
            const union MHD_ConnectionInfo *ai =
                MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
            uint8_t key[17];
            addr_key(ai ? ai->client_addr : NULL, key);
            pthread_mutex_lock(&w->lock);
            ip_release(w, key);
            pthread_mutex_unlock(&w->lock);
            free(t);
            return;
        }
        t->fd = fi->connect_fd;
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        addr_key(ai ? ai->client_addr : NULL, t->key);
        gw_client_network(ai ? ai->client_addr : NULL, t->client_ip, sizeof t->client_ip,
                          t->network, sizeof t->network);
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
        ip_release(w, t->key);
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

int gw_watchdog_request(struct MHD_Connection *c, char *ip, size_t iplen, char *net,
                        size_t netlen)
{
    const union MHD_ConnectionInfo *ci =
        the_watchdog ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    struct tracked *t = ci != NULL ? ci->socket_context : NULL;
    if (t == NULL) {
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        gw_client_network(ai ? ai->client_addr : NULL, ip, iplen, net, netlen);
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        return fi ? fi->connect_fd : -1;
    }
    atomic_store(&t->waiting_since_ms, 0);
    cm_copy(ip, iplen, t->client_ip);
    cm_copy(net, netlen, t->network);
    return t->fd;
}
