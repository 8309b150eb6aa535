/// A map keyed by ``AllocationID``, for the lookups the relay path makes for every packet
/// (the state machine's allocations, the I/O shell's relay sockets).
///
/// Why not `Dictionary`: its SipHash `Hasher`, set up and finalised for every lookup, cost
/// ≈ 200 user-space instructions per lookup here, and a relayed packet needs one or two
/// (Docs/turn.md "Performance"). SipHash protects a table from keys an attacker picks; an
/// allocation id is the node's own sequence number, never a client's choice, so a
/// multiplicative (Fibonacci) hash spreads the keys as well at a few instructions.
/// Open addressing with linear probing, at most half full; removal shifts the following
/// entries back (no tombstones), so a lookup never scans more than its cluster.
public struct AllocationMap<Value> {
    /// The id in each slot; meaningful only where `values` holds a value.
    @usableFromInline var keys: [UInt64]
    @usableFromInline var values: [Value?]
    @usableFromInline var shift: UInt64
    @usableFromInline var storedCount = 0
    /// How many ids have a value.
    @inlinable public var count: Int { storedCount }

    @inlinable public init() {
        keys = Array(repeating: 0, count: 8)
        values = Array(repeating: nil, count: 8)
        shift = 64 - 3
    }

    @inlinable var mask: Int { keys.count - 1 }

    @inlinable func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inlinable func slot(of key: UInt64) -> Int? {
        var index = home(key)
        while values[index] != nil {
            if keys[index] == key { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    @inlinable public subscript(id: AllocationID) -> Value? {
        get { slot(of: id.rawValue).flatMap { values[$0] } }
        set {
            if let newValue {
                insert(newValue, for: id.rawValue)
            } else {
                removeValue(forKey: id)
            }
        }
        _modify {
            if let index = slot(of: id.rawValue) {
                // Moved out, so that the caller's change does not copy the value's storage.
                var value = values[index].take()
                defer {
                    if let value {
                        values[index] = value
                    } else {
                        values[index] = nil
                        storedCount -= 1
                        closeGap(at: index)
                    }
                }
                yield &value
            } else {
                var value: Value?
                defer { if let value { insert(value, for: id.rawValue) } }
                yield &value
            }
        }
    }

    /// Runs `body` on the value for `id` in place; nil when there is none.
    @inlinable public mutating func withValue<Result>(for id: AllocationID, _ body: (inout Value) -> Result) -> Result? {
        guard let index = slot(of: id.rawValue) else { return nil }
        return body(&values[index]!)
    }

    @inlinable @discardableResult
    public mutating func removeValue(forKey id: AllocationID) -> Value? {
        guard let index = slot(of: id.rawValue) else { return nil }
        let value = values[index].take()
        storedCount -= 1
        closeGap(at: index)
        return value
    }

    @inlinable mutating func insert(_ value: Value, for key: UInt64) {
        if let index = slot(of: key) {
            values[index] = value
            return
        }
        if (storedCount + 1) * 2 > keys.count { grow() }
        var index = home(key)
        while values[index] != nil { index = (index + 1) & mask }
        keys[index] = key
        values[index] = value
        storedCount += 1
    }

    @usableFromInline mutating func grow() {
        let oldKeys = keys
        var oldValues = values
        keys = Array(repeating: 0, count: oldKeys.count * 2)
        values = Array(repeating: nil, count: oldKeys.count * 2)
        shift -= 1
        storedCount = 0
        for index in oldKeys.indices {
            if let value = oldValues[index].take() { insert(value, for: oldKeys[index]) }
        }
    }

    /// Backward-shift deletion: moves each following entry of the cluster into the emptied
    /// slot when its home position allows, so that every entry stays reachable from its home.
    @inlinable mutating func closeGap(at start: Int) {
        var gap = start
        var index = start
        while true {
            index = (index + 1) & mask
            guard values[index] != nil else { return }
            let wanted = home(keys[index])
            // The entry at `index` may move to `gap` unless its home lies cyclically in (gap, index].
            let staysPut = gap <= index ? (gap < wanted && wanted <= index) : (gap < wanted || wanted <= index)
            if staysPut { continue }
            keys[gap] = keys[index]
            values[gap] = values[index].take()
            gap = index
        }
    }

    /// The ids, in no particular order.
    @inlinable public var ids: [AllocationID] {
        values.indices.compactMap { values[$0] == nil ? nil : AllocationID(rawValue: keys[$0]) }
    }
}

extension AllocationMap: Sequence {
    @frozen public struct Iterator: IteratorProtocol {
        @usableFromInline let map: AllocationMap
        @usableFromInline var index = 0

        @inlinable init(map: AllocationMap) { self.map = map }

        @inlinable public mutating func next() -> (key: AllocationID, value: Value)? {
            while index < map.values.count {
                defer { index += 1 }
                if let value = map.values[index] { return (AllocationID(rawValue: map.keys[index]), value) }
            }
            return nil
        }
    }

    /// Every entry, in no particular order, of the map as it is now (a copy: the map may be
    /// changed while it is walked).
    @inlinable public func makeIterator() -> Iterator { Iterator(map: self) }

    @inlinable public var underestimatedCount: Int { count }
}

extension AllocationMap: Sendable where Value: Sendable {}
