import Foundation
import Synchronization
import Testing

@testable import Signaling

@Suite struct SessionTests {
    static func makeSession() -> Session {
        Session(
            identity: HubHarness.identity("bob"), metadata: .emptyObject, resumeSecret: "secret", joinedAt: Date(timeIntervalSince1970: 0))
    }

    static func welcome(_ session: Session, peers: [PeerSummary] = []) -> [UInt8] {
        HubHarness.welcome(session, peers).encoded()
    }

    static func relay(_ seq: UInt64, from: String = "alice", kind: RelayKind = .signal) -> [UInt8] {
        ServerMessage.encodeRelay(kind, from: from, data: .null, seq: seq)
    }

    /// A session with its welcome sent (seq 0) on a recording transport, the welcome taken.
    static func activeSession() -> (Session, RecordingTransport) {
        let session = makeSession()
        let transport = RecordingTransport()
        session.open(first: [(welcome(session), .welcome)], seq: 0, known: [])
        #expect(session.attach(transport))
        #expect(transport.types == [.welcome])
        _ = transport.take()
        return (session, transport)
    }

    // MARK: Opening

    @Test func theWelcomeGoesFirstThenWhatWasHeldOnceATransportIsAttached() {
        let session = Self.makeSession()
        #expect(session.phase == .opening)
        // Before the roster answered: held.
        session.deliver(seq: 1, frame: Self.relay(1))
        session.send(.pong(id: nil), type: .pong)
        session.open(first: [(Self.welcome(session), .welcome)], seq: 0, known: [])
        // Answered, no transport yet: still held.
        session.deliver(seq: 2, frame: Self.relay(2, kind: .broadcast))
        #expect(session.phase == .opening)
        let transport = RecordingTransport()
        #expect(session.attach(transport))
        #expect(session.phase == .active)
        #expect(transport.types == [.welcome, .signal, .pong, .broadcast])
        let frames = transport.take()
        #expect(frames.first?.welcome?.sessionId == session.id)
        #expect(frames.map(\.relay) == [nil, Relayed(.signal, "alice", "null", 1), nil, Relayed(.broadcast, "alice", "null", 2)])
        #expect(session.lastSeq == 2)
        // Attaching twice is refused.
        #expect(!session.attach(RecordingTransport()))
    }

    @Test func aTransportAttachedBeforeTheWelcomeWaitsForIt() {
        let session = Self.makeSession()
        let transport = RecordingTransport()
        #expect(session.attach(transport))
        session.deliver(seq: 1, frame: Self.relay(1))
        #expect(transport.events.isEmpty)
        #expect(session.phase == .opening)
        session.open(first: [(Self.welcome(session), .welcome)], seq: 0, known: [])
        #expect(transport.types == [.welcome, .signal])
        #expect(session.phase == .active)
    }

    @Test func heldRelaysTheFirstFramesAlreadyCoverAreDropped() {
        let session = Self.makeSession()
        for seq: UInt64 in 1...4 { session.deliver(seq: seq, frame: Self.relay(seq)) }
        // A resume whose replay ends at seq 3: `resumed`, then 2 and 3 (1 was processed).
        let resumed = ServerMessage.resumed(sessionId: session.id, replayed: 2, peers: []).encoded()
        session.open(first: [(resumed, .resumed), (Self.relay(2), .signal), (Self.relay(3), .signal)], seq: 3, known: [])
        let transport = RecordingTransport()
        #expect(session.attach(transport))
        #expect(transport.types == [.resumed, .signal, .signal, .signal])
        #expect(transport.take().compactMap(\.relay).map(\.seq) == [2, 3, 4])
        #expect(session.lastSeq == 4)
        // A late copy of a replayed frame is not sent again.
        session.deliver(seq: 3, frame: Self.relay(3))
        session.deliver(seq: 5, frame: Self.relay(5))
        #expect(transport.take().compactMap(\.relay).map(\.seq) == [5])
    }

