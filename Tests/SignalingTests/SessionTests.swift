import Foundation
import Testing

@testable import Signaling

@Suite struct SessionTests {
    static func makeSession(limits: ReplayBuffer.Limits = .init()) -> (Session, RecordingTransport) {
        let session = Session(
            identity: HubHarness.identity("bob", tenant: "acme", room: "lobby", apiKey: "AK1"), metadata: .emptyObject,
            resumeToken: "token", joinedAt: Date(timeIntervalSince1970: 0), replayLimits: limits)
        let transport = RecordingTransport()
        let welcome = ServerMessage.welcome(
            sessionId: session.id, peerId: "bob", room: "lobby", peers: [], iceServers: .emptyArray, resumeToken: "token", heartbeatSeconds: 20)
        session.start(transport: transport, welcome: welcome.encoded())
        // `start` runs under the hub's lock and leaves the drain to the joiner.
        session.drain()
        return (session, transport)
    }

    @Test func startSendsTheWelcome() {
        let (session, transport) = Self.makeSession()
        #expect(transport.types == [.welcome])
        #expect(session.phase == .active)
        #expect(session.lastSeq == 0)
        #expect(session.stats.framesOut == 1)
    }

    @Test func deliveriesAreNumberedAndCounted() {
        let (session, transport) = Self.makeSession()
        _ = transport.take()
        #expect(session.deliver(.signal, from: "alice", data: .null))
        #expect(session.deliver(.broadcast, from: "carol", data: .emptyObject))
        #expect(transport.types == [.signal, .broadcast])
        #expect(transport.take().map(\.relay) == [Relay(.signal, "alice", "null", 1), Relay(.broadcast, "carol", "{}", 2)])
        #expect(session.lastSeq == 2)
        let stats = session.stats
        #expect(stats.framesOut == 3)
        #expect(stats.bytesOut > 0)
    }

    @Test func whileDetachedRelaysAreNumberedAndKeptButControlFramesDropped() throws {
        let (session, transport) = Self.makeSession()
        _ = transport.take()
        let generation = try #require(session.detach(from: transport))
        #expect(session.phase == .detached)
        #expect(session.isDetached(generation: generation))
        #expect(session.deliver(.signal, from: "alice", data: .null))
        session.send(.peerLeft(peerId: "carol", reason: .left), type: .peerLeft)
        #expect(transport.events.isEmpty)
        #expect(session.lastSeq == 1)
        let fresh = RecordingTransport()
        #expect(session.resume(transport: fresh, lastSeq: 0, peers: []) == .success(1))
        #expect(fresh.take().map(\.relay) == [nil, Relay(.signal, "alice", "null", 1)])
        #expect(!session.isDetached(generation: generation))
    }

    @Test func detachFromAnotherTransportIsIgnored() {
        let (session, transport) = Self.makeSession()
        #expect(session.detach(from: RecordingTransport()) == nil)
        #expect(session.phase == .active)
        #expect(session.detach(from: transport) != nil)
        #expect(session.detach(from: transport) == nil)
    }

    @Test func endSendsTheFinalFrameThenClosesOnce() {
        let (session, transport) = Self.makeSession()
        _ = transport.take()
        #expect(session.end(finalFrame: .error(ProtocolError(.forbidden, "kicked")), close: (.policy, "kicked")))
        #expect(transport.take().map(\.errorCode) == ["forbidden"])
        #expect(transport.closes == [RecordingTransport.Close(code: .policy, reason: "kicked")])
        #expect(!session.end(finalFrame: nil, close: (.normal, "again")))
        #expect(transport.closes.count == 1)
        #expect(!session.deliver(.signal, from: "alice", data: .null))
        session.send(.pong(id: nil), type: .pong)
        #expect(transport.events.isEmpty)
        #expect(session.resume(transport: RecordingTransport(), lastSeq: 0, peers: []) == .failure(.ended))
    }

    @Test func resumeBehindTheReplayBufferIsAGap() {
        let (session, transport) = Self.makeSession(limits: .init(maxFrames: 1))
        _ = session.detach(from: transport)
        session.deliver(.signal, from: "a", data: .null)
        session.deliver(.signal, from: "a", data: .null)
        #expect(session.resume(transport: RecordingTransport(), lastSeq: 0, peers: []) == .failure(.gap))
        #expect(session.phase == .detached)
    }

    @Test func receivedFramesAreCounted() {
        let (session, _) = Self.makeSession()
        session.received(bytes: 10)
        session.received(bytes: 5)
        #expect(session.stats.framesIn == 2)
        #expect(session.stats.bytesIn == 15)
    }
}

/// A transport that calls back into its session while being written to, as a socket whose
/// flush triggers a read does: the session must not deadlock and must keep the order.
final class ReentrantTransport: SessionTransport, @unchecked Sendable {
    weak var session: Session?
    private(set) var frames: [[UInt8]] = []
    private var echoes = 0

    func send(_ frame: [UInt8], type: OutboundFrameType) {
        frames.append(frame)
        guard echoes < 3, let session else { return }
        echoes += 1
        session.received(bytes: frame.count)
        session.deliver(.signal, from: "echo", data: .null)
    }

    func close(_ code: CloseCode, reason: String) {}
}

@Suite struct SessionReentrancyTests {
    @Test func aTransportMayCallBackIntoItsSessionWhileSending() throws {
        let session = Session(
            identity: HubHarness.identity("bob", tenant: "acme", room: "lobby", apiKey: "AK1"), metadata: .emptyObject,
            resumeToken: "token", joinedAt: Date(timeIntervalSince1970: 0), replayLimits: .init())
        let transport = ReentrantTransport()
        transport.session = session
        session.start(transport: transport, welcome: Array(#"{"type":"welcome"}"#.utf8))
        session.drain()
        session.deliver(.signal, from: "alice", data: .null)
        let seqs = try transport.frames.dropFirst().map { frame -> UInt64 in
            guard case .relay(_, _, _, let seq) = try ServerEvent.decode(frame) else { throw ServerEvent.DecodingFailure(message: "not a relay") }
            return seq
        }
        #expect(seqs == Array(1...UInt64(seqs.count)))
        #expect(seqs.count == 4)
    }
}
