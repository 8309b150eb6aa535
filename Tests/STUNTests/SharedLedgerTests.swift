import Foundation
import NIOCore
import STUN
import Testing

/// A ledger behind a lock, as a node with several relay loops shares it.
final class LockedLedger: TURNSharedLedger, @unchecked Sendable {
    private let lock = NSLock()
    private var ledger = TURNLedger()
    func withLedger<Result>(_ body: (inout TURNLedger) -> Result) -> Result {
        lock.withLock { body(&ledger) }
    }
}

/// Two machines — two relay loops of one node — with one ``TURNLedger``: the tenant quota,
/// the 401 limit per source address and reservation tokens hold across them.
@Suite struct SharedLedgerTests {
    static func twoLoops(_ configure: @escaping (inout TURNServerMachine.Configuration) -> Void = { _ in }) -> (MachineHarness, MachineHarness) {
        let ledger = LockedLedger()
        let make = { MachineHarness { configure(&$0); $0.sharedLedger = ledger } }
        return (make(), make())
    }

    @Test func theTenantQuotaCountsBothLoops() throws {
        var (first, second) = Self.twoLoops { $0.allocationQuotaPerTenant = 2 }
        _ = try first.allocate(from: MachineHarness.client(1))
        _ = try second.allocate(from: MachineHarness.client(2))
        // a third allocation of the tenant, on either loop: over the quota
        for harness in [first, second] {
            var harness = harness
            let refused = try harness.respond(harness.request(.allocate, username: MachineHarness.username(), MachineHarness.udp), from: MachineHarness.client(3))
            #expect(refused.errorCode?.code == 486)
        }
        // an allocation ending on one loop frees a place on the other
        let (id, _) = try first.allocate(from: MachineHarness.client(4), username: MachineHarness.username(tenant: "globex"))
        #expect(first.machine.endAllocations(tenant: "globex").closedRelays == [id])
        _ = first.advance(seconds: 700)  // the acme allocation on `first` expires
        _ = try second.allocate(from: MachineHarness.client(5))
    }

    @Test func aReservationTokenIsTakenOnTheOtherLoopOnce() throws {
        var (first, second) = Self.twoLoops()
        try first.learnNonce()
        second.nonce = first.nonce
        let user = MachineHarness.username()
        let actions = first.send(first.request(.allocate, username: user) {
            MachineHarness.udp(&$0)
            $0.append(.evenPort, bytes: [0x80])
        })
        guard case .openRelay(let relay)? = actions.first else { throw HarnessError() }
        let reserved = TransportAddress(ip: MachineHarness.relayIP, port: 50_011)
        let opened = first.machine.relayOpened(
            relay.allocation, relayed: TransportAddress(ip: MachineHarness.relayIP, port: 50_010), reserved: reserved, now: first.now)
        guard case .sendToClient(let bytes, _)? = opened.first else { throw HarnessError() }
        let token = try #require(try STUNMessage(decoding: bytes).reservationToken)
        let withToken = { (harness: MachineHarness) in
            harness.request(.allocate, username: user) {
                MachineHarness.udp(&$0)
                $0.append(.reservationToken, bytes: (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * UInt64($0))) })
            }
        }
        guard case .openRelay(let next)? = second.send(withToken(second), from: MachineHarness.client(40_100)).first else { throw HarnessError() }
        #expect(next.reservedAddress == reserved)
        // taken: neither loop knows it any more
        #expect(try first.respond(withToken(first), from: MachineHarness.client(40_200)).errorCode?.code == 508)
        // and it is not released at expiry by either
        for harness in [first, second] {
            var harness = harness
            #expect(!harness.advance(seconds: 31).contains { if case .releaseReservation = $0 { true } else { false } })
        }
    }

    @Test func anUnclaimedReservationIsReleasedByOneLoopOnly() throws {
        var (first, second) = Self.twoLoops()
        try first.learnNonce()
        let actions = first.send(first.request(.allocate, username: MachineHarness.username()) {
            MachineHarness.udp(&$0)
            $0.append(.evenPort, bytes: [0x80])
        })
        guard case .openRelay(let relay)? = actions.first else { throw HarnessError() }
        let reserved = TransportAddress(ip: MachineHarness.relayIP, port: 50_011)
        _ = first.machine.relayOpened(relay.allocation, relayed: TransportAddress(ip: MachineHarness.relayIP, port: 50_010), reserved: reserved, now: first.now)
        let released = [second.advance(seconds: 30), first.advance(seconds: 30)].map { actions in
            actions.compactMap { if case .releaseReservation(let address) = $0 { address } else { nil } }
        }
        #expect(released == [[reserved], []])
    }

    @Test func theUnauthenticatedLimitPerSourceCountsBothLoops() throws {
        var (first, second) = Self.twoLoops()
        var answered = 0
        for index in 0..<50 {
            // one source address, its ports spread over both loops
            let client = MachineHarness.client(UInt16(41_000 + index))
            let actions = index % 2 == 0 ? first.send(first.request(.allocate, MachineHarness.udp), from: client)
                : second.send(second.request(.allocate, MachineHarness.udp), from: client)
            answered += actions.filter { if case .sendToClient = $0 { true } else { false } }.count
        }
        #expect(answered == 20)
    }
}
