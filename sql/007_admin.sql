-- 007: what the admin API and the org usage API need (registry/, meter/). Named admin
-- tokens (only their SHA-256 stored), the audit log written in the same transaction as
-- every change, key expiry for rotation's grace period, an org's contact, and the usage
-- rows of an org as every report reads them (rolled-up hours from usage_hourly, the rest
-- by minute, adjustments included, anonymous networks attributed through org_networks).

CREATE TABLE admin_tokens (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    secret_sha256  bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
COMMENT ON COLUMN admin_tokens.secret_sha256 IS 'SHA-256 of the token; the token itself is never stored.';

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200), -- admin token name or cli:user
    action  text NOT NULL,                                          -- e.g. org.update
    target  text NOT NULL,                                          -- e.g. org:acme
    before  jsonb,
    after   jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);

-- A rotated key stays valid until expires_at (the grace period), then counts as revoked.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE orgs ADD COLUMN contact text NOT NULL DEFAULT '' CHECK (length(contact) <= 200);

-- Every usage row in [lo, hi) exactly once: hours rolled up (and not dirty) from
-- usage_hourly, the rest from usage_minute (by_minute reads only minutes, for minute
-- series), plus the signed adjustment rows.
CREATE FUNCTION hm_usage_rows(lo timestamptz, hi timestamptz, by_minute boolean)
RETURNS TABLE (bucket timestamptz, org_id bigint, key_id bigint, network cidr, repo text,
               status_class smallint, refused boolean, requests bigint, bytes bigint)
LANGUAGE sql STABLE AS $$
    WITH c AS (SELECT CASE WHEN by_minute THEN '-infinity'::timestamptz
                      ELSE coalesce((SELECT hour FROM rollup_cursor), '-infinity') END AS hour)
    SELECT m.bucket, m.org_id, m.key_id, m.network, m.repo, m.status_class, m.refused_by <> '',
           m.requests, m.bytes
      FROM usage_minute m
     WHERE m.bucket >= lo AND m.bucket < hi
       AND (m.bucket >= (SELECT hour FROM c)
            OR date_trunc('hour', m.bucket) IN (SELECT hour FROM rollup_dirty))
    UNION ALL
    SELECT h.bucket, h.org_id, h.key_id, h.network, h.repo, h.status_class, h.refused_by <> '',
           h.requests, h.bytes
      FROM usage_hourly h
     WHERE h.bucket >= lo AND h.bucket < hi AND h.bucket < (SELECT hour FROM c)
       AND h.bucket NOT IN (SELECT hour FROM rollup_dirty)
    UNION ALL
    SELECT a.bucket, a.org_id, a.key_id, a.network, a.repo, a.status_class, false,
           a.requests, a.bytes
      FROM usage_adjustments a
     WHERE a.bucket >= lo AND a.bucket < hi
$$;

-- The usage rows of org o: its keyed traffic, and anonymous traffic from networks whose
-- most specific mapped range belongs to it (applied at read time, so retroactive). The
-- org's rows come through the (org_id, bucket) indexes; anonymous rows are read only when
-- the org has ranges at all (a one-time filter), and only those inside one of its ranges
-- are resolved with hm_network_org.
CREATE FUNCTION hm_usage_org(o bigint, lo timestamptz, hi timestamptz, by_minute boolean)
RETURNS TABLE (bucket timestamptz, org_id bigint, key_id bigint, network cidr, repo text,
               status_class smallint, refused boolean, requests bigint, bytes bigint)
LANGUAGE sql STABLE AS $$
    SELECT u.* FROM hm_usage_rows(lo, hi, by_minute) u WHERE u.org_id = o
    UNION ALL
    SELECT u.* FROM hm_usage_rows(lo, hi, by_minute) u
     WHERE u.org_id IS NULL AND u.network IS NOT NULL
       AND EXISTS (SELECT 1 FROM org_networks n WHERE n.org_id = o)
       AND u.network <<= ANY (ARRAY(SELECT n.network FROM org_networks n WHERE n.org_id = o))
       AND hm_network_org(u.network) = o
$$;

-- Quota notifications: a webhook (an org's, or the operator's when org_id is NULL, called
-- for every org) is called once when an org's usage of the UTC month crosses each of its
-- thresholds (percent of the plan's monthly_bytes). The outbox row is unique per webhook,
-- org, month and threshold, so an event is queued once; senders claim rows with SKIP
-- LOCKED and retry with backoff.
CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    org_id      bigint REFERENCES orgs (id),
    url         text NOT NULL CHECK (url ~ '^https?://[^[:space:]]+$' AND length(url) <= 1000),
    secret      text NOT NULL CHECK (length(secret) BETWEEN 16 AND 200), -- HMAC key: needed to sign
    thresholds  smallint[] NOT NULL DEFAULT '{80,100}'
                CHECK (cardinality(thresholds) BETWEEN 1 AND 10 AND 0 < ALL (thresholds)
                       AND 1000 >= ALL (thresholds)),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_outbox (
    id               bigserial PRIMARY KEY,
    webhook_id       bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    org_id           bigint NOT NULL REFERENCES orgs (id),
    period           timestamptz NOT NULL,
    threshold        smallint NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    failed_at        timestamptz,
    last_error       text,
    UNIQUE (webhook_id, org_id, period, threshold)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Queues an event for every threshold crossed in the month holding now_ts and not queued
-- yet. Returns how many were queued.
CREATE FUNCTION hm_webhook_scan(now_ts timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', now_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    n integer;
BEGIN
    INSERT INTO webhook_outbox (webhook_id, org_id, period, threshold, payload)
    SELECT w.id, o.id, lo, t.threshold,
           jsonb_build_object('event', 'quota.threshold_crossed', 'org', o.slug,
                              'period', to_char(lo AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                              'threshold_percent', t.threshold, 'monthly_bytes', p.monthly_bytes,
                              'used_bytes', u.b)
      FROM orgs o
      JOIN plans p ON p.id = o.plan_id AND p.monthly_bytes > 0
      JOIN webhooks w ON w.org_id IS NULL OR w.org_id = o.id
      CROSS JOIN LATERAL unnest(w.thresholds) AS t (threshold)
      CROSS JOIN LATERAL (SELECT coalesce(sum(bytes), 0) AS b
                            FROM hm_usage_org(o.id, lo, lo + interval '1 month', false)) u
     WHERE u.b * 100 >= t.threshold::numeric * p.monthly_bytes
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
