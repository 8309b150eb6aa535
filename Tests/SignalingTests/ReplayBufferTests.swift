import Testing

@testable import Signaling

@Suite struct ReplayBufferTests {
    /// A recognisable frame for `seq`, `size` bytes long (at least the digits of `seq`).
    static func frame(_ seq: UInt64, size: Int = 0) -> [UInt8] {
        let digits = Array(String(seq).utf8)
        return digits + [UInt8](repeating: UInt8(ascii: "."), count: max(0, size - digits.count))
    }

    static func filled(_ range: ClosedRange<UInt64>, limits: ReplayBuffer.Limits = .init(), size: Int = 0) -> ReplayBuffer {
        var buffer = ReplayBuffer(limits: limits)
        for seq in range {
            buffer.append(seq: seq, frame: frame(seq, size: size), type: seq.isMultiple(of: 2) ? .broadcast : .signal)
        }
        return buffer
    }

    @Test func replaysExactlyTheFramesAfterLastSeqInOrder() throws {
        let buffer = Self.filled(1...10)
        let frames = try #require(buffer.frames(after: 6, currentSeq: 10))
        #expect(frames.map(\.frame) == (7...10).map { Self.frame($0) })
        #expect(frames.map(\.type) == [.signal, .broadcast, .signal, .broadcast])
        let all = try #require(buffer.frames(after: 0, currentSeq: 10))
        #expect(all.map(\.frame) == (1...10).map { Self.frame($0) })
    }

    @Test func lastSeqEqualToCurrentIsEmpty() throws {
        #expect(try #require(Self.filled(1...5).frames(after: 5, currentSeq: 5)).isEmpty)
        // Also when nothing was ever sent.
        #expect(try #require(ReplayBuffer().frames(after: 0, currentSeq: 0)).isEmpty)
    }

    @Test func lastSeqAheadOfCurrentIsNil() {
        #expect(Self.filled(1...5).frames(after: 6, currentSeq: 5) == nil)
        #expect(ReplayBuffer().frames(after: 1, currentSeq: 0) == nil)
    }

    @Test func trimmingByCountMakesAGap() throws {
        let buffer = Self.filled(1...10, limits: .init(maxFrames: 4))
        #expect(buffer.count == 4)
        #expect(buffer.oldestSeq == 7)
        // Oldest kept is 7: a client that processed 6 is still exact, one that processed 5 is not.
        let frames = try #require(buffer.frames(after: 6, currentSeq: 10))
        #expect(frames.map(\.frame) == (7...10).map { Self.frame($0) })
        #expect(buffer.frames(after: 5, currentSeq: 10) == nil)
        #expect(buffer.frames(after: 0, currentSeq: 10) == nil)
    }

    @Test func trimmingByBytesMakesAGap() throws {
        let buffer = Self.filled(1...10, limits: .init(maxFrames: 100, maxBytes: 35), size: 10)
        #expect(buffer.count == 3)
        #expect(buffer.byteCount == 30)
        #expect(buffer.oldestSeq == 8)
        #expect(try #require(buffer.frames(after: 7, currentSeq: 10)).count == 3)
        #expect(buffer.frames(after: 6, currentSeq: 10) == nil)
    }

    @Test func aSingleFrameLargerThanTheByteLimitIsStillKept() throws {
        var buffer = ReplayBuffer(limits: .init(maxFrames: 10, maxBytes: 8))
        buffer.append(seq: 1, frame: Self.frame(1, size: 4), type: .signal)
        buffer.append(seq: 2, frame: Self.frame(2, size: 100), type: .signal)
        #expect(buffer.count == 1)
        #expect(buffer.byteCount == 100)
        #expect(try #require(buffer.frames(after: 1, currentSeq: 2)).map(\.frame) == [Self.frame(2, size: 100)])
    }

    @Test func emptyBufferBehindCurrentIsAGap() {
        // Frames were handed out but none are kept.
        #expect(ReplayBuffer().frames(after: 0, currentSeq: 3) == nil)
    }

    @Test func staysCorrectAcrossCompaction() throws {
        let buffer = Self.filled(1...500, limits: .init(maxFrames: 10))
        #expect(buffer.count == 10)
        #expect(buffer.oldestSeq == 491)
        #expect(try #require(buffer.frames(after: 490, currentSeq: 500)).map(\.frame) == (491...500).map { Self.frame($0) })
        #expect(try #require(buffer.frames(after: 497, currentSeq: 500)).map(\.frame) == (498...500).map { Self.frame($0) })
        #expect(buffer.frames(after: 489, currentSeq: 500) == nil)
    }

    @Test func byteCountFollowsTrimming() {
        let buffer = Self.filled(1...20, limits: .init(maxFrames: 5), size: 7)
        #expect(buffer.byteCount == 35)
    }
}
