import Foundation
import NIOCore
import RedisBus
import Testing

@Suite(.requiresRedis) struct RedisConnectionTests {
    @Test func pipelinesTenThousandCommandsInOrder() async throws {
        let connection = try await TestRedis.connect(try TestRedis.configuration)
        defer { connection.close() }
        let key = TestRedis.unique("pipeline")
        // submitted one by one from this task, they leave in a handful of writes
        let futures = (0..<10_000).map { _ in connection.send(["INCR", RedisArgument(key)]) }
        var expected: Int64 = 1
        for future in futures {
            #expect(try await future.get() == .integer(expected))
            expected += 1
        }
        // and the same as one batch, with mixed reply types
        let batch = connection.sendBatch((0..<10_000).map { i in i % 2 == 0 ? ["GET", RedisArgument(key)] : ["PING"] })
        for (i, future) in batch.enumerated() {
            let reply = try await future.get()
            #expect(reply == (i % 2 == 0 ? .bulkString(Array("10000".utf8)) : .simpleString("PONG")))
        }
        _ = try await connection.execute(["DEL", RedisArgument(key)])
    }

    @Test func commandsFromManyThreadsAllGetTheirReply() async throws {
        let connection = try await TestRedis.connect(try TestRedis.configuration)
        defer { connection.close() }
        let key = TestRedis.unique("threads")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for i in 0..<500 {
                        let value = "\(worker)-\(i)"
                        let reply = try await connection.execute(["ECHO", RedisArgument(value)])
                        #expect(reply.string == value)
                        #expect(connection.sendAndForget(["INCR", RedisArgument(key)]))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await connection.execute(["GET", RedisArgument(key)]).string == "4000")
        _ = try await connection.execute(["DEL", RedisArgument(key)])
    }

    @Test func errorRepliesFailOnlyTheirCommand() async throws {
        let connection = try await TestRedis.connect(try TestRedis.configuration)
        defer { connection.close() }
        let replies = connection.sendBatch([["PING"], ["NOSUCHCOMMAND"], ["ECHO", "x"]])
        #expect(try await replies[0].get() == .simpleString("PONG"))
        await #expect { try await replies[1].get() } throws: { ($0 as? RedisError)?.serverErrorPrefix == "ERR" }
        #expect(try await replies[2].get().string == "x")
    }

    @Test func pubSubRoundTrip() async throws {
        let configuration = try TestRedis.configuration
        let inbox = Inbox<RedisPubSubMessage>()
        let subscriber = try await TestRedis.connect(configuration, hooks: .init(onMessage: { inbox.append($0) }))
        let publisher = try await TestRedis.connect(configuration)
        defer {
            subscriber.close()
            publisher.close()
        }
        let channel = TestRedis.unique("ch")
        let pattern = TestRedis.unique("pat") + ":*"
        try await subscriber.subscribe([channel, channel + ":2"]).get()
        try await subscriber.subscribe([pattern], kind: .pattern).get()
        // PING is allowed in subscribe mode and answered in order
        #expect(try await subscriber.execute(["PING"]).array?.first?.string == "pong")
        #expect(try await publisher.execute(["PUBLISH", RedisArgument(channel), RedisArgument(bytes: [0, 1, 2])]) == .integer(1))
        let patterned = String(pattern.dropLast()) + "x"
        #expect(try await publisher.execute(["PUBLISH", RedisArgument(patterned), "p"]) == .integer(1))
        #expect(await eventually { inbox.count == 2 })
        let messages = inbox.all
        #expect(messages.first?.channel == channel && messages.first?.payload == [0, 1, 2] && messages.first?.kind == .channel)
        #expect(messages.last?.kind == .pattern && messages.last?.pattern == pattern && messages.last?.channel == patterned)
        try await subscriber.unsubscribe([channel, channel + ":2"]).get()
        #expect(try await publisher.execute(["PUBLISH", RedisArgument(channel), "gone"]) == .integer(0))
    }

    @Test func shardedPubSub() async throws {
        let configuration = try TestRedis.configuration
        let inbox = Inbox<RedisPubSubMessage>()
        let subscriber = try await TestRedis.connect(configuration, hooks: .init(onMessage: { inbox.append($0) }))
        let publisher = try await TestRedis.connect(configuration)
        defer {
            subscriber.close()
            publisher.close()
        }
        let channel = "sb:{\(TestRedis.unique("node"))}"
        try await subscriber.subscribe([channel], kind: .shard).get()
        #expect(try await publisher.execute(["SPUBLISH", RedisArgument(channel), "hello"]) == .integer(1))
        #expect(await eventually { inbox.count == 1 })
        #expect(inbox.all.first?.kind == .shard)
        #expect(inbox.all.first?.payload == Array("hello".utf8))
        try await subscriber.unsubscribe([channel], kind: .shard).get()
        #expect(try await publisher.execute(["SPUBLISH", RedisArgument(channel), "gone"]) == .integer(0))
    }

    @Test func selectsTheDatabaseAndSetsTheName() async throws {
        var configuration = try TestRedis.configuration
        configuration.database = 3
        configuration.clientName = "switchboard-test"
        let db3 = try await TestRedis.connect(configuration)
        let db0 = try await TestRedis.connect(try TestRedis.configuration)
        defer {
            db3.close()
            db0.close()
        }
        let key = TestRedis.unique("db")
        _ = try await db3.execute(["SET", RedisArgument(key), "three"])
        #expect(try await db3.execute(["GET", RedisArgument(key)]).string == "three")
        #expect(try await db0.execute(["GET", RedisArgument(key)]) == .null)
        #expect(try await db3.execute(["CLIENT", "GETNAME"]).string == "switchboard-test")
        _ = try await db3.execute(["DEL", RedisArgument(key)])
        // the URL form selects it too
        let url = try RedisConfiguration(url: (TestRedis.url ?? "") + "/3")
        let viaURL = try await TestRedis.connect(url)
        defer { viaURL.close() }
        #expect(try await viaURL.execute(["CLIENT", "INFO"]).string?.contains(" db=3 ") == true)
    }

    @Test func commandTimeoutFailsAndClosesTheConnection() async throws {
        var configuration = try TestRedis.configuration
        configuration.commandTimeout = .milliseconds(300)
        let connection = try await TestRedis.connect(configuration)
        let blocked = connection.send(["BLPOP", RedisArgument(TestRedis.unique("never")), "0"])
        let behind = connection.send(["PING"])
        await #expect { try await blocked.get() } throws: { ($0 as? RedisError)?.code == .timeout }
        await #expect { try await behind.get() } throws: { ($0 as? RedisError)?.code == .timeout }
        try await connection.closeFuture.get()
        #expect(!connection.isActive)
        #expect(!connection.sendAndForget(["PING"]))
        await #expect { try await connection.execute(["PING"]) } throws: { ($0 as? RedisError)?.code == .connectionClosed }
    }

    @Test func connectFailureIsReported() async throws {
        var configuration = RedisConfiguration(host: "127.0.0.1", port: 1)
        configuration.connectTimeout = .seconds(2)
        await #expect { try await TestRedis.connect(configuration) } throws: { ($0 as? RedisError)?.code == .connectFailed }
    }

    @Test func scriptLoadsItselfOnNoscript() async throws {
        let connection = try await TestRedis.connect(try TestRedis.configuration)
        defer { connection.close() }
        let script = RedisScript("return {KEYS[1], ARGV[1], redis.call('ECHO', 'lua')}")
        // a fresh source text: its SHA is certainly not cached yet
        let unique = RedisScript(script.source + " -- \(UUID().uuidString)")
        let reply = try await unique.run(on: connection, keys: ["k"], args: ["a"])
        #expect(reply == .array([.bulkString(Array("k".utf8)), .bulkString(Array("a".utf8)), .bulkString(Array("lua".utf8))]))
        #expect(try await connection.execute(["SCRIPT", "EXISTS", RedisArgument(unique.sha1)]) == .array([.integer(1)]))
        // a script error is an error, not a reload loop
        await #expect { try await RedisScript("return redis.call('NOSUCH')").run(on: connection) } throws: {
            ($0 as? RedisError)?.code == .server
        }
    }

    @Test func refusesAtOnceBeyondThePendingBound() async throws {
        var configuration = try TestRedis.configuration
        configuration.maxPendingCommands = 5
        configuration.commandTimeout = .seconds(30)
        let connection = try await TestRedis.connect(configuration)
        defer { connection.close() }
        // BLPOP holds this client's replies: everything behind it stays pending
        let key = TestRedis.unique("hold")
        let blocked = connection.send(["BLPOP", RedisArgument(key), "0"])
        for _ in 0..<4 { #expect(connection.sendAndForget(["PING"])) }
        #expect(connection.pendingCommands == 5)
        #expect(!connection.sendAndForget(["PING"]))
        await #expect { try await connection.execute(["PING"]) } throws: { ($0 as? RedisError)?.code == .overloaded }
        // once Redis answers, there is room again
        let other = try await TestRedis.connect(try TestRedis.configuration)
        defer { other.close() }
        _ = try await other.execute(["RPUSH", RedisArgument(key), "x"])
        #expect(try await blocked.get().array?.last?.string == "x")
        #expect(await eventually { connection.pendingCommands == 0 })
        #expect(connection.sendAndForget(["PING"]))
    }
}
