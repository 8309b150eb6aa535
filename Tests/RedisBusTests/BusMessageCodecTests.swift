import Signaling
import Testing

@Suite struct BusMessageCodecTests {
    static let json = try! RawJSON(validating: #"{"sdp":"v=0\r\n","n":[1,2.5,null,true]}"#)

    static let samples: [BusMessage] = [
        .deliver(RelayEnvelope(tenantID: "acme", room: "r1", kind: .signal, from: "alice", to: "bob", exclude: nil, data: json)),
        .deliver(RelayEnvelope(tenantID: "acme", room: "r1", kind: .broadcast, from: "server", to: nil, exclude: "alice", data: .emptyObject)),
        .deliver(RelayEnvelope(tenantID: "t", room: String(repeating: "é", count: 300), kind: .signal, from: "", to: "", exclude: "", data: json)),
        .tenantDisconnect(tenantID: "acme", reason: "suspended"),
        .tenantChanged(tenantID: "acme"),
        .keyRevoked(tenantID: "acme", apiKey: "AKxyz"),
        .roomClosed(tenantID: "acme", room: "r1"),
        .kick(tenantID: "acme", room: "r1", peerId: "p1"),
    ]

    @Test(arguments: samples)
    func roundTrips(_ message: BusMessage) throws {
        let bytes = message.encoded()
        #expect(try BusMessage(decoding: bytes) == message)
    }

    @Test func encodingIsCompact() {
        let message = BusMessage.kick(tenantID: "acme", room: "r1", peerId: "p1")
        // version, tag, three length-prefixed strings
        #expect(message.encoded() == [1, 6, 4] + Array("acme".utf8) + [2] + Array("r1".utf8) + [2] + Array("p1".utf8))
    }

    @Test func rejectsEveryTruncation() {
        let bytes = Self.samples[0].encoded()
        for cut in 0..<bytes.count {
            #expect(throws: BusMessage.DecodingError.self) { try BusMessage(decoding: bytes[0..<cut]) }
        }
    }

    @Test func rejectsTrailingBytesUnknownVersionAndTag() {
        let bytes = Self.samples[3].encoded()
        #expect(throws: BusMessage.DecodingError.self) { try BusMessage(decoding: bytes + [0]) }
        #expect(throws: BusMessage.DecodingError.self) { try BusMessage(decoding: [2] + bytes.dropFirst()) }
        #expect(throws: BusMessage.DecodingError.self) { try BusMessage(decoding: [1, 99]) }
    }

    @Test func rejectsInvalidJSONAndUTF8() {
        // a deliver whose data is not JSON
        var bad = BusMessage.deliver(RelayEnvelope(tenantID: "t", room: "r", kind: .signal, from: "a", to: nil, exclude: nil, data: .emptyObject)).encoded()
        bad.removeLast(2)
        bad += [2, UInt8(ascii: "{"), UInt8(ascii: "x")]
        #expect { try BusMessage(decoding: bad) } throws: { ($0 as? BusMessage.DecodingError)?.reason == "invalid JSON data" }
        // a tenant id that is not UTF-8
        #expect { try BusMessage(decoding: [1, 3, 1, 0xFF]) } throws: { ($0 as? BusMessage.DecodingError)?.reason == "invalid UTF-8" }
    }
}
