import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `switchboard` executable run as a user runs it: a separate process, started in
/// an empty temporary directory, configured only by flags and `SWITCHBOARD_*` variables.
/// Tests that run nodes in-process from the repository root cannot see what this sees (a
/// file read from the working directory, a log line that is not JSON).
final class NodeProcess: Sendable {
    let process: Process
    /// The empty working directory; removed by ``stop()``.
    let directory: URL
    let stdoutFile: URL
    let stderrFile: URL

    /// The executable next to the test bundle (both are products of the same build), or
    /// `SWITCHBOARD_BINARY`.
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["SWITCHBOARD_BINARY"] { return URL(fileURLWithPath: path) }
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        // On Linux the test runner is `…/debug/switchboardPackageTests.xctest`.
        while !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("switchboard").path), directory.path != "/" {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("switchboard")
    }

    /// Starts `switchboard ARGUMENTS` with only `environment` (plus PATH and HOME).
    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-proc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.directory = directory
        stdoutFile = directory.appendingPathComponent(".stdout")
        stderrFile = directory.appendingPathComponent(".stderr")
        _ = FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.currentDirectoryURL = directory
        // The in-process TURN server on a free port, so tests never meet on 3478.
        var env = ["PATH": "/usr/bin:/bin", "HOME": directory.path, "SWITCHBOARD_TURN_PORT": "0"]
        env.merge(environment) { _, new in new }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        process.standardInput = FileHandle.nullDevice
        self.process = process
        try process.run()
    }

    var stdout: String { (try? String(contentsOf: stdoutFile, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }
    var stderr: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }
    /// Files the process left in its working directory (not counting its captured output).
    var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { !$0.hasPrefix(".std") }.sorted()
    }

    /// Waits for the process to exit; returns its status, or nil at the deadline.
    func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// SIGTERM, then waits for the exit status (SIGKILL after `timeout`).
    @discardableResult
    func terminate(timeout: Duration = .seconds(20)) async throws -> Int32? {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        if let status = try await waitForExit(timeout: timeout) { return status }
        kill(process.processIdentifier, SIGKILL)
        return try await waitForExit(timeout: .seconds(5))
    }

    /// Kills the process if it still runs and removes its directory (for `defer`).
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Polls `http://127.0.0.1:PORT/PATH` until it answers `status`.
    static func waitForHTTP(port: Int, path: String, status: Int = 200, timeout: Duration = .seconds(20), while alive: NodeProcess? = nil) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let alive, !alive.process.isRunning { return false }
            if (try? await HTTPProbe.get(port: port, path: path).status) == status { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// A loopback port free for TCP and UDP, for a process the test starts, picked below the
    /// kernel's ephemeral range (`ip_local_port_range`, 32768–60999 by default) like
    /// `scripts/free-port`: a port the kernel hands out for a bind to port 0 is free only until
    /// another socket's `connect()` takes it as its local port, and with tests running in
    /// parallel that happened before the node bound it. A counter from a random start keeps
    /// this process's picks apart.
    static func freePort() throws -> Int {
        let low = ((try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: \.isWhitespace).first).flatMap { Int($0) } ?? 0
        if low > 12_000 {
            let range = 10_000..<low
            for _ in 0..<500 {
                let port = range.lowerBound + nextPort.add(1, ordering: .relaxed).newValue % range.count
                if bindable(port, kind: Int32(SOCK_STREAM.rawValue)) && bindable(port, kind: Int32(SOCK_DGRAM.rawValue)) { return port }
            }
        }
        var address = sockaddr_in()
        guard bindable(0, kind: Int32(SOCK_STREAM.rawValue), bound: &address) else { throw TestFailure("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static let nextPort = Atomic<Int>(Int.random(in: 0..<20_000))

    private static func bindable(_ port: Int, kind: Int32) -> Bool {
        var address = sockaddr_in()
        return bindable(port, kind: kind, bound: &address)
    }

    /// Whether a socket of `kind` binds to 127.0.0.1:`port`; `bound` is the address it got.
    private static func bindable(_ port: Int, kind: Int32, bound address: inout sockaddr_in) -> Bool {
        let fd = socket(AF_INET, kind, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
    }
}

/// Another program run for a test (coturn's tools), its output captured.
final class ToolProcess: Sendable {
    let process: Process
    let outputFile: URL

    init(_ path: String, _ arguments: [String]) throws {
        outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-tool-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let handle = try FileHandle(forWritingTo: outputFile)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        self.process = process
        try process.run()
    }

    var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }

    func waitForExit(timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: outputFile)
    }
}

/// One-shot HTTP/1.1 requests over a plain socket (the node's probes and a few REST calls),
/// without any client library.
enum HTTPProbe {
    static func post(port: Int, path: String, authorization: String, body: String) async throws -> (status: Int, body: String) {
        let socket = try WireSocket.tcp(port: port)
        let request = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: \(authorization)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        try socket.send(raw: Array(request.utf8))
        return try parse(String(decoding: try socket.readToEnd(timeout: 5), as: UTF8.self))
    }

    static func parse(_ response: String) throws -> (status: Int, body: String) {
        guard let line = response.split(separator: "\r\n").first, line.hasPrefix("HTTP/1.1 "),
            let status = Int(line.dropFirst(9).prefix(3))
        else { throw TestFailure("bad HTTP response: \(response.prefix(200))") }
        let body = response.range(of: "\r\n\r\n").map { String(response[$0.upperBound...]) } ?? ""
        return (status, body)
    }

    /// Any method, with an optional `Authorization` and JSON body.
    static func request(_ method: String, port: Int, path: String, authorization: String?, body: String? = nil) async throws -> (status: Int, body: String) {
        let socket = try WireSocket.tcp(port: port)
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let authorization { request += "Authorization: \(authorization)\r\n" }
        if let body {
            request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        } else {
            request += "\r\n"
        }
        try socket.send(raw: Array(request.utf8))
        return try parse(String(decoding: try socket.readToEnd(timeout: 5), as: UTF8.self))
    }

    static func get(port: Int, path: String) async throws -> (status: Int, body: String) {
        let socket = try WireSocket.tcp(port: port)
        try socket.send(raw: Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
        return try parse(String(decoding: try socket.readToEnd(timeout: 5), as: UTF8.self))
    }
}
