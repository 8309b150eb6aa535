import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Signaling

/// How webhook deliveries are made and retried (SPEC §4 `/v1/webhook`).
public struct WebhookSettings: Sendable {
    /// Longest one request may take, connecting included.
    public var timeout: Duration = .seconds(10)
    /// Backoff between attempts, and how long after an event its delivery is given up (1 h).
    public var retry = WebhookRetryPolicy()
    /// Deliveries claimed at a time (also the most in flight on a node).
    public var batchSize = 64
    /// Most requests in flight to one tenant's webhook.
    public var perTenantConcurrency = 8
    /// How often the outbox is checked for due deliveries (events this node writes wake it
    /// at once; deliveries queued by other nodes and retries are found by this poll).
    public var pollInterval: Duration = .seconds(1)
    /// How long a claimed delivery is withheld from other nodes (a node that dies
    /// mid-delivery delays it by this much).
    public var lease: Duration = .seconds(300)

    public init() {}
}

/// Delivers the webhook outbox (SPEC §4): claims due deliveries from the store (any node may;
/// the store hands each to one), POSTs each event signed with `Switchboard-Signature`,
/// removes it on a 2xx, and otherwise schedules it again with exponential backoff until an
/// hour after the event, then gives it up. At least once: a receiver de-duplicates on the
/// event id (`Switchboard-Event-Id`, also the body's `id`).
///
/// Deliveries of one tenant go out up to ``WebhookSettings/perTenantConcurrency`` at a time;
/// when one fails, the rest of that tenant's batch waits for the same retry time instead of
/// hammering a receiver that is down. Order is not guaranteed.
struct WebhookDispatcher: Service {
    let store: any Store
    let directory: Directory
    let settings: WebhookSettings
    let metrics: SwitchboardMetrics
    let doorbell: Doorbell
    let clock: any WallClock
    let logger: Logger
    /// Opens when the store is ready (PostgreSQL: migrated).
    var storeReady: StartupGate?

    static let userAgent = "Switchboard-Webhooks/1"

    /// The lease: at least the setting, and long enough for a whole tenant's share of a
    /// batch at the request timeout, so no other node claims a row still waiting here.
    var lease: Duration {
        let rounds = (settings.batchSize + settings.perTenantConcurrency - 1) / max(settings.perTenantConcurrency, 1)
        return max(settings.lease, settings.timeout * (rounds + 1) + .seconds(60))
    }
    /// Most of a response body read (and ignored); a longer one is cut off.
    static let maxResponseBytes = 64 * 1024

