import Foundation
import Hummingbird
import Signaling

/// `PUT|GET|DELETE /v1/webhook` (SPEC §4): the tenant's one webhook. PUT creates or replaces
/// it and returns a new `webhookSecret`, shown only then; deliveries are made by
/// ``WebhookDispatcher``.
struct WebhookRoutes {
    let node: Node

    func register(on group: RouterGroup<APIContext>) {
        group.put("webhook", use: put)
        group.get("webhook", use: get)
        group.delete("webhook", use: delete)
    }

    struct WebhookView: ResponseEncodable {
        var url: String
        /// Absent: every event type.
        var events: [String]?
        /// Only in PUT's answer.
        var webhookSecret: String?
        var createdAt: String
        var updatedAt: String
    }

    @Sendable func put(_ request: Request, context: APIContext) async throws -> EditedResponse<WebhookView> {
        let tenant = try context.requireTenant()
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes)
        guard let url = try body.string("url") else { throw body.missing("url") }
        if let problem = Webhook.urlProblem(url) { throw APIError.invalid(problem) }
        var events: [AuditEventType]?
        if let names = try body.strings("events") {
            guard !names.isEmpty else { throw APIError.invalid("`events` must list at least one type; leave it out for every type") }
            var types: [AuditEventType] = []
            for name in names {
                guard let type = AuditEventType(rawValue: name) else {
                    throw APIError.invalid("unknown event type `\(name)` in `events`")
                }
                if !types.contains(type) { types.append(type) }
            }
            events = types
        }
        let existing: Webhook?
        do {
            existing = try await node.store.webhook(tenantID: tenant.id)
        } catch {
            throw APIError(error, what: "webhook")
        }
        let now = node.clock.now()
        let secret = Webhook.makeSecret()
        let webhook = Webhook(
            tenantID: tenant.id, url: url, events: events,
            sealedSecret: try node.directory.seal(secret, context: Webhook.sealingContext(tenantID: tenant.id)),
            createdAt: existing?.createdAt ?? now, updatedAt: now)
        do {
            try await node.store.putWebhook(webhook)
        } catch {
            throw APIError(error, what: "webhook")
        }
        return EditedResponse(status: existing == nil ? .created : .ok, response: Self.view(webhook, secret: secret))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> WebhookView {
        let tenant = try context.requireTenant()
        do {
            guard let webhook = try await node.store.webhook(tenantID: tenant.id) else { throw Self.notFound }
            return Self.view(webhook, secret: nil)
        } catch let error as StoreError {
            throw APIError(error, what: "webhook")
        }
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        let tenant = try context.requireTenant()
        do {
            try await node.store.deleteWebhook(tenantID: tenant.id)
        } catch {
            throw APIError(error, what: "webhook")
        }
        return Response(status: .noContent)
    }

    static let notFound = APIError.notFound("no webhook is set")

    static func view(_ webhook: Webhook, secret: String?) -> WebhookView {
        WebhookView(
            url: webhook.url, events: webhook.events?.map(\.rawValue), webhookSecret: secret,
            createdAt: Timestamp.format(webhook.createdAt), updatedAt: Timestamp.format(webhook.updatedAt))
    }
}
