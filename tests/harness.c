/*
 * Test harness implementation (see harness.h). Test processes are forked per test by
 * Criterion, so every helper here is process-local and bounded in time.
 */
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *th_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v != NULL && *v != '\0', "%s is not set: run the tests with make test", name);
    return v;
}

PGconn *th_db_connect(const char *url)
{
    PGconn *db = PQconnectdb(url);
    cr_assert(PQstatus(db) == CONNECTION_OK, "cannot connect to %s: %s", url, PQerrorMessage(db));
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    return db;
}

void th_db_new(char *url, size_t len)
{
    static int counter;
    char name[64], sql[256];
    snprintf(name, sizeof name, "hm_t_%d_%d", (int)getpid(), ++counter);
    PGconn *admin = th_db_connect(th_env("HM_TEST_PG_URL"));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE hm_template", name);
    /* CREATE DATABASE ... TEMPLATE fails if another session is copying it: retry briefly. */
    PGresult *res = NULL;
    for (int i = 0; i < 50; i++) {
        PQclear(res);
        res = PQexec(admin, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK)
            break;
        usleep(100 * 1000);
    }
    cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(admin));
    PQclear(res);
    PQfinish(admin);
    /* Same server and credentials, other database: replace the path of the admin URL. */
    const char *base = th_env("HM_TEST_PG_URL");
    const char *slash = strrchr(base, '/');
    snprintf(url, len, "%.*s/%s", (int)(slash - base), base, name);
}

char *th_db_value(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(db));
    char *v = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    return v;
}

void th_redis_new(char *url, size_t len)
{
    const char *base = th_env("HM_TEST_REDIS_URL"); /* redis://127.0.0.1:PORT */
    char host[64] = "127.0.0.1";
    int port = (int)strtol(strrchr(base, ':') + 1, NULL, 10);
    redisContext *c = redisConnect(host, port);
    cr_assert(c != NULL && !c->err, "cannot connect to Redis at %s", base);
    redisReply *r = redisCommand(c, "INCR hm:test:next-db");
    cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
    int db = (int)(r->integer % 1023) + 1; /* reused only after 1023 newer tests */
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "SELECT %d", db));
    freeReplyObject(redisCommand(c, "FLUSHDB"));
    redisFree(c);
    snprintf(url, len, "%s/%d", base, db);
}

/* Builds envp: the process environment plus extra entries (which win). Caller frees. */
static char **build_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[m] != NULL)
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        for (size_t j = 0; j < m; j++)
            if (strncmp(extra[j], environ[i], kl) == 0 && extra[j][kl] == '=')
                overridden = true;
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = (char *)extra[j];
    return env;
}

static void slurp(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* Starts the sanitized hubmeter with args (NULL-terminated) and env on top of the
 * harness environment, stdin from /dev/null; stdout and stderr go to the given files
 * (opened with flags). The child is killed when the test process that started it dies (a
 * failed assertion ends the test before its cleanup runs), so a left-over gateway or
 * flusher can never read the next test's usage stream. Call it from the test's main
 * thread: the signal follows the thread. */
static pid_t spawn_bin(const char *const *args, const char *const *env, const char *out,
                       int out_flags, const char *err, int err_flags)
{
    const char *argv[32] = {th_env("HM_TEST_BIN")};
    size_t n = 1;
    while (args[n - 1] != NULL && n < 31) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    char **envp = build_env(env);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int o = open(out, out_flags | O_CLOEXEC, 0600);
        int e = open(err, err_flags | O_CLOEXEC, 0600);
        if (in < 0 || o < 0 || e < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 ||
            prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    cr_assert(pid > 0, "cannot run %s %s", argv[0], args[0]);
    return pid;
}

void th_hubmeter(struct th_run *r, const char *const *env, const char *const *args)
{
    char outp[64], errp[64];
    snprintf(outp, sizeof outp, "/tmp/hm-test-%d.out", (int)getpid());
    snprintf(errp, sizeof errp, "/tmp/hm-test-%d.err", (int)getpid());
    pid_t pid = spawn_bin(args, env, outp, O_WRONLY | O_CREAT | O_TRUNC, errp,
                          O_WRONLY | O_CREAT | O_TRUNC);
    int st = 0;
    int64_t deadline = th_now_ms() + 30000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            cr_assert_fail("hubmeter %s did not finish in 30 s", args[0]);
        }
        usleep(10 * 1000);
    }
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    slurp(outp, r->out, sizeof r->out);
    slurp(errp, r->err, sizeof r->err);
    unlink(outp);
    unlink(errp);
    cr_assert(strstr(r->err, "Sanitizer") == NULL && strstr(r->err, "runtime error") == NULL,
              "sanitizer report from hubmeter %s:\n%s", args[0], r->err);
}

