import Foundation
import Logging
import PostgresNIO
import PostgresStore
import SQLiteStore
import Signaling
import Testing

/// One contract, two stores: every `Store` behaves the same on SQLite (embedded) and on
/// PostgreSQL (a real server: `DATABASE_URL`, which `scripts/test` always sets).
enum StoreContract {
    static let now = Date(timeIntervalSince1970: 1_800_000_000.123)

    static func tenant(_ id: String) -> Tenant {
        Tenant(id: id, name: "Tenant \(id)", createdAt: now)
    }

    static func key(_ apiKey: String, tenant: String) -> StoredAPIKey {
        StoredAPIKey(apiKey: apiKey, tenantID: tenant, sealedSecret: [1, 2, 3, 255], createdAt: now)
    }

    static func tenantsAndKeys(_ store: any Store) async throws {
        try await store.createTenant(tenant("acme"), key: key("AKacme1", tenant: "acme"))
        try await store.createTenant(tenant("beta"), key: key("AKbeta1", tenant: "beta"))
        try await store.createTenant(tenant("cora"), key: key("AKcora1", tenant: "cora"))
        await #expect(throws: StoreError(.conflict, "already exists")) {
            try await store.createTenant(tenant("acme"), key: key("AKacme9", tenant: "acme"))
        }
        // A failed create leaves nothing behind (one transaction).
        #expect(try await store.key("AKacme9") == nil)
        #expect(try await store.tenant("acme") == tenant("acme"))
        let first = try await store.tenants(after: nil, limit: 2)
        #expect(first.items.map(\.id) == ["acme", "beta"] && first.next == "beta")
        let second = try await store.tenants(after: first.next, limit: 2)
        #expect(second.items.map(\.id) == ["cora"] && second.next == nil)

        var updated = tenant("beta")
        updated.status = .suspended
        updated.limits.messagesPerSecond = 7
        updated.autoCreateRooms = false
        try await store.updateTenant(updated)
        #expect(try await store.tenant("beta") == updated)
        await #expect(throws: StoreError.self) { try await store.updateTenant(tenant("nope")) }

        try await store.createKey(key("AKacme2", tenant: "acme"))
        #expect(try await store.key("AKacme2")?.sealedSecret == [1, 2, 3, 255])
        let keys = try await store.keys(tenantID: "acme", after: nil, limit: 10)
        #expect(keys.items.map(\.apiKey) == ["AKacme1", "AKacme2"])
        try await store.deleteKey(tenantID: "acme", apiKey: "AKacme1")
        #expect(try await store.key("AKacme1") == nil)
        await #expect(throws: StoreError(.notFound, "not found")) { try await store.deleteKey(tenantID: "beta", apiKey: "AKacme2") }
        // A master-key rotation replaces a key's sealed secret, and only that.
        try await store.replaceKeySecret(apiKey: "AKacme2", sealedSecret: [9, 8, 7])
        #expect(try await store.key("AKacme2")?.sealedSecret == [9, 8, 7])
        #expect(try await store.key("AKacme2")?.tenantID == "acme")
        await #expect(throws: StoreError(.notFound, "not found")) { try await store.replaceKeySecret(apiKey: "AKnone", sealedSecret: [1]) }

