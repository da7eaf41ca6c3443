/*
 * Usage query internals shared by usage_query.c and usage_groups.c only.
 */
#ifndef HM_USAGE_INT_H
#define HM_USAGE_INT_H

#include "meter/meter.h"

/* Adds "groups" (one page of q's breakdown) and "next_cursor" to doc. CM_OK or CM_ERR. */
int meter_usage_groups(PGconn *db, const struct meter_usage_query *q, json_t *doc, char *err,
                       size_t errlen);

#endif
