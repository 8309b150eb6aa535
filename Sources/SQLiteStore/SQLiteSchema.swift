/// The embedded store's schema, one entry per version, applied in order at open and recorded
/// in `PRAGMA user_version`. Never edit an entry that has shipped: append a new one.
/// (PostgreSQL's schema lives in `migrations/*.sql`, applied by `switchboard migrate`.)
enum SQLiteSchema {
    static let versions: [[String]] = [
        [
            """
            CREATE TABLE tenants (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                status TEXT NOT NULL,
                limits TEXT NOT NULL,
                auto_create_rooms INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE api_keys (
                api_key TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
                sealed_secret BLOB NOT NULL,
                created_at INTEGER NOT NULL
            )
            """,
            "CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, api_key)",
            """
            CREATE TABLE rooms (
                tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                max_peers INTEGER NOT NULL,
                metadata TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (tenant_id, name)
            )
            """,
            """
            CREATE TABLE audit_events (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                type TEXT NOT NULL,
                time INTEGER NOT NULL,
                node TEXT NOT NULL,
                room TEXT,
                peer TEXT,
                session TEXT,
                data TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_by_tenant ON audit_events (tenant_id, id)",
            "CREATE INDEX audit_by_room ON audit_events (tenant_id, room, id)",
            "CREATE INDEX audit_by_peer ON audit_events (tenant_id, peer, id)",
            "CREATE INDEX audit_by_time ON audit_events (time)",
        ],
        // 2: webhooks and their delivery outbox (PostgreSQL: migrations/0002_webhooks.sql).
        // `events` is a JSON array of type names, NULL for every type.
        [
            """
            CREATE TABLE webhooks (
                tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
                url TEXT NOT NULL,
                events TEXT,
                sealed_secret BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE webhook_deliveries (
                tenant_id TEXT NOT NULL REFERENCES webhooks(tenant_id) ON DELETE CASCADE,
                event_id TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                last_error TEXT,
                PRIMARY KEY (tenant_id, event_id)
            )
            """,
            "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)",
        ],
    ]
}
