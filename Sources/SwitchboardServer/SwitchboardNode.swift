import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import PostgresStore
import Prometheus
import RedisBus
import SQLiteStore
import ServiceLifecycle
import Signaling
import TURNServer

/// One signaling node, assembled: the composition root of `switchboard serve` (STYLE.md).
///
/// ``make(configuration:registry:logger:)`` opens the store and wires the ports; ``run()``
/// runs every long-lived piece in one `ServiceGroup` until SIGTERM/SIGINT (or
/// ``shutdown()``), drains, flushes the audit buffer and returns.
public final class SwitchboardNode: Sendable {
    public let configuration: ServerConfiguration
    /// The operator token in force (generated when none was configured).
    public let adminToken: String
    public let hub: Hub
    public let store: any Store
    public let audit: AuditBuffer
    let node: Node
    private let group: ServiceGroup
    private let ports: AsyncStream<(String, Int)>
    private let boundPorts = BoundPorts()

    public static func make(
        configuration: ServerConfiguration, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        logger: Logger, handleSignals: Bool = true
    ) async throws -> SwitchboardNode {
        if let url = configuration.redisURL {
            do {
                _ = try RedisConfiguration(url: url)
            } catch {
                throw ConfigurationError("SWITCHBOARD_REDIS_URL: \(error)")
            }
        }
        let secrets = try SecretBox(base64: try MasterKey.resolve(configuration, logger: logger))
        if let url = configuration.databaseURL {
            let store: PostgresStore
            do {
                store = try PostgresStore(url: url, settings: configuration.postgres, logger: logger)
            } catch let error as PostgresURL.Invalid {
                throw ConfigurationError(error.description)
            }
            let prepared = StartupGate()
            return try SwitchboardNode(
                configuration: configuration, store: store,
                storeService: PostgresStoreService(store: store, configuration: configuration, secrets: secrets, logger: logger, prepared: prepared),
                storeReady: prepared, secrets: secrets, registry: registry, logger: logger, handleSignals: handleSignals)
        }
        let existingDatabase = FileManager.default.fileExists(atPath: configuration.sqlitePath)
        let store = try await SQLiteStore.open(path: configuration.sqlitePath, logger: logger)
        if existingDatabase, try await !MasterKey.opens(store: store, secrets: secrets) {
            await store.close()
            throw ConfigurationError("the master key does not decrypt the API secrets in \(configuration.sqlitePath): restore the key file \(configuration.masterKeyFile) (or SWITCHBOARD_MASTER_KEY) that was used with it")
        }
        return try SwitchboardNode(configuration: configuration, store: store, storeService: nil, secrets: secrets, registry: registry, logger: logger, handleSignals: handleSignals)
    }

