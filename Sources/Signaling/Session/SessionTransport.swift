/// What kind of frame a session is sending, for metrics.
public enum OutboundFrameType: String, Sendable, CaseIterable {
    case welcome
    case peerJoined = "peer-joined"
    case peerLeft = "peer-left"
    case peerUpdated = "peer-updated"
    case signal
    case broadcast
    case ack
    case error
    case pong
    case reconnect
    case resumed
    case iceServers = "ice-servers"
}

/// Where a session's frames go: a WebSocket today, an SSE stream later (SPEC §3 fallback).
///
/// Sessions call these while holding their own lock, which is what keeps frames in `seq`
/// order on the wire. An implementation must therefore not block and must never call back
/// into the session or the hub synchronously (defer such work to its own executor).
public protocol SessionTransport: AnyObject, Sendable {
    /// Sends one text frame.
    func send(_ frame: [UInt8], type: OutboundFrameType)
    /// Closes the connection.
    func close(_ code: CloseCode, reason: String)
}
