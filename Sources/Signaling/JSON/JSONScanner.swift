/// A strict JSON validator that reports the byte ranges of an object's top-level members.
///
/// Why by hand: the relay forwards a frame's `data` (an SDP blob, an ICE candidate, any JSON)
/// to other peers verbatim. Foundation's decoders cannot hand back the raw bytes of a
/// sub-value, so using them would mean building a value tree for every frame and encoding
/// it again for every receiver. This scanner validates the whole document (RFC 8259, UTF-8
/// included, nesting bounded so hostile input cannot exhaust the stack) without allocating,
/// and lets the caller copy out only what it keeps.
public struct JSONScanner {
    /// The kind of a JSON value.
    public enum Kind: Sendable, Equatable {
        case object, array, string, number, bool, null
    }

    /// One value inside the scanned bytes.
    public struct Value: Sendable, Equatable {
        public var kind: Kind
        /// Byte range of the value, quotes included for strings.
        public var range: Range<Int>
    }

    /// Why a document was rejected.
    public struct Failure: Error, Sendable, Equatable {
        public var message: String
        public var offset: Int
    }

    /// Maximum nesting of arrays and objects.
    public static let maxDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private var index: Int = 0

    private init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Validates `bytes` as one JSON object and calls `body` with each top-level member's key
    /// range (inside the quotes, still escaped) and value. Duplicate keys are reported in order.
    public static func scanObject(
        _ bytes: UnsafeRawBufferPointer,
        _ body: (_ key: Range<Int>, _ value: Value) throws(Failure) -> Void
    ) throws(Failure) {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "{") else {
            throw Failure(message: "a frame must be a JSON object", offset: scanner.index)
        }
        scanner.index += 1
        scanner.skipWhitespace()
        if scanner.peek() == UInt8(ascii: "}") {
            scanner.index += 1
        } else {
            while true {
                scanner.skipWhitespace()
                guard scanner.peek() == UInt8(ascii: "\"") else {
                    throw scanner.failure("expected a member name")
                }
                let keyStart = scanner.index + 1
                try scanner.scanString()
                let keyRange = keyStart..<(scanner.index - 1)
                scanner.skipWhitespace()
                guard scanner.peek() == UInt8(ascii: ":") else { throw scanner.failure("expected ':'") }
                scanner.index += 1
                scanner.skipWhitespace()
                let value = try scanner.scanValue(depth: 1)
                try body(keyRange, value)
                scanner.skipWhitespace()
                switch scanner.peek() {
                case UInt8(ascii: ","): scanner.index += 1
                case UInt8(ascii: "}"): scanner.index += 1
                    scanner.skipWhitespace()
                    guard scanner.index == bytes.count else { throw scanner.failure("trailing data after the object") }
                    return
                default: throw scanner.failure("expected ',' or '}'")
                }
            }
        }
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { throw scanner.failure("trailing data after the object") }
    }

    /// Validates `bytes` as one JSON array and calls `body` with each element.
    public static func scanArray(
        _ bytes: UnsafeRawBufferPointer,
        _ body: (_ element: Value) throws(Failure) -> Void
    ) throws(Failure) {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "[") else { throw scanner.failure("expected an array") }
        scanner.index += 1
        scanner.skipWhitespace()
        if scanner.peek() == UInt8(ascii: "]") {
            scanner.index += 1
        } else {
            while true {
                scanner.skipWhitespace()
                try body(try scanner.scanValue(depth: 1))
                scanner.skipWhitespace()
                switch scanner.peek() {
                case UInt8(ascii: ","): scanner.index += 1
                case UInt8(ascii: "]"):
                    scanner.index += 1
                    scanner.skipWhitespace()
                    guard scanner.index == bytes.count else { throw scanner.failure("trailing data after the array") }
                    return
                default: throw scanner.failure("expected ',' or ']'")
                }
            }
        }
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { throw scanner.failure("trailing data after the array") }
    }

    /// Validates `bytes` as exactly one JSON value and returns its kind.
    public static func validate(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Kind {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        let value = try scanner.scanValue(depth: 0)
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { throw scanner.failure("trailing data after the value") }
        return value.kind
    }

    /// Decodes the JSON string whose raw bytes (inside the quotes) are `range`.
    /// The range must come from a successful scan, so escapes are known to be well formed.
    public static func decodeString(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        let slice = UnsafeRawBufferPointer(rebasing: bytes[range])
        if !slice.contains(UInt8(ascii: "\\")) {
            return String(decoding: slice, as: UTF8.self)
        }
        var out: [UInt8] = []
        out.reserveCapacity(slice.count)
        var i = slice.startIndex
        while i < slice.endIndex {
            let byte = slice[i]
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                i += 1
                continue
            }
            let escape = slice[i + 1]
            i += 2
            switch escape {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4(slice, i)
                i += 4
                if (0xD800...0xDBFF).contains(scalar), i + 6 <= slice.endIndex,
                    slice[i] == UInt8(ascii: "\\"), slice[i + 1] == UInt8(ascii: "u")
                {
                    let low = hex4(slice, i + 2)
                    if (0xDC00...0xDFFF).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                let unicode = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(unicode).utf8))
            default: out.append(escape)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex4(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        var value: UInt32 = 0
        for offset in 0..<4 {
            value = value << 4 | UInt32(hexValue(bytes[at + offset]) ?? 0)
        }
        return value
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    // MARK: - Scanning

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private func failure(_ message: String) -> Failure {
        Failure(message: message, offset: index)
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func scanValue(depth: Int) throws(Failure) -> Value {
        let start = index
        guard let byte = peek() else { throw failure("unexpected end of input") }
        let kind: Kind
        switch byte {
        case UInt8(ascii: "{"):
            try scanObjectBody(depth: depth + 1)
            kind = .object
        case UInt8(ascii: "["):
            try scanArrayBody(depth: depth + 1)
            kind = .array
        case UInt8(ascii: "\""):
            try scanString()
            kind = .string
        case UInt8(ascii: "t"):
            try scanLiteral("true")
            kind = .bool
        case UInt8(ascii: "f"):
            try scanLiteral("false")
            kind = .bool
        case UInt8(ascii: "n"):
            try scanLiteral("null")
            kind = .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
            kind = .number
        default:
            throw failure("unexpected character")
        }
        return Value(kind: kind, range: start..<index)
    }

    private mutating func scanObjectBody(depth: Int) throws(Failure) {
        guard depth <= Self.maxDepth else { throw failure("nesting too deep") }
        index += 1  // {
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw failure("expected a member name") }
            try scanString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw failure("expected ':'") }
            index += 1
            skipWhitespace()
            _ = try scanValue(depth: depth)
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return
            default: throw failure("expected ',' or '}'")
            }
        }
    }

    private mutating func scanArrayBody(depth: Int) throws(Failure) {
        guard depth <= Self.maxDepth else { throw failure("nesting too deep") }
        index += 1  // [
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            _ = try scanValue(depth: depth)
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return
            default: throw failure("expected ',' or ']'")
            }
        }
    }

    private mutating func scanLiteral(_ literal: StaticString) throws(Failure) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw failure("unexpected end of input") }
        let matches = literal.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
        }
        guard matches else { throw failure("invalid literal") }
        index += count
    }

    private mutating func scanNumber() throws(Failure) {
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), isDigit(first) else { throw failure("invalid number") }
        index += 1
        if first != UInt8(ascii: "0") {
            while let byte = peek(), isDigit(byte) { index += 1 }
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let byte = peek(), isDigit(byte) else { throw failure("invalid number") }
            while let byte = peek(), isDigit(byte) { index += 1 }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard let byte = peek(), isDigit(byte) else { throw failure("invalid number") }
            while let byte = peek(), isDigit(byte) { index += 1 }
        }
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// Scans a string starting at its opening quote; leaves `index` after the closing quote.
    private mutating func scanString() throws(Failure) {
        index += 1  // opening quote
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { throw failure("unterminated string") }
                switch bytes[index + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 2
                case UInt8(ascii: "u"):
                    guard index + 6 <= bytes.count else { throw failure("invalid \\u escape") }
                    for offset in 2..<6 where Self.hexValue(bytes[index + offset]) == nil {
                        throw failure("invalid \\u escape")
                    }
                    index += 6
                default:
                    throw failure("invalid escape")
                }
            case 0x00..<0x20:
                throw failure("control character in string")
            case 0x20..<0x80:
                index += 1
            default:
                try scanUTF8Sequence()
            }
        }
        throw failure("unterminated string")
    }

    /// Validates one multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates).
    private mutating func scanUTF8Sequence() throws(Failure) {
        let lead = bytes[index]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: throw failure("invalid UTF-8")
        }
        guard index + length <= bytes.count else { throw failure("invalid UTF-8") }
        let second = bytes[index + 1]
        guard second >= lower, second <= upper else { throw failure("invalid UTF-8") }
        for offset in 2..<length {
            let continuation = bytes[index + offset]
            guard continuation & 0xC0 == 0x80 else { throw failure("invalid UTF-8") }
        }
        index += length
    }
}
