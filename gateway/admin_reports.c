/*
 * Admin API: the funding-ask report, GET /admin/v1/reports/funding?period=YYYY-MM
 * [&format=json|csv|html] [&regenerate=true] — the same snapshots and figures as
 * `hubmeter report funding` (billing/), as JSON (default), CSV (also on Accept: text/csv)
 * or the self-contained HTML page.
 */
#include "gateway/admin_int.h"
#include "billing/billing.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool adm_reports(struct adm_req *a, struct MHD_Connection *c, enum MHD_Result *r)
{
    if (!adm_route(a, "GET", "reports/funding"))
        return false;
    if (adm_args_only(a, c, "period,format,regenerate", r) != CM_OK)
        return true;
    char period[16], format[8], regen[8];
    if (adm_arg(c, "period", period, sizeof period) != CM_OK ||
        adm_arg(c, "format", format, sizeof format) != CM_OK ||
        adm_arg(c, "regenerate", regen, sizeof regen) != CM_OK || period[0] == '\0' ||
        (regen[0] && strcmp(regen, "true") != 0 && strcmp(regen, "false") != 0)) {
        *r = adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                       "period=YYYY-MM is required; format is json, csv or html; regenerate "
                       "is true or false");
        return true;
    }
    enum bill_format fmt = BILL_JSON;
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    if (format[0] == '\0' && accept != NULL && strcasestr(accept, "text/csv") != NULL)
        fmt = BILL_CSV;
    else if (format[0] != '\0' &&
             (bill_format_parse(format, &fmt) != CM_OK || fmt == BILL_TABLE)) {
        *r = adm_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                       "format must be json, csv or html");
        return true;
    }
    struct bill_request req = {.period = period, .regenerate = strcmp(regen, "true") == 0};
    struct bill_output out = {0};
    const char *code = NULL;
    char err[512];
    int rc = bill_report_generate(a->db, &req, fmt, &out, &code, err, sizeof err);
    if (rc == CM_INVALID || rc == CM_NOTFOUND) {
        *r = adm_error(a, c, rc == CM_INVALID ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_NOT_FOUND,
                       code ? code : (rc == CM_INVALID ? "bad_period" : "unknown_period"), err);
        return true;
    }
    if (rc != CM_OK) {
        cm_log(CM_LOG_ERROR, "funding_report_failed", "error=\"%s\"", err);
        *r = adm_error(a, c, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                       "the report could not be computed: retry shortly");
        return true;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(out.len, out.body, MHD_RESPMEM_MUST_COPY);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, out.content_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    bill_output_free(&out);
    *r = gw_reply(&a->base, c, MHD_HTTP_OK, resp);
    return true;
}