    @Test func heldPresenceAlreadyReflectedInTheFirstFramesIsDropped() throws {
        let session = Self.makeSession()
        func joined(_ peer: String) -> ServerMessage { .peerJoined(PeerSummary(peerId: peer, metadata: .emptyObject)) }
        func left(_ peer: String) -> ServerMessage { .peerLeft(peerId: peer, reason: .left) }
        func updated(_ peer: String) -> ServerMessage { .peerUpdated(PeerSummary(peerId: peer, metadata: .emptyObject)) }
        // The welcome will list alice (S-alice) only.
        session.presence(joined("alice"), subject: "S-alice", change: .joined)  // already in the welcome
        session.presence(joined("carol"), subject: "S-carol", change: .joined)  // not in it: news
        session.presence(left("dave"), subject: "S-dave", change: .left)  // never seen: nothing to tell
        session.presence(updated("erin"), subject: "S-erin", change: .updated)  // never seen either
        session.presence(updated("carol"), subject: "S-carol", change: .updated)  // seen through the held join
        session.presence(left("alice"), subject: "S-alice", change: .left)  // in the welcome: news
        session.open(
            first: [(Self.welcome(session, peers: [PeerSummary(peerId: "alice", metadata: .emptyObject)]), .welcome)], seq: 0,
            known: ["S-alice"])
        let transport = RecordingTransport()
        #expect(session.attach(transport))
        #expect(transport.types == [.welcome, .peerJoined, .peerUpdated, .peerLeft])
        #expect(transport.take().dropFirst() == [
            .peerJoined(PeerSummary(peerId: "carol", metadata: .emptyObject)),
            .peerUpdated(PeerSummary(peerId: "carol", metadata: .emptyObject)),
            .peerLeft(peerId: "alice", reason: "left"),
        ])
        // Once active, news goes straight out — still checked against what the client was
        // told, for a while (late news from the roster is not repeated).
        session.presence(joined("dave"), subject: "S-dave", change: .joined)
        session.presence(left("zed"), subject: "S-zed", change: .left)  // never seen: nothing to tell
        session.presence(joined("carol"), subject: "S-carol", change: .joined)  // told already
        session.presence(left("dave"), subject: "S-dave", change: .left)
        #expect(transport.take() == [
            .peerJoined(PeerSummary(peerId: "dave", metadata: .emptyObject)), .peerLeft(peerId: "dave", reason: "left"),
        ])
    }

    // MARK: Active

    @Test func deliveriesGoOutOnceInSeqOrderAndAreCounted() {
        let (session, transport) = Self.activeSession()
        #expect(session.deliver(seq: 1, frame: Self.relay(1)))
        #expect(session.deliver(seq: 2, frame: Self.relay(2, from: "carol", kind: .broadcast)))
        // Duplicates (a late copy) are dropped, not treated as a gap.
        #expect(session.deliver(seq: 2, frame: Self.relay(2)))
        #expect(session.deliver(seq: 1, frame: Self.relay(1)))
        #expect(transport.types == [.signal, .broadcast])
        #expect(transport.take().map(\.relay) == [Relayed(.signal, "alice", "null", 1), Relayed(.broadcast, "carol", "null", 2)])
        #expect(session.lastSeq == 2)
        let stats = session.stats
        #expect(stats.framesOut == 3)
        #expect(stats.bytesOut == Self.welcome(session).count + Self.relay(1).count + Self.relay(2, from: "carol", kind: .broadcast).count)
    }

    @Test func aMissingSeqDropsTheSocketSoTheClientResumes() {
        let (session, transport) = Self.activeSession()
        #expect(session.deliver(seq: 1, frame: Self.relay(1)))
        #expect(!session.deliver(seq: 3, frame: Self.relay(3)))
        let frames = transport.take()
        #expect(frames.compactMap(\.relay).map(\.seq) == [1])
        #expect(frames.map(\.errorCode) == [nil, "unavailable"])
        #expect(transport.closes == [RecordingTransport.Close(code: .internalError, reason: "resume")])
        #expect(transport.closes.first?.code.rawValue == 1011)
        #expect(session.phase == .detached)
        #expect(session.lastSeq == 1)
        // Detached: nothing more goes to that socket, and it is not detached twice.
        #expect(session.deliver(seq: 4, frame: Self.relay(4)))
        session.send(.pong(id: nil), type: .pong)
        #expect(transport.events.isEmpty)
        #expect(!session.detach(from: transport))
    }

    @Test func whileDetachedEverythingIsDropped() {
        let (session, transport) = Self.activeSession()
        #expect(session.detach(from: transport))
        #expect(session.phase == .detached)
        #expect(session.deliver(seq: 1, frame: Self.relay(1)))
        session.presence(.peerLeft(peerId: "carol", reason: .left), subject: "S-carol", change: .left)
        session.send(.pong(id: nil), type: .pong)
        #expect(transport.events.isEmpty)
        #expect(transport.closes.isEmpty)
        #expect(session.lastSeq == 0)
    }

    @Test func detachFromAnotherTransportIsIgnored() {
        let (session, transport) = Self.activeSession()
        #expect(!session.detach(from: RecordingTransport()))
        #expect(session.phase == .active)
        #expect(session.detach(from: transport))
        #expect(!session.detach(from: transport))
    }

    @Test func endSendsTheFinalFrameThenClosesOnce() {
        let (session, transport) = Self.activeSession()
        #expect(session.end(finalFrame: .error(ProtocolError(.forbidden, "kicked")), close: (.policy, "kicked")))
        #expect(session.phase == .ended)
        #expect(transport.take().map(\.errorCode) == ["forbidden"])
        #expect(transport.closes == [RecordingTransport.Close(code: .policy, reason: "kicked")])
        #expect(!session.end(finalFrame: nil, close: (.normal, "again")))
        #expect(transport.closes.count == 1)
        session.deliver(seq: 1, frame: Self.relay(1))
        session.send(.pong(id: nil), type: .pong)
        #expect(transport.events.isEmpty)
        #expect(!session.attach(RecordingTransport()))
    }

    @Test func anOpeningSessionThatEndsNeverSendsWhatItHeld() {
        let session = Self.makeSession()
        session.deliver(seq: 1, frame: Self.relay(1))
        session.open(first: [(Self.welcome(session), .welcome)], seq: 0, known: [])
        #expect(session.end(finalFrame: nil, close: nil))
        let transport = RecordingTransport()
        #expect(!session.attach(transport))
        #expect(transport.events.isEmpty)
    }

    @Test func handOverTellsAHalfOpenTransportItWasReplaced() {
        let (session, transport) = Self.activeSession()
        session.handOver()
        #expect(session.phase == .ended)
        #expect(transport.take().map(\.errorCode) == ["replaced"])
        #expect(transport.closes.map(\.code) == [.replaced])
        // Once only; and a detached session hands over silently.
        session.handOver()
        #expect(transport.closes.count == 1)
        let (detached, old) = Self.activeSession()
        #expect(detached.detach(from: old))
        detached.handOver()
        #expect(detached.phase == .ended)
        #expect(old.events.isEmpty)
        #expect(old.closes.isEmpty)
    }

    @Test func receivedFramesAreCounted() {
        let (session, _) = Self.activeSession()
        session.received(bytes: 10)
        session.received(bytes: 5)
        #expect(session.stats.framesIn == 2)
        #expect(session.stats.bytesIn == 15)
    }

    // MARK: Resume tokens

    @Test func theResumeTokenIsTheSessionIdAndTheSecret() throws {
        let session = Self.makeSession()
        #expect(session.resumeToken == session.id + ".secret")
        let parsed = try #require(Session.parseResumeToken(session.resumeToken))
        #expect(parsed.sessionId == session.id)
        #expect(parsed.secret == "secret")
        // The secret is everything after the first dot.
        #expect(Session.parseResumeToken("S1.a.b")?.secret == "a.b")
        for bad in ["", "no-dot", ".secret", "S1."] {
            #expect(Session.parseResumeToken(bad) == nil, "\(bad)")
        }
    }
}

