/*
 * Helpers for the API suites (test_admin, test_usage_api): JSON calls over real HTTP, and
 * a small JSON Schema checker for the subset our OpenAPI document uses (type, required,
 * properties, items, enum, nullable, $ref into the same document).
 */
#ifndef HM_TEST_APICHECK_H
#define HM_TEST_APICHECK_H

#include <jansson.h>

#include "tests/harness.h"

/* Performs method on url with headers (NULL-terminated, may be NULL) and an optional JSON
 * body; returns the parsed JSON answer (new reference, NULL when not JSON) and fills
 * *status. The raw response is left in resp when resp is not NULL (caller frees it). */
json_t *ac_call(const char *method, const char *url, const char *const *headers,
                const char *body, long *status);
/* Asserts the answer is a JSON error with status and error.code; frees it. */
void ac_assert_error(json_t *doc, long got, long status, const char *code);
/* Checks value against schema (resolving "$ref": "#/…" in root). Returns NULL when it
 * conforms, else a malloc'd description of the first mismatch (caller frees). */
char *ac_schema_check(const json_t *root, const json_t *schema, const json_t *value,
                      const char *where);
/* The object at a "#/a/b/c" pointer in root, or NULL. */
const json_t *ac_ref(const json_t *root, const char *ref);

#endif
