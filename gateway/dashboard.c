/*
 * The operator page on the admin listener: GET /dashboard (the page, or the login form),
 * POST /dashboard/login (form field token=<admin token>), GET /dashboard/login?ticket=…
 * (a one-time ticket from POST /admin/v1/dashboard/tickets), POST /dashboard/logout.
 * A browser cannot send a bearer token, so a login opens a server-side session named by an
 * HttpOnly, SameSite=Strict cookie (Secure when HUBMETER_ADMIN_TLS=on); the bearer header
 * works too. Figures are gathered here through the admin API's own calls (meter usage
 * summary and top, the quota document, billing's report, the readiness checks) and drawn by
 * dashboard_html.c. Sessions live in dashboard_session.c.
 */
#include "gateway/admin_int.h"
#include "billing/billing.h"

#include <stdlib.h>
#include <string.h>

#define COOKIE "hm_session"

/* The value of the hm_session cookie into id ("" when absent or malformed). */
static void session_cookie(struct MHD_Connection *c, char id[ADM_SESSION_ID_LEN + 1])
{
    const char *v = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, COOKIE);
    id[0] = '\0';
    if (v != NULL && strlen(v) == ADM_SESSION_ID_LEN)
        memcpy(id, v, ADM_SESSION_ID_LEN + 1);
}

