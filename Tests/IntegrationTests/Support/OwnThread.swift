import Foundation

/// Runs blocking test I/O (a socket read, a handshake) on a thread of its own and awaits it.
///
/// Not on the cooperative pool, where the in-process node authorizes upgrades, and not on
/// `NIOThreadPool.singleton`, where its SQLite store runs: a test blocked on either, waiting
/// for the node, starves the node it is waiting for (on 2 cores that stalled whole suites).
func onOwnThread<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try body() })
        }
    }
}
