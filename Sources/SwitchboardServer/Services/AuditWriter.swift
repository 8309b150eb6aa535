import Logging
import ServiceLifecycle
import Signaling

/// Drains the ``AuditBuffer`` into the store in batches, off the hot path (SPEC §5). A batch
/// that fails stays in the buffer and is retried with backoff; on graceful shutdown the
/// writer keeps going until the buffer is empty or the store has refused for
/// `shutdownGrace`, and then writes what is left to a spill file (``AuditSpill``), so
/// nothing buffered is lost on SIGTERM.
///
/// At start it finds the spill files of earlier runs and feeds them into the buffer, oldest
/// first, as room allows (at most half the buffer, the rest stays free for live events). A
/// spill file is removed only once all its events are stored; a node that stops before that
/// loads it again at its next start, which is harmless: the stores ignore an event id they
/// already have. Unreadable lines are skipped, counted as dropped, and their file is kept
/// renamed to `….jsonl.rejected`.
struct AuditWriter: Service {
    let buffer: AuditBuffer
    let store: any Store
    let metrics: SwitchboardMetrics
    let batchSize: Int
    let logger: Logger
    var shutdownGrace: Duration = .seconds(10)
    /// Where events that cannot be stored before exit go, and are loaded back from at start.
    var spill: AuditSpill?
    /// Opens when the store may be written (PostgreSQL: migrated, today's partition made).
    var storeReady: StartupGate?
    /// Called after each batch is stored (wakes the webhook dispatcher).
    var afterWrite: @Sendable () -> Void = {}

    func run() async throws {
        var backlog = SpillBacklog()
        await findSpillFiles(&backlog)
        await refill(&backlog)
        // Not cancelled on shutdown (a batch is never cut off half-way): the loop is woken,
        // sees the shutdown, and the final flush writes what is left.
        await withGracefulShutdownHandler {
            await loop(&backlog)
        } onGracefulShutdown: {
            buffer.wake()
        }
        await flush(deadline: ContinuousClock.now + shutdownGrace, &backlog)
    }

