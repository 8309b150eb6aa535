import Foundation
import Logging
import Synchronization
import Testing

@testable import Signaling

/// A wall clock that moves only when a test moves it.
final class TestClock: WallClock {
    static let start = Date(timeIntervalSince1970: 1_700_000_000)

    private let date = Mutex(TestClock.start)

    func now() -> Date { date.withLock { $0 } }

    func advance(by seconds: TimeInterval) {
        date.withLock { $0 = $0.addingTimeInterval(seconds) }
    }
}

/// Messages a bus subscriber got.
final class BusInbox: Sendable {
    private let messages = Mutex<[BusMessage]>([])

    func append(_ message: BusMessage) { messages.withLock { $0.append(message) } }

    var all: [BusMessage] { messages.withLock { $0 } }
}

/// Stands between the roster and a hub: can lose the next `deliver` of a session, as a lost
/// subscription message would, and can hold the delivering thread (``gate``).
final class EventTap: Sendable {
    private let losing = Mutex<[String: Int]>([:])
    let gate = EventGate()

    /// The next `count` deliveries to `sessionId` never reach the hub.
    func lose(next count: Int = 1, deliveriesTo sessionId: String) {
        losing.withLock { $0[sessionId, default: 0] += count }
    }

    /// Whether `event` passes (after the gate let it through).
    func pass(_ event: RosterEvent) -> Bool {
        gate.pass(event)
        guard case .deliver(let sessionId, _, _) = event else { return true }
        return losing.withLock { losing in
            guard let count = losing[sessionId], count > 0 else { return true }
            losing[sessionId] = count > 1 ? count - 1 : nil
            return false
        }
    }
}

/// Holds the thread delivering roster events to a hub, at the first event an armed
/// predicate matches, until ``release()`` — as a slow subscriber or a delayed network hop
/// would. Only ever armed for events delivered on a ``SideThread``.
final class EventGate: Sendable {
    private struct State {
        var predicate: (@Sendable (RosterEvent) -> Bool)?
        var reached = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    private let semaphore = DispatchSemaphore(value: 0)

    func arm(_ predicate: @escaping @Sendable (RosterEvent) -> Bool) {
        state.withLock { $0.predicate = predicate }
    }

    /// On the delivering thread: blocks there if `event` is the armed one.
    func pass(_ event: RosterEvent) {
        let matched = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard let predicate = state.predicate, predicate(event) else { return (false, nil) }
            state.predicate = nil
            state.reached = true
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        guard matched.0 else { return }
        matched.1?.resume()
        semaphore.wait()
    }

    /// Returns once a thread is held.
    func reached() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.reached { return true }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() { semaphore.signal() }
}

/// Runs a body that may block on a thread of its own; ``finished()`` waits for it.
final class SideThread: Sendable {
    private struct State {
        var done = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    private init() {}

    static func start(_ body: @escaping @Sendable () -> Void) -> SideThread {
        let side = SideThread()
        let thread = Thread {
            body()
            side.finish()
        }
        thread.start()
        return side
    }

    private func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.done = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func finished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.done { return true }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// An ``InMemoryRoster`` whose join and resume can be interleaved with other operations:
/// `before` runs before the operation is applied, `after` once it is applied but before
/// its caller hears the answer (as when a Redis reply is still on its way).
final class HookedRoster: Roster {
    typealias Hook = @Sendable () -> Void

    struct Hooks {
        var beforeJoin: [String: Hook] = [:]
        var afterJoin: [String: Hook] = [:]
        var beforeResume: [String: Hook] = [:]
        var afterResume: [String: Hook] = [:]
        var failing: [Operation: RosterError.Code] = [:]
        var distributed = false
        /// What ``restore(_:)`` answers per session id instead of the inner roster (unlisted: `kept`).
        var restoreAnswers: [String: RosterRestoreOutcome]?
        var restoreRequests: [[RosterRestore]] = []
    }

    enum Operation: Hashable {
        case join, leave, update, resume, relay
    }

    let inner: InMemoryRoster
    private let hooks = Mutex(Hooks())

    init(_ inner: InMemoryRoster) {
        self.inner = inner
    }

    /// From now on `operation` fails with `code` without being applied (nil: works again).
    func fail(_ operation: Operation, with code: RosterError.Code?) {
        hooks.withLock { $0.failing[operation] = code }
    }

    /// Claims to cross the network, as a cluster's roster does.
    func claimDistributed() {
        hooks.withLock { $0.distributed = true }
    }

