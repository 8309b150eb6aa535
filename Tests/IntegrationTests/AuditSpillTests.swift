import Foundation
import Logging
import PostgresNIO
import PostgresStore
import Signaling
import SwitchboardServer
import Synchronization
import Testing

/// Spill files on disk, for the audit spill tests.
enum SpillDirectory {
    static func make() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-spill-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func names(_ directory: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
    }

    /// The events of the directory's `audit-*.jsonl` files.
    static func events(_ directory: URL) throws -> [AuditEvent] {
        try names(directory).filter { $0.hasPrefix("audit-") && $0.hasSuffix(".jsonl") }.flatMap { name in
            AuditEventLine.decodeLines([UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))).events
        }
    }

    static func write(_ lines: [UInt8], _ directory: URL, _ name: String) throws {
        try Data(lines).write(to: directory.appendingPathComponent(name))
    }

    static func lines(_ events: [AuditEvent]) -> [UInt8] {
        var bytes: [UInt8] = []
        for event in events { AuditEventLine.append(event, to: &bytes) }
        return bytes
    }

    /// `count` events of one tenant, a millisecond apart.
    static func events(_ count: Int, tenant: String, from start: Date = Date(timeIntervalSince1970: 1_800_000_000)) throws -> [AuditEvent] {
        try (0..<count).map { index in
            let time = start.addingTimeInterval(Double(index) / 1000)
            return AuditEvent(
                id: ULID.make(at: time), type: .roomCreated, tenantID: tenant, time: Timestamp.date(milliseconds: Timestamp.milliseconds(time)),
                node: "earlier-node", room: "room-\(index)", data: try RawJSON(validating: #"{"i":\#(index)}"#))
        }
    }
}

/// Keeps the warnings and errors logged through it.
struct CapturingLogHandler: LogHandler {
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    let lines: Lines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= .warning else { return }
        lines.append("\(event.level) [\(event.source)] \(event.message) \(event.metadata ?? [:])")
    }
}

/// Polls `condition` every 100 ms for up to `seconds`.
func eventually(_ seconds: Double = 20, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}

@Suite("Audit spill files", .serialized, .timeLimit(.minutes(1)))
struct AuditSpillTests {
    /// Spill files of earlier runs are stored at start, a slice at a time when they do not
    /// fit the buffer, then removed; unreadable lines are counted as dropped and their file
    /// kept as `.rejected`; incomplete and foreign files are left alone.
    @Test func aStartStoresTheSpillFilesOfEarlierRunsAndRemovesThem() async throws {
        let spill = try SpillDirectory.make()
        defer { try? FileManager.default.removeItem(at: spill) }
        let first = try SpillDirectory.events(25, tenant: "acme")
        let second = try SpillDirectory.events(3, tenant: "acme", from: Date(timeIntervalSince1970: 1_800_000_100))
        let incomplete = try SpillDirectory.events(1, tenant: "acme", from: Date(timeIntervalSince1970: 1_800_000_200))
        try SpillDirectory.write(SpillDirectory.lines(first), spill, "audit-1.jsonl")
        var damaged = SpillDirectory.lines([second[0]]) + Array("{\"id\":\"broken\"}\n".utf8) + SpillDirectory.lines(Array(second[1...]))
        damaged += Array(SpillDirectory.lines(first).prefix(30))
        try SpillDirectory.write(damaged, spill, "audit-2.jsonl")
        try SpillDirectory.write(SpillDirectory.lines(incomplete), spill, "audit-3.jsonl.tmp")
        try SpillDirectory.write(Array("keep me\n".utf8), spill, "notes.txt")

        try await TestNode.with({
            $0.auditSpillDirectory = spill.path
            $0.auditBufferCapacity = 10
        }) { node in
            let expected = (first + second).sorted { $0.id > $1.id }
            var stored: [AuditEvent] = []
            let allStored = try await eventually {
                stored = try await node.node.store.events(AuditQuery(tenantID: "acme", limit: 100)).items
                return stored.count >= expected.count
            }
            #expect(allStored)
            #expect(stored == expected)
            let cleaned = try await eventually { SpillDirectory.names(spill) == ["audit-2.jsonl.rejected", "audit-3.jsonl.tmp", "notes.txt"] }
            #expect(cleaned, "left: \(SpillDirectory.names(spill))")
            #expect(try await node.metrics().contains("switchboard_audit_events_dropped_total 2"))
        }
    }

