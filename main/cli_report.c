/*
 * hubmeter report funding — the funding-ask report for a month, in a table, JSON, CSV or
 * printable HTML, on stdout or into a file (written whole, then renamed into place).
 * The figures come from billing/; this file parses options and reports errors once.
 */
#include "billing/billing.h"
#include "main/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char REPORT_USAGE[] =
    "usage: hubmeter report funding --period YYYY-MM [--format table|json|csv|html]\n"
    "                               [--out FILE] [--cost-model FILE] [--regenerate]\n"
    "  --period      a UTC calendar month; the current month is reported month to date\n"
    "  --format      table (default), json, csv, or html (a printable, self-contained page)\n"
    "  --out         write the report to FILE instead of stdout\n"
    "  --cost-model  KEY=value file of prices, allowances and ask rules (README, \"Funding\n"
    "                reports\"); default: the period's last snapshot's model, else list prices\n"
    "  --regenerate  recompute a month that already has a snapshot and show what changed\n"
    "A closed month's report is stored and shown the same later; a new cost model or\n"
    "--regenerate stores a new snapshot. Figures are list-price estimates.\n";

/* Writes body to path through a temporary file and rename(2). */
static int write_file(const char *path, const char *body, size_t len)
{
    char tmp[4096];
    if (cm_fmt(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) != CM_OK)
        return fprintf(stderr, "hubmeter: --out path is too long\n"), 1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return fprintf(stderr, "hubmeter: cannot write %s: %s\n", path, strerror(errno)), 1;
    bool ok = fwrite(body, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "hubmeter: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return 1;
    }
    return 0;
}

static int funding(const struct hm_config *cfg, int argc, char **argv)
{
    struct bill_request req = {0};
    enum bill_format fmt = BILL_TABLE;
    const char *out_path = NULL, *model_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (cli_opt(argc, argv, &i, "--period", &v)) {
            if ((req.period = v) == NULL)
                return fprintf(stderr, "hubmeter: --period needs a month YYYY-MM, e.g. "
                                       "2026-10\n"), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--format", &v)) {
            if (v == NULL || bill_format_parse(v, &fmt) != CM_OK)
                return fprintf(stderr, "hubmeter: --format must be table, json, csv or "
                                       "html\n"), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--out", &v)) {
            if ((out_path = v) == NULL)
                return fprintf(stderr, "hubmeter: --out needs a file\n"), EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--cost-model", &v)) {
            if ((model_path = v) == NULL)
                return fprintf(stderr, "hubmeter: --cost-model needs a file\n"), EXIT_USAGE;
        } else if (strcmp(argv[i], "--regenerate") == 0) {
            req.regenerate = true;
        } else if (strcmp(argv[i], "--help") == 0) {
            return fputs(REPORT_USAGE, stdout), 0;
        } else {
            return fprintf(stderr, "hubmeter: unknown option %s\n%s", argv[i], REPORT_USAGE),
                   EXIT_USAGE;
        }
    }
    if (req.period == NULL)
        return fprintf(stderr, "hubmeter: --period YYYY-MM is required\n%s", REPORT_USAGE),
               EXIT_USAGE;
    char err[512];
    struct bill_model model;
    if (model_path != NULL) {
        if (bill_model_parse_file(model_path, &model, err, sizeof err) != CM_OK)
            return fprintf(stderr, "hubmeter: %s\n", err), EXIT_USAGE;
        req.model = &model;
    }
    PGconn *db = cli_db(cfg);
    if (db == NULL)
        return 1;
    struct bill_output out;
    const char *code;
    int rc = bill_report_generate(db, &req, fmt, &out, &code, err, sizeof err);
    PQfinish(db);
    if (rc != CM_OK)
        return cli_fail(rc, err);
    int status = 0;
    if (out_path != NULL)
        status = write_file(out_path, out.body, out.len);
    else if (fwrite(out.body, 1, out.len, stdout) != out.len)
        status = 1;
    bill_output_free(&out);
    return status;
}

int cli_report(const struct hm_config *cfg, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "funding") == 0)
        return funding(cfg, argc, argv);
    bool help = argc >= 1 && strcmp(argv[0], "--help") == 0;
    fputs(REPORT_USAGE, help ? stdout : stderr);
    return help ? 0 : EXIT_USAGE;
}
