import Foundation
import JWTKit
import Signaling
import Synchronization

/// An API key ready to check credentials with: its secret opened and its JWT key loaded.
public struct ResolvedKey: Sendable {
    public var apiKey: String
    public var tenantID: String
    public var secret: String
    let jwtKeys: JWTKeyCollection
}

/// What authentication needs from the store — tenants and API keys — with recent answers
/// kept in memory, so joins and REST calls do not wait on the database each time and keep
/// working from the cache while it is briefly down.
public final class Directory: Sendable {
    private struct Cached<Value: Sendable>: Sendable {
        var value: Value
        var fetched: ContinuousClock.Instant
    }

    private let store: any Store
    private let secrets: SecretBox
    private let freshFor: Duration
    private let tenants = Mutex<[String: Cached<Tenant>]>([:])
    private let keys = Mutex<[String: Cached<ResolvedKey>]>([:])
    private let rooms = Mutex<[String: Cached<Room>]>([:])

    public init(store: any Store, secrets: SecretBox, freshFor: Duration = .seconds(30)) {
        self.store = store
        self.secrets = secrets
        self.freshFor = freshFor
    }

    /// The tenant, from cache while fresh; a stale copy when the store is down.
    public func tenant(_ id: String) async throws(StoreError) -> Tenant? {
        let now = ContinuousClock.now
        let cached = tenants.withLock { $0[id] }
        if let cached, cached.fetched.duration(to: now) < freshFor { return cached.value }
        do {
            guard let tenant = try await store.tenant(id) else {
                tenants.withLock { $0[id] = nil }
                return nil
            }
            tenants.withLock { $0[id] = Cached(value: tenant, fetched: now) }
            return tenant
        } catch {
            if error.code == .unavailable, let cached { return cached.value }
            throw error
        }
    }

    /// The API key with its secret, from cache while fresh; a stale copy when the store is down.
    public func key(_ apiKey: String) async throws(StoreError) -> ResolvedKey? {
        guard apiKey.hasPrefix("AK"), apiKey.utf8.count <= 64 else { return nil }
        let now = ContinuousClock.now
        let cached = keys.withLock { $0[apiKey] }
        if let cached, cached.fetched.duration(to: now) < freshFor { return cached.value }
        do {
            guard let stored = try await store.key(apiKey),
                let secret = try? secrets.open(stored.sealedSecret, apiKey: stored.apiKey)
            else {
                keys.withLock { $0[apiKey] = nil }
                return nil
            }
            let jwtKeys = JWTKeyCollection()
            await jwtKeys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: stored.apiKey))
            let resolved = ResolvedKey(apiKey: stored.apiKey, tenantID: stored.tenantID, secret: secret, jwtKeys: jwtKeys)
            keys.withLock { $0[apiKey] = Cached(value: resolved, fetched: now) }
            return resolved
        } catch {
            if error.code == .unavailable, let cached { return cached.value }
            throw error
        }
    }

    /// A room for a join: from cache while fresh; a stale copy when the store is down.
    public func room(tenantID: String, name: String) async throws(StoreError) -> Room? {
        let key = tenantID + "\u{0}" + name
        let now = ContinuousClock.now
        let cached = rooms.withLock { $0[key] }
        if let cached, cached.fetched.duration(to: now) < freshFor { return cached.value }
        do {
            guard let room = try await store.room(tenantID: tenantID, name: name) else {
                rooms.withLock { $0[key] = nil }
                return nil
            }
            rooms.withLock { $0[key] = Cached(value: room, fetched: now) }
            return room
        } catch {
            if error.code == .unavailable, let cached { return cached.value }
            throw error
        }
    }

    /// Remembers a room this node just created.
    public func remember(_ room: Room) {
        rooms.withLock { $0[room.tenantID + "\u{0}" + room.name] = Cached(value: room, fetched: ContinuousClock.now) }
    }

    public func forgetRoom(tenantID: String, name: String) {
        rooms.withLock { $0[tenantID + "\u{0}" + name] = nil }
    }

    /// Drops cached copies after a change (locally, or announced over the bus).
    public func forgetTenant(_ id: String) {
        tenants.withLock { $0[id] = nil }
        keys.withLock { $0 = $0.filter { $0.value.value.tenantID != id } }
        rooms.withLock { $0 = $0.filter { $0.value.value.tenantID != id } }
    }

    public func forgetKey(_ apiKey: String) {
        keys.withLock { $0[apiKey] = nil }
    }

    /// Seals a secret under another context (a webhook's: ``Webhook/sealingContext(tenantID:)``).
    public func seal(_ secret: String, context: String) throws -> [UInt8] {
        try secrets.seal(secret, apiKey: context)
    }

    public func open(_ sealed: [UInt8], context: String) throws -> String {
        try secrets.open(sealed, apiKey: context)
    }

    /// Seals a new secret for storage.
    public func seal(secret: String, apiKey: String) throws -> [UInt8] {
        try secrets.seal(secret, apiKey: apiKey)
    }
}
