import Foundation
import NIOSSL
import PostgresNIO

/// Pool and statement settings of the PostgreSQL store (issue #3: connection settings).
public struct PostgresSettings: Sendable {
    /// Most connections the pool opens.
    public var poolSize = 20
    /// Server-side limit on every statement (`statement_timeout`); nil leaves the server's.
    public var statementTimeout: Duration? = .seconds(10)
    public var connectTimeout: Duration = .seconds(5)
    /// Longest any store call may take, waiting for a connection included: while the
    /// server is unreachable the pool keeps retrying, and callers get `unavailable` after
    /// this instead of waiting for it.
    public var requestTimeout: Duration = .seconds(5)

    public init() {}
}

/// Parses `postgres://user:pass@host:port/db?sslmode=…&sslrootcert=…` into a client
/// configuration. The query parameters are libpq's, with libpq's meaning; any other
/// parameter is refused rather than ignored.
public enum PostgresURL {
    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String

        public init(_ description: String) { self.description = description }
    }

    /// What a URL says about TLS: libpq's `sslmode` and `sslrootcert`.
    public struct TLSSettings: Sendable, Equatable {
        public enum Mode: String, Sendable, CaseIterable {
            case disable, allow, prefer, require
            case verifyCA = "verify-ca"
            case verifyFull = "verify-full"
        }

        /// The certificate authorities the server's certificate must chain to.
        public enum TrustRoots: Sendable, Equatable {
            /// The system's trust store (`verify-ca`/`verify-full` without `sslrootcert`, or
            /// `sslrootcert=system`).
            case system
            /// The PEM certificates in this file, and no others (`sslrootcert=<path>`).
            case file(String)
        }

        public var mode: Mode
        /// nil: the server's certificate is not checked (`allow`, `prefer`, `require`
        /// without `sslrootcert`).
        public var trustRoots: TrustRoots?

        public init(mode: Mode, trustRoots: TrustRoots?) {
            self.mode = mode
            self.trustRoots = trustRoots
        }

        /// Whether the certificate must also name the host (`verify-full`): a DNS name, or
        /// an IP address subjectAltName when the host is an address.
        public var verifiesHostname: Bool { mode == .verifyFull }

        /// postgres-nio's TLS setting for this.
        public var clientTLS: PostgresClient.Configuration.TLS {
            guard mode != .disable else { return .disable }
            var tls = TLSConfiguration.makeClientConfiguration()
            switch trustRoots {
            case nil:
                tls.certificateVerification = .none
            case .system:
                tls.trustRoots = .default
                tls.certificateVerification = verifiesHostname ? .fullVerification : .noHostnameVerification
            case .file(let path):
                tls.trustRoots = .file(path)
                tls.certificateVerification = verifiesHostname ? .fullVerification : .noHostnameVerification
            }
            return mode == .allow || mode == .prefer ? .prefer(tls) : .require(tls)
        }
    }

    /// The parts of a URL, checked.
    public struct Parts: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var user: String
        public var password: String?
        public var database: String
        public var tls: TLSSettings
    }

    /// The query parameters understood here (libpq's names).
    public static let parameters = ["sslmode", "sslrootcert"]

    public static func configuration(_ url: String, settings: PostgresSettings = .init()) throws -> PostgresClient.Configuration {
        let parts = try parse(url)
        var configuration = PostgresClient.Configuration(
            host: parts.host, port: parts.port, username: parts.user, password: parts.password, database: parts.database,
            tls: parts.tls.clientTLS)
        configuration.options.maximumConnections = max(1, settings.poolSize)
        configuration.options.connectTimeout = settings.connectTimeout
        if let timeout = settings.statementTimeout {
            let milliseconds = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
            configuration.options.additionalStartupParameters = [("statement_timeout", "\(milliseconds)")]
        }
        return configuration
    }

    /// Checks a URL without connecting; `sslrootcert` must name a readable PEM file holding
    /// at least one certificate.
    public static func parse(_ url: String) throws(Invalid) -> Parts {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            scheme == "postgres" || scheme == "postgresql", let host = components.host, !host.isEmpty
        else {
            throw Invalid("SWITCHBOARD_DATABASE_URL must look like postgres://user:pass@host:port/db")
        }
        guard let user = components.percentEncodedUser?.removingPercentEncoding, !user.isEmpty else {
            throw Invalid("SWITCHBOARD_DATABASE_URL needs a user name")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw Invalid("SWITCHBOARD_DATABASE_URL: port \(port) is out of range") }
        var database = components.path
        while database.hasPrefix("/") { database.removeFirst() }
        return Parts(
            host: host, port: port, user: user, password: components.percentEncodedPassword?.removingPercentEncoding,
            database: database.isEmpty ? user : (database.removingPercentEncoding ?? database),
            tls: try tlsSettings(components.queryItems ?? []))
    }

    private static func tlsSettings(_ items: [URLQueryItem]) throws(Invalid) -> TLSSettings {
        var values: [String: String] = [:]
        for item in items {
            guard parameters.contains(item.name) else {
                throw Invalid("SWITCHBOARD_DATABASE_URL: unsupported parameter '\(item.name)' (supported: \(parameters.joined(separator: ", ")))")
            }
            guard values[item.name] == nil else { throw Invalid("SWITCHBOARD_DATABASE_URL: \(item.name) is given twice") }
            values[item.name] = item.value ?? ""
        }
        let modeName = values["sslmode"] ?? "prefer"
        guard let mode = TLSSettings.Mode(rawValue: modeName) else {
            let modes = TLSSettings.Mode.allCases.map(\.rawValue).joined(separator: ", ")
            throw Invalid("SWITCHBOARD_DATABASE_URL: unsupported sslmode=\(modeName) (\(modes))")
        }
        guard let rootCert = values["sslrootcert"] else {
            // libpq would read ~/.postgresql/root.crt; we use the system's trust store.
            return TLSSettings(mode: mode, trustRoots: mode == .verifyCA || mode == .verifyFull ? .system : nil)
        }
        switch mode {
        case .disable, .allow, .prefer:
            throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert needs sslmode=require, verify-ca or verify-full (not \(mode.rawValue))")
        case .require, .verifyCA, .verifyFull:
            break
        }
        if rootCert == "system" {
            // As libpq 16: the system's roots only make sense with the host name checked.
            guard mode == .verifyFull else {
                throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert=system needs sslmode=verify-full (not \(mode.rawValue))")
            }
            return TLSSettings(mode: mode, trustRoots: .system)
        }
        try checkCertificateFile(rootCert)
        // As libpq: `require` with a root certificate checks the chain, like `verify-ca`.
        return TLSSettings(mode: mode, trustRoots: .file(rootCert))
    }

    private static func checkCertificateFile(_ path: String) throws(Invalid) {
        guard !path.isEmpty else { throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert is empty") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert \(path) does not exist")
        }
        guard !isDirectory.boolValue else { throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert \(path) is a directory, not a PEM file") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert \(path) is not readable")
        }
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert \(path) is not a PEM certificate file")
        }
        guard !certificates.isEmpty else { throw Invalid("SWITCHBOARD_DATABASE_URL: sslrootcert \(path) holds no PEM certificate") }
    }
}