    init(
        configuration: ServerConfiguration, store: any Store, storeService: (any Service)?, storeReady: StartupGate? = nil,
        secrets: SecretBox, registry: PrometheusCollectorRegistry, logger: Logger, handleSignals: Bool
    ) throws {
        self.configuration = configuration
        self.store = store
        let adminToken = configuration.adminToken ?? Base64URL.random(bytes: 24)
        self.adminToken = adminToken
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["switchboard_routing_latency_seconds"] = [
            .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
            .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(50),
        ]
        let metrics = SwitchboardMetrics(factory: factory)
        let audit = AuditBuffer(capacity: configuration.auditBufferCapacity)
        self.audit = audit
        // Embedded: the bus and roster live in this process. Cluster: both are Redis.
        let bus: any MessageBus
        let roster: any Roster
        var redisServices: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var clusterBeating: StartupGate?
        var clusterRoster: RedisRoster?
        if let url = configuration.redisURL {
            let redis = try RedisConfiguration(url: url)
            let client = RedisClient(configuration: redis, metricsFactory: factory, logger: logger)
            bus = RedisBus(client: client, configuration: .init(nodeID: configuration.nodeID), metricsFactory: factory, logger: logger)
            let redisRoster = RedisRoster(client: client, configuration: .init(replayLimits: configuration.replayLimits), logger: logger)
            roster = redisRoster
            redisServices.append(.init(service: client))
            clusterRoster = redisRoster
        } else {
            bus = InProcessBus()
            roster = InMemoryRoster(configuration: .init(replayLimits: configuration.replayLimits))
        }
        let clock = SystemWallClock()
        let hub = Hub(
            configuration: .init(nodeID: configuration.nodeID, resumeWindow: configuration.resumeWindow),
            roster: roster, audit: audit, clock: clock, logger: logger)
        self.hub = hub
        if let clusterRoster {
            // Stops after the drain (services stop in reverse order): the node departs last.
            let beating = StartupGate()
            clusterBeating = beating
            redisServices.append(.init(service: NodeLivenessService(
                roster: clusterRoster, hub: hub, nodeID: configuration.nodeID, resumeWindow: configuration.resumeWindow, beating: beating,
                logger: logger)))
        }
        let directory = Directory(store: store, secrets: secrets)
        let turnEndpoints = TURNEndpoints(staticURLs: configuration.turnURLs, configuredSecrets: configuration.turnSecrets)
        if let clusterRoster {
            redisServices.append(.init(service: TURNRegistryWatcher(
                registry: RedisTURNRegistry(client: clusterRoster.client), endpoints: turnEndpoints, logger: logger)))
        }
        let embeddedTURN = try Self.embeddedTURN(
            configuration: configuration, endpoints: turnEndpoints, bus: bus, metricsFactory: factory, logger: logger)
        let node = Node(
            configuration: configuration, store: store, directory: directory, tokens: AccessTokens(directory: directory, clock: clock),
            hub: hub, bus: bus, audit: audit, metrics: metrics, clock: clock, logger: logger, adminToken: adminToken,
            turn: turnEndpoints, storeReady: storeReady, clusterBeating: clusterBeating)
        self.node = node

        let (ports, portsContinuation) = AsyncStream.makeStream(of: (String, Int).self)
        self.ports = ports
        let publicApp = Self.publicApplication(node: node, onBound: { portsContinuation.yield(("public", $0)) })
        let adminApp = Application(
            router: AdminRoutes(node: node, registry: registry).router(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.adminPort), serverName: "switchboard-admin"),
            onServerRunning: { portsContinuation.yield(("admin", $0.localAddress?.port ?? 0)) },
            logger: logger)
        let webhookDoorbell = Doorbell()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // The store's own service (the PostgreSQL pool) and the Redis client start first and
        // stop last.
        if let storeService { services.append(.init(service: storeService)) }
        services += redisServices
        services += [
            .init(service: AuditWriter(
                buffer: audit, store: store, metrics: metrics, batchSize: configuration.auditBatchSize, logger: logger,
                shutdownGrace: .milliseconds(Int64(configuration.auditFlushGrace * 1000)),
                spill: AuditSpill(directory: configuration.auditSpillDirectory), storeReady: storeReady,
                afterWrite: { webhookDoorbell.ring() })),
            .init(service: WebhookDispatcher(
                store: store, directory: directory, settings: configuration.webhooks, metrics: metrics, doorbell: webhookDoorbell,
                clock: clock, logger: logger, storeReady: storeReady)),
            .init(service: HubService(
                hub: hub, bus: bus, directory: directory, metrics: metrics, audit: audit, logger: logger, subscribed: node.rosterReady)),
            .init(service: RetentionService(
                store: store, days: configuration.auditRetentionDays, clock: clock, logger: logger, storeReady: storeReady)),
            .init(service: adminApp),
            .init(service: ReadinessGaugeService(node: node)),
        ]
        // The in-process TURN server starts before the public port, so the first `welcome`
        // can already carry its URLs, and stops after it.
        if let embeddedTURN { services.append(.init(service: embeddedTURN)) }
        services += [
            .init(service: publicApp),
            .init(service: DrainService(hub: hub, timeout: .milliseconds(Int64(configuration.drainTimeout * 1000)), jitterMs: configuration.drainRetryAfterBoundMs, logger: logger)),
        ]
        group = ServiceGroup(configuration: .init(
            services: services, gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger))
    }

    /// The TURN server to run in this process (SPEC §1 embedded default), or nil when TURN
    /// URLs are configured, `SWITCHBOARD_TURN_EMBEDDED=false`, or it cannot be set up (no
    /// address to advertise: a warning, the node runs without it).
    static func embeddedTURN(
        configuration: ServerConfiguration, endpoints: TURNEndpoints, bus: any MessageBus, metricsFactory: any MetricsFactory, logger: Logger
    ) throws -> EmbeddedTURNService? {
        guard configuration.runsEmbeddedTURN else { return nil }
        var settings = configuration.turn
        let generated: String?
        if configuration.turnSecrets.isEmpty {
            let secret = try TURNSecretFile.resolve(path: configuration.resolvedTURNSecretFile, logger: logger)
            settings.secrets = [secret]
            generated = secret
        } else {
            settings.secrets = configuration.turnSecrets
            generated = nil
        }
        settings.nodeID = configuration.nodeID
        settings.drainTimeout = configuration.drainTimeout
        do {
            let turn = try TURNNode(configuration: settings, logger: logger, metricsFactory: metricsFactory)
            return EmbeddedTURNService(turn: turn, endpoints: endpoints, generatedSecret: generated, bus: bus, logger: logger)
        } catch {
            logger.warning("the embedded TURN server is off", metadata: ["reason": "\(error)"])
            return nil
        }
    }

    static func publicApplication(node: Node, onBound: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
        let configuration = node.configuration
        let router = Router(context: APIContext.self)
        router.middlewares.add(CloseAfterResponseMiddleware())
        router.middlewares.add(ErrorBodyMiddleware())
        let v1 = router.group("v1")
        v1.get("openapi.yaml") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "application/yaml"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
        }
        v1.get("signal") { _, _ -> Response in
            APIError.response(status: .upgradeRequired, code: "bad_request", message: "this endpoint takes a WebSocket upgrade")
        }
        OperatorRoutes(node: node).register(on: v1.group().add(middleware: OperatorAuthMiddleware(adminToken: node.adminToken)))
        TenantRoutes(node: node).register(on: v1.group().add(middleware: TenantAuthMiddleware(node: node)))

        let environment = GatewayEnvironment(
            hub: node.hub, metrics: node.metrics,
            limits: FrameLimits(maxFrameBytes: configuration.maxFrameBytes),
            heartbeat: .seconds(Int64(configuration.heartbeatSeconds)),
            floodCloseAfter: configuration.floodCloseSeconds > 0 ? .milliseconds(Int64(configuration.floodCloseSeconds * 1000)) : nil,
            logger: node.logger,
            iceServers: { tenantID, peerId in
                let (credentials, servers) = node.iceServers(tenantID: tenantID, peerId: peerId, ttl: configuration.turnCredentialTTL)
                return ((try? RawJSON(encoding: servers)) ?? .emptyArray, credentials?.expiresAt)
            })
        let authorizer = UpgradeAuthorizer(node: node)
        let channel = SignalingHTTPChannel.Configuration()
        return Application(
            router: router,
            server: .signaling(
                configuration: channel,
                authorize: { request, channel in await authorizer.decide(request, channel: channel) },
                makeHandler: { connect, channel in SignalConnection(environment: environment, connect: connect, eventLoop: channel.eventLoop) }),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "switchboard"),
            onServerRunning: { onBound($0.localAddress?.port ?? 0) },
            logger: node.logger)
    }

    /// Runs until shutdown; returns after the drain and the final audit flush.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { [ports, boundPorts] in
                for await (name, port) in ports { await boundPorts.set(name, port) }
            }
            do {
                try await group.run()
            } catch {
                await boundPorts.fail()
                tasks.cancelAll()
                await store.close()
                throw error
            }
            await boundPorts.fail()
            tasks.cancelAll()
        }
        await store.close()
    }

    /// The public and admin ports once both listen (useful with port 0); nil when the node
    /// stopped before both were listening (a port in use, say: ``run()`` throws why).
    public func waitUntilListening() async -> (public: Int, admin: Int)? {
        await boundPorts.wait()
    }

    /// The TURN URLs handed to clients now (the in-process server's once it listens, then
    /// the static ones).
    public var turnURLs: [String] { node.turn.urls }

    /// Starts the graceful shutdown a SIGTERM would.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
    }
}

