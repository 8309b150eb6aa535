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
