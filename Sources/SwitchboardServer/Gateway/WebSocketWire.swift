import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// RFC 6455 framing for the gateway: a parser for client frames, the encoder for server
/// frames, and the opening handshake's header checks — pure functions over `ByteBuffer`,
/// with no socket and no state between frames.
///
/// Why hand-written rather than NIOWebSocket's decoder and encoder: those are two more
/// handlers per socket — `ByteToMessageHandler<WebSocketFrameDecoder>` with its buffers,
/// `WebSocketFrameEncoder` with the scratch buffer it allocates when added, and a pipeline
/// context for each — about 750 B on every idle socket (heaptrack, 10,000 idle sessions),
/// an eighth of an idle session. Here ``SignalConnection`` parses its own input and keeps
/// bytes only while a frame is incomplete, so an idle socket holds no framing state at
/// all. It is also cheaper per message: no `WebSocketFrame` storage object per frame, a
/// client payload is unmasked straight into scratch memory, and a server frame is one
/// buffer with its header in front of its payload — one write.
enum WebSocketWire {
    /// The opcodes RFC 6455 defines; the reserved ones (3–7, 0xB–0xF) fail the connection.
    enum Opcode: UInt8, Sendable {
        case continuation = 0x0
        case text = 0x1
        case binary = 0x2
        case close = 0x8
        case ping = 0x9
        case pong = 0xA

        /// Close, ping and pong: at most 125 bytes, never fragmented (§5.5).
        var isControl: Bool { rawValue & 0x8 != 0 }
    }

    /// Why a client's byte stream cannot be read on: the connection fails with
    /// ``closeCode`` and nothing after the offending frame is parsed.
    enum Failure: Error, Equatable, Sendable {
        /// RFC 6455 §5.2/§5.5 violated: reserved bits or opcode, an unmasked client frame,
        /// a fragmented or oversized control frame.
        case protocolViolation(String)
        /// The frame's declared length exceeds the configured maximum (or 2^63 − 1).
        case frameTooLarge

        /// The close code the connection fails with: 1002 or 1009 (§7.4.1).
        var closeCode: UInt16 {
            switch self {
            case .protocolViolation: 1002
            case .frameTooLarge: 1009
            }
        }
    }

    /// One complete client frame. ``payload`` is still masked: a slice of the bytes read,
    /// not a copy; ``withUnmaskedBytes(_:)`` and ``unmaskedPayload()`` unmask it.
    struct Frame: Sendable {
        var fin: Bool
        var opcode: Opcode
        /// The masking key as it appears on the wire (first key byte most significant).
        var maskKey: UInt32
        var payload: ByteBuffer

        /// The payload length in bytes.
        var length: Int { payload.readableBytes }

        /// Calls `body` with the unmasked payload in scratch memory (on the stack when it
        /// is small), so reading a frame allocates nothing.
        func withUnmaskedBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
            payload.withUnsafeReadableBytes { masked in
                withUnsafeTemporaryAllocation(byteCount: masked.count, alignment: 8) { scratch in
                    WebSocketWire.unmask(masked, key: maskKey, into: scratch)
                    return body(UnsafeRawBufferPointer(scratch))
                }
            }
        }

