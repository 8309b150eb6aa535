import Foundation
import Testing

@testable import Signaling

@Suite struct AccessClaimsTests {
    static let now = Date(timeIntervalSince1970: 1_700_000_000)

    static func claims(
        issuer: String = "AKtest", subject: String = "alice", room: String = "lobby", expiresIn: TimeInterval = 600,
        notBeforeIn: TimeInterval? = nil, metadata: RawJSON? = nil, permissions: [String]? = nil
    ) -> AccessClaims {
        AccessClaims(
            issuer: issuer, subject: subject, room: room, expiresAt: now.addingTimeInterval(expiresIn),
            notBefore: notBeforeIn.map { now.addingTimeInterval($0) }, metadata: metadata, permissions: permissions)
    }

    /// The failure reason of `validate`, nil when it passes.
    static func reason(_ claims: AccessClaims, kid: String = "AKtest") -> AuthFailure.Reason? {
        do {
            try claims.validate(kid: kid, now: now)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test func validClaimsPass() throws {
        try Self.claims(metadata: try .parse(#"{"name":"Alice"}"#), permissions: ["signal"]).validate(kid: "AKtest", now: Self.now)
    }

    @Test func issuerMustBeTheKeyId() {
        #expect(Self.reason(Self.claims(issuer: "AKother")) == .invalidClaims)
        #expect(Self.reason(Self.claims(), kid: "AKother") == .invalidClaims)
    }

    @Test(arguments: ["", String(repeating: "s", count: 129), "a\u{0}b", "tab\there"])
    func invalidSubjectsAreRejected(subject: String) {
        #expect(Self.reason(Self.claims(subject: subject)) == .invalidClaims)
    }

    @Test(arguments: ["", String(repeating: "r", count: 129), "new\nline"])
    func invalidRoomsAreRejected(room: String) {
        #expect(Self.reason(Self.claims(room: room)) == .invalidClaims)
    }

    @Test func longestSubjectAndRoomPass() {
        #expect(Self.reason(Self.claims(subject: String(repeating: "s", count: 128), room: String(repeating: "r", count: 128))) == nil)
    }

    @Test func expiryAllowsTheLeewayAndNoMore() {
        #expect(AccessClaims.leeway == 30)
        #expect(Self.reason(Self.claims(expiresIn: -29)) == nil)
        #expect(Self.reason(Self.claims(expiresIn: -30)) == .expired)
        #expect(Self.reason(Self.claims(expiresIn: -3600)) == .expired)
    }

    @Test func notBeforeInTheFutureIsRejectedBeyondTheLeeway() {
        #expect(Self.reason(Self.claims(notBeforeIn: -60)) == nil)
        #expect(Self.reason(Self.claims(notBeforeIn: 30)) == nil)
        #expect(Self.reason(Self.claims(notBeforeIn: 31)) == .notYetValid)
        #expect(Self.reason(Self.claims(notBeforeIn: 3600)) == .notYetValid)
    }

    @Test(arguments: ["[]", #""name""#, "1", "null", "true"])
    func metadataMustBeAnObject(text: String) throws {
        #expect(Self.reason(Self.claims(metadata: try .parse(text))) == .invalidClaims)
    }

    @Test func metadataIsLimitedTo4KiB() throws {
        let fits = try RawJSON.parse(#"{"k":""# + String(repeating: "m", count: 4096 - 8) + #""}"#)
        #expect(fits.bytes.count == 4096)
        #expect(Self.reason(Self.claims(metadata: fits)) == nil)
        let tooBig = try RawJSON.parse(#"{"k":""# + String(repeating: "m", count: 4097 - 8) + #""}"#)
        #expect(Self.reason(Self.claims(metadata: tooBig)) == .invalidClaims)
    }

    @Test func effectivePermissionsDefaultToSignalAndBroadcast() {
        #expect(Self.claims().effectivePermissions == [.signal, .broadcast])
        #expect(Self.claims().effectivePermissions == .default)
        #expect(Self.claims(permissions: ["signal"]).effectivePermissions == [.signal])
        #expect(Self.claims(permissions: ["broadcast", "future-power"]).effectivePermissions == [.broadcast])
        #expect(Self.claims(permissions: []).effectivePermissions == [])
    }

    @Test func permissionNamesRoundTrip() {
        #expect(Permissions.default.names == ["signal", "broadcast"])
        #expect(Permissions(names: Permissions.knownNames) == .default)
        #expect(Permissions(names: ["broadcast"]).names == ["broadcast"])
    }

    @Test func authFailuresMapToTheSpecStatuses() {
        let cases: [(AuthFailure.Reason, Int)] = [
            (.missingToken, 401), (.malformedToken, 401), (.unknownKey, 401), (.badSignature, 401), (.expired, 401),
            (.notYetValid, 401), (.invalidClaims, 401), (.tenantSuspended, 403), (.permissionDenied, 403),
            (.roomNotFound, 404), (.roomFull, 429), (.tooManyConnections, 429), (.draining, 503), (.unavailable, 503),
        ]
        for (reason, status) in cases {
            #expect(AuthFailure(reason, "x").httpStatus == status, "\(reason)")
        }
    }
}