/* A port that is free now, below the kernel's ephemeral range (32768 up by default): a port
 * the kernel handed out for binding to port 0 is also one it may give the next outgoing
 * connection before the gateway binds it (seen: "Address already in use" at start). */
int th_free_port(void)
{
    static _Atomic unsigned calls;
    unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)th_now_ms() ^
                    atomic_fetch_add(&calls, 1) * 40503u;
    for (int attempt = 0; attempt < 500; attempt++) {
        int port = 20000 + (int)(rand_r(&seed) % 12000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert(fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            return port;
    }
    cr_assert_fail("no free port in 20000-31999");
    return -1;
}

/* Starts the gateway on ports of its own; false when it exited at start because one of
 * them was taken meanwhile (then the caller tries other ports). */
static bool gateway_try_start(struct th_gateway *g, const char *const *env)
{
    g->port = th_free_port();
    snprintf(g->base, sizeof g->base, "http://127.0.0.1:%d", g->port);
    snprintf(g->log, sizeof g->log, "/tmp/hm-gateway-%d-%d.log", (int)getpid(), g->port);
    char listen[64], journal[128], admin[64];
    snprintf(listen, sizeof listen, "HUBMETER_LISTEN=127.0.0.1:%d", g->port);
    const char *extra[40] = {listen, "HUBMETER_SHIP_INTERVAL_MS=200"};
    size_t n = 2;
    bool own_journal = false, own_admin = false;
    for (size_t i = 0; env != NULL && env[i] != NULL && n < 37; i++) {
        own_journal |= strncmp(env[i], "HUBMETER_JOURNAL_DIR=", 21) == 0;
        own_admin |= strncmp(env[i], "HUBMETER_ADMIN_LISTEN=", 22) == 0;
        extra[n++] = env[i];
    }
    if (!own_admin) { /* each gateway its own admin port: several run at once */
        g->admin_port = th_free_port();
        snprintf(admin, sizeof admin, "HUBMETER_ADMIN_LISTEN=127.0.0.1:%d", g->admin_port);
        extra[n++] = admin;
    }
    snprintf(g->admin_base, sizeof g->admin_base, "http://127.0.0.1:%d", g->admin_port);
    if (!own_journal) { /* each gateway its own journal, unless the test shares one */
        snprintf(journal, sizeof journal, "HUBMETER_JOURNAL_DIR=/tmp/hm-journal-%d-%d",
                 (int)getpid(), g->port);
        extra[n++] = journal;
    }
    extra[n] = NULL;
    g->pid = spawn_bin((const char *[]){"serve", NULL}, extra, "/dev/null", O_WRONLY, g->log,
                       O_WRONLY | O_CREAT | O_TRUNC);
    char url[128];
    snprintf(url, sizeof url, "%s/-/healthz", g->base);
    int64_t deadline = th_now_ms() + 15000;
    for (;;) {
        struct th_response r;
        th_http("GET", url, NULL, &r);
        long status = r.status;
        th_response_free(&r);
        if (status == 200)
            return true;
        int st;
        if (waitpid(g->pid, &st, WNOHANG) == g->pid) {
            char log[4096];
            slurp(g->log, log, sizeof log);
            if (strstr(log, "(in use") != NULL) /* hubmeter: "cannot listen on … (in use, …)" */
                return false;
            cr_assert_fail("the gateway exited at start:\n%s", log);
        }
        cr_assert(th_now_ms() < deadline, "the gateway did not become healthy in 15 s");
        usleep(50 * 1000);
    }
}

void th_gateway_start(struct th_gateway *g, const char *const *env)
{
    for (int attempt = 1; !gateway_try_start(g, env); attempt++)
        cr_assert(attempt < 3, "the gateway's ports were taken at start, 3 times");
}

bool th_log_contains(const struct th_gateway *g, const char *text)
{
    static char log[1 << 20];
    slurp(g->log, log, sizeof log);
    return strstr(log, text) != NULL;
}

void th_gateway_stop(struct th_gateway *g)
{
    if (g->pid <= 0)
        return;
    kill(g->pid, SIGTERM);
    int st = 0;
    int64_t deadline = th_now_ms() + 20000;
    while (waitpid(g->pid, &st, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            kill(g->pid, SIGKILL);
            waitpid(g->pid, &st, 0);
            cr_assert_fail("the gateway did not stop within 20 s of SIGTERM");
        }
        usleep(20 * 1000);
    }
    g->pid = 0;
    bool sanitizer = th_log_contains(g, "Sanitizer") || th_log_contains(g, "runtime error");
    static char log[1 << 16];
    slurp(g->log, log, sizeof log);
    cr_assert(!sanitizer, "sanitizer report in the gateway's log:\n%s", log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the gateway exited with status %d:\n%s",
              st, log);
}

static size_t collect(char *data, size_t size, size_t n, void *userdata)
{
    struct th_response *r = userdata;
    size_t len = size * n;
    char *b = realloc(r->body, r->body_len + len + 1);
    cr_assert(b != NULL);
    memcpy(b + r->body_len, data, len);
    r->body = b;
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static size_t collect_header(char *data, size_t size, size_t n, void *userdata)
{
    struct th_response *r = userdata;
    size_t len = size * n, used = strlen(r->headers);
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
        used = 0, r->headers[0] = '\0'; /* keep the final response's headers only */
    if (used + len < sizeof r->headers) {
        memcpy(r->headers + used, data, len);
        r->headers[used + len] = '\0';
    }
    return len;
}


/* A curl handle for url with headers (NULL-terminated), the body counted or collected by
 * write(data), a 30 s limit; *list receives the header list the caller frees. */
static CURL *easy_for(const char *url, const char *const *headers, struct curl_slist **list,
                      curl_write_callback write, void *data)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, data);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    *list = h;
    return c;
}

