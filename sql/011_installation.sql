-- 011: the installation's identity. One row, a random UUID made when the schema is first
-- migrated (kept by a dump and restore, so a moved database stays the same installation).
-- The shipper and the flusher claim their Redis database for it (key hm:installation):
-- two installations given the same Redis database would otherwise read each other's usage
-- stream and apply it to the wrong PostgreSQL database.
CREATE TABLE installation (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    singleton boolean NOT NULL DEFAULT true UNIQUE CHECK (singleton)
);
INSERT INTO installation DEFAULT VALUES;
