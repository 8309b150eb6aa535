import Foundation
import PostgresNIO
import PostgresStore
import Signaling
import Testing

/// The PostgreSQL server process itself stops and starts again under a running node (SPEC
/// §5, §8): a private server of `scripts/postgres`, so nothing else shares the outage.
@Suite("PostgreSQL server stop and restart", .serialized, .timeLimit(.minutes(3)), .enabled(if: PostgresServer.canStart))
struct PostgresServerTests {
    @Test func signalingGoesOnAndNoAuditEventIsLostAcrossAServerRestart() async throws {
        try await PostgresServer.with { server in
            try await PostgresServer.migrate(server.url)
            try await TestNode.with({
                $0.usePostgres(server.url)
                // Store calls give up (`unavailable`) after 2 s instead of 5: a shorter test.
                $0.postgres.requestTimeout = .seconds(2)
            }) { node in
                let tenant = try await node.createTenant()
                let alice = try await node.join(tenant, peer: "alice")
                let bob = try await node.join(tenant, peer: "bob")
                #expect(try await node.request(.get, "/readyz", admin: true).status == 200)
                // Everything so far is written, so what is buffered later was made during the outage.
                try await Self.waitUntil("the audit buffer empties before the outage") { node.node.audit.count == 0 }

                try await server.down()
                let stoppedAt = ContinuousClock.now
                var ready = try await node.request(.get, "/readyz", admin: true)
                while ready.status == 200, ContinuousClock.now - stoppedAt < .seconds(15) {
                    try await Task.sleep(for: .milliseconds(200))
                    ready = try await node.request(.get, "/readyz", admin: true)
                }
                #expect(ready.status == 503 && ready.text.contains(#""database":"unavailable""#), "readyz: \(ready.status) \(ready.text)")
                #expect(try await node.request(.get, "/healthz", admin: true).status == 200)
                // REST calls that need the database fail cleanly, within the request timeout.
                let listed = try await node.request(.get, "/v1/events", auth: .tenant(tenant))
                #expect(listed.status == 503 && listed.errorCode == "unavailable", "\(listed.status) \(listed.text)")

                // The known tenant's peers join (tenant, key and room from the node's cache) and signal.
                let carol = try await node.join(tenant, peer: "carol")
                let dave = try await node.join(tenant, peer: "dave")
                try await alice.client.signal(to: "bob", data: RawJSON(validating: #"{"during":"outage"}"#))
                #expect(try await bob.nextMessage().data == #"{"during":"outage"}"#)
                try await carol.client.signal(to: "alice", data: RawJSON(validating: "2"))
                let fromCarol = try await alice.nextMessage()
                #expect(fromCarol.from == "carol" && fromCarol.data == "2")
                await dave.stop()

                // Audit events of the outage wait in the buffer: carol's and dave's sessions.
                let audit = node.node.audit
                try await Self.waitUntil("dave's session.ended is buffered") {
                    audit.peek(max: audit.capacity).contains { $0.type == .sessionEnded && $0.peer == "dave" }
                }
                let buffered = audit.peek(max: audit.capacity)
                let madeDuringOutage = Set(buffered.map(\.id))
                #expect(buffered.contains { $0.type == .sessionStarted && $0.peer == "carol" })
                #expect(buffered.contains { $0.type == .sessionStarted && $0.peer == "dave" })
                #expect(audit.droppedCount == 0)
                // Still buffered a little later: nothing was written while the server was down.
                try await Task.sleep(for: .milliseconds(500))
                #expect(Set(audit.peek(max: audit.capacity).map(\.id)).isSuperset(of: madeDuringOutage))

                try await server.up()
                let restartedAt = ContinuousClock.now
                try await Self.waitUntil("readyz is 200 after the restart", within: .seconds(30)) {
                    (try? await node.request(.get, "/readyz", admin: true).status) == 200
                }
                try await Self.waitUntil("the audit buffer drains after the restart", within: .seconds(30)) { audit.count == 0 }
                print("PostgreSQL restart: ready and audit drained \(ContinuousClock.now - restartedAt) after `up`")

                // Every event of the outage is in the database now, exactly once.
                let stored = try await PostgresServer.withStore(server.url) { store in
                    var ids: [String] = []
                    let rows = try await store.client.query("SELECT id FROM audit_events WHERE tenant_id = \(tenant.id)")
                    for try await id in rows.decode(String.self) { ids.append(id) }
                    return ids
                }
                let missing = madeDuringOutage.subtracting(stored)
                #expect(missing.isEmpty, "\(missing.count) of \(madeDuringOutage.count) outage events were not written: \(missing.sorted())")
                #expect(stored.count == Set(stored).count)
                #expect(audit.droppedCount == 0)
                let carolsEvents = try await node.request(.get, "/v1/events?peer=carol&type=session.started", auth: .tenant(tenant))
                #expect(carolsEvents.status == 200 && carolsEvents.text.contains(#""peer":"carol""#))

                // And the node carries on as before.
                let erin = try await node.join(tenant, peer: "erin")
                try await erin.client.signal(to: "carol", data: RawJSON(validating: "3"))
                #expect(try await carol.nextMessage().from == "erin")
                for peer in [alice, bob, carol, erin] { await peer.stop() }
            }
        }
    }

    static func waitUntil(
        _ what: String, within limit: Duration = .seconds(10), _ condition: @Sendable () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + limit
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out: \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

@Suite("PostgreSQL readiness at start", .timeLimit(.minutes(1)))
struct PostgresStartingReadinessTests {
    /// Nothing listens on the database port: the node serves HTTP but is not ready, and says
    /// why, until its start-up checks have run.
    @Test func aNodeIsNotReadyBeforeItsDatabaseIsPrepared() async throws {
        try await TestNode.with({
            $0.usePostgres("postgres://switchboard:switchboard@127.0.0.1:1/switchboard?sslmode=disable")
            $0.postgres.requestTimeout = .milliseconds(500)
            $0.auditFlushGrace = 0.2
        }, waitForReady: false) { node in
            let ready = try await node.request(.get, "/readyz", admin: true)
            #expect(ready.status == 503 && ready.text.contains(#""database":"starting""#), "\(ready.text)")
            #expect(try await node.request(.get, "/healthz", admin: true).status == 200)
        }
    }
}
