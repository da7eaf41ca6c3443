/*
 * The funding-report suites' fixture (tests/billing_fixture.c): the seeded October 2026
 * (see the table there), its scratch folder and cost model, and helpers that run the CLI
 * and read the report document. Assertions fail the calling test.
 */
#ifndef HM_TEST_BILLING_FIXTURE_H
#define HM_TEST_BILLING_FIXTURE_H

#include <jansson.h>

#include "tests/harness.h"

#define TB 1000000000000ll
#define GB 1000000000ll

extern char bf_db_url[512];     /* the seeded database */
extern char bf_model_path[200]; /* FIXED_MONTHLY_COST=3000, FIXED_SHARE_PERCENT=50 */
extern char bf_work[128];       /* a scratch folder, removed by bf_scrub */

/* .init: a new database with the month seeded, and the scratch folder. */
void bf_seed(void);
/* .fini: removes the scratch folder. */
void bf_scrub(void);
void bf_write_text(const char *path, const char *text);
/* Runs the sanitized hubmeter against the seeded database. */
void bf_cli(struct th_run *r, const char *const *args);
/* `report funding --period P --format json [--cost-model M] [extra]`: the document
 * (caller decrefs); fails the test unless it exits 0 with JSON. */
json_t *bf_report(const char *period, const char *model, const char *extra);
/* The consumer row named name (fails the test when absent). */
const json_t *bf_consumer(const json_t *doc, const char *name);
long long bf_jint(const json_t *o, const char *key);
const char *bf_jstr(const json_t *o, const char *key);

#endif
