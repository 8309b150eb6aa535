import NIOCore

/// A ChannelData message (RFC 8656 §12.4): a 4-byte header (channel number, length) and the
/// application data. Over TCP and TLS the message is padded to a multiple of 4 bytes; over
/// UDP padding is optional and ignored.
public struct ChannelData: Sendable {
    /// The channel numbers RFC 8656 assigns.
    public static let channelRange: ClosedRange<UInt16> = 0x4000...0x4FFF
    /// The channel numbers accepted: RFC 5766's 0x4000–0x7FFF, which coturn and its
    /// `turnutils_uclient` still use (0x5000–0x7FFF are only "reserved" in RFC 8656).
    public static let acceptedChannelRange: ClosedRange<UInt16> = 0x4000...0x7FFF

    public var channel: UInt16
    public var payload: ByteBuffer

    public init(channel: UInt16, payload: ByteBuffer) {
        self.channel = channel
        self.payload = payload
    }

    /// Decodes one ChannelData message; nil when the bytes are not one (wrong leading bits,
    /// a length longer than the bytes, or a channel outside 0x4000–0x7FFF).
    public init?(decoding buffer: ByteBuffer) {
        // The 4-byte header in one read of the bytes (two `getInteger`s cost twice as much).
        guard let (channel, length) = buffer.withUnsafeReadableBytes(Self.header(of:)),
            let payload = buffer.getSlice(at: buffer.readerIndex + 4, length: length)
        else { return nil }
        self.channel = channel
        self.payload = payload
    }

    /// The channel number and payload length of the ChannelData message in `bytes`, or nil
    /// when it is not one: shorter than its header, a number outside
    /// ``acceptedChannelRange``, or a length beyond the bytes (padding after the payload is
    /// allowed). The relay path reads datagrams this way, in place, without a buffer.
    @inlinable
    public static func header(of bytes: UnsafeRawBufferPointer) -> (channel: UInt16, length: Int)? {
        guard bytes.count >= 4 else { return nil }
        let channel = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        let length = Int(bytes[2]) << 8 | Int(bytes[3])
        guard acceptedChannelRange.contains(channel), bytes.count - 4 >= length else { return nil }
        return (channel, length)
    }

    /// Whether the first byte says ChannelData (0b01) rather than STUN (0b00).
    public static func isChannelData(firstByte: UInt8) -> Bool { firstByte & 0xC0 == 0x40 }

    /// Writes the message; `padded` for TCP and TLS.
    public func encode(into buffer: inout ByteBuffer, padded: Bool) {
        buffer.writeInteger(channel)
        buffer.writeInteger(UInt16(truncatingIfNeeded: payload.readableBytes))
        buffer.writeImmutableBuffer(payload)
        if padded {
            let padding = (4 - payload.readableBytes % 4) % 4
            if padding > 0 { buffer.writeRepeatingByte(0, count: padding) }
        }
    }

    /// The encoded message in a new buffer.
    public func encoded(padded: Bool, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 4 + payload.readableBytes + 3)
        encode(into: &buffer, padded: padded)
        return buffer
    }
}

/// Cuts a TCP/TLS byte stream into STUN messages and ChannelData messages (RFC 8656 §12.5:
/// over a stream, ChannelData is padded to 4 bytes, so both kinds end on a 4-byte boundary).
public enum TURNFraming {
    /// What the start of a stream buffer holds.
    public enum Frame: Sendable, Equatable {
        /// Not enough bytes yet.
        case needMoreBytes
        /// A STUN message of `length` bytes.
        case stun(length: Int)
        /// A ChannelData message occupying `length` bytes (padding included).
        case channelData(length: Int)
        /// Bytes that are neither: close the connection.
        case invalid
    }

    /// Looks at the front of `buffer` without consuming anything.
    public static func nextFrame(in buffer: ByteBuffer) -> Frame {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMoreBytes }
        switch first & 0xC0 {
        case 0x00:
            guard let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self) else { return .needMoreBytes }
            guard length % 4 == 0 else { return .invalid }
            let total = STUN.headerLength + Int(length)
            return buffer.readableBytes >= total ? .stun(length: total) : .needMoreBytes
        case 0x40:
            guard let channel = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
                let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self)
            else { return .needMoreBytes }
            guard ChannelData.acceptedChannelRange.contains(channel) else { return .invalid }
            let total = 4 + (Int(length) + 3) & ~3
            return buffer.readableBytes >= total ? .channelData(length: total) : .needMoreBytes
        default:
            return .invalid
        }
    }
}
