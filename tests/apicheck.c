/*
 * JSON calls over HTTP and the schema checker of tests/apicheck.h.
 */
#include "tests/apicheck.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *ac_call(const char *method, const char *url, const char *const *headers,
                const char *body, long *status)
{
    struct th_response r;
    const char *hdrs[16];
    size_t n = 0;
    for (; headers != NULL && headers[n] != NULL && n < 14; n++)
        hdrs[n] = headers[n];
    if (body != NULL)
        hdrs[n++] = "Content-Type: application/json";
    hdrs[n] = NULL;
    if (body != NULL || strcmp(method, "GET") != 0)
        th_http_body(method, url, hdrs, body ? body : "", body ? strlen(body) : 0, false, &r);
    else
        th_http(method, url, hdrs, &r);
    *status = r.status;
    json_t *doc = json_loadb(r.body ? r.body : "", r.body_len, 0, NULL);
    th_response_free(&r);
    return doc;
}

void ac_assert_error(json_t *doc, long got, long status, const char *code)
{
    cr_assert_eq(got, status, "status %ld, wanted %ld (%s)", got, status, code);
    cr_assert(doc != NULL, "the %ld answer is not JSON", got);
    const char *c = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    const char *m = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    cr_assert(c != NULL && m != NULL && m[0] != '\0', "no error.code/message");
    cr_assert_str_eq(c, code, "error.code %s, wanted %s (%s)", c, code, m);
    json_decref(doc);
}

const json_t *ac_ref(const json_t *root, const char *ref)
{
    if (strncmp(ref, "#/", 2) != 0)
        return NULL;
    const json_t *node = root;
    char part[128];
    for (const char *p = ref + 2; *p && node != NULL;) {
        size_t n = strcspn(p, "/");
        if (n >= sizeof part)
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        node = json_object_get(node, part);
        p += n + (p[n] == '/');
    }
    return node;
}

static char *mismatch(const char *where, const char *what)
{
    size_t n = strlen(where) + strlen(what) + 4;
    char *s = malloc(n);
    snprintf(s, n, "%s: %s", where, what);
    return s;
}

static bool type_matches(const char *type, const json_t *v)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    return false;
}

char *ac_schema_check(const json_t *root, const json_t *schema, const json_t *value,
                      const char *where)
{
    const char *ref = json_string_value(json_object_get(schema, "$ref"));
    if (ref != NULL) {
        const json_t *target = ac_ref(root, ref);
        return target ? ac_schema_check(root, target, value, where)
                      : mismatch(where, "unresolvable $ref");
    }
    if (json_is_null(value))
        return json_is_true(json_object_get(schema, "nullable")) ? NULL
                                                                  : mismatch(where, "null");
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type != NULL && !type_matches(type, value))
        return mismatch(where, type);
    const json_t *enumv = json_object_get(schema, "enum");
    if (enumv != NULL) {
        bool found = false;
        size_t i;
        const json_t *e;
        json_array_foreach(enumv, i, e) found |= json_equal(e, value);
        if (!found)
            return mismatch(where, "not one of the enum values");
    }
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(schema, "required"), i, item) {
        if (json_object_get(value, json_string_value(item)) == NULL) {
            char what[160];
            snprintf(what, sizeof what, "required member %s missing", json_string_value(item));
            return mismatch(where, what);
        }
    }
    const char *key;
    const json_t *sub;
    json_object_foreach((json_t *)json_object_get(schema, "properties"), key, sub) {
        const json_t *v = json_object_get(value, key);
        if (v == NULL)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s.%s", where, key);
        char *bad = ac_schema_check(root, sub, v, path);
        if (bad)
            return bad;
    }
    const json_t *items = json_object_get(schema, "items");
    if (items != NULL && json_is_array(value)) {
        json_array_foreach(value, i, item) {
            char path[512];
            snprintf(path, sizeof path, "%s[%zu]", where, i);
            char *bad = ac_schema_check(root, items, item, path);
            if (bad)
                return bad;
        }
    }
    return NULL;
}