    private func loop(_ backlog: inout SpillBacklog) async {
        if let storeReady {
            await cancelWhenGracefulShutdown { await storeReady.wait() }
        }
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelledOrShuttingDown {
            await withTaskCancellationHandler {
                await buffer.waitForEvents()
            } onCancel: {
                buffer.wake()
            }
            if Task.isCancelledOrShuttingDown { return }
            if await writeBatch(&backlog) {
                backoff = .milliseconds(100)
                if !backlog.waiting.isEmpty, buffer.count <= batchSize { await refill(&backlog) }
            } else {
                let delay = backoff
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    /// Writes everything left; when the store keeps failing past `deadline` (or the node is
    /// cancelled), spills the rest to disk.
    private func flush(deadline: ContinuousClock.Instant, _ backlog: inout SpillBacklog) async {
        while buffer.count > 0 {
            if await writeBatch(&backlog) { continue }
            guard ContinuousClock.now < deadline, !Task.isCancelled else {
                await spillRemaining(&backlog)
                return
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Writes one batch; true when it was stored (or there was nothing to store).
    private func writeBatch(_ backlog: inout SpillBacklog) async -> Bool {
        let batch = buffer.peek(max: batchSize)
        guard !batch.isEmpty else { return true }
        let started = ContinuousClock.now
        do {
            try await store.appendEvents(batch)
            buffer.commit(batch.count)
            metrics.dbBatchLatency.recordNanoseconds(Int64((ContinuousClock.now - started).nanoseconds))
            metrics.auditWritten.increment(by: batch.count)
            metrics.auditBuffered.record(buffer.count)
            backlog.stored += UInt64(batch.count)
            await retire(&backlog)
            afterWrite()
            return true
        } catch {
            logger.warning("audit batch failed; will retry", metadata: ["error": "\(error.message)", "events": "\(batch.count)"])
            metrics.auditBuffered.record(buffer.count)
            return false
        }
    }

    // MARK: Spill files

    /// Spill files of earlier runs: not yet (wholly) in the buffer, and in the buffer but not
    /// yet stored.
    struct SpillBacklog {
        struct Waiting {
            var path: String
            /// Events of the file already put into the buffer.
            var loaded = 0
            /// Unreadable lines, once the file was first read.
            var rejected: Int?
        }

        struct Loaded {
            var path: String
            /// Stored once ``SpillBacklog/stored`` reaches this.
            var mark: UInt64
            var rejected: Int
        }

        var waiting: [Waiting] = []
        var loaded: [Loaded] = []
        /// Events stored since start.
        var stored: UInt64 = 0
    }

    private func findSpillFiles(_ backlog: inout SpillBacklog) async {
        guard let spill else { return }
        do {
            let (complete, incomplete) = try await spill.files()
            for path in incomplete {
                logger.warning(
                    "incomplete audit spill file (the node stopped while writing it): not loaded; rename it to .jsonl to load its complete lines",
                    metadata: ["file": "\(path)"])
            }
            guard !complete.isEmpty else { return }
            logger.notice("found audit spill files of an earlier shutdown; loading them", metadata: ["files": "\(complete.count)", "directory": "\(spill.directory)"])
            backlog.waiting = complete.map { SpillBacklog.Waiting(path: $0) }
        } catch {
            logger.error("cannot list the audit spill directory", metadata: ["directory": "\(spill.directory)", "error": "\(error)"])
        }
    }

    /// Moves events of waiting spill files into the buffer, oldest first, until it is half full.
    private func refill(_ backlog: inout SpillBacklog) async {
        guard let spill else { return }
        let limit = max(1, buffer.capacity / 2)
        while var file = backlog.waiting.first, buffer.count < limit {
            let contents: (events: [AuditEvent], rejected: [AuditEventLine.Rejected])
            do {
                contents = try await spill.read(file.path)
            } catch {
                logger.error("cannot read an audit spill file; left in place", metadata: ["file": "\(file.path)", "error": "\(error)"])
                backlog.waiting.removeFirst()
                continue
            }
            if file.rejected == nil {
                file.rejected = contents.rejected.count
                if let first = contents.rejected.first {
                    logger.warning(
                        "audit spill file has unreadable lines; they are skipped",
                        metadata: ["file": "\(file.path)", "lines": "\(contents.rejected.count)", "first": "line \(first.line): \(first.reason)"])
                    metrics.auditDropped.increment(by: contents.rejected.count)
                }
            }
            let start = min(file.loaded, contents.events.count)
            file.loaded = start + buffer.restore(contents.events[start...], limit: limit)
            guard file.loaded == contents.events.count else {
                backlog.waiting[0] = file
                break
            }
            backlog.waiting.removeFirst()
            backlog.loaded.append(.init(path: file.path, mark: backlog.stored + UInt64(buffer.count), rejected: file.rejected ?? 0))
            logger.info("audit spill file loaded into the buffer", metadata: ["file": "\(file.path)", "events": "\(contents.events.count)"])
        }
        metrics.auditBuffered.record(buffer.count)
        await retire(&backlog)
    }

    /// Removes the loaded spill files whose events are all stored.
    private func retire(_ backlog: inout SpillBacklog) async {
        while let file = backlog.loaded.first, file.mark <= backlog.stored {
            backlog.loaded.removeFirst()
            await finish(file)
        }
    }

    /// A spill file's events are stored (or in a newer spill file): removes it, or keeps it as
    /// `.rejected` when it had unreadable lines.
    private func finish(_ file: SpillBacklog.Loaded) async {
        guard let spill else { return }
        do {
            if file.rejected > 0 {
                let kept = try await spill.reject(file.path)
                logger.warning("audit spill file stored except its unreadable lines; kept for inspection", metadata: ["file": "\(kept)"])
            } else {
                try await spill.remove(file.path)
                logger.info("audit spill file stored and removed", metadata: ["file": "\(file.path)"])
            }
        } catch {
            logger.error(
                "cannot remove a stored audit spill file; the next start loads it again (harmless, events are stored once)",
                metadata: ["file": "\(file.path)", "error": "\(error)"])
        }
    }

    /// The store did not take everything before exit: the rest goes to a new spill file.
    private func spillRemaining(_ backlog: inout SpillBacklog) async {
        let events = buffer.peek(max: buffer.count)
        guard let spill else {
            logger.error("audit events could not be written before exit and are lost", metadata: ["events": "\(events.count)"])
            metrics.auditDropped.increment(by: events.count)
            return
        }
        do {
            let path = try await spill.write(events)
            buffer.commit(events.count)
            metrics.auditBuffered.record(buffer.count)
            logger.warning(
                "audit events could not be written before exit: spilled to disk, the next start stores them",
                metadata: ["events": "\(events.count)", "file": "\(path)"])
        } catch {
            logger.error(
                "audit events could not be written before exit nor spilled to disk: they are lost",
                metadata: ["events": "\(events.count)", "directory": "\(spill.directory)", "error": "\(error)"])
            metrics.auditDropped.increment(by: events.count)
            return
        }
        // The loaded files' events not yet stored are all in the new file now. A file only
        // partly loaded stays: the next start loads it again, the stored part harmlessly.
        for file in backlog.loaded { await finish(file) }
        backlog.loaded.removeAll()
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
