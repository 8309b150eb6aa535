import Logging
import Metrics
import NIOCore
import NIOPosix
import STUN
import ServiceLifecycle

/// A TURN node (SPEC §6) as a swift-service-lifecycle `Service`: STUN/TURN over UDP and TCP
/// on one port, TURN over TLS when a certificate is set, one UDP relay socket per
/// allocation in the relay port range.
///
/// It relays on ``TURNServerConfiguration/relayLoops`` event loops of its group (one per core
/// by default), each a ``TURNCore`` with its own listeners: with more than one, every loop's
/// UDP, TCP and TLS listener joins one `SO_REUSEPORT` group per port, the kernel spreads the
/// clients over them by address and port, and a client's allocation, relay socket and traffic
/// stay on the loop its 5-tuple reached. What they share is in ``TURNNodeShared``.
///
/// On graceful shutdown (SIGTERM) it stops taking allocations (Allocate gets 403), waits up
/// to the drain timeout for the existing ones to end, then closes everything. Cancelled, it
/// closes at once.
public final class TURNNode: Service, Sendable {
    public let configuration: TURNServerConfiguration
    private let cores: [TURNCore]
    private let shared: TURNNodeShared
    private let listening: EventLoopPromise<TURNListeningAddresses>
    private let logger: Logger

