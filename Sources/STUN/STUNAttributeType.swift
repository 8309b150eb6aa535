/// A STUN attribute type. Types below 0x8000 are comprehension-required: an agent that does
/// not know one must refuse the request (420 Unknown Attribute).
public struct STUNAttributeType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    // RFC 8489
    public static let mappedAddress = STUNAttributeType(rawValue: 0x0001)
    public static let username = STUNAttributeType(rawValue: 0x0006)
    public static let messageIntegrity = STUNAttributeType(rawValue: 0x0008)
    public static let errorCode = STUNAttributeType(rawValue: 0x0009)
    public static let unknownAttributes = STUNAttributeType(rawValue: 0x000A)
    public static let realm = STUNAttributeType(rawValue: 0x0014)
    public static let nonce = STUNAttributeType(rawValue: 0x0015)
    public static let messageIntegritySHA256 = STUNAttributeType(rawValue: 0x001C)
    public static let passwordAlgorithm = STUNAttributeType(rawValue: 0x001D)
    public static let userhash = STUNAttributeType(rawValue: 0x001E)
    public static let xorMappedAddress = STUNAttributeType(rawValue: 0x0020)
    public static let passwordAlgorithms = STUNAttributeType(rawValue: 0x8002)
    public static let alternateDomain = STUNAttributeType(rawValue: 0x8003)
    public static let software = STUNAttributeType(rawValue: 0x8022)
    public static let alternateServer = STUNAttributeType(rawValue: 0x8023)
    public static let fingerprint = STUNAttributeType(rawValue: 0x8028)
    // RFC 8656 (TURN)
    public static let channelNumber = STUNAttributeType(rawValue: 0x000C)
    public static let lifetime = STUNAttributeType(rawValue: 0x000D)
    public static let xorPeerAddress = STUNAttributeType(rawValue: 0x0012)
    public static let data = STUNAttributeType(rawValue: 0x0013)
    public static let xorRelayedAddress = STUNAttributeType(rawValue: 0x0016)
    public static let requestedAddressFamily = STUNAttributeType(rawValue: 0x0017)
    public static let evenPort = STUNAttributeType(rawValue: 0x0018)
    public static let requestedTransport = STUNAttributeType(rawValue: 0x0019)
    public static let dontFragment = STUNAttributeType(rawValue: 0x001A)
    public static let reservationToken = STUNAttributeType(rawValue: 0x0022)
    public static let additionalAddressFamily = STUNAttributeType(rawValue: 0x8000)
    public static let addressErrorCode = STUNAttributeType(rawValue: 0x8001)
    public static let icmp = STUNAttributeType(rawValue: 0x8004)
    // RFC 6062 (TURN TCP allocations) and RFC 8445 (ICE)
    public static let connectionID = STUNAttributeType(rawValue: 0x002A)
    public static let priority = STUNAttributeType(rawValue: 0x0024)
    public static let useCandidate = STUNAttributeType(rawValue: 0x0025)
    public static let iceControlled = STUNAttributeType(rawValue: 0x8029)
    public static let iceControlling = STUNAttributeType(rawValue: 0x802A)
    // RFC 5780
    public static let responseOrigin = STUNAttributeType(rawValue: 0x802B)
    public static let otherAddress = STUNAttributeType(rawValue: 0x802C)

    /// Types below 0x8000 must be understood by the receiver.
    public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    /// The comprehension-required types this codec understands. DONT-FRAGMENT is among
    /// them; whether a server supports it is the server's decision.
    public static let understood: Set<STUNAttributeType> = [
        .mappedAddress, .username, .messageIntegrity, .errorCode, .unknownAttributes, .realm, .nonce,
        .messageIntegritySHA256, .passwordAlgorithm, .userhash, .xorMappedAddress, .channelNumber, .lifetime,
        .xorPeerAddress, .data, .xorRelayedAddress, .requestedAddressFamily, .evenPort, .requestedTransport,
        .dontFragment, .reservationToken, .connectionID, .priority, .useCandidate,
    ]

    public var description: String { "0x" + String(rawValue, radix: 16) }

    /// The value length this type must have, or the allowed range; nil when any length goes.
    var allowedLengths: ClosedRange<Int>? {
        switch self {
        case .mappedAddress, .xorMappedAddress, .xorPeerAddress, .xorRelayedAddress, .alternateServer,
            .responseOrigin, .otherAddress:
            8...20
        case .username: 0...513
        case .messageIntegrity: 20...20
        case .messageIntegritySHA256: 16...32
        case .fingerprint, .lifetime, .channelNumber, .requestedAddressFamily, .requestedTransport,
            .additionalAddressFamily, .priority, .connectionID:
            4...4
        case .errorCode: 4...767
        case .realm, .nonce, .software: 0...763
        case .evenPort: 1...1
        case .dontFragment, .useCandidate: 0...0
        case .reservationToken, .iceControlled, .iceControlling: 8...8
        case .userhash: 32...32
        case .passwordAlgorithm: 4...259
        default: nil
        }
    }
}
