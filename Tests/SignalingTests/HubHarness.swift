import Foundation
import Logging
import Synchronization
import Testing

@testable import Signaling

/// A wall clock that stands still.
struct FixedClock: WallClock {
    var date = Date(timeIntervalSince1970: 1_700_000_000)
    func now() -> Date { date }
}

/// A bus that refuses every message, as a bus that is down does.
final class DownBus: MessageBus {
    func publish(_ message: BusMessage, to topic: BusTopic) -> Bool { false }

    func subscribe(_ topic: BusTopic, _ handler: @escaping @Sendable (BusMessage) -> Void) -> any BusSubscription {
        NoSubscription()
    }

    func isAvailable() async -> Bool { false }

    private struct NoSubscription: BusSubscription {
        func cancel() {}
    }
}

/// Messages a bus subscriber got.
final class BusInbox: Sendable {
    private let messages = Mutex<[BusMessage]>([])

    func append(_ message: BusMessage) { messages.withLock { $0.append(message) } }

    var all: [BusMessage] { messages.withLock { $0 } }
}

/// A session in a test, with the transport that records what it was sent.
struct Member {
    var session: Session
    var transport: RecordingTransport
}

/// A hub on node `node-a` with in-memory presence, an in-process bus and an audit buffer.
struct HubHarness {
    let hub: Hub
    let presence: InMemoryPresence
    let audit: AuditBuffer

    init(nodeID: String = "node-a", replayLimits: ReplayBuffer.Limits = .init(), bus: any MessageBus = InProcessBus(), presence: InMemoryPresence = InMemoryPresence()) {
        self.presence = presence
        self.audit = AuditBuffer(capacity: 1000)
        self.hub = Hub(
            configuration: Hub.Configuration(nodeID: nodeID, replayLimits: replayLimits), bus: bus, presence: presence,
            audit: audit, clock: FixedClock(), logger: Logger(label: "test"))
    }

    static func identity(_ peer: String, tenant: String, room: String, apiKey: String) -> SessionIdentity {
        SessionIdentity(
            sessionId: "S-\(tenant)-\(room)-\(peer)-\(UUID().uuidString)", tenantID: tenant, apiKey: apiKey, room: room, peerId: peer,
            permissions: .default, remoteAddress: "203.0.113.7", userAgent: "tests/1.0")
    }

    /// Asks the hub to join `peer`; returns the outcome and the transport it was given.
    func attempt(
        _ peer: String, tenant: String = "acme", room: String = "lobby", apiKey: String = "AK1", metadata: RawJSON = .emptyObject,
        maxPeers: Int = 100, maxConnections: Int = 10_000
    ) -> (JoinOutcome, RecordingTransport) {
        let transport = RecordingTransport()
        let request = JoinRequest(
            identity: Self.identity(peer, tenant: tenant, room: room, apiKey: apiKey), metadata: metadata, maxPeers: maxPeers,
            maxConnections: maxConnections)
        let outcome = hub.join(request, transport: transport) { session, peers in
            .welcome(
                sessionId: session.id, peerId: session.peerId, room: session.room, peers: peers, iceServers: .emptyArray,
                resumeToken: session.resumeToken, heartbeatSeconds: 20)
        }
        return (outcome, transport)
    }

    /// Joins `peer`, which must succeed.
    func join(
        _ peer: String, tenant: String = "acme", room: String = "lobby", apiKey: String = "AK1", metadata: RawJSON = .emptyObject,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Member {
        let (outcome, transport) = attempt(peer, tenant: tenant, room: room, apiKey: apiKey, metadata: metadata)
        guard case .joined(let session) = outcome else {
            Issue.record("join of \(peer) was refused: \(outcome)", sourceLocation: sourceLocation)
            throw HarnessError.refused
        }
        return Member(session: session, transport: transport)
    }

    /// Resumes `member`'s session on a new transport.
    func resume(_ member: Member, lastSeq: UInt64) -> (ResumeOutcome, RecordingTransport) {
        let transport = RecordingTransport()
        let outcome = hub.resume(
            token: member.session.resumeToken, lastSeq: lastSeq, tenantID: member.session.tenantID, room: member.session.room,
            peerId: member.session.peerId, transport: transport)
        return (outcome, transport)
    }

    /// Audit events recorded so far, oldest first.
    var auditEvents: [AuditEvent] { audit.peek(max: 10_000) }

    enum HarnessError: Error {
        case refused
    }
}

extension JoinOutcome {
    var isJoined: Bool { if case .joined = self { true } else { false } }
    var isRoomFull: Bool { if case .roomFull = self { true } else { false } }
    var isTooManyConnections: Bool { if case .tooManyConnections = self { true } else { false } }
    var isDraining: Bool { if case .draining = self { true } else { false } }
}

extension ResumeOutcome {
    var isUnknownSession: Bool { if case .unknownSession = self { true } else { false } }
    var isGap: Bool { if case .gap = self { true } else { false } }

    /// The replayed count of a successful resume.
    var replayed: Int? { if case .resumed(_, let replayed) = self { replayed } else { nil } }
}

extension ServerEvent {
    /// A relayed message as (kind, from, data text, seq), for compact expectations.
    var relay: Relay? {
        if case .relay(let kind, let from, let data, let seq) = self { Relay(kind, from, data.description, seq) } else { nil }
    }

    var errorCode: String? { if case .error(let code, _, _) = self { code } else { nil } }
}

/// A relayed message, compared as a value.
struct Relay: Equatable, CustomStringConvertible {
    var kind: RelayKind
    var from: String
    var data: String
    var seq: UInt64

    init(_ kind: RelayKind, _ from: String, _ data: String, _ seq: UInt64) {
        self.kind = kind
        self.from = from
        self.data = data
        self.seq = seq
    }

    var description: String { "\(kind.rawValue)(\(from), \(data), #\(seq))" }
}

extension AuditEvent {
    /// The event's data as a value tree.
    var values: [String: JSONValue] {
        if case .object(let object) = (try? data.decode(JSONValue.self)) { object } else { [:] }
    }
}
