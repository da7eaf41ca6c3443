/*
 * gateway — the HTTP front: listens with libmicrohttpd, identifies each request (API key
 * or anonymous network), streams the upstream's response (libcurl, or a file:// tree),
 * hands each finished request to the meter, and serves the gateway's own /-/ endpoints.
 * Only this module includes microhttpd.h and curl.h.
 */
#ifndef HM_GATEWAY_H
#define HM_GATEWAY_H

#include "common/common.h"

/* Runs the gateway (and, when cfg->run_flusher, the flusher) until SIGINT or SIGTERM.
 * Returns 0 after a clean stop, non-zero (with a message on stderr) when it cannot start. */
int gw_serve(const struct hm_config *cfg);

struct reg_plan;
struct meter_plan;
/* The quota view of a stored plan (what the gateway enforces). */
void gw_plan_to_meter(const struct reg_plan *r, struct meter_plan *m);

#endif
