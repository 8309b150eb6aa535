import Signaling
import Synchronization

/// Where this node's clients get TURN from (SPEC §1, §6): the static `SWITCHBOARD_TURN_URLS`
/// and, once it listens, the TURN server running in this process — and the secret that signs
/// their credentials. Read on every `welcome`; written when the embedded server starts.
final class TURNEndpoints: Sendable {
    struct State: Sendable {
        /// `turn:`/`turns:`/`stun:` URLs of the in-process TURN server while it listens.
        var embeddedURLs: [String] = []
        /// The generated secret of the in-process server, when no secret was configured.
        var embeddedSecret: String?
    }

    private let staticURLs: [String]
    private let configuredSecrets: [String]
    private let state = Mutex(State())

    init(staticURLs: [String], configuredSecrets: [String]) {
        self.staticURLs = staticURLs
        self.configuredSecrets = configuredSecrets
    }

    /// The URLs handed to clients: the in-process server's first, then the static ones.
    var urls: [String] {
        state.withLock { $0.embeddedURLs } + staticURLs
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
