import Foundation
import Logging
import Synchronization

/// What a new session asks for; checked against live state at join.
public struct JoinRequest: Sendable {
    public var identity: SessionIdentity
    public var metadata: RawJSON
    public var maxPeers: Int
    public var maxConnections: Int

    public init(identity: SessionIdentity, metadata: RawJSON, maxPeers: Int, maxConnections: Int) {
        self.identity = identity
        self.metadata = metadata
        self.maxPeers = maxPeers
        self.maxConnections = maxConnections
    }
}

public enum JoinOutcome: Sendable {
    case joined(Session)
    case roomFull
    case tooManyConnections
    case draining
}

/// Where a relayed message went.
public enum RouteOutcome: Sendable, Equatable {
    /// Handed to `local` sessions on this node and published to `remote` other nodes.
    case routed(local: Int, remote: Int)
    case peerNotFound
    /// The bus would not take it: nothing was delivered.
    case unavailable
}

public enum ResumeOutcome: Sendable {
    case resumed(Session, replayed: Int)
    /// Unknown or expired token, or it belongs to another tenant, room or peer.
    case unknownSession
    /// Frames after `lastSeq` are no longer kept.
    case gap
}

/// The sessions this node hosts, by room: join, leave, relay, resume, presence events.
///
/// The relay path (``signal(from:to:data:)``, ``broadcast(from:data:)``) takes one short
/// lock to find recipients and never awaits. Messages for peers on other nodes go through the
/// ``MessageBus``; ``Presence`` tells where they are. Audit events go to an ``AuditBuffer``.
public final class Hub: Sendable {
    public struct Configuration: Sendable {
        public var nodeID: String
        public var replayLimits: ReplayBuffer.Limits

        public init(nodeID: String, replayLimits: ReplayBuffer.Limits = .init()) {
            self.nodeID = nodeID
            self.replayLimits = replayLimits
        }
    }

    struct RoomKey: Hashable {
        var tenantID: String
        var room: String
    }

    struct State {
        var rooms: [RoomKey: [String: Session]] = [:]
        var byResumeToken: [String: Session] = [:]
        var connections: [String: Int] = [:]
        var draining = false
    }

    public let configuration: Configuration
    public let bus: any MessageBus
    public let presence: any Presence
    public let audit: AuditBuffer
    private let clock: any WallClock
    private let logger: Logger
    private let state = Mutex(State())

    public init(configuration: Configuration, bus: any MessageBus, presence: any Presence, audit: AuditBuffer, clock: any WallClock = SystemWallClock(), logger: Logger) {
        self.configuration = configuration
        self.bus = bus
        self.presence = presence
        self.audit = audit
        self.clock = clock
        self.logger = logger
    }

    public var nodeID: String { configuration.nodeID }

    // MARK: Join and leave

    /// Adds a session to its room and sends it `welcome` (built by `welcome` from the session
    /// and the peers already there) before any other frame can reach it; then tells the
    /// others. A session of the same peer id already in the room is replaced.
    public func join(
        _ request: JoinRequest, transport: any SessionTransport,
        welcome: (Session, [PeerSummary]) -> ServerMessage
    ) -> JoinOutcome {
        let identity = request.identity
        let key = RoomKey(tenantID: identity.tenantID, room: identity.room)
        let session = Session(
            identity: identity, metadata: request.metadata, resumeToken: Self.makeResumeToken(),
            joinedAt: clock.now(), replayLimits: configuration.replayLimits)
        let result = state.withLock { state -> Result<(Session?, [Session]), JoinRejection> in
            if state.draining { return .failure(.draining) }
            var members = state.rooms[key] ?? [:]
            let previous = members[identity.peerId]
            if previous == nil, members.count >= request.maxPeers { return .failure(.roomFull) }
            let connections = state.connections[identity.tenantID, default: 0]
            if previous == nil, connections >= request.maxConnections { return .failure(.tooManyConnections) }
            let others = members.values.filter { $0 !== previous }
            members[identity.peerId] = session
            state.rooms[key] = members
            state.byResumeToken[session.resumeToken] = session
            if let previous {
                state.byResumeToken[previous.resumeToken] = nil
            } else {
                state.connections[identity.tenantID] = connections + 1
            }
            // Welcome is queued under the hub lock: nobody can find this session to send it
            // anything before its welcome is first in its outbox.
            session.start(transport: transport, welcome: welcome(session, others.map(\.summary)).encoded())
            return .success((previous, others))
        }
        if case .success = result {
            // Outside the hub lock: the welcome (and anything queued behind it) goes out now.
            session.drain()
        }
        switch result {
        case .failure(.draining): return .draining
        case .failure(.roomFull): return .roomFull
        case .failure(.tooManyConnections): return .tooManyConnections
        case .success(let (previous, others)):
            if let previous {
                // The new connection wins; the others see the old one leave and the new one join.
                if previous.end(finalFrame: .error(ProtocolError(.replaced, "the same peer joined on another connection")), close: (.replaced, "replaced")) {
                    recordEnded(previous, reason: "replaced")
                }
                broadcastControl(.peerLeft(peerId: previous.peerId, reason: .left), to: others)
            }
            broadcastControl(.peerJoined(session.summary), to: others)
            presenceAdd(session)
            audit.record(event(.sessionStarted, session, data: [
                "remoteAddress": .string(identity.remoteAddress), "userAgent": .string(identity.userAgent),
            ]))
            return .joined(session)
        }
    }

