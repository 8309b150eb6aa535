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
    /// Opens once the hub hears the roster's events for this node.
    var rosterReady = StartupGate()
    /// Cluster mode: opens after the node's first heartbeat in Redis (a node that never beat
    /// could die unnoticed, so it takes no sessions before).
    var clusterBeating: StartupGate? = nil

    var nodeID: String { configuration.nodeID }

    /// Who is in which room, on every node (the roster).
    var presence: LivePresence { LivePresence(roster: hub.roster) }

    /// Real round trips: the store answers a query and the bus carries a message.
    func readiness() async -> [String: String] {
        var checks: [String: String] = [:]
        checks["draining"] = hub.isDraining ? "draining" : "ok"
        if let gate = storeReady, !gate.isOpen {
            // Still migrating or checking the master key: the schema may not be there yet.
            checks["database"] = "starting"
        } else {
            do {
                try await store.ping()
                checks["database"] = "ok"
            } catch {
                checks["database"] = "unavailable"
            }
        }
        checks["bus"] = await bus.isAvailable() ? "ok" : "unavailable"
        checks["roster"] = rosterReady.isOpen && clusterBeating?.isOpen != false ? "ok" : "starting"
        return checks
    }

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

/// Live presence for the REST API, read from the roster: the peers of every node.
struct LivePresence: Sendable {
    let roster: any Roster

    /// Peers of a room ordered by peer id, after `after`.
    func peers(tenantID: String, room: String, after: String?, limit: Int) async throws(APIError) -> Page<PeerRecord> {
        let all = try await everyone(tenantID: tenantID, room: room).filter { after == nil || $0.peerId > after ?? "" }
        let page = Array(all.prefix(limit))
        return Page(items: page, next: all.count > limit ? page.last?.peerId : nil)
    }

    func peer(tenantID: String, room: String, peerId: String) async throws(APIError) -> PeerRecord? {
        try await everyone(tenantID: tenantID, room: room).first { $0.peerId == peerId }
    }

    func peerCount(tenantID: String, room: String) async throws(APIError) -> Int {
        try await everyone(tenantID: tenantID, room: room).count
    }

    private func everyone(tenantID: String, room: String) async throws(APIError) -> [PeerRecord] {
        do {
            return try await roster.peers(tenantID: tenantID, room: room)
        } catch {
            throw APIError.unavailable("presence cannot be read right now; try again")
        }
    }
}
