/// A server frame as a client reads it: the decoding side of ``ServerMessage``, used by the
/// Swift client SDK and the load generator.
public enum ServerEvent: Sendable, Equatable {
    public struct Welcome: Sendable, Equatable {
        public var sessionId: String
        public var peerId: String
        public var room: String
        public var peers: [PeerSummary]
        public var iceServers: RawJSON
        public var resumeToken: String
        public var heartbeatSeconds: Int
    }

    case welcome(Welcome)
    case peerJoined(PeerSummary)
    case peerLeft(peerId: String, reason: String)
    case peerUpdated(PeerSummary)
    case relay(RelayKind, from: String, data: RawJSON, seq: UInt64)
    case ack(id: RawJSON)
    case error(code: String, message: String, ref: RawJSON?)
    case pong(id: RawJSON?)
    case reconnect(reason: String, retryAfterMs: Int)
    case resumed(sessionId: String, replayed: Int, peers: [PeerSummary])
    case iceServers(RawJSON)
    /// A frame type this version does not know (servers may add types).
    case unknown(type: String)

    public struct DecodingFailure: Error, Sendable, Equatable {
        public var message: String
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodingFailure) -> ServerEvent {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(DecodingFailure) in try decode(buffer) }
        }.get()
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodingFailure) -> ServerEvent {
        var fields: [String: JSONScanner.Value] = [:]
        do {
            try JSONScanner.scanObject(bytes) { (key, value) throws(JSONScanner.Failure) in
                fields[JSONScanner.decodeString(bytes, key)] = value
            }
        } catch {
            throw DecodingFailure(message: "malformed frame: \(error.message)")
        }
        let reader = FieldReader(bytes: bytes, fields: fields)
        let type = try reader.string("type")
        switch type {
        case "welcome":
            return .welcome(Welcome(
                sessionId: try reader.string("sessionId"), peerId: try reader.string("peerId"), room: try reader.string("room"),
                peers: try reader.peers("peers"), iceServers: reader.raw("iceServers") ?? .emptyArray,
                resumeToken: try reader.string("resumeToken"), heartbeatSeconds: try reader.integer("heartbeatSeconds")))
        case "peer-joined": return .peerJoined(try reader.peer("peer"))
        case "peer-left": return .peerLeft(peerId: try reader.string("peerId"), reason: try reader.string("reason"))
        case "peer-updated": return .peerUpdated(try reader.peer("peer"))
        case "signal", "broadcast":
            return .relay(
                type == "signal" ? .signal : .broadcast, from: try reader.string("from"), data: reader.raw("data") ?? .null,
                seq: try reader.unsigned("seq"))
        case "ack":
            guard let id = reader.raw("id") else { throw DecodingFailure(message: "ack without id") }
            return .ack(id: id)
        case "error":
            return .error(code: try reader.string("code"), message: (try? reader.string("message")) ?? "", ref: reader.raw("ref"))
        case "pong": return .pong(id: reader.raw("id"))
        case "reconnect":
            return .reconnect(reason: (try? reader.string("reason")) ?? "", retryAfterMs: (try? reader.integer("retryAfterMs")) ?? 0)
        case "resumed":
            return .resumed(
                sessionId: try reader.string("sessionId"), replayed: try reader.integer("replayed"),
                peers: (try? reader.peers("peers")) ?? [])
        case "ice-servers": return .iceServers(reader.raw("iceServers") ?? .emptyArray)
        default: return .unknown(type: type)
        }
    }
}

private struct FieldReader {
    let bytes: UnsafeRawBufferPointer
    let fields: [String: JSONScanner.Value]

    func raw(_ name: String) -> RawJSON? {
        guard let value = fields[name] else { return nil }
        return RawJSON(validated: Array(UnsafeRawBufferPointer(rebasing: bytes[value.range])), kind: value.kind)
    }

    func string(_ name: String) throws(ServerEvent.DecodingFailure) -> String {
        guard let value = fields[name], value.kind == .string else {
            throw ServerEvent.DecodingFailure(message: "`\(name)` must be a string")
        }
        return JSONScanner.decodeString(bytes, (value.range.lowerBound + 1)..<(value.range.upperBound - 1))
    }

    func integer(_ name: String) throws(ServerEvent.DecodingFailure) -> Int {
        guard let value = fields[name], value.kind == .number,
            let number = Int(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[value.range]), as: UTF8.self))
        else {
            throw ServerEvent.DecodingFailure(message: "`\(name)` must be an integer")
        }
        return number
    }

    func unsigned(_ name: String) throws(ServerEvent.DecodingFailure) -> UInt64 {
        guard let value = fields[name], value.kind == .number,
            let number = UInt64(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[value.range]), as: UTF8.self))
        else {
            throw ServerEvent.DecodingFailure(message: "`\(name)` must be a non-negative integer")
        }
        return number
    }

    func peer(_ name: String) throws(ServerEvent.DecodingFailure) -> PeerSummary {
        guard let value = fields[name], value.kind == .object else {
            throw ServerEvent.DecodingFailure(message: "`\(name)` must be an object")
        }
        return try Self.peer(in: UnsafeRawBufferPointer(rebasing: bytes[value.range]))
    }

    func peers(_ name: String) throws(ServerEvent.DecodingFailure) -> [PeerSummary] {
        guard let value = fields[name], value.kind == .array else {
            throw ServerEvent.DecodingFailure(message: "`\(name)` must be an array")
        }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[value.range])
        var peers: [PeerSummary] = []
        var failure: ServerEvent.DecodingFailure?
        do throws(JSONScanner.Failure) {
            try JSONScanner.scanArray(slice) { element throws(JSONScanner.Failure) in
                do throws(ServerEvent.DecodingFailure) {
                    peers.append(try Self.peer(in: UnsafeRawBufferPointer(rebasing: slice[element.range])))
                } catch {
                    failure = error
                }
            }
        } catch {
            throw ServerEvent.DecodingFailure(message: error.message)
        }
        if let failure { throw failure }
        return peers
    }

    static func peer(in bytes: UnsafeRawBufferPointer) throws(ServerEvent.DecodingFailure) -> PeerSummary {
        var fields: [String: JSONScanner.Value] = [:]
        do {
            try JSONScanner.scanObject(bytes) { (key, value) throws(JSONScanner.Failure) in
                fields[JSONScanner.decodeString(bytes, key)] = value
            }
        } catch {
            throw ServerEvent.DecodingFailure(message: error.message)
        }
        let reader = FieldReader(bytes: bytes, fields: fields)
        return PeerSummary(peerId: try reader.string("peerId"), metadata: reader.raw("metadata") ?? .emptyObject)
    }
}
