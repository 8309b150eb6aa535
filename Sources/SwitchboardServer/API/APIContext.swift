import Foundation
import Hummingbird
import NIOCore
import Signaling

/// The request context of the REST API: who the caller turned out to be.
struct APIContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// Set by ``TenantAuthMiddleware``.
    var tenant: Tenant?
    /// The API key the tenant authenticated with (its secret signs `POST /v1/tokens`).
    var key: ResolvedKey?

    init(source: Source) {
        coreContext = .init(source: source)
    }

    /// Hummingbird's own decoding limit; the routes read bodies with
    /// ``Request/jsonBody(maxBytes:allowEmpty:)`` and the configured limit (1 MiB).
    var maxUploadSize: Int { 1 << 20 }

    /// Responses: no `\/` escapes, keys sorted so output is stable. (Dates are already
    /// RFC 3339 strings in every shape.)
    var responseEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The authenticated tenant (routes behind ``TenantAuthMiddleware`` only).
    func requireTenant() throws(APIError) -> Tenant {
        guard let tenant else { throw APIError.unauthorized() }
        return tenant
    }

    /// A path parameter, percent-decoded (`%2F` is a `/` inside a room name, `+` stays a
    /// plus). Nil when it is missing or its percent-encoding is malformed.
    func pathParameter(_ name: String) -> String? {
        guard let raw = parameters.get(name) else { return nil }
        return raw.removingPercentEncoding
    }
}

/// Request body and query helpers shared by the routes.
extension Request {
    /// The JSON object body: 413 past `maxBytes`, 400 when it is not JSON, 422 when it is not
    /// an object. With `allowEmpty`, an empty body reads as `{}`.
    func jsonBody(maxBytes: Int, allowEmpty: Bool = false) async throws -> JSONBody {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: maxBytes)
        } catch {
            throw APIError.tooLarge("the request body exceeds \(maxBytes) bytes")
        }
        let bytes = Array(buffer: buffer)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            guard allowEmpty else { throw APIError.badRequest("a JSON body is required") }
            return try JSONBody(parsing: Array("{}".utf8))
        }
        return try JSONBody(parsing: bytes)
    }

    /// Pagination: `limit` (1–100, default 50) and the opaque `cursor`. 400 when either is
    /// malformed (an empty `cursor` included).
    func pagination() throws(APIError) -> (limit: Int, after: String?) {
        let query = uri.queryParameters
        var limit = 50
        if let text = query.get("limit") {
            guard text.allSatisfy(\.isASCIIDigit), let value = Int(text), (1...100).contains(value) else {
                throw APIError.badRequest("`limit` must be an integer from 1 to 100")
            }
            limit = value
        }
        var after: String?
        if let cursor = query.get("cursor") {
            guard let decoded = Cursor.decode(cursor) else { throw APIError.badRequest("invalid `cursor`") }
            after = decoded
        }
        return (limit, after)
    }

    /// An optional query filter naming a room or a peer: 400 when empty or not a valid name.
    func identifierFilter(_ name: String) throws(APIError) -> String? {
        guard let value = uri.queryParameters.get(name) else { return nil }
        guard Identifier.isValid(value) else {
            throw APIError.badRequest("`\(name)` must be 1–\(Identifier.maxLength) characters without control characters")
        }
        return value
    }

    /// An optional RFC 3339 date-time query parameter.
    func timeFilter(_ name: String) throws(APIError) -> Date? {
        guard let value = uri.queryParameters.get(name) else { return nil }
        guard let date = RFC3339.parse(value) else { throw APIError.badRequest("`\(name)` must be an RFC 3339 date-time") }
        return date
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// Strict RFC 3339 `date-time` (section 5.6), as JSON Schema's `format: date-time` reads it:
/// `T`/`t` between date and time, `Z`/`z` or a `±hh:mm` offset, optional fraction of any
/// length, a leap second `:60` (read as `:59.999…`), real calendar dates only.
enum RFC3339 {
    static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count >= 20, b.count <= 64 else { return nil }
        func digits(_ at: Int, _ count: Int) -> Int? {
            guard at + count <= b.count else { return nil }
            var value = 0
            for byte in b[at..<(at + count)] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = digits(0, 4), b[4] == UInt8(ascii: "-"), let month = digits(5, 2), b[7] == UInt8(ascii: "-"),
            let day = digits(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
            let hour = digits(11, 2), b[13] == UInt8(ascii: ":"), let minute = digits(14, 2), b[16] == UInt8(ascii: ":"),
            let second = digits(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            hour <= 23, minute <= 59, second <= 60
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < b.count, b[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[index]) {
                fraction += Double(b[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        guard index < b.count else { return nil }
        var offset = 0
        switch b[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let offsetHours = digits(index + 1, 2), index + 3 < b.count, b[index + 3] == UInt8(ascii: ":"),
                let offsetMinutes = digits(index + 4, 2), offsetHours <= 23, offsetMinutes <= 59
            else { return nil }
            offset = (offsetHours * 60 + offsetMinutes) * 60 * (b[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        default:
            return nil
        }
        guard index == b.count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offset
        if second == 60 { fraction = max(fraction, 0.999) }
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// Opaque pagination cursors: base64url of the last key of the previous page, with a prefix
/// so random strings are rejected.
enum Cursor {
    static func encode(_ key: String?) -> String? {
        key.map { Base64URL.encode(Array(("c1:" + $0).utf8)) }
    }

    static func decode(_ cursor: String) -> String? {
        guard !cursor.isEmpty, cursor.utf8.count <= 1024, let bytes = Base64URL.decode(cursor) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix("c1:") else { return nil }
        return String(text.dropFirst(3))
    }
}

/// `{"items": […], "nextCursor": …}`
struct ListResponse<Item: Encodable & Sendable>: ResponseEncodable, Sendable {
    var items: [Item]
    var nextCursor: String?

    init(_ items: [Item], next: String?) {
        self.items = items
        self.nextCursor = Cursor.encode(next)
    }

    enum CodingKeys: String, CodingKey { case items, nextCursor }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(items, forKey: .items)
        if let nextCursor {
            try container.encode(nextCursor, forKey: .nextCursor)
        } else {
            try container.encodeNil(forKey: .nextCursor)
        }
    }
}