    /// From now on ``restore(_:)`` answers with `answers` (unlisted sessions: `kept`).
    func answerRestore(_ answers: [String: RosterRestoreOutcome]) {
        hooks.withLock { $0.restoreAnswers = answers }
    }

    /// Every ``restore(_:)`` call so far.
    var restoreRequests: [[RosterRestore]] { hooks.withLock { $0.restoreRequests } }

    private func failure(_ operation: Operation) -> RosterError? {
        hooks.withLock { $0.failing[operation] }.map { RosterError($0, "failing on purpose") }
    }

    /// Runs `before`/`after` around the next join of `peerId`.
    func aroundJoin(of peerId: String, before: Hook? = nil, after: Hook? = nil) {
        hooks.withLock { hooks in
            hooks.beforeJoin[peerId] = before
            hooks.afterJoin[peerId] = after
        }
    }

    /// Runs `before`/`after` around the next resume of `peerId`.
    func aroundResume(of peerId: String, before: Hook? = nil, after: Hook? = nil) {
        hooks.withLock { hooks in
            hooks.beforeResume[peerId] = before
            hooks.afterResume[peerId] = after
        }
    }

    private func take(_ path: WritableKeyPath<Hooks, [String: Hook]>, _ peerId: String) -> Hook? {
        hooks.withLock { hooks in
            defer { hooks[keyPath: path][peerId] = nil }
            return hooks[keyPath: path][peerId]
        }
    }

    var isDistributed: Bool { hooks.withLock { $0.distributed } || inner.isDistributed }

    func join(_ request: RosterJoin, completion: @escaping @Sendable (Result<RosterJoinOutcome, RosterError>) -> Void) {
        if let error = failure(.join) { return completion(.failure(error)) }
        take(\.beforeJoin, request.peer.peerId)?()
        let outcome = inner.joinNow(request)
        take(\.afterJoin, request.peer.peerId)?()
        completion(.success(outcome))
    }

    func leave(_ session: SessionAddress, reason: LeaveReason, onNode node: String?, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void) {
        if let error = failure(.leave) { return completion(.failure(error)) }
        inner.leave(session, reason: reason, onNode: node, completion: completion)
    }

    func update(_ session: SessionAddress, metadata: RawJSON, completion: @escaping @Sendable (Result<Void, RosterError>) -> Void) {
        if let error = failure(.update) { return completion(.failure(error)) }
        inner.update(session, metadata: metadata, completion: completion)
    }

    func resume(_ request: RosterResume, completion: @escaping @Sendable (Result<RosterResumeOutcome, RosterError>) -> Void) {
        if let error = failure(.resume) { return completion(.failure(error)) }
        take(\.beforeResume, request.session.peerId)?()
        let outcome = inner.resumeNow(request)
        take(\.afterResume, request.session.peerId)?()
        completion(.success(outcome))
    }

    func relay(_ relay: Relay, completion: @escaping @Sendable (Result<RelayReceipt, RosterError>) -> Void) {
        if let error = failure(.relay) { return completion(.failure(error)) }
        inner.relay(relay, completion: completion)
    }

    func peers(tenantID: String, room: String) async throws(RosterError) -> [PeerRecord] {
        try await inner.peers(tenantID: tenantID, room: room)
    }

    func connectionCount(tenantID: String) async throws(RosterError) -> Int {
        try await inner.connectionCount(tenantID: tenantID)
    }

    func subscribe(node: String, _ handler: @escaping @Sendable (RosterEvent) -> Void) async throws(RosterError) -> any BusSubscription {
        try await inner.subscribe(node: node, handler)
    }

    func restore(_ sessions: [RosterRestore]) async throws(RosterError) -> [String: RosterRestoreOutcome] {
        let answers = hooks.withLock { hooks in
            hooks.restoreRequests.append(sessions)
            return hooks.restoreAnswers
        }
        guard let answers else { return try await inner.restore(sessions) }
        return Dictionary(sessions.map { ($0.peer.sessionId, answers[$0.peer.sessionId] ?? .kept) }, uniquingKeysWith: { first, _ in first })
    }
}

/// A session in a test, with the transport that records what it was sent.
struct Member {
    var session: Session
    var transport: RecordingTransport
}

/// A hub (node `node-a` unless told) on an ``InMemoryRoster`` it is subscribed to, with an
/// audit buffer and a settable clock. Hubs made with the same `roster` are the nodes of one
/// cluster.
final class HubHarness: Sendable {
    static let resumeWindow: TimeInterval = 30
    static let attachTimeout: TimeInterval = 10

