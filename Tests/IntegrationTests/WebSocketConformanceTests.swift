import Foundation
import Signaling
import SwitchboardClient
import SwitchboardServer
import Testing

/// SPEC §3 WebSocket conformance (RFC 6455), seen from a client on a bare TCP socket: every
/// close the server starts arrives as a close frame with its code followed by an orderly
/// end of the connection — never a reset — even while the client keeps sending; bursts are
/// not abuse; invalid UTF-8 and bad control frames fail the connection with 1007 and 1002.
@Suite("WebSocket conformance", .serialized, .timeLimit(.minutes(2)))
struct WebSocketConformanceTests {
    /// A tenant whose limits never refuse the flood, so the close under test is the only one.
    static let generousTenant = #"{"name":"Loud","limits":{"messagesPerSecond":100000,"messageBurst":100000}}"#
    static let ping = Array(#"{"type":"ping"}"#.utf8)
    /// A client that keeps sending — about a thousand frames a second — while the server closes.
    static let pace: Duration = .milliseconds(1)

    static func connect(_ node: TestNode, _ tenant: TestTenant, peer: String, room: String = "room-1") async throws -> WireSocket {
        let token = try await node.token(tenant, room: room, peer: peer)
        return try await open(node, path: "/v1/signal?access_token=\(token)")
    }

    /// The blocking handshake runs on a thread of its own (see ``onOwnThread(_:)``).
    static func open(_ node: TestNode, path: String) async throws -> WireSocket {
        let port = node.publicPort
        return try await onOwnThread { try WireSocket.connect(port: port, path: path) }
    }

    static func expectCleanClose(_ outcome: WireSocket.Outcome, code: Int, _ what: String) {
        #expect(outcome.closeCode == code, "\(what): close code \(outcome.closeCode.map(String.init) ?? "none"), ending \(outcome.ending)")
        #expect(outcome.ending == .fin, "\(what): the connection ended with \(outcome.ending) after \(outcome.flooded) frames")
    }

    @Test func aSustainedFloodIsClosedWith1008AsACloseFrame() async throws {
        try await TestNode.with({ $0.floodCloseSeconds = 1 }) { node in
            let tenant = try await node.createTenant(#"{"name":"Slow","limits":{"messagesPerSecond":50,"messageBurst":100}}"#)
            let socket = try await Self.connect(node, tenant, peer: "flooder")
            let started = ContinuousClock.now
            let outcome = try await socket.runUntilClosed(flood: Self.ping, floodInterval: Self.pace)
            Self.expectCleanClose(outcome, code: 1008, "flood")
            #expect(ContinuousClock.now - started >= .milliseconds(900), "closed before the flood lasted the configured second")
            #expect(outcome.texts.contains { $0.contains("\"rate_limited\"") })
        }
    }

    @Test func aFrameTooLargeIsClosedWith1009WhileTheClientKeepsSending() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant(Self.generousTenant)
            let socket = try await Self.connect(node, tenant, peer: "big")
            let huge = #"{"type":"broadcast","data":""# + String(repeating: "x", count: 70_000) + #""}"#
            let outcome = try await socket.runUntilClosed(flood: Self.ping, floodInterval: Self.pace) {
                try await Task.sleep(for: .milliseconds(100))
                try socket.send(text: huge)
            }
            Self.expectCleanClose(outcome, code: 1009, "too large")
        }
    }

