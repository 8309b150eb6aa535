import Foundation
import Logging
import Signaling

/// The parts of one running node, shared by the gateway, the REST API and the services.
/// Built once by ``SwitchboardNode``.
struct Node: Sendable {
    var configuration: ServerConfiguration
    var store: any Store
    var directory: Directory
    var tokens: AccessTokens
    var hub: Hub
    var bus: any MessageBus
    var presence: any Presence
    var audit: AuditBuffer
    var metrics: SwitchboardMetrics
    var clock: any WallClock
    var logger: Logger
    var adminToken: String
    /// TURN URLs and the secret that signs their credentials.
    var turn: TURNEndpoints
    /// Opens once the store is prepared (PostgreSQL: migrated, master key checked); nil
    /// when there is nothing to wait for.
    var storeReady: StartupGate? = nil

    var nodeID: String { configuration.nodeID }

    /// Records an audit event (never blocks; counted when the buffer is full).
    func record(_ type: AuditEventType, tenantID: String, room: String? = nil, peer: String? = nil, session: String? = nil, data: [String: JSONValue] = [:]) {
        let event = AuditEvent(
            type: type, tenantID: tenantID, time: clock.now(), node: nodeID, room: room, peer: peer, session: session,
            data: (try? RawJSON(encoding: JSONValue.object(data))) ?? .emptyObject)
        audit.record(event)
    }

    /// The RTCIceServer list for a peer: TURN credentials signed with the first secret.
    func iceServers(tenantID: String, peerId: String, ttl: Int = TURNCredentials.defaultTTL) -> (TURNCredentials?, [ICEServer]) {
        let urls = turn.urls
        guard let secret = turn.signingSecret else {
            let stun = urls.filter { $0.hasPrefix("stun:") || $0.hasPrefix("stuns:") }
            return (nil, stun.isEmpty ? [] : [ICEServer(urls: stun, username: nil, credential: nil)])
        }
        let credentials = TURNCredentials(secret: secret, tenantID: tenantID, peerId: peerId, ttl: ttl, now: clock.now())
        return (credentials, credentials.iceServers(urls: urls))
    }

    /// The room, created on first use when the tenant allows it. Nil when it does not exist
    /// and may not be created.
    func roomForJoin(tenant: Tenant, name: String) async throws(StoreError) -> Room? {
        if let room = try await directory.room(tenantID: tenant.id, name: name) { return room }
        guard tenant.autoCreateRooms else { return nil }
        let room = Room(tenantID: tenant.id, name: name, maxPeers: tenant.limits.maxPeersPerRoom, createdAt: clock.now())
        do {
            try await store.createRoom(room)
            directory.remember(room)
            record(.roomCreated, tenantID: tenant.id, room: name, data: ["autoCreated": .bool(true)])
            return room
        } catch where error.code == .conflict {
            return try await store.room(tenantID: tenant.id, name: name)
        }
    }
}
