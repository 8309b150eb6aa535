import Foundation
import Signaling

/// ``TURNRegistry`` on Redis: one key per node, `<prefix>:turn:node:<id>` (its record as
/// JSON, with a PX expiry, so a dead node drops out by itself), and the set
/// `<prefix>:turn:nodes` of ids that lists them (ids whose key has lapsed are removed from
/// it as they are found).
public struct RedisTURNRegistry: TURNRegistry {
    public let client: RedisClient
    public let prefix: String

    public init(client: RedisClient, prefix: String = "sb") {
        self.client = client
        self.prefix = prefix
    }

    var nodesKey: String { "\(prefix):turn:nodes" }
    func nodeKey(_ id: String) -> String { "\(prefix):turn:node:\(id)" }

    public func register(_ record: TURNNodeRecord, ttl: Duration) async throws(TURNRegistryError) {
        let json: Data
        do { json = try JSONEncoder().encode(record) } catch { throw TURNRegistryError("cannot encode the record: \(error)") }
        let milliseconds = max(1, ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000)
        let replies = client.sendBatch([
            ["SET", RedisArgument(nodeKey(record.nodeID)), RedisArgument(bytes: [UInt8](json)), "PX", RedisArgument(milliseconds)],
            ["SADD", RedisArgument(nodesKey), RedisArgument(record.nodeID)],
        ])
        for reply in replies { try await Self.check(reply.get) }
    }

    public func deregister(nodeID: String) async throws(TURNRegistryError) {
        let replies = client.sendBatch([["DEL", RedisArgument(nodeKey(nodeID))], ["SREM", RedisArgument(nodesKey), RedisArgument(nodeID)]])
        for reply in replies { try await Self.check(reply.get) }
    }

    public func liveNodes() async throws(TURNRegistryError) -> [TURNNodeRecord] {
        let ids = try await Self.check(client.send(["SMEMBERS", RedisArgument(nodesKey)]).get).array?.compactMap(\.string) ?? []
        guard !ids.isEmpty else { return [] }
        let values = try await Self.check(client.send(["MGET"] + ids.map { RedisArgument(nodeKey($0)) }).get).array ?? []
        var records: [TURNNodeRecord] = []
        var lapsed: [String] = []
        for (id, value) in zip(ids, values) {
            guard let bytes = value.bytes, let record = try? JSONDecoder().decode(TURNNodeRecord.self, from: Data(bytes)) else {
                lapsed.append(id)
                continue
            }
            records.append(record)
        }
        if !lapsed.isEmpty {
            _ = client.sendAndForget(["SREM", RedisArgument(nodesKey)] + lapsed.map { RedisArgument($0) })
        }
        return TURNNodeRecord.forClients(records)
    }

    @discardableResult
    private static func check(_ body: () async throws -> RedisValue) async throws(TURNRegistryError) -> RedisValue {
        do {
            let value = try await body()
            if case .error(let message) = value { throw TURNRegistryError("Redis: \(message)") }
            return value
        } catch let error as TURNRegistryError {
            throw error
        } catch {
            throw TURNRegistryError("Redis: \(error)")
        }
    }
}
