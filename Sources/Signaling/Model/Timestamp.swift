import Foundation

/// RFC 3339 UTC timestamps, as every API shape writes them (`2026-11-25T03:00:00.123Z`).
public enum Timestamp {
    private static let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    private static let withoutFraction = Date.ISO8601FormatStyle(timeZone: .gmt)

    /// Formats whole milliseconds (rounded to the nearest), so a stored time reads back as
    /// it was written.
    public static func format(_ date: Date) -> String {
        let ms = milliseconds(date)
        let (seconds, fraction) = ms.quotientAndRemainder(dividingBy: 1000)
        let wholeSeconds = fraction < 0 ? seconds - 1 : seconds
        let millis = fraction < 0 ? fraction + 1000 : fraction
        let base = withoutFraction.format(Date(timeIntervalSince1970: TimeInterval(wholeSeconds)))
        let digits = String(millis)
        return String(base.dropLast()) + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// Parses RFC 3339 with or without fractional seconds, `Z` or a numeric offset.
    public static func parse(_ text: String) -> Date? {
        guard text.count <= 40 else { return nil }
        if let date = try? withFraction.parse(text) { return date }
        if let date = try? withoutFraction.parse(text) { return date }
        return nil
    }

    /// Milliseconds since 1970, the form stores keep.
    public static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    public static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}

extension KeyedEncodingContainer {
    /// Encodes a date as an RFC 3339 string.
    public mutating func encodeTimestamp(_ date: Date, forKey key: Key) throws {
        try encode(Timestamp.format(date), forKey: key)
    }
}

extension KeyedDecodingContainer {
    public func decodeTimestamp(forKey key: Key) throws -> Date {
        let text = try decode(String.self, forKey: key)
        guard let date = Timestamp.parse(text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not an RFC 3339 time")
        }
        return date
    }
}
