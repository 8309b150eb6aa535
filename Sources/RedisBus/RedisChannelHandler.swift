import Logging
import NIOCore
import Synchronization

/// What a command waits for once written.
enum PendingReply {
    /// One reply, handed to the caller.
    case reply(EventLoopPromise<RedisValue>)
    /// One reply nobody waits for (fire-and-report publishes); error replies are counted.
    case discard
    /// `count` confirmations of a (un)subscribe command (`subscribe`, `sunsubscribe`, …).
    case confirmations(word: String, remaining: Int, promise: EventLoopPromise<Void>?)

    func fail(_ error: RedisError) {
        switch self {
        case .reply(let promise): promise.fail(error)
        case .discard: break
        case .confirmations(_, _, let promise): promise?.fail(error)
        }
    }
}

/// The part of a connection shared between callers on any thread and the channel handler:
/// commands are encoded into one outbound buffer under a lock, and the event loop takes the
/// whole buffer at once (one write and one flush per batch, however many threads submitted).
final class RedisConnectionShared: Sendable {
    struct Outbox {
        var buffer: ByteBuffer
        var entries: [PendingReply] = []
        var drainScheduled = false
        var closed = false
    }

    let outbox: Mutex<Outbox>
    /// Commands submitted and not yet answered (or failed).
    let inFlight = Atomic<Int>(0)
    let maxPending: Int
    let maxOutboundBytes: Int

    init(allocator: ByteBufferAllocator, maxPending: Int, maxOutboundBytes: Int) {
        outbox = Mutex(Outbox(buffer: allocator.buffer(capacity: 4096)))
        self.maxPending = maxPending
        self.maxOutboundBytes = maxOutboundBytes
    }
}