/// The ports the listeners bound.
actor BoundPorts {
    private var ports: [String: Int] = [:]
    private var stopped = false
    private var waiters: [CheckedContinuation<(public: Int, admin: Int)?, Never>] = []

    func set(_ name: String, _ port: Int) {
        ports[name] = port
        guard let publicPort = ports["public"], let adminPort = ports["admin"] else { return }
        for waiter in waiters { waiter.resume(returning: (publicPort, adminPort)) }
        waiters.removeAll()
    }

    /// The node stopped: nobody waits for ports any more.
    func fail() {
        stopped = true
        for waiter in waiters { waiter.resume(returning: nil) }
        waiters.removeAll()
    }

    func wait() async -> (public: Int, admin: Int)? {
        if let publicPort = ports["public"], let adminPort = ports["admin"] { return (publicPort, adminPort) }
        if stopped { return nil }
        return await withCheckedContinuation { waiters.append($0) }
    }
}

/// A configuration that cannot run.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The master key: configured, or read from / generated into a 0600 file (embedded mode).
enum MasterKey {
    /// Whether the key opens a stored secret (true when there are none yet).
    static func opens(store: any Store, secrets: SecretBox) async throws -> Bool {
        guard let tenant = try await store.tenants(after: nil, limit: 1).items.first,
            let key = try await store.keys(tenantID: tenant.id, after: nil, limit: 1).items.first
        else { return true }
        return (try? secrets.open(key.sealedSecret, apiKey: key.apiKey)) != nil
    }

    static func resolve(_ configuration: ServerConfiguration, logger: Logger) throws -> String {
        if let key = configuration.masterKey { return key }
        let path = configuration.masterKeyFile
        if let existing = FileManager.default.contents(atPath: path) {
            return String(decoding: existing, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let key = SecretBox.generateKey()
        guard FileManager.default.createFile(atPath: path, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ConfigurationError("cannot write the master key file at \(path)")
        }
        logger.notice("generated a master key", metadata: ["file": "\(path)"])
        return key
    }
}

/// `Docs/openapi.yaml`, bundled with the server.
/// `Resources/openapi.yaml`, compiled into the binary by the EmbedFiles plugin.
enum OpenAPIDocument {
    static let bytes: [UInt8] = BundledOpenAPI.files.first?.bytes ?? []
}

extension Tenant: ResponseEncodable {}
