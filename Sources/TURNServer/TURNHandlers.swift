import NIOCore
import STUN

/// The UDP listener: every datagram is a STUN message or ChannelData from a client.
final class UDPListenerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let core: TURNCore
    /// The listener's own address: the server side of each 5-tuple.
    private var local: TransportAddress?

    init(core: TURNCore) { self.core = core }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        if local == nil { local = context.channel.localAddress.flatMap(TransportAddress.init) }
        guard let local else { return }
        // A datagram longer than a slot arrives cut at slotSize + 1 bytes: dropped, as the drain does.
        if envelope.data.readableBytes <= DatagramDrain.slotSize, let remote = TransportAddress(envelope.remoteAddress) {
            core.fromClient(envelope.data, client: TURNClient(transport: .udp, local: local, remote: remote))
        }
        core.listenerDelivered(local: local)
    }

    /// The channel closed — by the core, or by NIO after a read error it deems fatal: either
    /// way its descriptor is gone, and nothing may be sent on or read from its number again.
    func channelInactive(context: ChannelHandlerContext) {
        core.listenerInactive(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors surface here as read errors on Linux; the listener keeps serving.
    }
}

/// One allocation's relay socket: datagrams from peers.
final class RelayHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let core: TURNCore
    /// Set when the socket is given to an allocation (a reserved port has none until claimed).
    var allocation: AllocationID?
    /// The allocation's counters, kept here so a packet from a peer needs no lookup for them.
    var metrics: TURNMetrics.Relay?
    /// What was relayed since the last ``publishTraffic()``: plain counters on the event
    /// loop, added to ``metrics`` once a second by the core's tick and when the allocation
    /// ends, instead of four atomic increments through the metrics backend per packet.
    var traffic = TURNMetrics.Traffic()
    /// The channel's socket, drained after each datagram NIO delivers (``DatagramDrain``);
    /// -1 once the core has let the socket go (it is closing, and its number may be reused).
    var descriptor: CInt = -1

    init(core: TURNCore) { self.core = core }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        // A datagram longer than a slot arrives cut at slotSize + 1 bytes: dropped, as the drain does.
        if envelope.data.readableBytes <= DatagramDrain.slotSize, let peer = TransportAddress(envelope.remoteAddress) {
            core.fromPeer(envelope.data, peer: peer, relay: self)
        }
        if descriptor >= 0 { core.datagramDelivered(on: descriptor, relay: self) }
    }

    /// The channel closed — by the core, or by NIO after a read error it deems fatal: the
    /// descriptor is forgotten, so that no drain or send uses its number (which the kernel may
    /// hand to the next socket) again.
    func channelInactive(context: ChannelHandlerContext) {
        descriptor = -1
        context.fireChannelInactive()
    }

    func publishTraffic() {
        guard traffic != TURNMetrics.Traffic() else { return }
        metrics?.add(traffic)
        traffic = TURNMetrics.Traffic()
    }

    /// Streams are flushed here; datagrams to UDP clients wait for the sweep that follows
    /// (``TURNCore/datagramDelivered(on:relay:)``), to go out in one batch with the others.
    func channelReadComplete(context: ChannelHandlerContext) {
        core.flushStreams()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}

/// Cuts a TCP/TLS stream into STUN and ChannelData frames (RFC 8656 §12.5).
struct TURNStreamDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    struct InvalidFrame: Error {}

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch TURNFraming.nextFrame(in: buffer) {
        case .needMoreBytes:
            return .needMoreData
        case .stun(let length), .channelData(let length):
            guard let frame = buffer.readSlice(length: length) else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(frame))
            return .continue
        case .invalid:
            throw InvalidFrame()
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// One TCP or TLS client connection: one 5-tuple; its allocation ends when it closes.
final class StreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let core: TURNCore
    private let transport: TURNTransport
    private var client: TURNClient?

    init(core: TURNCore, transport: TURNTransport) {
        self.core = core
        self.transport = transport
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let local = context.channel.localAddress.flatMap(TransportAddress.init),
            let remote = context.channel.remoteAddress.flatMap(TransportAddress.init)
        else {
            context.close(promise: nil)
            return
        }
        let client = TURNClient(transport: transport, local: local, remote: remote)
        self.client = client
        core.streamOpened(client, channel: context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let client else { return }
        core.fromClient(unwrapInboundIn(data), client: client)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        core.flushPending()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let client { core.streamClosed(client) }
        client = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent, let client, core.streamIdle(client) {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
