import Foundation
import Testing

@testable import Signaling

@Suite struct AuditEventNULTests {
    @Test func everyNULBecomesAReplacementCharacter() throws {
        let event = AuditEvent(
            id: "E\u{0}1", type: .sessionStarted, tenantID: "t\u{0}", time: Date(), node: "\u{0}n", room: "r\u{0}\u{0}", peer: "p\u{0}",
            session: "s\u{0}", data: try RawJSON(validating: #"{"ua\u0000":"a\u0000b","lit":"\\u0000","esc":"\\\u0000","n":[0,"\u0001"]}"#))
        let clean = event.replacingNUL()
        #expect(clean.id == "E\u{FFFD}1" && clean.tenantID == "t\u{FFFD}" && clean.node == "\u{FFFD}n")
        #expect(clean.room == "r\u{FFFD}\u{FFFD}" && clean.peer == "p\u{FFFD}" && clean.session == "s\u{FFFD}")
        #expect(clean.data.description == #"{"ua\ufffd":"a\ufffdb","lit":"\\u0000","esc":"\\\ufffd","n":[0,"\u0001"]}"#)
        #expect(try RawJSON(validating: clean.data.bytes) == clean.data)
        #expect(clean.type == event.type && clean.time == event.time)
    }

    @Test func anEventWithoutNULIsUnchanged() throws {
        let event = AuditEvent(
            type: .sessionEnded, tenantID: "acme", node: "n", room: nil, peer: "p", data: try RawJSON(validating: #"{"a":"\\u0000 \u00e9"}"#))
        #expect(event.replacingNUL() == event)
        #expect(RawJSON.null.replacingNULEscapes() == .null)
    }
}
