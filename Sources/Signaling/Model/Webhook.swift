import Crypto
import Foundation

/// A tenant's webhook (SPEC §4 `/v1/webhook`): audit events of the listed types are POSTed
/// to `url`, signed with the webhook secret.
public struct Webhook: Sendable, Equatable {
    public var tenantID: String
    public var url: String
    /// The types delivered; nil delivers every type, including ones added later.
    public var events: [AuditEventType]?
    /// AES-GCM box of the webhook secret under the master key (see ``sealingContext(tenantID:)``).
    public var sealedSecret: [UInt8]
    public var createdAt: Date
    public var updatedAt: Date

    public init(tenantID: String, url: String, events: [AuditEventType]?, sealedSecret: [UInt8], createdAt: Date, updatedAt: Date) {
        self.tenantID = tenantID
        self.url = url
        self.events = events
        self.sealedSecret = sealedSecret
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Whether an event of `type` is delivered.
    public func delivers(_ type: AuditEventType) -> Bool {
        events?.contains(type) ?? true
    }

    /// The associated data a webhook secret is sealed with, so a sealed secret cannot be
    /// moved to another tenant's row (or to an API key's).
    public static func sealingContext(tenantID: String) -> String {
        "webhook:\(tenantID)"
    }

    /// A new webhook secret: `whsec_` + 32 random bytes, base64url. The HMAC key is the whole
    /// string's UTF-8 bytes, as shown.
    public static func makeSecret() -> String {
        "whsec_" + Base64URL.random(bytes: 32)
    }

    /// Longest accepted `url`.
    public static let maxURLLength = 2048

    /// The accepted URLs (also `WebhookPut.url`'s `pattern` in `openapi.yaml`): `http` or
    /// `https`, a host name or IPv4 address (or an IPv6 one in brackets), an optional port
    /// 0–65535, then a path and query of URL characters (percent-escapes well-formed), no
    /// fragment, no user info.
    public static let urlPattern =
        "^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])"
        + "(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
        + "([/?]([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"

    private static let urlExpression = try? NSRegularExpression(pattern: urlPattern)

    /// Why a `url` is not acceptable, or nil: it must match ``urlPattern`` and be at most
    /// ``maxURLLength`` bytes.
    public static func urlProblem(_ url: String) -> String? {
        guard url.utf8.count <= maxURLLength else { return "`url` is longer than \(maxURLLength) bytes" }
        guard let expression = urlExpression,
            url.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }),
            expression.firstMatch(in: url, range: NSRange(url.startIndex..., in: url)) != nil
        else {
            return "`url` must be an absolute http:// or https:// URL with a host, an optional port, path and query (no fragment, no user info)"
        }
        return nil
    }
}

/// One pending delivery of an audit event to a webhook, as the dispatcher claims it.
public struct WebhookDelivery: Sendable, Equatable {
    public var tenantID: String
    public var eventID: String
    /// Attempts made so far (0 before the first).
    public var attempts: Int
    /// When the delivery was queued (with the event); it is given up an hour after.
    public var createdAt: Date
    public var url: String
    public var sealedSecret: [UInt8]
    /// The event; nil when it is gone from the log (its tenant or its day deleted).
    public var event: AuditEvent?

    public init(tenantID: String, eventID: String, attempts: Int, createdAt: Date, url: String, sealedSecret: [UInt8], event: AuditEvent?) {
        self.tenantID = tenantID
        self.eventID = eventID
        self.attempts = attempts
        self.createdAt = createdAt
        self.url = url
        self.sealedSecret = sealedSecret
        self.event = event
    }
}

/// The `Switchboard-Signature` header (SPEC §4):
/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
public enum WebhookSignature {
    public static let headerName = "Switchboard-Signature"

    public static func header(secret: String, timestamp: Int, body: [UInt8]) -> String {
        "t=\(timestamp),v1=\(hex(mac(secret: secret, timestamp: timestamp, body: body)))"
    }

    /// Checks a header value the way a receiver should: a `v1` that matches (compared in
    /// constant time) and a `t` within `tolerance` seconds of `now`.
    public static func verify(header: String, secret: String, body: [UInt8], now: Int, tolerance: Int = 300) -> Bool {
        var timestamp: Int?
        var signatures: [String] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            switch pair[0].trimmingCharacters(in: .whitespaces) {
            case "t": timestamp = Int(pair[1])
            case "v1": signatures.append(String(pair[1]))
            default: continue
            }
        }
        guard let timestamp else { return false }
        let (skew, overflow) = now.subtractingReportingOverflow(timestamp)
        guard !overflow, skew.magnitude <= tolerance.magnitude else { return false }
        let expected = hex(mac(secret: secret, timestamp: timestamp, body: body))
        return signatures.contains { APIKeyGenerator.constantTimeEquals($0, expected) }
    }

    private static func mac(secret: String, timestamp: Int, body: [UInt8]) -> HashedAuthenticationCode<SHA256> {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: Array(secret.utf8)))
        hmac.update(data: Array("\(timestamp).".utf8))
        hmac.update(data: body)
        return hmac.finalize()
    }

    private static let digits = Array("0123456789abcdef".utf8)

    private static func hex(_ code: HashedAuthenticationCode<SHA256>) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in code {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// The body of a webhook request: the audit event in the API's shape
/// `{id, type, tenant, time, node, room?, peer?, session?, data}`, `data` byte for byte as stored.
public enum WebhookPayload {
    public static func body(_ event: AuditEvent) -> [UInt8] {
        var writer = JSONWriter(capacity: 256 + event.data.bytes.count)
        writer.beginObject()
        event.writeFields(to: &writer)
        writer.field("data", event.data)
        writer.endObject()
        return writer.bytes
    }
}

/// When a failed delivery is tried again: exponential backoff from `initial`, doubling up
/// to `maximum`, ±20 % jitter, and given up once the next try would be later than `maxAge`
/// after the delivery was queued.
public struct WebhookRetryPolicy: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var maxAge: Duration

    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(600), maxAge: Duration = .seconds(3600)) {
        self.initial = initial
        self.maximum = maximum
        self.maxAge = maxAge
    }

    /// The delay after the `attempts`-th failed attempt (1-based), before jitter.
    public func delay(afterAttempts attempts: Int) -> Duration {
        var delay = initial
        var step = 1
        while step < attempts && delay < maximum {
            delay *= 2
            step += 1
        }
        return min(delay, maximum)
    }

    /// The next attempt's time, or nil to give up. `jitter` is in 0...1 (0.5 = none).
    public func nextAttempt(afterAttempts attempts: Int, queuedAt: Date, now: Date, jitter: Double) -> Date? {
        let base = delay(afterAttempts: attempts)
        let next = now.addingTimeInterval(base.seconds * (0.8 + 0.4 * min(max(jitter, 0), 1)))
        let deadline = queuedAt.addingTimeInterval(maxAge.seconds)
        return next <= deadline ? next : nil
    }
}
