import Testing

@testable import Signaling

@Suite struct ServerMessageTests {
    static func roundTrip(_ message: ServerMessage) throws -> ServerEvent {
        let bytes = message.encoded()
        // Every frame is one valid JSON object.
        #expect(try bytes.withUnsafeBytes { try JSONScanner.validate($0) } == .object)
        return try ServerEvent.decode(bytes)
    }

    @Test func welcomeRoundTrips() throws {
        let peers = [
            PeerSummary(peerId: "bob", metadata: try .parse(#"{"name":"Bob"}"#)),
            PeerSummary(peerId: "carol", metadata: .emptyObject),
        ]
        let ice = try RawJSON.parse(#"[{"urls":["stun:stun.example.com:3478"]}]"#)
        let event = try Self.roundTrip(.welcome(
            sessionId: "S1", peerId: "alice", room: "lobby", peers: peers, iceServers: ice, resumeToken: "rt_abc",
            heartbeatSeconds: 20))
        #expect(event == .welcome(.init(
            sessionId: "S1", peerId: "alice", room: "lobby", peers: peers, iceServers: ice, resumeToken: "rt_abc",
            heartbeatSeconds: 20)))
    }

    @Test func welcomeWithNoPeersRoundTrips() throws {
        let event = try Self.roundTrip(.welcome(
            sessionId: "S", peerId: "p", room: "r", peers: [], iceServers: .emptyArray, resumeToken: "t", heartbeatSeconds: 5))
        guard case .welcome(let welcome) = event else {
            Issue.record("expected welcome, got \(event)")
            return
        }
        #expect(welcome.peers.isEmpty)
        #expect(welcome.iceServers == .emptyArray)
        #expect(welcome.heartbeatSeconds == 5)
    }

