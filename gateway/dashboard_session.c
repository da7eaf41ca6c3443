/*
 * Operator page sessions: what the /dashboard cookie names, and one-time login tickets.
 * Both are random ids (32 bytes from getrandom via cm_random, hex) kept in memory by SHA-256 only, with
 * the SHA-256 of the admin token that opened them (checked again on every request, so a
 * revoked token ends its sessions) and an expiry. A gateway restart ends every session.
 * Does not own authentication itself (admin.c) nor the page (dashboard.c).
 */
#include "gateway/admin_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SESSIONS_MAX 256

struct adm_session {
    uint8_t id_hash[32];    /* SHA-256 of the id the browser holds */
    uint8_t token_hash[32]; /* SHA-256 of the admin token that opened it */
    int64_t expires;        /* unix seconds; 0: free slot */
    bool ticket;            /* a one-time login ticket, not a session */
};

struct adm_sessions {
    pthread_mutex_t mu; /* protects slot */
    unsigned session_s, ticket_s;
    struct adm_session slot[SESSIONS_MAX];
};

struct adm_sessions *adm_sessions_new(unsigned session_s, unsigned ticket_s)
{
    struct adm_sessions *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->session_s = session_s;
    s->ticket_s = ticket_s;
    return s;
}

void adm_sessions_free(struct adm_sessions *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

unsigned adm_sessions_lifetime(const struct adm_sessions *s, bool ticket)
{
    return ticket ? s->ticket_s : s->session_s;
}

int adm_session_open(struct adm_sessions *s, bool ticket, const uint8_t token_hash[32],
                     char id[ADM_SESSION_ID_LEN + 1])
{
    uint8_t raw[32];
    if (cm_random(raw, sizeof raw) != CM_OK)
        return CM_ERR;
    cm_hex(raw, sizeof raw, id);
    struct adm_session fresh = {.ticket = ticket};
    cm_sha256(id, ADM_SESSION_ID_LEN, fresh.id_hash);
    memcpy(fresh.token_hash, token_hash, 32);
    int64_t now = cm_now_us() / 1000000;
    fresh.expires = now + (ticket ? s->ticket_s : s->session_s);
    pthread_mutex_lock(&s->mu);
    /* A free or expired slot, else the one nearest its expiry (the oldest). */
    size_t pick = 0;
    for (size_t i = 0; i < SESSIONS_MAX; i++) {
        if (s->slot[i].expires <= now) {
            pick = i;
            break;
        }
        if (s->slot[i].expires < s->slot[pick].expires)
            pick = i;
    }
    s->slot[pick] = fresh;
    pthread_mutex_unlock(&s->mu);
    memset(raw, 0, sizeof raw);
    return CM_OK;
}

/* The live slot whose id hashes to h, or NULL. Called with s->mu held. */
static struct adm_session *find(struct adm_sessions *s, const uint8_t h[32], int64_t now)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (s->slot[i].expires > now && memcmp(s->slot[i].id_hash, h, 32) == 0)
            return &s->slot[i];
    return NULL;
}

int adm_session_check(struct adm_sessions *s, const char *id, bool ticket,
                      uint8_t token_hash[32])
{
    if (strlen(id) != ADM_SESSION_ID_LEN || strspn(id, "0123456789abcdef") != ADM_SESSION_ID_LEN)
        return CM_NOTFOUND;
    uint8_t h[32];
    cm_sha256(id, ADM_SESSION_ID_LEN, h);
    int rc = CM_NOTFOUND;
    pthread_mutex_lock(&s->mu);
    struct adm_session *e = find(s, h, cm_now_us() / 1000000);
    if (e != NULL && e->ticket == ticket) {
        memcpy(token_hash, e->token_hash, 32);
        if (ticket)
            e->expires = 0; /* a ticket logs in once */
        rc = CM_OK;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void adm_session_close(struct adm_sessions *s, const char *id)
{
    uint8_t h[32];
    cm_sha256(id, strlen(id), h);
    pthread_mutex_lock(&s->mu);
    struct adm_session *e = find(s, h, cm_now_us() / 1000000);
    if (e != NULL)
        memset(e, 0, sizeof *e);
    pthread_mutex_unlock(&s->mu);
}
