import Foundation
import Logging
import NIOCore
import NIOPosix
import RedisBus
import Synchronization
import Testing

/// Integration tests run against the server named by `REDIS_URL` (CI always sets it:
/// `eval "$(scripts/redis start)"`) and, where they change server settings or stop it,
/// against private servers they start with `scripts/redis start --new`.
enum TestRedis {
    static var url: String? {
        guard let url = ProcessInfo.processInfo.environment["REDIS_URL"], !url.isEmpty else { return nil }
        return url
    }

    static var configuration: RedisConfiguration {
        get throws { try RedisConfiguration(url: url ?? "") }
    }

    static let logger: Logger = {
        var logger = Logger(label: "redis-tests")
        logger.logLevel = ProcessInfo.processInfo.environment["REDIS_TEST_LOG"] == nil ? .critical : .debug
        return logger
    }()

    static var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.next() }

    static func connect(_ configuration: RedisConfiguration, hooks: RedisConnection.Hooks = .init()) async throws -> RedisConnection {
        try await RedisConnection.connect(to: configuration, on: eventLoop, hooks: hooks, logger: logger)
    }

    /// A name no other test (or earlier run) uses.
    static func unique(_ prefix: String) -> String { "\(prefix):\(UUID().uuidString)" }
}

extension Trait where Self == ConditionTrait {
    /// Skips (with the reason shown) when no Redis is configured.
    static var requiresRedis: Self {
        .enabled(if: TestRedis.url != nil, "REDIS_URL is not set: start one with eval \"$(scripts/redis start)\"")
    }
}

/// Waits for a condition, checking every 10 ms, up to a deadline.
func eventually(_ timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Runs `client` as a service for the duration of `body`.
func withRunningClient<T: Sendable>(_ client: RedisClient, _ body: () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await client.run() }
        do {
            let result = try await body()
            client.shutDown()
            try await group.waitForAll()
            return result
        } catch {
            client.shutDown()
            try? await group.waitForAll()
            throw error
        }
    }
}

/// Collects values from handlers running on other threads.
final class Inbox<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
    var count: Int { values.withLock { $0.count } }
}


