import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One connection to Redis on one SwiftNIO channel (RESP2), non-blocking and pipelined:
/// any number of commands may be in flight; replies are matched to them in order.
///
/// Every method may be called from any thread. Commands submitted close together — from one
/// thread or many — are written with one write and one flush per event-loop tick.
public final class RedisConnection: Sendable {
    /// What a connection reports, called on its event loop.
    public struct Hooks: Sendable {
        /// A pub/sub message (only on connections that subscribed).
        public var onMessage: (@Sendable (RedisPubSubMessage) -> Void)?
        /// An error reply to a command sent with ``sendAndForget(_:)``.
        public var onDiscardedError: (@Sendable (String) -> Void)?
        /// Redis ended a subscription nobody asked to end (Redis Cluster sends `sunsubscribe`
        /// when a slot moves to another shard).
        public var onUnsolicitedUnsubscribe: (@Sendable (RedisPubSubMessage.Kind, String) -> Void)?

        public init(
            onMessage: (@Sendable (RedisPubSubMessage) -> Void)? = nil, onDiscardedError: (@Sendable (String) -> Void)? = nil,
            onUnsolicitedUnsubscribe: (@Sendable (RedisPubSubMessage.Kind, String) -> Void)? = nil
        ) {
            self.onMessage = onMessage
            self.onDiscardedError = onDiscardedError
            self.onUnsolicitedUnsubscribe = onUnsolicitedUnsubscribe
        }
    }

    public let channel: any Channel
    public var eventLoop: any EventLoop { channel.eventLoop }
    public let configuration: RedisConfiguration
    private let shared: RedisConnectionShared
    private let handler: NIOLoopBound<RedisChannelHandler>

    private init(channel: any Channel, configuration: RedisConfiguration, shared: RedisConnectionShared, handler: RedisChannelHandler) {
        self.channel = channel
        self.configuration = configuration
        self.shared = shared
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
    }

    /// Connects, then (pipelined) `AUTH`, `SELECT`, `CLIENT SETNAME` as configured and a `PING`;
    /// the connection is returned once all of them succeeded.
    public static func connect(
        to configuration: RedisConfiguration, on eventLoop: any EventLoop, hooks: Hooks = Hooks(), logger: Logger
    ) -> EventLoopFuture<RedisConnection> {
        let sslContext: NIOSSLContext?
        do {
            sslContext = try configuration.tls ? makeSSLContext(configuration) : nil
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        let shared = RedisConnectionShared(
            allocator: ByteBufferAllocator(), maxPending: configuration.maxPendingCommands,
            maxOutboundBytes: configuration.maxOutboundBytes)
        let high = max(configuration.maxOutboundBytes, 64 * 1024)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: .init(low: high / 2, high: high))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let serverName = configuration.tlsServerName ?? (isIPAddress(configuration.host) ? nil : configuration.host)
                        let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                        try channel.pipeline.syncOperations.addHandler(tls)
                    }
                    let handler = try RedisChannelHandler(
                        shared: shared, logger: logger, onMessage: hooks.onMessage, onDiscardedError: hooks.onDiscardedError,
                        onUnsolicitedUnsubscribe: hooks.onUnsolicitedUnsubscribe)
                    handler.commandTimeout = configuration.commandTimeout
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        return bootstrap.connect(host: configuration.host, port: configuration.port)
            .flatMapErrorThrowing { error in
                throw RedisError(.connectFailed, "could not connect to \(configuration.host):\(configuration.port): \(error)")
            }
            .flatMap { channel in
                // runs on the channel's event loop
                let handler: RedisChannelHandler
                do {
                    handler = try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self)
                } catch {
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(error)
                }
                let connection = RedisConnection(channel: channel, configuration: configuration, shared: shared, handler: handler)
                return connection.handshake().map { connection }.flatMapError { error in
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
    }

    /// Async form of ``connect(to:on:hooks:logger:)``.
    public static func connect(
        to configuration: RedisConfiguration, on eventLoop: any EventLoop, hooks: Hooks = Hooks(), logger: Logger
    ) async throws -> RedisConnection {
        try await connect(to: configuration, on: eventLoop, hooks: hooks, logger: logger).get()
    }

    private func handshake() -> EventLoopFuture<Void> {
        var commands: [[RedisArgument]] = []
        if let password = configuration.password {
            if let username = configuration.username {
                commands.append(["AUTH", RedisArgument(username), RedisArgument(password)])
            } else {
                commands.append(["AUTH", RedisArgument(password)])
            }
        }
        if configuration.database != 0 { commands.append(["SELECT", RedisArgument(configuration.database)]) }
        if let name = configuration.clientName { commands.append(["CLIENT", "SETNAME", RedisArgument(name)]) }
        commands.append(["PING"])
        let replies = sendBatch(commands)
        return EventLoopFuture.andAllSucceed(replies, on: eventLoop)
    }

    // MARK: Commands

    /// Sends one command; the future completes with its reply. An error reply fails it with
    /// ``RedisError/Code/server``.
    public func send(_ args: [RedisArgument]) -> EventLoopFuture<RedisValue> {
        let promise = eventLoop.makePromise(of: RedisValue.self)
        do {
            try submit([args], replies: [.reply(promise)])
        } catch {
            promise.fail(error)
        }
        return promise.futureResult
    }

