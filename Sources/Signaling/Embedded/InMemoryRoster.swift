import Foundation
import Synchronization

/// The embedded mode's ``Roster``: the same operations and events as the Redis roster, on
/// maps behind one lock, for the nodes of one process.
///
/// Each operation is applied under the lock and its events queued; whoever finds the queue
/// idle hands them to the subscribers outside the lock, in order, until it is empty (others
/// only append) — so handlers see the roster's order and may call back into it.
public final class InMemoryRoster: Roster {
    public struct Configuration: Sendable {
        public var replayLimits: ReplayBuffer.Limits
        public init(replayLimits: ReplayBuffer.Limits = .init()) {
            self.replayLimits = replayLimits
        }
    }

    struct RoomKey: Hashable {
        var tenantID: String
        var room: String
    }

    struct SessionState {
        var secret: String
        var seq: UInt64 = 0
        var log: ReplayBuffer
    }

    struct State {
        var peers: [RoomKey: [String: PeerRecord]] = [:]
        var nodes: [RoomKey: [String: Int]] = [:]
        var sessions: [String: SessionState] = [:]
        var connections: [String: Int] = [:]
        var handlers: [String: [Int: @Sendable (RosterEvent) -> Void]] = [:]
        var nextHandler = 0
        var queue: [(node: String, event: RosterEvent)] = []
        var draining = false

        mutating func publish(_ event: RosterEvent, to node: String) {
            queue.append((node, event))
        }

        mutating func publishToRoom(_ key: RoomKey, _ events: [RosterEvent]) {
            for node in (nodes[key] ?? [:]).keys.sorted() {
                for event in events { publish(event, to: node) }
            }
        }

        mutating func dropNode(_ key: RoomKey, _ node: String) {
            let count = (nodes[key]?[node] ?? 0) - 1
            nodes[key]?[node] = count > 0 ? count : nil
            if nodes[key]?.isEmpty == true { nodes[key] = nil }
        }

        /// Whether the caller must drain the queue.
        mutating func claimDrain() -> Bool {
            guard !queue.isEmpty, !draining else { return false }
            draining = true
            return true
        }
    }

    public let configuration: Configuration
    private let state = Mutex(State())

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    // MARK: Roster

    public var isDistributed: Bool { false }

    public func join(_ request: RosterJoin, completion: @escaping @Sendable (Result<RosterJoinOutcome, RosterError>) -> Void) {
        completion(.success(joinNow(request)))
    }

    /// ``join(_:)`` without a suspension point, for callers on an event loop.
    public func joinNow(_ request: RosterJoin) -> RosterJoinOutcome {
        let peer = request.peer
        let key = RoomKey(tenantID: peer.tenantID, room: peer.room)
        let limits = configuration.replayLimits
        let outcome = apply { state -> RosterJoinOutcome in
            let previous = state.peers[key]?[peer.peerId]
            var events: [RosterEvent] = []
            if let previous {
                state.dropNode(key, previous.node)
                state.sessions[previous.sessionId] = nil
                state.publish(.replaced(sessionId: previous.sessionId), to: previous.node)
                events.append(.peerLeft(tenantID: peer.tenantID, room: peer.room, peerId: peer.peerId, sessionId: previous.sessionId, reason: .left))
            } else {
                if (state.peers[key]?.count ?? 0) >= request.maxPeers { return .roomFull }
                if state.connections[peer.tenantID, default: 0] >= request.maxConnections { return .tooManyConnections }
                state.connections[peer.tenantID, default: 0] += 1
            }
            let others = (state.peers[key] ?? [:]).values.filter { $0.peerId != peer.peerId }.sorted { $0.peerId < $1.peerId }
            state.peers[key, default: [:]][peer.peerId] = peer
            state.nodes[key, default: [:]][peer.node, default: 0] += 1
            state.sessions[peer.sessionId] = SessionState(secret: request.resumeSecret, log: ReplayBuffer(limits: limits))
            events.append(.peerJoined(peer))
            state.publishToRoom(key, events)
            return .joined(others: others, replaced: previous)
        }
        return outcome
    }

    public func leave(_ session: SessionAddress, reason: LeaveReason, onNode node: String?, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void) {
        leaveNow(session, reason: reason, onNode: node)
        completion(.success(()))
    }

    /// ``leave(_:reason:)`` without a suspension point.
    public func leaveNow(_ session: SessionAddress, reason: LeaveReason, onNode node: String? = nil) {
        let key = RoomKey(tenantID: session.tenantID, room: session.room)
        apply { state in
            guard let current = state.peers[key]?[session.peerId], current.sessionId == session.sessionId else { return }
            if let node, current.node != node { return }
            state.sessions[session.sessionId] = nil
            state.peers[key]?[session.peerId] = nil
            if state.peers[key]?.isEmpty == true { state.peers[key] = nil }
            state.dropNode(key, current.node)
            let count = state.connections[session.tenantID, default: 1] - 1
            state.connections[session.tenantID] = count > 0 ? count : nil
            state.publishToRoom(key, [
                .peerLeft(tenantID: session.tenantID, room: session.room, peerId: session.peerId, sessionId: session.sessionId, reason: reason)
            ])
        }
    }

    public func update(_ session: SessionAddress, metadata: RawJSON, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void) {
        updateNow(session, metadata: metadata)
        completion(.success(()))
    }

    /// ``update(_:metadata:completion:)`` without a callback.
    public func updateNow(_ session: SessionAddress, metadata: RawJSON) {
        let key = RoomKey(tenantID: session.tenantID, room: session.room)
        apply { state in
            guard var current = state.peers[key]?[session.peerId], current.sessionId == session.sessionId else { return }
            current.metadata = metadata
            state.peers[key]?[session.peerId] = current
            state.publishToRoom(key, [
                .peerUpdated(tenantID: session.tenantID, room: session.room, peerId: session.peerId, sessionId: session.sessionId, metadata: metadata)
            ])
        }
    }

