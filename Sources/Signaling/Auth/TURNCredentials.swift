import Crypto
import Foundation

/// Time-limited TURN credentials of the TURN REST API scheme (SPEC §6), the one coturn's
/// `use-auth-secret` accepts: `username = "<unix expiry>:<tenant>:<peerId>"`,
/// `credential = base64(HMAC-SHA1(secret, username))`.
public struct TURNCredentials: Sendable, Equatable {
    public var username: String
    public var credential: String
    public var ttl: Int
    public var expiresAt: Date

    public static let defaultTTL = 86_400
    public static let maxTTL = 7 * 86_400

    public init(secret: String, tenantID: String, peerId: String, ttl: Int, now: Date) {
        let expiry = Int(now.timeIntervalSince1970) + ttl
        let username = "\(expiry):\(tenantID):\(peerId)"
        self.username = username
        self.credential = Self.credential(secret: secret, username: username)
        self.ttl = ttl
        self.expiresAt = Date(timeIntervalSince1970: TimeInterval(expiry))
    }

    public static func credential(secret: String, username: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(username.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// Checks a username/credential pair against any of `secrets` and the expiry in the name.
    public static func verify(username: String, credential: String, secrets: [String], now: Date) -> Bool {
        guard let expiry = username.split(separator: ":", maxSplits: 1).first.flatMap({ Int($0) }),
            TimeInterval(expiry) > now.timeIntervalSince1970
        else { return false }
        return secrets.contains { APIKeyGenerator.constantTimeEquals(self.credential(secret: $0, username: username), credential) }
    }

    /// The RTCIceServer list: `turn:`/`turns:` URLs carry these credentials, `stun:` URLs none.
    public func iceServers(urls: [String]) -> [ICEServer] {
        let turn = urls.filter { $0.hasPrefix("turn:") || $0.hasPrefix("turns:") }
        let stun = urls.filter { $0.hasPrefix("stun:") || $0.hasPrefix("stuns:") }
        var servers: [ICEServer] = []
        if !turn.isEmpty { servers.append(ICEServer(urls: turn, username: username, credential: credential)) }
        if !stun.isEmpty { servers.append(ICEServer(urls: stun, username: nil, credential: nil)) }
        return servers
    }
}

/// The RTCIceServer dictionary browsers take.
public struct ICEServer: Sendable, Equatable, Codable {
    public var urls: [String]
    public var username: String?
    public var credential: String?

    public init(urls: [String], username: String?, credential: String?) {
        self.urls = urls
        self.username = username
        self.credential = credential
    }
}
