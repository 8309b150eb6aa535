import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import RedisBus
import STUN
import ServiceLifecycle
import TURNServer

/// `switchboard turn`: a TURN node (SPEC §1, §6) and its admin port (`/metrics`,
/// `/healthz`, `/readyz`). Flags are the `SWITCHBOARD_*` variables without the prefix.
struct Turn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a TURN node: STUN/TURN over UDP and TCP (and TLS) with the time-limited credentials of SPEC §6.")

    @Option(help: "Bind address of every listener and relay (SWITCHBOARD_HOST, default 0.0.0.0).") var host: String?
    @Option(name: .customLong("admin-port"), help: "Metrics and probes port (SWITCHBOARD_ADMIN_PORT, default 9090).") var adminPort: Int?
    @OptionGroup var turn: TURNOptions
    @Option(name: .customLong("turn-secrets"), help: "Comma-separated TURN secrets; all verify (SWITCHBOARD_TURN_SECRETS).") var secrets: String?
    @Flag(name: .customLong("strict-expiry"), help: "End allocations when their credential expires (SWITCHBOARD_TURN_STRICT_EXPIRY).") var strictExpiry = false
    @Option(name: .customLong("turn-quota"), help: "Allocations per tenant on this node (SWITCHBOARD_TURN_QUOTA, default unlimited).") var quota: Int?
    @Option(name: .customLong("redis-url"), help: "redis:// or rediss:// URL: register in the cluster's TURN registry and hear tenant suspensions (SWITCHBOARD_REDIS_URL).") var redisURL: String?
    @Option(name: .customLong("node-id"), help: "This node's id (SWITCHBOARD_NODE_ID, default the hostname).") var nodeID: String?
    @Option(name: .customLong("drain-timeout"), help: "Seconds to wait for allocations on SIGTERM (SWITCHBOARD_DRAIN_TIMEOUT, default 30).") var drainTimeout: Double?
    @Option(name: .customLong("log-level"), help: "trace…critical (SWITCHBOARD_LOG_LEVEL, default info).") var logLevel: String?
    @Option(name: .customLong("log-format"), help: "json or text (SWITCHBOARD_LOG_FORMAT, default json).") var logFormat: String?

    func run() async throws {
        ResourceLimits.raiseOpenFiles()
        let settings = Settings()
        let (configuration, admin) = try resolve(settings)
        LogSetup.bootstrap(
            level: try Logger.Level(setting: settings.string(logLevel, "SWITCHBOARD_LOG_LEVEL") ?? "info"),
            format: settings.string(logFormat, "SWITCHBOARD_LOG_FORMAT") ?? "json")
        let logger = Logger(label: "switchboard.turn")
        let redisURL = settings.string(redisURL, "SWITCHBOARD_REDIS_URL")
        try await StartupFailure.plain {
            let registry = PrometheusCollectorRegistry()
            let metrics = PrometheusMetricsFactory(registry: registry)
            let node: TURNNode
            do {
                node = try TURNNode(configuration: configuration, logger: logger, metricsFactory: metrics)
            } catch let error as TURNConfigurationError {
                throw StartupFailure(error.description)
            }
            // Started in this order, stopped in reverse: the tenant watcher and the
            // registration go first (the node leaves the registry before it drains), the
            // admin port (so /readyz says "draining" during the drain) and Redis last.
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            var cluster: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let redisURL {
                let redis: RedisConfiguration
                do {
                    redis = try RedisConfiguration(url: redisURL)
                } catch {
                    throw StartupFailure("SWITCHBOARD_REDIS_URL: \(error)")
                }
                let client = RedisClient(configuration: redis, logger: logger)
                let bus = RedisBus(client: client, configuration: .init(nodeID: configuration.nodeID), logger: logger)
                services.append(.init(service: client))
                cluster = [
                    .init(service: TURNRegistration(node: node, registry: RedisTURNRegistry(client: client), logger: logger)),
                    .init(service: TURNTenantControl(node: node, bus: bus, logger: logger)),
                ]
            }
            services.append(.init(service: TURNAdminServer(host: configuration.host, port: admin, registry: registry, node: node, logger: logger)))
            services.append(.init(service: node))
            services += cluster
            let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }

    func resolve(_ settings: Settings) throws -> (TURNServerConfiguration, adminPort: Int) {
        var configuration = TURNServerConfiguration()
        configuration.host = settings.string(host, "SWITCHBOARD_HOST") ?? configuration.host
        try turn.apply(to: &configuration, settings: settings)
        configuration.secrets = settings.list(secrets, "SWITCHBOARD_TURN_SECRETS") ?? []
        configuration.strictExpiry = try strictExpiry || (settings.bool(nil, "SWITCHBOARD_TURN_STRICT_EXPIRY") ?? false)
        configuration.allocationQuotaPerTenant = try settings.int(quota, "SWITCHBOARD_TURN_QUOTA")
        configuration.nodeID = settings.string(nodeID, "SWITCHBOARD_NODE_ID") ?? ProcessInfo.processInfo.hostName
        configuration.drainTimeout = try settings.double(drainTimeout, "SWITCHBOARD_DRAIN_TIMEOUT") ?? configuration.drainTimeout
        let admin = try settings.int(adminPort, "SWITCHBOARD_ADMIN_PORT") ?? 9090
        guard !configuration.secrets.isEmpty else { throw ValidationError("SWITCHBOARD_TURN_SECRETS is required") }
        guard [configuration.port, configuration.tlsPort, admin].allSatisfy({ (0...65535).contains($0) }) else {
            throw ValidationError("ports must be 0–65535")
        }
        guard configuration.drainTimeout >= 0, (configuration.allocationQuotaPerTenant ?? 1) >= 1 else {
            throw ValidationError("the drain timeout must be ≥ 0 and the quota ≥ 1")
        }
        return (configuration, admin)
    }
}

