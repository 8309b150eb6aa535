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

/// Reads the datagrams queued on a UDP socket behind the one its NIO channel just delivered,
/// with `recvmmsg(2)`: up to ``slots`` per system call, into slots of one reused buffer, the
/// source address kept binary.
///
/// Why: a NIO datagram channel's read costs ≈ 5,000–6,000 user-space instructions per
/// datagram here, more than the rest of the relay (Docs/turn.md "Performance"): it renders
/// each source address as text (`SocketAddress(sockaddr_in)` → `inet_ntop` → `sprintf`, with
/// an array, a string and a box), and wraps every datagram in an `AddressedEnvelope` and a
/// `NIOAny` through the pipeline. A relay needs the bytes and the binary address only, and
/// NIO has no option for that.
///
/// What stays with NIO: the socket's registration, readiness and lifecycle. Each channel reads
/// one datagram per wake-up (`maxMessagesPerRead` 1); its handler relays it and reports the
/// socket, and once NIO has handled every event of the wake-up, ``TURNCore`` calls ``drain``
/// on the reported sockets, up to a limit each (fairness between sockets on a loop).
/// Whatever is left stays queued, and NIO's level-triggered poll reports the socket again —
/// so no datagram depends on the drain to be read, and one socket's order is kept (both
/// readers run on the channel's event loop, one after the other).
///
/// Confined to one event loop, like ``TURNCore``, which owns one. `body` sees each datagram's
/// bytes in place, in the drain's buffer, valid only until it returns: the relay path sends
/// them on from there, with no buffer (and no reference count) per datagram; what has to keep
/// them (a STUN request, a write to a TCP client) copies them.
final class DatagramDrain {
    /// The largest datagram relayed; a longer one is dropped, not relayed cut short — here
    /// (`MSG_TRUNC`) and by the channels' handlers (their receive buffers hold one byte
    /// more, so a longer datagram shows). WebRTC keeps its packets under ≈ 1,200 B.
    static let slotSize = 2048
    let slots: Int
    private var buffer: ByteBuffer
    /// nil where recvmmsg's scratch memory could not be had: then nothing is drained, and NIO
    /// reads every datagram itself.
    private let batch: OpaquePointer?

    init(slots: Int, allocator: ByteBufferAllocator) {
        self.slots = slots
        buffer = allocator.buffer(capacity: slots * Self.slotSize)
        batch = CDatagramBatch_create(UInt32(slots))
    }

    deinit {
        CDatagramBatch_destroy(batch)
    }

    /// Reads up to `limit` datagrams from `descriptor` without blocking and calls `body` with
    /// each payload (valid only during the call) and its source, in arrival order. Stops when
    /// the queue is empty, on an error (NIO's next read reports it), or when `isOpen` turns
    /// false — what `body` does may close the socket. Returns how many datagrams were read.
    @discardableResult
    func drain(_ descriptor: CInt, limit: Int, isOpen: () -> Bool, _ body: (UnsafeRawBufferPointer, TransportAddress) -> Void) -> Int {
        guard let batch else { return 0 }
        var total = 0
        while total < limit, isOpen() {
            let wanted = min(slots, limit - total)
            let received = buffer.withUnsafeMutableWritableBytes { storage -> CInt in
                guard let base = storage.baseAddress, storage.count >= wanted * Self.slotSize else { return -1 }
                let received = CDatagramBatch_receive(batch, descriptor, base.assumingMemoryBound(to: UInt8.self), Self.slotSize, UInt32(wanted))
                for index in 0..<UInt32(max(received, 0)) {
                    let length = CDatagramBatch_length(batch, index)
                    guard length >= 0, length <= Self.slotSize,
                        let source = TransportAddress(CDatagramBatch_source(batch, index).assumingMemoryBound(to: sockaddr_storage.self))
                    else { continue }
                    body(UnsafeRawBufferPointer(start: base + Int(index) * Self.slotSize, count: Int(length)), source)
                }
                return received
            }
            guard received > 0 else { break }
            total += Int(received)
            if Int(received) < wanted { break }
        }
        return total
    }
}

