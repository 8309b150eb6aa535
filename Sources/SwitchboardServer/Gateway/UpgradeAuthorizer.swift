import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import Signaling

/// Decides a WebSocket upgrade (SPEC §3): the token, the tenant, the room and the limits,
/// all before the `101`, so a refusal is a plain HTTP error with a JSON body.
struct UpgradeAuthorizer: Sendable {
    let node: Node

    func decide(_ request: HTTPRequest, channel: any Channel) async -> UpgradeDecision {
        do throws(AuthFailure) {
            return .accept(try await authorize(request, remoteAddress: channel.remoteAddress?.ipAddress ?? ""))
        } catch {
            node.metrics.authRejected(error.reason)
            let api = APIError(error)
            return .refuse(status: api.status, body: APIError.body(code: api.code, message: api.message))
        }
    }

    func authorize(_ request: HTTPRequest, remoteAddress: String) async throws(AuthFailure) -> ConnectContext {
        if node.hub.isDraining { throw AuthFailure(.draining, "this node is draining; connect to another") }
        let uri = URI(request.path ?? "")
        let query = uri.queryParameters
        var token = query.get("access_token") ?? ""
        if token.isEmpty, let header = request.headerFields[.authorization], header.lowercased().hasPrefix("bearer ") {
            token = String(header.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
        }
        let userAgent = String((request.headerFields[.userAgent] ?? "").prefix(256))
        let verified: AccessTokens.Verified
        do throws(AuthFailure) {
            verified = try await node.tokens.verify(token)
        } catch {
            if let kid = AccessTokens.keyID(of: token), let key = try? await node.directory.key(kid) {
                // The key is real, so the tenant is known: its audit log gets the rejection.
                node.record(.authRejected, tenantID: key.tenantID, data: [
                    "reason": .string(error.reason.rawValue), "remoteAddress": .string(remoteAddress),
                ])
            }
            throw error
        }
        let claims = verified.claims
        let tenant: Tenant
        do {
            guard let found = try await node.directory.tenant(verified.tenantID) else {
                throw AuthFailure(.unknownKey, "unknown API key")
            }
            tenant = found
        } catch let error as AuthFailure {
            throw error
        } catch {
            throw AuthFailure(.unavailable, "credentials cannot be checked right now")
        }
        func reject(_ failure: AuthFailure) -> AuthFailure {
            node.record(.authRejected, tenantID: tenant.id, room: claims.room, peer: claims.subject, data: [
                "reason": .string(failure.reason.rawValue), "remoteAddress": .string(remoteAddress),
            ])
            return failure
        }
        guard tenant.status == .active else { throw reject(AuthFailure(.tenantSuspended, "the tenant is suspended")) }
        let room: Room
        do {
            guard let found = try await node.roomForJoin(tenant: tenant, name: claims.room) else {
                throw reject(AuthFailure(.roomNotFound, "the room does not exist"))
            }
            room = found
        } catch let error as AuthFailure {
            throw error
        } catch {
            throw AuthFailure(.unavailable, "the room cannot be checked right now")
        }
        let resuming = query.get("resume") == "1" || query.get("resume") == "true"
        // A room's own limit applies, and never above the tenant's.
        let maxPeers = min(room.maxPeers, tenant.limits.maxPeersPerRoom)
        let identity = SessionIdentity(
            sessionId: "S" + ULID.make(at: node.clock.now()), tenantID: tenant.id, apiKey: verified.apiKey, room: room.name,
            peerId: claims.subject, permissions: claims.effectivePermissions, remoteAddress: remoteAddress, userAgent: userAgent)
        let (credentials, servers) = node.iceServers(tenantID: tenant.id, peerId: claims.subject, ttl: node.configuration.turnCredentialTTL)
        let iceServers = (try? RawJSON(encoding: servers)) ?? RawJSON.emptyArray
        let metadata = claims.metadata ?? .emptyObject
        var session: Session?
        if !resuming {
            // The join itself, before the 101: the roster reserves the place in the room and
            // the tenant's connection cluster-wide, so a refusal is a plain HTTP status.
            let heartbeatSeconds = node.configuration.heartbeatSeconds
            let request = JoinRequest(identity: identity, metadata: metadata, maxPeers: maxPeers, maxConnections: tenant.limits.maxConnections)
            switch await node.hub.join(request, welcome: { session, peers in
                .welcome(
                    sessionId: session.id, peerId: session.peerId, room: session.room, peers: peers,
                    iceServers: iceServers, resumeToken: session.resumeToken, heartbeatSeconds: heartbeatSeconds)
            }) {
            case .joined(let joined): session = joined
            case .roomFull: throw reject(AuthFailure(.roomFull, "the room is full"))
            case .tooManyConnections: throw reject(AuthFailure(.tooManyConnections, "the tenant's connection limit is reached"))
            case .draining: throw AuthFailure(.draining, "this node is draining; connect to another")
            case .unavailable: throw AuthFailure(.unavailable, "the room cannot be joined right now; try again")
            }
        }
        return ConnectContext(
            identity: identity, session: session, metadata: metadata, maxPeers: maxPeers, limits: tenant.limits,
            mode: resuming ? .awaitResume : .join, iceServers: iceServers,
            iceServersExpire: credentials?.expiresAt, tokenExpires: claims.expiresAt)
    }
}
