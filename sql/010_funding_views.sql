-- 010: the funding-asks views that the Grafana dashboard "funding asks by period"
-- (dashboards/grafana/dashboards/funding.json) reads, granted to the read-only role
-- hubmeter_grafana of 009. They read the report snapshots that billing/ stores in
-- funding_reports (008): each period's latest snapshot is the report `hubmeter report funding`
-- and GET /admin/v1/reports/funding show, with its figures as generated (integer
-- micro-units of the report's currency, bytes, basis points).

-- The latest snapshot of each period, with its totals.
CREATE VIEW dash_funding_reports AS
SELECT DISTINCT ON (f.period)
       f.period, f.id AS snapshot_id, f.generated_at, f.month_to_date,
       (f.report ->> 'month_closed')::boolean AS month_closed,
       f.report ->> 'currency' AS currency,
       (f.report -> 'totals' ->> 'bytes')::bigint AS bytes,
       (f.report -> 'totals' ->> 'requests')::bigint AS requests,
       (f.report -> 'totals' ->> 'period_cost_micros')::bigint AS period_cost_micros,
       (f.report -> 'totals' ->> 'commercial_cost_micros')::bigint AS commercial_cost_micros,
       (f.report -> 'totals' ->> 'commercial_share_bp')::bigint AS commercial_share_bp,
       (f.report -> 'totals' ->> 'asks_micros')::bigint AS asks_micros,
       (f.report -> 'totals' ->> 'asked_orgs')::bigint AS asked_orgs,
       (f.report -> 'totals' ->> 'review_asks_micros')::bigint AS review_asks_micros,
       (f.report -> 'totals' ->> 'review_orgs')::bigint AS review_orgs,
       (f.report -> 'totals' ->> 'consumers')::bigint AS consumers,
       (f.report -> 'projection' ->> 'period_cost_micros')::bigint AS projected_cost_micros
  FROM funding_reports f
 ORDER BY f.period, f.id DESC;

-- Every consumer of each period's latest snapshot, with its cost, ask and why (ask_status:
-- ask, review, within_allowance, below_threshold, exempt, unattributed).
CREATE VIEW dash_funding_consumers AS
SELECT r.period, r.snapshot_id, r.currency,
       (c ->> 'rank')::int AS rank, c ->> 'consumer' AS consumer, c ->> 'kind' AS kind,
       nullif(c ->> 'org', '') AS org, nullif(c ->> 'class', '') AS class,
       (c ->> 'bytes')::bigint AS bytes, (c ->> 'requests')::bigint AS requests,
       (c ->> 'byte_share_bp')::bigint AS byte_share_bp,
       (c ->> 'cost_micros')::bigint AS cost_micros,
       (c ->> 'allowance_micros')::bigint AS allowance_micros,
       (c ->> 'ask_micros')::bigint AS ask_micros, c ->> 'ask_status' AS ask_status,
       (c ->> 'trend_percent')::bigint AS trend_percent
  FROM dash_funding_reports r
  JOIN funding_reports f ON f.id = r.snapshot_id
 CROSS JOIN LATERAL json_array_elements(f.report -> 'consumers') AS c;

-- Every snapshot ever taken: how a period's asks moved as it was regenerated.
CREATE VIEW dash_funding_snapshots AS
SELECT f.period, f.id AS snapshot_id, f.generated_at, f.month_to_date,
       (f.report -> 'totals' ->> 'period_cost_micros')::bigint AS period_cost_micros,
       (f.report -> 'totals' ->> 'asks_micros')::bigint AS asks_micros,
       (f.report -> 'totals' ->> 'review_asks_micros')::bigint AS review_asks_micros
  FROM funding_reports f;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hubmeter_grafana') THEN
        GRANT SELECT ON dash_funding_reports, dash_funding_consumers, dash_funding_snapshots
              TO hubmeter_grafana;
    ELSE
        RAISE NOTICE 'hubmeter_grafana does not exist: grant SELECT on the dash_funding_ views once it does';
    END IF;
END $$;
