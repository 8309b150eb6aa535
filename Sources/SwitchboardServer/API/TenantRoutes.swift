import Foundation
import Hummingbird
import Signaling

/// The tenant API (SPEC §4): rooms, presence, kicks, server messages, tokens, TURN
/// credentials, the audit log. Every query is scoped to the authenticated tenant.
struct TenantRoutes {
    let node: Node

    func register(on group: RouterGroup<APIContext>) {
        group.post("rooms", use: createRoom)
        group.get("rooms", use: listRooms)
        group.get("rooms/:room", use: getRoom)
        group.patch("rooms/:room", use: updateRoom)
        group.delete("rooms/:room", use: deleteRoom)
        group.get("rooms/:room/peers", use: listPeers)
        group.delete("rooms/:room/peers/:peer", use: kickPeer)
        group.post("rooms/:room/messages", use: sendMessage)
        group.get("rooms/:room/events", use: roomEvents)
        group.get("events", use: events)
        group.post("tokens", use: createToken)
        group.post("turn/credentials", use: turnCredentials)
    }

    // MARK: Shapes

    struct RoomView: ResponseEncodable {
        var name: String
        var maxPeers: Int
        var metadata: RawJSON
        var peerCount: Int
        var createdAt: String
    }

    struct PeerView: ResponseEncodable {
        var peerId: String
        var metadata: RawJSON
        var sessionId: String
        var node: String
        var joinedAt: String
    }

    struct EventView: ResponseEncodable {
        var id: String
        var type: String
        var tenant: String
        var time: String
        var node: String
        var room: String?
        var peer: String?
        var session: String?
        var data: RawJSON
    }

    struct CreateRoom: Decodable {
        var name: String
        var maxPeers: Int?
        var metadata: JSONValue?
    }

    struct UpdateRoom: Decodable {
        var maxPeers: Int?
        var metadata: JSONValue?
    }

    struct SendMessage: Decodable {
        var to: String?
        var data: JSONValue?

