import Foundation
import Signaling
import SwitchboardServer
import Testing

/// Webhooks end to end: a node, its outbox and a real HTTP receiver that fails, times out
/// and recovers. Retries are fast here (100 ms doubling); the schedule itself is unit-tested.
enum WebhookScenarios {
    static func fast(_ configuration: inout ServerConfiguration) {
        // 2 s: a loaded CI machine must not time out the attempts that are meant to succeed.
        configuration.webhooks.timeout = .seconds(2)
        configuration.webhooks.retry = WebhookRetryPolicy(initial: .milliseconds(100), maximum: .milliseconds(400), maxAge: .seconds(30))
        configuration.webhooks.pollInterval = .milliseconds(50)
    }

    /// PUTs a webhook; returns its secret.
    static func setWebhook(_ node: TestNode, _ tenant: TestTenant, url: String, events: [String]? = nil) async throws -> String {
        let eventsJSON = events.map { ",\"events\":[" + $0.map { "\"\($0)\"" }.joined(separator: ",") + "]" } ?? ""
        let result = try await node.request(.put, "/v1/webhook", auth: .tenant(tenant), body: #"{"url":"\#(url)"\#(eventsJSON)}"#)
        try #require(result.status == 201, "PUT /v1/webhook: \(result.status) \(result.text)")
        guard case .string(let secret)? = try result.json()["webhookSecret"] else { throw TestFailure("no secret in \(result.text)") }
        return secret
    }

    static func metric(_ node: TestNode, _ series: String) async throws -> Double {
        let text = try await node.metrics()
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    /// Waits until a metric reaches `value`.
    static func waitForMetric(_ node: TestNode, _ series: String, atLeast value: Double, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await metric(node, series) < value {
            guard ContinuousClock.now < deadline else {
                throw TestFailure("\(series) stayed below \(value): \(try await metric(node, series))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static let delivered = #"switchboard_webhook_deliveries_total{result="delivered"}"#
    static let failed = #"switchboard_webhook_deliveries_total{result="failed"}"#
    static let expired = #"switchboard_webhook_deliveries_total{result="expired"}"#

    /// Events of the chosen types arrive signed, in the API's shape, and nothing else does.
    static func deliversSignedEventsOfTheChosenTypes(_ configure: @escaping @Sendable (inout ServerConfiguration) -> Void) async throws {
        let receiver = WebhookReceiver()
        try await receiver.serve { url, _ in
            try await TestNode.with({ fast(&$0); configure(&$0) }) { node in
                let tenant = try await node.createTenant()
                let other = try await node.createTenant(#"{"name":"Other"}"#)
                let secret = try await setWebhook(node, tenant, url: url, events: ["room.created", "session.started"])
                #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"lobby"}"#).status == 201)
                // Another tenant's events never reach this webhook.
                #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(other), body: #"{"name":"lobby"}"#).status == 201)
                let alice = try await node.join(tenant, room: "lobby", peer: "alice")
                await alice.stop()  // session.ended: not a chosen type

                let received = try await receiver.waitFor(2)
                try await Task.sleep(for: .milliseconds(500))
                #expect(receiver.received.count == 2)
                let now = Int(Date().timeIntervalSince1970)
                var types: Set<String> = []
                for request in received {
                    let signature = try #require(request.header("Switchboard-Signature"))
                    #expect(WebhookSignature.verify(header: signature, secret: secret, body: request.body, now: now))
                    #expect(!WebhookSignature.verify(header: signature, secret: "whsec_wrong", body: request.body, now: now))
                    #expect(request.header("Content-Type") == "application/json")
                    #expect(request.header("Switchboard-Delivery-Attempt") == "1")
                    let body = try JSONDecoder().decode([String: JSONValue].self, from: Data(request.body))
                    guard case .string(let id)? = body["id"], case .string(let type)? = body["type"] else {
                        throw TestFailure("bad body \(String(decoding: request.body, as: UTF8.self))")
                    }
                    #expect(request.header("Switchboard-Event-Id") == id)
                    #expect(request.header("Switchboard-Event-Type") == type)
                    #expect(body["tenant"] == .string(tenant.id))
                    types.insert(type)
                    // The body is the audit log's event, as GET /v1/events shows it.
                    let listed = try await node.request(.get, "/v1/events?type=\(type)", auth: .tenant(tenant)).json()
                    guard case .array(let items)? = listed["items"] else { throw TestFailure("no items") }
                    #expect(items.contains(.object(body)))
                }
                #expect(types == ["room.created", "session.started"])
                try await waitForMetric(node, delivered, atLeast: 2)
                #expect(try await node.node.store.pendingDeliveryCount() == 0)
            }
        }
    }

    /// 500, 500, a timeout, then 200: the same event four times, attempts counted, then done.
    static func retriesUntilTheReceiverRecovers(_ configure: @escaping @Sendable (inout ServerConfiguration) -> Void) async throws {
        let receiver = WebhookReceiver()
        receiver.script([.status(500), .status(503), .hang(.seconds(3)), .status(204)])
        try await receiver.serve { url, _ in
            try await TestNode.with({ fast(&$0); configure(&$0) }) { node in
                let tenant = try await node.createTenant()
                _ = try await setWebhook(node, tenant, url: url, events: ["room.created"])
                #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"lobby"}"#).status == 201)
                try await waitForMetric(node, delivered, atLeast: 1)
                let received = receiver.received
                #expect(received.count == 4)
                #expect(Set(received.compactMap { $0.header("Switchboard-Event-Id") }).count == 1)
                #expect(received.map { $0.header("Switchboard-Delivery-Attempt") } == ["1", "2", "3", "4"])
                #expect(try await metric(node, failed) == 3)
                #expect(try await node.node.store.pendingDeliveryCount() == 0)
                try await Task.sleep(for: .milliseconds(300))
                #expect(receiver.received.count == 4)
            }
        }
    }
}

@Suite("Webhook delivery (SQLite)", .serialized, .timeLimit(.minutes(1)))
struct WebhookDeliveryTests {
    @Test func deliversSignedEventsOfTheChosenTypes() async throws {
        try await WebhookScenarios.deliversSignedEventsOfTheChosenTypes { _ in }
    }

    @Test func retriesThroughFailuresAndTimeoutsUntilTheReceiverRecovers() async throws {
        try await WebhookScenarios.retriesUntilTheReceiverRecovers { _ in }
    }

    @Test func pendingDeliveriesSurviveARestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-webhook-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let shared: @Sendable (inout ServerConfiguration) -> Void = {
            WebhookScenarios.fast(&$0)
            $0.sqlitePath = directory.appendingPathComponent("switchboard.sqlite").path
            $0.masterKeyFile = directory.appendingPathComponent("switchboard.key").path
        }
        let receiver = WebhookReceiver()
        receiver.script([], otherwise: .status(500))
        try await receiver.serve { url, _ in
            let (tenant, secret) = try await TestNode.with(shared) { node in
                let tenant = try await node.createTenant()
                let secret = try await WebhookScenarios.setWebhook(node, tenant, url: url, events: ["room.created"])
                #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"lobby"}"#).status == 201)
                _ = try await receiver.waitFor(1)
                return (tenant, secret)
            }
            let failures = receiver.received.count
            // The node is gone; the delivery waits in the outbox of the database file.
            receiver.script([], otherwise: .status(200))
            try await TestNode.with(shared) { node in
                try await WebhookScenarios.waitForMetric(node, WebhookScenarios.delivered, atLeast: 1)
                let last = try #require(receiver.received.last)
                #expect(last.header("Switchboard-Delivery-Attempt") == "\(failures + 1)")
                #expect(Set(receiver.received.compactMap { $0.header("Switchboard-Event-Id") }).count == 1)
                let signature = try #require(last.header("Switchboard-Signature"))
                #expect(WebhookSignature.verify(header: signature, secret: secret, body: last.body, now: Int(Date().timeIntervalSince1970)))
                #expect(try await node.node.store.pendingDeliveryCount() == 0)
                _ = tenant
            }
        }
    }

    @Test func aReceiverTricklingItsBodyTimesOut() async throws {
        let receiver = WebhookReceiver()
        receiver.script([.trickle(.seconds(8))])
        try await receiver.serve { url, _ in
            try await TestNode.with({ WebhookScenarios.fast(&$0) }) { node in
                let tenant = try await node.createTenant()
                _ = try await WebhookScenarios.setWebhook(node, tenant, url: url, events: ["room.created"])
                let started = ContinuousClock.now
                #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"lobby"}"#).status == 201)
                try await WebhookScenarios.waitForMetric(node, WebhookScenarios.delivered, atLeast: 1)
                // The 2 s timeout ended the trickle; the retry succeeded long before it would have ended.
                #expect(ContinuousClock.now - started < .seconds(6))
                #expect(try await WebhookScenarios.metric(node, WebhookScenarios.failed) == 1)
                #expect(receiver.received.map { $0.header("Switchboard-Delivery-Attempt") } == ["1", "2"])
            }
        }
    }

    @Test func givesUpAnHourAfterTheEvent() async throws {
        let receiver = WebhookReceiver()
        receiver.script([], otherwise: .status(500))
        try await receiver.serve { url, _ in
            try await TestNode.with({
                WebhookScenarios.fast(&$0)
                $0.webhooks.retry.maxAge = .seconds(1)  // "an hour", shortened
            }) { node in
                let tenant = try await node.createTenant()
                _ = try await WebhookScenarios.setWebhook(node, tenant, url: url, events: ["room.created"])
                #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"lobby"}"#).status == 201)
                try await WebhookScenarios.waitForMetric(node, WebhookScenarios.expired, atLeast: 1)
                #expect(try await node.node.store.pendingDeliveryCount() == 0)
                let attempts = receiver.received.count
                #expect(attempts >= 3)
                try await Task.sleep(for: .milliseconds(500))
                #expect(receiver.received.count == attempts)
            }
        }
    }

    @Test func aReceiverThatIsNotListeningIsRetried() async throws {
        // Find a free port, then leave it closed: connection refused.
        let receiver = WebhookReceiver()
        let closedPort = try await receiver.serve { _, port in port }
        try await TestNode.with({ WebhookScenarios.fast(&$0) }) { node in
            let tenant = try await node.createTenant()
            _ = try await WebhookScenarios.setWebhook(node, tenant, url: "http://127.0.0.1:\(closedPort)/hook", events: ["room.created"])
            #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"lobby"}"#).status == 201)
            try await WebhookScenarios.waitForMetric(node, WebhookScenarios.failed, atLeast: 2)
            #expect(try await node.node.store.pendingDeliveryCount() == 1)
            // Now something listens there.
            try await receiver.serve(port: closedPort) { _, _ in
                try await WebhookScenarios.waitForMetric(node, WebhookScenarios.delivered, atLeast: 1)
            }
            #expect(try await node.node.store.pendingDeliveryCount() == 0)
        }
    }

    @Test func theWebhookResource() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let auth = TestNode.Auth.tenant(tenant)
            #expect(try await node.request(.get, "/v1/webhook", auth: auth).errorCode == "not_found")
            #expect(try await node.request(.delete, "/v1/webhook", auth: auth).status == 404)
            #expect(try await node.request(.get, "/v1/webhook").status == 401)
            for (body, status) in [
                ("", 400), ("[]", 422), (#"{}"#, 422), (#"{"url":null}"#, 422), (#"{"url":5}"#, 422), (#"{"url":"ftp://x"}"#, 422),
                (#"{"url":"hooks.example.com"}"#, 422), (#"{"url":"https://x.example","events":[]}"#, 422),
                (#"{"url":"https://x.example","events":["nope"]}"#, 422), (#"{"url":"https://x.example","events":"room.created"}"#, 422),
            ] {
                let result = try await node.request(.put, "/v1/webhook", auth: auth, body: body)
                #expect(result.status == status, "\(body): \(result.status) \(result.text)")
            }
            let created = try await node.request(.put, "/v1/webhook", auth: auth, body: #"{"url":"https://x.example/h","events":["room.created","room.created"]}"#)
            #expect(created.status == 201)
            let first = try created.json()
            guard case .string(let secret1)? = first["webhookSecret"] else { throw TestFailure(created.text) }
            #expect(secret1.hasPrefix("whsec_"))
            #expect(first["events"] == .array([.string("room.created")]))
            let shown = try await node.request(.get, "/v1/webhook", auth: auth)
            #expect(shown.status == 200 && !shown.text.contains("whsec_") && shown.text.contains("https://x.example/h"))
            // Replacing: 200, a new secret, every type when `events` is left out.
            let replaced = try await node.request(.put, "/v1/webhook", auth: auth, body: #"{"url":"https://y.example/h","events":null}"#)
            #expect(replaced.status == 200)
            let second = try replaced.json()
            #expect(second["webhookSecret"] != first["webhookSecret"] && second["events"] == nil && second["createdAt"] == first["createdAt"])
            #expect(try await node.request(.delete, "/v1/webhook", auth: auth).status == 204)
            #expect(try await node.request(.get, "/v1/webhook", auth: auth).status == 404)
            let wrongMethod = try await node.request(.post, "/v1/webhook", auth: auth, body: "{}")
            #expect(wrongMethod.status == 405 && wrongMethod.headers[.allow] == "GET, PUT, DELETE")
        }
    }
}

@Suite("Webhook delivery (PostgreSQL)", .serialized, .timeLimit(.minutes(1)), .enabled(if: PostgresTestDatabase.isConfigured))
struct PostgresWebhookDeliveryTests {
    @Test func deliversSignedEventsOfTheChosenTypes() async throws {
        try await PostgresTestDatabase.with { _, url in
            try await WebhookScenarios.deliversSignedEventsOfTheChosenTypes {
                $0.usePostgres(url, migrate: false)
            }
        }
    }

    @Test func retriesThroughFailuresAndTimeoutsUntilTheReceiverRecovers() async throws {
        try await PostgresTestDatabase.with { _, url in
            try await WebhookScenarios.retriesUntilTheReceiverRecovers {
                $0.usePostgres(url, migrate: false)
            }
        }
    }
}