/// The TURN node's admin port: `/metrics` (Prometheus text), `/healthz` (always ok),
/// `/readyz` (ready while listening and not draining). HTTP/1.1 on SwiftNIO, one request
/// per connection.
struct TURNAdminServer: Service {
    let host: String
    let port: Int
    let registry: PrometheusCollectorRegistry
    let node: TURNNode
    let logger: Logger

    func run() async throws {
        let registry = self.registry
        let node = self.node
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(TURNAdminHandler(registry: registry, node: node))
                }
            }
            .bind(host: host, port: port).get()
        logger.info("TURN admin port listening", metadata: ["port": "\(channel.localAddress?.port ?? port)"])
        try? await gracefulShutdown()
        try await channel.close()
    }
}

final class TURNAdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let node: TURNNode
    private var path = ""

    init(registry: PrometheusCollectorRegistry, node: TURNNode) {
        self.registry = registry
        self.node = node
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): path = String(head.uri.split(separator: "?").first ?? "")
        case .body: break
        case .end: respond(context: context)
        }
    }

    private func respond(context: ChannelHandlerContext) {
        let (status, type, body): (HTTPResponseStatus, String, ByteBuffer)
        switch path {
        case "/metrics":
            (status, type, body) = (.ok, "text/plain; version=0.0.4; charset=utf-8", ByteBuffer(bytes: registry.emitToBuffer()))
        case "/healthz":
            (status, type, body) = (.ok, "application/json", ByteBuffer(string: #"{"status":"ok"}"#))
        case "/readyz":
            let current = node.currentStatus
            let ready = current.isListening && !current.isDraining
            let state = current.isDraining ? "draining" : current.isListening ? "ok" : "starting"
            (status, type, body) = (
                ready ? .ok : .serviceUnavailable, "application/json",
                ByteBuffer(string: #"{"status":"\#(ready ? "ready" : "not_ready")","checks":{"turn":"\#(state)"},"allocations":\#(current.allocations)}"#)
            )
        default:
            (status, type, body) = (.notFound, "application/json", ByteBuffer(string: #"{"error":"not_found"}"#))
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
