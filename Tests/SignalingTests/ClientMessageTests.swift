import Testing

@testable import Signaling

@Suite struct ClientMessageTests {
    static func decode(_ text: String, limits: FrameLimits = FrameLimits()) throws(ProtocolError) -> ClientMessage {
        try ClientMessage.decode(Array(text.utf8), limits: limits)
    }

    /// Decodes `text`, expecting it to fail; returns the error.
    static func failure(_ text: String, limits: FrameLimits = FrameLimits()) -> ProtocolError? {
        do {
            let message = try decode(text, limits: limits)
            Issue.record("expected an error, decoded \(message)")
            return nil
        } catch {
            return error
        }
    }

    // MARK: Every type

    @Test func decodesSignal() throws {
        let message = try Self.decode(#"{"type":"signal","to":"bob","data":{"sdp":"v=0"},"id":"m1"}"#)
        #expect(message == .signal(to: "bob", data: try .parse(#"{"sdp":"v=0"}"#), id: try .parse(#""m1""#)))
        #expect(message.id == (try .parse(#""m1""#)))
    }

    @Test func decodesSignalWithoutIdAndWithScalarData() throws {
        #expect(try Self.decode(#"{"type":"signal","to":"bob","data":null}"#) == .signal(to: "bob", data: .null, id: nil))
        #expect(try Self.decode(#"{"to":"b\u00f6b","data":"x","type":"signal"}"#) == .signal(to: "böb", data: try .parse(#""x""#), id: nil))
    }

    @Test func decodesBroadcast() throws {
        let message = try Self.decode(#"{"type":"broadcast","data":[1,2],"id":7}"#)
        #expect(message == .broadcast(data: try .parse("[1,2]"), id: try .parse("7")))
    }

    @Test func decodesUpdate() throws {
        let message = try Self.decode(#"{"type":"update","metadata":{"name":"Alice","muted":true}}"#)
        #expect(message == .update(metadata: try .parse(#"{"name":"Alice","muted":true}"#)))
        #expect(message.id == nil)
    }

    @Test func decodesPing() throws {
        #expect(try Self.decode(#"{"type":"ping"}"#) == .ping(id: nil))
        #expect(try Self.decode(#"{"type":"ping","id":12}"#) == .ping(id: try .parse("12")))
    }

    @Test func decodesLeave() throws {
        #expect(try Self.decode(#"{"type":"leave"}"#) == .leave)
    }

    @Test func decodesResume() throws {
        #expect(try Self.decode(#"{"type":"resume","resumeToken":"tok_123","lastSeq":0}"#) == .resume(resumeToken: "tok_123", lastSeq: 0))
        #expect(try Self.decode(#"{"type":"resume","resumeToken":"t","lastSeq":18446744073709551615}"#)
            == .resume(resumeToken: "t", lastSeq: .max))
    }

    // MARK: Leniency

    @Test func ignoresUnknownFields() throws {
        let message = try Self.decode(#"{"future":{"a":[1,{"b":null}]},"type":"ping","id":1,"x":"y"}"#)
        #expect(message == .ping(id: try .parse("1")))
    }

    @Test func keepsDataByteForByte() throws {
        let data = #"{ "sdp" : "v=0\r\no=- 1 2 IN IP4 0.0.0.0" ,  "x":[1, 2.50e0 ,"\u00e9"] }"#
        let message = try Self.decode(#"{"type":"signal","to":"bob","data":  "# + data + #"  ,"id":1}"#)
        guard case .signal(_, let raw, _) = message else {
            Issue.record("expected a signal, got \(message)")
            return
        }
        #expect(raw.bytes == Array(data.utf8))
        #expect(raw.kind == .object)
    }

    @Test func keepsBroadcastDataByteForByte() throws {
        let data = "[ 1,\n\t2 ]"
        let message = try Self.decode(#"{"type":"broadcast","data":"# + data + "}")
        #expect(message == .broadcast(data: try .parse(data), id: nil))
        if case .broadcast(let raw, _) = message { #expect(raw.description == data) }
    }

    @Test func acceptsWhitespaceAroundTheFrame() throws {
        #expect(try Self.decode(" \n{ \"type\" : \"leave\" }\r\n") == .leave)
    }

    // MARK: Errors

    @Test(arguments: [
        #"{"type":"signal","data":{}}"#,  // no `to`
        #"{"type":"signal","to":5,"data":{}}"#,
        #"{"type":"signal","to":"","data":{}}"#,
        #"{"type":"signal","to":"bob"}"#,  // no `data`
        #"{"type":"broadcast"}"#,
        #"{"type":"update"}"#,
        #"{"type":"update","metadata":[1]}"#,
        #"{"type":"update","metadata":"x"}"#,
        #"{"type":"update","metadata":null}"#,
        #"{"type":"resume","lastSeq":1}"#,
        #"{"type":"resume","resumeToken":7,"lastSeq":1}"#,
        #"{"type":"resume","resumeToken":"","lastSeq":1}"#,
        #"{"type":"resume","resumeToken":"t"}"#,
        #"{"type":"resume","resumeToken":"t","lastSeq":-1}"#,
        #"{"type":"resume","resumeToken":"t","lastSeq":1.5}"#,
        #"{"type":"resume","resumeToken":"t","lastSeq":1e3}"#,
        #"{"type":"resume","resumeToken":"t","lastSeq":"3"}"#,
        #"{"type":"resume","resumeToken":"t","lastSeq":18446744073709551616}"#,
        #"{"type":"ping","id":true}"#,
        #"{"type":"ping","id":{"a":1}}"#,
        #"{"data":{}}"#,  // no `type`
        #"{"type":1}"#,
        #"{"type":null}"#,
        "[]",
        #""signal""#,
        "{",
        #"{"type":"ping",}"#,
        #"{'type':'ping'}"#,
        "",
    ])
    func rejectsAsBadRequest(text: String) {
        #expect(Self.failure(text)?.code == .badRequest)
    }

    @Test func rejectsInvalidUTF8AsBadRequest() {
        let bytes: [UInt8] = Array(#"{"type":"signal","to":"bob","data":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8)
        do {
            let message = try ClientMessage.decode(bytes)
            Issue.record("expected an error, decoded \(message)")
        } catch {
            #expect(error.code == .badRequest)
        }
    }

    @Test func identifierLengthIsBounded() throws {
        let longest = String(repeating: "p", count: 128)
        #expect(try Self.decode(#"{"type":"signal","to":"\#(longest)","data":1}"#) == .signal(to: longest, data: try .parse("1"), id: nil))
        #expect(Self.failure(#"{"type":"signal","to":"\#(longest)x","data":1}"#)?.code == .badRequest)
        // Characters, not bytes: 128 two-byte characters are fine.
        let accented = String(repeating: "é", count: 128)
        #expect(try Self.decode(#"{"type":"signal","to":"\#(accented)","data":1}"#) == .signal(to: accented, data: try .parse("1"), id: nil))
    }

    @Test func idLengthIsBounded() throws {
        let longest = String(repeating: "i", count: 128)
        #expect(try Self.decode(#"{"type":"ping","id":"\#(longest)"}"#) == .ping(id: try .parse(#""\#(longest)""#)))
        #expect(Self.failure(#"{"type":"ping","id":"\#(longest)i"}"#)?.code == .badRequest)
    }

    @Test func unknownTypeIsUnknownType() {
        #expect(Self.failure(#"{"type":"dance"}"#)?.code == .unknownType)
        #expect(Self.failure(#"{"type":""}"#)?.code == .unknownType)
        #expect(Self.failure(#"{"type":"SIGNAL","to":"b","data":1}"#)?.code == .unknownType)
    }

    @Test func oversizeFrameIsTooLarge() throws {
        let limits = FrameLimits(maxFrameBytes: 64)
        let exact = #"{"type":"broadcast","data":""# + String(repeating: "x", count: 64 - 30) + #""}"#
        #expect(exact.utf8.count == 64)
        #expect(try Self.decode(exact, limits: limits) == .broadcast(data: try .parse(#""\#(String(repeating: "x", count: 34))""#), id: nil))
        let over = #"{"type":"broadcast","data":""# + String(repeating: "x", count: 65 - 30) + #""}"#
        let error = Self.failure(over, limits: limits)
        #expect(error?.code == .tooLarge)
        #expect(error?.ref == nil)
    }

    @Test func defaultFrameLimitIs64KiB() throws {
        let padding = 64 * 1024 - 30
        let exact = #"{"type":"broadcast","data":""# + String(repeating: "x", count: padding) + #""}"#
        #expect(exact.utf8.count == 64 * 1024)
        _ = try Self.decode(exact)
        let over = #"{"type":"broadcast","data":""# + String(repeating: "x", count: padding + 1) + #""}"#
        #expect(Self.failure(over)?.code == .tooLarge)
    }

    @Test func metadataOver4KiBIsRejected() throws {
        // `{"k":"…"}` is 8 bytes plus the padding.
        let fits = #"{"k":""# + String(repeating: "m", count: 4096 - 8) + #""}"#
        #expect(fits.utf8.count == 4096)
        #expect(try Self.decode(#"{"type":"update","metadata":\#(fits)}"#) == .update(metadata: try .parse(fits)))
        let tooBig = #"{"k":""# + String(repeating: "m", count: 4097 - 8) + #""}"#
        #expect(Self.failure(#"{"type":"update","metadata":\#(tooBig)}"#)?.code == .tooLarge)
    }

    // MARK: ref

    @Test func stringIdIsEchoedAsRef() throws {
        let error = Self.failure(#"{"type":"signal","id":"abc","data":{}}"#)
        #expect(error?.code == .badRequest)
        #expect(error?.ref == (try .parse(#""abc""#)))
    }

    @Test func numberIdIsEchoedAsRef() throws {
        let error = Self.failure(#"{"id":42,"type":"signal","to":"bob"}"#)
        #expect(error?.code == .badRequest)
        #expect(error?.ref?.description == "42")
    }

    @Test func unknownTypeCarriesTheRef() throws {
        let error = Self.failure(#"{"type":"nope","id":"r-9"}"#)
        #expect(error?.code == .unknownType)
        #expect(error?.ref?.description == #""r-9""#)
    }

    @Test func oversizeMetadataCarriesNoRefWithoutId() {
        // `update` has no id; an error on it has no ref either.
        let tooBig = #"{"k":""# + String(repeating: "m", count: 5000) + #""}"#
        #expect(Self.failure(#"{"type":"update","metadata":\#(tooBig)}"#)?.ref == nil)
    }

    // SPEC §3: unknown fields are ignored, and a field a frame type does not take is one of
    // them; `null` for an optional field means absent.
    @Test(arguments: [
        (#"{"type":"leave","id":null}"#, ClientMessage.leave),
        (#"{"type":"leave","id":{"x":[1]}}"#, .leave),
        (#"{"type":"leave","id":true}"#, .leave),
        (#"{"type":"ping","id":null}"#, .ping(id: nil)),
        (#"{"type":"update","metadata":{},"id":[1],"to":7}"#, .update(metadata: .emptyObject)),
        (#"{"type":"broadcast","data":null,"to":null,"id":null}"#, .broadcast(data: .null, id: nil)),
    ])
    func fieldsAFrameDoesNotTakeAreIgnored(text: String, expected: ClientMessage) throws {
        #expect(try Self.decode(text) == expected)
    }

    @Test func unusableIdGivesNoRef() {
        let error = Self.failure(#"{"type":"ping","id":[1]}"#)
        #expect(error?.code == .badRequest)
        #expect(error?.ref == nil)
    }

    @Test func malformedJSONGivesNoRef() {
        let error = Self.failure(#"{"type":"ping","id":1,}"#)
        #expect(error?.code == .badRequest)
        #expect(error?.ref == nil)
    }
}
