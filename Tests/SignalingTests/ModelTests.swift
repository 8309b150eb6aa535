import Foundation
import Testing

@testable import Signaling

@Suite struct ModelTests {
    // MARK: Tenant ids

    @Test(arguments: ["abc", "acme", "a-b", "0rg", "tenant-123", "abc-", String(repeating: "a", count: 40)])
    func validTenantIDs(id: String) {
        #expect(Tenant.isValidID(id))
    }

    @Test(arguments: [
        "", "ab", "-abc", "Acme", "acMe", "a_b", "a.b", "a b", "acmé", String(repeating: "a", count: 41), "abc\n",
    ])
    func invalidTenantIDs(id: String) {
        #expect(!Tenant.isValidID(id))
    }

    // MARK: Identifiers

    @Test func identifierRules() {
        #expect(Identifier.isValid("a"))
        #expect(Identifier.isValid("peer with spaces/and:symbols"))
        #expect(Identifier.isValid(String(repeating: "x", count: 128)))
        #expect(Identifier.isValid(String(repeating: "é", count: 128)))  // characters, not bytes
        #expect(!Identifier.isValid(""))
        #expect(!Identifier.isValid(String(repeating: "x", count: 129)))
        #expect(!Identifier.isValid("nul\u{0}"))
        #expect(!Identifier.isValid("line\nbreak"))
        #expect(!Identifier.isValid("del\u{7F}"))
        #expect(!Identifier.isValid("c1\u{85}"))
    }

    // MARK: ULID

    /// A deterministic generator for reproducible ids.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Always the same word.
    struct Constant: RandomNumberGenerator {
        var value: UInt64
        mutating func next() -> UInt64 { value }
    }

    static let crockford = Set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    @Test func ulidHas26CrockfordCharacters() {
        for _ in 0..<100 {
            let id = ULID.make()
            #expect(id.count == 26)
            #expect(id.allSatisfy { Self.crockford.contains($0) })
        }
    }

    @Test func ulidEncodesTheTimeInTheFirstTenCharacters() {
        var zeros = Constant(value: 0)
        #expect(ULID.make(milliseconds: 0, using: &zeros) == String(repeating: "0", count: 26))
        var zeros2 = Constant(value: 0)
        #expect(ULID.make(milliseconds: 1, using: &zeros2) == "0000000001" + String(repeating: "0", count: 16))
        var zeros3 = Constant(value: 0)
        #expect(ULID.make(milliseconds: 32, using: &zeros3).prefix(10) == "0000000010")
        // 2^48 - 1, the largest ULID time.
        var zeros4 = Constant(value: 0)
        #expect(ULID.make(milliseconds: (1 << 48) - 1, using: &zeros4).prefix(10) == "7ZZZZZZZZZ")
    }

    @Test func ulidUsesEightyRandomBits() {
        var ones = Constant(value: .max)
        // 80 one bits: 16 characters of 'Z'.
        #expect(ULID.make(milliseconds: 0, using: &ones).suffix(16) == String(repeating: "Z", count: 16))
        var lowOnly = Constant(value: 1)
        // high = 1 (only its low 16 bits are used), low = 1: bit 64 and bit 0 set.
        // Bit 0 is the last character; bit 64 is bit 4 of character 12 (counting 5-bit groups from the end).
        let id = ULID.make(milliseconds: 0, using: &lowOnly)
        #expect(id.suffix(16) == "000G000000000001")
    }

    @Test func ulidsSortByTime() {
        var generator = SplitMix(state: 42)
        var ids: [String] = []
        var times: [UInt64] = []
        for step in 0..<300 {
            let time = UInt64(1_700_000_000_000) + UInt64(step * step * 37)
            times.append(time)
            ids.append(ULID.make(milliseconds: time, using: &generator))
        }
        #expect(ids.sorted() == ids)
        #expect(Set(ids).count == ids.count)
        // Time-ordered across a change of the leading character too.
        var generator2 = SplitMix(state: 7)
        let before = ULID.make(milliseconds: (1 << 45) - 1, using: &generator2)
        let after = ULID.make(milliseconds: 1 << 45, using: &generator2)
        #expect(before < after)
    }

