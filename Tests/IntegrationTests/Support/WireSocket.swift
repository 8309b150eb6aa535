import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A WebSocket client written straight onto a TCP socket, for RFC 6455 conformance tests:
/// it sends whatever frames a test asks for (invalid UTF-8, oversized or fragmented control
/// frames, floods) and tells how the server ended the connection — with a close frame and a
/// FIN, or with a reset. No WebSocket library would let a test see that difference.
///
/// Blocking POSIX I/O on threads of its own, so the cooperative pool is never blocked.
final class WireSocket: Sendable {
    enum Ending: Sendable, Equatable {
        /// The server closed the TCP connection in order (read returned 0).
        case fin
        /// The connection was reset (ECONNRESET): a close frame could have been lost.
        case reset
        /// Still open at the deadline.
        case timeout
    }

    struct Outcome: Sendable {
        var texts: [String]
        /// The code of the server's close frame, if one arrived.
        var closeCode: Int?
        var ending: Ending
        /// Frames the flood thread managed to write.
        var flooded: Int
    }

    private let fd: Int32
    /// Serialises writes from the flood thread and the reader (close reply).
    private let writeLock = Mutex(false)
    private let leftover = Mutex<[UInt8]>([])

    private init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// Connects and completes the opening handshake; throws unless the server answers 101.
    static func connect(port: Int, path: String) throws -> WireSocket {
        let socket = try tcp(port: port)
        let fd = socket.fd
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n"
        try socket.writeAll(Array(request.utf8))
        var response: [UInt8] = []
        let deadline = Date().addingTimeInterval(5)
        while !response.contains(subsequence: [13, 10, 13, 10]) {
            guard Date() < deadline else { throw TestFailure("no handshake response") }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(fd, &chunk, chunk.count)
            if count == 0 { throw TestFailure("closed during the handshake: \(String(decoding: response, as: UTF8.self))") }
            if count > 0 { response += chunk[0..<count] }
        }
        let end = response.firstRange(of: [13, 10, 13, 10])?.upperBound ?? response.count
        let head = String(decoding: response[..<end], as: UTF8.self)
        guard head.hasPrefix("HTTP/1.1 101") else { throw TestFailure("upgrade refused: \(head)") }
        socket.leftover.withLock { $0 = Array(response[end...]) }
        return socket
    }

