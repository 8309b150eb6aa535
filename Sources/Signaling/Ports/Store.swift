import Foundation

/// Why a store call failed, with a stable code the REST layer maps to a status.
public struct StoreError: Error, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// The row already exists (409).
        case conflict
        /// The row does not exist (404).
        case notFound
        /// The database did not answer (503).
        case unavailable
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// One page of a keyset-paginated list.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    /// The key to continue after, when there may be more.
    public var next: String?

    public init(items: [Item], next: String?) {
        self.items = items
        self.next = next
    }
}

/// Durable state: tenants, API keys, rooms, the audit log (SPEC §5).
/// SQLite implements it in embedded mode, PostgreSQL in cluster mode. Nothing on the relay
/// hot path calls it.
public protocol Store: Sendable {
    // Tenants
    func createTenant(_ tenant: Tenant, key: StoredAPIKey) async throws(StoreError)
    func tenant(_ id: String) async throws(StoreError) -> Tenant?
    /// Tenants ordered by id, after `after`.
    func tenants(after: String?, limit: Int) async throws(StoreError) -> Page<Tenant>
    func updateTenant(_ tenant: Tenant) async throws(StoreError)
    /// Deletes the tenant with its keys, rooms and audit events.
    func deleteTenant(_ id: String) async throws(StoreError)

    // API keys
    func createKey(_ key: StoredAPIKey) async throws(StoreError)
    func key(_ apiKey: String) async throws(StoreError) -> StoredAPIKey?
    func keys(tenantID: String, after: String?, limit: Int) async throws(StoreError) -> Page<StoredAPIKey>
    func deleteKey(tenantID: String, apiKey: String) async throws(StoreError)
    /// Replaces a key's sealed secret (a master-key rotation); `notFound` when there is no such key.
    func replaceKeySecret(apiKey: String, sealedSecret: [UInt8]) async throws(StoreError)

    // Rooms
    func createRoom(_ room: Room) async throws(StoreError)
    func room(tenantID: String, name: String) async throws(StoreError) -> Room?
    /// Rooms ordered by name, after `after`.
    func rooms(tenantID: String, after: String?, limit: Int) async throws(StoreError) -> Page<Room>
    func updateRoom(_ room: Room) async throws(StoreError)
    func deleteRoom(tenantID: String, name: String) async throws(StoreError)

    // Audit log
    func appendEvents(_ events: [AuditEvent]) async throws(StoreError)
    /// Newest first.
    func events(_ query: AuditQuery) async throws(StoreError) -> Page<AuditEvent>
    /// Removes events older than `cutoff`; returns how many.
    @discardableResult
    func deleteEvents(before cutoff: Date) async throws(StoreError) -> Int

    // Webhooks and their outbox. `appendEvents` queues a delivery for every new event a
    // tenant's webhook takes, in the same transaction, so pending deliveries survive restarts.

    /// Creates or replaces the tenant's webhook; its pending deliveries stay queued.
    func putWebhook(_ webhook: Webhook) async throws(StoreError)
    func webhook(tenantID: String) async throws(StoreError) -> Webhook?
    /// Removes the webhook and its pending deliveries.
    func deleteWebhook(tenantID: String) async throws(StoreError)
    /// Up to `limit` deliveries due at `now`, oldest first, of tenants not in `excluding`
    /// (webhooks that are failing); each is leased (not handed out again, to this or
    /// another node) until `leaseUntil`.
    func claimDeliveries(now: Date, leaseUntil: Date, limit: Int, excluding: [String]) async throws(StoreError) -> [WebhookDelivery]
    /// Removes deliveries queued before `cutoff` (past their retry period); returns how many.
    func expireDeliveries(queuedBefore cutoff: Date) async throws(StoreError) -> Int
    /// Delivered, or given up: removes it.
    func finishDelivery(tenantID: String, eventID: String) async throws(StoreError)
    /// Failed: tried again at `next`, with `attempts` attempts made and the last error.
    func rescheduleDelivery(tenantID: String, eventID: String, attempts: Int, next: Date, error: String) async throws(StoreError)
    /// Deliveries queued, due or not.
    func pendingDeliveryCount() async throws(StoreError) -> Int

    /// A real round trip, for readiness.
    func ping() async throws(StoreError)
    func close() async
}

extension Store {
    public func claimDeliveries(now: Date, leaseUntil: Date, limit: Int) async throws(StoreError) -> [WebhookDelivery] {
        try await claimDeliveries(now: now, leaseUntil: leaseUntil, limit: limit, excluding: [])
    }
}
