/*
 * Integration tests of the registry and the CLI against the real PostgreSQL: plans, orgs
 * and keys as operators create them, and key lookup as the gateway performs it.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "registry/registry.h"
#include "tests/harness.h"

static char db_url[512];
static char db_env[600];

static void setup(void)
{
    th_db_new(db_url, sizeof db_url);
    snprintf(db_env, sizeof db_env, "HUBMETER_DATABASE_URL=%s", db_url);
}

static void cli(struct th_run *r, const char *const *args)
{
    const char *env[] = {db_env, NULL};
    th_hubmeter(r, env, args);
}

Test(registry, migrate_is_idempotent_and_records_versions, .init = setup)
{
    struct th_run r;
    cli(&r, (const char *[]){"migrate", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "0 applied") != NULL, "%s", r.out);
    PGconn *db = th_db_connect(db_url);
    int last = 0;
    for (const struct cm_migration *m = cm_migrations; m->name; m++)
        last = m->version;
    cr_assert_gt(last, 4);
    char *v = th_db_value(db, "SELECT max(version)::text FROM schema_migrations", 0, NULL);
    char want[16];
    snprintf(want, sizeof want, "%d", last);
    cr_assert_str_eq(v, want, "the newest embedded migration is recorded as applied");
    free(v);
    PQfinish(db);
}

Test(registry, an_org_with_a_plan_and_a_key_is_found_by_the_key_hash, .init = setup)
{
    struct th_run r;
    cli(&r, (const char *[]){"plans", "create", "pro", "--requests-per-minute", "600",
                             "--bytes-per-second", "1000000", "--monthly-bytes", "5000000000",
                             "--max-concurrent", "8", "--failure", "closed", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli(&r, (const char *[]){"orgs", "create", "acme", "--name", "Acme Inc", "--class",
                             "commercial", "--plan", "pro", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli(&r, (const char *[]){"keys", "create", "acme", "--name", "ci", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    char key[128];
    th_last_line(r.out, key, sizeof key);
    cr_assert_eq(reg_key_check("hm_", key, strlen(key)), CM_OK, "not a key: %s", key);

    PGconn *db = th_db_connect(db_url);
    uint8_t hash[32];
    cm_sha256(key, strlen(key), hash);
    struct reg_identity id;
    char err[256];
    cr_assert_eq(reg_key_lookup(db, hash, &id, err, sizeof err), CM_OK, "%s", err);
    cr_assert_str_eq(id.org_slug, "acme");
    cr_assert(id.plan_id > 0);
    /* Only the hash is stored: the secret appears nowhere in the database. */
    const char *params[] = {key};
    char *found = th_db_value(db, "SELECT count(*)::text FROM api_keys WHERE display = $1 OR"
                                  " encode(secret_sha256, 'escape') LIKE '%' || $1 || '%'",
                              1, params);
    cr_assert_str_eq(found, "0");
    free(found);
    PQfinish(db);

    cli(&r, (const char *[]){"orgs", "show", "acme", "--json", NULL});
    cr_assert_eq(r.status, 0);
    json_t *org = json_loads(r.out, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(org, "class")), "commercial");
    cr_assert_str_eq(json_string_value(json_object_get(org, "plan")), "pro");
    json_decref(org);
    cli(&r, (const char *[]){"plans", "show", "pro", "--json", NULL});
    json_t *plan = json_loads(r.out, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(plan, "monthly_bytes")), 5000000000);
    cr_assert_str_eq(json_string_value(json_object_get(plan, "failure_policy")), "closed");
    json_decref(plan);
}

Test(registry, a_revoked_key_is_denied_and_listed_as_revoked, .init = setup)
{
    struct th_run r;
    cli(&r, (const char *[]){"orgs", "create", "beta", NULL});
    cli(&r, (const char *[]){"keys", "create", "beta", NULL});
    char key[128], display[32];
    th_last_line(r.out, key, sizeof key);
    reg_key_display("hm_", key, display, sizeof display);
    cli(&r, (const char *[]){"keys", "revoke", display, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cli(&r, (const char *[]){"keys", "list", "beta", "--json", NULL});
    json_t *keys = json_loads(r.out, 0, NULL);
    cr_assert_eq(json_array_size(keys), 1);
    json_t *k = json_array_get(keys, 0);
    cr_assert(json_is_string(json_object_get(k, "revoked_at")));
    cr_assert_str_eq(json_string_value(json_object_get(k, "prefix")), display);
    cr_assert(strstr(r.out, key) == NULL, "a listing never shows the secret");
    json_decref(keys);
    PGconn *db = th_db_connect(db_url);
    uint8_t hash[32];
    cm_sha256(key, strlen(key), hash);
    struct reg_identity id;
    char err[256];
    cr_assert_eq(reg_key_lookup(db, hash, &id, err, sizeof err), CM_DENIED);
    cm_sha256("hm_unknown", 10, hash);
    cr_assert_eq(reg_key_lookup(db, hash, &id, err, sizeof err), CM_NOTFOUND);
    PQfinish(db);
}

Test(registry, bad_cli_input_gets_a_message_and_a_nonzero_exit, .init = setup)
{
    struct th_run r;
    cli(&r, (const char *[]){"orgs", "create", "Not_A_Slug", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "slug") != NULL, "%s", r.err);
    cli(&r, (const char *[]){"orgs", "create", "gamma", "--class", "megacorp", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "class") != NULL, "%s", r.err);
    cli(&r, (const char *[]){"orgs", "create", "gamma", "--plan", "missing", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "no plan named missing") != NULL, "%s", r.err);
    cli(&r, (const char *[]){"plans", "create", "p1", "--monthly-bytes", "-5", NULL});
    cr_assert_eq(r.status, 2);
    cli(&r, (const char *[]){"plans", "create", "p1", "--failure", "maybe", NULL});
    cr_assert_eq(r.status, 2);
    cli(&r, (const char *[]){"orgs", "create", "gamma", NULL});
    cr_assert_eq(r.status, 0);
    cli(&r, (const char *[]){"orgs", "create", "gamma", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "already exists") != NULL, "%s", r.err);
    cli(&r, (const char *[]){"keys", "create", "nobody", NULL});
    cr_assert_eq(r.status, 1);
    cli(&r, (const char *[]){"keys", "revoke", "hm_nothing", NULL});
    cr_assert_eq(r.status, 1);
    cli(&r, (const char *[]){"frobnicate", NULL});
    cr_assert_eq(r.status, 2);
    const char *env[] = {"HUBMETER_DATABASE_URL=postgresql://nobody:secretpw@127.0.0.1:1/x",
                         NULL};
    th_hubmeter(&r, env, (const char *[]){"orgs", "list", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot connect") != NULL, "%s", r.err);
    cr_assert(strstr(r.err, "secretpw") == NULL, "the password never appears: %s", r.err);
}