    /// Without any spill file, nothing is created on disk.
    @Test func aCleanShutdownWritesNoSpillFile() async throws {
        let spill = try SpillDirectory.make()
        defer { try? FileManager.default.removeItem(at: spill) }
        let directory = spill.appendingPathComponent("spill")
        try await TestNode.with({ $0.auditSpillDirectory = directory.path }) { node in
            _ = try await node.createTenant()
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}

@Suite("Audit spill on PostgreSQL", .serialized, .timeLimit(.minutes(2)), .enabled(if: PostgresTestDatabase.isConfigured))
struct PostgresAuditSpillTests {
    /// Services start together: on a fresh database the audit writer and retention wait for
    /// the migrations and today's audit partition (an insert racing that partition's
    /// creation fails with "violates partition constraint"), so the spilled events of today
    /// go straight into their partition and nothing fails on the way.
    @Test func onAFreshDatabaseTheWriterWaitsForTheSchemaAndTodaysPartition() async throws {
        let adminURL = try #require(PostgresTestDatabase.url)
        let logger = Logger(label: "test.fresh")
        let admin = try PostgresStore(url: adminURL, logger: logger)
        let name = "sbfresh_\(UUID().uuidString.prefix(8).lowercased())"
        var components = try #require(URLComponents(string: adminURL))
        components.path = "/\(name)"
        let freshURL = try #require(components.string)
        let spill = try SpillDirectory.make()
        defer { try? FileManager.default.removeItem(at: spill) }
        let today = try SpillDirectory.events(300, tenant: "acme", from: Date().addingTimeInterval(-1))
        try SpillDirectory.write(SpillDirectory.lines(today), spill, "audit-1.jsonl")
        let lines = CapturingLogHandler.Lines()
        var configuration = TestNode.configuration(spill)
        configuration.databaseURL = freshURL
        configuration.migrate = true
        configuration.auditSpillDirectory = spill.path
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await admin.run() }
            defer { group.cancelAll() }
            try await admin.client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
            let node = try await SwitchboardNode.make(
                configuration: configuration, logger: Logger(label: "fresh", factory: { _ in CapturingLogHandler(lines: lines) }),
                handleSignals: false)
            try await withThrowingTaskGroup(of: Void.self) { running in
                running.addTask { try await node.run() }
                do {
                    _ = await node.waitUntilListening()
                    let stored = try await eventually {
                        // Fails until the node has migrated the database.
                        (try? await node.store.events(AuditQuery(tenantID: "acme", limit: 1000)).items.count) == today.count
                    }
                    #expect(stored)
                    let store = try #require(node.store as? PostgresStore)
                    let rows = try await store.client.query("SELECT count(*)::int FROM audit_events_default")
                    for try await row in rows { #expect(try row.decode(Int.self) == 0) }
                } catch {
                    await node.shutdown()
                    try? await running.waitForAll()
                    throw error
                }
                await node.shutdown()
                try await running.waitForAll()
            }
            _ = try? await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
        }
        let ours = lines.all.filter { !$0.contains("[PostgresNIO]") }
        #expect(ours.isEmpty, "\(ours)")
        #expect(SpillDirectory.names(spill).filter { $0.hasPrefix("audit-") }.isEmpty)
    }

    /// Issue #3: a graceful shutdown while PostgreSQL is down writes the buffered events to a
    /// spill file; the next start, with the database back, stores every one and removes it.
    @Test func aShutdownDuringAnOutageSpillsAndTheNextStartStoresEverything() async throws {
        try await PostgresTestDatabase.with { store, url in
            let database = try #require(URLComponents(string: url)?.path.dropFirst()).description
            let spill = try SpillDirectory.make()
            defer { try? FileManager.default.removeItem(at: spill) }
            let logger = Logger(label: "test.spill")
            let admin = try PostgresStore(url: try #require(PostgresTestDatabase.url), logger: logger)
            let masterKey = Data(repeating: 7, count: 32).base64EncodedString()
            let configure: @Sendable (inout ServerConfiguration) -> Void = {
                $0.masterKey = masterKey  // both nodes open the same secrets
                $0.usePostgres(url)
                $0.auditSpillDirectory = spill.path
                $0.auditFlushGrace = 0.5
                $0.postgres.requestTimeout = .seconds(1)
            }
            let synthetic = try SpillDirectory.events(2500, tenant: "elsewhere", from: Date().addingTimeInterval(-60))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await admin.run() }
                defer { group.cancelAll() }
                let tenant = try await TestNode.with(configure) { node in
                    let tenant = try await node.createTenant()
                    let alice = try await node.join(tenant, peer: "alice")
                    try await admin.client.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database) ALLOW_CONNECTIONS false"), logger: logger)
                    try await admin.client.query(
                        PostgresQuery(unsafeSQL: "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database)'"), logger: logger)
                    #expect(try await eventually { try await node.request(.get, "/readyz", admin: true).status == 503 })
                    // Signaling goes on; its events and others wait in the buffer.
                    let bob = try await node.join(tenant, peer: "bob")
                    try await alice.client.signal(to: "bob", data: RawJSON(validating: "1"))
                    #expect(try await bob.nextMessage().seq == 1)
                    await bob.stop()
                    for event in synthetic { node.node.audit.record(event) }
                    await alice.stop()
                    // bob's and alice's `session.ended` are recorded when the node sees their
                    // sockets close, a moment after `stop()` returns: wait for them.
                    #expect(try await eventually { node.node.audit.count >= synthetic.count + 2 }, "buffered: \(node.node.audit.count)")
                    return tenant
                }

                // The node is down; what it could not store is in one spill file.
                let files = SpillDirectory.names(spill).filter { $0.hasSuffix(".jsonl") }
                #expect(files.count == 1, "spill directory: \(SpillDirectory.names(spill))")
                let spilled = try SpillDirectory.events(spill)
                #expect(Set(synthetic.map(\.id)).isSubset(of: Set(spilled.map(\.id))))
                #expect(spilled.contains { $0.type == .sessionStarted && $0.peer == "bob" })
                let attributes = try FileManager.default.attributesOfItem(atPath: spill.appendingPathComponent(try #require(files.first)).path)
                #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)

                try await admin.client.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database) ALLOW_CONNECTIONS true"), logger: logger)
                try await TestNode.with(configure) { node in
                    let stored = try await eventually {
                        let rows = try await store.client.query("SELECT count(*)::int AS n FROM audit_events WHERE tenant_id = 'elsewhere'")
                        var count = 0
                        for try await row in rows { count = try row.decode(Int.self) }
                        return count == synthetic.count
                    }
                    #expect(stored, "the spilled events were not all stored")
                    let bobs = try await store.events(AuditQuery(tenantID: tenant.id, peer: "bob", limit: 10)).items.map(\.type)
                    #expect(bobs.contains(.sessionStarted) && bobs.contains(.sessionEnded))
                    #expect(try await eventually { SpillDirectory.names(spill).isEmpty }, "left: \(SpillDirectory.names(spill))")
                    #expect(try await node.metrics().contains("switchboard_audit_events_dropped_total 0"))
                }
            }
        }
    }
}