    public func resume(_ request: RosterResume, completion: @escaping @Sendable (Result<RosterResumeOutcome, RosterError>) -> Void) {
        completion(.success(resumeNow(request)))
    }

    /// ``resume(_:completion:)``, answered directly.
    public func resumeNow(_ request: RosterResume) -> RosterResumeOutcome {
        let session = request.session
        let key = RoomKey(tenantID: session.tenantID, room: session.room)
        return apply { state -> RosterResumeOutcome in
            guard var current = state.peers[key]?[session.peerId], current.sessionId == session.sessionId,
                let kept = state.sessions[session.sessionId], kept.secret == request.resumeSecret
            else { return .unknownSession }
            guard let entries = kept.log.frames(after: request.lastSeq, currentSeq: kept.seq) else { return .gap }
            let first = kept.seq - UInt64(entries.count) + 1
            let frames = entries.enumerated().map { offset, entry in
                LoggedFrame(seq: first + UInt64(offset), kind: entry.type == .broadcast ? .broadcast : .signal, frame: entry.frame)
            }
            if current.node != request.node {
                state.dropNode(key, current.node)
                state.nodes[key, default: [:]][request.node, default: 0] += 1
                state.publish(.moved(sessionId: session.sessionId), to: current.node)
                current.node = request.node
                state.peers[key]?[session.peerId] = current
            }
            state.publish(.attached(sessionId: session.sessionId), to: request.node)
            let peers = (state.peers[key] ?? [:]).values.filter { $0.peerId != session.peerId }.sorted { $0.peerId < $1.peerId }
            return .resumed(frames: frames, seq: kept.seq, peers: peers, own: state.peers[key]?[session.peerId])
        }
    }

    public func relay(_ relay: Relay, completion: @escaping @Sendable (Result<RelayReceipt, RosterError>) -> Void) {
        completion(relayNow(relay))
    }

    /// ``relay(_:completion:)``, answered directly.
    public func relayNow(_ relay: Relay) -> Result<RelayReceipt, RosterError> {
        let key = RoomKey(tenantID: relay.from.tenantID, room: relay.from.room)
        let (prefix, suffix) = relay.frameTemplate
        let type: OutboundFrameType = relay.kind == .signal ? .signal : .broadcast
        return apply { state -> Result<RelayReceipt, RosterError> in
            let targets: [PeerRecord]
            if let to = relay.to {
                guard let target = state.peers[key]?[to] else { return .failure(RosterError(.peerNotFound, "no such peer in the room")) }
                targets = [target]
            } else {
                targets = (state.peers[key] ?? [:]).values.filter { $0.peerId != relay.excludedPeer }
            }
            var nodes = Set<String>()
            for target in targets {
                // Changed in place: a copy of the state would copy its whole replay log.
                guard let seq = state.sessions[target.sessionId].map({ $0.seq + 1 }) else { continue }
                var frame = prefix
                frame.reserveCapacity(prefix.count + 20 + suffix.count)
                frame += String(seq).utf8
                frame += suffix
                state.sessions[target.sessionId]?.seq = seq
                state.sessions[target.sessionId]?.log.append(seq: seq, frame: frame, type: type)
                state.publish(.deliver(sessionId: target.sessionId, seq: seq, frame: frame), to: target.node)
                nodes.insert(target.node)
            }
            return .success(RelayReceipt(recipients: targets.count, nodes: nodes.count))
        }
    }

    public func peers(tenantID: String, room: String) async throws(RosterError) -> [PeerRecord] {
        state.withLock { ($0.peers[RoomKey(tenantID: tenantID, room: room)] ?? [:]).values.sorted { $0.peerId < $1.peerId } }
    }

    public func connectionCount(tenantID: String) async throws(RosterError) -> Int {
        state.withLock { $0.connections[tenantID, default: 0] }
    }

    public func subscribe(node: String, _ handler: @escaping @Sendable (RosterEvent) -> Void) async throws(RosterError) -> any BusSubscription {
        let id = state.withLock { state -> Int in
            state.nextHandler += 1
            state.handlers[node, default: [:]][state.nextHandler] = handler
            return state.nextHandler
        }
        return InMemoryRosterSubscription { [weak self] in
            self?.state.withLock { state in
                state.handlers[node]?[id] = nil
                if state.handlers[node]?.isEmpty == true { state.handlers[node] = nil }
            }
        }
    }

    // MARK: Applying and delivering

    /// Applies `body` under the lock, then delivers the events it queued (unless another
    /// caller is already delivering: then they join its queue, in order).
    private func apply<T>(_ body: (inout State) -> T) -> T {
        let (result, mustDrain) = state.withLock { state in
            let result = body(&state)
            return (result, state.claimDrain())
        }
        if mustDrain { drain() }
        return result
    }

    private func drain() {
        while true {
            let batch = state.withLock { state -> [(handlers: [@Sendable (RosterEvent) -> Void], event: RosterEvent)]? in
                guard !state.queue.isEmpty else {
                    state.draining = false
                    return nil
                }
                defer { state.queue.removeAll(keepingCapacity: true) }
                return state.queue.map { item in (Array((state.handlers[item.node] ?? [:]).values), item.event) }
            }
            guard let batch else { return }
            for item in batch {
                for handler in item.handlers { handler(item.event) }
            }
        }
    }
}

struct InMemoryRosterSubscription: BusSubscription {
    let onCancel: @Sendable () -> Void
    func cancel() { onCancel() }
}
