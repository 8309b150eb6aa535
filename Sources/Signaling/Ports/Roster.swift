import Foundation

/// Cluster-wide room membership and each session's durable state and replay log (issue #13):
/// the one place that decides who is in a room, numbers what each session receives, and
/// keeps it for a resume on any node.
///
/// One order for everything: an implementation applies operations one at a time (Redis runs
/// each as one script) and hands their effects — relayed frames with their `seq`, presence
/// changes, replaced and moved sessions — to the nodes hosting the sessions concerned, as
/// ``RosterEvent``s, in that order. So messages from one sender to one receiver keep their
/// order whichever nodes the two are on, and presence changes are ordered with messages.
///
/// A relay (``relay(_:completion:)``) never blocks: it hands the operation over and calls
/// `completion` once it is applied — that is when the sender may be acked — or failed.
/// The other operations are rare and may await.
///
/// The node's ``Hub`` runs on it: ``InMemoryRoster`` in the embedded default, the Redis
/// roster in a cluster.
public protocol Roster: Sendable {
    /// Takes a place in the room for a new session, atomically across the cluster: refused
    /// when the room holds `maxPeers` peers or the tenant `maxConnections` sessions, unless
    /// the same peer id is there already, in which case the new session replaces that one
    /// (its node gets ``RosterEvent/replaced(sessionId:)``). Answers with the others, for
    /// `welcome`.
    func join(_ request: RosterJoin, completion: @escaping @Sendable (Result<RosterJoinOutcome, RosterError>) -> Void)
    /// Ends a session: it leaves presence (the room's nodes get `peerLeft` with `reason`) and
    /// its state and log are removed. Nothing happens when it is no longer the room's
    /// session for its peer id, or — with `node` — when it is no longer on that node (a node
    /// ending its copy of a session that moved away must not end the moved one).
    func leave(_ session: SessionAddress, reason: LeaveReason, onNode node: String?, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void)
    /// Replaces a peer's metadata; the room's nodes get `peerUpdated`.
    func update(_ session: SessionAddress, metadata: RawJSON, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void)
    /// Moves a session to `node` with the frames after `lastSeq`, checking `resumeSecret`.
    /// Its previous node gets ``RosterEvent/moved(sessionId:)``.
    func resume(_ request: RosterResume, completion: @escaping @Sendable (Result<RosterResumeOutcome, RosterError>) -> Void)
    /// Numbers and logs a `signal` (to one peer) or `broadcast` (to every other peer) for each
    /// recipient and sends it to their nodes.
    func relay(_ relay: Relay, completion: @escaping @Sendable (Result<RelayReceipt, RosterError>) -> Void)
    /// The room's peers, on every node, ordered by peer id.
    func peers(tenantID: String, room: String) async throws(RosterError) -> [PeerRecord]
    /// Sessions of a tenant on every node (its connection count).
    func connectionCount(tenantID: String) async throws(RosterError) -> Int
    /// Receives the events for the sessions `node` hosts, in the roster's order.
    func subscribe(node: String, _ handler: @escaping @Sendable (RosterEvent) -> Void) async throws(RosterError) -> any BusSubscription
    /// Whether every relay crosses the network (a cluster), for the routing metrics.
    var isDistributed: Bool { get }
    /// Puts back sessions a node still hosts after the roster lost them (a Redis restarted
    /// without persistence): presence, the node's share, the tenant's count and the `seq`
    /// to continue from. Sessions the roster still knows are left alone. Publishes nothing.
    func restore(_ sessions: [RosterRestore]) async throws(RosterError) -> [String: RosterRestoreOutcome]
}

/// A live session as its node knows it, for ``Roster/restore(_:)``.
public struct RosterRestore: Sendable {
    public var peer: PeerRecord
    public var resumeSecret: String
    /// The last `seq` the node handed to the session.
    public var seq: UInt64

    public init(peer: PeerRecord, resumeSecret: String, seq: UInt64) {
        self.peer = peer
        self.resumeSecret = resumeSecret
        self.seq = seq
    }
}

