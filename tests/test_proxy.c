/*
 * End-to-end tests of the proxy's behaviours against a real nginx playing a hub: request
 * bodies, redirects (followed and metered, or passed through), timeouts, a reset
 * upstream, the gateway's own upstream credential, challenges and keep-alive.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/harness.h"

static struct th_stack stack; /* its database, Redis and their environment entries */
static struct th_gateway gw;

static void start_with(const char *upstream, const char *extra1, const char *extra2)
{
    th_stack_new(&stack, upstream);
    const char *env[] = {stack.env_db, stack.env_redis, stack.env_up, extra1, extra2, NULL};
    th_gateway_start(&gw, env);
}

static void start(void) { start_with(th_env("HM_TEST_NGINX_URL"), NULL, NULL); }

static void stop(void) { th_gateway_stop(&gw); }

static void url(char *out, size_t len, const char *path)
{
    snprintf(out, len, "%s%s", gw.base, path);
}

Test(proxy, post_and_put_bodies_stream_to_the_upstream, .init = start, .fini = stop)
{
    char u[256];
    url(u, sizeof u, "/api/echo");
    struct th_response r;
    th_http_body("POST", u, NULL, "{\"q\":1}", 7, false, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"q\":1}");
    th_response_free(&r);
    size_t len = 5u << 20; /* larger than any buffer on the way, sent chunked */
    char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (char)('a' + i % 26);
    th_http_body("PUT", u, NULL, big, len, true, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, len);
    cr_assert(memcmp(r.body, big, len) == 0);
    th_response_free(&r);
    th_http_body("POST", u, NULL, big, len, false, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, len);
    th_response_free(&r);
    free(big);
    /* nginx refuses POST to a static file: its 405 passes through, the gateway stays up. */
    url(u, sizeof u, "/acme/model/resolve/main/config.json");
    th_http_body("POST", u, NULL, "x", 1, false, &r);
    cr_assert_eq(r.status, 405);
    th_response_free(&r);
}

Test(proxy, resolve_redirects_are_followed_metered_and_stripped_of_xet_hints, .init = start,
     .fini = stop)
{
    char u[256], v[128];
    url(u, sizeof u, "/acme/redirected/resolve/main/config.json");
    struct th_response r;
    th_http("GET", u, (const char *[]){"Range: bytes=2-11", NULL}, &r);
    cr_assert_eq(r.status, 206, "the redirect was followed with the range kept");
    cr_assert_eq(r.body_len, 10);
    cr_assert(strncmp(r.body, "model_type", 10) == 0, "%s", r.body);
    cr_assert(!th_header(&r, "X-Xet-Hash", v, sizeof v), "Xet hints are removed");
    cr_assert(!th_header(&r, "Link", v, sizeof v));
    cr_assert(!th_header(&r, "Location", v, sizeof v));
    cr_assert(th_header(&r, "X-Repo-Commit", v, sizeof v), "the hub's headers survive");
    cr_assert_str_eq(v, "0123456789abcdef");
    cr_assert(th_header(&r, "X-Linked-Size", v, sizeof v));
    th_response_free(&r);
    /* HEAD, as huggingface_hub sends it before a download. */
    th_http("HEAD", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(th_header(&r, "X-Repo-Commit", v, sizeof v));
    cr_assert(th_header(&r, "ETag", v, sizeof v));
    cr_assert(!th_header(&r, "Location", v, sizeof v));
    th_response_free(&r);
    /* Elsewhere redirects pass through unchanged. */
    url(u, sizeof u, "/acme/model/api/redirect");
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 302);
    cr_assert(th_header(&r, "Location", v, sizeof v));
    cr_assert(strstr(v, "/cdn/config.json") != NULL, "%s", v);
    th_response_free(&r);
    url(u, sizeof u, "/loop/resolve/x");
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 502);
    cr_assert(strstr(r.body, "upstream_redirect_loop") != NULL, "%s", r.body);
    th_response_free(&r);
}

static void start_slow(void)
{
    start_with(th_env("HM_TEST_NGINX_URL"), "HUBMETER_UPSTREAM_FIRST_BYTE_TIMEOUT_MS=300", NULL);
}

Test(proxy, an_upstream_slower_than_the_first_byte_timeout_is_a_504, .init = start_slow,
     .fini = stop)
{
    char u[256];
    url(u, sizeof u, "/api/slow");
    struct th_response r;
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 504);
    cr_assert(strstr(r.body, "upstream_timeout") != NULL, "%s", r.body);
    th_response_free(&r);
}

