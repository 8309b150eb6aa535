/// A compact binary encoding of ``BusMessage`` for transports that carry bytes (Redis pub/sub).
///
/// Layout: one version byte (`1`), one tag byte naming the case, then the case's fields in
/// order. A string or JSON field is a LEB128 length followed by that many bytes (UTF-8 for
/// strings, the raw JSON text for `data`); an optional string is a presence byte (0 or 1)
/// followed by the string when present; the relay kind is one byte (0 signal, 1 broadcast).
/// Decoding validates the JSON payload again, so a corrupt or foreign publish can never put
/// invalid JSON into a frame. Unknown versions and tags are rejected, not guessed.
extension BusMessage {
    /// Why bytes could not be decoded.
    public struct DecodingError: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { "bus message: \(reason)" }
        init(_ reason: String) { self.reason = reason }
    }

    static let codecVersion: UInt8 = 1

    private enum Tag: UInt8 {
        case deliver = 1
        case tenantDisconnect = 2
        case tenantChanged = 3
        case keyRevoked = 4
        case roomClosed = 5
        case kick = 6
    }

    /// The message's bytes.
    public func encoded() -> [UInt8] {
        var writer = BusCodecWriter()
        writer.byte(Self.codecVersion)
        switch self {
        case .deliver(let envelope):
            writer.byte(Tag.deliver.rawValue)
            writer.string(envelope.tenantID)
            writer.string(envelope.room)
            writer.byte(envelope.kind == .signal ? 0 : 1)
            writer.string(envelope.from)
            writer.optionalString(envelope.to)
            writer.optionalString(envelope.exclude)
            writer.bytes(envelope.data.bytes)
        case .tenantDisconnect(let tenantID, let reason):
            writer.byte(Tag.tenantDisconnect.rawValue)
            writer.string(tenantID)
            writer.string(reason)
        case .tenantChanged(let tenantID):
            writer.byte(Tag.tenantChanged.rawValue)
            writer.string(tenantID)
        case .keyRevoked(let tenantID, let apiKey):
            writer.byte(Tag.keyRevoked.rawValue)
            writer.string(tenantID)
            writer.string(apiKey)
        case .roomClosed(let tenantID, let room):
            writer.byte(Tag.roomClosed.rawValue)
            writer.string(tenantID)
            writer.string(room)
        case .kick(let tenantID, let room, let peerId):
            writer.byte(Tag.kick.rawValue)
            writer.string(tenantID)
            writer.string(room)
            writer.string(peerId)
        }
        return writer.output
    }

    /// Decodes bytes made by ``encoded()``.
    public init(decoding bytes: some Collection<UInt8>) throws(DecodingError) {
        let array = Array(bytes)
        var reader = BusCodecReader(input: array)
        let version = try reader.byte()
        guard version == Self.codecVersion else { throw DecodingError("unknown version \(version)") }
        let tagByte = try reader.byte()
        guard let tag = Tag(rawValue: tagByte) else { throw DecodingError("unknown tag \(tagByte)") }
        switch tag {
        case .deliver:
            let tenantID = try reader.string()
            let room = try reader.string()
            let kind: RelayKind
            switch try reader.byte() {
            case 0: kind = .signal
            case 1: kind = .broadcast
            case let other: throw DecodingError("unknown relay kind \(other)")
            }
            let from = try reader.string()
            let to = try reader.optionalString()
            let exclude = try reader.optionalString()
            let json = try reader.bytes()
            let data: RawJSON
            do {
                data = try RawJSON(validating: json)
            } catch {
                throw DecodingError("invalid JSON data")
            }
            self = .deliver(RelayEnvelope(tenantID: tenantID, room: room, kind: kind, from: from, to: to, exclude: exclude, data: data))
        case .tenantDisconnect:
            self = .tenantDisconnect(tenantID: try reader.string(), reason: try reader.string())
        case .tenantChanged:
            self = .tenantChanged(tenantID: try reader.string())
        case .keyRevoked:
            self = .keyRevoked(tenantID: try reader.string(), apiKey: try reader.string())
        case .roomClosed:
            self = .roomClosed(tenantID: try reader.string(), room: try reader.string())
        case .kick:
            self = .kick(tenantID: try reader.string(), room: try reader.string(), peerId: try reader.string())
        }
        guard reader.atEnd else { throw DecodingError("\(reader.remaining) trailing bytes") }
    }
}

private struct BusCodecWriter {
    var output: [UInt8] = []

    init() { output.reserveCapacity(128) }

    mutating func byte(_ value: UInt8) { output.append(value) }

    mutating func length(_ value: Int) {
        var rest = UInt(value)
        while rest >= 0x80 {
            output.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        output.append(UInt8(rest))
    }

    mutating func bytes(_ value: [UInt8]) {
        length(value.count)
        output.append(contentsOf: value)
    }

    mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            length(utf8.count)
            output.append(contentsOf: utf8)
        }
    }

    mutating func optionalString(_ value: String?) {
        if let value {
            byte(1)
            string(value)
        } else {
            byte(0)
        }
    }
}

private struct BusCodecReader {
    let input: [UInt8]
    var offset = 0

    var atEnd: Bool { offset == input.count }
    var remaining: Int { input.count - offset }

    mutating func byte() throws(BusMessage.DecodingError) -> UInt8 {
        guard offset < input.count else { throw BusMessage.DecodingError("truncated") }
        defer { offset += 1 }
        return input[offset]
    }

    mutating func length() throws(BusMessage.DecodingError) -> Int {
        var value = 0
        var shift = 0
        while true {
            let next = try byte()
            guard shift <= 28 else { throw BusMessage.DecodingError("length too large") }
            value |= Int(next & 0x7F) << shift
            if next & 0x80 == 0 { break }
            shift += 7
        }
        guard value <= remaining else { throw BusMessage.DecodingError("truncated") }
        return value
    }

    mutating func bytes() throws(BusMessage.DecodingError) -> [UInt8] {
        let count = try length()
        defer { offset += count }
        return Array(input[offset..<offset + count])
    }

    mutating func string() throws(BusMessage.DecodingError) -> String {
        let count = try length()
        defer { offset += count }
        guard let text = String(validating: input[offset..<offset + count], as: UTF8.self) else {
            throw BusMessage.DecodingError("invalid UTF-8")
        }
        return text
    }

    mutating func optionalString() throws(BusMessage.DecodingError) -> String? {
        switch try byte() {
        case 0: return nil
        case 1: return try string()
        case let other: throw BusMessage.DecodingError("bad optional marker \(other)")
        }
    }
}
