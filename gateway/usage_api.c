/*
 * The usage answers shared by the org API (/-/v1/usage, with the caller's key) and the
 * admin API (/admin/v1/orgs/{slug}/usage): query-string parsing and validation, JSON or
 * CSV (Accept: text/csv or format=csv) rendering, and the monthly per-hour export.
 * The figures themselves come from meter/ (usage_query.c, usage_groups.c).
 */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARG_MAX 128

struct usage_args {
    char from[ARG_MAX], to[ARG_MAX], granularity[16], tz[ARG_MAX], group_by[ARG_MAX];
    char order_by[32], limit[16], cursor[64], format[16], month[16];
    const char *allowed; /* comma-separated parameter names this endpoint takes */
    const char *bad;     /* first unknown or malformed parameter */
};

/* The field of a for parameter key, and its size; NULL when not a parameter. */
static char *arg_field(struct usage_args *a, const char *key, size_t *len)
{
    struct {
        const char *name;
        char *dst;
        size_t len;
    } fields[] = {
        {"from", a->from, sizeof a->from},
        {"to", a->to, sizeof a->to},
        {"granularity", a->granularity, sizeof a->granularity},
        {"tz", a->tz, sizeof a->tz},
        {"group_by", a->group_by, sizeof a->group_by},
        {"order_by", a->order_by, sizeof a->order_by},
        {"limit", a->limit, sizeof a->limit},
        {"cursor", a->cursor, sizeof a->cursor},
        {"format", a->format, sizeof a->format},
        {"month", a->month, sizeof a->month},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strcmp(key, fields[i].name) == 0) {
            *len = fields[i].len;
            return fields[i].dst;
        }
    return NULL;
}

static bool allowed(const char *list, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = list; *p;) {
        size_t m = strcspn(p, ",");
        if (m == n && strncmp(p, key, n) == 0)
            return true;
        p += m + (p[m] == ',');
    }
    return false;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct usage_args *a = cls;
    size_t len = 0;
    char *dst = allowed(a->allowed, key) ? arg_field(a, key, &len) : NULL;
    if (dst == NULL || value == NULL || gw_percent_decode(value, dst, len) != CM_OK) {
        if (a->bad == NULL)
            a->bad = key;
    }
    return MHD_YES;
}

/* Reads the query string into a; a 400 is queued (CM_ERR) for an unknown parameter. */
static int read_args(struct gw_req *req, struct MHD_Connection *c, struct usage_args *a,
                     enum MHD_Result *mhd)
{
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, a);
    if (a->bad == NULL)
        return CM_OK;
    char msg[300];
    cm_fmt(msg, sizeof msg, "unknown or malformed parameter \"%.40s\" (known: %s)", a->bad,
           a->allowed);
    *mhd = gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter", msg);
    return CM_ERR;
}

/* group_by=repo,key,status into bits; CM_INVALID for anything else. */
static int parse_groups(const char *s, unsigned *out)
{
    *out = 0;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, ",");
        unsigned bit = n == 4 && strncmp(p, "repo", 4) == 0     ? METER_GROUP_REPO
                       : n == 3 && strncmp(p, "key", 3) == 0    ? METER_GROUP_KEY
                       : n == 6 && strncmp(p, "status", 6) == 0 ? METER_GROUP_STATUS
                                                                : 0;
        if (bit == 0 || (*out & bit))
            return CM_INVALID;
        *out |= bit;
        p += n + (p[n] == ',');
    }
    return *out != 0 ? CM_OK : CM_INVALID;
}

/* The meaning of the grouping parameters; a message for the first bad one. */
static const char *parse_grouping(const struct usage_args *a, struct meter_usage_query *q)
{
    if (a->group_by[0] && parse_groups(a->group_by, &q->group) != CM_OK)
        return "group_by is a comma-separated list of repo, key, status";
    const char *o = a->order_by[0] ? a->order_by : "-bytes";
    q->order_asc = o[0] != '-';
    o += o[0] == '-' || o[0] == '+';
    if (strcmp(o, "bytes") != 0 && strcmp(o, "requests") != 0 && strcmp(o, "refused") != 0)
        return "order_by must be bytes, requests or refused, with - for descending";
    cm_copy(q->order_by, sizeof q->order_by, o);
    uint64_t limit = 100;
    if (a->limit[0] && (cm_parse_u64(a->limit, &limit) != CM_OK || limit < 1 ||
                        limit > METER_GROUPS_MAX_PAGE))
        return "limit must be 1-1000";
    q->limit = (unsigned)limit;
    if (a->cursor[0] && meter_cursor_decode(a->cursor, &q->offset) != CM_OK)
        return "cursor is not one this API returned (use next_cursor as it is)";
    if ((a->order_by[0] || a->limit[0] || a->cursor[0]) && q->group == 0)
        return "order_by, limit and cursor apply to grouped results: add group_by";
    return NULL;
}

