import Foundation
import Logging
import NIOCore
import Signaling
import Synchronization

/// The cluster's ``Roster`` on Redis: every operation is one Lua script (``RosterScripts``),
/// sent on the client's one pipelined command connection, so Redis applies them in the
/// order a node sends them; each script publishes its effects to the node channels
/// (`<prefix>:{node:<id>:roster}`) of the sessions concerned.
///
/// Keys (all of a room in one hash slot, for Redis Cluster later; the room name is
/// base64url-encoded so no character of it can end the hash tag):
/// - `<prefix>:{r:<tenant>:<room64>}:peers` — hash peer id → peer record (presence)
/// - `<prefix>:{r:<tenant>:<room64>}:nodes` — hash node → sessions it hosts in the room
/// - `<prefix>:{r:<tenant>:<room64>}:s:<session>` — hash `seq`, `bytes`, `secret` (SHA-1)
/// - `<prefix>:{r:<tenant>:<room64>}:log:<session>` — list of kind byte + frame, capped
/// - `<prefix>:{t:<tenant>}:conns` — the tenant's sessions on every node
public final class RedisRoster: Roster {
    public struct Configuration: Sendable {
        public var prefix: String
        /// Frames and bytes kept per session for resume (the oldest go first).
        public var replayLimits: ReplayBuffer.Limits
        /// How long a session's state and log live without being touched.
        public var stateTTL: Duration

        public init(prefix: String = "sb", replayLimits: ReplayBuffer.Limits = .init(), stateTTL: Duration = .seconds(86_400)) {
            self.prefix = prefix
            self.replayLimits = replayLimits
            self.stateTTL = stateTTL
        }
    }

    public let client: RedisClient
    public let configuration: Configuration
    private let logger: Logger
    private let channelPrefix: RedisArgument
    private let channelSuffix: RedisArgument = ":roster}"
    private let relayQueue = Mutex(RelayQueue())

    public init(client: RedisClient, configuration: Configuration = .init(), logger: Logger) {
        self.client = client
        self.configuration = configuration
        self.logger = logger
        // `<prefix>:{node:<id>` + `}:roster` — the suffix closes the hash tag after the id.
        channelPrefix = RedisArgument("\(configuration.prefix):{node:")
    }

    /// The channel a node's roster events travel on.
    public static func channel(node: String, prefix: String = "sb") -> String {
        "\(prefix):{node:\(node):roster}"
    }

    // MARK: Keys

    struct RoomKeys {
        let prefix: String
        var peers: String { prefix + ":peers" }
        var nodes: String { prefix + ":nodes" }
        func state(_ session: String) -> String { prefix + ":s:" + session }
        func log(_ session: String) -> String { prefix + ":log:" + session }
    }

    func room(_ tenantID: String, _ room: String) -> RoomKeys {
        RoomKeys(prefix: "\(configuration.prefix):{r:\(tenantID):\(Base64URL.encode(Array(room.utf8)))}")
    }

    func connections(_ tenantID: String) -> String {
        "\(configuration.prefix):{t:\(tenantID)}:conns"
    }

    private var ttlMilliseconds: RedisArgument { RedisArgument(Self.milliseconds(configuration.stateTTL)) }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: Roster

    public var isDistributed: Bool { true }

    public func join(_ request: RosterJoin, completion: @escaping @Sendable (Result<RosterJoinOutcome, RosterError>) -> Void) {
        let peer = request.peer
        let keys = room(peer.tenantID, peer.room)
        run(
            RosterScripts.join,
            keys: [keys.peers, keys.nodes, connections(peer.tenantID), keys.state(peer.sessionId), keys.log(peer.sessionId)].map { RedisArgument($0) },
            args: [
                channelPrefix, channelSuffix, RedisArgument(keys.prefix), RedisArgument(peer.tenantID), RedisArgument(peer.room),
                RedisArgument(peer.peerId), RedisArgument(peer.sessionId), RedisArgument(peer.node), RedisArgument(bytes: RosterWire.record(peer)),
                RedisArgument(request.maxPeers), RedisArgument(request.maxConnections), RedisArgument(request.resumeSecret), ttlMilliseconds,
            ], completion: completion) { reply throws(RosterError) in try Self.joinOutcome(reply, peer: peer) }
    }

