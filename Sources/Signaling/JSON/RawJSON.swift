import Foundation

/// One validated JSON value kept as its UTF-8 text, forwarded without re-encoding.
public struct RawJSON: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let kind: JSONScanner.Kind

    /// Wraps bytes already validated by ``JSONScanner``.
    init(validated bytes: [UInt8], kind: JSONScanner.Kind) {
        self.bytes = bytes
        self.kind = kind
    }

    /// Validates `bytes` as one JSON value.
    public init(validating bytes: [UInt8]) throws(JSONScanner.Failure) {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONScanner.Failure) in try JSONScanner.validate(buffer) }
        }
        self.init(validated: bytes, kind: try result.get())
    }

    public init(validating text: String) throws(JSONScanner.Failure) {
        try self.init(validating: Array(text.utf8))
    }

    /// Encodes a Codable value (REST paths, not the relay hot path).
    public init(encoding value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        try self.init(validating: [UInt8](data))
    }

    public static let emptyObject = RawJSON(validated: Array("{}".utf8), kind: .object)
    public static let emptyArray = RawJSON(validated: Array("[]".utf8), kind: .array)
    public static let null = RawJSON(validated: Array("null".utf8), kind: .null)

    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// Decodes the value with Foundation (REST paths only).
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

extension RawJSON: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let value = try container.decode(JSONValue.self)
        try self.init(encoding: value)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(try decode(JSONValue.self))
    }
}

/// A JSON value tree, for the REST API where bodies are decoded with Codable.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if value.rounded() == value, abs(value) < 1e15 {
                try container.encode(Int64(value))
            } else {
                try container.encode(value)
            }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}
