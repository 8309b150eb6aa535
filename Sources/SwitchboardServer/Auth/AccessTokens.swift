import Foundation
import JWTKit
import Signaling

/// The JWT payload of an access token (SPEC §2). Claims are checked by
/// ``AccessClaims/validate(kid:now:maxMetadataBytes:)``, not by jwt-kit, so every failure
/// gets its own `auth.rejected` reason.
struct AccessTokenPayload: JWTPayload {
    var iss: String
    var sub: String
    var room: String
    var exp: Double
    var nbf: Double?
    var metadata: JSONValue?
    var permissions: [String]?

    func verify(using algorithm: some JWTAlgorithm) async throws {}

    init(claims: AccessClaims) throws {
        iss = claims.issuer
        sub = claims.subject
        room = claims.room
        exp = claims.expiresAt.timeIntervalSince1970.rounded(.down)
        nbf = claims.notBefore.map { $0.timeIntervalSince1970.rounded(.down) }
        metadata = try claims.metadata.map { try $0.decode(JSONValue.self) }
        permissions = claims.permissions
    }

    func claims() throws(AuthFailure) -> AccessClaims {
        var raw: RawJSON?
        if let metadata {
            guard case .object = metadata else { throw AuthFailure(.invalidClaims, "`metadata` must be an object") }
            raw = try? RawJSON(encoding: metadata)
        }
        return AccessClaims(
            issuer: iss, subject: sub, room: room, expiresAt: Date(timeIntervalSince1970: exp),
            notBefore: nbf.map { Date(timeIntervalSince1970: $0) }, metadata: raw, permissions: permissions)
    }
}

/// Verifies and mints access tokens: HS256 JWTs signed with an API secret, `kid` = API key.
public struct AccessTokens: Sendable {
    private let directory: Directory
    private let clock: any WallClock

    public init(directory: Directory, clock: any WallClock = SystemWallClock()) {
        self.directory = directory
        self.clock = clock
    }

    /// A verified token: its claims and the key that signed it.
    public struct Verified: Sendable {
        public var claims: AccessClaims
        public var apiKey: String
        public var tenantID: String
    }

    /// Checks the signature, the key and the claims.
    public func verify(_ token: String) async throws(AuthFailure) -> Verified {
        guard !token.isEmpty else { throw AuthFailure(.missingToken, "an access token is required") }
        guard token.utf8.count <= 16 * 1024, let kid = Self.keyID(of: token) else {
            throw AuthFailure(.malformedToken, "the access token is not a JWT with a `kid` header")
        }
        let key: ResolvedKey?
        do {
            key = try await directory.key(kid)
        } catch {
            throw AuthFailure(.unavailable, "credentials cannot be checked right now")
        }
        guard let key else { throw AuthFailure(.unknownKey, "unknown API key") }
        let payload: AccessTokenPayload
        do {
            payload = try await key.jwtKeys.verify(token, as: AccessTokenPayload.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw AuthFailure(.badSignature, "bad token signature")
        } catch let error as JWTError where error.errorType == .malformedToken {
            throw AuthFailure(.malformedToken, "malformed access token")
        } catch is DecodingError {
            throw AuthFailure(.invalidClaims, "the token lacks required claims (iss, sub, room, exp)")
        } catch {
            throw AuthFailure(.badSignature, "the access token could not be verified")
        }
        let claims = try payload.claims()
        try claims.validate(kid: kid, now: clock.now())
        return Verified(claims: claims, apiKey: key.apiKey, tenantID: key.tenantID)
    }

    /// Mints a token signed with `secret`.
    public static func mint(_ claims: AccessClaims, apiKey: String, secret: String) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: apiKey))
        return try await keys.sign(try AccessTokenPayload(claims: claims), kid: JWKIdentifier(string: apiKey))
    }

    /// The `kid` of a compact JWS, read without verifying anything.
    static func keyID(of token: String) -> String? {
        guard let headerPart = token.split(separator: ".", maxSplits: 1).first,
            let bytes = Base64URL.decode(String(headerPart)),
            let header = try? JSONDecoder().decode([String: JSONValue].self, from: Data(bytes)),
            case .string(let kid) = header["kid"]
        else { return nil }
        return kid
    }
}
