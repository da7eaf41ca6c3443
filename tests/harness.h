/*
 * Test harness shared by the Criterion suites: private databases cloned from the migrated
 * template, private Redis databases, running the real (sanitized) hubmeter binary as a
 * CLI or a gateway, a small HTTP client, and bounded polling. Everything talks to the
 * real servers that scripts/test.sh starts; nothing is mocked.
 */
#ifndef HM_TEST_HARNESS_H
#define HM_TEST_HARNESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

/* The value of a HM_TEST_* variable set by scripts/test.sh; aborts the test if missing. */
const char *th_env(const char *name);

/* A new database cloned from the migrated template; its URL goes into url. */
void th_db_new(char *url, size_t len);
PGconn *th_db_connect(const char *url);
/* Runs a query with text parameters and returns the first column of the first row as a
 * new string (caller frees), or NULL when there is no row. Fails the test on error. */
char *th_db_value(PGconn *db, const char *sql, int n, const char *const *params);

/* A Redis database of its own (1..1023, round robin), flushed; its URL goes into url. */
void th_redis_new(char *url, size_t len);

struct th_run {
    int status; /* exit code, or 128 + signal */
    char out[16384];
    char err[16384];
};
/* Runs the sanitized binary with args (NULL-terminated) and extra "KEY=value" env entries
 * (NULL-terminated, may be NULL) on top of the harness environment. Bounded to 30 s. */
void th_hubmeter(struct th_run *r, const char *const *env, const char *const *args);

/* The last non-empty line of out (where `keys create` prints the secret). */
void th_last_line(const char *out, char *line, size_t len);

struct th_gateway {
    pid_t pid;
    int port;
    char base[64]; /* http://127.0.0.1:port */
    char log[256]; /* its stderr */
    int admin_port;
    char admin_base[64]; /* http://127.0.0.1:admin_port (the admin API's listener) */
};
/* Starts `hubmeter serve` with env (NULL-terminated "KEY=value") and waits for /-/healthz.
 * The admin API listens on a free port of its own unless env sets HUBMETER_ADMIN_LISTEN. */
void th_gateway_start(struct th_gateway *g, const char *const *env);
/* Stops it with SIGTERM; asserts a clean exit and no sanitizer report in its log. */
void th_gateway_stop(struct th_gateway *g);
/* True when the gateway log contains text. */
bool th_log_contains(const struct th_gateway *g, const char *text);

struct th_response {
    long status;
    char *body; /* NUL-terminated, malloc'd */
    size_t body_len;
    char headers[8192];
};
/* A fresh database and Redis for one test, and the environment entries that point a
 * hubmeter at them and at upstream (NULL: the test's file:// mirror). */
struct th_stack {
    char db_url[512], redis_url[256];
    char env_db[600], env_redis[300], env_up[600];
};
void th_stack_new(struct th_stack *s, const char *upstream);

/* Performs one HTTP request (headers NULL-terminated "Name: value", may be NULL). */
void th_http(const char *method, const char *url, const char *const *headers,
             struct th_response *resp);
void th_response_free(struct th_response *resp);
/* GETs url for at most ms milliseconds (then hangs up), adding the body bytes received to
 * *received as they arrive; *status is the response's status. */
void th_http_for(const char *url, const char *const *headers, long ms,
                 _Atomic uint64_t *received, long *status);
/* A Redis of the test's own on port (data in dir: an append-only file when keep_data, else
 * an emptied directory), so it can be killed, frozen and restarted. */
pid_t th_redis_private(int port, const char *dir, bool keep_data);
/* Kills it as a crash would (SIGKILL; a frozen one too) and reaps it. */
void th_redis_kill(pid_t pid);
/* GETs url twice on one client handle; returns how many connections were opened. */
long th_http_connections_for_two(const char *url);
/* Performs method with body (len bytes; chunked when chunked is true) and headers. */
void th_http_body(const char *method, const char *url, const char *const *headers,
                  const char *body, size_t len, bool chunked, struct th_response *resp);
/* GETs url with a small receive buffer at most rate bytes/s until the transfer ends (it
 * fails when the server dies); adds the body bytes received to *received as they come. */
void th_http_slow(const char *url, const char *const *headers, long rate,
                  _Atomic uint64_t *received);
/* GETs url with a small receive buffer and hangs up once limit body bytes have arrived.
 * Returns the body bytes the client application actually received. */
uint64_t th_http_abort_after(const char *url, const char *const *headers, uint64_t limit);
/* Value of header name in resp (case-insensitive) copied into out; false when absent. */
bool th_header(const struct th_response *resp, const char *name, char *out, size_t len);

/* Copies the line of the test nginx's access log that contains marker; false if none. */
bool th_upstream_saw(const char *marker, char *line, size_t len);

/* Starts the sanitized hubmeter with args in the background, stderr to log. */
pid_t th_spawn(const char *const *args, const char *const *env, const char *log);
/* Waits up to timeout_ms for pid; returns its status as th_run does, or -1 if still running. */
int th_wait(pid_t pid, int timeout_ms);
/* Runs argv (PATH looked up) with stdout to out_path and stderr discarded, killing it after
 * seconds: its exit status, or -1 when it was killed or died of a signal. */
int th_run_bounded(char *const argv[], const char *out_path, int seconds);
/* Polls base's /-/v1/usage with the auth header until org's totals are bytes and requests
 * (at most 15 s); fails at once when they overshoot. */
void th_usage_becomes(const char *base, const char *auth, const char *org, long long bytes,
                      long long requests);
/* True when file path contains text. */
bool th_file_contains(const char *path, const char *text);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int th_free_port(void);
int64_t th_now_ms(void);

#endif