    /// A plain TCP connection to a loopback port.
    static func tcp(port: Int) throws -> WireSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("connect() failed: \(errno)")
        }
        let socket = WireSocket(fd: fd)
        socket.setReceiveTimeout(milliseconds: 200)
        return socket
    }

    /// Everything the peer sends until it closes (or `timeout` seconds pass).
    func readToEnd(timeout: Double) throws -> [UInt8] {
        var bytes = leftover.withLock { $0 }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = read(fd, &chunk, chunk.count)
            if count > 0 {
                bytes += chunk[0..<count]
            } else if count == 0 {
                return bytes
            } else if errno != EAGAIN, errno != EWOULDBLOCK, errno != EINTR {
                throw TestFailure("read failed: errno \(errno)")
            }
        }
        return bytes
    }

    // MARK: Frames

    /// Writes one masked frame.
    func send(opcode: UInt8, payload: [UInt8], fin: Bool = true) throws {
        try writeAll(Self.frame(opcode: opcode, payload: payload, fin: fin))
    }

    /// Writes bytes as they are (a frame built with ``frame(opcode:payload:fin:)``).
    func send(raw bytes: [UInt8]) throws {
        try writeAll(bytes)
    }

    func send(text: String) throws {
        try send(opcode: 0x1, payload: Array(text.utf8))
    }

    static func frame(opcode: UInt8, payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        switch payload.count {
        case ..<126: frame.append(0x80 | UInt8(payload.count))
        case ..<65536: frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default:
            frame.append(0x80 | 127)
            frame += (0..<8).reversed().map { UInt8((UInt64(payload.count) >> (8 * UInt64($0))) & 0xFF) }
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return frame
    }

    /// Reads frames until the server's close frame and the end of the connection (or
    /// `timeout`), answering the close frame as a client should. While `flood` is set, a
    /// second thread keeps writing that frame (as fast as the socket takes it, or every
    /// `floodInterval`) until the close frame
    /// arrives or a write fails — a client still sending while the server closes.
    func runUntilClosed(
        timeout: Duration = .seconds(10), flood: [UInt8]? = nil, floodInterval: Duration = .zero,
        afterStart: (@Sendable () async throws -> Void)? = nil
    ) async throws -> Outcome {
        let flags = Flags(flooding: flood != nil)
        if let flood {
            let frame = Self.frame(opcode: 0x1, payload: flood)
            let pause = UInt32(floodInterval.components.attoseconds / 1_000_000_000_000)
            Thread.detachNewThread {
                while !flags.stop.load(ordering: .acquiring) {
                    do {
                        try self.writeAll(frame, unless: flags)
                    } catch {
                        break
                    }
                    flags.flooded.add(1, ordering: .relaxed)
                    if pause > 0 { usleep(pause) }
                }
                flags.floodDone.store(true, ordering: .releasing)
            }
        }
        let outcome = Mutex<Outcome?>(nil)
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        Thread.detachNewThread {
            let result = self.readUntilClosed(deadline: Date().addingTimeInterval(seconds), flags: flags)
            outcome.withLock { $0 = result }
        }
        if let afterStart { try await afterStart() }
        while true {
            if var done = outcome.withLock({ $0 }) {
                done.flooded = flags.flooded.load(ordering: .relaxed)
                return done
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Shared between the test, the flood thread and the reader thread.
    final class Flags: Sendable {
        let stop = Atomic<Bool>(false)
        let floodDone: Atomic<Bool>
        let flooded = Atomic<Int>(0)

        init(flooding: Bool) {
            floodDone = Atomic(!flooding)
        }
    }

    private func readUntilClosed(deadline: Date, flags: Flags) -> Outcome {
        var buffer = leftover.withLock { $0 }
        var outcome = Outcome(texts: [], closeCode: nil, ending: .timeout, flooded: 0)
        var answered = false
        while Date() < deadline {
            while let (opcode, payload, consumed) = Self.parse(buffer) {
                buffer.removeFirst(consumed)
                switch opcode {
                case 0x1: outcome.texts.append(String(decoding: payload, as: UTF8.self))
                case 0x8 where !answered:
                    outcome.closeCode = payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 1005
                    // Stop sending, then answer with a close frame of our own.
                    flags.stop.store(true, ordering: .releasing)
                    while !flags.floodDone.load(ordering: .acquiring) { usleep(100) }
                    try? writeAll(Self.frame(opcode: 0x8, payload: Array(payload.prefix(2))))
                    answered = true
                default: break
                }
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = read(fd, &chunk, chunk.count)
            if count > 0 {
                buffer += chunk[0..<count]
            } else if count == 0 {
                outcome.ending = .fin
                break
            } else if errno == ECONNRESET {
                outcome.ending = .reset
                break
            } else if errno != EAGAIN, errno != EWOULDBLOCK, errno != EINTR {
                outcome.ending = .reset
                break
            }
        }
        flags.stop.store(true, ordering: .releasing)
        return outcome
    }

    /// One unmasked server frame at the start of `buffer`: opcode, payload, bytes used.
    static func parse(_ buffer: [UInt8]) -> (UInt8, [UInt8], Int)? {
        guard buffer.count >= 2 else { return nil }
        let opcode = buffer[0] & 0x0F
        var length = Int(buffer[1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard buffer.count >= 4 else { return nil }
            length = Int(buffer[2]) << 8 | Int(buffer[3])
            offset = 4
        } else if length == 127 {
            guard buffer.count >= 10 else { return nil }
            length = buffer[2..<10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard buffer.count >= offset + length else { return nil }
        return (opcode, Array(buffer[offset..<(offset + length)]), offset + length)
    }

    // MARK: Socket

    private func setReceiveTimeout(milliseconds: Int) {
        var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    private func writeAll(_ bytes: [UInt8], unless flags: Flags? = nil) throws {
        try writeLock.withLock { _ in
            if let flags, flags.stop.load(ordering: .acquiring) { return }
            var sent = 0
            while sent < bytes.count {
                let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if count > 0 {
                    sent += count
                } else if count < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                    // Never stop inside a frame: the server would read our close as its rest.
                    continue
                } else {
                    throw TestFailure("send failed: errno \(errno)")
                }
            }
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate func contains(subsequence: [UInt8]) -> Bool {
        firstRange(of: subsequence) != nil
    }
}
