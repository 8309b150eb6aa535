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
        WebhookRoutes(node: node).register(on: group)
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

    struct MessageResult: ResponseEncodable {
        var recipients: Int
    }

    struct TokenResult: ResponseEncodable {
        var token: String
        var expiresAt: String
        var url: String
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
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes)
        guard let name = try body.identifier("name") else { throw body.missing("name") }
        let maxPeers = try body.int("maxPeers", in: TenantLimits.maxPeersPerRoomRange) ?? tenant.limits.maxPeersPerRoom
        let metadata = try body.metadata("metadata") ?? .emptyObject
        let room = Room(tenantID: tenant.id, name: name, maxPeers: maxPeers, metadata: metadata, createdAt: node.clock.now())
        do {
            try await node.store.createRoom(room)
        } catch {
            throw APIError(error, what: "room")
        }
        node.record(.roomCreated, tenantID: tenant.id, room: room.name)
        return EditedResponse(status: .created, response: try await view(room))
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
        for room in page.items { views.append(try await view(room)) }
        return ListResponse(views, next: page.next)
    }

    @Sendable func getRoom(_ request: Request, context: APIContext) async throws -> RoomView {
        try await view(try await room(context))
    }

    @Sendable func updateRoom(_ request: Request, context: APIContext) async throws -> RoomView {
        var room = try await room(context)
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes)
        let maxPeers = try body.int("maxPeers", in: TenantLimits.maxPeersPerRoomRange)
        let metadata = try body.metadata("metadata")
        let before = room
        if let maxPeers { room.maxPeers = maxPeers }
        if let metadata { room.metadata = metadata }
        if room != before {
            do {
                try await node.store.updateRoom(room)
            } catch {
                throw APIError(error, what: "room")
            }
            node.directory.forgetRoom(tenantID: room.tenantID, name: room.name)
        }
        return try await view(room)
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
        let page = try await node.presence.peers(tenantID: room.tenantID, room: room.name, after: after, limit: limit)
        return ListResponse(page.items.map(Self.view), next: page.next)
    }

    @Sendable func kickPeer(_ request: Request, context: APIContext) async throws -> Response {
        let room = try await room(context)
        guard let peerId = context.pathParameter("peer"), Identifier.isValid(peerId),
            try await node.presence.peer(tenantID: room.tenantID, room: room.name, peerId: peerId) != nil
        else {
            throw Self.peerNotFound
        }
        node.bus.publish(.kick(tenantID: room.tenantID, room: room.name, peerId: peerId), to: .control)
        node.record(.peerKicked, tenantID: room.tenantID, room: room.name, peer: peerId)
        return Response(status: .noContent)
    }

    /// A server-side `signal` (with `to`) or `broadcast` (without), `from` = "server".
    @Sendable func sendMessage(_ request: Request, context: APIContext) async throws -> EditedResponse<MessageResult> {
        let room = try await room(context)
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes)
        let to = try body.identifier("to")
        guard let data = body.raw("data") else { throw body.missing("data") }
        // The frame the receivers get: {"type":"signal","from":"server","data":…,"seq":…}.
        let limit = node.configuration.maxFrameBytes - Self.frameOverhead
        guard data.bytes.count <= limit else {
            throw APIError.tooLarge("`data` exceeds \(limit) bytes, the largest that fits in a frame")
        }
        switch await node.hub.sendFromServer(tenantID: room.tenantID, room: room.name, to: to, data: data) {
        case .routed(let recipients, _):
            return EditedResponse(status: .accepted, response: MessageResult(recipients: recipients))
        case .peerNotFound:
            throw Self.peerNotFound
        case .unavailable:
            throw APIError.unavailable("the message could not be delivered; try again")
        }
    }

    /// Room for a relay frame's envelope around `data`.
    static let frameOverhead = 128

    static let peerNotFound = APIError(.notFound, "peer_not_found", "the peer is not in the room")

    // MARK: Audit

    @Sendable func roomEvents(_ request: Request, context: APIContext) async throws -> ListResponse<EventView> {
        let room = try await room(context)
        return try await events(request, tenantID: room.tenantID, room: room.name)
    }

    @Sendable func events(_ request: Request, context: APIContext) async throws -> ListResponse<EventView> {
        let tenant = try context.requireTenant()
        return try await events(request, tenantID: tenant.id, room: try request.identifierFilter("room"))
    }

    private func events(_ request: Request, tenantID: String, room: String?) async throws -> ListResponse<EventView> {
        let (limit, before) = try request.pagination()
        var audit = AuditQuery(tenantID: tenantID, room: room, peer: try request.identifierFilter("peer"), before: before, limit: limit)
        if let type = request.uri.queryParameters.get("type") {
            guard let parsed = AuditEventType(rawValue: type) else { throw APIError.badRequest("unknown event `type`") }
            audit.type = parsed
        }
        audit.since = try request.timeFilter("since")
        audit.until = try request.timeFilter("until")
        do {
            let page = try await node.store.events(audit)
            return ListResponse(page.items.map(Self.view), next: page.next)
        } catch {
            throw APIError(error, what: "event")
        }
    }

    // MARK: Tokens and TURN

    @Sendable func createToken(_ request: Request, context: APIContext) async throws -> EditedResponse<TokenResult> {
        _ = try context.requireTenant()
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes)
        guard let room = try body.identifier("room") else { throw body.missing("room") }
        guard let peerId = try body.identifier("peerId") else { throw body.missing("peerId") }
        let ttl = try body.int("ttlSeconds", in: 1...node.configuration.maxTokenTTL) ?? node.configuration.defaultTokenTTL
        let metadata = try body.metadata("metadata")
        let permissions = try body.strings("permissions")
        if let permissions, let unknown = permissions.first(where: { !Permissions.knownNames.contains($0) }) {
            throw APIError.invalid("unknown permission `\(unknown)`; use `signal` and `broadcast`")
        }
        guard let key = context.key else { throw APIError.unauthorized() }
        let now = node.clock.now()
        let expires = Date(timeIntervalSince1970: (now.timeIntervalSince1970 + Double(ttl)).rounded(.down))
        let claims = AccessClaims(
            issuer: key.apiKey, subject: peerId, room: room, expiresAt: expires, metadata: metadata, permissions: permissions)
        let token = try await AccessTokens.mint(claims, apiKey: key.apiKey, secret: key.secret)
        return EditedResponse(status: .created, response: TokenResult(
            token: token, expiresAt: Timestamp.format(expires), url: node.configuration.signalURL(token: token)))
    }

    /// Without `peerId` the username's peer part is ``anonymousPeer``, so the username keeps
    /// the three-part shape of SPEC §6 a TURN server parses.
    @Sendable func turnCredentials(_ request: Request, context: APIContext) async throws -> EditedResponse<TURNResult> {
        let tenant = try context.requireTenant()
        let body = try await request.jsonBody(maxBytes: node.configuration.maxRequestBodyBytes, allowEmpty: true)
        let peerId = try body.identifier("peerId") ?? Self.anonymousPeer
        let ttl = try body.int("ttlSeconds", in: 1...TURNCredentials.maxTTL) ?? min(node.configuration.turnCredentialTTL, TURNCredentials.maxTTL)
        let (credentials, servers) = node.iceServers(tenantID: tenant.id, peerId: peerId, ttl: ttl)
        guard let credentials else { throw APIError.unavailable("no TURN secret is configured on this deployment") }
        return EditedResponse(status: .created, response: TURNResult(
            username: credentials.username, credential: credentials.credential, ttl: credentials.ttl,
            expiresAt: Timestamp.format(credentials.expiresAt), iceServers: servers))
    }

    static let anonymousPeer = "anonymous"

    // MARK: Helpers

    /// The room named by the path, of the authenticated tenant; 404 otherwise.
    private func room(_ context: APIContext) async throws -> Room {
        let tenant = try context.requireTenant()
        guard let name = context.pathParameter("room"), Identifier.isValid(name) else { throw APIError.notFound("room not found") }
        do {
            guard let room = try await node.store.room(tenantID: tenant.id, name: name) else { throw APIError.notFound("room not found") }
            return room
        } catch let error as StoreError {
            throw APIError(error, what: "room")
        }
    }

    private func view(_ room: Room) async throws -> RoomView {
        RoomView(
            name: room.name, maxPeers: room.maxPeers, metadata: room.metadata,
            peerCount: try await node.presence.peerCount(tenantID: room.tenantID, room: room.name),
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
