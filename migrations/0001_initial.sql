-- Switchboard's PostgreSQL schema, version 1: tenants, API keys, rooms and the audit log
-- (SPEC §5). The same data as the embedded SQLite schema (Sources/SQLiteStore/SQLiteSchema.swift).
-- Applied once, in one transaction, by `switchboard migrate`; never edit it once shipped, add
-- 0002_….sql instead (the runner refuses a changed file).
--
-- Times are timestamptz (UTC instants, millisecond values from the app). JSON documents
-- are validated on the way in: tenant limits as jsonb (the app decodes them), room metadata
-- and event data as json, which keeps the client's text byte for byte (jsonb would
-- normalise key order and whitespace).
-- Ids and names that are compared, ordered or paginated on are COLLATE "C": byte order, the
-- same as SQLite's, which ULIDs need to sort by time, whatever the database's locale (and
-- cheaper to compare).

CREATE TABLE tenants (
    id                text        COLLATE "C" PRIMARY KEY,
    name              text        NOT NULL,
    status            text        NOT NULL,
    limits            jsonb       NOT NULL,
    auto_create_rooms boolean     NOT NULL,
    created_at        timestamptz NOT NULL
);

CREATE TABLE api_keys (
    api_key       text        COLLATE "C" PRIMARY KEY,
    tenant_id     text        COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    sealed_secret bytea       NOT NULL,
    created_at    timestamptz NOT NULL
);

-- A tenant's keys in key order (keyset pagination); also serves the cascade from tenants.
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, api_key);

CREATE TABLE rooms (
    tenant_id  text        COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text        COLLATE "C" NOT NULL,
    max_peers  integer     NOT NULL,
    metadata   json        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- The audit log, partitioned by day on `time` (UTC days). `id` is a ULID (26 characters,
-- Crockford base32, lexically time-ordered); lists are newest first by id, keyset-paginated
-- with `id < $cursor`. The primary key must contain the partition key, hence (time, id); it
-- also serves `since`/`until` ranges and retention. No foreign key to tenants: deleting a
-- tenant deletes its events explicitly, and the batch writer must not fail on a tenant that
-- was deleted a moment ago.
--
-- Daily partitions are audit_events_pYYYYMMDD, made by switchboard_ensure_audit_partition(s)
-- below, ahead of time. Rows for a day without a partition land in audit_events_default, so
-- an insert never fails for want of one; ensuring that day's partition later moves them.
CREATE TABLE audit_events (
    id        text        COLLATE "C" NOT NULL,
    tenant_id text        COLLATE "C" NOT NULL,
    type      text        COLLATE "C" NOT NULL,
    time      timestamptz NOT NULL,
    node      text        NOT NULL,
    room      text        COLLATE "C",
    peer      text        COLLATE "C",
    session   text,
    data      json        NOT NULL,
    PRIMARY KEY (time, id)
) PARTITION BY RANGE (time);

CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- One index per filter of GET /v1/events and /v1/rooms/{room}/events, each ending in id so
-- that `WHERE tenant_id = $1 [AND room|peer|type = $2] [AND id < $cursor] ORDER BY id DESC
-- LIMIT n` reads n rows from each partition's index (a Merge Append across partitions;
-- `since`/`until` on time prune partitions). Events without a room or peer (tenant.*, key.*,
-- some auth.rejected) are left out of those two indexes.
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id DESC);
CREATE INDEX audit_events_by_room ON audit_events (tenant_id, room, id DESC) WHERE room IS NOT NULL;
CREATE INDEX audit_events_by_peer ON audit_events (tenant_id, peer, id DESC) WHERE peer IS NOT NULL;
CREATE INDEX audit_events_by_type ON audit_events (tenant_id, type, id DESC);

-- Serialises partition maintenance (creating, attaching, dropping) across nodes.
-- Key: the first 8 bytes of md5('switchboard_audit_partitions') as a bigint.
CREATE FUNCTION switchboard_audit_partition_lock() RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(('x' || left(md5('switchboard_audit_partitions'), 16))::bit(64)::bigint)
$$;

