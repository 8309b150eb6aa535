import Foundation
import HTTPTypes
import Signaling
import SwitchboardClient
import SwitchboardServer
import Testing

/// The REST API of SPEC §4 against a live node: every endpoint, its effects on live
/// WebSocket sessions, authentication, tenant isolation and bad input.
@Suite("REST API", .serialized, .timeLimit(.minutes(1)))
struct RESTAPITests {
    // MARK: Operator: tenants

    @Test func tenantsCreateListPaginateGetPatchDelete() async throws {
        try await TestNode.with { node in
            // Explicit ids, created out of order: the list is ordered by id.
            for id in ["charlie", "alpha", "bravo"] {
                let created = try await node.request(.post, "/v1/tenants", auth: .admin, body: #"{"id":"\#(id)","name":"Tenant \#(id)"}"#)
                #expect(created.status == 201, "\(created.text)")
                let json = try created.json()
                let tenant = try #require(json["tenant"])
                #expect(tenant["id"]?.string == id && tenant["name"]?.string == "Tenant \(id)")
                #expect(tenant["status"]?.string == "active" && tenant["autoCreateRooms"] == .bool(true))
                #expect(tenant["limits"] == Self.defaultLimits)
                #expect(tenant["createdAt"]?.string.flatMap(Self.parseTime) != nil)
                #expect(json["apiKey"]?.string?.hasPrefix("AK") == true)
                #expect((json["apiSecret"]?.string?.count ?? 0) >= 43)
            }
            let conflict = try await node.request(.post, "/v1/tenants", auth: .admin, body: #"{"id":"alpha","name":"Again"}"#)
            try Self.expectError(conflict, 409, "conflict")

            let first = try await node.request(.get, "/v1/tenants?limit=2", auth: .admin)
            #expect(first.status == 200)
            let firstPage = try first.json()
            #expect(firstPage["items"]?.array?.compactMap { $0["id"]?.string } == ["alpha", "bravo"])
            let cursor = try #require(firstPage["nextCursor"]?.string)
            let second = try await node.request(.get, "/v1/tenants?limit=2&cursor=\(cursor)", auth: .admin)
            let secondPage = try second.json()
            #expect(secondPage["items"]?.array?.compactMap { $0["id"]?.string } == ["charlie"])
            #expect(secondPage["nextCursor"] == nil || secondPage["nextCursor"] == .null)

            // Derived ids: a slug of the name plus a random suffix; never a conflict.
            let derived1 = try await node.request(.post, "/v1/tenants", auth: .admin, body: #"{"name":"Acme Inc."}"#)
            let derived2 = try await node.request(.post, "/v1/tenants", auth: .admin, body: #"{"name":"Acme Inc."}"#)
            let id1 = try #require(try derived1.json()["tenant"]?["id"]?.string)
            let id2 = try #require(try derived2.json()["tenant"]?["id"]?.string)
            #expect(id1 != id2 && id1.hasPrefix("acme-inc-") && Tenant.isValidID(id1))

            let got = try await node.request(.get, "/v1/tenants/bravo", auth: .admin)
            #expect(try got.status == 200 && (got.json()["name"]?.string) == "Tenant bravo")
            try Self.expectError(try await node.request(.get, "/v1/tenants/nobody", auth: .admin), 404, "not_found")

            // PATCH merges limits key by key; integral numbers such as 7.0 are integers.
            let patched = try await node.request(.patch, "/v1/tenants/bravo", auth: .admin, body: #"{"limits":{"maxPeersPerRoom":7.0}}"#)
            #expect(patched.status == 200, "\(patched.text)")
            let patchedLimits = try patched.json()["limits"]
            #expect(patchedLimits?["maxPeersPerRoom"] == .number(7) && patchedLimits?["maxConnections"] == .number(10_000))
            let patched2 = try await node.request(
                .patch, "/v1/tenants/bravo", auth: .admin, body: #"{"limits":{"messageBurst":5},"name":"Bravo Ltd","autoCreateRooms":false}"#)
            let tenant2 = try patched2.json()
            #expect(tenant2["limits"] == .object([
                "maxConnections": .number(10_000), "maxPeersPerRoom": .number(7), "messagesPerSecond": .number(50), "messageBurst": .number(5),
            ]))
            #expect(tenant2["name"]?.string == "Bravo Ltd" && tenant2["autoCreateRooms"] == .bool(false))
            // null is the same as absent; an empty object changes nothing.
            let unchanged = try await node.request(.patch, "/v1/tenants/bravo", auth: .admin, body: #"{"name":null,"limits":null}"#)
            #expect(try unchanged.json() == tenant2)
            let reread = try await node.request(.get, "/v1/tenants/bravo", auth: .admin)
            #expect(try reread.json() == tenant2)
            try Self.expectError(
                try await node.request(.patch, "/v1/tenants/bravo", auth: .admin, body: #"{"status":"paused"}"#), 422, "validation_failed")
            try Self.expectError(
                try await node.request(.patch, "/v1/tenants/bravo", auth: .admin, body: #"{"limits":{"maxPeersPerRoom":7.5}}"#), 422,
                "validation_failed")
            try Self.expectError(
                try await node.request(.patch, "/v1/tenants/bravo", auth: .admin, body: #"{"limits":{"maxConnections":0}}"#), 422,
                "validation_failed")
            try Self.expectError(try await node.request(.patch, "/v1/tenants/nobody", auth: .admin, body: "{}"), 404, "not_found")

            let deleted = try await node.request(.delete, "/v1/tenants/bravo", auth: .admin)
            #expect(deleted.status == 204 && deleted.body.isEmpty)
            try Self.expectError(try await node.request(.get, "/v1/tenants/bravo", auth: .admin), 404, "not_found")
            try Self.expectError(try await node.request(.delete, "/v1/tenants/bravo", auth: .admin), 404, "not_found")
            let remaining = try await node.request(.get, "/v1/tenants", auth: .admin).json()
            #expect(remaining["items"]?.array?.compactMap { $0["id"]?.string }.contains("bravo") == false)
        }
    }

    @Test func suspendingATenantClosesItsSessionsAndRefusesNewOnes() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let other = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let bystander = try await node.join(other, peer: "bystander")

            let suspended = try await node.request(.patch, "/v1/tenants/\(tenant.id)", auth: .admin, body: #"{"status":"suspended"}"#)
            #expect(try suspended.status == 200 && (suspended.json()["status"]?.string) == "suspended")
            let error = try await alice.nextError()
            #expect(error.code == "forbidden")
            #expect(try await alice.nextClosed().code == 1008)

            // A new connection is refused before the upgrade, with a JSON body.
            let upgrade = try await Self.upgrade(node, token: try await node.token(tenant, peer: "alice"))
            try Self.expectError(upgrade, 403, "forbidden")
            // REST calls with valid credentials get 403 too.
            try Self.expectError(try await node.request(.get, "/v1/rooms", auth: .tenant(tenant)), 403, "forbidden")
            // Another tenant is untouched.
            try await bystander.assertAlive()

            let reactivated = try await node.request(.patch, "/v1/tenants/\(tenant.id)", auth: .admin, body: #"{"status":"active"}"#)
            #expect(reactivated.status == 200)
            #expect(try await node.request(.get, "/v1/rooms", auth: .tenant(tenant)).status == 200)
            let back = try await node.join(tenant, peer: "alice")
            try await back.assertAlive()
            await back.stop()
            await bystander.stop()
        }
    }

    @Test func deletingATenantClosesItsSessionsAndRevokesItsKeys() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let deleted = try await node.request(.delete, "/v1/tenants/\(tenant.id)", auth: .admin)
            #expect(deleted.status == 204)
            #expect(try await alice.nextError().code == "forbidden")
            #expect(try await alice.nextClosed().code == 1008)
            try Self.expectError(try await node.request(.get, "/v1/rooms", auth: .tenant(tenant)), 401, "unauthorized")
            try Self.expectError(try await Self.upgrade(node, token: try await node.token(tenant, peer: "alice")), 401, "unauthorized")
        }
    }

    // MARK: Operator: API keys

    @Test func apiKeysCreateListDelete() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let created = try await node.request(.post, "/v1/tenants/\(tenant.id)/keys", auth: .admin)
            #expect(created.status == 201, "\(created.text)")
            let key = try created.json()
            let second = TestTenant(id: tenant.id, apiKey: try #require(key["apiKey"]?.string), apiSecret: try #require(key["apiSecret"]?.string))
            #expect(key["createdAt"]?.string.flatMap(Self.parseTime) != nil)

            // Listed by apiKey, without secrets, page by page.
            let all = try await node.request(.get, "/v1/tenants/\(tenant.id)/keys", auth: .admin).json()
            let items = try #require(all["items"]?.array)
            #expect(items.compactMap { $0["apiKey"]?.string } == [tenant.apiKey, second.apiKey].sorted())
            #expect(items.allSatisfy { $0["apiSecret"] == nil && $0["createdAt"]?.string != nil })
            let page1 = try await node.request(.get, "/v1/tenants/\(tenant.id)/keys?limit=1", auth: .admin).json()
            let cursor = try #require(page1["nextCursor"]?.string)
            let page2 = try await node.request(.get, "/v1/tenants/\(tenant.id)/keys?limit=1&cursor=\(cursor)", auth: .admin).json()
            #expect(
                (page1["items"]?.array ?? []) + (page2["items"]?.array ?? []) == items
                    && (page2["nextCursor"] == nil || page2["nextCursor"] == .null))
            try Self.expectError(try await node.request(.get, "/v1/tenants/nobody/keys", auth: .admin), 404, "not_found")
            try Self.expectError(try await node.request(.post, "/v1/tenants/nobody/keys", auth: .admin), 404, "not_found")

            // Both keys work, for REST and for tokens.
            #expect(try await node.request(.get, "/v1/rooms", auth: .tenant(second)).status == 200)
            let alice = try await node.join(tenant, peer: "alice")
            let bob = try await node.join(second, peer: "bob")

            // Another tenant's path does not reach the key.
            let stranger = try await node.createTenant()
            try Self.expectError(
                try await node.request(.delete, "/v1/tenants/\(stranger.id)/keys/\(second.apiKey)", auth: .admin), 404, "not_found")

            let deleted = try await node.request(.delete, "/v1/tenants/\(tenant.id)/keys/\(second.apiKey)", auth: .admin)
            #expect(deleted.status == 204)
            try Self.expectError(try await node.request(.get, "/v1/rooms", auth: .tenant(second)), 401, "unauthorized")
            // The session that joined with the revoked key is closed; the other one stays.
            #expect(try await bob.nextError().code == "forbidden")
            #expect(try await bob.nextClosed().code == 1008)
            let left = try await alice.next { if case .peerLeft = $0 { true } else { false } }
            #expect(left == .peerLeft(peerId: "bob", reason: "kicked"))
            try await alice.assertAlive()
            // Tokens signed by the revoked key no longer connect.
            try Self.expectError(try await Self.upgrade(node, token: try await node.token(second, peer: "bob")), 401, "unauthorized")
            try Self.expectError(
                try await node.request(.delete, "/v1/tenants/\(tenant.id)/keys/\(second.apiKey)", auth: .admin), 404, "not_found")
            #expect(try await node.request(.get, "/v1/rooms", auth: .tenant(tenant)).status == 200)
            await alice.stop()
        }
    }

    // MARK: Tenant: rooms

    @Test func roomsCreateListGetPatchDeleteWithLivePeerCount() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let created = try await node.request(
                .post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"standup","maxPeers":3,"metadata":{"topic":"daily","n":12345678901234567}}"#)
            #expect(created.status == 201, "\(created.text)")
            let room = try created.json()
            #expect(room["name"]?.string == "standup" && room["maxPeers"] == .number(3) && room["peerCount"] == .number(0))
            #expect(room["metadata"]?["topic"]?.string == "daily")
            #expect(room["createdAt"]?.string.flatMap(Self.parseTime) != nil)
            try Self.expectError(
                try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"standup"}"#), 409, "conflict")

            // Defaults: the tenant's maxPeersPerRoom and empty metadata.
            let plain = try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"lobby","metadata":null}"#)
            #expect(try plain.json()["maxPeers"] == .number(100) && (plain.json()["metadata"]) == .object([:]))

            let alice = try await node.join(tenant, room: "standup", peer: "alice")
            let bob = try await node.join(tenant, room: "standup", peer: "bob")
            let live = try await node.request(.get, "/v1/rooms/standup", auth: .tenant(tenant)).json()
            #expect(live["peerCount"] == .number(2))

            _ = try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"zeta"}"#)
            let page1 = try await node.request(.get, "/v1/rooms?limit=2", auth: .tenant(tenant)).json()
            #expect(page1["items"]?.array?.compactMap { $0["name"]?.string } == ["lobby", "standup"])
            #expect(page1["items"]?.array?.last?["peerCount"] == .number(2))
            let cursor = try #require(page1["nextCursor"]?.string)
            let page2 = try await node.request(.get, "/v1/rooms?limit=2&cursor=\(cursor)", auth: .tenant(tenant)).json()
            #expect(page2["items"]?.array?.compactMap { $0["name"]?.string } == ["zeta"])

            let patched = try await node.request(
                .patch, "/v1/rooms/standup", auth: .tenant(tenant), body: #"{"maxPeers":2.0,"metadata":{"topic":"weekly"}}"#)
            #expect(patched.status == 200, "\(patched.text)")
            #expect(try patched.json()["maxPeers"] == .number(2) && (patched.json()["metadata"]) == .object(["topic": .string("weekly")]))
            #expect(try await node.request(.get, "/v1/rooms/standup", auth: .tenant(tenant)).json()["maxPeers"] == .number(2))
            // The room is now full: a third peer is refused before the upgrade.
            try Self.expectError(try await Self.upgrade(node, token: try await node.token(tenant, room: "standup", peer: "carol")), 429, "rate_limited")
            try Self.expectError(
                try await node.request(.patch, "/v1/rooms/standup", auth: .tenant(tenant), body: #"{"maxPeers":0}"#), 422, "validation_failed")
            try Self.expectError(
                try await node.request(.patch, "/v1/rooms/standup", auth: .tenant(tenant), body: #"{"metadata":[1]}"#), 422, "validation_failed")
            try Self.expectError(try await node.request(.patch, "/v1/rooms/nowhere", auth: .tenant(tenant), body: "{}"), 404, "not_found")

            let deleted = try await node.request(.delete, "/v1/rooms/standup", auth: .tenant(tenant))
            #expect(deleted.status == 204)
            #expect(try await alice.nextClosed().code == 1000)
            #expect(try await bob.nextClosed().code == 1000)
            try Self.expectError(try await node.request(.get, "/v1/rooms/standup", auth: .tenant(tenant)), 404, "not_found")
            try Self.expectError(try await node.request(.delete, "/v1/rooms/standup", auth: .tenant(tenant)), 404, "not_found")
        }
    }

    @Test func roomNamesAreLiteralAndPercentDecoded() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let names = ["'; DROP TABLE rooms; --", "a/b c+d", "café ☕️", "100%", String(repeating: "é", count: 128)]
            for name in names {
                let created = try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: try Self.json(["name": .string(name)]))
                #expect(created.status == 201, "\(name): \(created.text)")
                #expect(!created.text.contains("\\/"), "slashes must not be escaped: \(created.text)")
                let got = try await node.request(.get, "/v1/rooms/\(Self.encodePath(name))", auth: .tenant(tenant))
                #expect(try got.status == 200 && (got.json()["name"]?.string) == name, "\(name): \(got.text)")
            }
            // The table survived the SQL-looking name, and names are kept literally.
            let listed = try await node.request(.get, "/v1/rooms", auth: .tenant(tenant)).json()
            #expect(Set(listed["items"]?.array?.compactMap { $0["name"]?.string } ?? []) == Set(names))
            #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: #"{"name":"after"}"#).status == 201)
            // Lengths are counted in Unicode scalars: 129 é, or 65 "e + combining acute" are too long.
            for name in [String(repeating: "é", count: 129), String(repeating: "e\u{301}", count: 65), String(repeating: "x", count: 10_240), "", "bell\u{7}", "c1\u{85}"] {
                let refused = try await node.request(.post, "/v1/rooms", auth: .tenant(tenant), body: try Self.json(["name": .string(name)]))
                try Self.expectError(refused, 422, "validation_failed")
            }
            // A path name that cannot be a room name names nothing.
            try Self.expectError(try await node.request(.get, "/v1/rooms/\(String(repeating: "x", count: 129))", auth: .tenant(tenant)), 404, "not_found")
            try Self.expectError(try await node.request(.get, "/v1/rooms/%zz", auth: .tenant(tenant)), 404, "not_found")
        }
    }

    // MARK: Tenant: presence, kicks, messages

    @Test func peersAreListedAndCanBeKicked() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let carol = try await node.join(tenant, peer: "carol", metadata: #"{"name":"Carol"}"#)
            let alice = try await node.join(tenant, peer: "alice", metadata: #"{"name":"Alice"}"#)
            let bob = try await node.join(tenant, peer: "bob")

            let listed = try await node.request(.get, "/v1/rooms/room-1/peers", auth: .tenant(tenant))
            #expect(listed.status == 200)
            let peers = try #require(try listed.json()["items"]?.array)
            #expect(peers.compactMap { $0["peerId"]?.string } == ["alice", "bob", "carol"])
            let first = try #require(peers.first)
            #expect(first["metadata"] == .object(["name": .string("Alice")]) && peers[1]["metadata"] == .object([:]))
            #expect(first["sessionId"]?.string == alice.client.sessionId && first["node"]?.string == "test-node")
            let joinedAt = try #require(first["joinedAt"]?.string.flatMap(Self.parseTime))
            #expect(abs(joinedAt.timeIntervalSinceNow) < 60)
            let page1 = try await node.request(.get, "/v1/rooms/room-1/peers?limit=2", auth: .tenant(tenant)).json()
            let cursor = try #require(page1["nextCursor"]?.string)
            let page2 = try await node.request(.get, "/v1/rooms/room-1/peers?limit=2&cursor=\(cursor)", auth: .tenant(tenant)).json()
            #expect(page2["items"]?.array?.compactMap { $0["peerId"]?.string } == ["carol"])
            try Self.expectError(try await node.request(.get, "/v1/rooms/nowhere/peers", auth: .tenant(tenant)), 404, "not_found")

            let kicked = try await node.request(.delete, "/v1/rooms/room-1/peers/bob", auth: .tenant(tenant))
            #expect(kicked.status == 204)
            #expect(try await bob.nextError().code == "forbidden")
            #expect(try await bob.nextClosed().code == 1008)
            for peer in [alice, carol] {
                let left = try await peer.next { if case .peerLeft = $0 { true } else { false } }
                #expect(left == .peerLeft(peerId: "bob", reason: "kicked"))
            }
            let after = try await node.request(.get, "/v1/rooms/room-1/peers", auth: .tenant(tenant)).json()
            #expect(after["items"]?.array?.compactMap { $0["peerId"]?.string } == ["alice", "carol"])
            #expect(try await node.request(.get, "/v1/rooms/room-1", auth: .tenant(tenant)).json()["peerCount"] == .number(2))
            try Self.expectError(try await node.request(.delete, "/v1/rooms/room-1/peers/bob", auth: .tenant(tenant)), 404, "peer_not_found")
            try Self.expectError(try await node.request(.delete, "/v1/rooms/nowhere/peers/alice", auth: .tenant(tenant)), 404, "not_found")
            await alice.stop()
            await carol.stop()
        }
    }

    @Test func serverMessagesReachOnePeerOrTheRoom() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let bob = try await node.join(tenant, peer: "bob")

            let direct = try await node.request(
                .post, "/v1/rooms/room-1/messages", auth: .tenant(tenant), body: #"{"to":"alice","data":{"kind": "notice", "big": 12345678901234567890}}"#)
            #expect(direct.status == 202, "\(direct.text)")
            #expect(try direct.json()["recipients"] == .number(1))
            let signal = try await alice.nextMessage()
            #expect(signal.kind == .signal && signal.from == "server" && signal.seq == 1)
            // Delivered verbatim (without insignificant whitespace): no precision lost.
            #expect(signal.data == #"{"kind":"notice","big":12345678901234567890}"#)

            let all = try await node.request(.post, "/v1/rooms/room-1/messages", auth: .tenant(tenant), body: #"{"data":["hello", 1.5]}"#)
            #expect(try all.status == 202 && (all.json()["recipients"]) == .number(2))
            for (peer, seq) in [(alice, UInt64(2)), (bob, UInt64(1))] {
                let message = try await peer.nextMessage()
                #expect(message.kind == .broadcast && message.from == "server" && message.data == #"["hello",1.5]"# && message.seq == seq)
            }

            try Self.expectError(
                try await node.request(.post, "/v1/rooms/room-1/messages", auth: .tenant(tenant), body: #"{"to":"nobody","data":1}"#), 404,
                "peer_not_found")
            try Self.expectError(
                try await node.request(.post, "/v1/rooms/nowhere/messages", auth: .tenant(tenant), body: #"{"data":1}"#), 404, "not_found")
            for body in [#"{"to":"alice"}"#, #"{"to":"alice","data":null}"#, #"{"to":5,"data":1}"#, #"{"to":"","data":1}"#] {
                try Self.expectError(
                    try await node.request(.post, "/v1/rooms/room-1/messages", auth: .tenant(tenant), body: body), 422, "validation_failed")
            }
            let huge = try Self.json(["data": .string(String(repeating: "x", count: 70_000))])
            try Self.expectError(try await node.request(.post, "/v1/rooms/room-1/messages", auth: .tenant(tenant), body: huge), 413, "too_large")
            // Nothing else arrived.
            try await alice.assertAlive()
            #expect(alice.events.filter { if case .message = $0 { true } else { false } }.count == 2)
            await alice.stop()
            await bob.stop()
        }
    }

    // MARK: Tenant: tokens and TURN

    @Test func mintedTokensJoinWithTheirClaims() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let minted = try await node.request(
                .post, "/v1/tokens", auth: .tenant(tenant),
                body: #"{"room":"standup","peerId":"alice","ttlSeconds":120,"metadata":{"name":"Alice"},"permissions":["signal"]}"#)
            #expect(minted.status == 201, "\(minted.text)")
            let result = try minted.json()
            let token = try #require(result["token"]?.string)
            let expiresAt = try #require(result["expiresAt"]?.string.flatMap(Self.parseTime))
            #expect(abs(expiresAt.timeIntervalSinceNow - 120) < 5)
            #expect(result["url"]?.string == "ws://localhost:8080/v1/signal?access_token=\(token)")

            // The JWT: HS256, kid = iss = the API key, and the claims asked for.
            let parts = token.split(separator: ".").map(String.init)
            #expect(parts.count == 3)
            let header = try JSONDecoder().decode([String: JSONValue].self, from: Data(try #require(Base64URL.decode(parts[0]))))
            let claims = try JSONDecoder().decode([String: JSONValue].self, from: Data(try #require(Base64URL.decode(parts[1]))))
            #expect(header["alg"]?.string == "HS256" && header["kid"]?.string == tenant.apiKey)
            #expect(claims["iss"]?.string == tenant.apiKey && claims["sub"]?.string == "alice" && claims["room"]?.string == "standup")
            #expect(claims["exp"] == .number(expiresAt.timeIntervalSince1970.rounded()))
            #expect(claims["permissions"] == .array([.string("signal")]))

            let alice = TestPeer(client: SignalingClient(url: node.signalURL(token)))
            try await alice.start()
            guard case .welcome(let welcome) = alice.events.first else { throw TestFailure("no welcome") }
            #expect(welcome.peerId == "alice" && welcome.room == "standup")
            let bob = try await node.join(tenant, room: "standup", peer: "bob")
            guard case .welcome(let bobWelcome) = bob.events.first else { throw TestFailure("no welcome") }
            #expect(bobWelcome.peers == [PeerSummary(peerId: "alice", metadata: try RawJSON(validating: #"{"name":"Alice"}"#))])
            // The token allows signal but not broadcast.
            try await alice.client.signal(to: "bob", data: try RawJSON(validating: "1"))
            #expect(try await bob.nextMessage().from == "alice")
            try await alice.client.broadcast(data: try RawJSON(validating: "2"))
            #expect(try await alice.nextError().code == "forbidden")

            // Defaults: one hour, both permissions.
            let plain = try await node.request(.post, "/v1/tokens", auth: .tenant(tenant), body: #"{"room":"r","peerId":"p"}"#).json()
            let plainExpiry = try #require(plain["expiresAt"]?.string.flatMap(Self.parseTime))
            #expect(abs(plainExpiry.timeIntervalSinceNow - 3600) < 5)

            for body in [
                #"{"room":"r"}"#, #"{"peerId":"p"}"#, #"{"room":"r","peerId":"p","ttlSeconds":0}"#,
                #"{"room":"r","peerId":"p","ttlSeconds":86401}"#, #"{"room":"r","peerId":"p","permissions":["fly"]}"#,
                #"{"room":"r","peerId":"p","permissions":"signal"}"#, #"{"room":"r","peerId":"p","metadata":"x"}"#,
                "{\"room\":\"r\",\"peerId\":\"p\",\"metadata\":{\"x\":\"\(String(repeating: "y", count: 4100))\"}}",
            ] {
                try Self.expectError(try await node.request(.post, "/v1/tokens", auth: .tenant(tenant), body: body), 422, "validation_failed")
            }
            await alice.stop()
            await bob.stop()
        }
    }

    @Test func turnCredentialsFollowTheTURNRESTScheme() async throws {
        try await TestNode.with({ configuration in
            configuration.turnSecrets = ["s3cret", "older"]
            configuration.turnURLs = ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp", "stun:stun.example.com:3478"]
        }) { node in
            let tenant = try await node.createTenant()
            let response = try await node.request(.post, "/v1/turn/credentials", auth: .tenant(tenant), body: #"{"peerId":"alice","ttlSeconds":3600}"#)
            #expect(response.status == 201, "\(response.text)")
            let result = try response.json()
            let username = try #require(result["username"]?.string)
            let parts = username.split(separator: ":", maxSplits: 2).map(String.init)
            #expect(parts.count == 3 && parts[1] == tenant.id && parts[2] == "alice")
            let expiry = try #require(Int(parts[0]))
            #expect(abs(Double(expiry) - Date().timeIntervalSince1970 - 3600) < 5)
            #expect(result["credential"]?.string == HMACSHA1.base64(key: "s3cret", message: username))
            #expect(result["ttl"] == .number(3600))
            #expect(result["expiresAt"]?.string.flatMap(Self.parseTime)?.timeIntervalSince1970 == Double(expiry))
            let servers = try #require(result["iceServers"]?.array)
            #expect(servers.contains {
                $0["urls"] == .array([.string("turn:turn.example.com:3478?transport=udp"), .string("turn:turn.example.com:3478?transport=tcp")])
                    && $0["username"]?.string == username && $0["credential"] == result["credential"]
            })
            #expect(servers.contains { $0["urls"] == .array([.string("stun:stun.example.com:3478")]) && $0["username"] == nil })

            // No body: the default TTL and an anonymous peer, still three parts.
            let plain = try await node.request(.post, "/v1/turn/credentials", auth: .tenant(tenant))
            #expect(plain.status == 201, "\(plain.text)")
            let plainName = try #require(try plain.json()["username"]?.string)
            #expect(try plainName.hasSuffix(":\(tenant.id):anonymous") && (plain.json()["ttl"]) == .number(86_400))
            // A peer id may itself hold a colon: everything after the second one.
            let colon = try await node.request(.post, "/v1/turn/credentials", auth: .tenant(tenant), body: #"{"peerId":"a:b"}"#).json()
            #expect(colon["username"]?.string?.hasSuffix(":\(tenant.id):a:b") == true)

            for body in [#"{"ttlSeconds":0}"#, #"{"ttlSeconds":604801}"#, #"{"peerId":""}"#, #"{"peerId":7}"#, "[]"] {
                try Self.expectError(
                    try await node.request(.post, "/v1/turn/credentials", auth: .tenant(tenant), body: body), 422, "validation_failed")
            }
            try Self.expectError(try await node.request(.post, "/v1/turn/credentials", auth: .tenant(tenant), body: "{"), 400, "bad_request")
        }
    }

    @Test func theHMACSHA1HelperMatchesKnownVectors() {
        // RFC 2202 test case 2, and the well-known "quick brown fox" vector.
        #expect(HMACSHA1.mac(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)).hex == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        #expect(HMACSHA1.mac(key: Array("key".utf8), message: Array("The quick brown fox jumps over the lazy dog".utf8)).hex == "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9")
    }

    @Test func turnCredentialsNeedASecret() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            try Self.expectError(try await node.request(.post, "/v1/turn/credentials", auth: .tenant(tenant)), 503, "unavailable")
        }
    }

    // MARK: Tenant: audit log

    @Test func auditEventsFilterAndPaginate() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let start = Date()
            let alice = try await node.join(tenant, room: "room-a", peer: "alice")
            let bob = try await node.join(tenant, room: "room-a", peer: "bob")
            let carol = try await node.join(tenant, room: "room-b", peer: "carol")
            try await bob.client.leave()
            _ = try await bob.nextClosed()
            #expect(try await node.request(.delete, "/v1/rooms/room-a/peers/alice", auth: .tenant(tenant)).status == 204)
            _ = try await alice.nextClosed()

            // Audit events are written in batches, off the hot path: wait for the last one.
            let all = try await Self.eventually {
                let events = try await Self.events(node, tenant, "/v1/events?limit=100")
                return events.contains { $0["type"]?.string == "session.ended" && $0["peer"]?.string == "alice" } ? events : nil
            }
            let types = Set(all.compactMap { $0["type"]?.string })
            #expect(types.isSuperset(of: ["tenant.created", "key.created", "room.created", "session.started", "session.ended", "peer.kicked"]))
            // Newest first, with the documented shape.
            let ids = all.compactMap { $0["id"]?.string }
            #expect(ids == ids.sorted(by: >) && Set(ids).count == ids.count)
            for event in all {
                #expect(event["tenant"]?.string == tenant.id && event["node"]?.string == "test-node")
                #expect(event["time"]?.string.flatMap(Self.parseTime) != nil && event["data"]?.object != nil)
            }
            let started = try #require(all.first { $0["type"]?.string == "session.started" && $0["peer"]?.string == "alice" })
            #expect(started["room"]?.string == "room-a" && started["session"]?.string?.isEmpty == false)
            #expect(!all.contains { $0.description.contains(tenant.apiSecret) })

            let onlyStarted = try await Self.events(node, tenant, "/v1/events?type=session.started")
            #expect(onlyStarted.count == 3 && onlyStarted.allSatisfy { $0["type"]?.string == "session.started" })
            let alices = try await Self.events(node, tenant, "/v1/events?peer=alice")
            #expect(Set(alices.compactMap { $0["type"]?.string }) == ["session.started", "session.ended", "peer.kicked"])
            let roomB = try await Self.events(node, tenant, "/v1/events?room=room-b")
            #expect(!roomB.isEmpty && roomB.allSatisfy { $0["room"]?.string == "room-b" })
            let combined = try await Self.events(node, tenant, "/v1/events?room=room-a&peer=bob&type=session.ended")
            #expect(combined.count == 1)

            // The room's own log (room-a still exists: the kick did not close it).
            let roomA = try await Self.events(node, tenant, "/v1/rooms/room-a/events?limit=100")
            #expect(!roomA.isEmpty && roomA.allSatisfy { $0["room"]?.string == "room-a" })
            #expect(try await Self.events(node, tenant, "/v1/rooms/room-a/events?type=peer.kicked").count == 1)
            #expect(try await Self.events(node, tenant, "/v1/rooms/room-a/events?peer=carol").isEmpty)
            try Self.expectError(try await node.request(.get, "/v1/rooms/nowhere/events", auth: .tenant(tenant)), 404, "not_found")

            // Time filters: since inclusive, until exclusive, any RFC 3339 offset.
            let future = Self.format(Date().addingTimeInterval(3600))
            let past = Self.format(start.addingTimeInterval(-3600))
            #expect(try await Self.events(node, tenant, "/v1/events?since=\(future)").isEmpty)
            #expect(try await Self.events(node, tenant, "/v1/events?until=\(past)").isEmpty)
            #expect(try await Self.events(node, tenant, "/v1/events?since=\(past)&limit=100").count == all.count)
            let sessionsSince = try await Self.events(node, tenant, "/v1/events?type=session.started&since=\(Self.format(start))")
            #expect(sessionsSince.count == 3)
            let offsetFuture = "2999-01-01T01:00:00%2B01:00"
            #expect(try await Self.events(node, tenant, "/v1/events?until=\(offsetFuture)&limit=100").count == all.count)
            #expect(try await Self.events(node, tenant, "/v1/events?since=2999-01-01t00:00:00z").isEmpty)

            // Pagination: pages of 2 walk the whole log exactly once, in order.
            var walked: [String] = []
            var cursor: String?
            repeat {
                let page = try await node.request(
                    .get, "/v1/events?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""), auth: .tenant(tenant)).json()
                let items = page["items"]?.array ?? []
                #expect(items.count <= 2)
                walked += items.compactMap { $0["id"]?.string }
                cursor = page["nextCursor"]?.string
            } while cursor != nil
            #expect(walked == ids)

            for query in ["type=session.exploded", "since=yesterday", "until=2025-02-30T00:00:00Z", "peer=", "room=", "limit=0", "limit=101", "limit=x", "cursor=", "cursor=bogus"] {
                try Self.expectError(try await node.request(.get, "/v1/events?\(query)", auth: .tenant(tenant)), 400, "bad_request")
            }
            await carol.stop()
        }
    }

    // MARK: Authentication and isolation

    @Test func authenticationIsRequiredAndChecked() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let wrongSecret = TestTenant(id: tenant.id, apiKey: tenant.apiKey, apiSecret: tenant.apiSecret + "x")
            let unknownKey = TestTenant(id: tenant.id, apiKey: "AKdoesnotexist000000", apiSecret: tenant.apiSecret)
            let cases: [(HTTPRequest.Method, String, TestNode.Auth)] = [
                (.get, "/v1/tenants", .none),
                (.get, "/v1/tenants", .header("Bearer not-the-token")),
                (.get, "/v1/tenants", .header("Bearer")),
                (.get, "/v1/tenants", .tenant(tenant)),
                (.post, "/v1/tenants", .header("Basic " + Data("admin:\(node.adminToken)".utf8).base64EncodedString())),
                (.get, "/v1/rooms", .none),
                (.get, "/v1/rooms", .admin),
                (.get, "/v1/rooms", .tenant(wrongSecret)),
                (.get, "/v1/rooms", .tenant(unknownKey)),
                (.get, "/v1/rooms", .header("Basic !!!not-base64")),
                (.get, "/v1/rooms", .header("Basic " + Data("no-colon".utf8).base64EncodedString())),
                (.post, "/v1/tokens", .none),
                (.get, "/v1/events", .header("Bearer \(tenant.apiSecret)")),
            ]
            for (method, path, auth) in cases {
                let response = try await node.request(method, path, auth: auth, body: method == .post ? "{}" : nil)
                try Self.expectError(response, 401, "unauthorized")
                #expect(response.headers[.wwwAuthenticate] != nil)
            }
            #expect(try await node.request(.get, "/v1/tenants", auth: .admin).status == 200)
            #expect(try await node.request(.get, "/v1/rooms", auth: .tenant(tenant)).status == 200)
        }
    }

    @Test func tenantsAreIsolated() async throws {
        try await TestNode.with { node in
            let a = try await node.createTenant(#"{"id":"tenant-a","name":"A"}"#)
            let b = try await node.createTenant(#"{"id":"tenant-b","name":"B"}"#)
            #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(a), body: #"{"name":"secret"}"#).status == 201)
            let alice = try await node.join(a, room: "secret", peer: "alice")

            try Self.expectError(try await node.request(.get, "/v1/rooms/secret", auth: .tenant(b)), 404, "not_found")
            try Self.expectError(try await node.request(.get, "/v1/rooms/secret/peers", auth: .tenant(b)), 404, "not_found")
            try Self.expectError(try await node.request(.get, "/v1/rooms/secret/events", auth: .tenant(b)), 404, "not_found")
            try Self.expectError(try await node.request(.delete, "/v1/rooms/secret/peers/alice", auth: .tenant(b)), 404, "not_found")
            try Self.expectError(
                try await node.request(.post, "/v1/rooms/secret/messages", auth: .tenant(b), body: #"{"data":"hi"}"#), 404, "not_found")
            try Self.expectError(try await node.request(.delete, "/v1/rooms/secret", auth: .tenant(b)), 404, "not_found")
            #expect(try await node.request(.get, "/v1/rooms", auth: .tenant(b)).json()["items"] == .array([]))
            #expect(try await Self.events(node, b, "/v1/events?room=secret").isEmpty)
            #expect(try await Self.events(node, b, "/v1/events?peer=alice").isEmpty)
            // The same name is a different room for B; A's room is untouched.
            #expect(try await node.request(.post, "/v1/rooms", auth: .tenant(b), body: #"{"name":"secret"}"#).status == 201)
            #expect(try await node.request(.get, "/v1/rooms/secret", auth: .tenant(a)).json()["peerCount"] == .number(1))
            #expect(try await node.request(.get, "/v1/rooms/secret", auth: .tenant(b)).json()["peerCount"] == .number(0))
            // B's events never show A's.
            _ = try await Self.eventually {
                try await Self.events(node, a, "/v1/events?peer=alice").isEmpty ? nil : true
            }
            let bEvents = try await Self.events(node, b, "/v1/events?limit=100")
            #expect(!bEvents.isEmpty && bEvents.allSatisfy { $0["tenant"]?.string == "tenant-b" })
            try await alice.assertAlive()
            await alice.stop()
        }
    }

    // MARK: Bad input and the API's own conventions

    @Test func malformedRequestsGetTheirErrors() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let admin = TestNode.Auth.admin
            let room = TestNode.Auth.tenant(tenant)
            let cases: [(TestNode.Auth, String, String, Int, String)] = [
                (admin, "/v1/tenants", "{", 400, "bad_request"),
                (admin, "/v1/tenants", "", 400, "bad_request"),
                (admin, "/v1/tenants", #"{"name":"x"} trailing"#, 400, "bad_request"),
                (admin, "/v1/tenants", "[]", 422, "validation_failed"),
                (admin, "/v1/tenants", "null", 422, "validation_failed"),
                (admin, "/v1/tenants", "{}", 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":null}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":42}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":""}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":"x","id":"UPPER"}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":"x","limits":[]}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":"x","limits":{"maxPeersPerRoom":"5"}}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":"x","limits":{"maxPeersPerRoom":1e30}}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", #"{"name":"x","autoCreateRooms":"yes"}"#, 422, "validation_failed"),
                (admin, "/v1/tenants", "{\"name\":\"\(String(repeating: "n", count: 201))\"}", 422, "validation_failed"),
                (room, "/v1/rooms", #"{"name":"r","maxPeers":"3"}"#, 422, "validation_failed"),
                (room, "/v1/rooms", #"{"name":"r","maxPeers":1.5}"#, 422, "validation_failed"),
                (room, "/v1/rooms", #"{"name":"r","maxPeers":10001}"#, 422, "validation_failed"),
                (room, "/v1/rooms", #"{"name":["r"]}"#, 422, "validation_failed"),
                (room, "/v1/rooms", "{\"name\":\"r\",\"metadata\":{\"x\":\"\(String(repeating: "y", count: 4100))\"}}", 422, "validation_failed"),
                (room, "/v1/rooms", "{\"name\":\"\(String(repeating: "x", count: 10_240))\"}", 422, "validation_failed"),
                (room, "/v1/rooms", #"{"name":"\u0000"}"#, 422, "validation_failed"),
            ]
            for (auth, path, body, status, code) in cases {
                let response = try await node.request(.post, path, auth: auth, body: body)
                try Self.expectError(response, status, code, "\(path) \(body.prefix(80))")
            }
            // Integral numbers are integers; unknown fields are ignored.
            let integral = try await node.request(.post, "/v1/rooms", auth: room, body: #"{"name":"r","maxPeers":3e0,"extra":{"ignored":true}}"#)
            #expect(try integral.status == 201 && (integral.json()["maxPeers"]) == .number(3))

            // Bodies past 1 MiB.
            let huge = "{\"name\":\"r2\",\"metadata\":{\"x\":\"\(String(repeating: "y", count: 1_100_000))\"}}"
            try Self.expectError(try await node.request(.post, "/v1/rooms", auth: room, body: huge), 413, "too_large")

            // Unknown paths, unsupported methods.
            let unknown = try await node.request(.get, "/v1/nothing-here", auth: room)
            try Self.expectError(unknown, 404, "not_found")
            try Self.expectError(try await node.request(.get, "/", auth: .none), 404, "not_found")
            let methods: [(HTTPRequest.Method, String, String)] = [
                (.put, "/v1/rooms", "GET, POST"), (.post, "/v1/rooms/r", "GET, PATCH, DELETE"), (.get, "/v1/tokens", "POST"),
                (.delete, "/v1/events", "GET"), (.patch, "/v1/tenants/x/keys/AKx", "DELETE"), (.post, "/v1/openapi.yaml", "GET"),
                (HTTPRequest.Method("QUERY")!, "/v1/rooms/r/peers", "GET"),
            ]
            for (method, path, allow) in methods {
                let response = try await node.request(method, path, auth: room)
                try Self.expectError(response, 405, "method_not_allowed", "\(method) \(path)")
                #expect(response.headers[.allow] == allow, "\(method) \(path)")
            }
            // The signaling endpoint without an upgrade.
            try Self.expectError(try await node.request(.get, "/v1/signal"), 426, "bad_request")
        }
    }

    @Test func theOpenAPIDocumentIsServed() async throws {
        try await TestNode.with { node in
            let response = try await node.request(.get, "/v1/openapi.yaml")
            #expect(response.status == 200)
            #expect(response.headers[.contentType]?.hasPrefix("application/yaml") == true)
            #expect(response.text.hasPrefix("openapi: 3.1"))
            for path in ["/v1/tenants:", "/v1/rooms/{room}/messages:", "/v1/turn/credentials:", "/v1/events:"] {
                #expect(response.text.contains("\n  \(path)\n"), "\(path) is documented")
            }
        }
    }

    // MARK: Helpers

    static let defaultLimits = JSONValue.object([
        "maxConnections": .number(10_000), "maxPeersPerRoom": .number(100), "messagesPerSecond": .number(50), "messageBurst": .number(100),
    ])

    /// An error response: its status, `{"error":{"code","message"}}` and nothing else.
    static func expectError(
        _ response: TestNode.HTTPResult, _ status: Int, _ code: String, _ comment: String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        #expect(response.status == status, "\(comment) → \(response.status) \(response.text.prefix(300))", sourceLocation: sourceLocation)
        #expect(response.headers[.contentType]?.hasPrefix("application/json") == true, sourceLocation: sourceLocation)
        let json = try response.json()
        guard case .object(let error)? = json["error"], json.count == 1 else {
            Issue.record("not an error body: \(response.text)", sourceLocation: sourceLocation)
            return
        }
        #expect(error["code"]?.string == code, "\(comment) → \(response.text.prefix(300))", sourceLocation: sourceLocation)
        #expect(error["message"]?.string?.isEmpty == false, sourceLocation: sourceLocation)
    }

    /// A raw WebSocket upgrade request through the HTTP client: refused ones come back as a
    /// plain response with the JSON error body.
    static func upgrade(_ node: TestNode, token: String) async throws -> TestNode.HTTPResult {
        var headers = HTTPFields()
        headers[.connection] = "Upgrade"
        headers[.upgrade] = "websocket"
        headers[.secWebSocketVersion] = "13"
        headers[.secWebSocketKey] = "dGhlIHNhbXBsZSBub25jZQ=="
        return try await node.request(.get, "/v1/signal?access_token=\(token)", headers: headers)
    }

    static func events(_ node: TestNode, _ tenant: TestTenant, _ path: String) async throws -> [JSONValue] {
        let response = try await node.request(.get, path, auth: .tenant(tenant))
        try #require(response.status == 200, "\(path): \(response.status) \(response.text)")
        return try #require(try response.json()["items"]?.array)
    }

    /// Polls `body` until it returns a value, for up to 3 s (the audit writer batches).
    static func eventually<T>(_ body: () async throws -> T?) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(3)
        while true {
            if let value = try await body() { return value }
            guard ContinuousClock.now < deadline else { throw TestFailure("condition not met within 3 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func json(_ object: [String: JSONValue]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: try encoder.encode(JSONValue.object(object)), as: UTF8.self)
    }

    /// Percent-encodes everything but unreserved ASCII.
    static func encodePath(_ segment: String) -> String {
        var allowed = CharacterSet()
        allowed.insert(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
    }

    static func parseTime(_ text: String) -> Date? {
        guard text.hasSuffix("Z") else { return nil }
        return try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
    }

    static func format(_ date: Date) -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date)
    }
}

extension JSONValue {
    fileprivate subscript(_ key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    fileprivate var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    fileprivate var array: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    fileprivate var object: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    fileprivate var description: String {
        (try? RESTAPITests.json(["v": self])) ?? ""
    }
}

extension Optional where Wrapped == JSONValue {
    fileprivate subscript(_ key: String) -> JSONValue? {
        self.flatMap { $0[key] }
    }
}

/// HMAC-SHA1 written out (RFC 2104 over FIPS 180-4), so the TURN credential check does not
/// reuse the server's own code.
enum HMACSHA1 {
    static func base64(key: String, message: String) -> String {
        Data(mac(key: Array(key.utf8), message: Array(message.utf8))).base64EncodedString()
    }

    static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var block = key.count > 64 ? sha1(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        let inner = sha1(block.map { $0 ^ 0x36 } + message)
        return sha1(block.map { $0 ^ 0x5C } + inner)
    }

    static func sha1(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
        var padded = message + [0x80]
        while padded.count % 64 != 56 { padded.append(0) }
        let bits = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { padded.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        for chunk in stride(from: 0, to: padded.count, by: 64) {
            var w = [UInt32](repeating: 0, count: 80)
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(padded[j]) << 24 | UInt32(padded[j + 1]) << 16 | UInt32(padded[j + 2]) << 8 | UInt32(padded[j + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = x << 1 | x >> 31
            }
            var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
            for i in 0..<80 {
                let (f, k): (UInt32, UInt32) = switch i {
                case 0..<20: ((b & c) | (~b & d), 0x5A82_7999)
                case 20..<40: (b ^ c ^ d, 0x6ED9_EBA1)
                case 40..<60: ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                default: (b ^ c ^ d, 0xCA62_C1D6)
                }
                let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                (e, d, c, b, a) = (d, c, b << 30 | b >> 2, a, temp)
            }
            h[0] = h[0] &+ a
            h[1] = h[1] &+ b
            h[2] = h[2] &+ c
            h[3] = h[3] &+ d
            h[4] = h[4] &+ e
        }
        return h.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> (24 - 8 * UInt32($0))) } }
    }
}

extension [UInt8] {
    fileprivate var hex: String { map { String(format: "%02x", $0) }.joined() }
}
