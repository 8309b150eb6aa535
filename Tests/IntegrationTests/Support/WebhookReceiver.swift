import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A real HTTP server on a free loopback port that takes webhook POSTs and answers as
/// scripted: a status, or a hang longer than the sender's timeout.
final class WebhookReceiver: Sendable {
    enum Answer: Sendable {
        case status(Int)
        /// Waits this long, then answers 200 (the sender has given up by then).
        case hang(Duration)
        /// Answers 200 at once, then sends its body a byte at a time, for this long.
        case trickle(Duration)
    }

    struct Received: Sendable {
        /// Lower-cased names.
        var headers: [String: String]
        var body: [UInt8]

        func header(_ name: String) -> String? { headers[name.lowercased()] }
        /// What it was answered (`hang` counts as a failure).
        var answered: Answer
    }

    private struct State {
        var script: [Answer] = []
        var otherwise: Answer = .status(200)
        var received: [Received] = []
    }

    private let state = Mutex(State())

    /// The next answers in order; after them, `otherwise`.
    func script(_ answers: [Answer], otherwise: Answer = .status(200)) {
        state.withLock {
            $0.script = answers
            $0.otherwise = otherwise
        }
    }

    var received: [Received] { state.withLock { $0.received } }

    /// Waits until `count` requests arrived.
    func waitFor(_ count: Int, timeout: Duration = .seconds(20)) async throws -> [Received] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let received = self.received
            if received.count >= count { return received }
            guard ContinuousClock.now < deadline else {
                throw TestFailure("expected \(count) webhook requests, got \(received.count)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private func take(headers: [String: String], body: [UInt8]) -> Answer {
        state.withLock { state in
            let answer = state.script.isEmpty ? state.otherwise : state.script.removeFirst()
            state.received.append(Received(headers: headers, body: body, answered: answer))
            return answer
        }
    }

    /// Runs the server on `port` (0: a free one) around `body`, which gets the URL of `/hook`.
    func serve<T: Sendable>(port: Int = 0, _ body: @Sendable (_ url: String, _ port: Int) async throws -> T) async throws -> T {
        let router = Router()
        router.post("hook") { request, _ -> Response in
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let bytes = try await request.body.collect(upTo: 1 << 20)
            switch self.take(headers: headers, body: Array(buffer: bytes)) {
            case .status(let code):
                return Response(status: .init(code: code))
            case .hang(let duration):
                try? await Task.sleep(for: duration)
                return Response(status: .ok)
            case .trickle(let duration):
                return Response(status: .ok, body: ResponseBody { writer in
                    let end = ContinuousClock.now + duration
                    while ContinuousClock.now < end {
                        try await writer.write(ByteBuffer(string: "."))
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    try await writer.finish(nil)
                })
            }
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "webhook-receiver")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            guard let bound = await iterator.next() else { throw TestFailure("the receiver did not start") }
            do {
                let value = try await body("http://127.0.0.1:\(bound)/hook", bound)
                group.cancelAll()
                return value
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}
