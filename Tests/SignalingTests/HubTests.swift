import Foundation
import Synchronization
import Testing

@testable import Signaling

@Suite struct HubTests {
    static func data(_ text: String) throws -> RawJSON { try RawJSON.parse(text) }

    static func peer(_ peerId: String, _ metadata: RawJSON = .emptyObject) -> PeerSummary {
        PeerSummary(peerId: peerId, metadata: metadata)
    }

    // MARK: Join

    @Test func joinSendsWelcomeFirstWithTheOtherPeers() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice", metadata: try Self.data(#"{"name":"Alice"}"#))
        let aliceFrames = alice.transport.take()
        let aliceWelcome = try #require(aliceFrames.first?.welcome, "first frame is not welcome: \(aliceFrames)")
        #expect(aliceFrames.count == 1)
        #expect(aliceWelcome.peers.isEmpty)
        #expect(aliceWelcome.sessionId == alice.session.id)
        #expect(aliceWelcome.peerId == "alice")
        #expect(aliceWelcome.room == "lobby")
        #expect(aliceWelcome.resumeToken == alice.session.resumeToken)
        #expect(alice.transport.types.isEmpty)

        let carol = try await harness.join("carol")
        _ = alice.transport.take()
        let bob = try await harness.join("bob", metadata: try Self.data(#"{"name":"Bob"}"#))
        let bobFrames = bob.transport.events
        let bobWelcome = try #require(bobFrames.first?.welcome, "first frame is not welcome: \(bobFrames)")
        #expect(bobFrames.count == 1)
        #expect(bob.transport.types == [.welcome])
        #expect(bobWelcome.peers == [Self.peer("alice", try Self.data(#"{"name":"Alice"}"#)), Self.peer("carol")])
        let joined = ServerEvent.peerJoined(Self.peer("bob", try Self.data(#"{"name":"Bob"}"#)))
        #expect(alice.transport.take() == [joined])
        #expect(carol.transport.take().last == joined)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").map(\.peerId) == ["alice", "bob", "carol"])
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").allSatisfy { $0.node == "node-a" })
    }

    @Test func resumeTokensAreTheSessionIdAndAnUnguessableSecret() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        #expect(alice.session.resumeToken != bob.session.resumeToken)
        let parsed = try #require(Session.parseResumeToken(alice.session.resumeToken))
        #expect(parsed.sessionId == alice.session.id)
        #expect(Base64URL.decode(parsed.secret)?.count == 32)
        #expect(Session.parseResumeToken(bob.session.resumeToken)?.secret != parsed.secret)
    }

    @Test func roomsAndTenantsDoNotSeeEachOther() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let other = try await harness.join("bob", tenant: "other")
        let kitchen = try await harness.join("carol", room: "kitchen")
        for member in [alice, other, kitchen] {
            let welcome = try #require(member.transport.take().first?.welcome)
            #expect(welcome.peers.isEmpty)
        }
        #expect(await harness.signal(from: alice, to: "bob") == .peerNotFound)
        #expect(await harness.signal(from: alice, to: "carol") == .peerNotFound)
        #expect(await harness.broadcast(from: alice) == .routed(recipients: 0, viaBus: false))
        for member in [alice, other, kitchen] { #expect(member.transport.take().isEmpty) }
    }

    @Test func countsSessionsRoomsAndConnections() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        _ = try await harness.join("bob")
        _ = try await harness.join("carol", room: "kitchen")
        _ = try await harness.join("dave", tenant: "other")
        #expect(harness.hub.sessionCount == 4)
        #expect(harness.hub.roomCount == 3)
        #expect(harness.hub.connectionCounts() == ["acme": 3, "other": 1])
        #expect(Set(harness.hub.members(tenantID: "acme", room: "lobby").map(\.peerId)) == ["alice", "bob"])
        #expect(harness.hub.session(id: alice.session.id) === alice.session)
        harness.hub.end(alice.session, reason: .left, close: (.normal, "bye"))
        #expect(harness.hub.sessionCount == 3)
        #expect(harness.hub.connectionCounts() == ["acme": 2, "other": 1])
        #expect(harness.hub.session(id: alice.session.id) == nil)
        #expect(try await harness.inner.connectionCount(tenantID: "acme") == 2)
    }

    @Test func whatArrivesBeforeTheTransportIsHeldUntilAfterTheWelcome() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        _ = alice.transport.take()
        let bob = try await harness.reserve("bob")
        #expect(bob.phase == .opening)
        // The room knows bob from the join on, before his socket is there.
        #expect(alice.transport.take() == [.peerJoined(Self.peer("bob"))])
        #expect(await harness.signal(from: alice, to: "bob", data: try Self.data(#""early""#)) == .routed(recipients: 1, viaBus: false))
        #expect(await harness.broadcast(from: alice) == .routed(recipients: 1, viaBus: false))
        #expect(await harness.hub.sendFromServer(tenantID: "acme", room: "lobby", to: "bob", data: .emptyObject) == .routed(recipients: 1, viaBus: false))
        harness.remoteJoin("carol")
        bob.send(.pong(id: nil), type: .pong)
        #expect(bob.phase == .opening)

        let transport = RecordingTransport()
        #expect(harness.hub.attach(bob, transport: transport))
        #expect(bob.phase == .active)
        #expect(transport.types == [.welcome, .signal, .broadcast, .signal, .peerJoined, .pong])
        let frames = transport.take()
        #expect(frames.first?.welcome?.peers == [Self.peer("alice")])
        #expect(frames.compactMap(\.relay) == [
            Relayed(.signal, "alice", #""early""#, 1), Relayed(.broadcast, "alice", "null", 2), Relayed(.signal, "server", "{}", 3),
        ])
        #expect(frames[4] == .peerJoined(Self.peer("carol")))
        // Then live, numbered on.
        #expect(await harness.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: false))
        #expect(transport.take().compactMap(\.relay).map(\.seq) == [4])
    }