    @Test func aBinaryFrameIsClosedWith1003WhileTheClientKeepsSending() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant(Self.generousTenant)
            let socket = try await Self.connect(node, tenant, peer: "binary")
            let outcome = try await socket.runUntilClosed(flood: Self.ping, floodInterval: Self.pace) {
                try await Task.sleep(for: .milliseconds(100))
                try socket.send(opcode: 0x2, payload: [1, 2, 3])
            }
            Self.expectCleanClose(outcome, code: 1003, "binary")
        }
    }

    @Test func aKickIsClosedWith1008WhileTheClientKeepsSending() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant(Self.generousTenant)
            let socket = try await Self.connect(node, tenant, peer: "kicked")
            let outcome = try await socket.runUntilClosed(flood: Self.ping, floodInterval: Self.pace) {
                try await Task.sleep(for: .milliseconds(100))
                let result = try await node.request(.delete, "/v1/rooms/room-1/peers/kicked", auth: .tenant(tenant))
                #expect(result.status == 204, "kick: \(result.status) \(result.text)")
            }
            Self.expectCleanClose(outcome, code: 1008, "kick")
        }
    }

    @Test func suspendingTheTenantClosesWith1008WhileTheClientKeepsSending() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant(Self.generousTenant)
            let socket = try await Self.connect(node, tenant, peer: "suspended")
            let outcome = try await socket.runUntilClosed(flood: Self.ping, floodInterval: Self.pace) {
                try await Task.sleep(for: .milliseconds(100))
                let result = try await node.request(.patch, "/v1/tenants/\(tenant.id)", auth: .admin, body: #"{"status":"suspended"}"#)
                #expect(result.status == 200, "suspend: \(result.status) \(result.text)")
            }
            Self.expectCleanClose(outcome, code: 1008, "suspend")
        }
    }

    @Test func aReplacedConnectionIsClosedWith4001WhileTheClientKeepsSending() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant(Self.generousTenant)
            let socket = try await Self.connect(node, tenant, peer: "twin")
            let outcome = try await socket.runUntilClosed(flood: Self.ping, floodInterval: Self.pace) {
                try await Task.sleep(for: .milliseconds(100))
                let second = try await node.join(tenant, peer: "twin")
                await second.stop()
            }
            Self.expectCleanClose(outcome, code: 4001, "replaced")
            #expect(outcome.texts.contains { $0.contains("\"replaced\"") })
        }
    }

    @Test func aDrainClosesWith1001WhileTheClientKeepsSending() async throws {
        try await TestNode.with({ $0.drainTimeout = 0.5 }) { node in
            let tenant = try await node.createTenant(Self.generousTenant)
            let socket = try await Self.connect(node, tenant, peer: "stayer")
            let outcome = try await socket.runUntilClosed(flood: Self.ping, floodInterval: Self.pace) {
                try await Task.sleep(for: .milliseconds(100))
                await node.node.shutdown()
            }
            Self.expectCleanClose(outcome, code: 1001, "drain")
            // `retryAfterMs` stays within half the drain timeout (250 ms here, not 5 s).
            let reconnect = try #require(outcome.texts.first { $0.contains("\"type\":\"reconnect\"") })
            let retryAfter = try #require((try JSONSerialization.jsonObject(with: Data(reconnect.utf8)) as? [String: Any])?["retryAfterMs"] as? Int)
            #expect((0...250).contains(retryAfter), "\(reconnect)")
        }
    }

    @Test func aDrainAsksClientsBackWithinHalfItsTimeout() {
        var configuration = ServerConfiguration()
        #expect(configuration.drainRetryAfterBoundMs == 5000)  // 30 s drain: the 5 s jitter
        configuration.drainTimeout = 5
        #expect(configuration.drainRetryAfterBoundMs == 2500)
        configuration.drainTimeout = 0
        #expect(configuration.drainRetryAfterBoundMs == 0)
    }

    @Test func aBurstAboveTheRateGetsRateLimitedAndTheConnectionStaysOpen() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()  // 50/s, burst 100 (SPEC defaults)
            let raw = try await RawWebSocket.connect(node.signalURL(try await node.token(tenant, peer: "bursty")))
            _ = try await raw.waitFor("welcome")
            for index in 0..<300 {
                try await raw.send(text: "{\"type\":\"ping\",\"id\":\(index)}")
            }
            let deadline = ContinuousClock.now + .seconds(5)
            while raw.texts.filter({ $0.contains("\"pong\"") || $0.contains("\"rate_limited\"") }).count < 300 {
                guard ContinuousClock.now < deadline, !raw.isClosed else { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let pongs = raw.texts.filter { $0.contains("\"pong\"") }.count
            let limited = raw.texts.filter { $0.contains("\"rate_limited\"") }.count
            #expect(pongs + limited == 300, "pongs \(pongs), rate_limited \(limited)")
            #expect(pongs >= 100 && limited >= 150, "pongs \(pongs), rate_limited \(limited)")
            #expect(!raw.isClosed, "the burst closed the connection with \(raw.code.map(String.init) ?? "no code")")
            try await Task.sleep(for: .milliseconds(300))
            try await raw.send(text: #"{"type":"ping","id":"after-the-burst"}"#)
            _ = try await raw.waitFor("after-the-burst")
            await raw.cancel()
        }
    }

    @Test func invalidUTF8FailsTheConnectionWith1007() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let socket = try await Self.connect(node, tenant, peer: "garbled")
            let outcome = try await socket.runUntilClosed {
                try await Task.sleep(for: .milliseconds(50))
                // A lone surrogate encoded in UTF-8, inside an otherwise fine frame.
                try socket.send(opcode: 0x1, payload: Array(#"{"type":"broadcast","data":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8))
            }
            Self.expectCleanClose(outcome, code: 1007, "invalid UTF-8")
        }
    }

    @Test(arguments: [
        ("a fragmented ping", WireSocket.frame(opcode: 0x9, payload: [1], fin: false)),
        ("a ping of 126 bytes", WireSocket.frame(opcode: 0x9, payload: [UInt8](repeating: 7, count: 126))),
        ("a close of 126 bytes", WireSocket.frame(opcode: 0x8, payload: [3, 232] + [UInt8](repeating: 65, count: 124))),
    ])
    func badControlFramesFailTheConnectionWith1002(what: String, frame: [UInt8]) async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let socket = try await Self.connect(node, tenant, peer: "controller")
            let outcome = try await socket.runUntilClosed {
                try await Task.sleep(for: .milliseconds(50))
                try socket.send(raw: frame)
            }
            Self.expectCleanClose(outcome, code: 1002, what)
        }
    }

    @Test func anExpiringTokenClosesTheConnectionWithinASecondOfItsExpiry() async throws {
        try await TestNode.with { node in  // heartbeat 20 s: the close must not wait for it
            let tenant = try await node.createTenant()
            // exp + the 30 s leeway falls 0.5–1.5 s from now.
            let token = try await node.token(tenant, peer: "short-lived", ttl: -28.5)
            let socket = try await Self.open(node, path: "/v1/signal?access_token=\(token)")
            let started = ContinuousClock.now
            let outcome = try await socket.runUntilClosed(timeout: .seconds(6))
            Self.expectCleanClose(outcome, code: 1008, "token expiry")
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(outcome.texts.contains { $0.contains("token expired") })
        }
    }

    @Test func leaveWithANullIdLeaves() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            let socket = try await Self.connect(node, tenant, peer: "bob")
            _ = try await alice.next { if case .peerJoined = $0 { true } else { false } }
            let outcome = try await socket.runUntilClosed {
                try socket.send(text: #"{"type":"leave","id":null}"#)
            }
            Self.expectCleanClose(outcome, code: 1000, "leave")
            let left = try await alice.next { if case .peerLeft = $0 { true } else { false } }
            #expect(left == .peerLeft(peerId: "bob", reason: "left"))
            await alice.stop()
        }
    }
}
