/*
 * registry — the data model shared by the gateway, the CLI and the admin API: plans, orgs,
 * API keys, CIDR networks and admin tokens in PostgreSQL, the API key format (random body,
 * a recognisable prefix, a CRC-32 checksum; stored only as SHA-256), and the audit log:
 * every change made here is written to audit_log in the same transaction, with its actor.
 * Every function takes a borrowed PGconn and is safe to call from any thread that owns it.
 */
#ifndef HM_REGISTRY_H
#define HM_REGISTRY_H

#include <jansson.h>

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
    char contact[204];
};

struct reg_key {
    int64_t id;
    char org_slug[64];
    char name[204];
    char display[32];
    char created_at[40];
    char last_used_at[40]; /* "" when never */
    char revoked_at[40];   /* "" when active */
    char expires_at[40];   /* "" when it does not expire (set by rotation) */
    int64_t org_id;
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
/* CM_OK, CM_EXISTS, CM_INVALID (err says which field) or CM_ERR. Fills p->id. Audited. */
int reg_plan_create(PGconn *db, const char *actor, struct reg_plan *p, char *err,
                    size_t errlen);
/* Which fields of a plan an update sets. */
enum reg_plan_field {
    REG_PLAN_RPM = 1 << 0,
    REG_PLAN_REQUEST_BURST = 1 << 1,
    REG_PLAN_BPS = 1 << 2,
    REG_PLAN_BYTE_BURST = 1 << 3,
    REG_PLAN_MONTHLY = 1 << 4,
    REG_PLAN_CONCURRENT = 1 << 5,
    REG_PLAN_FAILURE = 1 << 6,
    REG_PLAN_SHADOW = 1 << 7,
};
/* Sets the fields of plan name named by mask (reg_plan_field) from p; *out is the result.
 * CM_OK, CM_NOTFOUND, CM_INVALID, CM_ERR. Audited. */
int reg_plan_update(PGconn *db, const char *actor, const char *name, const struct reg_plan *p,
                    unsigned mask, struct reg_plan *out, char *err, size_t errlen);
/* Deletes an unused plan: CM_OK, CM_NOTFOUND, CM_DENIED (an org uses it), CM_ERR. Audited. */
int reg_plan_delete(PGconn *db, const char *actor, const char *name, char *err, size_t errlen);
/* *out is an array the caller frees with free(). */
int reg_plan_list(PGconn *db, struct reg_plan **out, size_t *n, char *err, size_t errlen);
int reg_plan_get(PGconn *db, const char *name, struct reg_plan *out, char *err, size_t errlen);

/* ---- orgs (registry/orgs.c) ------------------------------------------------------------------ */
/* o->plan may be "" (no plan). CM_OK, CM_EXISTS, CM_NOTFOUND (plan), CM_INVALID, CM_ERR.
 * Audited. */
int reg_org_create(PGconn *db, const char *actor, struct reg_org *o, char *err, size_t errlen);
/* Orgs by slug whose slug or name contains search ("" for all), after slug after ("" from
 * the start), at most limit (1..1000). *out is calloc'd; the caller frees it. */
int reg_org_list(PGconn *db, const char *search, const char *after, int limit,
                 struct reg_org **out, size_t *n, char *err, size_t errlen);
/* What an update changes: NULL (or anchor_day 0) leaves a field as it is; plan "" removes
 * the org's plan. */
struct reg_org_change {
    const char *name, *class_, *contact, *plan;
    int anchor_day;
};
/* CM_OK (*out is the result), CM_NOTFOUND (org or plan), CM_INVALID, CM_ERR. Audited. */
int reg_org_update(PGconn *db, const char *actor, const char *slug,
                   const struct reg_org_change *ch, struct reg_org *out, char *err,
                   size_t errlen);
/* Suspends (its keys then get 403 org_suspended) or resumes an org. Audited. */
int reg_org_set_suspended(PGconn *db, const char *actor, const char *slug, bool suspended,
                          struct reg_org *out, char *err, size_t errlen);
int reg_org_get(PGconn *db, const char *slug, struct reg_org *out, char *err, size_t errlen);

/* ---- keys (registry/keys.c) ------------------------------------------------------------------ */
/* Creates a key for org_slug; the secret is written to secret (REG_KEY_MAX) once and
 * never stored. CM_NOTFOUND if the org does not exist. */
int reg_key_create(PGconn *db, const char *actor, const char *prefix, const char *org_slug,
                   const char *name, struct reg_key *out, char *secret, size_t secretlen,
                   char *err, size_t errlen);
int reg_key_list(PGconn *db, const char *org_slug, struct reg_key **out, size_t *n, char *err,
                 size_t errlen);
/* Revokes by id ("42") or display prefix ("hm_3fK9aQ2x"). CM_NOTFOUND, or CM_INVALID when
 * a display prefix is ambiguous. */
int reg_key_revoke(PGconn *db, const char *actor, const char *id_or_display,
                   struct reg_key *out, char *err, size_t errlen);
/* One key by id or display prefix: CM_OK, CM_NOTFOUND, CM_INVALID (ambiguous), CM_ERR. */
int reg_key_get(PGconn *db, const char *id_or_display, struct reg_key *out, char *err,
                size_t errlen);
/* Rotation: a new key for the same org and name (secret written once, as for create);
 * the old one stays valid for grace_s seconds (0..30 days), then counts as revoked.
 * CM_NOTFOUND, CM_DENIED (the old key is revoked or expired), CM_INVALID, CM_ERR. Audited. */
int reg_key_rotate(PGconn *db, const char *actor, const char *prefix, const char *id_or_display,
                   int64_t grace_s, struct reg_key *fresh, struct reg_key *old, char *secret,
                   size_t secretlen, char *err, size_t errlen);
/* Looks up an active key by the SHA-256 of its text. CM_OK, CM_NOTFOUND (unknown),
 * CM_DENIED (revoked, or past the grace period of a rotation) or CM_ERR (database). */
int reg_key_lookup(PGconn *db, const uint8_t sha256[32], struct reg_identity *out, char *err,
                   size_t errlen);

/* ---- networks (registry/networks.c) ------------------------------------------------------------ */
struct reg_network {
    int64_t id;
    char org_slug[64];
    char cidr[64];
    char note[204];
    char created_at[40];
    int64_t requests, bytes; /* anonymous traffic this range carried (listing only) */
};
/* Maps cidr (IPv4 or IPv6, no host bits) to org_slug. CM_INVALID (malformed), CM_EXISTS
 * (already mapped), CM_NOTFOUND (org), CM_ERR. Audited. */
int reg_network_add(PGconn *db, const char *actor, const char *org_slug, const char *cidr,
                    const char *note, struct reg_network *out, char *err, size_t errlen);
/* Ranges of org_slug ("" for all) with the anonymous traffic each carried in [from, to)
 * (unix seconds), counting a network for the most specific range holding it. */
int reg_network_list(PGconn *db, const char *org_slug, int64_t from, int64_t to,
                     struct reg_network **out, size_t *n, char *err, size_t errlen);
/* Removes range id: CM_OK, CM_NOTFOUND, CM_ERR. Audited. */
int reg_network_remove(PGconn *db, const char *actor, int64_t id, struct reg_network *out,
                       char *err, size_t errlen);

/* ---- admin tokens (registry/admin_tokens.c) ------------------------------------------------------ */
#define REG_ADMIN_PREFIX "hmadm_"
/* Makes secret (HUBMETER_ADMIN_TOKEN) the token named "bootstrap" unless that one was
 * revoked; only its hash is stored. No-op for "". */
int reg_admin_bootstrap(PGconn *db, const char *secret, char *err, size_t errlen);
/* The name of the active token whose SHA-256 is sha256: CM_OK, CM_NOTFOUND, CM_DENIED. */
int reg_admin_check(PGconn *db, const uint8_t sha256[32], char *name, size_t namelen,
                    char *err, size_t errlen);
/* A new named token; the secret is written once into secret (REG_KEY_MAX). *out: new
 * reference {name, created_at}. CM_INVALID, CM_EXISTS, CM_ERR. Audited. */
int reg_admin_token_create(PGconn *db, const char *actor, const char *name, char *secret,
                           size_t secretlen, json_t **out, char *err, size_t errlen);
int reg_admin_token_list(PGconn *db, json_t **out, char *err, size_t errlen);
int reg_admin_token_revoke(PGconn *db, const char *actor, const char *name, json_t **out,
                           char *err, size_t errlen);

/* ---- quota webhooks (registry/webhooks.c) -------------------------------------------------------- */
/* Registers url for org_slug ("" = the operator's, called for every org) at thresholds (percent
 * of the plan's monthly_bytes, 1-10 values of 1-1000). The signing secret is written once into
 * secret (REG_KEY_MAX). *out: new reference. CM_INVALID, CM_NOTFOUND, CM_ERR. Audited. */
int reg_webhook_create(PGconn *db, const char *actor, const char *org_slug, const char *url,
                       const int *thresholds, size_t n, char *secret, size_t secretlen,
                       json_t **out, char *err, size_t errlen);
/* Webhooks of org_id (0: every webhook, the operator's included). *out: new reference. */
int reg_webhook_list(PGconn *db, int64_t org_id, json_t **out, char *err, size_t errlen);
/* Deletes webhook id if it belongs to org_id (0: whoever's). CM_NOTFOUND otherwise. Audited. */
int reg_webhook_delete(PGconn *db, const char *actor, int64_t org_id, int64_t id, json_t **out,
                       char *err, size_t errlen);
/* The events queued for webhook id, with their delivery state. CM_NOTFOUND if no webhook. */
int reg_webhook_deliveries(PGconn *db, int64_t id, json_t **out, char *err, size_t errlen);

struct reg_webhook_event {
    int64_t id;
    char url[1001];
    char secret[201];
    char *payload; /* JSON text, malloc'd */
    int attempts;
};
/* Queues new threshold crossings, then opens a transaction and claims up to max due events
 * (locked, SKIP LOCKED: other gateways skip them). On CM_OK the caller records each with
 * reg_webhook_attempt and ends the transaction with reg_finish. Free with
 * reg_webhook_events_free. */
int reg_webhook_claim(PGconn *db, int max, struct reg_webhook_event **events, size_t *n,
                      char *err, size_t errlen);
/* Records one attempt: delivered, or failed with error (retried with backoff). */
int reg_webhook_attempt(PGconn *db, const struct reg_webhook_event *e, bool delivered,
                        const char *error, char *err, size_t errlen);
void reg_webhook_events_free(struct reg_webhook_event *events, size_t n);

/* ---- JSON of records (registry/json.c): new references, NULL when out of memory ---------------- */
json_t *reg_org_json(const struct reg_org *o);
json_t *reg_plan_json(const struct reg_plan *p);
json_t *reg_key_json(const struct reg_key *k);
json_t *reg_network_json(const struct reg_network *n);

/* ---- transactions and the audit log (registry/audit.c) -------------------------------------------- */
int reg_begin(PGconn *db, char *err, size_t errlen);
/* Commits when rc is CM_OK (CM_ERR if the commit fails), else rolls back; returns the rc. */
int reg_finish(PGconn *db, int rc, char *err, size_t errlen);
/* Appends an audit row in the caller's transaction; before/after (may be NULL) are stolen
 * references, as json_object_set_new takes them. */
int reg_audit(PGconn *db, const char *actor, const char *action, const char *target,
              json_t *before, json_t *after, char *err, size_t errlen);
/* Audit rows newest first, with id below before_id (0: from the newest), at most limit;
 * optionally only one target prefix ("" for all). *out: new reference, an array. */
int reg_audit_list(PGconn *db, int64_t before_id, int limit, const char *target,
                   json_t **out, char *err, size_t errlen);

#endif
