import Metrics
import NIOConcurrencyHelpers
import STUN

/// What a node's relay loops share (see ``TURNNode``: one ``TURNCore`` per event loop, each
/// with its own `SO_REUSEPORT` listener, machine and relay sockets). Everything here is on the
/// control path — an Allocate, the end of an allocation, an unauthenticated answer, the
/// one-second tick — never per relayed packet, so plain locks do.
final class TURNNodeShared: TURNSharedLedger {
    /// The tenant quota, the 401 limit per source address and the reservation tokens, for
    /// every machine of the node.
    private let ledger = NIOLockedValueBox(TURNLedger())
    /// The relay port range's ports in use, and the sockets kept for reservation tokens.
    let ports = RelayPortPool()
    /// Key of the node's stateless nonces: one for all loops.
    let nonceSecret: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }
    private let statuses: NIOLockedValueBox<(byLoop: [TURNNodeStatus], gauges: TURNGauges)>

    init(loops: Int, metricsFactory: any MetricsFactory) {
        let idle = TURNNodeStatus(allocations: 0, allocationsByTenant: [:], permissions: 0, channels: 0, isDraining: false, isListening: false)
        statuses = NIOLockedValueBox((Array(repeating: idle, count: loops), TURNGauges(factory: metricsFactory)))
    }

    func withLedger<Result>(_ body: (inout TURNLedger) -> Result) -> Result {
        ledger.withLockedValue { body(&$0) }
    }

    /// Loop `index`'s state; the node's gauges are set from the sum over its loops.
    func publish(_ status: TURNNodeStatus, loop index: Int) {
        statuses.withLockedValue { state in
            state.byLoop[index] = status
            let total = Self.sum(state.byLoop)
            state.gauges.update(allocationsByTenant: total.allocationsByTenant, permissions: total.permissions, channels: total.channels)
        }
    }

    /// The node's state as its loops last published it.
    var status: TURNNodeStatus { statuses.withLockedValue { Self.sum($0.byLoop) } }

    /// The node's state from its loops' states: counts added up; listening while every loop
    /// is, draining once one is.
    static func sum(_ statuses: [TURNNodeStatus]) -> TURNNodeStatus {
        var total = TURNNodeStatus(allocations: 0, allocationsByTenant: [:], permissions: 0, channels: 0, isDraining: false, isListening: !statuses.isEmpty)
        for status in statuses {
            total.allocations += status.allocations
            total.allocationsByTenant.merge(status.allocationsByTenant, uniquingKeysWith: +)
            total.permissions += status.permissions
            total.channels += status.channels
            total.isDraining = total.isDraining || status.isDraining
            total.isListening = total.isListening && status.isListening
        }
        return total
    }
}

/// The relay port range's bookkeeping for all loops of a node: which ports are taken, and the
/// sockets bound for reservation tokens (EVEN-PORT's R bit). A reserved port's socket is bound
/// but read by no loop until its token comes back — possibly on another loop, which then reads
/// it (``TURNCore`` registers the descriptor with its own event loop).
final class RelayPortPool: Sendable {
    private struct State {
        var used: Set<Int> = []
        var reserved: [TransportAddress: UDPSocket] = [:]
    }
    private let state = NIOLockedValueBox(State())

    /// Takes every port of `ports`, or none when one is taken.
    func claim(_ ports: [Int]) -> Bool {
        state.withLockedValue { state in
            guard ports.allSatisfy({ !state.used.contains($0) }) else { return false }
            state.used.formUnion(ports)
            return true
        }
    }

    /// Gives `port` back.
    func release(_ port: Int) {
        _ = state.withLockedValue { $0.used.remove(port) }
    }

    /// Keeps `socket` (its port claimed) for a reservation token of `address`.
    func keep(_ socket: UDPSocket, at address: TransportAddress) {
        state.withLockedValue { $0.reserved[address] = socket }
    }

    /// The socket kept at `address`, now the caller's (its port stays claimed).
    func takeReserved(_ address: TransportAddress) -> UDPSocket? {
        state.withLockedValue { $0.reserved.removeValue(forKey: address) }
    }

    /// Closes the socket kept at `address`, if any, and gives its port back.
    func closeReserved(_ address: TransportAddress) {
        guard let socket = state.withLockedValue({ $0.reserved.removeValue(forKey: address) }) else { return }
        socket.close()
        release(Int(address.port))
    }

    /// Closes every kept socket (the node stops).
    func closeAllReserved() {
        let sockets = state.withLockedValue { state in
            defer { state.reserved = [:] }
            return state.reserved
        }
        for (address, socket) in sockets {
            socket.close()
            release(Int(address.port))
        }
    }
}
