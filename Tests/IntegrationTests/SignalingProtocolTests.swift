import Foundation
import HTTPTypes
import SwitchboardServer
import Signaling
import SwitchboardClient
import Testing

@Suite("WebSocket protocol", .serialized, .timeLimit(.minutes(1)))
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

    @Test func badFramesGetErrorsAndTheConnectionStaysUsable() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let raw = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "mallory")))
            _ = try await raw.waitFor("welcome")
            let cases: [(frame: String, code: String)] = [
                ("not json", "bad_request"),
                ("{\"type\":\"signal\",\"to\":5,\"data\":1,\"id\":\"a\"}", "bad_request"),
                ("{\"type\":\"signal\",\"data\":1,\"id\":\"b\"}", "bad_request"),
                ("{\"type\":\"warp\",\"id\":\"c\"}", "unknown_type"),
                ("{\"type\":42}", "bad_request"),
                ("[1,2,3]", "bad_request"),
                ("{\"type\":\"signal\",\"to\":\"nobody\",\"data\":{},\"id\":\"d\"}", "peer_not_found"),
                ("{\"type\":\"update\",\"metadata\":[1]}", "bad_request"),
                ("{\"type\":\"resume\",\"resumeToken\":\"x\",\"lastSeq\":0}", "bad_request"),
                ("{\"type\":\"ping\",\"id\":{\"nested\":true}}", "bad_request"),
                (String(repeating: "[", count: 100) + String(repeating: "]", count: 100), "bad_request"),
                ("{\"type\":\"signal\",\"to\":\"alice\",\"data\":\"\\ud800\\u12\"}", "bad_request"),
            ]
            for (index, (frame, code)) in cases.enumerated() {
                try await raw.send(text: frame)
                let pingID = "after-\(index)"
                try await raw.send(text: "{\"type\":\"ping\",\"id\":\"\(pingID)\"}")
                _ = try await raw.waitFor(pingID)
                let errors = raw.texts.filter { $0.contains("\"type\":\"error\"") }
                #expect(errors.count == index + 1, "frame \(frame) gave \(raw.texts.suffix(2))")
                #expect(errors.last?.contains("\"code\":\"\(code)\"") == true, "frame \(frame) gave \(errors.last ?? "nothing")")
            }
            // Errors echo the client's id as `ref`.
            #expect(raw.texts.contains { $0.contains("\"code\":\"peer_not_found\"") && $0.contains("\"ref\":\"d\"") })
            #expect(raw.texts.contains { $0.contains("\"code\":\"unknown_type\"") && $0.contains("\"ref\":\"c\"") })
            try await alice.assertAlive()
            await raw.cancel()
            await alice.stop()
        }
    }

    @Test func binaryAndOversizeFramesCloseOnlyTheirConnection() async throws {
        try await TestNode.with({ $0.maxFrameBytes = 4096 }) { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let binary = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "bin")))
            try await binary.send(binary: [1, 2, 3])
            #expect(try await binary.waitClosed() == 1003)

            let large = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "big")))
            _ = try await large.waitFor("welcome")
            try await large.send(text: "{\"type\":\"broadcast\",\"data\":\"" + String(repeating: "x", count: 5000) + "\"}")
            #expect(try await large.waitClosed() == 1009)
            #expect(large.texts.contains { $0.contains("too_large") })
            // The broadcast never reached anyone, and the healthy session still works.
            try await alice.assertAlive()
            #expect(!alice.events.contains { if case .message = $0 { true } else { false } })
            await alice.stop()
        }
    }

    @Test func floodsAreRateLimited() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant(#"{"name":"Slow","limits":{"messagesPerSecond":5,"messageBurst":5}}"#)
            let raw = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "flooder")))
            _ = try await raw.waitFor("welcome")
            for index in 0..<20 {
                try await raw.send(text: "{\"type\":\"ping\",\"id\":\(index)}")
            }
            _ = try await raw.waitFor("rate_limited")
            try await Task.sleep(for: .milliseconds(200))
            let pongs = raw.texts.filter { $0.contains("\"pong\"") }.count
            let limited = raw.texts.filter { $0.contains("\"rate_limited\"") }.count
            #expect(pongs >= 5 && pongs <= 7, "pongs \(pongs)")
            #expect(pongs + limited == 20)
            #expect(try await node.metrics().contains("switchboard_rate_limited_frames_total"))
            // After a pause the bucket refills.
            try await Task.sleep(for: .milliseconds(500))
            try await raw.send(text: "{\"type\":\"ping\",\"id\":\"later\"}")
            _ = try await raw.waitFor("\"later\"")
            await raw.cancel()
        }
    }

    @Test func samePeerJoiningAgainReplacesTheOldConnection() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let first = try await node.join(tenant, peer: "bob")
            _ = try await alice.next { if case .peerJoined = $0 { true } else { false } }
            let second = try await node.join(tenant, peer: "bob")
            let error = try await first.nextError()
            #expect(error.code == "replaced")
            #expect(try await first.nextClosed().code == 4001)
            #expect(try await alice.next { if case .peerLeft = $0 { true } else { false } } == .peerLeft(peerId: "bob", reason: "left"))
            _ = try await alice.next { if case .peerJoined = $0 { true } else { false } }
            try await alice.client.signal(to: "bob", data: RawJSON(validating: "1"))
            #expect(try await second.nextMessage().seq == 1)
            await second.stop()
            await alice.stop()
        }
    }

    @Test func roomAndTenantLimitsRefuseTheUpgrade() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant(#"{"name":"Small","limits":{"maxPeersPerRoom":2,"maxConnections":3}}"#)
            let a = try await node.join(tenant, peer: "a")
            let b = try await node.join(tenant, peer: "b")
            let full = try await node.request(.get, "/v1/signal?access_token=\(try await node.token(tenant, peer: "c"))", headers: Upgrade.headers)
            #expect(full.status == 429 && full.errorCode == "rate_limited")
            let c = try await node.join(tenant, room: "other", peer: "c")
            let over = try await node.request(.get, "/v1/signal?access_token=\(try await node.token(tenant, room: "third", peer: "d"))", headers: Upgrade.headers)
            #expect(over.status == 429)
            // The same peer id replacing itself is not over the limit.
            let again = try await node.join(tenant, peer: "b")
            for peer in [a, b, c, again] { await peer.stop() }
        }
    }

    @Test func upgradeRefusalsAreJSONErrors() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let other = try await node.createTenant(#"{"name":"Other"}"#)
            func attempt(_ query: String, headers: HTTPFields = [:]) async throws -> TestNode.HTTPResult {
                var all = Upgrade.headers
                for field in headers { all.append(field) }
                return try await node.request(.get, "/v1/signal\(query)", headers: all)
            }
            #expect(try await attempt("").status == 401)
            #expect(try await attempt("?access_token=garbage").errorCode == "unauthorized")
            let expired = try await node.token(tenant, peer: "p", ttl: -120)
            #expect(try await attempt("?access_token=\(expired)").status == 401)
            // Signed with another tenant's secret but naming this tenant's key.
            let forged = try await AccessTokens.mint(
                AccessClaims(issuer: tenant.apiKey, subject: "p", room: "r", expiresAt: Date().addingTimeInterval(600)),
                apiKey: tenant.apiKey, secret: other.apiSecret)
            #expect(try await attempt("?access_token=\(forged)").status == 401)
            let valid = try await node.token(tenant, peer: "p")
            var bearer = HTTPFields()
            bearer[.authorization] = "Bearer \(valid)"
            let viaHeader = try await attempt("", headers: bearer)
            #expect(viaHeader.status == 101)
            // Rooms that may not be created on demand.
            let strict = try await node.createTenant(#"{"name":"Strict","autoCreateRooms":false}"#)
            let missing = try await attempt("?access_token=\(try await node.token(strict, room: "nope", peer: "p"))")
            #expect(missing.status == 404 && missing.errorCode == "not_found")
            // Suspended tenants.
            _ = try await node.request(.patch, "/v1/tenants/\(tenant.id)", auth: .admin, body: #"{"status":"suspended"}"#)
            let suspended = try await attempt("?access_token=\(valid)")
            #expect(suspended.status == 403 && suspended.errorCode == "forbidden")
            // Not an upgrade at all.
            let plain = try await node.request(.get, "/v1/signal?access_token=\(valid)")
            #expect(plain.status == 426)
            #expect(try await node.metrics().contains("switchboard_auth_rejections_total{reason=\"expired\"}"))
        }
    }

    @Test func welcomeCarriesTURNCredentialsThatAreRenewedBeforeExpiry() async throws {
        try await TestNode.with({
            $0.turnSecrets = ["s3cret", "old"]
            $0.turnURLs = ["turn:turn.example.com:3478", "stun:stun.example.com:3478"]
            $0.turnCredentialTTL = 2
            $0.heartbeatSeconds = 1
        }) { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            guard case .welcome(let welcome) = alice.events.first else { throw TestFailure("no welcome") }
            let servers = try welcome.iceServers.decode([ICEServer].self)
            let turn = try #require(servers.first { $0.urls.contains("turn:turn.example.com:3478") })
            let username = try #require(turn.username)
            #expect(username.hasSuffix(":\(tenant.id):alice"))
            #expect(TURNCredentials.verify(username: username, credential: turn.credential ?? "", secrets: ["s3cret"], now: Date()))
            #expect(servers.contains { $0.urls == ["stun:stun.example.com:3478"] && $0.username == nil })
            let refreshed = try await alice.next(timeout: .seconds(5)) { if case .iceServers = $0 { true } else { false } }
            guard case .iceServers(let fresh) = refreshed else { throw TestFailure("unreachable") }
            let renewed = try #require(try fresh.decode([ICEServer].self).first { $0.username != nil })
            #expect(renewed.username != username)
            await alice.stop()
        }
    }

    @Test func permissionsAreEnforced() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let listener = try await node.join(tenant, peer: "listener", permissions: [])
            let alice = try await node.join(tenant, peer: "alice", permissions: ["broadcast"])
            try await alice.client.signal(to: "listener", data: RawJSON(validating: "1"), id: "s")
            #expect(try await alice.nextError().code == "forbidden")
            try await alice.client.broadcast(data: RawJSON(validating: "2"))
            #expect(try await listener.nextMessage().data == "2")
            try await listener.client.broadcast(data: RawJSON(validating: "3"), id: "b")
            let error = try await listener.nextError()
            #expect(error.code == "forbidden" && error.ref == "\"b\"")
            await alice.stop()
            await listener.stop()
        }
    }
}

enum Upgrade {
    static var headers: HTTPFields {
        var fields = HTTPFields()
        fields[.connection] = "Upgrade"
        fields[.upgrade] = "websocket"
        fields[.secWebSocketVersion] = "13"
        fields[.secWebSocketKey] = "dGhlIHNhbXBsZSBub25jZQ=="
        return fields
    }
}
