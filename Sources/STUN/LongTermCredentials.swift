import Crypto

/// The long-term credential mechanism (RFC 8489 §9.2).
public enum LongTermCredentials {
    /// The key: MD5(username ":" realm ":" password). The strings are used as given (no
    /// SASLprep/OpaqueString); TURN REST credentials are ASCII.
    public static func key(username: String, realm: String, password: String) -> [UInt8] {
        Array(Insecure.MD5.hash(data: Array("\(username):\(realm):\(password)".utf8)))
    }
}

/// Stateless, expiring NONCE values: `<16 hex digits of the issue time><16 hex digits of
/// HMAC-SHA256(secret, time)>`. Nothing is stored per client; a nonce older than `lifetime`
/// or not made with `secret` is stale, and the server answers 438 with a fresh one.
public struct NonceIssuer: Sendable {
    /// How a nonce checks out.
    public enum Validity: Sendable, Hashable {
        case valid
        case stale
    }

    private let key: SymmetricKey
    /// Seconds a nonce stays valid.
    public let lifetime: Int64

    public init(secret: [UInt8], lifetime: Int64 = 600) {
        self.key = SymmetricKey(data: secret)
        self.lifetime = lifetime
    }

    /// A fresh nonce for `now` (Unix seconds).
    public func make(now: Int64) -> String {
        let time = UInt64(bitPattern: now)
        return Hex.encode(time) + Hex.encode(mac(time))
    }

    /// Whether `nonce` was made by this issuer within `lifetime` seconds of `now`.
    public func validate(_ nonce: String, now: Int64) -> Validity {
        let utf8 = Array(nonce.utf8)
        guard utf8.count == 32, let time = Hex.decode(utf8[0..<16]), let mac = Hex.decode(utf8[16..<32]),
            mac == self.mac(time)
        else { return .stale }
        let issued = Int64(bitPattern: time)
        return issued <= now + 5 && now - issued < lifetime ? .valid : .stale
    }

    private func mac(_ time: UInt64) -> UInt64 {
        var bytes: [UInt8] = []
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: time >> UInt64(shift))) }
        let code = HMAC<SHA256>.authenticationCode(for: bytes, using: key)
        return code.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}

/// TURN REST API credentials (SPEC §6; what coturn's `use-auth-secret` accepts):
/// `username = "<unix expiry>:<tenant>:<peerId>"`, `password = base64(HMAC-SHA1(secret, username))`.
/// Signaling mints them (`Signaling.TURNCredentials`); this is the server's side.
public struct TURNRESTCredentials: Sendable, Hashable {
    /// Unix seconds after which the credential no longer opens allocations.
    public var expiry: Int64
    public var tenant: String
    public var peerID: String

    /// Parses a username; nil unless it is `<digits>:<tenant>:<peer>` with non-empty parts.
    public init?(username: String) {
        let parts = username.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count <= 19, let expiry = Int64(parts[0]), expiry > 0, !parts[1].isEmpty,
            !parts[2].isEmpty
        else { return nil }
        self.expiry = expiry
        self.tenant = String(parts[1])
        self.peerID = String(parts[2])
    }

    /// The password for `username` under `secret`.
    public static func password(secret: String, username: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(username.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Base64.encode(Array(mac))
    }
}

enum Hex {
    static func encode(_ value: UInt64) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        for shift in stride(from: 60, through: 0, by: -4) { bytes.append(digits[Int(value >> UInt64(shift) & 0xF)]) }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func decode(_ digits: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        for digit in digits {
            let nibble: UInt8
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = digit - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        return value
    }
}

enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let b0 = UInt32(bytes[index])
            let b1 = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
            let b2 = index + 2 < bytes.count ? UInt32(bytes[index + 2]) : 0
            let triple = b0 << 16 | b1 << 8 | b2
            output.append(alphabet[Int(triple >> 18 & 0x3F)])
            output.append(alphabet[Int(triple >> 12 & 0x3F)])
            output.append(index + 1 < bytes.count ? alphabet[Int(triple >> 6 & 0x3F)] : UInt8(ascii: "="))
            output.append(index + 2 < bytes.count ? alphabet[Int(triple & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
