import Synchronization

/// Races an operation against a timeout and returns as soon as either ends.
///
/// A task group would be simpler, but leaving a group waits for every child, and not every
/// library ends promptly when cancelled: postgres-nio's wait for a pooled connection was
/// seen waiting until the server came back (the server refusing connections, a connection
/// killed mid-start), so every store call (and `/readyz`) hung instead of answering
/// `unavailable`; and AsyncHTTPClient's request deadline stops at the response head, so a
/// webhook receiver trickling its body could hold a delivery for days. Here the operation
/// runs in a task of its own; when the timeout wins, that task is cancelled and left to
/// end by itself (its result is dropped), and the caller goes on at once.
public enum Deadline {
    public struct Exceeded: Error {
        public init() {}
    }

    public static func run<T: Sendable>(timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = Race<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                let work = Task {
                    do {
                        race.finish(.success(try await operation()))
                    } catch {
                        race.finish(.failure(error))
                    }
                }
                let timer = Task {
                    guard (try? await Task.sleep(for: timeout)) != nil else { return }
                    race.finish(.failure(Exceeded()))
                }
                race.start(continuation, tasks: [work, timer])
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }

    /// The first result wins; it resumes the caller and cancels both tasks.
    private final class Race<T: Sendable>: Sendable {
        private struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var result: Result<T, any Error>?
            var tasks: [Task<Void, Never>] = []
        }

        private let state = Mutex(State())

        func start(_ continuation: CheckedContinuation<T, any Error>, tasks: [Task<Void, Never>]) {
            let early = state.withLock { state -> Result<T, any Error>? in
                state.tasks = tasks
                if let result = state.result { return result }
                state.continuation = continuation
                return nil
            }
            if let early {
                continuation.resume(with: early)
                for task in tasks { task.cancel() }
            }
        }

        func finish(_ result: Result<T, any Error>) {
            let (continuation, tasks) = state.withLock { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
                guard state.result == nil else { return (nil, []) }
                state.result = result
                defer { state.continuation = nil }
                return (state.continuation, state.tasks)
            }
            continuation?.resume(with: result)
            for task in tasks { task.cancel() }
        }
    }
}
