import Foundation
import Synchronization

/// What a peer may do (token `permissions`).
public struct Permissions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let signal = Permissions(rawValue: 1)
    public static let broadcast = Permissions(rawValue: 2)

    /// SPEC §2 default: `["signal","broadcast"]`.
    public static let `default`: Permissions = [.signal, .broadcast]

    /// The permission names this version knows.
    public static let knownNames = ["signal", "broadcast"]

    /// Parses token permission names; names this version does not know are ignored.
    public init(names: [String]) {
        var value: Permissions = []
        for name in names {
            switch name {
            case "signal": value.insert(.signal)
            case "broadcast": value.insert(.broadcast)
            default: break
            }
        }
        self = value
    }

    public var names: [String] {
        var out: [String] = []
        if contains(.signal) { out.append("signal") }
        if contains(.broadcast) { out.append("broadcast") }
        return out
    }
}

/// Who a session is: fixed for its whole life, across resumes.
public struct SessionIdentity: Sendable, Equatable {
    public var sessionId: String
    public var tenantID: String
    public var apiKey: String
    public var room: String
    public var peerId: String
    public var permissions: Permissions
    public var remoteAddress: String
    public var userAgent: String

    public init(sessionId: String, tenantID: String, apiKey: String, room: String, peerId: String, permissions: Permissions, remoteAddress: String, userAgent: String) {
        self.sessionId = sessionId
        self.tenantID = tenantID
        self.apiKey = apiKey
        self.room = room
        self.peerId = peerId
        self.permissions = permissions
        self.remoteAddress = remoteAddress
        self.userAgent = userAgent
    }
}

/// Traffic counters reported in `session.ended`.
public struct SessionStats: Sendable, Equatable {
    public var framesIn = 0
    public var framesOut = 0
    public var bytesIn = 0
    public var bytesOut = 0

    public init() {}
}

/// A signaling session as this node hosts it: a peer in a room, and the socket it talks
/// through now.
///
/// Its durable part — `seq`, the replay log, presence — lives in the ``Roster``, which
/// numbers every relayed frame; the session only hands frames to its transport, in `seq`
/// order, each once (``deliver(seq:frame:)`` drops what it already sent).
///
/// It outlives any one socket: when the transport drops, the session is detached; the roster
/// keeps numbering and logging what is sent to it until a resume (on this node or another)
/// or the end of the resume window.
///
/// While it is *opening* — joined but its `welcome` not sent, or resuming and the roster's
/// answer not back — everything for it is held, so `welcome` (or `resumed` and the replay)
/// goes first and nothing the roster sends meanwhile is lost.
///
/// All state is behind one lock. Frames are queued in an outbox under that lock, and handed
/// to the transport outside it by one drainer at a time, in queue order: so the wire order
/// is the `seq` order, and a transport may call back into the session (a socket flush can
/// trigger a read) without deadlocking.
public final class Session: Sendable {
    public enum Phase: Sendable, Equatable {
        /// Joined or resuming: frames are held until `welcome`/`resumed` and a transport.
        case opening
        case active
        case detached
        case ended
    }

    public let identity: SessionIdentity
    /// Proves a resume; part of ``resumeToken``.
    public let resumeSecret: String
    private let state: Mutex<State>

    /// One thing to do to a transport, in order.
    struct Outbound {
        enum Action {
            case frame([UInt8], OutboundFrameType)
            case close(CloseCode, String)
        }

        var transport: any SessionTransport
        var action: Action
    }

    /// A frame that arrived while the session was opening.
    enum Held {
        /// A numbered relay.
        case relay(seq: UInt64, frame: [UInt8])
        /// A presence change about session `subject`.
        case presence(subject: String, change: PresenceChange, frame: [UInt8], type: OutboundFrameType)
        /// Anything else (errors, `ice-servers`).
        case frame([UInt8], OutboundFrameType)
    }

    public enum PresenceChange: Sendable {
        case joined, left, updated
    }

    struct State {
        var phase: Phase = .opening
        var transport: (any SessionTransport)?
        /// `welcome` or `resumed` is queued in ``held``: frames may go once a transport is here.
        var opened = false
        var held: [Held] = []
        /// The highest `seq` handed to a transport (or replayed): older deliveries are dropped.
        var lastSeq: UInt64 = 0
        /// For a while after `welcome`/`resumed`: the sessions the client knows are in the
        /// room, so presence news the snapshot already had (or never knew), arriving late from
        /// the roster, is not repeated. Dropped after ``knownWindow`` (then it costs nothing).
        var known: Set<String>?
        var knownUntil: UInt64 = 0
        /// A relay went missing while opening: once active, the socket is dropped (after the
        /// frames before the hole) so the client resumes and gets the rest from the log.
        var resync = false
        var metadata: RawJSON
        /// When the session first joined (across resumes).
        var joinedAt: Date
        var stats = SessionStats()
        var outbox: [Outbound] = []
        /// Someone is handing the outbox to transports; others only append.
        var draining = false

