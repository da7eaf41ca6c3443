/*
 * Per-thread cache of upstream transfer handles (see transfer.h). With a thread per
 * client connection, the cache lives as long as the client's connection: its requests
 * share one upstream connection. The cache is freed by the thread-key destructor when
 * the connection's thread ends.
 */
#include <pthread.h>
#include <stdlib.h>

#include "common/common.h"
#include "gateway/transfer.h"

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void free_transfer(struct gw_transfer *t)
{
    if (t->multi != NULL && t->easy != NULL)
        curl_multi_remove_handle(t->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_multi_cleanup(t->multi);
    free(t->buf);
}

static void destroy_cache(void *p)
{
    struct gw_transfer *t = p;
    free_transfer(t);
    free(t);
}

static void make_key(void) { pthread_key_create(&cache_key, destroy_cache); }

int gw_transfer_take(struct gw_transfer *t, size_t buffer_size)
{
    pthread_once(&cache_once, make_key);
    struct gw_transfer *cached = pthread_getspecific(cache_key);
    if (cached != NULL) {
        *t = *cached;
        pthread_setspecific(cache_key, NULL);
        free(cached);
        return CM_OK;
    }
    t->multi = curl_multi_init();
    t->easy = curl_easy_init();
    t->buf = malloc(buffer_size);
    if (t->multi == NULL || t->easy == NULL || t->buf == NULL) {
        free_transfer(t);
        t->multi = NULL, t->easy = NULL, t->buf = NULL;
        return CM_ERR;
    }
    return CM_OK;
}

void gw_transfer_give(struct gw_transfer *t)
{
    if (t->multi == NULL && t->easy == NULL && t->buf == NULL)
        return;
    pthread_once(&cache_once, make_key);
    struct gw_transfer *slot = NULL;
    if (t->multi != NULL && t->easy != NULL && t->buf != NULL &&
        pthread_getspecific(cache_key) == NULL && (slot = malloc(sizeof *slot)) != NULL) {
        curl_multi_remove_handle(t->multi, t->easy);
        curl_easy_reset(t->easy);
        *slot = *t;
        pthread_setspecific(cache_key, slot);
    } else {
        free_transfer(t);
    }
    t->multi = NULL, t->easy = NULL, t->buf = NULL;
}
