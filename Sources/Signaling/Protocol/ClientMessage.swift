/// A frame a client sends (SPEC §3, client → server).
public enum ClientMessage: Sendable, Equatable {
    case signal(to: String, data: RawJSON, id: RawJSON?)
    case broadcast(data: RawJSON, id: RawJSON?)
    case update(metadata: RawJSON)
    case ping(id: RawJSON?)
    case leave
    case resume(resumeToken: String, lastSeq: UInt64)

    /// The client's own id for the frame, echoed in `ack` and in `error.ref`.
    public var id: RawJSON? {
        switch self {
        case .signal(_, _, let id), .broadcast(_, let id), .ping(let id): id
        case .update, .leave, .resume: nil
        }
    }
}

/// Limits the decoder enforces on client frames.
public struct FrameLimits: Sendable, Equatable {
    /// Largest accepted frame, in bytes (SPEC default 64 KiB).
    public var maxFrameBytes: Int
    /// Largest serialized peer metadata, in bytes (SPEC: 4 KiB).
    public var maxMetadataBytes: Int
    /// Longest peer id, room name, or client id.
    public var maxIdentifierLength: Int

    public init(maxFrameBytes: Int = 64 * 1024, maxMetadataBytes: Int = 4 * 1024, maxIdentifierLength: Int = 128) {
        self.maxFrameBytes = maxFrameBytes
        self.maxMetadataBytes = maxMetadataBytes
        self.maxIdentifierLength = maxIdentifierLength
    }
}

extension ClientMessage {
    /// Decodes one text frame. Unknown fields are ignored; every failure carries the SPEC's
    /// error code and, when the frame had a usable `id`, that id as `ref`.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer,
        limits: FrameLimits = FrameLimits()
    ) throws(ProtocolError) -> ClientMessage {
        guard bytes.count <= limits.maxFrameBytes else {
            throw ProtocolError(.tooLarge, "frame exceeds \(limits.maxFrameBytes) bytes")
        }
        var fields = Fields()
        do {
            try JSONScanner.scanObject(bytes) { (key, value) throws(JSONScanner.Failure) in
                fields.record(key: key, value: value, in: bytes)
            }
        } catch {
            throw ProtocolError(.badRequest, "malformed JSON: \(error.message) at byte \(error.offset)")
        }
        // `id` belongs to the frame types that are acked or answered; others ignore it.
        let ref = fields.id.flatMap { value -> RawJSON? in
            guard value.kind == .string || value.kind == .number else { return nil }
            return fields.raw(value, in: bytes)
        }
        do {
            return try fields.message(in: bytes, limits: limits, id: ref)
        } catch var error {
            error.ref = ref
            throw error
        }
    }

    public static func decode(_ bytes: [UInt8], limits: FrameLimits = FrameLimits()) throws(ProtocolError) -> ClientMessage {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(ProtocolError) in try decode(buffer, limits: limits) }
        }.get()
    }
}

/// The top-level members a client frame may carry; others are ignored.
private struct Fields {
    var type: JSONScanner.Value?
    var to: JSONScanner.Value?
    var data: JSONScanner.Value?
    var id: JSONScanner.Value?
    var metadata: JSONScanner.Value?
    var resumeToken: JSONScanner.Value?
    var lastSeq: JSONScanner.Value?

    mutating func record(key: Range<Int>, value: JSONScanner.Value, in bytes: UnsafeRawBufferPointer) {
        switch Self.name(key, in: bytes) {
        case "type": type = value
        case "to": to = value
        case "data": data = value
        case "id": id = value.kind == .null ? nil : value  // null means absent
        case "metadata": metadata = value
        case "resumeToken": resumeToken = value
        case "lastSeq": lastSeq = value
        default: break
        }
    }

