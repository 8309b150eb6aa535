import Synchronization

/// The embedded mode's presence: one node, so this node's view is the whole truth.
public final class InMemoryPresence: Presence {
    private struct RoomKey: Hashable {
        var tenantID: String
        var room: String
    }

    private struct State {
        var rooms: [RoomKey: [String: PeerRecord]] = [:]
        var connections: [String: Int] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func join(_ peer: PeerRecord) {
        state.withLock { state in
            let key = RoomKey(tenantID: peer.tenantID, room: peer.room)
            if state.rooms[key]?[peer.peerId] == nil {
                state.connections[peer.tenantID, default: 0] += 1
            }
            state.rooms[key, default: [:]][peer.peerId] = peer
        }
    }

    public func leave(tenantID: String, room: String, peerId: String, sessionId: String) {
        state.withLock { state in
            let key = RoomKey(tenantID: tenantID, room: room)
            guard let record = state.rooms[key]?[peerId], record.sessionId == sessionId else { return }
            state.rooms[key]?[peerId] = nil
            if state.rooms[key]?.isEmpty == true { state.rooms[key] = nil }
            let count = state.connections[tenantID, default: 1] - 1
            state.connections[tenantID] = count > 0 ? count : nil
        }
    }

    public func update(tenantID: String, room: String, peerId: String, metadata: RawJSON) {
        state.withLock { state in
            state.rooms[RoomKey(tenantID: tenantID, room: room)]?[peerId]?.metadata = metadata
        }
    }

    public func locate(tenantID: String, room: String, peerId: String) -> String? {
        state.withLock { $0.rooms[RoomKey(tenantID: tenantID, room: room)]?[peerId]?.node }
    }

    public func nodes(tenantID: String, room: String) -> Set<String> {
        state.withLock { state in
            Set((state.rooms[RoomKey(tenantID: tenantID, room: room)] ?? [:]).values.map(\.node))
        }
    }

    public func peers(tenantID: String, room: String, after: String?, limit: Int) async -> Page<PeerRecord> {
        state.withLock { state in
            let all = (state.rooms[RoomKey(tenantID: tenantID, room: room)] ?? [:]).values
                .filter { after == nil || $0.peerId > after! }
                .sorted { $0.peerId < $1.peerId }
            let page = Array(all.prefix(limit))
            return Page(items: page, next: all.count > limit ? page.last?.peerId : nil)
        }
    }

    public func peer(tenantID: String, room: String, peerId: String) async -> PeerRecord? {
        state.withLock { $0.rooms[RoomKey(tenantID: tenantID, room: room)]?[peerId] }
    }

    public func peerCount(tenantID: String, room: String) async -> Int {
        state.withLock { $0.rooms[RoomKey(tenantID: tenantID, room: room)]?.count ?? 0 }
    }

    public func connectionCount(tenantID: String) async -> Int {
        state.withLock { $0.connections[tenantID] ?? 0 }
    }
}