    @Test func ulidLowerBoundSortsBeforeEveryIdOfThatTime() {
        let date = Date(timeIntervalSince1970: 1_700_000_000.5)
        let bound = ULID.lowerBound(at: date)
        #expect(bound.count == 26)
        #expect(bound.hasSuffix(String(repeating: "0", count: 16)))
        for _ in 0..<50 {
            let id = ULID.make(at: date)
            #expect(bound <= id)
            #expect(id.prefix(10) == bound.prefix(10))
        }
        #expect(ULID.make(at: date.addingTimeInterval(-0.001)) < bound)
        #expect(ULID.lowerBound(at: date.addingTimeInterval(0.001)) > ULID.make(at: date))
    }

    // MARK: Timestamp

    @Test func timestampFormatIsRFC3339UTCWithMilliseconds() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_700_000_000)) == "2023-11-14T22:13:20.000Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_700_000_000.25)) == "2023-11-14T22:13:20.250Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
    }

    @Test(arguments: [
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20.000Z",
        "2023-11-15T00:13:20+02:00",
        "2023-11-14T17:13:20-05:00",
        "2023-11-15T00:13:20.000+02:00",
    ])
    func timestampParsesRFC3339Forms(text: String) {
        #expect(Timestamp.parse(text) == Date(timeIntervalSince1970: 1_700_000_000))
    }

    @Test func timestampParseKeepsFractions() throws {
        let date = try #require(Timestamp.parse("2023-11-14T22:13:20.250Z"))
        #expect(date.timeIntervalSince1970 == 1_700_000_000.25)
    }

    @Test(arguments: ["", "yesterday", "2023-11-14", "2023-13-14T22:13:20Z", "2023-11-14T22:13:20", String(repeating: "9", count: 41)])
    func timestampRejectsOtherText(text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    @Test func timestampRoundTripsWholeAndBinaryFractions() {
        for millis in [Int64(0), 500, 1_700_000_000_000, 1_700_000_000_250, 4_102_444_800_000] {
            let date = Timestamp.date(milliseconds: millis)
            #expect(Timestamp.milliseconds(date) == millis)
            #expect(Timestamp.parse(Timestamp.format(date)).map(Timestamp.milliseconds) == millis)
        }
    }

    @Test
    func storedMillisecondsReadBackUnchanged() {
        for millis in [Int64(999), 1_700_000_000_123] {
            #expect(Timestamp.milliseconds(Timestamp.date(milliseconds: millis)) == millis, "\(millis)")
        }
    }

    @Test
    func formattedStoredTimesShowTheStoredMilliseconds() {
        #expect(Timestamp.format(Timestamp.date(milliseconds: 1_700_000_000_123)) == "2023-11-14T22:13:20.123Z")
        #expect(Timestamp.format(Timestamp.date(milliseconds: 999)) == "1970-01-01T00:00:00.999Z")
        let parsed = Timestamp.parse("2023-11-14T22:13:20.123Z")
        #expect(parsed.map(Timestamp.milliseconds) == 1_700_000_000_123)
    }

    @Test func tenantEncodesCreatedAtAsRFC3339() throws {
        let tenant = Tenant(id: "acme", name: "Acme", createdAt: Date(timeIntervalSince1970: 1_700_000_000))
        let json = try RawJSON(encoding: tenant)
        #expect(json.description.contains(#""createdAt":"2023-11-14T22:13:20.000Z""#))
        #expect(json.description.contains(#""status":"active""#))
        #expect(try json.decode(Tenant.self) == tenant)
    }

    // MARK: Limits

    @Test func limitDefaultsAreTheSpecValues() {
        let limits = TenantLimits.defaults
        #expect(limits.maxConnections == 10_000)
        #expect(limits.maxPeersPerRoom == 100)
        #expect(limits.messagesPerSecond == 50)
        #expect(limits.messageBurst == 100)
    }

    @Test func limitsPatchMergesKeyByKey() throws {
        let patch = try RawJSON.parse(#"{"maxPeersPerRoom":8,"messageBurst":20}"#).decode(TenantLimitsPatch.self)
        #expect(patch == TenantLimitsPatch(maxPeersPerRoom: 8, messageBurst: 20))
        let merged = patch.applied(to: .defaults)
        #expect(merged == TenantLimits(maxConnections: 10_000, maxPeersPerRoom: 8, messagesPerSecond: 50, messageBurst: 20))
        #expect(TenantLimitsPatch().applied(to: merged) == merged)
        #expect(patch.invalidField() == nil)
    }

    @Test func limitsPatchNamesTheFirstFieldOutOfRange() {
        #expect(TenantLimitsPatch(maxConnections: 0).invalidField() == "limits.maxConnections")
        #expect(TenantLimitsPatch(maxConnections: 1_000_001).invalidField() == "limits.maxConnections")
        #expect(TenantLimitsPatch(maxPeersPerRoom: 10_001).invalidField() == "limits.maxPeersPerRoom")
        #expect(TenantLimitsPatch(messagesPerSecond: -1).invalidField() == "limits.messagesPerSecond")
        #expect(TenantLimitsPatch(messageBurst: 0).invalidField() == "limits.messageBurst")
        #expect(TenantLimitsPatch(maxConnections: 1, maxPeersPerRoom: 10_000, messagesPerSecond: 100_000, messageBurst: 1).invalidField() == nil)
    }

    // MARK: Base64URL

    @Test func base64URLUsesTheURLAlphabetWithoutPadding() {
        #expect(Base64URL.encode([0xFB, 0xFF]) == "-_8")
        #expect(Base64URL.encode([]) == "")
        #expect(Base64URL.decode("-_8") == [0xFB, 0xFF])
        #expect(Base64URL.decode("not*base64") == nil)
        for count in 0..<8 {
            let bytes = (0..<count).map { UInt8($0 * 37 & 0xFF) }
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
    }

    @Test func randomBase64URLHasTheRequestedEntropy() throws {
        let text = Base64URL.random(bytes: 32)
        #expect(text.count == 43)
        #expect(try #require(Base64URL.decode(text)).count == 32)
    }

    // MARK: RawJSON

    @Test func rawJSONValidatesAndKeepsTheKind() throws {
        #expect(try RawJSON.parse(" [1] ").kind == .array)
        #expect(try RawJSON.parse(" [1] ").description == " [1] ")
        #expect(throws: JSONScanner.Failure.self) { try RawJSON(validating: "{") }
        #expect(RawJSON.emptyObject.kind == .object)
        #expect(RawJSON.null.description == "null")
    }

    @Test func rawJSONEncodesValuesCompactlyAndSorted() throws {
        let value = JSONValue.object(["b": .number(2), "a": .array([.bool(true), .null, .string("x/y"), .number(1.5)])])
        let encoded = try RawJSON(encoding: value)
        #expect(encoded.description == #"{"a":[true,null,"x/y",1.5],"b":2}"#)
        #expect(try RawJSON(encoding: value).decode(JSONValue.self) == value)
    }

    @Test func rawJSONIsCodableAsAValue() throws {
        struct Wrapper: Codable, Equatable {
            var metadata: RawJSON
        }
        let wrapper = try RawJSON.parse(#"{"metadata":{"name":"Alice","n":3}}"#).decode(Wrapper.self)
        #expect(try wrapper.metadata.decode(JSONValue.self) == .object(["name": .string("Alice"), "n": .number(3)]))
        #expect(wrapper.metadata.kind == .object)
    }
}
