import ArgumentParser
import Foundation
import Histogram
import Logging
import PostgresStore
import Signaling

/// `switchboard bench-audit`: how fast the audit log goes into PostgreSQL, and how fast a
/// room's newest page comes back out with many rows in the table (issue #3 benchmarks).
struct AuditBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-audit",
        abstract: "Measure audit ingest into PostgreSQL (events/s) and the newest-page query latency.")

    @Option(name: .customLong("database-url"), help: "postgres:// URL (SWITCHBOARD_DATABASE_URL).") var databaseURL: String?
    @Option(name: .customLong("migrations-dir"), help: "Migrations to apply first (default: the ones built into the binary).") var migrationsDirectory: String?
    @Option(help: "Events to insert.") var events: Int = 1_000_000
    @Option(help: "Rooms the events are spread over.") var rooms: Int = 1000
    @Option(help: "Events per INSERT batch (the node's default is 1000).") var batch: Int = 1000
    @Option(help: "Batches in flight at once (connections).") var concurrency: Int = 4
    @Option(help: "Days the events' times are spread over (partitions).") var days: Int = 7
    @Option(help: "Newest-page queries to time.") var queries: Int = 200
    @Flag(help: "Give the tenant a webhook for every event type, so each event also queues a delivery (nothing is sent; the deliveries are removed after).") var webhook = false
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard let url = Settings().string(databaseURL, "SWITCHBOARD_DATABASE_URL") else {
            throw ValidationError("set --database-url or SWITCHBOARD_DATABASE_URL")
        }
        guard events > 0, rooms > 0, batch > 0, concurrency > 0, days > 0 else { throw ValidationError("counts must be positive") }
        var logger = Logger(label: "bench-audit")
        logger.logLevel = .warning
        var settings = PostgresSettings()
        settings.poolSize = concurrency + 2
        settings.statementTimeout = .seconds(120)
        settings.requestTimeout = .seconds(120)
        let store = try PostgresStore(url: url, settings: settings, logger: logger)
        let plan = (events: events, rooms: rooms, batch: batch, concurrency: concurrency, days: days, queries: queries, webhook: webhook)
        let report = try await withThrowingTaskGroup(of: [String: Double]?.self) { group in
            group.addTask {
                await store.run()
                return nil
            }
            defer { group.cancelAll() }
            try await Migrator(client: store.client, logger: logger).migrate(try Migrator.load(directory: migrationsDirectory))
            return try await Self.measure(store: store, plan: plan)
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "inserted %.0f events in %.2f s: %.0f events/s", report["events"] ?? 0, report["insertSeconds"] ?? 0, report["eventsPerSecond"] ?? 0))
            print(String(format: "table now holds %.0f events for the tenant", report["tableEvents"] ?? 0))
            if webhook { print(String(format: "webhook deliveries queued with them: %.0f", report["deliveriesQueued"] ?? 0)) }
            print(String(format: "newest 100 of a room: p50 %.2f ms  p99 %.2f ms  max %.2f ms", report["queryP50Ms"] ?? 0, report["queryP99Ms"] ?? 0, report["queryMaxMs"] ?? 0))
        }
    }

    static func measure(
        store: PostgresStore, plan: (events: Int, rooms: Int, batch: Int, concurrency: Int, days: Int, queries: Int, webhook: Bool)
    ) async throws -> [String: Double] {
        let tenantID = "bench-audit"
        if try await store.tenant(tenantID) == nil {
            let key = StoredAPIKey(apiKey: "AKbenchaudit", tenantID: tenantID, sealedSecret: [0], createdAt: Date())
            try await store.createTenant(Tenant(id: tenantID, name: "bench", createdAt: Date()), key: key)
        }
        if plan.webhook {
            try await store.putWebhook(Webhook(
                tenantID: tenantID, url: "http://127.0.0.1:9/", events: nil, sealedSecret: [0], createdAt: Date(), updatedAt: Date()))
        }
        // Partitions for every day the events fall on.
        for offset in 0..<plan.days {
            let day = Date().addingTimeInterval(-Double(offset) * 86_400)
            _ = try await store.client.query("SELECT switchboard_ensure_audit_partition((\(day) AT TIME ZONE 'UTC')::date)")
        }
        let batches = (plan.events + plan.batch - 1) / plan.batch
        let span = Double(plan.days) * 86_400 - 60
        let now = Date()
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                let index = next
                next += 1
                group.addTask {
                    let count = min(plan.batch, plan.events - index * plan.batch)
                    var batch: [AuditEvent] = []
                    batch.reserveCapacity(count)
                    for item in 0..<count {
                        let n = index * plan.batch + item
                        let time = now.addingTimeInterval(-span * Double(n) / Double(plan.events))
                        batch.append(AuditEvent(
                            id: ULID.make(at: time), type: n % 2 == 0 ? .sessionStarted : .sessionEnded, tenantID: tenantID, time: time,
                            node: "bench", room: "room-\(n % plan.rooms)", peer: "peer-\(n % (plan.rooms * 4))", session: "S\(n)",
                            data: RawJSON.emptyObject))
                    }
                    try await store.appendEvents(batch)
                }
            }
            while next < min(plan.concurrency, batches) { add() }
            while try await group.next() != nil {
                if next < batches { add() }
            }
        }
        let insertSeconds = (ContinuousClock.now - started).seconds
        var queued = 0
        if plan.webhook {
            queued = try await store.pendingDeliveryCount()
            try await store.deleteWebhook(tenantID: tenantID)
        }
        _ = try await store.client.query("ANALYZE audit_events")
        let total = try await store.client.query("SELECT count(*) FROM audit_events WHERE tenant_id = \(tenantID)")
            .collect().first?.decode(Int.self) ?? 0

        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for index in 0..<plan.queries {
            let room = "room-\((index * 7919) % plan.rooms)"
            let queryStart = ContinuousClock.now
            let page = try await store.events(AuditQuery(tenantID: tenantID, room: room, limit: 100))
            _ = histogram.record(UInt64((ContinuousClock.now - queryStart).seconds * 1_000_000))
            guard !page.items.isEmpty else { throw ValidationError("no events for \(room)") }
        }
        return [
            "events": Double(plan.events), "insertSeconds": insertSeconds, "eventsPerSecond": Double(plan.events) / insertSeconds,
            "tableEvents": Double(total), "deliveriesQueued": Double(queued), "queryP50Ms": Double(histogram.valueAtPercentile(50)) / 1000,
            "queryP99Ms": Double(histogram.valueAtPercentile(99)) / 1000, "queryMaxMs": Double(histogram.max) / 1000,
        ]
    }
}
