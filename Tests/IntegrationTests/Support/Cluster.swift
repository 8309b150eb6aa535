import Foundation
import Signaling
import SwitchboardClient
import SwitchboardServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Several `switchboard serve` processes — the built binary, each in an empty directory —
/// on one Redis and one PostgreSQL database: a cluster as operators run it (issue #13).
final class Cluster: Sendable {
    struct Member: Sendable {
        let id: String
        let port: Int
        let admin: Int
        let process: NodeProcess

        var wsBase: String { "ws://127.0.0.1:\(port)" }
    }

    static let masterKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    let adminToken = "cluster-operator-token-1234"
    let redisURL: String
    let databaseURL: String
    let environment: [String: String]
    let name = "c\(UUID().uuidString.prefix(6).lowercased())"
    private let members: Mutex<[Member?]>

    static var redisURL: String? { ProcessInfo.processInfo.environment["REDIS_URL"].flatMap { $0.isEmpty ? nil : $0 } }
    /// Both servers the cluster needs are there (scripts/test starts them).
    static var isConfigured: Bool { redisURL != nil && PostgresTestDatabase.isConfigured }

    private init(redisURL: String, databaseURL: String, environment: [String: String], count: Int) {
        self.redisURL = redisURL
        self.databaseURL = databaseURL
        self.environment = environment
        members = Mutex(Array(repeating: nil, count: count))
    }

    /// Runs `body` against `count` nodes on a fresh, migrated database; stops them after.
    static func with(
        nodes count: Int = 3, redisURL: String? = nil, databaseURL: String? = nil, environment: [String: String] = [:],
        _ body: @Sendable (Cluster) async throws -> Void
    ) async throws {
        guard let redis = redisURL ?? Self.redisURL else { return }
        if let databaseURL {
            let cluster = Cluster(redisURL: redis, databaseURL: databaseURL, environment: environment, count: count)
            defer { cluster.stopAll() }
            for index in 0..<count { try await cluster.start(index) }
            try await body(cluster)
            return
        }
        try await PostgresTestDatabase.with(migrated: true) { _, url in
            let cluster = Cluster(redisURL: redis, databaseURL: url, environment: environment, count: count)
            defer { cluster.stopAll() }
            for index in 0..<count { try await cluster.start(index) }
            try await body(cluster)
        }
    }

    func node(_ index: Int) throws -> Member {
        guard let member = members.withLock({ $0[index] }) else { throw TestFailure("node \(index) is not running") }
        return member
    }

    /// Starts (or restarts) node `index` and waits until it is ready.
    func start(_ index: Int) async throws {
        let (port, admin) = (try NodeProcess.freePort(), try NodeProcess.freePort())
        let id = "\(name)-n\(index)"
        var env = [
            "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
            "SWITCHBOARD_NODE_ID": id, "SWITCHBOARD_REDIS_URL": redisURL, "SWITCHBOARD_DATABASE_URL": databaseURL,
            "SWITCHBOARD_MASTER_KEY": Self.masterKey, "SWITCHBOARD_ADMIN_TOKEN": adminToken, "SWITCHBOARD_TURN_EMBEDDED": "false",
            "SWITCHBOARD_DRAIN_TIMEOUT": "5", "SWITCHBOARD_LOG_FORMAT": "text", "SWITCHBOARD_LOG_LEVEL": "warning",
        ]
        env.merge(environment) { _, new in new }
        let process = try NodeProcess(["serve"], environment: env)
        let member = Member(id: id, port: port, admin: admin, process: process)
        members.withLock { $0[index] = member }
        guard try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: process) else {
            throw TestFailure("node \(index) is not ready: \(process.stderr)")
        }
    }

    /// SIGKILL: the node dies without a goodbye.
    func kill9(_ index: Int) async throws {
        let member = try node(index)
        kill(member.process.process.processIdentifier, SIGKILL)
        _ = try await member.process.waitForExit(timeout: .seconds(5))
    }

    func stopAll() {
        for member in members.withLock({ $0 }) { member?.process.stop() }
    }

    // MARK: REST

    /// A tenant created through node `index`'s REST API.
    func createTenant(on index: Int = 0, limits: String? = nil) async throws -> TestTenant {
        let body = limits.map { #"{"name":"Acme","limits":\#($0)}"# } ?? #"{"name":"Acme"}"#
        let result = try await HTTPProbe.request("POST", port: try node(index).port, path: "/v1/tenants", authorization: "Bearer \(adminToken)", body: body)
        try #require(result.status == 201, "create tenant: \(result.status) \(result.body)")
        let json = try JSONDecoder().decode([String: JSONValue].self, from: Data(result.body.utf8))
        guard case .string(let apiKey)? = json["apiKey"], case .string(let secret)? = json["apiSecret"],
            case .object(let tenant)? = json["tenant"], case .string(let id)? = tenant["id"]
        else { throw TestFailure("unexpected tenant response \(result.body)") }
        return TestTenant(id: id, apiKey: apiKey, apiSecret: secret)
    }

    /// A tenant's REST call on node `index`.
    func tenantRequest(_ method: String, on index: Int, _ path: String, tenant: TestTenant, body: String? = nil) async throws -> (status: Int, body: String) {
        let basic = "Basic " + Data("\(tenant.apiKey):\(tenant.apiSecret)".utf8).base64EncodedString()
        return try await HTTPProbe.request(method, port: try node(index).port, path: path, authorization: basic, body: body)
    }

    func token(_ tenant: TestTenant, room: String = "room-1", peer: String, ttl: TimeInterval = 600) async throws -> String {
        let claims = AccessClaims(
            issuer: tenant.apiKey, subject: peer, room: room,
            expiresAt: Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + ttl).rounded(.down)), metadata: nil, permissions: nil)
        return try await AccessTokens.mint(claims, apiKey: tenant.apiKey, secret: tenant.apiSecret)
    }

    /// A peer connected to node `nodes[0]`; each reconnect (resume) goes to the next node.
    func join(
        _ tenant: TestTenant, room: String = "room-1", peer: String, nodes: [Int], client configuration: SignalingClient.Configuration = .init()
    ) async throws -> TestPeer {
        let token = try await token(tenant, room: room, peer: peer)
        let urls = try nodes.map { "\(try node($0).wsBase)/v1/signal?access_token=\(token)" }
        let peer = TestPeer(client: SignalingClient(urls: urls, configuration: configuration))
        try await peer.start()
        return peer
    }

    /// The upgrade's HTTP status for `peer` on node `index` (a refusal before the 101).
    func upgradeStatus(_ tenant: TestTenant, room: String = "room-1", peer: String, on index: Int) async throws -> Int {
        let token = try await token(tenant, room: room, peer: peer)
        let socket = try WireSocket.tcp(port: try node(index).port)
        let request = "GET /v1/signal?access_token=\(token) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        try socket.send(raw: Array(request.utf8))
        let head = String(decoding: try socket.readToEnd(timeout: 2), as: UTF8.self)
        return try HTTPProbe.parse(head).status
    }
}

import Synchronization
