import ArgumentParser
import Foundation
import Signaling
import SwitchboardServer

/// `switchboard token`: mints an access token offline (SPEC §1).
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mint a client access token offline and print it.")

    @Option(name: .customLong("api-key"), help: "The API key (AK…); becomes the JWT `kid` and `iss`.") var apiKey: String
    @Option(name: .customLong("api-secret"), help: "The API secret, exactly as shown when the key was created.") var apiSecret: String
    @Option(help: "Room name.") var room: String
    @Option(name: .customLong("peer-id"), help: "Peer id (`sub`).") var peerId: String
    @Option(help: "Lifetime in seconds.") var ttl: Int = 3600
    @Option(help: "Peer metadata, a JSON object (≤ 4 KiB).") var metadata: String?
    @Option(help: "Comma-separated permissions (default signal,broadcast).") var permissions: String?

    func run() async throws {
        guard Identifier.isValid(room) else { throw ValidationError("--room must be 1–128 characters") }
        guard Identifier.isValid(peerId) else { throw ValidationError("--peer-id must be 1–128 characters") }
        guard ttl > 0 else { throw ValidationError("--ttl must be positive") }
        guard apiSecret.utf8.count >= 32 else { throw ValidationError("--api-secret must be at least 32 bytes") }
        var raw: RawJSON?
        if let metadata {
            guard let parsed = try? RawJSON(validating: metadata), parsed.kind == .object, parsed.bytes.count <= 4096 else {
                throw ValidationError("--metadata must be a JSON object of at most 4 KiB")
            }
            raw = parsed
        }
        let claims = AccessClaims(
            issuer: apiKey, subject: peerId, room: room, expiresAt: Date().addingTimeInterval(Double(ttl)).rounded(),
            metadata: raw, permissions: permissions.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } })
        print(try await AccessTokens.mint(claims, apiKey: apiKey, secret: apiSecret))
    }
}

extension Date {
    /// Whole seconds, as JWT times are.
    func rounded() -> Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}
