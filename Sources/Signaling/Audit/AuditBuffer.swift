import Synchronization

/// The bounded buffer between whoever records audit events (the hot path among them) and
/// the batch writer that stores them (SPEC §5). Recording never blocks or awaits; past the
/// bound, events are dropped and counted.
public final class AuditBuffer: Sendable {
    private struct State {
        var events: [AuditEvent] = []
        var head = 0
        var dropped: UInt64 = 0
        var waiter: CheckedContinuation<Void, Never>?
        /// A ``wake()`` with nobody waiting: the next wait returns at once.
        var woken = false
    }

    public let capacity: Int
    private let state: Mutex<State>

    public init(capacity: Int = 100_000) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State())
    }

    /// Adds an event; false (and counted) when the buffer is full.
    @discardableResult
    public func record(_ event: AuditEvent) -> Bool {
        let (accepted, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard state.events.count - state.head < capacity else {
                state.dropped += 1
                return (false, nil)
            }
            state.events.append(event)
            let waiter = state.waiter
            state.waiter = nil
            return (true, waiter)
        }
        waiter?.resume()
        return accepted
    }

    /// Adds as many of `events` as there is room for, up to `limit` buffered in all, and
    /// returns how many. The rest are not counted as dropped: the caller still has them
    /// (events read back from a spill file).
    public func restore(_ events: ArraySlice<AuditEvent>, limit: Int? = nil) -> Int {
        let bound = min(capacity, limit ?? capacity)
        let (taken, waiter) = state.withLock { state -> (Int, CheckedContinuation<Void, Never>?) in
            let taken = max(0, min(events.count, bound - (state.events.count - state.head)))
            guard taken > 0 else { return (0, nil) }
            state.events.append(contentsOf: events.prefix(taken))
            let waiter = state.waiter
            state.waiter = nil
            return (taken, waiter)
        }
        waiter?.resume()
        return taken
    }

    /// Events waiting to be written.
    public var count: Int { state.withLock { $0.events.count - $0.head } }

    /// Events dropped because the buffer was full, since start.
    public var droppedCount: UInt64 { state.withLock { $0.dropped } }

    /// The oldest `max` events, left in the buffer until ``commit(_:)``: a batch that fails to
    /// store is retried, not lost.
    public func peek(max: Int) -> [AuditEvent] {
        state.withLock { state in
            let end = min(state.events.count, state.head + max)
            return Array(state.events[state.head..<end])
        }
    }

    /// Removes the oldest `count` events after they were stored.
    public func commit(_ count: Int) {
        state.withLock { state in
            state.head = min(state.events.count, state.head + count)
            if state.head == state.events.count {
                state.events.removeAll(keepingCapacity: state.events.count < 4096)
                state.head = 0
            } else if state.head > 1024, state.head * 2 > state.events.count {
                state.events.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    /// Suspends until at least one event is buffered (or returns at once if one is).
    /// One waiter at a time: the batch writer.
    public func waitForEvents() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.events.count > state.head || state.woken {
                    state.woken = false
                    return true
                }
                state.waiter?.resume()
                state.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Wakes a waiting writer even with nothing buffered (shutdown).
    public func wake() {
        let waiter = state.withLock { state in
            let waiter = state.waiter
            state.waiter = nil
            if waiter == nil { state.woken = true }
            return waiter
        }
        waiter?.resume()
    }
}
