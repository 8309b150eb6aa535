import NIOCore
import STUN
import Testing

@Suite struct STUNCodecTests {
    static let key = LongTermCredentials.key(username: "user", realm: "realm", password: "pass")

    static func sample(integrity: Bool = true, sha256: Bool = false, fingerprint: Bool = true) -> ByteBuffer {
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .allocate, class: .request), transactionID: .random())
        encoder.append(.requestedTransport, bytes: [17, 0, 0, 0])
        encoder.append(.username, string: "user")
        encoder.append(.realm, string: "realm")
        encoder.append(.nonce, string: "abc")
        encoder.append(.lifetime, uint32: 1200)
        encoder.append(.xorPeerAddress, xorAddress: TransportAddress(ip: .v4(IPv4Address(8, 8, 8, 8)), port: 3478))
        encoder.append(.xorPeerAddress, xorAddress: TransportAddress(ip: IPAddress("2001:4860::8888")!, port: 53))
        encoder.append(.data, bytes: [1, 2, 3, 4, 5])
        encoder.append(.evenPort, bytes: [0x80])
        encoder.append(.channelNumber, bytes: [0x40, 0x01, 0, 0])
        encoder.append(.reservationToken, bytes: [1, 2, 3, 4, 5, 6, 7, 8])
        encoder.append(.dontFragment, bytes: [])
        if integrity { encoder.appendMessageIntegrity(key: key) }
        if sha256 { encoder.appendMessageIntegritySHA256(key: key) }
        if fingerprint { encoder.appendFingerprint() }
        return encoder.message
    }

    @Test func roundTrip() throws {
        let message = try STUNMessage(decoding: Self.sample())
        #expect(message.type == STUNMessageType(method: .allocate, class: .request))
        #expect(message.requestedTransport == 17)
        #expect(message.username == "user")
        #expect(message.realm == "realm")
        #expect(message.nonce == "abc")
        #expect(message.lifetime == 1200)
        #expect(message.xorAddresses(.xorPeerAddress).map(\.description) == ["8.8.8.8:3478", "[2001:4860::8888]:53"])
        #expect(message.data.map { Array($0.readableBytesView) } == [1, 2, 3, 4, 5])
        #expect(message.evenPort == true)
        #expect(message.channelNumber == 0x4001)
        #expect(message.reservationToken == 0x0102_0304_0506_0708)
        #expect(message.dontFragment)
        #expect(message.hasFingerprint)
        #expect(message.checkIntegrity(key: Self.key) == .valid(sha256: false))
    }

    /// Datagrams read in batches arrive as slices of one buffer: nothing may assume index 0.
    @Test func decodesFromAnOffsetBuffer() throws {
        let sample = Self.sample()
        var shifted = ByteBuffer(bytes: [9, 9, 9, 9, 9, 9, 9])
        shifted.writeImmutableBuffer(sample)
        shifted.writeBytes([7, 7, 7])
        shifted.moveReaderIndex(forwardBy: 7)
        let slice = try #require(shifted.getSlice(at: shifted.readerIndex, length: sample.readableBytes))
        var offset = shifted
        offset.moveWriterIndex(to: offset.writerIndex - 3)
        for bytes in [slice, offset] {
            let message = try STUNMessage(decoding: bytes)
            #expect(message.requestedTransport == 17)
            #expect(message.username == "user")
            #expect(message.xorAddresses(.xorPeerAddress).count == 2)
            #expect(message.checkIntegrity(key: Self.key) == .valid(sha256: false))
        }
    }

    @Test func messageTypeEncoding() {
        for method in [STUNMethod.binding, .allocate, .refresh, .send, .data, .createPermission, .channelBind] {
            for messageClass in [STUNClass.request, .indication, .successResponse, .errorResponse] {
                let type = STUNMessageType(method: method, class: messageClass)
                #expect(STUNMessageType(rawValue: type.rawValue) == type)
            }
        }
        #expect(STUNMessageType(method: .binding, class: .successResponse).rawValue == 0x0101)
        #expect(STUNMessageType(method: .allocate, class: .errorResponse).rawValue == 0x0113)
        #expect(STUNMessageType(method: .send, class: .indication).rawValue == 0x0016)
        #expect(STUNMessageType(method: .data, class: .indication).rawValue == 0x0017)
    }

    @Test func integritySHA256AndBoth() throws {
        let only = try STUNMessage(decoding: Self.sample(integrity: false, sha256: true))
        #expect(only.checkIntegrity(key: Self.key) == .valid(sha256: true))
        #expect(only.checkIntegrity(key: [1, 2, 3]) == .invalid)
        let both = try STUNMessage(decoding: Self.sample(integrity: true, sha256: true))
        #expect(both.checkIntegrity(key: Self.key) == .valid(sha256: true))
        let none = try STUNMessage(decoding: Self.sample(integrity: false, fingerprint: false))
        #expect(none.checkIntegrity(key: Self.key) == .missing)
    }

    @Test func tamperedMessageFailsIntegrityOrFingerprint() throws {
        var bytes = Self.sample(fingerprint: false)
        bytes.setInteger(UInt8(ascii: "x"), at: 20 + 8 + 4)  // inside USERNAME
        #expect(try STUNMessage(decoding: bytes).checkIntegrity(key: Self.key) == .invalid)
        var withFingerprint = Self.sample()
        withFingerprint.setInteger(UInt8(ascii: "x"), at: 20 + 8 + 4)
        #expect(throws: STUNDecodingError.self) { try STUNMessage(decoding: withFingerprint) }
    }

    @Test func attributesAfterIntegrityAreIgnoredAndNothingFollowsFingerprint() throws {
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .binding, class: .request), transactionID: .random())
        encoder.appendMessageIntegrity(key: Self.key)
        encoder.append(.username, string: "late")
        let message = try STUNMessage(decoding: encoder.message)
        #expect(message.username == nil)
        #expect(message.checkIntegrity(key: Self.key) == .valid(sha256: false))

        var after = STUNMessageEncoder(type: STUNMessageType(method: .binding, class: .request), transactionID: .random())
        after.appendFingerprint()
        after.append(.software, string: "x")
        #expect(throws: STUNDecodingError.self) { try STUNMessage(decoding: after.message) }
    }

    @Test func unknownComprehensionRequiredAttributesAreReported() throws {
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .allocate, class: .request), transactionID: .random())
        encoder.append(STUNAttributeType(rawValue: 0x7777), bytes: [1])
        encoder.append(STUNAttributeType(rawValue: 0xC001), bytes: [1])  // optional: not reported
        let message = try STUNMessage(decoding: encoder.message)
        #expect(message.unknownComprehensionRequired == [STUNAttributeType(rawValue: 0x7777)])
    }

    @Test func malformedMessagesAreRefusedWithTheirHeader() {
        // LIFETIME of 3 bytes
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .refresh, class: .request), transactionID: .random())
        encoder.append(.lifetime, bytes: [0, 0, 1])
        do {
            _ = try STUNMessage(decoding: encoder.message)
            Issue.record("decoded a 3-byte LIFETIME")
        } catch {
            #expect(error.code == .badAttribute)
            #expect(error.transactionID == encoder.transactionID)
        }
        // a length field that disagrees with the datagram
        var short = STUNMessageEncoder(type: STUNMessageType(method: .binding, class: .request), transactionID: .random()).message
        short.writeInteger(UInt32(0))
        #expect(throws: STUNDecodingError.self) { try STUNMessage(decoding: short) }
        // the wrong cookie
        var cookie = STUNMessageEncoder(type: STUNMessageType(method: .binding, class: .request), transactionID: .random()).message
        cookie.setInteger(UInt32(0xDEAD_BEEF), at: 4)
        #expect(throws: STUNDecodingError.self) { try STUNMessage(decoding: cookie) }
        // an XOR address with family 3
        var family = STUNMessageEncoder(type: STUNMessageType(method: .createPermission, class: .request), transactionID: .random())
        family.append(.xorPeerAddress, bytes: [0, 3, 0, 0, 0, 0, 0, 0])
        #expect(throws: STUNDecodingError.self) { try STUNMessage(decoding: family.message) }
    }

    /// Random and truncated input never traps; decoding either throws or yields a message.
    @Test func randomAndTruncatedBytesNeverCrash() {
        var generator = SplitMix64(seed: 0x5354_554E)
        let valid = [Self.sample(), Self.sample(sha256: true), RFC5769Tests.sampleRequest, RFC5769Tests.longTermRequest]
        var decoded = 0
        for round in 0..<20_000 {
            var bytes: ByteBuffer
            switch round % 4 {
            case 0:
                let length = Int(generator.next() % 120)
                bytes = ByteBuffer(bytes: (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
                if length >= 8, round % 8 == 0 {  // make the header plausible so attributes get parsed
                    bytes.setInteger(UInt16(truncatingIfNeeded: generator.next()) & 0x3FFF, at: 0)
                    bytes.setInteger(UInt16(max(0, length - 20) & ~3), at: 2)
                    bytes.setInteger(STUN.magicCookie, at: 4)
                }
            case 1:
                let source = valid[Int(generator.next() % UInt64(valid.count))]
                bytes = source.getSlice(at: 0, length: Int(generator.next() % UInt64(source.readableBytes))) ?? ByteBuffer()
            default:
                bytes = valid[Int(generator.next() % UInt64(valid.count))]
                for _ in 0..<(1 + generator.next() % 4) {
                    let index = Int(generator.next() % UInt64(bytes.readableBytes))
                    bytes.setInteger(UInt8(truncatingIfNeeded: generator.next()), at: index)
                }
            }
            if let message = try? STUNMessage(decoding: bytes) {
                decoded += 1
                _ = message.xorAddresses(.xorPeerAddress)
                _ = message.errorCode
                _ = message.unknownAttributes
                _ = message.passwordAlgorithms
                _ = message.checkIntegrity(key: Self.key)
                _ = (message.username, message.realm, message.nonce, message.lifetime, message.channelNumber, message.evenPort)
            }
            _ = ChannelData(decoding: bytes)
            _ = TURNFraming.nextFrame(in: bytes)
        }
        #expect(decoded > 0)
    }

    @Test func errorCodeAndUnknownAttributes() throws {
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .allocate, class: .errorResponse), transactionID: .random())
        encoder.appendErrorCode(420)
        encoder.appendUnknownAttributes([.dontFragment, STUNAttributeType(rawValue: 0x7777)])
        encoder.appendErrorCode(438, reason: "Stale Nonce")
        let message = try STUNMessage(decoding: encoder.message)
        #expect(message.errorCode?.code == 420)
        #expect(message.errorCode?.reason == "Unknown Attribute")
        #expect(message.unknownAttributes == [.dontFragment, STUNAttributeType(rawValue: 0x7777)])
    }

    @Test func channelDataFraming() throws {
        let payload = ByteBuffer(bytes: [1, 2, 3, 4, 5])
        let udp = ChannelData(channel: 0x4001, payload: payload).encoded(padded: false)
        let tcp = ChannelData(channel: 0x4001, payload: payload).encoded(padded: true)
        #expect(udp.readableBytes == 9)
        #expect(tcp.readableBytes == 12)
        #expect(ChannelData(decoding: udp)?.payload == payload)
        #expect(ChannelData(decoding: tcp)?.payload == payload)
        #expect(ChannelData(decoding: ByteBuffer(bytes: [0x40, 0x01, 0, 9, 1])) == nil)  // longer than the bytes
        #expect(ChannelData(decoding: ByteBuffer(bytes: [0x6F, 0xFF, 0, 0]))?.channel == 0x6FFF)  // RFC 5766 range, as coturn
        #expect(ChannelData(decoding: ByteBuffer(bytes: [0x80, 0x00, 0, 0])) == nil)
        // The header as the relay path reads it, from bytes in place.
        func header(_ bytes: [UInt8]) -> (channel: UInt16, length: Int)? { bytes.withUnsafeBytes { ChannelData.header(of: $0) } }
        #expect(header([0x40, 0x01, 0, 5, 1, 2, 3, 4, 5]).map { [Int($0.channel), $0.length] } == [0x4001, 5])
        #expect(header([0x40, 0x01, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0]).map { [Int($0.channel), $0.length] } == [0x4001, 5])  // padded
        #expect(header([0x40, 0x01, 0, 6, 1, 2, 3, 4, 5]) == nil)  // one byte short
        #expect(header([0x40, 0x01, 0]) == nil)  // shorter than a header
        #expect(header([0x3F, 0xFF, 0, 0]) == nil && header([0x80, 0x00, 0, 0]) == nil)  // outside 0x4000–0x7FFF
        #expect(header([0x40, 0x00, 0x01, 0x00] + Array(repeating: 7, count: 256))?.length == 256)  // both length bytes
        var offset = ByteBuffer(bytes: [0xFF, 0xFF, 0x40, 0x02, 0, 1, 9])
        offset.moveReaderIndex(forwardBy: 2)
        #expect(ChannelData(decoding: offset).map { [Int($0.channel), $0.payload.readableBytes] } == [0x4002, 1])  // from the reader index

        var stream = ByteBuffer()
        stream.writeImmutableBuffer(tcp)
        stream.writeImmutableBuffer(Self.sample())
        stream.writeImmutableBuffer(tcp.getSlice(at: 0, length: 6)!)
        #expect(TURNFraming.nextFrame(in: stream) == .channelData(length: 12))
        stream.moveReaderIndex(forwardBy: 12)
        let stunLength = Self.sample().readableBytes
        #expect(TURNFraming.nextFrame(in: stream) == .stun(length: stunLength))
        stream.moveReaderIndex(forwardBy: stunLength)
        #expect(TURNFraming.nextFrame(in: stream) == .needMoreBytes)
        #expect(TURNFraming.nextFrame(in: ByteBuffer(bytes: [0x80, 0, 0, 0])) == .invalid)
        #expect(TURNFraming.nextFrame(in: ByteBuffer(bytes: [0x00, 0x01, 0x00, 0x03])) == .invalid)
    }

    @Test func addressText() {
        #expect(IPAddress("::ffff:127.0.0.1")?.description == "::ffff:7f00:1")
        #expect(IPAddress("2001:db8::1")?.description == "2001:db8::1")
        #expect(IPAddress("::")?.description == "::")
        #expect(IPAddress("1::")?.description == "1::")
        #expect(IPAddress("[::1]")?.description == "::1")
        #expect(IPAddress("1.2.3") == nil)
        #expect(IPAddress("1.2.3.256") == nil)
        #expect(IPAddress("1::2::3") == nil)
        #expect(IPAddress("1:2:3:4:5:6:7:8:9") == nil)
        #expect(IPAddress("12345::") == nil)
        #expect(IPAddress("") == nil)
    }

    /// The hand-written hashes (one or two words per address) keep every field apart: clients
    /// that differ in one part only are distinct keys, and equal ones find each other.
    @Test func addressesAndClientsHashEveryField() throws {
        let v4 = try #require(IPAddress("192.0.2.1"))
        let mapped = try #require(IPAddress("::ffff:192.0.2.1"))
        let v6 = try #require(IPAddress("2001:db8::1"))
        var addresses: [TransportAddress] = []
        for ip in [v4, mapped, v6, try #require(IPAddress("192.0.2.2")), try #require(IPAddress("2001:db8::2"))] {
            for port: UInt16 in [0, 1, 3478, 65535] { addresses.append(TransportAddress(ip: ip, port: port)) }
        }
        #expect(Set(addresses).count == addresses.count)
        #expect(Set([v4, mapped, v6]).count == 3)
        var clients: [TURNClient: Int] = [:]
        for transport in [TURNTransport.udp, .tcp, .tls] {
            for local in addresses.prefix(10) {
                for remote in addresses.suffix(12) { clients[TURNClient(transport: transport, local: local, remote: remote), default: 0] += 1 }
            }
        }
        #expect(clients.count == 3 * 10 * 12 && clients.values.allSatisfy { $0 == 1 })
        // local and remote swapped: both present, and distinct
        let forward = TURNClient(transport: .udp, local: addresses[8], remote: addresses[9])
        let swapped = TURNClient(transport: .udp, local: addresses[9], remote: addresses[8])
        #expect(clients[forward] == 1 && clients[swapped] == 1 && forward != swapped)
        #expect(TransportAddress(ip: v4, port: 9).hashValue == TransportAddress(ip: try #require(IPAddress("192.0.2.1")), port: 9).hashValue)
    }
}

/// A tiny deterministic generator for the no-crash test.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