static long in_flight(void)
{
    char u[256];
    url(u, sizeof u, "/-/metrics");
    struct th_response r;
    th_http("GET", u, NULL, &r);
    const char *m = strstr(r.body, "\nhubmeter_requests_in_flight ");
    cr_assert(m != NULL, "%s", r.body);
    long v = strtol(m + strlen("\nhubmeter_requests_in_flight "), NULL, 10);
    th_response_free(&r);
    return v;
}

Test(proxy, a_client_that_hangs_up_while_the_upstream_thinks_is_let_go_at_once,
     .init = start, .fini = stop)
{
    /* The upstream answers after 2 s; the client gives up after 0.3 s. The gateway must
     * notice the hang-up (not wait for the upstream or its 30 s first-byte timeout). */
    char u[256];
    url(u, sizeof u, "/api/slow");
    _Atomic uint64_t got = 0;
    long status = 0;
    int64_t t0 = th_now_ms();
    th_http_for(u, NULL, 300, &got, &status);
    long n = 2;
    while (th_now_ms() - t0 < 1500 && (n = in_flight()) > 1) /* 1: this metrics request */
        usleep(50 * 1000);
    cr_assert_leq(n, 1, "the abandoned request still runs %lld ms later",
                  (long long)(th_now_ms() - t0));
    cr_assert_lt(th_now_ms() - t0, 1500);
}

/* A one-shot upstream that promises 100000 bytes, sends 1000 and hangs up. */
static void *reset_upstream(void *arg)
{
    int fd = *(int *)arg;
    for (int i = 0; i < 4; i++) {
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            break;
        char req[4096];
        ssize_t got = read(c, req, sizeof req);
        (void)got;
        char buf[1100] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
        size_t head = strlen(buf);
        memset(buf + head, 'z', 1000);
        ssize_t w = write(c, buf, head + 1000);
        (void)w;
        close(c);
    }
    close(fd);
    return NULL;
}

/* Serves fn (given the listening socket) on a loopback port, as the gateway's upstream. */
static void start_fake_upstream(void *(*fn)(void *), const char *extra)
{
    static int fd;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    listen(fd, 8);
    pthread_t t;
    pthread_create(&t, NULL, fn, &fd);
    pthread_detach(t);
    char up[64];
    snprintf(up, sizeof up, "http://127.0.0.1:%d", ntohs(sa.sin_port));
    start_with(up, extra, NULL);
}

static void start_reset(void) { start_fake_upstream(reset_upstream, NULL); }

/* Through libcurl (a route that follows redirects) and through hubmeter's own client. */
Test(proxy, an_upstream_reset_mid_body_closes_the_client_connection, .init = start_reset,
     .fini = stop)
{
    const char *paths[] = {"/acme/model/resolve/main/x.bin", "/api/x.bin"};
    for (int i = 0; i < 2; i++) {
        char u[256];
        url(u, sizeof u, paths[i]);
        struct th_response r;
        th_http("GET", u, NULL, &r);
        cr_assert_eq(r.status, 0, "%s: the client must see a failed transfer, not a complete one",
                     paths[i]);
        cr_assert(r.body_len <= 1000);
        th_response_free(&r);
    }
}

