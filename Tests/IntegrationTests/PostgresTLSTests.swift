import Foundation
import PostgresNIO
import PostgresStore
import Signaling
import Testing

/// TLS to PostgreSQL with libpq's `sslmode`/`sslrootcert`, against private servers of
/// `scripts/postgres`: one started with `--ssl` (its own CA; a certificate for 127.0.0.1 and
/// localhost) and one without TLS.
@Suite("PostgreSQL TLS", .serialized, .timeLimit(.minutes(2)), .enabled(if: PostgresServer.canStart))
struct PostgresTLSTests {
    /// Short, so the refused connections below give up quickly.
    static let settings: PostgresSettings = {
        var settings = PostgresSettings()
        settings.requestTimeout = .seconds(2)
        settings.poolSize = 2
        return settings
    }()

    @Test func sslModesAgainstServersWithAndWithoutTLS() async throws {
        try await PostgresServer.with(["--ssl"]) { tlsServer in
            try await PostgresServer.with { plainServer in
                let ca = try #require(tlsServer.caFile, "scripts/postgres start --ssl printed no SWITCHBOARD_PG_CA")
                let caQuery = try #require(ca.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed))

                // Encrypted when asked to, with or without checking the certificate…
                #expect(try await Self.encrypted(tlsServer.url("sslmode=require")))
                #expect(try await Self.encrypted(tlsServer.url("sslmode=verify-ca&sslrootcert=\(caQuery)")))
                // …verify-full against 127.0.0.1: the certificate's IP subjectAltName matches.
                #expect(try await Self.encrypted(tlsServer.url("sslmode=verify-full&sslrootcert=\(caQuery)")))
                #expect(try await Self.encrypted(tlsServer.url("")), "sslmode=prefer (the default) uses TLS when offered")
                // The check can tell: the same server without TLS.
                #expect(try await !Self.encrypted(tlsServer.url("sslmode=disable")))

                try await TestCertificates.withDirectory { directory in
                    let unrelated = try TestCertificates.write(TestCertificates.unrelatedCA, "unrelated-ca.crt", in: directory)
                    // A CA that did not sign the server's certificate: refused, as `unavailable`.
                    try await Self.expectUnavailable(tlsServer.url("sslmode=verify-full&sslrootcert=\(unrelated)"))
                    try await Self.expectUnavailable(tlsServer.url("sslmode=verify-ca&sslrootcert=\(unrelated)"))
                    try await Self.expectUnavailable(tlsServer.url("sslmode=require&sslrootcert=\(unrelated)"))
                }
                // The system's trust store does not hold the test CA either.
                try await Self.expectUnavailable(tlsServer.url("sslmode=verify-full"))

                // A server without TLS: `require` fails cleanly, `prefer` falls back to plain.
                try await Self.expectUnavailable(plainServer.url("sslmode=require"))
                try await Self.expectUnavailable(plainServer.url("sslmode=verify-full&sslrootcert=\(caQuery)"))
                #expect(try await !Self.encrypted(plainServer.url("sslmode=prefer")))
            }
        }
    }

    /// A node runs on a verify-full connection end to end, and every connection it holds
    /// is encrypted.
    @Test func aNodeRunsOverVerifiedTLS() async throws {
        try await PostgresServer.with(["--ssl"]) { server in
            let ca = try #require(server.caFile?.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed))
            let url = server.url("sslmode=verify-full&sslrootcert=\(ca)")
            try await PostgresServer.migrate(url)
            try await TestNode.with({
                $0.usePostgres(url)
            }) { node in
                let tenant = try await node.createTenant()
                #expect(try await node.request(.get, "/readyz", admin: true).status == 200)
                #expect(try await node.request(.get, "/v1/tenants/\(tenant.id)", auth: .admin).status == 200)
                // Looked at over a plain connection of its own, so only the node's can be encrypted.
                let (all, encrypted) = try await PostgresServer.withStore(server.url("sslmode=disable"), settings: Self.settings) { store in
                    let rows = try await store.client.query("""
                        SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                        WHERE a.datname = 'switchboard' AND a.pid <> pg_backend_pid()
                        """)
                    for try await counts in rows.decode((Int, Int).self) { return counts }
                    throw TestFailure("no counts")
                }
                #expect(all > 0 && encrypted == all, "\(encrypted) of the node's \(all) connections are encrypted")
            }
        }
    }

    /// Whether a connection made with `url` is encrypted, by the server's own account.
    static func encrypted(_ url: String) async throws -> Bool {
        try await PostgresServer.withStore(url, settings: settings) { store in
            let rows = try await store.client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            for try await ssl in rows.decode(Bool.self) { return ssl }
            throw TestFailure("pg_stat_ssl has no row for this connection")
        }
    }

    /// A store call on `url` fails with `unavailable`, within the request timeout (no hang).
    static func expectUnavailable(_ url: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let started = ContinuousClock.now
        try await PostgresServer.withStore(url, settings: settings) { store in
            do throws(StoreError) {
                try await store.ping()
                Issue.record("\(url): the connection was accepted", sourceLocation: sourceLocation)
            } catch {
                #expect(error.code == .unavailable, "\(url): \(error)", sourceLocation: sourceLocation)
            }
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed < settings.requestTimeout + .seconds(3), "\(url): took \(elapsed)", sourceLocation: sourceLocation)
    }
}
