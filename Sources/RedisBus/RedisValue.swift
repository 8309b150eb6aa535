/// One RESP2 reply, as decoded by hiredis's reader.
public enum RedisValue: Sendable, Hashable {
    /// `+OK` and other status replies.
    case simpleString(String)
    /// `-ERR …` replies; the text as Redis sent it.
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$3\r\nabc`: binary-safe bytes.
    case bulkString([UInt8])
    /// `$-1` and `*-1`.
    case null
    /// `*n`
    case array([RedisValue])

    /// The bytes of a bulk or simple string.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): bytes
        case .simpleString(let text): Array(text.utf8)
        default: nil
        }
    }

    /// A bulk or simple string as UTF-8 text.
    public var string: String? {
        switch self {
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        case .simpleString(let text): text
        default: nil
        }
    }

    /// An integer reply.
    public var int: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The elements of an array reply.
    public var array: [RedisValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    /// Whether this is an error reply.
    public var isError: Bool {
        if case .error = self { return true }
        return false
    }
}

extension RedisValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let text): "+\(text)"
        case .error(let text): "-\(text)"
        case .integer(let value): ":\(value)"
        case .bulkString(let bytes): "$\(String(decoding: bytes, as: UTF8.self).debugDescription)"
        case .null: "(nil)"
        case .array(let values): "[\(values.map(\.description).joined(separator: ", "))]"
        }
    }
}
