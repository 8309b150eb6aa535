import Foundation
import Logging
import Synchronization

/// What a new session asks for; checked against the roster at join.
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
    /// In the room, `welcome` queued: attach a transport with ``Hub/attach(_:transport:)``.
    case joined(Session)
    case roomFull
    case tooManyConnections
    case draining
    /// The roster could not be reached: nothing was reserved.
    case unavailable
}

/// Where a relayed message went.
public enum RouteOutcome: Sendable, Equatable {
    /// Numbered and logged for `recipients` sessions (on any node); `viaBus` when it crossed
    /// the network (cluster mode).
    case routed(recipients: Int, viaBus: Bool)
    case peerNotFound
    /// The roster would not take it: nothing was delivered.
    case unavailable
}

public enum ResumeOutcome: Sendable {
    case resumed(Session, replayed: Int)
    /// Unknown or expired token, or it belongs to another tenant, room or peer.
    case unknownSession
    /// Frames after `lastSeq` are no longer kept.
    case gap
    /// The roster could not be reached.
    case unavailable
}

/// The sessions this node hosts, and what it hears about them from the ``Roster``.
///
/// The roster decides membership and numbers every relayed frame (in memory in the embedded
/// mode, in Redis in a cluster); the hub keeps the live side — which session object holds
/// which socket — and applies the roster's events to it: deliveries, presence changes,
/// replaced and moved sessions. Relays never await: they are handed to the roster and
/// answered (ack or error) when it has applied them. Audit events go to an ``AuditBuffer``.
public final class Hub: Sendable {
    public struct Configuration: Sendable {
        public var nodeID: String
        /// How long a dropped session waits for a resume before it ends (`timeout`).
        public var resumeWindow: TimeInterval
        /// How long a joined session may wait for its socket (the upgrade) before it ends.
        public var attachTimeout: TimeInterval

        public init(nodeID: String, resumeWindow: TimeInterval = 30, attachTimeout: TimeInterval = 10) {
            self.nodeID = nodeID
            self.resumeWindow = resumeWindow
            self.attachTimeout = attachTimeout
        }
    }

    struct RoomKey: Hashable {
        var tenantID: String
        var room: String
    }

    struct State {
        var sessions: [String: Session] = [:]
        /// Sessions by room, then by session id (two sessions of one peer id may overlap
        /// while one replaces the other).
        var rooms: [RoomKey: [String: Session]] = [:]
        var connections: [String: Int] = [:]
        /// Sessions resumed here whose `attached` event has not arrived yet: a `moved` for
        /// one of them is older than its resume.
        var awaitingAttached: [String: Session] = [:]
        /// Sessions without a socket, since when: dropped (resume window) or not yet attached.
        var waiting: [String: (session: Session, since: Date, limit: TimeInterval)] = [:]
        var draining = false

        mutating func add(_ session: Session) {
            sessions[session.id] = session
            rooms[RoomKey(tenantID: session.tenantID, room: session.room), default: [:]][session.id] = session
            connections[session.tenantID, default: 0] += 1
        }

        /// Removes `session` if it is the one registered under its id; returns whether it was.
        mutating func remove(_ session: Session) -> Bool {
            guard sessions[session.id] === session else { return false }
            sessions[session.id] = nil
            waiting[session.id] = nil
            if awaitingAttached[session.id] === session { awaitingAttached[session.id] = nil }
            let key = RoomKey(tenantID: session.tenantID, room: session.room)
            rooms[key]?[session.id] = nil
            if rooms[key]?.isEmpty == true { rooms[key] = nil }
            let count = connections[session.tenantID, default: 1] - 1
            connections[session.tenantID] = count > 0 ? count : nil
            return true
        }

        /// Puts `new` where `old` (same id) was, or adds it.
        mutating func swap(_ old: Session?, for new: Session) {
            if let old, sessions[old.id] === old {
                sessions[new.id] = new
                waiting[new.id] = nil
                rooms[RoomKey(tenantID: new.tenantID, room: new.room), default: [:]][new.id] = new
            } else {
                add(new)
            }
        }
    }

    public let configuration: Configuration
    public let roster: any Roster
    public let audit: AuditBuffer
    private let clock: any WallClock
    private let logger: Logger
    private let state = Mutex(State())

