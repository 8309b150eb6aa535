import Foundation
import Testing

@testable import Signaling

@Suite struct InMemoryPresenceTests {
    static func record(_ peer: String, tenant: String = "acme", room: String = "lobby", session: String? = nil, node: String = "node-a") -> PeerRecord {
        PeerRecord(
            tenantID: tenant, room: room, peerId: peer, metadata: .emptyObject, sessionId: session ?? "S-\(peer)", node: node,
            joinedAt: Date(timeIntervalSince1970: 1_700_000_000))
    }

    @Test func joinThenLocateAndCount() async {
        let presence = InMemoryPresence()
        presence.join(Self.record("alice"))
        presence.join(Self.record("bob", node: "node-b"))
        #expect(presence.locate(tenantID: "acme", room: "lobby", peerId: "alice") == "node-a")
        #expect(presence.locate(tenantID: "acme", room: "lobby", peerId: "bob") == "node-b")
        #expect(presence.locate(tenantID: "acme", room: "lobby", peerId: "carol") == nil)
        #expect(presence.nodes(tenantID: "acme", room: "lobby") == ["node-a", "node-b"])
        #expect(await presence.peerCount(tenantID: "acme", room: "lobby") == 2)
        #expect(await presence.connectionCount(tenantID: "acme") == 2)
        #expect(await presence.peer(tenantID: "acme", room: "lobby", peerId: "bob") == Self.record("bob", node: "node-b"))
    }

    @Test func tenantsAndRoomsAreSeparate() async {
        let presence = InMemoryPresence()
        presence.join(Self.record("alice"))
        presence.join(Self.record("alice", tenant: "other"))
        presence.join(Self.record("alice", room: "kitchen"))
        #expect(await presence.connectionCount(tenantID: "acme") == 2)
        #expect(await presence.connectionCount(tenantID: "other") == 1)
        #expect(await presence.connectionCount(tenantID: "nobody") == 0)
        #expect(await presence.peerCount(tenantID: "acme", room: "lobby") == 1)
        #expect(presence.locate(tenantID: "other", room: "kitchen", peerId: "alice") == nil)
        #expect(presence.nodes(tenantID: "acme", room: "attic").isEmpty)
    }

    @Test func leaveRemovesThePeer() async {
        let presence = InMemoryPresence()
        presence.join(Self.record("alice"))
        presence.join(Self.record("bob"))
        presence.leave(tenantID: "acme", room: "lobby", peerId: "alice", sessionId: "S-alice")
        #expect(presence.locate(tenantID: "acme", room: "lobby", peerId: "alice") == nil)
        #expect(await presence.peerCount(tenantID: "acme", room: "lobby") == 1)
        #expect(await presence.connectionCount(tenantID: "acme") == 1)
        presence.leave(tenantID: "acme", room: "lobby", peerId: "bob", sessionId: "S-bob")
        #expect(presence.nodes(tenantID: "acme", room: "lobby").isEmpty)
        #expect(await presence.connectionCount(tenantID: "acme") == 0)
    }

    @Test func leaveWithAStaleSessionDoesNothing() async {
        let presence = InMemoryPresence()
        presence.join(Self.record("alice", session: "S1"))
        // The same peer joined again (replaced): the new record wins, the count does not grow.
        presence.join(Self.record("alice", session: "S2", node: "node-b"))
        #expect(await presence.connectionCount(tenantID: "acme") == 1)
        presence.leave(tenantID: "acme", room: "lobby", peerId: "alice", sessionId: "S1")
        #expect(presence.locate(tenantID: "acme", room: "lobby", peerId: "alice") == "node-b")
        #expect(await presence.connectionCount(tenantID: "acme") == 1)
        presence.leave(tenantID: "acme", room: "lobby", peerId: "alice", sessionId: "S2")
        #expect(presence.locate(tenantID: "acme", room: "lobby", peerId: "alice") == nil)
        #expect(await presence.connectionCount(tenantID: "acme") == 0)
    }

    @Test func leaveOfAnUnknownPeerDoesNotUnderflow() async {
        let presence = InMemoryPresence()
        presence.join(Self.record("alice"))
        presence.leave(tenantID: "acme", room: "lobby", peerId: "ghost", sessionId: "S-ghost")
        presence.leave(tenantID: "acme", room: "attic", peerId: "alice", sessionId: "S-alice")
        #expect(await presence.connectionCount(tenantID: "acme") == 1)
    }

    @Test func updateReplacesMetadata() async throws {
        let presence = InMemoryPresence()
        presence.join(Self.record("alice"))
        let metadata = try RawJSON.parse(#"{"muted":true}"#)
        presence.update(tenantID: "acme", room: "lobby", peerId: "alice", metadata: metadata)
        #expect(await presence.peer(tenantID: "acme", room: "lobby", peerId: "alice")?.metadata == metadata)
        // Updating someone absent creates nobody.
        presence.update(tenantID: "acme", room: "lobby", peerId: "ghost", metadata: metadata)
        #expect(await presence.peer(tenantID: "acme", room: "lobby", peerId: "ghost") == nil)
    }

    @Test func peersArePaginatedInPeerIdOrder() async {
        let presence = InMemoryPresence()
        for name in ["erin", "alice", "dave", "carol", "bob"] { presence.join(Self.record(name)) }
        let first = await presence.peers(tenantID: "acme", room: "lobby", after: nil, limit: 2)
        #expect(first.items.map(\.peerId) == ["alice", "bob"])
        #expect(first.next == "bob")
        let second = await presence.peers(tenantID: "acme", room: "lobby", after: first.next, limit: 2)
        #expect(second.items.map(\.peerId) == ["carol", "dave"])
        #expect(second.next == "dave")
        let last = await presence.peers(tenantID: "acme", room: "lobby", after: second.next, limit: 2)
        #expect(last.items.map(\.peerId) == ["erin"])
        #expect(last.next == nil)
        let exact = await presence.peers(tenantID: "acme", room: "lobby", after: nil, limit: 5)
        #expect(exact.items.count == 5)
        #expect(exact.next == nil)
        let empty = await presence.peers(tenantID: "acme", room: "nowhere", after: nil, limit: 5)
        #expect(empty.items.isEmpty)
        #expect(empty.next == nil)
    }
}