    /// Member names we care about are short ASCII; anything with an escape is not one of them.
    private static func name(_ key: Range<Int>, in bytes: UnsafeRawBufferPointer) -> String? {
        guard key.count <= 16 else { return nil }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[key])
        guard !slice.contains(UInt8(ascii: "\\")) else { return nil }
        return String(decoding: slice, as: UTF8.self)
    }

    /// The frame types that take `id` echo it back, so it must be a short string or number.
    func checkID(_ id: RawJSON?, limits: FrameLimits) throws(ProtocolError) {
        if let value = self.id, value.kind != .string, value.kind != .number {
            throw ProtocolError(.badRequest, "`id` must be a string or a number")
        }
        if let id, id.bytes.count > limits.maxIdentifierLength + 2 {
            throw ProtocolError(.badRequest, "`id` is too long")
        }
    }

    func raw(_ value: JSONScanner.Value, in bytes: UnsafeRawBufferPointer) -> RawJSON {
        RawJSON(validated: Array(UnsafeRawBufferPointer(rebasing: bytes[value.range])), kind: value.kind)
    }

    func string(
        _ value: JSONScanner.Value?, _ name: String, in bytes: UnsafeRawBufferPointer, maxLength: Int
    ) throws(ProtocolError) -> String {
        guard let value else { throw ProtocolError(.badRequest, "`\(name)` is required") }
        guard value.kind == .string else { throw ProtocolError(.badRequest, "`\(name)` must be a string") }
        let text = JSONScanner.decodeString(bytes, (value.range.lowerBound + 1)..<(value.range.upperBound - 1))
        guard !text.isEmpty, text.count <= maxLength else {
            throw ProtocolError(.badRequest, "`\(name)` must be 1–\(maxLength) characters")
        }
        return text
    }

    func message(in bytes: UnsafeRawBufferPointer, limits: FrameLimits, id: RawJSON?) throws(ProtocolError) -> ClientMessage {
        guard let type else { throw ProtocolError(.badRequest, "`type` is required") }
        guard type.kind == .string else { throw ProtocolError(.badRequest, "`type` must be a string") }
        let typeName = JSONScanner.decodeString(bytes, (type.range.lowerBound + 1)..<(type.range.upperBound - 1))
        if typeName == "signal" || typeName == "broadcast" || typeName == "ping" {
            try checkID(id, limits: limits)
        }
        switch typeName {
        case "signal":
            let to = try string(self.to, "to", in: bytes, maxLength: limits.maxIdentifierLength)
            guard let data else { throw ProtocolError(.badRequest, "`data` is required") }
            return .signal(to: to, data: raw(data, in: bytes), id: id)
        case "broadcast":
            guard let data else { throw ProtocolError(.badRequest, "`data` is required") }
            return .broadcast(data: raw(data, in: bytes), id: id)
        case "update":
            guard let metadata else { throw ProtocolError(.badRequest, "`metadata` is required") }
            guard metadata.kind == .object else { throw ProtocolError(.badRequest, "`metadata` must be an object") }
            guard metadata.range.count <= limits.maxMetadataBytes else {
                throw ProtocolError(.tooLarge, "`metadata` exceeds \(limits.maxMetadataBytes) bytes")
            }
            return .update(metadata: raw(metadata, in: bytes))
        case "ping":
            return .ping(id: id)
        case "leave":
            return .leave
        case "resume":
            let token = try string(resumeToken, "resumeToken", in: bytes, maxLength: 256)
            guard let lastSeq else { throw ProtocolError(.badRequest, "`lastSeq` is required") }
            let digits = UnsafeRawBufferPointer(rebasing: bytes[lastSeq.range])
            guard lastSeq.kind == .number,
                let seq = UInt64(String(decoding: digits, as: UTF8.self))
            else {
                throw ProtocolError(.badRequest, "`lastSeq` must be a non-negative integer")
            }
            return .resume(resumeToken: token, lastSeq: seq)
        default:
            throw ProtocolError(.unknownType, "unknown frame type")
        }
    }
}