/* The next connection to the fake upstream listening on fd, reads timing out after 5 s. */
static int accept_client(int fd)
{
    int c = accept(fd, NULL, NULL);
    struct timeval tv = {.tv_sec = 5};
    if (c >= 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return c;
}

/* Reads one request head from c into buf (NUL-terminated); false when the connection
 * closed, timed out or sent no complete head. */
static bool read_request_head(int c, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = '\0';
    while (got < cap - 1) {
        ssize_t n = recv(c, buf + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            return true;
    }
    return false;
}

/* An upstream that answers the first request on each connection and, like a server whose
 * keep-alive timeout has just passed, closes the connection when the second one arrives. */
static _Atomic int closing_conns, closing_requests;
static void *closing_upstream(void *arg)
{
    int fd = *(int *)arg;
    for (int c; (c = accept_client(fd)) >= 0;) {
        atomic_fetch_add(&closing_conns, 1);
        for (int served = 0;; served++) {
            char buf[8192];
            if (!read_request_head(c, buf, sizeof buf))
                break;
            atomic_fetch_add(&closing_requests, 1);
            if (served == 1)
                break; /* the second request on this connection: closed unanswered */
            const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
            if (send(c, ok, strlen(ok), MSG_NOSIGNAL) < 0)
                break;
        }
        close(c);
    }
    return NULL;
}

static void start_closing(void) { start_fake_upstream(closing_upstream, "HUBMETER_WORKERS=1"); }

/* A kept-alive upstream connection closed under a request before any byte of the answer
 * (the upstream's keep-alive ran out as the request arrived): the gateway sends the request
 * again on a new connection, and the client never sees the race. */
Test(proxy, a_kept_alive_connection_the_upstream_closes_is_retried_on_a_new_one,
     .init = start_closing, .fini = stop)
{
    char u[256];
    for (int i = 0; i < 3; i++) {
        url(u, sizeof u, i == 1 ? "/api/second" : i == 2 ? "/api/third" : "/api/first");
        struct th_response r;
        th_http("GET", u, NULL, &r);
        cr_assert_eq(r.status, 200, "request %d: %ld %s", i, r.status, r.body ? r.body : "");
        cr_assert_str_eq(r.body, "hello");
        th_response_free(&r);
    }
    /* 1 on the first connection; the 2nd there closed unanswered, then on a second
     * connection; the 3rd likewise: 5 requests seen over 3 connections. */
    cr_assert_eq(atomic_load(&closing_requests), 5, "%d", atomic_load(&closing_requests));
    cr_assert_eq(atomic_load(&closing_conns), 3, "%d", atomic_load(&closing_conns));
}

/* An upstream whose answer carries a 6 KB header (a long Set-Cookie, say). */
static void *big_head_upstream(void *arg)
{
    int fd = *(int *)arg;
    for (int c; (c = accept_client(fd)) >= 0;) {
        for (;;) {
            static char req[32768];
            if (!read_request_head(c, req, sizeof req))
                break;
            static char head[8192];
            int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Big: ");
            memset(head + n, 'b', 6000);
            memcpy(head + n + 6000, "\r\n\r\nhello", 9);
            if (send(c, head, (size_t)n + 6009, MSG_NOSIGNAL) < 0)
                break;
        }
        close(c);
    }
    return NULL;
}

static void start_big_head(void) { start_fake_upstream(big_head_upstream, NULL); }

/* GET path with X-Pad-<i> headers of at most 4000 bytes (nginx's limit per line is 8 KiB)
 * adding up to about size bytes. */
static void padded_get(const char *path, size_t size, struct th_response *r)
{
    static char pads[5][4100];
    const char *headers[6] = {0};
    for (int i = 0; i < 5 && size > 0; i++) {
        size_t n = size < 4000 ? size : 4000;
        memset(pads[i], 'p', n);
        memcpy(pads[i], "X-Pad-0: ", 9);
        pads[i][6] = (char)('0' + i);
        pads[i][n] = '\0';
        headers[i] = pads[i];
        size -= n;
    }
    char u[256];
    url(u, sizeof u, path);
    th_http("GET", u, headers, r);
}

/* The connection's memory (16 KiB) holds the request head and then the response head: a
 * request head beyond 12 KiB is refused with a JSON 431, an upstream head that cannot follow
 * the request's is a 502 — never a connection closed without an answer. */
Test(proxy, heads_too_large_for_the_connections_memory_get_an_answer, .init = start_big_head,
     .fini = stop)
{
    struct th_response r;
    padded_get("/api/x", 1000, &r); /* 6 KB of upstream head after a small request head: fits */
    cr_assert_eq(r.status, 200, "%ld", r.status);
    cr_assert_str_eq(r.body, "hello");
    th_response_free(&r);
    padded_get("/api/x", 10500, &r); /* 10.5 KB + 6 KB + their index: the upstream's head cannot follow */
    cr_assert_eq(r.status, 502, "%ld", r.status);
    cr_assert(strstr(r.body, "\"response_head_too_large\"") != NULL, "%s", r.body);
    th_response_free(&r);
    padded_get("/api/x", 13000, &r);
    cr_assert_eq(r.status, 431, "%ld", r.status);
    cr_assert(strstr(r.body, "\"request_head_too_large\"") != NULL, "%s", r.body);
    th_response_free(&r);
    padded_get("/api/x", 1000, &r); /* and the gateway goes on */
    cr_assert_eq(r.status, 200, "%ld", r.status);
    th_response_free(&r);
}

Test(proxy, request_heads_of_11_kb_reach_the_upstream, .init = start, .fini = stop)
{
    struct th_response r;
    padded_get("/acme/model/resolve/main/config.json", 11500, &r);
    cr_assert_eq(r.status, 200, "an 11.5 kB head got %ld", r.status);
    cr_assert(strstr(r.body, "model_type") != NULL, "%s", r.body);
    th_response_free(&r);
}

static void start_credential(void)
{
    start_with(th_env("HM_TEST_NGINX_URL"), "HUBMETER_UPSTREAM_AUTHORIZATION=Bearer gw-own-cred",
               "HUBMETER_CHALLENGE_PATHS=*.git/*,/v2/*");
}

Test(proxy, the_gateways_own_credential_is_sent_and_challenges_are_issued,
     .init = start_credential, .fini = stop)
{
    char u[256], line[1024], marker[64];
    snprintf(marker, sizeof marker, "cred=%d", (int)getpid());
    snprintf(u, sizeof u, "%s/acme/model/resolve/main/config.json?%s", gw.base, marker);
    struct th_response r;
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    th_response_free(&r);
    cr_assert(th_upstream_saw(marker, line, sizeof line));
    cr_assert(strstr(line, "auth=\"Bearer gw-own-cred\"") != NULL, "%s", line);
    cr_assert(!th_log_contains(&gw, "gw-own-cred"), "the credential is never logged");
    url(u, sizeof u, "/acme/model.git/info/lfs/objects/batch");
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 401);
    char v[128];
    cr_assert(th_header(&r, "WWW-Authenticate", v, sizeof v));
    cr_assert(strncmp(v, "Basic", 5) == 0, "%s", v);
    th_response_free(&r);
}

Test(proxy, connections_are_kept_alive_across_requests, .init = start, .fini = stop)
{
    char u[256];
    url(u, sizeof u, "/acme/model/resolve/main/config.json");
    cr_assert_eq(th_http_connections_for_two(u), 1, "the second request reused the connection");
    url(u, sizeof u, "/-/healthz");
    cr_assert_eq(th_http_connections_for_two(u), 1);
}

static void start_strict(void)
{
    start_with(th_env("HM_TEST_NGINX_URL"), "HUBMETER_HEADER_TIMEOUT_S=1", NULL);
}

static int connect_gateway(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)gw.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

Test(proxy, a_client_trickling_its_request_head_is_cut_off, .init = start_strict, .fini = stop)
{
    int fd = connect_gateway();
    const char *head = "GET /acme/model/resolve/main/config.json HTTP/1.1\r\nHost: x\r\n";
    int64_t start = th_now_ms();
    bool closed = false;
    for (size_t i = 0; head[i] != '\0' && !closed && th_now_ms() - start < 10000; i++) {
        if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1)
            closed = true;
        usleep(250 * 1000);
        char b;
        if (recv(fd, &b, 1, MSG_DONTWAIT) == 0)
            closed = true;
    }
    cr_assert(closed, "the gateway kept a slowloris connection for 10 s");
    cr_assert(th_now_ms() - start < 7000, "cut after %lld ms", (long long)(th_now_ms() - start));
    close(fd);
    /* A well-behaved client on the same gateway is unaffected. */
    char u[256];
    url(u, sizeof u, "/-/metrics");
    struct th_response r;
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "hubmeter_slow_clients_cut_total 1") != NULL, "%s", r.body);
    th_response_free(&r);
}

