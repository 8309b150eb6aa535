import Logging
import Metrics
import NIOCore
import Signaling
import Synchronization

/// The cluster's ``MessageBus``: Redis pub/sub through a ``RedisClient``.
///
/// Channel names (hash tags keep each topic in one slot, so the same names work with
/// Redis Cluster's sharded pub/sub):
/// - `.node(id)` → `sb:{node:<id>}`
/// - `.control` → `sb:{control}`
/// - readiness ping of node `id` → `sb:{node:<id>}:ping` (same slot as the node's channel,
///   so a sharded deployment pings the very shard that carries the node's messages)
///
/// `sb` is ``Configuration/prefix``. Payloads are ``BusMessage`` in its binary codec
/// (`BusMessage+Codec.swift`). With ``Configuration/sharded`` the bus uses
/// `SPUBLISH`/`SSUBSCRIBE` (Redis ≥ 7) instead of `PUBLISH`/`SUBSCRIBE`.
public final class RedisBus: MessageBus {
    public struct Configuration: Sendable {
        /// This node's id: names the ping channel used by ``isAvailable()``.
        public var nodeID: String
        public var prefix: String
        /// `SPUBLISH`/`SSUBSCRIBE` instead of `PUBLISH`/`SUBSCRIBE`.
        public var sharded: Bool
        /// How long ``isAvailable()`` waits for its ping to come back.
        public var pingTimeout: Duration
        /// Label of the counter of publishes refused or answered with an error.
        public var publishFailuresMetric: String

        public init(
            nodeID: String, prefix: String = "sb", sharded: Bool = false, pingTimeout: Duration = .seconds(2),
            publishFailuresMetric: String = "switchboard_bus_publish_failures_total"
        ) {
            self.nodeID = nodeID
            self.prefix = prefix
            self.sharded = sharded
            self.pingTimeout = pingTimeout
            self.publishFailuresMetric = publishFailuresMetric
        }
    }

    public let client: RedisClient
    public let configuration: Configuration
    private let logger: Logger
    private let publishFailures: Counter
    private let publishCommand: RedisArgument
    private let pingChannel: String
    private let pings = Mutex<(next: UInt64, waiters: [UInt64: CheckedContinuation<Bool, Never>])>(
        (UInt64.random(in: 0...(UInt64.max >> 1)), [:]))
    private let pingSubscription = Mutex<RedisSubscription?>(nil)

    /// The channel a topic travels on.
    public static func channel(for topic: BusTopic, prefix: String = "sb") -> String {
        switch topic {
        case .node(let id): "\(prefix):{node:\(id)}"
        case .control: "\(prefix):{control}"
        }
    }

    /// The readiness ping channel of a node.
    public static func pingChannel(nodeID: String, prefix: String = "sb") -> String {
        channel(for: .node(nodeID), prefix: prefix) + ":ping"
    }

    /// `client` must be run (as a Service) by the caller. Publishes refused here and those
    /// Redis answers with an error (counted by the client) both count in
    /// `switchboard_bus_publish_failures_total`.
    public init(client: RedisClient, configuration: Configuration, metricsFactory: any MetricsFactory = MetricsSystem.factory, logger: Logger) {
        self.client = client
        self.configuration = configuration
        self.logger = logger
        publishFailures = Counter(label: configuration.publishFailuresMetric, factory: metricsFactory)
        publishCommand = configuration.sharded ? "SPUBLISH" : "PUBLISH"
        pingChannel = Self.pingChannel(nodeID: configuration.nodeID, prefix: configuration.prefix)
        let subscription = client.subscribe(pingChannel, kind: configuration.sharded ? .shard : .channel) { [weak self] message in
            self?.pingArrived(message.payload)
        }
        pingSubscription.withLock { $0 = subscription }
    }

    deinit {
        pingSubscription.withLock { $0 }?.cancel()
    }

    /// Encodes and queues the message; false at once when Redis is not connected or the
    /// command connection's bounds are reached. Never blocks, never awaits.
    @discardableResult
    public func publish(_ message: BusMessage, to topic: BusTopic) -> Bool {
        let channel = Self.channel(for: topic, prefix: configuration.prefix)
        let accepted = client.sendAndForget([publishCommand, RedisArgument(channel), RedisArgument(bytes: message.encoded())])
        if !accepted { publishFailures.increment() }
        return accepted
    }

    public func subscribe(_ topic: BusTopic, _ handler: @escaping @Sendable (BusMessage) -> Void) -> any BusSubscription {
        let channel = Self.channel(for: topic, prefix: configuration.prefix)
        let logger = self.logger
        let subscription = client.subscribe(channel, kind: configuration.sharded ? .shard : .channel) { message in
            do {
                handler(try BusMessage(decoding: message.payload))
            } catch {
                logger.warning("redis bus: undecodable message dropped", metadata: ["channel": "\(channel)", "error": "\(error)"])
            }
        }
        return Token(subscription)
    }

    /// A real round trip: publishes a nonce on this node's ping channel and waits (up to
    /// ``Configuration/pingTimeout``) for it to come back on the subscription, so a wedged
    /// subscriber connection is caught, not only a closed socket.
    public func isAvailable() async -> Bool {
        guard client.isAvailable else { return false }
        let nonce = pings.withLock { state -> UInt64 in
            state.next += 1
            return state.next
        }
        let timer = client.eventLoop.scheduleTask(in: TimeAmount(configuration.pingTimeout)) { [weak self] in
            self?.finishPing(nonce, false)
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                pings.withLock { $0.waiters[nonce] = continuation }
                let payload = RedisArgument("\(nonce)")
                if !client.sendAndForget([publishCommand, RedisArgument(pingChannel), payload]) {
                    finishPing(nonce, false)
                }
            }
        } onCancel: {
            self.finishPing(nonce, false)
        }
        timer.cancel()
        return result
    }

    private func pingArrived(_ payload: [UInt8]) {
        guard let nonce = UInt64(String(decoding: payload, as: UTF8.self)) else { return }
        finishPing(nonce, true)
    }

    private func finishPing(_ nonce: UInt64, _ result: Bool) {
        pings.withLock { $0.waiters.removeValue(forKey: nonce) }?.resume(returning: result)
    }

    private final class Token: BusSubscription {
        let subscription: RedisSubscription
        init(_ subscription: RedisSubscription) { self.subscription = subscription }
        func cancel() { subscription.cancel() }
    }
}