        /// Queues a frame for the attached transport. Returns whether the caller must drain.
        mutating func queue(_ frame: [UInt8], _ type: OutboundFrameType) -> Bool {
            guard let transport else { return false }
            stats.framesOut += 1
            stats.bytesOut += frame.count
            return queue(Outbound(transport: transport, action: .frame(frame, type)))
        }

        mutating func queue(_ item: Outbound) -> Bool {
            outbox.append(item)
            guard !draining else { return false }
            draining = true
            return true
        }

        /// Opening → active when both the first frame and a transport are here: the held
        /// frames go out, in order. Returns whether the caller must drain.
        mutating func activateIfReady() -> Bool {
            guard phase == .opening, opened, transport != nil else { return false }
            phase = .active
            var mustDrain = false
            for item in held {
                switch item {
                case .relay(_, let frame): mustDrain = queue(frame, Session.relayType(frame)) || mustDrain
                case .presence(_, _, let frame, let type), .frame(let frame, let type): mustDrain = queue(frame, type) || mustDrain
                }
            }
            held = []
            if resync, let transport {
                resync = false
                mustDrain = dropForResync(transport) || mustDrain
            }
            return mustDrain
        }

        /// Ends this transport's part (error `unavailable`, close 1011) and detaches: the
        /// client resumes past a missing frame instead of seeing a hole in `seq`.
        mutating func dropForResync(_ transport: any SessionTransport) -> Bool {
            self.transport = nil
            phase = .detached
            opened = false
            held = []
            let error = ServerMessage.error(ProtocolError(.unavailable, "messages were missed; resume to get them")).encoded()
            let dropped = queue(Outbound(transport: transport, action: .frame(error, .error)))
            return queue(Outbound(transport: transport, action: .close(.internalError, "resume"))) || dropped
        }
    }

    public init(identity: SessionIdentity, metadata: RawJSON, resumeSecret: String, joinedAt: Date, stats: SessionStats = SessionStats()) {
        self.identity = identity
        self.resumeSecret = resumeSecret
        self.state = Mutex(State(metadata: metadata, joinedAt: joinedAt, stats: stats))
    }

    /// How long presence news is checked against what the client was told (in-flight news
    /// arrives well within it).
    static let knownWindow: UInt64 = 30_000_000_000

    static func uptime() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Whether presence news about `subject` is new to the client; updates what it knows.
    private static func isNews(_ change: PresenceChange, subject: String, state: inout State) -> Bool {
        guard state.known != nil else { return true }
        if uptime() > state.knownUntil {
            state.known = nil
            return true
        }
        switch change {
        case .joined: return state.known?.insert(subject).inserted ?? true
        case .left: return state.known?.remove(subject) != nil
        case .updated: return state.known?.contains(subject) ?? true
        }
    }

    public var id: String { identity.sessionId }
    public var peerId: String { identity.peerId }
    public var tenantID: String { identity.tenantID }
    public var room: String { identity.room }
    public var address: SessionAddress {
        SessionAddress(tenantID: identity.tenantID, room: identity.room, peerId: identity.peerId, sessionId: identity.sessionId)
    }

    /// What the client presents to resume: the session id and its secret.
    public var resumeToken: String { Self.resumeToken(sessionId: id, secret: resumeSecret) }

    public static func resumeToken(sessionId: String, secret: String) -> String { sessionId + "." + secret }

    /// The session id and secret of a resume token.
    public static func parseResumeToken(_ token: String) -> (sessionId: String, secret: String)? {
        guard let dot = token.firstIndex(of: "."), dot != token.startIndex else { return nil }
        let secret = token[token.index(after: dot)...]
        guard !secret.isEmpty else { return nil }
        return (String(token[..<dot]), String(secret))
    }

