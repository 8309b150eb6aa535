import Foundation

/// The live TURN nodes of a deployment (SPEC §6 registration): each node writes its record
/// every couple of seconds with a short expiry; signaling nodes hand out only live,
/// non-draining nodes, the least loaded first.
public protocol TURNRegistry: Sendable {
    /// Writes (or refreshes) a node's record; it lapses after `ttl` unless written again.
    func register(_ record: TURNNodeRecord, ttl: Duration) async throws(TURNRegistryError)
    /// Removes a node's record at once (a draining node leaving the registry).
    func deregister(nodeID: String) async throws(TURNRegistryError)
    /// The nodes whose records have not lapsed, draining ones left out, least loaded first.
    func liveNodes() async throws(TURNRegistryError) -> [TURNNodeRecord]
}

/// What a TURN node says about itself.
public struct TURNNodeRecord: Sendable, Equatable, Codable {
    public var nodeID: String
    /// `turn:`/`turns:`/`stun:` URLs clients use to reach it.
    public var urls: [String]
    public var allocations: Int
    public var draining: Bool

    public init(nodeID: String, urls: [String], allocations: Int, draining: Bool) {
        self.nodeID = nodeID
        self.urls = urls
        self.allocations = allocations
        self.draining = draining
    }

    /// The URLs of a TURN server at `host` (an address; IPv6 gets brackets): UDP and TCP,
    /// TLS when it has a TLS port, and STUN.
    public static func urls(host: String, port: Int, tlsPort: Int?) -> [String] {
        let shown = host.contains(":") ? "[\(host)]" : host
        var urls = ["turn:\(shown):\(port)?transport=udp", "turn:\(shown):\(port)?transport=tcp"]
        if let tlsPort { urls.append("turns:\(shown):\(tlsPort)?transport=tcp") }
        urls.append("stun:\(shown):\(port)")
        return urls
    }

    /// Live nodes for clients: draining ones dropped, least loaded first (then by id, so
    /// the order is stable).
    public static func forClients(_ records: [TURNNodeRecord]) -> [TURNNodeRecord] {
        records.filter { !$0.draining }.sorted { ($0.allocations, $0.nodeID) < ($1.allocations, $1.nodeID) }
    }
}

public struct TURNRegistryError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
