import Foundation
import Signaling

/// The byte layouts ``RosterScripts`` read and write: peer records, log entries and the
/// events published on node channels. Pure functions, tested without Redis.
enum RosterWire {
    /// `lp(s)`: 4-byte big-endian length, then the bytes.
    static func appendField(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        let count = UInt32(bytes.count)
        out += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
        out += bytes
    }

    /// The value kept in a room's `peers` hash for one peer.
    static func record(_ peer: PeerRecord) -> [UInt8] {
        var out: [UInt8] = []
        appendField(Array(peer.sessionId.utf8), to: &out)
        appendField(Array(peer.node.utf8), to: &out)
        appendField(Array(String(Int64((peer.joinedAt.timeIntervalSince1970 * 1000).rounded())).utf8), to: &out)
        appendField(peer.metadata.bytes, to: &out)
        return out
    }

    static func peer(tenantID: String, room: String, peerId: String, record: [UInt8]) -> PeerRecord? {
        var reader = Reader(record)
        guard let session = reader.string(), let node = reader.string(), let joined = reader.string().flatMap(Int64.init),
            let metadataBytes = reader.field(), let metadata = try? RawJSON(validating: metadataBytes)
        else { return nil }
        return PeerRecord(
            tenantID: tenantID, room: room, peerId: peerId, metadata: metadata, sessionId: session, node: node,
            joinedAt: Date(timeIntervalSince1970: Double(joined) / 1000))
    }

    /// A flat `HGETALL` reply (`field, value, …`) as peer records, ordered by peer id.
    static func peers(tenantID: String, room: String, flat: [RedisValue]) -> [PeerRecord] {
        var out: [PeerRecord] = []
        var index = 0
        while index + 1 < flat.count {
            if let peerId = flat[index].string, let record = flat[index + 1].bytes,
                let peer = peer(tenantID: tenantID, room: room, peerId: peerId, record: record)
            {
                out.append(peer)
            }
            index += 2
        }
        return out.sorted { $0.peerId < $1.peerId }
    }

    static func kindByte(_ kind: RelayKind) -> UInt8 {
        kind == .signal ? UInt8(ascii: "s") : UInt8(ascii: "b")
    }

    static func kind(_ byte: UInt8) -> RelayKind {
        byte == UInt8(ascii: "b") ? .broadcast : .signal
    }

    /// A log entry (kind byte + frame) whose `seq` is known from its position.
    static func loggedFrame(_ entry: [UInt8], seq: UInt64) -> LoggedFrame? {
        guard let first = entry.first else { return nil }
        return LoggedFrame(seq: seq, kind: kind(first), frame: Array(entry.dropFirst()))
    }

    /// The events of one channel payload, in order. Malformed input ends the list.
    static func decodeEvents(_ payload: [UInt8]) -> [RosterEvent] {
        var reader = Reader(payload)
        var events: [RosterEvent] = []
        while let type = reader.byte() {
            switch type {
            case UInt8(ascii: "D"):
                guard reader.byte() != nil, let prefix = reader.field(), let suffix = reader.field(), let count = reader.uint32() else {
                    return events
                }
                for _ in 0..<count {
                    guard let session = reader.string(), let seq = reader.string().flatMap(UInt64.init) else { return events }
                    var frame = prefix
                    frame += Array(String(seq).utf8)
                    frame += suffix
                    events.append(.deliver(sessionId: session, seq: seq, frame: frame))
                }
            case UInt8(ascii: "J"):
                guard let tenant = reader.string(), let room = reader.string(), let peerId = reader.string(), let record = reader.field(),
                    let peer = peer(tenantID: tenant, room: room, peerId: peerId, record: record)
                else { return events }
                events.append(.peerJoined(peer))
            case UInt8(ascii: "L"):
                guard let tenant = reader.string(), let room = reader.string(), let peerId = reader.string(), let session = reader.string(),
                    let reason = reader.string().flatMap(LeaveReason.init(rawValue:))
                else { return events }
                events.append(.peerLeft(tenantID: tenant, room: room, peerId: peerId, sessionId: session, reason: reason))
            case UInt8(ascii: "U"):
                guard let tenant = reader.string(), let room = reader.string(), let peerId = reader.string(), let session = reader.string(),
                    let metadataBytes = reader.field(), let metadata = try? RawJSON(validating: metadataBytes)
                else { return events }
                events.append(.peerUpdated(tenantID: tenant, room: room, peerId: peerId, sessionId: session, metadata: metadata))
            case UInt8(ascii: "R"):
                guard let session = reader.string() else { return events }
                events.append(.replaced(sessionId: session))
            case UInt8(ascii: "M"):
                guard let session = reader.string() else { return events }
                events.append(.moved(sessionId: session))
            case UInt8(ascii: "A"):
                guard let session = reader.string() else { return events }
                events.append(.attached(sessionId: session))
            default:
                return events
            }
        }
        return events
    }

    /// Reads `lp` fields off a byte array.
    struct Reader {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) {
            self.bytes = bytes
        }

        mutating func byte() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func uint32() -> UInt32? {
            guard index + 4 <= bytes.count else { return nil }
            defer { index += 4 }
            return UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16 | UInt32(bytes[index + 2]) << 8 | UInt32(bytes[index + 3])
        }

        mutating func field() -> [UInt8]? {
            guard let count = uint32().map(Int.init), index + count <= bytes.count else { return nil }
            defer { index += count }
            return Array(bytes[index..<(index + count)])
        }

        mutating func string() -> String? {
            field().map { String(decoding: $0, as: UTF8.self) }
        }
    }
}
