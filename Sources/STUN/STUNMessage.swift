import NIOCore

/// One attribute of a decoded message: its type and a slice of the message's bytes.
public struct STUNAttribute: Sendable {
    public var type: STUNAttributeType
    /// The value without padding (a slice sharing the message's storage).
    public var value: ByteBuffer
    /// Where the attribute's 4-byte header starts, counted from the start of the message.
    public var offset: Int
}

/// Why bytes are not a STUN message we accept. When the 20-byte header was sound, `type`
/// and `transactionID` say which request to answer with 400 Bad Request.
public struct STUNDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let notSTUN = Code(name: "not-stun")
        public static let truncated = Code(name: "truncated")
        public static let badLength = Code(name: "bad-length")
        public static let badAttribute = Code(name: "bad-attribute")
        public static let badFingerprint = Code(name: "bad-fingerprint")
        public static let attributeAfterFingerprint = Code(name: "attribute-after-fingerprint")
        public var description: String { name }
    }

    public var code: Code
    public var type: STUNMessageType?
    public var transactionID: TransactionID?

    public var description: String { "STUN decoding failed: \(code)" }
}

/// A decoded STUN message. Decoding is strict and never traps: lengths, padding, the magic
/// cookie, attribute order (nothing but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT counts after
/// MESSAGE-INTEGRITY; nothing may follow FINGERPRINT), the FINGERPRINT value and the size of
/// every known attribute are checked. Values are slices of the input, not copies.
public struct STUNMessage: Sendable {
    public var type: STUNMessageType
    public var transactionID: TransactionID
    /// The attributes that count, in order (those after MESSAGE-INTEGRITY that must be
    /// ignored are left out).
    public private(set) var attributes: [STUNAttribute]
    /// Comprehension-required attribute types this codec does not know (answer 420).
    public private(set) var unknownComprehensionRequired: [STUNAttributeType]
    /// The whole message as received.
    public private(set) var bytes: ByteBuffer

