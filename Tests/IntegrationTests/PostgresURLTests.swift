import Foundation
import PostgresStore
import Testing

/// `SWITCHBOARD_DATABASE_URL` parsing, with libpq's `sslmode` and `sslrootcert` (no server).
@Suite("PostgreSQL URL")
struct PostgresURLTests {
    typealias TLS = PostgresURL.TLSSettings

    static let base = "postgres://user:s3cr%40t@db.example:6543/app"

    @Test func partsAndDefaults() throws {
        let parts = try PostgresURL.parse(Self.base)
        #expect(parts.host == "db.example" && parts.port == 6543 && parts.user == "user" && parts.password == "s3cr@t")
        #expect(parts.database == "app")
        #expect(parts.tls == TLS(mode: .prefer, trustRoots: nil))
        let bare = try PostgresURL.parse("postgresql://me@localhost")
        #expect(bare.port == 5432 && bare.database == "me" && bare.password == nil)
    }

    @Test func modesWithoutARootCertificate() throws {
        #expect(try PostgresURL.parse(Self.base + "?sslmode=disable").tls == TLS(mode: .disable, trustRoots: nil))
        #expect(try PostgresURL.parse(Self.base + "?sslmode=allow").tls == TLS(mode: .allow, trustRoots: nil))
        #expect(try PostgresURL.parse(Self.base + "?sslmode=require").tls == TLS(mode: .require, trustRoots: nil))
        // libpq would read ~/.postgresql/root.crt here; we trust the system's store.
        #expect(try PostgresURL.parse(Self.base + "?sslmode=verify-ca").tls == TLS(mode: .verifyCA, trustRoots: .system))
        let full = try PostgresURL.parse(Self.base + "?sslmode=verify-full").tls
        #expect(full == TLS(mode: .verifyFull, trustRoots: .system) && full.verifiesHostname)
        #expect(!TLS(mode: .verifyCA, trustRoots: .system).verifiesHostname)
    }

    @Test func rootCertificateFile() async throws {
        try await TestCertificates.withDirectory { directory in
            let path = try TestCertificates.write(TestCertificates.unrelatedCA, "root ca.crt", in: directory)
            let encoded = try #require(path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed))
            for mode in ["require", "verify-ca", "verify-full"] {
                let parts = try PostgresURL.parse(Self.base + "?sslmode=\(mode)&sslrootcert=\(encoded)")
                // With a root certificate, `require` checks the chain as libpq does.
                #expect(parts.tls.trustRoots == .file(path), "\(mode)")
            }
            #expect(try PostgresURL.parse(Self.base + "?sslrootcert=\(encoded)&sslmode=verify-full").tls.verifiesHostname)
            // A bundle of several certificates is fine too.
            let bundle = try TestCertificates.write(TestCertificates.unrelatedCA + TestCertificates.unrelatedCA, "bundle.crt", in: directory)
            #expect(try PostgresURL.parse(Self.base + "?sslmode=verify-ca&sslrootcert=\(bundle)").tls.trustRoots == .file(bundle))
            _ = try PostgresURL.configuration(Self.base + "?sslmode=verify-full&sslrootcert=\(encoded)")
        }
    }

    @Test func systemRootsOnlyWithVerifyFull() throws {
        #expect(try PostgresURL.parse(Self.base + "?sslmode=verify-full&sslrootcert=system").tls == TLS(mode: .verifyFull, trustRoots: .system))
        Self.expectInvalid(Self.base + "?sslmode=verify-ca&sslrootcert=system", mentioning: "verify-full")
        Self.expectInvalid(Self.base + "?sslrootcert=system", mentioning: "sslmode=require")
    }

    @Test func unusableRootCertificateFiles() async throws {
        try await TestCertificates.withDirectory { directory in
            Self.expectInvalid(Self.base + "?sslmode=verify-full&sslrootcert=\(directory.path)/nope.crt", mentioning: "does not exist")
            Self.expectInvalid(Self.base + "?sslmode=verify-full&sslrootcert=\(directory.path)", mentioning: "is a directory")
            Self.expectInvalid(Self.base + "?sslmode=verify-full&sslrootcert=", mentioning: "sslrootcert is empty")
            let empty = try TestCertificates.write("", "empty.crt", in: directory)
            Self.expectInvalid(Self.base + "?sslmode=verify-full&sslrootcert=\(empty)", mentioning: empty)
            let garbage = try TestCertificates.write("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", "garbage.crt", in: directory)
            Self.expectInvalid(Self.base + "?sslmode=verify-full&sslrootcert=\(garbage)", mentioning: garbage)
            let text = try TestCertificates.write("just text\n", "text.crt", in: directory)
            Self.expectInvalid(Self.base + "?sslmode=verify-ca&sslrootcert=\(text)", mentioning: text)
            // A root certificate with a mode that checks nothing is a mistake, not a no-op.
            let good = try TestCertificates.write(TestCertificates.unrelatedCA, "ca.crt", in: directory)
            for mode in ["disable", "allow", "prefer"] {
                Self.expectInvalid(Self.base + "?sslmode=\(mode)&sslrootcert=\(good)", mentioning: "sslrootcert needs sslmode=require")
            }
        }
    }

    @Test func refusedURLs() {
        Self.expectInvalid(Self.base + "?sslmode=verify", mentioning: "unsupported sslmode=verify")
        Self.expectInvalid(Self.base + "?sslmode=require&sslmode=disable", mentioning: "sslmode is given twice")
        // Client certificates and other libpq parameters are not supported: refused, not ignored.
        Self.expectInvalid(Self.base + "?sslmode=require&sslcert=/tmp/client.crt", mentioning: "unsupported parameter 'sslcert'")
        Self.expectInvalid(Self.base + "?application_name=x", mentioning: "unsupported parameter 'application_name'")
        Self.expectInvalid("mysql://u@h/db", mentioning: "must look like")
        Self.expectInvalid("postgres://h/db", mentioning: "needs a user name")
        Self.expectInvalid("postgres://u@h:70000/db", mentioning: "out of range")
        Self.expectInvalid("not a url at all", mentioning: "must look like")
    }

    @Test func errorsDoNotShowThePassword() {
        for url in [Self.base + "?sslmode=bogus", Self.base + "?sslcert=x", Self.base + "?sslmode=verify-ca&sslrootcert=/nope"] {
            #expect(throws: PostgresURL.Invalid.self) { try PostgresURL.parse(url) }
            do {
                _ = try PostgresURL.parse(url)
            } catch {
                #expect(!error.description.contains("s3cr"), "\(error.description)")
            }
        }
    }

    static func expectInvalid(_ url: String, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let parts = try PostgresURL.parse(url)
            Issue.record("\(url) was accepted: \(parts)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.description.contains(text), "\(url): \(error.description)", sourceLocation: sourceLocation)
        }
    }
}
