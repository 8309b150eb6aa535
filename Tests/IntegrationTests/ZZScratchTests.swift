import Foundation
import Synchronization
import Testing

@Suite("scratch", .serialized)
struct ZZScratchTests {
    @Test func requestTiming() async throws {
        try await TestNode.with { node in
            let tenant = try await node.createTenant()
            let alice = try await node.join(tenant, peer: "alice")
            for i in 0..<400 {
                let t0 = ContinuousClock.now
                let path = i % 2 == 0 ? "/v1/rooms" : "/v1/events?peer=alice"
                _ = try await node.request(.get, path, auth: .tenant(tenant))
                let d = ContinuousClock.now - t0
                if d > .seconds(1) { Issue.record("slow request \(i) \(path): \(d)") }
            }
            await alice.stop()
        }
    }
}