    /// Decodes one whole message (a UDP datagram, or one frame cut by ``TURNFraming``).
    public init(decoding buffer: ByteBuffer) throws(STUNDecodingError) {
        let total = buffer.readableBytes
        guard total >= STUN.headerLength,
            let rawType = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
            let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self),
            let cookie = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self),
            let high = buffer.getInteger(at: buffer.readerIndex + 8, as: UInt32.self),
            let low = buffer.getInteger(at: buffer.readerIndex + 12, as: UInt64.self)
        else { throw STUNDecodingError(code: .truncated) }
        guard rawType & 0xC000 == 0, cookie == STUN.magicCookie else { throw STUNDecodingError(code: .notSTUN) }
        let type = STUNMessageType(rawValue: rawType)
        let transactionID = TransactionID(high: high, low: low)
        func failure(_ code: STUNDecodingError.Code) -> STUNDecodingError {
            STUNDecodingError(code: code, type: type, transactionID: transactionID)
        }
        guard Int(length) % 4 == 0, Int(length) + STUN.headerLength == total else { throw failure(.badLength) }

        var attributes: [STUNAttribute] = []
        var unknown: [STUNAttributeType] = []
        var sawIntegrity = false
        var sawIntegritySHA256 = false
        var sawFingerprint = false
        var position = STUN.headerLength
        let base = buffer.readerIndex
        while position < total {
            guard total - position >= 4,
                let rawAttribute = buffer.getInteger(at: base + position, as: UInt16.self),
                let valueLength = buffer.getInteger(at: base + position + 2, as: UInt16.self)
            else { throw failure(.truncated) }
            let padded = (Int(valueLength) + 3) & ~3
            guard total - position - 4 >= padded, let value = buffer.getSlice(at: base + position + 4, length: Int(valueLength))
            else { throw failure(.truncated) }
            let attributeType = STUNAttributeType(rawValue: rawAttribute)
            let offset = position
            position += 4 + padded
            if sawFingerprint { throw failure(.attributeAfterFingerprint) }
            if sawIntegritySHA256, attributeType != .fingerprint { continue }
            if sawIntegrity, attributeType != .fingerprint, attributeType != .messageIntegritySHA256 { continue }
            if let allowed = attributeType.allowedLengths, !allowed.contains(Int(valueLength)) {
                throw failure(.badAttribute)
            }
            switch attributeType {
            case .mappedAddress, .xorMappedAddress, .xorPeerAddress, .xorRelayedAddress, .alternateServer,
                .responseOrigin, .otherAddress:
                let family = value.getInteger(at: value.readerIndex + 1, as: UInt8.self)
                guard (family == AddressFamily.ipv4.rawValue && valueLength == 8)
                    || (family == AddressFamily.ipv6.rawValue && valueLength == 20)
                else { throw failure(.badAttribute) }
            case .messageIntegritySHA256:
                guard valueLength % 4 == 0 else { throw failure(.badAttribute) }
                sawIntegritySHA256 = true
            case .messageIntegrity:
                sawIntegrity = true
            case .fingerprint:
                sawFingerprint = true
                let expected = value.getInteger(at: value.readerIndex, as: UInt32.self)
                let actual = buffer.withUnsafeReadableBytes { pointer in
                    Fingerprint.value(of: UnsafeRawBufferPointer(rebasing: pointer[0..<offset]), lengthField: UInt16(offset + 8 - STUN.headerLength))
                }
                guard expected == actual else { throw failure(.badFingerprint) }
            default:
                if attributeType.isComprehensionRequired, !STUNAttributeType.understood.contains(attributeType),
                    !unknown.contains(attributeType)
                {
                    unknown.append(attributeType)
                }
            }
            attributes.append(STUNAttribute(type: attributeType, value: value, offset: offset))
        }
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
        self.unknownComprehensionRequired = unknown
        self.bytes = buffer
    }

    /// The first attribute of `type`.
    public func attribute(_ type: STUNAttributeType) -> STUNAttribute? {
        attributes.first { $0.type == type }
    }

    /// Whether an attribute of `type` is present.
    public func contains(_ type: STUNAttributeType) -> Bool { attribute(type) != nil }

    /// A MAPPED-ADDRESS-style (plain) address.
    public func address(_ type: STUNAttributeType) -> TransportAddress? {
        attribute(type).flatMap { Self.decodeAddress($0.value, xor: nil) }
    }

    /// The first XOR-…-ADDRESS of `type`, decoded.
    public func xorAddress(_ type: STUNAttributeType) -> TransportAddress? {
        attribute(type).flatMap { Self.decodeAddress($0.value, xor: transactionID) }
    }

    /// Every XOR-…-ADDRESS of `type` (CreatePermission may carry several XOR-PEER-ADDRESS).
    public func xorAddresses(_ type: STUNAttributeType) -> [TransportAddress] {
        attributes.filter { $0.type == type }.compactMap { Self.decodeAddress($0.value, xor: transactionID) }
    }

    /// A UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE); nil if absent or not UTF-8.
    public func string(_ type: STUNAttributeType) -> String? {
        guard let value = attribute(type)?.value else { return nil }
        return value.withUnsafeReadableBytes { String(validating: $0, as: UTF8.self) }
    }

    public var username: String? { string(.username) }
    public var realm: String? { string(.realm) }
    public var nonce: String? { string(.nonce) }
    public var software: String? { string(.software) }

    /// ERROR-CODE: the code (300–699) and the reason phrase.
    public var errorCode: (code: Int, reason: String)? {
        guard let value = attribute(.errorCode)?.value,
            let classByte = value.getInteger(at: value.readerIndex + 2, as: UInt8.self),
            let number = value.getInteger(at: value.readerIndex + 3, as: UInt8.self)
        else { return nil }
        let reason = value.getSlice(at: value.readerIndex + 4, length: value.readableBytes - 4)
            .flatMap { slice in slice.withUnsafeReadableBytes { String(validating: $0, as: UTF8.self) } } ?? ""
        return (Int(classByte & 0x07) * 100 + Int(number), reason)
    }

    /// UNKNOWN-ATTRIBUTES: the types listed.
    public var unknownAttributes: [STUNAttributeType] {
        guard var value = attribute(.unknownAttributes)?.value else { return [] }
        var types: [STUNAttributeType] = []
        while let raw = value.readInteger(as: UInt16.self) { types.append(STUNAttributeType(rawValue: raw)) }
        return types
    }

    /// LIFETIME in seconds.
    public var lifetime: UInt32? { uint32(.lifetime) }
    /// The protocol number of REQUESTED-TRANSPORT (17 is UDP).
    public var requestedTransport: UInt8? { firstByte(.requestedTransport) }
    /// CHANNEL-NUMBER.
    public var channelNumber: UInt16? {
        attribute(.channelNumber).flatMap { $0.value.getInteger(at: $0.value.readerIndex, as: UInt16.self) }
    }
    /// DATA.
    public var data: ByteBuffer? { attribute(.data)?.value }
    /// EVEN-PORT: nil when absent, else whether the R bit asks to reserve the next port.
    public var evenPort: Bool? { firstByte(.evenPort).map { $0 & 0x80 != 0 } }
    /// RESERVATION-TOKEN.
    public var reservationToken: UInt64? {
        attribute(.reservationToken).flatMap { $0.value.getInteger(at: $0.value.readerIndex, as: UInt64.self) }
    }
    /// REQUESTED-ADDRESS-FAMILY's raw family byte.
    public var requestedAddressFamily: UInt8? { firstByte(.requestedAddressFamily) }
    /// ADDITIONAL-ADDRESS-FAMILY's raw family byte.
    public var additionalAddressFamily: UInt8? { firstByte(.additionalAddressFamily) }
    /// Whether DONT-FRAGMENT is present.
    public var dontFragment: Bool { contains(.dontFragment) }
    /// Whether FINGERPRINT is present (its value was checked while decoding).
    public var hasFingerprint: Bool { contains(.fingerprint) }
    /// USERHASH (32 bytes).
    public var userhash: [UInt8]? { attribute(.userhash).map { Array($0.value.readableBytesView) } }
    /// PASSWORD-ALGORITHM's algorithm number (1 MD5, 2 SHA-256).
    public var passwordAlgorithm: UInt16? {
        attribute(.passwordAlgorithm).flatMap { $0.value.getInteger(at: $0.value.readerIndex, as: UInt16.self) }
    }
    /// PASSWORD-ALGORITHMS: the algorithm numbers offered.
    public var passwordAlgorithms: [UInt16] {
        guard var value = attribute(.passwordAlgorithms)?.value else { return [] }
        var result: [UInt16] = []
        while let algorithm = value.readInteger(as: UInt16.self), let length = value.readInteger(as: UInt16.self) {
            result.append(algorithm)
            guard value.readSlice(length: (Int(length) + 3) & ~3) != nil else { break }
        }
        return result
    }

    private func uint32(_ type: STUNAttributeType) -> UInt32? {
        attribute(type).flatMap { $0.value.getInteger(at: $0.value.readerIndex, as: UInt32.self) }
    }

    private func firstByte(_ type: STUNAttributeType) -> UInt8? {
        attribute(type).flatMap { $0.value.getInteger(at: $0.value.readerIndex, as: UInt8.self) }
    }

    static func decodeAddress(_ value: ByteBuffer, xor transactionID: TransactionID?) -> TransportAddress? {
        let start = value.readerIndex
        guard let family = value.getInteger(at: start + 1, as: UInt8.self),
            var port = value.getInteger(at: start + 2, as: UInt16.self)
        else { return nil }
        if transactionID != nil { port ^= UInt16(STUN.magicCookie >> 16) }
        switch family {
        case AddressFamily.ipv4.rawValue:
            guard value.readableBytes == 8, var ip = value.getInteger(at: start + 4, as: UInt32.self) else { return nil }
            if transactionID != nil { ip ^= STUN.magicCookie }
            return TransportAddress(ip: .v4(IPv4Address(ip)), port: port)
        case AddressFamily.ipv6.rawValue:
            guard value.readableBytes == 20, var high = value.getInteger(at: start + 4, as: UInt64.self),
                var low = value.getInteger(at: start + 12, as: UInt64.self)
            else { return nil }
            if let transactionID {
                high ^= UInt64(STUN.magicCookie) << 32 | UInt64(transactionID.high)
                low ^= transactionID.low
            }
            return TransportAddress(ip: .v6(IPv6Address(high: high, low: low)), port: port)
        default:
            return nil
        }
    }
}
