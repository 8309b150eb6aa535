import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The decision on a WebSocket upgrade request.
enum UpgradeDecision: Sendable {
    case accept(ConnectContext)
    case refuse(status: HTTPResponse.Status, body: ByteBuffer)
}

/// The public port's HTTP/1 child channel: Hummingbird's router for plain requests, and for
/// `GET /v1/signal` upgrades a WebSocket pipeline whose only handler is a plain event-loop
/// ``SignalConnection`` that frames its own bytes (``WebSocketWire``) — no NIOAsyncChannel,
/// no task and no codec handlers per socket, which is what keeps an idle session at a few
/// KB (Hummingbird's WebSocket keeps a task per socket, ≈ 30 KB here).
///
/// A refused upgrade is answered here with the authorizer's status and JSON body: NIO has
/// already consumed the request, so it cannot reach the router.
struct SignalingHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    typealias Authorizer = @Sendable (HTTPRequest, any Channel) async -> UpgradeDecision
    typealias HandlerFactory = @Sendable (ConnectContext, any Channel) -> any ChannelHandler

    struct Configuration: Sendable {
        var http1 = HTTP1Channel.Configuration(idleTimeout: .seconds(60))
        var signalPath = "/v1/signal"
        /// First request head plus authorization must finish within this.
        var handshakeTimeout: TimeAmount = .seconds(10)
    }

    enum Outcome: Sendable {
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, HTTPResponse.Status, ByteBuffer)
        case webSocket
    }

    struct Value: ServerChildChannelValue {
        let outcome: EventLoopFuture<Outcome>
        let channel: any Channel
    }

    enum Handshake {
        case none
        case accepted(ConnectContext)
        case refused(HTTPResponse.Status, ByteBuffer)
    }

    let responder: HTTPChannelHandler.Responder
    let configuration: Configuration
    let authorize: Authorizer
    let makeHandler: HandlerFactory

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let configuration = self.configuration
            // One small receive buffer per socket: the default pool keeps up to four that grow
            // to 64 KiB and never shrink, which would dominate an idle socket's memory.
            if let options = channel.syncOptions {
                try options.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 2048))
                try options.setOption(.maxMessagesPerRead, value: 1)
                try options.setOption(.writeBufferWaterMark, value: .init(low: 256 * 1024, high: 1024 * 1024))
            }
            let state = NIOLoopBoundBox(Handshake.none, eventLoop: channel.eventLoop)
            let webSocket = SignalingWebSocketUpgrader(
                state: state,
                shouldUpgrade: { channel, head in self.decide(channel: channel, head: head, state: state) },
                makeHandler: makeHandler)
            let upgrade = NIOTypedHTTPServerUpgradeConfiguration<Outcome>(
                upgraders: [webSocket],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        if case .refused(let status, let body) = state.value {
                            state.value = .none
                            return try .refused(Self.wrap(channel), status, body)
                        }
                        try sync.addHandlers(configuration.http1.additionalChannelHandlers())
                        try sync.addHandler(HTTPConnectionStateHandler(
                            idleTimeout: configuration.http1.idleTimeout.map { Duration($0) }, logger: logger))
                        return try .http(Self.wrap(channel))
                    }
                })
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration(upgradeConfiguration: upgrade)
            pipeline.enablePipelining = false
            pipeline.enableErrorHandling = false
            pipeline.enableResponseHeaderValidation = false
            pipeline.decoderConfiguration.maxHeaderFieldSize = configuration.http1.httpDecoder.maxHeaderFieldSize
            pipeline.decoderConfiguration.maxHeaderListSize = configuration.http1.httpDecoder.maxHeaderListSize
            pipeline.decoderConfiguration.maxHeaderFieldCount = configuration.http1.httpDecoder.maxHeaderFieldCount
            let outcome = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            // Nothing else bounds a client that connects and says nothing, or a slow authorization.
            let timeout = channel.eventLoop.scheduleTask(in: configuration.handshakeTimeout) { channel.close(promise: nil) }
            outcome.whenComplete { _ in timeout.cancel() }
            return Value(outcome: outcome, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.outcome.get() {
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let status, let body):
                await Self.writeRefusal(http, status: status, body: body, logger: logger)
            case .webSocket:
                // SignalConnection owns the channel now; no task stays behind for it.
                return
            }
        } catch {
            logger.debug("connection ended before its first request completed", metadata: ["error": "\(error)"])
        }
    }

    /// Runs on the channel's event loop, from NIO's upgrade handler.
    private func decide(channel: any Channel, head: HTTPRequestHead, state: NIOLoopBoundBox<Handshake>) -> EventLoopFuture<HTTPHeaders?> {
        guard let request = try? HTTPRequest(head, secure: false, splitCookie: false),
            URI(request.path ?? "").path == configuration.signalPath
        else {
            state.value = .refused(.notFound, APIError.body(code: "not_found", message: "no WebSocket endpoint at this path"))
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let authorize = self.authorize
        return channel.eventLoop.makeFutureWithTask { await authorize(request, channel) }
            .map { decision -> HTTPHeaders? in
                switch decision {
                case .accept(let connect):
                    state.value = .accepted(connect)
                    return HTTPHeaders()
                case .refuse(let status, let body):
                    state.value = .refused(status, body)
                    return nil
                }
            }
    }

    static func wrap(_ channel: any Channel) throws -> NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart> {
        try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
    }

    static func writeRefusal(
        _ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, status: HTTPResponse.Status, body: ByteBuffer, logger: Logger
    ) async {
        do {
            try await http.executeThenClose { _, outbound in
                let fields: HTTPFields = [
                    .connection: "close", .contentType: "application/json; charset=utf-8",
                    .contentLength: String(body.readableBytes),
                ]
                try await outbound.write(contentsOf: [
                    .head(HTTPResponse(status: status, headerFields: fields)), .body(body), .end(nil),
                ])
            }
        } catch {
            logger.trace("failed writing an upgrade refusal", metadata: ["error": "\(error)"])
        }
    }
}