/* True when the caller asked for CSV (format=csv, or Accept: text/csv). */
static int wants_csv(struct MHD_Connection *c, const struct usage_args *a, bool *csv)
{
    if (a->format[0])
        return strcmp(a->format, "csv") == 0 ? (*csv = true, CM_OK)
               : strcmp(a->format, "json") == 0 ? (*csv = false, CM_OK)
                                                : CM_INVALID;
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    *csv = accept != NULL && strcasestr(accept, "text/csv") != NULL;
    return CM_OK;
}

static int parse_query(const struct usage_args *a, struct meter_usage_query *q, const char **why)
{
    int64_t now = cm_now_us() / 1000000;
    q->from = cm_month_start(now);
    if (a->from[0] && cm_time_parse(a->from, strlen(a->from), &q->from) != CM_OK)
        return *why = "from must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z", CM_INVALID;
    q->to = cm_month_next(cm_month_start(q->from));
    if (a->to[0] && cm_time_parse(a->to, strlen(a->to), &q->to) != CM_OK)
        return *why = "to must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z", CM_INVALID;
    cm_copy(q->granularity, sizeof q->granularity, a->granularity[0] ? a->granularity : "day");
    if (strlen(a->granularity) >= sizeof q->granularity)
        cm_copy(q->granularity, sizeof q->granularity, "?");
    if (a->tz[0] && cm_copy(q->tz, sizeof q->tz, a->tz) != CM_OK)
        return *why = "tz must be an IANA time zone name such as Europe/Paris", CM_INVALID;
    return (*why = parse_grouping(a, q)) == NULL ? CM_OK : CM_INVALID;
}