/// Decodes replies with hiredis's reader and matches them, in order, to the commands written.
/// Lives on the channel's event loop; everything here runs there.
final class RedisChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var reply: PendingReply
        var deadline: NIODeadline
    }

    private static let confirmationWords: Set<String> = [
        "subscribe", "unsubscribe", "ssubscribe", "sunsubscribe", "psubscribe", "punsubscribe",
    ]

    private let shared: RedisConnectionShared
    private let reader: RESPReader
    private let onMessage: (@Sendable (RedisPubSubMessage) -> Void)?
    private let onDiscardedError: (@Sendable (String) -> Void)?
    private let onUnsolicitedUnsubscribe: (@Sendable (RedisPubSubMessage.Kind, String) -> Void)?
    private let logger: Logger
    private var pending = CircularBuffer<Pending>(initialCapacity: 64)
    private var pubSubMode = false
    private var timeoutTask: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private var failure: RedisError?

    init(
        shared: RedisConnectionShared, logger: Logger, onMessage: (@Sendable (RedisPubSubMessage) -> Void)?,
        onDiscardedError: (@Sendable (String) -> Void)?,
        onUnsolicitedUnsubscribe: (@Sendable (RedisPubSubMessage.Kind, String) -> Void)?
    ) throws(RedisError) {
        self.onUnsolicitedUnsubscribe = onUnsolicitedUnsubscribe
        self.shared = shared
        self.reader = try RESPReader()
        self.onMessage = onMessage
        self.onDiscardedError = onDiscardedError
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        failAll(RedisError(.connectionClosed, "the connection was closed"))
    }

    /// Takes the outbox and writes it: called on the event loop after a submission.
    func drain() {
        let (buffer, entries) = shared.outbox.withLock { outbox -> (ByteBuffer?, [PendingReply]) in
            outbox.drainScheduled = false
            guard !outbox.closed, outbox.buffer.readableBytes > 0 else { return (nil, []) }
            let buffer = outbox.buffer
            let entries = outbox.entries
            outbox.buffer = ByteBuffer()
            outbox.entries = []
            outbox.entries.reserveCapacity(entries.count)
            return (buffer, entries)
        }
        guard let buffer, let context else { return }
        let deadline = NIODeadline.now() + TimeAmount(commandTimeout)
        for entry in entries {
            if case .confirmations = entry { pubSubMode = true }
            pending.append(Pending(reply: entry, deadline: deadline))
        }
        armTimer(context: context)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    var commandTimeout: Duration = .seconds(5)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        do {
            try reader.feed(buffer)
            while let reply = try reader.next(pubSubMode: pubSubMode) {
                switch reply {
                case .message(let message):
                    onMessage?(message)
                case .value(let value):
                    handle(value)
                }
            }
        } catch {
            logger.error("redis: bad reply, closing the connection", metadata: ["error": "\(error)"])
            fail(error, context: context)
        }
    }

    /// Matches one reply to the oldest command. A command stops counting as pending before
    /// its caller hears back, so a caller that sends again at once finds the room it left.
    private func handle(_ value: RedisValue) {
        if pubSubMode, case .array(let items) = value, let word = items.first?.string,
            Self.confirmationWords.contains(word)
        {
            guard var head = pending.first, case .confirmations(let expected, let remaining, let promise) = head.reply,
                expected == word
            else {
                // Unsolicited: Redis Cluster sends `sunsubscribe` when a slot moves away.
                logger.debug("redis: unsolicited pub/sub reply", metadata: ["reply": "\(value)"])
                if let channel = items.dropFirst().first?.string {
                    switch word {
                    case "unsubscribe": onUnsolicitedUnsubscribe?(.channel, channel)
                    case "sunsubscribe": onUnsolicitedUnsubscribe?(.shard, channel)
                    case "punsubscribe": onUnsolicitedUnsubscribe?(.pattern, channel)
                    default: break
                    }
                }
                return
            }
            if remaining > 1 {
                head.reply = .confirmations(word: expected, remaining: remaining - 1, promise: promise)
                pending[pending.startIndex] = head
                return
            }
            pending.removeFirst()
            shared.inFlight.subtract(1, ordering: .relaxed)
            promise?.succeed()
            return
        }
        guard let head = pending.popFirst() else {
            logger.warning("redis: a reply arrived with no command waiting", metadata: ["reply": "\(value)"])
            return
        }
        shared.inFlight.subtract(1, ordering: .relaxed)
        switch head.reply {
        case .reply(let promise):
            if case .error(let message) = value {
                promise.fail(RedisError(.server, message))
            } else {
                promise.succeed(value)
            }
        case .discard:
            if case .error(let message) = value { onDiscardedError?(message) }
        case .confirmations(_, _, let promise):
            // An error (or anything else) in place of the confirmations ends the command.
            if case .error(let message) = value {
                promise?.fail(RedisError(.server, message))
            } else {
                promise?.fail(RedisError(.protocolError, "unexpected reply \(value) to a subscription command"))
            }
        }
    }

    private func armTimer(context: ChannelHandlerContext) {
        guard timeoutTask == nil, let head = pending.first else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.scheduleTask(deadline: head.deadline) {
            let (handler, context) = loopBound.value
            handler.timerFired(context: context)
        }
    }

    private func timerFired(context: ChannelHandlerContext) {
        timeoutTask = nil
        guard let head = pending.first else { return }
        if head.deadline <= .now() {
            logger.warning("redis: a reply did not come within the command timeout; closing the connection")
            fail(RedisError(.timeout, "no reply within \(commandTimeout)"), context: context)
        } else {
            armTimer(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(failure ?? RedisError(.connectionClosed, "the connection was closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let redisError = (error as? RedisError) ?? RedisError(.connectionClosed, "\(error)")
        logger.debug("redis: connection error", metadata: ["error": "\(error)"])
        fail(redisError, context: context)
    }

    private func fail(_ error: RedisError, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        failAll(error)
        context.close(promise: nil)
    }

    /// Closes the outbox and fails every command written or waiting to be written.
    private func failAll(_ error: RedisError) {
        timeoutTask?.cancel()
        timeoutTask = nil
        let queued = shared.outbox.withLock { outbox -> [PendingReply] in
            outbox.closed = true
            defer { outbox.entries = [] }
            return outbox.entries
        }
        let written = pending
        pending.removeAll()
        let count = queued.count + written.count
        if count > 0 { shared.inFlight.subtract(count, ordering: .relaxed) }
        for entry in written { entry.reply.fail(error) }
        for entry in queued { entry.fail(error) }
    }
}
