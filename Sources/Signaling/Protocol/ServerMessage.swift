/// A peer as other peers see it.
public struct PeerSummary: Sendable, Equatable {
    public var peerId: String
    public var metadata: RawJSON

    public init(peerId: String, metadata: RawJSON) {
        self.peerId = peerId
        self.metadata = metadata
    }
}

/// Why a peer left a room (`peer-left.reason`).
public enum LeaveReason: String, Sendable {
    case left
    case timeout
    case kicked
    case nodeFailure = "node-failure"
}

/// Which relayed message kind a `seq`-numbered frame is.
public enum RelayKind: String, Sendable {
    case signal
    case broadcast
}

/// A frame the server sends (SPEC §3, server → client), encoded straight to JSON bytes.
public enum ServerMessage: Sendable {
    case welcome(
        sessionId: String, peerId: String, room: String, peers: [PeerSummary],
        iceServers: RawJSON, resumeToken: String, heartbeatSeconds: Int)
    case peerJoined(PeerSummary)
    case peerLeft(peerId: String, reason: LeaveReason)
    case peerUpdated(PeerSummary)
    case relay(RelayKind, from: String, data: RawJSON, seq: UInt64)
    case ack(id: RawJSON)
    case error(ProtocolError)
    case pong(id: RawJSON?)
    case reconnect(reason: String, retryAfterMs: Int)
    case resumed(sessionId: String, replayed: Int, peers: [PeerSummary])
    case iceServers(RawJSON)

    /// The frame's JSON text.
    public func encoded() -> [UInt8] {
        switch self {
        case .relay(let kind, let from, let data, let seq):
            return Self.encodeRelay(kind, from: from, data: data, seq: seq)
        default:
            var writer = JSONWriter(capacity: 96)
            encode(into: &writer)
            return writer.bytes
        }
    }

    /// The hot-path encoding of `signal`/`broadcast`: one buffer, sized up front.
    public static func encodeRelay(_ kind: RelayKind, from: String, data: RawJSON, seq: UInt64) -> [UInt8] {
        var writer = JSONWriter(capacity: data.bytes.count + from.utf8.count + 64)
        writer.beginObject()
        writer.field("type", kind.rawValue)
        writer.field("from", from)
        writer.field("seq", seq)
        writer.field("data", data)
        writer.endObject()
        return writer.bytes
    }

    private func encode(into writer: inout JSONWriter) {
        writer.beginObject()
        switch self {
        case .welcome(let sessionId, let peerId, let room, let peers, let iceServers, let resumeToken, let heartbeat):
            writer.field("type", "welcome")
            writer.field("sessionId", sessionId)
            writer.field("peerId", peerId)
            writer.field("room", room)
            writer.key("peers")
            Self.write(peers, into: &writer)
            writer.field("iceServers", iceServers)
            writer.field("resumeToken", resumeToken)
            writer.field("heartbeatSeconds", heartbeat)
        case .peerJoined(let peer):
            writer.field("type", "peer-joined")
            writer.key("peer")
            Self.write(peer, into: &writer)
        case .peerLeft(let peerId, let reason):
            writer.field("type", "peer-left")
            writer.field("peerId", peerId)
            writer.field("reason", reason.rawValue)
        case .peerUpdated(let peer):
            writer.field("type", "peer-updated")
            writer.key("peer")
            Self.write(peer, into: &writer)
        case .relay(let kind, let from, let data, let seq):
            writer.field("type", kind.rawValue)
            writer.field("from", from)
            writer.field("seq", seq)
            writer.field("data", data)
        case .ack(let id):
            writer.field("type", "ack")
            writer.field("id", id)
        case .error(let error):
            writer.field("type", "error")
            writer.field("code", error.code.rawValue)
            writer.field("message", error.message)
            if let ref = error.ref { writer.field("ref", ref) }
        case .pong(let id):
            writer.field("type", "pong")
            if let id { writer.field("id", id) }
        case .reconnect(let reason, let retryAfterMs):
            writer.field("type", "reconnect")
            writer.field("reason", reason)
            writer.field("retryAfterMs", retryAfterMs)
        case .resumed(let sessionId, let replayed, let peers):
            writer.field("type", "resumed")
            writer.field("sessionId", sessionId)
            writer.field("replayed", replayed)
            writer.key("peers")
            Self.write(peers, into: &writer)
        case .iceServers(let servers):
            writer.field("type", "ice-servers")
            writer.field("iceServers", servers)
        }
        writer.endObject()
    }

    private static func write(_ peer: PeerSummary, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("peerId", peer.peerId)
        writer.field("metadata", peer.metadata)
        writer.endObject()
    }

    private static func write(_ peers: [PeerSummary], into writer: inout JSONWriter) {
        writer.beginArray()
        for peer in peers { write(peer, into: &writer) }
        writer.endArray()
    }
}
