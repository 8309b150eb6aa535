/// The STUN/TURN wire protocol and the TURN allocation logic, free of I/O.
///
/// Hand-written on purpose: none of the Swift packages this project may use implements
/// STUN (RFC 8489) or TURN (RFC 8656), so the codec, the long-term credential mechanism and
/// the allocation state machine live here. The module imports NIOCore (for `ByteBuffer`)
/// and Crypto (HMAC-SHA1/SHA-256, MD5) only; sockets live in the `TURNServer` target.
///
/// - ``STUNMessage`` decodes untrusted bytes strictly; ``STUNMessageEncoder`` writes them.
/// - ``ChannelData`` and ``TURNFraming`` handle the ChannelData framing and TCP streams.
/// - ``LongTermCredentials``, ``NonceIssuer`` and ``TURNRESTCredentials`` authenticate.
/// - ``PeerAddressPolicy`` decides which peers may be relayed to.
/// - ``TURNServerMachine`` is the allocation state machine: events in, actions out.
public enum STUN {
    /// The magic cookie of every RFC 5389/8489 message.
    public static let magicCookie: UInt32 = 0x2112_A442
    /// The length of the fixed STUN header.
    public static let headerLength = 20
    /// XORed into the CRC-32 of a FINGERPRINT attribute.
    public static let fingerprintXOR: UInt32 = 0x5354_554E
}
