import NIOCore
import NIOPosix
import STUN

/// A minimal UDP TURN client over our own codec, to drive a node over real sockets.
/// Responses are matched to requests by transaction id; other datagrams (Data indications,
/// ChannelData) queue up for ``nextDatagram()``.
final class STUNTestClient: Sendable {
    let channel: any Channel
    let server: SocketAddress
    private let handler: NIOLoopBound<Collector>

    init(serverPort: Int) async throws {
        server = try SocketAddress(ipAddress: "127.0.0.1", port: serverPort)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let handler = try await loop.submit { NIOLoopBound(Collector(), eventLoop: loop) }.get()
        channel = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler.value) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        self.handler = handler
    }

    var localPort: Int { channel.localAddress?.port ?? 0 }

    /// Sends `request` and waits (up to 5 s) for the response with its transaction id.
    func exchange(_ request: ByteBuffer) async throws -> STUNMessage {
        let message = try STUNMessage(decoding: request)
        let handler = self.handler
        let future = try await channel.eventLoop.submit {
            let promise = handler.value.expect(message.transactionID, on: handler.eventLoop)
            return promise.futureResult
        }.get()
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: request))
        return try await future.get()
    }

    /// Sends bytes to the server without waiting for anything.
    func send(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: bytes))
    }

    /// Sends bytes to `destination` (a relay address, when this client plays a peer).
    func send(_ bytes: ByteBuffer, to destination: SocketAddress) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: bytes))
    }

    /// The next datagram that was not a response (up to 5 s).
    func nextDatagram() async throws -> ByteBuffer {
        try await nextDatagramWithSender().data
    }

    /// The next datagram that was not a response, and where it came from (up to 5 s).
    func nextDatagramWithSender() async throws -> (data: ByteBuffer, sender: SocketAddress) {
        let handler = self.handler
        let envelope = try await channel.eventLoop.flatSubmit { handler.value.nextOther(on: handler.eventLoop) }.get()
        return (envelope.data, envelope.remoteAddress)
    }

    func close() async {
        try? await channel.close()
    }

    final class Collector: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        private var waiting: [TransactionID: EventLoopPromise<STUNMessage>] = [:]
        private var others: [AddressedEnvelope<ByteBuffer>] = []
        private var otherWaiter: EventLoopPromise<AddressedEnvelope<ByteBuffer>>?

        func expect(_ id: TransactionID, on loop: any EventLoop) -> EventLoopPromise<STUNMessage> {
            let promise = loop.makePromise(of: STUNMessage.self)
            waiting[id] = promise
            let collector = NIOLoopBound(self, eventLoop: loop)
            loop.scheduleTask(in: .seconds(5)) {
                if let pending = collector.value.waiting.removeValue(forKey: id) { pending.fail(TestTimeout()) }
            }
            return promise
        }

        func nextOther(on loop: any EventLoop) -> EventLoopFuture<AddressedEnvelope<ByteBuffer>> {
            if !others.isEmpty { return loop.makeSucceededFuture(others.removeFirst()) }
            let promise = loop.makePromise(of: AddressedEnvelope<ByteBuffer>.self)
            otherWaiter = promise
            let collector = NIOLoopBound(self, eventLoop: loop)
            loop.scheduleTask(in: .seconds(5)) {
                if let waiter = collector.value.otherWaiter, waiter.futureResult === promise.futureResult {
                    collector.value.otherWaiter = nil
                    waiter.fail(TestTimeout())
                }
            }
            return promise.futureResult
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let bytes = envelope.data
            if let message = try? STUNMessage(decoding: bytes), message.type.messageClass != .indication,
                message.type.messageClass != .request, let promise = waiting.removeValue(forKey: message.transactionID)
            {
                promise.succeed(message)
                return
            }
            if let waiter = otherWaiter {
                otherWaiter = nil
                waiter.succeed(envelope)
            } else {
                others.append(envelope)
            }
        }
    }
}

struct TestTimeout: Error {}
