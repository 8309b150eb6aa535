import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOCore
import PostgresNIO
import PostgresStore
import SwitchboardServer
import TURNServer

/// Why a command could not start or run, as one plain line that says what is wrong and what
/// to do — never a Foundation or NIO error dump (argument-parser prints it as `Error: …`).
struct StartupFailure: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }

    init(_ error: any Error) {
        self.description = Self.explain(error)
    }

    /// Runs `body`, turning whatever it throws into a plain ``StartupFailure``.
    static func plain<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as StartupFailure {
            throw error
        } catch {
            throw StartupFailure(error)
        }
    }

    static func explain(_ error: any Error) -> String {
        switch error {
        case let error as StartupFailure: return error.description
        case let error as ConfigurationError: return error.description
        case let error as Migrator.Failure: return error.description
        case let error as PostgresURL.Invalid: return error.description
        case let error as SettingError: return error.description
        case let error as TURNConfigurationError: return error.description
        case let error as IOError: return explain(errno: error.errnoCode, what: "\(error)")
        case let error as PSQLError:
            if let message = error.serverInfo?[.message] {
                return oneLine("PostgreSQL refused: \(message): check SWITCHBOARD_DATABASE_URL (user, password, database)")
            }
            return "cannot reach PostgreSQL (\(error.code)): check SWITCHBOARD_DATABASE_URL and that the server is up"
        case let error as URLError:
            let url = error.failingURL?.absoluteString ?? "the node"
            return "cannot reach \(url) (URL error \(error.code.rawValue)): check that the node runs and the URL is right"
        case let error as CocoaError:
            let path = error.filePath ?? error.url?.path ?? "a file"
            switch error.code {
            case .fileNoSuchFile, .fileReadNoSuchFile:
                return "\(path) does not exist: check the path settings (SWITCHBOARD_SQLITE_PATH, SWITCHBOARD_MASTER_KEY_FILE, SWITCHBOARD_AUDIT_SPILL_DIR, SWITCHBOARD_MIGRATIONS_DIR)"
            case .fileReadNoPermission, .fileWriteNoPermission:
                return "no permission to access \(path): run from a writable directory or point the path settings elsewhere"
            case .fileWriteOutOfSpace:
                return "no space left on the device holding \(path)"
            default:
                return "cannot use \(path): \(error.localizedDescription)"
            }
        default:
            return oneLine(String(describing: error))
        }
    }

    static func explain(errno code: Int32, what: String) -> String {
        switch code {
        case EADDRINUSE:
            return "a port is already in use by another process: choose free ones with --port/--admin-port (SWITCHBOARD_PORT, SWITCHBOARD_ADMIN_PORT)"
        case EACCES:
            return "permission denied binding a port (below 1024 needs privileges): choose a port ≥ 1024"
        case EADDRNOTAVAIL:
            return "the bind address is not on this machine: set --host (SWITCHBOARD_HOST) to one of its addresses or 0.0.0.0"
        default:
            return oneLine("\(what) (errno \(code): \(String(cString: strerror(code))))")
        }
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
