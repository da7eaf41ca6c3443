/*
 * The funding-report suites' fixture: a month of usage seeded straight into a migrated
 * database (th_db_new), a scratch folder, running `hubmeter report funding`, and reading
 * the report document. Shared by tests/test_billing*.c; nothing here is mocked.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/billing_fixture.h"
#include "tests/harness.h"

void bf_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* October 2026, worked out by hand (SI units, default list prices, FIXED_MONTHLY_COST=3000
 * with FIXED_SHARE_PERCENT=50):
 *   consumer            class        bytes                 requests
 *   acme                commercial   120 TB (20 TB anon.)  40,000,000
 *   bigco               commercial    40 TB (1 TB anon.)    8,000,000 (5,000 refused)
 *   smallco             commercial   0.5 TB                 1,000,000
 *   mystery             unknown       30 TB                 1,000,000
 *   tinyunk             unknown        1 GB                     1,000
 *   opensci             nonprofit      5 TB                 2,000,000
 *   uni                 academic       3 TB                 1,000,000
 *   jdoe                individual   0.1 TB                    10,000
 *   203.0.113.0/24      (unmapped)   1.3 TB + 123,456,789 B   500,000
 *   2001:db8:1::/48     (unmapped)   0.099 TB                   9,000
 *   total                            200 TB + 123,456,789 B  53,520,000
 * Egress $12,050.004938, requests $40.14, fixed $1,500: period $13,590.144938. */
static const char SEED[] =
    "SELECT hm_usage_partition('2026-09-15Z'), hm_usage_partition('2026-10-15Z');"
    "INSERT INTO orgs (id, slug, name, class) VALUES (1, 'acme', 'Acme Cloud', 'commercial'),"
    " (2, 'bigco', 'BigCo <Ltd> & \"Sons\"', 'commercial'),"
    " (3, 'smallco', 'SmallCo', 'commercial'),"
    " (4, 'mystery', 'Mystery Labs', 'unknown'), (5, 'tinyunk', 'Tiny', 'unknown'),"
    " (6, 'opensci', 'Open Science Foundation', 'nonprofit'), (7, 'uni', 'State University',"
    " 'academic'), (8, 'jdoe', 'J. Doe', 'individual');"
    "SELECT setval('orgs_id_seq', 8);"
    /* Most specific range wins: the /24 belongs to acme, the rest of the /16 to bigco. */
    "INSERT INTO org_networks (org_id, network) VALUES (1, '198.51.100.0/24'),"
    " (2, '198.51.0.0/16');"
    "INSERT INTO rollup_cursor (hour) VALUES ('2026-10-20T00:00Z');"
    /* October has closed (its snapshots are final); September, oddly, has not. */
    "INSERT INTO closed_months (month) VALUES ('2026-10-01Z');"
    "INSERT INTO rollup_dirty (hour) VALUES ('2026-10-10T07:00Z');"
    "INSERT INTO usage_hourly (bucket, org_id, key_id, network, repo, method, status_class,"
    " refused_by, requests, bytes) VALUES"
    " ('2026-09-15T10:00Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 30000000, 100000000000000),"
    " ('2026-09-15T10:00Z', 2, 21, NULL, 'big/data', 'GET', 2, '', 9000000, 50000000000000),"
    " ('2026-09-15T10:00Z', 6, 61, NULL, 'sci/atlas', 'GET', 2, '', 2000000, 5000000000000),"
    " ('2026-09-15T10:00Z', NULL, NULL, '203.0.113.0/24', 'acme/llm', 'GET', 2, '',"
    " 1000, 1000000000000),"
    " ('2026-10-05T10:00Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 15000000, 60000000000000),"
    " ('2026-10-12T14:00Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 10000000, 25000000000000),"
    " ('2026-10-08T09:00Z', 2, 21, NULL, 'big/data', 'GET', 2, '', 7000000, 38000000000000),"
    " ('2026-10-08T09:00Z', 2, 21, NULL, 'big/data', 'GET', 4, 'requests', 5000, 0),"
    " ('2026-10-09T11:00Z', NULL, NULL, '198.51.7.0/24', 'big/data', 'GET', 2, '',"
    " 995000, 1000000000000),"
    " ('2026-10-03T08:00Z', 3, 31, NULL, 'small/x', 'GET', 2, '', 1000000, 500000000000),"
    /* A stale hourly row of a dirty hour: its minute rows count instead. */
    " ('2026-10-10T07:00Z', 4, 41, NULL, 'mys/model', 'GET', 2, '', 900000, 29000000000000),"
    " ('2026-10-02T12:00Z', 6, 61, NULL, 'sci/atlas', 'GET', 2, '', 2000000, 5000000000000),"
    " ('2026-10-04T12:00Z', 7, 71, NULL, 'uni/corpus', 'GET', 2, '', 1000000, 3000000000000),"
    " ('2026-10-06T12:00Z', NULL, NULL, '203.0.113.0/24', 'acme/llm', 'GET', 2, '',"
    " 500000, 1300123456789);"
    "INSERT INTO usage_minute (bucket, org_id, key_id, network, repo, method, status_class,"
    " refused_by, requests, bytes) VALUES"
    /* Minute rows of a rolled-up hour: already in usage_hourly, never counted twice. */
    " ('2026-10-12T14:07Z', 1, 11, NULL, 'acme/llm', 'GET', 2, '', 10000000, 25000000000000),"
    " ('2026-10-10T07:05Z', 4, 41, NULL, 'mys/model', 'GET', 2, '', 600000, 20000000000000),"
    " ('2026-10-10T07:45Z', 4, 41, NULL, 'mys/model', 'GET', 2, '', 400000, 10000000000000),"
    " ('2026-10-25T08:30Z', 1, 11, NULL, 'acme/tokenizer', 'GET', 2, '', 5000000, 15000000000000),"
    " ('2026-10-26T09:00Z', NULL, NULL, '198.51.100.0/24', 'acme/llm', 'GET', 2, '',"
    " 10000000, 20000000000000),"
    " ('2026-10-28T09:00Z', 5, 51, NULL, 'tiny/t', 'GET', 2, '', 1000, 1000000000),"
    " ('2026-10-21T09:00Z', 8, 81, NULL, 'jd/notes', 'GET', 2, '', 10000, 100000000000),"
    " ('2026-10-22T09:00Z', NULL, NULL, '2001:db8:1::/48', 'uni/corpus', 'GET', 2, '',"
    " 9000, 99000000000);"
    /* A correction for the closed month: +1 TB for bigco. */
    "INSERT INTO usage_adjustments (bucket, org_id, repo, requests, bytes, reason, author)"
    " VALUES ('2026-10-15T00:00Z', 2, 'big/data', 0, 1000000000000, 'late batch', 'ops');"
    /* Objects: acme pulls a 10 GB file 200 times a day for 30 days; a tokenizer twice. */
    "INSERT INTO usage_objects_daily (day, org_id, repo, etag, requests, bytes)"
    " SELECT d, 1, 'acme/llm', 'e1', 200, 2000000000000 FROM generate_series("
    " '2026-10-01Z'::timestamptz, '2026-10-30Z', '1 day') d;"
    "INSERT INTO usage_objects_daily (day, org_id, repo, etag, requests, bytes) VALUES"
    " ('2026-10-25Z', 1, 'acme/tokenizer', 't1', 3, 13000000000),"
    " ('2026-10-26Z', 1, 'acme/tokenizer', 't1', 0, 2000000000),"
    " ('2026-10-08Z', 2, 'big/data', 'b1', 4, 100000000000),"
    " ('2026-10-08Z', NULL, 'acme/llm', 'e1', 50, 500000000000);";

