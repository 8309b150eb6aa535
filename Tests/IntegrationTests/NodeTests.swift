import Foundation
import Logging
import Signaling
import SwitchboardServer
import Testing

@Suite("Node: probes, metrics, files", .serialized, .timeLimit(.minutes(1)))
struct NodeTests {
    @Test func probesAndMetrics() async throws {
        try await TestNode.with { node in
            let health = try await node.request(.get, "/healthz", admin: true)
            #expect(health.status == 200)
            let ready = try await node.request(.get, "/readyz", admin: true)
            #expect(ready.status == 200)
            #expect(ready.text.contains(#""database":"ok""#) && ready.text.contains(#""bus":"ok""#))

            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let bob = try await node.join(tenant, peer: "bob")
            try await alice.client.signal(to: "bob", data: RawJSON(validating: "1"), id: "x")
            _ = try await bob.nextMessage()
            try await alice.client.signal(to: "nobody", data: RawJSON(validating: "1"), id: "y")
            _ = try await alice.nextError()
            // Gauges are sampled every second.
            try await Task.sleep(for: .milliseconds(1200))
            let metrics = try await node.request(.get, "/metrics", admin: true)
            #expect(metrics.status == 200)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = metrics.text
            for expected in [
                #"switchboard_frames_in_total{type="signal"} 2"#,
                #"switchboard_frames_out_total{type="signal"} 1"#,
                #"switchboard_frames_out_total{type="welcome"} 2"#,
                #"switchboard_messages_routed_total{path="local"} 1"#,
                #"switchboard_errors_total{code="peer_not_found"} 1"#,
                "switchboard_sessions_connected{tenant=\"\(tenant.id)\"} 2",
                "switchboard_rooms_active 1",
                "switchboard_routing_latency_seconds_bucket",
                "switchboard_audit_events_dropped_total 0",
                "switchboard_bus_publish_failures_total 0",
            ] {
                #expect(text.contains(expected), "missing \(expected)")
            }
            await alice.stop()
            await bob.stop()
        }
    }

    @Test func masterKeyFileIsPrivateAndRequiredForAnExistingDatabase() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let sqlite = directory.appendingPathComponent("s.sqlite").path
        let keyFile = directory.appendingPathComponent("k").path
        _ = try await TestNode.with({ $0.sqlitePath = sqlite; $0.masterKeyFile = keyFile }) { node in
            _ = try await node.createTenant()
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: keyFile)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // With the key file gone, the stored secrets cannot be read: refuse to start.
        try FileManager.default.removeItem(atPath: keyFile)
        var configuration = TestNode.configuration(directory)
        configuration.sqlitePath = sqlite
        configuration.masterKeyFile = keyFile
        await #expect(throws: ConfigurationError.self) {
            _ = try await SwitchboardNode.make(configuration: configuration, logger: Logger(label: "test"), handleSignals: false)
        }
    }

    @Test func aPortInUseStopsTheNodeWithAnError() async throws {
        try await TestNode.with { first in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-port-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            var configuration = TestNode.configuration(directory)
            configuration.port = first.publicPort
            let second = try await SwitchboardNode.make(configuration: configuration, logger: Logger(label: "test"), handleSignals: false)
            await #expect(throws: (any Error).self) { try await second.run() }
            #expect(await second.waitUntilListening() == nil)
        }
    }
}
