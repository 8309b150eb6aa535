/// What went wrong talking to Redis. `code` is stable; `message` never carries a password.
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The URL could not be parsed.
        public static let invalidURL = Code(name: "invalid_url")
        /// The TCP (or TLS) connection could not be made in time, or was refused.
        public static let connectFailed = Code(name: "connect_failed")
        /// The connection is closed or was never ready.
        public static let connectionClosed = Code(name: "connection_closed")
        /// A reply did not arrive within the command timeout (the connection is then closed,
        /// since later replies could no longer be matched to their commands).
        public static let timeout = Code(name: "timeout")
        /// Redis answered with an error reply (`-ERR …`, `-NOSCRIPT …`, `-WRONGPASS …`).
        public static let server = Code(name: "server_error")
        /// The bytes from Redis were not valid RESP.
        public static let protocolError = Code(name: "protocol_error")
        /// Too many commands are waiting for the connection.
        public static let overloaded = Code(name: "overloaded")
        /// The command is not allowed here (e.g. a regular command on a subscriber connection).
        public static let invalidCommand = Code(name: "invalid_command")
        /// The TLS set-up failed (bad CA file, handshake refused).
        public static let tls = Code(name: "tls")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// For `.server` errors: the first word of Redis's message (`ERR`, `NOSCRIPT`, `WRONGPASS`, …).
    public var serverErrorPrefix: Substring? {
        guard code == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first
    }

    public var description: String { "redis \(code): \(message)" }
}
