-- 009: the views that dashboards read (Grafana's PostgreSQL panels, dashboards/), and a
-- read-only role for Grafana that may read these views and nothing else. Every view reads
-- usage the way the usage API does: rolled-up hours from usage_hourly, the rest by minute,
-- plus usage_adjustments; anonymous traffic is attributed to the org whose network range
-- holds it (org_networks, most specific wins, as hm_network_org() does). Months are UTC.

-- Every usage row once, with its attribution: org_id is the org the row belongs to (its
-- key's org, or the org whose range holds an anonymous network, else NULL); keyed tells
-- the two apart; traffic is 'commercial' (attributed to a commercial org), 'keyed' (an
-- org's key, not commercial) or 'anonymous' (no key, not attributed to a commercial org).
-- The network lookup is written out rather than calling hm_network_org(): a function in a
-- view runs with the reader's rights, and the Grafana role may not read org_networks.
CREATE VIEW dash_usage AS
WITH c AS (SELECT coalesce((SELECT hour FROM rollup_cursor), '-infinity'::timestamptz) AS hour),
rows AS (
    SELECT bucket, org_id, key_id, network, repo, method, status_class, refused_by, requests,
           bytes
      FROM usage_minute
     WHERE bucket >= (SELECT hour FROM c)
        OR date_trunc('hour', bucket) IN (SELECT hour FROM rollup_dirty)
    UNION ALL
    SELECT bucket, org_id, key_id, network, repo, method, status_class, refused_by, requests,
           bytes
      FROM usage_hourly
     WHERE bucket < (SELECT hour FROM c) AND bucket NOT IN (SELECT hour FROM rollup_dirty)
    UNION ALL
    SELECT bucket, org_id, key_id, network, repo, '', status_class, '', requests, bytes
      FROM usage_adjustments
)
SELECT r.bucket, r.org_id IS NOT NULL AS keyed, o.id AS org_id, o.slug AS org,
       coalesce(o.class, 'unknown') AS class, r.key_id, r.network, r.repo, r.method,
       r.status_class, r.refused_by, r.requests, r.bytes,
       CASE WHEN o.class = 'commercial' THEN 'commercial'
            WHEN r.org_id IS NOT NULL THEN 'keyed'
            ELSE 'anonymous' END AS traffic
  FROM rows r
  LEFT JOIN LATERAL (SELECT n.org_id FROM org_networks n
                      WHERE r.org_id IS NULL AND n.network >>= r.network
                      ORDER BY masklen(n.network) DESC LIMIT 1) m ON true
  LEFT JOIN orgs o ON o.id = coalesce(r.org_id, m.org_id);
COMMENT ON VIEW dash_usage IS
    'Every usage row once (minute, rolled-up hour or adjustment) with its attributed org and traffic kind.';

-- Usage per hour, org and repository (the "usage by org and repository" dashboard).
CREATE VIEW dash_usage_hourly AS
SELECT date_trunc('hour', bucket) AS hour, org_id, coalesce(org, '(anonymous)') AS org, class,
       traffic, repo, sum(requests)::bigint AS requests, sum(bytes)::bigint AS bytes,
       (coalesce(sum(requests) FILTER (WHERE refused_by <> ''), 0))::bigint AS refused
  FROM dash_usage
 GROUP BY 1, 2, 3, 4, 5, 6;

-- Per attributed org and UTC month: bytes of all its traffic, bytes of its keys (what its
-- plan's monthly quota counts), requests and refusals.
CREATE VIEW dash_org_month AS
SELECT date_trunc('month', u.bucket, 'UTC') AS month, u.org_id, u.org, u.class,
       coalesce(p.name, '') AS plan, coalesce(p.monthly_bytes, 0) AS monthly_bytes,
       sum(u.bytes)::bigint AS bytes,
       (coalesce(sum(u.bytes) FILTER (WHERE u.keyed), 0))::bigint AS keyed_bytes,
       sum(u.requests)::bigint AS requests,
       (coalesce(sum(u.requests) FILTER (WHERE u.refused_by <> ''), 0))::bigint AS refused
  FROM dash_usage u
  JOIN orgs o ON o.id = u.org_id
  LEFT JOIN plans p ON p.id = o.plan_id
 WHERE u.org_id IS NOT NULL
 GROUP BY 1, 2, 3, 4, 5, 6;

-- This UTC month's consumers, heaviest first, with their class and share of all bytes
-- served this month (anonymous traffic included in the total).
CREATE VIEW dash_top_consumers AS
WITH total AS (SELECT sum(bytes) AS bytes FROM dash_usage
                WHERE bucket >= date_trunc('month', now(), 'UTC'))
SELECT m.org, m.class, m.plan, m.bytes, m.keyed_bytes, m.requests, m.refused,
       CASE WHEN t.bytes > 0 THEN round(100.0 * m.bytes / t.bytes, 2) ELSE 0 END AS share_pct
  FROM dash_org_month m CROSS JOIN total t
 WHERE m.month = date_trunc('month', now(), 'UTC')
 ORDER BY m.bytes DESC;

-- Bytes per hour and traffic kind (anonymous vs keyed vs commercial).
CREATE VIEW dash_traffic_share AS
SELECT date_trunc('hour', bucket) AS hour, traffic, sum(bytes)::bigint AS bytes,
       sum(requests)::bigint AS requests
  FROM dash_usage
 GROUP BY 1, 2;

-- Refused requests per hour, org and refusing policy (usage rows with refused_by <> '').
-- Anonymous refusals carry org '(anonymous)' unless their network is attributed.
CREATE VIEW dash_refusals AS
SELECT date_trunc('hour', bucket) AS hour, org_id, coalesce(org, '(anonymous)') AS org,
       refused_by AS policy, sum(requests)::bigint AS requests
  FROM dash_usage
 WHERE refused_by <> ''
 GROUP BY 1, 2, 3, 4;

-- Quota pressure per org in its current quota period (which starts on the org's anchor day,
-- UTC): what its keys used against its plan's monthly bytes, and its refusals in the period.
-- Orgs with a monthly quota or with refusals appear.
CREATE VIEW dash_quota_pressure AS
WITH periods AS (
    SELECT o.id, o.slug, o.class, coalesce(p.name, '') AS plan,
           coalesce(p.monthly_bytes, 0) AS monthly_bytes,
           CASE WHEN extract(day FROM now() AT TIME ZONE 'UTC') >= o.anchor_day
                THEN date_trunc('month', now(), 'UTC') + (o.anchor_day - 1) * interval '1 day'
                ELSE date_trunc('month', now(), 'UTC') - interval '1 month'
                     + (o.anchor_day - 1) * interval '1 day' END AS period_start
      FROM orgs o LEFT JOIN plans p ON p.id = o.plan_id
),
used AS (
    SELECT p.id, (coalesce(sum(u.bytes) FILTER (WHERE u.keyed), 0))::bigint AS used_bytes,
           (coalesce(sum(u.requests) FILTER (WHERE u.refused_by <> ''), 0))::bigint AS refused,
           string_agg(DISTINCT nullif(u.refused_by, ''), ',') AS policies,
           max(u.bucket) FILTER (WHERE u.refused_by <> '') AS last_refusal
      FROM periods p JOIN dash_usage u ON u.org_id = p.id AND u.bucket >= p.period_start
     GROUP BY p.id
)
SELECT p.slug AS org, p.class, p.plan, p.period_start, p.monthly_bytes,
       coalesce(u.used_bytes, 0) AS used_bytes,
       CASE WHEN p.monthly_bytes > 0
            THEN round(100.0 * coalesce(u.used_bytes, 0) / p.monthly_bytes, 2) END AS used_pct,
       coalesce(u.refused, 0) AS refused, coalesce(u.policies, '') AS policies, u.last_refusal
  FROM periods p LEFT JOIN used u ON u.id = p.id
 WHERE p.monthly_bytes > 0 OR coalesce(u.refused, 0) > 0;

-- Month-end forecast per org for this UTC month: bytes so far plus the rate of the last
-- seven days (or of the month so far, when younger) over what is left of the month.
-- forecast_pct compares the forecast of its keys' bytes with the plan's monthly bytes.
CREATE VIEW dash_forecast AS
WITH w AS (
    SELECT date_trunc('month', now(), 'UTC') AS month_start,
           date_trunc('month', now(), 'UTC') + interval '1 month' AS month_end,
           greatest(now() - interval '7 days', date_trunc('month', now(), 'UTC')) AS rate_from
),
o AS (
    SELECT u.org_id, u.org, u.class, sum(u.bytes) AS mtd,
           coalesce(sum(u.bytes) FILTER (WHERE u.keyed), 0) AS keyed_mtd,
           coalesce(sum(u.bytes) FILTER (WHERE u.bucket >= w.rate_from), 0) AS recent,
           coalesce(sum(u.bytes) FILTER (WHERE u.keyed AND u.bucket >= w.rate_from), 0)
               AS keyed_recent
      FROM dash_usage u CROSS JOIN w
     WHERE u.org_id IS NOT NULL AND u.bucket >= w.month_start AND u.bucket < w.month_end
     GROUP BY 1, 2, 3
),
f AS (
    SELECT o.*, greatest(extract(epoch FROM now() - w.rate_from), 60) AS rate_s,
           greatest(extract(epoch FROM w.month_end - now()), 0) AS left_s
      FROM o CROSS JOIN w
)
SELECT f.org, f.class, coalesce(p.name, '') AS plan, coalesce(p.monthly_bytes, 0) AS monthly_bytes,
       f.mtd::bigint AS bytes_so_far,
       round(f.recent / f.rate_s)::bigint AS bytes_per_second,
       round(f.mtd + f.recent / f.rate_s * f.left_s)::bigint AS forecast_bytes,
       round(f.keyed_mtd + f.keyed_recent / f.rate_s * f.left_s)::bigint AS keyed_forecast_bytes,
       CASE WHEN p.monthly_bytes > 0
            THEN round(100.0 * (f.keyed_mtd + f.keyed_recent / f.rate_s * f.left_s)
                       / p.monthly_bytes, 1) END AS forecast_pct
  FROM f JOIN orgs og ON og.id = f.org_id LEFT JOIN plans p ON p.id = og.plan_id
 ORDER BY forecast_bytes DESC;

-- Pipeline health, per gateway: how far behind its watermark is (every request that ended
-- before cutoff is in PostgreSQL) and when it was last heard from.
CREATE VIEW dash_pipeline_gateways AS
SELECT instance, cutoff, running, seen_at,
       greatest(extract(epoch FROM now() - cutoff), 0)::bigint AS lag_seconds,
       greatest(extract(epoch FROM now() - seen_at), 0)::bigint AS silent_seconds
  FROM gateway_watermarks;

-- Batches the flushers applied, per minute and gateway instance.
CREATE VIEW dash_pipeline_batches AS
SELECT date_trunc('minute', applied_at) AS minute, instance, count(*)::bigint AS batches,
       sum(rows)::bigint AS rows, sum(requests)::bigint AS requests, sum(bytes)::bigint AS bytes
  FROM applied_batches
 GROUP BY 1, 2;

-- Reconciliation, as `hubmeter usage reconcile` computes it: the usage rows must add up to
-- the applied batches (drift 0), and how far the data is complete.
CREATE VIEW dash_reconciliation AS
WITH c AS (SELECT coalesce((SELECT hour FROM rollup_cursor), '-infinity'::timestamptz) AS hour),
rows AS (
    SELECT coalesce(sum(r), 0)::bigint AS requests, coalesce(sum(b), 0)::bigint AS bytes FROM (
        SELECT requests AS r, bytes AS b FROM usage_minute
         WHERE bucket >= (SELECT hour FROM c)
            OR date_trunc('hour', bucket) IN (SELECT hour FROM rollup_dirty)
        UNION ALL
        SELECT requests, bytes FROM usage_hourly
         WHERE bucket < (SELECT hour FROM c) AND bucket NOT IN (SELECT hour FROM rollup_dirty)
        UNION ALL
        SELECT requests, bytes FROM usage_adjustments WHERE source IS NOT NULL) t
),
batches AS (
    SELECT coalesce(sum(requests), 0)::bigint AS requests, coalesce(sum(bytes), 0)::bigint AS bytes
      FROM applied_batches
)
SELECT rows.requests AS usage_requests, rows.bytes AS usage_bytes,
       batches.requests AS batch_requests, batches.bytes AS batch_bytes,
       rows.requests - batches.requests AS drift_requests, rows.bytes - batches.bytes AS drift_bytes,
       least(now(), (SELECT min(cutoff) FROM gateway_watermarks
                      WHERE running AND seen_at > now() - interval '60 seconds')) AS complete_until
  FROM rows CROSS JOIN batches;

-- The read-only role Grafana's PostgreSQL datasource logs in as. Roles belong to the whole
-- cluster, so it may exist already (another database, an earlier run); it is created
-- without a password (the operator sets one: README "Dashboards"), and it may read the
-- dash_ views only. A migrating user without CREATEROLE skips the role with a notice.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hubmeter_grafana') THEN
        BEGIN
            CREATE ROLE hubmeter_grafana LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL; -- created meanwhile
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'hubmeter_grafana not created (no CREATEROLE): create it and grant SELECT on the dash_ views';
                RETURN;
        END;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO hubmeter_grafana', current_database());
    GRANT USAGE ON SCHEMA public TO hubmeter_grafana;
    GRANT SELECT ON dash_usage, dash_usage_hourly, dash_org_month, dash_top_consumers,
                    dash_traffic_share, dash_refusals, dash_quota_pressure, dash_forecast,
                    dash_pipeline_gateways, dash_pipeline_batches, dash_reconciliation
          TO hubmeter_grafana;
END $$;
