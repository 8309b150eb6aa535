/// A map for the handful of keys one allocation holds — its permissions and channel
/// bindings, which the relay path looks up for every packet.
///
/// Up to ``linearLimit`` entries sit in an array searched linearly: comparing a few IP
/// addresses or channel numbers costs less than hashing one key (a SipHash `Hasher` set up
/// and finalised per lookup was ≈ 4 % of a busy TURN node's CPU, Docs/turn.md
/// "Performance"). Beyond that the entries move to a dictionary for good, so a client that
/// installs hundreds of permissions costs one hash lookup per packet, not a long scan.
struct SmallMap<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    static var linearLimit: Int { 8 }

    private var entries: [(key: Key, value: Value)] = []
    private var table: [Key: Value] = [:]
    private var isHashed = false

    init() {}

    var count: Int { isHashed ? table.count : entries.count }

    subscript(key: Key) -> Value? {
        get {
            if isHashed { return table[key] }
            for entry in entries where entry.key == key { return entry.value }
            return nil
        }
        set {
            if isHashed {
                table[key] = newValue
                return
            }
            if let index = entries.firstIndex(where: { $0.key == key }) {
                if let newValue { entries[index].value = newValue } else { entries.remove(at: index) }
                return
            }
            guard let newValue else { return }
            entries.append((key, newValue))
            if entries.count > Self.linearLimit {
                table = Dictionary(entries, uniquingKeysWith: { _, last in last })
                entries = []
                isHashed = true
            }
        }
    }

    /// Every entry, in no particular order (a copy: the map may be changed while it is walked).
    var pairs: [(key: Key, value: Value)] {
        isHashed ? table.map { (key: $0.key, value: $0.value) } : entries
    }

    func contains(where predicate: (Key, Value) -> Bool) -> Bool {
        isHashed ? table.contains { predicate($0.key, $0.value) } : entries.contains { predicate($0.key, $0.value) }
    }

    mutating func removeAll(where predicate: (Key, Value) -> Bool) {
        if isHashed {
            table = table.filter { !predicate($0.key, $0.value) }
        } else {
            entries.removeAll { predicate($0.key, $0.value) }
        }
    }
}
