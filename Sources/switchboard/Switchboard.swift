import ArgumentParser
import Foundation

@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A clustered WebRTC signaling service.",
        subcommands: [Serve.self, Turn.self, Migrate.self, RotateMasterKey.self, Token.self, Bench.self, AuditBench.self]
    )

    /// argument-parser's `main`, except that a ``StartupFailure`` goes to stderr in one
    /// `write(2)`: the services that are stopping still log there meanwhile, and
    /// argument-parser's own print can reach the file in pieces with a log line between them.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let failure as StartupFailure {
            FileHandle.standardError.write(Data("Error: \(failure.description)\n".utf8))
            exit(withError: ExitCode.failure)
        } catch {
            exit(withError: error)
        }
    }
}