    static func joinOutcome(_ reply: RedisValue, peer: PeerRecord) throws(RosterError) -> RosterJoinOutcome {
        guard let parts = reply.array, let status = parts.first?.string else { throw Self.unexpected(reply) }
        switch status {
        case "room_full": return .roomFull
        case "too_many_connections": return .tooManyConnections
        case "ok":
            guard parts.count == 3 else { throw Self.unexpected(reply) }
            let replaced = parts[1].bytes.flatMap {
                RosterWire.peer(tenantID: peer.tenantID, room: peer.room, peerId: peer.peerId, record: $0)
            }
            let others = RosterWire.peers(tenantID: peer.tenantID, room: peer.room, flat: parts[2].array ?? [])
                .filter { $0.peerId != peer.peerId }
            return .joined(others: others, replaced: replaced)
        default:
            throw Self.unexpected(reply)
        }
    }

    public func leave(_ session: SessionAddress, reason: LeaveReason, onNode node: String?, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void) {
        leaveIfOn(session, reason: reason, node: node ?? "") { result in completion(result.map { _ in () }) }
    }

    /// `leave`, only if the session is still on `node` ("" for any); answers whether it left.
    func leaveIfOn(_ session: SessionAddress, reason: LeaveReason, node: String, completion: @escaping @Sendable (Result<Bool, RosterError>) -> Void) {
        let keys = room(session.tenantID, session.room)
        run(
            RosterScripts.leave,
            keys: [keys.peers, keys.nodes, connections(session.tenantID), keys.state(session.sessionId), keys.log(session.sessionId)]
                .map { RedisArgument($0) },
            args: [
                channelPrefix, channelSuffix, RedisArgument(session.tenantID), RedisArgument(session.room), RedisArgument(session.peerId),
                RedisArgument(session.sessionId), RedisArgument(reason.rawValue), RedisArgument(node),
            ], completion: completion) { reply throws(RosterError) in reply.int == 1 }
    }

    public func update(_ session: SessionAddress, metadata: RawJSON, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void) {
        let keys = room(session.tenantID, session.room)
        run(
            RosterScripts.update, keys: [RedisArgument(keys.peers), RedisArgument(keys.nodes)],
            args: [
                channelPrefix, channelSuffix, RedisArgument(session.tenantID), RedisArgument(session.room), RedisArgument(session.peerId),
                RedisArgument(session.sessionId), RedisArgument(bytes: metadata.bytes),
            ], completion: completion) { _ throws(RosterError) in () }
    }

    public func resume(_ request: RosterResume, completion: @escaping @Sendable (Result<RosterResumeOutcome, RosterError>) -> Void) {
        let session = request.session
        let keys = room(session.tenantID, session.room)
        run(
            RosterScripts.resume,
            keys: [keys.peers, keys.nodes, keys.state(session.sessionId), keys.log(session.sessionId)].map { RedisArgument($0) },
            args: [
                channelPrefix, channelSuffix, RedisArgument(session.peerId), RedisArgument(session.sessionId),
                RedisArgument(request.resumeSecret), RedisArgument(request.lastSeq), RedisArgument(request.node), ttlMilliseconds,
                RedisArgument(session.tenantID), RedisArgument(session.room),
            ], completion: completion) { reply throws(RosterError) in try Self.resumeOutcome(reply, session: session) }
    }

    static func resumeOutcome(_ reply: RedisValue, session: SessionAddress) throws(RosterError) -> RosterResumeOutcome {
        guard let parts = reply.array, let status = parts.first?.string else { throw Self.unexpected(reply) }
        switch status {
        case "unknown": return .unknownSession
        case "gap": return .gap
        case "ok":
            guard parts.count == 4, let seq = parts[1].int.map(UInt64.init), let entries = parts[2].array else {
                throw Self.unexpected(reply)
            }
            var frames: [LoggedFrame] = []
            frames.reserveCapacity(entries.count)
            for (offset, entry) in entries.enumerated() {
                let entrySeq = seq - UInt64(entries.count - 1 - offset)
                guard let bytes = entry.bytes, let frame = RosterWire.loggedFrame(bytes, seq: entrySeq) else { throw Self.unexpected(reply) }
                frames.append(frame)
            }
            let everyone = RosterWire.peers(tenantID: session.tenantID, room: session.room, flat: parts[3].array ?? [])
            let own = everyone.first { $0.peerId == session.peerId }
            return .resumed(frames: frames, seq: seq, peers: everyone.filter { $0.peerId != session.peerId }, own: own)
        default:
            throw Self.unexpected(reply)
        }
    }

