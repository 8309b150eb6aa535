-- Switchboard's PostgreSQL schema, version 2: tenant webhooks and their delivery outbox
-- (SPEC §4 /v1/webhook). The embedded SQLite schema has the same tables (SQLiteSchema
-- version 2).
--
-- A delivery is queued by the audit batch writer in the same statement that inserts its
-- event (a data-modifying CTE), so an event is in the log and in the outbox, or in neither;
-- deliveries survive restarts. Any node's dispatcher claims due rows with
-- FOR UPDATE SKIP LOCKED and leases them by moving next_attempt_at past the lease, so a
-- node that dies mid-delivery only delays the row until its lease ends.

CREATE TABLE webhooks (
    tenant_id     text        COLLATE "C" PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url           text        NOT NULL,
    -- The audit event types delivered; NULL delivers every type.
    events        text[],
    -- AES-GCM box of the webhook secret under the master key (associated data
    -- "webhook:<tenant>").
    sealed_secret bytea       NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- The event itself stays in audit_events: (event_time, event_id) is its primary key there.
CREATE TABLE webhook_deliveries (
    tenant_id       text        COLLATE "C" NOT NULL REFERENCES webhooks (tenant_id) ON DELETE CASCADE,
    event_id        text        COLLATE "C" NOT NULL,
    event_time      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    last_error      text,
    PRIMARY KEY (tenant_id, event_id)
);

-- The dispatcher's scan: due rows, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at);
