import Foundation
import Synchronization
import Testing

@testable import Signaling

@Suite struct AuditBufferTests {
    static func event(_ index: Int, tenant: String = "acme") -> AuditEvent {
        AuditEvent(id: String(format: "E%04d", index), type: .sessionStarted, tenantID: tenant, node: "node-a", peer: "p\(index)")
    }

    /// Whether `body` returns within `seconds`. It runs in its own task, which is left behind
    /// (still waiting) when it does not return in time.
    static func within(_ seconds: Double, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let done = Flag()
        Task {
            await body()
            done.set()
        }
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if done.isSet { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return done.isSet
    }

    @Test func keepsEventsInOrderUpToTheCapacityAndCountsTheRest() {
        let buffer = AuditBuffer(capacity: 3)
        let accepted = (1...5).map { buffer.record(Self.event($0)) }
        #expect(accepted == [true, true, true, false, false])
        #expect(buffer.count == 3)
        #expect(buffer.droppedCount == 2)
        #expect(buffer.peek(max: 10).map(\.id) == ["E0001", "E0002", "E0003"])
    }

    @Test func aPeekedBatchStaysUntilCommitted() {
        let buffer = AuditBuffer(capacity: 10)
        for index in 1...5 { buffer.record(Self.event(index)) }
        #expect(buffer.peek(max: 2).map(\.id) == ["E0001", "E0002"])
        // A failed write retries the same batch.
        #expect(buffer.peek(max: 2).map(\.id) == ["E0001", "E0002"])
        #expect(buffer.count == 5)
        buffer.commit(2)
        #expect(buffer.count == 3)
        #expect(buffer.peek(max: 2).map(\.id) == ["E0003", "E0004"])
        buffer.commit(10)
        #expect(buffer.count == 0)
        #expect(buffer.peek(max: 2).isEmpty)
    }

    @Test func committingFreesCapacity() {
        let buffer = AuditBuffer(capacity: 2)
        buffer.record(Self.event(1))
        buffer.record(Self.event(2))
        #expect(!buffer.record(Self.event(3)))
        buffer.commit(1)
        #expect(buffer.record(Self.event(4)))
        #expect(buffer.peek(max: 5).map(\.id) == ["E0002", "E0004"])
        #expect(buffer.droppedCount == 1)
    }

    @Test func eventsRecordedWhileABatchIsOutAreKeptBehindIt() {
        let buffer = AuditBuffer(capacity: 100)
        for index in 1...3 { buffer.record(Self.event(index)) }
        let batch = buffer.peek(max: 3)
        buffer.record(Self.event(4))
        buffer.commit(batch.count)
        #expect(buffer.peek(max: 10).map(\.id) == ["E0004"])
    }

    @Test func staysInOrderAcrossManyBatches() {
        let buffer = AuditBuffer(capacity: 10_000)
        var written: [String] = []
        var next = 1
        for round in 0..<40 {
            for _ in 0..<(100 + round) {
                buffer.record(Self.event(next))
                next += 1
            }
            let batch = buffer.peek(max: 90)
            written += batch.map(\.id)
            buffer.commit(batch.count)
        }
        while buffer.count > 0 {
            let batch = buffer.peek(max: 500)
            written += batch.map(\.id)
            buffer.commit(batch.count)
        }
        #expect(written == (1..<next).map { String(format: "E%04d", $0) })
    }

    @Test func restoreTakesWhatFitsWithoutCountingTheRestAsDropped() {
        let buffer = AuditBuffer(capacity: 5)
        buffer.record(Self.event(1))
        let events = (2...9).map { Self.event($0) }
        #expect(buffer.restore(events[...], limit: 3) == 2)
        #expect(buffer.restore(events[2...]) == 2)
        #expect(buffer.restore(events[4...]) == 0)
        #expect(buffer.count == 5)
        #expect(buffer.droppedCount == 0)
        #expect(buffer.peek(max: 10).map(\.id) == ["E0001", "E0002", "E0003", "E0004", "E0005"])
    }

    @Test func restoreWakesAWaitingWriter() async throws {
        let buffer = AuditBuffer()
        let waiter = Task { await buffer.waitForEvents() }
        try await Task.sleep(for: .milliseconds(50))
        #expect(buffer.restore([Self.event(1)][...]) == 1)
        #expect(await Self.within(5) { await waiter.value })
    }

    @Test func capacityIsAtLeastOne() {
        let buffer = AuditBuffer(capacity: 0)
        #expect(buffer.capacity == 1)
        #expect(buffer.record(Self.event(1)))
        #expect(!buffer.record(Self.event(2)))
    }

    @Test func waitForEventsReturnsAtOnceWhenSomethingIsBuffered() async {
        let buffer = AuditBuffer()
        buffer.record(Self.event(1))
        #expect(await Self.within(5) { await buffer.waitForEvents() })
    }

    @Test func waitForEventsReturnsWhenAnEventArrives() async throws {
        let buffer = AuditBuffer()
        let waiter = Task { await buffer.waitForEvents() }
        try await Task.sleep(for: .milliseconds(50))
        buffer.record(Self.event(1))
        #expect(await Self.within(5) { await waiter.value })
    }

    @Test func waitForEventsKeepsWaitingWhileEmpty() async {
        let buffer = AuditBuffer()
        #expect(await Self.within(0.2) { await buffer.waitForEvents() } == false)
        buffer.wake()  // let the abandoned waiter finish
    }

    @Test func wakeReleasesAWaiterWithNothingBuffered() async throws {
        let buffer = AuditBuffer()
        let waiter = Task { await buffer.waitForEvents() }
        try await Task.sleep(for: .milliseconds(50))
        buffer.wake()
        #expect(await Self.within(5) { await waiter.value })
        #expect(buffer.count == 0)
    }

    @Test func aWakeBeforeTheWaitIsNotLost() async {
        let buffer = AuditBuffer()
        buffer.wake()  // e.g. shutdown between the writer's check and its wait
        #expect(await Self.within(5) { await buffer.waitForEvents() })
        // Used up: the next wait waits again.
        #expect(await Self.within(0.2) { await buffer.waitForEvents() } == false)
        buffer.wake()
    }

    @Test func auditEventTypesAreTheSpecNames() {
        #expect(AuditEventType.sessionStarted.rawValue == "session.started")
        #expect(AuditEventType.sessionResumed.rawValue == "session.resumed")
        #expect(AuditEventType.sessionEnded.rawValue == "session.ended")
        #expect(AuditEventType.peerKicked.rawValue == "peer.kicked")
        #expect(AuditEventType.authRejected.rawValue == "auth.rejected")
        #expect(AuditEventType.allCases.allSatisfy { $0.rawValue.contains(".") })
    }

    @Test func auditEventIdsAreULIDs() {
        let event = AuditEvent(type: .roomCreated, tenantID: "acme", node: "n")
        #expect(event.id.count == 26)
        #expect(event.data == .emptyObject)
    }
}

/// A flag one task sets and another polls.
private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)

    func set() { value.store(true, ordering: .releasing) }

    var isSet: Bool { value.load(ordering: .acquiring) }
}
