/*
 * Upstream transfer handles kept per thread (gateway/transfer.c): a libcurl multi handle
 * (which owns the upstream connection cache), an easy handle and the stream buffer are
 * reused by the next request served on the same thread, so a kept-alive client reuses
 * its upstream connection instead of opening one per request.
 */
#ifndef HM_GW_TRANSFER_H
#define HM_GW_TRANSFER_H

#include <curl/curl.h>
#include <stddef.h>

struct gw_transfer {
    CURLM *multi;
    CURL *easy; /* reset: no options set */
    char *buf;  /* buffer_size bytes */
};

/* Fills t from this thread's cache, or new handles. CM_OK or CM_ERR (out of memory). */
int gw_transfer_take(struct gw_transfer *t, size_t buffer_size);
/* Returns t to this thread's cache (the easy handle removed from the multi and reset), or
 * frees it when the cache is full. t is cleared. */
void gw_transfer_give(struct gw_transfer *t);

#endif
