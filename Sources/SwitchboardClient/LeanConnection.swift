import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Signaling

/// A bare WebSocket connection to a Switchboard node that runs on one event loop and calls
/// back for every text frame: no task, no stream, no resume logic. It is what the load
/// generator drives thousands of, where ``SignalingClient``'s per-connection task and async
/// streams would cost more than the server being measured.
///
/// All callbacks run on the connection's event loop; ``send(_:)`` may be called from
/// anywhere (it hops to the loop), ``sendOnLoop(_:flush:)`` only from that loop.
public final class LeanConnection: Sendable {
    public typealias FrameHandler = @Sendable (_ frame: ByteBuffer) -> Void
    public typealias CloseHandler = @Sendable (_ code: Int?) -> Void

    public let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    public struct ConnectError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Connects to `url` (`ws://host:port/path?query`) and completes once the upgrade is done.
    public static func connect(
        url: String, on eventLoop: any EventLoop, onFrame: @escaping FrameHandler, onClose: @escaping CloseHandler = { _ in }
    ) async throws -> LeanConnection {
        guard let parsed = URLComponents(string: url), let host = parsed.host, parsed.scheme == "ws" else {
            throw ConnectError(description: "only ws:// URLs are supported: \(url)")
        }
        let port = parsed.port ?? 80
        var target = parsed.percentEncodedPath.isEmpty ? "/" : parsed.percentEncodedPath
        if let query = parsed.percentEncodedQuery { target += "?" + query }
        let upgraded = eventLoop.makePromise(of: Void.self)
        let requestTarget = target
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 256, initial: 2048, maximum: 65536))
            .channelInitializer { channel in
                let request = UpgradeRequestHandler(host: host, port: port, target: requestTarget, upgraded: upgraded)
                let upgrader = NIOWebSocketClientUpgrader(
                    maxFrameSize: 1 << 20,
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(FrameHandlerAdapter(onFrame: onFrame, onClose: onClose))
                            upgraded.succeed()
                        }
                    })
                return channel.eventLoop.makeCompletedFuture {
                    // The server's first frame (`welcome`) often shares a read with the 101:
                    // forward those bytes to the WebSocket decoder instead of dropping them.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            // The request handler speaks HTTP; WebSocket frames follow.
                            context.pipeline.syncOperations.removeHandler(request, promise: nil)
                        }))
                    try channel.pipeline.syncOperations.addHandler(request)
                }
            }
            .connect(host: host, port: port).get()
        do {
            try await upgraded.futureResult.get()
        } catch {
            try? await channel.close()
            throw error
        }
        return LeanConnection(channel: channel)
    }

    /// Sends one text frame from any thread.
    public func send(_ text: [UInt8]) {
        let channel = self.channel
        if channel.eventLoop.inEventLoop {
            sendOnLoop(text, flush: true)
        } else {
            channel.eventLoop.execute { self.sendOnLoop(text, flush: true) }
        }
    }

    /// Sends one text frame; call on the connection's event loop. Without `flush`, the frame
    /// waits for the next ``flush()``.
    public func sendOnLoop(_ text: [UInt8], flush: Bool) {
        let buffer = channel.allocator.buffer(bytes: text)
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer)
        if flush {
            channel.writeAndFlush(frame, promise: nil)
        } else {
            channel.write(frame, promise: nil)
        }
    }

    public func flush() {
        channel.flush()
    }

    /// Sends a close frame (1000 by default) and closes.
    public func close(code: WebSocketErrorCode = .normalClosure) {
        var data = channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data)
        let channel = self.channel
        channel.writeAndFlush(frame).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// Sends the upgrade request once the TCP connection is up; fails the upgrade if the server
/// answers with anything but 101.
private final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let host: String
    let port: Int
    let target: String
    let upgraded: EventLoopPromise<Void>

    init(host: String, port: Int, target: String, upgraded: EventLoopPromise<Void>) {
        self.host = host
        self.port = port
        self.target = target
        self.upgraded = upgraded
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(host):\(port)")
        headers.add(name: "Content-Length", value: "0")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data), head.status != .switchingProtocols {
            upgraded.fail(LeanConnection.ConnectError(description: "upgrade refused: HTTP \(head.status.code)"))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        upgraded.fail(LeanConnection.ConnectError(description: "connection closed during the upgrade"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        upgraded.fail(error)
        context.close(promise: nil)
    }
}

/// Hands text frames to the callback; answers pings; reports the close.
private final class FrameHandlerAdapter: ChannelInboundHandler, Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let onFrame: LeanConnection.FrameHandler
    let onClose: LeanConnection.CloseHandler

    init(onFrame: @escaping LeanConnection.FrameHandler, onClose: @escaping LeanConnection.CloseHandler) {
        self.onFrame = onFrame
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            onFrame(frame.unmaskedData)
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readWebSocketErrorCode().map { code -> Int in
                var buffer = ByteBuffer()
                buffer.write(webSocketErrorCode: code)
                return Int(buffer.readInteger(as: UInt16.self) ?? 0)
            }
            onClose(code)
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose(nil)
        context.fireChannelInactive()
    }
}
