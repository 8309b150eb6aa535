import Foundation
import Hummingbird
import NIOCore
import Signaling

/// The request context of the REST API: who the caller turned out to be.
struct APIContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// Set by ``TenantAuthMiddleware``.
    var tenant: Tenant?
    var apiKey: String?

    init(source: Source) {
        coreContext = .init(source: source)
    }

    var maxUploadSize: Int { 1 << 20 }

    /// The authenticated tenant (routes behind ``TenantAuthMiddleware`` only).
    func requireTenant() throws -> Tenant {
        guard let tenant else { throw APIError.unauthorized() }
        return tenant
    }
}

/// Request body and query helpers shared by the routes.
extension Request {
    /// Decodes a JSON body: 413 past `maxBytes`, 400 when it is not JSON of the right shape.
    func decodeJSON<T: Decodable>(_ type: T.Type, maxBytes: Int = 1 << 20, allowEmpty: Bool = false) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: maxBytes)
        } catch {
            throw APIError.tooLarge("the request body exceeds \(maxBytes) bytes")
        }
        var bytes = Array(buffer: buffer)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            guard allowEmpty else { throw APIError.badRequest("a JSON body is required") }
            bytes = Array("{}".utf8)
        }
        do {
            _ = try RawJSON(validating: bytes)
        } catch {
            throw APIError.badRequest("the body is not valid JSON: \(error.message) at byte \(error.offset)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw APIError.badRequest(Self.describe(error))
        } catch let error as APIError {
            throw error
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "`\(path(context.codingPath + [key]))` is required"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "`\(path(context.codingPath))` has the wrong type"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "the body must be a JSON object" : "`\(path(context.codingPath))` is invalid"
        @unknown default:
            return "the body does not have the expected shape"
        }
    }

    /// Pagination: `limit` (1–100, default 50) and the opaque `cursor`.
    func pagination() throws -> (limit: Int, after: String?) {
        let query = uri.queryParameters
        var limit = 50
        if let text = query.get("limit") {
            guard let value = Int(text), (1...100).contains(value) else {
                throw APIError.badRequest("`limit` must be an integer from 1 to 100")
            }
            limit = value
        }
        var after: String?
        if let cursor = query.get("cursor"), !cursor.isEmpty {
            guard let decoded = Cursor.decode(cursor) else { throw APIError.badRequest("invalid `cursor`") }
            after = decoded
        }
        return (limit, after)
    }
}

/// Opaque pagination cursors: base64url of the last key of the previous page, with a prefix
/// so random strings are rejected.
enum Cursor {
    static func encode(_ key: String?) -> String? {
        key.map { Base64URL.encode(Array(("c1:" + $0).utf8)) }
    }

    static func decode(_ cursor: String) -> String? {
        guard cursor.utf8.count <= 1024, let bytes = Base64URL.decode(cursor) else { return nil }
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
