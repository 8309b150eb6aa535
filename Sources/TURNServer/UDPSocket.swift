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
    static func bind(_ address: SocketAddress, reuseAddress: Bool, bufferSize: Int? = nil) throws -> UDPSocket {
        let family: CInt
        switch address {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        default: throw IOError(errnoCode: EAFNOSUPPORT, reason: "socket")
        }
        #if canImport(Darwin)
        let descriptor = socket(family, SOCK_DGRAM, 0)
        #else
        let descriptor = socket(family, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        #endif
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        #if canImport(Darwin)
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        #endif
        if reuseAddress {
            var one: CInt = 1
            _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        }
        if let bufferSize {
            var size = CInt(clamping: bufferSize)
            _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
            _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        }
        let result = address.withSockAddr { pointer, length in systemBind(descriptor, pointer, socklen_t(length)) }
        guard result == 0 else {
            let code = errno
            close(descriptor)
            throw IOError(errnoCode: code, reason: "bind")
        }
        return UDPSocket(descriptor: descriptor)
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
