import Foundation
import Signaling

/// A request body: a JSON object whose members are read one by one, with the API's rules
/// (see the conventions in `openapi.yaml`):
///
/// - not JSON at all (or empty where a body is required) → `400 bad_request`;
/// - JSON that is not an object, a required member missing or `null`, a member of the wrong
///   type or out of range → `422 validation_failed`, the message naming the member;
/// - an optional member that is `null` is the same as an absent one;
/// - integers may be written with a fraction or an exponent (`5.0`, `5e0`) when their value
///   is integral;
/// - strings are counted in Unicode scalars;
/// - JSON values kept as they are (`metadata`, `data`) are taken verbatim, whitespace
///   removed, so large integers and the like survive unchanged.
///
/// Parsed with ``JSONScanner`` rather than Codable because Foundation's decoders cannot
/// tell these cases apart, nor hand back a sub-value's raw bytes.
struct JSONBody: Sendable {
    private let bytes: [UInt8]
    /// Non-null members; the last one wins when a name repeats.
    private var members: [String: JSONScanner.Value] = [:]
    /// `limits.` for a nested object: error messages name the full path.
    private let prefix: String

    /// Parses a whole request body.
    init(parsing bytes: [UInt8]) throws(APIError) {
        let kind: JSONScanner.Kind
        do {
            kind = try RawJSON(validating: bytes).kind
        } catch {
            throw APIError.badRequest("the body is not valid JSON: \(error.message) at byte \(error.offset)")
        }
        guard kind == .object else { throw APIError.invalid("the body must be a JSON object") }
        try self.init(object: bytes, prefix: "")
    }

    /// `bytes` is a JSON object already validated.
    private init(object bytes: [UInt8], prefix: String) throws(APIError) {
        self.bytes = bytes
        self.prefix = prefix
        var members: [String: JSONScanner.Value] = [:]
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONScanner.Failure) in
                try JSONScanner.scanObject(buffer) { key, value throws(JSONScanner.Failure) in
                    let name = JSONScanner.decodeString(buffer, key)
                    if value.kind == .null {
                        members[name] = nil
                    } else {
                        members[name] = value
                    }
                }
            }
        }
        guard case .success = result else { throw APIError.badRequest("the body is not valid JSON") }
        self.members = members
    }

    private func name(_ key: String) -> String { "`\(prefix)\(key)`" }

    private func text(_ value: JSONScanner.Value) -> String {
        String(decoding: bytes[value.range], as: UTF8.self)
    }

    /// Whether the member is present and not `null`.
    func has(_ key: String) -> Bool { members[key] != nil }

    /// The error of a required member that is missing or `null`.
    func missing(_ key: String) -> APIError {
        APIError.invalid("\(name(key)) is required")
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let value = members[key] else { return nil }
        guard value.kind == .string else { throw APIError.invalid("\(name(key)) must be a string") }
        return bytes.withUnsafeBytes { buffer in
            JSONScanner.decodeString(buffer, (value.range.lowerBound + 1)..<(value.range.upperBound - 1))
        }
    }

    /// A string that must satisfy ``Identifier`` (room names, peer ids): 1–128 Unicode
    /// scalars, no control characters.
    func identifier(_ key: String) throws(APIError) -> String? {
        guard let text = try string(key) else { return nil }
        guard Identifier.isValid(text) else {
            throw APIError.invalid("\(name(key)) must be 1–\(Identifier.maxLength) characters without control characters")
        }
        return text
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let value = members[key] else { return nil }
        guard value.kind == .bool else { throw APIError.invalid("\(name(key)) must be a boolean") }
        return bytes[value.range.lowerBound] == UInt8(ascii: "t")
    }

    /// An integer within `range`; any JSON number with an integral value is accepted.
    func int(_ key: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let value = members[key] else { return nil }
        let outOfRange = APIError.invalid("\(name(key)) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        guard value.kind == .number else { throw APIError.invalid("\(name(key)) must be an integer") }
        let text = text(value)
        let integer: Int
        if !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
            // Plain digits: exact, and anything past Int's range is out of range.
            guard let parsed = Int(text) else { throw outOfRange }
            integer = parsed
        } else {
            guard let double = Double(text), double.isFinite, double.rounded(.towardZero) == double else {
                throw APIError.invalid("\(name(key)) must be an integer")
            }
            guard abs(double) <= 1e15 else { throw outOfRange }
            integer = Int(double)
        }
        guard range.contains(integer) else { throw outOfRange }
        return integer
    }

    /// A nested object, read with the same rules.
    func object(_ key: String) throws(APIError) -> JSONBody? {
        guard let value = members[key] else { return nil }
        guard value.kind == .object else { throw APIError.invalid("\(name(key)) must be an object") }
        return try JSONBody(object: Array(bytes[value.range]), prefix: "\(prefix)\(key).")
    }

    /// Any JSON value but `null`, verbatim without insignificant whitespace.
    func raw(_ key: String) -> RawJSON? {
        guard let value = members[key] else { return nil }
        // Compacting a valid document leaves a valid document.
        return try? RawJSON(validating: Self.compact(bytes[value.range]))
    }

    /// A JSON object of at most `maxBytes` once compacted (`metadata`).
    func metadata(_ key: String, maxBytes: Int = 4096) throws(APIError) -> RawJSON? {
        guard let value = members[key] else { return nil }
        guard value.kind == .object, let raw = raw(key) else { throw APIError.invalid("\(name(key)) must be a JSON object") }
        guard raw.bytes.count <= maxBytes else { throw APIError.invalid("\(name(key)) exceeds \(maxBytes) bytes") }
        return raw
    }

    /// An array of strings.
    func strings(_ key: String) throws(APIError) -> [String]? {
        guard let value = members[key] else { return nil }
        let wrongType = APIError.invalid("\(name(key)) must be an array of strings")
        guard value.kind == .array else { throw wrongType }
        let slice = Array(bytes[value.range])
        var elements: [String] = []
        var allStrings = true
        let result = slice.withUnsafeBytes { buffer in
            Result { () throws(JSONScanner.Failure) in
                try JSONScanner.scanArray(buffer) { element throws(JSONScanner.Failure) in
                    guard element.kind == .string else {
                        allStrings = false
                        return
                    }
                    elements.append(JSONScanner.decodeString(buffer, (element.range.lowerBound + 1)..<(element.range.upperBound - 1)))
                }
            }
        }
        guard case .success = result, allStrings else { throw wrongType }
        return elements
    }

    /// The bytes of a valid JSON value without whitespace outside strings.
    static func compact(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                out.append(byte)
            } else {
                switch byte {
                case 0x20, 0x09, 0x0A, 0x0D: continue
                case UInt8(ascii: "\""): inString = true
                default: break
                }
                out.append(byte)
            }
        }
        return out
    }
}
