import Foundation
import Logging
import NIOCore
import NIOWebSocket
import Signaling
import Synchronization

/// What every WebSocket connection on a node shares: one object, referenced by each
/// connection (a copy per socket would cost every idle socket a few hundred bytes).
final class GatewayEnvironment: Sendable {
    let hub: Hub
    let metrics: SwitchboardMetrics
    let limits: FrameLimits
    let heartbeat: TimeAmount
    /// How long a `resume=1` connection may take to send its `resume` frame.
    let resumeHandshakeTimeout: TimeAmount
    /// Refused frames may go on this long (with no quiet second between them) before the
    /// connection is closed with 1008; nil never closes for flooding (SPEC §3 bursts).
    let floodCloseAfter: TimeAmount?
    /// After a close the server starts, how long it waits for the client's close frame
    /// (reading and discarding what the client still sends) before closing the socket.
    let closeHandshakeTimeout: TimeAmount
    let logger: Logger
    /// Fresh ICE servers for a peer, and when their credentials expire.
    let iceServers: @Sendable (_ tenantID: String, _ peerId: String) -> (servers: RawJSON, expires: Date?)
    /// Per-event-loop timers for heartbeats and deadlines.
    let tickers: ConnectionTickers

    init(
        hub: Hub, metrics: SwitchboardMetrics, limits: FrameLimits, heartbeat: TimeAmount,
        resumeHandshakeTimeout: TimeAmount = .seconds(10), floodCloseAfter: TimeAmount? = .seconds(5),
        closeHandshakeTimeout: TimeAmount = .seconds(2), logger: Logger,
        iceServers: @escaping @Sendable (_ tenantID: String, _ peerId: String) -> (servers: RawJSON, expires: Date?),
        tickers: ConnectionTickers = ConnectionTickers()
    ) {
        self.hub = hub
        self.metrics = metrics
        self.limits = limits
        self.heartbeat = heartbeat
        self.resumeHandshakeTimeout = resumeHandshakeTimeout
        self.floodCloseAfter = floodCloseAfter
        self.closeHandshakeTimeout = closeHandshakeTimeout
        self.logger = logger
        self.iceServers = iceServers
        self.tickers = tickers
    }
}

/// The upgrade's context, kept only until the session is joined or resumed.
private final class PendingConnect {
    let connect: ConnectContext
    init(_ connect: ConnectContext) { self.connect = connect }
}

