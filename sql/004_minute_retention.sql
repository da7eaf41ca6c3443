-- 004: retention of minute data. A month's minute partition may be dropped once the month
-- is closed, every hour of it is rolled up (none dirty), and it ended more than `keep` ago;
-- from then on its usage is read from the hourly rollup, which holds exactly the same sums.

CREATE FUNCTION hm_drop_old_minutes(keep interval) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    m timestamptz;
    n integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7238412);
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'usage_minute'::regclass AND c.relname ~ '^usage_minute_[0-9]{6}$'
    LOOP
        m := (substr(part.relname, 14, 4) || '-' || substr(part.relname, 18, 2)
              || '-01 00:00:00+00')::timestamptz;
        IF m + interval '1 month' < now() - keep
           AND EXISTS (SELECT 1 FROM closed_months WHERE month = m)
           AND (SELECT hour FROM rollup_cursor) >= m + interval '1 month'
           AND NOT EXISTS (SELECT 1 FROM rollup_dirty
                            WHERE hour >= m AND hour < m + interval '1 month') THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;
