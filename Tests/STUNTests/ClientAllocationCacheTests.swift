import NIOCore
import Testing

@testable import STUN

/// ``ClientAllocationCache`` and the machine's use of it on the relay path: it may only ever
/// save a dictionary lookup, never route a client's ChannelData to an allocation that is not
/// the client's current one.
@Suite struct ClientAllocationCacheTests {
    /// Two UDP clients whose 5-tuples share a cache slot.
    static func collidingClients() -> (TURNClient, TURNClient) {
        let first = MachineHarness.client(40_000)
        let slot = ClientAllocationCache.slot(of: first)
        for port in UInt16(40_001)...UInt16.max {
            let other = MachineHarness.client(port)
            if ClientAllocationCache.slot(of: other) == slot { return (first, other) }
        }
        fatalError("no colliding port")  // 25,535 ports over 256 slots: never reached
    }

    @Test func anEntryAnswersOnlyForItsExactClient() {
        var cache = ClientAllocationCache()
        let (first, other) = Self.collidingClients()
        let id = AllocationID(rawValue: 7)
        cache[first] = id
        #expect(cache[first] == id)
        #expect(cache[other] == nil)  // same slot, another client
        var tcp = first
        tcp.transport = .tcp
        #expect(cache[tcp] == nil)
        cache[other] = AllocationID(rawValue: 8)  // evicts the first
        #expect(cache[first] == nil && cache[other] == AllocationID(rawValue: 8))
        cache[other] = nil
        #expect(cache[other] == nil)
    }

    /// A client's ChannelData goes to its current allocation: after the old one ended (its id
    /// still cached) and a new one was made, and while a client in the same slot alternates
    /// with it.
    @Test func channelDataFollowsTheClientsCurrentAllocation() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        let (client, neighbour) = Self.collidingClients()
        let peer = TransportAddress(ip: .v4(IPv4Address(192, 0, 2, 10)), port: 7000)
        func bind(_ client: TURNClient, _ number: UInt16, _ harness: inout MachineHarness) throws {
            let response = try harness.respond(
                harness.request(.channelBind, username: user) {
                    $0.append(.channelNumber, bytes: [UInt8(number >> 8), UInt8(number & 0xFF), 0, 0])
                    $0.append(.xorPeerAddress, xorAddress: peer)
                }, from: client)
            #expect(response.type.messageClass == .successResponse)
        }
        func relayed(_ client: TURNClient, _ number: UInt16, _ harness: inout MachineHarness) -> AllocationID? {
            let bytes = ChannelData(channel: number, payload: ByteBuffer(bytes: [1, 2, 3])).encoded(padded: false)
            guard case .sendToPeer(_, let id, let to)? = harness.machine.relayChannelData(bytes, from: client, now: harness.now), to == peer else { return nil }
            return id
        }

        let (first, _) = try harness.allocate(from: client, username: user)
        try bind(client, 0x4001, &harness)
        #expect(relayed(client, 0x4001, &harness) == first)  // cached now
        let ended = harness.send(harness.request(.refresh, username: user) { $0.append(.lifetime, uint32: 0) }, from: client)
        #expect(ended.closedRelays == [first])
        #expect(relayed(client, 0x4001, &harness) == nil)  // the cached id's allocation is gone
        let (second, _) = try harness.allocate(from: client, username: user)
        #expect(second != first)
        #expect(relayed(client, 0x4001, &harness) == nil)  // the new allocation has no channel yet
        try bind(client, 0x4001, &harness)
        #expect(relayed(client, 0x4001, &harness) == second)

        let (neighbours, _) = try harness.allocate(from: neighbour, username: user)
        try bind(neighbour, 0x4002, &harness)
        for _ in 0..<3 {
            #expect(relayed(neighbour, 0x4002, &harness) == neighbours)
            #expect(relayed(client, 0x4001, &harness) == second)
            #expect(relayed(client, 0x4002, &harness) == nil)  // the neighbour's channel number is not the client's
        }
    }
}