    let hub: Hub
    let roster: HookedRoster
    let audit: AuditBuffer
    let clock: TestClock
    let tap: EventTap
    private let subscription: any BusSubscription

    init(
        nodeID: String = "node-a", roster: InMemoryRoster = InMemoryRoster(), clock: TestClock = TestClock()
    ) async throws {
        let hooked = HookedRoster(roster)
        let audit = AuditBuffer(capacity: 1000)
        let hub = Hub(
            configuration: Hub.Configuration(nodeID: nodeID, resumeWindow: Self.resumeWindow, attachTimeout: Self.attachTimeout),
            roster: hooked, audit: audit, clock: clock, logger: Logger(label: "test"))
        let tap = EventTap()
        self.subscription = try await hooked.subscribe(node: nodeID) { event in
            if tap.pass(event) { hub.handle(event) }
        }
        self.hub = hub
        self.roster = hooked
        self.audit = audit
        self.clock = clock
        self.tap = tap
    }

    deinit { subscription.cancel() }

    /// Another node of the same cluster: same roster and clock.
    func sibling(_ nodeID: String) async throws -> HubHarness {
        try await HubHarness(nodeID: nodeID, roster: roster.inner, clock: clock)
    }

    /// The in-memory roster underneath (for operations of peers no hub here hosts).
    var inner: InMemoryRoster { roster.inner }

    static func identity(_ peer: String, tenant: String = "acme", room: String = "lobby", apiKey: String = "AK1") -> SessionIdentity {
        SessionIdentity(
            sessionId: "S-\(tenant)-\(room)-\(peer)-\(UUID().uuidString)", tenantID: tenant, apiKey: apiKey, room: room, peerId: peer,
            permissions: .default, remoteAddress: "203.0.113.7", userAgent: "tests/1.0")
    }

    static func welcome(_ session: Session, _ peers: [PeerSummary]) -> ServerMessage {
        .welcome(
            sessionId: session.id, peerId: session.peerId, room: session.room, peers: peers, iceServers: .emptyArray,
            resumeToken: session.resumeToken, heartbeatSeconds: 20)
    }

    /// Asks the hub to join `peer` (no transport yet).
    func attempt(
        _ peer: String, tenant: String = "acme", room: String = "lobby", apiKey: String = "AK1", metadata: RawJSON = .emptyObject,
        maxPeers: Int = 100, maxConnections: Int = 10_000
    ) async -> JoinOutcome {
        let request = JoinRequest(
            identity: Self.identity(peer, tenant: tenant, room: room, apiKey: apiKey), metadata: metadata, maxPeers: maxPeers,
            maxConnections: maxConnections)
        return await hub.join(request, welcome: Self.welcome)
    }

