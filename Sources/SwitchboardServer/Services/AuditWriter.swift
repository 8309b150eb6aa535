import Logging
import ServiceLifecycle
import Signaling

/// Drains the ``AuditBuffer`` into the store in batches, off the hot path (SPEC §5). A batch
/// that fails stays in the buffer and is retried with backoff; on graceful shutdown the
/// writer keeps going until the buffer is empty (or the store has refused for
/// `shutdownGrace`), so nothing buffered is lost on SIGTERM.
struct AuditWriter: Service {
    let buffer: AuditBuffer
    let store: any Store
    let metrics: SwitchboardMetrics
    let batchSize: Int
    let logger: Logger
    var shutdownGrace: Duration = .seconds(10)
    /// Called after each batch is stored (wakes the webhook dispatcher).
    var afterWrite: @Sendable () -> Void = {}

    func run() async throws {
        // Not cancelled on shutdown (a batch is never cut off half-way): the loop is woken,
        // sees the shutdown, and the final flush writes what is left.
        await withGracefulShutdownHandler {
            await loop()
        } onGracefulShutdown: {
            buffer.wake()
        }
        await flush(deadline: ContinuousClock.now + shutdownGrace)
    }

    private func loop() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelledOrShuttingDown {
            await withTaskCancellationHandler {
                await buffer.waitForEvents()
            } onCancel: {
                buffer.wake()
            }
            if Task.isCancelledOrShuttingDown { return }
            if await writeBatch() {
                backoff = .milliseconds(100)
            } else {
                let delay = backoff
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    /// Writes everything left; gives up only when the store keeps failing past `deadline`.
    func flush(deadline: ContinuousClock.Instant) async {
        while buffer.count > 0 {
            if await writeBatch() { continue }
            guard ContinuousClock.now < deadline else {
                logger.error("audit events could not be written before exit", metadata: ["events": "\(buffer.count)"])
                return
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Writes one batch; true when it was stored (or there was nothing to store).
    private func writeBatch() async -> Bool {
        let batch = buffer.peek(max: batchSize)
        guard !batch.isEmpty else { return true }
        let started = ContinuousClock.now
        do {
            try await store.appendEvents(batch)
            buffer.commit(batch.count)
            metrics.dbBatchLatency.recordNanoseconds(Int64((ContinuousClock.now - started).nanoseconds))
            metrics.auditWritten.increment(by: batch.count)
            metrics.auditBuffered.record(buffer.count)
            afterWrite()
            return true
        } catch {
            logger.warning("audit batch failed; will retry", metadata: ["error": "\(error.message)", "events": "\(batch.count)"])
            metrics.auditBuffered.record(buffer.count)
            return false
        }
    }
}

extension Duration {
    /// Whole nanoseconds (saturating).
    var nanoseconds: Int {
        let (seconds, attoseconds) = components
        let (product, overflow) = Int(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? Int.max : product + Int(attoseconds / 1_000_000_000)
    }
}