public enum RosterRestoreOutcome: String, Sendable, Equatable {
    /// It was gone and is back.
    case restored
    /// The roster still had it, on this node.
    case kept
    /// The peer id now belongs to another session: this one ends (`replaced`).
    case replaced
    /// It resumed on another node meanwhile: this node's copy goes.
    case moved
}

extension Roster {
    /// A roster that never loses its state keeps every session.
    public func restore(_ sessions: [RosterRestore]) async throws(RosterError) -> [String: RosterRestoreOutcome] {
        Dictionary(sessions.map { ($0.peer.sessionId, .kept) }, uniquingKeysWith: { first, _ in first })
    }

    /// ``join(_:completion:)``, awaited.
    public func join(_ request: RosterJoin) async throws(RosterError) -> RosterJoinOutcome {
        try await withCheckedContinuation { continuation in join(request) { continuation.resume(returning: $0) } }.get()
    }

    /// ``leave(_:reason:onNode:completion:)`` wherever the session is.
    public func leave(_ session: SessionAddress, reason: LeaveReason, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void) {
        leave(session, reason: reason, onNode: nil, completion: completion)
    }

    /// ``leave(_:reason:onNode:completion:)``, awaited.
    public func leave(_ session: SessionAddress, reason: LeaveReason, onNode node: String? = nil) async throws(RosterError) {
        try await withCheckedContinuation { continuation in leave(session, reason: reason, onNode: node) { continuation.resume(returning: $0) } }.get()
    }

    /// ``update(_:metadata:completion:)``, awaited.
    public func update(_ session: SessionAddress, metadata: RawJSON) async throws(RosterError) {
        try await withCheckedContinuation { continuation in update(session, metadata: metadata) { continuation.resume(returning: $0) } }.get()
    }

    /// ``resume(_:completion:)``, awaited.
    public func resume(_ request: RosterResume) async throws(RosterError) -> RosterResumeOutcome {
        try await withCheckedContinuation { continuation in resume(request) { continuation.resume(returning: $0) } }.get()
    }

    /// ``relay(_:completion:)``, awaited.
    public func relay(_ relay: Relay) async throws(RosterError) -> RelayReceipt {
        try await withCheckedContinuation { continuation in self.relay(relay) { continuation.resume(returning: $0) } }.get()
    }
}

/// Which session, in which room.
public struct SessionAddress: Sendable, Hashable {
    public var tenantID: String
    public var room: String
    public var peerId: String
    public var sessionId: String

    public init(tenantID: String, room: String, peerId: String, sessionId: String) {
        self.tenantID = tenantID
        self.room = room
        self.peerId = peerId
        self.sessionId = sessionId
    }
}

public struct RosterJoin: Sendable {
    /// The new session as presence shows it (its node, metadata, join time).
    public var peer: PeerRecord
    /// Proves a later resume; kept hashed.
    public var resumeSecret: String
    public var maxPeers: Int
    public var maxConnections: Int

    public init(peer: PeerRecord, resumeSecret: String, maxPeers: Int, maxConnections: Int) {
        self.peer = peer
        self.resumeSecret = resumeSecret
        self.maxPeers = maxPeers
        self.maxConnections = maxConnections
    }
}

public enum RosterJoinOutcome: Sendable, Equatable {
    /// In the room; `others` were there before (ordered by peer id); `replaced` is the
    /// session of the same peer id that this one replaced.
    case joined(others: [PeerRecord], replaced: PeerRecord?)
    case roomFull
    case tooManyConnections
}

public struct RosterResume: Sendable {
    public var session: SessionAddress
    public var resumeSecret: String
    public var lastSeq: UInt64
    /// The node the session moves to.
    public var node: String

    public init(session: SessionAddress, resumeSecret: String, lastSeq: UInt64, node: String) {
        self.session = session
        self.resumeSecret = resumeSecret
        self.lastSeq = lastSeq
        self.node = node
    }
}