        /// The unmasked payload in a buffer of its own (for a message that is kept).
        func unmaskedPayload(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
            var buffer = allocator.buffer(capacity: length)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
                payload.withUnsafeReadableBytes { masked in
                    WebSocketWire.unmask(masked, key: maskKey, into: UnsafeMutableRawBufferPointer(rebasing: target[..<masked.count]))
                }
                return length
            }
            return buffer
        }
    }

    /// Reads client frames (§5.2) off the front of a buffer.
    ///
    /// A frame is returned only once all of it has arrived; until then nothing is consumed,
    /// and the next call re-reads its header (at most 14 bytes). Violations are reported as
    /// soon as the bytes that show them have arrived: reserved bits, opcode and fragmented
    /// control frames at the first byte; a missing mask and an oversized control frame at the
    /// second; an oversized frame once its length is complete — before its payload is read.
    ///
    /// Like NIOWebSocket's decoder, a length need not use its shortest encoding (RFC 6455
    /// says it must; clients do, and being lenient here costs nothing).
    struct Parser: Sendable {
        /// The largest payload accepted in one frame.
        var maxFrameBytes: Int

        /// The next complete frame at the front of `buffer`, consuming it; nil, consuming
        /// nothing, when the frame is not complete yet.
        func next(_ buffer: inout ByteBuffer) throws(Failure) -> Frame? {
            let start = buffer.readerIndex
            guard let first = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
            guard first & 0x70 == 0 else { throw .protocolViolation("reserved bits are set") }
            guard let opcode = Opcode(rawValue: first & 0x0F) else { throw .protocolViolation("reserved opcode \(first & 0x0F)") }
            let fin = first & 0x80 != 0
            if opcode.isControl, !fin { throw .protocolViolation("a control frame is fragmented") }
            guard let second = buffer.getInteger(at: start + 1, as: UInt8.self) else { return nil }
            guard second & 0x80 != 0 else { throw .protocolViolation("a client frame is not masked") }
            var length = Int(second & 0x7F)
            var headerLength = 2
            if opcode.isControl, length > 125 { throw .protocolViolation("a control frame is longer than 125 bytes") }
            if length == 126 {
                guard let extended = buffer.getInteger(at: start + 2, as: UInt16.self) else { return nil }
                length = Int(extended)
                headerLength = 4
            } else if length == 127 {
                guard let extended = buffer.getInteger(at: start + 2, as: UInt64.self) else { return nil }
                guard extended <= UInt64(maxFrameBytes) else { throw .frameTooLarge }
                length = Int(extended)
                headerLength = 10
            }
            guard length <= maxFrameBytes else { throw .frameTooLarge }
            guard let maskKey = buffer.getInteger(at: start + headerLength, as: UInt32.self),
                let payload = buffer.getSlice(at: start + headerLength + 4, length: length)
            else { return nil }
            buffer.moveReaderIndex(forwardBy: headerLength + 4 + length)
            return Frame(fin: fin, opcode: opcode, maskKey: maskKey, payload: payload)
        }
    }

    /// XORs `masked` with the 4-byte key (§5.3) into `target`, which holds at least as many
    /// bytes; eight bytes at a time.
    static func unmask(_ masked: UnsafeRawBufferPointer, key: UInt32, into target: UnsafeMutableRawBufferPointer) {
        precondition(target.count >= masked.count)
        let count = masked.count
        guard count > 0, let source = masked.baseAddress, let destination = target.baseAddress else { return }
        // The key's bytes in memory order, twice: a word of the payload XORs with this whole.
        let keyInMemoryOrder = key.bigEndian
        let word = UInt64(keyInMemoryOrder) | UInt64(keyInMemoryOrder) << 32
        var offset = 0
        while offset + 8 <= count {
            let chunk = source.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            destination.storeBytes(of: chunk ^ word, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < count {
            let keyByte = UInt8(truncatingIfNeeded: key >> (24 - 8 * UInt32(offset & 3)))
            destination.storeBytes(of: source.load(fromByteOffset: offset, as: UInt8.self) ^ keyByte, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }

    // MARK: Server frames

    /// Bytes of an unmasked frame header for a payload of `length` bytes: 2, 4 or 10.
    static func headerLength(payloadLength length: Int) -> Int {
        switch length {
        case ..<126: 2
        case ...0xFFFF: 4
        default: 10
        }
    }

    /// Writes a server frame's header (§5.2; unmasked, shortest length encoding).
    static func writeHeader(opcode: Opcode, fin: Bool = true, payloadLength length: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger((fin ? 0x80 : 0) | opcode.rawValue)
        switch length {
        case ..<126:
            buffer.writeInteger(UInt8(length))
        case ...0xFFFF:
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(length))
        }
    }

    /// A whole server frame in one buffer: the header, then `payload`.
    static func frame(_ opcode: Opcode, payload: UnsafeRawBufferPointer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: headerLength(payloadLength: payload.count) + payload.count)
        writeHeader(opcode: opcode, payloadLength: payload.count, into: &buffer)
        buffer.writeBytes(payload)
        return buffer
    }

    /// A whole server frame in one buffer: the header, then `payload`.
    static func frame(_ opcode: Opcode, payload: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        payload.withUnsafeBytes { frame(opcode, payload: $0, allocator: allocator) }
    }

    /// A close frame whose body is `code` (§5.5.1).
    static func closeFrame(code: UInt16, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 4)
        writeHeader(opcode: .close, payloadLength: 2, into: &buffer)
        buffer.writeInteger(code)
        return buffer
    }

    // MARK: Opening handshake (§4.2)

    /// Appended to the client's key before hashing it (§1.3).
    static let handshakeGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// The client's `Sec-WebSocket-Key` when the request carries exactly one key and exactly
    /// one `Sec-WebSocket-Version`, which is 13; nil otherwise. The same checks as
    /// NIOWebSocket's upgrader (which does not check the key's form either).
    static func handshakeKey(in headers: HTTPHeaders) -> String? {
        let keys = headers[canonicalForm: "Sec-WebSocket-Key"]
        let versions = headers[canonicalForm: "Sec-WebSocket-Version"]
        guard keys.count == 1, versions.count == 1, versions[0] == "13" else { return nil }
        return String(keys[0])
    }

    /// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
    static func acceptValue(key: String) -> String {
        Data(Insecure.SHA1.hash(data: Array((key + handshakeGUID).utf8))).base64EncodedString()
    }
}