    @Test func peerEventsRoundTrip() throws {
        let peer = PeerSummary(peerId: "bob", metadata: try .parse(#"{"a":[1,2]}"#))
        #expect(try Self.roundTrip(.peerJoined(peer)) == .peerJoined(peer))
        #expect(try Self.roundTrip(.peerUpdated(peer)) == .peerUpdated(peer))
    }

    @Test(arguments: [LeaveReason.left, .timeout, .kicked, .nodeFailure])
    func peerLeftRoundTrips(reason: LeaveReason) throws {
        #expect(try Self.roundTrip(.peerLeft(peerId: "bob", reason: reason)) == .peerLeft(peerId: "bob", reason: reason.rawValue))
    }

    @Test func leaveReasonsAreTheSpecStrings() {
        #expect([LeaveReason.left, .timeout, .kicked, .nodeFailure].map(\.rawValue) == ["left", "timeout", "kicked", "node-failure"])
    }

    @Test(arguments: [RelayKind.signal, .broadcast])
    func relayRoundTrips(kind: RelayKind) throws {
        let data = try RawJSON.parse(#"{ "sdp" : "v=0\r\n", "n": [1, 2.5] }"#)
        #expect(try Self.roundTrip(.relay(kind, from: "alice", data: data, seq: 42)) == .relay(kind, from: "alice", data: data, seq: 42))
    }

    @Test func relayEncodingIsTheHotPathEncodingAndKeepsDataVerbatim() throws {
        let data = try RawJSON.parse(#"{ "candidate" : "a=1" }"#)
        let bytes = ServerMessage.relay(.signal, from: "alice", data: data, seq: 7).encoded()
        #expect(bytes == ServerMessage.encodeRelay(.signal, from: "alice", data: data, seq: 7))
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"type":"signal","from":"alice","seq":7,"data":{ "candidate" : "a=1" }}"#)
    }

    @Test func ackAndPongRoundTrip() throws {
        #expect(try Self.roundTrip(.ack(id: try .parse(#""m-1""#))) == .ack(id: try .parse(#""m-1""#)))
        #expect(try Self.roundTrip(.ack(id: try .parse("17"))) == .ack(id: try .parse("17")))
        #expect(try Self.roundTrip(.pong(id: try .parse("3"))) == .pong(id: try .parse("3")))
        #expect(try Self.roundTrip(.pong(id: nil)) == .pong(id: nil))
    }

    @Test func errorRoundTripsWithAndWithoutRef() throws {
        let withRef = ProtocolError(.peerNotFound, "no such peer", ref: try .parse(#""m7""#))
        #expect(try Self.roundTrip(.error(withRef)) == .error(code: "peer_not_found", message: "no such peer", ref: try .parse(#""m7""#)))
        let bytes = ServerMessage.error(ProtocolError(.rateLimited, "slow down")).encoded()
        #expect(!String(decoding: bytes, as: UTF8.self).contains("ref"))
        #expect(try ServerEvent.decode(bytes) == .error(code: "rate_limited", message: "slow down", ref: nil))
    }

    @Test func errorCodesAreTheSpecStrings() {
        #expect(SignalErrorCode.allCases.map(\.rawValue) == [
            "bad_request", "unknown_type", "too_large", "rate_limited", "peer_not_found", "forbidden", "replaced",
            "unavailable", "internal",
        ])
    }

    @Test func closeCodesAreTheSpecNumbers() {
        #expect(CloseCode.normal.rawValue == 1000)
        #expect(CloseCode.goingAway.rawValue == 1001)
        #expect(CloseCode.unsupportedData.rawValue == 1003)
        #expect(CloseCode.policy.rawValue == 1008)
        #expect(CloseCode.tooLarge.rawValue == 1009)
        #expect(CloseCode.internalError.rawValue == 1011)
        #expect(CloseCode.replaced.rawValue == 4001)
    }

    @Test func reconnectResumedAndIceServersRoundTrip() throws {
        #expect(try Self.roundTrip(.reconnect(reason: "draining", retryAfterMs: 1234)) == .reconnect(reason: "draining", retryAfterMs: 1234))
        let peers = [PeerSummary(peerId: "bob", metadata: .emptyObject)]
        #expect(try Self.roundTrip(.resumed(sessionId: "S1", replayed: 3, peers: peers)) == .resumed(sessionId: "S1", replayed: 3, peers: peers))
        let ice = try RawJSON.parse(#"[{"urls":["turn:t.example.com"],"username":"u","credential":"c"}]"#)
        #expect(try Self.roundTrip(.iceServers(ice)) == .iceServers(ice))
    }

    @Test func frameTypesMatchTheWireTypes() throws {
        let messages: [ServerMessage] = [
            .welcome(sessionId: "s", peerId: "p", room: "r", peers: [], iceServers: .emptyArray, resumeToken: "t", heartbeatSeconds: 1),
            .peerJoined(PeerSummary(peerId: "p", metadata: .emptyObject)),
            .peerLeft(peerId: "p", reason: .left),
            .peerUpdated(PeerSummary(peerId: "p", metadata: .emptyObject)),
            .relay(.signal, from: "p", data: .null, seq: 1),
            .relay(.broadcast, from: "p", data: .null, seq: 1),
            .ack(id: try .parse("1")),
            .error(ProtocolError(.internal, "x")),
            .pong(id: nil),
            .reconnect(reason: "r", retryAfterMs: 0),
            .resumed(sessionId: "s", replayed: 0, peers: []),
            .iceServers(.emptyArray),
        ]
        for message in messages {
            let bytes = message.encoded()
            var type: String?
            try bytes.withUnsafeBytes { buffer in
                try JSONScanner.scanObject(buffer) { key, value in
                    if JSONScanner.decodeString(buffer, key) == "type" {
                        type = JSONScanner.decodeString(buffer, (value.range.lowerBound + 1)..<(value.range.upperBound - 1))
                    }
                }
            }
            #expect(type == message.frameType.rawValue)
        }
    }

    @Test(arguments: [
        "alice",
        "quote\" backslash\\ slash/",
        "new\nline\rcr\ttab",
        "\u{01}\u{08}\u{0C}\u{1F}",
        "é€😀",
        "",
    ])
    func stringsAreEscapedAndRoundTrip(text: String) throws {
        let event = try Self.roundTrip(.peerLeft(peerId: text, reason: .left))
        #expect(event == .peerLeft(peerId: text, reason: "left"))
        let relay = try Self.roundTrip(.relay(.signal, from: text, data: .null, seq: 1))
        #expect(relay == .relay(.signal, from: text, data: .null, seq: 1))
    }

    // MARK: ServerEvent robustness

    @Test func unknownTypesAreKept() throws {
        #expect(try ServerEvent.decode(Array(#"{"type":"future-thing","x":1}"#.utf8)) == .unknown(type: "future-thing"))
    }

    @Test(arguments: [
        "not json",
        "[]",
        #"{"no":"type"}"#,
        #"{"type":"signal","from":"a","data":1}"#,
        #"{"type":"signal","from":"a","data":1,"seq":"1"}"#,
        #"{"type":"peer-joined","peer":[]}"#,
        #"{"type":"peer-joined","peer":{"metadata":{}}}"#,
        #"{"type":"welcome","sessionId":"s","peerId":"p","room":"r","peers":[1],"resumeToken":"t","heartbeatSeconds":1}"#,
        #"{"type":"ack"}"#,
    ])
    func malformedFramesFailToDecode(text: String) {
        #expect(throws: ServerEvent.DecodingFailure.self) { try ServerEvent.decode(Array(text.utf8)) }
    }

    @Test
    func negativeSeqFailsToDecodeInsteadOfTrapping() {
        #expect(throws: ServerEvent.DecodingFailure.self) {
            try ServerEvent.decode(Array(#"{"type":"signal","from":"a","data":1,"seq":-1}"#.utf8))
        }
    }

    // MARK: JSONWriter

    @Test func writerSeparatesNestedValues() {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("a")
        writer.beginArray()
        writer.integer(1)
        writer.beginObject()
        writer.endObject()
        writer.bool(true)
        writer.null()
        writer.string("s")
        writer.endArray()
        writer.field("b", -2)
        writer.field("c", RawJSON.emptyArray)
        writer.endObject()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"{"a":[1,{},true,null,"s"],"b":-2,"c":[]}"#)
    }
}