static const char TEST_MODEL[] = "FIXED_MONTHLY_COST=3000\nFIXED_SHARE_PERCENT=50\n";

char bf_db_url[512], bf_model_path[200], bf_work[128];
static char bf_db_env[600];

void bf_seed(void)
{
    th_db_new(bf_db_url, sizeof bf_db_url);
    snprintf(bf_db_env, sizeof bf_db_env, "HUBMETER_DATABASE_URL=%s", bf_db_url);
    PGconn *db = th_db_connect(bf_db_url);
    PGresult *res = PQexec(db, SEED);
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK,
              "seed: %s", PQerrorMessage(db));
    PQclear(res);
    PQfinish(db);
    snprintf(bf_work, sizeof bf_work, "/tmp/hm-billing-%d", (int)getpid());
    mkdir(bf_work, 0755);
    snprintf(bf_model_path, sizeof bf_model_path, "%s/test.model", bf_work);
    bf_write_text(bf_model_path, TEST_MODEL);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the suite's scratch folder (reports, models, Chromium's profile). */
void bf_scrub(void)
{
    if (bf_work[0] != '\0')
        nftw(bf_work, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void bf_cli(struct th_run *r, const char *const *args)
{
    const char *env[] = {bf_db_env, NULL};
    th_hubmeter(r, env, args);
}

/* Runs `report funding` with extra args and returns the JSON document. */
json_t *bf_report(const char *period, const char *model, const char *extra)
{
    struct th_run r;
    const char *args[12] = {"report", "funding", "--period", period, "--format", "json"};
    int n = 6;
    if (model != NULL) {
        args[n++] = "--cost-model";
        args[n++] = model;
    }
    if (extra != NULL)
        args[n++] = extra;
    args[n] = NULL;
    bf_cli(&r, args);
    cr_assert_eq(r.status, 0, "report failed: %s", r.err);
    json_error_t je;
    json_t *doc = json_loads(r.out, 0, &je);
    cr_assert(doc != NULL, "not JSON (%s): %.300s", je.text, r.out);
    return doc;
}

const json_t *bf_consumer(const json_t *doc, const char *name)
{
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(doc, "consumers"), i, c)
        if (strcmp(json_string_value(json_object_get(c, "consumer")), name) == 0)
            return c;
    cr_assert_fail("no consumer %s in the report", name);
    return NULL;
}

long long bf_jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "%s is not an integer", key);
    return (long long)json_integer_value(v);
}

const char *bf_jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert(s != NULL, "%s is not a string", key);
    return s;
}
