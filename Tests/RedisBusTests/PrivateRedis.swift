import Foundation
import NIOPosix

// Also compiled into IntegrationTests (Tests/IntegrationTests/Support/PrivateRedis.swift is a
// symbolic link to this file).

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

