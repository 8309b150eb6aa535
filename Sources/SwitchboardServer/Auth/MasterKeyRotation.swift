import Foundation
import Logging
import PostgresStore
import SQLiteStore
import Signaling

/// Reseals every secret kept under the master key — API key secrets and webhook signing
/// secrets — with the first of the configured keys (`SWITCHBOARD_MASTER_KEY=new,old`), so the
/// old key can then be dropped. Idempotent: what is sealed with the first key already is
/// left alone, so it can run again after an interruption, and while nodes run (they open
/// with either key during the rotation).
public enum MasterKeyRotation {
    public struct Report: Sendable, Equatable {
        public var keysResealed = 0
        public var webhooksResealed = 0
        /// Already sealed with the first key.
        public var unchanged = 0
    }

    public static func run(store: any Store, secrets: SecretBox) async throws -> Report {
        var report = Report()
        var after: String?
        repeat {
            let page = try await store.tenants(after: after, limit: 500)
            for tenant in page.items {
                var keysAfter: String?
                repeat {
                    let keys = try await store.keys(tenantID: tenant.id, after: keysAfter, limit: 500)
                    for key in keys.items {
                        guard let sealed = try reseal(key.sealedSecret, context: key.apiKey, secrets: secrets, what: "API key \(key.apiKey)") else {
                            report.unchanged += 1
                            continue
                        }
                        try await store.replaceKeySecret(apiKey: key.apiKey, sealedSecret: sealed)
                        report.keysResealed += 1
                    }
                    keysAfter = keys.next
                } while keysAfter != nil
                if var webhook = try await store.webhook(tenantID: tenant.id) {
                    let context = Webhook.sealingContext(tenantID: tenant.id)
                    if let sealed = try reseal(webhook.sealedSecret, context: context, secrets: secrets, what: "the webhook of \(tenant.id)") {
                        webhook.sealedSecret = sealed
                        try await store.putWebhook(webhook)
                        report.webhooksResealed += 1
                    } else {
                        report.unchanged += 1
                    }
                }
            }
            after = page.next
        } while after != nil
        return report
    }

    private static func reseal(_ sealed: [UInt8], context: String, secrets: SecretBox, what: String) throws -> [UInt8]? {
        do {
            return try secrets.resealed(sealed, apiKey: context)
        } catch {
            throw ConfigurationError("none of the configured master keys opens the secret of \(what): give the current key too (SWITCHBOARD_MASTER_KEY=new,current)")
        }
    }
}

extension MasterKeyRotation {
    /// `switchboard rotate-master-key`: opens the store the configuration names (PostgreSQL,
    /// or the SQLite file), with `SWITCHBOARD_MASTER_KEY` (or the key file) holding
    /// `new,old`, and reseals everything with `new`.
    public static func run(configuration: ServerConfiguration, logger: Logger) async throws -> Report {
        let keys: String
        if let configured = configuration.masterKey {
            keys = configured
        } else if let file = FileManager.default.contents(atPath: configuration.masterKeyFile) {
            keys = String(decoding: file, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            throw ConfigurationError("no master key: set SWITCHBOARD_MASTER_KEY (or --master-key-file) to new,current")
        }
        let secrets: SecretBox
        do {
            secrets = try SecretBox(base64: keys)
        } catch {
            throw ConfigurationError("SWITCHBOARD_MASTER_KEY: \(error)")
        }
        if let url = configuration.databaseURL {
            let store = try PostgresStore(url: url, settings: configuration.postgres, logger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await store.run() }
                defer { group.cancelAll() }
                return try await run(store: store, secrets: secrets)
            }
        }
        guard FileManager.default.fileExists(atPath: configuration.sqlitePath) else {
            throw ConfigurationError("no SQLite file at \(configuration.sqlitePath): set --sqlite-path (or --database-url)")
        }
        let store = try await SQLiteStore.open(path: configuration.sqlitePath, logger: logger)
        do {
            let report = try await run(store: store, secrets: secrets)
            await store.close()
            return report
        } catch {
            await store.close()
            throw error
        }
    }
}
