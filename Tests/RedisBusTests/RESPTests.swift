import NIOCore
import Testing

@testable import RedisBus

@Suite struct RESPTests {
    private func decodeAll(_ chunks: [String], pubSubMode: Bool = false) throws -> [RESPReader.Reply] {
        let reader = try RESPReader()
        var replies: [RESPReader.Reply] = []
        for chunk in chunks {
            try reader.feed(Array(chunk.utf8))
            while let reply = try reader.next(pubSubMode: pubSubMode) { replies.append(reply) }
        }
        return replies
    }

    private func values(_ replies: [RESPReader.Reply]) -> [RedisValue] {
        replies.compactMap { if case .value(let v) = $0 { v } else { nil } }
    }

    @Test func convertsEveryReplyType() throws {
        let wire = "+OK\r\n-ERR wrong\r\n:-42\r\n$5\r\nhe\0lo\r\n$0\r\n\r\n$-1\r\n*-1\r\n*3\r\n:1\r\n*1\r\n+x\r\n$-1\r\n*0\r\n"
        let got = values(try decodeAll([wire]))
        #expect(got == [
            .simpleString("OK"), .error("ERR wrong"), .integer(-42), .bulkString(Array("he\0lo".utf8)), .bulkString([]),
            .null, .null, .array([.integer(1), .array([.simpleString("x")]), .null]), .array([]),
        ])
    }

    @Test func replyAcrossReadsComesOutWhole() throws {
        let wire = "*2\r\n$3\r\nfoo\r\n:7\r\n"
        // every split point: nothing comes out until the last byte arrived
        for cut in 1..<wire.utf8.count {
            let bytes = Array(wire.utf8)
            let first = String(decoding: bytes[..<cut], as: UTF8.self)
            let second = String(decoding: bytes[cut...], as: UTF8.self)
            #expect(values(try decodeAll([first, second])) == [.array([.bulkString(Array("foo".utf8)), .integer(7)])])
        }
    }

    @Test func protocolErrorThrows() throws {
        #expect(throws: RedisError.self) { try decodeAll(["?what\r\n"]) }
    }

    @Test func pubSubMessagesSkipTheValueTree() throws {
        let wire = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabc\r\n*3\r\n$8\r\nsmessage\r\n$2\r\nsh\r\n$0\r\n\r\n"
            + "*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\ncx\r\n$1\r\nz\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        let replies = try decodeAll([wire], pubSubMode: true)
        #expect(replies.count == 4)
        guard case .message(let m1) = replies[0], case .message(let m2) = replies[1], case .message(let m3) = replies[2],
            case .value(let v) = replies[3]
        else {
            Issue.record("unexpected \(replies)")
            return
        }
        #expect(m1.kind == .channel && m1.channel == "ch" && m1.payload == Array("abc".utf8))
        #expect(m2.kind == .shard && m2.channel == "sh" && m2.payload == [])
        #expect(m3.kind == .pattern && m3.pattern == "c*" && m3.channel == "cx" && m3.payload == [UInt8(ascii: "z")])
        #expect(v == .array([.bulkString(Array("subscribe".utf8)), .bulkString(Array("ch".utf8)), .integer(1)]))
        // outside pub/sub mode the same bytes are plain arrays
        #expect(values(try decodeAll([wire])).count == 4)
    }

    @Test func encodesArgvAsRESP() throws {
        var buffer = ByteBuffer()
        try RESPCommandEncoder.encode(["SET", "k", RedisArgument(bytes: [0, 13, 10]), ""], into: &buffer)
        #expect(String(buffer: buffer) == "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\0\r\n\r\n$0\r\n\r\n")
        #expect(throws: RedisError.self) { try RESPCommandEncoder.encode([], into: &buffer) }
    }

    @Test func scriptSHA1MatchesRedis() {
        // the value `SCRIPT LOAD "return 1"` answers
        #expect(RedisScript("return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
        #expect(SHA1.hex([]) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex(Array(String(repeating: "a", count: 1000).utf8)) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }
}