    /// A relay waiting for the batch of its event-loop turn.
    struct PendingRelay {
        var peersKey: RedisArgument
        /// Room key prefix, receiving peer, skipped peer, kind byte, frame prefix, suffix.
        var args: [RedisArgument]
        var completion: @Sendable (Result<RelayReceipt, RosterError>) -> Void
    }

    struct RelayQueue {
        var pending: [PendingRelay] = []
        var flushScheduled = false
    }

    /// Relays are collected and sent as one script call per event-loop turn of the client
    /// (``RosterScripts/relayBatch``): one `EVALSHA` and one publish per destination node
    /// for the whole batch — the Lua call overhead is most of Redis's cost per relay.
    public func relay(_ relay: Relay, completion: @escaping @Sendable (Result<RelayReceipt, RosterError>) -> Void) {
        let keys = room(relay.from.tenantID, relay.from.room)
        let (prefix, suffix) = relay.frameTemplate
        let item = PendingRelay(
            peersKey: RedisArgument(keys.peers),
            args: [
                RedisArgument(keys.prefix), RedisArgument(relay.to ?? ""), RedisArgument(relay.excludedPeer),
                RedisArgument(bytes: [RosterWire.kindByte(relay.kind)]), RedisArgument(bytes: prefix), RedisArgument(bytes: suffix),
            ],
            completion: completion)
        let schedule = relayQueue.withLock { queue -> Bool in
            queue.pending.append(item)
            guard !queue.flushScheduled else { return false }
            queue.flushScheduled = true
            return true
        }
        if schedule {
            client.eventLoop.execute { [self] in flushRelays() }
        }
    }

    /// Sends the collected relays. Runs only on the client's event loop, as does every other
    /// operation's send (each flushing first): so batches and operations reach Redis in the
    /// order they were made, and a relay is never overtaken by a later operation.
    func flushRelays() {
        let batch = relayQueue.withLock { queue -> [PendingRelay] in
            queue.flushScheduled = false
            defer { queue.pending.removeAll(keepingCapacity: true) }
            return queue.pending
        }
        if !batch.isEmpty { send(batch) }
    }

    private func send(_ batch: [PendingRelay]) {
        let limits = configuration.replayLimits
        var args: [RedisArgument] = [channelPrefix, channelSuffix, RedisArgument(limits.maxFrames), RedisArgument(limits.maxBytes), ttlMilliseconds]
        args.reserveCapacity(args.count + batch.count * 6)
        for item in batch { args += item.args }
        evalsha(RosterScripts.relayBatch, keys: batch.map(\.peersKey), args: args).whenComplete { result in
            switch result {
            case .success(let reply):
                guard let entries = reply.array, entries.count == batch.count else {
                    for item in batch { item.completion(.failure(Self.unexpected(reply))) }
                    return
                }
                for (item, entry) in zip(batch, entries) {
                    if entry.int == -1 {
                        item.completion(.failure(RosterError(.peerNotFound, "no such peer in the room")))
                    } else if let parts = entry.array, parts.count == 2, let recipients = parts[0].int, let nodes = parts[1].int {
                        item.completion(.success(RelayReceipt(recipients: Int(recipients), nodes: Int(nodes))))
                    } else {
                        item.completion(.failure(Self.unexpected(entry)))
                    }
                }
            case .failure(let error):
                let failure = Self.rosterError(error)
                for item in batch { item.completion(.failure(failure)) }
            }
        }
    }

    public func peers(tenantID: String, room name: String) async throws(RosterError) -> [PeerRecord] {
        let reply = try await command(["HGETALL", RedisArgument(room(tenantID, name).peers)])
        return RosterWire.peers(tenantID: tenantID, room: name, flat: reply.array ?? [])
    }

    public func connectionCount(tenantID: String) async throws(RosterError) -> Int {
        let reply = try await command(["GET", RedisArgument(connections(tenantID))])
        return reply.string.flatMap(Int.init) ?? 0
    }

