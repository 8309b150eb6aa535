import Foundation
import NIOCore
import NIOPosix
import Signaling
import SwitchboardClient
import Synchronization
import Testing

@Suite("Lean connection (load generator client)", .serialized, .timeLimit(.minutes(1)))
struct LeanConnectionTests {
    @Test func joinsReceivesWelcomeAndRelaysInOrder() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let eventLoop = MultiThreadedEventLoopGroup.singleton.any()
            let frames = Mutex<[String: [ServerEvent]]>([:])
            func connect(_ peer: String) async throws -> LeanConnection {
                let token = try await node.token(tenant, peer: peer)
                return try await LeanConnection.connect(url: node.signalURL(token), on: eventLoop, onFrame: { buffer in
                    let event = buffer.withUnsafeReadableBytes { try? ServerEvent.decode($0) }
                    if let event { frames.withLock { $0[peer, default: []].append(event) } }
                })
            }
            let alice = try await connect("alice")
            let bob = try await connect("bob")
            for index in 1...50 {
                alice.send(Array(#"{"type":"signal","to":"bob","data":\#(index)}"#.utf8))
            }
            let deadline = ContinuousClock.now + .seconds(5)
            while frames.withLock({ $0["bob"]?.count ?? 0 }) < 51, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let received = frames.withLock { $0["bob"] ?? [] }
            guard case .welcome = received.first else { throw TestFailure("bob's first frame was not welcome: \(received.first.map { "\($0)" } ?? "none")") }
            let relayed = received.compactMap { event -> (UInt64, String)? in
                if case .relay(.signal, "alice", let data, let seq) = event { return (seq, data.description) }
                return nil
            }
            #expect(relayed.map(\.0) == Array(1...50))
            #expect(relayed.map(\.1) == (1...50).map(String.init))
            #expect(frames.withLock { $0["alice"]?.first.map { if case .welcome = $0 { true } else { false } } } == true)
            alice.close()
            bob.close()
        }
    }

    @Test func refusedUpgradeThrows() async throws {
        _ = try await TestNode.with { node in
            await #expect(throws: LeanConnection.ConnectError.self) {
                _ = try await LeanConnection.connect(
                    url: node.signalURL("not-a-token"), on: MultiThreadedEventLoopGroup.singleton.any(), onFrame: { _ in })
            }
        }
    }
}
