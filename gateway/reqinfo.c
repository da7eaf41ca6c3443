/*
 * Facts about a request that do not need the network: the client's network (the unit
 * anonymous traffic is identified and limited by), the repository a path refers to, and
 * the Accept header a metered route forwards. Pure functions, unit-tested.
 */
#include "gateway/gw_int.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

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

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

struct capture {
    const char *ns, *repo;
    size_t ns_len, repo_len;
};

/* Matches path against the template tpl[0..tl): literal characters, {ns} and {repo} (one
 * path segment of name characters, longest first with backtracking), and a final '*'. */
static bool match(const char *tpl, size_t tl, const char *path, struct capture *cap)
{
    if (tl == 0)
        return *path == '\0' || *path == '?';
    if (tpl[0] == '*' && tl == 1)
        return true;
    if (tpl[0] != '{')
        return *path == tpl[0] && match(tpl + 1, tl - 1, path + 1, cap);
    bool ns = tl >= 4 && strncmp(tpl, "{ns}", 4) == 0;
    bool repo = tl >= 6 && strncmp(tpl, "{repo}", 6) == 0;
    if (ns || repo) {
        size_t skip = ns ? 4 : 6, n = 0;
        while (n < 96 && name_char(path[n]))
            n++;
        for (; n > 0; n--) {
            if ((n == 1 && path[0] == '.') || (n == 2 && path[0] == '.' && path[1] == '.'))
                continue;
            if (match(tpl + skip, tl - skip, path + n, cap)) {
                if (ns)
                    cap->ns = path, cap->ns_len = n;
                else
                    cap->repo = path, cap->repo_len = n;
                return true;
            }
        }
        return false;
    }
    return *path == tpl[0] && match(tpl + 1, tl - 1, path + 1, cap);
}

void gw_repo_from_path(const char *patterns, const char *path, char *repo, size_t len)
{
    cm_copy(repo, len, "");
    for (const char *p = patterns; path != NULL && *p != '\0';) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        const char *tpl = eq ? eq + 1 : p;
        size_t tl = (size_t)(p + n - tpl), label = eq ? (size_t)(eq - p) : 0;
        struct capture cap = {0};
        if (match(tpl, tl, path, &cap) && cap.repo != NULL) {
            if (cap.ns != NULL)
                cm_fmt(repo, len, "%.*s%.*s/%.*s", (int)label, p, (int)cap.ns_len, cap.ns,
                       (int)cap.repo_len, cap.repo);
            else
                cm_fmt(repo, len, "%.*s%.*s", (int)label, p, (int)cap.repo_len, cap.repo);
            return;
        }
        p += n;
        if (*p == ',')
            p++;
    }
}

int gw_repo_patterns_check(const char *patterns, char *err, size_t errlen)
{
    for (const char *p = patterns; *p != '\0';) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        const char *tpl = eq ? eq + 1 : p;
        size_t tl = (size_t)(p + n - tpl);
        const char *star = memchr(tpl, '*', tl);
        char one[256];
        cm_fmt(one, sizeof one, "%.*s", (int)(n < 200 ? n : 200), p);
        if (tl == 0 || tpl[0] != '/' || (star != NULL && star != tpl + tl - 1))
            return cm_fmt(err, errlen, "HUBMETER_REPO_PATTERNS: \"%s\" must start with / and may "
                                       "end with one *", one), CM_INVALID;
        bool has_repo = false;
        for (size_t i = 0; i + 6 <= tl && !has_repo; i++)
            has_repo = strncmp(tpl + i, "{repo}", 6) == 0;
        if (!has_repo)
            return cm_fmt(err, errlen, "HUBMETER_REPO_PATTERNS: \"%s\" has no {repo}", one),
                   CM_INVALID;
        p += n;
        if (*p == ',')
            p++;
    }
    return CM_OK;
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

void gw_accept_without_xet(const char *value, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (const char *p = value; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *t = p;
        while (t < p + n && (*t == ' ' || *t == '\t'))
            t++;
        size_t tn = (size_t)(p + n - t);
        if (strncasecmp(t, "application/vnd.xet-", 20) != 0 && tn > 0 && o + tn + 3 < len) {
            if (o > 0) {
                out[o++] = ',';
                out[o++] = ' ';
            }
            memcpy(out + o, t, tn);
            o += tn;
            out[o] = '\0';
        }
        p = end ? end + 1 : p + n;
    }
}
