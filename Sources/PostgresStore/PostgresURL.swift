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

/// Parses `postgres://user:pass@host:port/db?sslmode=…` into a client configuration.
public enum PostgresURL {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public static func configuration(_ url: String, settings: PostgresSettings = .init()) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            scheme == "postgres" || scheme == "postgresql", let host = components.host, !host.isEmpty
        else {
            throw Invalid(description: "SWITCHBOARD_DATABASE_URL must look like postgres://user:pass@host:port/db")
        }
        guard let user = components.percentEncodedUser?.removingPercentEncoding, !user.isEmpty else {
            throw Invalid(description: "SWITCHBOARD_DATABASE_URL needs a user name")
        }
        let password = components.percentEncodedPassword?.removingPercentEncoding
        var database = components.path
        while database.hasPrefix("/") { database.removeFirst() }
        let sslmode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable":
            tls = .disable
        case "allow", "prefer":
            var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
            tlsConfiguration.certificateVerification = .none
            tls = .prefer(tlsConfiguration)
        case "require":
            var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
            tlsConfiguration.certificateVerification = .none
            tls = .require(tlsConfiguration)
        case "verify-ca", "verify-full":
            var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
            tlsConfiguration.certificateVerification = sslmode == "verify-full" ? .fullVerification : .noHostnameVerification
            tls = .require(tlsConfiguration)
        default:
            throw Invalid(description: "unsupported sslmode=\(sslmode) (disable, allow, prefer, require, verify-ca, verify-full)")
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user, password: password,
            database: database.isEmpty ? user : database.removingPercentEncoding, tls: tls)
        configuration.options.maximumConnections = max(1, settings.poolSize)
        configuration.options.connectTimeout = settings.connectTimeout
        if let timeout = settings.statementTimeout {
            let milliseconds = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
            configuration.options.additionalStartupParameters = [("statement_timeout", "\(milliseconds)")]
        }
        return configuration
    }
}
