/// How to reach one Redis server and what to do once connected. Built once (usually from
/// ``init(url:)``) and shared by every connection of a ``RedisClient``.
public struct RedisConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// `rediss://`: TLS with swift-nio-ssl, trust roots from the system unless ``caFile`` is set.
    public var tls: Bool
    /// A PEM file of CA certificates to trust instead of the system roots (`?ca=/path`).
    public var caFile: String?
    /// The TLS server name to verify (and send as SNI) when it differs from ``host``
    /// (`?tls_server_name=`). With neither this nor a DNS-name host, the certificate is
    /// checked against the IP address connected to.
    public var tlsServerName: String?
    /// ACL user (`AUTH user password`); nil means `AUTH password` (the `default` user).
    public var username: String?
    /// Never printed: ``description`` and every error show it as `***`.
    public var password: String?
    /// `SELECT` this database after connecting (not sent when 0).
    public var database: Int
    /// `CLIENT SETNAME` (`?name=`); shows up in `CLIENT LIST`.
    public var clientName: String?
    /// The TCP connect (and TLS handshake) deadline.
    public var connectTimeout: Duration
    /// How long a reply may take. When it passes, every command waiting on that connection
    /// fails with ``RedisError/Code/timeout`` and the connection is closed (later replies
    /// could not be matched to their commands any more); a ``RedisClient`` then reconnects.
    public var commandTimeout: Duration
    /// Commands written but not yet answered, per connection, beyond which new commands are
    /// refused at once (``RedisError/Code/overloaded``; `publish` returns false).
    public var maxPendingCommands: Int
    /// Bytes queued for the socket beyond which new commands are refused the same way.
    public var maxOutboundBytes: Int

    public init(
        host: String = "127.0.0.1", port: Int = 6379, tls: Bool = false, caFile: String? = nil,
        tlsServerName: String? = nil, username: String? = nil, password: String? = nil, database: Int = 0,
        clientName: String? = nil, connectTimeout: Duration = .seconds(5), commandTimeout: Duration = .seconds(5),
        maxPendingCommands: Int = 100_000, maxOutboundBytes: Int = 16 << 20
    ) {
        self.host = host
        self.port = port
        self.tls = tls
        self.caFile = caFile
        self.tlsServerName = tlsServerName
        self.username = username
        self.password = password
        self.database = database
        self.clientName = clientName
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.maxPendingCommands = maxPendingCommands
        self.maxOutboundBytes = maxOutboundBytes
    }
}

extension RedisConfiguration: CustomStringConvertible {
    /// The URL with the password replaced by `***`.
    public var description: String {
        var text = tls ? "rediss://" : "redis://"
        if username != nil || password != nil {
            text += username ?? ""
            if password != nil { text += ":***" }
            text += "@"
        }
        text += host.contains(":") ? "[\(host)]" : host
        text += ":\(port)"
        if database != 0 { text += "/\(database)" }
        return text
    }
}
