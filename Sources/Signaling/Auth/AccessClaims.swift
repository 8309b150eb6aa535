import Foundation

/// Why a connection or request was refused; `reason` is what `auth.rejected` records.
public struct AuthFailure: Error, Sendable, Equatable {
    public enum Reason: String, Sendable {
        case missingToken = "missing_token"
        case malformedToken = "malformed_token"
        case unknownKey = "unknown_key"
        case badSignature = "bad_signature"
        case expired
        case notYetValid = "not_yet_valid"
        case invalidClaims = "invalid_claims"
        case tenantSuspended = "tenant_suspended"
        case permissionDenied = "permission_denied"
        case roomNotFound = "room_not_found"
        case roomFull = "room_full"
        case tooManyConnections = "too_many_connections"
        case draining
        case unavailable
    }

    public var reason: Reason
    /// Safe to show the client.
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    /// The HTTP status SPEC §3 gives a refused upgrade.
    public var httpStatus: Int {
        switch reason {
        case .missingToken, .malformedToken, .unknownKey, .badSignature, .expired, .notYetValid, .invalidClaims: 401
        case .tenantSuspended, .permissionDenied: 403
        case .roomNotFound: 404
        case .roomFull, .tooManyConnections: 429
        case .draining, .unavailable: 503
        }
    }
}

/// The claims of an access token (SPEC §2), already signature-checked.
public struct AccessClaims: Sendable, Equatable {
    public var issuer: String
    public var subject: String
    public var room: String
    public var expiresAt: Date
    public var notBefore: Date?
    public var metadata: RawJSON?
    public var permissions: [String]?

    public init(issuer: String, subject: String, room: String, expiresAt: Date, notBefore: Date? = nil, metadata: RawJSON? = nil, permissions: [String]? = nil) {
        self.issuer = issuer
        self.subject = subject
        self.room = room
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.metadata = metadata
        self.permissions = permissions
    }

    /// Allowed clock difference between the minting backend and this node.
    public static let leeway: TimeInterval = 30

    /// Checks the claims; `kid` is the header's key id.
    public func validate(kid: String, now: Date, maxMetadataBytes: Int = 4096) throws(AuthFailure) {
        guard issuer == kid else { throw AuthFailure(.invalidClaims, "`iss` must equal the key id") }
        guard Identifier.isValid(subject) else { throw AuthFailure(.invalidClaims, "`sub` must be 1–128 characters") }
        guard Identifier.isValid(room) else { throw AuthFailure(.invalidClaims, "`room` must be 1–128 characters") }
        guard expiresAt.timeIntervalSince(now) > -Self.leeway else { throw AuthFailure(.expired, "token expired") }
        if let notBefore, notBefore.timeIntervalSince(now) > Self.leeway {
            throw AuthFailure(.notYetValid, "token not yet valid")
        }
        if let metadata {
            guard metadata.kind == .object else { throw AuthFailure(.invalidClaims, "`metadata` must be an object") }
            guard metadata.bytes.count <= maxMetadataBytes else { throw AuthFailure(.invalidClaims, "`metadata` exceeds 4 KiB") }
        }
    }

    public var effectivePermissions: Permissions {
        permissions.map { Permissions(names: $0) } ?? .default
    }
}