    private enum JoinRejection: Error {
        case roomFull, tooManyConnections, draining
    }

    /// Ends a session and tells the room. `close` is sent to the transport if one is attached.
    public func end(_ session: Session, reason: LeaveReason, finalFrame: ServerMessage? = nil, close: (CloseCode, String)?, notifyRoom: Bool = true) {
        guard session.end(finalFrame: finalFrame, close: close) else { return }
        let others = remove(session)
        if let others, notifyRoom {
            broadcastControl(.peerLeft(peerId: session.peerId, reason: reason), to: others)
        }
        recordEnded(session, reason: reason.rawValue)
    }

    /// Removes a session from the maps; returns the room's remaining sessions if it was there.
    private func remove(_ session: Session) -> [Session]? {
        let key = RoomKey(tenantID: session.tenantID, room: session.room)
        let others = state.withLock { state -> [Session]? in
            if state.byResumeToken[session.resumeToken] === session {
                state.byResumeToken[session.resumeToken] = nil
            }
            guard var members = state.rooms[key], members[session.peerId] === session else { return nil }
            members[session.peerId] = nil
            state.rooms[key] = members.isEmpty ? nil : members
            let count = state.connections[session.tenantID, default: 1] - 1
            state.connections[session.tenantID] = count > 0 ? count : nil
            return Array(members.values)
        }
        if others != nil {
            presence.leave(tenantID: session.tenantID, room: session.room, peerId: session.peerId, sessionId: session.id)
        }
        return others
    }

    /// The socket dropped without `leave`: keep the session for the resume window. Returns
    /// the generation to hand to ``expire(_:generation:)`` when the window ends.
    public func detach(_ session: Session, transport: any SessionTransport) -> UInt64? {
        session.detach(from: transport)
    }

    /// The resume window ended: a session still detached since `generation` ends (`timeout`).
    public func expire(_ session: Session, generation: UInt64) {
        guard session.isDetached(generation: generation) else { return }
        end(session, reason: .timeout, close: nil)
    }

    // MARK: Resume

    /// Attaches a new transport to a live or detached session and replays what it missed.
    public func resume(token: String, lastSeq: UInt64, tenantID: String, room: String, peerId: String, transport: any SessionTransport) -> ResumeOutcome {
        let found = state.withLock { state -> (Session, [PeerSummary])? in
            guard let session = state.byResumeToken[token], session.tenantID == tenantID,
                session.room == room, session.peerId == peerId
            else { return nil }
            let key = RoomKey(tenantID: tenantID, room: room)
            let peers = (state.rooms[key] ?? [:]).values.filter { $0 !== session }.map(\.summary)
            return (session, peers)
        }
        guard let (session, peers) = found else { return .unknownSession }
        switch session.resume(transport: transport, lastSeq: lastSeq, peers: peers) {
        case .success(let replayed):
            audit.record(event(.sessionResumed, session, data: ["replayed": .number(Double(replayed)), "lastSeq": .number(Double(lastSeq))]))
            return .resumed(session, replayed: replayed)
        case .failure(.ended): return .unknownSession
        case .failure(.gap): return .gap
        }
    }

