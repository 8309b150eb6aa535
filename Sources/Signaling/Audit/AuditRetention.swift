import Foundation

/// Which audit events retention removes: events are kept for at least the retention period
/// and removed in whole UTC days (SPEC §5).
public enum AuditRetention {
    /// Events with a `time` before this are removed: `now` minus `days`, rounded down to
    /// 00:00 UTC. An event is therefore kept at least `days` days and less than `days + 1`,
    /// and PostgreSQL only ever drops whole daily partitions instead of deleting rows from
    /// the days still being written.
    public static func cutoff(now: Date, days: Int) -> Date {
        let seconds = now.timeIntervalSince1970 - Double(days) * 86_400
        return Date(timeIntervalSince1970: (seconds / 86_400).rounded(.down) * 86_400)
    }
}
