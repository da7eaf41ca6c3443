-- 003: what funding reports need beyond usage rows. The distinct client addresses seen per
-- hour and org/key (anonymous traffic has no org), and bytes per object (ETag) per day and
-- repository, so that "bytes fetched / unique bytes" (re-downloading the same files) can
-- be computed.

CREATE TABLE usage_clients_hourly (
    hour     timestamptz NOT NULL,
    org_id   bigint,
    key_id   bigint,
    address  inet NOT NULL,
    CONSTRAINT usage_clients_hourly_key UNIQUE NULLS NOT DISTINCT (hour, org_id, key_id, address)
);
CREATE INDEX usage_clients_hourly_org ON usage_clients_hourly (org_id, hour);

CREATE TABLE usage_objects_daily (
    day       timestamptz NOT NULL,
    org_id    bigint,
    repo      text NOT NULL,
    etag      text NOT NULL,
    requests  bigint NOT NULL CHECK (requests >= 0),
    bytes     bigint NOT NULL CHECK (bytes >= 0),
    CONSTRAINT usage_objects_daily_key UNIQUE NULLS NOT DISTINCT (day, org_id, repo, etag)
);
CREATE INDEX usage_objects_daily_org ON usage_objects_daily (org_id, day);
