/*
 * Aggregation of usage records into what a batch carries: usage rows per minute × org ×
 * key × network × repo × method × status class × refusal; the distinct client addresses
 * per hour × org × key; and bytes per day × org × repo × object ETag (re-download
 * reports). Each is an open-addressing hash index over a growable row array; requests and
 * bytes add up, with overflow checks.
 */
#include "meter/meter_int.h"

#include <stdlib.h>
#include <string.h>

struct agg_row {
    int64_t minute;
    struct meter_record rec; /* identity fields + bytes sum */
    uint64_t requests;
};

struct table {
    struct agg_row *rows;
    size_t n, cap;
    uint32_t *index; /* slot -> row + 1, 0 = empty */
    size_t slots;    /* power of two, kept at most half full */
};

struct meter_agg {
    struct table usage, clients, objects;
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) { /* FNV-1a */
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t row_hash(int64_t minute, const struct meter_record *r)
{
    uint64_t h = 14695981039346656037ull;
    h = mix(h, &minute, sizeof minute);
    h = mix(h, &r->org_id, sizeof r->org_id);
    h = mix(h, &r->key_id, sizeof r->key_id);
    h = mix(h, r->network, strlen(r->network) + 1);
    h = mix(h, r->repo, strlen(r->repo) + 1);
    h = mix(h, r->method, strlen(r->method) + 1);
    h = mix(h, &r->status_class, 1);
    h = mix(h, r->client, strlen(r->client) + 1);
    h = mix(h, r->etag, strlen(r->etag) + 1);
    return mix(h, r->refused_by, strlen(r->refused_by) + 1);
}

static bool same(const struct agg_row *row, int64_t minute, const struct meter_record *r)
{
    return row->minute == minute && row->rec.org_id == r->org_id &&
           row->rec.key_id == r->key_id && row->rec.status_class == r->status_class &&
           strcmp(row->rec.network, r->network) == 0 && strcmp(row->rec.repo, r->repo) == 0 &&
           strcmp(row->rec.method, r->method) == 0 && strcmp(row->rec.client, r->client) == 0 &&
           strcmp(row->rec.etag, r->etag) == 0 && strcmp(row->rec.refused_by, r->refused_by) == 0;
}

struct meter_agg *meter_agg_new(void) { return calloc(1, sizeof(struct meter_agg)); }

void meter_agg_free(struct meter_agg *a)
{
    if (a == NULL)
        return;
    struct table *t[] = {&a->usage, &a->clients, &a->objects};
    for (int i = 0; i < 3; i++) {
        free(t[i]->rows);
        free(t[i]->index);
    }
    free(a);
}

size_t meter_agg_rows(const struct meter_agg *a) { return a->usage.n; }

static int grow_index(struct table *a)
{
    size_t slots = a->slots ? a->slots * 2 : 64;
    uint32_t *index = calloc(slots, sizeof *index);
    if (index == NULL)
        return CM_ERR;
    for (size_t i = 0; i < a->n; i++) {
        size_t s = row_hash(a->rows[i].minute, &a->rows[i].rec) & (slots - 1);
        while (index[s] != 0)
            s = (s + 1) & (slots - 1);
        index[s] = (uint32_t)(i + 1);
    }
    free(a->index);
    a->index = index;
    a->slots = slots;
    return CM_OK;
}

/* Adds rec to table a under bucket (minute, hour or day start). */
static int table_add(struct table *a, const struct meter_record *rec, int64_t minute)
{
    if ((a->n + 1) * 2 > a->slots && grow_index(a) != CM_OK)
        return CM_ERR;
    size_t s = row_hash(minute, rec) & (a->slots - 1);
    while (a->index[s] != 0) {
        struct agg_row *row = &a->rows[a->index[s] - 1];
        if (same(row, minute, rec)) {
            /* Rows are bigint in PostgreSQL: a sum past INT64_MAX starts a new batch row
             * instead of wrapping (never reached in practice: 9.2 EB a minute). */
            uint64_t bytes, reqs;
            if (!__builtin_add_overflow(row->rec.bytes, rec->bytes, &bytes) &&
                !__builtin_add_overflow(row->requests, rec->partial ? 0 : 1, &reqs) &&
                bytes <= INT64_MAX) {
                row->rec.bytes = bytes;
                row->requests = reqs;
                return CM_OK;
            }
        }
        s = (s + 1) & (a->slots - 1);
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        struct agg_row *rows = realloc(a->rows, cap * sizeof *rows);
        if (rows == NULL)
            return CM_ERR;
        a->rows = rows;
        a->cap = cap;
    }
    struct agg_row *row = &a->rows[a->n];
    row->minute = minute;
    row->rec = *rec;
    row->requests = rec->partial ? 0 : 1;
    a->index[s] = (uint32_t)(++a->n);
    return CM_OK;
}

int meter_agg_add(struct meter_agg *a, const struct meter_record *rec, int64_t end_s)
{
    /* Usage rows carry neither the address nor the ETag; the other two tables only those
     * and what identifies their owner. */
    struct meter_record usage = *rec, client = {0}, object = {0};
    usage.client[0] = usage.etag[0] = '\0';
    if (table_add(&a->usage, &usage, end_s - end_s % 60) != CM_OK)
        return CM_ERR;
    if (rec->client[0] != '\0' && !rec->partial) {
        client.org_id = rec->org_id;
        client.key_id = rec->key_id;
        cm_copy(client.client, sizeof client.client, rec->client);
        if (table_add(&a->clients, &client, end_s - end_s % 3600) != CM_OK)
            return CM_ERR;
    }
    if (rec->etag[0] != '\0' && rec->repo[0] != '\0') {
        object.org_id = rec->org_id;
        object.partial = rec->partial;
        object.bytes = rec->bytes;
        cm_copy(object.repo, sizeof object.repo, rec->repo);
        cm_copy(object.etag, sizeof object.etag, rec->etag);
        if (table_add(&a->objects, &object, end_s - end_s % 86400) != CM_OK)
            return CM_ERR;
    }
    return CM_OK;
}

static json_t *id_or_null(int64_t id) { return id > 0 ? json_integer(id) : json_null(); }

json_t *meter_agg_clients_json(const struct meter_agg *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->clients.n; i++) {
        const struct agg_row *r = &a->clients.rows[i];
        json_t *o = json_pack("{s:I, s:o, s:o, s:s}", "h", (json_int_t)r->minute, "org",
                              id_or_null(r->rec.org_id), "key", id_or_null(r->rec.key_id),
                              "addr", r->rec.client);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *meter_agg_objects_json(const struct meter_agg *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->objects.n; i++) {
        const struct agg_row *r = &a->objects.rows[i];
        json_t *o = json_pack("{s:I, s:o, s:s, s:s, s:I, s:I}", "d", (json_int_t)r->minute, "org",
                              id_or_null(r->rec.org_id), "repo", r->rec.repo, "etag",
                              r->rec.etag, "req", (json_int_t)r->requests, "bytes",
                              (json_int_t)r->rec.bytes);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *meter_agg_to_json(const struct meter_agg *agg)
{
    const struct table *a = &agg->usage;
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->n; i++) {
        const struct agg_row *r = &a->rows[i];
        json_t *o = json_pack("{s:I, s:o, s:o, s:o, s:s, s:s, s:i, s:s, s:I, s:I}",
                              "m", (json_int_t)r->minute, "org", id_or_null(r->rec.org_id),
                              "key", id_or_null(r->rec.key_id), "net",
                              r->rec.network[0] ? json_string(r->rec.network) : json_null(),
                              "repo", r->rec.repo, "method", r->rec.method, "sc",
                              (int)r->rec.status_class, "refused", r->rec.refused_by, "req",
                              (json_int_t)r->requests, "bytes", (json_int_t)r->rec.bytes);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}
