import Foundation

/// One audit event as one line of JSON (JSON Lines): the format of the audit spill files a
/// node writes when it cannot store its buffered events before exit.
///
/// A line is the event as the REST API shows it (`{id, type, tenant, time, node, room?,
/// peer?, session?, data}`), `time` in RFC 3339 with milliseconds, then `\n`. Every field is
/// kept, the `id` included, so storing a line twice stores the event once (the stores ignore
/// an id they already have). Control characters in strings are escaped and the line breaks a
/// `data` document may have between its tokens become spaces, so one event is always one line.
public enum AuditEventLine {
    /// Appends the event's line, `\n` included.
    public static func append(_ event: AuditEvent, to bytes: inout [UInt8]) {
        var writer = JSONWriter(capacity: 192 + event.data.bytes.count)
        writer.beginObject()
        event.writeFields(to: &writer)
        writer.key("data")
        bytes.append(contentsOf: writer.bytes)
        // Validated JSON has no raw line break inside a string: any there is whitespace.
        for byte in event.data.bytes {
            bytes.append(byte == 0x0A || byte == 0x0D ? UInt8(ascii: " ") : byte)
        }
        bytes.append(UInt8(ascii: "}"))
        bytes.append(0x0A)
    }

    /// The event's line, `\n` included.
    public static func encode(_ event: AuditEvent) -> [UInt8] {
        var bytes: [UInt8] = []
        append(event, to: &bytes)
        return bytes
    }

    /// Decodes one line (without or with its line break). Members it does not know are
    /// ignored; a missing or mistyped field is a failure.
    public static func decode(_ line: UnsafeRawBufferPointer) throws(JSONScanner.Failure) -> AuditEvent {
        var fields = Fields()
        try JSONScanner.scanObject(line) { (key, value) throws(JSONScanner.Failure) in
            let name = JSONScanner.decodeString(line, key)
            func string() throws(JSONScanner.Failure) -> String {
                guard value.kind == .string else {
                    throw JSONScanner.Failure(message: "`\(name)` must be a string", offset: value.range.lowerBound)
                }
                return JSONScanner.decodeString(line, (value.range.lowerBound + 1)..<(value.range.upperBound - 1))
            }
            func optionalString() throws(JSONScanner.Failure) -> String? {
                value.kind == .null ? nil : try string()
            }
            switch name {
            case "id": fields.id = try string()
            case "type": fields.type = try string()
            case "tenant": fields.tenant = try string()
            case "time": fields.time = try string()
            case "node": fields.node = try string()
            case "room": fields.room = try optionalString()
            case "peer": fields.peer = try optionalString()
            case "session": fields.session = try optionalString()
            case "data":
                fields.data = RawJSON(validated: Array(UnsafeRawBufferPointer(rebasing: line[value.range])), kind: value.kind)
            default: break
            }
        }
        return try fields.event()
    }

    public static func decode(_ line: some Collection<UInt8>) throws(JSONScanner.Failure) -> AuditEvent {
        let bytes = Array(line)
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONScanner.Failure) in try decode(buffer) }
        }
        return try result.get()
    }

    /// A line that could not be decoded: its number (from 1) and why.
    public struct Rejected: Sendable, Equatable {
        public var line: Int
        public var reason: String
    }

    /// Decodes a whole file: every event it can, in order, and the lines it cannot.
    /// Blank lines are skipped; a last line without `\n` counts like the others.
    public static func decodeLines(_ bytes: [UInt8]) -> (events: [AuditEvent], rejected: [Rejected]) {
        var events: [AuditEvent] = []
        var rejected: [Rejected] = []
        bytes.withUnsafeBytes { buffer in
            var start = 0
            var number = 0
            while start < buffer.count {
                number += 1
                var end = start
                while end < buffer.count, buffer[end] != 0x0A { end += 1 }
                let line = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
                start = end + 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                do throws(JSONScanner.Failure) {
                    events.append(try decode(line))
                } catch {
                    rejected.append(Rejected(line: number, reason: "\(error.message) at byte \(error.offset)"))
                }
            }
        }
        return (events, rejected)
    }

    private struct Fields {
        var id: String?
        var type: String?
        var tenant: String?
        var time: String?
        var node: String?
        var room: String?
        var peer: String?
        var session: String?
        var data: RawJSON?

        func event() throws(JSONScanner.Failure) -> AuditEvent {
            func missing(_ name: String) -> JSONScanner.Failure {
                JSONScanner.Failure(message: "`\(name)` is missing or invalid", offset: 0)
            }
            guard let id, !id.isEmpty else { throw missing("id") }
            guard let type = type.flatMap(AuditEventType.init(rawValue:)) else { throw missing("type") }
            guard let tenant, !tenant.isEmpty else { throw missing("tenant") }
            guard let parsed = time.flatMap(Timestamp.parse) else { throw missing("time") }
            guard let node else { throw missing("node") }
            guard let data else { throw missing("data") }
            return AuditEvent(
                id: id, type: type, tenantID: tenant, time: Timestamp.date(milliseconds: Timestamp.milliseconds(parsed)),
                node: node, room: room, peer: peer, session: session, data: data)
        }
    }
}
