import ArgumentParser
import STUN
import TURNServer

/// The TURN server's flags and `SWITCHBOARD_TURN_*` variables (SPEC §1), shared by
/// `switchboard turn` and the TURN server `serve` runs in-process.
struct TURNOptions: ParsableArguments {
    @Option(name: .customLong("turn-port"), help: "TURN UDP and TCP port (SWITCHBOARD_TURN_PORT, default 3478).") var port: Int?
    @Option(name: .customLong("turn-relay-ports"), help: "Relay port range LOW-HIGH (SWITCHBOARD_TURN_RELAY_PORTS, default 49152-65535).") var relayPorts: String?
    @Option(name: .customLong("turn-relay-loops"), help: "Event loops that relay, each with its own SO_REUSEPORT listener (SWITCHBOARD_TURN_RELAY_LOOPS, default one per core).") var relayLoops: Int?
    @Option(name: .customLong("turn-public-ip"), help: "Address advertised and used for relays (SWITCHBOARD_TURN_PUBLIC_IP, default the first non-loopback address).") var publicIP: String?
    @Option(name: .customLong("turn-realm"), help: "TURN realm (SWITCHBOARD_TURN_REALM, default switchboard).") var realm: String?
    @Flag(name: .customLong("turn-allow-loopback"), help: "Relay to loopback peers, for tests (SWITCHBOARD_TURN_ALLOW_LOOPBACK=true).") var allowLoopback = false
    @Option(name: .customLong("turn-tls-port"), help: "TURN over TLS port (SWITCHBOARD_TURN_TLS_PORT, default 5349), with a certificate.") var tlsPort: Int?
    @Option(name: .customLong("turn-tls-cert"), help: "PEM certificate chain; enables turns: (SWITCHBOARD_TURN_TLS_CERT).") var tlsCertificate: String?
    @Option(name: .customLong("turn-tls-key"), help: "PEM private key (SWITCHBOARD_TURN_TLS_KEY).") var tlsKey: String?

    /// Applies the flags and variables over `configuration`'s defaults.
    func apply(to configuration: inout TURNServerConfiguration, settings: Settings) throws {
        if let port = try settings.int(port, "SWITCHBOARD_TURN_PORT") {
            guard (0...65535).contains(port) else { throw ValidationError("SWITCHBOARD_TURN_PORT must be 0–65535") }
            configuration.port = port
        }
        if let range = settings.string(relayPorts, "SWITCHBOARD_TURN_RELAY_PORTS") {
            let bounds = range.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard bounds.count == 2, bounds[0] >= 1, bounds[0] < bounds[1], bounds[1] <= 65535 else {
                throw ValidationError("SWITCHBOARD_TURN_RELAY_PORTS must be LOW-HIGH within 1–65535, like 49152-65535")
            }
            configuration.relayPorts = bounds[0]...bounds[1]
        }
        if let loops = try settings.int(relayLoops, "SWITCHBOARD_TURN_RELAY_LOOPS") {
            guard loops >= 1 else { throw ValidationError("SWITCHBOARD_TURN_RELAY_LOOPS must be at least 1") }
            configuration.relayLoops = loops
        }
        if let text = settings.string(publicIP, "SWITCHBOARD_TURN_PUBLIC_IP") {
            guard let address = IPAddress(text) else { throw ValidationError("SWITCHBOARD_TURN_PUBLIC_IP must be an IPv4 or IPv6 address, got \(text)") }
            configuration.publicIP = address
        }
        configuration.realm = settings.string(realm, "SWITCHBOARD_TURN_REALM") ?? configuration.realm
        configuration.allowLoopback = try allowLoopback || (settings.bool(nil, "SWITCHBOARD_TURN_ALLOW_LOOPBACK") ?? configuration.allowLoopback)
        configuration.tlsPort = try settings.int(tlsPort, "SWITCHBOARD_TURN_TLS_PORT") ?? configuration.tlsPort
        configuration.tlsCertificatePath = settings.string(tlsCertificate, "SWITCHBOARD_TURN_TLS_CERT")
        configuration.tlsKeyPath = settings.string(tlsKey, "SWITCHBOARD_TURN_TLS_KEY")
        guard (configuration.tlsCertificatePath == nil) == (configuration.tlsKeyPath == nil) else {
            throw ValidationError("set both SWITCHBOARD_TURN_TLS_CERT and SWITCHBOARD_TURN_TLS_KEY, or neither")
        }
    }
}