public enum RosterResumeOutcome: Sendable, Equatable {
    /// Moved; `frames` are every kept frame after `lastSeq`, in order, and `seq` the last
    /// number handed out (the first live frame after these is `seq + 1`); `own` is the
    /// session's presence record (its metadata and first join time).
    case resumed(frames: [LoggedFrame], seq: UInt64, peers: [PeerRecord], own: PeerRecord?)
    /// No such session (ended, expired, or the secret or peer does not match).
    case unknownSession
    /// Frames after `lastSeq` are no longer kept.
    case gap
}

/// A numbered frame kept for replay.
public struct LoggedFrame: Sendable, Equatable {
    public var seq: UInt64
    public var kind: RelayKind
    public var frame: [UInt8]

    public init(seq: UInt64, kind: RelayKind, frame: [UInt8]) {
        self.seq = seq
        self.kind = kind
        self.frame = frame
    }
}

/// A `signal` or `broadcast` on its way: from a session, to one peer (`to`) or the room.
public struct Relay: Sendable {
    public var from: SessionAddress
    public var kind: RelayKind
    /// The receiving peer; nil for a broadcast to every other peer of the room.
    public var to: String?
    public var data: RawJSON

    public init(from: SessionAddress, kind: RelayKind, to: String?, data: RawJSON) {
        self.from = from
        self.kind = kind
        self.to = to
        self.data = data
    }

    /// The peer a broadcast skips: the sender, unless it is not a session (a server message,
    /// `from.sessionId` empty). "" skips nobody.
    public var excludedPeer: String {
        to == nil && !from.sessionId.isEmpty ? from.peerId : ""
    }

    /// The frame as the receiver gets it, split around its `seq` (which the roster assigns):
    /// `prefix + seq + suffix` is exactly ``ServerMessage/encodeRelay(_:from:data:seq:)``.
    public var frameTemplate: (prefix: [UInt8], suffix: [UInt8]) {
        var head = JSONWriter(capacity: from.peerId.utf8.count + 48)
        head.beginObject()
        head.field("type", kind.rawValue)
        head.field("from", from.peerId)
        head.key("seq")
        var tail = Array(#","data":"#.utf8)
        tail.reserveCapacity(tail.count + data.bytes.count + 1)
        tail += data.bytes
        tail.append(UInt8(ascii: "}"))
        return (head.bytes, tail)
    }
}

/// What a relay reached.
public struct RelayReceipt: Sendable, Equatable {
    /// Sessions that got a numbered, logged copy.
    public var recipients: Int
    /// Distinct nodes the copies went to.
    public var nodes: Int

    public init(recipients: Int, nodes: Int) {
        self.recipients = recipients
        self.nodes = nodes
    }
}

/// What a node hears from the roster about the sessions it hosts (or rooms it serves).
public enum RosterEvent: Sendable, Equatable {
    /// A numbered relay for a session on this node.
    case deliver(sessionId: String, seq: UInt64, frame: [UInt8])
    /// Someone joined a room this node serves (tell local members but `peer.sessionId`).
    case peerJoined(PeerRecord)
    /// Someone left a room this node serves.
    case peerLeft(tenantID: String, room: String, peerId: String, sessionId: String, reason: LeaveReason)
    case peerUpdated(tenantID: String, room: String, peerId: String, sessionId: String, metadata: RawJSON)
    /// A newer join of the same peer id took this node's session over: close it (4001).
    case replaced(sessionId: String)
    /// This node's session resumed on another node: drop it quietly (or close a half-open
    /// socket as replaced).
    case moved(sessionId: String)
    /// A session resumed on this node (sent to the resuming node itself, after everything
    /// the roster sent this node before the resume): a `moved` for it that arrives before
    /// this one is older than the resume — from a hop away that this resume undid — and must
    /// not drop the session.
    case attached(sessionId: String)
}

/// Why a roster operation failed.
public struct RosterError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The roster could not take the operation now (Redis down, backlog full): nothing
        /// was applied — the sender gets `unavailable`.
        public static let unavailable = Code(rawValue: "unavailable")
        /// A `signal` to a peer that is not in the room.
        public static let peerNotFound = Code(rawValue: "peer_not_found")
        /// The operation was sent but no answer came: it may or may not have been applied.
        public static let timedOut = Code(rawValue: "timed_out")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
