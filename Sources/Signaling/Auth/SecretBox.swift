import Crypto
import Foundation

/// Seals API secrets at rest with the master key (AES-256-GCM, SPEC §2). The API key is the
/// associated data, so a sealed secret cannot be moved to another key's row.
public struct SecretBox: Sendable {
    private let key: SymmetricKey

    public struct InvalidKey: Error, CustomStringConvertible {
        public var description: String { "the master key must be base64 of exactly 32 bytes" }
    }

    /// `base64` must decode to exactly 32 bytes.
    public init(base64 masterKey: String) throws {
        guard let data = Data(base64Encoded: masterKey.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32 else {
            throw InvalidKey()
        }
        key = SymmetricKey(data: data)
    }

    /// A fresh random master key, base64.
    public static func generateKey() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    public func seal(_ secret: String, apiKey: String) throws -> [UInt8] {
        let box = try AES.GCM.seal(Data(secret.utf8), using: key, authenticating: Data(apiKey.utf8))
        guard let combined = box.combined else { throw InvalidKey() }
        return [UInt8](combined)
    }

    public func open(_ sealed: [UInt8], apiKey: String) throws -> String {
        let box = try AES.GCM.SealedBox(combined: Data(sealed))
        let plain = try AES.GCM.open(box, using: key, authenticating: Data(apiKey.utf8))
        return String(decoding: plain, as: UTF8.self)
    }
}

/// Generates API key pairs (SPEC §2): `apiKey` = "AK" + 20 base62 characters, `apiSecret` =
/// 32 random bytes, base64url.
public enum APIKeyGenerator {
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    public static func makeKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return "AK" + String((0..<20).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
    }

    public static func makeSecret() -> String {
        Base64URL.random(bytes: 32)
    }

    /// Compares secrets in time independent of where they differ.
    public static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let a = Array(lhs.utf8)
        let b = Array(rhs.utf8)
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
