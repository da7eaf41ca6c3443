/*
 * Real clients pointed at the gateway behave as they do against the repository, and the
 * gateway meters what they fetch: the @huggingface/hub library (tests/clients, installed
 * with npm) using the gateway as its hub — including for a file the hub would hand out
 * through Xet, which must then come as plain bytes through the gateway —, `wget -c`
 * resuming a cut download, `git clone` over HTTP through a challenge route (git sends its
 * credential only after a 401), git-lfs, pip downloading from a package index, and the
 * docker registry protocol (skopeo, which speaks it as docker does) pulling an image.
 * Upstream: the test nginx (scripts/services.sh), which answers like a Hugging Face hub for
 * acme/xetmodel; for the image, a real registry (Debian's docker-registry) the test starts.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

static struct th_stack stack; /* its database, Redis and their environment entries */
static char key[128], auth[200], out_dir[128];
static struct th_gateway gw;
static const char *const env_prefix = "HUBMETER_KEY_PREFIX=hf_"; /* as the hub's own keys */
static const char *const env_challenge =
    "HUBMETER_CHALLENGE_PATHS=*.git/*,/simple/*,/packages/*";

/* A fresh database and Redis, an org "acme" with an hf_ key, a gateway in front of upstream
 * with the configured challenge paths (and repository patterns, when not NULL). */