/* Appends one CSV field (RFC 4180 quoting when needed) to f. */
static void csv_field(FILE *f, const json_t *v, bool first)
{
    if (!first)
        fputc(',', f);
    if (json_is_integer(v)) {
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* rows (array of objects) as CSV with a header row of columns (NULL-terminated);
 * malloc'd text in *out, its length in *len. */
static int render_csv(const json_t *rows, const char *const *columns, char **out, size_t *len)
{
    FILE *f = open_memstream(out, len);
    if (f == NULL)
        return CM_ERR;
    for (size_t i = 0; columns[i]; i++)
        fprintf(f, "%s%s", i ? "," : "", columns[i]);
    fputs("\r\n", f);
    size_t r;
    const json_t *row;
    json_array_foreach(rows, r, row) {
        for (size_t i = 0; columns[i]; i++)
            csv_field(f, json_object_get(row, columns[i]), i == 0);
        fputs("\r\n", f);
    }
    return fclose(f) == 0 ? CM_OK : CM_ERR;
}

static enum MHD_Result reply_csv(struct gw_req *req, struct MHD_Connection *c, const json_t *rows,
                                 const char *const *columns, const char *next_cursor)
{
    char *text = NULL;
    size_t len = 0;
    if (render_csv(rows, columns, &text, &len) != CM_OK) {
        free(text);
        return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/csv; charset=utf-8");
    if (next_cursor != NULL)
        MHD_add_response_header(resp, "X-Next-Cursor", next_cursor);
    return gw_reply(req, c, MHD_HTTP_OK, resp);
}

/* The CSV columns of a usage document: its groups' dimensions, or the series'. */
static void usage_columns(const struct meter_usage_query *q, const char *cols[8])
{
    size_t n = 0;
    if (q->group == 0)
        cols[n++] = "start";
    if (q->group & METER_GROUP_REPO)
        cols[n++] = "repo";
    if (q->group & METER_GROUP_KEY)
        cols[n++] = "key";
    if (q->group & METER_GROUP_STATUS)
        cols[n++] = "status";
    cols[n++] = "requests";
    cols[n++] = "bytes";
    cols[n++] = "refused";
    cols[n] = NULL;
}

static enum MHD_Result unavailable(struct gw_req *req, struct MHD_Connection *c, const char *err)
{
    if (err != NULL)
        cm_log(CM_LOG_ERROR, "usage_query_failed", "error=\"%s\"", err);
    return gw_reply_error(req, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                          "usage data is unreachable: retry shortly");
}

enum MHD_Result gw_usage_reply(struct gw_req *req, struct MHD_Connection *c, int64_t org_id,
                               const char *org_slug)
{
    enum MHD_Result mhd;
    struct usage_args a = {.allowed = "from,to,granularity,tz,group_by,order_by,limit,cursor,"
                                      "format"};
    if (read_args(req, c, &a, &mhd) != CM_OK)
        return mhd;
    struct meter_usage_query q = {.org_id = org_id,
                                  .minute_retention_days = req->gw->cfg->minute_retention_days};
    const char *why = NULL;
    bool csv = false;
    if (parse_query(&a, &q, &why) != CM_OK || wants_csv(c, &a, &csv) != CM_OK)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                              why ? why : "format must be json or csv");
    PGconn *db = cm_pg_pool_get(req->gw->pg, 3000);
    if (db == NULL)
        return unavailable(req, c, NULL);
    json_t *doc = NULL;
    char err[512];
    int rc = meter_usage_query(db, &q, &doc, err, sizeof err);
    cm_pg_pool_put(req->gw->pg, db);
    if (rc == CM_NOTFOUND)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter", err);
    if (rc == CM_INVALID)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_range", err);
    if (rc != CM_OK)
        return unavailable(req, c, err);
    json_object_set_new(doc, "org", json_string(org_slug));
    if (!csv)
        return gw_reply_json(req, c, MHD_HTTP_OK, doc);
    const char *cols[8];
    usage_columns(&q, cols);
    enum MHD_Result r =
        reply_csv(req, c, json_object_get(doc, q.group ? "groups" : "series"), cols,
                  json_string_value(json_object_get(doc, "next_cursor")));
    json_decref(doc);
    return r;
}

/* month=YYYY-MM (default: the current UTC month) into its first second. */
static int parse_month(const char *s, int64_t *start)
{
    if (s[0] == '\0') {
        *start = cm_month_start(cm_now_us() / 1000000);
        return CM_OK;
    }
    char t[32];
    if (strlen(s) != 7 || s[4] != '-' || cm_fmt(t, sizeof t, "%s-01T00:00:00Z", s) != CM_OK ||
        cm_time_parse(t, strlen(t), start) != CM_OK)
        return CM_INVALID;
    return CM_OK;
}

enum MHD_Result gw_usage_export_reply(struct gw_req *req, struct MHD_Connection *c,
                                      int64_t org_id)
{
    enum MHD_Result mhd;
    struct usage_args a = {.allowed = "month,format"};
    if (read_args(req, c, &a, &mhd) != CM_OK)
        return mhd;
    int64_t month;
    if (parse_month(a.month, &month) != CM_OK)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                              "month must be YYYY-MM, e.g. 2026-11");
    if (a.format[0] && strcmp(a.format, "csv") != 0 && strcmp(a.format, "json") != 0)
        return gw_reply_error(req, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                              "format must be csv (the default) or json");
    PGconn *db = cm_pg_pool_get(req->gw->pg, 3000);
    if (db == NULL)
        return unavailable(req, c, NULL);
    json_t *rows = NULL;
    char err[512];
    int rc = meter_usage_export(db, org_id, month, &rows, err, sizeof err);
    cm_pg_pool_put(req->gw->pg, db);
    if (rc != CM_OK)
        return unavailable(req, c, err);
    if (strcmp(a.format, "json") == 0)
        return gw_reply_json(req, c, MHD_HTTP_OK, rows);
    static const char *const cols[] = {"hour", "key", "repo", "requests", "bytes", "refused",
                                       "clients", NULL};
    enum MHD_Result r = reply_csv(req, c, rows, cols, NULL);
    json_decref(rows);
    return r;
}
