import Foundation
import Signaling
import SwitchboardClient
import Testing

@Suite("WebSocket protocol", .serialized)
struct SignalingProtocolTests {
    @Test func joinSignalBroadcastUpdateLeave() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice", metadata: #"{"name":"Alice"}"#)
            let bob = try await node.join(tenant, peer: "bob", metadata: #"{"name":"Bob"}"#)
            guard case .welcome(let welcome) = bob.events.first else { throw TestFailure("no welcome") }
            #expect(welcome.peers == [PeerSummary(peerId: "alice", metadata: try RawJSON(validating: #"{"name":"Alice"}"#))])
            #expect(welcome.peerId == "bob" && welcome.room == "room-1" && welcome.heartbeatSeconds == 20)
            let joined = try await alice.next { if case .peerJoined = $0 { true } else { false } }
            #expect(joined == .peerJoined(PeerSummary(peerId: "bob", metadata: try RawJSON(validating: #"{"name":"Bob"}"#))))

            try await alice.client.signal(to: "bob", data: try RawJSON(validating: #"{"sdp":"offer"}"#), id: "m1")
            let ack = try await alice.next { if case .ack = $0 { true } else { false } }
            #expect(ack == .ack(id: try RawJSON(validating: #""m1""#)))
            for expected in 1...3 {
                if expected > 1 { try await alice.client.signal(to: "bob", data: try RawJSON(validating: "\(expected)")) }
                let message = try await bob.nextMessage()
                #expect(message.kind == .signal && message.from == "alice" && message.seq == UInt64(expected))
            }
            try await bob.client.broadcast(data: try RawJSON(validating: #"["hello"]"#))
            let broadcast = try await alice.nextMessage()
            #expect(broadcast.kind == .broadcast && broadcast.from == "bob" && broadcast.data == #"["hello"]"# && broadcast.seq == 1)

            try await bob.client.update(metadata: try RawJSON(validating: #"{"name":"Robert"}"#))
            let updated = try await alice.next { if case .peerUpdated = $0 { true } else { false } }
            #expect(updated == .peerUpdated(PeerSummary(peerId: "bob", metadata: try RawJSON(validating: #"{"name":"Robert"}"#))))

            try await bob.client.leave()
            let closed = try await bob.nextClosed()
            #expect(closed.code == 1000)
            let left = try await alice.next { if case .peerLeft = $0 { true } else { false } }
            #expect(left == .peerLeft(peerId: "bob", reason: "left"))
            await alice.stop()
        }
    }
}
