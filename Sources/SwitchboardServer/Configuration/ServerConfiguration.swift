import Foundation
import Logging
import PostgresStore
import Signaling
import TURNServer

/// Everything `switchboard serve` is configured with (SPEC §1), built once from flags and
/// environment by the executable, or directly by tests.
public struct ServerConfiguration: Sendable {
    /// Bind address of every listener.
    public var host = "0.0.0.0"
    /// Public HTTP + WebSocket port; 0 picks a free one.
    public var port = 8080
    /// Metrics and probes port; 0 picks a free one.
    public var adminPort = 9090
    /// `redis://…`; nil runs the in-process bus.
    public var redisURL: String?
    /// `postgres://…`; nil runs the embedded SQLite store.
    public var databaseURL: String?
    public var sqlitePath = "./switchboard.sqlite"
    /// Apply `migrations/*.sql` at start (PostgreSQL).
    public var migrate = false
    /// A directory of PostgreSQL migration files to use instead of the ones built into the
    /// binary (`SWITCHBOARD_MIGRATIONS_DIR`); nil uses the bundled ones.
    public var migrationsDirectory: String?
    /// Pool size and timeouts of the PostgreSQL store.
    public var postgres = PostgresSettings()
    /// Operator bearer token; generated at start when nil.
    public var adminToken: String?
    /// Base64 of 32 bytes; when nil, read from (or generated into) ``masterKeyFile``.
    public var masterKey: String?
    public var masterKeyFile = "./switchboard.key"
    public var nodeID: String = ProcessInfo.processInfo.hostName
    public var publicURL = "http://localhost:8080"
    /// Seconds to wait for sessions to leave on SIGTERM.
    public var drainTimeout: Double = 30
    /// Seconds a dropped session can be resumed.
    public var resumeWindow: Double = 30
    /// The first signs TURN credentials; all verify.
    public var turnSecrets: [String] = []
    /// Static `turn:`/`stun:` URLs handed to clients.
    public var turnURLs: [String] = []
    /// Run the TURN server in this process (SPEC §1); nil: yes in the embedded mode (no
    /// Redis) when no TURN URLs are configured.
    public var turnEmbedded: Bool?
    /// The in-process TURN server's settings (port, relay ports, public IP, realm, TLS…);
    /// its secrets and node id come from this configuration.
    public var turn = TURNServerConfiguration()
    /// Where the in-process TURN server's generated secret is kept when no
    /// ``turnSecrets`` are given; nil: `switchboard.turn-secret` beside the master key file.
    public var turnSecretFile: String?

    /// Whether `serve` runs the TURN server in-process.
    public var runsEmbeddedTURN: Bool {
        (turnEmbedded ?? (redisURL == nil)) && turnURLs.isEmpty
    }

    /// The generated TURN secret's file.
    public var resolvedTURNSecretFile: String {
        if let turnSecretFile { return turnSecretFile }
        let directory = (masterKeyFile as NSString).deletingLastPathComponent
        return directory.isEmpty ? "switchboard.turn-secret" : (directory as NSString).appendingPathComponent("switchboard.turn-secret")
    }
    public var heartbeatSeconds = 20
    /// Lifetime of the TURN credentials in `welcome`; `ice-servers` renews them at 80 %.
    public var turnCredentialTTL = 86_400
    /// Largest client frame in bytes (SPEC §3 default 64 KiB).
    public var maxFrameBytes = 64 * 1024
    /// Audit events kept in memory while the store is slow or down.
    public var auditBufferCapacity = 100_000
    /// Audit events written per batch.
    public var auditBatchSize = 1000
    /// Days audit events are kept.
    public var auditRetentionDays = 90
    /// Where audit events the store did not take before exit are written, and loaded from
    /// at the next start.
    public var auditSpillDirectory = "./audit-spill"
    /// Seconds of store failures the final audit flush waits out before spilling to disk.
    public var auditFlushGrace: Double = 10
    /// Frames kept per session for resume.
    public var replayLimits = ReplayBuffer.Limits()
    /// Seconds a client may keep having frames refused by the rate limit (with no quiet
    /// second in between) before its connection is closed with 1008; 0 never closes.
    public var floodCloseSeconds: Double = 5
    /// Largest REST request body in bytes.
    public var maxRequestBodyBytes = 1 << 20
    /// Default access-token lifetime for `POST /v1/tokens`.
    public var defaultTokenTTL = 3600
    public var maxTokenTTL = 86_400
    /// Upper bound of the jittered `retryAfterMs` in `reconnect`.
    public var reconnectJitterMs = 5000

    /// The `retryAfterMs` bound a drain uses: ``reconnectJitterMs``, but at most half the
    /// drain timeout, so every client is back (resumed elsewhere, in a cluster) well before
    /// the drain closes what is left. A client told to wait longer than the drain lasts
    /// would find its session ended by then.
    public var drainRetryAfterBoundMs: Int {
        max(0, min(reconnectJitterMs, Int((drainTimeout * 500).rounded(.down))))
    }
    /// Webhook delivery: timeout, retries, concurrency.
    public var webhooks = WebhookSettings()
    public var logLevel: Logger.Level = .info

    public init() {}

    /// The public WebSocket URL for a token, derived from ``publicURL``.
    public func signalURL(token: String) -> String {
        var base = publicURL
        if base.hasPrefix("https://") {
            base = "wss://" + base.dropFirst("https://".count)
        } else if base.hasPrefix("http://") {
            base = "ws://" + base.dropFirst("http://".count)
        }
        while base.hasSuffix("/") { base.removeLast() }
        return "\(base)/v1/signal?access_token=\(token)"
    }
}