/// A transport that calls back into its session while being written to, as a socket whose
/// flush triggers a read does: for each of the first three relays it gets, it counts a
/// received frame, sends a pong and has the next relay delivered. The session must not
/// deadlock and must keep the order.
final class ReentrantTransport: SessionTransport {
    private struct State {
        var frames: [[UInt8]] = []
        var echoes = 0
    }

    let session: Session
    private let state = Mutex(State())

    init(session: Session) {
        self.session = session
    }

    var frames: [[UInt8]] { state.withLock { $0.frames } }

    func send(_ frame: [UInt8], type: OutboundFrameType) {
        let next = state.withLock { state -> UInt64? in
            state.frames.append(frame)
            guard type == .signal, state.echoes < 3 else { return nil }
            state.echoes += 1
            return UInt64(state.echoes + 1)
        }
        guard let next else { return }
        session.received(bytes: frame.count)
        session.send(.pong(id: nil), type: .pong)
        session.deliver(seq: next, frame: SessionTests.relay(next, from: "echo"))
    }

    func close(_ code: CloseCode, reason: String) {}
}

@Suite struct SessionReentrancyTests {
    @Test func aTransportMayCallBackIntoItsSessionWhileSending() throws {
        let session = SessionTests.makeSession()
        let transport = ReentrantTransport(session: session)
        session.open(first: [(SessionTests.welcome(session), .welcome)], seq: 0, known: [])
        #expect(session.attach(transport))
        session.deliver(seq: 1, frame: SessionTests.relay(1))
        let events = try transport.frames.map { try ServerEvent.decode($0) }
        #expect(events.first?.welcome != nil)
        #expect(events.dropFirst().map(\.relay) == [
            Relayed(.signal, "alice", "null", 1), nil, Relayed(.signal, "echo", "null", 2), nil, Relayed(.signal, "echo", "null", 3), nil,
            Relayed(.signal, "echo", "null", 4),
        ])
        #expect(session.phase == .active)
        #expect(session.lastSeq == 4)
        #expect(session.stats.framesIn == 3)
    }
}

