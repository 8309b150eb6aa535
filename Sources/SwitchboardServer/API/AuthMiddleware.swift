import Foundation
import Hummingbird
import Signaling

/// Operator routes: `Authorization: Bearer <admin token>`.
struct OperatorAuthMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let adminToken: String

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer "),
            APIKeyGenerator.constantTimeEquals(String(header.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces), adminToken)
        else {
            throw APIError.unauthorized("an operator bearer token is required")
        }
        return try await next(request, context)
    }
}

/// Tenant routes: `Authorization: Basic base64(apiKey:apiSecret)`.
struct TenantAuthMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let node: Node

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("basic "),
            let decoded = Data(base64Encoded: String(header.dropFirst("basic ".count)).trimmingCharacters(in: .whitespaces)),
            let pair = String(data: decoded, encoding: .utf8), let colon = pair.firstIndex(of: ":")
        else {
            throw APIError.unauthorized("API key credentials (HTTP Basic) are required")
        }
        let apiKey = String(pair[..<colon])
        let secret = String(pair[pair.index(after: colon)...])
        let key: ResolvedKey?
        do {
            key = try await node.directory.key(apiKey)
        } catch {
            throw APIError(error, what: "key")
        }
        guard let key, APIKeyGenerator.constantTimeEquals(secret, key.secret) else {
            node.metrics.authRejected(.badSignature)
            throw APIError.unauthorized("invalid API key or secret")
        }
        let tenant: Tenant?
        do {
            tenant = try await node.directory.tenant(key.tenantID)
        } catch {
            throw APIError(error, what: "tenant")
        }
        guard let tenant else { throw APIError.unauthorized("invalid API key or secret") }
        guard tenant.status == .active else { throw APIError.forbidden("the tenant is suspended") }
        var context = context
        context.tenant = tenant
        context.key = key
        return try await next(request, context)
    }
}