    public var phase: Phase { state.withLock { $0.phase } }
    public var joinedAt: Date { state.withLock { $0.joinedAt } }
    /// Whether its `welcome` (or `resumed`) is queued: before that, the hub has not audited it
    /// as started.
    var isOpened: Bool { state.withLock { $0.opened || $0.phase == .active } }
    public var metadata: RawJSON { state.withLock { $0.metadata } }
    public var stats: SessionStats { state.withLock { $0.stats } }
    public var lastSeq: UInt64 { state.withLock { $0.lastSeq } }
    public var summary: PeerSummary { PeerSummary(peerId: peerId, metadata: metadata) }

    /// `signal` or `broadcast`, read from a relay frame (`{"type":"s…` or `{"type":"b…`).
    static func relayType(_ frame: [UInt8]) -> OutboundFrameType {
        frame.count > 9 && frame[9] == UInt8(ascii: "b") ? .broadcast : .signal
    }

    /// Hands queued frames to their transports, outside the lock, until the outbox is empty.
    /// Only the caller that set `draining` runs this; others' frames join its queue.
    func drain() {
        while true {
            let batch = state.withLock { state -> [Outbound]? in
                guard !state.outbox.isEmpty else {
                    state.draining = false
                    return nil
                }
                defer { state.outbox.removeAll(keepingCapacity: false) }
                return state.outbox
            }
            guard let batch else { return }
            for item in batch {
                switch item.action {
                case .frame(let bytes, let type): item.transport.send(bytes, type: type)
                case .close(let code, let reason): item.transport.close(code, reason: reason)
                }
            }
        }
    }

    private func apply(_ body: (inout State) -> Bool) {
        if state.withLock({ body(&$0) }) { drain() }
    }

    /// Attaches the transport of a new connection (after the upgrade of a join).
    /// Returns false when the session has ended meanwhile.
    func attach(_ transport: any SessionTransport) -> Bool {
        var attached = false
        apply { state in
            guard state.phase == .opening, state.transport == nil else { return false }
            attached = true
            state.transport = transport
            return state.activateIfReady()
        }
        return attached
    }

    /// Sends the first frames — `welcome`, or `resumed` and the replay up to `seq` — ahead of
    /// everything held; held presence changes about sessions the first frames already reflect
    /// (`known`: the session ids in them) or never knew are dropped, as are relays up to `seq`.
    func open(first: [([UInt8], OutboundFrameType)], seq: UInt64, known: Set<String>) {
        apply { state in
            guard state.phase == .opening else { return false }
            state.known = known
            state.knownUntil = Self.uptime() + Self.knownWindow
            var held: [Held] = first.map { .frame($0.0, $0.1) }
            var last = seq
            for item in state.held {
                switch item {
                case .relay(let itemSeq, _):
                    // Each `seq` once, in order; a hole means a frame never came (resync).
                    if state.resync || itemSeq <= last { continue }
                    if itemSeq == last + 1 {
                        held.append(item)
                        last = itemSeq
                    } else {
                        state.resync = true
                    }
                case .presence(let subject, let change, _, _):
                    if Self.isNews(change, subject: subject, state: &state) { held.append(item) }
                case .frame:
                    held.append(item)
                }
            }
            state.held = held
            state.lastSeq = last
            state.opened = true
            return state.activateIfReady()
        }
    }

    /// A numbered relay from the roster: sent once, in `seq` order (held while opening,
    /// dropped while detached — the roster's log has it for the resume). Returns false when
    /// a frame between the last one sent and this one is missing (the caller then drops the
    /// socket so that the client resumes and gets it from the log).
    @discardableResult
    public func deliver(seq: UInt64, frame: [UInt8]) -> Bool {
        var inOrder = true
        apply { state in
            switch state.phase {
            case .ended, .detached:
                return false
            case .opening:
                if state.opened {
                    guard seq > state.lastSeq, !state.resync else { return false }
                    guard seq == state.lastSeq + 1 else {
                        state.resync = true
                        return false
                    }
                    state.lastSeq = seq
                }
                state.held.append(.relay(seq: seq, frame: frame))
                return false
            case .active:
                guard seq > state.lastSeq else { return false }
                if seq != state.lastSeq + 1, let transport = state.transport {
                    // A frame never reached this node (a lost subscription): rather than a
                    // hole in `seq`, drop the socket; the client resumes and gets it from the
                    // roster's log.
                    inOrder = false
                    return state.dropForResync(transport)
                }
                state.lastSeq = seq
                return state.queue(frame, Self.relayType(frame))
            }
        }
        return inOrder
    }