/// Edge cases of held relays a review found (each once a bug, now fixed).
@Suite struct SessionEdgeTests {
    @Test
    func aRelayDeliveredTwiceWhileOpeningIsSentOnce() {
        let session = SessionTests.makeSession()
        session.deliver(seq: 1, frame: SessionTests.relay(1))
        session.deliver(seq: 1, frame: SessionTests.relay(1))
        session.open(first: [(SessionTests.welcome(session), .welcome)], seq: 0, known: [])
        let transport = RecordingTransport()
        #expect(session.attach(transport))
        #expect(transport.take().compactMap(\.relay).map(\.seq) == [1])
    }

    @Test
    func aMissingSeqWhileOpeningIsNotSentOver() {
        let session = SessionTests.makeSession()
        session.open(first: [(SessionTests.welcome(session), .welcome)], seq: 0, known: [])
        // Seq 1 never arrives.
        session.deliver(seq: 2, frame: SessionTests.relay(2))
        let transport = RecordingTransport()
        _ = session.attach(transport)
        session.deliver(seq: 3, frame: SessionTests.relay(3))
        let seqs = transport.take().compactMap(\.relay).map(\.seq)
        #expect(seqs.isEmpty || seqs == Array(1...UInt64(seqs.count)), "sent \(seqs)")
        // The socket is dropped (1011) so the client resumes and gets seq 1 from the log.
        #expect(session.phase == .detached)
    }

    @Test
    func aHoleAmongTheRelaysHeldBeforeTheWelcomeDropsTheSocketAfterTheFramesBeforeIt() {
        let session = SessionTests.makeSession()
        session.deliver(seq: 1, frame: SessionTests.relay(1))
        session.deliver(seq: 3, frame: SessionTests.relay(3))  // seq 2 never came
        session.open(first: [(SessionTests.welcome(session), .welcome)], seq: 0, known: [])
        let transport = RecordingTransport()
        _ = session.attach(transport)
        #expect(transport.take().compactMap(\.relay).map(\.seq) == [1])
        #expect(session.phase == .detached)
        #expect(session.lastSeq == 1)
    }
}
