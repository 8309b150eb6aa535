import Foundation

/// Audit event types (SPEC §5).
public enum AuditEventType: String, Sendable, CaseIterable, Codable {
    case sessionStarted = "session.started"
    case sessionResumed = "session.resumed"
    case sessionEnded = "session.ended"
    case roomCreated = "room.created"
    case roomClosed = "room.closed"
    case peerKicked = "peer.kicked"
    case authRejected = "auth.rejected"
    case tenantCreated = "tenant.created"
    case tenantUpdated = "tenant.updated"
    case tenantDeleted = "tenant.deleted"
    case keyCreated = "key.created"
    case keyDeleted = "key.deleted"
}

/// One audit record (SPEC §4 shape `{id, type, tenant, time, node, room?, peer?, session?, data}`).
public struct AuditEvent: Sendable, Equatable {
    /// Time-ordered unique id (ULID text): sorting by id sorts by time.
    public var id: String
    public var type: AuditEventType
    public var tenantID: String
    public var time: Date
    public var node: String
    public var room: String?
    public var peer: String?
    public var session: String?
    public var data: RawJSON

    public init(
        id: String = ULID.make(), type: AuditEventType, tenantID: String, time: Date = Date(), node: String,
        room: String? = nil, peer: String? = nil, session: String? = nil, data: RawJSON = .emptyObject
    ) {
        self.id = id
        self.type = type
        self.tenantID = tenantID
        self.time = time
        self.node = node
        self.room = room
        self.peer = peer
        self.session = session
        self.data = data
    }
}

extension AuditEvent {
    /// Writes the API shape's fields before `data` — `id, type, tenant, time, node, room?,
    /// peer?, session?` — into an open object (REST bodies, webhook bodies, spill lines).
    public func writeFields(to writer: inout JSONWriter) {
        writer.field("id", id)
        writer.field("type", type.rawValue)
        writer.field("tenant", tenantID)
        writer.field("time", Timestamp.format(time))
        writer.field("node", node)
        if let room { writer.field("room", room) }
        if let peer { writer.field("peer", peer) }
        if let session { writer.field("session", session) }
    }
}

/// A query over the audit log, newest first, keyset-paginated by id.
public struct AuditQuery: Sendable, Equatable {
    public var tenantID: String
    public var room: String?
    public var peer: String?
    public var type: AuditEventType?
    public var since: Date?
    public var until: Date?
    /// Only events with an id lower than this (the previous page's last id).
    public var before: String?
    public var limit: Int

    public init(tenantID: String, room: String? = nil, peer: String? = nil, type: AuditEventType? = nil, since: Date? = nil, until: Date? = nil, before: String? = nil, limit: Int = 50) {
        self.tenantID = tenantID
        self.room = room
        self.peer = peer
        self.type = type
        self.since = since
        self.until = until
        self.before = before
        self.limit = limit
    }
}
