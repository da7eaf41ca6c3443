-- 008: funding reports (billing/). hm_usage_rows() reads a period's usage the way the
-- usage API does (rolled-up hours from usage_hourly, the rest by minute, plus the signed
-- adjustments), so dropped minute partitions and late batches change nothing;
-- hm_funding_rows() resolves each row's consumer (keyed org, else the org whose mapped
-- range holds the anonymous network, else the network itself). funding_reports keeps
-- every generated report with its cost model: a period shows the same figures later.

CREATE FUNCTION hm_usage_rows(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, org_id bigint, network cidr, repo text, refused boolean,
               requests bigint, bytes bigint)
LANGUAGE sql STABLE AS $$
    WITH c AS (SELECT coalesce((SELECT hour FROM rollup_cursor), '-infinity') AS hour)
    SELECT m.bucket, m.org_id, m.network, m.repo, m.refused_by <> '', m.requests, m.bytes
      FROM usage_minute m
     WHERE m.bucket >= lo AND m.bucket < hi
       AND (m.bucket >= (SELECT hour FROM c)
            OR date_trunc('hour', m.bucket) IN (SELECT hour FROM rollup_dirty))
    UNION ALL
    SELECT h.bucket, h.org_id, h.network, h.repo, h.refused_by <> '', h.requests, h.bytes
      FROM usage_hourly h
     WHERE h.bucket >= lo AND h.bucket < hi AND h.bucket < (SELECT hour FROM c)
       AND h.bucket NOT IN (SELECT hour FROM rollup_dirty)
    UNION ALL
    SELECT a.bucket, a.org_id, a.network, a.repo, false, a.requests, a.bytes
      FROM usage_adjustments a
     WHERE a.bucket >= lo AND a.bucket < hi
$$;

-- The same rows with their consumer: org_id is the keyed org or the org that the anonymous
-- network is mapped to (hm_network_org, applied now, so mappings are retroactive);
-- network is kept only when no org claims it.
CREATE FUNCTION hm_funding_rows(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, org_id bigint, network cidr, repo text, refused boolean,
               requests bigint, bytes bigint)
LANGUAGE sql STABLE AS $$
    WITH u AS (SELECT * FROM hm_usage_rows(lo, hi)),
         nets AS (SELECT n.network, hm_network_org(n.network) AS org_id
                    FROM (SELECT DISTINCT u.network FROM u
                           WHERE u.org_id IS NULL AND u.network IS NOT NULL) n)
    SELECT u.bucket, coalesce(u.org_id, nets.org_id),
           CASE WHEN u.org_id IS NULL AND nets.org_id IS NULL THEN u.network END,
           u.repo, u.refused, u.requests, u.bytes
      FROM u LEFT JOIN nets ON u.org_id IS NULL AND nets.network = u.network
$$;

-- The earliest usage of any kind: periods ending before it are unknown to reports.
CREATE FUNCTION hm_usage_first() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT least((SELECT min(bucket) FROM usage_minute), (SELECT min(bucket) FROM usage_hourly),
                 (SELECT min(bucket) FROM usage_adjustments))
$$;

CREATE TABLE funding_reports (
    id             bigserial PRIMARY KEY,
    period         timestamptz NOT NULL
                   CHECK (period = date_trunc('month', period AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
    generated_at   timestamptz NOT NULL DEFAULT now(),
    month_to_date  boolean NOT NULL,
    cost_model     json NOT NULL,           -- billing/cost_model.c's JSON form
    report         json NOT NULL            -- the report document, as generated
);
CREATE INDEX funding_reports_period ON funding_reports (period, id);
COMMENT ON TABLE funding_reports IS
    'Funding-report snapshots: a closed month is shown from its latest snapshot unless regenerated.';