    @Test func presenceAlreadyInTheWelcomeIsNotRepeated() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let frank = harness.remoteJoin("frank")
        // While bob's join is on its way to the roster, carol joins and frank leaves: their
        // events reach this node before bob's place is taken, so his welcome already
        // reflects them. Dave joins after the roster took bob but before the hub heard back.
        harness.roster.aroundJoin(
            of: "bob",
            before: {
                harness.remoteJoin("carol")
                harness.remoteLeave(frank)
            },
            after: { harness.remoteJoin("dave") })
        _ = alice.transport.take()
        let bob = try await harness.join("bob")
        let frames = bob.transport.take()
        #expect(frames.first?.welcome?.peers == [Self.peer("alice"), Self.peer("carol")])
        #expect(Array(frames.dropFirst()) == [.peerJoined(Self.peer("dave"))])
        // Alice, already there, saw it all as it happened.
        #expect(alice.transport.take() == [
            .peerJoined(Self.peer("carol")), .peerLeft(peerId: "frank", reason: "left"), .peerJoined(Self.peer("bob")),
            .peerJoined(Self.peer("dave")),
        ])
    }

    // MARK: Relay

    @Test func signalsAreNumberedPerReceivingSession() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        let carol = try await harness.join("carol")
        for member in [alice, bob, carol] { _ = member.transport.take() }

        for index in 1...3 {
            #expect(await harness.signal(from: alice, to: "bob", data: try Self.data(#"{"n":\#(index)}"#)) == .routed(recipients: 1, viaBus: false))
        }
        #expect(await harness.signal(from: carol, to: "bob", data: try Self.data(#""from carol""#)) == .routed(recipients: 1, viaBus: false))
        #expect(await harness.signal(from: bob, to: "alice", data: try Self.data("[ 1, 2 ]")) == .routed(recipients: 1, viaBus: false))

        #expect(bob.transport.types == [.signal, .signal, .signal, .signal])
        #expect(bob.transport.take().map(\.relay) == [
            Relayed(.signal, "alice", #"{"n":1}"#, 1), Relayed(.signal, "alice", #"{"n":2}"#, 2), Relayed(.signal, "alice", #"{"n":3}"#, 3),
            Relayed(.signal, "carol", #""from carol""#, 4),
        ])
        #expect(alice.transport.take().map(\.relay) == [Relayed(.signal, "bob", "[ 1, 2 ]", 1)])
        #expect(carol.transport.take().isEmpty)
        #expect(bob.session.lastSeq == 4)
    }

    @Test func signalToAnAbsentPeerIsPeerNotFound() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        #expect(await harness.signal(from: alice, to: "nobody") == .peerNotFound)
        #expect(await harness.hub.sendFromServer(tenantID: "acme", room: "lobby", to: "nobody", data: .null) == .peerNotFound)
        #expect(alice.session.lastSeq == 0)
    }

    @Test func signalToAPeerThatLeftIsPeerNotFound() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        harness.hub.end(bob.session, reason: .left, close: (.normal, "left"))
        #expect(await harness.signal(from: alice, to: "bob") == .peerNotFound)
    }

    @Test func broadcastReachesEveryoneButTheSender() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        let carol = try await harness.join("carol")
        for member in [alice, bob, carol] { _ = member.transport.take() }
        #expect(await harness.broadcast(from: alice, data: try Self.data(#"{"hello":true}"#)) == .routed(recipients: 2, viaBus: false))
        #expect(await harness.broadcast(from: bob) == .routed(recipients: 2, viaBus: false))
        #expect(alice.transport.take().map(\.relay) == [Relayed(.broadcast, "bob", "null", 1)])
        #expect(bob.transport.take().map(\.relay) == [Relayed(.broadcast, "alice", #"{"hello":true}"#, 1)])
        #expect(carol.transport.take().map(\.relay) == [Relayed(.broadcast, "alice", #"{"hello":true}"#, 1), Relayed(.broadcast, "bob", "null", 2)])
        #expect(carol.transport.types.isEmpty)
    }

    @Test func aServerBroadcastReachesEveryPeer() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        for member in [alice, bob] { _ = member.transport.take() }
        #expect(await harness.hub.sendFromServer(tenantID: "acme", room: "lobby", to: nil, data: .emptyArray) == .routed(recipients: 2, viaBus: false))
        for member in [alice, bob] {
            #expect(member.transport.take().map(\.relay) == [Relayed(.broadcast, "server", "[]", 1)])
        }
    }

    @Test func signalsAndBroadcastsShareOneSequence() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = bob.transport.take()
        _ = await harness.signal(from: alice, to: "bob")
        _ = await harness.broadcast(from: alice)
        _ = await harness.signal(from: alice, to: "bob")
        #expect(bob.transport.take().compactMap(\.relay).map(\.seq) == [1, 2, 3])
    }

    @Test func relaysReachPeersOnOtherNodes() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let alice = try await nodeA.join("alice")
        let bob = try await nodeB.join("bob")
        let carol = try await nodeA.join("carol")
        #expect(alice.transport.take().dropFirst() == [.peerJoined(Self.peer("bob")), .peerJoined(Self.peer("carol"))])
        #expect(bob.transport.take().dropFirst() == [.peerJoined(Self.peer("carol"))])
        #expect(carol.transport.take().first?.welcome?.peers == [Self.peer("alice"), Self.peer("bob")])
        _ = alice.transport.take()
        #expect(nodeA.hub.sessionCount == 2)
        #expect(nodeB.hub.sessionCount == 1)

        #expect(await nodeA.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: false))
        #expect(await nodeA.broadcast(from: alice) == .routed(recipients: 2, viaBus: false))
        #expect(await nodeB.signal(from: bob, to: "alice") == .routed(recipients: 1, viaBus: false))
        #expect(bob.transport.take().map(\.relay) == [Relayed(.signal, "alice", "null", 1), Relayed(.broadcast, "alice", "null", 2)])
        #expect(carol.transport.take().map(\.relay) == [Relayed(.broadcast, "alice", "null", 1)])
        #expect(alice.transport.take().map(\.relay) == [Relayed(.signal, "bob", "null", 1)])

        nodeB.hub.end(bob.session, reason: .left, close: (.normal, "left"))
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "left")])
        #expect(carol.transport.take() == [.peerLeft(peerId: "bob", reason: "left")])
    }

    @Test func updateTellsTheOthersAndTheRoster() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        let metadata = try Self.data(#"{"muted":true}"#)
        harness.hub.update(alice.session, metadata: metadata) { Issue.record("the update failed") }
        #expect(bob.transport.take() == [.peerUpdated(Self.peer("alice", metadata))])
        #expect(bob.transport.types.isEmpty)
        #expect(alice.transport.take().isEmpty)
        #expect(alice.session.metadata == metadata)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").first { $0.peerId == "alice" }?.metadata == metadata)
        let carol = try await harness.join("carol")
        let welcome = try #require(carol.transport.events.first?.welcome)
        #expect(welcome.peers.first { $0.peerId == "alice" }?.metadata == metadata)
    }

    // MARK: Replacement and limits

    @Test func samePeerJoiningTwiceReplacesTheOldConnection() async throws {
        let harness = try await HubHarness()
        let first = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = first.transport.take()
        _ = bob.transport.take()

        let second = try await harness.join("alice", metadata: try Self.data(#"{"v":2}"#))

        #expect(first.transport.take().map(\.errorCode) == ["replaced"])
        #expect(first.transport.closes == [RecordingTransport.Close(code: .replaced, reason: "replaced")])
        #expect(first.transport.closes.first?.code.rawValue == 4001)
        #expect(first.session.phase == .ended)
        #expect(bob.transport.take() == [.peerLeft(peerId: "alice", reason: "left"), .peerJoined(Self.peer("alice", try Self.data(#"{"v":2}"#)))])
        let frames = second.transport.take()
        #expect(frames.first?.welcome?.peers == [Self.peer("bob")])
        // The new connection hears nothing of the one it replaced.
        #expect(frames.count == 1)
        #expect(harness.hub.sessionCount == 2)
        #expect(harness.hub.connectionCounts() == ["acme": 2])
        #expect(try await harness.inner.connectionCount(tenantID: "acme") == 2)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").first { $0.peerId == "alice" }?.sessionId == second.session.id)

        // Messages now go to the new connection only.
        _ = await harness.signal(from: bob, to: "alice")
        #expect(second.transport.take().compactMap(\.relay) == [Relayed(.signal, "bob", "null", 1)])
        #expect(first.transport.take().isEmpty)
        // The old session cannot be resumed.
        #expect(await harness.resume(first, lastSeq: 0).0.isUnknownSession)
        #expect(second.session.phase == .active)
        let ended = harness.auditEvents.filter { $0.type == .sessionEnded }
        #expect(ended.map(\.session) == [first.session.id])
        #expect(ended.first?.values["reason"] == .string("replaced"))
    }

    @Test func samePeerJoiningOnAnotherNodeReplacesTheOldConnection() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let first = try await nodeA.join("alice")
        let bob = try await nodeA.join("bob")
        _ = bob.transport.take()
        let second = try await nodeB.join("alice")
        #expect(first.transport.closes.map(\.code) == [.replaced])
        #expect(first.session.phase == .ended)
        #expect(nodeA.hub.sessionCount == 1)
        #expect(bob.transport.take() == [.peerLeft(peerId: "alice", reason: "left"), .peerJoined(Self.peer("alice"))])
        #expect(second.transport.take().first?.welcome?.peers == [Self.peer("bob")])
        _ = await nodeA.signal(from: bob, to: "alice")
        #expect(second.transport.take().compactMap(\.relay) == [Relayed(.signal, "bob", "null", 1)])
    }

    @Test func aFullRoomRefusesNewPeersButNotAReplacement() async throws {
        let harness = try await HubHarness()
        #expect(await harness.attempt("alice", maxPeers: 2).isJoined)
        #expect(await harness.attempt("bob", maxPeers: 2).isJoined)
        #expect(await harness.attempt("carol", maxPeers: 2).isRoomFull)
        // Refused without a trace.
        #expect(harness.hub.sessionCount == 2)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").map(\.peerId) == ["alice", "bob"])
        #expect(harness.auditEvents.filter { $0.peer == "carol" }.isEmpty)
        #expect(await harness.attempt("alice", maxPeers: 2).isJoined)
        #expect(await harness.attempt("carol", room: "kitchen", maxPeers: 2).isJoined)
        #expect(harness.hub.members(tenantID: "acme", room: "lobby").count == 2)
    }

    @Test func theTenantConnectionLimitSpansRooms() async throws {
        let harness = try await HubHarness()
        #expect(await harness.attempt("alice", room: "a", maxConnections: 2).isJoined)
        #expect(await harness.attempt("bob", room: "b", maxConnections: 2).isJoined)
        #expect(await harness.attempt("carol", room: "c", maxConnections: 2).isTooManyConnections)
        #expect(harness.hub.sessionCount == 2)
        // A replacement does not add a connection; another tenant has its own count.
        #expect(await harness.attempt("alice", room: "a", maxConnections: 2).isJoined)
        #expect(await harness.attempt("carol", tenant: "other", room: "c", maxConnections: 2).isJoined)
        #expect(harness.hub.connectionCounts() == ["acme": 2, "other": 1])
    }

    @Test func aLeaveFreesAConnection() async throws {
        let harness = try await HubHarness()
        guard case .joined(let alice) = await harness.attempt("alice", maxConnections: 1) else {
            Issue.record("refused")
            return
        }
        #expect(await harness.attempt("bob", maxConnections: 1).isTooManyConnections)
        harness.hub.end(alice, reason: .left, close: (.normal, "left"))
        #expect(await harness.attempt("bob", maxConnections: 1).isJoined)
    }

    // MARK: Detach and resume

    @Test func resumeReplaysExactlyTheMissedFramesOnceAfterResumed() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        _ = await harness.signal(from: alice, to: "bob", data: try Self.data(#""m1""#))
        #expect(bob.transport.take().compactMap(\.relay) == [Relayed(.signal, "alice", #""m1""#, 1)])

        harness.hub.detach(bob.session, transport: bob.transport)
        #expect(bob.session.phase == .detached)
        #expect(harness.hub.sessionCount == 2)
        for index in 2...4 {
            #expect(await harness.signal(from: alice, to: "bob", data: try Self.data(#""m\#(index)""#)) == .routed(recipients: 1, viaBus: false))
        }
        #expect(await harness.broadcast(from: alice, data: try Self.data(#""b5""#)) == .routed(recipients: 1, viaBus: false))
        #expect(bob.transport.take().isEmpty)

        let (outcome, fresh) = await harness.resume(bob, lastSeq: 1)
        let resumed = try #require(outcome.session, "resume failed: \(outcome)")
        #expect(outcome.replayed == 4)
        #expect(resumed.id == bob.session.id)
        #expect(harness.hub.session(id: bob.session.id) === resumed)
        #expect(harness.hub.sessionCount == 2)
        #expect(harness.hub.connectionCounts() == ["acme": 2])
        #expect(fresh.types == [.resumed, .signal, .signal, .signal, .broadcast])
        let frames = fresh.take()
        #expect(frames.first == .resumed(sessionId: bob.session.id, replayed: 4, peers: [Self.peer("alice")]))
        #expect(frames.dropFirst().map(\.relay) == [
            Relayed(.signal, "alice", #""m2""#, 2), Relayed(.signal, "alice", #""m3""#, 3), Relayed(.signal, "alice", #""m4""#, 4),
            Relayed(.broadcast, "alice", #""b5""#, 5),
        ])
        #expect(resumed.phase == .active)
        #expect(resumed.lastSeq == 5)

        // Live traffic continues on the new transport only, numbered on.
        _ = await harness.signal(from: alice, to: "bob", data: try Self.data(#""m6""#))
        #expect(fresh.take().map(\.relay) == [Relayed(.signal, "alice", #""m6""#, 6)])
        #expect(bob.transport.take().isEmpty)
        // Other peers saw nothing of it.
        #expect(alice.transport.take().isEmpty)
        // The old socket closing late does not detach the resumed session.
        harness.hub.detach(bob.session, transport: bob.transport)
        harness.hub.detach(resumed, transport: bob.transport)
        #expect(resumed.phase == .active)
    }

    @Test func resumeWithNothingMissedReplaysNothing() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = await harness.signal(from: alice, to: "bob")
        harness.hub.detach(bob.session, transport: bob.transport)
        let (outcome, fresh) = await harness.resume(bob, lastSeq: 1)
        #expect(outcome.replayed == 0)
        #expect(fresh.take() == [.resumed(sessionId: bob.session.id, replayed: 0, peers: [Self.peer("alice")])])
        _ = await harness.signal(from: alice, to: "bob")
        #expect(fresh.take().compactMap(\.relay).map(\.seq) == [2])
    }

    @Test func resumeOfAHalfOpenConnectionClosesTheOldOneAsReplaced() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        _ = await harness.signal(from: bob, to: "alice")
        _ = alice.transport.take()
        let (outcome, fresh) = await harness.resume(alice, lastSeq: 1)
        #expect(outcome.replayed == 0)
        #expect(alice.transport.take().map(\.errorCode) == ["replaced"])
        #expect(alice.transport.closes.map(\.code) == [.replaced])
        #expect(alice.session.phase == .ended)
        #expect(fresh.types == [.resumed])
        // Not a leave: the room saw nothing, and nothing is audited as ended.
        #expect(bob.transport.take().dropFirst().isEmpty)
        #expect(harness.auditEvents.filter { $0.type == .sessionEnded }.isEmpty)
        _ = await harness.signal(from: bob, to: "alice")
        #expect(fresh.take().compactMap(\.relay).map(\.seq) == [2])
        #expect(alice.transport.take().isEmpty)
    }

    @Test func relaysDuringAResumeAreSentOnceInOrder() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        harness.hub.detach(bob.session, transport: bob.transport)
        _ = await harness.signal(from: alice, to: "bob", data: try Self.data("1"))
        let from = alice.session.address
        // One relay is numbered before the roster moves the session (it is in the replay),
        // one after the roster moved it but before the hub heard back (it follows the replay).
        harness.roster.aroundResume(
            of: "bob",
            before: { _ = harness.inner.relayNow(Relay(from: from, kind: .signal, to: "bob", data: .number(2))) },
            after: { _ = harness.inner.relayNow(Relay(from: from, kind: .broadcast, to: nil, data: .number(3))) })
        let (outcome, fresh) = await harness.resume(bob, lastSeq: 0)
        #expect(outcome.replayed == 2)
        #expect(fresh.take().map(\.relay) == [
            nil, Relayed(.signal, "alice", "1", 1), Relayed(.signal, "alice", "2", 2), Relayed(.broadcast, "alice", "3", 3),
        ])
        #expect(outcome.session?.lastSeq == 3)
    }

    @Test func resumeBeyondTheReplayLogIsAGap() async throws {
        let harness = try await HubHarness(roster: InMemoryRoster(configuration: .init(replayLimits: .init(maxFrames: 2))))
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        harness.hub.detach(bob.session, transport: bob.transport)
        for _ in 1...5 { _ = await harness.signal(from: alice, to: "bob") }
        let (gap, gapTransport) = await harness.resume(bob, lastSeq: 0)
        #expect(gap.isGap)
        #expect(gapTransport.events.isEmpty)
        #expect(gapTransport.closes.isEmpty)
        #expect(harness.hub.session(id: bob.session.id) === bob.session)
        #expect(bob.session.phase == .detached)
        // Ahead of what was sent is no better.
        #expect(await harness.resume(bob, lastSeq: 6).0.isGap)
        // Within what is kept still works.
        let (outcome, fresh) = await harness.resume(bob, lastSeq: 3)
        #expect(outcome.replayed == 2)
        #expect(fresh.take().dropFirst().compactMap(\.relay).map(\.seq) == [4, 5])
    }

    @Test func resumeRequiresTheSameTenantRoomPeerAndToken() async throws {
        let harness = try await HubHarness()
        let bob = try await harness.join("bob")
        let carol = try await harness.join("carol")
        harness.hub.detach(bob.session, transport: bob.transport)
        let token = bob.session.resumeToken
        let attempts: [(String, String, String, String)] = [
            (token, "other", "lobby", "bob"),
            (token, "acme", "kitchen", "bob"),
            (token, "acme", "lobby", "mallory"),
            (token, "acme", "lobby", "carol"),
            (bob.session.id + ".wrong-secret", "acme", "lobby", "bob"),
            (carol.session.id + "." + (Session.parseResumeToken(token)?.secret ?? ""), "acme", "lobby", "bob"),
            ("S-unknown.secret", "acme", "lobby", "bob"),
            ("not-a-token", "acme", "lobby", "bob"),
            ("", "acme", "lobby", "bob"),
        ]
        for (token, tenant, room, peer) in attempts {
            let (outcome, transport) = await harness.resume(token: token, lastSeq: 0, peer: peer, tenant: tenant, room: room)
            #expect(outcome.isUnknownSession, "\(token) \(tenant)/\(room)/\(peer)")
            #expect(transport.events.isEmpty)
        }
        #expect(bob.session.phase == .detached)
        #expect(harness.hub.session(id: bob.session.id) === bob.session)
        #expect(carol.session.phase == .active)
        #expect(harness.hub.sessionCount == 2)
        #expect(await harness.resume(bob, lastSeq: 0).0.replayed == 0)
    }

    @Test func aWrongSecretDoesNotDisturbALiveSession() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let alice = try await nodeA.join("alice")
        let bob = try await nodeA.join("bob")
        _ = bob.transport.take()
        let forged = bob.session.id + ".forged"
        for node in [nodeA, nodeB] {
            let (outcome, transport) = await node.resume(token: forged, lastSeq: 0, peer: "bob")
            #expect(outcome.isUnknownSession)
            #expect(transport.events.isEmpty)
        }
        #expect(bob.session.phase == .active)
        #expect(bob.transport.take().isEmpty)
        #expect(bob.transport.closes.isEmpty)
        #expect(nodeA.hub.session(id: bob.session.id) === bob.session)
        #expect(nodeB.hub.sessionCount == 0)
        #expect(nodeB.hub.connectionCounts().isEmpty)
        #expect(try await nodeA.inner.peers(tenantID: "acme", room: "lobby").first { $0.peerId == "bob" }?.node == "node-a")
        #expect(await nodeA.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: false))
        #expect(bob.transport.take().compactMap(\.relay).map(\.seq) == [1])
    }

    @Test func resumeOnAnotherNodeMovesTheSession() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let alice = try await nodeA.join("alice")
        let bob = try await nodeA.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        _ = await nodeA.signal(from: alice, to: "bob", data: .number(1))
        _ = await nodeA.signal(from: alice, to: "bob", data: .number(2))
        #expect(bob.transport.take().compactMap(\.relay).map(\.seq) == [1, 2])

        // Bob's socket to node-a is half-open; he processed seq 1 and reconnects to node-b.
        let (outcome, fresh) = await nodeB.resume(bob, lastSeq: 1)
        let moved = try #require(outcome.session, "resume failed: \(outcome)")
        #expect(outcome.replayed == 1)
        let frames = fresh.take()
        #expect(frames.first == .resumed(sessionId: bob.session.id, replayed: 1, peers: [Self.peer("alice")]))
        #expect(frames.dropFirst().map(\.relay) == [Relayed(.signal, "alice", "2", 2)])
        // Node-a's copy went quietly: its socket was told, the room was not.
        #expect(bob.transport.take().map(\.errorCode) == ["replaced"])
        #expect(bob.transport.closes.map(\.code) == [.replaced])
        #expect(bob.session.phase == .ended)
        #expect(nodeA.hub.session(id: bob.session.id) == nil)
        #expect(nodeA.hub.connectionCounts() == ["acme": 1])
        #expect(nodeB.hub.session(id: bob.session.id) === moved)
        #expect(nodeB.hub.connectionCounts() == ["acme": 1])
        #expect(alice.transport.take().isEmpty)
        #expect(try await nodeA.inner.peers(tenantID: "acme", room: "lobby").first { $0.peerId == "bob" }?.node == "node-b")
        #expect(try await nodeA.inner.connectionCount(tenantID: "acme") == 2)
        #expect(nodeA.auditEvents.filter { $0.session == bob.session.id }.map(\.type) == [.sessionStarted])
        let resumedEvents = nodeB.auditEvents
        #expect(resumedEvents.map(\.type) == [.sessionResumed])
        #expect(resumedEvents.first?.node == "node-b")
        #expect(resumedEvents.first?.values["replayed"] == .number(1))

        // Later traffic finds bob on node-b, both ways.
        let bobNow = Member(session: moved, transport: fresh)
        #expect(await nodeA.signal(from: alice, to: "bob", data: .number(3)) == .routed(recipients: 1, viaBus: false))
        #expect(fresh.take().map(\.relay) == [Relayed(.signal, "alice", "3", 3)])
        #expect(await nodeB.signal(from: bobNow, to: "alice") == .routed(recipients: 1, viaBus: false))
        #expect(alice.transport.take().map(\.relay) == [Relayed(.signal, "bob", "null", 1)])
        let carol = try await nodeA.join("carol")
        #expect(fresh.take() == [.peerJoined(Self.peer("carol"))])
        #expect(carol.transport.take().first?.welcome?.peers == [Self.peer("alice"), Self.peer("bob")])
        _ = alice.transport.take()

        // The old socket closing late changes nothing; the leave happens on node-b.
        nodeA.hub.detach(bob.session, transport: bob.transport)
        nodeB.hub.end(moved, reason: .left, close: (.normal, "left"))
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "left")])
        #expect(fresh.closes.map(\.code) == [.normal])
    }

    @Test func aSessionThatMovedIsNotExpiredByItsOldNode() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let alice = try await nodeA.join("alice")
        let bob = try await nodeA.join("bob")
        _ = alice.transport.take()
        nodeA.hub.detach(bob.session, transport: bob.transport)
        _ = await nodeA.signal(from: alice, to: "bob")
        let (outcome, fresh) = await nodeB.resume(bob, lastSeq: 0)
        #expect(outcome.replayed == 1)
        #expect(bob.transport.closes.isEmpty)
        nodeA.clock.advance(by: HubHarness.resumeWindow + 1)
        nodeA.hub.sweep()
        nodeB.hub.sweep()
        #expect(outcome.session?.phase == .active)
        #expect(alice.transport.take().isEmpty)
        #expect(await nodeA.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: false))
        #expect(fresh.take().compactMap(\.relay).map(\.seq) == [1, 2])
    }

    @Test func expiryAfterDetachEndsTheSessionWithTimeout() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        harness.hub.detach(bob.session, transport: bob.transport)
        harness.clock.advance(by: HubHarness.resumeWindow - 1)
        harness.hub.sweep()
        #expect(bob.session.phase == .detached)
        #expect(alice.transport.take().isEmpty)
        harness.clock.advance(by: 1)
        harness.hub.sweep()
        #expect(bob.session.phase == .ended)
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "timeout")])
        #expect(await harness.resume(bob, lastSeq: 0).0.isUnknownSession)
        #expect(await harness.signal(from: alice, to: "bob") == .peerNotFound)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").map(\.peerId) == ["alice"])
        #expect(try await harness.inner.connectionCount(tenantID: "acme") == 1)
        #expect(harness.hub.sessionCount == 1)
        #expect(harness.auditEvents.last?.type == .sessionEnded)
        #expect(harness.auditEvents.last?.values["reason"] == .string("timeout"))
        #expect(harness.auditEvents.last?.values["durationSeconds"] == .number(HubHarness.resumeWindow))
        // A second sweep is harmless; the active session is never swept.
        harness.clock.advance(by: 1000)
        harness.hub.sweep()
        #expect(alice.transport.take().isEmpty)
        #expect(alice.session.phase == .active)
        #expect(harness.auditEvents.filter { $0.type == .sessionEnded }.count == 1)
    }

    @Test func aStaleExpiryDoesNothingAfterAResume() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        harness.hub.detach(bob.session, transport: bob.transport)
        harness.clock.advance(by: 20)
        let resumed = try await harness.resumed(bob, lastSeq: 0)
        harness.clock.advance(by: HubHarness.resumeWindow)
        harness.hub.sweep()
        #expect(resumed.session.phase == .active)
        #expect(alice.transport.take().isEmpty)

        // Dropped again: the window counts from this drop.
        harness.hub.detach(resumed.session, transport: resumed.transport)
        harness.clock.advance(by: HubHarness.resumeWindow - 1)
        harness.hub.sweep()
        #expect(resumed.session.phase == .detached)
        harness.clock.advance(by: 1)
        harness.hub.sweep()
        #expect(resumed.session.phase == .ended)
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "timeout")])
    }

    @Test func aJoinWhoseSocketNeverComesEndsAfterTheAttachTimeout() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        _ = alice.transport.take()
        let bob = try await harness.reserve("bob")
        harness.clock.advance(by: HubHarness.attachTimeout - 1)
        harness.hub.sweep()
        #expect(bob.phase == .opening)
        harness.clock.advance(by: 1)
        harness.hub.sweep()
        #expect(bob.phase == .ended)
        #expect(alice.transport.take() == [.peerJoined(Self.peer("bob")), .peerLeft(peerId: "bob", reason: "timeout")])
        let late = RecordingTransport()
        #expect(!harness.hub.attach(bob, transport: late))
        #expect(late.events.isEmpty)
        #expect(harness.hub.sessionCount == 1)
        // An attached session is past its attach timeout for good.
        harness.clock.advance(by: 1000)
        harness.hub.sweep()
        #expect(alice.session.phase == .active)
    }

    @Test func aMissingSeqDropsTheSocketAndTheHubTreatsTheSessionAsDetached() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        _ = await harness.signal(from: alice, to: "bob", data: .number(1))
        // Seq 2 never reaches this node (as if the subscription lost it).
        harness.tap.lose(deliveriesTo: bob.session.id)
        #expect(await harness.signal(from: alice, to: "bob", data: .number(2)) == .routed(recipients: 1, viaBus: false))
        #expect(await harness.signal(from: alice, to: "bob", data: .number(3)) == .routed(recipients: 1, viaBus: false))
        let frames = bob.transport.take()
        #expect(frames.compactMap(\.relay).map(\.seq) == [1])
        #expect(frames.last?.errorCode == "unavailable")
        #expect(bob.transport.closes.map(\.code) == [.internalError])
        #expect(bob.transport.closes.first?.code.rawValue == 1011)
        #expect(bob.session.phase == .detached)
        // Detached: not a leave, and the socket's close is not a second detach.
        harness.hub.detach(bob.session, transport: bob.transport)
        #expect(alice.transport.take().isEmpty)
        _ = await harness.signal(from: alice, to: "bob", data: .number(4))
        #expect(bob.transport.take().isEmpty)
        // The client resumes and gets what it missed from the roster's log, once.
        let (outcome, fresh) = await harness.resume(bob, lastSeq: 1)
        #expect(outcome.replayed == 3)
        #expect(fresh.take().compactMap(\.relay).map(\.seq) == [2, 3, 4])
    }

    @Test func aSessionDroppedForAMissingSeqExpiresLikeAnyDetachedOne() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        harness.clock.advance(by: 5)
        harness.tap.lose(deliveriesTo: bob.session.id)
        _ = await harness.signal(from: alice, to: "bob")
        _ = await harness.signal(from: alice, to: "bob")
        #expect(bob.session.phase == .detached)
        harness.clock.advance(by: HubHarness.resumeWindow - 1)
        harness.hub.sweep()
        #expect(bob.session.phase == .detached)
        harness.clock.advance(by: 1)
        harness.hub.sweep()
        #expect(bob.session.phase == .ended)
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "timeout")])
    }

    // MARK: Leaving

    @Test func leaveTellsTheOthersLeftAndClosesNormally() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = bob.transport.take()
        harness.hub.end(alice.session, reason: .left, close: (.normal, "left"))
        #expect(bob.transport.take() == [.peerLeft(peerId: "alice", reason: "left")])
        #expect(alice.transport.closes == [RecordingTransport.Close(code: .normal, reason: "left")])
        #expect(alice.session.phase == .ended)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").map(\.peerId) == ["bob"])
        #expect(try await harness.inner.connectionCount(tenantID: "acme") == 1)
        // Ending twice tells nobody twice.
        harness.hub.end(alice.session, reason: .left, close: (.normal, "left"))
        #expect(bob.transport.take().isEmpty)
        #expect(harness.auditEvents.filter { $0.type == .sessionEnded }.count == 1)
    }

    @Test func theLastPeerLeavingRemovesTheRoom() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        #expect(harness.hub.roomCount == 1)
        harness.hub.end(alice.session, reason: .left, close: nil)
        #expect(harness.hub.roomCount == 0)
        #expect(harness.hub.sessionCount == 0)
        #expect(harness.hub.connectionCounts().isEmpty)
        #expect(alice.transport.closes.isEmpty)
    }

    @Test func kickSendsAnErrorClosesWithPolicyAndTellsTheRoom() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        _ = bob.transport.take()
        harness.hub.handle(BusMessage.kick(tenantID: "acme", room: "lobby", peerId: "alice"))
        #expect(alice.transport.take().map(\.errorCode) == ["forbidden"])
        #expect(alice.transport.closes.map(\.code) == [.policy])
        #expect(alice.transport.closes.first?.code.rawValue == 1008)
        #expect(bob.transport.take() == [.peerLeft(peerId: "alice", reason: "kicked")])
        #expect(alice.session.phase == .ended)
        // Kicking someone absent, or in another tenant, changes nothing.
        harness.hub.handle(BusMessage.kick(tenantID: "other", room: "lobby", peerId: "bob"))
        harness.hub.handle(BusMessage.kick(tenantID: "acme", room: "lobby", peerId: "ghost"))
        #expect(bob.session.phase == .active)
        #expect(bob.transport.closes.isEmpty)
        #expect(bob.transport.take().isEmpty)
    }

    @Test func tenantDisconnectClosesThatTenantsSessionsOnly() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob", room: "kitchen")
        let carol = try await harness.join("carol", tenant: "other")
        let dave = try await harness.join("dave", tenant: "other")
        for member in [alice, bob, carol, dave] { _ = member.transport.take() }
        harness.hub.handle(BusMessage.tenantDisconnect(tenantID: "acme", reason: "tenant suspended"))
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
        #expect(try await harness.inner.connectionCount(tenantID: "acme") == 0)
        #expect(await harness.signal(from: carol, to: "dave") == .routed(recipients: 1, viaBus: false))
    }

    @Test func keyRevocationClosesOnlyThatKeysSessions() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice", apiKey: "AK1")
        let bob = try await harness.join("bob", apiKey: "AK2")
        _ = alice.transport.take()
        _ = bob.transport.take()
        harness.hub.handle(BusMessage.keyRevoked(tenantID: "acme", apiKey: "AK2"))
        #expect(bob.transport.take().map(\.errorCode) == ["forbidden"])
        #expect(bob.transport.closes.map(\.code) == [.policy])
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "kicked")])
        #expect(alice.session.phase == .active)
    }

    @Test func roomClosedEndsItsMembersNormally() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        let carol = try await harness.join("carol", room: "kitchen")
        for member in [alice, bob, carol] { _ = member.transport.take() }
        harness.hub.handle(BusMessage.roomClosed(tenantID: "acme", room: "lobby"))
        for member in [alice, bob] {
            #expect(member.transport.closes.map(\.code) == [.normal])
            #expect(member.session.phase == .ended)
        }
        #expect(carol.session.phase == .active)
        #expect(harness.hub.members(tenantID: "acme", room: "lobby").isEmpty)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").isEmpty)
    }

    @Test func closeAllEndsEverySessionGoingAway() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob", tenant: "other")
        harness.hub.closeAll()
        #expect(alice.transport.closes.map(\.code) == [.goingAway])
        #expect(bob.transport.closes.map(\.code) == [.goingAway])
        #expect(harness.hub.sessionCount == 0)
        #expect(try await harness.inner.connectionCount(tenantID: "acme") == 0)
    }

    // MARK: Drain

    @Test func drainingRefusesJoinsAndResumesAndAsksSessionsToReconnect() async throws {
        let harness = try await HubHarness()
        var members: [Member] = []
        for index in 0..<20 { members.append(try await harness.join("p\(index)")) }
        let detached = try await harness.join("sleeper")
        harness.hub.detach(detached.session, transport: detached.transport)
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
        #expect(await harness.attempt("late").isDraining)
        #expect(harness.hub.sessions().allSatisfy { $0.peerId != "late" })
        // A drained node does not take sessions in; the resume goes to another node.
        #expect(await harness.resume(detached, lastSeq: 0).0.isUnavailable)
        // Sessions are not ended by the drain itself.
        #expect(members.allSatisfy { $0.session.phase == .active })
        #expect(detached.session.phase == .detached)
    }

    @Test func drainingTellsAnOpeningSessionAfterItsWelcome() async throws {
        let harness = try await HubHarness()
        let bob = try await harness.reserve("bob")
        harness.hub.beginDrain(maxRetryAfterMs: 0)
        let transport = RecordingTransport()
        #expect(harness.hub.attach(bob, transport: transport))
        #expect(transport.types == [.welcome, .reconnect])
        #expect(transport.events.last == .reconnect(reason: "draining", retryAfterMs: 0))
    }

    // MARK: Roster failures

    @Test func aJoinTheRosterCannotTakeIsUnavailableAndLeavesNoTrace() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        _ = alice.transport.take()
        harness.roster.fail(.join, with: .unavailable)
        guard case .unavailable = await harness.attempt("bob") else {
            Issue.record("the join was not refused as unavailable")
            return
        }
        #expect(harness.hub.sessionCount == 1)
        #expect(harness.hub.connectionCounts() == ["acme": 1])
        #expect(harness.auditEvents.filter { $0.peer == "bob" }.isEmpty)
        #expect(alice.transport.take().isEmpty)
        harness.roster.fail(.join, with: nil)
        #expect(await harness.attempt("bob").isJoined)
    }

    @Test func aRelayTheRosterCannotTakeIsUnavailable() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = bob.transport.take()
        for code in [RosterError.Code.unavailable, .timedOut] {
            harness.roster.fail(.relay, with: code)
            #expect(await harness.signal(from: alice, to: "bob") == .unavailable)
            #expect(await harness.broadcast(from: alice) == .unavailable)
            #expect(await harness.hub.sendFromServer(tenantID: "acme", room: "lobby", to: nil, data: .null) == .unavailable)
        }
        #expect(bob.transport.take().isEmpty)
        harness.roster.fail(.relay, with: nil)
        #expect(await harness.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: false))
        #expect(bob.transport.take().compactMap(\.relay).map(\.seq) == [1])
    }

    @Test func aResumeTheRosterCannotTakeLeavesTheSessionAsItWas() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        let carol = try await harness.join("carol")
        harness.hub.detach(bob.session, transport: bob.transport)
        _ = carol.transport.take()
        harness.roster.fail(.resume, with: .unavailable)
        let (detachedOutcome, detachedTransport) = await harness.resume(bob, lastSeq: 0)
        #expect(detachedOutcome.isUnavailable)
        #expect(detachedTransport.events.isEmpty)
        #expect(harness.hub.session(id: bob.session.id) === bob.session)
        #expect(bob.session.phase == .detached)
        let (liveOutcome, liveTransport) = await harness.resume(carol, lastSeq: 0)
        #expect(liveOutcome.isUnavailable)
        #expect(liveTransport.events.isEmpty)
        #expect(harness.hub.session(id: carol.session.id) === carol.session)
        #expect(carol.session.phase == .active)
        #expect(carol.transport.closes.isEmpty)
        #expect(harness.hub.sessionCount == 3)
        harness.roster.fail(.resume, with: nil)
        #expect(await harness.signal(from: alice, to: "carol") == .routed(recipients: 1, viaBus: false))
        #expect(carol.transport.take().compactMap(\.relay).map(\.seq) == [1])
        #expect(await harness.resume(bob, lastSeq: 0).0.replayed == 0)
    }

    @Test func anUpdateTheRosterCannotTakeIsReported() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = bob.transport.take()
        harness.roster.fail(.update, with: .unavailable)
        let failed = Mutex(0)
        harness.hub.update(alice.session, metadata: try Self.data(#"{"muted":true}"#)) { failed.withLock { $0 += 1 } }
        #expect(failed.withLock { $0 } == 1)
        #expect(bob.transport.take().isEmpty)
        #expect(try await harness.inner.peers(tenantID: "acme", room: "lobby").first { $0.peerId == "alice" }?.metadata == .emptyObject)
    }

    @Test func relaysThroughADistributedRosterCountAsViaTheBus() async throws {
        let harness = try await HubHarness()
        harness.roster.claimDistributed()
        let alice = try await harness.join("alice")
        _ = try await harness.join("bob")
        #expect(await harness.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: true))
        #expect(await harness.broadcast(from: alice) == .routed(recipients: 1, viaBus: true))
    }

    // MARK: Several nodes

    @Test func roomAndTenantLimitsCountPeersOnEveryNode() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        #expect(await nodeA.attempt("alice", maxPeers: 2).isJoined)
        #expect(await nodeB.attempt("bob", maxPeers: 2).isJoined)
        #expect(await nodeA.attempt("carol", maxPeers: 2).isRoomFull)
        #expect(await nodeB.attempt("carol", maxPeers: 2).isRoomFull)
        #expect(await nodeB.attempt("alice", maxPeers: 2).isJoined)
        #expect(nodeA.hub.sessionCount == 0)
        #expect(await nodeA.attempt("dave", room: "kitchen", maxConnections: 2).isTooManyConnections)
        #expect(nodeB.hub.connectionCounts() == ["acme": 2])
    }

    @Test func eventsAboutSessionsThisNodeDoesNotHostAreIgnored() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        _ = alice.transport.take()
        harness.hub.handle(RosterEvent.replaced(sessionId: "S-ghost"))
        harness.hub.handle(RosterEvent.moved(sessionId: "S-ghost"))
        harness.hub.handle(RosterEvent.deliver(sessionId: "S-ghost", seq: 1, frame: SessionTests.relay(1)))
        harness.hub.handle(RosterEvent.peerLeft(tenantID: "acme", room: "kitchen", peerId: "x", sessionId: "S-x", reason: .left))
        #expect(alice.transport.take().isEmpty)
        #expect(alice.session.phase == .active)
        #expect(harness.hub.sessionCount == 1)
    }

    @Test func kicksAndDisconnectsAlsoEndSessionsWithoutASocket() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        let carol = try await harness.reserve("carol")
        harness.hub.detach(bob.session, transport: bob.transport)
        _ = alice.transport.take()
        harness.hub.handle(BusMessage.kick(tenantID: "acme", room: "lobby", peerId: "bob"))
        harness.hub.handle(BusMessage.kick(tenantID: "acme", room: "lobby", peerId: "carol"))
        #expect(bob.session.phase == .ended)
        #expect(carol.phase == .ended)
        #expect(bob.transport.closes.isEmpty)
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "kicked"), .peerLeft(peerId: "carol", reason: "kicked")])
        #expect(!harness.hub.attach(carol, transport: RecordingTransport()))
        #expect(await harness.resume(bob, lastSeq: 0).0.isUnknownSession)
        #expect(harness.hub.sessionCount == 1)
    }

    // MARK: After the roster lost its state

    @Test func restoreAllHandsTheLiveSessionsBackAndDropsThoseTakenMeanwhile() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice", metadata: try Self.data(#"{"a":1}"#))
        let bob = try await harness.join("bob")
        let carol = try await harness.join("carol")
        let dave = try await harness.join("dave")
        _ = await harness.signal(from: bob, to: "alice")
        _ = await harness.signal(from: bob, to: "alice")
        harness.hub.detach(bob.session, transport: bob.transport)
        harness.hub.end(dave.session, reason: .left, close: (.normal, "left"))
        for member in [alice, bob, carol] { _ = member.transport.take() }
        harness.roster.answerRestore([alice.session.id: .restored, bob.session.id: .moved, carol.session.id: .replaced])

        #expect(try await harness.hub.restoreAll() == 1)

        let requests = try #require(harness.roster.restoreRequests.first)
        let byPeer = Dictionary(uniqueKeysWithValues: requests.map { ($0.peer.peerId, $0) })
        #expect(Set(byPeer.keys) == ["alice", "bob", "carol"])
        #expect(byPeer["alice"]?.seq == 2)
        #expect(byPeer["alice"]?.peer.node == "node-a")
        #expect(byPeer["alice"]?.peer.sessionId == alice.session.id)
        #expect(byPeer["alice"]?.peer.metadata == (try Self.data(#"{"a":1}"#)))
        #expect(byPeer["alice"]?.resumeSecret == Session.parseResumeToken(alice.session.resumeToken)?.secret)
        // Restored: untouched. Moved elsewhere: gone quietly. Replaced: told and closed.
        #expect(alice.session.phase == .active)
        #expect(alice.transport.take().isEmpty)
        #expect(bob.session.phase == .ended)
        #expect(harness.hub.session(id: bob.session.id) == nil)
        #expect(carol.session.phase == .ended)
        #expect(carol.transport.take().map(\.errorCode) == ["replaced"])
        #expect(carol.transport.closes.map(\.code) == [.replaced])
        #expect(harness.hub.sessionCount == 1)
    }

    // MARK: Audit

    @Test func sessionLifecycleIsAudited() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice", room: "studio")
        harness.hub.detach(alice.session, transport: alice.transport)
        harness.clock.advance(by: 2.5)
        let resumed = try await harness.resumed(alice, lastSeq: 0)
        harness.hub.end(resumed.session, reason: .left, close: (.normal, "left"))

        let events = harness.auditEvents
        #expect(events.map(\.type) == [.sessionStarted, .sessionResumed, .sessionEnded])
        for event in events {
            #expect(event.tenantID == "acme")
            #expect(event.room == "studio")
            #expect(event.peer == "alice")
            #expect(event.session == alice.session.id)
            #expect(event.node == "node-a")
            #expect(event.id.count == 26)
        }
        #expect(events.map(\.time) == [TestClock.start, TestClock.start + 2.5, TestClock.start + 2.5])
        #expect(events[0].values["remoteAddress"] == .string("203.0.113.7"))
        #expect(events[0].values["userAgent"] == .string("tests/1.0"))
        #expect(events[1].values["replayed"] == .number(0))
        #expect(events[1].values["lastSeq"] == .number(0))
        #expect(events[2].values["reason"] == .string("left"))
        #expect(events[2].values["durationSeconds"] == .number(2.5))
    }

    @Test func auditEventsStayWithinTheirTenant() async throws {
        let harness = try await HubHarness()
        _ = try await harness.join("alice")
        _ = try await harness.join("alice", tenant: "other")
        harness.hub.handle(BusMessage.tenantDisconnect(tenantID: "other", reason: "deleted"))
        let events = harness.auditEvents
        #expect(events.filter { $0.tenantID == "acme" }.map(\.type) == [.sessionStarted])
        #expect(events.filter { $0.tenantID == "other" }.map(\.type) == [.sessionStarted, .sessionEnded])
        #expect(events.filter { $0.tenantID == "other" }.last?.values["reason"] == .string("kicked"))
    }

    // MARK: Re-entrancy

    @Test func aTransportMayCallBackIntoTheHubWhileSending() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.reserve("bob")
        let transport = EchoingTransport(hub: harness.hub, sender: alice.session, echoes: 3)
        #expect(harness.hub.attach(bob, transport: transport))
        #expect(await harness.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: false))
        let events = try transport.frames.map { try ServerEvent.decode($0) }
        #expect(events.first?.welcome != nil)
        #expect(events.dropFirst().compactMap(\.relay).map(\.seq) == [1, 2, 3, 4])
        #expect(bob.phase == .active)
        #expect(bob.stats.framesIn == 3)
    }
}

