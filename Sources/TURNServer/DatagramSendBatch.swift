import CDatagramBatch
import NIOCore
import STUN

/// Datagrams to UDP clients, collected while the node relays a wake-up's worth of traffic and
/// sent on the listener socket with one `sendmmsg(2)` per ``capacity`` datagrams; a run of
/// datagrams to one client, of one size, goes as one message with segmentation offload
/// (`UDP_SEGMENT`): the datagrams drained from one relay socket all go to its client.
///
/// Why: every datagram relayed toward a UDP client leaves through the one listener socket,
/// and on this machine a `sendto` per datagram cost ≈ 9 % more kernel CPU per datagram than
/// `sendmmsg` with 16 (system-call entry and exit, the descriptor lookup, glibc's wrapper) —
/// Docs/turn.md "Performance". The relay sockets' sends (one socket per allocation, one or
/// two datagrams per wake-up) stay single `sendto`s.
///
/// Each datagram is copied into a slot of the batch (`DatagramDrain.slotSize` plus a 4-byte
/// ChannelData header), so nothing holds on to the buffers it came from. ``TURNCore`` flushes
/// the batch when it is full, at the end of each wake-up's sweep and after control-plane
/// actions — before anything else is sent on the listener, so a client's datagrams keep their
/// order. Confined to the core's event loop.
final class DatagramSendBatch {
    static let capacity = 32
    static let slotSize = 4 + DatagramDrain.slotSize
    private let batch: OpaquePointer

    /// - Parameter segmentation: whether runs of datagrams to one client go as one message
    ///   with `UDP_SEGMENT` (segmentation offload, Linux; see CDatagramBatch.c).
    init(segmentation: Bool = true) {
        guard let batch = CDatagramSendBatch_create(UInt32(Self.capacity), Self.slotSize) else {
            fatalError("out of memory for a send batch")
        }
        self.batch = batch
        CDatagramSendBatch_setSegmentation(batch, segmentation ? 1 : 0)
    }

    /// How many datagrams went out inside segmented messages so far.
    var segmented: Int { Int(CDatagramSendBatch_segmented(batch)) }

    deinit {
        CDatagramSendBatch_destroy(batch)
    }

    var isEmpty: Bool { CDatagramSendBatch_count(batch) == 0 }
    var isFull: Bool { CDatagramSendBatch_count(batch) >= UInt32(Self.capacity) }

    /// Adds a copy of `bytes` as one datagram to `destination` — behind a ChannelData header (RFC 8656
    /// §12.4, unpadded: UDP) when `channel` is given. Returns false when nothing was added: the
    /// batch is full (flush first) or the datagram is longer than a slot.
    @discardableResult
    func append(_ bytes: UnsafeRawBufferPointer, channel: UInt16? = nil, to destination: TransportAddress) -> Bool {
        let headerLength = channel == nil ? 0 : 4
        guard let slot = CDatagramSendBatch_nextSlot(batch), headerLength + bytes.count <= Self.slotSize else { return false }
        if let channel {
            let header = UInt32(channel) << 16 | UInt32(truncatingIfNeeded: bytes.count)
            UnsafeMutableRawPointer(slot).storeBytes(of: header.bigEndian, as: UInt32.self)
        }
        if let source = bytes.baseAddress { (slot + headerLength).update(from: source.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
        let length = headerLength + bytes.count
        return destination.withSockAddr { address, addressLength in
            CDatagramSendBatch_commit(batch, length, address, UInt32(addressLength)) >= 0
        }
    }

    /// Sends what is batched on `descriptor`, in order, without blocking, and empties the
    /// batch; a datagram the kernel refuses (full buffer, unreachable) is dropped. Returns
    /// how many were sent.
    @discardableResult
    func flush(_ descriptor: CInt) -> Int {
        Int(CDatagramSendBatch_flush(batch, descriptor))
    }
}
