-- 002: history and corrections. Hourly, daily and monthly rollups of usage_minute, each
-- recomputed and replaced for a bucket (never added to), so a rerun is harmless; hours
-- touched by late batches are marked and recomputed. Months close a grace period after
-- the watermark passes their end; usage arriving later for a closed month, and operators'
-- corrections, are signed adjustment rows with a reason and an author, never rewrites.

CREATE TABLE usage_hourly (LIKE usage_minute INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_hourly ADD CONSTRAINT usage_hourly_key UNIQUE NULLS NOT DISTINCT
    (bucket, org_id, key_id, network, repo, method, status_class, refused_by);
CREATE INDEX usage_hourly_org ON usage_hourly (org_id, bucket);
CREATE TABLE usage_daily (LIKE usage_hourly INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_daily ADD CONSTRAINT usage_daily_key UNIQUE NULLS NOT DISTINCT
    (bucket, org_id, key_id, network, repo, method, status_class, refused_by);
CREATE INDEX usage_daily_org ON usage_daily (org_id, bucket);
CREATE TABLE usage_monthly (LIKE usage_hourly INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_monthly ADD CONSTRAINT usage_monthly_key UNIQUE NULLS NOT DISTINCT
    (bucket, org_id, key_id, network, repo, method, status_class, refused_by);

-- Hours whose minute rows changed after they were rolled up (late batches).
CREATE TABLE rollup_dirty (hour timestamptz PRIMARY KEY);
-- The last hour rolled up in order (the watermark's hour).
CREATE TABLE rollup_cursor (id boolean PRIMARY KEY DEFAULT true CHECK (id), hour timestamptz NOT NULL);

CREATE TABLE closed_months (
    month      timestamptz PRIMARY KEY,
    closed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE usage_adjustments (
    id            bigserial PRIMARY KEY,
    bucket        timestamptz NOT NULL,
    org_id        bigint,
    key_id        bigint,
    network       cidr,
    repo          text NOT NULL DEFAULT '',
    status_class  smallint NOT NULL DEFAULT 2 CHECK (status_class BETWEEN 1 AND 5),
    requests      bigint NOT NULL,               -- signed
    bytes         bigint NOT NULL,               -- signed
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    author        text NOT NULL CHECK (length(author) BETWEEN 1 AND 200),
    source        text,                          -- the late batch, when the flusher wrote it
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_adjustments_org ON usage_adjustments (org_id, bucket);

-- Replaces the rows of bucket lo in dst with the sums of src over [lo, lo + width).
CREATE FUNCTION hm_rollup_level(src regclass, dst regclass, lo timestamptz, width interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %s WHERE bucket = $1', dst) USING lo;
    EXECUTE format('INSERT INTO %s (bucket, org_id, key_id, network, repo, method, status_class,'
                   ' refused_by, requests, bytes)'
                   ' SELECT $1, org_id, key_id, network, repo, method, status_class, refused_by,'
                   ' sum(requests), sum(bytes) FROM %s WHERE bucket >= $1 AND bucket < $1 + $2'
                   ' GROUP BY 2, 3, 4, 5, 6, 7, 8', dst, src) USING lo, width;
END $$;

-- Recomputes the rollups of one hour, its day and its month from the level below.
CREATE FUNCTION hm_rollup_hour(h timestamptz) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hm_rollup_level('usage_minute', 'usage_hourly', h, interval '1 hour');
    PERFORM hm_rollup_level('usage_hourly', 'usage_daily', date_trunc('day', h), interval '1 day');
    PERFORM hm_rollup_level('usage_daily', 'usage_monthly', date_trunc('month', h),
                            interval '1 month');
END $$;

-- Rolls up every complete hour up to the watermark, then the hours marked dirty, and
-- closes the months whose end lies grace before the watermark. Returns hours rolled up.
CREATE FUNCTION hm_rollup(watermark timestamptz, grace interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    upto timestamptz := date_trunc('hour', watermark);
    h timestamptz;
    n integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7238412);
    SELECT hour INTO h FROM rollup_cursor;
    IF h IS NULL THEN
        SELECT date_trunc('hour', min(bucket)) INTO h FROM usage_minute;
        IF h IS NULL THEN
            h := upto;
        END IF;
        INSERT INTO rollup_cursor (hour) VALUES (h);
    END IF;
    WHILE h < upto LOOP
        PERFORM hm_rollup_hour(h);
        h := h + interval '1 hour';
        n := n + 1;
    END LOOP;
    UPDATE rollup_cursor SET hour = h;
    FOR h IN DELETE FROM rollup_dirty WHERE hour < upto RETURNING hour LOOP
        PERFORM hm_rollup_hour(h);
        n := n + 1;
    END LOOP;
    INSERT INTO closed_months (month)
    SELECT g FROM generate_series(
               coalesce((SELECT max(month) + interval '1 month' FROM closed_months),
                        (SELECT date_trunc('month', min(bucket)) FROM usage_hourly)),
               date_trunc('month', watermark - grace) - interval '1 month',
               interval '1 month') g
    WHERE g IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN n;
END $$;
