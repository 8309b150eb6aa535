import Foundation
import Signaling
import SwitchboardClient
import SwitchboardServer
import Testing

@Suite("Resume, liveness and drain", .serialized, .timeLimit(.minutes(1)))
struct ResumeAndLivenessTests {
    @Test func droppedSessionResumesWithEveryMissedMessageExactlyOnce() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            // Alice reconnects three seconds after the drop: the five messages below are sent
            // (and acked) while she has no socket, even on a loaded machine (one second was
            // not always enough in CI-like runs).
            var slow = SignalingClient.Configuration()
            slow.initialBackoff = .seconds(3)
            let alice = try await node.join(tenant, peer: "alice", client: slow)
            let bob = try await node.join(tenant, peer: "bob")
            try await bob.client.signal(to: "alice", data: RawJSON(validating: #""before""#))
            #expect(try await alice.nextMessage().seq == 1)
            let sessionId = alice.client.sessionId

            try await alice.client.dropConnection()
            _ = try await alice.next { $0 == .reconnecting }
            // Sent while alice has no socket: numbered and kept for her.
            for index in 1...5 {
                try await bob.client.signal(to: "alice", data: RawJSON(validating: "\(index)"), id: "m\(index)")
                _ = try await bob.next { if case .ack = $0 { true } else { false } }
            }
            let resumed = try await alice.next(timeout: .seconds(10)) { if case .resumed = $0 { true } else { false } }
            guard case .resumed(let replayed, let peers) = resumed else { throw TestFailure("unreachable") }
            #expect(replayed == 5)
            #expect(peers.map(\.peerId) == ["bob"])
            var seqs: [UInt64] = []
            var payloads: [String] = []
            for _ in 1...5 {
                let message = try await alice.nextMessage()
                seqs.append(message.seq)
                payloads.append(message.data)
            }
            #expect(seqs == [2, 3, 4, 5, 6])
            #expect(payloads == ["1", "2", "3", "4", "5"])
            #expect(alice.client.sessionId == sessionId)
            // Live again, numbering continues, and bob never saw alice leave or join.
            try await bob.client.signal(to: "alice", data: RawJSON(validating: #""after""#))
            #expect(try await alice.nextMessage().seq == 7)
            #expect(!bob.events.contains { if case .peerLeft = $0 { true } else if case .peerJoined = $0 { true } else { false } })
            #expect(try await node.metrics().contains("switchboard_resumes_total{result=\"ok\"} 1"))
            await alice.stop()
            await bob.stop()
        }
    }

    @Test func resumeAfterTheWindowFailsAndPeersSeeTimeout() async throws {
        try await TestNode.with({ $0.resumeWindow = 0.5 }) { node in
            let tenant = try await node.createTenant()
            let bob = try await node.join(tenant, peer: "bob")
            let token = try await node.token(tenant, peer: "alice")
            let raw = try await RawWebSocket.connect(node.signalURL(token))
            let welcome = try await raw.waitFor("welcome")
            let resumeToken = try #require(try ServerEvent.decode(Array(welcome.utf8)).resumeToken)
            try await raw.close(code: 4000)
            _ = try await raw.waitClosed()
            let left = try await bob.next(timeout: .seconds(5)) { if case .peerLeft = $0 { true } else { false } }
            #expect(left == .peerLeft(peerId: "alice", reason: "timeout"))
            let late = try await RawWebSocket.connect(node.signalURL(token, query: "&resume=1"))
            try await late.send(text: #"{"type":"resume","resumeToken":"\#(resumeToken)","lastSeq":0}"#)
            #expect(try await late.waitClosed() == 1008)
            #expect(late.texts.contains { $0.contains("resume failed") })
            await bob.stop()
        }
    }

    @Test func resumeTokenOfAnotherPeerIsRefused() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let raw = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "alice")))
            let welcome = try await raw.waitFor("welcome")
            let resumeToken = try #require(try ServerEvent.decode(Array(welcome.utf8)).resumeToken)
            let thief = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "eve"), query: "&resume=1"))
            try await thief.send(text: #"{"type":"resume","resumeToken":"\#(resumeToken)","lastSeq":0}"#)
            #expect(try await thief.waitClosed() == 1008)
            // Alice's session was not touched.
            try await raw.send(text: #"{"type":"ping","id":"still-here"}"#)
            _ = try await raw.waitFor("still-here")
            await raw.cancel()
        }
    }

    @Test func expiredTokensCloseWith1008AndTheSessionResumesWithAFreshOne() async throws {
        // The default heartbeat: token expiry is checked four times a second on its own, and
        // a 1 s heartbeat could drop a busy machine's clients for silence mid-test.
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let bob = try await node.join(tenant, peer: "bob")
            // Expired 28 s ago: still inside the 30 s leeway at connect (2 s to spare on a busy
            // machine), past it two seconds later.
            let stale = try await node.token(tenant, peer: "alice", ttl: -28)
            let fresh = try await node.token(tenant, peer: "alice", ttl: 600)
            let alice = TestPeer(client: SignalingClient(url: node.signalURL(stale), tokenProvider: { fresh }))
            try await alice.start()
            let sessionId = alice.client.sessionId
            let error = try await alice.nextError(timeout: .seconds(5))
            #expect(error.code == "forbidden" && error.message.hasPrefix("token expired"))
            _ = try await alice.next(timeout: .seconds(5)) { if case .resumed = $0 { true } else { false } }
            #expect(alice.client.sessionId == sessionId)
            try await bob.client.signal(to: "alice", data: RawJSON(validating: "1"))
            #expect(try await alice.nextMessage().seq == 1)
            #expect(!bob.events.contains { if case .peerLeft = $0 { true } else { false } })

            // Without a way to get a new token the client stops at the 1008.
            let carol = TestPeer(client: SignalingClient(url: node.signalURL(try await node.token(tenant, peer: "carol", ttl: -28))))
            try await carol.start()
            #expect(try await carol.nextClosed(timeout: .seconds(5)).code == 1008)
            await alice.stop()
            await bob.stop()
        }
    }

    @Test func deadSocketsAreDetectedByHeartbeat() async throws {
        try await TestNode.with({ $0.heartbeatSeconds = 1; $0.resumeWindow = 0.5 }) { node in
            let tenant = try await node.createTenant()
            let bob = try await node.join(tenant, peer: "bob")
            let silent = try SilentSocket(port: node.publicPort, path: "/v1/signal?access_token=\(try await node.token(tenant, peer: "ghost"))")
            _ = try await bob.next { if case .peerJoined = $0 { true } else { false } }
            // Two silent periods, then the socket is dropped and the resume window runs out.
            #expect(try await silent.serverClosed(timeout: .seconds(5)))
            let left = try await bob.next(timeout: .seconds(5)) { if case .peerLeft = $0 { true } else { false } }
            #expect(left == .peerLeft(peerId: "ghost", reason: "timeout"))
            // A client that answers pings stays connected across the same time.
            try await bob.assertAlive()
            await bob.stop()
        }
    }

    @Test func gracefulShutdownSendsReconnectAndFlushesTheAuditLog() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-drain-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let sqlitePath = directory.appendingPathComponent("drain.sqlite").path
        let tenantID = try await TestNode.with({ $0.sqlitePath = sqlitePath; $0.drainTimeout = 1 }) { node in
            let tenant = try await node.createTenant()
            let raw = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "stayer")))
            _ = try await raw.waitFor("welcome")
            let ready = try await node.request(.get, "/readyz", admin: true)
            #expect(ready.status == 200)
            await node.node.shutdown()
            _ = try await raw.waitFor("\"type\":\"reconnect\"")
            #expect(try await raw.waitClosed(timeout: .seconds(5)) == 1001)
            return tenant.id
        }
        // Everything recorded before exit is in the file: the session's end included.
        let store = try await SQLiteStoreAccess.open(sqlitePath)
        let events = try await store.events(AuditQuery(tenantID: tenantID, limit: 100))
        let types = Set(events.items.map(\.type))
        #expect(types.isSuperset(of: [.tenantCreated, .keyCreated, .sessionStarted, .sessionEnded]))
        await store.close()
    }
}