-- Makes sure the partition for the UTC day `day`, audit_events_pYYYYMMDD holding
-- [day 00:00 UTC, day+1 00:00 UTC), exists. Returns true if it created it, false if it was
-- there already. Safe to call from several nodes at once and at any time:
--   * the new table is built on its own and then ATTACHed, which takes only a SHARE UPDATE
--     EXCLUSIVE lock on audit_events, so inserts and queries for other days go on;
--   * rows of that day already sitting in audit_events_default (the partition was not made in
--     time) are moved into the new partition in the same transaction, under an ACCESS
--     EXCLUSIVE lock on audit_events_default only (plain CREATE TABLE … PARTITION OF would
--     fail on them);
--   * waits at most 5 s for locks (lock_timeout), then fails; just call it again later.
CREATE FUNCTION switchboard_ensure_audit_partition(day date) RETURNS boolean
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    partition_name text := 'audit_events_p' || to_char(day, 'YYYYMMDD');
    -- Schema-qualified, next to audit_events whatever the caller's search_path.
    qualified_name text := (SELECT quote_ident(n.nspname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE c.oid = 'audit_events'::regclass) || '.' || quote_ident(partition_name);
    -- ISO literals with an explicit offset: the same instant whatever DateStyle and TimeZone.
    lower_bound text := to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00';
    upper_bound text := to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
BEGIN
    IF to_regclass(qualified_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM switchboard_audit_partition_lock();
    IF to_regclass(qualified_name) IS NOT NULL THEN
        RETURN false;  -- another node made it while we waited
    END IF;

    -- Nothing may enter the default partition until the new one is attached.
    LOCK TABLE audit_events_default IN ACCESS EXCLUSIVE MODE;

    EXECUTE format(
        'CREATE TABLE %s (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)',
        qualified_name);
    -- The partition constraint as a CHECK lets ATTACH skip scanning the new table.
    EXECUTE format(
        'ALTER TABLE %s ADD CONSTRAINT %I CHECK (time >= %L AND time < %L)',
        qualified_name, partition_name || '_range', lower_bound, upper_bound);
    EXECUTE format(
        'WITH moved AS (DELETE FROM audit_events_default WHERE time >= %L AND time < %L RETURNING *)
         INSERT INTO %s SELECT * FROM moved',
        lower_bound, upper_bound, qualified_name);
    EXECUTE format(
        'ALTER TABLE audit_events ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
        qualified_name, lower_bound, upper_bound);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', qualified_name, partition_name || '_range');
    RETURN true;
END
$$;

-- Ensures the partitions of today (UTC) and the next `days_ahead` days; returns how many it
-- created. Call it at start and then periodically (hourly is plenty), from every node.
CREATE FUNCTION switchboard_ensure_audit_partitions(days_ahead integer DEFAULT 2) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    created integer := 0;
BEGIN
    FOR offset_days IN 0..greatest(days_ahead, 0) LOOP
        IF switchboard_ensure_audit_partition(today + offset_days) THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$;

-- Retention: removes every audit event with time < cutoff and returns how many it removed
-- (exact, except that partitions of 100,000+ rows count by the planner's estimate).
-- Daily partitions wholly before the cutoff are dropped; what remains before
-- the cutoff (the default partition, and the part of the cutoff's own day) is deleted row by
-- row. Pass a cutoff at a UTC midnight to drop whole days only. One node at a time (the
-- partition lock); waits at most 5 s for locks, then fails: call it again later.
CREATE FUNCTION switchboard_delete_audit_events_before(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    part record;
    part_count bigint;
    removed bigint := 0;
BEGIN
    PERFORM switchboard_audit_partition_lock();
    FOR part IN
        SELECT c.oid::regclass AS name
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_events'::regclass
          AND c.relname ~ '^audit_events_p[0-9]{8}$'
          AND (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
        ORDER BY c.relname
    LOOP
        -- Exact for small partitions; the planner's estimate for big ones (a count(*) of a
        -- day at full ingest could outlast statement_timeout, and this is only reported).
        SELECT reltuples::bigint INTO part_count FROM pg_class WHERE oid = part.name;
        IF part_count < 100000 THEN
            EXECUTE format('SELECT count(*) FROM %s', part.name) INTO part_count;
        END IF;
        EXECUTE format('DROP TABLE %s', part.name);
        removed := removed + part_count;
    END LOOP;
    DELETE FROM audit_events WHERE time < cutoff;
    GET DIAGNOSTICS part_count = ROW_COUNT;
    RETURN removed + part_count;
END
$$;
