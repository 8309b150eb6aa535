import Crypto
import Foundation
import Logging
import PostgresNIO

/// Applies `migrations/NNNN_name.sql` to PostgreSQL (SPEC §5, issue #3): each file once, in
/// number order, inside a transaction, under an advisory lock so nodes starting together
/// take turns. Every applied file's SHA-256 is recorded; a file edited after it was applied
/// stops the run.
public struct Migrator: Sendable {
    public struct Migration: Sendable, Equatable {
        public var version: Int
        public var name: String
        public var sql: String
        public var checksum: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The advisory lock key every node uses ("swbd" in ASCII).
    static let lockKey: Int64 = 0x7377_6264

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The migrations compiled into this binary from the package's `migrations/*.sql` (SPEC §1:
    /// they travel with the binary, so no working directory is needed).
    public static func bundled() throws -> [Migration] {
        try parse(BundledMigrations.files.map { ($0.name, $0.bytes) })
    }

    /// The bundled migrations, or the `NNNN_name.sql` files of `directory` when one is given
    /// (`SWITCHBOARD_MIGRATIONS_DIR`).
    public static func load(directory: String?) throws -> [Migration] {
        guard let directory else { return try bundled() }
        return try load(from: URL(fileURLWithPath: directory))
    }

    /// Reads `NNNN_name.sql` files from `directory`, sorted by number.
    public static func load(from directory: URL) throws -> [Migration] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(description: "the migrations directory \(directory.path) does not exist; unset SWITCHBOARD_MIGRATIONS_DIR (--migrations-dir) to use the migrations built into this binary")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }
        } catch {
            throw Failure(description: "cannot list the migrations directory \(directory.path): check its permissions")
        }
        return try parse(names.map { name in
            guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path) else {
                throw Failure(description: "cannot read the migration \(directory.appendingPathComponent(name).path): check its permissions")
            }
            return (name, [UInt8](data))
        })
    }

    /// Orders named SQL files by their number and checksums them.
    static func parse(_ files: [(name: String, bytes: [UInt8])]) throws -> [Migration] {
        var seen = Set<Int>()
        return try files.map { file in
            guard let version = Int(file.name.prefix { $0.isNumber }), !file.name.prefix(while: { $0.isNumber }).isEmpty else {
                throw Failure(description: "migration file \(file.name) must start with its number, like 0001_initial.sql")
            }
            guard seen.insert(version).inserted else { throw Failure(description: "two migrations are numbered \(version)") }
            guard let sql = String(validating: file.bytes, as: UTF8.self) else {
                throw Failure(description: "migration file \(file.name) is not valid UTF-8")
            }
            let digest = SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
            return Migration(version: version, name: file.name, sql: sql, checksum: digest)
        }.sorted { $0.version < $1.version }
    }

    /// Applies what is missing; returns the names applied now.
    @discardableResult
    public func migrate(_ migrations: [Migration]) async throws -> [String] {
        try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))", logger: logger)
            do {
                let applied = try await apply(migrations, on: connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                throw error
            }
        }
    }

    /// Names of the migrations not applied yet (all of them on an empty database).
    public func pending(_ migrations: [Migration]) async throws -> [String] {
        let exists = try await client.query("SELECT to_regclass('switchboard_migrations') IS NOT NULL", logger: logger)
            .collect().first?.decode(Bool.self) ?? false
        guard exists else { return migrations.map(\.name) }
        var versions = Set<Int>()
        for try await version in try await client.query("SELECT version FROM switchboard_migrations", logger: logger).decode(Int.self) {
            versions.insert(version)
        }
        return migrations.filter { !versions.contains($0.version) }.map(\.name)
    }

    private func apply(_ migrations: [Migration], on connection: PostgresConnection) async throws -> [String] {
        try await connection.query("""
            CREATE TABLE IF NOT EXISTS switchboard_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: logger)
        var recorded: [Int: (name: String, checksum: String)] = [:]
        for try await (version, name, checksum) in try await connection.query(
            "SELECT version, name, checksum FROM switchboard_migrations", logger: logger
        ).decode((Int, String, String).self) {
            recorded[version] = (name, checksum)
        }
        var applied: [String] = []
        for migration in migrations {
            if let existing = recorded[migration.version] {
                guard existing.checksum == migration.checksum else {
                    throw Failure(description: "migration \(migration.name) was edited after it was applied (recorded checksum \(existing.checksum.prefix(12))…, file \(migration.checksum.prefix(12))…); add a new migration instead")
                }
                continue
            }
            try await connection.query("BEGIN", logger: logger)
            do {
                for statement in SQLStatements.split(migration.sql) {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("""
                    INSERT INTO switchboard_migrations (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                    """, logger: logger)
                try await connection.query("COMMIT", logger: logger)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw Failure(description: "migration \(migration.name) failed: \(String(reflecting: error))")
            }
            logger.info("applied migration", metadata: ["migration": "\(migration.name)"])
            applied.append(migration.name)
        }
        for version in recorded.keys where !migrations.contains(where: { $0.version == version }) {
            logger.warning("the database has a migration this build does not know", metadata: ["version": "\(version)"])
        }
        return applied
    }
}

/// Splits a SQL script into statements at top-level semicolons.
///
/// Why by hand: postgres-nio sends each query with the extended protocol, one statement at
/// a time, and a migration file holds many (functions with `$$` bodies among them). This
/// knows PostgreSQL's quoting — '…' strings, "…" identifiers, $tag$…$tag$ bodies, -- and
/// /* */ comments — and nothing else.
enum SQLStatements {
    static func split(_ script: String) -> [String] {
        let chars = Array(script.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0
        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { statements.append(text) }
            current = String.UnicodeScalarView()
        }
        while index < chars.count {
            let char = chars[index]
            let next = index + 1 < chars.count ? chars[index + 1] : nil
            switch char {
            case "-" where next == "-":
                while index < chars.count, chars[index] != "\n" { index += 1 }
                continue
            case "/" where next == "*":
                var depth = 0
                repeat {
                    if chars[index] == "/", index + 1 < chars.count, chars[index + 1] == "*" { depth += 1; index += 2; continue }
                    if chars[index] == "*", index + 1 < chars.count, chars[index + 1] == "/" { depth -= 1; index += 2; continue }
                    index += 1
                } while depth > 0 && index < chars.count
                current.append(" ")
                continue
            case "'", "\"":
                current.append(char)
                index += 1
                while index < chars.count {
                    current.append(chars[index])
                    if chars[index] == char {
                        if index + 1 < chars.count, chars[index + 1] == char {
                            current.append(chars[index + 1])
                            index += 2
                            continue
                        }
                        index += 1
                        break
                    }
                    index += 1
                }
                continue
            case "$":
                // A dollar-quote tag: $$ or $name$ (not $1, a parameter).
                var end = index + 1
                while end < chars.count, chars[end] == "_" || chars[end].properties.isAlphabetic || (end > index + 1 && chars[end].properties.numericType != nil) {
                    end += 1
                }
                if end < chars.count, chars[end] == "$" {
                    let tag = Array(chars[index...end])
                    current.append(contentsOf: tag)
                    index = end + 1
                    while index < chars.count {
                        if chars[index] == "$", index + tag.count <= chars.count, Array(chars[index..<(index + tag.count)]) == tag {
                            current.append(contentsOf: tag)
                            index += tag.count
                            break
                        }
                        current.append(chars[index])
                        index += 1
                    }
                    continue
                }
            case ";":
                flush()
                index += 1
                continue
            default:
                break
            }
            current.append(char)
            index += 1
        }
        flush()
        return statements
    }
}
