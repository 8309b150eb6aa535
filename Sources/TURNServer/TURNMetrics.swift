import Metrics
import STUN

/// The TURN node's metrics, through the swift-metrics API only (the executable picks the
/// backend). Names are prefixed `switchboard_turn_`.
struct TURNMetrics {
    /// What one allocation relayed between two updates of its ``Relay`` counters.
    struct Traffic: Equatable {
        var packetsToPeer = 0
        var bytesToPeer = 0
        var packetsToClient = 0
        var bytesToClient = 0
    }

    /// Per-allocation counters, made once when the allocation opens; the relay path counts
    /// in a ``Traffic`` and adds it here about once a second.
    struct Relay {
        let bytesToPeer: Counter
        let packetsToPeer: Counter
        let bytesToClient: Counter
        let packetsToClient: Counter

        init(tenant: String, factory: any MetricsFactory) {
            bytesToPeer = Counter(label: "switchboard_turn_relayed_bytes_total", dimensions: [("tenant", tenant), ("direction", "to_peer")], factory: factory)
            packetsToPeer = Counter(label: "switchboard_turn_relayed_packets_total", dimensions: [("tenant", tenant), ("direction", "to_peer")], factory: factory)
            bytesToClient = Counter(label: "switchboard_turn_relayed_bytes_total", dimensions: [("tenant", tenant), ("direction", "to_client")], factory: factory)
            packetsToClient = Counter(label: "switchboard_turn_relayed_packets_total", dimensions: [("tenant", tenant), ("direction", "to_client")], factory: factory)
        }

        func add(_ traffic: Traffic) {
            if traffic.packetsToPeer > 0 {
                packetsToPeer.increment(by: Int64(traffic.packetsToPeer))
                bytesToPeer.increment(by: Int64(traffic.bytesToPeer))
            }
            if traffic.packetsToClient > 0 {
                packetsToClient.increment(by: Int64(traffic.packetsToClient))
                bytesToClient.increment(by: Int64(traffic.bytesToClient))
            }
        }
    }

    let factory: any MetricsFactory
    private let rateLimited: Counter
    private let allocationsTotal: Counter
    private let challenges: Counter

    init(factory: any MetricsFactory) {
        self.factory = factory
        rateLimited = Counter(label: "switchboard_turn_rate_limited_total", factory: factory)
        allocationsTotal = Counter(label: "switchboard_turn_allocations_total", factory: factory)
        challenges = Counter(label: "switchboard_turn_challenges_total", factory: factory)
    }

    func record(_ report: TURNServerMachine.Report) {
        switch report {
        case .authenticationFailed("missing"):
            challenges.increment()  // the normal first round trip: not a failure
        case .authenticationFailed(let reason):
            Counter(label: "switchboard_turn_auth_failures_total", dimensions: [("reason", reason)], factory: factory).increment()
        case .peerRefused(let tenant, let reason):
            Counter(label: "switchboard_turn_refused_peers_total", dimensions: [("tenant", tenant), ("reason", reason.rawValue)], factory: factory).increment()
        case .rateLimited:
            rateLimited.increment()
        case .allocated:
            allocationsTotal.increment()
        case .quotaReached(let tenant):
            Counter(label: "switchboard_turn_quota_rejections_total", dimensions: [("tenant", tenant)], factory: factory).increment()
        case .released:
            break
        }
    }
}

/// The node's gauges: what all of its loops hold, set from their sum (``TURNNodeShared``).
struct TURNGauges {
    private let factory: any MetricsFactory
    private var allocationGauges: [String: Gauge] = [:]
    private let permissions: Gauge
    private let channels: Gauge

    init(factory: any MetricsFactory) {
        self.factory = factory
        permissions = Gauge(label: "switchboard_turn_permissions", factory: factory)
        channels = Gauge(label: "switchboard_turn_channels", factory: factory)
    }

    /// Called whenever a loop publishes its counts (about once a second each).
    mutating func update(allocationsByTenant: [String: Int], permissions: Int, channels: Int) {
        for (tenant, gauge) in allocationGauges where allocationsByTenant[tenant] == nil {
            gauge.record(0)
            allocationGauges[tenant] = nil
        }
        for (tenant, count) in allocationsByTenant {
            let gauge = allocationGauges[tenant] ?? Gauge(label: "switchboard_turn_allocations", dimensions: [("tenant", tenant)], factory: factory)
            allocationGauges[tenant] = gauge
            gauge.record(count)
        }
        self.permissions.record(permissions)
        self.channels.record(channels)
    }
}
