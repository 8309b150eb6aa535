import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import NIOCore
import NIOPosix
import Signaling
import SwitchboardServer

/// `switchboard bench`: the load generator (SPEC §9).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open sessions in pairs against one or more nodes, drive signal traffic, and report throughput, latency percentiles, errors and lost messages.",
        discussion: """
            Each session sends `signal` frames to its partner (pairs share a room; with several --url \
            values the two halves of a pair sit on different nodes). --rate 0 only holds the sessions \
            open (an idle-connection test); with --server-pid the servers' RSS per session and their CPU \
            time per delivered message (user + system, from /proc) are reported.
            """)

    @Option(name: .customLong("url"), help: "A node's public base URL (repeat for several nodes).") var urls: [String] = ["http://127.0.0.1:8080"]
    @Option(name: .customLong("api-key"), help: "Tenant API key (or use --admin-token).") var apiKey: String?
    @Option(name: .customLong("api-secret"), help: "Tenant API secret.") var apiSecret: String?
    @Option(name: .customLong("admin-token"), help: "Operator token: create a throw-away tenant with high limits for the run.") var adminToken: String?
    @Option(help: "Sessions to open (even; pairs).") var sessions: Int = 100
    @Option(help: "Rooms to spread the pairs over.") var rooms: Int = 50
    @Option(help: "Messages per second in total (0 = idle sessions).") var rate: Int = 1000
    @Option(help: "Payload (`data`) size in bytes.") var size: Int = 256
    @Option(help: "Seconds of traffic (or of holding idle sessions).") var duration: Double = 10
    @Option(help: "Seconds of traffic before measuring starts.") var warmup: Double = 1
    @Option(name: .customLong("connect-concurrency"), help: "Upgrades in flight at once while connecting.") var connectConcurrency: Int = 256
    @Option(name: .customLong("server-pid"), help: "PID of a local server process (repeat for several: nodes, redis-server): report their RSS per session and CPU time per delivered message.") var serverPIDs: [Int32] = []
    @Option(help: "Event-loop threads for the generator.") var threads: Int = System.coreCount
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard sessions >= 2, sessions % 2 == 0 else { throw ValidationError("--sessions must be an even number ≥ 2") }
        guard rooms >= 1, rooms <= sessions / 2 else { throw ValidationError("--rooms must be 1…sessions/2") }
        guard rate >= 0, size >= 64, size <= 60_000 else { throw ValidationError("--rate ≥ 0 and --size 64…60000") }
        guard duration > 0, warmup >= 0 else { throw ValidationError("--duration > 0, --warmup ≥ 0") }
        guard (apiKey != nil && apiSecret != nil) || adminToken != nil else {
            throw ValidationError("give --api-key and --api-secret, or --admin-token")
        }
        guard !urls.isEmpty else { throw ValidationError("at least one --url") }
    }

    func run() async throws {
        try await StartupFailure.plain { try await runBench() }
    }

    private func runBench() async throws {
        ResourceLimits.raiseOpenFiles()
        let quiet = json
        // Progress goes to stderr, the report to stdout.
        let log: @Sendable (String) -> Void = { line in if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) } }
        let admin = BenchAdmin(baseURL: urls[0])
        var throwaway: String?
        let credentials: (key: String, secret: String)
        if let apiKey, let apiSecret {
            credentials = (apiKey, apiSecret)
        } else if let adminToken {
            let tenant = try await admin.createTenant(adminToken: adminToken)
            throwaway = tenant.id
            credentials = (tenant.apiKey, tenant.apiSecret)
            log("created throw-away tenant \(tenant.id)")
        } else {
            throw ValidationError("no credentials")
        }
        let plan = BenchPlan(
            urls: urls, apiKey: credentials.key, apiSecret: credentials.secret, sessions: sessions, rooms: rooms, rate: rate,
            size: size, duration: duration, warmup: warmup, connectConcurrency: connectConcurrency, serverPIDs: serverPIDs,
            threads: max(1, threads))
        let report: BenchReport
        do {
            report = try await BenchRunner(plan: plan, log: log).run()
        } catch {
            if let throwaway, let adminToken { try? await admin.deleteTenant(throwaway, adminToken: adminToken) }
            throw error
        }
        if let throwaway, let adminToken { try? await admin.deleteTenant(throwaway, adminToken: adminToken) }
        print(json ? report.json() : report.text())
    }
}

/// The run's parameters, resolved.
struct BenchPlan: Sendable {
    var urls: [String]
    var apiKey: String
    var apiSecret: String
    var sessions: Int
    var rooms: Int
    var rate: Int
    var size: Int
    var duration: Double
    var warmup: Double
    var connectConcurrency: Int
    var serverPIDs: [Int32]
    var threads: Int

    /// The WebSocket base of node `index % urls.count`.
    func webSocketBase(_ index: Int) -> String {
        var base = urls[index % urls.count]
        if base.hasPrefix("https://") { base = "wss://" + base.dropFirst(8) } else if base.hasPrefix("http://") { base = "ws://" + base.dropFirst(7) }
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }
}

/// The few REST calls the generator makes, over URLSession.
struct BenchAdmin: Sendable {
    let baseURL: String

    struct Created: Decodable {
        struct TenantID: Decodable { var id: String }
        var tenant: TenantID
        var apiKey: String
        var apiSecret: String
    }

    func createTenant(adminToken: String) async throws -> (id: String, apiKey: String, apiSecret: String) {
        let body = #"{"name":"bench","limits":{"maxConnections":1000000,"maxPeersPerRoom":10000,"messagesPerSecond":100000,"messageBurst":100000}}"#
        let data = try await call("POST", "/v1/tenants", adminToken: adminToken, body: body, expect: 201)
        let created = try JSONDecoder().decode(Created.self, from: data)
        return (created.tenant.id, created.apiKey, created.apiSecret)
    }

    func deleteTenant(_ id: String, adminToken: String) async throws {
        _ = try await call("DELETE", "/v1/tenants/\(id)", adminToken: adminToken, body: nil, expect: 204)
    }

    private func call(_ method: String, _ path: String, adminToken: String, body: String?, expect: Int) async throws -> Data {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        guard let url = URL(string: base + path) else { throw ValidationError("bad --url \(baseURL)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer \(adminToken)", forHTTPHeaderField: "Authorization")
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == expect else {
            throw ValidationError("\(method) \(path): HTTP \(status) \(String(decoding: data, as: UTF8.self))")
        }
        return data
    }
}
