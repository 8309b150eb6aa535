import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import STUN
import ServiceLifecycle
import TURNServer

/// A TURN node's settings for tests: loopback, a free port, the test secrets, relays in
/// `relayPorts` (keep them above the ephemeral range, so no peer or listener lands in them).
func testTURNConfiguration(relayPorts: ClosedRange<Int>) -> TURNServerConfiguration {
    var configuration = TURNServerConfiguration()
    configuration.host = "127.0.0.1"
    configuration.port = 0
    configuration.publicIP = IPAddress("127.0.0.1")
    configuration.secrets = TestSecrets.all
    configuration.relayPorts = relayPorts
    return configuration
}

/// Runs a TURN node on loopback free ports for the length of `body`.
/// `metricsFactory`: where its `switchboard_turn_*` metrics go (default: the global factory).
func withTURNNode<T: Sendable>(
    configure: (inout TURNServerConfiguration) -> Void = { _ in },
    metricsFactory: (any MetricsFactory)? = nil,
    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    _ body: @Sendable (TURNNode, TURNListeningAddresses) async throws -> T
) async throws -> T {
    var configuration = testTURNConfiguration(relayPorts: 61000...61999)
    configuration.tlsPort = 0
    configuration.allowLoopback = true
    configuration.drainTimeout = 5
    configure(&configuration)
    var logger = Logger(label: "turn-test")
    logger.logLevel = .warning
    let node = try TURNNode(configuration: configuration, logger: logger, eventLoopGroup: eventLoopGroup, metricsFactory: metricsFactory)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            try await node.run()
            return nil
        }
        let addresses = try await node.waitUntilListening()
        let result = try await body(node, addresses)
        group.cancelAll()
        while let _ = try await group.next() {}
        return result
    }
}

enum TestSecrets {
    static let current = "current-turn-secret"
    static let older = "older-turn-secret"
    static let all = [current, older]

    static func username(tenant: String = "acme", peer: String = "alice", expiresIn: Int = 3600) -> String {
        "\(Int(Date().timeIntervalSince1970) + expiresIn):\(tenant):\(peer)"
    }
}

/// A child process whose output goes to a temporary file; killed when the test is done.
final class ChildProcess: Sendable {
    private let process: Process
    private let outputPath: String

    init(_ path: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let outputPath = NSTemporaryDirectory() + "turn-test-\(UInt64.random(in: 0...UInt64.max)).log"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        process.standardError = output
        try process.run()
        try output.close()
        self.process = process
        self.outputPath = outputPath
    }

    /// Waits for the process to exit (killing it after `timeout`), returns status and output.
    func finish(timeout: Duration) async -> (status: Int32, output: String) {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        stop()
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: outputPath)
        return (process.terminationStatus, output)
    }

    /// SIGKILL (turnutils_peer ignores SIGTERM), then reap.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Where coturn's test tools are, or nil (the tests say why they skip).
enum CoturnTools {
    static let client = "/usr/bin/turnutils_uclient"
    static let peer = "/usr/bin/turnutils_peer"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: client) && FileManager.default.isExecutableFile(atPath: peer) }
}

/// A free UDP port on 127.0.0.1 (bound, read, released).
func freeUDPPort() async throws -> Int {
    let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}

/// `tot_send_msgs=N, tot_recv_msgs=M` from turnutils_uclient's summary line.
func uclientCounts(_ output: String) -> (sent: Int, received: Int)? {
    for line in output.split(separator: "\n") where line.contains("tot_send_msgs=") && !line.contains("msz=") {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "," })
        func value(_ name: String) -> Int? {
            fields.first { $0.hasPrefix(name + "=") }.flatMap { Int($0.dropFirst(name.count + 1)) }
        }
        if let sent = value("tot_send_msgs"), let received = value("tot_recv_msgs") { return (sent, received) }
    }
    return nil
}
