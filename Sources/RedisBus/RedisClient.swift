import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A command connection plus a subscriber connection to one Redis, kept up by ``run()`` (a
/// swift-service-lifecycle `Service`): when either connection drops, both are closed, and
/// reconnected with exponential backoff and jitter; every subscription is sent again before
/// the client counts as available. Commands sent while it is down fail at once.
///
/// Metrics (swift-metrics API; names overridable in ``RedisClient/Metrics``):
/// `switchboard_bus_reconnects_total` (connections re-established after a loss),
/// `switchboard_bus_connection_losses_total{connection=command|subscriber}`,
/// `switchboard_bus_redis_up` (1 while both connections are up and subscribed, else 0),
/// `switchboard_bus_publish_failures_total` (error replies to ``sendAndForget(_:)``).
public final class RedisClient: Service, Sendable {
    /// Reconnect delays: `min(maximum, initial × 2^attempt)`, each scaled by a random factor
    /// in `1 - jitter ... 1`.
    public struct Backoff: Sendable {
        public var initial: Duration
        public var maximum: Duration
        public var jitter: Double

        public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5), jitter: Double = 0.5) {
            self.initial = initial
            self.maximum = maximum
            self.jitter = min(max(jitter, 0), 1)
        }

        /// The delay before reconnect attempt `attempt` (0 for the first retry).
        public func delay(attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
            let factor = Double(1 << min(attempt, 20))
            let base = min(initial.seconds * factor, maximum.seconds)
            let scaled = base * (1 - jitter * random)
            return .milliseconds(Int64(scaled * 1000))
        }
    }

    /// Metric labels.
    public struct Metrics: Sendable {
        public var reconnects = "switchboard_bus_reconnects_total"
        public var connectionLosses = "switchboard_bus_connection_losses_total"
        public var up = "switchboard_bus_redis_up"
        /// Error replies to fire-and-forget commands (publishes).
        public var publishFailures = "switchboard_bus_publish_failures_total"
        public init() {}
    }

    /// Counts since the client was made (the same facts as the metrics, for logs and tests).
    public struct Statistics: Sendable, Equatable {
        /// Successful connections (both connections up and subscribed), the first included.
        public var connects = 0
        /// Times the command connection was lost.
        public var commandLosses = 0
        /// Times the subscriber connection was lost (e.g. Redis closed it for exceeding
        /// `client-output-buffer-limit pubsub`).
        public var subscriberLosses = 0
    }

    private struct SubscriptionKey: Hashable {
        var kind: RedisPubSubMessage.Kind
        var channel: String
    }

    private struct State {
        var command: RedisConnection?
        var subscriber: RedisConnection?
        var available = false
        var shuttingDown = false
        var nextID = 0
        var subscriptions: [SubscriptionKey: [Int: @Sendable (RedisPubSubMessage) -> Void]] = [:]
        var availabilityWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var sleepers: [Int: CheckedContinuation<Void, Never>] = [:]
        var statistics = Statistics()
    }

    public let configuration: RedisConfiguration
    public let backoff: Backoff
    /// The loop both connections and every subscription handler run on.
    public let eventLoop: any EventLoop
    private let logger: Logger
    private let state = Mutex(State())
    private let reconnects: Counter
    private let commandLosses: Counter
    private let subscriberLosses: Counter
    private let upGauge: Gauge
    private let publishFailures: Counter
    /// Error replies to fire-and-forget commands (e.g. a failed `PUBLISH`).
    public let onDiscardedError: (@Sendable (String) -> Void)?

    /// How often both connections are sent a `PING` while up. A reply missing for the
    /// command timeout closes that connection (and so starts a reconnect), which is how a
    /// half-open TCP connection — a peer gone without a FIN or RST — is noticed on the
    /// subscriber connection, where nothing else is ever sent. nil: no health checks.
    public let healthCheckInterval: Duration?

    /// - Parameter healthCheckInterval: see ``healthCheckInterval``.
    public init(
        configuration: RedisConfiguration, backoff: Backoff = Backoff(), healthCheckInterval: Duration? = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, metrics: Metrics = Metrics(),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        logger: Logger, onDiscardedError: (@Sendable (String) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.backoff = backoff
        self.healthCheckInterval = healthCheckInterval
        self.eventLoop = eventLoopGroup.next()
        self.logger = logger
        self.onDiscardedError = onDiscardedError
        reconnects = Counter(label: metrics.reconnects, factory: metricsFactory)
        commandLosses = Counter(label: metrics.connectionLosses, dimensions: [("connection", "command")], factory: metricsFactory)
        subscriberLosses = Counter(label: metrics.connectionLosses, dimensions: [("connection", "subscriber")], factory: metricsFactory)
        upGauge = Gauge(label: metrics.up, factory: metricsFactory)
        publishFailures = Counter(label: metrics.publishFailures, factory: metricsFactory)
        upGauge.record(0)
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Both connections are up and every subscription is confirmed.
    public var isAvailable: Bool { state.withLock { $0.available } }

    /// Waits until ``isAvailable`` or the timeout; returns whether it became available.
    public func waitUntilAvailable(timeout: Duration) async -> Bool {
        if isAvailable { return true }
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        let timer = eventLoop.scheduleTask(in: TimeAmount(timeout)) { [weak self] in self?.resumeWaiter(id) }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if state.available { return true }
                    state.availabilityWaiters[id] = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            self.resumeWaiter(id)
        }
        timer.cancel()
        return isAvailable
    }

    private func resumeWaiter(_ id: Int) {
        state.withLock { $0.availabilityWaiters.removeValue(forKey: id) }?.resume()
    }

    // MARK: Commands

    /// Sends a command on the command connection; fails at once while disconnected.
    public func send(_ args: [RedisArgument]) -> EventLoopFuture<RedisValue> {
        guard let connection = state.withLock({ $0.command }) else {
            return eventLoop.makeFailedFuture(RedisError(.connectionClosed, "not connected to Redis"))
        }
        return connection.send(args)
    }

    /// Sends several commands in one write.
    public func sendBatch(_ commands: [[RedisArgument]]) -> [EventLoopFuture<RedisValue>] {
        guard let connection = state.withLock({ $0.command }) else {
            let error = RedisError(.connectionClosed, "not connected to Redis")
            return commands.map { _ in eventLoop.makeFailedFuture(error) }
        }
        return connection.sendBatch(commands)
    }

    /// Sends a command and waits for its reply.
    public func execute(_ args: [RedisArgument]) async throws -> RedisValue {
        try await send(args).get()
    }

    /// Fire and report (see ``RedisConnection/sendAndForget(_:)``): false at once while
    /// disconnected or when the connection's bounds are reached.
    @discardableResult
    public func sendAndForget(_ args: [RedisArgument]) -> Bool {
        guard let connection = state.withLock({ $0.command }) else { return false }
        return connection.sendAndForget(args)
    }

    // MARK: Subscriptions

    /// Registers `handler` for messages on `channel` (called on ``eventLoop``). The
    /// subscription outlives reconnects until the returned token is cancelled.
    public func subscribe(
        _ channel: String, kind: RedisPubSubMessage.Kind = .channel, _ handler: @escaping @Sendable (RedisPubSubMessage) -> Void
    ) -> RedisSubscription {
        let key = SubscriptionKey(kind: kind, channel: channel)
        let (id, connection, isFirst) = state.withLock { state -> (Int, RedisConnection?, Bool) in
            state.nextID += 1
            let isFirst = state.subscriptions[key] == nil
            state.subscriptions[key, default: [:]][state.nextID] = handler
            return (state.nextID, state.subscriber, isFirst)
        }
        if isFirst, let connection {
            connection.subscribe([channel], kind: kind).whenFailure { [logger] error in
                logger.warning("redis: subscribe failed", metadata: ["channel": "\(channel)", "error": "\(error)"])
                connection.close()  // the reconnect subscribes again
            }
        }
        return RedisSubscription { [weak self] in self?.unsubscribe(key, id: id) }
    }

    private func unsubscribe(_ key: SubscriptionKey, id: Int) {
        let connection = state.withLock { state -> RedisConnection? in
            guard state.subscriptions[key]?.removeValue(forKey: id) != nil else { return nil }
            guard state.subscriptions[key]?.isEmpty ?? false else { return nil }
            state.subscriptions[key] = nil
            return state.subscriber
        }
        connection?.unsubscribe([key.channel], kind: key.kind).whenFailure { _ in }
    }

    /// Redis dropped a subscription we still want (a moved cluster slot): ask again; when
    /// that fails, the subscriber connection is closed and the reconnect subscribes again.
    private func resubscribe(_ kind: RedisPubSubMessage.Kind, _ channel: String) {
        let connection = state.withLock { state -> RedisConnection? in
            state.subscriptions[SubscriptionKey(kind: kind, channel: channel)] == nil ? nil : state.subscriber
        }
        guard let connection else { return }
        logger.info("redis: subscription ended by the server; subscribing again", metadata: ["channel": "\(channel)"])
        connection.subscribe([channel], kind: kind).whenFailure { _ in connection.close() }
    }

    private func dispatch(_ message: RedisPubSubMessage) {
        let key = SubscriptionKey(kind: message.kind, channel: message.pattern ?? message.channel)
        let handlers = state.withLock { $0.subscriptions[key] }
        guard let handlers else { return }
        for handler in handlers.values { handler(message) }
    }

    // MARK: Service

    /// Connects, and reconnects after every loss, until graceful shutdown or cancellation.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.connectionLoop()
        } onGracefulShutdown: {
            self.shutDown()
        }
        shutDown()
    }

    private var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    private func connectionLoop() async {
        var attempt = 0
        var lostBefore = false
        while !Task.isCancelled, !isShuttingDown {
            do {
                let (command, subscriber) = try await connectAndSubscribe()
                attempt = 0
                if lostBefore {
                    reconnects.increment()
                    logger.info("redis: reconnected", metadata: ["redis": "\(configuration)"])
                } else {
                    logger.info("redis: connected", metadata: ["redis": "\(configuration)"])
                }
                let lost = await waitForLoss(command, subscriber)
                lostBefore = true
                markDown(command, subscriber)
                if Task.isCancelled || isShuttingDown { break }
                (lost === command ? commandLosses : subscriberLosses).increment()
                state.withLock { state in
                    if lost === command { state.statistics.commandLosses += 1 } else { state.statistics.subscriberLosses += 1 }
                }
                logger.warning("redis: connection lost", metadata: ["connection": "\(lost === command ? "command" : "subscriber")"])
            } catch {
                if Task.isCancelled || isShuttingDown { break }
                logger.warning("redis: connect failed", metadata: ["redis": "\(configuration)", "error": "\(error)"])
            }
            let delay = backoff.delay(attempt: attempt)
            attempt += 1
            await sleep(delay)
        }
    }

    private func connectAndSubscribe() async throws -> (RedisConnection, RedisConnection) {
        let command = try await RedisConnection.connect(
            to: configuration, on: eventLoop, hooks: .init(onDiscardedError: { [weak self] message in self?.discardedError(message) }), logger: logger)
        do {
            var subscriberConfiguration = configuration
            subscriberConfiguration.clientName = configuration.clientName.map { "\($0)-sub" }
            let subscriber = try await RedisConnection.connect(
                to: subscriberConfiguration, on: eventLoop,
                hooks: .init(
                    onMessage: { [weak self] message in self?.dispatch(message) },
                    onUnsolicitedUnsubscribe: { [weak self] kind, channel in self?.resubscribe(kind, channel) }),
                logger: logger)
            // Publish the connections and snapshot the subscriptions in one step: a subscribe()
            // after this sees the new subscriber and sends its own SUBSCRIBE.
            let keys = state.withLock { state -> [SubscriptionKey] in
                state.command = command
                state.subscriber = subscriber
                return Array(state.subscriptions.keys)
            }
            do {
                let grouped = Dictionary(grouping: keys, by: \.kind)
                var confirmations: [EventLoopFuture<Void>] = []
                for (kind, group) in grouped {
                    // a few hundred channels per command keeps each command small
                    for start in stride(from: 0, to: group.count, by: 500) {
                        let slice = group[start..<min(start + 500, group.count)].map(\.channel)
                        confirmations.append(subscriber.subscribe(slice, kind: kind))
                    }
                }
                try await EventLoopFuture.andAllSucceed(confirmations, on: eventLoop).get()
            } catch {
                markDown(command, subscriber)
                throw error
            }
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
                guard state.command === command, state.subscriber === subscriber, !state.shuttingDown else { return nil }
                state.available = true
                state.statistics.connects += 1
                defer { state.availabilityWaiters = [:] }
                return Array(state.availabilityWaiters.values)
            }
            guard let waiters else {
                // shut down (or lost) while subscribing
                markDown(command, subscriber)
                throw RedisError(.connectionClosed, "shut down while connecting")
            }
            upGauge.record(1)
            for waiter in waiters { waiter.resume() }
            return (command, subscriber)
        } catch {
            command.close()
            throw error
        }
    }

    /// Sleeps for the backoff delay; graceful shutdown or cancellation ends it early.
    private func sleep(_ delay: Duration) async {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        let timer = eventLoop.scheduleTask(in: TimeAmount(delay)) { [weak self] in self?.resumeSleeper(id) }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = state.withLock { state -> Bool in
                    if state.shuttingDown { return true }
                    state.sleepers[id] = continuation
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            self.resumeSleeper(id)
        }
        timer.cancel()
    }

    private func resumeSleeper(_ id: Int) {
        state.withLock { $0.sleepers.removeValue(forKey: id) }?.resume()
    }

    private func discardedError(_ message: String) {
        publishFailures.increment()
        logger.warning("redis: a fire-and-forget command failed", metadata: ["error": "\(message)"])
        onDiscardedError?(message)
    }

    /// Waits until either connection closes (or the task is cancelled, which closes both).
    private func waitForLoss(_ command: RedisConnection, _ subscriber: RedisConnection) async -> RedisConnection {
        let promise = eventLoop.makePromise(of: Int.self)
        command.closeFuture.whenComplete { _ in promise.succeed(0) }
        subscriber.closeFuture.whenComplete { _ in promise.succeed(1) }
        let healthCheck = healthCheckInterval.map { interval in
            eventLoop.scheduleRepeatedTask(initialDelay: TimeAmount(interval), delay: TimeAmount(interval)) { _ in
                // the replies do not matter; a missing one trips the command timeout
                _ = command.send(["PING"])
                _ = subscriber.send(["PING"])
            }
        }
        defer { healthCheck?.cancel() }
        let which = await withTaskCancellationHandler {
            (try? await promise.futureResult.get()) ?? 0
        } onCancel: {
            command.close()
            subscriber.close()
        }
        return which == 0 ? command : subscriber
    }

    private func markDown(_ command: RedisConnection, _ subscriber: RedisConnection) {
        state.withLock { state in
            if state.command === command { state.command = nil }
            if state.subscriber === subscriber { state.subscriber = nil }
            state.available = false
        }
        upGauge.record(0)
        command.close()
        subscriber.close()
    }

    /// Closes both connections; ``run()`` connects again at once (after the first backoff
    /// step) and resubscribes. For a caller that finds the connection wedged although its
    /// sockets are open (e.g. ``RedisBus/isAvailable()`` failing again and again).
    public func reconnect() {
        let (command, subscriber) = state.withLock { ($0.command, $0.subscriber) }
        command?.close()
        subscriber?.close()
    }

    /// Stops reconnecting and closes both connections (graceful shutdown; also usable
    /// directly, e.g. by tests).
    public func shutDown() {
        let (command, subscriber, waiters) = state.withLock { state -> (RedisConnection?, RedisConnection?, [CheckedContinuation<Void, Never>]) in
            state.shuttingDown = true
            state.available = false
            defer {
                state.command = nil
                state.subscriber = nil
                state.sleepers = [:]
                state.availabilityWaiters = [:]
            }
            return (state.command, state.subscriber, Array(state.sleepers.values) + Array(state.availabilityWaiters.values))
        }
        upGauge.record(0)
        command?.close()
        subscriber?.close()
        for waiter in waiters { waiter.resume() }
    }
}

/// Ends a ``RedisClient`` subscription.
public final class RedisSubscription: Sendable {
    private let action: Mutex<(@Sendable () -> Void)?>

    init(_ action: @escaping @Sendable () -> Void) { self.action = Mutex(action) }

    /// Unsubscribes (once; later calls do nothing).
    public func cancel() {
        let action = self.action.withLock { action -> (@Sendable () -> Void)? in
            defer { action = nil }
            return action
        }
        action?()
    }
}