    public func subscribe(node: String, _ handler: @escaping @Sendable (RosterEvent) -> Void) async throws(RosterError) -> any BusSubscription {
        let channel = Self.channel(node: node, prefix: configuration.prefix)
        let subscription = client.subscribe(channel) { message in
            for event in RosterWire.decodeEvents(message.payload) { handler(event) }
        }
        // Confirmed once Redis counts the subscriber (events published before are not seen).
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let counted = try? await command(["PUBSUB", "NUMSUB", RedisArgument(channel)])
            if let count = counted?.array?.last?.int, count > 0 { return RosterSubscription(subscription) }
            try? await Task.sleep(for: .milliseconds(10))
        }
        subscription.cancel()
        throw RosterError(.unavailable, "could not subscribe to \(channel)")
    }

    /// The events of one roster channel payload (what ``subscribe(node:_:)`` hands out).
    public static func decodeEvents(_ payload: [UInt8]) -> [RosterEvent] {
        RosterWire.decodeEvents(payload)
    }

    public func restore(_ sessions: [RosterRestore]) async throws(RosterError) -> [String: RosterRestoreOutcome] {
        var outcomes: [String: RosterRestoreOutcome] = [:]
        for session in sessions {
            let peer = session.peer
            let keys = room(peer.tenantID, peer.room)
            let reply = try await withCheckedContinuation { (continuation: CheckedContinuation<Result<RosterRestoreOutcome, RosterError>, Never>) in
                run(
                    RosterScripts.restore,
                    keys: [keys.peers, keys.nodes, connections(peer.tenantID), keys.state(peer.sessionId)].map { RedisArgument($0) },
                    args: [
                        channelPrefix, channelSuffix, RedisArgument(peer.tenantID), RedisArgument(peer.room), RedisArgument(peer.peerId),
                        RedisArgument(peer.sessionId), RedisArgument(peer.node), RedisArgument(bytes: RosterWire.record(peer)),
                        RedisArgument(session.resumeSecret), RedisArgument(session.seq), ttlMilliseconds,
                    ], completion: { continuation.resume(returning: $0) }
                ) { reply throws(RosterError) in
                    guard let outcome = reply.string.flatMap(RosterRestoreOutcome.init(rawValue:)) else { throw Self.unexpected(reply) }
                    return outcome
                }
            }.get()
            outcomes[peer.sessionId] = reply
        }
        return outcomes
    }

    // MARK: Node liveness (issue #13 item 5)

    /// `<prefix>:node:<id>`: present while the node is alive (it re-sets it every beat).
    func liveKey(_ node: String) -> String { "\(configuration.prefix):node:\(node)" }
    /// `<prefix>:nodes`: every node that beat, scored by its last beat (ms since 1970).
    var nodesKey: String { "\(configuration.prefix):nodes" }
    /// The sessions a node hosts (kept by the scripts).
    func sessionsKey(_ node: String) -> String { "\(configuration.prefix):{node:\(node)}:sessions" }

    /// Says this node is alive for `ttl`.
    public func beat(node: String, ttl: Duration, now: Date = Date()) async throws(RosterError) {
        let replies = client.sendBatch([
            ["SET", RedisArgument(liveKey(node)), "1", "PX", RedisArgument(Self.milliseconds(ttl))],
            ["ZADD", RedisArgument(nodesKey), RedisArgument(Int64(now.timeIntervalSince1970 * 1000)), RedisArgument(node)],
        ])
        do {
            for reply in replies { _ = try await reply.get() }
        } catch {
            throw Self.rosterError(error)
        }
    }

    /// Says this node is gone (a clean stop): the others need not wait for its key to expire.
    public func depart(node: String) async throws(RosterError) {
        _ = try await command(["DEL", RedisArgument(liveKey(node))])
    }

    /// A dead node: its key expired (or it departed) but it is still listed.
    public struct DeadNode: Sendable, Equatable {
        public var id: String
        public var lastBeat: Date
    }

    /// Nodes listed in `<prefix>:nodes` whose liveness key is gone, but `except`.
    public func deadNodes(except node: String) async throws(RosterError) -> [DeadNode] {
        let listed = try await command(["ZRANGE", RedisArgument(nodesKey), "0", "-1", "WITHSCORES"]).array ?? []
        var dead: [DeadNode] = []
        var index = 0
        while index + 1 < listed.count {
            defer { index += 2 }
            guard let id = listed[index].string, id != node, let score = listed[index + 1].string.flatMap(Double.init) else { continue }
            let alive = try await command(["EXISTS", RedisArgument(liveKey(id))]).int ?? 0
            if alive == 0 { dead.append(DeadNode(id: id, lastBeat: Date(timeIntervalSince1970: score / 1000))) }
        }
        return dead
    }

    /// Ends every session a dead node still hosts — those that did not resume elsewhere —
    /// with `node-failure` (the rooms hear it), then forgets the node. Only one reaper wins
    /// a node (`SET NX`); returns how many sessions it ended, or nil when another reaper has it.
    public func reap(_ dead: String, by reaper: String) async throws(RosterError) -> Int? {
        let lock = try await command(["SET", RedisArgument("\(configuration.prefix):reap:\(dead)"), RedisArgument(reaper), "NX", "PX", "60000"])
        guard lock.string == "OK" else { return nil }
        let members = try await command(["SMEMBERS", RedisArgument(sessionsKey(dead))]).array ?? []
        var ended = 0
        for member in members {
            guard let bytes = member.bytes else { continue }
            var reader = RosterWire.Reader(bytes)
            guard let tenant = reader.string(), let room = reader.string(), let peer = reader.string(), let session = reader.string() else { continue }
            let address = SessionAddress(tenantID: tenant, room: room, peerId: peer, sessionId: session)
            let left = await withCheckedContinuation { continuation in
                leaveIfOn(address, reason: .nodeFailure, node: dead) { continuation.resume(returning: $0) }
            }
            if case .success(true) = left { ended += 1 }
        }
        _ = try await command(["DEL", RedisArgument(sessionsKey(dead))])
        _ = try await command(["ZREM", RedisArgument(nodesKey), RedisArgument(dead)])
        return ended
    }

    // MARK: Plumbing

    /// `EVALSHA`, loading the script first when Redis does not have it (a restarted server).
    private func evalsha(_ script: RedisScript, keys: [RedisArgument], args: [RedisArgument]) -> EventLoopFuture<RedisValue> {
        let command: [RedisArgument] = ["EVALSHA", RedisArgument(script.sha1), RedisArgument(keys.count)] + keys + args
        let client = self.client
        return client.send(command).flatMapError { error in
            guard let error = error as? RedisError, error.serverErrorPrefix == "NOSCRIPT" else {
                return client.eventLoop.makeFailedFuture(error)
            }
            let replies = client.sendBatch([["SCRIPT", "LOAD", RedisArgument(script.source)], command])
            return replies[1]
        }
    }

    /// Runs a script and hands `completion` what `decode` makes of its reply.
    private func run<T: Sendable>(
        _ script: RedisScript, keys: [RedisArgument], args: [RedisArgument],
        completion: @escaping @Sendable (Result<T, RosterError>) -> Void,
        decode: @escaping @Sendable (RedisValue) throws(RosterError) -> T
    ) {
        // On the client's event loop, after the relays made before this operation.
        client.eventLoop.execute { [self] in
            flushRelays()
            evalsha(script, keys: keys, args: args).whenComplete { result in
                switch result {
                case .success(let reply):
                    do throws(RosterError) {
                        completion(.success(try decode(reply)))
                    } catch {
                        completion(.failure(error))
                    }
                case .failure(let error):
                    completion(.failure(Self.rosterError(error)))
                }
            }
        }
    }

    private func command(_ args: [RedisArgument]) async throws(RosterError) -> RedisValue {
        do {
            return try await client.send(args).get()
        } catch {
            throw Self.rosterError(error)
        }
    }

    static func rosterError(_ error: any Error) -> RosterError {
        guard let error = error as? RedisError else { return RosterError(.unavailable, "\(error)") }
        if error.code == .timeout { return RosterError(.timedOut, error.message) }
        return RosterError(.unavailable, error.description)
    }

    static func unexpected(_ reply: RedisValue) -> RosterError {
        RosterError(.unavailable, "unexpected reply from Redis: \(reply)")
    }
}

/// Ends a roster subscription.
struct RosterSubscription: BusSubscription {
    let subscription: RedisSubscription
    init(_ subscription: RedisSubscription) { self.subscription = subscription }
    func cancel() { subscription.cancel() }
}
