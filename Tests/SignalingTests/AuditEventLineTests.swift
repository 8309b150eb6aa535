import Foundation
import Testing

@testable import Signaling

@Suite struct AuditEventLineTests {
    static let time = Timestamp.date(milliseconds: 1_800_000_000_123)

    static func event(
        id: String = "01JAUDITEVENT0000000000001", room: String? = "room-1", peer: String? = "alice", session: String? = "S1",
        node: String = "node-a", tenant: String = "acme", data: String = #"{"remoteAddress":"10.0.0.1","userAgent":"UA/1"}"#
    ) throws -> AuditEvent {
        AuditEvent(
            id: id, type: .sessionStarted, tenantID: tenant, time: time, node: node, room: room, peer: peer, session: session,
            data: try RawJSON(validating: data))
    }

    /// Encodes and decodes, checking the encoding is exactly one line.
    static func roundTrip(_ event: AuditEvent) throws -> AuditEvent {
        let line = AuditEventLine.encode(event)
        #expect(line.last == 0x0A)
        #expect(!line.dropLast().contains(0x0A) && !line.contains(0x0D), "not one line: \(String(decoding: line, as: UTF8.self))")
        return try AuditEventLine.decode(line)
    }

    @Test func everyFieldSurvivesTheRoundTrip() throws {
        let event = try Self.event()
        #expect(try Self.roundTrip(event) == event)
        let line = String(decoding: AuditEventLine.encode(event), as: UTF8.self)
        #expect(line == #"{"id":"01JAUDITEVENT0000000000001","type":"session.started","tenant":"acme","time":"2027-01-15T08:00:00.123Z","node":"node-a","room":"room-1","peer":"alice","session":"S1","data":{"remoteAddress":"10.0.0.1","userAgent":"UA/1"}}"# + "\n")
    }

    @Test func absentOptionalsStayAbsent() throws {
        for type in AuditEventType.allCases {
            var event = try Self.event(room: nil, peer: nil, session: nil, data: "{}")
            event.type = type
            #expect(try Self.roundTrip(event) == event)
        }
        // Written as null by someone else: the same.
        let line = #"{"id":"X","type":"room.closed","tenant":"acme","time":"2027-01-15T08:00:00.123Z","node":"n","room":null,"peer":null,"session":null,"data":{}}"#
        let decoded = try AuditEventLine.decode(Array(line.utf8))
        #expect(decoded.room == nil && decoded.peer == nil && decoded.session == nil)
    }

    @Test func dataOfEveryKindIsKeptVerbatim() throws {
        for data in [#"{"a":[1,2,{"b":null}]}"#, "[1,true]", #""text""#, "-1.5e3", "null", "true", #"{"s":"\u00e9\"\\\/"}"#] {
            let event = try Self.event(data: data)
            #expect(try Self.roundTrip(event).data.description == data)
        }
    }

    @Test func oddCharactersInEveryStringSurvive() throws {
        let odd = "a\u{0}b\"c\\d\ne\rf\tg\u{1}h\u{1F}i\u{7F}j\u{2028}k\u{2029}l😀m\u{301}é/</script>"
        let event = try Self.event(
            id: odd, room: odd, peer: odd, session: odd, node: odd, tenant: odd,
            data: #"{"userAgent":"a\u0000b\nc\"d\\e\u2028😀"}"#)
        let decoded = try Self.roundTrip(event)
        #expect(decoded == event)
        #expect(decoded.room?.unicodeScalars.contains("\u{0}") == true)
    }

    @Test func lineBreaksBetweenTheTokensOfDataBecomeSpaces() throws {
        let event = try Self.event(data: "{\n  \"a\": 1,\r\n  \"b\": \"x\\ny\"\n}")
        let decoded = try Self.roundTrip(event)
        #expect(decoded.data.description == "{   \"a\": 1,    \"b\": \"x\\ny\" }")
        #expect(try decoded.data.decode(JSONValue.self) == event.data.decode(JSONValue.self))
    }

    @Test func timesAreKeptToTheMillisecond() throws {
        var event = try Self.event()
        event.time = Date(timeIntervalSince1970: 1_800_000_000.123_4)
        #expect(try Self.roundTrip(event).time == Self.time)
        event.time = Date(timeIntervalSince1970: -1.5)
        #expect(Timestamp.milliseconds(try Self.roundTrip(event).time) == -1500)
    }

    @Test func unknownMembersAreIgnored() throws {
        let line = #"{"v":2,"id":"X","type":"room.created","tenant":"acme","time":"2027-01-15T08:00:00.123Z","node":"n","data":{},"extra":[1]}"#
        #expect(try AuditEventLine.decode(Array(line.utf8)).id == "X")
    }

    @Test func badLinesAreRejected() throws {
        let good = #"{"id":"X","type":"room.created","tenant":"acme","time":"2027-01-15T08:00:00.123Z","node":"n","data":{}}"#
        let bad = [
            "",
            "not json",
            "[]",
            String(good.dropLast(3)),
            good.replacingOccurrences(of: #""id":"X","#, with: ""),
            good.replacingOccurrences(of: #""id":"X""#, with: #""id":"""#),
            good.replacingOccurrences(of: "room.created", with: "room.exploded"),
            good.replacingOccurrences(of: "2027-01-15T08:00:00.123Z", with: "yesterday"),
            good.replacingOccurrences(of: #""node":"n""#, with: #""node":5"#),
            good.replacingOccurrences(of: #""data":{}"#, with: #""data":{"#),
            good.replacingOccurrences(of: #","data":{}"#, with: ""),
            good + "x",
            good.replacingOccurrences(of: "acme", with: "ac\u{0}me"),
        ]
        for line in bad {
            #expect(throws: JSONScanner.Failure.self, "accepted \(line)") { try AuditEventLine.decode(Array(line.utf8)) }
        }
        // Invalid UTF-8.
        var bytes = Array(good.utf8)
        bytes[bytes.count - 5] = 0xFF
        #expect(throws: JSONScanner.Failure.self) { try AuditEventLine.decode(bytes) }
    }

    @Test func aFileDecodesAroundItsBadLines() throws {
        let first = try Self.event(id: "E1")
        let second = try Self.event(id: "E2", room: nil)
        let third = try Self.event(id: "E3", data: "[]")
        var file: [UInt8] = []
        AuditEventLine.append(first, to: &file)
        file += Array("garbage\n".utf8)
        file += Array("\n  \r\n".utf8)
        AuditEventLine.append(second, to: &file)
        file += Array(AuditEventLine.encode(third).prefix(40)) + [0x0A]
        file += Array(AuditEventLine.encode(third).dropLast()) + [0x0D]  // CR, no final \n
        let (events, rejected) = AuditEventLine.decodeLines(file)
        #expect(events == [first, second, third])
        #expect(rejected.map(\.line) == [2, 6])
        #expect(AuditEventLine.decodeLines([]).events.isEmpty)
        #expect(AuditEventLine.decodeLines(Array("\u{0}\u{0}".utf8)).rejected.count == 1)
    }
}
