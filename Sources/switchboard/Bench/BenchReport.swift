import Foundation
import Histogram

/// What `switchboard bench` prints.
struct BenchReport {
    let plan: BenchPlan
    let connectSeconds: Double
    let measuredSeconds: Double
    let stats: BenchStats
    let serverRSSBeforeKB: Int?
    let serverRSSAfterKB: Int?
    let serverRSSPerSessionKB: Double?
    /// CPU seconds the servers used while sending and settling.
    let serverCPUSeconds: Double?

    /// Server CPU per delivered message, in microseconds.
    var serverCPUPerMessage: Double? {
        guard let serverCPUSeconds, stats.received > 0 else { return nil }
        return serverCPUSeconds * 1_000_000 / Double(stats.received)
    }

    var lost: Int { max(0, stats.sent - stats.received) }
    var throughput: Double { measuredSeconds > 0 ? Double(stats.received) / measuredSeconds : 0 }

    /// Latency percentiles in microseconds.
    var percentiles: [(String, Double)] {
        guard stats.latency.totalCount > 0 else { return [] }
        return [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)].map { name, percentile in
            (name, Double(stats.latency.valueAtPercentile(percentile)) / 1000)
        } + [("max", Double(stats.latency.max) / 1000)]
    }

    func text() -> String {
        var lines = [
            "switchboard bench",
            "  nodes:       \(plan.urls.joined(separator: ", "))",
            "  sessions:    \(plan.sessions) in \(plan.rooms) rooms (connected in \(String(format: "%.2f", connectSeconds)) s)",
        ]
        if plan.rate > 0 {
            lines += [
                "  offered:     \(plan.rate) msg/s × \(plan.size) B for \(String(format: "%.1f", measuredSeconds)) s",
                "  throughput:  \(String(format: "%.0f", throughput)) msg/s delivered",
                "  sent:        \(stats.sent)   received: \(stats.received)   lost: \(lost)   out of order: \(stats.outOfOrder)   errors: \(stats.errors)",
                "  latency µs:  " + percentiles.map { "\($0.0) \(String(format: "%.0f", $0.1))" }.joined(separator: "  "),
            ]
        } else {
            lines.append("  idle:        held \(plan.sessions) sessions for \(plan.duration) s; closed early: \(stats.closed)")
        }
        if let cpu = serverCPUSeconds, let perMessage = serverCPUPerMessage {
            lines.append(String(format: "  server CPU:  %.2f s  (%.1f µs per delivered message)", cpu, perMessage))
        }
        if let before = serverRSSBeforeKB, let after = serverRSSAfterKB {
            lines.append("  server RSS:  \(before) KB → \(after) KB" + (serverRSSPerSessionKB.map { String(format: "  (%.1f KB per session)", $0) } ?? ""))
        }
        return lines.joined(separator: "\n")
    }

    func json() -> String {
        var object: [String: Any] = [
            "urls": plan.urls, "sessions": plan.sessions, "rooms": plan.rooms, "rate": plan.rate, "size": plan.size,
            "durationSeconds": measuredSeconds, "connectSeconds": connectSeconds, "sent": stats.sent, "received": stats.received,
            "lost": lost, "outOfOrder": stats.outOfOrder, "errors": stats.errors, "throughput": throughput,
            "closedEarly": stats.closed,
        ]
        var latency: [String: Double] = [:]
        for (name, value) in percentiles { latency[name] = value }
        object["latencyMicroseconds"] = latency
        if let before = serverRSSBeforeKB { object["serverRSSBeforeKB"] = before }
        if let after = serverRSSAfterKB { object["serverRSSAfterKB"] = after }
        if let perSession = serverRSSPerSessionKB { object["serverRSSPerSessionKB"] = perSession }
        if let cpu = serverCPUSeconds { object["serverCPUSeconds"] = cpu }
        if let perMessage = serverCPUPerMessage { object["serverCPUMicrosecondsPerMessage"] = perMessage }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
