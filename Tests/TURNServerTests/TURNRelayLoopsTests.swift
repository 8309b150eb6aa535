import Logging
import NIOCore
import NIOPosix
import STUN
import Testing

@testable import TURNServer

/// A node relaying on two event loops (`relayLoops`): one `SO_REUSEPORT` listener each on one
/// port, clients spread over them by the kernel, and what the loops share — the tenant quota,
/// reservation tokens, the port — holding across them.
@Suite(.timeLimit(.minutes(2))) struct TURNRelayLoopsTests {
    /// Runs `body` against a node with two relay loops on a group of two threads of its own.
    private func withTwoLoops(
        configure: @escaping (inout TURNServerConfiguration) -> Void = { _ in },
        _ body: @Sendable (TURNNode, TURNListeningAddresses) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var failure: (any Error)?
        do {
            try await withTURNNode(configure: { $0.relayLoops = 2; configure(&$0) }, eventLoopGroup: group) { node, addresses in
                #expect(node.relayLoops == 2)
                try await body(node, addresses)
            }
        } catch { failure = error }
        try await group.shutdownGracefully()
        if let failure { throw failure }
    }

    @Test func clientsSpreadOverBothLoopsAndEachRelays() async throws {
        try await withTwoLoops { node, addresses in
            let peer = try await STUNTestClient(serverPort: addresses.udpPort)
            let peerAddress = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: UInt16(peer.localPort))
            var clients: [(STUNTestClient, TransportAddress)] = []
            var nonce = ""
            for index in 0..<24 {
                let client = try await STUNTestClient(serverPort: addresses.udpPort)
                if nonce.isEmpty { nonce = try #require(try await client.exchange(Requests.make(.allocate, Requests.udp)).nonce) }
                let user = TestSecrets.username(peer: "peer\(index)")
                let allocated = try await client.exchange(Requests.make(.allocate, username: user, nonce: nonce, Requests.udp))
                let relayed = try #require(allocated.xorAddress(.xorRelayedAddress))
                let bound = try await client.exchange(
                    Requests.make(.channelBind, username: user, nonce: nonce) {
                        $0.append(.channelNumber, bytes: [0x40, 0x00, 0, 0])
                        $0.append(.xorPeerAddress, xorAddress: peerAddress)
                    })
                #expect(bound.type.messageClass == .successResponse)
                clients.append((client, relayed))
            }
            // the kernel spread the 24 clients' 5-tuples over both listeners
            let byLoop = try await node.allocationsByLoop()
            #expect(byLoop.count == 2 && byLoop.allSatisfy { $0 > 0 } && byLoop.reduce(0, +) == 24, "\(byLoop)")
            #expect(Set(clients.map(\.1.port)).count == 24)
            // every allocation relays both ways, on whichever loop it is
            for (index, (client, relayed)) in clients.enumerated() {
                try await client.send(ChannelData(channel: 0x4000, payload: ByteBuffer(string: "from \(index)")).encoded(padded: false))
                let arrived = try await peer.nextDatagramWithSender()
                #expect(String(buffer: arrived.data) == "from \(index)")
                #expect(arrived.sender.port == Int(relayed.port))
                try await peer.send(ByteBuffer(string: "to \(index)"), to: arrived.sender)
                let back = try #require(ChannelData(decoding: try await client.nextDatagram()))
                #expect(String(buffer: back.payload) == "to \(index)")
            }
            let status = try await node.status()
            #expect(status.allocations == 24 && status.channels == 24 && status.allocationsByTenant == ["acme": 24])
            for (client, _) in clients { await client.close() }
            await peer.close()
        }
    }

    @Test func theTenantQuotaHoldsAcrossLoops() async throws {
        try await withTwoLoops(configure: { $0.allocationQuotaPerTenant = 3 }) { node, addresses in
            var outcomes: [Int] = []
            var nonce = ""
            var clients: [STUNTestClient] = []
            for index in 0..<12 {
                let client = try await STUNTestClient(serverPort: addresses.udpPort)
                clients.append(client)
                if nonce.isEmpty { nonce = try #require(try await client.exchange(Requests.make(.allocate, Requests.udp)).nonce) }
                let answer = try await client.exchange(
                    Requests.make(.allocate, username: TestSecrets.username(peer: "p\(index)"), nonce: nonce, Requests.udp))
                outcomes.append(answer.errorCode?.code ?? 200)
            }
            #expect(outcomes.filter { $0 == 200 }.count == 3 && outcomes.filter { $0 == 486 }.count == 9, "\(outcomes)")
            #expect(try await node.status().allocations == 3)
            for client in clients { await client.close() }
        }
    }

    /// EVEN-PORT's R bit keeps the next port; the token comes back from another 5-tuple, which
    /// the kernel may give to the other loop: the reserved socket is read from there.
    @Test func aReservationTokenFromTheOtherLoopGetsTheKeptPort() async throws {
        try await withTwoLoops { node, addresses in
            let first = try await STUNTestClient(serverPort: addresses.udpPort)
            let nonce = try #require(try await first.exchange(Requests.make(.allocate, Requests.udp)).nonce)
            let user = TestSecrets.username()
            let reserving = try await first.exchange(Requests.make(.allocate, username: user, nonce: nonce) {
                Requests.udp(&$0)
                $0.append(.evenPort, bytes: [0x80])
            })
            let relayed = try #require(reserving.xorAddress(.xorRelayedAddress))
            let token = try #require(reserving.reservationToken)
            #expect(relayed.port % 2 == 0)
            let firstLoop = try #require(try await node.allocationsByLoop().firstIndex(of: 1))

            // a client on the other loop: each candidate allocates once to show where it is, then releases
            var other: STUNTestClient?
            var candidates: [STUNTestClient] = []
            for _ in 0..<40 where other == nil {
                let candidate = try await STUNTestClient(serverPort: addresses.udpPort)
                candidates.append(candidate)
                let probe = try await candidate.exchange(Requests.make(.allocate, username: user, nonce: nonce, Requests.udp))
                #expect(probe.type.messageClass == .successResponse)
                let byLoop = try await node.allocationsByLoop()
                let released = try await candidate.exchange(Requests.make(.refresh, username: user, nonce: nonce) { $0.append(.lifetime, uint32: 0) })
                #expect(released.lifetime == 0)
                if byLoop[firstLoop] == 1 { other = candidate }
            }
            let claimant = try #require(other)
            let claimed = try await claimant.exchange(Requests.make(.allocate, username: user, nonce: nonce) {
                Requests.udp(&$0)
                $0.append(.reservationToken, bytes: (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * UInt64($0))) })
            })
            #expect(claimed.xorAddress(.xorRelayedAddress)?.port == relayed.port + 1)
            #expect(try await node.allocationsByLoop().allSatisfy { $0 == 1 })

            // and it relays from there
            let peer = try await STUNTestClient(serverPort: Int(relayed.port) + 1)
            let peerAddress = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: UInt16(peer.localPort))
            let permitted = try await claimant.exchange(
                Requests.make(.createPermission, username: user, nonce: nonce) { $0.append(.xorPeerAddress, xorAddress: peerAddress) })
            #expect(permitted.type.messageClass == .successResponse)
            try await peer.send(ByteBuffer(string: "to the claimant"))
            let indication = try STUNMessage(decoding: try await claimant.nextDatagram())
            #expect(indication.data.map { String(buffer: $0) } == "to the claimant")
            for client in candidates + [first, peer] { await client.close() }
        }
    }

    /// A `SO_REUSEPORT` group admits any socket of the same user: a second node must not join
    /// the first one's port (and split its clients), it must fail to start as with one loop.
    /// With one loop (no `SO_REUSEPORT`) the bind itself fails, and says the same.
    @Test(arguments: [1, 2]) func aSecondNodeOnTheSamePortFailsToStart(loops: Int) async throws {
        try await withTwoLoops { _, addresses in
            var configuration = testTURNConfiguration(relayPorts: 62500...62599)
            configuration.port = addresses.udpPort
            configuration.relayLoops = loops
            var logger = Logger(label: "turn-test")
            logger.logLevel = .critical
            let second = try TURNNode(configuration: configuration, logger: logger)
            let error = await #expect(throws: TURNConfigurationError.self) { try await second.run() }
            #expect(error?.description == "port \(addresses.udpPort) is in use by another process: choose a free one with --turn-port (SWITCHBOARD_TURN_PORT)")
            await #expect(throws: (any Error).self) { try await second.waitUntilListening() }
        }
    }
}
