import Foundation

/// Reads settings 12-factor style: a flag wins, then `SWITCHBOARD_*`, then the default.
struct Settings {
    let environment: [String: String]

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    func string(_ flag: String?, _ variable: String) -> String? {
        if let flag { return flag }
        if let value = environment[variable], !value.isEmpty { return value }
        return nil
    }

    func int(_ flag: Int?, _ variable: String) throws -> Int? {
        if let flag { return flag }
        guard let text = environment[variable], !text.isEmpty else { return nil }
        guard let value = Int(text) else { throw SettingError("\(variable) must be an integer, got \(text)") }
        return value
    }

    func double(_ flag: Double?, _ variable: String) throws -> Double? {
        if let flag { return flag }
        guard let text = environment[variable], !text.isEmpty else { return nil }
        guard let value = Double(text) else { throw SettingError("\(variable) must be a number, got \(text)") }
        return value
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    func bool(_ flag: String?, _ variable: String) throws -> Bool? {
        guard let text = string(flag, variable) else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw SettingError("\(variable) must be true or false, got \(text)")
        }
    }

    func list(_ flag: String?, _ variable: String) -> [String]? {
        string(flag, variable).map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }
}

struct SettingError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
