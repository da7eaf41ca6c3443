/*
 * Admin API internals shared by the gateway/admin*.c files only: the admin
 * request (an authenticated operator's call, with its body and path segments), reply and
 * parsing helpers, and the route handlers each file offers the router.
 */
#ifndef HM_ADMIN_INT_H
#define HM_ADMIN_INT_H

#include "gateway/gw_int.h"

#define ADM_MAGIC 0x61646d72u /* "admr" */
#define ADM_BODY_MAX (64 * 1024)
#define ADM_SEGMENTS 6

struct adm_req {
    uint32_t magic;
    struct gw_req base;        /* replies go through gw_reply_* with it */
    char actor[64];            /* the admin token's name: the audit log's "who" */
    char *body;                /* the request body (JSON), NUL-terminated, malloc'd */
    size_t body_len;
    bool body_too_big;
    char path[512];            /* decoded segments after /admin/v1/, NUL-separated */
    const char *seg[ADM_SEGMENTS];
    int nseg;
    PGconn *db;                /* borrowed from the pool for the request's duration */
};

/* ---- replies and parsing (admin.c) ---------------------------------------------------------- */
enum MHD_Result adm_error(struct adm_req *a, struct MHD_Connection *c, unsigned status,
                          const char *code, const char *message);
enum MHD_Result adm_json(struct adm_req *a, struct MHD_Connection *c, unsigned status,
                         json_t *body);
/* A registry/meter return code as an error reply: CM_INVALID 400 invalid_value,
 * CM_NOTFOUND 404 not_found, CM_EXISTS 409 already_exists, CM_DENIED 409 denied_code,
 * anything else 503 database_unavailable (err logged, not shown). */
enum MHD_Result adm_fail(struct adm_req *a, struct MHD_Connection *c, int rc, const char *err,
                         const char *denied_code);
/* The request body as a JSON object whose keys are all in allowed (comma-separated).
 * NULL when it is not: a 400 (bad_json or unknown_field) is then queued in *mhd. */
json_t *adm_body(struct adm_req *a, struct MHD_Connection *c, const char *allowed,
                 enum MHD_Result *mhd);
/* Optional string member name of obj: CM_OK (*out set, or left when absent), CM_INVALID
 * when it is not a string of at most max bytes without NUL. */
int adm_str(const json_t *obj, const char *name, size_t max, const char **out);
/* Optional non-negative integer member: CM_OK (*set tells if present) or CM_INVALID. */
int adm_int(const json_t *obj, const char *name, int64_t max, int64_t *out, bool *set);
/* Checks the query string holds only names in allowed (comma-separated); else queues 400. */
int adm_args_only(struct adm_req *a, struct MHD_Connection *c, const char *allowed,
                  enum MHD_Result *mhd);
/* The decoded value of query parameter name into out ("" when absent). CM_INVALID when
 * malformed or longer than len - 1. */
int adm_arg(struct MHD_Connection *c, const char *name, char *out, size_t len);
/* An RFC 3339 query parameter (default dflt when absent); CM_INVALID when malformed. */
int adm_time_arg(struct MHD_Connection *c, const char *name, int64_t dflt, int64_t *out);
/* True when the route is method + path segments (a "*" segment matches any one). */
bool adm_route(const struct adm_req *a, const char *method, const char *pattern);

/* ---- handlers: each answers one route family, or returns false when none matched ----------- */
bool adm_orgs(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_plans(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_keys(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_networks(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_usage(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_webhooks(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_reports(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);

#endif
