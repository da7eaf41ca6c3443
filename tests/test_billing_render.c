/*
 * Funding reports as people read them: the JSON, CSV, table and HTML renderings of the
 * seeded month show the same figures, and the printable HTML renders in headless Chromium
 * (the DOM holds the expected text; the screenshot is far from a blank page's).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "billing/billing.h"
#include "tests/billing_fixture.h"
#include "tests/harness.h"

static void csv_col(const char *line, int col, char *out, size_t len)
{
    for (int i = 0; i < col && line != NULL; i++)
        line = strchr(line, ',') ? strchr(line, ',') + 1 : NULL;
    cr_assert(line != NULL);
    size_t n = strcspn(line, ",\r\n");
    snprintf(out, len, "%.*s", (int)n, line);
}

Test(billing, json_csv_table_and_html_show_the_same_figures, .init = bf_seed, .fini = bf_scrub)
{
    json_t *doc = bf_report("2026-10", bf_model_path, NULL);
    struct th_run r;
    char csv_path[200], html_path[200];
    snprintf(csv_path, sizeof csv_path, "%s/report.csv", bf_work);
    snprintf(html_path, sizeof html_path, "%s/report.html", bf_work);
    bf_cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", "--format", "csv",
                             "--out", csv_path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    bf_cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", "--format", "html",
                             "--out", html_path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    bf_cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *table = r.out;
    cr_assert(strstr(table, "List-price estimate") != NULL);
    cr_assert(strstr(table, "$13,590.14") != NULL, "%s", table);

    FILE *f = fopen(csv_path, "r");
    cr_assert(f != NULL);
    char line[2048], v[64], want[64];
    cr_assert(fgets(line, sizeof line, f) != NULL);
    cr_assert(strncmp(line, "period,rank,consumer,", 21) == 0);
    size_t rows = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        csv_col(line, 2, v, sizeof v);
        if (strcmp(v, "TOTAL") == 0) {
            csv_col(line, 14, v, sizeof v);
            cr_assert_str_eq(v, "13590.144938");
            csv_col(line, 16, v, sizeof v);
            cr_assert_str_eq(v, "17500.000000", "the asks column's sum (to send and to review)");
            continue;
        }
        const json_t *c = json_array_get(json_object_get(doc, "consumers"), rows++);
        cr_assert_str_eq(v, bf_jstr(c, "consumer"));
        csv_col(line, 5, v, sizeof v);
        snprintf(want, sizeof want, "%lld", bf_jint(c, "bytes"));
        cr_assert_str_eq(v, want);
        csv_col(line, 14, v, sizeof v);
        bill_format_micros(bf_jint(c, "cost_micros"), want, sizeof want);
        cr_assert_str_eq(v, want, "cost of %s", bf_jstr(c, "consumer"));
        csv_col(line, 16, v, sizeof v);
        bill_format_micros(bf_jint(c, "ask_micros"), want, sizeof want);
        cr_assert_str_eq(v, want, "ask of %s", bf_jstr(c, "consumer"));
        csv_col(line, 17, v, sizeof v);
        cr_assert_str_eq(v, bf_jstr(c, "ask_status"));
        /* The table and the HTML show the same cost to the cent. */
        bill_format_money("USD", bf_jint(c, "cost_micros"), want, sizeof want);
        cr_assert(strstr(table, want) != NULL, "table lacks %s", want);
        cr_assert(th_file_contains(html_path, want), "html lacks %s", want);
    }
    fclose(f);
    cr_assert_eq(rows, 10, "the ten consumers of the seeded month");
    cr_assert(th_file_contains(html_path, "$13,590.14"));
    cr_assert(th_file_contains(html_path, "$10,000.00"), "acme's ask");
    cr_assert(th_file_contains(html_path, "$15,000.00"), "asks ready to send");
    cr_assert(th_file_contains(html_path, "BigCo &lt;Ltd&gt; &amp; &quot;Sons&quot;"),
              "names are escaped");
    cr_assert(!th_file_contains(html_path, "<Ltd>"));
    cr_assert(th_file_contains(html_path, "<svg"));
    cr_assert(!th_file_contains(html_path, "src=\"http"), "no external assets");
    cr_assert(!th_file_contains(html_path, "href=\"http"), "no external assets");
    cr_assert(th_file_contains(html_path, "caching proxy"), "acme's redundancy advice");
    cr_assert(th_file_contains(html_path, "For review"), "mystery's letter is flagged");
    json_decref(doc);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

Test(billing, the_html_report_renders_in_headless_chromium,
    .init = bf_seed, .fini = bf_scrub, .timeout = 180)
{
    cr_assert(access("/usr/bin/chromium", X_OK) == 0,
              "chromium is not installed (scripts/deps.sh installs it)");
    struct th_run r;
    char html[200], blank[200], png[200], blank_png[200], url[260], blank_url[260], dom[200],
        shot[260], blank_shot[260], profile[260], profile_arg[300];
    snprintf(html, sizeof html, "%s/print.html", bf_work);
    snprintf(blank, sizeof blank, "%s/blank.html", bf_work);
    snprintf(png, sizeof png, "%s/report.png", bf_work);
    snprintf(blank_png, sizeof blank_png, "%s/blank.png", bf_work);
    snprintf(dom, sizeof dom, "%s/dom.txt", bf_work);
    snprintf(profile, sizeof profile, "%s/chromium-profile", bf_work);
    snprintf(profile_arg, sizeof profile_arg, "--user-data-dir=%s", profile);
    bf_cli(&r, (const char *[]){"report", "funding", "--period", "2026-10", "--format", "html",
                             "--cost-model", bf_model_path, "--out", html, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    bf_write_text(blank, "<!DOCTYPE html><html><body></body></html>\n");
    snprintf(url, sizeof url, "file://%s", html);
    snprintf(blank_url, sizeof blank_url, "file://%s", blank);
    snprintf(shot, sizeof shot, "--screenshot=%s", png);
    snprintf(blank_shot, sizeof blank_shot, "--screenshot=%s", blank_png);
    char *dump[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", profile_arg, "--dump-dom", url, NULL};
    cr_assert_eq(th_run_bounded(dump, dom, 60), 0, "chromium --dump-dom failed or hung");
    cr_assert(th_file_contains(dom, "Funding report 2026-10"));
    cr_assert(th_file_contains(dom, "$13,590.14"));
    cr_assert(th_file_contains(dom, "List-price estimate"));
    cr_assert(th_file_contains(dom, "Dear Acme Cloud team"));
    char *shoot[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", profile_arg, "--hide-scrollbars",
                     "--window-size=1100,1400", shot, url, NULL};
    char *shoot_blank[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", profile_arg, "--hide-scrollbars",
                           "--window-size=1100,1400", blank_shot, blank_url, NULL};
    cr_assert_eq(th_run_bounded(shoot, "/dev/null", 60), 0, "chromium --screenshot failed or hung");
    cr_assert_eq(th_run_bounded(shoot_blank, "/dev/null", 60), 0);
    long size = file_size(png), blank_size = file_size(blank_png);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8] = {0};
    FILE *f = fopen(png, "rb");
    cr_assert(f != NULL && fread(head, 1, 8, f) == 8);
    fclose(f);
    cr_assert(memcmp(head, sig, 8) == 0, "a PNG");
    /* A blank page of the same size compresses to a few kB; text, a table and a chart
     * make the screenshot many times larger. */
    cr_assert_gt(size, 10 * blank_size, "report %ld bytes, blank page %ld", size, blank_size);
}
