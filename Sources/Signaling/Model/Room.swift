import Foundation

/// A room as stored; the live peer count comes from presence.
public struct Room: Sendable, Equatable {
    public var tenantID: String
    public var name: String
    public var maxPeers: Int
    public var metadata: RawJSON
    public var createdAt: Date

    public init(tenantID: String, name: String, maxPeers: Int, metadata: RawJSON = .emptyObject, createdAt: Date) {
        self.tenantID = tenantID
        self.name = name
        self.maxPeers = maxPeers
        self.metadata = metadata
        self.createdAt = createdAt
    }
}

/// Identifier rules shared by room names and peer ids: 1–128 characters, no control characters.
public enum Identifier {
    public static let maxLength = 128

    public static func isValid(_ value: String) -> Bool {
        guard !value.isEmpty, value.unicodeScalars.count <= maxLength else { return false }
        return !value.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }
}

/// A live peer, as presence reports it across nodes.
public struct PeerRecord: Sendable, Equatable {
    public var tenantID: String
    public var room: String
    public var peerId: String
    public var metadata: RawJSON
    public var sessionId: String
    public var node: String
    public var joinedAt: Date

    public init(tenantID: String, room: String, peerId: String, metadata: RawJSON, sessionId: String, node: String, joinedAt: Date) {
        self.tenantID = tenantID
        self.room = room
        self.peerId = peerId
        self.metadata = metadata
        self.sessionId = sessionId
        self.node = node
        self.joinedAt = joinedAt
    }
}