Test(proxy, oversized_heads_are_refused_and_the_gateway_stays_up, .init = start, .fini = stop)
{
    static char big[400000];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "X-Big: ", 7);
    char u[256];
    url(u, sizeof u, "/acme/model/resolve/main/config.json");
    struct th_response r;
    th_http("GET", u, (const char *[]){big, NULL}, &r);
    cr_assert(r.status == 431 || r.status == 413 || r.status == 400 || r.status == 0,
              "an oversized head got %ld", r.status);
    th_response_free(&r);
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    th_response_free(&r);
}

Test(proxy, metrics_count_requests_bytes_and_upstream_latency, .init = start, .fini = stop)
{
    char u[256];
    url(u, sizeof u, "/acme/model/resolve/main/config.json");
    struct th_response r;
    th_http("GET", u, NULL, &r);
    size_t len = r.body_len;
    th_response_free(&r);
    url(u, sizeof u, "/-/metrics");
    char ct[128], want[128];
    snprintf(want, sizeof want,
             "hubmeter_response_bytes_total{plan=\"anonymous\",status_class=\"2xx\"} %zu\n", len);
    /* The request is counted when its connection reports completion, which may trail the
     * client's last byte by a moment: poll. */
    int64_t deadline = th_now_ms() + 5000;
    for (;;) {
        th_http("GET", u, NULL, &r);
        cr_assert_eq(r.status, 200);
        if (strstr(r.body, want) != NULL || th_now_ms() > deadline)
            break;
        th_response_free(&r);
        usleep(50 * 1000);
    }
    cr_assert(th_header(&r, "Content-Type", ct, sizeof ct));
    cr_assert(strncmp(ct, "text/plain; version=0.0.4", 25) == 0, "%s", ct);
    cr_assert(strstr(r.body, "hubmeter_requests_total{plan=\"anonymous\",status_class=\"2xx\"} 1\n") !=
                  NULL,
              "%s", r.body);
    cr_assert(strstr(r.body, want) != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "hubmeter_upstream_latency_seconds_count 1\n") != NULL, "%s",
              r.body);
    th_response_free(&r);
}

