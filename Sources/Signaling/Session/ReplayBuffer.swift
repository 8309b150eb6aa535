/// The most recent `seq`-numbered frames sent to a session, kept so that a resume can replay
/// whatever the client had not processed when its socket dropped.
///
/// Bounded by frame count and bytes: the oldest frames go first. A resume whose `lastSeq`
/// falls before what is kept cannot be exact and is refused.
public struct ReplayBuffer: Sendable {
    public struct Limits: Sendable, Equatable {
        public var maxFrames: Int
        public var maxBytes: Int

        public init(maxFrames: Int = 1024, maxBytes: Int = 1 << 20) {
            self.maxFrames = maxFrames
            self.maxBytes = maxBytes
        }
    }

    private var frames: [(seq: UInt64, frame: [UInt8], type: OutboundFrameType)] = []
    private var head = 0
    private var bytes = 0
    public let limits: Limits

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    public var count: Int { frames.count - head }
    public var byteCount: Int { bytes }

    /// The lowest `seq` still kept, if any.
    public var oldestSeq: UInt64? { count > 0 ? frames[head].seq : nil }

    public mutating func append(seq: UInt64, frame: [UInt8], type: OutboundFrameType) {
        frames.append((seq, frame, type))
        bytes += frame.count
        while count > limits.maxFrames || (bytes > limits.maxBytes && count > 1) {
            bytes -= frames[head].frame.count
            frames[head] = (0, [], type)
            head += 1
        }
        if head > 64 && head * 2 > frames.count {
            frames.removeFirst(head)
            head = 0
        }
    }

    /// Frames with `seq > lastSeq`, in order; nil when some of them were already dropped.
    /// `currentSeq` is the last seq handed out.
    public func frames(after lastSeq: UInt64, currentSeq: UInt64) -> [(frame: [UInt8], type: OutboundFrameType)]? {
        guard lastSeq <= currentSeq else { return nil }
        if lastSeq == currentSeq { return [] }
        guard let oldest = oldestSeq, oldest <= lastSeq + 1 else { return nil }
        var out: [(frame: [UInt8], type: OutboundFrameType)] = []
        out.reserveCapacity(Int(currentSeq - lastSeq))
        for index in head..<frames.count where frames[index].seq > lastSeq {
            out.append((frames[index].frame, frames[index].type))
        }
        return out
    }
}
