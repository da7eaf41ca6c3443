/*
 * registry — the data model shared by the gateway, the CLI and (later) the admin API:
 * plans, orgs and API keys in PostgreSQL, and the API key format (random body, a
 * recognisable prefix, a CRC-32 checksum; stored only as SHA-256).
 * Every function takes a borrowed PGconn and is safe to call from any thread that owns it.
 */
#ifndef HM_REGISTRY_H
#define HM_REGISTRY_H

#include "common/common.h"

/* ---- key format (registry/keyfmt.c, pure) ------------------------------------------------- */
#define REG_KEY_BODY 32     /* base62 random characters */
#define REG_KEY_CHECK 6     /* base62 characters of CRC-32(prefix + body) */
#define REG_KEY_MAX 64      /* longest key text including NUL (prefix <= 16) */
#define REG_KEY_DISPLAY 8   /* body characters kept in the display prefix */

/* Writes a new random key "<prefix><body><check>" into out (REG_KEY_MAX bytes). */
int reg_key_generate(const char *prefix, char *out, size_t outlen);
/* Checks the shape and checksum of key[0..len) for prefix: CM_OK or CM_INVALID.
 * Catches typos before any lookup; never touches the network. */
int reg_key_check(const char *prefix, const char *key, size_t len);
/* The display form "<prefix><first 8 body chars>", safe to log and show. */
void reg_key_display(const char *prefix, const char *key, char *out, size_t outlen);

/* ---- records ------------------------------------------------------------------------------- */
struct reg_plan {
    int64_t id;
    char name[64];
    int64_t requests_per_minute, request_burst, bytes_per_second, byte_burst, monthly_bytes;
    int32_t max_concurrent;
    char failure_policy[8]; /* "open" | "closed" */
    bool shadow;
    char created_at[40];
};

struct reg_org {
    int64_t id;
    char slug[64];
    char name[204];
    char class_[16];
    char plan[64]; /* plan name, "" when none */
    int anchor_day;
    char status[16];
    char created_at[40];
};

struct reg_key {
    int64_t id;
    char org_slug[64];
    char name[204];
    char display[32];
    char created_at[40];
    char last_used_at[40]; /* "" when never */
    char revoked_at[40];   /* "" when active */
};

/* Who a valid key belongs to: what the gateway needs per request. */
struct reg_identity {
    int64_t key_id;
    int64_t org_id;
    int64_t plan_id; /* 0 when the org has no plan */
    char org_slug[64];
    bool org_suspended;
    int anchor_day; /* 1..28: the org's monthly quota period starts on this day (UTC) */
};

/* Validation helpers shared with the CLI (and later the admin API). */
bool reg_valid_slug(const char *s);
bool reg_valid_plan_name(const char *s);
bool reg_valid_class(const char *s);

/* ---- plans (registry/plans.c) --------------------------------------------------------------- */
/* CM_OK, CM_EXISTS, CM_INVALID (err says which field) or CM_ERR. Fills p->id. */
int reg_plan_create(PGconn *db, struct reg_plan *p, char *err, size_t errlen);
/* *out is an array the caller frees with free(). */
int reg_plan_list(PGconn *db, struct reg_plan **out, size_t *n, char *err, size_t errlen);
int reg_plan_get(PGconn *db, const char *name, struct reg_plan *out, char *err, size_t errlen);

/* ---- orgs (registry/orgs.c) ------------------------------------------------------------------ */
/* o->plan may be "" (no plan). CM_OK, CM_EXISTS, CM_NOTFOUND (plan), CM_INVALID, CM_ERR. */
int reg_org_create(PGconn *db, struct reg_org *o, char *err, size_t errlen);
int reg_org_list(PGconn *db, struct reg_org **out, size_t *n, char *err, size_t errlen);
int reg_org_get(PGconn *db, const char *slug, struct reg_org *out, char *err, size_t errlen);

/* ---- keys (registry/keys.c) ------------------------------------------------------------------ */
/* Creates a key for org_slug; the secret is written to secret (REG_KEY_MAX) once and
 * never stored. CM_NOTFOUND if the org does not exist. */
int reg_key_create(PGconn *db, const char *prefix, const char *org_slug, const char *name,
                   struct reg_key *out, char *secret, size_t secretlen, char *err,
                   size_t errlen);
int reg_key_list(PGconn *db, const char *org_slug, struct reg_key **out, size_t *n, char *err,
                 size_t errlen);
/* Revokes by id ("42") or display prefix ("hm_3fK9aQ2x"). CM_NOTFOUND, or CM_INVALID when
 * a display prefix is ambiguous. */
int reg_key_revoke(PGconn *db, const char *id_or_display, struct reg_key *out, char *err,
                   size_t errlen);
/* Looks up an active key by the SHA-256 of its text. CM_OK, CM_NOTFOUND (unknown),
 * CM_DENIED (revoked) or CM_ERR (database). */
int reg_key_lookup(PGconn *db, const uint8_t sha256[32], struct reg_identity *out, char *err,
                   size_t errlen);

#endif
