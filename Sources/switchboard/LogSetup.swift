import Foundation
import Logging

/// Bootstraps swift-log once: `SWITCHBOARD_LOG_FORMAT` `json` (default) or `text`.
enum LogSetup {
    static func bootstrap(level: Logger.Level, format: String) {
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == "text" ? StreamLogHandler.standardError(label: label) : JSONLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// One JSON object per line on stderr: `time`, `level`, `label`, `message`, and metadata.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: String] = [:]
        for (key, value) in metadata { fields[key] = "\(value)" }
        for (key, value) in event.metadata ?? [:] { fields[key] = "\(value)" }
        fields["time"] = ISO8601DateFormatter().string(from: Date())
        fields["level"] = event.level.rawValue
        fields["label"] = label
        fields["message"] = "\(event.message)"
        guard var line = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        line.append(0x0A)
        FileHandle.standardError.write(line)
    }
}

extension Logger.Level {
    init(setting: String) throws {
        guard let level = Logger.Level(rawValue: setting.lowercased()) else {
            throw SettingError("SWITCHBOARD_LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
        }
        self = level
    }
}
