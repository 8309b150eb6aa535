import MetricsTestKit
import STUN
import TURNServer
import Testing

/// The per-tenant allocation quota (`--turn-quota`) on a live node: the 486 it answers and
/// the `switchboard_turn_quota_rejections_total{tenant}` counter the alert watches.
@Suite(.timeLimit(.minutes(2))) struct TURNQuotaMetricsTests {
    @Test func allocationsOverTheTenantsQuotaGet486AndAreCounted() async throws {
        let metrics = TestMetrics()
        try await withTURNNode(configure: { $0.allocationQuotaPerTenant = 1 }, metricsFactory: metrics) { node, addresses in
            let first = try await STUNTestClient(serverPort: addresses.udpPort)
            let nonce = try #require(try await first.exchange(Requests.make(.allocate, Requests.udp)).nonce)
            let allocated = try await first.exchange(Requests.make(.allocate, username: TestSecrets.username(peer: "alice"), nonce: nonce, Requests.udp))
            #expect(allocated.type.messageClass == .successResponse)
            #expect(metrics.counters(label: "switchboard_turn_quota_rejections_total").isEmpty)

            // another 5-tuple of the same tenant: over its quota of one
            let second = try await STUNTestClient(serverPort: addresses.udpPort)
            let refused = try await second.exchange(Requests.make(.allocate, username: TestSecrets.username(peer: "bob"), nonce: nonce, Requests.udp))
            #expect(refused.errorCode?.code == 486)
            try await waitUntil {
                (try? metrics.expectCounter("switchboard_turn_quota_rejections_total", [("tenant", "acme")]).totalValue) == 1
            }

            // another tenant has a quota of its own, and is not counted
            let other = try await STUNTestClient(serverPort: addresses.udpPort)
            let globex = try await other.exchange(
                Requests.make(.allocate, username: TestSecrets.username(tenant: "globex", peer: "carol"), nonce: nonce, Requests.udp))
            #expect(globex.type.messageClass == .successResponse)
            #expect(try await node.status().allocationsByTenant == ["acme": 1, "globex": 1])
            #expect(metrics.counters(label: "switchboard_turn_quota_rejections_total").map(\.dimensions.description) == [[("tenant", "acme")].description])
            for client in [first, second, other] { await client.close() }
        }
    }
}
