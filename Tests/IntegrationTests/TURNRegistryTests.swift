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
            // A TTL long enough to read the record back on a loaded machine, then polled.
            let written = ContinuousClock.now
            try await registry.register(TURNNodeRecord(nodeID: "dead", urls: ["turn:dead"], allocations: 0, draining: false), ttl: .seconds(2))
            #expect(try await registry.liveNodes().map(\.nodeID) == ["dead"])
            while try await !registry.liveNodes().isEmpty, ContinuousClock.now < written + .seconds(8) {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await registry.liveNodes().isEmpty, "still live 8 s after a 2 s TTL")
            #expect(ContinuousClock.now - written >= .seconds(2))
        }
    }

    /// `switchboard turn` with a Redis URL, run as a user would: it registers, its
    /// credentials relay, a tenant suspension on the control channel ends that tenant's
    /// allocations, and SIGTERM takes it out of the registry.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/turnutils_uclient"), "coturn's turnutils_uclient is not installed"))
    func theTurnCommandRegistersRelaysAndHearsTenantSuspensions() async throws {
        guard let url = Self.redisURL else {
            print("TURN registry tests skipped: REDIS_URL is not set")
            return
        }
        let prefixFree = "turn-cmd-\(UUID().uuidString.prefix(8))"
        let (turnPort, admin) = (try NodeProcess.freePort(), try NodeProcess.freePort())
        let node = try NodeProcess(["turn"], environment: [
            "SWITCHBOARD_REDIS_URL": url, "SWITCHBOARD_TURN_SECRETS": "cmd-secret,older-secret", "SWITCHBOARD_HOST": "127.0.0.1",
            "SWITCHBOARD_TURN_PORT": "\(turnPort)", "SWITCHBOARD_ADMIN_PORT": "\(admin)", "SWITCHBOARD_TURN_PUBLIC_IP": "127.0.0.1",
            "SWITCHBOARD_TURN_ALLOW_LOOPBACK": "true", "SWITCHBOARD_NODE_ID": prefixFree, "SWITCHBOARD_DRAIN_TIMEOUT": "1",
            "SWITCHBOARD_TURN_RELAY_PORTS": "42000-42999",
        ])
        defer { node.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
        var logger = Logger(label: "turn-cmd-test")
        logger.logLevel = .critical
        let client = RedisClient(configuration: try RedisConfiguration(url: url), logger: logger)
        let registry = RedisTURNRegistry(client: client)
        let bus = RedisBus(client: client, configuration: .init(nodeID: "test-\(prefixFree)"), logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            defer {
                client.shutDown()
                group.cancelAll()
            }
            #expect(await client.waitUntilAvailable(timeout: .seconds(5)))
            var mine: TURNNodeRecord?
            let deadline = ContinuousClock.now + .seconds(5)
            while mine == nil, ContinuousClock.now < deadline {
                mine = try await registry.liveNodes().first { $0.nodeID == prefixFree }
                if mine == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(mine?.urls.first == "turn:127.0.0.1:\(turnPort)?transport=udp")

            // Allocate with credentials signed by the older secret, as a signaling node would.
            let username = "\(Int(Date().timeIntervalSince1970) + 600):acme:p1"
            let password = TURNRESTCredentials.password(secret: "older-secret", username: username)
            let peerPort = try NodeProcess.freePort()
            let peer = try ToolProcess("/usr/bin/turnutils_peer", ["-p", "\(peerPort)", "-L", "127.0.0.1"])
            defer { peer.stop() }
            try await Task.sleep(for: .milliseconds(300))
            let uclient = try ToolProcess(
                "/usr/bin/turnutils_uclient",
                ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", "\(peerPort)", "-p", "\(turnPort)", "-n", "10", "-z", "5", "-c", "127.0.0.1"])
            defer { uclient.stop() }
            #expect(try await uclient.waitForExit(timeout: .seconds(30)) == 0)
            #expect(uclient.output.contains("tot_recv_msgs=10"), "\(uclient.output.suffix(400))")
            #expect(try await Self.allocations(admin) > 0)

            bus.publish(.tenantDisconnect(tenantID: "acme", reason: "tenant suspended"), to: .control)
            let ended = ContinuousClock.now + .seconds(5)
            while try await Self.allocations(admin) > 0, ContinuousClock.now < ended { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await Self.allocations(admin) == 0, "the suspended tenant's allocations were not ended")

            #expect(try await node.terminate() == 0, "\(node.stderr)")
            #expect(try await registry.liveNodes().first { $0.nodeID == prefixFree } == nil)
        }
    }

    /// The allocations a TURN node's `/readyz` reports.
    static func allocations(_ admin: Int) async throws -> Int {
        let body = try await HTTPProbe.get(port: admin, path: "/readyz").body
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return object?["allocations"] as? Int ?? -1
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
