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
    uint8_t token_hash[32];    /* SHA-256 of the admin token once authenticated */
    struct gw_admin *adm;      /* the listener (bootstrap state, sessions) */
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

/* The quota document of org o (GET /admin/v1/orgs/{slug}/quota, the org API's /-/v1/quota
 * shape with "org"), read without spending anything. New reference; NULL: out of memory. */
json_t *adm_org_quota(struct gw *gw, const struct reg_org *o);

/* ---- authentication (admin.c) and operator page sessions (dashboard_session.c) ------------ */
/* Checks the admin token whose SHA-256 is hash (registry admin tokens, bootstrapping the
 * configured one first if needed): CM_OK with a->actor and a->token_hash set, CM_NOTFOUND
 * (no such token), CM_DENIED (revoked), else CM_ERR with err. */
int adm_token_check(struct adm_req *a, const uint8_t hash[32], char *err, size_t errlen);
/* The SHA-256 of the Authorization: Bearer token: CM_OK, CM_NOTFOUND (no header),
 * CM_INVALID (not "Bearer <token>" of at most 200 bytes). */
int adm_bearer(struct MHD_Connection *c, uint8_t hash[32]);
/* The listener's session store. */
struct adm_sessions *adm_sessions_of(struct gw_admin *adm);

#define ADM_SESSION_ID_LEN 64 /* hex of 32 random bytes */
struct adm_sessions;
/* Sessions last session_s, one-time login tickets ticket_s. Free with adm_sessions_free. */
struct adm_sessions *adm_sessions_new(unsigned session_s, unsigned ticket_s);
void adm_sessions_free(struct adm_sessions *s);
unsigned adm_sessions_lifetime(const struct adm_sessions *s, bool ticket);
/* Opens a session (or a ticket) for the admin token whose SHA-256 is token_hash; the new
 * id goes to id (only its hash is kept). The store holds 256: the oldest entry makes room.
 * CM_ERR when no randomness is available. Thread-safe. */
int adm_session_open(struct adm_sessions *s, bool ticket, const uint8_t token_hash[32],
                     char id[ADM_SESSION_ID_LEN + 1]);
/* CM_OK with token_hash set when id names a live session (ticket false) or an unused
 * ticket (ticket true, which is then used up); else CM_NOTFOUND. Thread-safe. */
int adm_session_check(struct adm_sessions *s, const char *id, bool ticket,
                      uint8_t token_hash[32]);
/* Ends session id (logout); unknown ids are ignored. Thread-safe. */
void adm_session_close(struct adm_sessions *s, const char *id);

/* ---- the operator page (dashboard.c, dashboard_html.c) ------------------------------------- */
/* Answers /dashboard and /dashboard/… (login form, login, logout, the page). */
enum MHD_Result adm_dashboard(struct adm_req *a, struct MHD_Connection *c, const char *url);
/* What the page shows, gathered through the admin API's calls (dashboard_view.c): a new
 * reference, NULL when out of memory (a failing source is shown as an error in it). */
json_t *adm_dash_view(struct adm_req *a);
/* The page and the login form (with message, escaped; NULL: none): malloc'd HTML the
 * caller frees, NULL when out of memory (dashboard_html.c). */
char *adm_dash_page_html(const json_t *view);
char *adm_dash_login_html(const char *message);

/* ---- handlers: each answers one route family, or returns false when none matched ----------- */
bool adm_orgs(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_plans(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_keys(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_networks(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_usage(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_webhooks(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_reports(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);
bool adm_dashboard_tickets(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r);

#endif
