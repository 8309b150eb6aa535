/// A message between nodes. Embedded mode carries these in process; cluster mode over Redis.
public enum BusMessage: Sendable, Equatable {
    /// Deliver a relayed message to a peer hosted by the receiving node.
    case deliver(RelayEnvelope)
    /// Disconnect every session of a tenant (suspended or deleted).
    case tenantDisconnect(tenantID: String, reason: String)
    /// Tenant settings changed: drop cached copies.
    case tenantChanged(tenantID: String)
    /// A key was revoked: drop cached copies and end its sessions.
    case keyRevoked(tenantID: String, apiKey: String)
    /// Close a room and disconnect its peers.
    case roomClosed(tenantID: String, room: String)
    /// Kick one peer.
    case kick(tenantID: String, room: String, peerId: String)
}

/// A relayed `signal` or `broadcast` on its way to one peer or a whole room.
public struct RelayEnvelope: Sendable, Equatable {
    public var tenantID: String
    public var room: String
    public var kind: RelayKind
    public var from: String
    /// The receiving peer; nil for a broadcast to the room.
    public var to: String?
    /// For broadcasts: the sender's peer id, which is skipped.
    public var exclude: String?
    public var data: RawJSON

    public init(tenantID: String, room: String, kind: RelayKind, from: String, to: String?, exclude: String?, data: RawJSON) {
        self.tenantID = tenantID
        self.room = room
        self.kind = kind
        self.from = from
        self.to = to
        self.exclude = exclude
        self.data = data
    }
}

/// Topics a node subscribes to.
public enum BusTopic: Sendable, Hashable {
    /// Messages for the sessions one node hosts.
    case node(String)
    /// Control messages every node hears.
    case control
}

/// Handle that ends a subscription.
public protocol BusSubscription: Sendable {
    func cancel()
}

/// Carries messages between nodes (SPEC §1: in-process when embedded, Redis pub/sub in cluster).
///
/// `publish` never blocks and never awaits: it hands the message to the transport and says
/// whether the transport accepted it, so the relay hot path can answer `unavailable` at once.
public protocol MessageBus: Sendable {
    @discardableResult
    func publish(_ message: BusMessage, to topic: BusTopic) -> Bool
    func subscribe(_ topic: BusTopic, _ handler: @escaping @Sendable (BusMessage) -> Void) -> any BusSubscription
    /// Whether the bus can carry messages now (readiness).
    func isAvailable() async -> Bool
}
