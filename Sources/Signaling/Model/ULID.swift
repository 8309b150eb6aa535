import Foundation

/// Time-ordered ids: 48 bits of milliseconds and 80 random bits in Crockford base32 (26 chars).
/// Lexical order is time order, which audit pagination relies on.
public enum ULID {
    private static let alphabet: [UInt8] = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    public static func make(at date: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        return make(milliseconds: UInt64(max(0, Timestamp.milliseconds(date))), using: &generator)
    }

    public static func make(milliseconds: UInt64, using generator: inout some RandomNumberGenerator) -> String {
        var out = [UInt8](repeating: 0, count: 26)
        var time = milliseconds
        for index in stride(from: 9, through: 0, by: -1) {
            out[index] = alphabet[Int(time & 31)]
            time >>= 5
        }
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        // 80 random bits: 16 from `high`, 64 from `low`.
        var random = (high: high & 0xFFFF, low: low)
        for index in stride(from: 25, through: 10, by: -1) {
            out[index] = alphabet[Int(random.low & 31)]
            random.low = (random.low >> 5) | ((random.high & 31) << 59)
            random.high >>= 5
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The smallest id at a time: for `since`/`until` bounds.
    public static func lowerBound(at date: Date) -> String {
        var time = UInt64(max(0, Timestamp.milliseconds(date)))
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: 26)
        for index in stride(from: 9, through: 0, by: -1) {
            out[index] = alphabet[Int(time & 31)]
            time >>= 5
        }
        return String(decoding: out, as: UTF8.self)
    }
}
