import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO
import Signaling

/// The embedded default ``Store``: one SQLite file (SPEC §1 `SWITCHBOARD_SQLITE_PATH`).
///
/// One connection, used by one operation at a time (SQLite has one writer anyway), which also
/// keeps multi-statement transactions whole. The schema is applied at open and versioned
/// with `PRAGMA user_version` (see ``SQLiteSchema``).
public final class SQLiteStore: Store {
    private let connection: SQLiteConnection
    private let gate = SerialGate()
    private let logger: Logger

    private init(connection: SQLiteConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    public static func open(path: String, logger: Logger) async throws -> SQLiteStore {
        let connection = try await SQLiteConnection.open(
            storage: .file(path: path), threadPool: NIOThreadPool.singleton, logger: logger,
            on: MultiThreadedEventLoopGroup.singleton.any())
        let store = SQLiteStore(connection: connection, logger: logger)
        try await store.prepare()
        return store
    }

    private func prepare() async throws {
        _ = try await connection.query("PRAGMA journal_mode=WAL")
        _ = try await connection.query("PRAGMA synchronous=NORMAL")
        _ = try await connection.query("PRAGMA foreign_keys=ON")
        _ = try await connection.query("PRAGMA busy_timeout=5000")
        // A 1 MiB page cache instead of SQLite's 2 MiB default: the audit log only appends
        // (its hot pages are the right edge of each B-tree) and reads of older pages come
        // from the kernel's page cache, so the extra MiB bought nothing but resident memory.
        _ = try await connection.query("PRAGMA cache_size=-1024")
        let version = try await connection.query("PRAGMA user_version").first?.column("user_version")?.integer ?? 0
        for (index, statements) in SQLiteSchema.versions.enumerated() where index + 1 > version {
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                for statement in statements { _ = try await connection.query(statement) }
                _ = try await connection.query("PRAGMA user_version = \(index + 1)")
                _ = try await connection.query("COMMIT")
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
            logger.info("sqlite schema migrated", metadata: ["version": "\(index + 1)"])
        }
    }

    public func close() async {
        try? await connection.close()
    }

    // MARK: Execution

    private func run(_ sql: String, _ binds: [SQLiteData] = []) async throws(StoreError) -> [SQLiteRow] {
        try await exclusively { () async throws(StoreError) in try await execute(sql, binds) }
    }

    private func exclusively<T>(_ body: () async throws(StoreError) -> T) async throws(StoreError) -> T {
        await gate.enter()
        do {
            let result = try await body()
            await gate.leave()
            return result
        } catch {
            await gate.leave()
            throw error
        }
    }

    private func execute(_ sql: String, _ binds: [SQLiteData]) async throws(StoreError) -> [SQLiteRow] {
        do {
            return try await connection.query(sql, binds)
        } catch let error as SQLiteError {
            throw Self.map(error)
        } catch {
            throw StoreError(.unavailable, "sqlite: \(error)")
        }
    }

    /// Runs several statements as one transaction, in a task of its own: SQLiteNIO checks for
    /// cancellation on every query, ROLLBACK included, so a caller cancelled half-way (the
    /// audit writer on graceful shutdown, a dropped request) would otherwise leave the
    /// transaction open and every later BEGIN failing.
    private func transaction(_ statements: [(String, [SQLiteData])]) async throws(StoreError) {
        let outcome = await Task { () async -> Result<Void, StoreError> in
            do throws(StoreError) {
                try await self.exclusively { () async throws(StoreError) in
                    _ = try await self.execute("BEGIN IMMEDIATE", [])
                    do throws(StoreError) {
                        for (sql, binds) in statements { _ = try await self.execute(sql, binds) }
                        _ = try await self.execute("COMMIT", [])
                    } catch {
                        _ = try? await self.execute("ROLLBACK", [])
                        throw error
                    }
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }.value
        try outcome.get()
    }

    private static func map(_ error: SQLiteError) -> StoreError {
        switch error.reason {
        case .constraint, .constraintUniqueFailed, .constraintPrimaryKeyFailed:
            StoreError(.conflict, "already exists")
        case .constraintForeignKeyFailed:
            StoreError(.notFound, "parent row does not exist")
        default:
            StoreError(.unavailable, "sqlite: \(error.message)")
        }
    }

    // MARK: Tenants

    public func createTenant(_ tenant: Tenant, key: StoredAPIKey) async throws(StoreError) {
        try await transaction([
            (
                "INSERT INTO tenants (id, name, status, limits, auto_create_rooms, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                Self.binds(tenant)
            ),
            ("INSERT INTO api_keys (api_key, tenant_id, sealed_secret, created_at) VALUES (?, ?, ?, ?)", Self.binds(key)),
        ])
    }

    public func tenant(_ id: String) async throws(StoreError) -> Tenant? {
        try await run("SELECT * FROM tenants WHERE id = ?", [.text(id)]).first.flatMap(Self.tenant(from:))
    }

    public func tenants(after: String?, limit: Int) async throws(StoreError) -> Page<Tenant> {
        let rows = try await run(
            "SELECT * FROM tenants WHERE id > ? ORDER BY id LIMIT ?", [.text(after ?? ""), .integer(limit + 1)])
        return Self.page(rows.compactMap(Self.tenant(from:)), limit: limit, key: \.id)
    }

    public func updateTenant(_ tenant: Tenant) async throws(StoreError) {
        let binds = Self.binds(tenant)
        try await expectChange(
            "UPDATE tenants SET name = ?, status = ?, limits = ?, auto_create_rooms = ? WHERE id = ?",
            Array(binds[1...4]) + [binds[0]])
    }

    public func deleteTenant(_ id: String) async throws(StoreError) {
        guard try await tenant(id) != nil else { throw StoreError(.notFound, "not found") }
        try await transaction([
            ("DELETE FROM audit_events WHERE tenant_id = ?", [.text(id)]),
            ("DELETE FROM tenants WHERE id = ?", [.text(id)]),
        ])
    }

    // MARK: Keys

    public func createKey(_ key: StoredAPIKey) async throws(StoreError) {
        _ = try await run("INSERT INTO api_keys (api_key, tenant_id, sealed_secret, created_at) VALUES (?, ?, ?, ?)", Self.binds(key))
    }

    public func key(_ apiKey: String) async throws(StoreError) -> StoredAPIKey? {
        try await run("SELECT * FROM api_keys WHERE api_key = ?", [.text(apiKey)]).first.flatMap(Self.key(from:))
    }

    public func keys(tenantID: String, after: String?, limit: Int) async throws(StoreError) -> Page<StoredAPIKey> {
        let rows = try await run(
            "SELECT * FROM api_keys WHERE tenant_id = ? AND api_key > ? ORDER BY api_key LIMIT ?",
            [.text(tenantID), .text(after ?? ""), .integer(limit + 1)])
        return Self.page(rows.compactMap(Self.key(from:)), limit: limit, key: \.apiKey)
    }

    public func deleteKey(tenantID: String, apiKey: String) async throws(StoreError) {
        try await expectChange("DELETE FROM api_keys WHERE tenant_id = ? AND api_key = ?", [.text(tenantID), .text(apiKey)])
    }

    public func replaceKeySecret(apiKey: String, sealedSecret: [UInt8]) async throws(StoreError) {
        try await expectChange("UPDATE api_keys SET sealed_secret = ? WHERE api_key = ?", [.blob(ByteBuffer(bytes: sealedSecret)), .text(apiKey)])
    }

    // MARK: Rooms

    public func createRoom(_ room: Room) async throws(StoreError) {
        _ = try await run(
            "INSERT INTO rooms (tenant_id, name, max_peers, metadata, created_at) VALUES (?, ?, ?, ?, ?)",
            [.text(room.tenantID), .text(room.name), .integer(room.maxPeers), .text(room.metadata.description),
             .integer(Int(Timestamp.milliseconds(room.createdAt)))])
    }

    public func room(tenantID: String, name: String) async throws(StoreError) -> Room? {
        try await run("SELECT * FROM rooms WHERE tenant_id = ? AND name = ?", [.text(tenantID), .text(name)])
            .first.flatMap(Self.room(from:))
    }

    public func rooms(tenantID: String, after: String?, limit: Int) async throws(StoreError) -> Page<Room> {
        let rows = try await run(
            "SELECT * FROM rooms WHERE tenant_id = ? AND name > ? ORDER BY name LIMIT ?",
            [.text(tenantID), .text(after ?? ""), .integer(limit + 1)])
        return Self.page(rows.compactMap(Self.room(from:)), limit: limit, key: \.name)
    }

    public func updateRoom(_ room: Room) async throws(StoreError) {
        try await expectChange(
            "UPDATE rooms SET max_peers = ?, metadata = ? WHERE tenant_id = ? AND name = ?",
            [.integer(room.maxPeers), .text(room.metadata.description), .text(room.tenantID), .text(room.name)])
    }

    public func deleteRoom(tenantID: String, name: String) async throws(StoreError) {
        try await expectChange("DELETE FROM rooms WHERE tenant_id = ? AND name = ?", [.text(tenantID), .text(name)])
    }

    // MARK: Audit

    /// Rows per INSERT: SQLite allows 32766 bound parameters; 9 a row.
    private static let insertChunk = 500

    public func appendEvents(_ events: [AuditEvent]) async throws(StoreError) {
        guard !events.isEmpty else { return }
        var statements: [(String, [SQLiteData])] = []
        var start = 0
        while start < events.count {
            let chunk = events[start..<min(events.count, start + Self.insertChunk)]
            let placeholders = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", ")
            var binds: [SQLiteData] = []
            binds.reserveCapacity(chunk.count * 9)
            for event in chunk {
                binds += [
                    .text(event.id), .text(event.tenantID), .text(event.type.rawValue),
                    .integer(Int(Timestamp.milliseconds(event.time))), .text(event.node),
                    event.room.map(SQLiteData.text) ?? .null, event.peer.map(SQLiteData.text) ?? .null,
                    event.session.map(SQLiteData.text) ?? .null, .text(event.data.description),
                ]
            }
            statements.append((
                "INSERT OR IGNORE INTO audit_events (id, tenant_id, type, time, node, room, peer, session, data) VALUES \(placeholders)",
                binds
            ))
            // The webhook outbox, in the same transaction and before the events go in: a
            // delivery for each event of this chunk that is not stored yet (a batch or a
            // spill file stored twice queues nothing twice), that its tenant's webhook
            // takes and that was recorded since the webhook was set.
            let now = SQLiteData.integer(Int(Timestamp.milliseconds(Date())))
            let rows = Array(repeating: "(?, ?, ?, ?)", count: chunk.count).joined(separator: ", ")
            var outbox: [SQLiteData] = []
            outbox.reserveCapacity(chunk.count * 4 + 2)
            for event in chunk {
                outbox += [.text(event.id), .text(event.tenantID), .text(event.type.rawValue), .integer(Int(Timestamp.milliseconds(event.time)))]
            }
            statements.insert((
                """
                WITH batch(id, tenant_id, type, time) AS (VALUES \(rows))
                INSERT OR IGNORE INTO webhook_deliveries (tenant_id, event_id, attempts, next_attempt_at, created_at)
                SELECT b.tenant_id, b.id, 0, ?, ? FROM batch b JOIN webhooks w ON w.tenant_id = b.tenant_id
                WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.id = b.id) AND b.time >= w.created_at
                AND (w.events IS NULL OR instr(w.events, '"' || b.type || '"') > 0)
                """,
                outbox + [now, now]
            ), at: statements.count - 1)
            start += Self.insertChunk
        }
        try await transaction(statements)
    }

    public func events(_ query: AuditQuery) async throws(StoreError) -> Page<AuditEvent> {
        var conditions = ["tenant_id = ?"]
        var binds: [SQLiteData] = [.text(query.tenantID)]
        if let room = query.room {
            conditions.append("room = ?")
            binds.append(.text(room))
        }
        if let peer = query.peer {
            conditions.append("peer = ?")
            binds.append(.text(peer))
        }
        if let type = query.type {
            conditions.append("type = ?")
            binds.append(.text(type.rawValue))
        }
        if let since = query.since {
            conditions.append("time >= ?")
            binds.append(.integer(Int(Timestamp.milliseconds(since))))
        }
        if let until = query.until {
            conditions.append("time < ?")
            binds.append(.integer(Int(Timestamp.milliseconds(until))))
        }
        if let before = query.before {
            conditions.append("id < ?")
            binds.append(.text(before))
        }
        binds.append(.integer(query.limit + 1))
        let rows = try await run(
            "SELECT * FROM audit_events WHERE \(conditions.joined(separator: " AND ")) ORDER BY id DESC LIMIT ?", binds)
        return Self.page(rows.compactMap(Self.event(from:)), limit: query.limit, key: \.id)
    }

    @discardableResult
    public func deleteEvents(before cutoff: Date) async throws(StoreError) -> Int {
        let rows = try await run(
            "DELETE FROM audit_events WHERE time < ? RETURNING id", [.integer(Int(Timestamp.milliseconds(cutoff)))])
        return rows.count
    }

    public func ping() async throws(StoreError) {
        _ = try await run("SELECT 1")
    }

    // MARK: Webhooks

    public func putWebhook(_ webhook: Webhook) async throws(StoreError) {
        let events: SQLiteData = webhook.events.map { .text(Self.eventsJSON($0)) } ?? .null
        _ = try await run("""
            INSERT INTO webhooks (tenant_id, url, events, sealed_secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, events = excluded.events,
            sealed_secret = excluded.sealed_secret, updated_at = excluded.updated_at
            """, [
                .text(webhook.tenantID), .text(webhook.url), events, .blob(ByteBuffer(bytes: webhook.sealedSecret)),
                .integer(Int(Timestamp.milliseconds(webhook.createdAt))), .integer(Int(Timestamp.milliseconds(webhook.updatedAt))),
            ])
    }

    public func webhook(tenantID: String) async throws(StoreError) -> Webhook? {
        try await run("SELECT * FROM webhooks WHERE tenant_id = ?", [.text(tenantID)]).first.flatMap(Self.webhook(from:))
    }

    public func deleteWebhook(tenantID: String) async throws(StoreError) {
        try await expectChange("DELETE FROM webhooks WHERE tenant_id = ?", [.text(tenantID)])
    }

    public func claimDeliveries(now: Date, leaseUntil: Date, limit: Int, excluding: [String]) async throws(StoreError) -> [WebhookDelivery] {
        let skip = excluding.isEmpty ? "" : " AND d.tenant_id NOT IN (\(Array(repeating: "?", count: excluding.count).joined(separator: ", ")))"
        return try await exclusively { () async throws(StoreError) in
            let rows = try await execute("""
                SELECT d.tenant_id, d.event_id, d.attempts, d.created_at AS queued_at, w.url, w.sealed_secret,
                e.id, e.type, e.time, e.node, e.room, e.peer, e.session, e.data
                FROM webhook_deliveries d JOIN webhooks w ON w.tenant_id = d.tenant_id
                LEFT JOIN audit_events e ON e.id = d.event_id AND e.tenant_id = d.tenant_id
                WHERE d.next_attempt_at <= ?\(skip) ORDER BY d.next_attempt_at LIMIT ?
                """, [.integer(Int(Timestamp.milliseconds(now)))] + excluding.map { .text($0) } + [.integer(limit)])
            let deliveries = rows.compactMap(Self.delivery(from:))
            guard !deliveries.isEmpty else { return [] }
            let pairs = Array(repeating: "(?, ?)", count: deliveries.count).joined(separator: ", ")
            var binds: [SQLiteData] = [.integer(Int(Timestamp.milliseconds(leaseUntil)))]
            for delivery in deliveries { binds += [.text(delivery.tenantID), .text(delivery.eventID)] }
            _ = try await execute(
                "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE (tenant_id, event_id) IN (VALUES \(pairs))", binds)
            return deliveries
        }
    }

    public func finishDelivery(tenantID: String, eventID: String) async throws(StoreError) {
        _ = try await run("DELETE FROM webhook_deliveries WHERE tenant_id = ? AND event_id = ?", [.text(tenantID), .text(eventID)])
    }

    public func rescheduleDelivery(tenantID: String, eventID: String, attempts: Int, next: Date, error: String) async throws(StoreError) {
        _ = try await run("""
            UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE tenant_id = ? AND event_id = ?
            """, [.integer(attempts), .integer(Int(Timestamp.milliseconds(next))), .text(error), .text(tenantID), .text(eventID)])
    }

    public func expireDeliveries(queuedBefore cutoff: Date) async throws(StoreError) -> Int {
        try await run("DELETE FROM webhook_deliveries WHERE created_at < ? RETURNING 1", [.integer(Int(Timestamp.milliseconds(cutoff)))]).count
    }

    public func pendingDeliveryCount() async throws(StoreError) -> Int {
        try await run("SELECT count(*) AS pending FROM webhook_deliveries").first?.column("pending")?.integer ?? 0
    }

    /// `["session.started","room.created"]`: the types, quoted, so that `instr` finds `"type"`.
    private static func eventsJSON(_ events: [AuditEventType]) -> String {
        "[" + events.map { "\"\($0.rawValue)\"" }.joined(separator: ",") + "]"
    }

    private static func events(fromJSON text: String) -> [AuditEventType]? {
        guard let names = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else { return nil }
        return names.compactMap(AuditEventType.init(rawValue:))
    }

    private static func webhook(from row: SQLiteRow) -> Webhook? {
        guard let tenantID = row.column("tenant_id")?.string, let url = row.column("url")?.string,
            let sealed = row.column("sealed_secret")?.blob, let created = row.column("created_at")?.integer,
            let updated = row.column("updated_at")?.integer
        else { return nil }
        return Webhook(
            tenantID: tenantID, url: url, events: row.column("events")?.string.flatMap(Self.events(fromJSON:)),
            sealedSecret: Array(buffer: sealed), createdAt: Timestamp.date(milliseconds: Int64(created)),
            updatedAt: Timestamp.date(milliseconds: Int64(updated)))
    }

    private static func delivery(from row: SQLiteRow) -> WebhookDelivery? {
        guard let tenantID = row.column("tenant_id")?.string, let eventID = row.column("event_id")?.string,
            let attempts = row.column("attempts")?.integer, let queued = row.column("queued_at")?.integer,
            let url = row.column("url")?.string, let sealed = row.column("sealed_secret")?.blob
        else { return nil }
        return WebhookDelivery(
            tenantID: tenantID, eventID: eventID, attempts: attempts, createdAt: Timestamp.date(milliseconds: Int64(queued)),
            url: url, sealedSecret: Array(buffer: sealed), event: event(from: row))
    }

    // MARK: Rows

    private func expectChange(_ sql: String, _ binds: [SQLiteData]) async throws(StoreError) {
        let rows = try await run(sql + " RETURNING 1", binds)
        guard !rows.isEmpty else { throw StoreError(.notFound, "not found") }
    }

    private static func page<T>(_ items: [T], limit: Int, key: KeyPath<T, String>) -> Page<T> {
        guard items.count > limit else { return Page(items: items, next: nil) }
        let page = Array(items.prefix(limit))
        return Page(items: page, next: page.last?[keyPath: key])
    }

    private static func binds(_ tenant: Tenant) -> [SQLiteData] {
        let limits = (try? JSONEncoder().encode(tenant.limits)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return [
            .text(tenant.id), .text(tenant.name), .text(tenant.status.rawValue), .text(limits),
            .integer(tenant.autoCreateRooms ? 1 : 0), .integer(Int(Timestamp.milliseconds(tenant.createdAt))),
        ]
    }

    private static func binds(_ key: StoredAPIKey) -> [SQLiteData] {
        [.text(key.apiKey), .text(key.tenantID), .blob(ByteBuffer(bytes: key.sealedSecret)),
         .integer(Int(Timestamp.milliseconds(key.createdAt)))]
    }

    private static func tenant(from row: SQLiteRow) -> Tenant? {
        guard let id = row.column("id")?.string, let name = row.column("name")?.string,
            let status = row.column("status")?.string.flatMap(TenantStatus.init(rawValue:)),
            let limitsText = row.column("limits")?.string,
            let limits = try? JSONDecoder().decode(TenantLimits.self, from: Data(limitsText.utf8)),
            let created = row.column("created_at")?.integer
        else { return nil }
        return Tenant(
            id: id, name: name, status: status, limits: limits,
            autoCreateRooms: row.column("auto_create_rooms")?.bool ?? true,
            createdAt: Timestamp.date(milliseconds: Int64(created)))
    }

    private static func key(from row: SQLiteRow) -> StoredAPIKey? {
        guard let apiKey = row.column("api_key")?.string, let tenantID = row.column("tenant_id")?.string,
            let sealed = row.column("sealed_secret")?.blob, let created = row.column("created_at")?.integer
        else { return nil }
        return StoredAPIKey(
            apiKey: apiKey, tenantID: tenantID, sealedSecret: Array(buffer: sealed),
            createdAt: Timestamp.date(milliseconds: Int64(created)))
    }

    private static func room(from row: SQLiteRow) -> Room? {
        guard let tenantID = row.column("tenant_id")?.string, let name = row.column("name")?.string,
            let maxPeers = row.column("max_peers")?.integer, let metadata = row.column("metadata")?.string,
            let created = row.column("created_at")?.integer
        else { return nil }
        return Room(
            tenantID: tenantID, name: name, maxPeers: maxPeers,
            metadata: (try? RawJSON(validating: metadata)) ?? .emptyObject,
            createdAt: Timestamp.date(milliseconds: Int64(created)))
    }

    private static func event(from row: SQLiteRow) -> AuditEvent? {
        guard let id = row.column("id")?.string, let tenantID = row.column("tenant_id")?.string,
            let type = row.column("type")?.string.flatMap(AuditEventType.init(rawValue:)),
            let time = row.column("time")?.integer, let node = row.column("node")?.string,
            let data = row.column("data")?.string
        else { return nil }
        return AuditEvent(
            id: id, type: type, tenantID: tenantID, time: Timestamp.date(milliseconds: Int64(time)), node: node,
            room: row.column("room")?.string, peer: row.column("peer")?.string, session: row.column("session")?.string,
            data: (try? RawJSON(validating: data)) ?? .emptyObject)
    }
}

/// Lets one operation at a time use the connection, in arrival order.
actor SerialGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func leave() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
