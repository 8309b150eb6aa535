import Foundation
import Testing

@testable import Signaling

@Suite struct SecretBoxTests {
    static let keyA = Data(repeating: 0xA5, count: 32).base64EncodedString()
    static let keyB = Data(repeating: 0x5A, count: 32).base64EncodedString()

    @Test func sealThenOpenReturnsTheSecret() throws {
        let box = try SecretBox(base64: Self.keyA)
        let secret = "s3cr3t-" + String(repeating: "x", count: 40)
        let sealed = try box.seal(secret, apiKey: "AK123")
        #expect(try box.open(sealed, apiKey: "AK123") == secret)
        // nonce (12) ‖ ciphertext ‖ tag (16); the plaintext is not visible.
        #expect(sealed.count == 12 + secret.utf8.count + 16)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("s3cr3t"))
    }

    @Test func duringARotationTheFirstKeySealsAndEveryKeyOpens() throws {
        let old = try SecretBox(base64: Self.keyA)
        let both = try SecretBox(base64: "\(Self.keyB), \(Self.keyA)")
        #expect(both.keyCount == 2)
        let sealedOld = try old.seal("secret", apiKey: "AK1")
        #expect(try both.open(sealedOld, apiKey: "AK1") == "secret")
        #expect(!both.isSealedWithFirstKey(sealedOld, apiKey: "AK1"))
        let resealed = try #require(try both.resealed(sealedOld, apiKey: "AK1"))
        #expect(both.isSealedWithFirstKey(resealed, apiKey: "AK1"))
        // Resealed with the new key alone: the old key no longer opens it.
        #expect(try SecretBox(base64: Self.keyB).open(resealed, apiKey: "AK1") == "secret")
        #expect(throws: (any Error).self) { try old.open(resealed, apiKey: "AK1") }
        #expect(try both.resealed(resealed, apiKey: "AK1") == nil)
        // A secret no configured key opens is an error, not a silent skip.
        let stranger = try SecretBox(base64: Data(repeating: 0x11, count: 32).base64EncodedString()).seal("x", apiKey: "AK1")
        #expect(throws: (any Error).self) { try both.resealed(stranger, apiKey: "AK1") }
        #expect(throws: SecretBox.InvalidKey.self) { try SecretBox(base64: "\(Self.keyA),not-a-key") }
        #expect(throws: SecretBox.InvalidKey.self) { try SecretBox(base64: ",") }
    }

    @Test func sealingTwiceUsesFreshNonces() throws {
        let box = try SecretBox(base64: Self.keyA)
        #expect(try box.seal("same", apiKey: "AK1") != box.seal("same", apiKey: "AK1"))
    }

    @Test func openingUnderAnotherAPIKeyFails() throws {
        let box = try SecretBox(base64: Self.keyA)
        let sealed = try box.seal("secret", apiKey: "AK1")
        #expect(throws: (any Error).self) { try box.open(sealed, apiKey: "AK2") }
    }

    @Test func openingWithAnotherMasterKeyFails() throws {
        let sealed = try SecretBox(base64: Self.keyA).seal("secret", apiKey: "AK1")
        let other = try SecretBox(base64: Self.keyB)
        #expect(throws: (any Error).self) { try other.open(sealed, apiKey: "AK1") }
    }

    @Test func tamperedOrTruncatedBoxesFail() throws {
        let box = try SecretBox(base64: Self.keyA)
        var sealed = try box.seal("secret", apiKey: "AK1")
        sealed[14] ^= 0x01
        #expect(throws: (any Error).self) { try box.open(sealed, apiKey: "AK1") }
        #expect(throws: (any Error).self) { try box.open([1, 2, 3], apiKey: "AK1") }
        #expect(throws: (any Error).self) { try box.open([], apiKey: "AK1") }
    }

    @Test(arguments: [
        "",
        "not base64!",
        Data(repeating: 1, count: 31).base64EncodedString(),
        Data(repeating: 1, count: 33).base64EncodedString(),
        Data(repeating: 1, count: 16).base64EncodedString(),
        Base64URL.encode([UInt8](repeating: 0xFF, count: 32)),  // base64url, not base64
    ])
    func rejectsInvalidMasterKeys(key: String) {
        #expect(throws: SecretBox.InvalidKey.self) { try SecretBox(base64: key) }
    }

    @Test func acceptsAMasterKeyWithSurroundingWhitespace() throws {
        let box = try SecretBox(base64: "  \(Self.keyA)\n")
        let sealed = try box.seal("x", apiKey: "AK")
        #expect(try SecretBox(base64: Self.keyA).open(sealed, apiKey: "AK") == "x")
    }

    @Test func generatedKeysAreValidAndDistinct() throws {
        let first = SecretBox.generateKey()
        let second = SecretBox.generateKey()
        #expect(first != second)
        #expect(Data(base64Encoded: first)?.count == 32)
        _ = try SecretBox(base64: first)
    }

    // MARK: API keys

    @Test func apiKeysHaveTheSpecShape() {
        let key = APIKeyGenerator.makeKey()
        #expect(key.hasPrefix("AK"))
        #expect(key.count == 22)
        #expect(key.dropFirst(2).allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
        #expect(APIKeyGenerator.makeKey() != key)
    }

    @Test func apiSecretsAre32RandomBytesBase64URL() throws {
        let secret = APIKeyGenerator.makeSecret()
        #expect(!secret.contains("=") && !secret.contains("+") && !secret.contains("/"))
        #expect(try #require(Base64URL.decode(secret)).count == 32)
        #expect(APIKeyGenerator.makeSecret() != secret)
    }

    @Test func constantTimeEqualsComparesContent() {
        #expect(APIKeyGenerator.constantTimeEquals("abc", "abc"))
        #expect(!APIKeyGenerator.constantTimeEquals("abc", "abd"))
        #expect(!APIKeyGenerator.constantTimeEquals("abc", "abcd"))
        #expect(APIKeyGenerator.constantTimeEquals("", ""))
    }
}