    // MARK: Relay

    /// Sends `data` from `sender` to peer `to` in the sender's room.
    public func signal(from sender: Session, to peerId: String, data: RawJSON) -> RouteOutcome {
        let key = RoomKey(tenantID: sender.tenantID, room: sender.room)
        let target = state.withLock { $0.rooms[key]?[peerId] }
        if let target {
            target.deliver(.signal, from: sender.peerId, data: data)
            return .routed(local: 1, remote: 0)
        }
        guard let node = presence.locate(tenantID: sender.tenantID, room: sender.room, peerId: peerId), node != nodeID else {
            return .peerNotFound
        }
        let envelope = RelayEnvelope(tenantID: sender.tenantID, room: sender.room, kind: .signal, from: sender.peerId, to: peerId, exclude: nil, data: data)
        return bus.publish(.deliver(envelope), to: .node(node)) ? .routed(local: 0, remote: 1) : .unavailable
    }

    /// Sends `data` from `sender` to every other peer of its room, on every node.
    public func broadcast(from sender: Session, data: RawJSON) -> RouteOutcome {
        let envelope = RelayEnvelope(tenantID: sender.tenantID, room: sender.room, kind: .broadcast, from: sender.peerId, to: nil, exclude: sender.peerId, data: data)
        return route(envelope)
    }

    /// Delivers an envelope to the local recipients and publishes it to the other nodes that
    /// host peers of the room. Local delivery comes first and cannot fail; if the bus refuses
    /// any node the outcome is `unavailable` (a retry may then reach some peers twice).
    public func route(_ envelope: RelayEnvelope) -> RouteOutcome {
        let local = deliverLocally(envelope)
        let remoteNodes = presence.nodes(tenantID: envelope.tenantID, room: envelope.room).subtracting([nodeID])
        var remote = 0
        for node in remoteNodes {
            guard bus.publish(.deliver(envelope), to: .node(node)) else { return .unavailable }
            remote += 1
        }
        if envelope.to != nil, local == 0, remote == 0 { return .peerNotFound }
        return .routed(local: local, remote: remote)
    }

    /// Delivers an envelope to the sessions of this node; returns how many got it.
    @discardableResult
    public func deliverLocally(_ envelope: RelayEnvelope) -> Int {
        let key = RoomKey(tenantID: envelope.tenantID, room: envelope.room)
        if let to = envelope.to {
            guard let target = state.withLock({ $0.rooms[key]?[to] }) else { return 0 }
            return target.deliver(envelope.kind, from: envelope.from, data: envelope.data) ? 1 : 0
        }
        let members = state.withLock { state -> [Session] in
            guard let members = state.rooms[key] else { return [] }
            return members.values.filter { $0.peerId != envelope.exclude }
        }
        var delivered = 0
        for member in members where member.deliver(envelope.kind, from: envelope.from, data: envelope.data) {
            delivered += 1
        }
        return delivered
    }

    /// Replaces a peer's metadata and tells the room.
    public func update(_ session: Session, metadata: RawJSON) {
        session.setMetadata(metadata)
        let others = members(tenantID: session.tenantID, room: session.room).filter { $0 !== session }
        broadcastControl(.peerUpdated(PeerSummary(peerId: session.peerId, metadata: metadata)), to: others)
        presence.update(tenantID: session.tenantID, room: session.room, peerId: session.peerId, metadata: metadata)
    }

    // MARK: Operator and tenant actions (arrive over the bus's control topic)