    func run() async throws {
        if let storeReady {
            await cancelWhenGracefulShutdown { await storeReady.wait() }
            guard storeReady.isOpen else { return }
        }
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        let timeout = TimeAmount.nanoseconds(Int64(settings.timeout.nanoseconds))
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: timeout, read: timeout)
        // Tenants often share a receiver's host (a SaaS's webhook endpoint): allow a whole
        // batch at once rather than AsyncHTTPClient's default of 8 connections per host.
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: settings.batchSize)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration, backgroundActivityLogger: logger)
        await loop(client: client)
        try? await client.shutdown()
    }

    private func loop(client: HTTPClient) async {
        var lastCount = ContinuousClock.now - .seconds(60)
        var lastSweep = ContinuousClock.now - .seconds(60)
        var backoff = Duration.zero
        // Tenants whose webhook just failed, until their retry time: their deliveries are not
        // claimed meanwhile (this node's view; another node learns on its own first failure).
        var paused: [String: Date] = [:]
        while !Task.isCancelledOrShuttingDown {
            if ContinuousClock.now - lastSweep >= .seconds(60) {
                lastSweep = .now
                await sweep()
            }
            if ContinuousClock.now - lastCount >= .seconds(15) {
                lastCount = .now
                if let pending = try? await store.pendingDeliveryCount() { metrics.webhookPending.record(pending) }
            }
            let now = clock.now()
            paused = paused.filter { $0.value > now }
            let claimed: [WebhookDelivery]
            do {
                claimed = try await store.claimDeliveries(
                    now: now, leaseUntil: now.addingTimeInterval(lease.seconds), limit: settings.batchSize,
                    excluding: Array(paused.keys))
                backoff = .zero
            } catch {
                logger.warning("webhook outbox unavailable", metadata: ["error": "\(error.message)"])
                backoff = min(max(backoff * 2, .seconds(1)), .seconds(30))
                let delay = backoff
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                continue
            }
            if claimed.isEmpty {
                // The doorbell's wait ends on cancellation, which a graceful shutdown causes here.
                _ = try? await cancelWhenGracefulShutdown { [doorbell, settings] () async throws in
                    await doorbell.wait(upTo: settings.pollInterval)
                }
                continue
            }
            await withTaskGroup(of: (String, Date?).self) { group in
                for (tenant, deliveries) in Dictionary(grouping: claimed, by: \.tenantID) {
                    group.addTask { (tenant, await deliver(deliveries, client: client)) }
                }
                for await (tenant, retryAt) in group {
                    if let retryAt { paused[tenant] = retryAt }
                }
            }
        }
    }

    /// Drops deliveries past their retry period that no attempt will remove (their tenant's
    /// webhook kept failing, so they were never claimed again in time).
    private func sweep() async {
        let cutoff = clock.now().addingTimeInterval(-(settings.retry.maxAge + lease).seconds)
        guard let expired = try? await store.expireDeliveries(queuedBefore: cutoff), expired > 0 else { return }
        metrics.webhookExpired.increment(by: expired)
        logger.warning("webhook deliveries given up", metadata: ["deliveries": "\(expired)"])
    }

    /// One tenant's share of a batch; returns when to try this tenant again after a failure.
    private func deliver(_ deliveries: [WebhookDelivery], client: HTTPClient) async -> Date? {
        var waiting = deliveries[...]
        var retryAt: Date?
        await withTaskGroup(of: Date?.self) { group in
            var running = 0
            while true {
                while running < settings.perTenantConcurrency, retryAt == nil, !Task.isCancelledOrShuttingDown,
                    let delivery = waiting.popFirst()
                {
                    group.addTask { await attempt(delivery, client: client) }
                    running += 1
                }
                guard running > 0, let failedUntil = await group.next() else { break }
                running -= 1
                if let failedUntil { retryAt = max(retryAt ?? failedUntil, failedUntil) }
            }
        }
        // Not tried (an earlier one failed, or the node is stopping): back to the outbox,
        // attempts unchanged.
        // If the store fails, stop: the lease hands the rest out again later anyway.
        let release = retryAt ?? clock.now()
        for delivery in waiting {
            do {
                try await store.rescheduleDelivery(
                    tenantID: delivery.tenantID, eventID: delivery.eventID, attempts: delivery.attempts, next: release,
                    error: "not attempted: waiting for the webhook to recover")
            } catch {
                break
            }
        }
        return retryAt
    }

    /// Makes one attempt; returns when to try this webhook again after a failure, nil after
    /// a success (or a delivery that has nothing left to send).
    private func attempt(_ delivery: WebhookDelivery, client: HTTPClient) async -> Date? {
        guard let event = delivery.event else {
            // The event left the log (its tenant or its day was deleted): nothing to send.
            try? await store.finishDelivery(tenantID: delivery.tenantID, eventID: delivery.eventID)
            metrics.webhookExpired.increment()
            return nil
        }
        let attempt = delivery.attempts + 1
        let failure: String?
        if let secret = try? directory.open(delivery.sealedSecret, context: Webhook.sealingContext(tenantID: delivery.tenantID)) {
            failure = await post(event, secret: secret, url: delivery.url, attempt: attempt, client: client)
        } else {
            failure = "the webhook secret does not open with this node's master key"
        }
        guard let failure else {
            metrics.webhookDelivered.increment()
            try? await store.finishDelivery(tenantID: delivery.tenantID, eventID: delivery.eventID)
            return nil
        }
        metrics.webhookFailed.increment()
        let now = clock.now()
        if let next = settings.retry.nextAttempt(afterAttempts: attempt, queuedAt: delivery.createdAt, now: now, jitter: Double.random(in: 0...1)) {
            logger.info("webhook delivery failed; will retry", metadata: [
                "tenant": "\(delivery.tenantID)", "event": "\(event.id)", "attempt": "\(attempt)", "error": "\(failure)",
                "retryAt": "\(Timestamp.format(next))",
            ])
            try? await store.rescheduleDelivery(tenantID: delivery.tenantID, eventID: delivery.eventID, attempts: attempt, next: next, error: failure)
            return next
        }
        logger.warning("webhook delivery given up", metadata: [
            "tenant": "\(delivery.tenantID)", "event": "\(event.id)", "attempts": "\(attempt)", "error": "\(failure)",
        ])
        metrics.webhookExpired.increment()
        try? await store.finishDelivery(tenantID: delivery.tenantID, eventID: delivery.eventID)
        return now.addingTimeInterval(settings.retry.delay(afterAttempts: attempt).seconds)
    }

    /// POSTs the event; nil on a 2xx, otherwise what went wrong.
    private func post(_ event: AuditEvent, secret: String, url: String, attempt: Int, client: HTTPClient) async -> String? {
        let body = WebhookPayload.body(event)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: Self.userAgent)
        request.headers.add(name: "Switchboard-Event-Id", value: event.id)
        request.headers.add(name: "Switchboard-Event-Type", value: event.type.rawValue)
        request.headers.add(name: "Switchboard-Delivery-Attempt", value: "\(attempt)")
        request.headers.add(
            name: WebhookSignature.headerName,
            value: WebhookSignature.header(secret: secret, timestamp: Int(clock.now().timeIntervalSince1970), body: body))
        request.body = .bytes(ByteBuffer(bytes: body))
        let started = ContinuousClock.now
        defer { metrics.webhookLatency.recordNanoseconds(Int64((ContinuousClock.now - started).nanoseconds)) }
        let timeout = settings.timeout
        let logger = self.logger
        let prepared = request
        do {
            // One deadline over the whole exchange, body included (see `Deadline`).
            let status = try await Deadline.run(timeout: timeout) {
                let response = try await client.execute(prepared, timeout: .nanoseconds(Int64(timeout.nanoseconds)), logger: logger)
                // Read (and drop) the body so the connection can be reused.
                _ = try? await response.body.collect(upTo: Self.maxResponseBytes)
                return response.status.code
            }
            return (200..<300).contains(status) ? nil : "HTTP \(status)"
        } catch is Deadline.Exceeded {
            return "no complete answer within \(timeout)"
        } catch let error as HTTPClientError {
            return "\(error)"
        } catch {
            return String(describing: error)
        }
    }
}