    /// A presence change about another session (`subject`): held while opening, dropped
    /// while detached (`resumed` carries a fresh snapshot).
    func presence(_ message: ServerMessage, subject: String, change: PresenceChange) {
        apply { state in
            switch state.phase {
            case .opening:
                if state.opened, !Self.isNews(change, subject: subject, state: &state) { return false }
                state.held.append(.presence(subject: subject, change: change, frame: message.encoded(), type: message.frameType))
                return false
            case .active:
                guard Self.isNews(change, subject: subject, state: &state) else { return false }
                return state.queue(message.encoded(), message.frameType)
            case .detached, .ended:
                return false
            }
        }
    }

    /// Sends a frame outside the `seq` numbering (acks, errors, pongs, `ice-servers`).
    /// Held while opening; dropped while detached.
    public func send(_ frame: [UInt8], type: OutboundFrameType) {
        apply { state in
            switch state.phase {
            case .opening:
                state.held.append(.frame(frame, type))
                return false
            case .active:
                return state.queue(frame, type)
            case .detached, .ended:
                return false
            }
        }
    }

    public func send(_ message: ServerMessage, type: OutboundFrameType) {
        send(message.encoded(), type: type)
    }

    /// Takes the relays held while opening (a resume the roster refused hands them back to
    /// the session it meant to replace).
    func takeHeldRelays() -> [(seq: UInt64, frame: [UInt8])] {
        state.withLock { state in
            var relays: [(seq: UInt64, frame: [UInt8])] = []
            for case .relay(let seq, let frame) in state.held { relays.append((seq, frame)) }
            return relays
        }
    }

    /// Counts a frame received from the client.
    public func received(bytes: Int) {
        state.withLock { state in
            state.stats.framesIn += 1
            state.stats.bytesIn += bytes
        }
    }

    func setMetadata(_ metadata: RawJSON) {
        state.withLock { $0.metadata = metadata }
    }

    /// What the roster knows of a session this node did not host before it resumed here.
    func adopt(_ record: PeerRecord) {
        state.withLock { state in
            state.metadata = record.metadata
            state.joinedAt = record.joinedAt
        }
    }

    /// The transport went away without a `leave`. Returns false when `transport` is not the
    /// current one (already replaced or resumed) or the session ended.
    func detach(from transport: any SessionTransport) -> Bool {
        state.withLock { state in
            guard state.phase == .active || state.phase == .opening, let current = state.transport, current === transport else { return false }
            state.transport = nil
            state.phase = .detached
            state.opened = false
            state.held = []
            return true
        }
    }

    /// Hands the session's frames from now on to a new session object (a resume of this one,
    /// on this node): a transport still attached (a half-open socket) gets `replaced` and is
    /// closed; this object ends without a goodbye.
    func handOver() {
        apply { state in
            guard state.phase != .ended else { return false }
            state.phase = .ended
            var mustDrain = false
            if let old = state.transport {
                let replaced = ServerMessage.error(ProtocolError(.replaced, "session resumed on another connection")).encoded()
                mustDrain = state.queue(Outbound(transport: old, action: .frame(replaced, .error))) || mustDrain
                mustDrain = state.queue(Outbound(transport: old, action: .close(.replaced, "replaced"))) || mustDrain
            }
            state.transport = nil
            return mustDrain
        }
    }

    /// Ends the session: optionally sends a last frame, then closes the transport.
    /// Returns false when it had already ended.
    func end(finalFrame: ServerMessage?, close: (CloseCode, String)?) -> Bool {
        var ended = false
        apply { state in
            guard state.phase != .ended else { return false }
            ended = true
            state.phase = .ended
            state.held = []
            var mustDrain = false
            if let transport = state.transport {
                if let finalFrame {
                    mustDrain = state.queue(finalFrame.encoded(), finalFrame.frameType) || mustDrain
                }
                if let close {
                    mustDrain = state.queue(Outbound(transport: transport, action: .close(close.0, close.1))) || mustDrain
                }
            }
            state.transport = nil
            return mustDrain
        }
        return ended
    }
}

extension ServerMessage {
    /// The metrics label of this frame.
    public var frameType: OutboundFrameType {
        switch self {
        case .welcome: .welcome
        case .peerJoined: .peerJoined
        case .peerLeft: .peerLeft
        case .peerUpdated: .peerUpdated
        case .relay(let kind, _, _, _): kind == .signal ? .signal : .broadcast
        case .ack: .ack
        case .error: .error
        case .pong: .pong
        case .reconnect: .reconnect
        case .resumed: .resumed
        case .iceServers: .iceServers
        }
    }
}
