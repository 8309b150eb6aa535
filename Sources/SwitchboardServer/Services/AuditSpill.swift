import Foundation
import NIOCore
import NIOPosix
import Signaling

/// The audit spill directory (`--audit-spill-dir`): where a node that has to exit before the
/// store took its buffered audit events writes them, and where the next start finds them.
///
/// Every spill is a new file, `audit-<ULID>.jsonl` (one ``AuditEventLine`` per event, mode
/// 0600), so spills of several shutdowns never overwrite each other and sort oldest first.
/// It is written as `….jsonl.tmp`, fsynced, renamed and the directory fsynced: a `.jsonl`
/// file is complete. The file I/O runs on NIO's thread pool, and runs to the end even when
/// the calling task is cancelled.
struct AuditSpill: Sendable {
    let directory: String

    static let prefix = "audit-"
    static let suffix = ".jsonl"
    static let incompleteSuffix = ".jsonl.tmp"
    static let rejectedSuffix = ".jsonl.rejected"

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Writes `events` into a new spill file; returns its path.
    func write(_ events: [AuditEvent]) async throws -> String {
        let directory = self.directory
        return try await Self.offload {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            var bytes: [UInt8] = []
            bytes.reserveCapacity(events.count * 256)
            for event in events { AuditEventLine.append(event, to: &bytes) }
            let name = Self.prefix + ULID.make()
            let path = directory + "/" + name + Self.suffix
            let temporary = directory + "/" + name + Self.incompleteSuffix
            try Self.writeDurably(bytes, to: temporary)
            guard rename(temporary, path) == 0 else { throw Self.failure("rename \(temporary)") }
            try Self.synchronizeDirectory(directory)
            return path
        }
    }

    /// The spill files waiting to be loaded, oldest first, and the incomplete ones (a node
    /// that stopped while writing one).
    func files() async throws -> (complete: [String], incomplete: [String]) {
        let directory = self.directory
        return try await Self.offload {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else { return ([], []) }
            guard isDirectory.boolValue else { throw Failure(description: "\(directory) is not a directory") }
            let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix(Self.prefix) }.sorted()
            return (
                names.filter { $0.hasSuffix(Self.suffix) }.map { directory + "/" + $0 },
                names.filter { $0.hasSuffix(Self.incompleteSuffix) }.map { directory + "/" + $0 }
            )
        }
    }

    /// The events of a spill file, and the lines that are not events.
    func read(_ path: String) async throws -> (events: [AuditEvent], rejected: [AuditEventLine.Rejected]) {
        try await Self.offload {
            AuditEventLine.decodeLines([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
        }
    }

    func remove(_ path: String) async throws {
        try await Self.offload { try FileManager.default.removeItem(atPath: path) }
    }

    /// Renames a file with unreadable lines to `….jsonl.rejected`, kept for inspection and
    /// never loaded again; returns the new path.
    func reject(_ path: String) async throws -> String {
        try await Self.offload {
            let rejected = String(path.dropLast(Self.suffix.count)) + Self.rejectedSuffix
            guard rename(path, rejected) == 0 else { throw Self.failure("rename \(path)") }
            return rejected
        }
    }

    // MARK: File system

    /// Runs blocking file I/O on the thread pool. The future form on purpose: it runs even if
    /// the calling task is cancelled, which a spill at a cancelled shutdown needs.
    private static func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.any(), body).get()
    }

    private static func writeDurably(_ bytes: [UInt8], to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw failure("open \(path)") }
        defer { close(descriptor) }
        try bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = writeBytes(descriptor, base + offset, buffer.count - offset)
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { throw failure("write \(path)") }
                offset += written
            }
        }
        guard fsync(descriptor) == 0 else { throw failure("fsync \(path)") }
    }

    /// Makes a rename in `directory` durable.
    private static func synchronizeDirectory(_ directory: String) throws {
        let descriptor = open(directory, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw failure("open \(directory)") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw failure("fsync \(directory)") }
    }

    private static func failure(_ operation: String) -> Failure {
        Failure(description: "\(operation): \(String(cString: strerror(errno)))")
    }
}

/// POSIX `write` (a name the type's own `write` would hide).
private func writeBytes(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}
