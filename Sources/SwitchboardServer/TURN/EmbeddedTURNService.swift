import Foundation
import Logging
import ServiceLifecycle
import Signaling
import TURNServer

/// The TURN server of SPEC §6 inside `serve` (the embedded default, SPEC §1): runs a
/// ``TURNNode``, hands its URLs to ``TURNEndpoints`` once it listens, and ends a suspended or
/// deleted tenant's allocations when the bus says so (``TURNTenantControl``).
///
/// A TURN port that cannot be bound is a warning, not a failure: the node runs on without
/// TURN (and hands out no TURN URLs of its own).
struct EmbeddedTURNService: Service {
    let turn: TURNNode
    let endpoints: TURNEndpoints
    /// The secret generated for this server (nil when one was configured).
    let generatedSecret: String?
    let bus: any MessageBus
    let logger: Logger

    func run() async throws {
        defer { endpoints.embeddedServerStopped() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [turn] in try await turn.run() }
            let addresses: TURNListeningAddresses
            do {
                addresses = try await turn.waitUntilListening()
            } catch {
                // Failing before it listens (the port is taken, say) only turns TURN off: the
                // service then waits for the node's shutdown like the others, for a service
                // that returns early ends the whole group.
                _ = try? await group.next()
                logger.warning(
                    "the embedded TURN server could not start; running without it",
                    metadata: ["error": "\(error)", "port": "\(turn.configuration.port)"])
                try? await gracefulShutdown()
                return
            }
            let urls = TURNNodeRecord.urls(host: turn.publicIP.description, port: addresses.udpPort, tlsPort: addresses.tlsPort)
            endpoints.embeddedServerListening(urls: urls, generatedSecret: generatedSecret)
            logger.info("embedded TURN server listening", metadata: ["urls": "\(urls.joined(separator: " "))"])
            group.addTask { [turn, bus, logger] in try await TURNTenantControl(node: turn, bus: bus, logger: logger).run() }
            // The TURN node's task ends at shutdown; then the tenant control's.
            try await group.next()
            group.cancelAll()
        }
    }
}

/// The embedded TURN server's secret: read from, or generated into, a 0600 file beside the
/// master key (SPEC §1), so credentials handed out survive a restart.
enum TURNSecretFile {
    static func resolve(path: String, logger: Logger) throws -> String {
        if let existing = FileManager.default.contents(atPath: path) {
            let secret = String(decoding: existing, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !secret.isEmpty { return secret }
        }
        let secret = Base64URL.random(bytes: 32)
        guard FileManager.default.createFile(atPath: path, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ConfigurationError("cannot write the TURN secret file at \(path): run from a writable directory or set SWITCHBOARD_TURN_SECRETS")
        }
        logger.notice("generated a TURN secret", metadata: ["file": "\(path)"])
        return secret
    }
}
