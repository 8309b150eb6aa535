/// Who is in which room on which node, across the cluster (SPEC §4 live presence).
///
/// The writes and the two lookups the relay path needs (``locate(tenantID:room:peerId:)``,
/// ``nodes(tenantID:room:)``) are synchronous and non-blocking: a clustered implementation
/// answers them from a local mirror and propagates writes in the background. Listings for
/// the REST API may await.
public protocol Presence: Sendable {
    func join(_ peer: PeerRecord)
    func leave(tenantID: String, room: String, peerId: String, sessionId: String)
    func update(tenantID: String, room: String, peerId: String, metadata: RawJSON)

    /// The node hosting a peer, if it is present.
    func locate(tenantID: String, room: String, peerId: String) -> String?
    /// The nodes hosting peers of a room.
    func nodes(tenantID: String, room: String) -> Set<String>

    /// Live peers of a room, ordered by peer id, after `after`.
    func peers(tenantID: String, room: String, after: String?, limit: Int) async -> Page<PeerRecord>
    func peer(tenantID: String, room: String, peerId: String) async -> PeerRecord?
    func peerCount(tenantID: String, room: String) async -> Int
    /// Live sessions of a tenant on every node, for the connection limit.
    func connectionCount(tenantID: String) async -> Int
}
