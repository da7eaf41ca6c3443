-- 001: the core data model: plans, orgs, API keys (registry/), and the usage path
-- (meter/): per-minute usage rows partitioned by month, applied batch ids, and the
-- per-gateway watermark that tells readers how complete usage is.

CREATE TABLE plans (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    requests_per_minute bigint NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0),
    request_burst       bigint NOT NULL DEFAULT 0 CHECK (request_burst >= 0),
    bytes_per_second    bigint NOT NULL DEFAULT 0 CHECK (bytes_per_second >= 0),
    byte_burst          bigint NOT NULL DEFAULT 0 CHECK (byte_burst >= 0),
    monthly_bytes       bigint NOT NULL DEFAULT 0 CHECK (monthly_bytes >= 0),
    max_concurrent      integer NOT NULL DEFAULT 0 CHECK (max_concurrent >= 0),
    failure_policy      text NOT NULL DEFAULT 'open' CHECK (failure_policy IN ('open', 'closed')),
    shadow              boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE plans IS 'Quota plans; 0 means unlimited for every limit.';

CREATE TABLE orgs (
    id          bigserial PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    class       text NOT NULL DEFAULT 'unknown'
                CHECK (class IN ('commercial', 'nonprofit', 'academic', 'individual', 'unknown')),
    plan_id     bigint REFERENCES plans (id),
    anchor_day  smallint NOT NULL DEFAULT 1 CHECK (anchor_day BETWEEN 1 AND 28),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            bigserial PRIMARY KEY,
    org_id        bigint NOT NULL REFERENCES orgs (id),
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    display       text NOT NULL,                 -- recognisable prefix, e.g. hm_3fK9aQ2x
    secret_sha256 bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id);
COMMENT ON COLUMN api_keys.secret_sha256 IS 'SHA-256 of the whole key; the key itself is never stored.';

-- One row per (minute, org, key, client network, repo, method, status class, refusal):
-- org_id/key_id are NULL for anonymous traffic, network is NULL for keyed traffic.
CREATE TABLE usage_minute (
    bucket        timestamptz NOT NULL,
    org_id        bigint,
    key_id        bigint,
    network       cidr,
    repo          text NOT NULL DEFAULT '',
    method        text NOT NULL,
    status_class  smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    refused_by    text NOT NULL DEFAULT '',      -- '' admitted, else the refusing policy
    requests      bigint NOT NULL CHECK (requests >= 0),
    bytes         bigint NOT NULL CHECK (bytes >= 0),
    CONSTRAINT usage_minute_key UNIQUE NULLS NOT DISTINCT
        (bucket, org_id, key_id, network, repo, method, status_class, refused_by)
) PARTITION BY RANGE (bucket);
CREATE INDEX usage_minute_org ON usage_minute (org_id, bucket);

-- Creates the monthly partition of usage_minute holding ts, if missing.
CREATE FUNCTION hm_usage_partition(ts timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi timestamptz := lo + interval '1 month';
    part text := 'usage_minute_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF usage_minute FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
    END IF;
END $$;

-- A batch id is derived at the source (instance:boot:sequence). Its row is written in
-- the same transaction as the batch's usage rows, so a batch applies at most once.
CREATE TABLE applied_batches (
    batch_id    text PRIMARY KEY,
    instance    text NOT NULL,
    rows        integer NOT NULL,
    requests    bigint NOT NULL,
    bytes       bigint NOT NULL,
    stream_id   text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applied_batches_applied_at ON applied_batches (applied_at);

-- Per gateway instance: every request that ended before cutoff has been applied.
CREATE TABLE gateway_watermarks (
    instance    text PRIMARY KEY,
    cutoff      timestamptz NOT NULL,
    running     boolean NOT NULL DEFAULT true,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
