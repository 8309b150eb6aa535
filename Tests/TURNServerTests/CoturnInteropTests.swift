import Foundation
import STUN
import TURNServer
import Testing

/// coturn's own client (`turnutils_uclient`) and echo peer (`turnutils_peer`) against our
/// node: allocate, permissions/channels and relaying, with TURN REST credentials.
@Suite(.serialized, .timeLimit(.minutes(3)), .enabled(if: CoturnTools.available, "coturn's turnutils_uclient/turnutils_peer are not installed (apt-get install coturn)"))
struct CoturnInteropTests {
    /// Runs the echo peer and the client against a node; returns the client's output.
    func relay(
        transport: [String] = [], username: String, password: String, extra: [String] = [],
        configure: @escaping @Sendable (inout TURNServerConfiguration) -> Void = { _ in }
    ) async throws -> (status: Int32, output: String) {
        try await withTURNNode(configure: configure) { _, addresses in
            let peerPort = try await freeUDPPort()
            let peer = try ChildProcess(CoturnTools.peer, ["-p", "\(peerPort)", "-L", "127.0.0.1"])
            defer { peer.stop() }
            let port = transport.contains("-S") ? (addresses.tlsPort ?? 0) : transport.contains("-t") ? addresses.tcpPort : addresses.udpPort
            let client = try ChildProcess(
                CoturnTools.client,
                transport + extra + ["-u", username, "-w", password, "-e", "127.0.0.1", "-r", "\(peerPort)", "-p", "\(port)", "-n", "20", "-z", "5", "-c", "127.0.0.1"])
            return await client.finish(timeout: .seconds(60))
        }
    }

    @Test func udpWithTheCurrentSecret() async throws {
        let user = TestSecrets.username()
        let result = try await relay(username: user, password: TURNRESTCredentials.password(secret: TestSecrets.current, username: user))
        let counts = try #require(uclientCounts(result.output), "\(result.output)")
        #expect(counts.sent == 20 && counts.received == 20, "\(result.output)")
    }

    @Test func udpWithAnOlderSecret() async throws {
        let user = TestSecrets.username(peer: "bob")
        let result = try await relay(username: user, password: TURNRESTCredentials.password(secret: TestSecrets.older, username: user))
        let counts = try #require(uclientCounts(result.output), "\(result.output)")
        #expect(counts.received == 20, "\(result.output)")
    }

    @Test func tcpWithChannelPadding() async throws {
        let user = TestSecrets.username()
        let result = try await relay(transport: ["-t"], username: user, password: TURNRESTCredentials.password(secret: TestSecrets.current, username: user))
        let counts = try #require(uclientCounts(result.output), "\(result.output)")
        #expect(counts.received == 20, "\(result.output)")
    }

    /// `turns:`: TURN over TLS with a throw-away self-signed certificate.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "openssl is not installed"))
    func tlsWithACertificate() async throws {
        let directory = NSTemporaryDirectory() + "turn-tls-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let openssl = try ChildProcess(
            "/usr/bin/openssl",
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem", "-days", "1", "-subj", "/CN=localhost"])
        #expect(await openssl.finish(timeout: .seconds(30)).status == 0)
        let user = TestSecrets.username()
        let result = try await relay(
            transport: ["-S", "-t"], username: user, password: TURNRESTCredentials.password(secret: TestSecrets.current, username: user),
            configure: {
                $0.tlsCertificatePath = directory + "/cert.pem"
                $0.tlsKeyPath = directory + "/key.pem"
            })
        let counts = try #require(uclientCounts(result.output), "\(result.output)")
        #expect(counts.received == 20, "\(result.output)")
    }

    @Test func sendIndicationsInsteadOfChannels() async throws {
        let user = TestSecrets.username()
        let result = try await relay(username: user, password: TURNRESTCredentials.password(secret: TestSecrets.current, username: user), extra: ["-s"])
        let counts = try #require(uclientCounts(result.output), "\(result.output)")
        #expect(counts.received == 20, "\(result.output)")
    }

    /// Two allocations talking to each other: the peers are the node's own relay addresses,
    /// allowed even with loopback refused.
    @Test func clientToClientThroughOwnRelayAddresses() async throws {
        let user = TestSecrets.username()
        let password = TURNRESTCredentials.password(secret: TestSecrets.current, username: user)
        let output = try await withTURNNode(configure: { $0.allowLoopback = false }) { _, addresses in
            let client = try ChildProcess(
                CoturnTools.client,
                ["-y", "-u", user, "-w", password, "-p", "\(addresses.udpPort)", "-n", "20", "-z", "5", "-c", "127.0.0.1"])
            return await client.finish(timeout: .seconds(60)).output
        }
        let counts = try #require(uclientCounts(output), "\(output)")
        #expect(counts.received == counts.sent && counts.sent > 0, "\(output)")
    }

    /// uclient's negative tests (-N: bad channel numbers and rebinding; -R: malformed
    /// protocol messages) answer as coturn does and leave the node serving.
    @Test func negativeTestsDoNotHurtTheNode() async throws {
        let user = TestSecrets.username()
        let password = TURNRESTCredentials.password(secret: TestSecrets.current, username: user)
        let output = try await withTURNNode { node, addresses in
            let peerPort = try await freeUDPPort()
            let peer = try ChildProcess(CoturnTools.peer, ["-p", "\(peerPort)", "-L", "127.0.0.1"])
            defer { peer.stop() }
            func arguments(_ port: Int) -> [String] {
                ["-u", user, "-w", password, "-e", "127.0.0.1", "-r", "\(peerPort)", "-p", "\(port)", "-n", "10", "-z", "5", "-c", "127.0.0.1"]
            }
            for flags in [["-N"], ["-R"], ["-N", "-t"], ["-O"]] {
                let port = flags.contains("-t") ? addresses.tcpPort : addresses.udpPort
                _ = try await ChildProcess(CoturnTools.client, flags + arguments(port)).finish(timeout: .seconds(5))
            }
            #expect(try await node.status().isListening)
            return try await ChildProcess(CoturnTools.client, arguments(addresses.udpPort)).finish(timeout: .seconds(60)).output
        }
        #expect(uclientCounts(output)?.received == 10, "\(output)")
    }

    @Test func wrongPasswordIsRefused() async throws {
        let user = TestSecrets.username()
        let result = try await relay(username: user, password: TURNRESTCredentials.password(secret: "not-our-secret", username: user))
        #expect(result.status != 0 || (uclientCounts(result.output)?.received ?? 0) == 0, "\(result.output)")
        #expect(result.output.contains("401") || result.output.contains("Unauthorized") || result.status != 0, "\(result.output)")
    }

    @Test func expiredCredentialIsRefused() async throws {
        let user = TestSecrets.username(expiresIn: -60)
        let result = try await relay(username: user, password: TURNRESTCredentials.password(secret: TestSecrets.current, username: user))
        #expect(result.status != 0 || (uclientCounts(result.output)?.received ?? 0) == 0, "\(result.output)")
    }

    @Test func loopbackPeerIsRefusedWithoutTheTestSwitch() async throws {
        let user = TestSecrets.username()
        let result = try await relay(
            username: user, password: TURNRESTCredentials.password(secret: TestSecrets.current, username: user), configure: { $0.allowLoopback = false })
        #expect((uclientCounts(result.output)?.received ?? 0) == 0, "\(result.output)")
        #expect(result.output.contains("403"), "\(result.output)")
    }
}