    public init(configuration: Configuration, roster: any Roster, audit: AuditBuffer, clock: any WallClock = SystemWallClock(), logger: Logger) {
        self.configuration = configuration
        self.roster = roster
        self.audit = audit
        self.clock = clock
        self.logger = logger
    }

    public var nodeID: String { configuration.nodeID }

    // MARK: Join and leave

    /// Takes the session's place in the room (the roster's atomic check of the room and
    /// tenant limits, replacing a session of the same peer id anywhere) and queues its
    /// `welcome`, built by `welcome` from the session and the peers already there, ahead of
    /// anything else. The session then waits for ``attach(_:transport:)``.
    public func join(
        _ request: JoinRequest, welcome: @escaping @Sendable (Session, [PeerSummary]) -> ServerMessage
    ) async -> JoinOutcome {
        let identity = request.identity
        let now = clock.now()
        // 32 random bytes for the resume secret: unguessable, so holding it proves the session is yours.
        let session = Session(identity: identity, metadata: request.metadata, resumeSecret: Base64URL.random(bytes: 32), joinedAt: now)
        // Registered before the roster hears of it, so nothing the roster sends it is missed.
        let accepted = state.withLock { state -> Bool in
            guard !state.draining else { return false }
            state.add(session)
            state.waiting[session.id] = (session, now, configuration.attachTimeout)
            return true
        }
        guard accepted else { return .draining }
        let peer = PeerRecord(
            tenantID: identity.tenantID, room: identity.room, peerId: identity.peerId, metadata: request.metadata,
            sessionId: identity.sessionId, node: nodeID, joinedAt: now)
        let result = await withCheckedContinuation { continuation in
            roster.join(RosterJoin(peer: peer, resumeSecret: session.resumeSecret, maxPeers: request.maxPeers, maxConnections: request.maxConnections)) {
                continuation.resume(returning: $0)
            }
        }
        switch result {
        case .success(.joined(let others, _)):
            let frame = welcome(session, others.map { PeerSummary(peerId: $0.peerId, metadata: $0.metadata) })
            session.open(first: [(frame.encoded(), .welcome)], seq: 0, known: Set(others.map(\.sessionId)))
            waitIfDropped(session)
            audit.record(event(.sessionStarted, session, data: [
                "remoteAddress": .string(identity.remoteAddress), "userAgent": .string(identity.userAgent),
            ]))
            if session.phase == .ended {
                // Replaced before the roster's answer reached us: it ended unaudited (below).
                recordEnded(session, reason: "replaced")
            }
            return .joined(session)
        case .success(.roomFull):
            discard(session)
            return .roomFull
        case .success(.tooManyConnections):
            discard(session)
            return .tooManyConnections
        case .failure(let error):
            discard(session)
            logger.warning("join failed", metadata: ["error": "\(error)"])
            return .unavailable
        }
    }

    /// A session the roster did not take: gone without a trace.
    private func discard(_ session: Session) {
        _ = state.withLock { $0.remove(session) }
        _ = session.end(finalFrame: nil, close: nil)
    }

    /// Gives a joined session its socket: `welcome` and whatever followed go out. False when
    /// the session ended meanwhile (replaced, kicked, or it waited too long).
    public func attach(_ session: Session, transport: any SessionTransport) -> Bool {
        state.withLock { state in
            if state.waiting[session.id]?.session === session { state.waiting[session.id] = nil }
        }
        let attached = session.attach(transport)
        waitIfDropped(session)
        return attached
    }

    /// A session that dropped its socket to resume past a missing frame waits for that
    /// resume like any detached one.
    private func waitIfDropped(_ session: Session) {
        guard session.phase == .detached else { return }
        let now = clock.now()
        state.withLock { state in
            guard state.sessions[session.id] === session, state.waiting[session.id] == nil else { return }
            state.waiting[session.id] = (session, now, configuration.resumeWindow)
        }
    }

    /// Ends a session and tells the room (through the roster). `close` is sent to the
    /// transport if one is attached.
    public func end(_ session: Session, reason: LeaveReason, finalFrame: ServerMessage? = nil, close: (CloseCode, String)?) {
        guard session.end(finalFrame: finalFrame, close: close) else { return }
        let registered = state.withLock { $0.remove(session) }
        recordEnded(session, reason: reason.rawValue)
        guard registered else { return }
        let logger = self.logger
        // Only while it is still this node's: a copy that moved away meanwhile lives on.
        roster.leave(session.address, reason: reason, onNode: nodeID) { result in
            if case .failure(let error) = result {
                logger.warning("leave not recorded", metadata: ["session": "\(session.id)", "error": "\(error)"])
            }
        }
    }

