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

/// Turns every error a route throws — ours, Hummingbird's, decoding errors — into the SPEC's
/// error body, so no response leaves without it.
struct ErrorBodyMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return Self.response(error)
        } catch let error as HTTPError {
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
        } catch is DecodingError {
            return Self.response(.badRequest("the body is not valid JSON of the expected shape"))
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
