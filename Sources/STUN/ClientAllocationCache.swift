/// A direct-mapped memo of which allocation a client's 5-tuple holds, in front of the
/// machine's `[TURNClient: AllocationID]` dictionary on the relay path (every ChannelData a
/// client sends is looked up by its 5-tuple).
///
/// Why not only the dictionary: its SipHash of the 5-tuple and the probe cost ≈ 400
/// instructions per packet, 6 % of the node's user-space time under load (perf, Docs/turn.md
/// "Performance"). The 5-tuple is the client's choice, so the dictionary must stay
/// DoS-resistant; this cache keeps that property without a keyed hash: it is direct-mapped
/// (one slot per hash value, no probing), so clients whose tuples collide — by chance or on
/// purpose — only evict each other and fall back to the dictionary, one comparison later.
///
/// Never wrong, at worst stale: an entry is an allocation id the dictionary gave for that
/// exact client. Ids are never reused, and an allocation's client never changes, so the
/// caller checks that the allocation still exists and belongs to the client, and asks the
/// dictionary again when it does not.
struct ClientAllocationCache {
    private static let bits = 8
    private var entries: [(client: TURNClient, id: AllocationID)?]

    init() {
        entries = Array(repeating: nil, count: 1 << Self.bits)
    }

    /// The id last stored for exactly `client`, if its slot still holds it.
    subscript(client: TURNClient) -> AllocationID? {
        get {
            guard let entry = entries[Self.slot(of: client)], entry.client == client else { return nil }
            return entry.id
        }
        set {
            entries[Self.slot(of: client)] = newValue.map { (client, $0) }
        }
    }

    /// A multiplicative hash of the remote address and port (what differs between clients;
    /// the local side is one of a node's few listeners), top bits.
    static func slot(of client: TURNClient) -> Int {
        let address: UInt64
        switch client.remote.ip {
        case .v4(let ip): address = UInt64(ip.value)
        case .v6(let ip): address = ip.high ^ ip.low
        }
        let mixed = (address << 16 | UInt64(client.remote.port)) &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: mixed >> (64 - UInt64(bits)))
    }
}
