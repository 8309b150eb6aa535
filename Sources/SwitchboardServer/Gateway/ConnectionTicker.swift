import NIOCore
import Synchronization

/// One timer per event loop for every WebSocket on it: heartbeats, token expiry, `ice-servers`
/// renewal and the `resume` handshake deadline are checked on a shared tick instead of a
/// scheduled task per socket (a `RepeatedTask` and a `Scheduled` cost a few hundred bytes
/// each per idle socket; an entry here costs a dictionary slot).
///
/// Ticks every ``interval``, so a deadline is met within that interval.
final class ConnectionTickers: Sendable {
    /// How often each loop checks its connections.
    let interval: TimeAmount
    private let tickers = Mutex<[ObjectIdentifier: LoopTicker]>([:])

    init(interval: TimeAmount = .milliseconds(250)) {
        self.interval = interval
    }

    /// The ticker of `eventLoop`, made on first use. Called once per connection.
    func ticker(for eventLoop: any EventLoop) -> LoopTicker {
        tickers.withLock { tickers in
            if let ticker = tickers[ObjectIdentifier(eventLoop)] { return ticker }
            let ticker = LoopTicker(eventLoop: eventLoop, interval: interval)
            tickers[ObjectIdentifier(eventLoop)] = ticker
            return ticker
        }
    }
}

/// Something a ``LoopTicker`` checks on each tick, on its event loop.
protocol Tickable: AnyObject {
    func tick(now: NIODeadline)
}

/// The connections of one event loop and the repeated task that ticks them. Touched only on
/// that loop; the task runs while the loop has connections.
final class LoopTicker: @unchecked Sendable {
    private let eventLoop: any EventLoop
    private let interval: TimeAmount
    private var members: [ObjectIdentifier: any Tickable] = [:]
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop, interval: TimeAmount) {
        self.eventLoop = eventLoop
        self.interval = interval
    }

    func add(_ member: any Tickable) {
        eventLoop.preconditionInEventLoop()
        members[ObjectIdentifier(member)] = member
        if task == nil {
            task = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
                self?.tick()
            }
        }
    }

    func remove(_ member: any Tickable) {
        eventLoop.preconditionInEventLoop()
        members[ObjectIdentifier(member)] = nil
        if members.isEmpty {
            task?.cancel()
            task = nil
        }
    }

    private func tick() {
        let now = NIODeadline.now()
        // A member may remove itself (or others) while ticking: iterate a snapshot.
        for member in Array(members.values) {
            member.tick(now: now)
        }
    }
}