Test(proxy, sigterm_lets_running_downloads_finish_and_sighup_reloads, .init = start,
     .fini = stop)
{
    char cmd[1024], out[128];
    snprintf(out, sizeof out, "/tmp/hm-grace-%d.bin", (int)getpid());
    kill(gw.pid, SIGHUP);
    int64_t deadline = th_now_ms() + 5000;
    while (!th_log_contains(&gw, "event=reloaded") && th_now_ms() < deadline)
        usleep(50 * 1000);
    cr_assert(th_log_contains(&gw, "event=reloaded"));
    /* A 64 MiB download at 16 MiB/s (far more than the socket buffers hold) is still
     * running when SIGTERM arrives. */
    snprintf(cmd, sizeof cmd,
             "curl -fsS --limit-rate 16M -o %s %s/acme/model/resolve/main/big.bin & "
             "sleep 0.5; kill -TERM %d; wait $!",
             out, gw.base, (int)gw.pid);
    cr_assert_eq(system(cmd), 0, "the download failed during shutdown");
    FILE *f = fopen(out, "rb");
    fseek(f, 0, SEEK_END);
    cr_assert_eq(ftell(f), 67108864, "the download was cut short");
    fclose(f);
    unlink(out);
    deadline = th_now_ms() + 5000;
    while (!th_log_contains(&gw, "event=stopping") && th_now_ms() < deadline)
        usleep(50 * 1000);
    cr_assert(th_log_contains(&gw, "in_flight=1"), "SIGTERM arrived while the download ran");
}

Test(proxy, chunked_upstream_responses_stream_through, .init = start, .fini = stop)
{
    char u[256], v[64];
    url(u, sizeof u, "/api/chunked");
    struct th_response r;
    th_http("GET", u, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "first part\nsecond part\n");
    cr_assert(!th_header(&r, "Content-Length", v, sizeof v), "an unknown length stays unknown");
    cr_assert(th_header(&r, "Transfer-Encoding", v, sizeof v));
    cr_assert_str_eq(v, "chunked");
    th_response_free(&r);
}

Test(proxy, several_ranges_pass_through_as_multipart, .init = start, .fini = stop)
{
    char u[256], v[128];
    url(u, sizeof u, "/acme/model/resolve/main/config.json");
    struct th_response r;
    th_http("GET", u, (const char *[]){"Range: bytes=0-1,5-6", NULL}, &r);
    cr_assert_eq(r.status, 206);
    cr_assert(th_header(&r, "Content-Type", v, sizeof v));
    cr_assert(strncmp(v, "multipart/byteranges", 20) == 0, "%s", v);
    th_response_free(&r);
}

static void start_capped(void)
{
    start_with(th_env("HM_TEST_NGINX_URL"), "HUBMETER_MAX_CONNECTIONS_PER_IP=2", NULL);
}

