import Foundation

/// Per-tenant limits (SPEC §3 defaults).
public struct TenantLimits: Sendable, Equatable, Codable {
    public var maxConnections: Int
    public var maxPeersPerRoom: Int
    public var messagesPerSecond: Int
    public var messageBurst: Int

    public init(maxConnections: Int = 10_000, maxPeersPerRoom: Int = 100, messagesPerSecond: Int = 50, messageBurst: Int = 100) {
        self.maxConnections = maxConnections
        self.maxPeersPerRoom = maxPeersPerRoom
        self.messagesPerSecond = messagesPerSecond
        self.messageBurst = messageBurst
    }

    public static let defaults = TenantLimits()

    /// Valid ranges of each limit.
    public static let maxConnectionsRange = 1...1_000_000
    public static let maxPeersPerRoomRange = 1...10_000
    public static let messagesPerSecondRange = 1...100_000
    public static let messageBurstRange = 1...100_000
}

/// A partial update of limits, merged key by key.
public struct TenantLimitsPatch: Sendable, Equatable, Codable {
    public var maxConnections: Int?
    public var maxPeersPerRoom: Int?
    public var messagesPerSecond: Int?
    public var messageBurst: Int?

    public init(maxConnections: Int? = nil, maxPeersPerRoom: Int? = nil, messagesPerSecond: Int? = nil, messageBurst: Int? = nil) {
        self.maxConnections = maxConnections
        self.maxPeersPerRoom = maxPeersPerRoom
        self.messagesPerSecond = messagesPerSecond
        self.messageBurst = messageBurst
    }

    /// The first field outside its range, if any.
    public func invalidField() -> String? {
        if let value = maxConnections, !TenantLimits.maxConnectionsRange.contains(value) { return "limits.maxConnections" }
        if let value = maxPeersPerRoom, !TenantLimits.maxPeersPerRoomRange.contains(value) { return "limits.maxPeersPerRoom" }
        if let value = messagesPerSecond, !TenantLimits.messagesPerSecondRange.contains(value) { return "limits.messagesPerSecond" }
        if let value = messageBurst, !TenantLimits.messageBurstRange.contains(value) { return "limits.messageBurst" }
        return nil
    }

    public func applied(to limits: TenantLimits) -> TenantLimits {
        var merged = limits
        if let value = maxConnections { merged.maxConnections = value }
        if let value = maxPeersPerRoom { merged.maxPeersPerRoom = value }
        if let value = messagesPerSecond { merged.messagesPerSecond = value }
        if let value = messageBurst { merged.messageBurst = value }
        return merged
    }
}

public enum TenantStatus: String, Sendable, Codable, Equatable {
    case active
    case suspended
}

/// A customer of the deployment (SPEC §2).
public struct Tenant: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    public var status: TenantStatus
    public var limits: TenantLimits
    public var autoCreateRooms: Bool
    public var createdAt: Date

    public init(id: String, name: String, status: TenantStatus = .active, limits: TenantLimits = .defaults, autoCreateRooms: Bool = true, createdAt: Date) {
        self.id = id
        self.name = name
        self.status = status
        self.limits = limits
        self.autoCreateRooms = autoCreateRooms
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, status, limits, autoCreateRooms, createdAt
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        name = try container.decode(String.self, forKey: .name)
        status = try container.decode(TenantStatus.self, forKey: .status)
        limits = try container.decode(TenantLimits.self, forKey: .limits)
        autoCreateRooms = try container.decode(Bool.self, forKey: .autoCreateRooms)
        createdAt = try container.decodeTimestamp(forKey: .createdAt)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(status, forKey: .status)
        try container.encode(limits, forKey: .limits)
        try container.encode(autoCreateRooms, forKey: .autoCreateRooms)
        try container.encodeTimestamp(createdAt, forKey: .createdAt)
    }

    /// `[a-z0-9][a-z0-9-]{2,39}`
    public static func isValidID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard (3...40).contains(bytes.count) else { return false }
        func allowed(_ byte: UInt8, dash: Bool) -> Bool {
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || (dash && byte == UInt8(ascii: "-"))
        }
        guard allowed(bytes[0], dash: false) else { return false }
        return bytes.dropFirst().allSatisfy { allowed($0, dash: true) }
    }
}

/// An API key as stored: the secret sealed under the master key.
public struct StoredAPIKey: Sendable, Equatable {
    public var apiKey: String
    public var tenantID: String
    /// AES-GCM combined box (nonce ‖ ciphertext ‖ tag) of the secret's UTF-8 bytes.
    public var sealedSecret: [UInt8]
    public var createdAt: Date

    public init(apiKey: String, tenantID: String, sealedSecret: [UInt8], createdAt: Date) {
        self.apiKey = apiKey
        self.tenantID = tenantID
        self.sealedSecret = sealedSecret
        self.createdAt = createdAt
    }
}
