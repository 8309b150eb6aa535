import Foundation
import Logging
import PostgresStore
import Synchronization
import Testing

/// A private PostgreSQL server made by `scripts/postgres start --new` for one test: one the
/// test may stop and start again (a real server process going away), or one with TLS on.
/// Unlike `DATABASE_URL`'s server, it needs nothing from the environment: `scripts/postgres`
/// finds PostgreSQL's server binaries, or installs them when run as root (as in CI).
struct PostgresServer: Sendable {
    /// `postgres://switchboard:switchboard@127.0.0.1:PORT/switchboard`, no query.
    let url: String
    /// The server's directory (`SWITCHBOARD_PG_DIR`).
    let directory: String
    /// The CA certificate of a `--ssl` server (`SWITCHBOARD_PG_CA`).
    let caFile: String?

    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let script = repositoryRoot.appendingPathComponent("scripts/postgres").path

    /// Whether `scripts/postgres` can start a server here: PostgreSQL's server binaries are
    /// installed, or we are root and it installs them. When not, the suite is skipped (and
    /// says so).
    static var canStart: Bool {
        if geteuid() == 0 || serverBinariesInstalled { return true }
        print("PostgreSQL server tests skipped: no PostgreSQL server binaries (pg_ctl) and not root to install them")
        return false
    }

    private static var serverBinariesInstalled: Bool {
        let files = FileManager.default
        if let bindir = ProcessInfo.processInfo.environment["SWITCHBOARD_PG_BINDIR"] {
            return files.isExecutableFile(atPath: bindir + "/pg_ctl")
        }
        let versions = (try? files.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        if versions.contains(where: { files.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/pg_ctl") }) { return true }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return path.split(separator: ":").contains { files.isExecutableFile(atPath: "\($0)/pg_ctl") }
    }

    /// Starts a new server (`options`: `--ssl`, `--durable`), runs `body`, and removes the
    /// server whatever happens.
    static func with<T: Sendable>(_ options: [String] = [], _ body: @Sendable (PostgresServer) async throws -> T) async throws -> T {
        let server = try await start(options)
        do {
            let value = try await body(server)
            try await server.stop()
            return value
        } catch {
            if Task.isCancelled {
                // Out of time (the suite's time limit): remove the server without waiting.
                Self.launch(["stop", server.directory])
            } else {
                try? await server.stop()
            }
            throw error
        }
    }

    static func start(_ options: [String] = []) async throws -> PostgresServer {
        let output = try await Self.run(["start", "--new"] + options)
        var exports: [String: String] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("export ") {
            let assignment = line.dropFirst("export ".count)
            guard let equals = assignment.firstIndex(of: "=") else { continue }
            var value = assignment[assignment.index(after: equals)...]
            if value.hasPrefix("'"), value.hasSuffix("'"), value.count >= 2 { value = value.dropFirst().dropLast() }
            exports[String(assignment[..<equals])] = String(value)
        }
        guard let url = exports["DATABASE_URL"], let directory = exports["SWITCHBOARD_PG_DIR"] else {
            throw TestFailure("scripts/postgres start printed no DATABASE_URL/SWITCHBOARD_PG_DIR: \(output)")
        }
        return PostgresServer(url: url, directory: directory, caFile: exports["SWITCHBOARD_PG_CA"])
    }

    /// Stops the server process (`pg_ctl stop -m fast`), keeping its data and port.
    func down() async throws { _ = try await Self.run(["down", directory]) }

    /// Starts it again on the same port.
    func up() async throws { _ = try await Self.run(["up", directory]) }

    /// Stops it and removes its directory.
    func stop() async throws { _ = try await Self.run(["stop", directory]) }

    /// `url` with a query, e.g. `sslmode=require`.
    func url(_ query: String) -> String { query.isEmpty ? url : "\(url)?\(query)" }

    /// A store on `url` whose pool runs while `body` does.
    static func withStore<T: Sendable>(
        _ url: String, settings: PostgresSettings = PostgresSettings(), _ body: @Sendable (PostgresStore) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test.postgres-server")
        logger.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        let store = try PostgresStore(url: url, settings: settings, logger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await store.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(store)
        }
    }

    /// Applies the repository's migrations on `url`. A node started with `migrate` does so
    /// too, but it already answers HTTP while it does; migrating first spares the test that race.
    static func migrate(_ url: String) async throws {
        try await withStore(url) { store in
            let migrations = try Migrator.load(from: PostgresTestDatabase.migrationsDirectory)
            _ = try await Migrator(client: store.client, logger: Logger(label: "test.migrate")).migrate(migrations)
        }
    }

    /// Runs `scripts/postgres` and returns its stdout; a failure carries its stderr. The
    /// output goes to files, not pipes, so a server it leaves running cannot hold them open.
    private static func run(_ arguments: [String]) async throws -> String {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("pg-script-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let stdoutURL = scratch.appendingPathComponent("stdout")
        let stderrURL = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let stdout = try FileHandle(forWritingTo: stdoutURL)
        let stderr = try FileHandle(forWritingTo: stderrURL)
        defer {
            try? stdout.close()
            try? stderr.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["bash", script] + arguments
        process.currentDirectoryURL = repositoryRoot
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = stderr
        // Cancellable, so a suite's time limit ends the wait; the script then runs on alone
        // (a `start` cancelled half-way leaves its server behind: its directory is unknown).
        let exit = ExitWaiter()
        let status = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                exit.wait(continuation)
                process.terminationHandler = { exit.finish(.success($0.terminationStatus)) }
                do {
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    exit.finish(.failure(error))
                }
            }
        } onCancel: {
            exit.finish(.failure(CancellationError()))
        }
        let output = (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let errors = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
            throw TestFailure("scripts/postgres \(arguments.joined(separator: " ")) exited \(status): \(errors)")
        }
        return output
    }

    /// Starts `scripts/postgres` and does not wait for it.
    private static func launch(_ arguments: [String]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["bash", script] + arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
    }
}

/// Hands a process's exit status to one waiting continuation, once, whichever comes first:
/// the exit, a failure to start, or cancellation.
private final class ExitWaiter: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Int32, any Error>?
        var result: Result<Int32, any Error>?
    }

    private let state = Mutex(State())

    func wait(_ continuation: CheckedContinuation<Int32, any Error>) {
        let result = state.withLock { state -> Result<Int32, any Error>? in
            if state.result == nil { state.continuation = continuation }
            return state.result
        }
        if let result { continuation.resume(with: result) }
    }

    func finish(_ result: Result<Int32, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<Int32, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
    }
}
