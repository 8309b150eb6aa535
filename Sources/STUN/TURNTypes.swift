/// A point in time for the TURN state machine: milliseconds since the Unix epoch. The I/O
/// shell feeds it a clock that does not go backwards; tests feed it whatever they like.
public struct TURNTime: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    /// `seconds` after the epoch.
    public static func seconds(_ seconds: Int64) -> TURNTime { TURNTime(milliseconds: seconds * 1000) }

    /// Whole seconds since the epoch.
    public var unixSeconds: Int64 { milliseconds / 1000 }

    /// This time plus `seconds`.
    public func adding(seconds: Int64) -> TURNTime { TURNTime(milliseconds: milliseconds + seconds * 1000) }

    public static func < (lhs: TURNTime, rhs: TURNTime) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public var description: String { "\(milliseconds) ms" }
}

/// The transport between a client and the server.
public enum TURNTransport: UInt8, Hashable, Sendable, CustomStringConvertible {
    case udp
    case tcp
    case tls

    /// Whether ChannelData must be padded to 4 bytes (streams).
    public var isStream: Bool { self != .udp }

    public var description: String {
        switch self {
        case .udp: "udp"
        case .tcp: "tcp"
        case .tls: "tls"
        }
    }
}

/// The 5-tuple that names a client of the server: transport, the server's address it
/// talks to and its own (reflexive) address. A TCP or TLS connection is one 5-tuple.
public struct TURNClient: Hashable, Sendable, CustomStringConvertible {
    public var transport: TURNTransport
    public var local: TransportAddress
    public var remote: TransportAddress

    public init(transport: TURNTransport, local: TransportAddress, remote: TransportAddress) {
        self.transport = transport
        self.local = local
        self.remote = remote
    }

    public var description: String { "\(transport) \(remote)→\(local)" }

    /// Two words for an IPv4 client (the synthesized hash takes seven): a UDP client is
    /// looked up by its 5-tuple for every ChannelData it sends.
    public func hash(into hasher: inout Hasher) {
        if case .v4(let localIP) = local.ip, case .v4(let remoteIP) = remote.ip {
            hasher.combine(UInt64(localIP.value) << 32 | UInt64(remoteIP.value))
            hasher.combine(UInt64(local.port) << 24 | UInt64(remote.port) << 8 | UInt64(transport.rawValue))
        } else {
            hasher.combine(local)
            hasher.combine(remote)
            hasher.combine(transport)
        }
    }
}

/// Names one allocation (and its relay socket) between the machine and the shell.
public struct AllocationID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "allocation-\(rawValue)" }
}
