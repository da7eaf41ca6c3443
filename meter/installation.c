/*
 * The installation's claim on its Redis database. The usage stream, its consumer group
 * and the quota keys have fixed names, so two installations (say staging and production)
 * pointed at the same Redis database would read each other's usage and apply it to the
 * wrong PostgreSQL database — silently. The shipper and the flusher therefore claim the
 * database on every new Redis connection: hm:installation holds the UUID of the first
 * installation that used it (sql/011), and any other one refuses to ship or flush there.
 */
#include "meter/meter_int.h"

#include <string.h>

#define CLAIM_KEY "hm:installation"

/* Reads the installation's UUID from PostgreSQL into uuid (36 characters + NUL). */
static int installation_id(PGconn *db, char *uuid, size_t len, char *err, size_t errlen)
{
    PGresult *res = PQexec(db, "SELECT id::text FROM installation");
    int rc = CM_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = cm_pg_state_is(res, "42P01") ? CM_ERR : CM_UNAVAIL;
        cm_pg_error(db, res, err, errlen);
        if (rc == CM_ERR)
            cm_fmt(err, errlen, "the database has no installation table: run hubmeter migrate");
    } else if (PQntuples(res) != 1) {
        rc = CM_ERR;
        cm_fmt(err, errlen, "the installation table must hold exactly one row (it holds %d)",
               PQntuples(res));
    } else {
        cm_copy(uuid, len, PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return rc;
}

int meter_claim_redis(redisContext *redis, PGconn *db, char *uuid, size_t len, char *err,
                      size_t errlen)
{
    if (uuid[0] == '\0') {
        if (db == NULL)
            return CM_UNAVAIL; /* the caller's connection attempt wrote err */
        int rc = installation_id(db, uuid, len, err, errlen);
        if (rc != CM_OK)
            return rc;
    }
    redisReply *r = redisCommand(redis, "SET " CLAIM_KEY " %s NX GET", uuid);
    int rc = CM_OK;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        cm_fmt(err, errlen, "Redis SET %s: %s", CLAIM_KEY,
               r != NULL ? r->str : redis->errstr);
        rc = CM_UNAVAIL;
    } else if (r->type == REDIS_REPLY_STRING && strcmp(r->str, uuid) != 0) {
        cm_fmt(err, errlen,
               "this Redis database belongs to hubmeter installation %.40s, this one is %s: "
               "give each installation its own Redis database (or, if that installation is "
               "gone for good, delete the key " CLAIM_KEY ")", r->str, uuid);
        rc = CM_DENIED;
    }
    freeReplyObject(r);
    return rc;
}

const char *meter_claim_event(int rc)
{
    return rc == CM_DENIED ? "redis_claimed_by_other_installation"
           : rc == CM_ERR  ? "installation_unknown"
                           : "redis_claim_unavailable";
}