        try await store.deleteTenant("acme")
        #expect(try await store.tenant("acme") == nil)
        #expect(try await store.key("AKacme2") == nil)
        await #expect(throws: StoreError(.notFound, "not found")) { try await store.deleteTenant("acme") }
    }

    static func rooms(_ store: any Store) async throws {
        try await store.createTenant(tenant("acme"), key: key("AKacme1", tenant: "acme"))
        try await store.createTenant(tenant("beta"), key: key("AKbeta1", tenant: "beta"))
        let names = ["b", "a", "Z", "é", "'; DROP TABLE rooms; --"]
        for name in names {
            try await store.createRoom(Room(tenantID: "acme", name: name, maxPeers: 5, metadata: try RawJSON(validating: #"{"n":1}"#), createdAt: now))
        }
        await #expect(throws: StoreError(.conflict, "already exists")) {
            try await store.createRoom(Room(tenantID: "acme", name: "a", maxPeers: 5, createdAt: now))
        }
        // Room names are per tenant.
        try await store.createRoom(Room(tenantID: "beta", name: "a", maxPeers: 9, createdAt: now))
        #expect(try await store.room(tenantID: "beta", name: "a")?.maxPeers == 9)
        #expect(try await store.room(tenantID: "beta", name: "b") == nil)
        // Code point order, paged.
        var seen: [String] = []
        var after: String?
        repeat {
            let page = try await store.rooms(tenantID: "acme", after: after, limit: 2)
            seen += page.items.map(\.name)
            after = page.next
        } while after != nil
        #expect(seen == names.sorted { Array($0.unicodeScalars.map(\.value)) .lexicographicallyPrecedes(Array($1.unicodeScalars.map(\.value))) })
        var room = try #require(try await store.room(tenantID: "acme", name: "a"))
        #expect(room.metadata.description == #"{"n":1}"# || room.metadata.description == #"{"n": 1}"#)
        room.maxPeers = 3
        room.metadata = try RawJSON(validating: #"{"x":"y"}"#)
        try await store.updateRoom(room)
        #expect(try await store.room(tenantID: "acme", name: "a")?.maxPeers == 3)
        try await store.deleteRoom(tenantID: "acme", name: "a")
        #expect(try await store.room(tenantID: "acme", name: "a") == nil)
        await #expect(throws: StoreError(.notFound, "not found")) { try await store.deleteRoom(tenantID: "acme", name: "a") }
        // Rooms go with their tenant.
        try await store.deleteTenant("acme")
        #expect(try await store.rooms(tenantID: "acme", after: nil, limit: 10).items.isEmpty)
    }

    static func audit(_ store: any Store) async throws {
        try await store.createTenant(tenant("acme"), key: key("AKacme1", tenant: "acme"))
        let base = now
        var events: [AuditEvent] = []
        for index in 0..<25 {
            let time = base.addingTimeInterval(Double(index))
            events.append(AuditEvent(
                id: ULID.make(at: time), type: index % 2 == 0 ? .sessionStarted : .sessionEnded, tenantID: index < 20 ? "acme" : "beta",
                time: time, node: "n1", room: index % 3 == 0 ? "r1" : "r2", peer: "p\(index % 4)", session: "S\(index)",
                data: try RawJSON(validating: #"{"i":\#(index)}"#)))
        }
        try await store.appendEvents(events)
        // A retried batch does not duplicate.
        try await store.appendEvents(Array(events.prefix(5)))
        let all = try await store.events(AuditQuery(tenantID: "acme", limit: 100))
        #expect(all.items.count == 20)
        #expect(all.items.map(\.id) == events.prefix(20).map(\.id).reversed())
        #expect(all.items.first == events[19])
        // Pages, newest first.
        let page1 = try await store.events(AuditQuery(tenantID: "acme", limit: 8))
        let page2 = try await store.events(AuditQuery(tenantID: "acme", before: page1.next, limit: 8))
        let page3 = try await store.events(AuditQuery(tenantID: "acme", before: page2.next, limit: 8))
        #expect(page1.items.count == 8 && page2.items.count == 8 && page3.items.count == 4 && page3.next == nil)
        #expect(Set((page1.items + page2.items + page3.items).map(\.id)).count == 20)
        // Filters.
        #expect(try await store.events(AuditQuery(tenantID: "acme", room: "r1", limit: 100)).items.count == 7)
        #expect(try await store.events(AuditQuery(tenantID: "acme", peer: "p1", limit: 100)).items.count == 5)
        #expect(try await store.events(AuditQuery(tenantID: "acme", type: .sessionEnded, limit: 100)).items.count == 10)
        let window = try await store.events(AuditQuery(
            tenantID: "acme", since: base.addingTimeInterval(5), until: base.addingTimeInterval(10), limit: 100))
        #expect(window.items.map(\.session) == ["S9", "S8", "S7", "S6", "S5"])
        // Tenant isolation.
        #expect(try await store.events(AuditQuery(tenantID: "beta", limit: 100)).items.count == 5)
        // Retention.
        let removed = try await store.deleteEvents(before: base.addingTimeInterval(10))
        #expect(removed == 10)
        #expect(try await store.events(AuditQuery(tenantID: "acme", limit: 100)).items.count == 10)
        try await store.ping()
    }

    static func webhooks(_ store: any Store) async throws {
        try await store.createTenant(tenant("acme"), key: key("AKacme1", tenant: "acme"))
        try await store.createTenant(tenant("beta"), key: key("AKbeta1", tenant: "beta"))
        try await store.createTenant(tenant("cora"), key: key("AKcora1", tenant: "cora"))
        #expect(try await store.webhook(tenantID: "acme") == nil)
        await #expect(throws: StoreError(.notFound, "not found")) { try await store.deleteWebhook(tenantID: "acme") }
        // acme takes two types, beta every type, cora has no webhook.
        var acme = Webhook(
            tenantID: "acme", url: "http://127.0.0.1:1/a", events: [.sessionStarted, .roomCreated], sealedSecret: [9, 8, 7],
            createdAt: now, updatedAt: now)
        try await store.putWebhook(acme)
        #expect(try await store.webhook(tenantID: "acme") == acme)
        let beta = Webhook(tenantID: "beta", url: "https://hooks.example/b", events: nil, sealedSecret: [1], createdAt: now, updatedAt: now)
        try await store.putWebhook(beta)
        #expect(try await store.webhook(tenantID: "beta") == beta)
        // A webhook needs its tenant.
        await #expect(throws: StoreError.self) {
            try await store.putWebhook(Webhook(tenantID: "nope", url: "http://x", events: nil, sealedSecret: [1], createdAt: now, updatedAt: now))
        }

        var events: [AuditEvent] = []
        for (index, (tenant, type)) in [
            ("acme", AuditEventType.sessionStarted), ("acme", .sessionEnded), ("acme", .roomCreated), ("beta", .sessionEnded),
            ("cora", .sessionStarted), ("beta", .authRejected),
        ].enumerated() {
            let time = now.addingTimeInterval(Double(index))
            events.append(AuditEvent(
                id: ULID.make(at: time), type: type, tenantID: tenant, time: time, node: "n1", room: "r1", peer: "p\(index)",
                data: try RawJSON(validating: #"{"i":\#(index)}"#)))
        }
        try await store.appendEvents(events)
        // A retried batch queues nothing twice.
        try await store.appendEvents(events)
        #expect(try await store.pendingDeliveryCount() == 4)

        let clock = Date()
        let claimed = try await store.claimDeliveries(now: clock, leaseUntil: clock.addingTimeInterval(60), limit: 10)
        #expect(Set(claimed.map(\.eventID)) == Set([events[0].id, events[2].id, events[3].id, events[5].id]))
        let first = try #require(claimed.first { $0.eventID == events[0].id })
        #expect(first.tenantID == "acme" && first.url == acme.url && first.sealedSecret == acme.sealedSecret && first.attempts == 0)
        #expect(first.event == events[0])
        // Leased: not handed out again until the lease ends.
        #expect(try await store.claimDeliveries(now: clock.addingTimeInterval(30), leaseUntil: clock.addingTimeInterval(90), limit: 10).isEmpty)
        // Failed: back at its retry time, attempts and error kept.
        try await store.rescheduleDelivery(
            tenantID: "acme", eventID: events[0].id, attempts: 1, next: clock.addingTimeInterval(5), error: "HTTP 500")
        let again = try await store.claimDeliveries(now: clock.addingTimeInterval(6), leaseUntil: clock.addingTimeInterval(66), limit: 10)
        #expect(again.map(\.eventID) == [events[0].id] && again.first?.attempts == 1)
        // Delivered: gone.
        try await store.finishDelivery(tenantID: "acme", eventID: events[0].id)
        #expect(try await store.pendingDeliveryCount() == 3)
        // Storing the batch again (a spill file loaded twice) does not queue a delivered event again.
        try await store.appendEvents(events)
        #expect(try await store.pendingDeliveryCount() == 3)
        // The lease ends: handed out again, oldest first, limited.
        let expired = try await store.claimDeliveries(now: clock.addingTimeInterval(120), leaseUntil: clock.addingTimeInterval(180), limit: 2)
        #expect(expired.count == 2)

        // Replacing a webhook keeps its pending deliveries, which then carry the new URL.
        acme.url = "http://127.0.0.1:2/new"
        acme.events = [.sessionEnded]
        acme.updatedAt = now.addingTimeInterval(10)
        try await store.putWebhook(acme)
        #expect(try await store.webhook(tenantID: "acme") == acme)
        #expect(try await store.pendingDeliveryCount() == 3)
        let renewed = try await store.claimDeliveries(now: clock.addingTimeInterval(400), leaseUntil: clock.addingTimeInterval(460), limit: 10)
        #expect(renewed.first { $0.tenantID == "acme" }?.url == acme.url)
        // An event that left the log comes without it.
        _ = try await store.deleteEvents(before: now.addingTimeInterval(3))
        let orphaned = try await store.claimDeliveries(now: clock.addingTimeInterval(500), leaseUntil: clock.addingTimeInterval(560), limit: 10)
        #expect(orphaned.first { $0.eventID == events[2].id }?.event == nil)
        #expect(orphaned.first { $0.eventID == events[5].id }?.event == events[5])
        // A failing tenant's deliveries can be left out of a claim.
        let others = try await store.claimDeliveries(
            now: clock.addingTimeInterval(700), leaseUntil: clock.addingTimeInterval(760), limit: 10, excluding: ["beta", "zeta"])
        #expect(others.map(\.tenantID) == ["acme"])
        #expect(try await store.expireDeliveries(queuedBefore: clock.addingTimeInterval(-3600)) == 0)

        // Deleting the webhook drops its deliveries; deleting the tenant drops its webhook.
        try await store.deleteWebhook(tenantID: "acme")
        #expect(try await store.webhook(tenantID: "acme") == nil)
        #expect(try await store.pendingDeliveryCount() == 2)
        try await store.deleteTenant("beta")
        #expect(try await store.webhook(tenantID: "beta") == nil)
        #expect(try await store.pendingDeliveryCount() == 0)
        // Deliveries queued before a cutoff expire.
        try await store.putWebhook(acme)
        // (Events recorded before the webhook was set are not queued.)
        try await store.appendEvents([
            AuditEvent(type: .sessionEnded, tenantID: "acme", time: now.addingTimeInterval(-1), node: "n1"),
            AuditEvent(type: .sessionEnded, tenantID: "acme", time: now.addingTimeInterval(20), node: "n1"),
        ])
        #expect(try await store.pendingDeliveryCount() == 1)
        #expect(try await store.expireDeliveries(queuedBefore: Date().addingTimeInterval(60)) == 1)
        #expect(try await store.pendingDeliveryCount() == 0)
    }
}

@Suite("Store contract: SQLite", .serialized, .timeLimit(.minutes(1)))
struct SQLiteStoreContractTests {
    func withStore(_ body: (any Store) async throws -> Void) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("contract-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await SQLiteStore.open(path: path, logger: Logger(label: "test"))
        try await body(store)
        await store.close()
    }

    @Test func tenantsAndKeys() async throws {
        try await withStore { try await StoreContract.tenantsAndKeys($0) }
    }

    @Test func rooms() async throws {
        try await withStore { try await StoreContract.rooms($0) }
    }

    @Test func audit() async throws {
        try await withStore { try await StoreContract.audit($0) }
    }

    @Test func webhooks() async throws {
        try await withStore { try await StoreContract.webhooks($0) }
    }
}

/// A fresh database per test on the PostgreSQL server of `DATABASE_URL`, migrated with the
/// repository's `migrations/`.
enum PostgresTestDatabase {
    static var url: String? { ProcessInfo.processInfo.environment["DATABASE_URL"] }

    /// Whether a server was given; when not, the suite is skipped (and says so).
    static var isConfigured: Bool {
        if url == nil { print("PostgreSQL tests skipped: DATABASE_URL is not set") }
        return url != nil
    }

    static var migrationsDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("migrations")
    }

    /// `migrated`: apply the repository's migrations first (false: an empty database).
    static func with(migrated: Bool = true, _ body: @Sendable (PostgresStore, String) async throws -> Void) async throws {
        let adminURL = try #require(url, "DATABASE_URL is not set")
        let name = "sbtest_\(UUID().uuidString.prefix(8).lowercased())"
        let logger = Logger(label: "test.postgres")
        let admin = try PostgresStore(url: adminURL, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await admin.run() }
            try await admin.client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
            var components = URLComponents(string: adminURL)!
            components.path = "/\(name)"
            let testURL = components.string!
            let store = try PostgresStore(url: testURL, logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { inner in
                inner.addTask { await store.run() }
                do {
                    if migrated {
                        try await Migrator(client: store.client, logger: logger).migrate(try Migrator.load(from: migrationsDirectory))
                    }
                    try await body(store, testURL)
                } catch {
                    inner.cancelAll()
                    throw error
                }
                inner.cancelAll()
            }
            _ = try? await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
            group.cancelAll()
        }
    }
}

@Suite("Store contract: PostgreSQL", .serialized, .timeLimit(.minutes(1)), .enabled(if: PostgresTestDatabase.isConfigured))
struct PostgresStoreContractTests {
    @Test func tenantsAndKeys() async throws {
        try await PostgresTestDatabase.with { store, _ in try await StoreContract.tenantsAndKeys(store) }
    }

    @Test func rooms() async throws {
        try await PostgresTestDatabase.with { store, _ in try await StoreContract.rooms(store) }
    }

    @Test func audit() async throws {
        try await PostgresTestDatabase.with { store, _ in try await StoreContract.audit(store) }
    }

    @Test func webhooks() async throws {
        try await PostgresTestDatabase.with { store, _ in try await StoreContract.webhooks(store) }
    }

    @Test func migrationsApplyOnceAndRefuseAnEditedFile() async throws {
        try await PostgresTestDatabase.with { store, _ in
            let logger = Logger(label: "test")
            let migrator = Migrator(client: store.client, logger: logger)
            var migrations = try Migrator.load(from: PostgresTestDatabase.migrationsDirectory)
            #expect(try await migrator.migrate(migrations).isEmpty)
            #expect(try await migrator.pending(migrations).isEmpty)
            // Several nodes migrating at once take turns under the advisory lock.
            let current = migrations
            try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<4 { group.addTask { try await migrator.migrate(current) } }
                for try await applied in group { #expect(applied.isEmpty) }
            }
            migrations[0].sql += "\n-- edited\n"
            migrations[0].checksum = "0000"
            await #expect(throws: Migrator.Failure.self) { try await migrator.migrate(migrations) }
        }
    }
}

@Suite("Node on PostgreSQL", .serialized, .timeLimit(.minutes(1)), .enabled(if: PostgresTestDatabase.isConfigured))
struct PostgresNodeTests {
    @Test func aNodeRunsOnPostgreSQLEndToEnd() async throws {
        try await PostgresTestDatabase.with { _, url in
            try await TestNode.with({
                $0.usePostgres(url)
            }) { node in
                let tenant = try await node.createTenant()
                let alice = try await node.join(tenant, peer: "alice")
                let bob = try await node.join(tenant, peer: "bob")
                try await alice.client.signal(to: "bob", data: RawJSON(validating: #"{"sdp": "x"}"#))
                #expect(try await bob.nextMessage().data == #"{"sdp": "x"}"#)
                let room = try await node.request(.get, "/v1/rooms/room-1", auth: .tenant(tenant))
                #expect(room.status == 200 && room.text.contains(#""peerCount":2"#))
                await bob.stop()
                // The audit log reaches PostgreSQL.
                var found = false
                for _ in 0..<50 where !found {
                    let events = try await node.request(.get, "/v1/events?type=session.ended", auth: .tenant(tenant))
                    found = events.text.contains("\"peer\":\"bob\"")
                    if !found { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(found)
                let ready = try await node.request(.get, "/readyz", admin: true)
                #expect(ready.status == 200)
                await alice.stop()
            }
        }
    }
}

@Suite("PostgreSQL audit partitions", .serialized, .timeLimit(.minutes(1)), .enabled(if: PostgresTestDatabase.isConfigured))
struct PostgresPartitionTests {
    @Test func retentionDropsWholeDaysAndPartitionsAreMadeAhead() async throws {
        try await PostgresTestDatabase.with { store, _ in
            try await store.createTenant(StoreContract.tenant("acme"), key: StoreContract.key("AKacme1", tenant: "acme"))
            #expect(try await store.ensureAuditPartitions(daysAhead: 2) == 3)
            #expect(try await store.ensureAuditPartitions(daysAhead: 2) == 0)
            let now = Date()
            let old = now.addingTimeInterval(-10 * 86_400)
            let events = [old, old.addingTimeInterval(60), now].map { time in
                AuditEvent(id: ULID.make(at: time), type: .roomCreated, tenantID: "acme", time: time, node: "n", room: "r")
            }
            try await store.appendEvents(events)
            // Old days landed in the default partition; a partition for that day takes them over.
            let day = Calendar(identifier: .gregorian).startOfDay(for: old)
            _ = try await store.client.query("SELECT switchboard_ensure_audit_partition(\(day)::date)")
            #expect(try await store.deleteEvents(before: now.addingTimeInterval(-86_400)) == 2)
            #expect(try await store.events(AuditQuery(tenantID: "acme", limit: 10)).items.count == 1)
        }
    }
}

@Suite("PostgreSQL outage", .serialized, .timeLimit(.minutes(1)), .enabled(if: PostgresTestDatabase.isConfigured))
struct PostgresOutageTests {
    /// The database refuses connections mid-run (a real outage as the node sees it): joins
    /// of a known tenant go on, readiness says so, audit events wait and are written after.
    @Test func signalingSurvivesADatabaseOutage() async throws {
        try await PostgresTestDatabase.with { _, url in
            let database = try #require(URLComponents(string: url)?.path.dropFirst()).description
            let logger = Logger(label: "test.outage")
            let admin = try PostgresStore(url: try #require(PostgresTestDatabase.url), logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await admin.run() }
                defer { group.cancelAll() }
                try await TestNode.with({
                    $0.usePostgres(url)
                }) { node in
                    let tenant = try await node.createTenant()
                    let alice = try await node.join(tenant, peer: "alice")

                    try await admin.client.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database) ALLOW_CONNECTIONS false"), logger: logger)
                    // Terminate until none is left: a connection that was being opened while
                    // ALTER DATABASE committed can show up a moment later.
                    for _ in 0..<50 {
                        let left = try await admin.client.query(
                            PostgresQuery(unsafeSQL: "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '\(database)'"),
                            logger: logger
                        ).collect().first?.decode(Int.self) ?? 0
                        if left == 0 { break }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    var ready = try await node.request(.get, "/readyz", admin: true)
                    for _ in 0..<50 where ready.status == 200 {
                        try await Task.sleep(for: .milliseconds(100))
                        ready = try await node.request(.get, "/readyz", admin: true)
                    }
                    #expect(ready.status == 503 && ready.text.contains(#""database":"unavailable""#))

                    // A known tenant's peers still join and signal.
                    let bob = try await node.join(tenant, peer: "bob")
                    try await alice.client.signal(to: "bob", data: RawJSON(validating: "1"))
                    #expect(try await bob.nextMessage().seq == 1)
                    #expect(node.node.audit.count > 0)

                    try await admin.client.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database) ALLOW_CONNECTIONS true"), logger: logger)
                    var written = false
                    for _ in 0..<100 where !written {
                        let events = try await node.request(.get, "/v1/events?type=session.started", auth: .tenant(tenant))
                        written = events.status == 200 && events.text.contains("\"peer\":\"bob\"")
                        if !written { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    #expect(written, "bob's session.started was not written after the database came back")
                    #expect(try await node.request(.get, "/readyz", admin: true).status == 200)
                    await alice.stop()
                    await bob.stop()
                }
            }
        }
    }
}
