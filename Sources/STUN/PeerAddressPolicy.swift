/// Which peers a TURN allocation may relay to (SPEC §6; the CVE-2020-26262 class).
///
/// Refused: loopback, private (RFC 1918, CGNAT 100.64/10, fc00::/7), link-local,
/// multicast, unspecified and "this network" (0.0.0.0/8, `::`), broadcast and reserved
/// space. IPv6 encodings of IPv4 — IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated
/// (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), 6to4 (2002::/16), NAT64
/// (64:ff9b::/96) and Teredo (2001::/32, the client address) — are judged by the IPv4
/// address they carry. The node's own relay addresses are allowed, so two peers relayed by
/// the same node can reach each other — on relay ports only, when `ownPorts` is set, so a
/// client cannot reach the node's other services (admin port, signaling) through it.
public struct PeerAddressPolicy: Sendable, Hashable {
    /// Why a peer was refused (a metrics label).
    public enum Refusal: String, Sendable, Hashable {
        case loopback
        case `private`
        case linkLocal = "link-local"
        case multicast
        case unspecified
        case broadcast
        case reserved
    }

    /// Relay to loopback peers (for tests only).
    public var allowLoopback: Bool
    /// The node's own relay addresses: always allowed.
    public var ownAddresses: Set<IPAddress>
    /// The relay port range: the only ports of `ownAddresses` a peer address may name.
    public var ownPorts: ClosedRange<UInt16>?

    public init(allowLoopback: Bool = false, ownAddresses: Set<IPAddress> = [], ownPorts: ClosedRange<UInt16>? = nil) {
        self.allowLoopback = allowLoopback
        self.ownAddresses = ownAddresses
        self.ownPorts = ownPorts
    }

    /// Whether relaying to `address` (IP and port) is allowed.
    public func permits(_ address: TransportAddress) -> Bool { refusal(for: address) == nil }

    /// The verdict for a full transport address: as for its IP, except that the node's own
    /// addresses are open on relay ports only.
    public func refusal(for address: TransportAddress) -> Refusal? {
        let ip: IPAddress
        switch address.ip {
        case .v6(let v6): ip = Self.embeddedIPv4(v6).map { .v4($0) } ?? address.ip
        case .v4: ip = address.ip
        }
        if ownAddresses.contains(ip) || ownAddresses.contains(address.ip), let ownPorts, !ownPorts.contains(address.port) {
            if case .v4(let v4) = ip, Self.judge(v4) == .loopback, allowLoopback { return nil }
            return .reserved
        }
        return refusal(for: address.ip)
    }

    /// Whether relaying to `address` is allowed.
    public func permits(_ address: IPAddress) -> Bool { refusal(for: address) == nil }

    /// nil when allowed, else the reason for refusing.
    public func refusal(for address: IPAddress) -> Refusal? {
        if ownAddresses.contains(address) { return nil }
        let refusal: Refusal?
        switch address {
        case .v4(let ip):
            if ownAddresses.contains(.v4(ip)) { return nil }
            refusal = Self.judge(ip)
        case .v6(let ip):
            if let embedded = Self.embeddedIPv4(ip) {
                if ownAddresses.contains(.v4(embedded)) { return nil }
                refusal = Self.judge(embedded)
            } else {
                refusal = Self.judge(ip)
            }
        }
        if refusal == .loopback, allowLoopback { return nil }
        return refusal
    }

    /// The IPv4 address an IPv6 address carries, for the encodings that carry one.
    public static func embeddedIPv4(_ ip: IPv6Address) -> IPv4Address? {
        let low32 = IPv4Address(UInt32(truncatingIfNeeded: ip.low))
        if ip.high == 0 {
            switch ip.low >> 32 {
            case 0xFFFF: return low32  // ::ffff:a.b.c.d, IPv4-mapped
            case 0: return ip.low <= 1 ? nil : low32  // ::a.b.c.d, IPv4-compatible (not :: or ::1)
            default: break
            }
            if ip.low >> 32 == 0xFFFF_0000 { return low32 }  // ::ffff:0:a.b.c.d, IPv4-translated
            return nil
        }
        if ip.high == 0x0064_FF9B_0000_0000, ip.low >> 32 == 0 { return low32 }  // 64:ff9b::/96, NAT64
        if ip.high >> 48 == 0x2002 { return IPv4Address(UInt32(truncatingIfNeeded: ip.high >> 16)) }  // 2002::/16, 6to4
        if ip.high >> 32 == 0x2001_0000 { return IPv4Address(~UInt32(truncatingIfNeeded: ip.low)) }  // Teredo client
        return nil
    }

    static func judge(_ ip: IPv4Address) -> Refusal? {
        let v = ip.value
        func inPrefix(_ prefix: UInt32, _ bits: UInt32) -> Bool { v >> (32 - bits) == prefix >> (32 - bits) }
        if v == 0xFFFF_FFFF { return .broadcast }
        if inPrefix(0x0000_0000, 8) { return .unspecified }
        if inPrefix(0x7F00_0000, 8) { return .loopback }
        if inPrefix(0x0A00_0000, 8) || inPrefix(0xAC10_0000, 12) || inPrefix(0xC0A8_0000, 16) || inPrefix(0x6440_0000, 10) {
            return .private
        }
        if inPrefix(0xA9FE_0000, 16) { return .linkLocal }
        if inPrefix(0xE000_0000, 4) { return .multicast }
        if inPrefix(0xF000_0000, 4) || inPrefix(0xC000_0000, 24) || inPrefix(0xC612_0000, 15) { return .reserved }
        return nil
    }

    static func judge(_ ip: IPv6Address) -> Refusal? {
        let top16 = ip.high >> 48
        if ip.high == 0, ip.low == 0 { return .unspecified }
        if ip.high == 0, ip.low == 1 { return .loopback }
        if ip.high == 0 { return .reserved }  // the rest of ::/64 that carries no IPv4 address
        if top16 & 0xFE00 == 0xFC00 { return .private }  // fc00::/7
        if top16 & 0xFFC0 == 0xFE80 { return .linkLocal }  // fe80::/10
        if top16 & 0xFFC0 == 0xFEC0 { return .private }  // fec0::/10, site-local
        if top16 & 0xFF00 == 0xFF00 { return .multicast }  // ff00::/8
        if ip.high == 0x0100_0000_0000_0000 { return .reserved }  // 100::/64, discard-only
        if ip.high >> 16 == 0x0064_FF9B_0001 { return .private }  // 64:ff9b:1::/48, local-use NAT64
        if ip.high >> 32 == 0x2001_0DB8 { return .reserved }  // 2001:db8::/32, documentation
        return nil
    }
}
