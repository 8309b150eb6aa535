import Foundation
import Testing

@testable import Signaling

@Suite struct HubTests {
    static func data(_ text: String) throws -> RawJSON { try RawJSON.parse(text) }

    // MARK: Join

    @Test func joinSendsWelcomeFirstWithTheOtherPeers() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice", metadata: try Self.data(#"{"name":"Alice"}"#))
        let aliceFrames = alice.transport.take()
        guard case .welcome(let aliceWelcome) = aliceFrames.first else {
            Issue.record("first frame is not welcome: \(aliceFrames)")
            return
        }
        #expect(aliceFrames.count == 1)
        #expect(aliceWelcome.peers.isEmpty)
        #expect(aliceWelcome.sessionId == alice.session.id)
        #expect(aliceWelcome.peerId == "alice")
        #expect(aliceWelcome.room == "lobby")
        #expect(aliceWelcome.resumeToken == alice.session.resumeToken)
        #expect(alice.transport.types.isEmpty)

        let carol = try harness.join("carol")
        _ = alice.transport.take()
        let bob = try harness.join("bob", metadata: try Self.data(#"{"name":"Bob"}"#))
        let bobFrames = bob.transport.events
        guard case .welcome(let bobWelcome) = bobFrames.first else {
            Issue.record("first frame is not welcome: \(bobFrames)")
            return
        }
        #expect(bobFrames.count == 1)
        #expect(bobWelcome.peers.sorted { $0.peerId < $1.peerId } == [
            PeerSummary(peerId: "alice", metadata: try Self.data(#"{"name":"Alice"}"#)),
            PeerSummary(peerId: "carol", metadata: .emptyObject),
        ])
        let joined = ServerEvent.peerJoined(PeerSummary(peerId: "bob", metadata: try Self.data(#"{"name":"Bob"}"#)))
        #expect(alice.transport.take() == [joined])
        #expect(carol.transport.take().last == joined)
    }

    @Test func resumeTokensAreUnguessableAndDistinct() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        #expect(alice.session.resumeToken != bob.session.resumeToken)
        #expect(Base64URL.decode(alice.session.resumeToken)?.count == 32)
    }

    @Test func roomsAndTenantsDoNotSeeEachOther() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let other = try harness.join("bob", tenant: "other")
        let kitchen = try harness.join("carol", room: "kitchen")
        for member in [alice, other, kitchen] {
            guard case .welcome(let welcome) = member.transport.take().first else {
                Issue.record("no welcome")
                continue
            }
            #expect(welcome.peers.isEmpty)
        }
        #expect(alice.transport.take().isEmpty)
        #expect(harness.hub.signal(from: alice.session, to: "bob", data: .null) == .peerNotFound)
        #expect(harness.hub.signal(from: alice.session, to: "carol", data: .null) == .peerNotFound)
        #expect(harness.hub.broadcast(from: alice.session, data: .null) == .routed(local: 0, remote: 0))
        #expect(other.transport.take().isEmpty)
        #expect(kitchen.transport.take().isEmpty)
    }

    @Test func countsSessionsRoomsAndConnections() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        _ = try harness.join("bob")
        _ = try harness.join("carol", room: "kitchen")
        _ = try harness.join("dave", tenant: "other")
        #expect(harness.hub.sessionCount == 4)
        #expect(harness.hub.roomCount == 3)
        #expect(harness.hub.connectionCounts() == ["acme": 3, "other": 1])
        #expect(Set(harness.hub.members(tenantID: "acme", room: "lobby").map(\.peerId)) == ["alice", "bob"])
        harness.hub.end(alice.session, reason: .left, close: (.normal, "bye"))
        #expect(harness.hub.sessionCount == 3)
        #expect(harness.hub.connectionCounts() == ["acme": 2, "other": 1])
    }

    // MARK: Relay

    @Test func signalsAreNumberedPerReceivingSession() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        let carol = try harness.join("carol")
        for member in [alice, bob, carol] { _ = member.transport.take() }

        for index in 1...3 {
            #expect(harness.hub.signal(from: alice.session, to: "bob", data: try Self.data(#"{"n":\#(index)}"#)) == .routed(local: 1, remote: 0))
        }
        #expect(harness.hub.signal(from: carol.session, to: "bob", data: try Self.data(#""from carol""#)) == .routed(local: 1, remote: 0))
        #expect(harness.hub.signal(from: bob.session, to: "alice", data: try Self.data("[ 1, 2 ]")) == .routed(local: 1, remote: 0))

        #expect(bob.transport.take().map(\.relay) == [
            Relay(.signal, "alice", #"{"n":1}"#, 1), Relay(.signal, "alice", #"{"n":2}"#, 2), Relay(.signal, "alice", #"{"n":3}"#, 3),
            Relay(.signal, "carol", #""from carol""#, 4),
        ])
        #expect(alice.transport.take().map(\.relay) == [Relay(.signal, "bob", "[ 1, 2 ]", 1)])
        #expect(carol.transport.take().isEmpty)
        #expect(bob.session.lastSeq == 4)
        #expect(bob.transport.types.isEmpty)
    }

