import Logging
import ServiceLifecycle
import Signaling

/// Keeps a TURN node in the deployment's ``TURNRegistry`` (SPEC §6 registration): once the
/// node listens, its record (URLs, allocations, draining) is written every ``interval`` with a
/// short expiry, so a dead node drops out by itself; on graceful shutdown the record goes at
/// once, before the node drains, so signaling nodes stop handing it out.
///
/// Runs beside the ``TURNNode`` in the same service group, after it (so it shuts down first).
public struct TURNRegistration: Service {
    public let node: TURNNode
    public let registry: any TURNRegistry
    /// The address clients reach the node at (its public IP unless told otherwise).
    public let advertisedHost: String
    public let interval: Duration
    public let ttl: Duration
    let logger: Logger

    public init(node: TURNNode, registry: any TURNRegistry, advertisedHost: String? = nil, interval: Duration = .seconds(2), ttl: Duration = .seconds(10), logger: Logger) {
        self.node = node
        self.registry = registry
        self.advertisedHost = advertisedHost ?? node.publicIP.description
        self.interval = interval
        self.ttl = ttl
        self.logger = logger
    }

    public func run() async throws {
        guard let addresses = try? await node.waitUntilListening() else { return }
        let urls = TURNNodeRecord.urls(host: advertisedHost, port: addresses.udpPort, tlsPort: addresses.tlsPort)
        let nodeID = node.configuration.nodeID
        var failing = false
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let status = node.currentStatus
            do {
                try await registry.register(
                    TURNNodeRecord(nodeID: nodeID, urls: urls, allocations: status.allocations, draining: status.isDraining), ttl: ttl)
                if failing { logger.info("TURN registration restored") }
                failing = false
            } catch {
                if !failing { logger.warning("TURN registration failed; retrying", metadata: ["error": "\(error)"]) }
                failing = true
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
        // Leaving: signaling nodes stop handing this node out before it drains.
        do {
            try await registry.deregister(nodeID: nodeID)
        } catch {
            logger.warning("could not leave the TURN registry; the record lapses by itself", metadata: ["error": "\(error)"])
        }
    }
}