    /// The socket dropped without `leave`: the session waits for a resume (on this node or
    /// any other) until the resume window ends.
    public func detach(_ session: Session, transport: any SessionTransport) {
        guard session.detach(from: transport) else { return }
        let now = clock.now()
        state.withLock { state in
            guard state.sessions[session.id] === session else { return }
            state.waiting[session.id] = (session, now, configuration.resumeWindow)
        }
    }

    /// Ends sessions that waited too long for a socket: dropped ones past the resume window,
    /// joined ones whose upgrade never finished. Called a few times a second.
    public func sweep() {
        let now = clock.now()
        let expired = state.withLock { state in
            state.waiting.values.filter { now.timeIntervalSince($0.since) >= $0.limit }.map(\.session)
        }
        for session in expired {
            end(session, reason: .timeout, close: nil)
        }
    }

    // MARK: Resume

    /// Attaches a new transport to a session (detached, half-open, or hosted by another node
    /// — alive or dead) and replays what it missed, through the roster. `completion` runs
    /// when the roster has answered (on any thread).
    public func resume(
        token: String, lastSeq: UInt64, identity: SessionIdentity, transport: any SessionTransport,
        completion: @escaping @Sendable (ResumeOutcome) -> Void
    ) {
        guard let (sessionId, secret) = Session.parseResumeToken(token) else { return completion(.unknownSession) }
        var identity = identity
        identity.sessionId = sessionId
        let old = state.withLock { $0.sessions[sessionId] }
        if let old {
            // Known here: a wrong secret or peer must not disturb the session.
            guard APIKeyGenerator.constantTimeEquals(old.resumeSecret, secret), old.tenantID == identity.tenantID, old.room == identity.room, old.peerId == identity.peerId else {
                return completion(.unknownSession)
            }
        }
        // Same node: the session's traffic so far counts on (for `session.ended`).
        let session = Session(
            identity: identity, metadata: old?.metadata ?? .emptyObject, resumeSecret: secret, joinedAt: old?.joinedAt ?? clock.now(),
            stats: old?.stats ?? SessionStats())
        _ = session.attach(transport)
        // Registered before the roster moves it here, so nothing the roster sends it is missed.
        let registered = state.withLock { state -> (accepted: Bool, waiting: (session: Session, since: Date, limit: TimeInterval)?) in
            guard !state.draining else { return (false, nil) }
            let waiting = state.waiting[sessionId]
            state.swap(old, for: session)
            state.awaitingAttached[sessionId] = session
            return (true, waiting)
        }
        guard registered.accepted else { return completion(.unavailable) }
        let request = RosterResume(session: session.address, resumeSecret: secret, lastSeq: lastSeq, node: nodeID)
        roster.resume(request) { [self] result in
            completion(finishResume(result, session: session, old: old, oldWaiting: registered.waiting, lastSeq: lastSeq))
        }
    }

    private func finishResume(
        _ result: Result<RosterResumeOutcome, RosterError>, session: Session, old: Session?,
        oldWaiting: (session: Session, since: Date, limit: TimeInterval)?, lastSeq: UInt64
    ) -> ResumeOutcome {
        guard case .success(.resumed(let frames, let seq, let peers, let own)) = result else {
            // Put things back as they were: the old copy, its resume window (or attach
            // deadline) unchanged, and what arrived for it meanwhile.
            state.withLock { state in
                if state.awaitingAttached[session.id] === session { state.awaitingAttached[session.id] = nil }
                if let old, old.phase != .ended {
                    state.swap(session, for: old)
                    if let oldWaiting { state.waiting[old.id] = oldWaiting }
                } else {
                    _ = state.remove(session)
                }
            }
            if let old {
                for relay in session.takeHeldRelays() { old.deliver(seq: relay.seq, frame: relay.frame) }
            }
            _ = session.end(finalFrame: nil, close: nil)
            switch result {
            case .success(.gap): return .gap
            case .success: return .unknownSession
            case .failure(let error):
                logger.warning("resume failed", metadata: ["error": "\(error)"])
                return .unavailable
            }
        }
        old?.handOver()
        if old == nil, let own { session.adopt(own) }
        let resumed = ServerMessage.resumed(
            sessionId: session.id, replayed: frames.count, peers: peers.map { PeerSummary(peerId: $0.peerId, metadata: $0.metadata) })
        var first: [([UInt8], OutboundFrameType)] = [(resumed.encoded(), .resumed)]
        first.reserveCapacity(frames.count + 1)
        for frame in frames { first.append((frame.frame, frame.kind == .signal ? .signal : .broadcast)) }
        session.open(first: first, seq: seq, known: Set(peers.map(\.sessionId)))
        waitIfDropped(session)
        audit.record(event(.sessionResumed, session, data: ["replayed": .number(Double(frames.count)), "lastSeq": .number(Double(lastSeq))]))
        return .resumed(session, replayed: frames.count)
    }