    /// Applies a control message to this node's sessions.
    public func handle(_ message: BusMessage) {
        switch message {
        case .deliver(let envelope):
            deliverLocally(envelope)
        case .tenantDisconnect(let tenantID, let reason):
            for session in sessions(where: { $0.tenantID == tenantID }) {
                end(session, reason: .kicked, finalFrame: .error(ProtocolError(.forbidden, reason)), close: (.policy, reason), notifyRoom: false)
            }
        case .keyRevoked(let tenantID, let apiKey):
            for session in sessions(where: { $0.tenantID == tenantID && $0.identity.apiKey == apiKey }) {
                end(session, reason: .kicked, finalFrame: .error(ProtocolError(.forbidden, "API key revoked")), close: (.policy, "key revoked"))
            }
        case .roomClosed(let tenantID, let room):
            for session in members(tenantID: tenantID, room: room) {
                end(session, reason: .left, close: (.normal, "room closed"), notifyRoom: false)
            }
        case .kick(let tenantID, let room, let peerId):
            let key = RoomKey(tenantID: tenantID, room: room)
            if let session = state.withLock({ $0.rooms[key]?[peerId] }) {
                end(session, reason: .kicked, finalFrame: .error(ProtocolError(.forbidden, "kicked")), close: (.policy, "kicked"))
            }
        case .tenantChanged:
            break
        }
    }

    /// Live sessions of a room on this node.
    public func members(tenantID: String, room: String) -> [Session] {
        state.withLock { Array(($0.rooms[RoomKey(tenantID: tenantID, room: room)] ?? [:]).values) }
    }

    /// Every session on this node matching `predicate`.
    public func sessions(where predicate: (Session) -> Bool = { _ in true }) -> [Session] {
        state.withLock { state in state.rooms.values.flatMap { $0.values.filter(predicate) } }
    }

    /// Live (attached or detached) sessions on this node.
    public var sessionCount: Int { state.withLock { $0.connections.values.reduce(0, +) } }

    /// Rooms with at least one session on this node.
    public var roomCount: Int { state.withLock { $0.rooms.count } }

    /// Sessions per tenant on this node.
    public func connectionCounts() -> [String: Int] { state.withLock { $0.connections } }

    // MARK: Drain

    /// Refuses new joins from now on and tells every session to reconnect elsewhere, each
    /// after its own jittered delay (so a drain is not a reconnect storm).
    public func beginDrain(maxRetryAfterMs: Int = 5000) {
        let sessions = state.withLock { state -> [Session] in
            state.draining = true
            return state.rooms.values.flatMap { $0.values }
        }
        for session in sessions {
            let delay = Int.random(in: 0...max(0, maxRetryAfterMs))
            session.send(.reconnect(reason: "draining", retryAfterMs: delay), type: .reconnect)
        }
    }

    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Ends every remaining session with `1001 going away`.
    public func closeAll() {
        for session in sessions() {
            end(session, reason: .left, close: (.goingAway, "server shutting down"), notifyRoom: false)
        }
    }

    // MARK: Helpers

    private func broadcastControl(_ message: ServerMessage, to sessions: [Session]) {
        guard !sessions.isEmpty else { return }
        let frame = message.encoded()
        let type = message.frameType
        for session in sessions { session.send(frame, type: type) }
    }

    private func presenceAdd(_ session: Session) {
        presence.join(PeerRecord(
            tenantID: session.tenantID, room: session.room, peerId: session.peerId, metadata: session.metadata,
            sessionId: session.id, node: nodeID, joinedAt: session.joinedAt))
    }

    private func recordEnded(_ session: Session, reason: String) {
        let stats = session.stats
        let duration = clock.now().timeIntervalSince(session.joinedAt)
        audit.record(event(.sessionEnded, session, data: [
            "reason": .string(reason),
            "durationSeconds": .number((duration * 1000).rounded() / 1000),
            "framesIn": .number(Double(stats.framesIn)), "framesOut": .number(Double(stats.framesOut)),
            "bytesIn": .number(Double(stats.bytesIn)), "bytesOut": .number(Double(stats.bytesOut)),
        ]))
    }

    private func event(_ type: AuditEventType, _ session: Session, data: [String: JSONValue]) -> AuditEvent {
        AuditEvent(
            type: type, tenantID: session.tenantID, time: clock.now(), node: nodeID, room: session.room,
            peer: session.peerId, session: session.id, data: (try? RawJSON(encoding: JSONValue.object(data))) ?? .emptyObject)
    }

    /// 32 random bytes, base64url: unguessable, so holding it proves the session is yours.
    static func makeResumeToken() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 32)
        for index in bytes.indices { bytes[index] = generator.next() }
        return Base64URL.encode(bytes)
    }
}
