/// The error codes of SPEC §3, sent in `error` frames.
public enum SignalErrorCode: String, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case unknownType = "unknown_type"
    case tooLarge = "too_large"
    case rateLimited = "rate_limited"
    case peerNotFound = "peer_not_found"
    case forbidden = "forbidden"
    case replaced = "replaced"
    case unavailable = "unavailable"
    case `internal` = "internal"
}

/// WebSocket close codes of SPEC §3.
public enum CloseCode: UInt16, Sendable {
    case normal = 1000
    case goingAway = 1001
    case protocolError = 1002
    case unsupportedData = 1003
    case invalidPayload = 1007
    case policy = 1008
    case tooLarge = 1009
    case internalError = 1011
    case replaced = 4001
}

/// A request from a client that failed; becomes an `error` frame.
public struct ProtocolError: Error, Sendable, Equatable {
    public var code: SignalErrorCode
    /// Safe to show the client: never carries secrets or internals.
    public var message: String
    /// The client's id of the failed frame, if it had one.
    public var ref: RawJSON?

    public init(_ code: SignalErrorCode, _ message: String, ref: RawJSON? = nil) {
        self.code = code
        self.message = message
        self.ref = ref
    }
}