static void start_for(const char *upstream, const char *challenge, const char *repo_patterns)
{
    th_stack_new(&stack, upstream);
    const char *env[] = {stack.env_db, stack.env_redis, stack.env_up, env_prefix, challenge,
                         repo_patterns, NULL};
    struct th_run r;
    th_hubmeter(&r, env, (const char *[]){"orgs", "create", "acme", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_hubmeter(&r, env, (const char *[]){"keys", "create", "acme", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_last_line(r.out, key, sizeof key);
    cr_assert(strncmp(key, "hf_", 3) == 0, "keys carry the configured prefix: %s", key);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf(out_dir, sizeof out_dir, "/tmp/hm-clients-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", out_dir, out_dir);
    cr_assert_eq(system(cmd), 0);
    th_gateway_start(&gw, env);
}

/* The gateway in front of the test nginx. */
static void start(void)
{
    start_for(th_env("HM_TEST_NGINX_URL"), env_challenge, NULL);
}

static void stop(void)
{
    th_gateway_stop(&gw);
    cr_assert(!th_log_contains(&gw, key), "the API key must never appear in the log");
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out_dir);
    cr_assert_eq(system(cmd), 0);
}

/* True when files a and b hold the same bytes (and b exists). */
static bool same_file(const char *a, const char *b)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* The hub client's tests need it installed (scripts/test.sh runs npm ci): when the npm
 * registry could not be reached they are skipped, and the run's closing line says so. */
static void need_hub_client(void)
{
    const char *why = getenv("HM_TEST_CLIENTS_MISSING");
    if (why != NULL && why[0] != '\0')
        cr_skip_test("%s", why);
}

/* Runs the @huggingface/hub client: downloads repo's path through the gateway to out.
 * Returns its exit status; its output (the size, or the library's error) in msg. */
static int hf_download(const char *repo, const char *path, const char *out, char *msg,
                       size_t len)
{
    char script[512], log[300];
    snprintf(script, sizeof script, "%s/hf_download.mjs", th_env("HM_TEST_CLIENTS"));
    snprintf(log, sizeof log, "%s/hf.out", out_dir);
    char *argv[] = {"node", script, gw.base, key, (char *)repo, (char *)path, (char *)out, NULL};
    int rc = th_run_bounded(argv, log, 60);
    FILE *f = fopen(log, "r");
    msg[0] = '\0';
    if (f != NULL) {
        size_t n = fread(msg, 1, len - 1, f);
        msg[n] = '\0';
        fclose(f);
    }
    return rc;
}

Test(clients, huggingface_hub_downloads_files_through_the_gateway_as_its_hub, .init = start,
     .fini = stop, .timeout = 120)
{
    need_hub_client();
    char www[512], out[300], msg[1024];
    snprintf(www, sizeof www, "%s/acme/model/resolve/main/model.bin", th_env("HM_TEST_WWW"));
    long size = file_size(www);
    snprintf(out, sizeof out, "%s/model.bin", out_dir);
    int rc = hf_download("acme/model", "model.bin", out, msg, sizeof msg);
    cr_assert_eq(rc, 0, "@huggingface/hub failed through the gateway: %s", msg);
    cr_assert(same_file(www, out), "the library's file differs from the repository's");
    snprintf(out, sizeof out, "%s/config.json", out_dir);
    snprintf(www, sizeof www, "%s/acme/model/resolve/main/config.json", th_env("HM_TEST_WWW"));
    rc = hf_download("acme/model", "config.json", out, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
    cr_assert(same_file(www, out));
    /* Each file: the library's probe (Range: bytes=0-0, one byte) and the download. */
    th_usage_becomes(gw.base, auth, "acme", size + 1 + file_size(www) + 1, 4);
}

/* The hub answers a client that accepts Xet file info with that info instead of the file
 * (checked against nginx directly); through the gateway, on a metered route, the client
 * gets the file itself, so every byte passes the meter — and the library copes. */
Test(clients, a_xet_backed_file_comes_as_plain_bytes_through_the_gateway, .init = start,
     .fini = stop, .timeout = 120)
{
    const char *xet_accept = "Accept: application/vnd.xet-fileinfo+json, */*";
    char u[600];
    snprintf(u, sizeof u, "%s/acme/xetmodel/resolve/main/model.bin", th_env("HM_TEST_NGINX_URL"));
    struct th_response r;
    th_http("GET", u, (const char *[]){xet_accept, "Range: bytes=0-0", NULL}, &r);
    char v[256];
    cr_assert(th_header(&r, "X-Xet-Hash", v, sizeof v),
              "the fixture answers like a Xet-enabled hub (status %ld)", r.status);
    th_response_free(&r);

    snprintf(u, sizeof u, "%s/acme/xetmodel/resolve/main/model.bin", gw.base);
    th_http("GET", u, (const char *[]){auth, xet_accept, "Range: bytes=0-0", NULL}, &r);
    cr_assert_eq(r.status, 206, "the gateway asks for the bytes: %s", r.body);
    cr_assert(!th_header(&r, "X-Xet-Hash", v, sizeof v), "no Xet hints through the gateway");
    cr_assert(th_header(&r, "Content-Type", v, sizeof v) && strstr(v, "xet") == NULL, "%s", v);
    cr_assert(th_header(&r, "Content-Range", v, sizeof v) && strstr(v, "/3145739") != NULL,
              "%s", v);
    th_response_free(&r);
    need_hub_client();

    char www[512], out[300], msg[1024];
    snprintf(www, sizeof www, "%s/acme/model/resolve/main/model.bin", th_env("HM_TEST_WWW"));
    snprintf(out, sizeof out, "%s/xet.bin", out_dir);
    int rc = hf_download("acme/xetmodel", "model.bin", out, msg, sizeof msg);
    cr_assert_eq(rc, 0, "@huggingface/hub failed on a Xet-backed file: %s", msg);
    cr_assert(same_file(www, out), "the library's file differs from the repository's");
    long size = file_size(www);
    /* Our probe (1 byte), the library's probe (1 byte) and its download. */
    th_usage_becomes(gw.base, auth, "acme", 1 + 1 + size, 3);
}

/* wget -c continues a cut download with a Range request: the result is byte-identical
 * and only the missing part is sent (and metered). */
Test(clients, wget_continues_a_cut_download, .init = start, .fini = stop, .timeout = 120)
{
    char www[512], out[300], cmd[1200];
    snprintf(www, sizeof www, "%s/acme/model/resolve/main/model.bin", th_env("HM_TEST_WWW"));
    snprintf(out, sizeof out, "%s/model.bin", out_dir);
    snprintf(cmd, sizeof cmd, "head -c 1000000 '%s' > '%s'", www, out);
    cr_assert_eq(system(cmd), 0);
    char url[600], header[256];
    snprintf(url, sizeof url, "%s/acme/model/resolve/main/model.bin", gw.base);
    snprintf(header, sizeof header, "--header=%s", auth);
    char log[300];
    snprintf(log, sizeof log, "%s/wget.out", out_dir);
    char *argv[] = {"wget", "-q", "-c", header, "-P", out_dir, url, NULL};
    cr_assert_eq(th_run_bounded(argv, log, 60), 0, "wget -c through the gateway failed");
    cr_assert(same_file(www, out), "the continued file differs from the repository's");
    th_usage_becomes(gw.base, auth, "acme", file_size(www) - 1000000, 1);
}

/* git sends no credential until challenged: on a challenge route the gateway answers 401
 * with WWW-Authenticate: Basic, git retries with the key as password, and the clone (dumb
 * HTTP, as from static storage) is complete. Without a key, the clone is refused. */
Test(clients, git_clones_through_a_challenge_route, .init = start, .fini = stop,
     .timeout = 120)
{
    char url[600], dest[300], log[300];
    setenv("GIT_TERMINAL_PROMPT", "0", 1);
    snprintf(log, sizeof log, "%s/git.out", out_dir);
    snprintf(dest, sizeof dest, "%s/anon", out_dir);
    snprintf(url, sizeof url, "%s/acme/code.git", gw.base);
    char *anon[] = {"git", "clone", "-q", url, dest, NULL};
    cr_assert_neq(th_run_bounded(anon, log, 60), 0, "a clone without a key is refused");

    const char *host = strstr(gw.base, "://") + 3;
    snprintf(url, sizeof url, "http://git:%s@%s/acme/code.git", key, host);
    snprintf(dest, sizeof dest, "%s/code", out_dir);
    char *argv[] = {"git", "clone", "-q", url, dest, NULL};
    cr_assert_eq(th_run_bounded(argv, log, 60), 0, "git clone through the gateway failed");
    char path[400];
    snprintf(path, sizeof path, "%s/hello.py", dest);
    cr_assert(th_file_contains(path, "print(\"hello\")"), "the clone has the repository's file");
    cr_assert(th_log_contains(&gw, "repo=acme/code "), "git's requests count for acme/code");
    cr_assert(th_log_contains(&gw, "status=401"), "the first request was challenged");
}

/* git-lfs, as a repository's users run it: git clones, then git-lfs asks the LFS batch
 * API (a POST) where the file's object is and downloads it, both through the gateway and
 * with the key from a credential helper after the challenge. The checked-out file is the
 * object itself, and its bytes are metered to acme/code. */
Test(clients, git_lfs_fetches_its_objects_through_the_gateway, .init = start, .fini = stop,
     .timeout = 120)
{
    char oid_path[512], oid[80] = "", object[600];
    snprintf(oid_path, sizeof oid_path, "%s/acme/code.git/lfs/oid", th_env("HM_TEST_WWW"));
    FILE *f = fopen(oid_path, "r");
    cr_assert(f != NULL && fscanf(f, "%64s", oid) == 1, "the LFS fixture is missing");
    fclose(f);
    snprintf(object, sizeof object, "%s/acme/code.git/lfs/objects/%s", th_env("HM_TEST_WWW"),
             oid);

    setenv("GIT_TERMINAL_PROMPT", "0", 1);
    char helper[300], url[600], dest[300], log[300];
    snprintf(helper, sizeof helper,
             "credential.helper=!f() { echo username=git; echo password=%s; }; f", key);
    snprintf(url, sizeof url, "%s/acme/code.git", gw.base);
    snprintf(dest, sizeof dest, "%s/lfs", out_dir);
    snprintf(log, sizeof log, "%s/git-lfs.out", out_dir);
    char *argv[] = {"git", "-c", helper, "-c", "filter.lfs.smudge=git-lfs smudge -- %f",
                    "-c", "filter.lfs.process=git-lfs filter-process", "-c",
                    "filter.lfs.required=true", "clone", "-q", url, dest, NULL};
    cr_assert_eq(th_run_bounded(argv, log, 90), 0, "git clone with git-lfs through the gateway");
    char path[400];
    snprintf(path, sizeof path, "%s/weights.bin", dest);
    cr_assert(same_file(object, path), "weights.bin is the LFS object, not its pointer");
    cr_assert(th_log_contains(&gw, "method=POST status=200"), "the batch API was asked");
    cr_assert(th_log_contains(&gw, "status=200 bytes=2000000 "), "the object went through");
    cr_assert(!th_log_contains(&gw, key), "the key is never logged");
}

/* A request the gateway refuses while its body is still coming (git-lfs's batch POST
 * before its credential, an API call with a bad key) gets the refusal, not a reset: the
 * body is read and dropped first, or the client is refused before it sends the body when it
 * waits for 100 Continue. Sized and chunked bodies alike. */
Test(clients, a_refused_request_with_a_body_gets_its_answer, .init = start, .fini = stop,
     .timeout = 120)
{
    size_t big = 2 * 1024 * 1024;
    char *body = malloc(big);
    cr_assert_not_null(body);
    memset(body, 'b', big);
    char u[600], v[256];
    struct th_response r;
    const char *bad_key = "Authorization: Bearer hf_notavalidkeyatall0000000000000000000";
    snprintf(u, sizeof u, "%s/api/echo", gw.base);
    th_http_body("POST", u, (const char *[]){"Expect:", bad_key, NULL}, body, 300, false, &r);
    cr_assert_eq(r.status, 401, "a bad key on a POST is answered (got %ld)", r.status);
    cr_assert(strstr(r.body, "\"invalid_key\"") != NULL, "%s", r.body);
    th_response_free(&r);
    th_http_body("POST", u, (const char *[]){"Expect: 100-continue", bad_key, NULL}, body, big,
                 false, &r);
    cr_assert_eq(r.status, 401, "refused before a 2 MiB body is sent (got %ld)", r.status);
    th_response_free(&r);

    snprintf(u, sizeof u, "%s/acme/code.git/info/lfs/objects/batch", gw.base);
    th_http_body("POST", u, (const char *[]){"Expect:", NULL}, body, 300, true, &r);
    cr_assert_eq(r.status, 401, "a chunked POST on a challenge route is challenged");
    cr_assert(th_header(&r, "WWW-Authenticate", v, sizeof v) && strncmp(v, "Basic", 5) == 0,
              "%s", v);
    th_response_free(&r);

    snprintf(u, sizeof u, "%s/-/nowhere", gw.base);
    th_http_body("POST", u, (const char *[]){"Expect:", NULL}, body, big, false, &r);
    cr_assert_eq(r.status, 404, "an unknown endpoint answers a POST (got %ld)", r.status);
    cr_assert(strstr(r.body, "\"not_found\"") != NULL, "%s", r.body);
    th_response_free(&r);
    free(body);

    /* And a body the gateway forwards still arrives whole. */
    snprintf(u, sizeof u, "%s/api/echo", gw.base);
    th_http_body("POST", u, (const char *[]){"Expect:", auth, NULL}, "hello, upstream", 15,
                 false, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "hello, upstream") != NULL, "%s", r.body);
    th_response_free(&r);
}

/* pip, pointed at a package index behind the gateway (the key in the index URL, as pip users
 * give a token), finds the wheel on the index page, downloads it, checks its sha256 and keeps
 * a byte-identical copy; the index page and the wheel are metered. */
Test(clients, pip_downloads_a_wheel_through_the_gateway, .init = start, .fini = stop,
     .timeout = 120)
{
    char wheel[512], index[600], log[300], got[400];
    snprintf(wheel, sizeof wheel, "%s/packages/hubmeter_demo-1.0-py3-none-any.whl",
             th_env("HM_TEST_WWW"));
    const char *host = strstr(gw.base, "://") + 3;
    snprintf(index, sizeof index, "http://__token__:%s@%s/simple/", key, host);
    snprintf(log, sizeof log, "%s/pip.out", out_dir);
    char *argv[] = {"/usr/bin/python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                    "--disable-pip-version-check", "--quiet", "--index-url", index, "-d",
                    out_dir, "hubmeter-demo==1.0", NULL};
    cr_assert_eq(th_run_bounded(argv, log, 90), 0, "pip download through the gateway failed");
    snprintf(got, sizeof got, "%s/hubmeter_demo-1.0-py3-none-any.whl", out_dir);
    cr_assert(same_file(wheel, got), "pip's wheel differs from the index's");
    char bytes[64];
    snprintf(bytes, sizeof bytes, "status=200 bytes=%ld ", file_size(wheel));
    cr_assert(th_log_contains(&gw, bytes), "the wheel's bytes are metered (%s)", bytes);
    cr_assert(th_log_contains(&gw, "org=acme"), "to the key's org");
}

/* ---- the docker registry protocol ------------------------------------------------------------- */

static pid_t registry;
static char registry_dir[128], layer_digest[80];
static long layer_size;

/* Runs a shell command line bounded to seconds, its stdout and stderr in log: its status. */
static int sh_bounded(const char *cmd, const char *log, int seconds)
{
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    return th_run_bounded(argv, log, seconds);
}

/* A real registry (Debian's docker-registry, filesystem storage) on a free loopback port,
 * holding acme/demo:1.0 — an image of one 3 MiB layer (tests/clients/make_image.py) pushed
 * to it directly with skopeo — and the gateway in front of it, with /v2/ a challenge route
 * and /v2/{ns}/{repo}/ naming the repository, as a registry operator configures it. */
static void start_registry(void)
{
    snprintf(registry_dir, sizeof registry_dir, "/tmp/hm-registry-%d", (int)getpid());
    char cmd[1400], log[200], config[200], up[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/data", registry_dir, registry_dir);
    cr_assert_eq(system(cmd), 0);
    int port = th_free_port();
    snprintf(up, sizeof up, "http://127.0.0.1:%d", port);
    snprintf(config, sizeof config, "%s/config.yml", registry_dir);
    FILE *f = fopen(config, "w");
    cr_assert(f != NULL);
    fprintf(f, "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
               "    rootdirectory: %s/data\nhttp:\n  addr: 127.0.0.1:%d\n",
            registry_dir, port);
    fclose(f);
    snprintf(log, sizeof log, "%s/registry.log", registry_dir);
    registry = fork();
    if (registry == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("docker-registry", "docker-registry", "serve", config, (char *)NULL);
        _exit(127);
    }
    cr_assert(registry > 0);
    char ping[96];
    snprintf(ping, sizeof ping, "%s/v2/", up);
    struct th_response r = {0};
    for (int i = 0; i < 100 && r.status != 200; i++) {
        th_response_free(&r);
        th_http("GET", ping, NULL, &r);
        if (r.status != 200)
            usleep(100 * 1000);
    }
    cr_assert_eq(r.status, 200, "docker-registry did not start (see %s)", log);
    th_response_free(&r);

    snprintf(log, sizeof log, "%s/image.out", registry_dir);
    snprintf(cmd, sizeof cmd, "python3 %s/make_image.py %s/image", th_env("HM_TEST_CLIENTS"),
             registry_dir);
    cr_assert_eq(sh_bounded(cmd, log, 60), 0, "make_image.py failed");
    f = fopen(log, "r");
    cr_assert(f != NULL && fscanf(f, "%79s %ld", layer_digest, &layer_size) == 2);
    fclose(f);
    snprintf(log, sizeof log, "%s/push.out", registry_dir);
    snprintf(cmd, sizeof cmd,
             "skopeo copy --insecure-policy --dest-tls-verify=false oci:%s/image:1.0 "
             "docker://127.0.0.1:%d/acme/demo:1.0 2>&1",
             registry_dir, port);
    cr_assert_eq(sh_bounded(cmd, log, 60), 0, "pushing the image to the registry failed (%s)",
                 log);
    start_for(up, "HUBMETER_CHALLENGE_PATHS=/v2/*", "HUBMETER_REPO_PATTERNS=docker/=/v2/{ns}/{repo}/*");
}

static void stop_registry(void)
{
    stop();
    if (registry > 0) {
        kill(registry, SIGTERM);
        waitpid(registry, NULL, 0);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", registry_dir);
    cr_assert_eq(system(cmd), 0);
}

/* skopeo pulls the image through the gateway as `docker pull` would: without a key the
 * gateway's challenge refuses it (and an empty Basic answer is a missing key, not a
 * malformed one), with the key as password it gets every blob — digests checked by skopeo,
 * the layer byte-identical — and the layer's bytes are metered to the key's org under the
 * image's repository. */
Test(clients, docker_protocol_pulls_an_image_through_a_challenge_route, .init = start_registry,
     .fini = stop_registry, .timeout = 180)
{
    const char *host = strstr(gw.base, "://") + 3;
    char cmd[1200], log[300], got[400], want[400];
    snprintf(log, sizeof log, "%s/anonymous.out", out_dir);
    snprintf(cmd, sizeof cmd,
             "skopeo copy --insecure-policy --src-tls-verify=false docker://%s/acme/demo:1.0 "
             "dir:%s/anonymous 2>&1",
             host, out_dir);
    cr_assert_neq(sh_bounded(cmd, log, 60), 0, "a pull without a key must be refused");
    cr_assert(th_file_contains(log, "authentication required"),
              "skopeo reports the challenge (see %s)", log);
    cr_assert(th_log_contains(&gw, "decision=authentication_required"));
    cr_assert(!th_log_contains(&gw, "malformed_authorization"),
              "an empty Basic answer to the challenge is a missing key");

    snprintf(log, sizeof log, "%s/pull.out", out_dir);
    snprintf(cmd, sizeof cmd,
             "skopeo copy --insecure-policy --src-tls-verify=false --src-creds acme:%s "
             "docker://%s/acme/demo:1.0 dir:%s/pulled 2>&1",
             key, host, out_dir);
    cr_assert_eq(sh_bounded(cmd, log, 90), 0, "skopeo could not pull through the gateway");
    snprintf(want, sizeof want, "%s/image/blobs/sha256/%s", registry_dir, layer_digest + 7);
    snprintf(got, sizeof got, "%s/pulled/%s", out_dir, layer_digest + 7);
    cr_assert(same_file(want, got), "the pulled layer differs from the pushed one");
    char bytes[64];
    snprintf(bytes, sizeof bytes, "status=200 bytes=%ld ", layer_size);
    cr_assert(th_log_contains(&gw, bytes), "the layer's bytes are metered (%s)", bytes);
    cr_assert(th_log_contains(&gw, "org=acme"), "to the key's org");
    cr_assert(th_log_contains(&gw, "repo=docker/acme/demo"), "under the image's repository");
}
