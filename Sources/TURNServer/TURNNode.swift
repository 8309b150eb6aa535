import Logging
import Metrics
import NIOCore
import NIOPosix
import STUN
import ServiceLifecycle
import Synchronization

/// A TURN node (SPEC §6) as a swift-service-lifecycle `Service`: STUN/TURN over UDP and TCP
/// on one port, TURN over TLS when a certificate is set, one UDP relay socket per
/// allocation in the relay port range.
///
/// On graceful shutdown (SIGTERM) it stops taking allocations (Allocate gets 403), waits up
/// to the drain timeout for the existing ones to end, then closes everything. Cancelled, it
/// closes at once.
public final class TURNNode: Service, Sendable {
    public let configuration: TURNServerConfiguration
    private let core: TURNCore
    private let listening: EventLoopPromise<TURNListeningAddresses>
    private let snapshot: StatusBox

    /// - Parameters:
    ///   - metricsFactory: where the `switchboard_turn_*` metrics go (default: the global
    ///     `MetricsSystem` factory the executable bootstrapped).
    /// - Throws: ``TURNConfigurationError`` when no public IP is given and none can be found.
    public init(
        configuration: TURNServerConfiguration, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        metricsFactory: (any MetricsFactory)? = nil
    ) throws {
        guard let publicIP = configuration.publicIP ?? TURNServerConfiguration.firstNonLoopbackAddress() else {
            throw TURNConfigurationError("no public IP: set SWITCHBOARD_TURN_PUBLIC_IP")
        }
        guard !configuration.secrets.isEmpty else { throw TURNConfigurationError("no TURN secret: set SWITCHBOARD_TURN_SECRETS") }
        guard configuration.relayPorts.lowerBound >= 1, configuration.relayPorts.upperBound <= 65535,
            configuration.relayPorts.count >= 2
        else { throw TURNConfigurationError("the relay port range must be within 1–65535 and hold at least two ports") }
        let loop = eventLoopGroup.next()
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.nodeID)"
        self.configuration = configuration
        let snapshot = StatusBox()
        self.snapshot = snapshot
        self.core = TURNCore(
            configuration: configuration, publicIP: publicIP, loop: loop, logger: logger,
            metricsFactory: metricsFactory ?? MetricsSystem.factory, publish: { status in snapshot.mutex.withLock { $0 = status } })
        self.listening = loop.makePromise(of: TURNListeningAddresses.self)
    }

    /// The address relays are advertised at.
    public var publicIP: IPAddress { core.publicIP }

    public func run() async throws {
        let core = self.core
        let addresses: TURNListeningAddresses
        do {
            addresses = try await core.loop.flatSubmit { core.start() }.get()
            listening.succeed(addresses)
        } catch {
            listening.fail(error)
            _ = try? await core.loop.flatSubmit { core.shutdown() }.get()
            throw error
        }
        core.logger.info(
            "TURN node listening",
            metadata: [
                "udp": "\(addresses.udpPort)", "tcp": "\(addresses.tcpPort)", "tls": "\(addresses.tlsPort.map(String.init) ?? "off")",
                "relay": "\(core.publicIP) \(configuration.relayPorts)",
            ])
        var graceful = true
        do { try await gracefulShutdown() } catch { graceful = false }
        if graceful {
            core.logger.info("TURN node draining", metadata: ["timeout": "\(configuration.drainTimeout)"])
            let timeout = TimeAmount.milliseconds(Int64(configuration.drainTimeout * 1000))
            try? await core.loop.flatSubmit { core.drain(timeout: timeout) }.get()
        }
        try await core.loop.flatSubmit { core.shutdown() }.get()
        core.logger.info("TURN node stopped")
    }

    /// Waits until the listeners are bound (or failed to bind) and returns their ports.
    public func waitUntilListening() async throws -> TURNListeningAddresses {
        try await listening.futureResult.get()
    }

    /// The node's state as of its last tick (about a second old at most), without waiting:
    /// for probes (`/readyz` is ready while listening and not draining).
    public var currentStatus: TURNNodeStatus { snapshot.mutex.withLock { $0 } }

    /// The node's counts, for probes and registration.
    public func status() async throws -> TURNNodeStatus {
        let core = self.core
        return try await core.loop.submit { core.status }.get()
    }

    /// Ends every allocation of a suspended or deleted tenant.
    public func endAllocations(tenant: String) async throws {
        let core = self.core
        try await core.loop.submit { core.endAllocations(tenant: tenant) }.get()
    }
}

/// The last published status, readable from any thread.
final class StatusBox: Sendable {
    let mutex = Mutex(
        TURNNodeStatus(allocations: 0, allocationsByTenant: [:], permissions: 0, channels: 0, isDraining: false, isListening: false))
}

/// A configuration a node cannot start with.
public struct TURNConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
