import ArgumentParser

@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A clustered WebRTC signaling service.",
        subcommands: [Serve.self, Turn.self, Migrate.self, RotateMasterKey.self, Token.self, Bench.self, AuditBench.self]
    )
}
