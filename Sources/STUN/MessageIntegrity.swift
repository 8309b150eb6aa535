import Crypto
import NIOCore

/// The outcome of checking MESSAGE-INTEGRITY(-SHA256) against a key.
public enum IntegrityCheck: Sendable, Hashable {
    /// Neither attribute is present.
    case missing
    /// The HMAC matches; `sha256` says which attribute was checked.
    case valid(sha256: Bool)
    /// The HMAC does not match.
    case invalid
}

extension STUNMessage {
    /// Checks MESSAGE-INTEGRITY-SHA256 when present, else MESSAGE-INTEGRITY, over the message
    /// prefix with the length field adjusted to end at the attribute (RFC 8489 §14.5, §14.6).
    /// `key` is the long-term key (``LongTermCredentials/key(username:realm:password:)``) or a
    /// short-term password.
    public func checkIntegrity(key: [UInt8]) -> IntegrityCheck {
        if let attribute = attribute(.messageIntegritySHA256) {
            let mac = MessageIntegrity.sha256(bytes, upTo: attribute.offset, attributeLength: 4 + attribute.value.readableBytes, key: key)
            return MessageIntegrity.constantTimeEquals(mac.prefix(attribute.value.readableBytes), attribute.value.readableBytesView)
                ? .valid(sha256: true) : .invalid
        }
        if let attribute = attribute(.messageIntegrity) {
            let mac = MessageIntegrity.sha1(bytes, upTo: attribute.offset, key: key)
            return MessageIntegrity.constantTimeEquals(mac, attribute.value.readableBytesView) ? .valid(sha256: false) : .invalid
        }
        return .missing
    }

    /// Whether MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 is present.
    public var hasIntegrity: Bool { contains(.messageIntegrity) || contains(.messageIntegritySHA256) }
}

enum MessageIntegrity {
    /// HMAC-SHA1 over `message[0..<offset]` with the length field counting a 24-byte
    /// MESSAGE-INTEGRITY attribute at `offset`.
    static func sha1(_ message: ByteBuffer, upTo offset: Int, key: [UInt8]) -> [UInt8] {
        var hmac = HMAC<Insecure.SHA1>(key: SymmetricKey(data: key))
        update(&hmac, message, upTo: offset, lengthField: UInt16(offset + 24 - STUN.headerLength))
        return Array(hmac.finalize())
    }

    /// HMAC-SHA256 likewise, for an attribute of `attributeLength` bytes (header included).
    static func sha256(_ message: ByteBuffer, upTo offset: Int, attributeLength: Int, key: [UInt8]) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: key))
        update(&hmac, message, upTo: offset, lengthField: UInt16(offset + attributeLength - STUN.headerLength))
        return Array(hmac.finalize())
    }

    private static func update<H: HashFunction>(_ hmac: inout HMAC<H>, _ message: ByteBuffer, upTo offset: Int, lengthField: UInt16) {
        message.withUnsafeReadableBytes { pointer in
            let length = [UInt8(lengthField >> 8), UInt8(lengthField & 0xFF)]
            hmac.update(data: UnsafeRawBufferPointer(rebasing: pointer[0..<2]))
            hmac.update(data: length)
            hmac.update(data: UnsafeRawBufferPointer(rebasing: pointer[4..<offset]))
        }
    }

    static func constantTimeEquals(_ lhs: some Collection<UInt8>, _ rhs: some Collection<UInt8>) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(lhs, rhs) { difference |= a ^ b }
        return difference == 0
    }
}
