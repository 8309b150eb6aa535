import Testing

@testable import Signaling

@Suite struct JSONScannerTests {
    /// A named input, so a failing case says which one it was.
    struct Input: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var testDescription: String { name }

        init(_ name: String, _ text: String) {
            self.name = name
            self.bytes = Array(text.utf8)
        }

        init(_ name: String, bytes: [UInt8]) {
            self.name = name
            self.bytes = bytes
        }
    }

    static func validate(_ bytes: [UInt8]) throws -> JSONScanner.Kind {
        try bytes.withUnsafeBytes { try JSONScanner.validate($0) }
    }

    static func validate(_ text: String) throws -> JSONScanner.Kind {
        try validate(Array(text.utf8))
    }

    /// Bytes of a JSON string: quote, `inner`, quote.
    static func quoted(_ inner: [UInt8]) -> [UInt8] {
        [0x22] + inner + [0x22]
    }

    // MARK: Valid documents

    @Test(arguments: [
        ("{}", JSONScanner.Kind.object),
        (#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#, .object),
        ("[]", .array),
        (#"[1,"two",[3],{"four":4},null]"#, .array),
        (#""""#, .string),
        (#""plain""#, .string),
        (#""esc \" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00""#, .string),
        ("0", .number),
        ("-0", .number),
        ("42", .number),
        ("-12.5e+10", .number),
        ("1E-3", .number),
        ("0.0001", .number),
        ("true", .bool),
        ("false", .bool),
        ("null", .null),
        (" \t\r\n [ 1 , 2 ] \n", .array),
    ])
    func acceptsValidDocuments(text: String, kind: JSONScanner.Kind) throws {
        #expect(try Self.validate(text) == kind)
    }

    @Test func acceptsMultiByteUTF8InStrings() throws {
        // é (2 bytes), € (3 bytes), U+FFFF edge (EF BF BF), 😀 (4 bytes), U+10FFFF (F4 8F BF BF)
        let inner: [UInt8] = [0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xEF, 0xBF, 0xBF, 0xF0, 0x9F, 0x98, 0x80, 0xF4, 0x8F, 0xBF, 0xBF]
        #expect(try Self.validate(Self.quoted(inner)) == .string)
        // The smallest non-overlong 3- and 4-byte forms.
        #expect(try Self.validate(Self.quoted([0xE0, 0xA0, 0x80, 0xF0, 0x90, 0x80, 0x80])) == .string)
        // The last scalar before the surrogates.
        #expect(try Self.validate(Self.quoted([0xED, 0x9F, 0xBF])) == .string)
    }

    // MARK: Rejections

    @Test(arguments: [
        Input("empty", ""),
        Input("whitespace only", "  \n"),
        Input("trailing comma in object", #"{"a":1,}"#),
        Input("trailing comma in array", "[1,2,]"),
        Input("leading comma", "[,1]"),
        Input("missing comma", "[1 2]"),
        Input("missing colon", #"{"a" 1}"#),
        Input("unquoted key", "{a:1}"),
        Input("single-quoted string", "'a'"),
        Input("single-quoted key", "{'a':1}"),
        Input("leading zero", "01"),
        Input("leading zero in array", "[01]"),
        Input("negative leading zero", "-01"),
        Input("bare minus", "-"),
        Input("minus then letter", "-a"),
        Input("trailing dot", "1."),
        Input("leading dot", ".5"),
        Input("plus sign", "+1"),
        Input("empty exponent", "1e"),
        Input("exponent sign only", "1e+"),
        Input("hex number", "0x10"),
        Input("NaN", "NaN"),
        Input("Infinity", "Infinity"),
        Input("truncated literal", "tru"),
        Input("misspelt literal", "nul1"),
        Input("capitalised literal", "True"),
        Input("unterminated string", #""abc"#),
        Input("unterminated after escape", #""abc\"#),
        Input("unterminated object", #"{"a":1"#),
        Input("unterminated array", "[1,2"),
        Input("unclosed nested", "[[]"),
        Input("invalid escape", #""\x41""#),
        Input("escaped single quote", #""\'""#),
        Input("short \\u escape", #""\u12""#),
        Input("non-hex \\u escape", #""\u12G4""#),
        Input("uppercase U escape", #""\U0041""#),
        Input("trailing garbage after value", "1 2"),
        Input("trailing garbage after object", "{} x"),
        Input("two objects", "{}{}"),
        Input("comment", "[1] // c"),
    ])
    func rejectsMalformedText(_ input: Input) {
        #expect(throws: JSONScanner.Failure.self) { try Self.validate(input.bytes) }
    }

    @Test(arguments: [
        Input("NUL in string", bytes: quoted([0x61, 0x00, 0x62])),
        Input("raw newline in string", bytes: quoted([0x61, 0x0A])),
        Input("raw tab in string", bytes: quoted([0x09])),
        Input("unit separator in string", bytes: quoted([0x1F])),
    ])
    func rejectsControlCharactersInStrings(_ input: Input) {
        #expect(throws: JSONScanner.Failure.self) { try Self.validate(input.bytes) }
    }

    @Test(arguments: [
        Input("overlong NUL C0 80", bytes: quoted([0xC0, 0x80])),
        Input("overlong C1 BF", bytes: quoted([0xC1, 0xBF])),
        Input("overlong 3-byte E0 80 80", bytes: quoted([0xE0, 0x80, 0x80])),
        Input("overlong 4-byte F0 80 80 80", bytes: quoted([0xF0, 0x80, 0x80, 0x80])),
        Input("surrogate ED A0 80", bytes: quoted([0xED, 0xA0, 0x80])),
        Input("surrogate ED BF BF", bytes: quoted([0xED, 0xBF, 0xBF])),
        Input("above U+10FFFF F4 90 80 80", bytes: quoted([0xF4, 0x90, 0x80, 0x80])),
        Input("F5 lead", bytes: quoted([0xF5, 0x80, 0x80, 0x80])),
        Input("FF byte", bytes: quoted([0xFF])),
        Input("FE byte", bytes: quoted([0xFE])),
        Input("lone continuation", bytes: quoted([0x80])),
        Input("truncated 2-byte", bytes: quoted([0xC3])),
        Input("truncated 3-byte", bytes: quoted([0xE2, 0x82])),
        Input("truncated 4-byte", bytes: quoted([0xF0, 0x9F, 0x98])),
        Input("bad continuation", bytes: quoted([0xE2, 0x28, 0xA1])),
        Input("truncated at end of input", bytes: [0x22, 0xE2, 0x82]),
        Input("invalid UTF-8 in a key", bytes: [0x7B] + quoted([0xC0, 0x80]) + Array(":1}".utf8)),
        Input("invalid byte outside strings", bytes: [0x5B, 0xC3, 0xA9, 0x5D]),
    ])
    func rejectsInvalidUTF8(_ input: Input) {
        #expect(throws: JSONScanner.Failure.self) { try Self.validate(input.bytes) }
    }

    @Test func failureReportsTheOffset() {
        let error = #expect(throws: JSONScanner.Failure.self) { try Self.validate("[1,2,]") }
        #expect(error?.offset == 5)
    }

    // MARK: Nesting

    @Test func nestingOf64ArraysIsAcceptedAnd65Rejected() throws {
        let depth = JSONScanner.maxDepth
        #expect(depth == 64)
        let ok = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(try Self.validate(ok) == .array)
        let deep = String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
        #expect(throws: JSONScanner.Failure.self) { try Self.validate(deep) }
    }

    @Test func nestingOfObjectsCountsTheSame() throws {
        func nested(_ depth: Int) -> String {
            String(repeating: #"{"a":"#, count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        }
        #expect(try Self.validate(nested(64)) == .object)
        #expect(throws: JSONScanner.Failure.self) { try Self.validate(nested(65)) }
    }

    @Test func scanObjectCountsTheOuterObjectAsOneLevel() throws {
        func frame(arrays: Int) -> [UInt8] {
            Array((#"{"data":"# + String(repeating: "[", count: arrays) + String(repeating: "]", count: arrays) + "}").utf8)
        }
        try frame(arrays: 63).withUnsafeBytes { buffer in
            try JSONScanner.scanObject(buffer) { _, _ in }
        }
        #expect(throws: JSONScanner.Failure.self) {
            try frame(arrays: 64).withUnsafeBytes { buffer in
                try JSONScanner.scanObject(buffer) { _, _ in }
            }
        }
    }

    @Test func hostileDepthFailsWithoutExhaustingTheStack() {
        let text = String(repeating: "[", count: 100_000)
        #expect(throws: JSONScanner.Failure.self) { try Self.validate(text) }
    }

    // MARK: scanObject / scanArray

    @Test func scanObjectReportsMembersInOrderWithRanges() throws {
        let bytes = Array(#" { "a" : 1 , "b":[true], "c" :"x", "a":null } "#.utf8)
        var members: [(key: String, kind: JSONScanner.Kind, value: String)] = []
        try bytes.withUnsafeBytes { buffer in
            try JSONScanner.scanObject(buffer) { key, value in
                members.append((
                    JSONScanner.decodeString(buffer, key), value.kind,
                    String(decoding: buffer[value.range], as: UTF8.self)))
            }
        }
        #expect(members.map(\.key) == ["a", "b", "c", "a"])
        #expect(members.map(\.kind) == [.number, .array, .string, .null])
        #expect(members.map(\.value) == ["1", "[true]", #""x""#, "null"])
    }

    @Test(arguments: [
        Input("array", "[]"),
        Input("string", #""x""#),
        Input("number", "1"),
        Input("trailing data", "{} {}"),
        Input("trailing comma", #"{"a":1,}"#),
    ])
    func scanObjectRejectsNonObjects(_ input: Input) {
        #expect(throws: JSONScanner.Failure.self) {
            try input.bytes.withUnsafeBytes { buffer in
                try JSONScanner.scanObject(buffer) { _, _ in }
            }
        }
    }

    @Test func scanObjectAcceptsAnEmptyObject() throws {
        var calls = 0
        try Array(" {  } ".utf8).withUnsafeBytes { buffer in
            try JSONScanner.scanObject(buffer) { _, _ in calls += 1 }
        }
        #expect(calls == 0)
    }

    @Test func scanArrayReportsElements() throws {
        let bytes = Array(#"[1, "two", {"x":[]}, null]"#.utf8)
        var kinds: [JSONScanner.Kind] = []
        try bytes.withUnsafeBytes { buffer in
            try JSONScanner.scanArray(buffer) { kinds.append($0.kind) }
        }
        #expect(kinds == [.number, .string, .object, .null])
        #expect(throws: JSONScanner.Failure.self) {
            try Array("[1,]".utf8).withUnsafeBytes { buffer in try JSONScanner.scanArray(buffer) { _ in } }
        }
        #expect(throws: JSONScanner.Failure.self) {
            try Array("{}".utf8).withUnsafeBytes { buffer in try JSONScanner.scanArray(buffer) { _ in } }
        }
    }

    // MARK: decodeString

    /// Validates `json` (a JSON string literal) and decodes it.
    static func decoded(_ json: String) throws -> String {
        let bytes = Array(json.utf8)
        #expect(try validate(bytes) == .string)
        return bytes.withUnsafeBytes { JSONScanner.decodeString($0, 1..<(bytes.count - 1)) }
    }

    @Test(arguments: [
        (#""plain""#, "plain"),
        (#""héllo €""#, "héllo €"),
        (#""a\"b\\c\/d""#, "a\"b\\c/d"),
        (#""\b\f\n\r\t""#, "\u{08}\u{0C}\n\r\t"),
        (#""\u0041\u00e9\u20AC""#, "Aé€"),
        (#""\ud83d\ude00""#, "😀"),
        (#""x\uD83D\uDE00y""#, "x😀y"),
        (#""\u0000""#, "\u{0}"),
        (#""\ud800""#, "\u{FFFD}"),
        (#""\ud83dA""#, "\u{FFFD}A"),
        (#""\ud83d\u0041""#, "\u{FFFD}A"),
        (#""\ude00""#, "\u{FFFD}"),
    ])
    func decodeStringUnescapes(json: String, expected: String) throws {
        #expect(try Self.decoded(json) == expected)
    }
}
