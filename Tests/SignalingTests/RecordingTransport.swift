import Synchronization
import Testing

@testable import Signaling

/// A ``SessionTransport`` that keeps every frame it is given, decoded as a client would read
/// it, and every close; a frame that does not decode is kept as `.unknown("undecodable: …")`
/// so that the assertion that reads it fails visibly.
final class RecordingTransport: SessionTransport {
    struct Close: Sendable, Equatable {
        var code: CloseCode
        var reason: String
    }

    private struct State {
        var events: [ServerEvent] = []
        var types: [OutboundFrameType] = []
        var closes: [Close] = []
    }

    private let state = Mutex(State())

    init() {}

    func send(_ frame: [UInt8], type: OutboundFrameType) {
        let event: ServerEvent
        do {
            event = try ServerEvent.decode(frame)
        } catch {
            event = .unknown(type: "undecodable: \(error.message): \(String(decoding: frame, as: UTF8.self))")
        }
        state.withLock { state in
            state.events.append(event)
            state.types.append(type)
        }
    }

    func close(_ code: CloseCode, reason: String) {
        state.withLock { $0.closes.append(Close(code: code, reason: reason)) }
    }

    /// Every frame received so far.
    var events: [ServerEvent] { state.withLock { $0.events } }

    /// The metrics label the session gave each frame.
    var types: [OutboundFrameType] { state.withLock { $0.types } }

    var closes: [Close] { state.withLock { $0.closes } }

    /// The frames received since the last call, removing them.
    func take() -> [ServerEvent] {
        state.withLock { state in
            defer {
                state.events.removeAll()
                state.types.removeAll()
            }
            return state.events
        }
    }
}
