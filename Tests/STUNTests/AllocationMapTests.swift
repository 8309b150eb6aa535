import Testing

@testable import STUN

@Suite struct AllocationMapTests {
    /// Random inserts, removals and in-place changes — through the subscript, its in-place
    /// (`_modify`) form and ``AllocationMap/withValue(for:_:)`` — across several growths and
    /// with ids that share home slots, checked step by step against a Dictionary.
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func behavesLikeADictionary(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var map = AllocationMap<Int>()
        var model: [UInt64: Int] = [:]
        // Sequential ids as the machine issues them, plus spread-out ones; the range grows
        // with the seed so that the table grows from 8 slots to 512.
        let range = UInt64(seed * 60)
        for step in 0..<4_000 {
            let raw = Bool.random(using: &random)
                ? UInt64.random(in: 1...range, using: &random)
                : UInt64.random(in: 1...range, using: &random) &* 0x1_0000_0001
            let id = AllocationID(rawValue: raw)
            switch Int.random(in: 0..<12, using: &random) {
            case 0..<5:
                map[id] = step
                model[raw] = step
            case 5..<8:
                #expect(map.removeValue(forKey: id) == model.removeValue(forKey: raw))
            case 8:
                map[id] = nil
                model[raw] = nil
            case 9:
                map[id]? += 1  // in place, through _modify
                model[raw]? += 1
            case 10:
                let seen = map.withValue(for: id) { value -> Int in
                    value *= 2
                    return value
                }
                if let old = model[raw] { model[raw] = old * 2 }
                #expect(seen == model[raw])
            default:
                // _modify that removes the value, or adds one where there was none
                if model[raw] == nil {
                    map[id].modify { $0 = step }
                    model[raw] = step
                } else {
                    map[id].modify { $0 = nil }
                    model[raw] = nil
                }
            }
            #expect(map.count == model.count)
            for (key, value) in model where map[AllocationID(rawValue: key)] != value {
                Issue.record("step \(step): id \(key) is \(String(describing: map[AllocationID(rawValue: key)])), expected \(value)")
                return
            }
            if step % 50 == 0 {
                #expect(Dictionary(uniqueKeysWithValues: map.map { ($0.key.rawValue, $0.value) }) == model)
                #expect(Set(map.ids.map(\.rawValue)) == Set(model.keys))
                // absent ids are absent
                for _ in 0..<20 {
                    let probe = UInt64.random(in: 1...range * 2, using: &random)
                    #expect((map[AllocationID(rawValue: probe)] == nil) == (model[probe] == nil))
                }
            }
        }
    }

    /// Iterating walks a snapshot: the map may change underneath, as the machine's expiry does.
    @Test func iterationSeesTheMapAsItWas() {
        var map = AllocationMap<String>()
        for raw in 1...20 as ClosedRange<UInt64> { map[AllocationID(rawValue: raw)] = "\(raw)" }
        var seen = 0
        for (id, _) in map {
            seen += 1
            map[id] = nil
        }
        #expect(seen == 20)
        #expect(map.count == 0)
        #expect(map.map(\.value).isEmpty)
    }
}

extension Optional {
    /// Changes the optional in place: `map[id].modify { … }` goes through the subscript's
    /// `_modify` accessor with the whole optional, so a test can add or remove through it.
    fileprivate mutating func modify(_ body: (inout Wrapped?) -> Void) { body(&self) }
}
