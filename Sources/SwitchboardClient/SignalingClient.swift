import Foundation
import Logging
import NIOCore
import NIOWebSocket
import Signaling
import Synchronization
import WSClient

/// What a ``SignalingClient`` tells its user, in order.
public enum ClientEvent: Sendable, Equatable {
    /// Joined: the session, the peers already there, ICE servers.
    case welcome(ServerEvent.Welcome)
    case peerJoined(PeerSummary)
    case peerLeft(peerId: String, reason: String)
    case peerUpdated(PeerSummary)
    /// A `signal` or `broadcast`, each delivered exactly once and in `seq` order.
    case message(RelayKind, from: String, data: RawJSON, seq: UInt64)
    case ack(id: RawJSON)
    case error(code: String, message: String, ref: RawJSON?)
    case pong(id: RawJSON?)
    case iceServers(RawJSON)
    /// The socket dropped; the client is reconnecting to resume the session.
    case reconnecting
    /// Resumed after a drop: `replayed` messages follow; `peers` is the room now.
    case resumed(replayed: Int, peers: [PeerSummary])
    /// The session is over: left, kicked, replaced, expired, or the server refused.
    case closed(code: Int?, reason: String)
}

/// A Swift client for Switchboard's WebSocket protocol (SPEC §3): join, signal, broadcast,
/// update, ping, leave, and automatic resume after a dropped socket (also after a drain's
/// `reconnect`), so no message is lost or seen twice.
///
/// ``run()`` owns the connection for the session's whole life and returns when it ends;
/// run it in a task you own and read ``events`` alongside:
///
/// ```swift
/// let client = SignalingClient(url: tokenResponse.url)
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await client.run() }
///     for await event in client.events { … }
/// }
/// ```
public final class SignalingClient: Sendable {
    public struct Configuration: Sendable {
        /// How long to keep trying to resume after a drop (the server's resume window).
        public var resumeWindow: Duration = .seconds(30)
        /// First reconnect delay; doubles up to ``maxBackoff``.
        public var initialBackoff: Duration = .milliseconds(100)
        public var maxBackoff: Duration = .seconds(2)
        /// Largest frame accepted from the server.
        public var maxFrameSize = 1 << 20
        public init() {}
    }

    /// A request that could not be sent.
    public struct NotConnected: Error, Sendable {}