    // MARK: Relay

    /// Sends `data` from `sender` to peer `to` in the sender's room; `completion` says how
    /// it went once the roster has numbered it (that is when the sender may be acked).
    public func signal(from sender: Session, to peerId: String, data: RawJSON, completion: @escaping @Sendable (RouteOutcome) -> Void) {
        relay(Relay(from: sender.address, kind: .signal, to: peerId, data: data), completion: completion)
    }

    /// Sends `data` from `sender` to every other peer of its room, on every node.
    public func broadcast(from sender: Session, data: RawJSON, completion: @escaping @Sendable (RouteOutcome) -> Void) {
        relay(Relay(from: sender.address, kind: .broadcast, to: nil, data: data), completion: completion)
    }

    /// A message from the server (REST): `from` is "server"; to one peer, or every peer.
    public func sendFromServer(tenantID: String, room: String, to peerId: String?, data: RawJSON) async -> RouteOutcome {
        let from = SessionAddress(tenantID: tenantID, room: room, peerId: "server", sessionId: "")
        return await withCheckedContinuation { continuation in
            relay(Relay(from: from, kind: peerId == nil ? .broadcast : .signal, to: peerId, data: data)) { continuation.resume(returning: $0) }
        }
    }

    private func relay(_ relay: Relay, completion: @escaping @Sendable (RouteOutcome) -> Void) {
        let viaBus = roster.isDistributed
        roster.relay(relay) { result in
            switch result {
            case .success(let receipt): completion(.routed(recipients: receipt.recipients, viaBus: viaBus))
            case .failure(let error) where error.code == .peerNotFound: completion(.peerNotFound)
            case .failure: completion(.unavailable)
            }
        }
    }

    /// Replaces a peer's metadata and tells the room; `failed` is called when the roster
    /// could not take it.
    public func update(_ session: Session, metadata: RawJSON, failed: @escaping @Sendable () -> Void = {}) {
        session.setMetadata(metadata)
        roster.update(session.address, metadata: metadata) { result in
            if case .failure = result { failed() }
        }
    }

    // MARK: Events from the roster

    /// Applies one roster event to this node's sessions.
    public func handle(_ event: RosterEvent) {
        switch event {
        case .deliver(let sessionId, let seq, let frame):
            guard let session = state.withLock({ $0.sessions[sessionId] }) else { return }
            if !session.deliver(seq: seq, frame: frame) {
                // It dropped its socket to resume past a missing frame.
                waitIfDropped(session)
                logger.warning("a relayed frame was missed; the session must resume", metadata: ["session": "\(sessionId)"])
            }
        case .peerJoined(let peer):
            let message = ServerMessage.peerJoined(PeerSummary(peerId: peer.peerId, metadata: peer.metadata))
            for session in members(tenantID: peer.tenantID, room: peer.room) where session.id != peer.sessionId {
                session.presence(message, subject: peer.sessionId, change: .joined)
            }
        case .peerLeft(let tenantID, let room, let peerId, let sessionId, let reason):
            let message = ServerMessage.peerLeft(peerId: peerId, reason: reason)
            for session in members(tenantID: tenantID, room: room) where session.id != sessionId {
                session.presence(message, subject: sessionId, change: .left)
            }
        case .peerUpdated(let tenantID, let room, let peerId, let sessionId, let metadata):
            let message = ServerMessage.peerUpdated(PeerSummary(peerId: peerId, metadata: metadata))
            for session in members(tenantID: tenantID, room: room) where session.id != sessionId {
                session.presence(message, subject: sessionId, change: .updated)
            }
        case .replaced(let sessionId):
            guard let session = state.withLock({ $0.sessions[sessionId] }) else { return }
            _ = state.withLock { $0.remove(session) }
            // A join whose answer has not reached us yet is audited (started, then ended) when
            // it does, in that order.
            let started = session.isOpened
            if session.end(finalFrame: .error(ProtocolError(.replaced, "the same peer joined on another connection")), close: (.replaced, "replaced")),
                started
            {
                recordEnded(session, reason: "replaced")
            }
        case .moved(let sessionId):
            // Resumed on another node: this copy goes quietly (a half-open socket is told) —
            // unless it came back here since (then this news is older than that resume).
            let session = state.withLock { state -> Session? in
                guard let session = state.sessions[sessionId], state.awaitingAttached[sessionId] !== session else { return nil }
                _ = state.remove(session)
                return session
            }
            session?.handOver()
        case .attached(let sessionId):
            state.withLock { $0.awaitingAttached[sessionId] = nil }
        }
    }

