import Foundation
import Testing

@testable import Signaling

@Suite struct TURNCredentialsTests {
    // Computed independently:
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"secret",b"1700000000:acme:alice",hashlib.sha1).digest()).decode())'
    static let expectedCredential = "Ufu1LWmoxFTrQi7dBalpYy21yvg="
    static let expiry: TimeInterval = 1_700_000_000
    static let issuedAt = Date(timeIntervalSince1970: expiry - 86_400)

    static func make(secret: String = "secret") -> TURNCredentials {
        TURNCredentials(secret: secret, tenantID: "acme", peerId: "alice", ttl: 86_400, now: issuedAt)
    }

    @Test func usernameAndCredentialFollowTheTURNRESTScheme() {
        let credentials = Self.make()
        #expect(credentials.username == "1700000000:acme:alice")
        #expect(credentials.credential == Self.expectedCredential)
        #expect(credentials.ttl == 86_400)
        #expect(credentials.expiresAt == Date(timeIntervalSince1970: Self.expiry))
    }

    @Test func credentialMatchesAnIndependentComputation() {
        #expect(TURNCredentials.credential(secret: "secret", username: "1700000000:acme:alice") == Self.expectedCredential)
        // python3 … hmac.new(b"other", b"1700086400:acme:alice", hashlib.sha1)
        #expect(TURNCredentials.credential(secret: "other", username: "1700086400:acme:alice") == "bJjxLFhMGmY+KYoI4x1mIMQJE/A=")
    }

    @Test func fractionalNowIsTruncated() {
        let credentials = TURNCredentials(secret: "secret", tenantID: "acme", peerId: "alice", ttl: 86_400, now: Self.issuedAt.addingTimeInterval(0.9))
        #expect(credentials.username == "1700000000:acme:alice")
    }

    @Test func defaultsAreTheSpecValues() {
        #expect(TURNCredentials.defaultTTL == 24 * 3600)
        #expect(TURNCredentials.maxTTL == 7 * 24 * 3600)
    }

    @Test func verifyAcceptsAnyConfiguredSecret() {
        let credentials = Self.make()
        let now = Date(timeIntervalSince1970: Self.expiry - 60)
        #expect(TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: ["secret"], now: now))
        #expect(TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: ["new", "secret"], now: now))
        #expect(TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: ["secret", "old"], now: now))
    }

    @Test func verifyRejectsAWrongSecret() {
        let credentials = Self.make()
        let now = Date(timeIntervalSince1970: Self.expiry - 60)
        #expect(!TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: ["other"], now: now))
        #expect(!TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: [], now: now))
    }

    @Test func verifyRejectsExpiredCredentials() {
        let credentials = Self.make()
        #expect(!TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: ["secret"], now: Date(timeIntervalSince1970: Self.expiry)))
        #expect(!TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: ["secret"], now: Date(timeIntervalSince1970: Self.expiry + 3600)))
    }

    @Test func verifyRejectsATamperedUsernameOrCredential() {
        let credentials = Self.make()
        let now = Date(timeIntervalSince1970: Self.expiry - 60)
        #expect(!TURNCredentials.verify(username: "1700000000:acme:mallory", credential: credentials.credential, secrets: ["secret"], now: now))
        #expect(!TURNCredentials.verify(username: "1800000000:acme:alice", credential: credentials.credential, secrets: ["secret"], now: now))
        #expect(!TURNCredentials.verify(username: credentials.username, credential: "AAAA" + credentials.credential.dropFirst(4), secrets: ["secret"], now: now))
    }

    @Test func verifyRejectsAUsernameWithoutANumericExpiry() {
        let username = "soon:acme:alice"
        let credential = TURNCredentials.credential(secret: "secret", username: username)
        #expect(!TURNCredentials.verify(username: username, credential: credential, secrets: ["secret"], now: Date(timeIntervalSince1970: 0)))
        #expect(!TURNCredentials.verify(username: "", credential: "", secrets: ["secret"], now: Date(timeIntervalSince1970: 0)))
    }

    @Test func peerIdsWithColonsStillVerify() {
        let credentials = TURNCredentials(secret: "s", tenantID: "acme", peerId: "a:b", ttl: 60, now: Self.issuedAt)
        #expect(credentials.username.hasSuffix(":acme:a:b"))
        #expect(TURNCredentials.verify(username: credentials.username, credential: credentials.credential, secrets: ["s"], now: Self.issuedAt))
    }

    @Test func iceServersSplitTurnAndStunURLs() {
        let credentials = Self.make()
        let servers = credentials.iceServers(urls: [
            "stun:stun.example.com:3478", "turn:turn.example.com:3478?transport=udp", "https://not-ice.example.com",
            "turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349",
        ])
        #expect(servers == [
            ICEServer(
                urls: ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349"],
                username: "1700000000:acme:alice", credential: Self.expectedCredential),
            ICEServer(urls: ["stun:stun.example.com:3478"], username: nil, credential: nil),
        ])
    }

    @Test func iceServersOmitEmptyGroups() {
        let credentials = Self.make()
        #expect(credentials.iceServers(urls: []).isEmpty)
        #expect(credentials.iceServers(urls: ["stun:s:3478"]) == [ICEServer(urls: ["stun:s:3478"], username: nil, credential: nil)])
        #expect(credentials.iceServers(urls: ["turn:t:3478"]).map(\.username) == ["1700000000:acme:alice"])
    }

    @Test func iceServerEncodesInTheRTCIceServerShape() throws {
        let servers = Self.make().iceServers(urls: ["turn:t:3478", "stun:s:3478"])
        let json = try RawJSON(encoding: servers)
        #expect(json.description == #"[{"credential":"Ufu1LWmoxFTrQi7dBalpYy21yvg=","urls":["turn:t:3478"],"username":"1700000000:acme:alice"},{"urls":["stun:s:3478"]}]"#)
    }
}