        enum CodingKeys: String, CodingKey { case to, data }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            to = try container.decodeIfPresent(String.self, forKey: .to)
            guard container.contains(.data) else {
                throw DecodingError.keyNotFound(CodingKeys.data, .init(codingPath: [], debugDescription: "data is required"))
            }
            data = try container.decodeNil(forKey: .data) ? JSONValue.null : container.decode(JSONValue.self, forKey: .data)
        }
    }

    struct MessageResult: ResponseEncodable {
        var recipients: Int
    }

    struct CreateToken: Decodable {
        var room: String
        var peerId: String
        var ttlSeconds: Int?
        var metadata: JSONValue?
        var permissions: [String]?
    }

    struct TokenResult: ResponseEncodable {
        var token: String
        var expiresAt: String
        var url: String
    }

    struct CreateTURNCredentials: Decodable {
        var peerId: String?
        var ttlSeconds: Int?
    }

    struct TURNResult: ResponseEncodable {
        var username: String
        var credential: String
        var ttl: Int
        var expiresAt: String
        var iceServers: [ICEServer]
    }

    // MARK: Rooms

    @Sendable func createRoom(_ request: Request, context: APIContext) async throws -> EditedResponse<RoomView> {
        let tenant = try context.requireTenant()
        let body = try await request.decodeJSON(CreateRoom.self)
        guard Identifier.isValid(body.name) else { throw APIError.invalid("`name` must be 1–128 characters without control characters") }
        let maxPeers = try validMaxPeers(body.maxPeers) ?? tenant.limits.maxPeersPerRoom
        let metadata = try validMetadata(body.metadata) ?? .emptyObject
        let room = Room(tenantID: tenant.id, name: body.name, maxPeers: maxPeers, metadata: metadata, createdAt: node.clock.now())
        do {
            try await node.store.createRoom(room)
        } catch {
            throw APIError(error, what: "room")
        }
        node.record(.roomCreated, tenantID: tenant.id, room: room.name)
        return EditedResponse(status: .created, response: await view(room))
    }

    @Sendable func listRooms(_ request: Request, context: APIContext) async throws -> ListResponse<RoomView> {
        let tenant = try context.requireTenant()
        let (limit, after) = try request.pagination()
        let page: Page<Room>
        do {
            page = try await node.store.rooms(tenantID: tenant.id, after: after, limit: limit)
        } catch {
            throw APIError(error, what: "room")
        }
        var views: [RoomView] = []
        for room in page.items { views.append(await view(room)) }
        return ListResponse(views, next: page.next)
    }

    @Sendable func getRoom(_ request: Request, context: APIContext) async throws -> RoomView {
        await view(try await room(context))
    }

    @Sendable func updateRoom(_ request: Request, context: APIContext) async throws -> RoomView {
        var room = try await room(context)
        let body = try await request.decodeJSON(UpdateRoom.self)
        if let maxPeers = try validMaxPeers(body.maxPeers) { room.maxPeers = maxPeers }
        if let metadata = try validMetadata(body.metadata) { room.metadata = metadata }
        do {
            try await node.store.updateRoom(room)
        } catch {
            throw APIError(error, what: "room")
        }
        return await view(room)
    }

    @Sendable func deleteRoom(_ request: Request, context: APIContext) async throws -> Response {
        let room = try await room(context)
        do {
            try await node.store.deleteRoom(tenantID: room.tenantID, name: room.name)
        } catch {
            throw APIError(error, what: "room")
        }
        node.bus.publish(.roomClosed(tenantID: room.tenantID, room: room.name), to: .control)
        node.record(.roomClosed, tenantID: room.tenantID, room: room.name)
        return Response(status: .noContent)
    }

    // MARK: Presence

    @Sendable func listPeers(_ request: Request, context: APIContext) async throws -> ListResponse<PeerView> {
        let room = try await room(context)
        let (limit, after) = try request.pagination()
        let page = await node.presence.peers(tenantID: room.tenantID, room: room.name, after: after, limit: limit)
        return ListResponse(page.items.map(Self.view), next: page.next)
    }

    @Sendable func kickPeer(_ request: Request, context: APIContext) async throws -> Response {
        let room = try await room(context)
        guard let peerId = context.parameters.get("peer"),
            await node.presence.peer(tenantID: room.tenantID, room: room.name, peerId: peerId) != nil
        else {
            throw APIError(.notFound, "peer_not_found", "the peer is not in the room")
        }
        node.bus.publish(.kick(tenantID: room.tenantID, room: room.name, peerId: peerId), to: .control)
        node.record(.peerKicked, tenantID: room.tenantID, room: room.name, peer: peerId)
        return Response(status: .noContent)
    }

    /// A server-side `signal` (with `to`) or `broadcast` (without), `from` = "server".
    @Sendable func sendMessage(_ request: Request, context: APIContext) async throws -> EditedResponse<MessageResult> {
        let room = try await room(context)
        let body = try await request.decodeJSON(SendMessage.self, maxBytes: node.configuration.maxFrameBytes)
        let data = try RawJSON(encoding: body.data ?? .null)
        if let to = body.to {
            guard Identifier.isValid(to) else { throw APIError.invalid("`to` must be 1–128 characters") }
        }
        let envelope = RelayEnvelope(
            tenantID: room.tenantID, room: room.name, kind: body.to == nil ? .broadcast : .signal, from: "server",
            to: body.to, exclude: nil, data: data)
        switch node.hub.route(envelope) {
        case .routed(let local, let remote):
            return EditedResponse(status: .accepted, response: MessageResult(recipients: local + remote))
        case .peerNotFound:
            throw APIError(.notFound, "peer_not_found", "the peer is not in the room")
        case .unavailable:
            throw APIError.unavailable("the message could not be delivered; try again")
        }
    }

    // MARK: Audit

    @Sendable func roomEvents(_ request: Request, context: APIContext) async throws -> ListResponse<EventView> {
        let tenant = try context.requireTenant()
        guard let name = context.parameters.get("room"), Identifier.isValid(name) else { throw APIError.notFound("room not found") }
        return try await events(request, tenant: tenant, room: name)
    }

    @Sendable func events(_ request: Request, context: APIContext) async throws -> ListResponse<EventView> {
        let tenant = try context.requireTenant()
        return try await events(request, tenant: tenant, room: request.uri.queryParameters.get("room"))
    }

    private func events(_ request: Request, tenant: Tenant, room: String?) async throws -> ListResponse<EventView> {
        let query = request.uri.queryParameters
        let (limit, before) = try request.pagination()
        var audit = AuditQuery(tenantID: tenant.id, room: room, peer: query.get("peer"), before: before, limit: limit)
        if let type = query.get("type") {
            guard let parsed = AuditEventType(rawValue: type) else { throw APIError.badRequest("unknown event `type`") }
            audit.type = parsed
        }
        if let since = query.get("since") {
            guard let date = Timestamp.parse(since) else { throw APIError.badRequest("`since` must be an RFC 3339 time") }
            audit.since = date
        }
        if let until = query.get("until") {
            guard let date = Timestamp.parse(until) else { throw APIError.badRequest("`until` must be an RFC 3339 time") }
            audit.until = date
        }
        do {
            let page = try await node.store.events(audit)
            return ListResponse(page.items.map(Self.view), next: page.next)
        } catch {
            throw APIError(error, what: "event")
        }
    }

    // MARK: Tokens and TURN

    @Sendable func createToken(_ request: Request, context: APIContext) async throws -> EditedResponse<TokenResult> {
        let tenant = try context.requireTenant()
        guard let apiKey = context.apiKey, let key = try await node.directory.key(apiKey) else { throw APIError.unauthorized() }
        let body = try await request.decodeJSON(CreateToken.self)
        guard Identifier.isValid(body.room) else { throw APIError.invalid("`room` must be 1–128 characters without control characters") }
        guard Identifier.isValid(body.peerId) else { throw APIError.invalid("`peerId` must be 1–128 characters without control characters") }
        let ttl = body.ttlSeconds ?? node.configuration.defaultTokenTTL
        guard (1...node.configuration.maxTokenTTL).contains(ttl) else {
            throw APIError.invalid("`ttlSeconds` must be from 1 to \(node.configuration.maxTokenTTL)")
        }
        if let permissions = body.permissions, let unknown = permissions.first(where: { !Permissions.knownNames.contains($0) }) {
            throw APIError.invalid("unknown permission `\(unknown)`")
        }
        let metadata = try validMetadata(body.metadata)
        let now = node.clock.now()
        let expires = Date(timeIntervalSince1970: (now.timeIntervalSince1970 + Double(ttl)).rounded(.down))
        let claims = AccessClaims(
            issuer: key.apiKey, subject: body.peerId, room: body.room, expiresAt: expires, metadata: metadata,
            permissions: body.permissions)
        let token = try await AccessTokens.mint(claims, apiKey: key.apiKey, secret: key.secret)
        _ = tenant
        return EditedResponse(status: .created, response: TokenResult(
            token: token, expiresAt: Timestamp.format(expires), url: node.configuration.signalURL(token: token)))
    }

    @Sendable func turnCredentials(_ request: Request, context: APIContext) async throws -> EditedResponse<TURNResult> {
        let tenant = try context.requireTenant()
        let body = try await request.decodeJSON(CreateTURNCredentials.self, allowEmpty: true)
        let ttl = body.ttlSeconds ?? TURNCredentials.defaultTTL
        guard (1...TURNCredentials.maxTTL).contains(ttl) else {
            throw APIError.invalid("`ttlSeconds` must be from 1 to \(TURNCredentials.maxTTL)")
        }
        let peerId = body.peerId ?? "anonymous"
        guard Identifier.isValid(peerId), !peerId.contains(":") else {
            throw APIError.invalid("`peerId` must be 1–128 characters without control characters or ':'")
        }
        let (credentials, servers) = node.iceServers(tenantID: tenant.id, peerId: peerId, ttl: ttl)
        guard let credentials else { throw APIError.unavailable("no TURN secret is configured on this deployment") }
        return EditedResponse(status: .created, response: TURNResult(
            username: credentials.username, credential: credentials.credential, ttl: credentials.ttl,
            expiresAt: Timestamp.format(credentials.expiresAt), iceServers: servers))
    }

    // MARK: Helpers

    private func room(_ context: APIContext) async throws -> Room {
        let tenant = try context.requireTenant()
        guard let name = context.parameters.get("room"), Identifier.isValid(name) else { throw APIError.notFound("room not found") }
        do {
            guard let room = try await node.store.room(tenantID: tenant.id, name: name) else { throw APIError.notFound("room not found") }
            return room
        } catch let error as StoreError {
            throw APIError(error, what: "room")
        }
    }

    private func validMaxPeers(_ value: Int?) throws -> Int? {
        guard let value else { return nil }
        guard TenantLimits.maxPeersPerRoomRange.contains(value) else {
            throw APIError.invalid("`maxPeers` must be from 1 to \(TenantLimits.maxPeersPerRoomRange.upperBound)")
        }
        return value
    }

    private func validMetadata(_ value: JSONValue?) throws -> RawJSON? {
        guard let value else { return nil }
        guard case .object = value else { throw APIError.invalid("`metadata` must be a JSON object") }
        let raw = try RawJSON(encoding: value)
        guard raw.bytes.count <= 4096 else { throw APIError.invalid("`metadata` exceeds 4 KiB") }
        return raw
    }

    private func view(_ room: Room) async -> RoomView {
        RoomView(
            name: room.name, maxPeers: room.maxPeers, metadata: room.metadata,
            peerCount: await node.presence.peerCount(tenantID: room.tenantID, room: room.name),
            createdAt: Timestamp.format(room.createdAt))
    }

    static func view(_ peer: PeerRecord) -> PeerView {
        PeerView(peerId: peer.peerId, metadata: peer.metadata, sessionId: peer.sessionId, node: peer.node, joinedAt: Timestamp.format(peer.joinedAt))
    }

    static func view(_ event: AuditEvent) -> EventView {
        EventView(
            id: event.id, type: event.type.rawValue, tenant: event.tenantID, time: Timestamp.format(event.time), node: event.node,
            room: event.room, peer: event.peer, session: event.session, data: event.data)
    }
}
