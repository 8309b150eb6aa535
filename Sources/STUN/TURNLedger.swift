/// What a TURN node counts across all of its relay loops, as a value: allocations per tenant
/// (for the quota), the unauthenticated answers per source address (the 401 limit), and the
/// ports kept for RESERVATION-TOKENs.
///
/// A node with one relay loop keeps it inside its ``TURNServerMachine``. A node with one
/// machine per event loop (one `SO_REUSEPORT` listener each, see Docs/turn.md) shares one
/// ledger between them through ``TURNSharedLedger``: a client's 5-tuple always reaches the
/// same loop, but a tenant's clients, a source address's ports and a token's two Allocates
/// may reach different ones.
public struct TURNLedger: Sendable {
    private var tenantCounts: [String: Int] = [:]
    private var reservations: [UInt64: Reservation] = [:]
    private var buckets: [IPAddress: Bucket] = [:]

    public init() {}

    /// Counts one more allocation (open or opening) for `tenant`, unless it holds `quota`
    /// already (nil: no limit). Returns whether it was counted.
    public mutating func admitAllocation(tenant: String, quota: Int?) -> Bool {
        let count = tenantCounts[tenant, default: 0]
        if let quota, count >= quota { return false }
        tenantCounts[tenant] = count + 1
        return true
    }

    /// One allocation of `tenant` (open or opening) has ended.
    public mutating func allocationEnded(tenant: String) {
        let count = tenantCounts[tenant, default: 0] - 1
        tenantCounts[tenant] = count > 0 ? count : nil
    }

    /// Whether `source` may get one more unauthenticated answer (a token bucket per address).
    public mutating func admitUnauthenticated(_ source: IPAddress, now: TURNTime, perSecond: Double, burst: Double) -> Bool {
        var bucket = buckets[source] ?? Bucket(tokens: burst, last: now)
        let elapsed = Double(max(0, now.milliseconds - bucket.last.milliseconds)) / 1000
        bucket.tokens = min(burst, bucket.tokens + elapsed * perSecond)
        bucket.last = now
        let admitted = bucket.tokens >= 1
        if admitted { bucket.tokens -= 1 }
        buckets[source] = bucket
        return admitted
    }

    /// Keeps `address` for `token` until `expires`.
    public mutating func keepReservation(_ token: UInt64, address: TransportAddress, expires: TURNTime) {
        reservations[token] = Reservation(address: address, expires: expires)
    }

    /// The address kept for `token`, once: nil when unknown, taken or expired.
    public mutating func takeReservation(_ token: UInt64, now: TURNTime) -> TransportAddress? {
        guard let reservation = reservations.removeValue(forKey: token), reservation.expires > now else { return nil }
        return reservation.address
    }

    /// Forgets what is due at `now`: returns the addresses of reservations that expired (each
    /// once, to whichever loop asks first), and drops source addresses silent for a minute.
    public mutating func expire(now: TURNTime) -> [TransportAddress] {
        var expired: [TransportAddress] = []
        for (token, reservation) in reservations where reservation.expires <= now {
            reservations[token] = nil
            expired.append(reservation.address)
        }
        buckets = buckets.filter { _, bucket in now.milliseconds - bucket.last.milliseconds < 60_000 }
        return expired
    }
}

/// A ``TURNLedger`` several machines share (one per relay loop of a node), behind a lock of
/// the implementer's choosing. Called on the control path only (Allocate, its end, an
/// unauthenticated answer, the tick), never per relayed packet.
public protocol TURNSharedLedger: AnyObject, Sendable {
    func withLedger<Result>(_ body: (inout TURNLedger) -> Result) -> Result
}

struct Reservation: Sendable {
    var address: TransportAddress
    var expires: TURNTime
}

struct Bucket: Sendable {
    var tokens: Double
    var last: TURNTime
}
