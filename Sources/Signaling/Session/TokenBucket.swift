/// A token bucket: `rate` tokens a second, at most `burst` saved up (SPEC §3 frame limit).
/// Pure value; the caller passes the time in nanoseconds from a monotonic clock.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var lastNanos: UInt64

    public init(rate: Int, burst: Int, now: UInt64) {
        self.rate = Double(max(1, rate))
        self.burst = Double(max(1, burst))
        self.tokens = self.burst
        self.lastNanos = now
    }

    /// Takes one token if there is one.
    public mutating func take(now: UInt64) -> Bool {
        if now > lastNanos {
            tokens = min(burst, tokens + Double(now - lastNanos) * rate / 1_000_000_000)
            lastNanos = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