    /// - Parameters:
    ///   - eventLoopGroup: the loops it relays on: the first `relayLoops` of them.
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
        guard configuration.relayLoops.map({ $0 >= 1 }) ?? true else { throw TURNConfigurationError("relay loops must be at least 1") }
        let loops = Array(eventLoopGroup.makeIterator().prefix(configuration.relayLoops ?? System.coreCount))
        guard !loops.isEmpty else { throw TURNConfigurationError("the event loop group has no loops") }
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.nodeID)"
        if let asked = configuration.relayLoops, asked > loops.count {
            // `serve` runs its embedded server on the node's event loops (SWITCHBOARD_EVENT_LOOPS).
            logger.notice(
                "fewer relay loops than asked: the event loop group has no more",
                metadata: ["asked": "\(asked)", "loops": "\(loops.count)"])
        }
        self.configuration = configuration
        self.logger = logger
        let factory = metricsFactory ?? MetricsSystem.factory
        let shared = TURNNodeShared(loops: loops.count, metricsFactory: factory)
        self.shared = shared
        self.cores = loops.enumerated().map { index, loop in
            TURNCore(
                configuration: configuration, publicIP: publicIP, loop: loop, logger: logger, metricsFactory: factory,
                shared: shared, index: index)
        }
        self.listening = loops[0].makePromise(of: TURNListeningAddresses.self)
    }

    /// The address relays are advertised at.
    public var publicIP: IPAddress { cores[0].publicIP }

    /// How many event loops relay.
    public var relayLoops: Int { cores.count }

    public func run() async throws {
        let addresses: TURNListeningAddresses
        do {
            addresses = try await start()
            listening.succeed(addresses)
        } catch {
            listening.fail(error)
            await shutdown()
            throw error
        }
        logger.info(
            "TURN node listening",
            metadata: [
                "udp": "\(addresses.udpPort)", "tcp": "\(addresses.tcpPort)", "tls": "\(addresses.tlsPort.map(String.init) ?? "off")",
                "relay": "\(publicIP) \(configuration.relayPorts)", "loops": "\(cores.count)",
            ])
        var graceful = true
        do { try await gracefulShutdown() } catch { graceful = false }
        if graceful {
            logger.info("TURN node draining", metadata: ["timeout": "\(configuration.drainTimeout)"])
            let timeout = TimeAmount.milliseconds(Int64(configuration.drainTimeout * 1000))
            let drains = cores.map { core in core.loop.flatSubmit { core.drain(timeout: timeout) } }
            for drain in drains { try? await drain.get() }
        }
        await shutdown()
        logger.info("TURN node stopped")
    }

    /// The first loop binds the listeners (on a free port when the configured one is 0); the
    /// others join its `SO_REUSEPORT` groups on the ports it got. A group admits any socket of
    /// the same user that asks to join, so the ports are first checked free by plain binds
    /// (``probe(_:)``): another process's listener, `SO_REUSEPORT` or not, is an error, as it
    /// is with one loop.
    private func start() async throws -> TURNListeningAddresses {
        let first = cores[0]
        guard cores.count > 1 else {
            let (port, tlsPort) = (configuration.port, configuration.tlsPort)
            do {
                return try await first.loop.flatSubmit { first.start(port: port, tlsPort: tlsPort, reusePort: false) }.get()
            } catch let error as IOError where error.errnoCode == EADDRINUSE {
                _ = try Self.probe(configuration)  // which port, and the setting that moves it
                throw error
            }
        }
        let (port, tlsPort) = try Self.probe(configuration)
        let addresses = try await first.loop.flatSubmit { first.start(port: port, tlsPort: tlsPort, reusePort: true) }.get()
        for core in cores.dropFirst() {
            let joined = try await core.loop.flatSubmit {
                core.start(port: addresses.udpPort, tlsPort: addresses.tlsPort ?? 0, reusePort: true)
            }.get()
            guard joined == addresses else { throw TURNConfigurationError("a relay loop bound other ports than the first: \(joined)") }
        }
        return addresses
    }

    /// "Address in use" as the setting to change (other errors as they are).
    private static func inUse(_ error: any Error, _ port: Int, _ setting: String) -> any Error {
        guard let error = error as? IOError, error.errnoCode == EADDRINUSE else { return error }
        return TURNConfigurationError("port \(port) is in use by another process: choose a free one with \(setting)")
    }

    /// Ports free for UDP and TCP (and TLS's for TCP, when configured), checked by binding
    /// sockets of our own without `SO_REUSEPORT` and closing them (``UDPSocket/probe(_:)``);
    /// a configured port of 0 is replaced by one the kernel picks free for both.
    static func probe(_ configuration: TURNServerConfiguration) throws -> (port: Int, tlsPort: Int) {
        let host = try SocketAddress.makeAddressResolvingHost(configuration.host, port: 0)
        func free(_ port: Int) throws -> Int {
            var address = host
            address.port = port
            // A port the kernel picks free for UDP may be taken for TCP: then another is tried.
            for _ in 1..<(port == 0 ? 20 : 1) {
                if let chosen = try? UDPSocket.probe(address) { return chosen }
            }
            return try UDPSocket.probe(address)
        }
        let port: Int
        do { port = try free(configuration.port) } catch { throw Self.inUse(error, configuration.port, "--turn-port (SWITCHBOARD_TURN_PORT)") }
        var tlsPort = configuration.tlsPort
        if configuration.tlsEnabled {
            if tlsPort == 0 {
                tlsPort = try free(0)
            } else {
                var address = host
                address.port = tlsPort
                do { try UDPSocket.probeStream(address) } catch { throw Self.inUse(error, tlsPort, "--turn-tls-port (SWITCHBOARD_TURN_TLS_PORT)") }
            }
        }
        return (port, tlsPort)
    }

    private func shutdown() async {
        let closes = cores.map { core in core.loop.flatSubmit { core.shutdown() } }
        for close in closes { try? await close.get() }
        shared.ports.closeAllReserved()
    }

    /// Waits until the listeners are bound (or failed to bind) and returns their ports.
    public func waitUntilListening() async throws -> TURNListeningAddresses {
        try await listening.futureResult.get()
    }

    /// The node's state as of its loops' last tick (about a second old at most), without
    /// waiting: for probes (`/readyz` is ready while listening and not draining).
    public var currentStatus: TURNNodeStatus { shared.status }

    /// The node's counts, for probes and registration.
    public func status() async throws -> TURNNodeStatus {
        TURNNodeShared.sum(try await statusByLoop())
    }

    /// Open allocations on each relay loop (for tests: which loop a client's 5-tuple reached).
    func allocationsByLoop() async throws -> [Int] {
        try await statusByLoop().map(\.allocations)
    }

    /// Each loop's state, asked on its loop.
    private func statusByLoop() async throws -> [TURNNodeStatus] {
        var statuses: [TURNNodeStatus] = []
        for core in cores { statuses.append(try await core.loop.submit { core.status }.get()) }
        return statuses
    }

    /// Ends every allocation of a suspended or deleted tenant.
    public func endAllocations(tenant: String) async throws {
        for core in cores { try await core.loop.submit { core.endAllocations(tenant: tenant) }.get() }
    }
}

/// A configuration a node cannot start with.
public struct TURNConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
