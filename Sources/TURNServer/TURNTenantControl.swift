import Logging
import ServiceLifecycle
import Signaling

/// Ends a suspended or deleted tenant's allocations on this TURN node within moments of the
/// operator's action (SPEC §6): listens on the deployment's control topic — Redis for a
/// `switchboard turn` node, the in-process bus for the TURN server inside `serve` — for
/// ``BusMessage/tenantDisconnect(tenantID:reason:)``.
public struct TURNTenantControl: Service {
    public let node: TURNNode
    public let bus: any MessageBus
    let logger: Logger

    public init(node: TURNNode, bus: any MessageBus, logger: Logger) {
        self.node = node
        self.bus = bus
        self.logger = logger
    }

    public func run() async throws {
        let (tenants, continuation) = AsyncStream.makeStream(of: String.self)
        let subscription = bus.subscribe(.control) { message in
            if case .tenantDisconnect(let tenantID, _) = message { continuation.yield(tenantID) }
        }
        defer {
            subscription.cancel()
            continuation.finish()
        }
        for await tenantID in tenants.cancelOnGracefulShutdown() {
            do {
                try await node.endAllocations(tenant: tenantID)
                logger.info("ended a tenant's TURN allocations", metadata: ["tenant": "\(tenantID)"])
            } catch {
                logger.warning("could not end a tenant's TURN allocations", metadata: ["tenant": "\(tenantID)", "error": "\(error)"])
            }
        }
    }
}
