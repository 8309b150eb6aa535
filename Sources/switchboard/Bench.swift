import ArgumentParser

/// `switchboard bench`: the load generator (SPEC §9).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Drive load against one or more nodes and report latency percentiles.")

    func run() async throws {
        throw ValidationError("bench is not implemented yet")
    }
}
