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
/// A session calls these outside its lock, one caller at a time and in `seq` order, from
/// whichever thread is draining its outbox. An implementation must not block; it may call
/// back into the session or the hub.
public protocol SessionTransport: AnyObject, Sendable {
    /// Sends one text frame.
    func send(_ frame: [UInt8], type: OutboundFrameType)
    /// Closes the connection.
    func close(_ code: CloseCode, reason: String)
}
