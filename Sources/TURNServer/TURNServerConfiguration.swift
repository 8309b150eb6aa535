import NIOCore
import STUN

/// Everything a TURN node needs, built once from flags and environment (SPEC §1, §6).
public struct TURNServerConfiguration: Sendable {
    /// Bind address of the listeners and relay sockets.
    public var host = "0.0.0.0"
    /// UDP and TCP listen port (0 picks a free one: tests).
    public var port = 3478
    /// Relay ports.
    public var relayPorts: ClosedRange<Int> = 49152...65535
    /// The address advertised in XOR-RELAYED-ADDRESS; nil = the first non-loopback address.
    public var publicIP: IPAddress?
    /// REALM.
    public var realm = "switchboard"
    /// TURN REST secrets; the first signs (elsewhere), all verify.
    public var secrets: [String] = []
    /// Allow relaying to loopback peers (tests only).
    public var allowLoopback = false
    /// End allocations when their credential expires.
    public var strictExpiry = false
    /// Most allocations one tenant may hold on this node; nil = no limit.
    public var allocationQuotaPerTenant: Int?
    /// TURN over TLS port, used when `tlsCertificatePath` and `tlsKeyPath` are set (0 = free port).
    public var tlsPort = 5349
    /// PEM certificate chain for `turns:`.
    public var tlsCertificatePath: String?
    /// PEM private key for `turns:`.
    public var tlsKeyPath: String?
    /// Seconds a SIGTERM waits for allocations to end.
    public var drainTimeout: Double = 30
    /// This node's id (logs, registration).
    public var nodeID = "turn"
    /// SOFTWARE attribute; none by default.
    public var software: String?
    /// A TCP/TLS connection silent this long without an allocation is closed.
    public var streamIdleTimeout: TimeAmount = .seconds(30)
    /// Event loops that relay, each with its own `SO_REUSEPORT` listeners; nil = one per core
    /// (as many as the event loop group has, at most).
    public var relayLoops: Int?
    /// Unauthenticated answers per second per source address (and the burst above it).
    public var unauthenticatedPerSecond: Double = 10
    public var unauthenticatedBurst: Double = 20

    public init() {}

    /// Whether `turns:` is configured.
    public var tlsEnabled: Bool { tlsCertificatePath != nil && tlsKeyPath != nil }

    /// The first non-loopback IPv4 address of this machine (else the first IPv6 one).
    public static func firstNonLoopbackAddress() -> IPAddress? {
        let addresses = ((try? System.enumerateDevices()) ?? []).compactMap { $0.address.flatMap(TransportAddress.init)?.ip }
        let candidates = addresses.filter { address in
            switch address {
            case .v4(let v4): v4.value >> 24 != 127
            case .v6(let v6): !(v6.high == 0 && v6.low == 1) && v6.high >> 54 != 0x3FA  // not ::1, not fe80::/10
            }
        }
        return candidates.first { $0.family == .ipv4 } ?? candidates.first
    }
}