Test(proxy, connections_per_client_address_and_uri_length_are_capped, .init = start_capped,
     .fini = stop)
{
    int a = connect_gateway(), b = connect_gateway(), c = connect_gateway();
    /* The third connection from the same address is closed at once. */
    char buf[16];
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_leq(recv(c, buf, sizeof buf, 0), 0, "the third connection was served");
    close(a);
    close(b);
    close(c);
    static char longurl[10000];
    int n = snprintf(longurl, sizeof longurl, "%s/", gw.base);
    memset(longurl + n, 'a', 9000);
    struct th_response r;
    int64_t deadline = th_now_ms() + 5000; /* the closed connections free their slots */
    do {
        th_http("GET", longurl, NULL, &r);
        if (r.status == 0)
            th_response_free(&r), usleep(100 * 1000);
    } while (r.status == 0 && th_now_ms() < deadline);
    cr_assert(r.status == 414 || r.status == 431, "a 9 kB URI got %ld", r.status);
    th_response_free(&r);
}

/* Out of file descriptors, the gateway stops accepting for a moment instead of spinning on
 * a listening socket that stays readable (the clients wait in the backlog), says so once,
 * and serves again as soon as descriptors are free. */
static long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    char buf[1024];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    long utime = 0, stime = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                            &stime) != 2)
        cr_assert_fail("cannot read %s", path);
    return utime + stime;
}

/* Requests waiting for an upstream that thinks (its head comes after 2 s) cost the gateway
 * no CPU while they wait: each looks for the head for a couple of loop rounds, then its
 * connection is suspended until the head comes. And all of them get the late answer. */
struct slow_client {
    char url[256];
    _Atomic uint64_t got;
    long status;
};

static void *slow_client_run(void *arg)
{
    struct slow_client *sc = arg;
    th_http_for(sc->url, NULL, 4000, &sc->got, &sc->status);
    return NULL;
}

Test(proxy, requests_waiting_for_a_thinking_upstream_do_not_spin, .init = start, .fini = stop)
{
    enum { N = 16 };
    static struct slow_client sc[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        url(sc[i].url, sizeof sc[i].url, "/api/slow");
        sc[i].got = 0;
        sc[i].status = 0;
        pthread_create(&t[i], NULL, slow_client_run, &sc[i]);
    }
    usleep(400 * 1000); /* all of them are waiting now */
    long t0 = cpu_ticks(gw.pid);
    usleep(1000 * 1000);
    long used = cpu_ticks(gw.pid) - t0;
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    cr_assert_lt(used, 10, "the gateway used %ld ticks in 1 s while %d requests waited", used, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(sc[i].status, 200, "request %d: %ld", i, sc[i].status);
        cr_assert_eq(sc[i].got, 5, "request %d got the late answer (%llu bytes)", i,
                     (unsigned long long)sc[i].got);
    }
}

static int open_fds(pid_t pid)
{
    char cmd[96], out[32] = "";
    snprintf(cmd, sizeof cmd, "ls /proc/%d/fd | wc -l", (int)pid);
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL && fgets(out, sizeof out, p) != NULL);
    pclose(p);
    return (int)strtol(out, NULL, 10);
}

Test(proxy, out_of_descriptors_the_gateway_pauses_accepting_and_recovers, .init = start,
     .fini = stop)
{
    struct rlimit lim;
    lim.rlim_cur = lim.rlim_max = (rlim_t)open_fds(gw.pid) + 3;
    cr_assert_eq(prlimit(gw.pid, RLIMIT_NOFILE, &lim, NULL), 0, "prlimit: %s", strerror(errno));
    int fds[24];
    for (int i = 0; i < 24; i++)
        fds[i] = connect_gateway(); /* the kernel completes them; the gateway runs out */
    usleep(300 * 1000);
    long t0 = cpu_ticks(gw.pid);
    sleep(1);
    long used = cpu_ticks(gw.pid) - t0;
    cr_assert_lt(used, 20, "the gateway spun on its listening socket (%ld ticks in 1 s)", used);
    cr_assert(th_log_contains(&gw, "event=accept_failed errno=24"), "the shortage is logged");
    for (int i = 0; i < 24; i++)
        close(fds[i]);
    lim.rlim_cur = lim.rlim_max = 65536;
    prlimit(gw.pid, RLIMIT_NOFILE, &lim, NULL);
    char u[256];
    url(u, sizeof u, "/-/healthz");
    struct th_response r;
    int64_t deadline = th_now_ms() + 5000;
    do {
        th_http("GET", u, NULL, &r);
        if (r.status != 200)
            th_response_free(&r), usleep(100 * 1000);
    } while (r.status != 200 && th_now_ms() < deadline);
    cr_assert_eq(r.status, 200, "served again once descriptors are free");
    th_response_free(&r);
}
