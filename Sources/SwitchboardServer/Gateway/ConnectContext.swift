import Foundation
import Signaling

/// What an accepted upgrade carries into the WebSocket handler.
public struct ConnectContext: Sendable {
    public enum Mode: Sendable, Equatable {
        /// Join at once and send `welcome`.
        case join
        /// The URL had `resume=1`: wait for a `resume` frame first.
        case awaitResume
    }

    public var identity: SessionIdentity
    /// The session the upgrade joined (mode `join`), waiting for this connection's socket.
    public var session: Session?
    public var metadata: RawJSON
    public var maxPeers: Int
    public var limits: TenantLimits
    public var mode: Mode
    public var iceServers: RawJSON
    /// When the TURN credentials in ``iceServers`` expire (nil: none were issued).
    public var iceServersExpire: Date?
    /// When the access token this connection was opened with expires.
    public var tokenExpires: Date
}
