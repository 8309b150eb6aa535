import CHiredis
import NIOCore

/// Feeds bytes into a hiredis `redisReader` and takes out whole replies. Not thread-safe:
/// one reader belongs to one channel handler on its event loop.
final class RESPReader {
    enum Reply {
        case value(RedisValue)
        case message(RedisPubSubMessage)
    }

    private let reader: UnsafeMutablePointer<redisReader>

    init() throws(RedisError) {
        guard let reader = redisReaderCreate() else { throw RedisError(.protocolError, "hiredis could not create a reader") }
        self.reader = reader
    }

    deinit { redisReaderFree(reader) }

    func feed(_ buffer: ByteBuffer) throws(RedisError) {
        let status = buffer.withUnsafeReadableBytes { bytes -> Int32 in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return REDIS_OK }
            return redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        guard status == REDIS_OK else { throw RedisError(.protocolError, readerError()) }
    }

    func feed(_ bytes: [UInt8]) throws(RedisError) {
        var buffer = ByteBuffer()
        buffer.writeBytes(bytes)
        try feed(buffer)
    }

    /// The next whole reply, or nil when more bytes are needed. With `pubSubMode`,
    /// `message`/`smessage`/`pmessage` pushes come out as ``Reply/message(_:)`` without
    /// building a ``RedisValue`` first.
    func next(pubSubMode: Bool = false) throws(RedisError) -> Reply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw RedisError(.protocolError, readerError())
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        if pubSubMode, let message = Self.pubSubMessage(reply) { return .message(message) }
        return .value(Self.convert(reply))
    }

    private func readerError() -> String {
        withUnsafeBytes(of: reader.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return bytes.isEmpty ? "invalid RESP" : String(decoding: bytes, as: UTF8.self)
        }
    }

    static func convert(_ reply: UnsafePointer<redisReply>) -> RedisValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .bulkString(bytes(r.str, r.len))
        case REDIS_REPLY_STATUS:
            return .simpleString(String(decoding: bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(r.integer))
        case REDIS_REPLY_ARRAY:
            var values: [RedisValue] = []
            values.reserveCapacity(r.elements)
            if let elements = r.element {
                for index in 0..<r.elements {
                    if let element = elements[index] { values.append(convert(element)) } else { values.append(.null) }
                }
            }
            return .array(values)
        default:
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ count: Int) -> [UInt8] {
        guard let pointer, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    private static func string(_ reply: UnsafeMutablePointer<redisReply>?) -> String? {
        guard let reply, reply.pointee.type == REDIS_REPLY_STRING else { return nil }
        let r = reply.pointee
        guard let pointer = r.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: r.len), as: UTF8.self)
    }

    private static func matches(_ reply: UnsafeMutablePointer<redisReply>?, _ word: StaticString) -> Bool {
        guard let reply, reply.pointee.type == REDIS_REPLY_STRING, reply.pointee.len == word.utf8CodeUnitCount,
            let pointer = reply.pointee.str
        else { return false }
        return UnsafeRawBufferPointer(start: pointer, count: reply.pointee.len)
            .elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
    }

    private static func pubSubMessage(_ reply: UnsafePointer<redisReply>) -> RedisPubSubMessage? {
        let r = reply.pointee
        guard r.type == REDIS_REPLY_ARRAY, r.elements >= 3, let elements = r.element else { return nil }
        let head = elements[0]
        if r.elements == 3, matches(head, "message") || matches(head, "smessage"),
            let channel = string(elements[1]), let payload = elements[2], payload.pointee.type == REDIS_REPLY_STRING
        {
            let kind: RedisPubSubMessage.Kind = matches(head, "message") ? .channel : .shard
            return RedisPubSubMessage(kind: kind, channel: channel, pattern: nil, payload: bytes(payload.pointee.str, payload.pointee.len))
        }
        if r.elements == 4, matches(head, "pmessage"), let pattern = string(elements[1]), let channel = string(elements[2]),
            let payload = elements[3], payload.pointee.type == REDIS_REPLY_STRING
        {
            return RedisPubSubMessage(kind: .pattern, channel: channel, pattern: pattern, payload: bytes(payload.pointee.str, payload.pointee.len))
        }
        return nil
    }
}
