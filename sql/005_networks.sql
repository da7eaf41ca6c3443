-- 005: CIDR ranges mapped to orgs (registry/). Anonymous usage is recorded per client
-- network (/24, /48); reports and usage views attribute it to the org whose range holds
-- that network, the most specific range winning. Applied at report time, so a mapping
-- added today also attributes last month's anonymous traffic. Enforcement is unaffected:
-- anonymous traffic always uses the anonymous plan.

CREATE TABLE org_networks (
    id          bigserial PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES orgs (id),
    network     cidr NOT NULL UNIQUE,
    note        text NOT NULL DEFAULT '' CHECK (length(note) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX org_networks_org ON org_networks (org_id);
CREATE INDEX org_networks_net ON org_networks USING gist (network inet_ops);

-- The org a recorded client network belongs to: the most specific mapped range that
-- contains it, or NULL.
CREATE FUNCTION hm_network_org(net cidr) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT org_id FROM org_networks WHERE network >>= net
     ORDER BY masklen(network) DESC LIMIT 1
$$;
