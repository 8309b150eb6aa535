import Foundation
import Testing

@testable import Signaling

@Suite struct AuditRetentionTests {
    static func date(_ text: String) throws -> Date {
        try #require(Timestamp.parse(text))
    }

    @Test func theCutoffIsTheUTCMidnightOnOrBeforeNowMinusTheRetention() throws {
        #expect(AuditRetention.cutoff(now: try Self.date("2026-11-25T03:27:40.500Z"), days: 90) == (try Self.date("2026-08-27T00:00:00Z")))
        #expect(AuditRetention.cutoff(now: try Self.date("2026-11-25T23:59:59.999Z"), days: 1) == (try Self.date("2026-11-24T00:00:00Z")))
        #expect(AuditRetention.cutoff(now: try Self.date("2026-11-25T00:00:00Z"), days: 1) == (try Self.date("2026-11-24T00:00:00Z")))
        #expect(AuditRetention.cutoff(now: try Self.date("2026-03-01T12:00:00Z"), days: 1) == (try Self.date("2026-02-28T00:00:00Z")))
        #expect(AuditRetention.cutoff(now: try Self.date("2026-11-25T12:00:00+05:00"), days: 0) == (try Self.date("2026-11-25T00:00:00Z")))
    }

    @Test func eventsAreKeptAtLeastTheRetentionAndLessThanADayMore() throws {
        var now = try Self.date("2026-11-25T00:00:00Z")
        let days = 7
        while now < (try Self.date("2026-11-27T00:00:00Z")) {
            let cutoff = AuditRetention.cutoff(now: now, days: days)
            let age = now.timeIntervalSince(cutoff)
            #expect(age >= Double(days) * 86_400 && age < Double(days + 1) * 86_400)
            #expect(Int(cutoff.timeIntervalSince1970) % 86_400 == 0)
            now += 3_599.5
        }
    }
}