/// A transport that, for each of the first `echoes` relays it is sent, counts a received
/// frame and has another peer signal its session again, through the hub and the roster.
final class EchoingTransport: SessionTransport {
    private struct State {
        var frames: [[UInt8]] = []
        var echoes: Int
        var session: Session?
    }

    let hub: Hub
    let sender: Session
    private let state: Mutex<State>

    init(hub: Hub, sender: Session, echoes: Int) {
        self.hub = hub
        self.sender = sender
        self.state = Mutex(State(echoes: echoes))
    }

    var frames: [[UInt8]] { state.withLock { $0.frames } }

    func send(_ frame: [UInt8], type: OutboundFrameType) {
        let echo = state.withLock { state -> Bool in
            state.frames.append(frame)
            guard type == .signal, state.echoes > 0 else { return false }
            state.echoes -= 1
            return true
        }
        guard echo else { return }
        hub.sessions { $0.peerId == "bob" }.first?.received(bytes: frame.count)
        hub.signal(from: sender, to: "bob", data: .null) { _ in }
    }

    func close(_ code: CloseCode, reason: String) {}
}

/// Races and edge cases a review of the roster-based hub found (each once a bug, now fixed).
@Suite struct HubRaceTests {
    static func peer(_ peerId: String) -> PeerSummary { PeerSummary(peerId: peerId, metadata: .emptyObject) }

