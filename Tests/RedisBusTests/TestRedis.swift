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

/// Runs `body` with a private server, stopped afterwards whatever happens.
func withPrivateRedis(tls: Bool = false, _ body: (PrivateRedis) async throws -> Void) async throws {
    let server = try await PrivateRedis.start(tls: tls)
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

/// A private redis-server made by `scripts/redis start --new`, stopped (and its directory
/// removed) by ``stop()``.
final class PrivateRedis: Sendable {
    let directory: String
    let url: String
    let tlsURL: String?

    static let script: String = {
        // Tests/RedisBusTests/TestRedis.swift → repository root
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/redis").path
    }()

    /// Starts one (the script runs on NIO's thread pool, never on a Swift concurrency thread).
    static func start(tls: Bool = false) async throws -> PrivateRedis {
        let output = try await run(["start", "--new"] + (tls ? ["--tls"] : []))
        do {
            return try PrivateRedis(exports: output)
        } catch {
            // never leave a server running that nobody will stop
            for line in output.split(separator: "\n") where line.hasPrefix("export SWITCHBOARD_REDIS_DIR=") {
                let directory = line.dropFirst("export SWITCHBOARD_REDIS_DIR=".count).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
                _ = try? await run(["stop", directory])
            }
            throw error
        }
    }

    private init(exports output: String) throws {
        var exports: [String: String] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("export ") {
            let pair = line.dropFirst("export ".count).split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            exports[String(pair[0])] = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        }
        guard let directory = exports["SWITCHBOARD_REDIS_DIR"], let url = exports["REDIS_URL"] else {
            throw ScriptError(message: "scripts/redis start printed \(output)")
        }
        self.directory = directory
        self.url = url
        self.tlsURL = exports["REDIS_TLS_URL"]
    }

    func down() async throws { try await Self.run(["down", directory]) }
    func up() async throws { try await Self.run(["up", directory]) }
    func stop() async { _ = try? await Self.run(["stop", directory]) }

    @discardableResult
    static func run(_ arguments: [String]) async throws -> String {
        try await NIOThreadPool.singleton.runIfActive { try runBlocking(arguments) }
    }

    struct ScriptError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    private static func runBlocking(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SWITCHBOARD_REDIS_DIR"] = nil
        process.environment = environment
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ScriptError(message: "scripts/redis \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// Collects values from handlers running on other threads.
final class Inbox<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
    var count: Int { values.withLock { $0.count } }
}


