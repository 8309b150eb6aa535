import Foundation
import Logging
import NIOCore
import PostgresNIO
import Signaling

/// The production ``Store`` on PostgreSQL (SPEC §5), over postgres-nio's pooled, non-blocking
/// client. The schema comes from `migrations/*.sql` (see ``Migrator``).
///
/// ``run()`` must be running (it drives the connection pool): the node runs it as a service.
public final class PostgresStore: Store {
    public let client: PostgresClient
    private let logger: Logger
    private let requestTimeout: Duration

    /// - Parameter url: `postgres://user:pass@host:port/db[?sslmode=disable|prefer|require|verify-full]`
    public init(url: String, settings: PostgresSettings = PostgresSettings(), logger: Logger) throws {
        let configuration = try PostgresURL.configuration(url, settings: settings)
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.logger = logger
        self.requestTimeout = settings.requestTimeout
    }

    /// Drives the connection pool until cancelled.
    public func run() async {
        await client.run()
    }

    public func close() async {}

    // MARK: Execution

    private func rows(_ query: PostgresQuery) async throws(StoreError) -> [PostgresRandomAccessRow] {
        try await withDeadline { [client, logger] in
            var collected: [PostgresRandomAccessRow] = []
            for try await row in try await client.query(query, logger: logger) {
                collected.append(PostgresRandomAccessRow(row))
            }
            return collected
        }
    }

    private func execute(_ query: PostgresQuery) async throws(StoreError) -> Int {
        try await withDeadline { [client, logger] in
            var count = 0
            for try await _ in try await client.query(query, logger: logger) { count += 1 }
            return count
        }
    }

    /// Runs `operation`, giving up with `unavailable` after ``PostgresSettings/requestTimeout``.
    /// The operation is cancelled then (which withdraws a pending connection request) but
    /// not waited for: see ``Deadline``.
    private func withDeadline<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws(StoreError) -> T {
        let timeout = requestTimeout
        do {
            return try await Deadline.run(timeout: timeout, operation)
        } catch is Deadline.Exceeded {
            throw StoreError(.unavailable, "postgres did not answer within \(timeout)")
        } catch {
            throw Self.map(error)
        }
    }

    static func map(_ error: any Error) -> StoreError {
        if let error = error as? PSQLError {
            switch error.serverInfo?[.sqlState] {
            case "23505": return StoreError(.conflict, "already exists")
            case "23503": return StoreError(.notFound, "parent row does not exist")
            default: break
            }
            if error.code == .server {
                return StoreError(.unavailable, "postgres: \(error.serverInfo?[.message] ?? "server error")")
            }
        }
        return StoreError(.unavailable, "postgres unavailable")
    }

    // MARK: Tenants

    public func createTenant(_ tenant: Tenant, key: StoredAPIKey) async throws(StoreError) {
        let limits = Self.json(tenant.limits)
        let (client, logger) = (self.client, self.logger)
        _ = try await withDeadline {
            try await Self.insertTenant(tenant, key: key, limits: limits, client: client, logger: logger)
        }
    }

