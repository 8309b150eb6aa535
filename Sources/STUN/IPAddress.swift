/// An IPv4 address as a 32-bit number in host order (`10.0.0.1` is `0x0A00_0001`).
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        self.value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text (`192.0.2.1`); nil for anything else.
    public init?(_ text: some StringProtocol) {
        var value: UInt32 = 0
        var parts = 0
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard part.count >= 1, part.count <= 3, let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
            parts += 1
        }
        guard parts == 4 else { return nil }
        self.value = value
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }
}

/// An IPv6 address as two 64-bit halves in host order.
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Builds an address from eight 16-bit groups.
    public init(groups: [UInt16]) {
        precondition(groups.count == 8, "an IPv6 address has eight groups")
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<4 { high = high << 16 | UInt64(groups[index]) }
        for index in 4..<8 { low = low << 16 | UInt64(groups[index]) }
        self.init(high: high, low: low)
    }

    /// Parses RFC 4291 text, with `::` and a trailing dotted quad (`::ffff:1.2.3.4`).
    public init?(_ text: some StringProtocol) {
        let string = String(text)
        guard !string.isEmpty, string.utf8.count <= 45 else { return nil }
        let halves = string.components(separatedByDoubleColon: ())
        guard let halves else { return nil }
        func groups(_ part: Substring, allowIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var result: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, allowIPv4, piece.contains(".") {
                    guard let v4 = IPv4Address(piece) else { return nil }
                    result.append(UInt16(v4.value >> 16))
                    result.append(UInt16(v4.value & 0xFFFF))
                } else {
                    guard piece.count >= 1, piece.count <= 4, let group = UInt16(piece, radix: 16) else { return nil }
                    result.append(group)
                }
            }
            return result
        }
        var all: [UInt16]
        if let tail = halves.tail {
            guard let head = groups(halves.head, allowIPv4: false), let rest = groups(tail, allowIPv4: true),
                head.count + rest.count <= 7
            else { return nil }
            all = head + Array(repeating: 0, count: 8 - head.count - rest.count) + rest
        } else {
            guard let only = groups(halves.head, allowIPv4: true), only.count == 8 else { return nil }
            all = only
        }
        self.init(groups: all)
    }

    /// The eight 16-bit groups.
    public var groups: [UInt16] {
        (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64($0))) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64($0))) }
    }

    /// RFC 5952 text: lower case, the longest run of zero groups as `::`.
    public var description: String {
        let groups = self.groups
        var bestStart = -1
        var bestLength = 0
        var index = 0
        while index < 8 {
            if groups[index] == 0 {
                var end = index
                while end < 8, groups[end] == 0 { end += 1 }
                if end - index > bestLength, end - index >= 2 {
                    bestStart = index
                    bestLength = end - index
                }
                index = end
            } else {
                index += 1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

extension String {
    /// Splits at the one `::` of IPv6 text; nil if there is more than one.
    fileprivate func components(separatedByDoubleColon _: Void) -> (head: Substring, tail: Substring?)? {
        guard let range = firstRange(of: "::") else { return (self[...], nil) }
        let tail = self[range.upperBound...]
        if tail.contains("::") { return nil }
        return (self[..<range.lowerBound], tail)
    }
}

/// An IP address of either family.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses IPv4 or IPv6 text (brackets allowed around IPv6).
    public init?(_ text: some StringProtocol) {
        var string = Substring(text)
        if string.hasPrefix("["), string.hasSuffix("]") { string = string.dropFirst().dropLast() }
        if let v4 = IPv4Address(string) {
            self = .v4(v4)
        } else if let v6 = IPv6Address(string) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    /// One word for IPv4, two for IPv6 (the synthesized hash adds the case's discriminator):
    /// addresses are hashed on every relayed packet (``TURNServerMachine``'s permissions).
    public func hash(into hasher: inout Hasher) {
        switch self {
        case .v4(let address): hasher.combine(UInt64(address.value))
        case .v6(let address):
            hasher.combine(address.high)
            hasher.combine(address.low)
        }
    }

    /// The address family as STUN encodes it (0x01 IPv4, 0x02 IPv6).
    public var family: AddressFamily { if case .v4 = self { .ipv4 } else { .ipv6 } }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }
}

/// The STUN address family codes (also used by REQUESTED-ADDRESS-FAMILY).
public enum AddressFamily: UInt8, Sendable, Hashable {
    case ipv4 = 0x01
    case ipv6 = 0x02
}

/// An IP address and a port: what STUN calls a transport address.
public struct TransportAddress: Hashable, Sendable, CustomStringConvertible {
    public var ip: IPAddress
    public var port: UInt16

    public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// IPv4 address and port in one word (see ``IPAddress/hash(into:)``).
    public func hash(into hasher: inout Hasher) {
        switch ip {
        case .v4(let address): hasher.combine(UInt64(address.value) << 16 | UInt64(port))
        case .v6(let address):
            hasher.combine(address.high)
            hasher.combine(address.low)
            hasher.combine(port)
        }
    }

    public var description: String {
        switch ip {
        case .v4(let address): "\(address):\(port)"
        case .v6(let address): "[\(address)]:\(port)"
        }
    }
}
