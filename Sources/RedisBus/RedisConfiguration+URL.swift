extension RedisConfiguration {
    /// Parses `redis://` or `rediss://[[user]:password@]host[:port][/db][?query]`.
    ///
    /// - The port defaults to 6379; an IPv6 host is written in brackets (`[::1]:6379`).
    /// - User and password may be percent-encoded; `redis://:secret@host` is a password for
    ///   the `default` user, `redis://alice:secret@host` an ACL user.
    /// - `/db` is the database number for `SELECT` (0 when absent).
    /// - Query options: `ca=/path/ca.pem` (trust this CA file instead of the system roots, for
    ///   `rediss://`), `tls_server_name=name`, `name=client-name` (`CLIENT SETNAME`),
    ///   `connect_timeout=seconds`, `command_timeout=seconds` (decimals allowed).
    ///
    /// Errors say what is wrong and never repeat the password.
    public init(url: String) throws(RedisError) {
        self.init()
        var rest = Substring(url)
        if rest.hasPrefix("redis://") {
            tls = false
            rest = rest.dropFirst("redis://".count)
        } else if rest.hasPrefix("rediss://") {
            tls = true
            rest = rest.dropFirst("rediss://".count)
        } else {
            throw RedisError(.invalidURL, "the Redis URL must start with redis:// or rediss://")
        }
        // userinfo is up to the last '@', looked for before the query is split off, so a
        // password with an unencoded '@', '/', '?' or '#' still parses (and never ends up in
        // an error message about the path or the query).
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let user = try Self.percentDecoded(userinfo[..<colon], what: "user name")
                username = user.isEmpty ? nil : user
                password = try Self.percentDecoded(userinfo[userinfo.index(after: colon)...], what: "password")
            } else {
                // `redis://secret@host`: like most clients, a lone userinfo is the password.
                password = try Self.percentDecoded(userinfo, what: "password")
            }
        }
        var query: Substring?
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        // host and port
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw RedisError(.invalidURL, "the Redis URL has an unclosed '[' in its host")
            }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw RedisError(.invalidURL, "the Redis URL has junk after its IPv6 host") }
                port = try Self.port(after.dropFirst())
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            port = try Self.port(rest[rest.index(after: colon)...])
        } else {
            host = String(rest)
        }
        guard !host.isEmpty else { throw RedisError(.invalidURL, "the Redis URL has no host") }
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else {
                throw RedisError(.invalidURL, "the Redis URL's path must be a database number, not '\(path)'")
            }
            database = db
        }
        if let query { try applyQuery(query) }
    }

    private static func port(_ text: Substring) throws(RedisError) -> Int {
        guard let port = Int(text), (1...65535).contains(port) else {
            throw RedisError(.invalidURL, "the Redis URL's port must be a number from 1 to 65535, not '\(text)'")
        }
        return port
    }

    private mutating func applyQuery(_ query: Substring) throws(RedisError) {
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0]
            let value = try Self.percentDecoded(parts.count > 1 ? parts[1] : "", what: "option \(key)")
            switch key {
            case "ca", "ca_file", "tls_ca_file": caFile = value
            case "tls_server_name", "sni": tlsServerName = value
            case "name", "client_name": clientName = value
            case "connect_timeout": connectTimeout = try Self.seconds(value, key)
            case "command_timeout", "timeout": commandTimeout = try Self.seconds(value, key)
            default:
                throw RedisError(.invalidURL, "the Redis URL has an unknown option '\(key)' (known: ca, tls_server_name, name, connect_timeout, command_timeout)")
            }
        }
    }

    private static func seconds(_ text: String, _ key: Substring) throws(RedisError) -> Duration {
        guard let value = Double(text), value > 0, value < 86_400 else {
            throw RedisError(.invalidURL, "the Redis URL's \(key) must be a positive number of seconds, not '\(text)'")
        }
        return .milliseconds(Int64(value * 1000))
    }

    private static func percentDecoded(_ text: Substring, what: String) throws(RedisError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw RedisError(.invalidURL, "the Redis URL's \(what) has a bad percent-escape")
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw RedisError(.invalidURL, "the Redis URL's \(what) is not UTF-8 once decoded")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