/// One WebSocket after the upgrade: a plain event-loop handler (no task per socket) that
/// turns frames into hub calls, and the ``SessionTransport`` its session writes through.
///
/// It is the only handler on the socket: it reads and writes RFC 6455 frames itself with
/// ``WebSocketWire`` (NIOWebSocket's decoder and encoder cost an idle socket ≈ 750 B more).
///
/// Threading: everything but ``send(_:type:)`` and ``close(_:reason:)`` runs on the
/// channel's event loop. Those two may be called from any thread (a sender on another loop)
/// while the session holds its lock; they write directly when on the loop with nothing
/// queued, and otherwise queue to the loop in call order, so frames keep `seq` order.
final class SignalConnection: ChannelInboundHandler, RemovableChannelHandler, SessionTransport, Tickable, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let environment: GatewayEnvironment
    /// Until the session exists: what the upgrade decided (identity, metadata, welcome data).
    private var pending: PendingConnect?
    private let eventLoop: any EventLoop
    /// Sends queued to the event loop and not yet written; direct writes wait behind them.
    private let queuedSends = Atomic<Int>(0)

    // Event-loop state.
    private var context: ChannelHandlerContext?
    private var session: Session?
    private var bucket: TokenBucket
    private var flood = FloodDetector()
    /// The text message being reassembled from fragments.
    private var partial: ByteBuffer?
    /// The bytes of a frame that has not fully arrived; nil between frames, so an idle socket
    /// keeps no buffer.
    private var incomplete: ByteBuffer?
    /// A framing error ended the input (its bytes cannot be parsed on): the rest is dropped.
    private var inputFailed = false
    /// A close frame was sent: input is read and dropped until the client's close frame.
    private var closing = false
    private var inRead = false
    private var needsFlush = false
    // Deadlines, checked on the event loop's shared tick (``ConnectionTickers``).
    private var lastActivity: NIODeadline
    private var nextHeartbeat: NIODeadline
    /// The access token's `exp` plus the clock-skew leeway: then the connection closes (1008).
    private let tokenDeadline: NIODeadline
    /// A `resume=1` connection must send its `resume` frame by then.
    private var resumeDeadline: NIODeadline?
    /// When to send `ice-servers` with fresh credentials: 80 % into their lifetime.
    private var iceRefreshAt: Date?
    private var ticker: LoopTicker?

    init(environment: GatewayEnvironment, connect: ConnectContext, eventLoop: any EventLoop) {
        let now = NIODeadline.now()
        self.environment = environment
        self.pending = PendingConnect(connect)
        self.eventLoop = eventLoop
        self.iceRefreshAt = connect.iceServersExpire.map { Self.refreshTime(expires: $0) }
        self.bucket = TokenBucket(
            rate: connect.limits.messagesPerSecond, burst: connect.limits.messageBurst, now: now.uptimeNanoseconds)
        self.lastActivity = now
        self.nextHeartbeat = now + environment.heartbeat
        let untilExpiry = connect.tokenExpires.addingTimeInterval(AccessClaims.leeway).timeIntervalSinceNow
        self.tokenDeadline = now + .milliseconds(Int64(max(0, min(untilExpiry, 10 * 365 * 86_400)) * 1000))
    }

    private var hub: Hub { environment.hub }
    private var metrics: SwitchboardMetrics { environment.metrics }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let ticker = environment.tickers.ticker(for: context.eventLoop)
        ticker.add(self)
        self.ticker = ticker
        switch pending?.connect.mode {
        case .join:
            attachJoined()
        case .awaitResume:
            resumeDeadline = .now() + environment.resumeHandshakeTimeout
        case nil:
            break
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimers()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        partial = nil
        incomplete = nil
        if let session {
            self.session = nil
            detachLater(session)
        }
        context.fireChannelInactive()
    }

    /// The socket is gone: keep the session for the resume window. Deferred, because this
    /// may run inside a write the session made while holding its lock.
    private func detachLater(_ session: Session) {
        let hub = self.hub
        eventLoop.execute {
            hub.detach(session, transport: self)
        }
    }

    private func stopTimers() {
        ticker?.remove(self)
        ticker = nil
    }

    /// The upgrade joined the session (``UpgradeAuthorizer``); its socket is this one.
    private func attachJoined() {
        guard let session = pending?.connect.session else { return }
        pending = nil
        guard hub.attach(session, transport: self) else {
            // Replaced or ended before its socket arrived.
            send(ServerMessage.error(ProtocolError(.replaced, "the session ended before it started")).encoded(), type: .error)
            return closeSocket(.goingAway)
        }
        if context?.channel.isActive == true {
            self.session = session
        } else {
            detachLater(session)
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !inputFailed else { return }
        var bytes = unwrapInboundIn(data)
        if var earlier = incomplete {
            incomplete = nil
            earlier.writeBuffer(&bytes)
            bytes = earlier
        }
        lastActivity = .now()
        let parser = WebSocketWire.Parser(maxFrameBytes: environment.limits.maxFrameBytes)
        while true {
            let frame: WebSocketWire.Frame
            do {
                guard let next = try parser.next(&bytes) else { break }
                frame = next
            } catch {
                inputFailed = true
                return framingFailed(error)
            }
            handle(frame, context: context)
        }
        if bytes.readableBytes > 0 {
            incomplete = bytes
        }
    }

    private func handle(_ frame: WebSocketWire.Frame, context: ChannelHandlerContext) {
        guard !closing || frame.opcode == .close else { return }
        switch frame.opcode {
        case .text:
            guard partial == nil else { return closeSocket(.protocolError) }
            if frame.fin {
                inRead = true
                frame.withUnmaskedBytes { handleText($0) }
                inRead = false
            } else {
                partial = frame.unmaskedPayload(allocator: context.channel.allocator)
            }
        case .continuation:
            guard var buffer = partial else { return closeSocket(.protocolError) }
            partial = nil
            guard buffer.readableBytes + frame.length <= environment.limits.maxFrameBytes else {
                return fail(ProtocolError(.tooLarge, "message exceeds \(environment.limits.maxFrameBytes) bytes"), close: .tooLarge)
            }
            _ = frame.withUnmaskedBytes { buffer.writeBytes($0) }
            if frame.fin {
                inRead = true
                buffer.withUnsafeReadableBytes { handleText($0) }
                inRead = false
            } else {
                partial = buffer
            }
        case .binary:
            fail(ProtocolError(.badRequest, "binary frames are not accepted"), close: .unsupportedData)
        case .ping:
            let pong = frame.withUnmaskedBytes { WebSocketWire.frame(.pong, payload: $0, allocator: context.channel.allocator) }
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            break
        case .close:
            var data = frame.unmaskedPayload(allocator: context.channel.allocator)
            let code = data.readWebSocketErrorCode()
            if closing { return context.close(promise: nil) }
            // A clean close (1000/1001) is a goodbye; any other close is a drop that can resume.
            if let session, code == .normalClosure || code == .goingAway {
                self.session = nil
                hub.end(session, reason: .left, close: nil)
            }
            answerClose(code ?? .normalClosure)
        }
    }

    /// The client's bytes broke RFC 6455: fail the connection (1002, or 1009 for a frame over
    /// the limit). Nothing after the bad frame can be parsed, so the rest of the input is read
    /// and dropped until the close handshake times out — or, when a close was already under
    /// way, that handshake simply goes on.
    private func framingFailed(_ failure: WebSocketWire.Failure) {
        guard !closing else { return }
        switch failure {
        case .frameTooLarge:
            fail(ProtocolError(.tooLarge, "frame exceeds \(environment.limits.maxFrameBytes) bytes"), close: .tooLarge)
        case .protocolViolation:
            closeSocket(.protocolError)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Server shutdown: say goodbye; a goodbye already under way ends by itself (the
            // client's close frame, or the handshake timeout).
            return closeSocket(.goingAway)
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            return context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A client that does not read fills our write buffer past its high-water mark (1 MiB):
    /// drop the socket rather than buffer without bound. What it missed stays in the
    /// session's replay buffer, so it can resume.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !context.channel.isWritable {
            metrics.error(.unavailable)
            let channel = context.channel
            context.eventLoop.execute { channel.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    /// Socket errors (framing errors never get here: ``channelRead(context:data:)`` handles them).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func handleText(_ bytes: UnsafeRawBufferPointer) {
        let started = NIODeadline.now()
        let decoded = Result { () throws(ProtocolError) in try ClientMessage.decode(bytes, limits: environment.limits) }
        session?.received(bytes: bytes.count)
        guard bucket.take(now: started.uptimeNanoseconds) else {
            return rateLimited(ref: (try? decoded.get())?.id, now: started)
        }
        let message: ClientMessage
        switch decoded {
        case .success(let value): message = value
        case .failure(let error):
            metrics.frameIn(type: "invalid")
            // A successful decode has validated every string, so only a failure can hide
            // invalid UTF-8 — which RFC 6455 §8.1 says fails the connection (1007).
            let validUTF8 = String(validating: bytes, as: UTF8.self) != nil
            guard validUTF8 else {
                return fail(ProtocolError(.badRequest, "a text frame must be valid UTF-8"), close: .invalidPayload)
            }
            return reject(error)
        }
        dispatch(message, started: started)
    }

    private func dispatch(_ message: ClientMessage, started: NIODeadline) {
        guard let session else {
            return handleBeforeSession(message)
        }
        switch message {
        case .signal(let to, let data, let id):
            metrics.frameIn(type: "signal")
            guard session.identity.permissions.contains(.signal) else {
                return reject(ProtocolError(.forbidden, "the token does not allow `signal`", ref: id))
            }
            hub.signal(from: session, to: to, data: data) { [environment] outcome in
                Self.finishRoute(outcome, session: session, id: id, started: started, metrics: environment.metrics)
            }
        case .broadcast(let data, let id):
            metrics.frameIn(type: "broadcast")
            guard session.identity.permissions.contains(.broadcast) else {
                return reject(ProtocolError(.forbidden, "the token does not allow `broadcast`", ref: id))
            }
            hub.broadcast(from: session, data: data) { [environment] outcome in
                Self.finishRoute(outcome, session: session, id: id, started: started, metrics: environment.metrics)
            }
        case .update(let metadata):
            metrics.frameIn(type: "update")
            hub.update(session, metadata: metadata) { [metrics] in
                metrics.error(.unavailable)
                session.send(.error(ProtocolError(.unavailable, "the update could not be applied; try again")), type: .error)
            }
        case .ping(let id):
            metrics.frameIn(type: "ping")
            session.send(.pong(id: id), type: .pong)
        case .leave:
            metrics.frameIn(type: "leave")
            self.session = nil
            hub.end(session, reason: .left, close: (.normal, "left"))
        case .resume:
            metrics.frameIn(type: "resume")
            reject(ProtocolError(.badRequest, "`resume` must be the first frame of a connection opened with `resume=1`"))
        }
    }

    /// The roster's answer to a relay (on any thread): the sender's `ack` or error.
    private static func finishRoute(_ outcome: RouteOutcome, session: Session, id: RawJSON?, started: NIODeadline, metrics: SwitchboardMetrics) {
        metrics.routed(outcome)
        let error: ProtocolError
        switch outcome {
        case .routed:
            metrics.routingLatency.recordNanoseconds(Int64((NIODeadline.now() - started).nanoseconds))
            if let id { session.send(.ack(id: id), type: .ack) }
            return
        case .peerNotFound:
            error = ProtocolError(.peerNotFound, "no such peer in the room", ref: id)
        case .unavailable:
            metrics.busPublishFailures.increment()
            error = ProtocolError(.unavailable, "the message could not be delivered; try again", ref: id)
        }
        metrics.error(error.code)
        session.send(ServerMessage.error(error).encoded(), type: .error)
    }

    /// Frames on a `resume=1` connection before it has a session.
    private func handleBeforeSession(_ message: ClientMessage) {
        guard let connect = pending?.connect, connect.mode == .awaitResume, case .resume(let token, let lastSeq) = message else {
            return reject(ProtocolError(.badRequest, "expected a `resume` frame"))
        }
        metrics.frameIn(type: "resume")
        resumeDeadline = nil
        pending = nil
        hub.resume(token: token, lastSeq: lastSeq, identity: connect.identity, transport: self) { outcome in
            if self.eventLoop.inEventLoop {
                self.resumed(outcome)
            } else {
                self.eventLoop.execute { self.resumed(outcome) }
            }
        }
    }

    private func resumed(_ outcome: ResumeOutcome) {
        switch outcome {
        case .resumed(let session, _):
            metrics.resumesSucceeded.increment()
            if context?.channel.isActive == true {
                self.session = session
            } else {
                detachLater(session)
            }
        case .unknownSession:
            metrics.resumesFailed.increment()
            fail(ProtocolError(.badRequest, "resume failed: the session is unknown or has ended; join again"), close: .policy)
        case .gap:
            metrics.resumesFailed.increment()
            fail(ProtocolError(.badRequest, "resume failed: messages after `lastSeq` are no longer kept; join again"), close: .policy)
        case .unavailable:
            metrics.resumesFailed.increment()
            fail(ProtocolError(.unavailable, "resume failed: the session store cannot be reached; try again"), close: .internalError)
        }
    }

    /// A refused frame gets `rate_limited` and the connection stays open (a burst is not
    /// abuse); only refusals sustained for ``GatewayEnvironment/floodCloseAfter`` close it.
    private func rateLimited(ref: RawJSON?, now: NIODeadline) {
        metrics.rateLimited.increment()
        let floodingFor = flood.refused(at: now.uptimeNanoseconds)
        if let limit = environment.floodCloseAfter, floodingFor >= limit.nanoseconds {
            return fail(ProtocolError(.rateLimited, "rate limit exceeded for too long; closing"), close: .policy)
        }
        reject(ProtocolError(.rateLimited, "too many frames; slow down", ref: ref))
    }

    /// Sends an `error` frame; the connection stays open.
    private func reject(_ error: ProtocolError) {
        metrics.error(error.code)
        let frame = ServerMessage.error(error).encoded()
        if let session {
            session.send(frame, type: .error)
        } else {
            send(frame, type: .error)
        }
    }

    /// Sends an `error` frame and closes; the session, if any, ends.
    private func fail(_ error: ProtocolError, close code: CloseCode) {
        metrics.error(error.code)
        if let session {
            self.session = nil
            hub.end(session, reason: .left, finalFrame: .error(error), close: (code, error.message))
        } else {
            send(ServerMessage.error(error).encoded(), type: .error)
            closeSocket(WebSocketErrorCode(codeNumber: Int(code.rawValue)))
        }
    }

    /// The loop's shared tick: the `resume` handshake deadline, token expiry, and every
    /// `heartbeat` period a liveness check, a ping and the `ice-servers` renewal.
    func tick(now: NIODeadline) {
        guard let context, !closing else { return }
        if let resumeDeadline, now >= resumeDeadline, session == nil {
            self.resumeDeadline = nil
            return fail(ProtocolError(.badRequest, "expected a `resume` frame"), close: .policy)
        }
        if now >= tokenDeadline {
            return expireToken()
        }
        guard now >= nextHeartbeat else { return }
        nextHeartbeat = now + environment.heartbeat
        if now - lastActivity > environment.heartbeat * 2 {
            // No life for two periods: drop the socket; the session can still resume.
            context.close(promise: nil)
            return
        }
        let ping = WebSocketWire.frame(.ping, payload: [], allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
        refreshICEServersIfDue()
    }

    /// The access token ran out (SPEC §3: 1008, token expired). The session is only
    /// detached: the client can resume it within the window with a fresh token.
    private func expireToken() {
        guard !closing else { return }
        let error = ProtocolError(.forbidden, "token expired; resume with a fresh token")
        metrics.error(error.code)
        send(ServerMessage.error(error).encoded(), type: .error)
        closeSocket(.policyViolation)
    }

    /// Sends `ice-servers` before the TURN credentials handed out earlier expire; checked on
    /// each heartbeat, so it costs no timer of its own.
    private func refreshICEServersIfDue() {
        guard let session, let due = iceRefreshAt, Date() >= due else { return }
        let (servers, expires) = environment.iceServers(session.tenantID, session.peerId)
        iceRefreshAt = expires.map { Self.refreshTime(expires: $0) }
        session.send(.iceServers(servers), type: .iceServers)
    }

    static func refreshTime(expires: Date) -> Date {
        let remaining = expires.timeIntervalSinceNow
        return Date().addingTimeInterval(max(1, remaining * 0.8))
    }

    // MARK: Outbound (SessionTransport)

    func send(_ frame: [UInt8], type: OutboundFrameType) {
        metrics.frameOut(type)
        if eventLoop.inEventLoop, queuedSends.load(ordering: .acquiring) == 0 {
            write(frame)
        } else {
            queuedSends.add(1, ordering: .releasing)
            eventLoop.execute {
                self.write(frame)
                self.queuedSends.subtract(1, ordering: .releasing)
            }
        }
    }

    func close(_ code: CloseCode, reason: String) {
        if eventLoop.inEventLoop, queuedSends.load(ordering: .acquiring) == 0 {
            closeSocket(WebSocketErrorCode(codeNumber: Int(code.rawValue)))
        } else {
            queuedSends.add(1, ordering: .releasing)
            eventLoop.execute {
                self.closeSocket(WebSocketErrorCode(codeNumber: Int(code.rawValue)))
                self.queuedSends.subtract(1, ordering: .releasing)
            }
        }
    }

    private func write(_ frame: [UInt8]) {
        guard let context, !closing else { return }
        // One buffer per frame, header in front of the payload: one write.
        context.write(wrapOutboundOut(WebSocketWire.frame(.text, payload: frame, allocator: context.channel.allocator)), promise: nil)
        if inRead {
            needsFlush = true
        } else {
            context.flush()
        }
    }

    /// The client started the closing handshake: echo its code, then close the TCP
    /// connection once that frame is written (the server closes first, RFC 6455 §7.1.1).
    private func answerClose(_ code: WebSocketErrorCode) {
        guard let context, let written = sendCloseFrame(code) else { return }
        written.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    /// Starts the closing handshake (RFC 6455 §7.1): sends a close frame with `code`, then
    /// keeps reading — and dropping — what the client still sends until its close frame
    /// arrives, and only then closes the TCP connection. Closing at once while input is still
    /// arriving makes the kernel answer with a reset, which can destroy the close frame in
    /// the client's buffers (it would see 1006). A client that never answers, or never reads,
    /// is cut off after ``GatewayEnvironment/closeHandshakeTimeout``.
    private func closeSocket(_ code: WebSocketErrorCode) {
        guard let context, sendCloseFrame(code) != nil else { return }
        let channel = context.channel
        // Drain what the client still sends in big reads, so its close frame is reached soon.
        if let options = channel.syncOptions {
            try? options.setOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 1024))
            try? options.setOption(.maxMessagesPerRead, value: 16)
        }
        context.eventLoop.scheduleTask(in: environment.closeHandshakeTimeout) {
            channel.close(promise: nil)
        }
    }

    /// Enters the closing state (frames are read and dropped, timers stop) and writes a close
    /// frame with `code`; nil when a close was already under way.
    private func sendCloseFrame(_ code: WebSocketErrorCode) -> EventLoopFuture<Void>? {
        guard let context, !closing else { return nil }
        closing = true
        partial = nil
        stopTimers()
        let frame = WebSocketWire.closeFrame(code: UInt16(webSocketErrorCode: code), allocator: context.channel.allocator)
        return context.writeAndFlush(wrapOutboundOut(frame))
    }
}
