import Logging
import SQLiteStore
import Signaling

/// Opens a node's SQLite file directly, to check what reached disk.
enum SQLiteStoreAccess {
    static func open(_ path: String) async throws -> SQLiteStore {
        try await SQLiteStore.open(path: path, logger: Logger(label: "test.sqlite"))
    }
}

extension ServerEvent {
    /// The resume token of a `welcome`.
    var resumeToken: String? {
        if case .welcome(let welcome) = self { return welcome.resumeToken }
        return nil
    }
}
