import Foundation
import NIOCore
import NIOPosix
import RedisBus
import Signaling
import Synchronization
import Testing

/// Tests that change server settings, use TLS or stop the server: each on a private
/// `scripts/redis start --new` server.
@Suite(.requiresRedis, .serialized) struct RedisPrivateServerTests {
    @Test func authWithPasswordAndACLUser() async throws {
        try await withPrivateRedis(tls: false) { server in
            let open = try await TestRedis.connect(try RedisConfiguration(url: server.url))
            _ = try await open.execute(["ACL", "SETUSER", "alice", "on", ">wonderland", "~*", "&*", "+@all"])
            _ = try await open.execute(["CONFIG", "SET", "requirepass", "hunter2"])
            open.close()

            let withPassword = try await TestRedis.connect(try RedisConfiguration(url: server.url.replacingOccurrences(of: "//", with: "//:hunter2@")))
            #expect(try await withPassword.execute(["ACL", "WHOAMI"]).string == "default")
            withPassword.close()

            let asAlice = try await TestRedis.connect(try RedisConfiguration(url: server.url.replacingOccurrences(of: "//", with: "//alice:wonderland@")))
            #expect(try await asAlice.execute(["ACL", "WHOAMI"]).string == "alice")
            asAlice.close()

            let wrong = try RedisConfiguration(url: server.url.replacingOccurrences(of: "//", with: "//alice:not-it@"))
            await #expect {
                try await TestRedis.connect(wrong)
            } throws: { error in
                guard let error = error as? RedisError else { return false }
                return error.serverErrorPrefix == "WRONGPASS" && !error.description.contains("not-it")
            }
            await #expect { try await TestRedis.connect(try RedisConfiguration(url: server.url)) } throws: {
                ($0 as? RedisError)?.serverErrorPrefix == "NOAUTH"
            }
        }
    }

    @Test func tlsWithTheTestCA() async throws {
        try await withPrivateRedis(tls: true) { server in
            let tlsURL = try #require(server.tlsURL)
            let configuration = try RedisConfiguration(url: tlsURL)
            #expect(configuration.tls && configuration.caFile != nil)
            let connection = try await TestRedis.connect(configuration)
            #expect(try await connection.execute(["PING"]) == .simpleString("PONG"))
            // pipelined over TLS too
            let replies = connection.sendBatch((0..<1000).map { ["ECHO", RedisArgument($0)] })
            for (i, reply) in replies.enumerated() { #expect(try await reply.get().string == "\(i)") }
            connection.close()
            // without the test CA (system roots) the certificate is refused
            var untrusted = configuration
            untrusted.caFile = nil
            await #expect(throws: (any Error).self) { try await TestRedis.connect(untrusted) }
            // a CA file that does not exist is a clear TLS error
            untrusted.caFile = "/nonexistent/ca.pem"
            await #expect { try await TestRedis.connect(untrusted) } throws: { ($0 as? RedisError)?.code == .tls }
            // the bus over rediss:// end to end
            let client = RedisClient(configuration: configuration, logger: TestRedis.logger)
            let bus = RedisBus(client: client, configuration: .init(nodeID: "tls-node"), logger: TestRedis.logger)
            let inbox = Inbox<BusMessage>()
            let subscription = bus.subscribe(.control) { inbox.append($0) }
            defer { subscription.cancel() }
            try await withRunningClient(client) {
                #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
                #expect(await bus.isAvailable())
                #expect(bus.publish(.tenantChanged(tenantID: "t"), to: .control))
                #expect(await eventually { inbox.all == [.tenantChanged(tenantID: "t")] })
            }
        }
    }

    @Test func reconnectsAndResubscribesAfterARestart() async throws {
        try await withPrivateRedis(tls: false) { server in
            let configuration = try RedisConfiguration(url: server.url)
            let client = RedisClient(
                configuration: configuration, backoff: .init(initial: .milliseconds(50), maximum: .milliseconds(500)), logger: TestRedis.logger)
            let bus = RedisBus(client: client, configuration: .init(nodeID: TestRedis.unique("node")), logger: TestRedis.logger)
            let inbox = Inbox<BusMessage>()
            let subscription = bus.subscribe(.node("n1")) { inbox.append($0) }
            defer { subscription.cancel() }
            let message = BusMessage.kick(tenantID: "t", room: "r", peerId: "p")
            try await withRunningClient(client) {
                #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
                #expect(await bus.isAvailable())
                #expect(bus.publish(message, to: .node("n1")))
                #expect(await eventually { inbox.count == 1 })

                try await server.down()
                #expect(await eventually { !client.isAvailable })
                #expect(!bus.publish(message, to: .node("n1")))  // at once, not queued
                #expect(await !bus.isAvailable())

                try await server.up()
                #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
                #expect(await bus.isAvailable())
                #expect(bus.publish(message, to: .node("n1")))
                #expect(await eventually { inbox.count == 2 })
                let statistics = client.statistics
                #expect(statistics.connects == 2)
                #expect(statistics.commandLosses + statistics.subscriberLosses == 1)
            }
        }
    }

    /// A server that stops answering (CLIENT PAUSE here; a half-open connection in the
    /// wild) is noticed by the health-check PING and the command timeout, and left.
    @Test func healthCheckNoticesAServerThatStopsAnswering() async throws {
        try await withPrivateRedis { server in
            var configuration = try RedisConfiguration(url: server.url)
            configuration.commandTimeout = .milliseconds(300)
            let client = RedisClient(
                configuration: configuration, backoff: .init(initial: .milliseconds(50), maximum: .milliseconds(200)),
                healthCheckInterval: .milliseconds(100), logger: TestRedis.logger)
            let admin = try await TestRedis.connect(try RedisConfiguration(url: server.url))
            defer { admin.close() }
            try await withRunningClient(client) {
                #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
                _ = try await admin.execute(["CLIENT", "PAUSE", "1500", "ALL"])
                #expect(await eventually { client.statistics.commandLosses + client.statistics.subscriberLosses >= 1 })
                #expect(await eventually { client.statistics.connects >= 2 && client.isAvailable })
            }
        }
    }

    /// Redis closes a subscriber whose output buffer passes `client-output-buffer-limit
    /// pubsub`; the client counts the loss, reconnects, resubscribes, and messages published
    /// while it was gone are lost (pub/sub keeps nothing).
    @Test func slowSubscriberIsDisconnectedAndComesBack() async throws {
        try await withPrivateRedis(tls: false) { server in
            let configuration = try RedisConfiguration(url: server.url)
            let admin = try await TestRedis.connect(configuration)
            defer { admin.close() }
            _ = try await admin.execute(["CONFIG", "SET", "client-output-buffer-limit", "pubsub 256kb 128kb 1"])

            // The slow handler blocks its event loop: give the client a loop of its own, so the
            // other tests (and the publisher below) are not slowed down with it.
            let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = RedisClient(
                configuration: configuration, backoff: .init(initial: .milliseconds(50), maximum: .milliseconds(500)),
                eventLoopGroup: clientGroup, logger: TestRedis.logger)
            let channel = TestRedis.unique("slow")
            let received = Inbox<Int>()
            let slow = Mutex(true)
            let subscription = client.subscribe(channel) { message in
                received.append(message.payload.count)
                // a handler that cannot keep up: it holds the client's event loop
                if slow.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.02) }
            }
            defer { subscription.cancel() }
            let publisher = try await TestRedis.connect(configuration)
            defer { publisher.close() }

            try await withRunningClient(client) {
                #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
                let payload = RedisArgument(bytes: [UInt8](repeating: 0x61, count: 16 * 1024))
                let sent = 400  // 6.4 MB against a 256 kB limit
                let replies = publisher.sendBatch((0..<sent).map { _ in ["PUBLISH", RedisArgument(channel), payload] })
                for reply in replies { _ = try await reply.get() }
                #expect(await eventually(.seconds(30)) { client.statistics.subscriberLosses >= 1 })
                slow.withLock { $0 = false }
                #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
                let before = received.count
                #expect(before < sent, "the subscriber was cut off, so some messages never arrived")
                // resubscribed: new messages arrive again
                _ = try await publisher.execute(["PUBLISH", RedisArgument(channel), "after"])
                #expect(await eventually { received.all.last == 5 })
                // what Redis says about it (its log), for the operations docs
                let log = (try? String(contentsOfFile: server.directory + "/server.log", encoding: .utf8)) ?? ""
                let line = log.split(separator: "\n").first { $0.contains("output buffer") }
                #expect(line != nil, "Redis logs why it closed the subscriber")
                print("slow subscriber: sent \(sent) × 16 KiB, received \(before) before the cut; \(client.statistics); redis log: \(line ?? "n/a")")
            }
            try await clientGroup.shutdownGracefully()
        }
    }
}
