import Foundation
import RedisBus
import Signaling
import Synchronization
import Testing

/// One contract for every ``Roster`` (issue #13): the embedded ``InMemoryRoster`` and the
/// cluster's ``RedisRoster`` on a real Redis. Two "nodes" — with the Redis roster two clients,
/// each with its own node channel — join one room, relay, resume on the other node, and are
/// limited and replaced across the cluster.
@Suite("Roster contract", .serialized, .timeLimit(.minutes(2)))
struct RosterContractTests {
    enum Implementation: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case inMemory, redis
        var testDescription: String { rawValue }
    }

    /// What one node hears on its roster channel.
    final class Inbox: Sendable {
        private let events = Mutex<[RosterEvent]>([])
        func append(_ event: RosterEvent) { events.withLock { $0.append(event) } }
        var all: [RosterEvent] { events.withLock { $0 } }

        var deliveries: [(session: String, seq: UInt64, frame: String)] {
            all.compactMap {
                if case .deliver(let session, let seq, let frame) = $0 { (session, seq, String(decoding: frame, as: UTF8.self)) } else { nil }
            }
        }

        func wait(_ what: String, _ condition: @escaping @Sendable ([RosterEvent]) -> Bool) async throws {
            let ok = await eventually(.seconds(5)) { condition(self.all) }
            if !ok { throw RosterTestFailure("timed out waiting for \(what); got \(all)") }
        }
    }

    struct RosterTestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Two nodes, each with a roster handle and an inbox: with Redis, two clients on one
    /// server under a fresh key prefix; in memory, one roster both nodes share.
    static func withTwoNodes(
        _ implementation: Implementation, limits: ReplayBuffer.Limits = .init(),
        _ body: (_ a: any Roster, _ inboxA: Inbox, _ b: any Roster, _ inboxB: Inbox) async throws -> Void
    ) async throws {
        let inboxA = Inbox()
        let inboxB = Inbox()
        switch implementation {
        case .inMemory:
            let roster = InMemoryRoster(configuration: .init(replayLimits: limits))
            let subA = try await roster.subscribe(node: "node-a") { inboxA.append($0) }
            let subB = try await roster.subscribe(node: "node-b") { inboxB.append($0) }
            defer {
                subA.cancel()
                subB.cancel()
            }
            try await body(roster, inboxA, roster, inboxB)
        case .redis:
            guard TestRedis.url != nil else {
                print("Redis roster contract skipped: REDIS_URL is not set")
                return
            }
            let prefix = TestRedis.unique("sbt")
            let clientA = RedisClient(configuration: try TestRedis.configuration, logger: TestRedis.logger)
            let clientB = RedisClient(configuration: try TestRedis.configuration, logger: TestRedis.logger)
            let configuration = RedisRoster.Configuration(prefix: prefix, replayLimits: limits)
            let a = RedisRoster(client: clientA, configuration: configuration, logger: TestRedis.logger)
            let b = RedisRoster(client: clientB, configuration: configuration, logger: TestRedis.logger)
            try await withRunningClient(clientA) {
                try await withRunningClient(clientB) {
                    #expect(await clientA.waitUntilAvailable(timeout: .seconds(5)))
                    #expect(await clientB.waitUntilAvailable(timeout: .seconds(5)))
                    let subA = try await a.subscribe(node: "node-a") { inboxA.append($0) }
                    let subB = try await b.subscribe(node: "node-b") { inboxB.append($0) }
                    defer {
                        subA.cancel()
                        subB.cancel()
                    }
                    try await body(a, inboxA, b, inboxB)
                }
            }
        }
    }

    static func peer(_ peerId: String, session: String, node: String, metadata: String = "{}") throws -> PeerRecord {
        PeerRecord(
            tenantID: "acme", room: "lobby", peerId: peerId, metadata: try RawJSON(validating: metadata), sessionId: session,
            node: node, joinedAt: Date(timeIntervalSince1970: 1_780_000_000.123))
    }

    static func address(_ peer: PeerRecord) -> SessionAddress {
        SessionAddress(tenantID: peer.tenantID, room: peer.room, peerId: peer.peerId, sessionId: peer.sessionId)
    }

    static func join(_ roster: any Roster, _ peer: PeerRecord, maxPeers: Int = 100, maxConnections: Int = 100) async throws -> RosterJoinOutcome {
        try await roster.join(RosterJoin(peer: peer, resumeSecret: "secret-\(peer.sessionId)", maxPeers: maxPeers, maxConnections: maxConnections))
    }

    static func decode(_ payload: [UInt8]) -> [RosterEvent] {
        RedisRoster.decodeEvents(payload)
    }

    static func relay(_ roster: any Roster, _ relay: Relay) async -> Result<RelayReceipt, RosterError> {
        await withCheckedContinuation { continuation in
            roster.relay(relay) { continuation.resume(returning: $0) }
        }
    }

    @Test(arguments: Implementation.allCases)
    func joinsSeeEachOtherAcrossNodesAndPresenceIsShared(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation) { a, inboxA, b, inboxB in
            let alice = try Self.peer("alice", session: "S-alice", node: "node-a", metadata: #"{"name":"Alice"}"#)
            let bob = try Self.peer("bob", session: "S-bob", node: "node-b")
            #expect(try await Self.join(a, alice) == .joined(others: [], replaced: nil))
            #expect(try await Self.join(b, bob) == .joined(others: [alice], replaced: nil))
            // Both nodes serve the room now; node-a hears bob join (node-b hears it too and
            // skips its own session).
            try await inboxA.wait("bob joined on node-a") { $0.contains(.peerJoined(bob)) }
            #expect(try await a.peers(tenantID: "acme", room: "lobby") == [alice, bob])
            #expect(try await b.connectionCount(tenantID: "acme") == 2)

            try await b.update(Self.address(bob), metadata: RawJSON(validating: #"{"mood":"ok"}"#))
            try await inboxA.wait("bob's update") {
                $0.contains(.peerUpdated(tenantID: "acme", room: "lobby", peerId: "bob", sessionId: "S-bob", metadata: try! RawJSON(validating: #"{"mood":"ok"}"#)))
            }
            try await b.leave(Self.address(bob), reason: .left)
            try await inboxA.wait("bob left") {
                $0.contains(.peerLeft(tenantID: "acme", room: "lobby", peerId: "bob", sessionId: "S-bob", reason: .left))
            }
            #expect(try await a.peers(tenantID: "acme", room: "lobby") == [alice])
            #expect(try await a.connectionCount(tenantID: "acme") == 1)
            #expect(!inboxB.all.contains { if case .deliver = $0 { true } else { false } })
        }
    }

    @Test(arguments: Implementation.allCases)
    func tenThousandSignalsCrossInOrderNumberedAndLogged(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation) { a, _, b, inboxB in
            let alice = try Self.peer("alice", session: "S-alice", node: "node-a")
            let bob = try Self.peer("bob", session: "S-bob", node: "node-b")
            _ = try await Self.join(a, alice)
            _ = try await Self.join(b, bob)
            let count = 10_000
            let acked = Atomic<Int>(0)
            let failed = Atomic<Int>(0)
            for index in 1...count {
                a.relay(Relay(from: Self.address(alice), kind: .signal, to: "bob", data: try RawJSON(validating: "\(index)"))) { result in
                    switch result {
                    case .success(let receipt) where receipt == RelayReceipt(recipients: 1, nodes: 1): acked.add(1, ordering: .relaxed)
                    default: failed.add(1, ordering: .relaxed)
                    }
                }
            }
            try await inboxB.wait("10,000 deliveries") { events in
                events.reduce(0) { if case .deliver = $1 { $0 + 1 } else { $0 } } >= count
            }
            // Replies come on the command connection, deliveries on the subscriber: either may
            // be last.
            #expect(await eventually { acked.load(ordering: .relaxed) + failed.load(ordering: .relaxed) == count })
            #expect(acked.load(ordering: .relaxed) == count && failed.load(ordering: .relaxed) == 0)
            let deliveries = inboxB.deliveries
            #expect(deliveries.map(\.seq) == (1...UInt64(count)).map { $0 })
            #expect(deliveries.allSatisfy { $0.session == "S-bob" })
            // The frame is exactly what the node would have encoded itself.
            let expected = ServerMessage.encodeRelay(.signal, from: "alice", data: try RawJSON(validating: "1"), seq: 1)
            #expect(deliveries.first?.frame == String(decoding: expected, as: UTF8.self))
            #expect(deliveries.last?.frame == #"{"type":"signal","from":"alice","seq":10000,"data":10000}"#)
        }
    }

    @Test(arguments: Implementation.allCases)
    func aSignalToSomeoneAbsentIsPeerNotFound(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation) { a, _, _, _ in
            let alice = try Self.peer("alice", session: "S-alice", node: "node-a")
            _ = try await Self.join(a, alice)
            let result = await Self.relay(a, Relay(from: Self.address(alice), kind: .signal, to: "nobody", data: .null))
            #expect(throws: RosterError.self) { try result.get() }
            if case .failure(let error) = result { #expect(error.code == .peerNotFound) }
        }
    }

    @Test(arguments: Implementation.allCases)
    func aBroadcastCrossesToEachNodeOnce(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation) { a, inboxA, b, inboxB in
            let sender = try Self.peer("sender", session: "S-0", node: "node-a")
            _ = try await Self.join(a, sender)
            var onB: [String] = []
            for index in 1...3 {
                _ = try await Self.join(b, try Self.peer("b\(index)", session: "S-b\(index)", node: "node-b"))
                onB.append("S-b\(index)")
            }
            _ = try await Self.join(a, try Self.peer("a1", session: "S-a1", node: "node-a"))
            let receipt = try await Self.relay(a, Relay(from: Self.address(sender), kind: .broadcast, to: nil, data: RawJSON(validating: #"["hi"]"#))).get()
            #expect(receipt == RelayReceipt(recipients: 4, nodes: 2))
            try await inboxB.wait("three copies on node-b") { _ in inboxB.deliveries.count == 3 }
            try await inboxA.wait("one copy on node-a") { _ in inboxA.deliveries.count == 1 }
            #expect(Set(inboxB.deliveries.map(\.session)) == Set(onB))
            #expect(inboxA.deliveries.map(\.session) == ["S-a1"])
            #expect(inboxB.deliveries.allSatisfy { $0.seq == 1 && $0.frame == #"{"type":"broadcast","from":"sender","seq":1,"data":["hi"]}"# })
            // One publish per node: Redis counts the messages it sent to each channel.
        }
    }

    @Test(arguments: Implementation.allCases)
    func aSessionResumesOnAnotherNodeWithEverythingItMissedExactlyOnce(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation) { a, inboxA, b, inboxB in
            let alice = try Self.peer("alice", session: "S-alice", node: "node-a")
            let bob = try Self.peer("bob", session: "S-bob", node: "node-a")
            _ = try await Self.join(a, alice)
            _ = try await Self.join(a, bob)
            for index in 1...5 {
                _ = try await Self.relay(a, Relay(from: Self.address(alice), kind: .signal, to: "bob", data: RawJSON(validating: "\(index)"))).get()
            }
            try await inboxA.wait("five for bob") { _ in inboxA.deliveries.count == 5 }
            // node-a dies; bob had processed seq 2. He resumes on node-b.
            let resumed = try await b.resume(
                RosterResume(session: Self.address(bob), resumeSecret: "secret-S-bob", lastSeq: 2, node: "node-b"))
            guard case .resumed(let frames, let seq, let peers, let own) = resumed else { throw RosterTestFailure("not resumed: \(resumed)") }
            #expect(seq == 5 && frames.map(\.seq) == [3, 4, 5] && frames.allSatisfy { $0.kind == .signal })
            #expect(frames.map { String(decoding: $0.frame, as: UTF8.self) } == (3...5).map { #"{"type":"signal","from":"alice","seq":\#($0),"data":\#($0)}"# })
            #expect(peers.map(\.peerId) == ["alice"])
            #expect(own?.sessionId == "S-bob" && own?.node == "node-b")
            try await inboxA.wait("node-a told bob moved") { $0.contains(.moved(sessionId: "S-bob")) }
            // node-b hears that the session is attached there, after all it was sent before.
            try await inboxB.wait("node-b told bob attached") { $0.contains(.attached(sessionId: "S-bob")) }
            // Live messages now go to node-b, numbered on.
            _ = try await Self.relay(a, Relay(from: Self.address(alice), kind: .signal, to: "bob", data: RawJSON(validating: "6"))).get()
            try await inboxB.wait("seq 6 on node-b") { _ in inboxB.deliveries.map(\.seq) == [6] }
            #expect(try await a.peers(tenantID: "acme", room: "lobby").first { $0.peerId == "bob" }?.node == "node-b")

            // A wrong secret, a stale lastSeq beyond the log, and a lastSeq from the future fail.
            #expect(try await b.resume(RosterResume(session: Self.address(bob), resumeSecret: "guess", lastSeq: 6, node: "node-b")) == .unknownSession)
            #expect(try await b.resume(RosterResume(session: Self.address(bob), resumeSecret: "secret-S-bob", lastSeq: 9, node: "node-b")) == .gap)
        }
    }

    @Test(arguments: Implementation.allCases)
    func theReplayLogIsCappedAndAResumeBehindItIsAGap(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation, limits: .init(maxFrames: 4, maxBytes: 1 << 20)) { a, _, b, _ in
            let alice = try Self.peer("alice", session: "S-alice", node: "node-a")
            let bob = try Self.peer("bob", session: "S-bob", node: "node-a")
            _ = try await Self.join(a, alice)
            _ = try await Self.join(a, bob)
            for index in 1...10 {
                _ = try await Self.relay(a, Relay(from: Self.address(alice), kind: .signal, to: "bob", data: RawJSON(validating: "\(index)"))).get()
            }
            #expect(try await b.resume(RosterResume(session: Self.address(bob), resumeSecret: "secret-S-bob", lastSeq: 5, node: "node-b")) == .gap)
            let resumed = try await b.resume(RosterResume(session: Self.address(bob), resumeSecret: "secret-S-bob", lastSeq: 6, node: "node-b"))
            guard case .resumed(let frames, _, _, _) = resumed else { throw RosterTestFailure("not resumed: \(resumed)") }
            #expect(frames.map(\.seq) == [7, 8, 9, 10])
        }
    }

    @Test(arguments: Implementation.allCases)
    func roomAndTenantLimitsHoldAcrossNodes(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation) { a, _, b, _ in
            _ = try await Self.join(a, try Self.peer("p1", session: "S-1", node: "node-a"), maxPeers: 2, maxConnections: 3)
            _ = try await Self.join(b, try Self.peer("p2", session: "S-2", node: "node-b"), maxPeers: 2, maxConnections: 3)
            #expect(try await Self.join(b, try Self.peer("p3", session: "S-3", node: "node-b"), maxPeers: 2, maxConnections: 3) == .roomFull)
            // The same peer id is not a new place: it replaces.
            let again = try await Self.join(b, try Self.peer("p1", session: "S-1b", node: "node-b"), maxPeers: 2, maxConnections: 3)
            guard case .joined(_, let replaced) = again else { throw RosterTestFailure("\(again)") }
            #expect(replaced?.sessionId == "S-1")
            // Another room of the same tenant: one connection left of 3.
            let other = PeerRecord(tenantID: "acme", room: "hall", peerId: "q1", metadata: .emptyObject, sessionId: "S-q1", node: "node-a", joinedAt: Date())
            #expect(try await a.join(RosterJoin(peer: other, resumeSecret: "x", maxPeers: 10, maxConnections: 3)) != .tooManyConnections)
            let fourth = PeerRecord(tenantID: "acme", room: "hall", peerId: "q2", metadata: .emptyObject, sessionId: "S-q2", node: "node-b", joinedAt: Date())
            #expect(try await b.join(RosterJoin(peer: fourth, resumeSecret: "x", maxPeers: 10, maxConnections: 3)) == .tooManyConnections)
            #expect(try await a.connectionCount(tenantID: "acme") == 3)
        }
    }

    @Test(arguments: Implementation.allCases)
    func theSamePeerJoiningOnAnotherNodeReplacesTheOldSessionThere(_ implementation: Implementation) async throws {
        try await Self.withTwoNodes(implementation) { a, inboxA, b, _ in
            let watcher = try Self.peer("watcher", session: "S-w", node: "node-a")
            _ = try await Self.join(a, watcher)
            _ = try await Self.join(a, try Self.peer("carol", session: "S-c1", node: "node-a"))
            let second = try Self.peer("carol", session: "S-c2", node: "node-b")
            guard case .joined(let others, let replaced) = try await Self.join(b, second) else { throw RosterTestFailure("not joined") }
            #expect(replaced?.sessionId == "S-c1" && replaced?.node == "node-a")
            #expect(others.map(\.peerId) == ["watcher"])
            try await inboxA.wait("replaced, then left and joined") { events in
                guard let replacedAt = events.firstIndex(of: .replaced(sessionId: "S-c1")),
                    let leftAt = events.firstIndex(of: .peerLeft(tenantID: "acme", room: "lobby", peerId: "carol", sessionId: "S-c1", reason: .left)),
                    let joinedAt = events.firstIndex(of: .peerJoined(second))
                else { return false }
                return replacedAt < leftAt && leftAt < joinedAt
            }
            // The old session is gone: its resume fails; the tenant still counts carol once.
            #expect(try await a.resume(RosterResume(session: Self.address(try Self.peer("carol", session: "S-c1", node: "node-a")), resumeSecret: "secret-S-c1", lastSeq: 0, node: "node-a")) == .unknownSession)
            #expect(try await a.connectionCount(tenantID: "acme") == 2)
        }
    }
}

/// The byte layouts of the roster's channel payloads, without Redis.
@Suite struct RosterWireTests {
    @Test func truncatedOrGarbledPayloadsDecodeToWhatIsWhole() {
        var payload: [UInt8] = [UInt8(ascii: "R")]
        payload += [0, 0, 0, 3] + Array("S-1".utf8)
        payload += [UInt8(ascii: "M")] + [0, 0, 0, 3] + Array("S-2".utf8)
        payload += [UInt8(ascii: "A")] + [0, 0, 0, 3] + Array("S-3".utf8)
        #expect(RosterContractTests.decode(payload) == [.replaced(sessionId: "S-1"), .moved(sessionId: "S-2"), .attached(sessionId: "S-3")])
        for cut in 0..<payload.count {
            _ = RosterContractTests.decode(Array(payload[..<cut]))  // never traps
        }
        #expect(RosterContractTests.decode([UInt8(ascii: "D"), 1, 255, 255, 255, 255]) == [])
        #expect(RosterContractTests.decode([UInt8(ascii: "Z"), 0]) == [])
        for _ in 0..<200 {
            _ = RosterContractTests.decode((0..<Int.random(in: 0..<64)).map { _ in UInt8.random(in: 0...255) })
        }
    }
}