void th_http(const char *method, const char *url, const char *const *headers,
             struct th_response *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->body = calloc(1, 1);
    struct curl_slist *h;
    CURL *c = easy_for(url, headers, &h, collect, resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    else
        resp->status = 0; /* connection failed or closed early */
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

void th_response_free(struct th_response *resp)
{
    free(resp->body);
    resp->body = NULL;
}

bool th_header(const struct th_response *resp, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    for (const char *line = resp->headers; line != NULL && *line;) {
        const char *end = strstr(line, "\r\n");
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = end ? (size_t)(end - v) : strlen(v);
            snprintf(out, len, "%.*s", (int)vl, v);
            return true;
        }
        line = end ? end + 2 : NULL;
    }
    return false;
}

void th_last_line(const char *out, char *line, size_t len)
{
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '\n')
        n--;
    size_t start = n;
    while (start > 0 && out[start - 1] != '\n')
        start--;
    snprintf(line, len, "%.*s", (int)(n - start), out + start);
}

struct abort_state {
    uint64_t received, limit;
};

static size_t count_then_abort(char *data, size_t size, size_t n, void *userdata)
{
    (void)data;
    struct abort_state *st = userdata;
    if (st->received >= st->limit)
        return 0; /* curl aborts the transfer and closes the connection */
    st->received += size * n;
    return size * n;
}

static int small_rcvbuf(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    (void)clientp;
    (void)purpose;
    int size = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    return CURL_SOCKOPT_OK;
}

uint64_t th_http_abort_after(const char *url, const char *const *headers, uint64_t limit)
{
    struct abort_state st = {.limit = limit};
    struct curl_slist *h;
    CURL *c = easy_for(url, headers, &h, count_then_abort, &st);
    curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, small_rcvbuf);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 16384L);
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_WRITE_ERROR, "the download should have been cut by the client: %s",
                 curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return st.received;
}

struct timed_state {
    _Atomic uint64_t *received;
};

static size_t count_received(char *data, size_t size, size_t n, void *userdata)
{
    (void)data;
    struct timed_state *st = userdata;
    atomic_fetch_add(st->received, size * n);
    return size * n;
}

