import ArgumentParser
import Foundation
import Logging
import PostgresStore

/// `switchboard migrate`: applies `migrations/*.sql` to PostgreSQL, idempotently (SPEC §1).
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the PostgreSQL migrations, then exit.")

    @Option(name: .customLong("database-url"), help: "postgres:// URL (SWITCHBOARD_DATABASE_URL).") var databaseURL: String?
    @Option(name: .customLong("migrations-dir"), help: "Directory of NNNN_name.sql files to use instead of the ones built into the binary (SWITCHBOARD_MIGRATIONS_DIR).") var migrationsDirectory: String?
    @Option(name: .customLong("log-format"), help: "json or text (SWITCHBOARD_LOG_FORMAT, default json).") var logFormat: String?

    func run() async throws {
        let settings = Settings()
        LogSetup.bootstrap(level: .info, format: settings.string(logFormat, "SWITCHBOARD_LOG_FORMAT") ?? "json")
        guard let url = settings.string(databaseURL, "SWITCHBOARD_DATABASE_URL") else {
            throw ValidationError("set --database-url or SWITCHBOARD_DATABASE_URL")
        }
        let logger = Logger(label: "switchboard.migrate")
        let directory = settings.string(migrationsDirectory, "SWITCHBOARD_MIGRATIONS_DIR")
        try await StartupFailure.plain {
            let migrations = try Migrator.load(directory: directory)
            let store = try PostgresStore(url: url, logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await store.run() }
                defer { group.cancelAll() }
                let applied = try await Migrator(client: store.client, logger: logger).migrate(migrations)
                print(applied.isEmpty ? "database is up to date (\(migrations.count) migrations)" : "applied: \(applied.joined(separator: ", "))")
            }
        }
    }
}
