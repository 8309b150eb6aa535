import Logging
import NIOCore
import STUN
import ServiceLifecycle
import Signaling
import TURNServer
import Testing

/// SPEC §6: a suspended or deleted tenant's allocations end within seconds. The control
/// message arrives over the deployment's bus (here the in-process one; Redis carries the same
/// `BusMessage` between processes, tested in RedisBusTests).
@Suite(.serialized, .timeLimit(.minutes(1)))
struct TURNTenantControlTests {
    @Test func aTenantDisconnectOnTheBusEndsThatTenantsAllocationsOnly() async throws {
        var configuration = testTURNConfiguration(relayPorts: 63000...63099)
        configuration.drainTimeout = 1
        var logger = Logger(label: "turn-tenant-test")
        logger.logLevel = .warning
        let node = try TURNNode(configuration: configuration, logger: logger)
        let bus = InProcessBus()
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: node), .init(service: TURNTenantControl(node: node, bus: bus, logger: logger))], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let addresses = try await node.waitUntilListening()
            var clients: [STUNTestClient] = []
            for tenant in ["suspended", "other"] {
                let client = try await STUNTestClient(serverPort: addresses.udpPort)
                let nonce = try #require(try await client.exchange(Requests.make(.allocate, Requests.udp)).nonce)
                let allocated = try await client.exchange(
                    Requests.make(.allocate, username: TestSecrets.username(tenant: tenant), nonce: nonce, Requests.udp))
                #expect(allocated.type.messageClass == .successResponse)
                clients.append(client)
            }
            #expect(try await node.status().allocationsByTenant == ["suspended": 1, "other": 1])
            bus.publish(.tenantDisconnect(tenantID: "suspended", reason: "tenant suspended"), to: .control)
            try await waitUntil { try await node.status().allocationsByTenant["suspended", default: 0] == 0 }
            #expect(try await node.status().allocationsByTenant["other"] == 1)
            for client in clients { await client.close() }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