    @Test
    func sessionEndedCountsTheWholeSessionsTrafficAcrossAResume() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        alice.session.received(bytes: 10)
        harness.hub.detach(alice.session, transport: alice.transport)
        let resumed = try await harness.resumed(alice, lastSeq: 0)
        resumed.session.received(bytes: 5)
        harness.hub.end(resumed.session, reason: .left, close: (.normal, "left"))
        let ended = try #require(harness.auditEvents.last)
        #expect(ended.type == .sessionEnded)
        #expect(ended.values["framesOut"] == .number(2))  // welcome and resumed
        #expect(ended.values["framesIn"] == .number(2))
        #expect(ended.values["bytesIn"] == .number(15))
    }

    @Test
    func sessionEndedDurationCountsFromTheJoinAfterAResumeOnAnotherNode() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let alice = try await nodeA.join("alice")
        nodeA.hub.detach(alice.session, transport: alice.transport)
        nodeA.clock.advance(by: 10)
        let moved = try await nodeB.resumed(alice, lastSeq: 0)
        nodeA.clock.advance(by: 5)
        nodeB.hub.end(moved.session, reason: .left, close: (.normal, "left"))
        let ended = try #require(nodeB.auditEvents.last)
        #expect(ended.type == .sessionEnded)
        #expect(ended.values["durationSeconds"] == .number(15))
    }

    @Test
    func aRefusedResumeDoesNotExtendTheResumeWindow() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = alice.transport.take()
        harness.hub.detach(bob.session, transport: bob.transport)
        harness.clock.advance(by: 20)
        #expect(await harness.resume(bob, lastSeq: 99).0.isGap)
        harness.clock.advance(by: HubHarness.resumeWindow - 20)
        harness.hub.sweep()
        #expect(bob.session.phase == .ended)
        #expect(alice.transport.take() == [.peerLeft(peerId: "bob", reason: "timeout")])
    }

    @Test
    func aRefusedResumeOfALiveSessionLosesNothing() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let bob = try await harness.join("bob")
        _ = bob.transport.take()
        let from = alice.session.address
        harness.roster.aroundResume(of: "bob", before: { _ = harness.inner.relayNow(Relay(from: from, kind: .signal, to: "bob", data: .number(1))) })
        #expect(await harness.resume(bob, lastSeq: 99).0.isGap)
        _ = await harness.signal(from: alice, to: "bob", data: .number(2))
        #expect(bob.transport.take().compactMap(\.relay).map(\.seq) == [1, 2])
        #expect(bob.transport.closes.isEmpty)
        #expect(bob.session.phase == .active)
    }

    @Test
    func presenceAppliedBeforeTheWelcomeButDeliveredAfterItIsNotRepeated() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let frank = harness.remoteJoin("frank")
        _ = alice.transport.take()
        // Another thread applies carol's join; its delivery to this node stops there.
        harness.tap.gate.arm { event in
            if case .peerJoined(let peer) = event { peer.peerId == "carol" } else { false }
        }
        let side = SideThread.start { harness.remoteJoin("carol") }
        await harness.tap.gate.reached()
        // Frank leaves, then bob joins: the roster has applied all three; bob's welcome
        // lists alice and carol, and bob is live before this node hears of carol or frank.
        harness.remoteLeave(frank)
        let bob = try await harness.join("bob")
        #expect(bob.transport.events.first?.welcome?.peers == [Self.peer("alice"), Self.peer("carol")])
        harness.tap.gate.release()
        await side.finished()
        #expect(Array(bob.transport.events.dropFirst()) == [])
        #expect(alice.transport.take() == [
            .peerJoined(Self.peer("carol")), .peerLeft(peerId: "frank", reason: "left"), .peerJoined(Self.peer("bob")),
        ])
    }

    @Test
    func anExpiryRacingAMoveDoesNotEndTheMovedSession() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let alice = try await nodeA.join("alice")
        let bob = try await nodeA.join("bob")
        nodeA.hub.detach(bob.session, transport: bob.transport)
        _ = alice.transport.take()
        // Node-a is slow to hear from the roster: another thread's delivery to it is held.
        nodeA.tap.gate.arm { event in
            if case .peerJoined(let peer) = event { peer.peerId == "carol" } else { false }
        }
        let side = SideThread.start { nodeA.remoteJoin("carol") }
        await nodeA.tap.gate.reached()
        // Bob resumes on node-b just before his window on node-a ends; node-a's sweep runs
        // before it hears that bob moved.
        nodeA.clock.advance(by: HubHarness.resumeWindow - 0.1)
        let moved = try await nodeB.resumed(bob, lastSeq: 0)
        nodeA.clock.advance(by: 0.1)
        nodeA.hub.sweep()
        nodeA.tap.gate.release()
        await side.finished()
        #expect(moved.session.phase == .active)
        #expect(try await nodeA.inner.peers(tenantID: "acme", room: "lobby").map(\.peerId) == ["alice", "bob", "carol"])
        #expect(alice.transport.take() == [.peerJoined(Self.peer("carol"))])
        #expect(await nodeA.signal(from: alice, to: "bob") == .routed(recipients: 1, viaBus: false))
        #expect(moved.transport.take().compactMap(\.relay).map(\.seq) == [1])
    }

    @Test
    func aStaleMovedDoesNotDropASessionThatCameBack() async throws {
        let nodeA = try await HubHarness()
        let nodeB = try await nodeA.sibling("node-b")
        let alice = try await nodeA.join("alice")
        let bob = try await nodeA.join("bob")
        nodeA.hub.detach(bob.session, transport: bob.transport)
        // Roster events reach the nodes late: another thread's delivery is held.
        nodeA.tap.gate.arm { event in
            if case .peerJoined(let peer) = event { peer.peerId == "carol" } else { false }
        }
        let side = SideThread.start { nodeA.remoteJoin("carol") }
        await nodeA.tap.gate.reached()
        // Bob resumes on node-b, then (that socket dropping at once) back on node-a.
        let onB = try await nodeB.resumed(bob, lastSeq: 0)
        nodeB.hub.detach(onB.session, transport: onB.transport)
        let backOnA = try await nodeA.resumed(onB, lastSeq: 0)
        nodeA.tap.gate.release()
        await side.finished()
        #expect(backOnA.session.phase == .active)
        #expect(backOnA.transport.closes.isEmpty)
        #expect(nodeA.hub.session(id: bob.session.id) === backOnA.session)
        #expect(try await nodeA.inner.peers(tenantID: "acme", room: "lobby").first { $0.peerId == "bob" }?.node == "node-a")
        _ = await nodeA.signal(from: alice, to: "bob")
        #expect(backOnA.transport.take().compactMap(\.relay).map(\.seq) == [1])
    }

    @Test
    func aJoinReplacedBeforeItsAnswerIsAuditedInOrder() async throws {
        let harness = try await HubHarness()
        harness.roster.aroundJoin(of: "alice", after: { harness.remoteJoin("alice") })
        guard case .joined(let session) = await harness.attempt("alice") else {
            Issue.record("refused")
            return
        }
        #expect(session.phase == .ended)
        #expect(!harness.hub.attach(session, transport: RecordingTransport()))
        #expect(harness.hub.sessionCount == 0)
        #expect(harness.auditEvents.map(\.type) == [.sessionStarted, .sessionEnded])
    }
}

