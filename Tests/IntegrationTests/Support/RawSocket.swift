import Foundation
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import WSClient

#if canImport(Glibc)
import Glibc
#endif

/// A WebSocket with no protocol logic: sends exactly the frames a test chooses and records
/// what arrives, to check the server's handling of bad input.
final class RawWebSocket: Sendable {
    private let received = Mutex<[String]>([])
    private let closeCode = Mutex<Int?>(nil)
    private let outbound = Mutex<WebSocketOutboundWriter?>(nil)
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let finished = Mutex(false)

    static func connect(_ url: String) async throws -> RawWebSocket {
        let socket = RawWebSocket()
        let task = Task {
            do {
                var configuration = WebSocketClientConfiguration()
                configuration.maxFrameSize = 1 << 20
                configuration.validateUTF8 = false
                let close = try await WebSocketClient.connect(url: url, configuration: configuration, logger: Logger(label: "raw")) { inbound, outbound, _ in
                    socket.outbound.withLock { $0 = outbound }
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        if case .text(let text) = message { socket.received.withLock { $0.append(text) } }
                    }
                }
                if let close {
                    var buffer = ByteBuffer()
                    buffer.write(webSocketErrorCode: close.closeCode)
                    socket.closeCode.withLock { $0 = Int(buffer.readInteger(as: UInt16.self) ?? 0) }
                }
            } catch {}
            socket.finished.withLock { $0 = true }
        }
        socket.task.withLock { $0 = task }
        let deadline = ContinuousClock.now + .seconds(5)
        while socket.outbound.withLock({ $0 == nil }) {
            guard ContinuousClock.now < deadline, !socket.finished.withLock({ $0 }) else { throw TestFailure("raw socket did not connect") }
            try await Task.sleep(for: .milliseconds(5))
        }
        return socket
    }

    var texts: [String] { received.withLock { $0 } }
    var code: Int? { closeCode.withLock { $0 } }
    var isClosed: Bool { finished.withLock { $0 } }

    func send(text: String) async throws {
        guard let writer = outbound.withLock({ $0 }) else { throw TestFailure("not connected") }
        try await writer.writeTextMessage(text)
    }

    func send(binary: [UInt8]) async throws {
        guard let writer = outbound.withLock({ $0 }) else { throw TestFailure("not connected") }
        try await writer.write(.binary(ByteBuffer(bytes: binary)))
    }

    func close(code: Int) async throws {
        guard let writer = outbound.withLock({ $0 }) else { throw TestFailure("not connected") }
        try await writer.close(WebSocketErrorCode(codeNumber: code), reason: nil)
    }

    /// Waits for a received text frame containing `fragment`.
    func waitFor(_ fragment: String, timeout: Duration = .seconds(5)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let text = texts.first(where: { $0.contains(fragment) }) { return text }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("no frame containing \(fragment); got \(texts)")
    }

    /// Waits until the server closed the connection; returns its close code.
    func waitClosed(timeout: Duration = .seconds(5)) async throws -> Int? {
        let deadline = ContinuousClock.now + timeout
        while !isClosed {
            guard ContinuousClock.now < deadline else { throw TestFailure("socket still open; got \(texts)") }
            try await Task.sleep(for: .milliseconds(10))
        }
        return code
    }

    func cancel() async {
        let task = self.task.withLock { $0 }
        task?.cancel()
        await task?.value
    }
}

/// A TCP client that completes the WebSocket handshake and then never answers anything: a
/// peer whose network died without a FIN.
final class SilentSocket: Sendable {
    let fd: Int32

    init(port: Int, path: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect() failed") }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        _ = request.withCString { Glibc.send(fd, $0, strlen($0), 0) }
    }

    /// Reads what has arrived so far (non-blocking), e.g. the 101 response.
    func readAvailable() -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        return count > 0 ? Array(buffer[0..<count]) : []
    }

    /// Whether the server has closed its side (recv returns 0).
    func serverClosed(timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count == 0 { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    deinit {
        close(fd)
    }
}
