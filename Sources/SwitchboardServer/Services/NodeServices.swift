import Foundation
import Logging
import RedisBus
import ServiceLifecycle
import Signaling

/// On graceful shutdown (SIGTERM): readiness goes false and new upgrades get 503, every
/// session gets `reconnect` with a jittered delay, then the node waits up to the drain
/// timeout for sessions to leave and closes the rest with 1001 (SPEC §8). Listed after the
/// servers in the service group, so it runs before they stop.
struct DrainService: Service {
    let hub: Hub
    let timeout: Duration
    let jitterMs: Int
    let logger: Logger

    func run() async throws {
        // Sleep until the group shuts down; the drain itself runs after that.
        try? await gracefulShutdown()
        logger.info("draining", metadata: ["sessions": "\(hub.sessionCount)"])
        hub.beginDrain(maxRetryAfterMs: jitterMs)
        let deadline = ContinuousClock.now + timeout
        while hub.sessionCount > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        let left = hub.sessionCount
        if left > 0 { logger.info("drain timeout; closing remaining sessions", metadata: ["sessions": "\(left)"]) }
        hub.closeAll()
    }
}

/// Applies the roster's events and the bus's control messages to this node's sessions,
/// ends sessions whose resume window passed, and keeps gauges current (sessions by tenant,
/// rooms, audit buffer).
struct HubService: Service {
    let hub: Hub
    let bus: any MessageBus
    let directory: Directory
    let metrics: SwitchboardMetrics
    let audit: AuditBuffer
    let logger: Logger
    /// Opened once the roster's events arrive.
    let subscribed: StartupGate

    func run() async throws {
        let hub = self.hub
        // The roster's events for this node's sessions; retried until the roster answers
        // (Redis may come up after the node).
        var rosterSubscription: (any BusSubscription)?
        while rosterSubscription == nil, !Task.isCancelledOrShuttingDown {
            do {
                rosterSubscription = try await hub.roster.subscribe(node: hub.nodeID) { hub.handle($0) }
            } catch {
                logger.warning("cannot subscribe to the roster yet", metadata: ["error": "\(error)"])
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            }
        }
        defer { rosterSubscription?.cancel() }
        if rosterSubscription != nil { subscribed.open() }
        try await withThrowingDiscardingTaskGroup { tasks in
            tasks.addTask {
                // Resume windows and unfinished upgrades, four times a second.
                while !Task.isCancelledOrShuttingDown {
                    hub.sweep()
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(250)) }
                }
            }
            try await applyControlAndGauges()
        }
    }

    private func applyControlAndGauges() async throws {
        let hub = self.hub
        let directory = self.directory
        let control = bus.subscribe(.control) { message in
            switch message {
            case .tenantChanged(let tenantID), .tenantDisconnect(let tenantID, _):
                directory.forgetTenant(tenantID)
            case .keyRevoked(_, let apiKey):
                directory.forgetKey(apiKey)
            case .roomClosed(let tenantID, let room):
                directory.forgetRoom(tenantID: tenantID, name: room)
            default:
                break
            }
            hub.handle(message)
        }
        let direct = bus.subscribe(.node(hub.nodeID)) { hub.handle($0) }
        defer {
            control.cancel()
            direct.cancel()
        }
        var lastDropped: UInt64 = 0
        while !Task.isCancelledOrShuttingDown {
            metrics.setSessions(hub.connectionCounts())
            metrics.roomsActive.record(hub.roomCount)
            metrics.auditBuffered.record(audit.count)
            let dropped = audit.droppedCount
            if dropped > lastDropped {
                metrics.auditDropped.increment(by: Int(dropped - lastDropped))
                lastDropped = dropped
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }
}

/// Deletes audit events past the retention period, hourly, in whole UTC days
/// (``AuditRetention/cutoff(now:days:)``).
struct RetentionService: Service {
    let store: any Store
    let days: Int
    let clock: any WallClock
    let logger: Logger
    /// Opens when the store is ready (PostgreSQL: migrated).
    var storeReady: StartupGate?

    func run() async throws {
        if let storeReady {
            await cancelWhenGracefulShutdown { await storeReady.wait() }
        }
        while !Task.isCancelledOrShuttingDown {
            let cutoff = AuditRetention.cutoff(now: clock.now(), days: days)
            do {
                let removed = try await store.deleteEvents(before: cutoff)
                if removed > 0 { logger.info("audit retention", metadata: ["removed": "\(removed)"]) }
            } catch {
                logger.warning("audit retention failed", metadata: ["error": "\(error.message)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
        }
    }
}

extension Task where Success == Never, Failure == Never {
    static var isCancelledOrShuttingDown: Bool {
        Task.isCancelled || Task.isShuttingDownGracefully
    }
}

/// Cluster mode: beats into Redis every 2 s (10 s expiry) and watches for nodes that
/// stopped beating. A dead node is noticed within 12 s; once the resume window has passed
/// since its last beat, one surviving node (whoever wins the reap lock) ends its sessions
/// that did not resume elsewhere with `node-failure` (SPEC §8). On shutdown, after the
/// drain, the node departs at once.
struct NodeLivenessService: Service {
    let roster: RedisRoster
    let hub: Hub
    let nodeID: String
    let resumeWindow: TimeInterval
    var interval: Duration = .seconds(2)
    var ttl: Duration = .seconds(10)
    /// Opened after the first beat: until then the node is not ready for sessions.
    let beating: StartupGate
    let logger: Logger

    func run() async throws {
        var noticed: Set<String> = []
        // The first beat as soon as Redis answers.
        while !beating.isOpen, !Task.isCancelledOrShuttingDown {
            do {
                try await roster.beat(node: nodeID, ttl: ttl)
                beating.open()
            } catch {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(200)) }
            }
        }
        var connects = roster.client.statistics.connects
        while !Task.isCancelledOrShuttingDown {
            do {
                // Reconnected since the last round: Redis may have restarted empty. Put this
                // node's sessions back (a no-op for those it kept).
                let now = roster.client.statistics.connects
                if now != connects {
                    let restored = try await hub.restoreAll()
                    connects = now
                    if restored > 0 { logger.notice("restored sessions after a Redis reconnect", metadata: ["sessions": "\(restored)"]) }
                }
                try await roster.beat(node: nodeID, ttl: ttl)
                for dead in try await roster.deadNodes(except: nodeID) {
                    if noticed.insert(dead.id).inserted {
                        logger.warning("a node stopped beating", metadata: ["node": "\(dead.id)", "lastBeat": "\(dead.lastBeat)"])
                    }
                    guard Date().timeIntervalSince(dead.lastBeat) >= resumeWindow else { continue }
                    if let ended = try await roster.reap(dead.id, by: nodeID) {
                        noticed.remove(dead.id)
                        logger.notice("reaped a dead node", metadata: ["node": "\(dead.id)", "sessions": "\(ended)"])
                    }
                }
            } catch {
                logger.warning("node liveness check failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
        try? await roster.depart(node: nodeID)
    }
}

/// Keeps `switchboard_ready` and `switchboard_readiness_check{check}` current: the same
/// checks as `/readyz` (real round trips), once a second, so an alert sees readiness
/// flapping even when no probe happens to look.
struct ReadinessGaugeService: Service {
    let node: Node

    func run() async throws {
        while !Task.isCancelledOrShuttingDown {
            node.metrics.setReadiness(await node.readiness())
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
        // Draining: not ready any more.
        node.metrics.setReadiness(await node.readiness())
    }
}
