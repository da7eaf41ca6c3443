/*
 * common — the face of the shared base layer: return codes, logging, configuration,
 * time, hashing/randomness, PostgreSQL connection helpers and the migration runner.
 * Everything else in hubmeter may include this header; it includes no other module.
 * It owns no network protocol (HTTP lives in gateway/, Redis in meter/).
 */
#ifndef HM_COMMON_H
#define HM_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

/* Return codes shared by every module (nginx-style: "try later" is not "failed"). */
enum cm_rc {
    CM_OK = 0,
    CM_ERR = -1,      /* failed; the out-parameter err says why */
    CM_AGAIN = -2,    /* not yet / retry later */
    CM_DENIED = -3,   /* refused by policy (revoked key, suspended org, quota) */
    CM_UNAVAIL = -4,  /* a dependency (Redis, PostgreSQL, upstream) is unreachable */
    CM_NOTFOUND = -5, /* no such object */
    CM_EXISTS = -6,   /* the object already exists */
    CM_INVALID = -7,  /* the input is malformed */
};

/* ---- logging (common/log.c) --------------------------------------------------------- */
enum cm_log_level { CM_LOG_DEBUG = 0, CM_LOG_INFO, CM_LOG_WARN, CM_LOG_ERROR };

/* Writes line (one complete line without its newline, e.g. a JSON object) as one event on
 * stderr when level passes the threshold; newlines in it are neutralised. Thread-safe. */
void cm_log_line(enum cm_log_level level, const char *line);
/* One line per event on stderr: "ts=… level=… event=… <fmt>". Thread-safe.
 * Callers must never pass secrets (API keys, tokens, passwords); a key prefix is fine. */
void cm_log(enum cm_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cm_log_set_level(enum cm_log_level level);
/* Parses "debug|info|warn|error"; returns CM_INVALID for anything else. */
int cm_log_parse_level(const char *s, enum cm_log_level *out);

/* ---- configuration (common/config.c) ------------------------------------------------- */
#define CM_URL_MAX 1024

struct hm_config {
    char listen_host[64];
    uint16_t listen_port;
    char admin_host[64];
    uint16_t admin_port;
    char upstream[CM_URL_MAX];     /* http(s)://host[:port][/base] or file:///dir, no trailing / */
    bool upstream_is_file;
    char upstream_dir[CM_URL_MAX]; /* the directory when upstream_is_file */
    char redis_url[CM_URL_MAX];    /* secret-bearing: never log */
    char database_url[CM_URL_MAX]; /* secret-bearing: never log */
    char admin_token[256];         /* secret: never log */
    char journal_dir[CM_URL_MAX];
    bool journal_fsync_always; /* fsync every record; else once a second ("everysec") */
    uint64_t journal_max_bytes;  /* the journal stops growing here, with an alarm */
    char key_prefix[17];
    char instance_id[64];
    enum cm_log_level log_level;
    unsigned max_connections;
    unsigned max_connections_per_ip;
    /* libmicrohttpd's memory per connection: it holds the request head and the response
     * head (a request head that does not fit gets 431); zeroed between requests. */
    unsigned connection_memory;
    unsigned client_timeout_s;
    unsigned upstream_connect_timeout_ms;
    unsigned upstream_first_byte_timeout_ms;
    char upstream_authorization[512]; /* the gateway's own upstream credential: secret */
    char follow_redirects[512];       /* path patterns whose redirects are followed */
    char challenge_paths[512];        /* path patterns answering anonymous requests with 401 */
    char repo_patterns[1024];         /* how a path names its repository (gateway/reqinfo.c) */
    unsigned shutdown_grace_s;
    unsigned header_timeout_s;      /* a request head must arrive within this */
    char config_file[CM_URL_MAX];   /* the --config file, for reloads ("" when none) */
    unsigned upstream_idle_timeout_ms;
    unsigned ship_interval_ms;
    unsigned flush_claim_idle_ms; /* a batch pending this long in a dead flusher is taken over */
    unsigned month_close_grace_h; /* a month closes this long after the watermark passed it */
    unsigned minute_retention_days; /* minute rows older than this go (0: kept forever) */
    bool run_flusher; /* serve also runs the flusher */
    bool quotas;      /* plans are enforced (off: requests are metered only) */
    bool upstream_builtin_client; /* hubmeter's own HTTP/1.1 client where it serves (gateway/upstream_h1.c) */
    unsigned workers; /* event loops serving the gateway's connections (0: one per CPU) */
    unsigned redis_timeout_ms;  /* each quota call waits at most this for Redis */
    char anonymous_plan[64];    /* the plan of anonymous traffic, per client network */
    unsigned webhook_interval_ms; /* how often quota webhooks are looked for and sent */
    bool access_log_json; /* the per-request line as JSON, else logfmt */
    bool admin_tls;       /* the admin listener is reached through TLS: cookies are Secure */
    unsigned dashboard_session_s; /* an operator page session lasts this long */
};

/* What a subcommand needs; cm_config_require() names the first missing key. */
enum cm_need {
    CM_NEED_DATABASE = 1 << 0,
    CM_NEED_REDIS = 1 << 1,
    CM_NEED_UPSTREAM = 1 << 2,
};

/* Fills cfg with defaults, then KEY=value lines of file (if not NULL), then the
 * environment (environment wins). Every value is validated; on failure returns
 * CM_INVALID and err names the bad key and why (never its value if it is a secret). */
int cm_config_load(struct hm_config *cfg, const char *file, char *err, size_t errlen);
int cm_config_require(const struct hm_config *cfg, unsigned needs, char *err, size_t errlen);
/* The known configuration keys, in the table's order: the i-th key, NULL past the last;
 * *secret tells whether its value is a secret (may be NULL). */
const char *cm_config_key(size_t i, bool *secret);

/* ---- time (common/timeutil.c) --------------------------------------------------------- */
int64_t cm_now_us(void);  /* wall clock, microseconds since the epoch */
int64_t cm_mono_ms(void); /* CLOCK_MONOTONIC milliseconds */
/* Formats unix seconds as "2026-11-23T10:00:00Z". Returns CM_ERR if buf is too small. */
int cm_time_format(int64_t unix_s, char *buf, size_t len);
/* Parses an RFC 3339 timestamp ("2026-11-01T00:00:00Z", "…+02:00", fractions ignored)
 * from a (pointer, length) slice into unix seconds. CM_INVALID if malformed. */
int cm_time_parse(const char *s, size_t len, int64_t *unix_s);
/* Start of the UTC month containing t, and the start of the next one. */
int64_t cm_month_start(int64_t unix_s);
int64_t cm_month_next(int64_t month_start);

/* ---- bytes, hashing and randomness (common/crypto.c) ------------------------------------ */
/* Fills buf with n bytes from getrandom(2). CM_ERR if the kernel cannot. */
int cm_random(void *buf, size_t n);
void cm_sha256(const void *data, size_t len, uint8_t out[32]);
uint32_t cm_crc32(const void *data, size_t len);
/* HMAC-SHA256 of data under key into out. */
void cm_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    uint8_t out[32]);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void cm_hex(const uint8_t *in, size_t n, char *out);