void th_http_for(const char *url, const char *const *headers, long ms,
                 _Atomic uint64_t *received, long *status)
{
    struct timed_state st = {.received = received};
    struct curl_slist *h;
    CURL *c = easy_for(url, headers, &h, count_received, &st);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
    CURLcode rc = curl_easy_perform(c);
    cr_assert(rc == CURLE_OK || rc == CURLE_OPERATION_TIMEDOUT, "download failed: %s",
              curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

pid_t th_redis_private(int port, const char *dir, bool keep_data)
{
    char cmd[512];
    if (!keep_data) /* an empty directory: Redis starts with no data */
        snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && exec redis-server --port %d "
                                  "--bind 127.0.0.1 --dir %s --save '' --appendonly no "
                                  "--daemonize no --loglevel warning", dir, dir, port, dir);
    else
        snprintf(cmd, sizeof cmd, "mkdir -p %s && exec redis-server --port %d --bind 127.0.0.1 "
                                  "--dir %s --save '' --appendonly yes --appendfsync always "
                                  "--daemonize no --loglevel warning", dir, port, dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int64_t deadline = th_now_ms() + 5000;
    char ping[128];
    snprintf(ping, sizeof ping, "redis-cli -p %d ping >/dev/null 2>&1", port);
    while (system(ping) != 0) {
        cr_assert(th_now_ms() < deadline, "the private Redis did not start");
        usleep(50 * 1000);
    }
    return pid;
}

void th_redis_kill(pid_t pid)
{
    kill(pid, SIGCONT); /* a frozen one too */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

long th_http_connections_for_two(const char *url)
{
    CURL *c = curl_easy_init();
    struct th_response r = {.body = calloc(1, 1)};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    long total = 0;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(curl_easy_perform(c), CURLE_OK);
        long n = 0;
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &n);
        total += n;
    }
    curl_easy_cleanup(c);
    free(r.body);
    return total;
}

struct upload {
    const char *data;
    size_t len, off;
};

static size_t send_body(char *out, size_t size, size_t n, void *userdata)
{
    struct upload *u = userdata;
    size_t k = size * n < u->len - u->off ? size * n : u->len - u->off;
    memcpy(out, u->data + u->off, k);
    u->off += k;
    return k;
}

void th_http_body(const char *method, const char *url, const char *const *headers,
                  const char *body, size_t len, bool chunked, struct th_response *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->body = calloc(1, 1);
    struct upload u = {.data = body, .len = len};
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        h = curl_slist_append(h, headers[i]);
    if (chunked)
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, send_body);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    if (!chunked)
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

bool th_upstream_saw(const char *marker, char *line, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/../nginx/access.log", th_env("HM_TEST_WWW"));
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f != NULL && !found && fgets(line, (int)len, f) != NULL)
        found = strstr(line, marker) != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

pid_t th_spawn(const char *const *args, const char *const *env, const char *log)
{
    return spawn_bin(args, env, "/dev/null", O_WRONLY, log, O_WRONLY | O_CREAT | O_APPEND);
}

int th_wait(pid_t pid, int timeout_ms)
{
    int st = 0;
    int64_t deadline = th_now_ms() + timeout_ms;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (th_now_ms() > deadline)
            return -1;
        usleep(20 * 1000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool th_file_contains(const char *path, const char *text)
{
    static char buf[1 << 20];
    slurp(path, buf, sizeof buf);
    return strstr(buf, text) != NULL;
}

static size_t count_atomic(char *data, size_t size, size_t n, void *userdata)
{
    (void)data;
    atomic_fetch_add((_Atomic uint64_t *)userdata, size * n);
    return size * n;
}

void th_http_slow(const char *url, const char *const *headers, long rate,
                  _Atomic uint64_t *received)
{
    struct curl_slist *h;
    CURL *c = easy_for(url, headers, &h, count_atomic, (void *)received);
    curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, small_rcvbuf);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)rate);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

int th_run_bounded(char *const argv[], const char *out_path, int seconds)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *o = freopen(out_path, "w", stdout);
        FILE *e = freopen("/dev/null", "w", stderr);
        (void)o;
        (void)e;
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < seconds * 10; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        usleep(100 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

void th_usage_becomes(const char *base, const char *auth, const char *org, long long bytes,
                      long long requests)
{
    char u[512];
    snprintf(u, sizeof u, "%s/-/v1/usage", base);
    const char *h[] = {auth, NULL};
    int64_t deadline = th_now_ms() + 15000;
    long long got_bytes = -1, got_requests = -1;
    while (th_now_ms() < deadline) {
        struct th_response r;
        th_http("GET", u, h, &r);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_t *doc = json_loads(r.body, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(doc, "org")), org);
        json_t *totals = json_object_get(doc, "totals");
        got_bytes = (long long)json_integer_value(json_object_get(totals, "bytes"));
        got_requests = (long long)json_integer_value(json_object_get(totals, "requests"));
        json_decref(doc);
        th_response_free(&r);
        if (got_bytes == bytes && got_requests == requests)
            return;
        cr_assert(got_bytes <= bytes && got_requests <= requests,
                  "usage overshot: %lld bytes, %lld requests", got_bytes, got_requests);
        usleep(100 * 1000);
    }
    cr_assert_fail("usage shows %lld bytes / %lld requests, wanted %lld / %lld", got_bytes,
                   got_requests, bytes, requests);
}

void th_stack_new(struct th_stack *s, const char *upstream)
{
    th_db_new(s->db_url, sizeof s->db_url);
    th_redis_new(s->redis_url, sizeof s->redis_url);
    snprintf(s->env_db, sizeof s->env_db, "HUBMETER_DATABASE_URL=%s", s->db_url);
    snprintf(s->env_redis, sizeof s->env_redis, "HUBMETER_REDIS_URL=%s", s->redis_url);
    if (upstream != NULL)
        snprintf(s->env_up, sizeof s->env_up, "HUBMETER_UPSTREAM=%s", upstream);
    else
        snprintf(s->env_up, sizeof s->env_up, "HUBMETER_UPSTREAM=file://%s",
                 th_env("HM_TEST_WWW"));
}
