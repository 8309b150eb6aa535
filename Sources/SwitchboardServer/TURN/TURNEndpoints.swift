import Logging
import ServiceLifecycle
import Signaling
import Synchronization

/// Where this node's clients get TURN from (SPEC §1, §6): the TURN server running in this
/// process once it listens, the live TURN nodes of the cluster's registry (least loaded
/// first), the static `SWITCHBOARD_TURN_URLS` — and the secret that signs their credentials.
/// Read on every `welcome`; written when the embedded server starts and as the registry
/// changes (``TURNRegistryWatcher``).
final class TURNEndpoints: Sendable {
    struct State: Sendable {
        /// `turn:`/`turns:`/`stun:` URLs of the in-process TURN server while it listens.
        var embeddedURLs: [String] = []
        /// The generated secret of the in-process server, when no secret was configured.
        var embeddedSecret: String?
        /// URLs of the registry's live, non-draining TURN nodes, least loaded first.
        var registeredURLs: [String] = []
    }

    private let staticURLs: [String]
    private let configuredSecrets: [String]
    private let state = Mutex(State())

    init(staticURLs: [String], configuredSecrets: [String]) {
        self.staticURLs = staticURLs
        self.configuredSecrets = configuredSecrets
    }

    /// The URLs handed to clients: the in-process server's first, then the registry's, then
    /// the static ones.
    var urls: [String] {
        state.withLock { $0.embeddedURLs + $0.registeredURLs } + staticURLs
    }

    func registryChanged(urls: [String]) {
        state.withLock { $0.registeredURLs = urls }
    }

    /// The secret new credentials are signed with: the first configured one, else the
    /// in-process server's generated one.
    var signingSecret: String? {
        configuredSecrets.first ?? state.withLock { $0.embeddedSecret }
    }

    func embeddedServerListening(urls: [String], generatedSecret: String?) {
        state.withLock {
            $0.embeddedURLs = urls
            $0.embeddedSecret = generatedSecret
        }
    }

    func embeddedServerStopped() {
        state.withLock { $0.embeddedURLs = [] }
    }
}

/// Cluster mode: reads the TURN registry every 2 s and hands its live, non-draining nodes'
/// URLs, least loaded first, to ``TURNEndpoints``. While Redis cannot be read the last
/// list stays (its nodes' records would lapse in 10 s anyway; clients retry ICE).
struct TURNRegistryWatcher: Service {
    let registry: any TURNRegistry
    let endpoints: TURNEndpoints
    var interval: Duration = .seconds(2)
    let logger: Logger

    func run() async throws {
        var failing = false
        while !Task.isCancelledOrShuttingDown {
            do {
                let nodes = TURNNodeRecord.forClients(try await registry.liveNodes())
                endpoints.registryChanged(urls: nodes.flatMap(\.urls))
                failing = false
            } catch {
                if !failing { logger.warning("cannot read the TURN registry", metadata: ["error": "\(error)"]) }
                failing = true
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
