import Crypto
import NIOCore

/// Writes one STUN message into a `ByteBuffer`, attribute by attribute, keeping the header's
/// length field current. Add MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT last, in that order.
public struct STUNMessageEncoder: Sendable {
    public private(set) var buffer: ByteBuffer
    public let type: STUNMessageType
    public let transactionID: TransactionID
    private let start: Int

    public init(type: STUNMessageType, transactionID: TransactionID, buffer: ByteBuffer = ByteBuffer()) {
        self.buffer = buffer
        self.type = type
        self.transactionID = transactionID
        self.start = buffer.writerIndex
        self.buffer.reserveCapacity(minimumWritableBytes: 128)
        self.buffer.writeInteger(type.rawValue)
        self.buffer.writeInteger(UInt16(0))
        self.buffer.writeInteger(STUN.magicCookie)
        self.buffer.writeInteger(transactionID.high)
        self.buffer.writeInteger(transactionID.low)
    }

    /// The finished message.
    public var message: ByteBuffer { buffer }

    /// Appends a raw attribute with its padding (zeros).
    public mutating func append(_ type: STUNAttributeType, bytes: some Collection<UInt8>) {
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(UInt16(truncatingIfNeeded: bytes.count))
        buffer.writeBytes(bytes)
        pad(bytes.count)
        updateLength()
    }

    /// Appends a raw attribute whose value is a buffer (DATA).
    public mutating func append(_ type: STUNAttributeType, buffer value: ByteBuffer) {
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(UInt16(truncatingIfNeeded: value.readableBytes))
        buffer.writeImmutableBuffer(value)
        pad(value.readableBytes)
        updateLength()
    }

    /// A UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE).
    public mutating func append(_ type: STUNAttributeType, string: String) {
        append(type, bytes: Array(string.utf8))
    }

    /// A 32-bit attribute (LIFETIME).
    public mutating func append(_ type: STUNAttributeType, uint32 value: UInt32) {
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(UInt16(4))
        buffer.writeInteger(value)
        updateLength()
    }

    /// A plain address (MAPPED-ADDRESS, ALTERNATE-SERVER).
    public mutating func append(_ type: STUNAttributeType, address: TransportAddress) {
        writeAddress(type, address, xor: false)
    }

    /// An XOR address (XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS).
    public mutating func append(_ type: STUNAttributeType, xorAddress address: TransportAddress) {
        writeAddress(type, address, xor: true)
    }

    /// ERROR-CODE with a reason phrase (defaults to the standard one).
    public mutating func appendErrorCode(_ code: Int, reason: String? = nil) {
        let text = Array((reason ?? STUNErrorCode.reason(code)).utf8.prefix(763))
        var value: [UInt8] = [0, 0, UInt8((code / 100) & 0x07), UInt8(code % 100)]
        value.append(contentsOf: text)
        append(.errorCode, bytes: value)
    }

    /// UNKNOWN-ATTRIBUTES listing `types`.
    public mutating func appendUnknownAttributes(_ types: [STUNAttributeType]) {
        var value: [UInt8] = []
        for type in types { value += [UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xFF)] }
        append(.unknownAttributes, bytes: value)
    }

    /// MESSAGE-INTEGRITY (HMAC-SHA1) over everything written so far.
    public mutating func appendMessageIntegrity(key: [UInt8]) {
        let message = buffer.getSlice(at: start, length: buffer.writerIndex - start) ?? ByteBuffer()
        let mac = MessageIntegrity.sha1(message, upTo: message.readableBytes, key: key)
        append(.messageIntegrity, bytes: mac)
    }

    /// MESSAGE-INTEGRITY-SHA256 (full 32 bytes) over everything written so far.
    public mutating func appendMessageIntegritySHA256(key: [UInt8]) {
        let message = buffer.getSlice(at: start, length: buffer.writerIndex - start) ?? ByteBuffer()
        let mac = MessageIntegrity.sha256(message, upTo: message.readableBytes, attributeLength: 36, key: key)
        append(.messageIntegritySHA256, bytes: mac)
    }

    /// FINGERPRINT over everything written so far; must be the last attribute.
    public mutating func appendFingerprint() {
        let length = buffer.writerIndex - start
        let value = buffer.withUnsafeReadableBytes { pointer in
            Fingerprint.value(
                of: UnsafeRawBufferPointer(rebasing: pointer[(start - buffer.readerIndex)..<(start - buffer.readerIndex + length)]),
                lengthField: UInt16(length + 8 - STUN.headerLength))
        }
        append(.fingerprint, uint32: value)
    }

    private mutating func writeAddress(_ type: STUNAttributeType, _ address: TransportAddress, xor: Bool) {
        buffer.writeInteger(type.rawValue)
        let port = xor ? address.port ^ UInt16(STUN.magicCookie >> 16) : address.port
        switch address.ip {
        case .v4(let ip):
            buffer.writeInteger(UInt16(8))
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(AddressFamily.ipv4.rawValue)
            buffer.writeInteger(port)
            buffer.writeInteger(xor ? ip.value ^ STUN.magicCookie : ip.value)
        case .v6(let ip):
            buffer.writeInteger(UInt16(20))
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(AddressFamily.ipv6.rawValue)
            buffer.writeInteger(port)
            if xor {
                buffer.writeInteger(ip.high ^ (UInt64(STUN.magicCookie) << 32 | UInt64(transactionID.high)))
                buffer.writeInteger(ip.low ^ transactionID.low)
            } else {
                buffer.writeInteger(ip.high)
                buffer.writeInteger(ip.low)
            }
        }
        updateLength()
    }

    private mutating func pad(_ count: Int) {
        let padding = (4 - count % 4) % 4
        if padding > 0 { buffer.writeRepeatingByte(0, count: padding) }
    }

    private mutating func updateLength() {
        buffer.setInteger(UInt16(truncatingIfNeeded: buffer.writerIndex - start - STUN.headerLength), at: start + 2)
    }
}

/// The STUN/TURN error codes this server sends, with their standard reason phrases.
public enum STUNErrorCode {
    public static let tryAlternate = 300
    public static let badRequest = 400
    public static let unauthorized = 401
    public static let forbidden = 403
    public static let unknownAttribute = 420
    public static let allocationMismatch = 437
    public static let staleNonce = 438
    public static let addressFamilyNotSupported = 440
    public static let wrongCredentials = 441
    public static let unsupportedTransportProtocol = 442
    public static let peerAddressFamilyMismatch = 443
    public static let allocationQuotaReached = 486
    public static let serverError = 500
    public static let insufficientCapacity = 508

    /// The reason phrase RFC 8489/8656 give for `code`.
    public static func reason(_ code: Int) -> String {
        switch code {
        case 300: "Try Alternate"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 420: "Unknown Attribute"
        case 437: "Allocation Mismatch"
        case 438: "Stale Nonce"
        case 440: "Address Family not Supported"
        case 441: "Wrong Credentials"
        case 442: "Unsupported Transport Protocol"
        case 443: "Peer Address Family Mismatch"
        case 486: "Allocation Quota Reached"
        case 500: "Server Error"
        case 508: "Insufficient Capacity"
        default: "Error"
        }
    }
}