    public let events: AsyncStream<ClientEvent>
    private let continuation: AsyncStream<ClientEvent>.Continuation
    /// Where to connect: the first URL, then the next one at each reconnect (a client's
    /// own failover list; behind a load balancer there is one).
    private let urls: [String]
    /// Supplies a fresh access token when the server ends a connection for an expired one.
    private let tokenProvider: (@Sendable () async throws -> String)?
    private let configuration: Configuration
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var outbound: WebSocketOutboundWriter?
        var resumeToken: String?
        var sessionId: String?
        var peerId: String?
        /// The highest `seq` handed to the user.
        var lastSeq: UInt64 = 0
        var finished = false
        var leaving = false
        var closeCode: Int?
        var closeReason = ""
        var retryAfter: Duration?
        var resumeFailed = false
        /// Set by `welcome`/`resumed`: the connection that just ended had a live session.
        var established = false
        /// The server said the access token expired.
        var tokenExpired = false
        /// A fresh token from the provider, used from the next connection on.
        var freshToken: String?
        /// Connections attempted so far (picks the URL).
        var attempts = 0
    }

    /// - Parameter url: the signaling URL with its access token
    ///   (`ws://host/v1/signal?access_token=…`, as `POST /v1/tokens` returns it).
    /// - Parameter tokenProvider: called for a fresh access token when the server closes the
    ///   connection because the token expired; the session then resumes with it.
    public convenience init(
        url: String, configuration: Configuration = .init(), logger: Logger = Logger(label: "switchboard.client"),
        tokenProvider: (@Sendable () async throws -> String)? = nil
    ) {
        self.init(urls: [url], configuration: configuration, logger: logger, tokenProvider: tokenProvider)
    }

    /// - Parameter urls: signaling URLs of several nodes (each with its access token): the
    ///   first is used first, each reconnect (a resume) takes the next.
    public init(
        urls: [String], configuration: Configuration = .init(), logger: Logger = Logger(label: "switchboard.client"),
        tokenProvider: (@Sendable () async throws -> String)? = nil
    ) {
        precondition(!urls.isEmpty, "at least one URL")
        self.urls = urls
        self.tokenProvider = tokenProvider
        self.configuration = configuration
        self.logger = logger
        (events, continuation) = AsyncStream.makeStream(of: ClientEvent.self, bufferingPolicy: .unbounded)
    }

    /// The session id once welcomed.
    public var sessionId: String? { state.withLock { $0.sessionId } }
    /// The last `seq` delivered to ``events``.
    public var lastSeq: UInt64 { state.withLock { $0.lastSeq } }
    public var isConnected: Bool { state.withLock { $0.outbound != nil } }

    // MARK: Running

    /// Connects, joins, and keeps the session alive across dropped sockets until it ends.
    /// Returns when the session is over; ``events`` finishes then.
    public func run() async throws {
        defer { continuation.finish() }
        var resuming = false
        var dropStarted: ContinuousClock.Instant?
        var backoff = configuration.initialBackoff
        while true {
            do {
                let close = try await connectOnce(resuming: resuming)
                state.withLock { state in
                    state.closeCode = close.map { Self.number($0.closeCode) }
                    state.closeReason = close?.reason ?? ""
                }
            } catch {
                logger.debug("connection failed", metadata: ["error": "\(error)"])
                if !resuming, state.withLock({ $0.resumeToken == nil }) {
                    // Never joined: nothing to resume.
                    continuation.yield(.closed(code: nil, reason: "connection failed: \(error)"))
                    throw error
                }
            }
            let (finished, code, reason, canResume, retryAfter) = state.withLock { state in
                state.outbound = nil
                if state.established {
                    state.established = false
                    dropStarted = nil
                    backoff = configuration.initialBackoff
                }
                let retryAfter = state.retryAfter
                state.retryAfter = nil
                return (
                    state.finished || state.leaving, state.closeCode, state.closeReason,
                    state.resumeToken != nil && !state.resumeFailed, retryAfter
                )
            }
            let tokenExpired = state.withLock { state in
                defer { state.tokenExpired = false }
                return state.tokenExpired
            }
            if tokenExpired, !finished, canResume, let tokenProvider {
                let token = try await tokenProvider()
                state.withLock { $0.freshToken = token }
            } else if finished || !canResume || !Self.isResumable(code) {
                state.withLock { $0.finished = true }
                continuation.yield(.closed(code: code, reason: reason.isEmpty ? Self.describe(code) : reason))
                return
            }
            let now = ContinuousClock.now
            let started = dropStarted ?? now
            dropStarted = started
            guard now - started < configuration.resumeWindow else {
                continuation.yield(.closed(code: code, reason: "could not resume within the resume window"))
                return
            }
            if !resuming { continuation.yield(.reconnecting) }
            resuming = true
            try await Task.sleep(for: retryAfter ?? backoff)
            backoff = min(backoff * 2, configuration.maxBackoff)
        }
    }

    private func connectOnce(resuming: Bool) async throws -> WebSocketCloseFrame? {
        var configuration = WebSocketClientConfiguration()
        configuration.maxFrameSize = self.configuration.maxFrameSize
        let url = state.withLock { state in
            defer { state.attempts += 1 }
            return urls[state.attempts % urls.count]
        }
        var base = url
        if let token = state.withLock({ $0.freshToken }) {
            base = Self.replacingToken(in: url, with: token)
        }
        let target = resuming ? Self.appendingQuery(base, "resume=1") : base
        return try await WebSocketClient.connect(url: target, configuration: configuration, logger: logger) { inbound, outbound, _ in
            if resuming {
                let (token, lastSeq) = self.state.withLock { ($0.resumeToken ?? "", $0.lastSeq) }
                var writer = JSONWriter()
                writer.beginObject()
                writer.field("type", "resume")
                writer.field("resumeToken", token)
                writer.field("lastSeq", lastSeq)
                writer.endObject()
                try await outbound.writeTextMessage(String(decoding: writer.bytes, as: UTF8.self))
            }
            self.state.withLock { $0.outbound = outbound }
            for try await message in inbound.messages(maxSize: self.configuration.maxFrameSize) {
                guard case .text(let text) = message else { continue }
                if self.handle(Array(text.utf8)) {
                    try await outbound.close(WebSocketErrorCode(codeNumber: Self.reconnectCloseCode), reason: "reconnecting")
                    break
                }
            }
            self.state.withLock { $0.outbound = nil }
        }
    }

    /// Handles one frame; true when the connection should be dropped to reconnect.
    private func handle(_ frame: [UInt8]) -> Bool {
        let event: ServerEvent
        do {
            event = try ServerEvent.decode(frame)
        } catch {
            logger.warning("undecodable frame from the server", metadata: ["error": "\(error.message)"])
            return false
        }
        switch event {
        case .welcome(let welcome):
            state.withLock { state in
                state.resumeToken = welcome.resumeToken
                state.sessionId = welcome.sessionId
                state.peerId = welcome.peerId
                state.lastSeq = 0
                state.established = true
            }
            continuation.yield(.welcome(welcome))
        case .resumed(_, let replayed, let peers):
            state.withLock { $0.established = true }
            continuation.yield(.resumed(replayed: replayed, peers: peers))
        case .relay(let kind, let from, let data, let seq):
            // Exactly once: a replay may overlap what was already delivered.
            let fresh = state.withLock { state -> Bool in
                guard seq > state.lastSeq else { return false }
                state.lastSeq = seq
                return true
            }
            if fresh { continuation.yield(.message(kind, from: from, data: data, seq: seq)) }
        case .peerJoined(let peer): continuation.yield(.peerJoined(peer))
        case .peerLeft(let peerId, let reason): continuation.yield(.peerLeft(peerId: peerId, reason: reason))
        case .peerUpdated(let peer): continuation.yield(.peerUpdated(peer))
        case .ack(let id): continuation.yield(.ack(id: id))
        case .error(let code, let message, let ref):
            if code == "replaced" || message.hasPrefix("resume failed") {
                state.withLock { $0.resumeFailed = true }
            }
            if code == "forbidden", message.hasPrefix("token expired") {
                state.withLock { $0.tokenExpired = true }
            }
            continuation.yield(.error(code: code, message: message, ref: ref))
        case .pong(let id): continuation.yield(.pong(id: id))
        case .iceServers(let servers): continuation.yield(.iceServers(servers))
        case .reconnect(_, let retryAfterMs):
            // The node is draining: reconnect (with resume) after the hinted delay.
            state.withLock { state in
                state.retryAfter = .milliseconds(retryAfterMs)
                state.closeCode = Self.reconnectCloseCode
            }
            return true
        case .unknown:
            break
        }
        return false
    }

    // MARK: Requests

    /// Sends `data` to peer `to`; with an `id`, the server answers `ack` or `error` with that ref.
    public func signal(to peerId: String, data: RawJSON, id: String? = nil) async throws {
        var writer = JSONWriter(capacity: data.bytes.count + 64)
        writer.beginObject()
        writer.field("type", "signal")
        writer.field("to", peerId)
        if let id { writer.field("id", id) }
        writer.field("data", data)
        writer.endObject()
        try await send(writer.bytes)
    }

    /// Sends `data` to every other peer in the room.
    public func broadcast(data: RawJSON, id: String? = nil) async throws {
        var writer = JSONWriter(capacity: data.bytes.count + 48)
        writer.beginObject()
        writer.field("type", "broadcast")
        if let id { writer.field("id", id) }
        writer.field("data", data)
        writer.endObject()
        try await send(writer.bytes)
    }

    /// Replaces this peer's metadata (a JSON object).
    public func update(metadata: RawJSON) async throws {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("type", "update")
        writer.field("metadata", metadata)
        writer.endObject()
        try await send(writer.bytes)
    }

    public func ping(id: String? = nil) async throws {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("type", "ping")
        if let id { writer.field("id", id) }
        writer.endObject()
        try await send(writer.bytes)
    }

    /// Leaves the room; the server closes the connection and ``run()`` returns.
    public func leave() async throws {
        state.withLock { $0.leaving = true }
        try await send(Array(#"{"type":"leave"}"#.utf8))
    }

    /// Sends a raw text frame (tests and tools).
    public func sendRaw(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    /// Drops the socket without leaving (close code 4000), as a network failure would; the
    /// client then resumes. For tests and demos.
    public func dropConnection() async throws {
        guard let outbound = state.withLock({ $0.outbound }) else { throw NotConnected() }
        state.withLock { $0.closeCode = Self.reconnectCloseCode }
        try await outbound.close(WebSocketErrorCode(codeNumber: Self.reconnectCloseCode), reason: "reconnecting")
    }

    private func send(_ bytes: [UInt8]) async throws {
        guard let outbound = state.withLock({ $0.outbound }) else { throw NotConnected() }
        try await outbound.writeTextMessage(String(decoding: bytes, as: UTF8.self))
    }

    // MARK: Helpers

    /// The close code a client uses for "dropping to reconnect": not a goodbye.
    static let reconnectCloseCode = 4000

    /// Whether a close (or a drop, nil) leaves the session resumable. 1000 (left, room
    /// closed), 1003/1008/1009 (refused, kicked, expired) and 4001 (replaced) end it.
    static func isResumable(_ code: Int?) -> Bool {
        guard let code else { return true }
        return code == 1001 || code == 1006 || code == 1011 || code == reconnectCloseCode
    }

    static func describe(_ code: Int?) -> String {
        switch code {
        case 1000: "closed"
        case 1001: "server going away"
        case 1003: "binary frames are not accepted"
        case 1008: "policy violation"
        case 1009: "frame too large"
        case 4001: "replaced by another connection"
        default: "connection closed"
        }
    }

    static func number(_ code: WebSocketErrorCode) -> Int {
        var buffer = ByteBuffer()
        buffer.write(webSocketErrorCode: code)
        return Int(buffer.readInteger(as: UInt16.self) ?? 0)
    }

    /// `url` with its `access_token` query value replaced.
    static func replacingToken(in url: String, with token: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        var items = (components.queryItems ?? []).filter { $0.name != "access_token" }
        items.insert(URLQueryItem(name: "access_token", value: token), at: 0)
        components.queryItems = items
        return components.string ?? url
    }

    static func appendingQuery(_ url: String, _ item: String) -> String {
        url + (url.contains("?") ? "&" : "?") + item
    }
}

