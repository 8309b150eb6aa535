import Foundation
import Logging
import RedisBus
import STUN
import ServiceLifecycle
import Signaling
import TURNServer
import Testing

/// SPEC §6 registration on a real Redis: TURN nodes write short-lived records, signaling nodes
/// read the live, non-draining ones least loaded first, and a node leaves on SIGTERM.
@Suite("TURN registry on Redis", .serialized, .timeLimit(.minutes(1)))
struct TURNRegistryTests {
    static var redisURL: String? { ProcessInfo.processInfo.environment["REDIS_URL"].flatMap { $0.isEmpty ? nil : $0 } }

    static func withRegistry(_ body: (RedisTURNRegistry) async throws -> Void) async throws {
        guard let url = redisURL else {
            print("TURN registry tests skipped: REDIS_URL is not set")
            return
        }
        var logger = Logger(label: "turn-registry-test")
        logger.logLevel = .critical
        let client = RedisClient(configuration: try RedisConfiguration(url: url), logger: logger)
        let registry = RedisTURNRegistry(client: client, prefix: "sbt-\(UUID().uuidString.prefix(8))")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            defer {
                client.shutDown()
                group.cancelAll()
            }
            #expect(await client.waitUntilAvailable(timeout: .seconds(5)))
            try await body(registry)
        }
    }

    @Test func liveNodesAreLeastLoadedFirstAndDrainingOnesAreLeftOut() async throws {
        try await Self.withRegistry { registry in
            let urls = TURNNodeRecord.urls(host: "203.0.113.7", port: 3478, tlsPort: 5349)
            #expect(urls == [
                "turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp", "turns:203.0.113.7:5349?transport=tcp",
                "stun:203.0.113.7:3478",
            ])
            #expect(TURNNodeRecord.urls(host: "2001:db8::1", port: 3478, tlsPort: nil).first == "turn:[2001:db8::1]:3478?transport=udp")
            try await registry.register(TURNNodeRecord(nodeID: "busy", urls: ["turn:busy"], allocations: 40, draining: false), ttl: .seconds(10))
            try await registry.register(TURNNodeRecord(nodeID: "idle", urls: ["turn:idle"], allocations: 2, draining: false), ttl: .seconds(10))
            try await registry.register(TURNNodeRecord(nodeID: "leaving", urls: ["turn:leaving"], allocations: 0, draining: true), ttl: .seconds(10))
            #expect(try await registry.liveNodes().map(\.nodeID) == ["idle", "busy"])
            try await registry.deregister(nodeID: "idle")
            #expect(try await registry.liveNodes().map(\.nodeID) == ["busy"])
        }
    }

    @Test func aRecordLapsesWhenItsNodeStopsWriting() async throws {
        try await Self.withRegistry { registry in
            try await registry.register(TURNNodeRecord(nodeID: "dead", urls: ["turn:dead"], allocations: 0, draining: false), ttl: .milliseconds(300))
            #expect(try await registry.liveNodes().map(\.nodeID) == ["dead"])
            try await Task.sleep(for: .milliseconds(600))
            #expect(try await registry.liveNodes().isEmpty)
        }
    }

    @Test func aRunningTURNNodeRegistersItselfAndLeavesOnShutdown() async throws {
        try await Self.withRegistry { registry in
            var configuration = TURNServerConfiguration()
            configuration.host = "127.0.0.1"
            configuration.port = 0
            configuration.publicIP = IPAddress("127.0.0.1")
            configuration.allowLoopback = true
            configuration.secrets = ["registry-test-secret"]
            configuration.relayPorts = 62000...62099
            configuration.drainTimeout = 1
            configuration.nodeID = "turn-under-test"
            var logger = Logger(label: "turn-registry-test")
            logger.logLevel = .warning
            let node = try TURNNode(configuration: configuration, logger: logger)
            let registration = TURNRegistration(node: node, registry: registry, interval: .milliseconds(200), ttl: .seconds(2), logger: logger)
            let group = ServiceGroup(configuration: .init(services: [.init(service: node), .init(service: registration)], logger: logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                let addresses = try await node.waitUntilListening()
                var found: [TURNNodeRecord] = []
                let deadline = ContinuousClock.now + .seconds(5)
                while found.isEmpty, ContinuousClock.now < deadline {
                    found = try await registry.liveNodes()
                    if found.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(found.map(\.nodeID) == ["turn-under-test"])
                #expect(found.first?.urls.first == "turn:127.0.0.1:\(addresses.udpPort)?transport=udp")
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            #expect(try await registry.liveNodes().isEmpty, "a stopped node must leave the registry at once")
        }
    }
}
