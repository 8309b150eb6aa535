import CoreMetrics
import Signaling
import Synchronization

/// The signaling metrics of SPEC §7, created once per node through the Metrics API so the
/// hot path only increments ready-made handles.
public final class SwitchboardMetrics: Sendable {
    let factory: any MetricsFactory

    let framesIn: [String: Counter]
    let framesInOther: Counter
    let framesOut: [OutboundFrameType: Counter]
    let routedLocal: Counter
    let routedBus: Counter
    let routingLatency: Timer
    let errors: [SignalErrorCode: Counter]
    let rateLimited: Counter
    let resumesSucceeded: Counter
    let resumesFailed: Counter
    let busPublishFailures: Counter
    let busReconnects: Counter
    let dbBatchLatency: Timer
    let auditDropped: Counter
    let auditBuffered: Gauge
    let auditWritten: Counter
    let roomsActive: Gauge
    let sessionsTotal: Gauge
    let ready: Gauge
    let webhookDelivered: Counter
    let webhookFailed: Counter
    let webhookExpired: Counter
    let webhookLatency: Timer
    let webhookPending: Gauge
    private let authRejections = Mutex<[String: Counter]>([:])
    private let sessionsByTenant = Mutex<[String: Gauge]>([:])
    private let readinessChecks = Mutex<[String: Gauge]>([:])

    /// Client frame types counted by name; anything else is `other`.
    static let inboundTypes = ["signal", "broadcast", "update", "ping", "leave", "resume"]

    public init(factory: any MetricsFactory) {
        self.factory = factory
        var framesIn: [String: Counter] = [:]
        for type in Self.inboundTypes {
            framesIn[type] = Counter(label: "switchboard_frames_in_total", dimensions: [("type", type)], factory: factory)
        }
        self.framesIn = framesIn
        framesInOther = Counter(label: "switchboard_frames_in_total", dimensions: [("type", "other")], factory: factory)
        var framesOut: [OutboundFrameType: Counter] = [:]
        for type in OutboundFrameType.allCases {
            framesOut[type] = Counter(label: "switchboard_frames_out_total", dimensions: [("type", type.rawValue)], factory: factory)
        }
        self.framesOut = framesOut
        routedLocal = Counter(label: "switchboard_messages_routed_total", dimensions: [("path", "local")], factory: factory)
        routedBus = Counter(label: "switchboard_messages_routed_total", dimensions: [("path", "bus")], factory: factory)
        routingLatency = Timer(label: "switchboard_routing_latency_seconds", factory: factory)
        var errors: [SignalErrorCode: Counter] = [:]
        for code in SignalErrorCode.allCases {
            errors[code] = Counter(label: "switchboard_errors_total", dimensions: [("code", code.rawValue)], factory: factory)
        }
        self.errors = errors
        rateLimited = Counter(label: "switchboard_rate_limited_frames_total", factory: factory)
        resumesSucceeded = Counter(label: "switchboard_resumes_total", dimensions: [("result", "ok")], factory: factory)
        resumesFailed = Counter(label: "switchboard_resumes_total", dimensions: [("result", "failed")], factory: factory)
        busPublishFailures = Counter(label: "switchboard_bus_publish_failures_total", factory: factory)
        busReconnects = Counter(label: "switchboard_bus_reconnects_total", factory: factory)
        dbBatchLatency = Timer(label: "switchboard_db_batch_seconds", factory: factory)
        auditDropped = Counter(label: "switchboard_audit_events_dropped_total", factory: factory)
        auditBuffered = Gauge(label: "switchboard_audit_events_buffered", factory: factory)
        auditWritten = Counter(label: "switchboard_audit_events_written_total", factory: factory)
        roomsActive = Gauge(label: "switchboard_rooms_active", factory: factory)
        sessionsTotal = Gauge(label: "switchboard_node_sessions", factory: factory)
        ready = Gauge(label: "switchboard_ready", factory: factory)
        webhookDelivered = Counter(label: "switchboard_webhook_deliveries_total", dimensions: [("result", "delivered")], factory: factory)
        webhookFailed = Counter(label: "switchboard_webhook_deliveries_total", dimensions: [("result", "failed")], factory: factory)
        webhookExpired = Counter(label: "switchboard_webhook_deliveries_total", dimensions: [("result", "expired")], factory: factory)
        webhookLatency = Timer(label: "switchboard_webhook_delivery_seconds", factory: factory)
        webhookPending = Gauge(label: "switchboard_webhook_deliveries_pending", factory: factory)
    }

    func frameIn(type: String) {
        (framesIn[type] ?? framesInOther).increment()
    }

    func frameOut(_ type: OutboundFrameType) {
        framesOut[type]?.increment()
    }

    func error(_ code: SignalErrorCode) {
        errors[code]?.increment()
    }

    func routed(_ outcome: RouteOutcome) {
        guard case .routed(let recipients, let viaBus) = outcome, recipients > 0 else { return }
        (viaBus ? routedBus : routedLocal).increment(by: recipients)
    }

    func authRejected(_ reason: AuthFailure.Reason) {
        let counter = authRejections.withLock { counters in
            if let counter = counters[reason.rawValue] { return counter }
            let counter = Counter(label: "switchboard_auth_rejections_total", dimensions: [("reason", reason.rawValue)], factory: factory)
            counters[reason.rawValue] = counter
            return counter
        }
        counter.increment()
    }

    /// Sets `switchboard_ready` (1 while `/readyz` would answer 200) and
    /// `switchboard_readiness_check{check}` (1 ok, 0 not) from the readiness checks.
    func setReadiness(_ checks: [String: String]) {
        let ready = checks.values.allSatisfy { $0 == "ok" }
        self.ready.record(ready ? 1 : 0)
        readinessChecks.withLock { gauges in
            for (name, value) in checks {
                let gauge = gauges[name] ?? Gauge(label: "switchboard_readiness_check", dimensions: [("check", name)], factory: factory)
                gauges[name] = gauge
                gauge.record(value == "ok" ? 1 : 0)
            }
        }
    }

    /// Sets `switchboard_sessions_connected{tenant}` from a count per tenant; tenants that
    /// went to zero are set to zero.
    func setSessions(_ counts: [String: Int]) {
        sessionsByTenant.withLock { gauges in
            for (tenant, gauge) in gauges where counts[tenant] == nil { gauge.record(0) }
            for (tenant, count) in counts {
                let gauge = gauges[tenant] ?? Gauge(label: "switchboard_sessions_connected", dimensions: [("tenant", tenant)], factory: factory)
                gauges[tenant] = gauge
                gauge.record(count)
            }
        }
        sessionsTotal.record(counts.values.reduce(0, +))
    }
}
