import Foundation
import NIOCore
import RedisBus
import Signaling
import Testing

/// Not a test of speed (nothing here asserts a time): prints what the bus does on this
/// machine when `REDIS_BENCH=1`, for Docs/performance.md. Correctness (all messages
/// arrive, in order) is still checked.
@Suite(.requiresRedis, .enabled(if: ProcessInfo.processInfo.environment["REDIS_BENCH"] != nil, "set REDIS_BENCH=1 to measure"))
struct RedisBusThroughput {
    @Test func publishToSubscriberThroughputAndLatency() async throws {
        let client = RedisClient(configuration: try TestRedis.configuration, logger: TestRedis.logger)
        let nodeID = TestRedis.unique("bench")
        let bus = RedisBus(client: client, configuration: .init(nodeID: nodeID), logger: TestRedis.logger)
        let data = try RawJSON(validating: "{\"candidate\":\"" + String(repeating: "x", count: 150) + "\"}")
        let received = Inbox<Int>()
        let clock = ContinuousClock()
        let subscription = bus.subscribe(.node(nodeID)) { message in
            if case .deliver(let envelope) = message, let seq = Int(envelope.to ?? "") { received.append(seq) }
        }
        defer { subscription.cancel() }
        try await withRunningClient(client) {
            #expect(await client.waitUntilAvailable(timeout: .seconds(10)))
            // one at a time: publish, wait for it to come back
            var latencies: [Duration] = []
            for i in 0..<2000 {
                let start = clock.now
                let envelope = RelayEnvelope(tenantID: "t", room: "r", kind: .signal, from: "a", to: "\(i)", exclude: nil, data: data)
                #expect(bus.publish(.deliver(envelope), to: .node(nodeID)))
                while received.count <= i { await Task.yield() }
                latencies.append(clock.now - start)
            }
            latencies.sort()
            let p50 = latencies[latencies.count / 2]
            let p99 = latencies[latencies.count * 99 / 100]
            // flat out: 100,000 publishes from one task, all received in order
            let total = 100_000
            let base = received.count
            let start = clock.now
            var refused = 0
            for i in 0..<total {
                let envelope = RelayEnvelope(tenantID: "t", room: "r", kind: .signal, from: "a", to: "\(base + i)", exclude: nil, data: data)
                if !bus.publish(.deliver(envelope), to: .node(nodeID)) { refused += 1 }
                if i % 1000 == 999 { await Task.yield() }
            }
            #expect(await eventually(.seconds(120)) { received.count == base + total - refused })
            let elapsed = clock.now - start
            if refused == 0 { #expect(Array(received.all.dropFirst(base)) == Array(base..<(base + total))) }
            let rate = Double(total - refused) / elapsed.seconds
            print("redis bus: round trip p50 \(p50) p99 \(p99); \(total) publishes (\(data.bytes.count)-byte data) in \(elapsed), \(Int(rate)) msg/s, \(refused) refused")
        }
    }
}