static enum MHD_Result send_html(struct adm_req *a, struct MHD_Connection *c, unsigned status,
                                 char *html, const char *cookie, const char *location)
{
    if (html == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(html), html, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(html);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* Everything is inline: nothing else may load, no frame may hold the page. */
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (cookie != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    if (location != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return gw_reply(&a->base, c, status, resp);
}

static enum MHD_Result login_form(struct adm_req *a, struct MHD_Connection *c, unsigned status,
                                  const char *message, const char *cookie)
{
    return send_html(a, c, status, adm_dash_login_html(message), cookie, NULL);
}

/* Opens a session for the token a was authenticated with; 303 to /dashboard with the cookie. */
static enum MHD_Result open_session(struct adm_req *a, struct MHD_Connection *c)
{
    struct adm_sessions *s = adm_sessions_of(a->adm);
    char id[ADM_SESSION_ID_LEN + 1], cookie[256];
    if (adm_session_open(s, false, a->token_hash, id) != CM_OK)
        return login_form(a, c, MHD_HTTP_SERVICE_UNAVAILABLE, "no randomness: try again", NULL);
    cm_fmt(cookie, sizeof cookie, COOKIE "=%s; Path=/; Max-Age=%u; HttpOnly; SameSite=Strict%s",
           id, adm_sessions_lifetime(s, false), a->base.gw->cfg->admin_tls ? "; Secure" : "");
    memset(id, 0, sizeof id);
    cm_log(CM_LOG_INFO, "dashboard_login", "actor=%s", a->actor);
    char *body = adm_dash_login_html(NULL);
    return send_html(a, c, MHD_HTTP_SEE_OTHER, body, cookie, "/dashboard");
}

/* Checks an admin token by hash: CM_OK (a->actor set) or the user-facing reason. */
static int check_token(struct adm_req *a, const uint8_t hash[32], const char **why)
{
    char err[256];
    int rc = adm_token_check(a, hash, err, sizeof err);
    *why = rc == CM_NOTFOUND ? "that admin token was not accepted"
           : rc == CM_DENIED ? "that admin token has been revoked"
                             : "the database is unavailable: try again shortly";
    if (rc != CM_OK && rc != CM_NOTFOUND && rc != CM_DENIED)
        cm_log(CM_LOG_ERROR, "dashboard_auth_failed", "error=\"%s\"", err);
    return rc;
}

/* The form field token=… of an application/x-www-form-urlencoded body into out. */
static int form_token(const struct adm_req *a, char *out, size_t len)
{
    out[0] = '\0';
    if (a->body == NULL || a->body_too_big)
        return CM_INVALID;
    for (const char *p = a->body; *p;) {
        size_t n = strcspn(p, "&");
        if (n > 6 && strncmp(p, "token=", 6) == 0 && n - 6 < 512) {
            char raw[512];
            memcpy(raw, p + 6, n - 6);
            raw[n - 6] = '\0';
            for (char *q = raw; *q; q++)
                if (*q == '+')
                    *q = ' ';
            if (gw_percent_decode(raw, out, len) != CM_OK)
                return CM_INVALID;
            out[strcspn(out, " \t\r\n")] = '\0'; /* a pasted token's trailing space */
            return out[0] ? CM_OK : CM_INVALID;
        }
        p += n + (p[n] == '&');
    }
    return CM_INVALID;
}

static enum MHD_Result login(struct adm_req *a, struct MHD_Connection *c, bool post)
{
    uint8_t hash[32];
    const char *why;
    if (post) {
        char tok[512];
        if (form_token(a, tok, sizeof tok) != CM_OK)
            return login_form(a, c, MHD_HTTP_BAD_REQUEST, "enter an admin token", NULL);
        cm_sha256(tok, strlen(tok), hash);
        memset(tok, 0, sizeof tok);
    } else {
        char ticket[ADM_SESSION_ID_LEN + 2];
        if (adm_arg(c, "ticket", ticket, sizeof ticket) != CM_OK)
            return login_form(a, c, MHD_HTTP_BAD_REQUEST, "that login link is malformed", NULL);
        if (ticket[0] == '\0')
            return login_form(a, c, MHD_HTTP_OK, NULL, NULL);
        if (adm_session_check(adm_sessions_of(a->adm), ticket, true, hash) != CM_OK)
            return login_form(a, c, MHD_HTTP_UNAUTHORIZED,
                              "that login link has expired or was used already", NULL);
    }
    if (check_token(a, hash, &why) != CM_OK)
        return login_form(a, c, MHD_HTTP_UNAUTHORIZED, why, NULL);
    return open_session(a, c);
}

static enum MHD_Result logout(struct adm_req *a, struct MHD_Connection *c)
{
    char id[ADM_SESSION_ID_LEN + 1], cookie[160];
    session_cookie(c, id);
    if (id[0])
        adm_session_close(adm_sessions_of(a->adm), id);
    cm_fmt(cookie, sizeof cookie, COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict%s",
           a->base.gw->cfg->admin_tls ? "; Secure" : "");
    return login_form(a, c, MHD_HTTP_OK, "signed out", cookie);
}

/* Who is asking for the page: CM_OK (a->actor set), CM_NOTFOUND (nobody: the plain form),
 * else CM_DENIED with *why for the form. */
static int page_auth(struct adm_req *a, struct MHD_Connection *c, const char **why)
{
    uint8_t hash[32];
    int rc = adm_bearer(c, hash);
    if (rc == CM_INVALID)
        return *why = "Authorization must be \"Bearer <admin token>\"", CM_DENIED;
    if (rc == CM_NOTFOUND) {
        char id[ADM_SESSION_ID_LEN + 1];
        session_cookie(c, id);
        bool sent = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, COOKIE) != NULL;
        if (!sent)
            return CM_NOTFOUND;
        if (id[0] == '\0' || adm_session_check(adm_sessions_of(a->adm), id, false, hash) != CM_OK)
            return *why = "your session has ended: sign in again", CM_DENIED;
    }
    return check_token(a, hash, why) == CM_OK ? CM_OK : CM_DENIED;
}

enum MHD_Result adm_dashboard(struct adm_req *a, struct MHD_Connection *c, const char *url)
{
    bool get = strcmp(a->base.method, "GET") == 0, post = strcmp(a->base.method, "POST") == 0;
    if (a->db == NULL)
        return login_form(a, c, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "the database is unreachable: try again shortly", NULL);
    if (strcmp(url, "/dashboard/login") == 0 && (get || post))
        return login(a, c, post);
    if (strcmp(url, "/dashboard/logout") == 0 && post)
        return logout(a, c);
    if (strcmp(url, "/dashboard") != 0 && strcmp(url, "/dashboard/") != 0)
        return login_form(a, c, MHD_HTTP_NOT_FOUND, "no such page", NULL);
    if (!get)
        return login_form(a, c, MHD_HTTP_METHOD_NOT_ALLOWED, "the page answers GET", NULL);
    const char *why = NULL;
    int rc = page_auth(a, c, &why);
    if (rc != CM_OK)
        return login_form(a, c, rc == CM_NOTFOUND ? MHD_HTTP_OK : MHD_HTTP_UNAUTHORIZED, why,
                          NULL);
    json_t *view = adm_dash_view(a);
    char *html = view ? adm_dash_page_html(view) : NULL;
    json_decref(view);
    if (html == NULL)
        return login_form(a, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    return send_html(a, c, MHD_HTTP_OK, html, NULL, NULL);
}

bool adm_dashboard_tickets(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    if (!adm_route(a, "POST", "dashboard/tickets"))
        return false;
    struct adm_sessions *s = adm_sessions_of(a->adm);
    char id[ADM_SESSION_ID_LEN + 1], url[128], exp[32];
    if (adm_session_open(s, true, a->token_hash, id) != CM_OK) {
        *r = adm_error(a, c, MHD_HTTP_SERVICE_UNAVAILABLE, "no_randomness",
                       "no randomness is available: retry");
        return true;
    }
    cm_fmt(url, sizeof url, "/dashboard/login?ticket=%s", id);
    cm_time_format(cm_now_us() / 1000000 + adm_sessions_lifetime(s, true), exp, sizeof exp);
    *r = adm_json(a, c, MHD_HTTP_CREATED,
                  json_pack("{s:s, s:s, s:s}", "ticket", id, "url", url, "expires_at", exp));
    memset(id, 0, sizeof id);
    return true;
}
