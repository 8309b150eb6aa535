import NIOCore
import STUN

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension TransportAddress {
    /// The IP and port of an IPv4 or IPv6 socket address; nil for Unix sockets.
    init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4): self.init(v4.address)
        case .v6(let v6): self.init(v6.address)
        default: return nil
        }
    }

    /// The source address `recvmmsg` filled in (``DatagramDrain``); nil for other families.
    init?(_ storage: UnsafePointer<sockaddr_storage>) {
        switch CInt(storage.pointee.ss_family) {
        case AF_INET:
            self = UnsafeRawPointer(storage).withMemoryRebound(to: sockaddr_in.self, capacity: 1) { TransportAddress($0.pointee) }
        case AF_INET6:
            self = UnsafeRawPointer(storage).withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { TransportAddress($0.pointee) }
        default:
            return nil
        }
    }

    init(_ address: sockaddr_in) {
        self.init(ip: .v4(IPv4Address(UInt32(bigEndian: address.sin_addr.s_addr))), port: UInt16(bigEndian: address.sin_port))
    }

    init(_ address: sockaddr_in6) {
        var raw = address.sin6_addr
        let (high, low) = withUnsafeBytes(of: &raw) { bytes -> (UInt64, UInt64) in
            var high: UInt64 = 0
            var low: UInt64 = 0
            for index in 0..<8 { high = high << 8 | UInt64(bytes[index]) }
            for index in 8..<16 { low = low << 8 | UInt64(bytes[index]) }
            return (high, low)
        }
        self.init(ip: .v6(IPv6Address(high: high, low: low)), port: UInt16(bigEndian: address.sin6_port))
    }

    /// Calls `body` with this address as a `sockaddr_in`/`sockaddr_in6` on the stack (for
    /// `sendto`, see ``UDPSocket``).
    func withSockAddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        switch ip {
        case .v4(let v4):
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = v4.value.bigEndian
            return withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let v6):
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { bytes in
                for index in 0..<8 { bytes[index] = UInt8(truncatingIfNeeded: v6.high >> (56 - 8 * UInt64(index))) }
                for index in 0..<8 { bytes[8 + index] = UInt8(truncatingIfNeeded: v6.low >> (56 - 8 * UInt64(index))) }
            }
            return withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }
}