/// The WebSocket upgrade (RFC 6455 §4.2) in place of NIOWebSocket's upgrader: the same
/// header checks and `Sec-WebSocket-Accept`, but the only handler it installs is the
/// connection's own (``SignalConnection`` frames its bytes with ``WebSocketWire``), so no
/// codec handlers are made for each socket. Bytes that arrive behind the upgrade request
/// reach that handler: NIO's upgrade handler buffers them and replays them once `upgrade`
/// is done.
///
/// Every consumed upgrade request gets an answer: a 400 refusal is recorded before the
/// headers are checked, and `shouldUpgrade` overwrites it with its decision.
struct SignalingWebSocketUpgrader: NIOTypedHTTPServerProtocolUpgrader {
    typealias UpgradeResult = SignalingHTTPChannel.Outcome

    let state: NIOLoopBoundBox<SignalingHTTPChannel.Handshake>
    /// Records the decision in `state`; nil headers refuse the upgrade.
    let shouldUpgrade: @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?>
    let makeHandler: SignalingHTTPChannel.HandlerFactory

    var supportedProtocol: String { "websocket" }
    var requiredUpgradeHeaders: [String] { [] }

    func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        state.value = .refused(.badRequest, APIError.body(code: "bad_request", message: "invalid WebSocket handshake"))
        guard let key = WebSocketWire.handshakeKey(in: upgradeRequest.headers) else {
            return channel.eventLoop.makeFailedFuture(NIOWebSocketUpgradeError.invalidUpgradeHeader)
        }
        return shouldUpgrade(channel, upgradeRequest).flatMapThrowing { headers in
            guard var headers else { throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget }
            headers.replaceOrAdd(name: "Upgrade", value: "websocket")
            headers.add(name: "Sec-WebSocket-Accept", value: WebSocketWire.acceptValue(key: key))
            headers.replaceOrAdd(name: "Connection", value: "upgrade")
            return headers
        }
    }

    func upgrade(channel: any Channel, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<UpgradeResult> {
        channel.eventLoop.makeCompletedFuture {
            guard case .accepted(let connect) = state.value else {
                throw ChannelError.inappropriateOperationForState
            }
            state.value = .none
            try channel.pipeline.syncOperations.addHandler(makeHandler(connect, channel))
            return .webSocket
        }
    }
}

extension HTTPServerBuilder {
    /// The public port: Hummingbird's HTTP/1 plus Switchboard's lean WebSocket upgrade.
    static func signaling(
        configuration: SignalingHTTPChannel.Configuration,
        authorize: @escaping SignalingHTTPChannel.Authorizer,
        makeHandler: @escaping SignalingHTTPChannel.HandlerFactory
    ) -> HTTPServerBuilder {
        .init { responder in
            SignalingHTTPChannel(responder: responder, configuration: configuration, authorize: authorize, makeHandler: makeHandler)
        }
    }
}
