import Foundation
import Logging
import RedisBus
import Signaling
import SwitchboardClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Three `switchboard serve` processes on one Redis and one PostgreSQL (issue #13 item 7):
/// peers on different nodes behave as if on one, and a node may die or drain at any moment
/// without a message lost or doubled.
@Suite("Cluster of serve processes on Redis", .serialized, .timeLimit(.minutes(3)))
struct ClusterTests {
    @Test func peersOnThreeNodesSeeAndReachEachOther() async throws {
        try await Cluster.with(nodes: 3) { cluster in
            let tenant = try await cluster.createTenant()
            let alice = try await cluster.join(tenant, peer: "alice", nodes: [0])
            let bob = try await cluster.join(tenant, peer: "bob", nodes: [1])
            let carol = try await cluster.join(tenant, peer: "carol", nodes: [2])
            guard case .welcome(let welcome) = carol.events.first else { throw TestFailure("no welcome") }
            #expect(welcome.peers.map(\.peerId).sorted() == ["alice", "bob"])
            _ = try await alice.next { $0 == .peerJoined(PeerSummary(peerId: "carol", metadata: .emptyObject)) }
            _ = try await bob.next { $0 == .peerJoined(PeerSummary(peerId: "carol", metadata: .emptyObject)) }

            // signal across nodes, acked; broadcast from the third node reaches the other two.
            try await alice.client.signal(to: "bob", data: RawJSON(validating: #"{"sdp":"offer"}"#), id: "s1")
            _ = try await alice.next { if case .ack = $0 { true } else { false } }
            let signal = try await bob.nextMessage()
            #expect(signal.kind == .signal && signal.from == "alice" && signal.seq == 1 && signal.data == #"{"sdp":"offer"}"#)
            try await carol.client.broadcast(data: RawJSON(validating: "42"))
            #expect(try await alice.nextMessage().seq == 1)
            #expect(try await bob.nextMessage().seq == 2)

            // update reaches the others; presence and REST see every node's peers.
            try await bob.client.update(metadata: RawJSON(validating: #"{"mic":false}"#))
            _ = try await carol.next { if case .peerUpdated(let peer) = $0 { peer.peerId == "bob" } else { false } }
            let peers = try await cluster.tenantRequest("GET", on: 2, "/v1/rooms/room-1/peers", tenant: tenant)
            #expect(peers.status == 200)
            for index in 0..<3 { #expect(peers.body.contains(try cluster.node(index).id), "\(peers.body)") }
            let room = try await cluster.tenantRequest("GET", on: 0, "/v1/rooms/room-1", tenant: tenant)
            #expect(room.body.contains(#""peerCount":3"#), "\(room.body)")
            let sent = try await cluster.tenantRequest("POST", on: 1, "/v1/rooms/room-1/messages", tenant: tenant, body: #"{"data":"hi"}"#)
            #expect(sent.status == 202 && sent.body.contains(#""recipients":3"#), "\(sent)")
            #expect(try await carol.nextMessage().from == "server")

            // A kick through one node ends the session on another; the room hears it.
            let kick = try await cluster.tenantRequest("DELETE", on: 0, "/v1/rooms/room-1/peers/carol", tenant: tenant)
            #expect(kick.status == 204)
            #expect(try await carol.nextClosed().code == 1008)
            #expect(try await alice.next { if case .peerLeft = $0 { true } else { false } } == .peerLeft(peerId: "carol", reason: "kicked"))
            await alice.stop()
            await bob.stop()
        }
    }

    /// A sender's rate limit that a test's bursts never reach.
    static let unlimited = #"{"messagesPerSecond":100000,"messageBurst":100000}"#

    @Test func keyRevocationAndTenantSuspensionReachEveryNode() async throws {
        try await Cluster.with(nodes: 2) { cluster in
            let revoked = try await cluster.createTenant()
            let alice = try await cluster.join(revoked, peer: "alice", nodes: [0])
            let bob = try await cluster.join(revoked, peer: "bob", nodes: [1])
            // The key is revoked through node 0: its sessions end on both nodes (1008).
            let deleted = try await HTTPProbe.request(
                "DELETE", port: try cluster.node(0).port, path: "/v1/tenants/\(revoked.id)/keys/\(revoked.apiKey)",
                authorization: "Bearer \(cluster.adminToken)")
            #expect(deleted.status == 204, "\(deleted)")
            #expect(try await alice.nextClosed().code == 1008)
            #expect(try await bob.nextClosed().code == 1008)

            let suspended = try await cluster.createTenant()
            let carol = try await cluster.join(suspended, peer: "carol", nodes: [0])
            let dave = try await cluster.join(suspended, peer: "dave", nodes: [1])
            let patched = try await HTTPProbe.request(
                "PATCH", port: try cluster.node(1).port, path: "/v1/tenants/\(suspended.id)",
                authorization: "Bearer \(cluster.adminToken)", body: #"{"status":"suspended"}"#)
            #expect(patched.status == 200, "\(patched)")
            #expect(try await carol.nextClosed().code == 1008)
            #expect(try await dave.nextClosed().code == 1008)
            // And a suspended tenant cannot join on any node.
            #expect(try await cluster.upgradeStatus(suspended, peer: "erin", on: 0) == 403)
        }
    }

    @Test func tenThousandCrossNodeSignalsArriveInOrder() async throws {
        try await Cluster.with(nodes: 2) { cluster in
            let tenant = try await cluster.createTenant(limits: Self.unlimited)
            let bob = try await cluster.join(tenant, peer: "bob", nodes: [1])
            let alice = try await cluster.join(tenant, peer: "alice", nodes: [0])
            let total = 10_000
            for index in 1...total {
                try await alice.client.signal(to: "bob", data: RawJSON(validating: "\(index)"))
            }
            let messages = try await bob.waitForMessages(total, timeout: .seconds(60))
            #expect(messages.map(\.seq) == (1...UInt64(total)).map { $0 })
            #expect(messages.map(\.data) == (1...total).map { "\($0)" })
            #expect(!alice.events.contains { if case .error = $0 { true } else { false } })
            await alice.stop()
            await bob.stop()
        }
    }

    @Test func roomAndTenantLimitsHoldAcrossNodesAndAPeerIdIsReplacedAnywhere() async throws {
        try await Cluster.with(nodes: 3) { cluster in
            let tenant = try await cluster.createTenant(limits: #"{"maxConnections":3,"maxPeersPerRoom":2}"#)
            let alice = try await cluster.join(tenant, peer: "alice", nodes: [0])
            let bob = try await cluster.join(tenant, peer: "bob", nodes: [1])
            // The room holds two, wherever the third knocks.
            #expect(try await cluster.upgradeStatus(tenant, peer: "carol", on: 2) == 429)
            // Three sessions for the tenant in all: one more room, one more peer, then no more.
            let dave = try await cluster.join(tenant, room: "room-2", peer: "dave", nodes: [2])
            #expect(try await cluster.upgradeStatus(tenant, room: "room-3", peer: "erin", on: 0) == 429)
            // The same peer id on another node replaces the old session there (4001).
            let alice2 = try await cluster.join(tenant, peer: "alice", nodes: [2])
            #expect(try await alice.nextClosed().code == 4001)
            _ = try await bob.next { $0 == .peerLeft(peerId: "alice", reason: "left") }
            _ = try await bob.next { if case .peerJoined(let peer) = $0 { peer.peerId == "alice" } else { false } }
            try await bob.client.signal(to: "alice", data: RawJSON(validating: "1"))
            #expect(try await alice2.nextMessage().seq == 1)
            await alice2.stop()
            await bob.stop()
            await dave.stop()
        }
    }

    @Test func aSessionOnAKilledNodeResumesElsewhereWithNothingLost() async throws {
        try await Cluster.with(nodes: 3) { cluster in
            let tenant = try await cluster.createTenant(limits: Self.unlimited)
            var fast = SignalingClient.Configuration()
            fast.initialBackoff = .milliseconds(50)
            let alice = try await cluster.join(tenant, peer: "alice", nodes: [0, 1], client: fast)
            let bob = try await cluster.join(tenant, peer: "bob", nodes: [2])
            for index in 1...50 { try await bob.client.signal(to: "alice", data: RawJSON(validating: "\(index)"), id: "a\(index)") }
            _ = try await alice.waitForMessages(50)
            try await cluster.kill9(0)
            // Sent while alice's node is dead: accepted (acked) and kept for her resume.
            for index in 51...100 { try await bob.client.signal(to: "alice", data: RawJSON(validating: "\(index)"), id: "a\(index)") }
            let messages = try await alice.waitForMessages(100, timeout: .seconds(20))
            #expect(messages.map(\.seq) == (1...100).map { UInt64($0) })
            #expect(messages.map(\.data) == (1...100).map { "\($0)" })
            #expect(alice.events.contains { if case .resumed = $0 { true } else { false } })
            let acks = bob.events.filter { if case .ack = $0 { true } else { false } }.count
            #expect(acks == 100)
            #expect(!bob.events.contains { if case .peerLeft = $0 { true } else { false } })
            await alice.stop()
            await bob.stop()
        }
    }

    @Test func aDeadNodesPeersAreReportedLeftWithNodeFailureOnceByOneSurvivor() async throws {
        try await Cluster.with(nodes: 3, environment: ["SWITCHBOARD_RESUME_WINDOW": "1"]) { cluster in
            let tenant = try await cluster.createTenant()
            let alice = try await cluster.join(tenant, peer: "alice", nodes: [0])
            let bob = try await cluster.join(tenant, peer: "bob", nodes: [1])
            let carol = try await cluster.join(tenant, peer: "carol", nodes: [2])
            _ = try await bob.next { if case .peerJoined(let peer) = $0 { peer.peerId == "carol" } else { false } }
            let killed = ContinuousClock.now
            try await cluster.kill9(0)
            // Noticed within 15 s (10 s expiry + a 2 s scan), reported by exactly one survivor.
            _ = try await bob.next(timeout: .seconds(15)) { $0 == .peerLeft(peerId: "alice", reason: "node-failure") }
            #expect(ContinuousClock.now - killed < .seconds(15))
            _ = try await carol.next(timeout: .seconds(5)) { $0 == .peerLeft(peerId: "alice", reason: "node-failure") }
            try await bob.assertAlive()
            try await carol.assertAlive()
            #expect(bob.events.filter { if case .peerLeft = $0 { true } else { false } }.count == 1)
            let peers = try await cluster.tenantRequest("GET", on: 1, "/v1/rooms/room-1/peers", tenant: tenant)
            #expect(!peers.body.contains("alice") && peers.body.contains("carol"), "\(peers.body)")
            _ = alice
            await bob.stop()
            await carol.stop()
        }
    }

    @Test func aRedisRestartedEmptyIsSurvivedAndPresenceRebuilt() async throws {
        guard Cluster.isConfigured else { return }
        try await withPrivateRedis { redis in
            try await Cluster.with(nodes: 2, redisURL: redis.url) { cluster in
                let tenant = try await cluster.createTenant()
                let alice = try await cluster.join(tenant, peer: "alice", nodes: [0])
                let bob = try await cluster.join(tenant, peer: "bob", nodes: [1])
                try await bob.client.signal(to: "alice", data: RawJSON(validating: "1"), id: "1")
                #expect(try await alice.nextMessage().seq == 1)

                try await redis.down()
                // Senders hear `unavailable`, never silence; readiness goes false.
                try await bob.client.signal(to: "alice", data: RawJSON(validating: "2"), id: "2")
                #expect(try await bob.nextError().code == "unavailable")
                #expect(try await NodeProcess.waitForHTTP(port: try cluster.node(0).admin, path: "/readyz", status: 503, timeout: .seconds(10)))
                #expect(try await HTTPProbe.get(port: try cluster.node(0).admin, path: "/healthz").status == 200)

                // Back, empty (no persistence): within 10 s the nodes re-register their
                // sessions and cross-node signaling works again, `seq` going on from 1.
                try await redis.up()
                let back = ContinuousClock.now
                #expect(try await NodeProcess.waitForHTTP(port: try cluster.node(1).admin, path: "/readyz", timeout: .seconds(10)))
                var delivered = false
                while !delivered, ContinuousClock.now - back < .seconds(10) {
                    try await bob.client.signal(to: "alice", data: RawJSON(validating: "3"), id: "3")
                    let answer = try await bob.next { if case .ack = $0 { true } else if case .error = $0 { true } else { false } }
                    if case .ack = answer { delivered = true } else { try await Task.sleep(for: .milliseconds(200)) }
                }
                #expect(delivered)
                let message = try await alice.nextMessage()
                #expect(message.data == "3" && message.seq == 2)
                var peers = ""
                while !(peers.contains("alice") && peers.contains("bob")), ContinuousClock.now - back < .seconds(10) {
                    peers = try await cluster.tenantRequest("GET", on: 0, "/v1/rooms/room-1/peers", tenant: tenant).body
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(peers.contains("alice") && peers.contains("bob"), "\(peers)")
                await alice.stop()
                await bob.stop()
            }
        }
    }

    @Test func signalingGoesOnAcrossNodesWhilePostgreSQLIsDown() async throws {
        guard Cluster.isConfigured, PostgresServer.canStart else { return }
        try await PostgresServer.with { postgres in
            try await PostgresServer.migrate(postgres.url)
            try await Cluster.with(nodes: 2, databaseURL: postgres.url) { cluster in
                let tenant = try await cluster.createTenant()
                let alice = try await cluster.join(tenant, peer: "alice", nodes: [0])
                let bob = try await cluster.join(tenant, peer: "bob", nodes: [1])
                try await postgres.down()
                #expect(try await NodeProcess.waitForHTTP(port: try cluster.node(0).admin, path: "/readyz", status: 503, timeout: .seconds(15)))
                try await bob.client.signal(to: "alice", data: RawJSON(validating: "1"), id: "1")
                _ = try await bob.next { if case .ack = $0 { true } else { false } }
                #expect(try await alice.nextMessage().seq == 1)
                try await postgres.up()
                #expect(try await NodeProcess.waitForHTTP(port: try cluster.node(0).admin, path: "/readyz", timeout: .seconds(20)))
                await alice.stop()
                await bob.stop()
            }
        }
    }

    @Test func turnNodesOfTheRegistryAreHandedOutLeastLoadedFirst() async throws {
        guard let redisURL = Cluster.redisURL else { return }
        try await Cluster.with(nodes: 1, environment: ["SWITCHBOARD_TURN_SECRETS": "registry-secret"]) { cluster in
            var logger = Logger(label: "test.turn-registry")
            logger.logLevel = .warning
            let client = RedisClient(configuration: try RedisConfiguration(url: redisURL), logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await client.run() }
                defer { group.cancelAll() }
                let registry = RedisTURNRegistry(client: client)
                let tag = cluster.name
                func record(_ name: String, _ allocations: Int, draining: Bool = false) -> TURNNodeRecord {
                    TURNNodeRecord(nodeID: "\(tag)-\(name)", urls: ["turn:\(tag)-\(name).example:3478?transport=udp"], allocations: allocations, draining: draining)
                }
                _ = await client.waitUntilAvailable(timeout: .seconds(5))
                try await registry.register(record("busy", 5), ttl: .seconds(30))
                try await registry.register(record("idle", 1), ttl: .seconds(30))
                try await registry.register(record("draining", 0, draining: true), ttl: .seconds(30))
                let tenant = try await cluster.createTenant()
                func urls() async throws -> String {
                    try await cluster.tenantRequest("POST", on: 0, "/v1/turn/credentials", tenant: tenant, body: "{}").body
                }
                var body = ""
                let deadline = ContinuousClock.now + .seconds(5)
                while !body.contains("\(tag)-busy"), ContinuousClock.now < deadline {
                    body = try await urls()
                    try await Task.sleep(for: .milliseconds(100))
                }
                let idle = try #require(body.range(of: "\(tag)-idle.example"), "\(body)")
                let busy = try #require(body.range(of: "\(tag)-busy.example"), "\(body)")
                #expect(idle.lowerBound < busy.lowerBound, "least loaded first: \(body)")
                #expect(!body.contains("\(tag)-draining"), "\(body)")
                // A node that leaves the registry is no longer handed out.
                try await registry.deregister(nodeID: "\(tag)-idle")
                let gone = ContinuousClock.now + .seconds(5)
                while try await urls().contains("\(tag)-idle"), ContinuousClock.now < gone {
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(try await !urls().contains("\(tag)-idle"))
                try await registry.deregister(nodeID: "\(tag)-busy")
                try await registry.deregister(nodeID: "\(tag)-draining")
            }
        }
    }

    @Test func aDrainUnderLoadLosesAndDoublesNothing() async throws {
        try await Cluster.with(nodes: 3) { cluster in
            let tenant = try await cluster.createTenant(limits: Self.unlimited)
            var fast = SignalingClient.Configuration()
            fast.initialBackoff = .milliseconds(50)
            let alice = try await cluster.join(tenant, peer: "alice", nodes: [0, 1], client: fast)
            let bob = try await cluster.join(tenant, peer: "bob", nodes: [2])
            // ~200 messages a second for 5 s: what arrives while alice waits out her drain
            // `retryAfterMs` (up to 2.5 s: half the 5 s drain timeout) stays within the 1,024
            // frames a session keeps.
            let total = 1_000
            let drained = try cluster.node(0).process
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for index in 1...total {
                        try await bob.client.signal(to: "alice", data: RawJSON(validating: "\(index)"))
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(1))
                    kill(drained.process.processIdentifier, SIGTERM)
                }
                try await group.waitForAll()
            }
            let messages = try await alice.waitForMessages(total, timeout: .seconds(30))
            #expect(messages.map(\.seq) == (1...total).map { UInt64($0) })
            #expect(messages.map(\.data) == (1...total).map { "\($0)" })
            #expect(alice.events.contains { if case .resumed = $0 { true } else { false } })
            #expect(try await drained.waitForExit(timeout: .seconds(15)) == 0, "\(drained.stderr)")
            #expect(!bob.events.contains { if case .peerLeft = $0 { true } else { false } })
            #expect(!bob.events.contains { if case .error = $0 { true } else { false } })
            await alice.stop()
            await bob.stop()
        }
    }
}

extension TestPeer {
    /// Waits until `count` relayed messages arrived; returns them in arrival order.
    func waitForMessages(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [(seq: UInt64, data: String)] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let messages = events.compactMap { event -> (seq: UInt64, data: String)? in
                if case .message(_, _, let data, let seq) = event { (seq, data.description) } else { nil }
            }
            if messages.count >= count { return messages }
            guard ContinuousClock.now < deadline else {
                throw TestFailure("got \(messages.count) of \(count) messages; last events: \(events.suffix(5))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