    // MARK: After the roster lost its state

    /// Puts this node's live sessions back into the roster (after a Redis restart without
    /// persistence) and drops those it says were replaced or moved meanwhile. Returns how
    /// many were restored.
    @discardableResult
    public func restoreAll() async throws(RosterError) -> Int {
        let live = sessions { $0.phase != .ended }
        let records = live.map { session in
            RosterRestore(
                peer: PeerRecord(
                    tenantID: session.tenantID, room: session.room, peerId: session.peerId, metadata: session.metadata,
                    sessionId: session.id, node: nodeID, joinedAt: session.joinedAt),
                resumeSecret: session.resumeSecret, seq: session.lastSeq)
        }
        let outcomes = try await roster.restore(records)
        for (sessionId, outcome) in outcomes {
            switch outcome {
            case .replaced: handle(.replaced(sessionId: sessionId))
            case .moved: handle(.moved(sessionId: sessionId))
            case .restored, .kept: break
            }
        }
        return outcomes.values.filter { $0 == .restored }.count
    }

    // MARK: Operator and tenant actions (arrive over the bus's control topic)

    /// Applies a control message to this node's sessions.
    public func handle(_ message: BusMessage) {
        switch message {
        case .deliver, .tenantChanged:
            break
        case .tenantDisconnect(let tenantID, let reason):
            for session in sessions(where: { $0.tenantID == tenantID }) {
                end(session, reason: .kicked, finalFrame: .error(ProtocolError(.forbidden, reason)), close: (.policy, reason))
            }
        case .keyRevoked(let tenantID, let apiKey):
            for session in sessions(where: { $0.tenantID == tenantID && $0.identity.apiKey == apiKey }) {
                end(session, reason: .kicked, finalFrame: .error(ProtocolError(.forbidden, "API key revoked")), close: (.policy, "key revoked"))
            }
        case .roomClosed(let tenantID, let room):
            for session in members(tenantID: tenantID, room: room) {
                end(session, reason: .left, close: (.normal, "room closed"))
            }
        case .kick(let tenantID, let room, let peerId):
            for session in members(tenantID: tenantID, room: room) where session.peerId == peerId {
                end(session, reason: .kicked, finalFrame: .error(ProtocolError(.forbidden, "kicked")), close: (.policy, "kicked"))
            }
        }
    }

    /// Sessions of a room on this node.
    public func members(tenantID: String, room: String) -> [Session] {
        state.withLock { Array(($0.rooms[RoomKey(tenantID: tenantID, room: room)] ?? [:]).values) }
    }

    /// Every session on this node matching `predicate`.
    public func sessions(where predicate: (Session) -> Bool = { _ in true }) -> [Session] {
        state.withLock { state in state.sessions.values.filter(predicate) }
    }

    /// The session with this id on this node.
    public func session(id: String) -> Session? {
        state.withLock { $0.sessions[id] }
    }

    /// Live (attached, opening or detached) sessions on this node.
    public var sessionCount: Int { state.withLock { $0.sessions.count } }

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
            return Array(state.sessions.values)
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
            end(session, reason: .left, close: (.goingAway, "server shutting down"))
        }
    }

    // MARK: Helpers

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
}
