import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Signaling
import SwitchboardClient
import SwitchboardServer
import Synchronization
import Testing

/// A live embedded node on free loopback ports with its own SQLite file, for one test.
struct TestNode: Sendable {
    let node: SwitchboardNode
    let publicPort: Int
    let adminPort: Int
    let directory: URL

    var adminToken: String { node.adminToken }
    var wsBase: String { "ws://127.0.0.1:\(publicPort)" }

    static func configuration(_ directory: URL) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.adminPort = 0
        configuration.sqlitePath = directory.appendingPathComponent("switchboard.sqlite").path
        configuration.masterKeyFile = directory.appendingPathComponent("switchboard.key").path
        configuration.auditSpillDirectory = directory.appendingPathComponent("audit-spill").path
        configuration.nodeID = "test-node"
        configuration.drainTimeout = 1
        configuration.reconnectJitterMs = 50
        // Tests that want the in-process TURN server turn it on (on port 0).
        configuration.turnEmbedded = false
        return configuration
    }

    /// Runs `body` against a fresh node, then shuts it down gracefully.
    /// `waitForReady`: first wait (up to 10 s) until `/readyz` says ready, as a load
    /// balancer would (a PostgreSQL node is not until its migrations ran).
    static func with<T: Sendable>(
        _ configure: @Sendable (inout ServerConfiguration) -> Void = { _ in },
        waitForReady: Bool = true,
        _ body: @Sendable (TestNode) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = Self.configuration(directory)
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        let node = try await SwitchboardNode.make(configuration: configuration, logger: logger, handleSignals: false)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await node.run() }
            guard let ports = await node.waitUntilListening() else { throw TestFailure("the node did not start") }
            let test = TestNode(node: node, publicPort: ports.public, adminPort: ports.admin, directory: directory)
            do {
                if waitForReady {
                    let deadline = ContinuousClock.now + .seconds(10)
                    while try await test.request(.get, "/readyz", admin: true).status != 200, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                let value = try await body(test)
                await node.shutdown()
                try await group.waitForAll()
                return value
            } catch {
                await node.shutdown()
                try? await group.waitForAll()
                throw error
            }
        }
    }

    // MARK: HTTP

    struct HTTPResult: Sendable {
        var status: Int
        var headers: HTTPFields
        var body: [UInt8]

        var text: String { String(decoding: body, as: UTF8.self) }

        func json() throws -> [String: JSONValue] {
            try JSONDecoder().decode([String: JSONValue].self, from: Data(body))
        }

        /// `error.code` of an error body.
        var errorCode: String? {
            guard let object = try? json(), case .object(let error)? = object["error"], case .string(let code)? = error["code"] else { return nil }
            return code
        }
    }

    enum Auth: Sendable {
        case none
        case admin
        case tenant(TestTenant)
        case header(String)
    }

    func request(
        _ method: HTTPRequest.Method, _ path: String, auth: Auth = .none, body: String? = nil, headers: HTTPFields = [:], admin: Bool = false
    ) async throws -> HTTPResult {
        var fields = headers
        switch auth {
        case .none: break
        case .admin: fields[.authorization] = "Bearer \(adminToken)"
        case .tenant(let tenant): fields[.authorization] = "Basic " + Data("\(tenant.apiKey):\(tenant.apiSecret)".utf8).base64EncodedString()
        case .header(let value): fields[.authorization] = value
        }
        if body != nil { fields[.contentType] = "application/json" }
        let port = admin ? adminPort : publicPort
        let request = TestClient.Request(path, method: method, headers: fields, body: body.map { ByteBuffer(string: $0) })
        let response = try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            try await client.execute(request)
        }
        return HTTPResult(status: Int(response.status.code), headers: response.headers, body: response.body.map { Array(buffer: $0) } ?? [])
    }

    // MARK: Tenants and tokens

    func createTenant(_ body: String = #"{"name":"Acme"}"#) async throws -> TestTenant {
        let result = try await request(.post, "/v1/tenants", auth: .admin, body: body)
        try #require(result.status == 201, "create tenant: \(result.status) \(result.text)")
        let json = try result.json()
        guard case .string(let apiKey)? = json["apiKey"], case .string(let secret)? = json["apiSecret"],
            case .object(let tenant)? = json["tenant"], case .string(let id)? = tenant["id"]
        else { throw TestFailure("unexpected tenant response \(result.text)") }
        return TestTenant(id: id, apiKey: apiKey, apiSecret: secret)
    }

    /// A token minted locally, as a tenant backend would with any JWT library.
    func token(
        _ tenant: TestTenant, room: String = "room-1", peer: String, ttl: TimeInterval = 600, metadata: String? = nil,
        permissions: [String]? = nil
    ) async throws -> String {
        let claims = AccessClaims(
            issuer: tenant.apiKey, subject: peer, room: room,
            expiresAt: Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + ttl).rounded(.down)),
            metadata: try metadata.map { try RawJSON(validating: $0) }, permissions: permissions)
        return try await AccessTokens.mint(claims, apiKey: tenant.apiKey, secret: tenant.apiSecret)
    }

    func signalURL(_ token: String, query: String = "") -> String {
        "\(wsBase)/v1/signal?access_token=\(token)\(query)"
    }

    /// A connected client that has received its `welcome`.
    func join(
        _ tenant: TestTenant, room: String = "room-1", peer: String, metadata: String? = nil, permissions: [String]? = nil,
        client configuration: SignalingClient.Configuration = .init()
    ) async throws -> TestPeer {
        let token = try await token(tenant, room: room, peer: peer, metadata: metadata, permissions: permissions)
        let peer = TestPeer(client: SignalingClient(url: signalURL(token), configuration: configuration))
        try await peer.start()
        return peer
    }

    /// The `/metrics` text.
    func metrics() async throws -> String {
        try await request(.get, "/metrics", admin: true).text
    }
}

