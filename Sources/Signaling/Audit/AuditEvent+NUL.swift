/// PostgreSQL cannot store U+0000: `text` refuses the byte (SQLSTATE 22021), and although
/// `json` keeps a `\u0000` escape, `jsonb` and the `->>` operators refuse it. One such event
/// would fail its whole batch on every retry and hold the audit buffer up, so the PostgreSQL
/// store writes U+0000 as U+FFFD (the replacement character) in every field.
extension AuditEvent {
    /// The event with every U+0000 in its strings, and every `\u0000` escape in `data`,
    /// replaced by U+FFFD (`\ufffd` in `data`). The event itself when it has none.
    public func replacingNUL() -> AuditEvent {
        var event = self
        event.id = Self.replacingNUL(id)
        event.tenantID = Self.replacingNUL(tenantID)
        event.node = Self.replacingNUL(node)
        event.room = room.map(Self.replacingNUL)
        event.peer = peer.map(Self.replacingNUL)
        event.session = session.map(Self.replacingNUL)
        event.data = data.replacingNULEscapes()
        return event
    }

    static func replacingNUL(_ text: String) -> String {
        guard text.utf8.contains(0) else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\u{0}" ? "\u{FFFD}" : $0 }))
    }
}

extension RawJSON {
    /// The same JSON with each `\u0000` escape inside its strings written `\ufffd` (same
    /// length, still valid); other bytes, `\\u0000` (an escaped backslash) included, unchanged.
    public func replacingNULEscapes() -> RawJSON {
        let escape = Array(#"\u0000"#.utf8)
        guard bytes.count >= escape.count else { return self }
        var out: [UInt8]?
        var index = 0
        var inString = false
        while index < bytes.count {
            let byte = bytes[index]
            if !inString {
                if byte == UInt8(ascii: "\"") { inString = true }
                index += 1
            } else if byte == UInt8(ascii: "\"") {
                inString = false
                index += 1
            } else if byte == UInt8(ascii: "\\") {
                if index + escape.count <= bytes.count, bytes[index..<(index + escape.count)].elementsEqual(escape) {
                    if out == nil { out = bytes }
                    out?.replaceSubrange((index + 2)..<(index + 6), with: Array("fffd".utf8))
                    index += escape.count
                } else {
                    index += 2  // any other escape; a \uXXXX's digits cannot hold a quote or backslash
                }
            } else {
                index += 1
            }
        }
        guard let out else { return self }
        return RawJSON(validated: out, kind: kind)
    }
}
