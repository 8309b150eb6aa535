// Lives here until the executable depends on TURNServer; then: git mv scripts/turn-interop/Turn.swift Sources/switchboard/Turn.swift
// (add "TURNServer" and "STUN" to the switchboard executable's dependencies and Turn.self to its subcommands).
import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
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
    @Option(name: .customLong("turn-port"), help: "UDP and TCP listen port (SWITCHBOARD_TURN_PORT, default 3478).") var turnPort: Int?
    @Option(name: .customLong("turn-relay-ports"), help: "Relay port range (SWITCHBOARD_TURN_RELAY_PORTS, default 49152-65535).") var relayPorts: String?
    @Option(name: .customLong("turn-public-ip"), help: "Address advertised for relays (SWITCHBOARD_TURN_PUBLIC_IP, default the first non-loopback address).") var publicIP: String?
    @Option(name: .customLong("turn-realm"), help: "Realm (SWITCHBOARD_TURN_REALM, default switchboard).") var realm: String?
    @Option(name: .customLong("turn-secrets"), help: "Comma-separated TURN secrets; all verify (SWITCHBOARD_TURN_SECRETS).") var secrets: String?
    @Flag(name: .customLong("turn-allow-loopback"), help: "Relay to loopback peers, for tests (SWITCHBOARD_TURN_ALLOW_LOOPBACK).") var allowLoopback = false
    @Flag(name: .customLong("strict-expiry"), help: "End allocations when their credential expires (SWITCHBOARD_TURN_STRICT_EXPIRY).") var strictExpiry = false
    @Option(name: .customLong("turn-quota"), help: "Allocations per tenant on this node (SWITCHBOARD_TURN_QUOTA, default unlimited).") var quota: Int?
    @Option(name: .customLong("turn-tls-port"), help: "TURN over TLS port (SWITCHBOARD_TURN_TLS_PORT, default 5349).") var tlsPort: Int?
    @Option(name: .customLong("turn-tls-cert"), help: "PEM certificate chain; enables turns: (SWITCHBOARD_TURN_TLS_CERT).") var tlsCertificate: String?
    @Option(name: .customLong("turn-tls-key"), help: "PEM private key (SWITCHBOARD_TURN_TLS_KEY).") var tlsKey: String?
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
        let registry = PrometheusCollectorRegistry()
        let node: TURNNode
        do {
            node = try TURNNode(configuration: configuration, logger: logger, metricsFactory: PrometheusMetricsFactory(registry: registry))
        } catch let error as TURNConfigurationError {
            throw ValidationError(error.description)
        }
        let adminServer = TURNAdminServer(host: configuration.host, port: admin, registry: registry, node: node, logger: logger)
        // The admin port stops last, so /readyz says "draining" for the whole drain.
        let group = ServiceGroup(
            configuration: .init(services: [adminServer, node], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    func resolve(_ settings: Settings) throws -> (TURNServerConfiguration, adminPort: Int) {
        var configuration = TURNServerConfiguration()
        configuration.host = settings.string(host, "SWITCHBOARD_HOST") ?? configuration.host
        configuration.port = try settings.int(turnPort, "SWITCHBOARD_TURN_PORT") ?? configuration.port
        if let text = settings.string(relayPorts, "SWITCHBOARD_TURN_RELAY_PORTS") {
            let bounds = text.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard bounds.count == 2, let low = bounds[0], let high = bounds[1], 1 <= low, low < high, high <= 65535 else {
                throw ValidationError("the relay port range must look like 49152-65535")
            }
            configuration.relayPorts = low...high
        }
        if let text = settings.string(publicIP, "SWITCHBOARD_TURN_PUBLIC_IP") {
            guard let address = IPAddress(text) else { throw ValidationError("SWITCHBOARD_TURN_PUBLIC_IP must be an IP address, got \(text)") }
            configuration.publicIP = address
        }
        configuration.realm = settings.string(realm, "SWITCHBOARD_TURN_REALM") ?? configuration.realm
        configuration.secrets = settings.list(secrets, "SWITCHBOARD_TURN_SECRETS") ?? []
        configuration.allowLoopback = try Self.bool(allowLoopback, "SWITCHBOARD_TURN_ALLOW_LOOPBACK", settings)
        configuration.strictExpiry = try Self.bool(strictExpiry, "SWITCHBOARD_TURN_STRICT_EXPIRY", settings)
        configuration.allocationQuotaPerTenant = try settings.int(quota, "SWITCHBOARD_TURN_QUOTA")
        configuration.tlsPort = try settings.int(tlsPort, "SWITCHBOARD_TURN_TLS_PORT") ?? configuration.tlsPort
        configuration.tlsCertificatePath = settings.string(tlsCertificate, "SWITCHBOARD_TURN_TLS_CERT")
        configuration.tlsKeyPath = settings.string(tlsKey, "SWITCHBOARD_TURN_TLS_KEY")
        configuration.nodeID = settings.string(nodeID, "SWITCHBOARD_NODE_ID") ?? ProcessInfo.processInfo.hostName
        configuration.drainTimeout = try settings.double(drainTimeout, "SWITCHBOARD_DRAIN_TIMEOUT") ?? configuration.drainTimeout
        let admin = try settings.int(adminPort, "SWITCHBOARD_ADMIN_PORT") ?? 9090
        guard configuration.tlsCertificatePath == nil || configuration.tlsKeyPath != nil,
            configuration.tlsKeyPath == nil || configuration.tlsCertificatePath != nil
        else { throw ValidationError("set both SWITCHBOARD_TURN_TLS_CERT and SWITCHBOARD_TURN_TLS_KEY, or neither") }
        guard !configuration.secrets.isEmpty else { throw ValidationError("SWITCHBOARD_TURN_SECRETS is required") }
        guard [configuration.port, configuration.tlsPort, admin].allSatisfy({ (0...65535).contains($0) }) else {
            throw ValidationError("ports must be 0–65535")
        }
        guard configuration.drainTimeout >= 0, (configuration.allocationQuotaPerTenant ?? 1) >= 1 else {
            throw ValidationError("the drain timeout must be ≥ 0 and the quota ≥ 1")
        }
        return (configuration, admin)
    }

    /// A boolean setting: the flag when given, else `true`/`1`/`yes` in the variable.
    static func bool(_ flag: Bool, _ variable: String, _ settings: Settings) throws -> Bool {
        if flag { return true }
        guard let text = settings.environment[variable]?.lowercased(), !text.isEmpty else { return false }
        switch text {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ValidationError("\(variable) must be true or false, got \(text)")
        }
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
