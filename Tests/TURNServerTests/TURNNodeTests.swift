import Logging
import NIOCore
import NIOPosix
import STUN
import ServiceLifecycle
import TURNServer
import Testing

/// A node on real loopback sockets, driven by a small client over our own codec.
@Suite(.timeLimit(.minutes(2))) struct TURNNodeTests {
    @Test func allocatesRelaysBothWaysAndReleases() async throws {
        try await withTURNNode { node, addresses in
            let client = try await STUNTestClient(serverPort: addresses.udpPort)
            let challenge = try await client.exchange(Requests.make(.allocate, Requests.udp))
            #expect(challenge.errorCode?.code == 401)
            let nonce = try #require(challenge.nonce)
            let user = TestSecrets.username()
            let allocated = try await client.exchange(Requests.make(.allocate, username: user, nonce: nonce, Requests.udp))
            #expect(allocated.type.messageClass == .successResponse)
            #expect(allocated.software == nil)
            let relayed = try #require(allocated.xorAddress(.xorRelayedAddress))
            #expect((61000...61999).contains(Int(relayed.port)))
            #expect(allocated.checkIntegrity(key: Requests.key(username: user)) == .valid(sha256: false))

            let peer = try await STUNTestClient(serverPort: Int(relayed.port))
            let peerAddress = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: UInt16(peer.localPort))
            let permission = try await client.exchange(
                Requests.make(.createPermission, username: user, nonce: nonce) { $0.append(.xorPeerAddress, xorAddress: peerAddress) })
            #expect(permission.type.messageClass == .successResponse)

            var send = STUNMessageEncoder(type: STUNMessageType(method: .send, class: .indication), transactionID: .random())
            send.append(.xorPeerAddress, xorAddress: peerAddress)
            send.append(.data, bytes: Array("to the peer".utf8))
            try await client.send(send.message)
            #expect(String(buffer: try await peer.nextDatagram()) == "to the peer")

            try await peer.send(ByteBuffer(string: "to the client"))
            let indication = try STUNMessage(decoding: try await client.nextDatagram())
            #expect(indication.type == STUNMessageType(method: .data, class: .indication))
            #expect(indication.data.map { String(buffer: $0) } == "to the client")

            let bound = try await client.exchange(
                Requests.make(.channelBind, username: user, nonce: nonce) {
                    $0.append(.channelNumber, bytes: [0x40, 0x00, 0, 0])
                    $0.append(.xorPeerAddress, xorAddress: peerAddress)
                })
            #expect(bound.type.messageClass == .successResponse)
            try await client.send(ChannelData(channel: 0x4000, payload: ByteBuffer(string: "over a channel")).encoded(padded: false))
            #expect(String(buffer: try await peer.nextDatagram()) == "over a channel")
            try await peer.send(ByteBuffer(string: "back on the channel"))
            let back = try #require(ChannelData(decoding: try await client.nextDatagram()))
            #expect(back.channel == 0x4000 && String(buffer: back.payload) == "back on the channel")

            let status = try await node.status()
            #expect(status.allocations == 1 && status.permissions == 1 && status.channels == 1)
            #expect(status.allocationsByTenant == ["acme": 1])

            let released = try await client.exchange(Requests.make(.refresh, username: user, nonce: nonce) { $0.append(.lifetime, uint32: 0) })
            #expect(released.lifetime == 0)
            #expect(try await node.status().allocations == 0)
            await peer.close()
            await client.close()
        }
    }

    /// Datagrams that queue up while the node is busy are read in bursts (NIO reads the first,
    /// recvmmsg the rest, up to a limit per socket, then NIO again): all arrive, in order, both
    /// ways; a datagram longer than 2,048 B is dropped wherever it falls, not relayed cut short.
    @Test func burstsQueuedWhileTheNodeIsBusyArriveWholeAndInOrder() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        var failure: (any Error)?
        do { try await relayBursts(group: group, loop: loop) } catch { failure = error }
        try await group.shutdownGracefully()
        if let failure { throw failure }
    }

    private func relayBursts(group: MultiThreadedEventLoopGroup, loop: any EventLoop) async throws {
        try await withTURNNode(eventLoopGroup: group) { _, addresses in
            let client = try await STUNTestClient(serverPort: addresses.udpPort)
            let nonce = try #require(try await client.exchange(Requests.make(.allocate, Requests.udp)).nonce)
            let user = TestSecrets.username()
            let allocated = try await client.exchange(Requests.make(.allocate, username: user, nonce: nonce, Requests.udp))
            let relayed = try #require(allocated.xorAddress(.xorRelayedAddress))
            let peer = try await STUNTestClient(serverPort: Int(relayed.port))
            let peerAddress = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: UInt16(peer.localPort))
            let bound = try await client.exchange(
                Requests.make(.channelBind, username: user, nonce: nonce) {
                    $0.append(.channelNumber, bytes: [0x40, 0x00, 0, 0])
                    $0.append(.xorPeerAddress, xorAddress: peerAddress)
                })
            #expect(bound.type.messageClass == .successResponse)

            let count = 150
            let oversized = ByteBuffer(repeating: 0x55, count: 3000)
            // the node's only event loop sleeps while both sides send
            let busy = loop.submit { usleep(400_000) }
            try await Task.sleep(for: .milliseconds(50))
            try await peer.send(oversized)
            for index in 0..<count {
                if index == count / 2 { try await peer.send(oversized) }
                try await peer.send(ByteBuffer(string: "peer \(index)"))
                try await client.send(ChannelData(channel: 0x4000, payload: ByteBuffer(string: "client \(index)")).encoded(padded: false))
            }
            try await client.send(ChannelData(channel: 0x4000, payload: ByteBuffer(repeating: 0x55, count: 2100)).encoded(padded: false))
            _ = try await busy.get()

            for index in 0..<count {
                let back = try #require(ChannelData(decoding: try await client.nextDatagram()))
                #expect(String(buffer: back.payload) == "peer \(index)")
                #expect(String(buffer: try await peer.nextDatagram()) == "client \(index)")
            }
            // nothing else comes: the oversized ones were dropped
            try await peer.send(ByteBuffer(string: "last"))
            let last = try #require(ChannelData(decoding: try await client.nextDatagram()))
            #expect(String(buffer: last.payload) == "last")
            try await client.send(ChannelData(channel: 0x4000, payload: ByteBuffer(string: "last")).encoded(padded: false))
            #expect(String(buffer: try await peer.nextDatagram()) == "last")
            await peer.close()
            await client.close()
        }
    }

    @Test func refusesInternalPeersButNotItsOwnRelays() async throws {
        try await withTURNNode(configure: { $0.allowLoopback = false }) { _, addresses in
            let client = try await STUNTestClient(serverPort: addresses.udpPort)
            let nonce = try #require(try await client.exchange(Requests.make(.allocate, Requests.udp)).nonce)
            let user = TestSecrets.username()
            let allocated = try await client.exchange(Requests.make(.allocate, username: user, nonce: nonce, Requests.udp))
            let relayed = try #require(allocated.xorAddress(.xorRelayedAddress))
            for text in ["127.0.0.2", "10.1.2.3", "169.254.1.1", "0.0.0.0", "224.0.0.1"] {
                let peer = TransportAddress(ip: try #require(IPAddress(text)), port: 9)
                let refused = try await client.exchange(
                    Requests.make(.createPermission, username: user, nonce: nonce) { $0.append(.xorPeerAddress, xorAddress: peer) })
                #expect(refused.errorCode?.code == 403, "\(text)")
            }
            // the node's own relay address (127.0.0.1 here) on a relay port is allowed …
            let own = try await client.exchange(
                Requests.make(.channelBind, username: user, nonce: nonce) {
                    $0.append(.channelNumber, bytes: [0x40, 0x01, 0, 0])
                    $0.append(.xorPeerAddress, xorAddress: relayed)
                })
            #expect(own.type.messageClass == .successResponse)
            // … but not its other ports
            let other = try await client.exchange(
                Requests.make(.channelBind, username: user, nonce: nonce) {
                    $0.append(.channelNumber, bytes: [0x40, 0x02, 0, 0])
                    $0.append(.xorPeerAddress, xorAddress: TransportAddress(ip: relayed.ip, port: UInt16(addresses.udpPort)))
                })
            #expect(other.errorCode?.code == 403)
            await client.close()
        }
    }

    @Test func silentTCPConnectionsWithoutAnAllocationAreClosed() async throws {
        try await withTURNNode(configure: { $0.streamIdleTimeout = .milliseconds(200) }) { _, addresses in
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: addresses.tcpPort).get()
            let closed = channel.closeFuture
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await closed.get() }
                group.addTask {
                    try await Task.sleep(for: .seconds(10))
                    throw TestTimeout()
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    @Test func gracefulShutdownRefusesNewAllocationsAndWaitsForOpenOnes() async throws {
        var configuration = testTURNConfiguration(relayPorts: 62000...62999)
        configuration.drainTimeout = 60
        let logger = Logger(label: "turn-drain-test")
        let node = try TURNNode(configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [node], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let addresses = try await node.waitUntilListening()
            let client = try await STUNTestClient(serverPort: addresses.udpPort)
            let nonce = try #require(try await client.exchange(Requests.make(.allocate, Requests.udp)).nonce)
            let user = TestSecrets.username()
            let first = try await client.exchange(Requests.make(.allocate, username: user, nonce: nonce, Requests.udp))
            #expect(first.type.messageClass == .successResponse)

            await group.triggerGracefulShutdown()
            try await waitUntil { try await node.status().isDraining }
            let late = try await STUNTestClient(serverPort: addresses.udpPort)
            let refused = try await late.exchange(Requests.make(.allocate, username: user, nonce: nonce, Requests.udp))
            #expect(refused.errorCode?.code == 403)
            #expect(try await node.status().isListening)  // still serving the open allocation

            let released = try await client.exchange(Requests.make(.refresh, username: user, nonce: nonce) { $0.append(.lifetime, uint32: 0) })
            #expect(released.type.messageClass == .successResponse)
            try await tasks.waitForAll()  // the drain ends with the last allocation, long before 60 s
            await client.close()
            await late.close()
        }
    }
}

/// Polls `condition` until it holds (deadline 10 s).
func waitUntil(_ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestTimeout() }
        try await Task.sleep(for: .milliseconds(20))
    }
}
