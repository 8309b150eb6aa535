@testable import Signaling

extension RawJSON {
    /// Validated JSON from test text.
    static func parse(_ text: String) throws -> RawJSON {
        try RawJSON(validating: text)
    }
}
