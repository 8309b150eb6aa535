import Synchronization

/// The embedded mode's message bus: subscribers are called synchronously on the publishing
/// thread. Product code (SPEC §1 embedded default), not a test double.
public final class InProcessBus: MessageBus {
    private struct Subscriber {
        var id: Int
        var topic: BusTopic
        var handler: @Sendable (BusMessage) -> Void
    }

    private final class Token: BusSubscription {
        let cancelAction: @Sendable () -> Void
        init(_ cancel: @escaping @Sendable () -> Void) { cancelAction = cancel }
        func cancel() { cancelAction() }
    }

    private let subscribers = Mutex<(next: Int, list: [Subscriber])>((0, []))

    public init() {}

    @discardableResult
    public func publish(_ message: BusMessage, to topic: BusTopic) -> Bool {
        let handlers = subscribers.withLock { $0.list.filter { $0.topic == topic }.map(\.handler) }
        for handler in handlers { handler(message) }
        return true
    }

    public func subscribe(_ topic: BusTopic, _ handler: @escaping @Sendable (BusMessage) -> Void) -> any BusSubscription {
        let id = subscribers.withLock { state in
            state.next += 1
            state.list.append(Subscriber(id: state.next, topic: topic, handler: handler))
            return state.next
        }
        return Token { [weak self] in
            self?.subscribers.withLock { $0.list.removeAll { $0.id == id } }
        }
    }

    public func isAvailable() async -> Bool { true }
}
