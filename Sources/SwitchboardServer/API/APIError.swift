import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Signaling

/// A REST error: `{"error":{"code":"…","message":"…"}}` with its status (SPEC §4). The
/// message is safe to show; it never carries secrets or internals.
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Self.response(status: status, code: code, message: message)
    }

    static func response(status: HTTPResponse.Status, code: String, message: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if status == .unauthorized {
            headers[.wwwAuthenticate] = "Bearer, Basic realm=\"switchboard\""
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: body(code: code, message: message)))
    }

    static func body(code: String, message: String) -> ByteBuffer {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("error")
        writer.beginObject()
        writer.field("code", code)
        writer.field("message", message)
        writer.endObject()
        writer.endObject()
        return ByteBuffer(bytes: writer.bytes)
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad_request", message) }
    static func unauthorized(_ message: String = "missing or invalid credentials") -> APIError { APIError(.unauthorized, "unauthorized", message) }
    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, "forbidden", message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, "not_found", message) }
    static func conflict(_ message: String) -> APIError { APIError(.conflict, "conflict", message) }
    static func tooLarge(_ message: String) -> APIError { APIError(.contentTooLarge, "too_large", message) }
    static func invalid(_ message: String) -> APIError { APIError(.unprocessableContent, "validation_failed", message) }
    static func unavailable(_ message: String) -> APIError { APIError(.serviceUnavailable, "unavailable", message) }

    init(_ error: StoreError, what: String) {
        switch error.code {
        case .conflict: self = .conflict("\(what) already exists")
        case .notFound: self = .notFound("\(what) not found")
        case .unavailable: self = .unavailable("the database is unavailable; try again")
        }
    }

    init(_ failure: AuthFailure) {
        let status = HTTPResponse.Status(code: failure.httpStatus)
        let code: String = switch failure.httpStatus {
        case 401: "unauthorized"
        case 403: "forbidden"
        case 404: "not_found"
        case 429: "rate_limited"
        default: "unavailable"
        }
        self.init(status, code, failure.message)
    }
}

/// Turns every error a route throws — ours, Hummingbird's — into the SPEC's error body, so
/// no response leaves without it. A path the API knows with a method it does not support is
/// `405` with `Allow` (the router itself only knows "no route": 404).
struct ErrorBodyMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return Self.response(error)
        } catch let error as HTTPError {
            if error.status == .notFound, let allowed = APIRoutes.allowedMethods(path: request.uri.path) {
                var response = APIError.response(
                    status: .methodNotAllowed, code: "method_not_allowed",
                    message: "\(request.method.rawValue) is not supported here; use \(allowed.joined(separator: ", "))")
                response.headers[.allow] = allowed.joined(separator: ", ")
                return response
            }
            let code: String = switch error.status.code {
            case 400: "bad_request"
            case 401: "unauthorized"
            case 404: "not_found"
            case 405: "method_not_allowed"
            case 413: "too_large"
            default: error.status.code >= 500 ? "internal" : "bad_request"
            }
            let message = error.status == .notFound ? "no such endpoint" : (error.body ?? error.status.reasonPhrase)
            return APIError.response(status: error.status, code: code, message: message)
        } catch let error as any HTTPResponseError {
            return APIError.response(status: error.status, code: error.status.code == 413 ? "too_large" : "bad_request", message: error.status.reasonPhrase)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)"])
            return APIError.response(status: .internalServerError, code: "internal", message: "internal error")
        }
    }

    static func response(_ error: APIError) -> Response {
        APIError.response(status: error.status, code: error.code, message: error.message)
    }
}

/// The public port's paths and their methods, as `openapi.yaml` declares them: the source
/// of the `405` answers and their `Allow` header.
enum APIRoutes {
    /// `*` matches any one non-empty segment.
    static let table: [(segments: [String], methods: [String])] = [
        (["v1", "tenants"], ["GET", "POST"]),
        (["v1", "tenants", "*"], ["GET", "PATCH", "DELETE"]),
        (["v1", "tenants", "*", "keys"], ["GET", "POST"]),
        (["v1", "tenants", "*", "keys", "*"], ["DELETE"]),
        (["v1", "rooms"], ["GET", "POST"]),
        (["v1", "rooms", "*"], ["GET", "PATCH", "DELETE"]),
        (["v1", "rooms", "*", "peers"], ["GET"]),
        (["v1", "rooms", "*", "peers", "*"], ["DELETE"]),
        (["v1", "rooms", "*", "messages"], ["POST"]),
        (["v1", "rooms", "*", "events"], ["GET"]),
        (["v1", "events"], ["GET"]),
        (["v1", "tokens"], ["POST"]),
        (["v1", "turn", "credentials"], ["POST"]),
        (["v1", "webhook"], ["GET", "PUT", "DELETE"]),
        (["v1", "signal"], ["GET"]),
        (["v1", "openapi.yaml"], ["GET"]),
    ]

    /// The methods of a known path, nil for an unknown one. Segments are compared the way
    /// the router does: empty ones (a trailing or doubled `/`) are ignored.
    static func allowedMethods(path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        for entry in table where entry.segments.count == segments.count {
            if zip(entry.segments, segments).allSatisfy({ $0 == "*" || $0 == $1 }) { return entry.methods }
        }
        return nil
    }
}

/// Ends the connection after each REST response (`Connection: close`). A node takes a
/// WebSocket upgrade only as a connection's first request, and load balancers keep pools of
/// connections to their upstreams (ingress-nginx does by default): an upgrade sent down a
/// pooled connection that already carried a REST call would get 426. Closing after REST
/// calls keeps such connections out of the pool; the REST API is not a hot path.
struct CloseAfterResponseMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.connection] = "close"
        return response
    }
}