/* Parses a decimal uint64 from a whole NUL-terminated string (no sign, no spaces). */
int cm_parse_u64(const char *s, uint64_t *out);

/* ---- PostgreSQL (common/pg.c) ----------------------------------------------------------- */
/* Connects and checks the connection. Returns NULL and a message (no password) on failure.
 * Caller frees with PQfinish. */
PGconn *cm_pg_connect(const char *url, char *err, size_t errlen);

/* A fixed-size pool of connections shared by threads (one mutex guards the free list).
 * Broken connections are reset on the next get. */
struct cm_pg_pool;
struct cm_pg_pool *cm_pg_pool_new(const char *url, unsigned size);
/* Borrows a connection, waiting up to timeout_ms. NULL when none could be had or
 * connected. Return it with cm_pg_pool_put (also after an error). */
PGconn *cm_pg_pool_get(struct cm_pg_pool *pool, unsigned timeout_ms);
void cm_pg_pool_put(struct cm_pg_pool *pool, PGconn *conn);
void cm_pg_pool_free(struct cm_pg_pool *pool);

/* Copies libpq's message for res (or conn) into err without the trailing newline. */
void cm_pg_error(PGconn *conn, const PGresult *res, char *err, size_t errlen);
/* Failed PostgreSQL connections and statements reported through cm_pg_error since start
 * (process-wide, for /-/metrics). */
uint64_t cm_pg_errors(void);
/* Runs a parameter-less command; CM_OK when it returned COMMAND_OK or TUPLES_OK. */
int cm_pg_command(PGconn *conn, const char *sql, char *err, size_t errlen);
/* True when res failed with SQLSTATE state (e.g. "23505" unique violation). */
bool cm_pg_state_is(const PGresult *res, const char *state);

/* ---- migrations (common/migrate.c, table generated from sql/ at build time) -------------- */
struct cm_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct cm_migration cm_migrations[]; /* terminated by {0, NULL, NULL} */

/* Applies every migration not yet in schema_migrations, each in its own transaction,
 * under an advisory lock so concurrent runs serialise. *applied counts new ones. */
int cm_migrate(PGconn *conn, int *applied, char *err, size_t errlen);

/* ---- fault injection (common/fault.c) ------------------------------------------------------ */
/* When HUBMETER_FAULT names point (e.g. "flush:after_commit"), logs that the point was
 * reached and kills the process with SIGKILL, as a crash there would. For fault tests. */
void cm_fault(const char *point);

/* ---- small helpers ---------------------------------------------------------------------- */
/* snprintf that reports truncation: CM_OK or CM_ERR. */
int cm_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Bounded copy with guaranteed NUL; CM_ERR when src did not fit. */
int cm_copy(char *dst, size_t dstlen, const char *src);
/* Text appended to a fixed buffer without printf, for what every request writes (its
 * rate-limit headers). The text stays NUL-terminated; once something does not fit,
 * overflow is set and nothing more is appended. */
struct cm_buf {
    char *s;
    size_t cap, len;
    bool overflow;
};
void cm_buf_init(struct cm_buf *b, char *s, size_t cap);
/* Appends n bytes of str (inline: a literal's strlen is folded at compile time). */
static inline void cm_buf_put(struct cm_buf *b, const char *str, size_t n)
{
    if (b->overflow || b->len + n >= b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->s + b->len, str, n);
    b->len += n;
    b->s[b->len] = '\0';
}
static inline void cm_buf_str(struct cm_buf *b, const char *str) { cm_buf_put(b, str, strlen(str)); }
void cm_buf_u64(struct cm_buf *b, uint64_t v);
void cm_buf_i64(struct cm_buf *b, int64_t v);

#endif
