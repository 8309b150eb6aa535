/// FINGERPRINT: CRC-32 (ISO HDLC, as in zlib) of the message up to the attribute, XORed
/// with 0x5354554e (RFC 8489 §14.7).
enum Fingerprint {
    /// The FINGERPRINT value of `prefix` (the message up to the FINGERPRINT attribute) with
    /// the header's length field replaced by `lengthField`.
    static func value(of prefix: UnsafeRawBufferPointer, lengthField: UInt16) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for index in prefix.indices {
            var byte = prefix[index]
            if index == 2 { byte = UInt8(lengthField >> 8) }
            if index == 3 { byte = UInt8(lengthField & 0xFF) }
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return (crc ^ 0xFFFF_FFFF) ^ STUN.fingerprintXOR
    }

    /// CRC-32 of arbitrary bytes (used by tests against known values).
    static func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }
}
