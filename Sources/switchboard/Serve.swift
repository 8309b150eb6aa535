import ArgumentParser
import Foundation
import Logging
import NIOCore
import SwitchboardServer
import TURNServer

/// `switchboard serve`: one signaling node (SPEC §1).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a signaling node: WebSocket gateway, REST API, metrics.")

    @Option(help: "Bind address of every listener (SWITCHBOARD_HOST, default 0.0.0.0).") var host: String?
    @Option(help: "Public HTTP + WebSocket port (SWITCHBOARD_PORT, default 8080).") var port: Int?
    @Option(name: .customLong("admin-port"), help: "Metrics and probes port (SWITCHBOARD_ADMIN_PORT, default 9090).") var adminPort: Int?
    @Option(name: .customLong("redis-url"), help: "redis:// or rediss:// URL; unset = embedded bus (SWITCHBOARD_REDIS_URL).") var redisURL: String?
    @Option(name: .customLong("database-url"), help: "postgres:// URL; unset = SQLite (SWITCHBOARD_DATABASE_URL).") var databaseURL: String?
    @Option(name: .customLong("sqlite-path"), help: "Embedded store file (SWITCHBOARD_SQLITE_PATH, default ./switchboard.sqlite).") var sqlitePath: String?
    @Option(name: .customLong("admin-token"), help: "Operator bearer token; generated when unset (SWITCHBOARD_ADMIN_TOKEN).") var adminToken: String?
    @Option(name: .customLong("master-key"), help: "Base64 of 32 bytes; encrypts API secrets (SWITCHBOARD_MASTER_KEY).") var masterKey: String?
    @Option(name: .customLong("master-key-file"), help: "Where the generated master key is kept when none is given (SWITCHBOARD_MASTER_KEY_FILE, default ./switchboard.key).") var masterKeyFile: String?
    @Option(name: .customLong("node-id"), help: "This node's id (SWITCHBOARD_NODE_ID, default the hostname).") var nodeID: String?
    @Option(name: .customLong("public-url"), help: "How clients reach this service (SWITCHBOARD_PUBLIC_URL).") var publicURL: String?
    @Option(name: .customLong("drain-timeout"), help: "Seconds to wait for sessions on SIGTERM (SWITCHBOARD_DRAIN_TIMEOUT, default 30).") var drainTimeout: Double?
    @Option(name: .customLong("resume-window"), help: "Seconds a dropped session can be resumed (SWITCHBOARD_RESUME_WINDOW, default 30).") var resumeWindow: Double?
    @Option(name: .customLong("turn-secrets"), help: "Comma-separated TURN secrets; the first signs (SWITCHBOARD_TURN_SECRETS).") var turnSecrets: String?
    @Option(name: .customLong("turn-urls"), help: "Comma-separated turn:/stun: URLs (SWITCHBOARD_TURN_URLS).") var turnURLs: String?
    @Option(name: .customLong("turn-embedded"), help: "Run the TURN server in this process when no TURN URLs are set: true or false (SWITCHBOARD_TURN_EMBEDDED, default true without Redis).") var turnEmbedded: String?
    @Option(name: .customLong("turn-secret-file"), help: "Where the in-process TURN server's generated secret is kept when SWITCHBOARD_TURN_SECRETS is unset (SWITCHBOARD_TURN_SECRET_FILE, default switchboard.turn-secret beside the master key file).") var turnSecretFile: String?
    @OptionGroup var turn: TURNOptions
    @Option(name: .customLong("heartbeat-seconds"), help: "Server ping period (SWITCHBOARD_HEARTBEAT_SECONDS, default 20).") var heartbeatSeconds: Int?
    @Option(name: .customLong("event-loops"), help: "Event-loop threads of the node (SWITCHBOARD_EVENT_LOOPS, default 1). One loop spends the least CPU per message (no hand-over between threads); more carry more traffic on one busy node.") var eventLoops: Int?
    @Option(name: .customLong("flood-close-seconds"), help: "Seconds of sustained rate-limit refusals before a connection is closed with 1008; 0 never (SWITCHBOARD_FLOOD_CLOSE_SECONDS, default 5).") var floodCloseSeconds: Double?
    @Option(name: .customLong("max-frame-bytes"), help: "Largest client frame (SWITCHBOARD_MAX_FRAME_BYTES, default 65536).") var maxFrameBytes: Int?
    @Option(name: .customLong("audit-buffer"), help: "Audit events buffered in memory (SWITCHBOARD_AUDIT_BUFFER, default 100000).") var auditBuffer: Int?
    @Option(name: .customLong("audit-retention-days"), help: "Days audit events are kept (SWITCHBOARD_AUDIT_RETENTION_DAYS, default 90).") var auditRetentionDays: Int?
    @Option(name: .customLong("audit-spill-dir"), help: "Where audit events not stored before exit are written, and loaded from at start (SWITCHBOARD_AUDIT_SPILL_DIR, default ./audit-spill).") var auditSpillDirectory: String?
    @Option(name: .customLong("audit-flush-grace"), help: "Seconds the final audit flush retries a failing store before spilling to disk (SWITCHBOARD_AUDIT_FLUSH_GRACE, default 10).") var auditFlushGrace: Double?
    @Option(name: .customLong("log-level"), help: "trace…critical (SWITCHBOARD_LOG_LEVEL, default info).") var logLevel: String?
    @Option(name: .customLong("log-format"), help: "json or text (SWITCHBOARD_LOG_FORMAT, default json).") var logFormat: String?
    @Flag(help: "Apply database migrations at start (PostgreSQL).") var migrate = false
    @Option(name: .customLong("migrations-dir"), help: "Directory of PostgreSQL migrations to use instead of the ones built into the binary (SWITCHBOARD_MIGRATIONS_DIR).") var migrationsDirectory: String?
    @Option(name: .customLong("db-pool-size"), help: "Most PostgreSQL connections (SWITCHBOARD_DB_POOL_SIZE, default 20).") var poolSize: Int?
    @Option(name: .customLong("db-statement-timeout"), help: "Seconds a PostgreSQL statement may run (SWITCHBOARD_DB_STATEMENT_TIMEOUT, default 10).") var statementTimeout: Double?

    @Option(name: .customLong("webhook-timeout"), help: "Seconds a webhook request may take (SWITCHBOARD_WEBHOOK_TIMEOUT, default 10).") var webhookTimeout: Double?
    @Option(name: .customLong("webhook-max-age"), help: "Seconds after an event its webhook delivery is retried (SWITCHBOARD_WEBHOOK_MAX_AGE, default 3600).") var webhookMaxAge: Double?

    func run() async throws {
        ResourceLimits.raiseOpenFiles()
        // One event loop by default: every socket, timer and client of the node then runs on
        // one thread, so a relayed message is never handed between threads (measured: 20–23 µs
        // of CPU per message at 4,000 msg/s against 25–31 µs with a loop per core, and the same
        // 50,000 msg/s with p99 ≈ 5 ms; Docs/performance.md). Set before anything uses NIO's
        // shared group — the one global setting besides logging and metrics.
        let loops = try Settings().int(eventLoops, "SWITCHBOARD_EVENT_LOOPS") ?? 1
        guard (1...256).contains(loops) else { throw ValidationError("--event-loops must be 1–256") }
        NIOSingletons.groupLoopCountSuggestion = loops
        let configuration = try resolve(Settings())
        let format = Settings().string(logFormat, "SWITCHBOARD_LOG_FORMAT") ?? "json"
        LogSetup.bootstrap(level: configuration.logLevel, format: format)
        let logger = Logger(label: "switchboard")
        try await StartupFailure.plain {
            let node = try await SwitchboardNode.make(configuration: configuration, logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await node.run() }
                if let ports = await node.waitUntilListening() {
                    announce(configuration: configuration, node: node, ports: ports, format: format, logger: logger)
                }
                try await group.waitForAll()
            }
        }
    }

    func resolve(_ settings: Settings) throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.host = settings.string(host, "SWITCHBOARD_HOST") ?? configuration.host
        configuration.port = try settings.int(port, "SWITCHBOARD_PORT") ?? configuration.port
        configuration.adminPort = try settings.int(adminPort, "SWITCHBOARD_ADMIN_PORT") ?? configuration.adminPort
        configuration.redisURL = settings.string(redisURL, "SWITCHBOARD_REDIS_URL")
        configuration.databaseURL = settings.string(databaseURL, "SWITCHBOARD_DATABASE_URL")
        configuration.sqlitePath = settings.string(sqlitePath, "SWITCHBOARD_SQLITE_PATH") ?? configuration.sqlitePath
        configuration.adminToken = settings.string(adminToken, "SWITCHBOARD_ADMIN_TOKEN")
        configuration.masterKey = settings.string(masterKey, "SWITCHBOARD_MASTER_KEY")
        configuration.masterKeyFile = settings.string(masterKeyFile, "SWITCHBOARD_MASTER_KEY_FILE") ?? configuration.masterKeyFile
        configuration.nodeID = settings.string(nodeID, "SWITCHBOARD_NODE_ID") ?? configuration.nodeID
        configuration.publicURL = settings.string(publicURL, "SWITCHBOARD_PUBLIC_URL") ?? "http://localhost:\(configuration.port)"
        configuration.drainTimeout = try settings.double(drainTimeout, "SWITCHBOARD_DRAIN_TIMEOUT") ?? configuration.drainTimeout
        configuration.resumeWindow = try settings.double(resumeWindow, "SWITCHBOARD_RESUME_WINDOW") ?? configuration.resumeWindow
        configuration.turnSecrets = settings.list(turnSecrets, "SWITCHBOARD_TURN_SECRETS") ?? []
        configuration.turnURLs = settings.list(turnURLs, "SWITCHBOARD_TURN_URLS") ?? []
        configuration.turnEmbedded = try settings.bool(turnEmbedded, "SWITCHBOARD_TURN_EMBEDDED")
        configuration.turnSecretFile = settings.string(turnSecretFile, "SWITCHBOARD_TURN_SECRET_FILE")
        configuration.turn.host = configuration.host  // SWITCHBOARD_HOST binds every listener
        try turn.apply(to: &configuration.turn, settings: settings)
        configuration.heartbeatSeconds = try settings.int(heartbeatSeconds, "SWITCHBOARD_HEARTBEAT_SECONDS") ?? configuration.heartbeatSeconds
        configuration.floodCloseSeconds = try settings.double(floodCloseSeconds, "SWITCHBOARD_FLOOD_CLOSE_SECONDS") ?? configuration.floodCloseSeconds
        configuration.maxFrameBytes = try settings.int(maxFrameBytes, "SWITCHBOARD_MAX_FRAME_BYTES") ?? configuration.maxFrameBytes
        configuration.auditBufferCapacity = try settings.int(auditBuffer, "SWITCHBOARD_AUDIT_BUFFER") ?? configuration.auditBufferCapacity
        configuration.auditRetentionDays = try settings.int(auditRetentionDays, "SWITCHBOARD_AUDIT_RETENTION_DAYS") ?? configuration.auditRetentionDays
        configuration.auditSpillDirectory = settings.string(auditSpillDirectory, "SWITCHBOARD_AUDIT_SPILL_DIR") ?? configuration.auditSpillDirectory
        configuration.auditFlushGrace = try settings.double(auditFlushGrace, "SWITCHBOARD_AUDIT_FLUSH_GRACE") ?? configuration.auditFlushGrace
        configuration.migrate = migrate
        configuration.migrationsDirectory = settings.string(migrationsDirectory, "SWITCHBOARD_MIGRATIONS_DIR")
        configuration.postgres.poolSize = try settings.int(poolSize, "SWITCHBOARD_DB_POOL_SIZE") ?? configuration.postgres.poolSize
        if let timeout = try settings.double(statementTimeout, "SWITCHBOARD_DB_STATEMENT_TIMEOUT") {
            configuration.postgres.statementTimeout = .milliseconds(Int64(timeout * 1000))
        }
        if let timeout = try settings.double(webhookTimeout, "SWITCHBOARD_WEBHOOK_TIMEOUT") {
            guard timeout > 0, timeout <= 300 else { throw ValidationError("the webhook timeout must be in (0, 300] seconds") }
            configuration.webhooks.timeout = .milliseconds(Int64(timeout * 1000))
        }
        if let maxAge = try settings.double(webhookMaxAge, "SWITCHBOARD_WEBHOOK_MAX_AGE") {
            guard maxAge >= 1 else { throw ValidationError("the webhook max age must be at least 1 second") }
            configuration.webhooks.retry.maxAge = .milliseconds(Int64(maxAge * 1000))
        }
        configuration.logLevel = try Logger.Level(setting: settings.string(logLevel, "SWITCHBOARD_LOG_LEVEL") ?? "info")
        guard (0...65535).contains(configuration.port), (0...65535).contains(configuration.adminPort) else {
            throw ValidationError("ports must be 0–65535")
        }
        guard configuration.heartbeatSeconds >= 1, configuration.maxFrameBytes >= 1024, configuration.resumeWindow >= 0,
            configuration.drainTimeout >= 0, configuration.floodCloseSeconds >= 0, configuration.auditBufferCapacity >= 1, configuration.auditFlushGrace >= 0
        else {
            throw ValidationError("heartbeat ≥ 1 s, max frame ≥ 1024 bytes, windows and buffers ≥ 0")
        }
        return configuration
    }

    /// Says where the node listens: a few plain lines on stdout for a person, or — with JSON
    /// logs — one log record, so a log shipper reading the output sees only JSON lines.
    private func announce(
        configuration: ServerConfiguration, node: SwitchboardNode, ports: (public: Int, admin: Int), format: String, logger: Logger
    ) {
        let shown = configuration.host == "0.0.0.0" ? "localhost" : configuration.host
        let mode = configuration.databaseURL == nil ? "SQLite \(configuration.sqlitePath)" : "PostgreSQL"
        let rest = "http://\(shown):\(ports.public)/v1"
        let webSocket = "ws://\(shown):\(ports.public)/v1/signal"
        let admin = "http://\(shown):\(ports.admin)"
        let generatedToken = configuration.adminToken == nil ? node.adminToken : nil
        // Never the URL itself: it may carry a password.
        let bus = configuration.redisURL == nil ? "in-process" : "Redis"
        guard format == "text" else {
            var metadata: Logger.Metadata = [
                "node": "\(configuration.nodeID)", "store": "\(mode)", "bus": "\(bus)",
                "rest": "\(rest)", "webSocket": "\(webSocket)", "admin": "\(admin)",
            ]
            if let generatedToken { metadata["generatedAdminToken"] = "\(generatedToken)" }
            if !node.turnURLs.isEmpty { metadata["turn"] = "\(node.turnURLs.joined(separator: " "))" }
            logger.notice("switchboard node listening", metadata: metadata)
            return
        }
        var lines = [
            "Switchboard node \(configuration.nodeID) — \(bus) bus, \(mode)",
            "  REST API:   \(rest)   (OpenAPI: /v1/openapi.yaml)",
            "  WebSocket:  \(webSocket)?access_token=…",
            "  Admin:      \(admin)/metrics  /healthz  /readyz",
        ]
        if !node.turnURLs.isEmpty {
            lines.append("  TURN/STUN:  \(node.turnURLs.joined(separator: " "))")
        }
        if let generatedToken {
            lines.append("  Admin token (generated; set SWITCHBOARD_ADMIN_TOKEN to keep one): \(generatedToken)")
        }
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
