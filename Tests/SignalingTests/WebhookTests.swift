import Foundation
import Signaling
import Testing

@Suite("Webhooks: signature, payload, retry policy")
struct WebhookTests {
    @Test func signatureMatchesAnHMACComputedElsewhere() {
        // python3: hmac.new(b'whsec_test', b'1700000000.{"id":"E1"}', hashlib.sha256).hexdigest()
        let header = WebhookSignature.header(secret: "whsec_test", timestamp: 1_700_000_000, body: Array(#"{"id":"E1"}"#.utf8))
        #expect(header == "t=1700000000,v1=c96ce1d2b284d9e9f0bf9e42600c43f321d2972f2e5fe9b69676eb72e6b53042")
    }

    @Test func verificationRejectsTamperingWrongSecretsAndOldTimestamps() {
        let body = Array(#"{"id":"E1","type":"room.created"}"#.utf8)
        let header = WebhookSignature.header(secret: "whsec_a", timestamp: 1000, body: body)
        #expect(WebhookSignature.verify(header: header, secret: "whsec_a", body: body, now: 1000))
        #expect(WebhookSignature.verify(header: header, secret: "whsec_a", body: body, now: 1300))
        #expect(!WebhookSignature.verify(header: header, secret: "whsec_a", body: body, now: 1301))
        #expect(!WebhookSignature.verify(header: header, secret: "whsec_b", body: body, now: 1000))
        #expect(!WebhookSignature.verify(header: header, secret: "whsec_a", body: body + [0x20], now: 1000))
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replacingOccurrences(of: "t=1000", with: "t=1001")
        #expect(!WebhookSignature.verify(header: moved, secret: "whsec_a", body: body, now: 1000))
        #expect(!WebhookSignature.verify(header: "garbage", secret: "whsec_a", body: body, now: 1000))
        #expect(!WebhookSignature.verify(header: "", secret: "whsec_a", body: body, now: 1000))
        // A forged extreme timestamp is refused, not a crash.
        #expect(!WebhookSignature.verify(header: "t=-9223372036854775808,v1=00", secret: "whsec_a", body: body, now: 1000))
        #expect(!WebhookSignature.verify(header: "t=9223372036854775807,v1=00", secret: "whsec_a", body: body, now: -1000))
    }

    @Test func payloadIsTheAuditEventInTheAPIShapeWithDataVerbatim() throws {
        let event = AuditEvent(
            id: "01J0000000000000000000000A", type: .sessionEnded, tenantID: "acme",
            time: Date(timeIntervalSince1970: 1_700_000_000.25), node: "n1", room: "r\"1", peer: "alice", session: nil,
            data: try RawJSON(validating: #"{"big":12345678901234567890,"z":1,"a":2}"#))
        let body = String(decoding: WebhookPayload.body(event), as: UTF8.self)
        #expect(body == #"{"id":"01J0000000000000000000000A","type":"session.ended","tenant":"acme","time":"2023-11-14T22:13:20.250Z","node":"n1","room":"r\"1","peer":"alice","data":{"big":12345678901234567890,"z":1,"a":2}}"#)
        #expect((try? RawJSON(validating: body)) != nil)
    }

    @Test func retryDelaysDoubleUpToTheMaximumAndStopAfterMaxAge() {
        let policy = WebhookRetryPolicy(initial: .seconds(1), maximum: .seconds(600), maxAge: .seconds(3600))
        #expect(policy.delay(afterAttempts: 1) == .seconds(1))
        #expect(policy.delay(afterAttempts: 2) == .seconds(2))
        #expect(policy.delay(afterAttempts: 5) == .seconds(16))
        #expect(policy.delay(afterAttempts: 10) == .seconds(512))
        #expect(policy.delay(afterAttempts: 11) == .seconds(600))
        #expect(policy.delay(afterAttempts: 1000) == .seconds(600))
        let queued = Date(timeIntervalSince1970: 0)
        // Jitter spans ±20 %.
        #expect(policy.nextAttempt(afterAttempts: 3, queuedAt: queued, now: queued, jitter: 0) == Date(timeIntervalSince1970: 3.2))
        #expect(policy.nextAttempt(afterAttempts: 3, queuedAt: queued, now: queued, jitter: 1) == Date(timeIntervalSince1970: 4.8))
        #expect(policy.nextAttempt(afterAttempts: 3, queuedAt: queued, now: queued, jitter: 0.5) == Date(timeIntervalSince1970: 4))
        // Nothing later than an hour after the event: given up.
        let late = Date(timeIntervalSince1970: 3500)
        #expect(policy.nextAttempt(afterAttempts: 12, queuedAt: queued, now: late, jitter: 0.5) == nil)
        #expect(policy.nextAttempt(afterAttempts: 1, queuedAt: queued, now: late, jitter: 0.5) == Date(timeIntervalSince1970: 3501))
        // Over an hour, attempts keep coming: about fifteen of them.
        var now = queued
        var attempts = 0
        while let next = policy.nextAttempt(afterAttempts: attempts + 1, queuedAt: queued, now: now, jitter: 0.5) {
            attempts += 1
            now = next
        }
        #expect((14...17).contains(attempts))
    }

    @Test func urlsMustBeAbsoluteHTTPWithAHost() {
        #expect(Webhook.urlProblem("https://hooks.example.com/x?y=1") == nil)
        #expect(Webhook.urlProblem("http://127.0.0.1:8080/hook") == nil)
        #expect(Webhook.urlProblem("HTTPS://EXAMPLE.COM") == nil)
        #expect(Webhook.urlProblem("http://[::1]:65535/a%20b?c=d&e") == nil)
        for bad in ["", "hooks.example.com", "/relative", "ftp://example.com", "http://", "http:///path", "https://example.com/#frag",
                    "javascript:alert(1)", "https://" + String(repeating: "a", count: 2050), "http://a:65536/", "http://user:pw@host/",
                    "http://a/b c", "http://a/%zz", "http://a/\n", "http://ä.example/"] {
            #expect(Webhook.urlProblem(bad) != nil, "\(bad)")
        }
    }

    @Test func secretsAreFreshAndShaped() {
        let a = Webhook.makeSecret()
        let b = Webhook.makeSecret()
        #expect(a != b)
        #expect(a.hasPrefix("whsec_") && a.count == 6 + 43)
    }

    @Test func typeFilter() {
        let some = Webhook(tenantID: "t", url: "http://x", events: [.roomCreated], sealedSecret: [], createdAt: Date(), updatedAt: Date())
        #expect(some.delivers(.roomCreated) && !some.delivers(.sessionStarted))
        let all = Webhook(tenantID: "t", url: "http://x", events: nil, sealedSecret: [], createdAt: Date(), updatedAt: Date())
        #expect(AuditEventType.allCases.allSatisfy(all.delivers))
    }
}
