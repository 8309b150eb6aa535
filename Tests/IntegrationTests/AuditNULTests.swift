import Foundation
import Logging
import PostgresNIO
import PostgresStore
import SQLiteStore
import Signaling
import Testing

/// An event with U+0000 in every string field and a `\u0000` in its data, between two
/// ordinary ones.
enum NULEvents {
    static func batch() throws -> [AuditEvent] {
        let time = Timestamp.date(milliseconds: Timestamp.milliseconds(Date()))
        let nul = AuditEvent(
            id: ULID.make(at: time) + "\u{0}", type: .sessionStarted, tenantID: "ac\u{0}me", time: time, node: "node\u{0}",
            room: "room\u{0}", peer: "peer\u{0}", session: "S\u{0}",
            data: try RawJSON(validating: #"{"userAgent":"UA\u0000/1","remoteAddress":"\\u0000"}"#))
        return [
            AuditEvent(id: ULID.make(at: time), type: .roomCreated, tenantID: "acme", time: time, node: "n", room: "r"),
            nul,
            AuditEvent(id: ULID.make(at: time.addingTimeInterval(0.001)), type: .roomClosed, tenantID: "acme", time: time, node: "n", room: "r"),
        ]
    }
}

@Suite("Audit events with NUL: SQLite", .timeLimit(.minutes(1)))
struct SQLiteAuditNULTests {
    /// SQLite keeps U+0000 (it reads text back only up to it): the batch is stored.
    @Test func sqliteStoresAnEventWithNULAndItsBatch() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nul-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await SQLiteStore.open(path: path, logger: Logger(label: "test"))
        let batch = try NULEvents.batch()
        try await store.appendEvents(batch)
        #expect(try await store.events(AuditQuery(tenantID: "acme", limit: 10)).items.count == 2)
        #expect(try await store.events(AuditQuery(tenantID: batch[1].tenantID, limit: 10)).items.count == 1)
        await store.close()
    }
}

@Suite("Audit events with NUL: PostgreSQL", .serialized, .timeLimit(.minutes(1)), .enabled(if: PostgresTestDatabase.isConfigured))
struct PostgresAuditNULTests {
    /// PostgreSQL refuses U+0000 in text: the store writes U+FFFD instead, so the batch goes in.
    @Test func anEventWithNULInEveryFieldIsStoredWithItsBatch() async throws {
        try await PostgresTestDatabase.with { store, _ in
            let batch = try NULEvents.batch()
            try await store.appendEvents(batch)
            try await store.appendEvents([batch[1]])  // a retry stores it once
            #expect(try await store.events(AuditQuery(tenantID: "acme", limit: 10)).items.count == 2)
            let stored = try await store.events(AuditQuery(tenantID: "ac\u{FFFD}me", limit: 10)).items
            #expect(stored == [batch[1].replacingNUL()])
            let event = try #require(stored.first)
            #expect(event.id.hasSuffix("\u{FFFD}") && event.node == "node\u{FFFD}" && event.room == "room\u{FFFD}")
            #expect(event.peer == "peer\u{FFFD}" && event.session == "S\u{FFFD}")
            #expect(event.data.description == #"{"userAgent":"UA\ufffd/1","remoteAddress":"\\u0000"}"#)
            // jsonb, which refuses \u0000, reads it.
            let rows = try await store.client.query(
                "SELECT count(*)::int AS n FROM audit_events WHERE data::jsonb ->> 'userAgent' = \("UA\u{FFFD}/1")")
            var count = 0
            for try await row in rows { count = try row.decode(Int.self) }
            #expect(count == 1)
        }
    }
}
