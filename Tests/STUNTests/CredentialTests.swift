import STUN
import Testing

@Suite struct CredentialTests {
    @Test func nonceIsValidUntilItsLifetimeThenStale() {
        let issuer = NonceIssuer(secret: Array("server secret".utf8), lifetime: 600)
        let nonce = issuer.make(now: 1_000_000)
        #expect(nonce.utf8.count == 32)
        #expect(issuer.validate(nonce, now: 1_000_000) == .valid)
        #expect(issuer.validate(nonce, now: 1_000_599) == .valid)
        #expect(issuer.validate(nonce, now: 1_000_600) == .stale)
        #expect(issuer.validate(nonce, now: 999_000) == .stale)  // from the future
        let other = NonceIssuer(secret: Array("another".utf8), lifetime: 600)
        #expect(other.validate(nonce, now: 1_000_000) == .stale)
        #expect(issuer.validate("f//499k954d6OL34oL9FSTvy64sA", now: 1_000_000) == .stale)
        var forged = Array(nonce.utf8)
        forged[15] = forged[15] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        #expect(issuer.validate(String(decoding: forged, as: UTF8.self), now: 1_000_000) == .stale)
    }

    @Test func restUsernameParses() {
        let credentials = TURNRESTCredentials(username: "1700000000:acme:peer:with:colons")
        #expect(credentials?.expiry == 1_700_000_000)
        #expect(credentials?.tenant == "acme")
        #expect(credentials?.peerID == "peer:with:colons")
        #expect(TURNRESTCredentials(username: "alice") == nil)
        #expect(TURNRESTCredentials(username: "x:acme:p") == nil)
        #expect(TURNRESTCredentials(username: "1700000000::p") == nil)
        #expect(TURNRESTCredentials(username: "1700000000:acme:") == nil)
        #expect(TURNRESTCredentials(username: "99999999999999999999999:a:b") == nil)
    }

    /// The password is what coturn computes for `use-auth-secret`: base64(HMAC-SHA1).
    /// (Reference value: `printf %s "1700000000:acme:peer" | openssl dgst -sha1 -hmac s3cret -binary | base64`.)
    @Test func restPasswordMatchesTheReference() {
        #expect(TURNRESTCredentials.password(secret: "s3cret", username: "1700000000:acme:peer") == "IvXkjr6nOzLlXjF4/5nOYVxyIvg=")
    }

    @Test func longTermKeyIsMD5OfUserRealmPassword() {
        // MD5("user:realm:pass") = 8493fbc53ba582fb4c044c456bdc40eb
        let key = LongTermCredentials.key(username: "user", realm: "realm", password: "pass")
        #expect(key.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() == "8493fbc53ba582fb4c044c456bdc40eb")
    }
}