    @Test func signalToAnAbsentPeerIsPeerNotFound() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        #expect(harness.hub.signal(from: alice.session, to: "nobody", data: .null) == .peerNotFound)
        #expect(alice.session.lastSeq == 0)
    }

    @Test func signalToAPeerThatLeftIsPeerNotFound() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        harness.hub.end(bob.session, reason: .left, close: (.normal, "left"))
        #expect(harness.hub.signal(from: alice.session, to: "bob", data: .null) == .peerNotFound)
    }

    @Test func broadcastReachesEveryoneButTheSender() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        let carol = try harness.join("carol")
        for member in [alice, bob, carol] { _ = member.transport.take() }
        #expect(harness.hub.broadcast(from: alice.session, data: try Self.data(#"{"hello":true}"#)) == .routed(local: 2, remote: 0))
        #expect(harness.hub.broadcast(from: bob.session, data: .null) == .routed(local: 2, remote: 0))
        #expect(alice.transport.take().map(\.relay) == [Relay(.broadcast, "bob", "null", 1)])
        #expect(bob.transport.take().map(\.relay) == [Relay(.broadcast, "alice", #"{"hello":true}"#, 1)])
        #expect(carol.transport.take().map(\.relay) == [Relay(.broadcast, "alice", #"{"hello":true}"#, 1), Relay(.broadcast, "bob", "null", 2)])
    }

    @Test func signalsAndBroadcastsShareOneSequence() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = bob.transport.take()
        _ = harness.hub.signal(from: alice.session, to: "bob", data: .null)
        _ = harness.hub.broadcast(from: alice.session, data: .null)
        _ = harness.hub.signal(from: alice.session, to: "bob", data: .null)
        #expect(bob.transport.take().compactMap(\.relay).map(\.seq) == [1, 2, 3])
    }

    @Test func signalToAPeerOnAnotherNodeGoesOverTheBus() throws {
        let bus = InProcessBus()
        let inbox = BusInbox()
        let subscription = bus.subscribe(.node("node-b")) { inbox.append($0) }
        defer { subscription.cancel() }
        let harness = HubHarness(bus: bus)
        let alice = try harness.join("alice")
        harness.presence.join(PeerRecord(
            tenantID: "acme", room: "lobby", peerId: "remote", metadata: .emptyObject, sessionId: "S-remote", node: "node-b",
            joinedAt: Date()))
        let data = try Self.data(#"{"sdp":"x"}"#)
        #expect(harness.hub.signal(from: alice.session, to: "remote", data: data) == .routed(local: 0, remote: 1))
        #expect(harness.hub.broadcast(from: alice.session, data: data) == .routed(local: 0, remote: 1))
        #expect(inbox.all == [
            .deliver(RelayEnvelope(tenantID: "acme", room: "lobby", kind: .signal, from: "alice", to: "remote", exclude: nil, data: data)),
            .deliver(RelayEnvelope(tenantID: "acme", room: "lobby", kind: .broadcast, from: "alice", to: nil, exclude: "alice", data: data)),
        ])
    }

    @Test func aBusThatIsDownMakesRemoteDeliveryUnavailable() throws {
        let harness = HubHarness(bus: DownBus())
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        harness.presence.join(PeerRecord(
            tenantID: "acme", room: "lobby", peerId: "remote", metadata: .emptyObject, sessionId: "S-remote", node: "node-b",
            joinedAt: Date()))
        #expect(harness.hub.signal(from: alice.session, to: "remote", data: .null) == .unavailable)
        // The broadcast still reached the local peer (local delivery comes first), but the
        // sender learns the remote node was not reached.
        #expect(harness.hub.broadcast(from: alice.session, data: .null) == .unavailable)
        #expect(bob.session.lastSeq == 1)
        // Local delivery needs no bus.
        #expect(harness.hub.signal(from: alice.session, to: "bob", data: .null) == .routed(local: 1, remote: 0))
        #expect(bob.session.lastSeq == 2)
    }

    @Test func deliverEnvelopesFromTheBusReachLocalSessions() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        harness.hub.handle(.deliver(RelayEnvelope(tenantID: "acme", room: "lobby", kind: .signal, from: "remote", to: "bob", exclude: nil, data: .null)))
        harness.hub.handle(.deliver(RelayEnvelope(tenantID: "acme", room: "lobby", kind: .broadcast, from: "remote", to: nil, exclude: "alice", data: .emptyArray)))
        harness.hub.handle(.deliver(RelayEnvelope(tenantID: "other", room: "lobby", kind: .broadcast, from: "x", to: nil, exclude: nil, data: .null)))
        #expect(bob.transport.take().map(\.relay) == [Relay(.signal, "remote", "null", 1), Relay(.broadcast, "remote", "[]", 2)])
        #expect(alice.transport.take().isEmpty)
        let envelope = RelayEnvelope(tenantID: "acme", room: "lobby", kind: .signal, from: "server", to: "ghost", exclude: nil, data: .null)
        #expect(harness.hub.deliverLocally(envelope) == 0)
        #expect(harness.hub.route(envelope) == .peerNotFound)
    }

    @Test func updateTellsTheOthersAndPresence() async throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        let metadata = try Self.data(#"{"muted":true}"#)
        harness.hub.update(alice.session, metadata: metadata)
        #expect(bob.transport.take() == [.peerUpdated(PeerSummary(peerId: "alice", metadata: metadata))])
        #expect(alice.transport.take().isEmpty)
        #expect(alice.session.metadata == metadata)
        #expect(await harness.presence.peer(tenantID: "acme", room: "lobby", peerId: "alice")?.metadata == metadata)
        let carol = try harness.join("carol")
        guard case .welcome(let welcome) = carol.transport.events.first else {
            Issue.record("no welcome")
            return
        }
        #expect(welcome.peers.first { $0.peerId == "alice" }?.metadata == metadata)
    }

    // MARK: Replacement and limits

    @Test func samePeerJoiningTwiceReplacesTheOldConnection() async throws {
        let harness = HubHarness()
        let first = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = first.transport.take()
        _ = bob.transport.take()

        let second = try harness.join("alice", metadata: try Self.data(#"{"v":2}"#))

        let old = first.transport.take()
        #expect(old.map(\.errorCode) == ["replaced"])
        #expect(first.transport.closes == [RecordingTransport.Close(code: .replaced, reason: "replaced")])
        #expect(first.transport.closes.first?.code.rawValue == 4001)
        #expect(first.session.phase == .ended)
        #expect(bob.transport.take() == [
            .peerLeft(peerId: "alice", reason: "left"),
            .peerJoined(PeerSummary(peerId: "alice", metadata: try Self.data(#"{"v":2}"#))),
        ])
        guard case .welcome(let welcome) = second.transport.events.first else {
            Issue.record("no welcome")
            return
        }
        #expect(welcome.peers.map(\.peerId) == ["bob"])
        #expect(harness.hub.sessionCount == 2)
        #expect(await harness.presence.connectionCount(tenantID: "acme") == 2)
        #expect(await harness.presence.peer(tenantID: "acme", room: "lobby", peerId: "alice")?.sessionId == second.session.id)

        // Messages now go to the new connection only.
        _ = harness.hub.signal(from: bob.session, to: "alice", data: .null)
        #expect(second.transport.take().compactMap(\.relay) == [Relay(.signal, "bob", "null", 1)])
        #expect(first.transport.take().isEmpty)
        // The old session cannot be resumed.
        #expect(harness.resume(first, lastSeq: 0).0.isUnknownSession)
        let ended = harness.auditEvents.filter { $0.type == .sessionEnded }
        #expect(ended.map(\.session) == [first.session.id])
        #expect(ended.first?.values["reason"] == .string("replaced"))
    }

    @Test func aFullRoomRefusesNewPeersButNotAReplacement() throws {
        let harness = HubHarness()
        #expect(harness.attempt("alice", maxPeers: 2).0.isJoined)
        #expect(harness.attempt("bob", maxPeers: 2).0.isJoined)
        let (outcome, transport) = harness.attempt("carol", maxPeers: 2)
        #expect(outcome.isRoomFull)
        #expect(transport.events.isEmpty)
        #expect(harness.attempt("alice", maxPeers: 2).0.isJoined)
        #expect(harness.attempt("carol", room: "kitchen", maxPeers: 2).0.isJoined)
        #expect(harness.hub.members(tenantID: "acme", room: "lobby").count == 2)
    }

    @Test func theTenantConnectionLimitSpansRooms() throws {
        let harness = HubHarness()
        #expect(harness.attempt("alice", room: "a", maxConnections: 2).0.isJoined)
        #expect(harness.attempt("bob", room: "b", maxConnections: 2).0.isJoined)
        let (outcome, transport) = harness.attempt("carol", room: "c", maxConnections: 2)
        #expect(outcome.isTooManyConnections)
        #expect(transport.events.isEmpty)
        // A replacement does not add a connection; another tenant has its own count.
        #expect(harness.attempt("alice", room: "a", maxConnections: 2).0.isJoined)
        #expect(harness.attempt("carol", tenant: "other", room: "c", maxConnections: 2).0.isJoined)
        #expect(harness.hub.connectionCounts() == ["acme": 2, "other": 1])
    }

    @Test func aLeaveFreesAConnection() throws {
        let harness = HubHarness()
        let (first, _) = harness.attempt("alice", maxConnections: 1)
        guard case .joined(let alice) = first else {
            Issue.record("refused")
            return
        }
        #expect(harness.attempt("bob", maxConnections: 1).0.isTooManyConnections)
        harness.hub.end(alice, reason: .left, close: (.normal, "left"))
        #expect(harness.attempt("bob", maxConnections: 1).0.isJoined)
    }

    // MARK: Detach and resume

    @Test func resumeReplaysExactlyTheMissedFramesOnceAfterResumed() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        _ = harness.hub.signal(from: alice.session, to: "bob", data: try Self.data(#""m1""#))
        #expect(bob.transport.take().compactMap(\.relay) == [Relay(.signal, "alice", #""m1""#, 1)])

        let generation = harness.hub.detach(bob.session, transport: bob.transport)
        #expect(generation != nil)
        #expect(bob.session.phase == .detached)
        for index in 2...4 {
            #expect(harness.hub.signal(from: alice.session, to: "bob", data: try Self.data(#""m\#(index)""#)) == .routed(local: 1, remote: 0))
        }
        #expect(harness.hub.broadcast(from: alice.session, data: try Self.data(#""b5""#)) == .routed(local: 1, remote: 0))
        #expect(bob.transport.take().isEmpty)

        let (outcome, fresh) = harness.resume(bob, lastSeq: 1)
        guard case .resumed(let resumed, let replayed) = outcome else {
            Issue.record("resume failed: \(outcome)")
            return
        }
        #expect(resumed === bob.session)
        #expect(replayed == 4)
        #expect(fresh.types == [.resumed, .signal, .signal, .signal, .broadcast])
        let frames = fresh.take()
        #expect(frames.first == .resumed(sessionId: bob.session.id, replayed: 4, peers: [PeerSummary(peerId: "alice", metadata: .emptyObject)]))
        #expect(frames.dropFirst().map(\.relay) == [
            Relay(.signal, "alice", #""m2""#, 2), Relay(.signal, "alice", #""m3""#, 3), Relay(.signal, "alice", #""m4""#, 4),
            Relay(.broadcast, "alice", #""b5""#, 5),
        ])
        #expect(bob.session.phase == .active)

        // Live traffic continues on the new transport only, numbered on.
        _ = harness.hub.signal(from: alice.session, to: "bob", data: try Self.data(#""m6""#))
        #expect(fresh.take().map(\.relay) == [Relay(.signal, "alice", #""m6""#, 6)])
        #expect(bob.transport.take().isEmpty)
        // Other peers saw nothing of it.
        #expect(alice.transport.take().isEmpty)
        // The old socket closing late does not detach the resumed session.
        #expect(harness.hub.detach(bob.session, transport: bob.transport) == nil)
        #expect(bob.session.phase == .active)
    }

    @Test func resumeWithNothingMissedReplaysNothing() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = harness.hub.signal(from: alice.session, to: "bob", data: .null)
        _ = harness.hub.detach(bob.session, transport: bob.transport)
        let (outcome, fresh) = harness.resume(bob, lastSeq: 1)
        #expect(outcome.replayed == 0)
        #expect(fresh.take() == [.resumed(sessionId: bob.session.id, replayed: 0, peers: [PeerSummary(peerId: "alice", metadata: .emptyObject)])])
    }

    @Test func resumeOfAHalfOpenConnectionClosesTheOldOneAsReplaced() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        _ = alice.transport.take()
        let (outcome, fresh) = harness.resume(alice, lastSeq: 0)
        #expect(outcome.replayed == 0)
        #expect(alice.transport.take().map(\.errorCode) == ["replaced"])
        #expect(alice.transport.closes.map(\.code) == [.replaced])
        #expect(fresh.events.count == 1)
    }

    @Test func resumeBeyondTheReplayBufferIsAGap() throws {
        let harness = HubHarness(replayLimits: .init(maxFrames: 2))
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = harness.hub.detach(bob.session, transport: bob.transport)
        for _ in 1...5 { _ = harness.hub.signal(from: alice.session, to: "bob", data: .null) }
        let (gap, gapTransport) = harness.resume(bob, lastSeq: 0)
        #expect(gap.isGap)
        #expect(gapTransport.events.isEmpty)
        #expect(bob.session.phase == .detached)
        // Ahead of what was sent is no better.
        #expect(harness.resume(bob, lastSeq: 6).0.isGap)
        // Within what is kept still works.
        let (outcome, fresh) = harness.resume(bob, lastSeq: 3)
        #expect(outcome.replayed == 2)
        #expect(fresh.take().dropFirst().compactMap(\.relay).map(\.seq) == [4, 5])
    }

    @Test func resumeRequiresTheSameTenantRoomPeerAndToken() throws {
        let harness = HubHarness()
        let bob = try harness.join("bob")
        _ = harness.hub.detach(bob.session, transport: bob.transport)
        let token = bob.session.resumeToken
        let attempts: [(String, String, String, String)] = [
            (token, "other", "lobby", "bob"),
            (token, "acme", "kitchen", "bob"),
            (token, "acme", "lobby", "mallory"),
            ("not-a-token", "acme", "lobby", "bob"),
            ("", "acme", "lobby", "bob"),
        ]
        for (token, tenant, room, peer) in attempts {
            let transport = RecordingTransport()
            let outcome = harness.hub.resume(token: token, lastSeq: 0, tenantID: tenant, room: room, peerId: peer, transport: transport)
            #expect(outcome.isUnknownSession, "\(tenant)/\(room)/\(peer)")
            #expect(transport.events.isEmpty)
        }
        #expect(bob.session.phase == .detached)
        #expect(harness.resume(bob, lastSeq: 0).0.replayed == 0)
    }

    @Test func expiryAfterDetachEndsTheSessionWithTimeout() async throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = alice.transport.take()
        let generation = try #require(harness.hub.detach(bob.session, transport: bob.transport))
        harness.hub.expire(bob.session, generation: generation)
        #expect(bob.session.phase == .ended)
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "timeout")])
        #expect(harness.resume(bob, lastSeq: 0).0.isUnknownSession)
        #expect(harness.hub.signal(from: alice.session, to: "bob", data: .null) == .peerNotFound)
        #expect(harness.presence.locate(tenantID: "acme", room: "lobby", peerId: "bob") == nil)
        #expect(await harness.presence.connectionCount(tenantID: "acme") == 1)
        #expect(harness.hub.sessionCount == 1)
        #expect(harness.auditEvents.last?.type == .sessionEnded)
        #expect(harness.auditEvents.last?.values["reason"] == .string("timeout"))
        // A second expiry is harmless.
        harness.hub.expire(bob.session, generation: generation)
        #expect(alice.transport.take().isEmpty)
    }

    @Test func aStaleExpiryDoesNothingAfterAResume() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = alice.transport.take()
        let first = try #require(harness.hub.detach(bob.session, transport: bob.transport))
        let (outcome, fresh) = harness.resume(bob, lastSeq: 0)
        #expect(outcome.replayed == 0)
        harness.hub.expire(bob.session, generation: first)
        #expect(bob.session.phase == .active)
        #expect(alice.transport.take().isEmpty)

        // Dropped again: the first window's timer is still stale, the second one counts.
        let second = try #require(harness.hub.detach(bob.session, transport: fresh))
        #expect(second != first)
        harness.hub.expire(bob.session, generation: first)
        #expect(bob.session.phase == .detached)
        harness.hub.expire(bob.session, generation: second)
        #expect(bob.session.phase == .ended)
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "timeout")])
    }

    @Test func expiryOfAnActiveSessionDoesNothing() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        harness.hub.expire(alice.session, generation: 0)
        harness.hub.expire(alice.session, generation: 1)
        #expect(alice.session.phase == .active)
    }

    // MARK: Leaving

    @Test func leaveTellsTheOthersLeftAndClosesNormally() async throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = bob.transport.take()
        harness.hub.end(alice.session, reason: .left, close: (.normal, "left"))
        #expect(bob.transport.take() == [.peerLeft(peerId: "alice", reason: "left")])
        #expect(alice.transport.closes == [RecordingTransport.Close(code: .normal, reason: "left")])
        #expect(alice.session.phase == .ended)
        #expect(harness.presence.locate(tenantID: "acme", room: "lobby", peerId: "alice") == nil)
        #expect(await harness.presence.connectionCount(tenantID: "acme") == 1)
        // Ending twice tells nobody twice.
        harness.hub.end(alice.session, reason: .left, close: (.normal, "left"))
        #expect(bob.transport.take().isEmpty)
        #expect(harness.auditEvents.filter { $0.type == .sessionEnded }.count == 1)
    }

    @Test func theLastPeerLeavingRemovesTheRoom() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        #expect(harness.hub.roomCount == 1)
        harness.hub.end(alice.session, reason: .left, close: nil)
        #expect(harness.hub.roomCount == 0)
        #expect(harness.hub.sessionCount == 0)
        #expect(harness.hub.connectionCounts().isEmpty)
    }

    @Test func kickSendsAnErrorClosesWithPolicyAndTellsTheRoom() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        harness.hub.handle(.kick(tenantID: "acme", room: "lobby", peerId: "alice"))
        #expect(alice.transport.take().map(\.errorCode) == ["forbidden"])
        #expect(alice.transport.closes.map(\.code) == [.policy])
        #expect(alice.transport.closes.first?.code.rawValue == 1008)
        #expect(bob.transport.take() == [.peerLeft(peerId: "alice", reason: "kicked")])
        #expect(alice.session.phase == .ended)
        // Kicking someone absent, or in another tenant, changes nothing.
        harness.hub.handle(.kick(tenantID: "other", room: "lobby", peerId: "bob"))
        harness.hub.handle(.kick(tenantID: "acme", room: "lobby", peerId: "ghost"))
        #expect(bob.session.phase == .active)
        #expect(bob.transport.closes.isEmpty)
    }

    @Test func tenantDisconnectClosesThatTenantsSessionsOnly() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob", room: "kitchen")
        let carol = try harness.join("carol", tenant: "other")
        let dave = try harness.join("dave", tenant: "other")
        for member in [alice, bob, carol, dave] { _ = member.transport.take() }
        harness.hub.handle(.tenantDisconnect(tenantID: "acme", reason: "tenant suspended"))
        for member in [alice, bob] {
            #expect(member.transport.take().map(\.errorCode) == ["forbidden"])
            #expect(member.transport.closes.map(\.code) == [.policy])
            #expect(member.session.phase == .ended)
        }
        for member in [carol, dave] {
            #expect(member.transport.take().isEmpty)
            #expect(member.transport.closes.isEmpty)
            #expect(member.session.phase == .active)
        }
        #expect(harness.hub.connectionCounts() == ["other": 2])
        #expect(harness.hub.signal(from: carol.session, to: "dave", data: .null) == .routed(local: 1, remote: 0))
    }

    @Test func keyRevocationClosesOnlyThatKeysSessions() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice", apiKey: "AK1")
        let bob = try harness.join("bob", apiKey: "AK2")
        _ = alice.transport.take()
        _ = bob.transport.take()
        harness.hub.handle(.keyRevoked(tenantID: "acme", apiKey: "AK2"))
        #expect(bob.transport.take().map(\.errorCode) == ["forbidden"])
        #expect(bob.transport.closes.map(\.code) == [.policy])
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "kicked")])
        #expect(alice.session.phase == .active)
    }

    @Test func roomClosedEndsItsMembersNormally() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob")
        let carol = try harness.join("carol", room: "kitchen")
        for member in [alice, bob, carol] { _ = member.transport.take() }
        harness.hub.handle(.roomClosed(tenantID: "acme", room: "lobby"))
        for member in [alice, bob] {
            #expect(member.transport.closes.map(\.code) == [.normal])
            #expect(member.session.phase == .ended)
        }
        #expect(carol.session.phase == .active)
        #expect(harness.hub.members(tenantID: "acme", room: "lobby").isEmpty)
    }

    @Test func closeAllEndsEverySessionGoingAway() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice")
        let bob = try harness.join("bob", tenant: "other")
        harness.hub.closeAll()
        #expect(alice.transport.closes.map(\.code) == [.goingAway])
        #expect(bob.transport.closes.map(\.code) == [.goingAway])
        #expect(harness.hub.sessionCount == 0)
    }

    // MARK: Drain

    @Test func drainingRefusesJoinsAndAsksSessionsToReconnect() throws {
        let harness = HubHarness()
        var members: [Member] = []
        for index in 0..<20 { members.append(try harness.join("p\(index)")) }
        let detached = try harness.join("sleeper")
        _ = harness.hub.detach(detached.session, transport: detached.transport)
        for member in members + [detached] { _ = member.transport.take() }

        #expect(!harness.hub.isDraining)
        harness.hub.beginDrain(maxRetryAfterMs: 5000)
        #expect(harness.hub.isDraining)
        var delays: [Int] = []
        for member in members {
            let frames = member.transport.take()
            guard frames.count == 1, case .reconnect(let reason, let retryAfterMs) = frames[0] else {
                Issue.record("expected one reconnect, got \(frames)")
                continue
            }
            #expect(reason == "draining")
            #expect((0...5000).contains(retryAfterMs))
            delays.append(retryAfterMs)
        }
        #expect(Set(delays).count > 1, "retryAfterMs must be jittered")
        #expect(detached.transport.take().isEmpty)
        #expect(harness.attempt("late").0.isDraining)
        // Sessions are not ended by the drain itself.
        #expect(members.allSatisfy { $0.session.phase == .active })
    }

    // MARK: Audit

    @Test func sessionLifecycleIsAudited() throws {
        let harness = HubHarness()
        let alice = try harness.join("alice", room: "studio")
        _ = harness.hub.detach(alice.session, transport: alice.transport)
        _ = harness.resume(alice, lastSeq: 0)
        harness.hub.end(alice.session, reason: .left, close: (.normal, "left"))

        let events = harness.auditEvents
        #expect(events.map(\.type) == [.sessionStarted, .sessionResumed, .sessionEnded])
        for event in events {
            #expect(event.tenantID == "acme")
            #expect(event.room == "studio")
            #expect(event.peer == "alice")
            #expect(event.session == alice.session.id)
            #expect(event.node == "node-a")
            #expect(event.time == FixedClock().date)
            #expect(event.id.count == 26)
        }
        #expect(events[0].values["remoteAddress"] == .string("203.0.113.7"))
        #expect(events[0].values["userAgent"] == .string("tests/1.0"))
        #expect(events[1].values["replayed"] == .number(0))
        #expect(events[2].values["reason"] == .string("left"))
        #expect(events[2].values["framesOut"] == .number(2))  // welcome and resumed
        #expect(events[2].values["durationSeconds"] == .number(0))
    }

    @Test func auditEventsStayWithinTheirTenant() throws {
        let harness = HubHarness()
        _ = try harness.join("alice")
        _ = try harness.join("alice", tenant: "other")
        harness.hub.handle(.tenantDisconnect(tenantID: "other", reason: "deleted"))
        let events = harness.auditEvents
        #expect(events.filter { $0.tenantID == "acme" }.map(\.type) == [.sessionStarted])
        #expect(events.filter { $0.tenantID == "other" }.map(\.type) == [.sessionStarted, .sessionEnded])
        #expect(events.filter { $0.tenantID == "other" }.last?.values["reason"] == .string("kicked"))
    }
}
