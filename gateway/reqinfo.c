/*
 * Facts about a request that do not need the network: the client's network (the unit
 * anonymous traffic is identified and limited by) and the repository a path refers to.
 * Pure functions, unit-tested.
 */
#include "gateway/gw_int.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <string.h>

void gw_client_network(const struct sockaddr *sa, char *ip, size_t iplen, char *net,
                       size_t netlen)
{
    cm_copy(ip, iplen, "unknown");
    cm_copy(net, netlen, "");
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) { /* ::ffff:a.b.c.d is IPv4 */
            struct sockaddr_in s4 = {.sin_family = AF_INET};
            memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
            gw_client_network((const struct sockaddr *)&s4, ip, iplen, net, netlen);
            return;
        }
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
        cm_copy(ip, iplen, buf);
        struct in6_addr masked = {0};
        memcpy(masked.s6_addr, s6->sin6_addr.s6_addr, 6); /* /48 */
        inet_ntop(AF_INET6, &masked, buf, sizeof buf);
        cm_fmt(net, netlen, "%s/48", buf);
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof buf);
        cm_copy(ip, iplen, buf);
        struct in_addr masked = {.s_addr = s4->sin_addr.s_addr & htonl(0xffffff00u)}; /* /24 */
        inet_ntop(AF_INET, &masked, buf, sizeof buf);
        cm_fmt(net, netlen, "%s/24", buf);
    }
}

/* Length of the path segment at p if it is a plausible repository name part, else 0. */
static size_t name_segment(const char *p)
{
    size_t n = 0;
    for (; p[n] != '\0' && p[n] != '/' && p[n] != '?'; n++) {
        char ch = p[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    if (n > 96 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return 0;
    return n;
}

static bool starts(const char *p, const char *prefix)
{
    return strncmp(p, prefix, strlen(prefix)) == 0;
}

void gw_repo_from_path(const char *path, char *repo, size_t len)
{
    cm_copy(repo, len, "");
    if (path == NULL || path[0] != '/')
        return;
    const char *p = path + 1;
    const char *kind = "";
    /* Hugging Face layout: /api/{models,datasets,spaces}/o/n/..., /{datasets,spaces}/o/n/...,
     * and model repos at the root: /o/n/resolve/... */
    if (starts(p, "api/models/"))
        p += strlen("api/models/");
    else if (starts(p, "api/datasets/"))
        p += strlen("api/datasets/"), kind = "datasets/";
    else if (starts(p, "api/spaces/"))
        p += strlen("api/spaces/"), kind = "spaces/";
    else if (starts(p, "datasets/"))
        p += strlen("datasets/"), kind = "datasets/";
    else if (starts(p, "spaces/"))
        p += strlen("spaces/"), kind = "spaces/";
    else if (starts(p, "api/") || starts(p, "-/"))
        return;
    size_t a = name_segment(p);
    if (a == 0 || p[a] != '/')
        return;
    size_t b = name_segment(p + a + 1);
    if (b == 0)
        return;
    cm_fmt(repo, len, "%s%.*s/%.*s", kind, (int)a, p, (int)b, p + a + 1);
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int gw_percent_decode(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; in[i] != '\0'; i++) {
        char ch = in[i];
        if (ch == '%') {
            int hi = hex_digit(in[i + 1]), lo = hi >= 0 ? hex_digit(in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return CM_INVALID;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0' || o + 1 >= outlen)
            return CM_INVALID;
        out[o++] = ch;
    }
    out[o] = '\0';
    return CM_OK;
}

bool gw_path_matches(const char *patterns, const char *path)
{
    char pattern[512];
    for (const char *p = patterns; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n > 0 && n < sizeof pattern) {
            memcpy(pattern, p, n);
            pattern[n] = '\0';
            if (fnmatch(pattern, path, 0) == 0)
                return true;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}
