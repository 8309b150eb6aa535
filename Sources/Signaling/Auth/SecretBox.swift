import Crypto
import Foundation

/// Seals API secrets at rest with the master key (AES-256-GCM, SPEC §2). The API key is the
/// associated data, so a sealed secret cannot be moved to another key's row.
///
/// For a rotation it takes several keys, comma-separated (`new,old`): the first seals, every
/// one opens (`switchboard rotate-master-key` then reseals everything with the first).
public struct SecretBox: Sendable {
    private let keys: [SymmetricKey]
    private var key: SymmetricKey { keys[0] }

    public struct InvalidKey: Error, CustomStringConvertible {
        public var description: String { "the master key must be base64 of exactly 32 bytes" }
    }

    /// Each comma-separated key must be base64 of exactly 32 bytes; the first seals.
    public init(base64 masterKeys: String) throws {
        var keys: [SymmetricKey] = []
        for part in masterKeys.split(separator: ",") {
            guard let data = Data(base64Encoded: part.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32 else {
                throw InvalidKey()
            }
            keys.append(SymmetricKey(data: data))
        }
        guard !keys.isEmpty else { throw InvalidKey() }
        self.keys = keys
    }

    /// How many keys open secrets (more than one during a rotation).
    public var keyCount: Int { keys.count }

    /// A fresh random master key, base64.
    public static func generateKey() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    public func seal(_ secret: String, apiKey: String) throws -> [UInt8] {
        let box = try AES.GCM.seal(Data(secret.utf8), using: key, authenticating: Data(apiKey.utf8))
        guard let combined = box.combined else { throw InvalidKey() }
        return [UInt8](combined)
    }

    /// Opens with the first key that fits.
    public func open(_ sealed: [UInt8], apiKey: String) throws -> String {
        let box = try AES.GCM.SealedBox(combined: Data(sealed))
        var lastError: (any Error)?
        for key in keys {
            do {
                let plain = try AES.GCM.open(box, using: key, authenticating: Data(apiKey.utf8))
                return String(decoding: plain, as: UTF8.self)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? InvalidKey()
    }

    /// Whether `sealed` is sealed with the first (sealing) key already.
    public func isSealedWithFirstKey(_ sealed: [UInt8], apiKey: String) -> Bool {
        guard let box = try? AES.GCM.SealedBox(combined: Data(sealed)) else { return false }
        return (try? AES.GCM.open(box, using: key, authenticating: Data(apiKey.utf8))) != nil
    }

    /// `sealed` opened with any key and sealed again with the first one; nil when it already is.
    public func resealed(_ sealed: [UInt8], apiKey: String) throws -> [UInt8]? {
        guard !isSealedWithFirstKey(sealed, apiKey: apiKey) else { return nil }
        return try seal(try open(sealed, apiKey: apiKey), apiKey: apiKey)
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
