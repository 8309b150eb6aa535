import Foundation
import PackagePlugin

/// Compiles files the binary must carry into Swift source, so a release binary copied alone
/// into a container or a systemd unit has them (SPEC §1 "Migrations travel with the binary").
/// SwiftPM resource bundles live next to the executable and are easily left behind.
///
/// - `PostgresStore`: every `migrations/*.sql` (the source of truth) → `BundledMigrations`.
/// - `SwitchboardServer`: `Resources/openapi.yaml` → `BundledOpenAPI`.
@main
struct EmbedFilesPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let root = context.package.directoryURL
        let name: String
        let inputs: [URL]
        switch target.name {
        case "PostgresStore":
            let directory = root.appending(path: "migrations")
            inputs = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "sql" }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
            name = "BundledMigrations"
        case "SwitchboardServer":
            inputs = [root.appending(path: "Sources/SwitchboardServer/Resources/openapi.yaml")]
            name = "BundledOpenAPI"
        default:
            return []
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "\(name).swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) file(s) in \(target.name) as \(name)",
                executable: try context.tool(named: "EmbedFiles").url,
                arguments: [name, output.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
