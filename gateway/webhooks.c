/*
 * The quota webhook sender: a thread that, every HUBMETER_WEBHOOK_INTERVAL_MS, has
 * PostgreSQL queue new threshold crossings and claims due events (registry/webhooks.c),
 * POSTs each as JSON with an HMAC-SHA256 signature header, and records the attempt in
 * the same transaction. Claims use SKIP LOCKED, so several gateways never send one event
 * twice; a failed attempt is retried with backoff.
 */
#include "gateway/gw_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gw_webhooks {
    struct gw *gw;
    pthread_t thread;
    pthread_mutex_t lock; /* protects stop */
    pthread_cond_t wake;
    bool stop;
};

static size_t discard(char *p, size_t size, size_t n, void *userdata)
{
    (void)p;
    (void)userdata;
    return size * n;
}

/* POSTs e; CM_OK for a 2xx answer, else CM_ERR with why. */
static int send_event(const struct reg_webhook_event *e, char *why, size_t whylen)
{
    uint8_t mac[32];
    char hex[65], sig[96], id[64];
    cm_hmac_sha256(e->secret, strlen(e->secret), e->payload, strlen(e->payload), mac);
    cm_hex(mac, 32, hex);
    cm_fmt(sig, sizeof sig, "X-Hubmeter-Signature: sha256=%s", hex);
    cm_fmt(id, sizeof id, "X-Hubmeter-Event-Id: %lld", (long long)e->id);
    CURL *c = curl_easy_init();
    if (c == NULL)
        return cm_fmt(why, whylen, "out of memory"), CM_ERR;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, sig);
    h = curl_slist_append(h, id);
    curl_easy_setopt(c, CURLOPT_URL, e->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, e->payload);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK)
        return cm_fmt(why, whylen, "%s", curl_easy_strerror(cc)), CM_ERR;
    if (status < 200 || status > 299)
        return cm_fmt(why, whylen, "answered HTTP %ld", status), CM_ERR;
    return CM_OK;
}

/* One round: queue, claim, send, record. */
static void round_once(struct gw *gw)
{
    PGconn *db = cm_pg_pool_get(gw->pg, 2000);
    if (db == NULL)
        return;
    struct reg_webhook_event *events;
    size_t n;
    char err[512];
    int rc = reg_webhook_claim(db, 10, &events, &n, err, sizeof err);
    for (size_t i = 0; rc == CM_OK && i < n; i++) {
        char why[256] = "";
        bool ok = send_event(&events[i], why, sizeof why) == CM_OK;
        cm_log(ok ? CM_LOG_INFO : CM_LOG_WARN, "webhook_sent", "event=%lld ok=%s error=\"%s\"",
               (long long)events[i].id, ok ? "yes" : "no", why);
        rc = reg_webhook_attempt(db, &events[i], ok, why, err, sizeof err);
    }
    if (rc == CM_OK)
        rc = reg_finish(db, rc, err, sizeof err);
    if (rc != CM_OK)
        cm_log(CM_LOG_WARN, "webhook_round_failed", "error=\"%s\"", err);
    reg_webhook_events_free(events, n);
    cm_pg_pool_put(gw->pg, db);
}

static void *run(void *arg)
{
    struct gw_webhooks *w = arg;
    unsigned interval = w->gw->cfg->webhook_interval_ms;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        pthread_mutex_unlock(&w->lock);
        round_once(w->gw);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += interval / 1000;
        until.tv_nsec += (long)(interval % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->lock);
        while (!w->stop && pthread_cond_timedwait(&w->wake, &w->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

struct gw_webhooks *gw_webhooks_start(struct gw *gw)
{
    struct gw_webhooks *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->gw = gw;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        fprintf(stderr, "hubmeter: cannot start the webhook sender thread\n");
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
        return NULL;
    }
    return w;
}

void gw_webhooks_stop(struct gw_webhooks *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
