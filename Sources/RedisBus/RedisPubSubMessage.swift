/// A message delivered on a subscriber connection (`message`, `smessage` or `pmessage`).
public struct RedisPubSubMessage: Sendable {
    public enum Kind: Sendable, Hashable {
        case channel, shard, pattern
    }

    public var kind: Kind
    /// The channel the message was published to.
    public var channel: String
    /// For pattern subscriptions: the pattern that matched.
    public var pattern: String?
    public var payload: [UInt8]
}