struct TestTenant: Sendable {
    var id: String
    var apiKey: String
    var apiSecret: String
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A ``SignalingClient`` running in its own task, with its events collected for assertions.
final class TestPeer: Sendable {
    let client: SignalingClient
    private let received = Mutex<[ClientEvent]>([])
    private let runner = Mutex<Task<Void, Never>?>(nil)
    private let arrivals: AsyncStream<Void>
    private let arrivalContinuation: AsyncStream<Void>.Continuation
    private let cursor = Mutex(0)

    init(client: SignalingClient) {
        self.client = client
        (arrivals, arrivalContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    deinit {
        runner.withLock { $0?.cancel() }
    }

    /// Starts the client and waits for `welcome`.
    func start() async throws {
        let client = self.client
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await client.run() }
                for await event in client.events {
                    self.received.withLock { $0.append(event) }
                    self.arrivalContinuation.yield()
                }
                self.arrivalContinuation.finish()
            }
        }
        runner.withLock { $0 = task }
        let first = try await next()
        guard case .welcome = first else { throw TestFailure("expected welcome, got \(first)") }
    }

    var events: [ClientEvent] { received.withLock { $0 } }

    /// The next event not yet consumed, waiting up to `timeout`.
    func next(timeout: Duration = .seconds(5)) async throws -> ClientEvent {
        try await next(timeout: timeout) { _ in true }
    }

    /// The next event matching `predicate`; events before it are consumed.
    func next(timeout: Duration = .seconds(5), where predicate: @Sendable (ClientEvent) -> Bool) async throws -> ClientEvent {
        let deadline = ContinuousClock.now + timeout
        while true {
            let found = received.withLock { events -> ClientEvent? in
                cursor.withLock { index in
                    while index < events.count {
                        let event = events[index]
                        index += 1
                        if predicate(event) { return event }
                    }
                    return nil
                }
            }
            if let found { return found }
            guard ContinuousClock.now < deadline else {
                throw TestFailure("timed out waiting for an event; got \(events)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits for the next `message` event.
    func nextMessage(timeout: Duration = .seconds(5)) async throws -> (kind: RelayKind, from: String, data: String, seq: UInt64) {
        let event = try await next(timeout: timeout) { if case .message = $0 { true } else { false } }
        guard case .message(let kind, let from, let data, let seq) = event else { throw TestFailure("unreachable") }
        return (kind, from, data.description, seq)
    }

    /// Waits for the next `error` event.
    func nextError(timeout: Duration = .seconds(5)) async throws -> (code: String, message: String, ref: String?) {
        let event = try await next(timeout: timeout) { if case .error = $0 { true } else { false } }
        guard case .error(let code, let message, let ref) = event else { throw TestFailure("unreachable") }
        return (code, message, ref?.description)
    }

    /// Waits for the session to end.
    func nextClosed(timeout: Duration = .seconds(5)) async throws -> (code: Int?, reason: String) {
        let event = try await next(timeout: timeout) { if case .closed = $0 { true } else { false } }
        guard case .closed(let code, let reason) = event else { throw TestFailure("unreachable") }
        return (code, reason)
    }

    /// Sends a ping and waits for its pong: the connection is alive and in order.
    func assertAlive() async throws {
        let id = UUID().uuidString
        try await client.ping(id: id)
        _ = try await next { event in
            if case .pong(let pongId) = event, pongId?.description == "\"\(id)\"" { return true }
            return false
        }
    }

    func stop() async {
        let task = runner.withLock { $0 }
        try? await client.leave()
        task?.cancel()
        await task?.value
    }
}

extension ServerConfiguration {
    /// Runs the node on the PostgreSQL database at `url`, with the migrations built into
    /// the binary, as a deployed node does (applied at start when `migrate`).
    mutating func usePostgres(_ url: String, migrate: Bool = true) {
        databaseURL = url
        self.migrate = migrate
    }
}