/// Many tasks at once on one hub and roster: the outcome must not depend on the interleaving.
@Suite struct HubConcurrencyTests {
    @Test func concurrentSendersReachAReceiverInOneGaplessOrder() async throws {
        let harness = try await HubHarness()
        let bob = try await harness.join("bob")
        var senders: [Member] = []
        for index in 0..<4 { senders.append(try await harness.join("s\(index)")) }
        _ = bob.transport.take()
        let perSender = 250
        await withTaskGroup(of: Void.self) { group in
            for sender in senders {
                group.addTask {
                    for index in 0..<perSender {
                        _ = await harness.signal(from: sender, to: "bob", data: .number(index))
                    }
                }
            }
        }
        let relays = bob.transport.take().compactMap(\.relay)
        #expect(relays.map(\.seq) == Array(1...UInt64(perSender * senders.count)))
        for sender in senders {
            #expect(relays.filter { $0.from == sender.session.peerId }.map(\.data) == (0..<perSender).map(String.init))
        }
    }

    @Test func resumesWhileMessagesFlowLoseAndRepeatNothing() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        var bob = try await harness.join("bob")
        _ = bob.transport.take()
        let total = 600
        // Each transport's relays, and the lastSeq the next resume claimed.
        var legs: [(lastSeq: UInt64, transport: RecordingTransport)] = [(0, bob.transport)]
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for index in 1...total { _ = await harness.signal(from: alice, to: "bob", data: .number(index)) }
            }
            for _ in 0..<20 {
                await Task.yield()
                harness.hub.detach(bob.session, transport: bob.transport)
                // The client processed what its socket got before the drop.
                let lastSeq = bob.transport.events.compactMap(\.relay).last?.seq ?? legs[legs.count - 1].lastSeq
                bob = try await harness.resumed(bob, lastSeq: lastSeq)
                legs.append((lastSeq, bob.transport))
            }
            try await group.waitForAll()
        }
        for (index, leg) in legs.enumerated() {
            let seqs = leg.transport.events.compactMap(\.relay).map(\.seq)
            // Each leg starts right after what the client claimed and has no hole.
            #expect(seqs.isEmpty || seqs == Array((leg.lastSeq + 1)...(leg.lastSeq + UInt64(seqs.count))), "leg \(index): from \(leg.lastSeq): \(seqs)")
        }
        // The last leg ends with the last message (which an earlier leg may already have had).
        let last = try #require(legs.last)
        let tail = last.transport.events.compactMap(\.relay)
        #expect(last.lastSeq + UInt64(tail.count) == UInt64(total))
        #expect(legs.flatMap { $0.transport.events.compactMap(\.relay) }.last { $0.seq == UInt64(total) }?.data == String(total))
    }

    @Test
    func everyoneSeesTheRoomAsItIsWhilePeersJoinAndLeaveAtOnce() async throws {
        let harness = try await HubHarness()
        let alice = try await harness.join("alice")
        let members = try await withThrowingTaskGroup(of: Member?.self) { group in
            for index in 0..<16 {
                group.addTask {
                    let member = try await harness.join("p\(index)")
                    if index % 3 == 0 {
                        harness.hub.end(member.session, reason: .left, close: (.normal, "left"))
                        return nil
                    }
                    return member
                }
            }
            var members: [Member] = []
            for try await member in group { if let member { members.append(member) } }
            return members
        }
        let room = Set(try await harness.inner.peers(tenantID: "acme", room: "lobby").map(\.peerId))
        #expect(room.count == 1 + 16 - 6)
        for member in members + [alice] {
            let events = member.transport.events
            var view = Set(events.first?.welcome?.peers.map(\.peerId) ?? [])
            for event in events.dropFirst() {
                switch event {
                case .peerJoined(let peer): #expect(view.insert(peer.peerId).inserted, "\(member.session.peerId): \(peer.peerId) joined twice")
                case .peerLeft(let peerId, _): #expect(view.remove(peerId) != nil, "\(member.session.peerId): \(peerId) left unseen")
                default: Issue.record("unexpected \(event)")
                }
            }
            #expect(view == room.subtracting([member.session.peerId]), "\(member.session.peerId)")
        }
    }
}
