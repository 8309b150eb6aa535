import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The release-style binary run as a user runs it (issue #12): from an empty directory,
/// configured only by flags and `SWITCHBOARD_*` variables, probed over plain HTTP.
@Suite("The switchboard binary, run from an empty directory", .serialized, .timeLimit(.minutes(2)))
struct BinaryTests {
    static func ports() throws -> (public: Int, admin: Int) {
        (try NodeProcess.freePort(), try NodeProcess.freePort())
    }

    static let masterKey = Data(repeating: 9, count: 32).base64EncodedString()

    @Test func theEmbeddedDefaultStartsInAnEmptyDirectoryAndLogsOnlyJSON() async throws {
        let (port, admin) = try Self.ports()
        let node = try NodeProcess(["serve"], environment: [
            "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
        ])
        defer { node.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
        // The OpenAPI document travels with the binary too.
        let openAPI = try await HTTPProbe.get(port: port, path: "/v1/openapi.yaml")
        #expect(openAPI.status == 200 && openAPI.body.hasPrefix("openapi: 3.1") && openAPI.body.contains("/v1/tenants"))
        #expect(try await node.terminate() == 0, "exit: \(node.stderr)")

        #expect(node.files.contains("switchboard.sqlite") && node.files.contains("switchboard.key"), "\(node.files)")
        let lines = (node.stdout + node.stderr).split(separator: "\n").map(String.init)
        #expect(!lines.isEmpty)
        var listening: [String: Any]?
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON line: \(line)")
            if object?["message"] as? String == "switchboard node listening" { listening = object }
        }
        let banner = try #require(listening, "no start-up record in \(lines)")
        #expect(banner["rest"] as? String == "http://127.0.0.1:\(port)/v1")
        #expect((banner["generatedAdminToken"] as? String)?.count ?? 0 >= 20)
    }

    /// Rotating the master key (`SWITCHBOARD_MASTER_KEY=new,current` + `rotate-master-key`):
    /// every stored secret is resealed with the new key, the API keys keep working under it
    /// alone, and the old key no longer opens the store.
    @Test func theMasterKeyRotatesAndTheAPIKeysKeepWorking() async throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-rotate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: data) }
        let old = Self.masterKey
        let new = Data(repeating: 7, count: 32).base64EncodedString()
        let store = ["SWITCHBOARD_SQLITE_PATH": data.appendingPathComponent("switchboard.sqlite").path]
        func serve(_ key: String) throws -> (NodeProcess, port: Int, admin: Int) {
            let (port, admin) = try Self.ports()
            let node = try NodeProcess(["serve"], environment: store.merging([
                "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
                "SWITCHBOARD_MASTER_KEY": key, "SWITCHBOARD_ADMIN_TOKEN": "operator-token-1234", "SWITCHBOARD_TURN_EMBEDDED": "false",
                "SWITCHBOARD_AUDIT_SPILL_DIR": data.appendingPathComponent("spill").path,
            ]) { _, new in new })
            return (node, port, admin)
        }

        let (first, port, admin) = try serve(old)
        defer { first.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: first), "not ready: \(first.stderr)")
        let created = try await HTTPProbe.post(port: port, path: "/v1/tenants", authorization: "Bearer operator-token-1234", body: #"{"name":"Acme"}"#)
        #expect(created.status == 201, "\(created)")
        let json = try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any]
        let apiKey = try #require(json?["apiKey"] as? String), apiSecret = try #require(json?["apiSecret"] as? String)
        let basic = "Basic " + Data("\(apiKey):\(apiSecret)".utf8).base64EncodedString()
        #expect(try await first.terminate() == 0)

        let rotate = try NodeProcess(["rotate-master-key"], environment: store.merging(["SWITCHBOARD_MASTER_KEY": "\(new),\(old)"]) { _, new in new })
        defer { rotate.stop() }
        #expect(try await rotate.waitForExit() == 0, "\(rotate.stderr)")
        #expect(rotate.stdout.contains("resealed 1 API key secret(s)"), "\(rotate.stdout)")

        // The old key alone no longer opens the store: one plain line, exit 1.
        let (stale, _, _) = try serve(old)
        defer { stale.stop() }
        #expect(try await stale.waitForExit() == 1)
        #expect(stale.stderr.contains("master key"), "\(stale.stderr)")

        let (second, port2, admin2) = try serve(new)
        defer { second.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin2, path: "/readyz", while: second), "not ready: \(second.stderr)")
        #expect(try await HTTPProbe.request("GET", port: port2, path: "/v1/rooms", authorization: basic).status == 200)
        #expect(try await second.terminate() == 0)

        // Again: nothing left to reseal.
        let again = try NodeProcess(["rotate-master-key"], environment: store.merging(["SWITCHBOARD_MASTER_KEY": "\(new),\(old)"]) { _, new in new })
        defer { again.stop() }
        #expect(try await again.waitForExit() == 0, "\(again.stderr)")
        #expect(again.stdout.contains("resealed 0 API key secret(s)"), "\(again.stdout)")
    }

    /// SPEC §1: the embedded default is signaling + STUN + TURN in one process. A new user's
    /// first `POST /v1/turn/credentials` gets 201 and URLs that work with coturn's client.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/turnutils_uclient"), "coturn's turnutils_uclient is not installed (apt-get install coturn)"))
    func theEmbeddedDefaultRunsTURNAndItsCredentialsRelay() async throws {
        let (port, admin) = try Self.ports()
        let turnPort = try NodeProcess.freePort()
        let node = try NodeProcess(["serve"], environment: [
            "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
            "SWITCHBOARD_ADMIN_TOKEN": "operator-token-1234", "SWITCHBOARD_TURN_PORT": "\(turnPort)",
            "SWITCHBOARD_TURN_PUBLIC_IP": "127.0.0.1", "SWITCHBOARD_TURN_ALLOW_LOOPBACK": "true",
            "SWITCHBOARD_TURN_RELAY_PORTS": "41000-41999",
            // SIGTERM waits for TURN allocations too, up to the drain timeout.
            "SWITCHBOARD_DRAIN_TIMEOUT": "1",
        ])
        defer { node.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
        #expect(node.files.contains("switchboard.turn-secret"), "\(node.files)")
        let tenant = try await HTTPProbe.post(
            port: port, path: "/v1/tenants", authorization: "Bearer operator-token-1234", body: #"{"id":"acme","name":"Acme"}"#)
        #expect(tenant.status == 201, "\(tenant.body)")
        let created = try #require(try JSONSerialization.jsonObject(with: Data(tenant.body.utf8)) as? [String: Any])
        let key = try #require(created["apiKey"] as? String)
        let secret = try #require(created["apiSecret"] as? String)
        let basic = "Basic " + Data("\(key):\(secret)".utf8).base64EncodedString()
        let response = try await HTTPProbe.post(port: port, path: "/v1/turn/credentials", authorization: basic, body: #"{"peerId":"p1"}"#)
        #expect(response.status == 201, "\(response.body)")
        let credentials = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let username = try #require(credentials["username"] as? String)
        let password = try #require(credentials["credential"] as? String)
        let servers = try #require(credentials["iceServers"] as? [[String: Any]])
        let urls = servers.flatMap { $0["urls"] as? [String] ?? [] }
        #expect(urls.contains("turn:127.0.0.1:\(turnPort)?transport=udp") && urls.contains("stun:127.0.0.1:\(turnPort)"), "\(urls)")

        let peerPort = try NodeProcess.freePort()
        let peer = try ToolProcess("/usr/bin/turnutils_peer", ["-p", "\(peerPort)", "-L", "127.0.0.1"])
        defer { peer.stop() }
        try await Task.sleep(for: .milliseconds(300))
        let client = try ToolProcess(
            "/usr/bin/turnutils_uclient",
            ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", "\(peerPort)", "-p", "\(turnPort)", "-n", "20", "-z", "5", "-c", "127.0.0.1"])
        defer { client.stop() }
        #expect(try await client.waitForExit(timeout: .seconds(30)) == 0)
        #expect(client.output.contains("tot_recv_msgs=20"), "\(client.output.suffix(600))")
        let metrics = try await HTTPProbe.get(port: admin, path: "/metrics")
        #expect(metrics.body.contains(#"switchboard_turn_relayed_packets_total{tenant="acme",direction="to_peer"}"#))
        #expect(try await node.terminate() == 0)
    }

    /// SPEC §6: the credentials of `POST /v1/turn/credentials` are the TURN REST API scheme
    /// coturn's `use-auth-secret` accepts — a real coturn relays with them.
    @Test(.enabled(
        if: FileManager.default.isExecutableFile(atPath: "/usr/bin/turnserver")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/turnutils_uclient"),
        "coturn is not installed (apt-get install coturn)"))
    func theRESTAPIsTURNCredentialsWorkOnARealCoturn() async throws {
        let secret = "shared-\(UUID().uuidString)"
        let coturnPort = try NodeProcess.freePort()
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("coturn-\(UUID().uuidString).db").path
        defer { try? FileManager.default.removeItem(atPath: database) }
        let coturn = try ToolProcess("/usr/bin/turnserver", [
            "-n", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "-p", "\(coturnPort)", "--min-port", "44000",
            "--max-port", "44099", "--use-auth-secret", "--static-auth-secret", secret, "--realm", "switchboard",
            "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--simple-log", "--log-file", "stdout", "--db", database,
        ])
        defer { coturn.stop() }
        let (port, admin) = try Self.ports()
        let node = try NodeProcess(["serve"], environment: [
            "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
            "SWITCHBOARD_ADMIN_TOKEN": "operator-token-1234", "SWITCHBOARD_TURN_SECRETS": secret,
            "SWITCHBOARD_TURN_URLS": "turn:127.0.0.1:\(coturnPort)?transport=udp,stun:127.0.0.1:\(coturnPort)",
        ])
        defer { node.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
        let tenant = try await HTTPProbe.post(
            port: port, path: "/v1/tenants", authorization: "Bearer operator-token-1234", body: #"{"id":"acme","name":"Acme"}"#)
        let created = try #require(try JSONSerialization.jsonObject(with: Data(tenant.body.utf8)) as? [String: Any])
        let basic = "Basic " + Data("\(try #require(created["apiKey"] as? String)):\(try #require(created["apiSecret"] as? String))".utf8)
            .base64EncodedString()
        let response = try await HTTPProbe.post(port: port, path: "/v1/turn/credentials", authorization: basic, body: #"{"peerId":"p1"}"#)
        #expect(response.status == 201, "\(response.body)")
        let credentials = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let servers = try #require(credentials["iceServers"] as? [[String: Any]])
        #expect(servers.flatMap { $0["urls"] as? [String] ?? [] }.contains("turn:127.0.0.1:\(coturnPort)?transport=udp"))

        let peerPort = try NodeProcess.freePort()
        let peer = try ToolProcess("/usr/bin/turnutils_peer", ["-p", "\(peerPort)", "-L", "127.0.0.1"])
        defer { peer.stop() }
        try await Task.sleep(for: .milliseconds(500))
        let client = try ToolProcess("/usr/bin/turnutils_uclient", [
            "-u", try #require(credentials["username"] as? String), "-w", try #require(credentials["credential"] as? String),
            "-e", "127.0.0.1", "-r", "\(peerPort)", "-p", "\(coturnPort)", "-n", "10", "-z", "5", "-c", "127.0.0.1",
        ])
        defer { client.stop() }
        #expect(try await client.waitForExit(timeout: .seconds(30)) == 0)
        #expect(client.output.contains("tot_recv_msgs=10"), "uclient: \(client.output.suffix(400))\ncoturn: \(coturn.output.suffix(600))")
        #expect(try await node.terminate() == 0)
    }

    @Test func textLogsKeepTheBannerForPeople() async throws {
        let (port, admin) = try Self.ports()
        let node = try NodeProcess(["serve", "--log-format", "text", "--host", "127.0.0.1", "--port", "\(port)", "--admin-port", "\(admin)"])
        defer { node.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
        #expect(try await node.terminate() == 0)
        #expect(node.stdout.contains("REST API:   http://127.0.0.1:\(port)/v1"), "\(node.stdout)")
        #expect(node.stdout.contains("Admin token (generated"))
    }

    @Test func aPortInUseIsOnePlainLine() async throws {
        let taken = try WireListener(port: 0)
        let admin = try NodeProcess.freePort()
        let node = try NodeProcess(["serve"], environment: [
            "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(taken.port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
        ])
        defer { node.stop() }
        #expect(try await node.waitForExit() == 1)
        let errors = node.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") }
        #expect(errors.count == 1, "\(node.stderr)")
        #expect(errors.first?.contains("already in use") == true, "\(node.stderr)")
        #expect(!node.stderr.contains("IOError") && !node.stderr.contains("errno"), "\(node.stderr)")
    }

    /// A TURN port that is taken turns the embedded TURN server off with a warning: the node
    /// stays up and ready, hands out no TURN URLs of its own, and stops cleanly on SIGTERM.
    @Test func aTakenTURNPortLeavesTheNodeRunningWithoutTURN() async throws {
        let taken = try WireListener(port: 0)
        let (port, admin) = try Self.ports()
        let node = try NodeProcess(["serve"], environment: [
            "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
            "SWITCHBOARD_ADMIN_TOKEN": "operator-token-1234", "SWITCHBOARD_TURN_PORT": "\(taken.port)",
        ])
        defer { node.stop() }
        #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(node.isRunning, "\(node.stderr)")
        let output = node.stdout + node.stderr
        #expect(output.contains("the embedded TURN server could not start; running without it"), "\(output)")
        #expect(output.contains("port \(taken.port) is in use by another process: choose a free one with --turn-port"), "\(output)")
        let tenant = try await HTTPProbe.post(
            port: port, path: "/v1/tenants", authorization: "Bearer operator-token-1234", body: #"{"id":"acme","name":"Acme"}"#)
        #expect(tenant.status == 201, "\(tenant.body)")
        let created = try #require(try JSONSerialization.jsonObject(with: Data(tenant.body.utf8)) as? [String: Any])
        let basic = "Basic " + Data("\(created["apiKey"] as? String ?? ""):\(created["apiSecret"] as? String ?? "")".utf8).base64EncodedString()
        let response = try await HTTPProbe.post(port: port, path: "/v1/turn/credentials", authorization: basic, body: "{}")
        #expect(!response.body.contains(":\(taken.port)"), "\(response)")
        #expect(try await node.terminate() == 0, "exit: \(node.stderr)")
        #expect(!node.stderr.contains("ServiceGroupError"), "\(node.stderr)")
    }

    @Test func aPostgreSQLNodeMigratesAndStartsOutsideTheRepository() async throws {
        guard PostgresTestDatabase.isConfigured else { return }
        try await PostgresTestDatabase.with(migrated: false) { _, url in
            let (port, admin) = try Self.ports()
            let node = try NodeProcess(["serve", "--migrate"], environment: [
                "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
                "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_MASTER_KEY": Self.masterKey, "SWITCHBOARD_ADMIN_TOKEN": "operator-token-1234",
            ])
            defer { node.stop() }
            #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
            #expect(try await node.terminate() == 0, "exit: \(node.stderr)")
            #expect(!node.stderr.contains("NSCocoaErrorDomain"))
        }
    }

    @Test func migrateWorksFromAnyDirectoryAndServeChecksWithoutIt() async throws {
        guard PostgresTestDatabase.isConfigured else { return }
        try await PostgresTestDatabase.with(migrated: false) { _, url in
            let migrate = try NodeProcess(["migrate", "--log-format", "text"], environment: ["SWITCHBOARD_DATABASE_URL": url])
            defer { migrate.stop() }
            #expect(try await migrate.waitForExit() == 0, "\(migrate.stderr)")
            #expect(migrate.stdout.contains("applied: 0001_initial.sql, 0002_webhooks.sql"), "\(migrate.stdout)")
            let again = try NodeProcess(["migrate"], environment: ["SWITCHBOARD_DATABASE_URL": url])
            defer { again.stop() }
            #expect(try await again.waitForExit() == 0)
            #expect(again.stdout.contains("database is up to date"), "\(again.stdout)")

            let (port, admin) = try Self.ports()
            let node = try NodeProcess(["serve"], environment: [
                "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
                "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_MASTER_KEY": Self.masterKey,
            ])
            defer { node.stop() }
            #expect(try await NodeProcess.waitForHTTP(port: admin, path: "/readyz", while: node), "not ready: \(node.stderr)")
            #expect(try await node.terminate() == 0)
        }
    }

    @Test func aMissingMigrationsDirectoryIsOnePlainLine() async throws {
        guard PostgresTestDatabase.isConfigured else { return }
        try await PostgresTestDatabase.with(migrated: false) { _, url in
            let (port, admin) = try Self.ports()
            let node = try NodeProcess(["serve", "--migrate"], environment: [
                "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": "\(port)", "SWITCHBOARD_ADMIN_PORT": "\(admin)",
                "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_MASTER_KEY": Self.masterKey,
                "SWITCHBOARD_MIGRATIONS_DIR": "/nonexistent/migrations",
            ])
            defer { node.stop() }
            #expect(try await node.waitForExit() == 1)
            let errors = node.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") }
            #expect(errors.count == 1, "\(node.stderr)")
            #expect(errors.first?.contains("/nonexistent/migrations does not exist") == true, "\(node.stderr)")
            #expect(!node.stderr.contains("NSCocoaErrorDomain") && !node.stderr.contains("Error Domain"), "\(node.stderr)")

            let migrate = try NodeProcess(["migrate", "--migrations-dir", "/nonexistent/migrations"], environment: ["SWITCHBOARD_DATABASE_URL": url])
            defer { migrate.stop() }
            #expect(try await migrate.waitForExit() == 1)
            #expect(migrate.stderr.contains("Error: the migrations directory /nonexistent/migrations does not exist"), "\(migrate.stderr)")
        }
    }
}

/// A listening TCP socket on loopback that accepts nothing: occupies a port.
final class WireListener: Sendable {
    let fd: Int32
    let port: Int

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = self.fd
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { throw TestFailure("cannot listen") }
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit {
        close(fd)
    }
}
