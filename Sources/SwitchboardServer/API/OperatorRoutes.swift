import Foundation
import Hummingbird
import Signaling

/// `/v1/tenants…` (SPEC §4, operator).
struct OperatorRoutes {
    let node: Node

    func register(on group: RouterGroup<APIContext>) {
        group.post("tenants", use: createTenant)
        group.get("tenants", use: listTenants)
        group.get("tenants/:tenant", use: getTenant)
        group.patch("tenants/:tenant", use: updateTenant)
        group.delete("tenants/:tenant", use: deleteTenant)
        group.post("tenants/:tenant/keys", use: createKey)
        group.get("tenants/:tenant/keys", use: listKeys)
        group.delete("tenants/:tenant/keys/:apiKey", use: deleteKey)
    }

    struct CreatedTenant: ResponseEncodable {
        var tenant: Tenant
        var apiKey: String
        var apiSecret: String
    }

    struct KeyView: ResponseEncodable {
        var apiKey: String
        var apiSecret: String?
        var createdAt: String
    }

    @Sendable func createTenant(_ request: Request, context: APIContext) async throws -> EditedResponse<CreatedTenant> {
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes)
        guard let name = try Self.name(in: body) else { throw APIError.invalid("`name` is required") }
        let limits = try Self.limits(in: body)
        let autoCreateRooms = try body.bool("autoCreateRooms") ?? true
        let id: String
        if let given = try body.string("id") {
            guard Tenant.isValidID(given) else { throw APIError.invalid("`id` must match [a-z0-9][a-z0-9-]{2,39}") }
            id = given
        } else {
            id = Self.derivedID(from: name)
        }
        let tenant = Tenant(
            id: id, name: name, limits: (limits ?? TenantLimitsPatch()).applied(to: .defaults),
            autoCreateRooms: autoCreateRooms, createdAt: node.clock.now())
        let (key, secret) = try newKey(tenantID: id)
        do {
            try await node.store.createTenant(tenant, key: key)
        } catch {
            throw APIError(error, what: "tenant")
        }
        node.record(.tenantCreated, tenantID: id, data: ["name": .string(name)])
        node.record(.keyCreated, tenantID: id, data: ["apiKey": .string(key.apiKey)])
        return EditedResponse(status: .created, response: CreatedTenant(tenant: tenant, apiKey: key.apiKey, apiSecret: secret))
    }

    @Sendable func listTenants(_ request: Request, context: APIContext) async throws -> ListResponse<Tenant> {
        let (limit, after) = try request.pagination()
        do {
            let page = try await node.store.tenants(after: after, limit: limit)
            return ListResponse(page.items, next: page.next)
        } catch {
            throw APIError(error, what: "tenant")
        }
    }

    @Sendable func getTenant(_ request: Request, context: APIContext) async throws -> Tenant {
        try await tenant(context)
    }

    @Sendable func updateTenant(_ request: Request, context: APIContext) async throws -> Tenant {
        var tenant = try await tenant(context)
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes)
        let name = try Self.name(in: body)
        let limits = try Self.limits(in: body)
        let status: TenantStatus? = try body.string("status").map { text throws(APIError) in
            guard let status = TenantStatus(rawValue: text) else { throw APIError.invalid("`status` must be `active` or `suspended`") }
            return status
        }
        let autoCreateRooms = try body.bool("autoCreateRooms")
        let before = tenant
        if let name { tenant.name = name }
        if let limits { tenant.limits = limits.applied(to: tenant.limits) }
        if let status { tenant.status = status }
        if let autoCreateRooms { tenant.autoCreateRooms = autoCreateRooms }
        guard tenant != before else { return tenant }
        do {
            try await node.store.updateTenant(tenant)
        } catch {
            throw APIError(error, what: "tenant")
        }
        node.directory.forgetTenant(tenant.id)
        node.bus.publish(.tenantChanged(tenantID: tenant.id), to: .control)
        var changes: [String: JSONValue] = [:]
        if before.name != tenant.name { changes["name"] = .string(tenant.name) }
        if before.status != tenant.status { changes["status"] = .string(tenant.status.rawValue) }
        if before.limits != tenant.limits { changes["limits"] = .bool(true) }
        if before.autoCreateRooms != tenant.autoCreateRooms { changes["autoCreateRooms"] = .bool(tenant.autoCreateRooms) }
        node.record(.tenantUpdated, tenantID: tenant.id, data: changes)
        if before.status == .active, tenant.status == .suspended {
            node.bus.publish(.tenantDisconnect(tenantID: tenant.id, reason: "tenant suspended"), to: .control)
        }
        return tenant
    }

    @Sendable func deleteTenant(_ request: Request, context: APIContext) async throws -> Response {
        let tenant = try await tenant(context)
        do {
            try await node.store.deleteTenant(tenant.id)
        } catch {
            throw APIError(error, what: "tenant")
        }
        node.directory.forgetTenant(tenant.id)
        node.bus.publish(.tenantDisconnect(tenantID: tenant.id, reason: "tenant deleted"), to: .control)
        node.record(.tenantDeleted, tenantID: tenant.id)
        return Response(status: .noContent)
    }

    @Sendable func createKey(_ request: Request, context: APIContext) async throws -> EditedResponse<KeyView> {
        let tenant = try await tenant(context)
        let (key, secret) = try newKey(tenantID: tenant.id)
        do {
            try await node.store.createKey(key)
        } catch {
            throw APIError(error, what: "key")
        }
        node.record(.keyCreated, tenantID: tenant.id, data: ["apiKey": .string(key.apiKey)])
        return EditedResponse(status: .created, response: KeyView(apiKey: key.apiKey, apiSecret: secret, createdAt: Timestamp.format(key.createdAt)))
    }

    @Sendable func listKeys(_ request: Request, context: APIContext) async throws -> ListResponse<KeyView> {
        let tenant = try await tenant(context)
        let (limit, after) = try request.pagination()
        do {
            let page = try await node.store.keys(tenantID: tenant.id, after: after, limit: limit)
            return ListResponse(page.items.map { KeyView(apiKey: $0.apiKey, apiSecret: nil, createdAt: Timestamp.format($0.createdAt)) }, next: page.next)
        } catch {
            throw APIError(error, what: "key")
        }
    }

    @Sendable func deleteKey(_ request: Request, context: APIContext) async throws -> Response {
        let tenant = try await tenant(context)
        guard let apiKey = context.pathParameter("apiKey") else { throw APIError.notFound("key not found") }
        do {
            try await node.store.deleteKey(tenantID: tenant.id, apiKey: apiKey)
        } catch {
            throw APIError(error, what: "key")
        }
        node.directory.forgetKey(apiKey)
        node.bus.publish(.keyRevoked(tenantID: tenant.id, apiKey: apiKey), to: .control)
        node.record(.keyDeleted, tenantID: tenant.id, data: ["apiKey": .string(apiKey)])
        return Response(status: .noContent)
    }

    // MARK: Helpers

    private func tenant(_ context: APIContext) async throws -> Tenant {
        guard let id = context.pathParameter("tenant"), Tenant.isValidID(id) else { throw APIError.notFound("tenant not found") }
        do {
            guard let tenant = try await node.store.tenant(id) else { throw APIError.notFound("tenant not found") }
            return tenant
        } catch let error as StoreError {
            throw APIError(error, what: "tenant")
        }
    }

    private func newKey(tenantID: String) throws -> (StoredAPIKey, String) {
        let apiKey = APIKeyGenerator.makeKey()
        let secret = APIKeyGenerator.makeSecret()
        let sealed = try node.directory.seal(secret: secret, apiKey: apiKey)
        return (StoredAPIKey(apiKey: apiKey, tenantID: tenantID, sealedSecret: sealed, createdAt: node.clock.now()), secret)
    }

    /// `name`: 1–200 Unicode scalars, no control characters (kept as given).
    static func name(in body: JSONBody) throws(APIError) -> String? {
        guard let name = try body.string("name") else { return nil }
        guard (1...200).contains(name.unicodeScalars.count), !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw APIError.invalid("`name` must be 1–200 characters without control characters") }
        return name
    }

    /// `limits`: each field given replaces that limit.
    static func limits(in body: JSONBody) throws(APIError) -> TenantLimitsPatch? {
        guard let limits = try body.object("limits") else { return nil }
        return TenantLimitsPatch(
            maxConnections: try limits.int("maxConnections", in: TenantLimits.maxConnectionsRange),
            maxPeersPerRoom: try limits.int("maxPeersPerRoom", in: TenantLimits.maxPeersPerRoomRange),
            messagesPerSecond: try limits.int("messagesPerSecond", in: TenantLimits.messagesPerSecondRange),
            messageBurst: try limits.int("messageBurst", in: TenantLimits.messageBurstRange))
    }

    /// A tenant id from its name: lowercase letters and digits, dashes elsewhere, plus a
    /// random suffix so two tenants of the same name do not collide.
    static func derivedID(from name: String) -> String {
        var slug = ""
        for scalar in name.lowercased().unicodeScalars {
            if ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) {
                slug.unicodeScalars.append(scalar)
            } else if !slug.isEmpty, !slug.hasSuffix("-") {
                slug.append("-")
            }
        }
        while slug.hasSuffix("-") { slug.removeLast() }
        slug = String(slug.prefix(30))
        while slug.hasSuffix("-") { slug.removeLast() }
        if slug.isEmpty { slug = "t" }
        let suffix = String(ULID.make().suffix(6).lowercased())
        return "\(slug)-\(suffix)"
    }
}
