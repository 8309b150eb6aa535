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
}

/// A signaling session: a peer in a room, with its `seq` counter and replay buffer.
///
/// It outlives any one socket: when the transport drops, the session is detached and keeps
/// numbering and buffering what is sent to it until a resume attaches a new transport or the
/// resume window ends.
///
/// All state is behind one lock. Frames are numbered and queued in an outbox under that
/// lock, and handed to the transport outside it by one drainer at a time, in queue order:
/// so the wire order is the `seq` order, and a transport may call back into the session (a
/// socket flush can trigger a read) without deadlocking.
public final class Session: Sendable {
    public enum Phase: Sendable, Equatable {
        case active
        case detached
        case ended
    }

    public let identity: SessionIdentity
    public let resumeToken: String
    public let joinedAt: Date
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

    struct State {
        var phase: Phase = .active
        var transport: (any SessionTransport)?
        /// Bumped on every detach, so a stale expiry timer can tell it is stale.
        var generation: UInt64 = 0
        var seq: UInt64 = 0
        var metadata: RawJSON
        var replay: ReplayBuffer
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
    }

    public init(identity: SessionIdentity, metadata: RawJSON, resumeToken: String, joinedAt: Date, replayLimits: ReplayBuffer.Limits) {
        self.identity = identity
        self.resumeToken = resumeToken
        self.joinedAt = joinedAt
        self.state = Mutex(State(metadata: metadata, replay: ReplayBuffer(limits: replayLimits)))
    }

    public var id: String { identity.sessionId }
    public var peerId: String { identity.peerId }
    public var tenantID: String { identity.tenantID }
    public var room: String { identity.room }

    public var phase: Phase { state.withLock { $0.phase } }
    public var metadata: RawJSON { state.withLock { $0.metadata } }
    public var stats: SessionStats { state.withLock { $0.stats } }
    public var lastSeq: UInt64 { state.withLock { $0.seq } }
    public var summary: PeerSummary { PeerSummary(peerId: peerId, metadata: metadata) }

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

    /// Attaches the first transport and queues `welcome` before anything else can be sent.
    /// Called under the hub's lock; the hub drains (``drain()``) after releasing it.
    func start(transport: any SessionTransport, welcome: [UInt8]) {
        state.withLock { state in
            state.transport = transport
            // The drain is the joiner's job, after the hub lock: mark it taken.
            _ = state.queue(welcome, .welcome)
            state.draining = true
        }
    }

    /// Numbers a relayed message for this session, keeps it for replay, and sends it if a
    /// transport is attached. Returns false once the session has ended.
    @discardableResult
    public func deliver(_ kind: RelayKind, from: String, data: RawJSON) -> Bool {
        let (accepted, mustDrain) = state.withLock { state -> (Bool, Bool) in
            guard state.phase != .ended else { return (false, false) }
            state.seq += 1
            let frame = ServerMessage.encodeRelay(kind, from: from, data: data, seq: state.seq)
            let type: OutboundFrameType = kind == .signal ? .signal : .broadcast
            state.replay.append(seq: state.seq, frame: frame, type: type)
            return (true, state.queue(frame, type))
        }
        if mustDrain { drain() }
        return accepted
    }

    /// Sends a frame outside the `seq` numbering (presence events, acks, errors, pongs).
    /// Dropped while detached: `resumed` carries a fresh presence snapshot instead.
    public func send(_ frame: [UInt8], type: OutboundFrameType) {
        let mustDrain = state.withLock { state -> Bool in
            guard state.phase == .active else { return false }
            return state.queue(frame, type)
        }
        if mustDrain { drain() }
    }

    public func send(_ message: ServerMessage, type: OutboundFrameType) {
        send(message.encoded(), type: type)
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

    /// The transport went away without a `leave`. Returns the detach generation to pass to
    /// ``Hub/expire(_:generation:)`` when the resume window ends, or nil when `transport` is
    /// not the current one (already replaced or resumed elsewhere) or the session ended.
    func detach(from transport: any SessionTransport) -> UInt64? {
        state.withLock { state in
            guard state.phase == .active, let current = state.transport, current === transport else { return nil }
            state.transport = nil
            state.phase = .detached
            state.generation += 1
            return state.generation
        }
    }

    /// Whether the session is still detached since the detach that returned `generation`.
    func isDetached(generation: UInt64) -> Bool {
        state.withLock { $0.phase == .detached && $0.generation == generation }
    }

    public enum ResumeFailure: Error, Sendable, Equatable {
        case ended
        case gap
    }

    /// Attaches a new transport: sends `resumed`, then every kept frame after `lastSeq`, in
    /// order. A transport still attached (a half-open socket) is closed as replaced.
    func resume(transport: any SessionTransport, lastSeq: UInt64, peers: [PeerSummary]) -> Result<Int, ResumeFailure> {
        let (result, mustDrain) = state.withLock { state -> (Result<Int, ResumeFailure>, Bool) in
            guard state.phase != .ended else { return (.failure(.ended), false) }
            guard let frames = state.replay.frames(after: lastSeq, currentSeq: state.seq) else {
                return (.failure(.gap), false)
            }
            var mustDrain = false
            if let old = state.transport, old !== transport {
                let replaced = ServerMessage.error(ProtocolError(.replaced, "session resumed on another connection")).encoded()
                mustDrain = state.queue(Outbound(transport: old, action: .frame(replaced, .error))) || mustDrain
                mustDrain = state.queue(Outbound(transport: old, action: .close(.replaced, "replaced"))) || mustDrain
            }
            state.transport = transport
            state.phase = .active
            state.generation += 1
            let resumed = ServerMessage.resumed(sessionId: identity.sessionId, replayed: frames.count, peers: peers).encoded()
            mustDrain = state.queue(resumed, .resumed) || mustDrain
            for (frame, type) in frames {
                mustDrain = state.queue(frame, type) || mustDrain
            }
            return (.success(frames.count), mustDrain)
        }
        if mustDrain { drain() }
        return result
    }

    /// Ends the session: optionally sends a last frame, then closes the transport.
    /// Returns false when it had already ended.
    func end(finalFrame: ServerMessage?, close: (CloseCode, String)?) -> Bool {
        let (ended, mustDrain) = state.withLock { state -> (Bool, Bool) in
            guard state.phase != .ended else { return (false, false) }
            state.phase = .ended
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
            return (true, mustDrain)
        }
        if mustDrain { drain() }
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
