/// Tells a burst from a flood (SPEC §3): how long a connection has been having frames
/// refused, counting refusals as one flood while no quiet gap of ``quietGap`` separates them.
///
/// A burst of a few hundred frames is refused within milliseconds and then stops; a client
/// that keeps sending above its rate is refused every few milliseconds for as long as it
/// does. The gateway closes the connection (1008) once a flood has lasted a configured time.
/// Pure value; the caller passes monotonic nanoseconds.
public struct FloodDetector: Sendable, Equatable {
    /// A pause in refusals this long ends a flood.
    public let quietGap: UInt64
    private var startedAt: UInt64?
    private var lastRefusal: UInt64 = 0

    public init(quietGapNanoseconds: UInt64 = 1_000_000_000) {
        self.quietGap = quietGapNanoseconds
    }

    /// Records a refused frame at `now`; returns how long (ns) the current flood has lasted.
    public mutating func refused(at now: UInt64) -> Int64 {
        if let started = startedAt, now >= lastRefusal, now - lastRefusal < quietGap {
            lastRefusal = now
            return Int64(clamping: now - started)
        }
        startedAt = now
        lastRefusal = now
        return 0
    }
}
