import CDatagramBatch
import NIOCore
import STUN

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A UDP socket this node creates and binds itself, then hands to NIO for reading
/// (`DatagramBootstrap.withBoundSocket`), keeping the descriptor to send on directly.
///
/// Why not `channel.write(AddressedEnvelope)`: relaying is one datagram in, one out, and
/// the send path of a NIO datagram channel costs more user-space CPU per datagram than the
/// kernel's own work here — a `SocketAddress` box per packet, the `NIOAny` envelope through
/// the pipeline, the pending-writes queue and its flush (measured in Docs/turn.md). A
/// relayed datagram is fire-and-forget (RFC 8656 §12: UDP relaying is best effort), so a
/// non-blocking `sendto` that drops on `EAGAIN` is exactly the semantics, and reading stays
/// with NIO's event loop and datagram channel.
///
/// Lifetime: NIO owns the descriptor once the channel exists and closes it with the channel.
/// ``TURNCore`` confines every use to the channel's event loop and forgets the descriptor
/// before it closes the channel — and, when NIO closes a channel itself (a read error it
/// deems fatal), in the handler's `channelInactive` — so a send or a drain never reaches a
/// closed (or reused) descriptor.
struct UDPSocket {
    let descriptor: CInt

    /// A bound, non-blocking, close-on-exec UDP socket for `address`. `bufferSize`, when
    /// given, asks for receive and send buffers of that many bytes (the kernel caps it at
    /// `net.core.rmem_max`/`wmem_max`).
    /// `reusePort`: one of a group of sockets on the same address (`SO_REUSEPORT`), among
    /// which the kernel spreads clients by their address and port — one per relay loop.
    static func bind(_ address: SocketAddress, reuseAddress: Bool, reusePort: Bool = false, bufferSize: Int? = nil) throws -> UDPSocket {
        #if canImport(Darwin)
        let descriptor = try open(address, SOCK_DGRAM)
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        #else
        let descriptor = try open(address, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue))
        #endif
        if reuseAddress {
            var one: CInt = 1
            _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        }
        if reusePort {
            var one: CInt = 1
            _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<CInt>.size))
        }
        if let bufferSize {
            var size = CInt(clamping: bufferSize)
            _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
            _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        }
        return try bind(descriptor, to: address)
    }

    /// A close-on-exec socket of `type` in `address`'s family.
    private static func open(_ address: SocketAddress, _ type: CInt) throws -> CInt {
        let family: CInt
        switch address {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        default: throw IOError(errnoCode: EAFNOSUPPORT, reason: "socket")
        }
        #if canImport(Darwin)
        let descriptor = socket(family, type, 0)
        #else
        let descriptor = socket(family, type | CInt(SOCK_CLOEXEC.rawValue), 0)
        #endif
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        return descriptor
    }

    /// `descriptor` bound to `address`, or closed and the error thrown.
    private static func bind(_ descriptor: CInt, to address: SocketAddress) throws -> UDPSocket {
        let result = address.withSockAddr { pointer, length in systemBind(descriptor, pointer, socklen_t(length)) }
        guard result == 0 else {
            let code = errno
            UDPSocket(descriptor: descriptor).close()
            throw IOError(errnoCode: code, reason: "bind")
        }
        return UDPSocket(descriptor: descriptor)
    }

    /// Whether `address` (its port 0: any) can be bound for UDP and for TCP by a socket that
    /// shares it with no other (no `SO_REUSEPORT`; TCP with `SO_REUSEADDR`, so that connections
    /// of an earlier run in TIME_WAIT do not count, a listener does). Returns the port that was
    /// free for both: the one asked for, or one the kernel picked.
    static func probe(_ address: SocketAddress) throws -> Int {
        let udp = try bind(address, reuseAddress: false)
        defer { udp.close() }
        var bound = address
        bound.port = try udp.localPort()
        let tcp = try stream(bound)
        tcp.close()
        return bound.port ?? 0
    }

    /// Whether `address` can be bound for TCP by a socket with `SO_REUSEADDR` and without
    /// `SO_REUSEPORT` (see ``probe(_:)``).
    static func probeStream(_ address: SocketAddress) throws {
        try stream(address).close()
    }

    /// A TCP socket (wrapped as one of ours only to be closed) bound to `address`.
    private static func stream(_ address: SocketAddress) throws -> UDPSocket {
        #if canImport(Darwin)
        let descriptor = try open(address, SOCK_STREAM)
        #else
        let descriptor = try open(address, CInt(SOCK_STREAM.rawValue))
        #endif
        var one: CInt = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        return try bind(descriptor, to: address)
    }

    /// The port the socket is bound to.
    func localPort() throws -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard result == 0 else { throw IOError(errnoCode: errno, reason: "getsockname") }
        let family = CInt(storage.ss_family)
        return withUnsafePointer(to: &storage) { pointer in
            switch family {
            case AF_INET: pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            default: pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        }
    }

    /// Closes a socket no channel owns (a reserved port's, or a probe's).
    @discardableResult
    func close() -> CInt {
        #if canImport(Glibc)
        Glibc.close(descriptor)
        #elseif canImport(Musl)
        Musl.close(descriptor)
        #else
        Darwin.close(descriptor)
        #endif
    }

    private static func systemBind(_ descriptor: CInt, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> CInt {
        #if canImport(Glibc)
        Glibc.bind(descriptor, address, length)
        #elseif canImport(Musl)
        Musl.bind(descriptor, address, length)
        #else
        Darwin.bind(descriptor, address, length)
        #endif
    }

    /// Sends one datagram without blocking (`sendto` through `syscall(2)`: see CDatagramBatch.c).
    /// Returns false when it was not sent (the socket buffer is full — the datagram is
    /// dropped, as a router would — or the kernel refused).
    @discardableResult
    func send(_ payload: UnsafeRawBufferPointer, to destination: TransportAddress) -> Bool {
        destination.withSockAddr { address, length in
            CDatagramBatch_sendto(descriptor, payload.baseAddress, payload.count, address, UInt32(length)) >= 0
        }
    }
}