    /// Joins `peer`, which must succeed, without attaching a transport.
    func reserve(
        _ peer: String, tenant: String = "acme", room: String = "lobby", apiKey: String = "AK1", metadata: RawJSON = .emptyObject,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Session {
        let outcome = await attempt(peer, tenant: tenant, room: room, apiKey: apiKey, metadata: metadata)
        guard case .joined(let session) = outcome else {
            Issue.record("join of \(peer) was refused: \(outcome)", sourceLocation: sourceLocation)
            throw HarnessError.refused
        }
        return session
    }

    /// Joins `peer` and attaches a recording transport; both must succeed.
    func join(
        _ peer: String, tenant: String = "acme", room: String = "lobby", apiKey: String = "AK1", metadata: RawJSON = .emptyObject,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Member {
        let session = try await reserve(peer, tenant: tenant, room: room, apiKey: apiKey, metadata: metadata, sourceLocation: sourceLocation)
        let transport = RecordingTransport()
        guard hub.attach(session, transport: transport) else {
            Issue.record("attach of \(peer) failed", sourceLocation: sourceLocation)
            throw HarnessError.refused
        }
        return Member(session: session, transport: transport)
    }

    /// Resumes with `token` on a new transport, as `peer` of `tenant`/`room`.
    func resume(
        token: String, lastSeq: UInt64, peer: String, tenant: String = "acme", room: String = "lobby", apiKey: String = "AK1"
    ) async -> (ResumeOutcome, RecordingTransport) {
        let transport = RecordingTransport()
        let identity = Self.identity(peer, tenant: tenant, room: room, apiKey: apiKey)
        let outcome = await withCheckedContinuation { continuation in
            hub.resume(token: token, lastSeq: lastSeq, identity: identity, transport: transport) { continuation.resume(returning: $0) }
        }
        return (outcome, transport)
    }

    /// Resumes `member`'s session on a new transport.
    func resume(_ member: Member, lastSeq: UInt64) async -> (ResumeOutcome, RecordingTransport) {
        await resume(
            token: member.session.resumeToken, lastSeq: lastSeq, peer: member.session.peerId, tenant: member.session.tenantID,
            room: member.session.room, apiKey: member.session.identity.apiKey)
    }

    /// Resumes `member`, which must succeed; returns the member as it now is.
    func resumed(_ member: Member, lastSeq: UInt64, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Member {
        let (outcome, transport) = await resume(member, lastSeq: lastSeq)
        guard case .resumed(let session, _) = outcome else {
            Issue.record("resume of \(member.session.peerId) failed: \(outcome)", sourceLocation: sourceLocation)
            throw HarnessError.refused
        }
        return Member(session: session, transport: transport)
    }

    func signal(from sender: Member, to peer: String, data: RawJSON = .null) async -> RouteOutcome {
        await withCheckedContinuation { continuation in
            hub.signal(from: sender.session, to: peer, data: data) { continuation.resume(returning: $0) }
        }
    }

    func broadcast(from sender: Member, data: RawJSON = .null) async -> RouteOutcome {
        await withCheckedContinuation { continuation in
            hub.broadcast(from: sender.session, data: data) { continuation.resume(returning: $0) }
        }
    }

    /// A peer that no hub of this test hosts joins the room through the roster (as if on
    /// node `node`).
    @discardableResult
    func remoteJoin(_ peer: String, tenant: String = "acme", room: String = "lobby", node: String = "node-z", metadata: RawJSON = .emptyObject) -> PeerRecord {
        let record = PeerRecord(
            tenantID: tenant, room: room, peerId: peer, metadata: metadata, sessionId: "S-remote-\(peer)-\(UUID().uuidString)", node: node,
            joinedAt: TestClock.start)
        _ = inner.joinNow(RosterJoin(peer: record, resumeSecret: "secret", maxPeers: 100, maxConnections: 10_000))
        return record
    }

    func remoteLeave(_ record: PeerRecord, reason: LeaveReason = .left) {
        inner.leaveNow(SessionAddress(tenantID: record.tenantID, room: record.room, peerId: record.peerId, sessionId: record.sessionId), reason: reason)
    }

    /// Audit events recorded so far, oldest first.
    var auditEvents: [AuditEvent] { audit.peek(max: 10_000) }

    enum HarnessError: Error {
        case refused
    }
}

extension JoinOutcome {
    var isJoined: Bool { if case .joined = self { true } else { false } }
    var isRoomFull: Bool { if case .roomFull = self { true } else { false } }
    var isTooManyConnections: Bool { if case .tooManyConnections = self { true } else { false } }
    var isDraining: Bool { if case .draining = self { true } else { false } }
}

extension ResumeOutcome {
    var isUnknownSession: Bool { if case .unknownSession = self { true } else { false } }
    var isGap: Bool { if case .gap = self { true } else { false } }
    var isUnavailable: Bool { if case .unavailable = self { true } else { false } }

    /// The replayed count of a successful resume.
    var replayed: Int? { if case .resumed(_, let replayed) = self { replayed } else { nil } }

    /// The session of a successful resume.
    var session: Session? { if case .resumed(let session, _) = self { session } else { nil } }
}

extension ServerEvent {
    /// A relayed message as (kind, from, data text, seq), for compact expectations.
    var relay: Relayed? {
        if case .relay(let kind, let from, let data, let seq) = self { Relayed(kind, from, data.description, seq) } else { nil }
    }

    var errorCode: String? { if case .error(let code, _, _) = self { code } else { nil } }

    var welcome: Welcome? { if case .welcome(let welcome) = self { welcome } else { nil } }
}

/// A relayed message, compared as a value.
struct Relayed: Equatable, CustomStringConvertible {
    var kind: RelayKind
    var from: String
    var data: String
    var seq: UInt64

    init(_ kind: RelayKind, _ from: String, _ data: String, _ seq: UInt64) {
        self.kind = kind
        self.from = from
        self.data = data
        self.seq = seq
    }

    var description: String { "\(kind.rawValue)(\(from), \(data), #\(seq))" }
}

extension RawJSON {
    /// A JSON integer.
    static func number(_ value: Int) -> RawJSON {
        RawJSON(validated: Array(String(value).utf8), kind: .number)
    }
}

extension AuditEvent {
    /// The event's data as a value tree.
    var values: [String: JSONValue] {
        if case .object(let object) = (try? data.decode(JSONValue.self)) { object } else { [:] }
    }
}
