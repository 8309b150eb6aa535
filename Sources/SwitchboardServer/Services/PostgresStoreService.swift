import Foundation
import Logging
import PostgresStore
import ServiceLifecycle
import Signaling

/// Runs the PostgreSQL pool for the node's lifetime; at start applies the migrations
/// (`--migrate`) or checks they were applied, and checks the master key against the stored
/// secrets.
///
/// `prepared` opens after that and the first making of today's audit partitions; the audit
/// writer and retention wait for it. Services start together: without it they would meet a
/// database not yet migrated, and an insert racing the creation of its day's partition
/// fails (SQLSTATE 23514, "violates partition constraint") and has to be retried. Later
/// days' partitions are made two days ahead, so they do not race.
struct PostgresStoreService: Service {
    let store: PostgresStore
    let configuration: ServerConfiguration
    let secrets: SecretBox
    let logger: Logger
    var prepared = StartupGate()

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            do {
                // Waits for the database as long as it takes, unless the node stops first.
                try await cancelWhenGracefulShutdown { try await prepare() }
            } catch where Task.isShuttingDownGracefully || Task.isCancelled {
                logger.notice("stopped before the database could be prepared")
                group.cancelAll()
                return
            }
            // Daily audit partitions, made ahead of time (hourly is plenty).
            while !Task.isCancelledOrShuttingDown {
                do throws(StoreError) {
                    try await store.ensureAuditPartitions()
                } catch {
                    logger.warning("could not create audit partitions", metadata: ["error": "\(error.message)"])
                }
                // Inserts work without the partition too (into the default one), just later.
                if !prepared.isOpen { prepared.open() }
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
            }
            // Keep the pool until shutdown; the pool stops when this task is cancelled.
            // Let the services after this one (audit writer) finish first: the group shuts
            // down in reverse order, so by now they have.
            group.cancelAll()
        }
    }

    private func prepare() async throws {
        let migrations = try Migrator.load(directory: configuration.migrationsDirectory)
        let migrator = Migrator(client: store.client, logger: logger)
        if configuration.migrate {
            try await migrator.migrate(migrations)
        } else {
            let pending = try await migrator.pending(migrations)
            guard pending.isEmpty else {
                throw ConfigurationError("the database lacks migrations \(pending.joined(separator: ", ")): run `switchboard migrate` or start with --migrate")
            }
        }
        guard try await MasterKey.opens(store: store, secrets: secrets) else {
            throw ConfigurationError("the master key does not decrypt the API secrets in the database: use the SWITCHBOARD_MASTER_KEY it was written with")
        }
    }
}
