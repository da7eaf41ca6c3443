/*
 * PostgreSQL helpers: connecting (with a bounded connect timeout), a small thread-safe
 * connection pool, and error-message extraction. Queries themselves live with the module
 * that owns the data (registry/, meter/); this file knows no table.
 */
#include "common/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic uint64_t pg_errors; /* every failure reported through cm_pg_error */

uint64_t cm_pg_errors(void) { return atomic_load(&pg_errors); }

void cm_pg_error(PGconn *conn, const PGresult *res, char *err, size_t errlen)
{
    atomic_fetch_add(&pg_errors, 1);
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (msg == NULL || *msg == '\0')
        msg = conn ? PQerrorMessage(conn) : "no connection";
    cm_copy(err, errlen, msg);
    size_t n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
    for (char *p = err; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

PGconn *cm_pg_connect(const char *url, char *err, size_t errlen)
{
    /* connect_timeout bounds a dead server; application_name shows up in pg_stat_activity. */
    /* The session runs in UTC: day and month buckets are UTC calendar ones. */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "options", NULL};
    const char *vals[] = {url, "5", "hubmeter", "-c TimeZone=UTC -c client_min_messages=warning", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        cm_copy(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[512];
        cm_pg_error(conn, NULL, msg, sizeof msg);
        cm_fmt(err, errlen, "cannot connect to PostgreSQL: %s", msg);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

int cm_pg_command(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? CM_OK : CM_ERR;
    if (rc != CM_OK)
        cm_pg_error(conn, res, err, errlen);
    PQclear(res);
    return rc;
}

bool cm_pg_state_is(const PGresult *res, const char *state)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL && strcmp(s, state) == 0;
}

struct cm_pg_pool {
    pthread_mutex_t lock; /* protects idle[], n_idle, n_out */
    pthread_cond_t returned;
    char *url;
    unsigned size, n_idle, n_out;
    PGconn **idle;
};

struct cm_pg_pool *cm_pg_pool_new(const char *url, unsigned size)
{
    struct cm_pg_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return NULL;
    pool->url = strdup(url);
    pool->idle = calloc(size, sizeof *pool->idle);
    if (pool->url == NULL || pool->idle == NULL) {
        free(pool->url);
        free(pool->idle);
        free(pool);
        return NULL;
    }
    pool->size = size;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->returned, NULL);
    return pool;
}

PGconn *cm_pg_pool_get(struct cm_pg_pool *pool, unsigned timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    PGconn *conn = NULL;
    pthread_mutex_lock(&pool->lock);
    while (pool->n_idle == 0 && pool->n_out >= pool->size) {
        if (pthread_cond_timedwait(&pool->returned, &pool->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
    }
    if (pool->n_idle > 0)
        conn = pool->idle[--pool->n_idle];
    pool->n_out++;
    pthread_mutex_unlock(&pool->lock);

    if (conn != NULL && PQstatus(conn) != CONNECTION_OK) {
        PQfinish(conn);
        conn = NULL;
    }
    if (conn == NULL) {
        char err[512];
        conn = cm_pg_connect(pool->url, err, sizeof err);
        if (conn == NULL) {
            cm_log(CM_LOG_WARN, "pg_connect_failed", "error=\"%s\"", err);
            pthread_mutex_lock(&pool->lock);
            pool->n_out--;
            pthread_cond_signal(&pool->returned);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    return conn;
}

void cm_pg_pool_put(struct cm_pg_pool *pool, PGconn *conn)
{
    if (conn == NULL)
        return;
    /* A connection left inside a transaction (after an error path) is not reusable. */
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        PQfinish(conn);
        conn = NULL;
    }
    pthread_mutex_lock(&pool->lock);
    pool->n_out--;
    if (conn != NULL)
        pool->idle[pool->n_idle++] = conn;
    pthread_cond_signal(&pool->returned);
    pthread_mutex_unlock(&pool->lock);
}

void cm_pg_pool_free(struct cm_pg_pool *pool)
{
    if (pool == NULL)
        return;
    for (unsigned i = 0; i < pool->n_idle; i++)
        PQfinish(pool->idle[i]);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->returned);
    free(pool->idle);
    free(pool->url);
    free(pool);
}
