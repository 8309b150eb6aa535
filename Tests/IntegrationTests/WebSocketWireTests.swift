import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Testing

@testable import SwitchboardServer

/// ``WebSocketWire`` without a socket: RFC 6455 §5.2 headers in every length form, masking,
/// every framing error (and how early it is seen), input that arrives byte by byte or several
/// frames at once, the server frames' encoding and the §4.2 handshake values.
@Suite("WebSocket wire format", .serialized)
struct WebSocketWireTests {
    typealias Wire = WebSocketWire

    static let mask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]

    /// How a test frame writes its payload length.
    enum LengthForm { case shortest, sixteenBit, sixtyFourBit }

    /// A client frame as a browser would send it (masked), with knobs for broken ones.
    static func clientFrame(
        opcode: UInt8, payload: [UInt8], fin: Bool = true, reserved: UInt8 = 0, masked: Bool = true,
        mask: [UInt8] = mask, length form: LengthForm = .shortest
    ) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | reserved | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        let count = payload.count
        switch (form, count) {
        case (.shortest, ..<126):
            bytes.append(maskBit | UInt8(count))
        case (.shortest, ...0xFFFF), (.sixteenBit, _):
            bytes += [maskBit | 126, UInt8(count >> 8), UInt8(count & 0xFF)]
        default:
            bytes.append(maskBit | 127)
            bytes += (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(count) >> (8 * UInt64($0))) }
        }
        guard masked else { return bytes + payload }
        return bytes + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    static func parseAll(_ bytes: [UInt8], max: Int = 1 << 20) throws -> [Wire.Frame] {
        var buffer = ByteBuffer(bytes: bytes)
        var frames: [Wire.Frame] = []
        while let frame = try Wire.Parser(maxFrameBytes: max).next(&buffer) {
            frames.append(frame)
        }
        #expect(buffer.readableBytes == 0, "\(buffer.readableBytes) bytes left unparsed")
        return frames
    }

    static func unmasked(_ frame: Wire.Frame) -> [UInt8] {
        frame.withUnmaskedBytes { Array($0) }
    }

    static func failure(_ bytes: [UInt8], max: Int = 1 << 20) -> Wire.Failure? {
        var buffer = ByteBuffer(bytes: bytes)
        do {
            _ = try Wire.Parser(maxFrameBytes: max).next(&buffer)
            return nil
        } catch {
            return error
        }
    }

    // MARK: RFC 6455 §5.7 examples

    @Test func theMaskedHelloOfSection5_7() throws {
        let frames = try Self.parseAll([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        #expect(frames.count == 1)
        let frame = try #require(frames.first)
        #expect(frame.fin && frame.opcode == .text && frame.maskKey == 0x37FA_213D && frame.length == 5)
        #expect(Self.unmasked(frame) == Array("Hello".utf8))
        #expect(Array(buffer: frame.unmaskedPayload()) == Array("Hello".utf8))
    }

    @Test func theMaskedPongOfSection5_7() throws {
        let frame = try #require(try Self.parseAll([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]).first)
        #expect(frame.opcode == .pong && frame.fin)
        #expect(Self.unmasked(frame) == Array("Hello".utf8))
    }

    @Test func theFragmentedHelloOfSection5_7MaskedAsAClientSendsIt() throws {
        let bytes = Self.clientFrame(opcode: 0x1, payload: Array("Hel".utf8), fin: false)
            + Self.clientFrame(opcode: 0x0, payload: Array("lo".utf8))
        let frames = try Self.parseAll(bytes)
        #expect(frames.map(\.opcode) == [.text, .continuation])
        #expect(frames.map(\.fin) == [false, true])
        #expect(frames.flatMap(Self.unmasked) == Array("Hello".utf8))
    }

    @Test func theServerHelloAndPingOfSection5_7() {
        let allocator = ByteBufferAllocator()
        #expect(Array(buffer: Wire.frame(.text, payload: Array("Hello".utf8), allocator: allocator)) == [0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
        #expect(Array(buffer: Wire.frame(.ping, payload: Array("Hello".utf8), allocator: allocator)) == [0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
        let long = Wire.frame(.binary, payload: [UInt8](repeating: 1, count: 256), allocator: allocator)
        #expect(Array(buffer: long).prefix(4) == [0x82, 0x7E, 0x01, 0x00])
        let longer = Wire.frame(.binary, payload: [UInt8](repeating: 1, count: 65536), allocator: allocator)
        #expect(Array(buffer: longer).prefix(10) == [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
    }

    @Test func anUnmaskedClientFrameIsAProtocolError() {
        // The §5.7 server "Hello": fine from a server, not from a client (§5.1).
        #expect(Self.failure([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])?.closeCode == 1002)
        // Seen at the second byte, before any payload.
        #expect(Self.failure([0x81, 0x05])?.closeCode == 1002)
    }

    // MARK: Header forms

    @Test(arguments: [0, 1, 7, 8, 9, 125, 126, 127, 1000, 65535, 65536, 70000])
    func everyLengthFormRoundTrips(length: Int) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let frame = try #require(try Self.parseAll(Self.clientFrame(opcode: 0x1, payload: payload)).first)
        #expect(frame.length == length)
        #expect(Self.unmasked(frame) == payload)
        #expect(Array(buffer: frame.unmaskedPayload()) == payload)
    }

    @Test(arguments: [LengthForm.sixteenBit, .sixtyFourBit])
    func aLengthThatIsNotInItsShortestFormIsAcceptedAsNIOAccepts(form: LengthForm) throws {
        let frame = try #require(try Self.parseAll(Self.clientFrame(opcode: 0x1, payload: Array("hi".utf8), length: form)).first)
        #expect(Self.unmasked(frame) == Array("hi".utf8))
    }

    @Test func theMaskKeyAppliesFromThePayloadStartWhateverItsAlignment() throws {
        // A 1-byte frame first, so the second payload starts at an odd offset in the buffer.
        for mask in [[0, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF], [1, 2, 3, 4], [0x80, 0x01, 0xFE, 0x7F]] as [[UInt8]] {
            for length in 0..<40 {
                let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 13 + length) }
                let bytes = Self.clientFrame(opcode: 0x9, payload: [42], mask: mask)
                    + Self.clientFrame(opcode: 0x1, payload: payload, mask: mask)
                let frames = try Self.parseAll(bytes)
                #expect(frames.count == 2)
                #expect(frames.map(Self.unmasked) == [[42], payload], "mask \(mask), length \(length)")
            }
        }
    }

    @Test func everyOpcodeKeepsItsMeaning() throws {
        let opcodes: [(UInt8, Wire.Opcode)] = [(0x0, .continuation), (0x1, .text), (0x2, .binary), (0x8, .close), (0x9, .ping), (0xA, .pong)]
        for (raw, opcode) in opcodes {
            let frame = try #require(try Self.parseAll(Self.clientFrame(opcode: raw, payload: [1, 2])).first)
            #expect(frame.opcode == opcode)
        }
    }

    // MARK: Errors

    @Test(arguments: [UInt8(0x40), 0x20, 0x10, 0x70])
    func aReservedBitIsAProtocolErrorAtTheFirstByte(bit: UInt8) {
        let frame = Self.clientFrame(opcode: 0x1, payload: [1], reserved: bit)
        #expect(Self.failure(frame) == .protocolViolation("reserved bits are set"))
        #expect(Self.failure(Array(frame.prefix(1)))?.closeCode == 1002)
    }

    @Test(arguments: [UInt8(0x3), 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
    func aReservedOpcodeIsAProtocolErrorAtTheFirstByte(opcode: UInt8) {
        let frame = Self.clientFrame(opcode: opcode, payload: [1])
        #expect(Self.failure(frame)?.closeCode == 1002)
        #expect(Self.failure(Array(frame.prefix(1)))?.closeCode == 1002)
    }

    @Test(arguments: [UInt8(0x8), 0x9, 0xA])
    func aFragmentedControlFrameIsAProtocolError(opcode: UInt8) {
        let frame = Self.clientFrame(opcode: opcode, payload: [1], fin: false)
        #expect(Self.failure(frame) == .protocolViolation("a control frame is fragmented"))
        #expect(Self.failure(Array(frame.prefix(1)))?.closeCode == 1002)
    }

    @Test(arguments: [UInt8(0x8), 0x9, 0xA])
    func aControlFrameOver125BytesIsAProtocolError(opcode: UInt8) throws {
        #expect(try Self.parseAll(Self.clientFrame(opcode: opcode, payload: [UInt8](repeating: 65, count: 125))).count == 1)
        for form in [LengthForm.shortest, .sixteenBit, .sixtyFourBit] {
            let frame = Self.clientFrame(opcode: opcode, payload: [UInt8](repeating: 65, count: 126), length: form)
            #expect(Self.failure(frame) == .protocolViolation("a control frame is longer than 125 bytes"))
            #expect(Self.failure(Array(frame.prefix(2)))?.closeCode == 1002, "seen at the length byte")
        }
    }

    @Test func aFrameOverTheLimitFailsWith1009AsSoonAsItsLengthIsKnown() throws {
        #expect(try Self.parseAll(Self.clientFrame(opcode: 0x1, payload: [UInt8](repeating: 65, count: 100)), max: 100).count == 1)
        for (size, headerLength) in [(101, 2), (1000, 4), (70000, 10)] {
            let frame = Self.clientFrame(opcode: 0x1, payload: [UInt8](repeating: 65, count: size))
            #expect(Self.failure(frame, max: 100) == .frameTooLarge)
            #expect(Self.failure(Array(frame.prefix(headerLength)), max: 100) == .frameTooLarge, "size \(size): before the mask")
            #expect(Self.failure(Array(frame.prefix(headerLength - 1)), max: 100) == nil, "size \(size): the length is not complete")
        }
    }

    @Test func a64BitLengthWithItsTopBitSetIsTooLarge() {
        let header: [UInt8] = [0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5] + Self.mask
        #expect(Self.failure(header) == .frameTooLarge)
        #expect(Self.failure([0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], max: Int(UInt32.max)) == .frameTooLarge)
    }

    // MARK: Partial and batched input

    @Test func framesArrivingByteByByteComeOutOnlyWhenComplete() throws {
        let messages: [(UInt8, [UInt8], Bool)] = [
            (0x1, Array(#"{"type":"ping"}"#.utf8), true),
            (0x9, [], true),
            (0x1, Array("frag".utf8), false),
            (0x0, [UInt8](repeating: 0x61, count: 300), true),
            (0x1, [UInt8](repeating: 0x62, count: 70000), true),
            (0x8, [0x03, 0xE8], true),
        ]
        let bytes = messages.flatMap { Self.clientFrame(opcode: $0.0, payload: $0.1, fin: $0.2) }
        let parser = Wire.Parser(maxFrameBytes: 1 << 20)
        var buffer = ByteBuffer()
        var received: [(Wire.Opcode, [UInt8], Bool)] = []
        var frameEnds: [Int] = []
        for (index, byte) in bytes.enumerated() {
            buffer.writeInteger(byte)
            while let frame = try parser.next(&buffer) {
                received.append((frame.opcode, Self.unmasked(frame), frame.fin))
                frameEnds.append(index + 1)
            }
        }
        #expect(buffer.readableBytes == 0)
        #expect(received.map(\.0.rawValue) == messages.map(\.0))
        #expect(received.map(\.1) == messages.map(\.1))
        #expect(received.map(\.2) == messages.map(\.2))
        // Each frame came out at the byte that completed it, not earlier and not later.
        var end = 0
        let expectedEnds = messages.map { message -> Int in
            end += Self.clientFrame(opcode: message.0, payload: message.1, fin: message.2).count
            return end
        }
        #expect(frameEnds == expectedEnds)
    }

    @Test func anIncompleteFrameConsumesNothing() throws {
        let frame = Self.clientFrame(opcode: 0x1, payload: Array("hello".utf8))
        for cut in 0..<frame.count {
            var buffer = ByteBuffer(bytes: frame[..<cut])
            let readerIndex = buffer.readerIndex
            #expect(try Wire.Parser(maxFrameBytes: 100).next(&buffer) == nil)
            #expect(buffer.readerIndex == readerIndex && buffer.readableBytes == cut)
        }
    }

    @Test func severalFramesInOneBufferAndAFrameAfterAnError() throws {
        let good = (0..<20).flatMap { Self.clientFrame(opcode: 0x1, payload: Array("message \($0)".utf8)) }
        let frames = try Self.parseAll(good)
        #expect(frames.map { String(decoding: Self.unmasked($0), as: UTF8.self) } == (0..<20).map { "message \($0)" })
        // The parser stops at a bad frame; the frames before it were read.
        var buffer = ByteBuffer(bytes: Self.clientFrame(opcode: 0x1, payload: [1]) + Self.clientFrame(opcode: 0x3, payload: [2]))
        let parser = Wire.Parser(maxFrameBytes: 100)
        #expect(try parser.next(&buffer)?.opcode == .text)
        #expect(throws: Wire.Failure.self) { try parser.next(&buffer) }
    }

    /// The same frames as NIOWebSocket's decoder, for random valid input cut at random places.
    struct Decoded: Equatable {
        var fin: Bool
        var opcode: UInt8
        var payload: [UInt8]
    }

    @Test(arguments: [1, 2, 3])
    func agreesWithNIOsDecoderOnRandomFramesCutAnywhere(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let lengths = [0, 1, 3, 8, 125, 126, 127, 1000, 65535, 65536, 70000]
        var bytes: [UInt8] = []
        for _ in 0..<40 {
            let opcode: UInt8 = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA][Int(random.next() % 6)]
            let control = opcode & 0x8 != 0
            let length = control ? Int(random.next() % 126) : lengths[Int(random.next() % UInt64(lengths.count))]
            let payload = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let mask = (0..<4).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let fin = control || random.next() % 2 == 0
            bytes += Self.clientFrame(opcode: opcode, payload: payload, fin: fin, mask: mask)
        }
        // Ours, fed in random pieces the way SignalConnection feeds it.
        let parser = Wire.Parser(maxFrameBytes: 1 << 20)
        var ours: [Decoded] = []
        var pending = ByteBuffer()
        var offset = 0
        while offset < bytes.count {
            let piece = min(bytes.count - offset, 1 + Int(random.next() % 3000))
            pending.writeBytes(bytes[offset..<(offset + piece)])
            offset += piece
            while let frame = try parser.next(&pending) {
                ours.append(Decoded(fin: frame.fin, opcode: frame.opcode.rawValue, payload: Self.unmasked(frame)))
            }
        }
        #expect(pending.readableBytes == 0)
        // NIO's, fed all at once.
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        var theirs: [Decoded] = []
        while let frame = try channel.readInbound(as: WebSocketFrame.self) {
            theirs.append(Decoded(fin: frame.fin, opcode: UInt8(webSocketOpcode: frame.opcode), payload: Array(buffer: frame.unmaskedData)))
        }
        _ = try channel.finish()
        #expect(ours.count == 40)
        #expect(ours == theirs, "the first difference is frame \(zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(ours.count, theirs.count))")
    }

    // MARK: Server frames

    @Test(arguments: [0, 1, 125, 126, 127, 65535, 65536, 100_000])
    func aServerFrameIsItsHeaderThenItsPayloadInOneBuffer(length: Int) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = Array(buffer: Wire.frame(.text, payload: payload, allocator: ByteBufferAllocator()))
        let header: [UInt8]
        switch length {
        case ..<126: header = [0x81, UInt8(length)]
        case ...0xFFFF: header = [0x81, 126, UInt8(length >> 8), UInt8(length & 0xFF)]
        default: header = [0x81, 127] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
        }
        #expect(Wire.headerLength(payloadLength: length) == header.count)
        #expect(Array(frame.prefix(header.count)) == header)
        #expect(Array(frame.dropFirst(header.count)) == payload)
        // The independent test client reads it back.
        let parsed = try #require(WireSocket.parse(frame))
        #expect(parsed.0 == 0x1 && parsed.1 == payload && parsed.2 == frame.count)
    }

    @Test func aCloseFrameCarriesItsCode() {
        #expect(Array(buffer: Wire.closeFrame(code: 1002, allocator: ByteBufferAllocator())) == [0x88, 0x02, 0x03, 0xEA])
        #expect(Array(buffer: Wire.frame(.ping, payload: [], allocator: ByteBufferAllocator())) == [0x89, 0x00])
    }

    // MARK: Opening handshake

    @Test func theAcceptValueOfSection1_3() {
        #expect(Wire.acceptValue(key: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func theHandshakeHeadersAreCheckedAsNIOChecksThem() {
        let key = "dGhlIHNhbXBsZSBub25jZQ=="
        #expect(Wire.handshakeKey(in: ["Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"]) == key)
        #expect(Wire.handshakeKey(in: ["sec-websocket-key": key, "SEC-WEBSOCKET-VERSION": "13"]) == key)
        #expect(Wire.handshakeKey(in: ["Sec-WebSocket-Key": key]) == nil)
        #expect(Wire.handshakeKey(in: ["Sec-WebSocket-Version": "13"]) == nil)
        #expect(Wire.handshakeKey(in: ["Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "8"]) == nil)
        #expect(Wire.handshakeKey(in: ["Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13, 8"]) == nil)
        #expect(Wire.handshakeKey(in: HTTPHeaders([("Sec-WebSocket-Key", key), ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")])) == nil)
        #expect(Wire.handshakeKey(in: HTTPHeaders([("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Version", "13")])) == nil)
    }
}

/// The hand-written framing and upgrade on a live node, from a bare TCP socket.
@Suite("WebSocket upgrade and framing on a live node", .serialized, .timeLimit(.minutes(1)))
struct WebSocketUpgradeTests {
    struct Frame {
        var opcode: UInt8
        var payload: [UInt8]
        var text: String { String(decoding: payload, as: UTF8.self) }
    }

    /// The whole frames in `bytes`.
    static func frames(in bytes: [UInt8]) -> [Frame] {
        var rest = bytes[...]
        var frames: [Frame] = []
        while let (opcode, payload, used) = WireSocket.parse(Array(rest)) {
            frames.append(Frame(opcode: opcode, payload: payload))
            rest = rest.dropFirst(used)
        }
        #expect(rest.isEmpty, "\(rest.count) bytes after the last whole frame")
        return frames
    }

    static func request(path: String, key: String = "dGhlIHNhbXBsZSBub25jZQ==", version: String? = "13", extra: String = "") -> [UInt8] {
        var head = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        head += "Sec-WebSocket-Key: \(key)\r\n"
        if let version { head += "Sec-WebSocket-Version: \(version)\r\n" }
        return Array((head + extra + "\r\n").utf8)
    }

    /// Everything the server sends until it closes, read on a thread of its own
    /// (``onOwnThread(_:)``).
    static func readToEnd(_ socket: WireSocket) async throws -> [UInt8] {
        try await onOwnThread { try socket.readToEnd(timeout: 15) }
    }

    /// The response head and the frames after it.
    static func split(_ bytes: [UInt8]) throws -> (head: String, frames: [Frame]) {
        guard let end = bytes.firstRange(of: [13, 10, 13, 10])?.upperBound else {
            throw TestFailure("no response head in \(bytes.count) bytes")
        }
        return (String(decoding: bytes[..<end], as: UTF8.self), frames(in: Array(bytes[end...])))
    }

    @Test func framesSentRightBehindTheUpgradeRequestAreRead() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let token = try await node.token(tenant, peer: "eager")
            let socket = try WireSocket.tcp(port: node.publicPort)
            // The upgrade request, a ping, a text frame and a close, in one write: the client
            // does not wait for the 101.
            try socket.send(raw: Self.request(path: "/v1/signal?access_token=\(token)")
                + WireSocket.frame(opcode: 0x9, payload: [1, 2, 3])
                + WireSocket.frame(opcode: 0x1, payload: Array(#"{"type":"ping","id":"early"}"#.utf8))
                + WireSocket.frame(opcode: 0x8, payload: [0x03, 0xE8]))
            let (head, frames) = try Self.split(try await Self.readToEnd(socket))
            #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
            #expect(head.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "\(head)")
            #expect(frames.contains { $0.opcode == 0xA && $0.payload == [1, 2, 3] }, "no pong: \(frames.map(\.opcode))")
            let texts = frames.filter { $0.opcode == 0x1 }.map(\.text)
            #expect(texts.first?.contains("\"welcome\"") == true, "\(texts)")
            #expect(texts.contains { $0.contains("\"pong\"") && $0.contains("early") }, "\(texts)")
            #expect(frames.last?.opcode == 0x8 && frames.last?.payload == [0x03, 0xE8], "\(frames.map(\.opcode))")
        }
    }

    @Test func aFragmentedMessageWithAPingBetweenItsFragmentsIsOneMessage() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let token = try await node.token(tenant, peer: "fragments")
            let socket = try await onOwnThread {
                try WireSocket.connect(port: node.publicPort, path: "/v1/signal?access_token=\(token)")
            }
            let message = Array(#"{"type":"ping","id":"in-pieces"}"#.utf8)
            // The frames one byte per write too, so the server also sees frames cut anywhere.
            let bytes = WireSocket.frame(opcode: 0x1, payload: Array(message[..<5]), fin: false)
                + WireSocket.frame(opcode: 0x9, payload: [9])
                + WireSocket.frame(opcode: 0x0, payload: Array(message[5..<20]), fin: false)
                + WireSocket.frame(opcode: 0x0, payload: Array(message[20...]))
            for byte in bytes { try socket.send(raw: [byte]) }
            try socket.send(raw: WireSocket.frame(opcode: 0x8, payload: [0x03, 0xE8]))
            let frames = Self.frames(in: try await Self.readToEnd(socket))
            #expect(frames.contains { $0.opcode == 0xA && $0.payload == [9] })
            let answered = frames.contains { $0.opcode == 0x1 && $0.text.contains("\"pong\"") && $0.text.contains("in-pieces") }
            #expect(answered, "\(frames.map { ($0.opcode, $0.text) })")
            #expect(frames.last?.opcode == 0x8)
        }
    }

    @Test(arguments: [
        ("version 8", Self.request(path: "/v1/signal", version: "8")),
        ("no version", Self.request(path: "/v1/signal", version: nil)),
        ("two keys", Self.request(path: "/v1/signal", extra: "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n")),
    ])
    func anInvalidHandshakeIsRefusedWith400AndAJSONBody(what: String, request: [UInt8]) async throws {
        try await TestNode.with { node in
            let socket = try WireSocket.tcp(port: node.publicPort)
            try socket.send(raw: request)
            let response = String(decoding: try await Self.readToEnd(socket), as: UTF8.self)
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(what): \(response)")
            #expect(response.contains(#""code":"bad_request""#), "\(what): \(response)")
        }
    }

    @Test func aValidHandshakeWithABadTokenIsStillAnsweredByTheAuthorizer() async throws {
        try await TestNode.with { node in
            let socket = try WireSocket.tcp(port: node.publicPort)
            try socket.send(raw: Self.request(path: "/v1/signal?access_token=nope"))
            let response = String(decoding: try await Self.readToEnd(socket), as: UTF8.self)
            #expect(response.hasPrefix("HTTP/1.1 401"), "\(response)")
        }
    }
}

/// A small seeded generator (SplitMix64), so a random test is the same on every run.
private struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