    /// Sends one command and waits for its reply.
    public func execute(_ args: [RedisArgument]) async throws -> RedisValue {
        try await send(args).get()
    }

    /// Sends several commands in one write; the futures complete in order.
    public func sendBatch(_ commands: [[RedisArgument]]) -> [EventLoopFuture<RedisValue>] {
        let promises = commands.map { _ in eventLoop.makePromise(of: RedisValue.self) }
        do {
            try submit(commands, replies: promises.map { .reply($0) })
        } catch {
            for promise in promises { promise.fail(error) }
        }
        return promises.map(\.futureResult)
    }

    /// Fire and report: queues the command and returns at once whether the connection took
    /// it (false when it is closed, or more than ``RedisConfiguration/maxPendingCommands``
    /// commands or ``RedisConfiguration/maxOutboundBytes`` bytes are waiting). Never blocks
    /// beyond a short lock, never awaits; an error reply later goes to ``Hooks/onDiscardedError``.
    @discardableResult
    public func sendAndForget(_ args: [RedisArgument]) -> Bool {
        do {
            try submit([args], replies: [.discard])
            return true
        } catch {
            return false
        }
    }

    /// Subscribes (`SUBSCRIBE`, `SSUBSCRIBE` or `PSUBSCRIBE`); completes once Redis confirmed
    /// every channel. The connection is then in pub/sub mode: only (un)subscribe commands and
    /// `PING` are allowed on it, and messages go to ``Hooks/onMessage``.
    public func subscribe(_ channels: [String], kind: RedisPubSubMessage.Kind = .channel) -> EventLoopFuture<Void> {
        let (command, word) =
            switch kind {
            case .channel: ("SUBSCRIBE", "subscribe")
            case .shard: ("SSUBSCRIBE", "ssubscribe")
            case .pattern: ("PSUBSCRIBE", "psubscribe")
            }
        return subscription(command, word, channels)
    }

    /// Unsubscribes the given channels (at least one).
    public func unsubscribe(_ channels: [String], kind: RedisPubSubMessage.Kind = .channel) -> EventLoopFuture<Void> {
        let (command, word) =
            switch kind {
            case .channel: ("UNSUBSCRIBE", "unsubscribe")
            case .shard: ("SUNSUBSCRIBE", "sunsubscribe")
            case .pattern: ("PUNSUBSCRIBE", "punsubscribe")
            }
        return subscription(command, word, channels)
    }

    private func subscription(_ command: String, _ word: String, _ channels: [String]) -> EventLoopFuture<Void> {
        guard !channels.isEmpty else { return eventLoop.makeSucceededVoidFuture() }
        let promise = eventLoop.makePromise(of: Void.self)
        let args = [RedisArgument(command)] + channels.map { RedisArgument($0) }
        do {
            try submit([args], replies: [.confirmations(word: word, remaining: channels.count, promise: promise)])
        } catch {
            promise.fail(error)
        }
        return promise.futureResult
    }

    /// Whether the connection is open and taking commands.
    public var isActive: Bool {
        channel.isActive && !shared.outbox.withLock { $0.closed }
    }

    /// Commands sent and not yet answered.
    public var pendingCommands: Int { shared.inFlight.load(ordering: .relaxed) }

    /// Completes when the connection has closed (for any reason).
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Closes the connection; commands still waiting fail with ``RedisError/Code/connectionClosed``.
    @discardableResult
    public func close() -> EventLoopFuture<Void> {
        channel.close().recover { _ in }
    }

    // MARK: Submission

    private func submit(_ commands: [[RedisArgument]], replies: [PendingReply]) throws(RedisError) {
        let previous = shared.inFlight.add(commands.count, ordering: .relaxed).oldValue
        let needsDrain: Bool
        do throws(RedisError) {
            guard previous + commands.count <= shared.maxPending else {
                throw RedisError(.overloaded, "\(previous) commands are already waiting")
            }
            guard channel.isWritable || !channel.isActive else {
                throw RedisError(.overloaded, "the socket's outbound buffer is full")
            }
            needsDrain = try shared.outbox.withLock { outbox throws(RedisError) -> Bool in
                guard !outbox.closed else { throw RedisError(.connectionClosed, "the connection is closed") }
                guard outbox.buffer.readableBytes < shared.maxOutboundBytes else {
                    throw RedisError(.overloaded, "\(outbox.buffer.readableBytes) bytes are waiting to be written")
                }
                let mark = outbox.buffer.writerIndex
                do throws(RedisError) {
                    for command in commands { try RESPCommandEncoder.encode(command, into: &outbox.buffer) }
                } catch {
                    outbox.buffer.moveWriterIndex(to: mark)
                    throw error
                }
                outbox.entries.append(contentsOf: replies)
                defer { outbox.drainScheduled = true }
                return !outbox.drainScheduled
            }
        } catch {
            shared.inFlight.subtract(commands.count, ordering: .relaxed)
            throw error
        }
        if needsDrain {
            let handler = self.handler
            eventLoop.execute { handler.value.drain() }
        }
    }
}

extension RedisConnection {
    static func makeSSLContext(_ configuration: RedisConfiguration) throws(RedisError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = configuration.caFile {
            tls.trustRoots = .file(caFile)
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw RedisError(.tls, "could not set up TLS (CA file \(configuration.caFile ?? "system roots")): \(error)")
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
