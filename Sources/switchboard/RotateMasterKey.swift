import ArgumentParser
import Foundation
import Logging
import SwitchboardServer

/// `switchboard rotate-master-key`: reseals the stored API and webhook secrets with a new
/// master key. Run it with `SWITCHBOARD_MASTER_KEY=new,current` (nodes may keep running with
/// the same `new,current`), then give the nodes `new` alone (Docs/operations.md).
struct RotateMasterKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-master-key",
        abstract: "Reseal every stored secret with the first of the master keys (SWITCHBOARD_MASTER_KEY=new,current), then exit.")

    @Option(name: .customLong("master-key"), help: "new,current — base64 keys, the first seals (SWITCHBOARD_MASTER_KEY).") var masterKey: String?
    @Option(name: .customLong("master-key-file"), help: "File holding new,current when --master-key is unset (SWITCHBOARD_MASTER_KEY_FILE, default ./switchboard.key).") var masterKeyFile: String?
    @Option(name: .customLong("database-url"), help: "postgres:// URL; unset = the SQLite file (SWITCHBOARD_DATABASE_URL).") var databaseURL: String?
    @Option(name: .customLong("sqlite-path"), help: "The embedded store file (SWITCHBOARD_SQLITE_PATH, default ./switchboard.sqlite).") var sqlitePath: String?
    @Option(name: .customLong("log-format"), help: "json or text (SWITCHBOARD_LOG_FORMAT, default json).") var logFormat: String?

    func run() async throws {
        let settings = Settings()
        LogSetup.bootstrap(level: .warning, format: settings.string(logFormat, "SWITCHBOARD_LOG_FORMAT") ?? "json")
        var configuration = ServerConfiguration()
        configuration.masterKey = settings.string(masterKey, "SWITCHBOARD_MASTER_KEY")
        configuration.masterKeyFile = settings.string(masterKeyFile, "SWITCHBOARD_MASTER_KEY_FILE") ?? configuration.masterKeyFile
        configuration.databaseURL = settings.string(databaseURL, "SWITCHBOARD_DATABASE_URL")
        configuration.sqlitePath = settings.string(sqlitePath, "SWITCHBOARD_SQLITE_PATH") ?? configuration.sqlitePath
        let logger = Logger(label: "switchboard.rotate-master-key")
        try await StartupFailure.plain {
            let report = try await MasterKeyRotation.run(configuration: configuration, logger: logger)
            print("resealed \(report.keysResealed) API key secret(s) and \(report.webhooksResealed) webhook secret(s) with the first key; \(report.unchanged) already were")
        }
    }
}