    private static func insertTenant(_ tenant: Tenant, key: StoredAPIKey, limits: String, client: PostgresClient, logger: Logger) async throws {
        do {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("""
                    INSERT INTO tenants (id, name, status, limits, auto_create_rooms, created_at)
                    VALUES (\(tenant.id), \(tenant.name), \(tenant.status.rawValue), \(limits)::jsonb, \(tenant.autoCreateRooms), \(Self.ms(tenant.createdAt)))
                    """, logger: logger)
                try await connection.query("""
                    INSERT INTO api_keys (api_key, tenant_id, sealed_secret, created_at)
                    VALUES (\(key.apiKey), \(key.tenantID), \(ByteBuffer(bytes: key.sealedSecret)), \(Self.ms(key.createdAt)))
                    """, logger: logger)
            }
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error.beginError ?? error.commitError ?? error
        }
    }

    public func tenant(_ id: String) async throws(StoreError) -> Tenant? {
        try await rows("SELECT id, name, status, limits::text, auto_create_rooms, created_at FROM tenants WHERE id = \(id)")
            .first.flatMap(Self.tenant(from:))
    }

    public func tenants(after: String?, limit: Int) async throws(StoreError) -> Page<Tenant> {
        let rows = try await rows("""
            SELECT id, name, status, limits::text, auto_create_rooms, created_at FROM tenants
            WHERE id > \(after ?? "") ORDER BY id LIMIT \(limit + 1)
            """)
        return Self.page(rows.compactMap(Self.tenant(from:)), limit: limit, key: \.id)
    }

    public func updateTenant(_ tenant: Tenant) async throws(StoreError) {
        let changed = try await execute("""
            UPDATE tenants SET name = \(tenant.name), status = \(tenant.status.rawValue), limits = \(Self.json(tenant.limits))::jsonb,
            auto_create_rooms = \(tenant.autoCreateRooms) WHERE id = \(tenant.id) RETURNING 1
            """)
        guard changed > 0 else { throw StoreError(.notFound, "not found") }
    }

    public func deleteTenant(_ id: String) async throws(StoreError) {
        _ = try await execute("DELETE FROM audit_events WHERE tenant_id = \(id)")
        let deleted = try await execute("DELETE FROM tenants WHERE id = \(id) RETURNING 1")
        guard deleted > 0 else { throw StoreError(.notFound, "not found") }
    }

    // MARK: Keys

    public func createKey(_ key: StoredAPIKey) async throws(StoreError) {
        _ = try await execute("""
            INSERT INTO api_keys (api_key, tenant_id, sealed_secret, created_at)
            VALUES (\(key.apiKey), \(key.tenantID), \(ByteBuffer(bytes: key.sealedSecret)), \(Self.ms(key.createdAt)))
            """)
    }

    public func key(_ apiKey: String) async throws(StoreError) -> StoredAPIKey? {
        try await rows("SELECT api_key, tenant_id, sealed_secret, created_at FROM api_keys WHERE api_key = \(apiKey)")
            .first.flatMap(Self.key(from:))
    }

    public func keys(tenantID: String, after: String?, limit: Int) async throws(StoreError) -> Page<StoredAPIKey> {
        let rows = try await rows("""
            SELECT api_key, tenant_id, sealed_secret, created_at FROM api_keys
            WHERE tenant_id = \(tenantID) AND api_key > \(after ?? "") ORDER BY api_key LIMIT \(limit + 1)
            """)
        return Self.page(rows.compactMap(Self.key(from:)), limit: limit, key: \.apiKey)
    }

    public func deleteKey(tenantID: String, apiKey: String) async throws(StoreError) {
        let deleted = try await execute("DELETE FROM api_keys WHERE tenant_id = \(tenantID) AND api_key = \(apiKey) RETURNING 1")
        guard deleted > 0 else { throw StoreError(.notFound, "not found") }
    }

    public func replaceKeySecret(apiKey: String, sealedSecret: [UInt8]) async throws(StoreError) {
        let updated = try await execute("UPDATE api_keys SET sealed_secret = \(ByteBuffer(bytes: sealedSecret)) WHERE api_key = \(apiKey) RETURNING 1")
        guard updated > 0 else { throw StoreError(.notFound, "not found") }
    }

    // MARK: Rooms

    public func createRoom(_ room: Room) async throws(StoreError) {
        _ = try await execute("""
            INSERT INTO rooms (tenant_id, name, max_peers, metadata, created_at)
            VALUES (\(room.tenantID), \(room.name), \(room.maxPeers), \(room.metadata.description)::json, \(Self.ms(room.createdAt)))
            """)
    }

    public func room(tenantID: String, name: String) async throws(StoreError) -> Room? {
        try await rows("""
            SELECT tenant_id, name, max_peers, metadata::text, created_at FROM rooms WHERE tenant_id = \(tenantID) AND name = \(name)
            """).first.flatMap(Self.room(from:))
    }

    public func rooms(tenantID: String, after: String?, limit: Int) async throws(StoreError) -> Page<Room> {
        let rows = try await rows("""
            SELECT tenant_id, name, max_peers, metadata::text, created_at FROM rooms
            WHERE tenant_id = \(tenantID) AND name > \(after ?? "") ORDER BY name COLLATE "C" LIMIT \(limit + 1)
            """)
        return Self.page(rows.compactMap(Self.room(from:)), limit: limit, key: \.name)
    }

    public func updateRoom(_ room: Room) async throws(StoreError) {
        let changed = try await execute("""
            UPDATE rooms SET max_peers = \(room.maxPeers), metadata = \(room.metadata.description)::json
            WHERE tenant_id = \(room.tenantID) AND name = \(room.name) RETURNING 1
            """)
        guard changed > 0 else { throw StoreError(.notFound, "not found") }
    }

    public func deleteRoom(tenantID: String, name: String) async throws(StoreError) {
        let deleted = try await execute("DELETE FROM rooms WHERE tenant_id = \(tenantID) AND name = \(name) RETURNING 1")
        guard deleted > 0 else { throw StoreError(.notFound, "not found") }
    }

    // MARK: Audit

    /// Rows per INSERT statement (a batch of the audit writer is 1000 by default): bigger
    /// ones are split to keep each statement's arrays moderate.
    static let insertChunk = 5000

    /// Multi-row INSERTs, one statement per chunk; `ON CONFLICT DO NOTHING` makes a batch that
    /// is retried after a lost answer harmless. U+0000, which PostgreSQL cannot store, is
    /// written as U+FFFD (``AuditEvent/replacingNUL()``): one such event would otherwise fail
    /// its batch on every retry.
    public func appendEvents(_ events: [AuditEvent]) async throws(StoreError) {
        var start = 0
        while start < events.count {
            let chunk = events[start..<min(events.count, start + Self.insertChunk)].map { $0.replacingNUL() }
            // One array per column, spread into rows by unnest: ten bind parameters however
            // many rows, which PostgreSQL parses and binds much faster than thousands of
            // scalars. Absent room/peer/session travel as '' (never a valid value: ids are
            // non-empty) and become NULL again.
            var bindings = PostgresBindings(capacity: 10)
            bindings.append(chunk.map(\.id))
            bindings.append(chunk.map(\.tenantID))
            bindings.append(chunk.map(\.type.rawValue))
            bindings.append(chunk.map { Self.ms($0.time) })
            bindings.append(chunk.map(\.node))
            bindings.append(chunk.map { $0.room ?? "" })
            bindings.append(chunk.map { $0.peer ?? "" })
            bindings.append(chunk.map { $0.session ?? "" })
            bindings.append(chunk.map(\.data.description))
            bindings.append(Date())
            // One statement: the events, and the webhook outbox rows for those of them that
            // were new and that their tenant's webhook takes (atomic without a transaction).
            let sql = """
                WITH inserted AS (
                    INSERT INTO audit_events (id, tenant_id, type, time, node, room, peer, session, data)
                    SELECT id, tenant_id, type, time, node, NULLIF(room, ''), NULLIF(peer, ''), NULLIF(session, ''), data::json
                    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                        AS e(id, tenant_id, type, time, node, room, peer, session, data)
                    ON CONFLICT DO NOTHING RETURNING id, tenant_id, type, time
                )
                INSERT INTO webhook_deliveries (tenant_id, event_id, event_time, next_attempt_at, created_at)
                SELECT i.tenant_id, i.id, i.time, $10, $10 FROM inserted i JOIN webhooks w ON w.tenant_id = i.tenant_id
                WHERE i.time >= w.created_at AND (w.events IS NULL OR i.type = ANY (w.events)) ON CONFLICT DO NOTHING
                """
            _ = try await execute(PostgresQuery(unsafeSQL: sql, binds: bindings))
            start += Self.insertChunk
        }
    }

    public func events(_ query: AuditQuery) async throws(StoreError) -> Page<AuditEvent> {
        var conditions = ["tenant_id = $1"]
        var bindings = PostgresBindings()
        bindings.append(query.tenantID)
        func add(_ condition: String, _ value: some PostgresNonThrowingEncodable & Sendable) {
            bindings.append(value)
            conditions.append(condition.replacingOccurrences(of: "?", with: "$\(bindings.count)"))
        }
        if let room = query.room { add("room = ?", room) }
        if let peer = query.peer { add("peer = ?", peer) }
        if let type = query.type { add("type = ?", type.rawValue) }
        if let since = query.since { add("time >= ?", Self.ms(since)) }
        if let until = query.until { add("time < ?", Self.ms(until)) }
        if let before = query.before { add("id < ?", before) }
        bindings.append(query.limit + 1)
        let sql = """
            SELECT id, tenant_id, type, time, node, room, peer, session, data::text FROM audit_events
            WHERE \(conditions.joined(separator: " AND ")) ORDER BY id DESC LIMIT $\(bindings.count)
            """
        let rows = try await rows(PostgresQuery(unsafeSQL: sql, binds: bindings))
        return Self.page(rows.compactMap(Self.event(from:)), limit: query.limit, key: \.id)
    }

    /// Retention: drops whole daily partitions before the cutoff and deletes the rest row by
    /// row (`switchboard_delete_audit_events_before`, one node at a time).
    @discardableResult
    public func deleteEvents(before cutoff: Date) async throws(StoreError) -> Int {
        let rows = try await rows("SELECT switchboard_delete_audit_events_before(\(Self.ms(cutoff))) AS removed")
        return (try? rows.first?["removed"].decode(Int.self)) ?? 0
    }

    /// Creates the audit log's daily partitions for today and the next `daysAhead` days.
    @discardableResult
    public func ensureAuditPartitions(daysAhead: Int = 2) async throws(StoreError) -> Int {
        let rows = try await rows("SELECT switchboard_ensure_audit_partitions(\(Int32(daysAhead))::integer) AS created")
        return (try? rows.first?["created"].decode(Int.self)) ?? 0
    }

    public func ping() async throws(StoreError) {
        _ = try await execute("SELECT 1")
    }

    // MARK: Webhooks

    public func putWebhook(_ webhook: Webhook) async throws(StoreError) {
        _ = try await execute("""
            INSERT INTO webhooks (tenant_id, url, events, sealed_secret, created_at, updated_at)
            VALUES (\(webhook.tenantID), \(webhook.url), \(webhook.events?.map(\.rawValue)), \(ByteBuffer(bytes: webhook.sealedSecret)),
            \(Self.ms(webhook.createdAt)), \(Self.ms(webhook.updatedAt)))
            ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, events = excluded.events,
            sealed_secret = excluded.sealed_secret, updated_at = excluded.updated_at
            """)
    }

    public func webhook(tenantID: String) async throws(StoreError) -> Webhook? {
        try await rows("""
            SELECT tenant_id, url, events, sealed_secret, created_at, updated_at FROM webhooks WHERE tenant_id = \(tenantID)
            """).first.flatMap(Self.webhook(from:))
    }

    public func deleteWebhook(tenantID: String) async throws(StoreError) {
        let deleted = try await execute("DELETE FROM webhooks WHERE tenant_id = \(tenantID) RETURNING 1")
        guard deleted > 0 else { throw StoreError(.notFound, "not found") }
    }

    /// Claims with `FOR UPDATE SKIP LOCKED`, so nodes claiming at once get different rows, and
    /// leases by moving `next_attempt_at` to `leaseUntil`; the event comes from the log by
    /// its primary key (one partition).
    public func claimDeliveries(now: Date, leaseUntil: Date, limit: Int, excluding: [String]) async throws(StoreError) -> [WebhookDelivery] {
        let rows = try await rows("""
            WITH due AS (
                SELECT tenant_id, event_id FROM webhook_deliveries
                WHERE next_attempt_at <= \(Self.ms(now)) AND tenant_id <> ALL (\(excluding)::text[])
                ORDER BY next_attempt_at LIMIT \(limit) FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE webhook_deliveries d SET next_attempt_at = \(Self.ms(leaseUntil)) FROM due
                WHERE d.tenant_id = due.tenant_id AND d.event_id = due.event_id
                RETURNING d.tenant_id, d.event_id, d.event_time, d.attempts, d.created_at
            )
            SELECT c.tenant_id, c.event_id, c.attempts, c.created_at AS queued_at, w.url, w.sealed_secret,
            e.id, e.type, e.time, e.node, e.room, e.peer, e.session, e.data::text AS data
            FROM claimed c JOIN webhooks w ON w.tenant_id = c.tenant_id
            LEFT JOIN audit_events e ON e.time = c.event_time AND e.id = c.event_id
            ORDER BY c.created_at
            """)
        return rows.compactMap(Self.delivery(from:))
    }

    public func finishDelivery(tenantID: String, eventID: String) async throws(StoreError) {
        _ = try await execute("DELETE FROM webhook_deliveries WHERE tenant_id = \(tenantID) AND event_id = \(eventID)")
    }

    public func rescheduleDelivery(tenantID: String, eventID: String, attempts: Int, next: Date, error: String) async throws(StoreError) {
        _ = try await execute("""
            UPDATE webhook_deliveries SET attempts = \(attempts), next_attempt_at = \(Self.ms(next)), last_error = \(error)
            WHERE tenant_id = \(tenantID) AND event_id = \(eventID)
            """)
    }

    public func expireDeliveries(queuedBefore cutoff: Date) async throws(StoreError) -> Int {
        try await execute("DELETE FROM webhook_deliveries WHERE created_at < \(Self.ms(cutoff)) RETURNING 1")
    }

    public func pendingDeliveryCount() async throws(StoreError) -> Int {
        let rows = try await rows("SELECT count(*) AS pending FROM webhook_deliveries")
        return (try? rows.first?["pending"].decode(Int.self)) ?? 0
    }

    // MARK: Rows

    private static func page<T>(_ items: [T], limit: Int, key: KeyPath<T, String>) -> Page<T> {
        guard items.count > limit else { return Page(items: items, next: nil) }
        let page = Array(items.prefix(limit))
        return Page(items: page, next: page.last?[keyPath: key])
    }

    /// Times are kept to the millisecond, as the SQLite store and the API show them.
    static func ms(_ date: Date) -> Date {
        Timestamp.date(milliseconds: Timestamp.milliseconds(date))
    }

    private static func json(_ limits: TenantLimits) -> String {
        (try? JSONEncoder().encode(limits)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    private static func tenant(from row: PostgresRandomAccessRow) -> Tenant? {
        guard let id = try? row["id"].decode(String.self), let name = try? row["name"].decode(String.self),
            let status = (try? row["status"].decode(String.self)).flatMap(TenantStatus.init(rawValue:)),
            let limitsText = try? row["limits"].decode(String.self),
            let limits = try? JSONDecoder().decode(TenantLimits.self, from: Data(limitsText.utf8)),
            let auto = try? row["auto_create_rooms"].decode(Bool.self), let created = try? row["created_at"].decode(Date.self)
        else { return nil }
        return Tenant(id: id, name: name, status: status, limits: limits, autoCreateRooms: auto, createdAt: ms(created))
    }

    private static func key(from row: PostgresRandomAccessRow) -> StoredAPIKey? {
        guard let apiKey = try? row["api_key"].decode(String.self), let tenantID = try? row["tenant_id"].decode(String.self),
            let sealed = try? row["sealed_secret"].decode(ByteBuffer.self), let created = try? row["created_at"].decode(Date.self)
        else { return nil }
        return StoredAPIKey(apiKey: apiKey, tenantID: tenantID, sealedSecret: Array(buffer: sealed), createdAt: ms(created))
    }

    private static func room(from row: PostgresRandomAccessRow) -> Room? {
        guard let tenantID = try? row["tenant_id"].decode(String.self), let name = try? row["name"].decode(String.self),
            let maxPeers = try? row["max_peers"].decode(Int.self), let metadata = try? row["metadata"].decode(String.self),
            let created = try? row["created_at"].decode(Date.self)
        else { return nil }
        return Room(
            tenantID: tenantID, name: name, maxPeers: maxPeers, metadata: (try? RawJSON(validating: metadata)) ?? .emptyObject,
            createdAt: ms(created))
    }

    private static func webhook(from row: PostgresRandomAccessRow) -> Webhook? {
        guard let tenantID = try? row["tenant_id"].decode(String.self), let url = try? row["url"].decode(String.self),
            let sealed = try? row["sealed_secret"].decode(ByteBuffer.self), let created = try? row["created_at"].decode(Date.self),
            let updated = try? row["updated_at"].decode(Date.self)
        else { return nil }
        let events = (try? row["events"].decode([String]?.self))?.map { $0.compactMap(AuditEventType.init(rawValue:)) }
        return Webhook(
            tenantID: tenantID, url: url, events: events, sealedSecret: Array(buffer: sealed), createdAt: ms(created),
            updatedAt: ms(updated))
    }

    private static func delivery(from row: PostgresRandomAccessRow) -> WebhookDelivery? {
        guard let tenantID = try? row["tenant_id"].decode(String.self), let eventID = try? row["event_id"].decode(String.self),
            let attempts = try? row["attempts"].decode(Int.self), let queued = try? row["queued_at"].decode(Date.self),
            let url = try? row["url"].decode(String.self), let sealed = try? row["sealed_secret"].decode(ByteBuffer.self)
        else { return nil }
        return WebhookDelivery(
            tenantID: tenantID, eventID: eventID, attempts: attempts, createdAt: ms(queued), url: url,
            sealedSecret: Array(buffer: sealed), event: event(from: row))
    }

    private static func event(from row: PostgresRandomAccessRow) -> AuditEvent? {
        guard let id = try? row["id"].decode(String.self), let tenantID = try? row["tenant_id"].decode(String.self),
            let type = (try? row["type"].decode(String.self)).flatMap(AuditEventType.init(rawValue:)),
            let time = try? row["time"].decode(Date.self), let node = try? row["node"].decode(String.self),
            let data = try? row["data"].decode(String.self)
        else { return nil }
        return AuditEvent(
            id: id, type: type, tenantID: tenantID, time: ms(time), node: node, room: try? row["room"].decode(String?.self),
            peer: try? row["peer"].decode(String?.self), session: try? row["session"].decode(String?.self),
            data: (try? RawJSON(validating: data)) ?? .emptyObject)
    }
}
