/*
 * registry internals shared by the files of registry/ only: running a query whose rows
 * become an array of records, or exactly one record.
 */
#ifndef HM_REGISTRY_INT_H
#define HM_REGISTRY_INT_H

#include "registry/registry.h"

/* Fills the record at out from row of res. */
typedef void (*reg_read_row)(const PGresult *res, int row, void *out);

/* Runs sql and returns its rows as a calloc'd array of size-byte records in *out (the
 * caller frees it), *n rows. CM_OK or CM_ERR with err. */
int reg_query_rows(PGconn *db, const char *sql, int nparams, const char *const *params,
                   size_t size, reg_read_row read, void **out, size_t *n, char *err,
                   size_t errlen);
/* Runs sql and reads its first row into out: CM_OK, CM_NOTFOUND (err says
 * "<notfound> <what>") or CM_ERR. Unique violations give CM_EXISTS ("<what> already
 * exists" is up to the caller). */
int reg_query_one(PGconn *db, const char *sql, int nparams, const char *const *params,
                  reg_read_row read, void *out, const char *notfound, char *err,
                  size_t errlen);

/* Runs sql whose one row holds one JSON text column into *out (new reference): CM_OK,
 * CM_NOTFOUND (no row), CM_EXISTS (a unique violation), CM_INVALID (a check violation)
 * or CM_ERR with err. */
int reg_json_row(PGconn *db, const char *sql, int nparams, const char *const *params,
                 json_t **out, char *err, size_t errlen);

#endif
