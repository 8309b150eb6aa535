import NIOCore
import RedisBus
import Signaling
import Testing

@Suite struct RedisBusChannelNames {
    @Test func topicsMapToHashTaggedChannels() {
        #expect(RedisBus.channel(for: .node("node-a")) == "sb:{node:node-a}")
        #expect(RedisBus.channel(for: .control) == "sb:{control}")
        #expect(RedisBus.pingChannel(nodeID: "node-a") == "sb:{node:node-a}:ping")
        #expect(RedisBus.channel(for: .control, prefix: "x") == "x:{control}")
    }
}

@Suite(.requiresRedis) struct RedisBusAdapterTests {
    @Test(arguments: [false, true])
    func busRoundTrip(sharded: Bool) async throws {
        let client = RedisClient(configuration: try TestRedis.configuration, logger: TestRedis.logger)
        let nodeID = TestRedis.unique("node")
        let bus = RedisBus(client: client, configuration: .init(nodeID: nodeID, sharded: sharded), logger: TestRedis.logger)
        // before the client runs, publish is refused at once
        #expect(!bus.publish(.tenantChanged(tenantID: "t"), to: .control))
        #expect(await !bus.isAvailable())
        let toNode = Inbox<BusMessage>()
        let control = Inbox<BusMessage>()
        let s1 = bus.subscribe(.node(nodeID)) { toNode.append($0) }
        let s2 = bus.subscribe(.control) { control.append($0) }
        defer {
            s1.cancel()
            s2.cancel()
        }
        let data = try RawJSON(validating: #"{"type":"offer","sdp":"v=0"}"#)
        let messages = (0..<1000).map { i in
            BusMessage.deliver(RelayEnvelope(tenantID: "t", room: "r", kind: .signal, from: "a", to: "b\(i)", exclude: nil, data: data))
        }
        try await withRunningClient(client) {
            #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
            #expect(await bus.isAvailable())
            for message in messages { #expect(bus.publish(message, to: .node(nodeID))) }
            #expect(bus.publish(.roomClosed(tenantID: "t", room: "r"), to: .control))
            #expect(await eventually { toNode.count == messages.count && control.count >= 1 })
            #expect(toNode.all == messages)  // in order
            #expect(control.all.contains(.roomClosed(tenantID: "t", room: "r")))
        }
    }

    @Test func aStalledServerFailsReadinessWithSocketsOpen() async throws {
        // The ping must come back through the subscription: while Redis serves nobody
        // (CLIENT PAUSE), readiness fails although both sockets stay open.
        let client = RedisClient(configuration: try TestRedis.configuration, logger: TestRedis.logger)
        let nodeID = TestRedis.unique("node")
        let bus = RedisBus(client: client, configuration: .init(nodeID: nodeID, pingTimeout: .milliseconds(300)), logger: TestRedis.logger)
        try await withRunningClient(client) {
            #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
            #expect(await bus.isAvailable())
            let admin = try await TestRedis.connect(try TestRedis.configuration)
            defer { admin.close() }
            // Redis stops processing every client's commands for 1.5 s
            _ = try await admin.execute(["CLIENT", "PAUSE", "1500", "ALL"])
            #expect(client.isAvailable)
            #expect(await !bus.isAvailable())
            #expect(await eventually { await bus.isAvailable() })
            // a forced reconnect comes back by itself
            client.reconnect()
            #expect(await eventually { client.statistics.connects == 2 })
            #expect(await eventually { await bus.isAvailable() })
        }
    }

    @Test func cancellingTheLastSubscriptionUnsubscribes() async throws {
        let client = RedisClient(configuration: try TestRedis.configuration, logger: TestRedis.logger)
        let channel = TestRedis.unique("cancel")
        let admin = try await TestRedis.connect(try TestRedis.configuration)
        defer { admin.close() }
        func subscribers() async throws -> Int64? {
            try await admin.execute(["PUBSUB", "NUMSUB", RedisArgument(channel)]).array?.last?.int
        }
        try await withRunningClient(client) {
            #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
            let first = client.subscribe(channel) { _ in }
            let second = client.subscribe(channel) { _ in }
            let subscribed = try await eventually { try await subscribers() == 1 }
            #expect(subscribed)
            first.cancel()
            first.cancel()  // a second cancel does nothing
            // the other handler still wants the channel
            let stillOne = try await subscribers()
            #expect(stillOne == 1)
            second.cancel()
            let unsubscribed = try await eventually { try await subscribers() == 0 }
            #expect(unsubscribed)
        }
    }
}
