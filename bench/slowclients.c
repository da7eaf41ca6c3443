/*
 * bench/slowclients.c — owned by the benchmark harness (scripts/bench.sh).
 *
 * Opens N concurrent HTTP downloads of one URL with the libcurl multi
 * interface, each throttled to RATE bytes/s (CURLOPT_MAX_RECV_SPEED_LARGE),
 * keeps them running for SECONDS, then aborts them all and prints one
 * summary line:
 *
 *   handles=N served=S started=T done=D failed=F bytes=B elapsed=SECS
 *       avg_rate_per_served=BYTES/s status=CODE:COUNT,...
 *       errors=MSG:COUNT|...
 *
 *   served  transfers that received at least one body byte
 *   started transfers that received a response header (any status)
 *   done    transfers that finished before the deadline (should be 0)
 *   failed  transfers that ended with a curl error before the deadline
 *
 * Usage: slowclients URL N RATE SECONDS [HEADER]
 *   HEADER, if given, is sent with every request ("Authorization: Bearer …").
 *
 * Build: cc -O2 -o slowclients bench/slowclients.c -lcurl
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct xfer {
    CURL *h;
    curl_off_t bytes;
    int got_header;
    int finished; /* 1 = ok, 2 = error */
    CURLcode rc;
};

#define MAX_ERR_KINDS 16
static struct {
    char msg[96];
    int count;
} err_kinds[MAX_ERR_KINDS];
static int n_err_kinds;

static void note_error(const char *msg) {
    for (int i = 0; i < n_err_kinds; i++) {
        if (strcmp(err_kinds[i].msg, msg) == 0) {
            err_kinds[i].count++;
            return;
        }
    }
    if (n_err_kinds < MAX_ERR_KINDS) {
        snprintf(err_kinds[n_err_kinds].msg, sizeof err_kinds[n_err_kinds].msg, "%s", msg);
        err_kinds[n_err_kinds].count = 1;
        n_err_kinds++;
    }
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    (void)ptr;
    struct xfer *x = ud;
    x->bytes += (curl_off_t)(size * nmemb);
    return size * nmemb;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud) {
    (void)ptr;
    struct xfer *x = ud;
    x->got_header = 1;
    return size * nmemb;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: %s URL N RATE SECONDS [HEADER]\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    int n = atoi(argv[2]);
    long rate = atol(argv[3]);
    double secs = atof(argv[4]);
    const char *hdr = argc == 6 ? argv[5] : NULL;
    if (n <= 0 || rate <= 0 || secs <= 0) {
        fprintf(stderr, "slowclients: bad arguments\n");
        return 2;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "slowclients: curl_global_init failed\n");
        return 1;
    }
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n);

    struct curl_slist *headers = NULL;
    if (hdr) headers = curl_slist_append(headers, hdr);

    struct xfer *xs = calloc((size_t)n, sizeof *xs);
    if (!xs) return 1;
    for (int i = 0; i < n; i++) {
        CURL *h = curl_easy_init();
        if (!h) {
            fprintf(stderr, "slowclients: curl_easy_init failed at %d\n", i);
            return 1;
        }
        xs[i].h = h;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &xs[i]);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &xs[i]);
        curl_easy_setopt(h, CURLOPT_PRIVATE, &xs[i]);
        curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)rate);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
        /* Small reads: libcurl reads up to ~100 buffers per pass before it
         * applies the rate limit, so a big buffer means a big initial burst. */
        curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 4096L);
        if (headers) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_multi_add_handle(m, h);
    }

    double start = now_s(), deadline = start + secs;
    int running = n;
    while (now_s() < deadline) {
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK) {
            fprintf(stderr, "slowclients: curl_multi_perform: %s\n", curl_multi_strerror(mc));
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            if (!x) continue;
            x->rc = msg->data.result;
            x->finished = x->rc == CURLE_OK ? 1 : 2;
            if (x->rc != CURLE_OK) note_error(curl_easy_strerror(x->rc));
        }
        if (running == 0) break;
        int remaining_ms = (int)((deadline - now_s()) * 1000);
        if (remaining_ms <= 0) break;
        curl_multi_poll(m, NULL, 0, remaining_ms < 100 ? remaining_ms : 100, NULL);
    }
    double elapsed = now_s() - start;

    int served = 0, started = 0, done = 0, failed = 0;
    curl_off_t total = 0;
    long codes[8] = {0};
    long code_vals[8] = {0};
    int n_codes = 0;
    for (int i = 0; i < n; i++) {
        struct xfer *x = &xs[i];
        long code = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
        if (x->bytes > 0) served++;
        if (x->got_header) started++;
        if (x->finished == 1) done++;
        if (x->finished == 2) failed++;
        total += x->bytes;
        int j;
        for (j = 0; j < n_codes; j++)
            if (code_vals[j] == code) break;
        if (j == n_codes && n_codes < 8) code_vals[n_codes++] = code;
        if (j < 8) codes[j]++;
        curl_multi_remove_handle(m, x->h);
        curl_easy_cleanup(x->h);
    }
    printf("handles=%d served=%d started=%d done=%d failed=%d bytes=%lld elapsed=%.1f "
           "avg_rate_per_served=%.0fB/s status=",
           n, served, started, done, failed, (long long)total, elapsed,
           served ? (double)total / served / elapsed : 0.0);
    for (int j = 0; j < n_codes; j++) printf("%s%ld:%ld", j ? "," : "", code_vals[j], codes[j]);
    printf(" errors=");
    if (n_err_kinds == 0) printf("none");
    for (int i = 0; i < n_err_kinds; i++)
        printf("%s%s:%d", i ? "|" : "", err_kinds[i].msg, err_kinds[i].count);
    printf("\n");
    fflush(stdout);

    curl_slist_free_all(headers);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    free(xs);
    return 0;
}
